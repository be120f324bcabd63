"""One whole stack for the resilience tests (started as `mcloud up` starts it, shared by the package: each
module leaves it healthy), and the client side of an outage: a storefront that sends batches of events
and retries what was not accepted, as Segment's SDKs do."""

from __future__ import annotations

import asyncio
import os
import time
import uuid
from collections import Counter
from dataclasses import dataclass, field

import asyncpg
import httpx
import pytest

from mcloud_cli.stack import StackHandle, start_stack
from mcloud_common.testing.services import wait_until

pytestmark = pytest.mark.skipif(
    bool(os.environ.get("DATABASE_URL") or os.environ.get("REDIS_URL")),
    reason="stops and starts the embedded PostgreSQL and Valkey",
)

# A claimed message comes due again after the lease: short, so a sender killed mid-batch is retried within
# the test (a batch takes well under a second to a local SMTP server, so no live batch outlives it).
# SEND_CONCURRENCY bounds the emails in flight when messaging is killed: the most that may be sent again.
SEND_CONCURRENCY = 16
STACK_ENV = {"MESSAGING_SEND_LEASE_SECONDS": "8", "MESSAGING_SEND_CONCURRENCY": str(SEND_CONCURRENCY)}


@pytest.fixture(scope="package")
def stack(tmp_path_factory) -> StackHandle:
    with start_stack(tmp_path_factory.mktemp("resilience") / "mcloud", env=STACK_ENV) as handle:
        yield handle


@pytest.fixture(scope="package")
def new_tenant(stack):
    def create(prefix: str) -> dict:
        return stack.create_tenant(f"{prefix}-{uuid.uuid4().hex[:6]}")

    return create


async def eventually(probe, timeout: float = 60, message: str | None = None):  # noqa: ASYNC109 (a deadline)
    return await wait_until(probe, timeout=timeout, interval=0.2,
                            message=message or getattr(probe, "__name__", "condition"))


def assert_unavailable(r: httpx.Response) -> None:
    """A dependency is down: 503 problem+json with Retry-After (never a 500)."""
    assert r.status_code == 503, (r.status_code, r.text)
    assert r.headers["content-type"].startswith("application/problem+json"), r.headers
    assert int(r.headers["retry-after"]) >= 1
    body = r.json()
    assert body["status"] == 503 and body["code"], body


@dataclass
class Storefront:
    """Sends batches with its own message ids; a batch not answered 2xx is sent again (same ids) after the
    Retry-After the gateway gave (capped), until accepted or `deadline`. Records every answer it got."""

    client: httpx.AsyncClient
    accepted: set[str] = field(default_factory=set)
    statuses: Counter = field(default_factory=Counter)
    bad: list[str] = field(default_factory=list)  # answers that break the contract (5xx other than 503/504...)
    transport_errors: list[str] = field(default_factory=list)
    sent_batches: int = 0
    accepted_batches: int = 0

    async def send(self, batch: list[dict], *, deadline: float) -> bool:
        self.sent_batches += 1
        while time.monotonic() < deadline:
            try:
                r = await self.client.post("/v1/batch", json={"batch": batch})
            except httpx.TransportError as exc:  # e.g. a kept-alive connection closed as it was reused
                self.transport_errors.append(repr(exc))
                await asyncio.sleep(0.2)
                continue
            self.statuses[r.status_code] += 1
            if r.status_code == 200:
                body = r.json()
                assert not body["rejected"], body
                self.accepted.update(e["messageId"] for e in batch)
                self.accepted_batches += 1
                return True
            if r.status_code in (503, 504):
                retry_after = r.headers.get("retry-after")
                if r.status_code == 503 and (retry_after is None or
                                             not r.headers["content-type"].startswith("application/problem+json")):
                    self.bad.append(f"503 without Retry-After/problem+json: {r.headers} {r.text}")
                await asyncio.sleep(min(float(retry_after or 1), 0.5))
                continue
            self.bad.append(f"{r.status_code}: {r.text[:300]}")
            await asyncio.sleep(0.2)
        return False


def track(user: str, event: str = "Product Viewed", **properties) -> dict:
    return {"type": "track", "userId": user, "event": event, "messageId": f"m-{uuid.uuid4()}",
            "properties": properties}


async def stored_events(stack: StackHandle, tenant_id: str) -> Counter:
    """message id -> number of rows in identity's event log, for one tenant."""
    conn = await asyncpg.connect(stack.database_url("identity").replace("+asyncpg", ""))
    try:
        rows = await conn.fetch("SELECT message_id, count(*) AS n FROM events WHERE tenant_id = $1 "
                                "GROUP BY message_id", uuid.UUID(tenant_id))
    finally:
        await conn.close()
    return Counter({r["message_id"]: r["n"] for r in rows})


async def fetchval(stack: StackHandle, database: str, sql: str, *args):
    conn = await asyncpg.connect(stack.database_url(database))
    try:
        return await conn.fetchval(sql, *args)
    finally:
        await conn.close()


def assert_stored_once(stored: Counter, accepted: set[str]) -> None:
    missing = accepted - set(stored)
    twice = {m: n for m, n in stored.items() if n > 1}
    assert not missing, f"{len(missing)} accepted events are not stored, e.g. {sorted(missing)[:3]}"
    assert not twice, f"{len(twice)} events stored more than once, e.g. {list(twice.items())[:3]}"
