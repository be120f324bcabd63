"""`mcloud tenant create`: a tenant and its first keys, written straight into the gateway database."""

from __future__ import annotations

import os
from pathlib import Path

from mcloud_cli.config import GATEWAY, database_name
from mcloud_cli.state import read_state
from mcloud_common.db import create_pool, with_database


class TenantError(Exception):
    pass


def gateway_database_url(home: Path) -> str:
    """From the running stack's state.json, else GATEWAY_DATABASE_URL, else DATABASE_URL."""
    state = read_state(home / "state.json")
    if state:
        return state.urls["databases"][GATEWAY]
    if url := os.environ.get("GATEWAY_DATABASE_URL"):
        return url
    if url := os.environ.get("DATABASE_URL"):
        return with_database(url, database_name(GATEWAY))
    raise TenantError(f"no stack found in {home} (run `mcloud up`) and neither GATEWAY_DATABASE_URL "
                      "nor DATABASE_URL is set")


async def create_tenant(database_url: str, name: str) -> dict[str, str]:
    """Create tenant `name`; {"tenant_id", "write_key", "secret_key"}. TenantError on a duplicate."""
    # imported here: the CLI must start (and `up` must work) without loading the gateway package
    from gateway.tenancy import create_tenant as create
    from mcloud_common.errors import AlreadyExists, DomainError

    try:
        pool = await create_pool(database_url, min_size=1, max_size=1)
    except Exception as exc:
        raise TenantError(f"cannot reach the gateway database: {type(exc).__name__}: {exc}") from None
    try:
        async with pool.acquire() as conn, conn.transaction():
            tenant = await create(conn, name)
    except AlreadyExists:
        raise TenantError(f"a tenant named {name!r} already exists") from None
    except DomainError as exc:  # e.g. InvalidArgument for an empty or overlong name
        raise TenantError(exc.detail) from None
    finally:
        await pool.close()
    return {"tenant_id": _plain(tenant.tenant_id), "write_key": _plain(tenant.write_key),
            "secret_key": _plain(tenant.secret_key)}


def _plain(value: object) -> str:
    reveal = getattr(value, "get_secret_value", None)  # keys may come as pydantic SecretStr
    return str(reveal() if reveal else value)
