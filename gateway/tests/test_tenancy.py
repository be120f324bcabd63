"""Tenants and API keys against a real PostgreSQL."""

from __future__ import annotations

import hashlib
import uuid

import pytest

from gateway import repo
from gateway.tenancy import KeyCache, authenticate, create_api_key, create_tenant, key_kind
from mcloud_common.errors import AlreadyExists, InvalidArgument


async def test_create_tenant_returns_a_write_key_and_a_secret_key(make_tenant):
    tenant = await make_tenant()
    assert uuid.UUID(tenant.tenant_id).version == 7
    assert tenant.write_key.startswith("wk_") and key_kind(tenant.write_key) == "write"
    assert tenant.secret_key.startswith("sk_") and key_kind(tenant.secret_key) == "secret"
    assert tenant.write_key != tenant.secret_key


async def test_keys_are_stored_only_as_sha256_hashes(db, make_tenant):
    tenant = await make_tenant()
    rows = await db.fetch("SELECT * FROM api_keys WHERE tenant_id = $1", uuid.UUID(tenant.tenant_id))
    assert len(rows) == 2
    stored = {bytes(r["key_hash"]) for r in rows}
    assert stored == {hashlib.sha256(k.encode()).digest() for k in (tenant.write_key, tenant.secret_key)}
    dump = " ".join(str(v) for r in rows for v in r.values())
    assert tenant.write_key not in dump and tenant.secret_key not in dump
    assert all(len(r["prefix"]) < 12 for r in rows)


async def test_second_tenant_with_the_same_name_is_already_exists(make_tenant):
    name = f"acme-{uuid.uuid4().hex[:8]}"
    await make_tenant(name)
    with pytest.raises(AlreadyExists) as exc:
        await make_tenant(name)
    assert exc.value.code == "tenant_exists"


async def test_empty_tenant_name_is_invalid(db):
    with pytest.raises(InvalidArgument):
        await create_tenant(db, "   ")


async def test_authenticate_resolves_tenant_kind_and_default_scopes(db, make_tenant):
    tenant = await make_tenant()
    write = await authenticate(db, tenant.write_key)
    secret = await authenticate(db, tenant.secret_key)
    assert (write.tenant_id, write.kind, write.scopes) == (tenant.tenant_id, "write", {"events:write"})
    assert secret.kind == "secret"
    assert secret.scopes == {"events:write", "profiles:read", "admin"}
    assert secret.tenant_name == tenant.name


async def test_unknown_malformed_and_revoked_keys_do_not_authenticate(db, make_tenant):
    tenant = await make_tenant()
    assert await authenticate(db, "wk_" + "0" * 43) is None
    assert await authenticate(db, "nonsense") is None
    principal = await authenticate(db, tenant.write_key)
    assert await repo.revoke_key(
        db, tenant_id=uuid.UUID(tenant.tenant_id), key_id=uuid.UUID(principal.key_id)
    )
    assert await authenticate(db, tenant.write_key) is None


async def test_cached_keys_do_not_hit_the_database(db, make_tenant):
    tenant = await make_tenant()
    cache = KeyCache(ttl=60)
    first = await authenticate(db, tenant.write_key, cache=cache)

    class NoDatabase:
        async def fetchrow(self, *args):
            raise AssertionError("the cache should have answered")

    assert await authenticate(NoDatabase(), tenant.write_key, cache=cache) == first


async def test_write_keys_cannot_be_given_secret_scopes(db, make_tenant):
    tenant = await make_tenant()
    with pytest.raises(InvalidArgument):
        await create_api_key(db, tenant.tenant_id, "write", ["profiles:read"])
    key = await create_api_key(db, tenant.tenant_id, "secret", ["events:write"])
    assert (await authenticate(db, key)).scopes == {"events:write"}
