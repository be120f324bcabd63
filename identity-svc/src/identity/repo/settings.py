"""Tenant settings and tracking plans, read through a short-lived per-process cache (the hot path
reads them for every batch; an update is seen by this process at once and by others within TTL)."""

from __future__ import annotations

import time
from collections.abc import Awaitable, Callable
from typing import Generic, TypeVar

import asyncpg
import orjson
from pydantic import ValidationError

from identity.domain.settings import DEFAULT_SETTINGS, TenantSettings
from mcloud_common.errors import InvalidArgument

T = TypeVar("T")
TTL_SECONDS = 5.0


class TenantCache(Generic[T]):
    """Values per tenant loaded by `load(conn, tenant)`, kept `ttl` seconds."""

    def __init__(self, load: Callable[[asyncpg.Connection, str], Awaitable[T]], ttl: float = TTL_SECONDS) -> None:
        self._load = load
        self._ttl = ttl
        self._items: dict[str, tuple[float, T]] = {}

    async def get(self, conn: asyncpg.Connection, tenant_id: str) -> T:
        hit = self._items.get(tenant_id)
        now = time.monotonic()
        if hit is not None and now - hit[0] < self._ttl:
            return hit[1]
        value = await self._load(conn, tenant_id)
        self._items[tenant_id] = (now, value)
        return value

    def put(self, tenant_id: str, value: T) -> None:
        self._items[tenant_id] = (time.monotonic(), value)

    def forget(self, tenant_id: str) -> None:
        self._items.pop(tenant_id, None)


async def load_settings(conn: asyncpg.Connection, tenant_id: str) -> TenantSettings:
    raw = await conn.fetchval("SELECT settings FROM tenant_settings WHERE tenant_id = $1", tenant_id)
    return DEFAULT_SETTINGS if raw is None else TenantSettings.model_validate(raw)


def parse_settings(text: str) -> TenantSettings:
    """Settings from JSON text; InvalidArgument naming every problem otherwise."""
    try:
        return TenantSettings.model_validate_json(text or "{}")
    except ValidationError as exc:
        problems = "; ".join(f"{'.'.join(map(str, e['loc'])) or 'settings'}: {e['msg']}" for e in exc.errors())
        raise InvalidArgument(f"invalid identity settings: {problems}", code="invalid_settings") from exc


async def save_settings(conn: asyncpg.Connection, tenant_id: str, settings: TenantSettings) -> None:
    await conn.execute(
        """
        INSERT INTO tenant_settings (tenant_id, settings) VALUES ($1, $2)
        ON CONFLICT (tenant_id) DO UPDATE SET settings = excluded.settings, updated_at = now()
        """,
        tenant_id, orjson.loads(settings.to_json()),
    )
