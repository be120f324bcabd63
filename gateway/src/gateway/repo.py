"""The gateway's own tables (tenants, API keys): SQLAlchemy schema for Alembic, asyncpg queries for use.

Key lookups sit on the request path, so they are plain asyncpg statements on the primary-key-like
unique index of `key_hash`.
"""

from __future__ import annotations

import uuid
from datetime import datetime
from pathlib import Path

import asyncpg
from sqlalchemy import ARRAY, CheckConstraint, DateTime, ForeignKey, LargeBinary, Text, func
from sqlalchemy.dialects.postgresql import UUID
from sqlalchemy.orm import DeclarativeBase, Mapped, mapped_column

MIGRATIONS = Path(__file__).parent / "migrations"


class Base(DeclarativeBase):
    pass


class Tenant(Base):
    __tablename__ = "tenants"

    id: Mapped[uuid.UUID] = mapped_column(UUID(as_uuid=True), primary_key=True)
    name: Mapped[str] = mapped_column(Text, unique=True)
    created_at: Mapped[datetime] = mapped_column(DateTime(timezone=True), server_default=func.now())


class ApiKey(Base):
    __tablename__ = "api_keys"
    __table_args__ = (CheckConstraint("kind IN ('write', 'secret')", name="api_keys_kind"),)

    id: Mapped[uuid.UUID] = mapped_column(UUID(as_uuid=True), primary_key=True)
    tenant_id: Mapped[uuid.UUID] = mapped_column(ForeignKey("tenants.id", ondelete="CASCADE"), index=True)
    kind: Mapped[str] = mapped_column(Text)
    key_hash: Mapped[bytes] = mapped_column(LargeBinary, unique=True)
    prefix: Mapped[str] = mapped_column(Text)
    scopes: Mapped[list[str]] = mapped_column(ARRAY(Text))
    created_at: Mapped[datetime] = mapped_column(DateTime(timezone=True), server_default=func.now())
    revoked_at: Mapped[datetime | None] = mapped_column(DateTime(timezone=True), nullable=True)


metadata = Base.metadata


async def insert_tenant(conn: asyncpg.Connection, *, tenant_id: uuid.UUID, name: str) -> bool:
    """Insert a tenant; False when the name is taken."""
    row = await conn.fetchval(
        "INSERT INTO tenants (id, name) VALUES ($1, $2) ON CONFLICT (name) DO NOTHING RETURNING id",
        tenant_id,
        name,
    )
    return row is not None


async def insert_api_key(
    conn: asyncpg.Connection,
    *,
    key_id: uuid.UUID,
    tenant_id: uuid.UUID,
    kind: str,
    key_hash: bytes,
    prefix: str,
    scopes: list[str],
) -> None:
    await conn.execute(
        "INSERT INTO api_keys (id, tenant_id, kind, key_hash, prefix, scopes)"
        " VALUES ($1, $2, $3, $4, $5, $6)",
        key_id,
        tenant_id,
        kind,
        key_hash,
        prefix,
        scopes,
    )


async def find_active_key(conn: asyncpg.Connection | asyncpg.Pool, key_hash: bytes) -> asyncpg.Record | None:
    """The unrevoked key with this hash, joined with its tenant's name."""
    return await conn.fetchrow(
        """
        SELECT k.id, k.tenant_id, k.kind, k.prefix, k.scopes, t.name AS tenant_name
        FROM api_keys k JOIN tenants t ON t.id = k.tenant_id
        WHERE k.key_hash = $1 AND k.revoked_at IS NULL
        """,
        key_hash,
    )


async def revoke_key(conn: asyncpg.Connection, *, tenant_id: uuid.UUID, key_id: uuid.UUID) -> bool:
    status = await conn.execute(
        "UPDATE api_keys SET revoked_at = now() WHERE id = $1 AND tenant_id = $2 AND revoked_at IS NULL",
        key_id,
        tenant_id,
    )
    return status.endswith(" 1")


async def find_tenant_by_name(conn: asyncpg.Connection, name: str) -> asyncpg.Record | None:
    return await conn.fetchrow("SELECT id, name, created_at FROM tenants WHERE name = $1", name)
