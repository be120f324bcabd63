"""Tenants and API keys: creation (called by the CLI) and authentication (on every request).

Keys are `wk_` (publishable write key: events only) or `sk_` (secret key with scopes) followed by 32
random bytes in base62. Only sha256(key) is stored: the keys carry 256 bits of entropy, so a fast
hash is enough (a slow password hash would only cost latency on the hot path).
"""

from __future__ import annotations

import hashlib
import secrets
import time
import uuid
from dataclasses import dataclass

import asyncpg

from gateway import repo
from mcloud_common.errors import AlreadyExists, InvalidArgument
from mcloud_common.ids import new_id

WRITE, SECRET = "write", "secret"
PREFIX_OF = {WRITE: "wk_", SECRET: "sk_"}
KIND_OF_PREFIX = {v: k for k, v in PREFIX_OF.items()}
DEFAULT_SCOPES = {
    WRITE: ("events:write",),
    SECRET: ("events:write", "profiles:read", "admin"),
}
ADMIN = "admin"  # implies every other scope
KNOWN_SCOPES = frozenset(
    {
        "events:write",
        "profiles:read",
        "profiles:write",
        "segments:read",
        "segments:write",
        "imports:write",
        "loyalty:read",
        "loyalty:write",
        "journeys:read",
        "journeys:write",
        "messaging:read",
        "messaging:write",
        "recommend:read",
        "recommend:write",
        "analytics:read",
        ADMIN,
    }
)

_ALPHABET = "0123456789ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz"
_BODY_LEN = 43  # ceil(256 / log2(62))
_MAX_KEY_LEN = 3 + _BODY_LEN
_DISPLAY_LEN = 10


@dataclass(frozen=True, slots=True)
class NewTenant:
    tenant_id: str
    name: str
    write_key: str
    secret_key: str


@dataclass(frozen=True, slots=True)
class Principal:
    """Who is calling: the tenant and the key they presented (never the key itself)."""

    tenant_id: str
    tenant_name: str
    key_id: str
    kind: str
    scopes: frozenset[str]
    key_prefix: str


def _base62(data: bytes) -> str:
    n = int.from_bytes(data, "big")
    out = []
    while n:
        n, r = divmod(n, 62)
        out.append(_ALPHABET[r])
    return "".join(reversed(out)).rjust(_BODY_LEN, "0")


def generate_key(kind: str) -> str:
    """A fresh key of `kind` ('write' or 'secret')."""
    return PREFIX_OF[kind] + _base62(secrets.token_bytes(32))


def hash_key(key: str) -> bytes:
    return hashlib.sha256(key.encode()).digest()


def key_kind(key: str) -> str | None:
    """'write'/'secret' when `key` is shaped like one of our keys, else None (no DB lookup needed)."""
    if len(key) != _MAX_KEY_LEN:
        return None
    return KIND_OF_PREFIX.get(key[:3])


async def create_api_key(
    conn: asyncpg.Connection,
    tenant_id: str | uuid.UUID,
    kind: str,
    scopes: list[str] | None = None,
) -> str:
    """Create and return a new key for the tenant (the only time the raw key is visible)."""
    if kind not in PREFIX_OF:
        raise InvalidArgument(f"key kind must be 'write' or 'secret', not {kind!r}", code="invalid_key_kind")
    scopes = list(DEFAULT_SCOPES[kind] if scopes is None else scopes)
    unknown = set(scopes) - KNOWN_SCOPES
    if unknown:
        raise InvalidArgument(f"unknown scopes: {sorted(unknown)}", code="invalid_scope")
    if kind == WRITE and set(scopes) - set(DEFAULT_SCOPES[WRITE]):
        raise InvalidArgument("a write key can only have the events:write scope", code="invalid_scope")
    key = generate_key(kind)
    await repo.insert_api_key(
        conn,
        key_id=new_id(),
        tenant_id=uuid.UUID(str(tenant_id)),
        kind=kind,
        key_hash=hash_key(key),
        prefix=key[:_DISPLAY_LEN],
        scopes=scopes,
    )
    return key


async def create_tenant(conn: asyncpg.Connection, name: str) -> NewTenant:
    """Create a tenant with one write key and one secret key, in one transaction.
    Raises AlreadyExists when the name is taken, InvalidArgument for an empty or overlong name."""
    name = name.strip()
    if not name or len(name) > 200:
        raise InvalidArgument("tenant name must be 1 to 200 characters", code="invalid_tenant_name")
    tenant_id = new_id()
    async with conn.transaction():
        if not await repo.insert_tenant(conn, tenant_id=tenant_id, name=name):
            raise AlreadyExists(f"tenant {name!r} already exists", code="tenant_exists")
        write_key = await create_api_key(conn, tenant_id, WRITE)
        secret_key = await create_api_key(conn, tenant_id, SECRET)
    return NewTenant(tenant_id=str(tenant_id), name=name, write_key=write_key, secret_key=secret_key)


class KeyCache:
    """Small in-process TTL cache of key hash -> Principal (or None for unknown keys), so the hot path
    does not hit Postgres on each request. A revoked key stays usable for at most `ttl` seconds."""

    def __init__(self, ttl: float = 5.0, max_entries: int = 10_000) -> None:
        self.ttl = ttl
        self.max_entries = max_entries
        self._entries: dict[bytes, tuple[float, Principal | None]] = {}

    def get(self, key_hash: bytes) -> tuple[bool, Principal | None]:
        hit = self._entries.get(key_hash)
        if hit is None:
            return False, None
        if hit[0] < time.monotonic():
            del self._entries[key_hash]
            return False, None
        return True, hit[1]

    def put(self, key_hash: bytes, principal: Principal | None) -> None:
        if self.ttl <= 0:
            return
        if len(self._entries) >= self.max_entries:
            now = time.monotonic()
            self._entries = {k: v for k, v in self._entries.items() if v[0] >= now}
            if len(self._entries) >= self.max_entries:  # still full: drop the oldest half
                keep = list(self._entries.items())[self.max_entries // 2 :]
                self._entries = dict(keep)
        self._entries[key_hash] = (time.monotonic() + self.ttl, principal)

    def clear(self) -> None:
        self._entries.clear()


async def authenticate(
    db: asyncpg.Pool | asyncpg.Connection,
    presented: str,
    *,
    cache: KeyCache | None = None,
) -> Principal | None:
    """The Principal for a presented key, or None when the key is unknown, malformed or revoked."""
    if key_kind(presented) is None:
        return None
    digest = hash_key(presented)
    if cache is not None:
        found, principal = cache.get(digest)
        if found:
            return principal
    row = await repo.find_active_key(db, digest)
    principal = None
    if row is not None:
        principal = Principal(
            tenant_id=str(row["tenant_id"]),
            tenant_name=row["tenant_name"],
            key_id=str(row["id"]),
            kind=row["kind"],
            scopes=frozenset(row["scopes"]),
            key_prefix=row["prefix"],
        )
    if cache is not None:
        cache.put(digest, principal)
    return principal
