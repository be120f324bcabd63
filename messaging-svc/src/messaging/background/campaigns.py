"""Campaign sends: a runner takes a due campaign (lease, SKIP LOCKED), pages through the segment's
members from identity and queues one message per member, keyed (campaign, profile), committing the
page cursor with each batch. A runner that dies mid-campaign leaves a cursor; the next one resumes
there and the keys make a repeated page queue nothing twice."""

from __future__ import annotations

import asyncpg
import grpc

from mcloud.identity.v1 import identity_pb2
from mcloud_common.clock import Clock
from mcloud_common.grpc_client import tenant_metadata
from mcloud_common.logs import get_logger
from mcloud_common.runtime import Runtime
from messaging.repo import messages as message_repo
from messaging.repo.messages import NewMessage
from messaging.settings import MessagingSettings

log = get_logger(__name__)
LEASE_SECONDS = 120


def campaign_key(campaign_id: str, profile_id: str) -> str:
    return f"campaign:{campaign_id}:{profile_id}"


_CLAIM = """
    UPDATE campaigns c SET lease_until = $1::timestamptz + make_interval(secs => $2), status = 'running',
                           started_at = coalesce(c.started_at, $1)
    FROM (SELECT tenant_id, id FROM campaigns
          WHERE status IN ('scheduled', 'running') AND scheduled_at <= $1 AND (lease_until IS NULL OR lease_until < $1)
          ORDER BY scheduled_at LIMIT 1 FOR UPDATE SKIP LOCKED) due
    WHERE c.tenant_id = due.tenant_id AND c.id = due.id
    RETURNING c.*
"""


class CampaignRunner:
    def __init__(self, pool: asyncpg.Pool, clock: Clock, settings: MessagingSettings, identity) -> None:
        self._pool = pool
        self._clock = clock
        self._settings = settings
        self._identity = identity

    async def run_once(self) -> bool:
        """Take one due campaign and queue all of it; False when none was due."""
        async with self._pool.acquire() as conn:
            campaign = await conn.fetchrow(_CLAIM, self._clock.now(), LEASE_SECONDS)
        if campaign is None:
            return False
        await self._run(campaign)
        return True

    async def _run(self, c: asyncpg.Record) -> None:
        tenant, cid, cursor = str(c["tenant_id"]), str(c["id"]), c["cursor"]
        while True:
            try:
                page = await self._identity.ListSegmentMembers(
                    identity_pb2.ListSegmentMembersRequest(segment_id=str(c["segment_id"]), page_size=c["batch_size"],
                                                           page_token=cursor), metadata=tenant_metadata(tenant))
            except grpc.aio.AioRpcError as exc:
                if exc.code() != grpc.StatusCode.NOT_FOUND:
                    raise  # identity down or slow: the lease ends and a runner tries again from the cursor
                # the segment is gone: no later run can do better, so the campaign fails instead of coming due
                # again after every lease, forever
                await self._fail(tenant, cid, exc.details() or "segment not found")
                return
            now = self._clock.now()
            items = [NewMessage(profile_id=pid, requested_channel=c["channel"], template_id=str(c["template_id"]),
                                template_version=c["template_version"], idempotency_key=campaign_key(cid, pid),
                                variables=c["variables"] or {}, quiet_hours_behavior=c["quiet_hours_behavior"],
                                campaign_id=cid) for pid in page.profile_ids]
            done = not page.next_page_token
            async with self._pool.acquire() as conn, conn.transaction():
                before = await conn.fetchval(
                    "SELECT count(*) FROM messages WHERE tenant_id = $1 AND campaign_id = $2", tenant, cid)
                await message_repo.enqueue(conn, tenant, items, now=now, shards=self._settings.stream_shards)
                queued = await conn.fetchval(
                    "SELECT count(*) FROM messages WHERE tenant_id = $1 AND campaign_id = $2", tenant, cid)
                await conn.execute("""
                    UPDATE campaigns SET cursor = $3, queued = $4, audience_size = audience_size + $5,
                                         lease_until = $6::timestamptz + make_interval(secs => $7),
                                         status = CASE WHEN $8 THEN 'completed' ELSE status END,
                                         completed_at = CASE WHEN $8 THEN $6 ELSE completed_at END
                    WHERE tenant_id = $1 AND id = $2""",
                    tenant, cid, page.next_page_token, queued, queued - before, now, LEASE_SECONDS, done)
            if done:
                log.info("campaign queued", tenant=tenant, campaign_id=cid, queued=queued)
                return
            cursor = page.next_page_token

    async def _fail(self, tenant: str, cid: str, error: str) -> None:
        log.warning("campaign failed", tenant=tenant, campaign_id=cid, error=error)
        await self._pool.execute(
            "UPDATE campaigns SET status = 'failed', error = $3, completed_at = $4, lease_until = NULL "
            "WHERE tenant_id = $1 AND id = $2", tenant, cid, error[:500], self._clock.now())


async def install(runtime: Runtime, settings: MessagingSettings, *, identity, **_kw) -> CampaignRunner:
    runner = CampaignRunner(runtime.pool, runtime.clock, settings, identity)

    async def tick() -> None:
        for _ in range(100):  # several due campaigns: take them one after another in one tick
            if not await runner.run_once():
                return

    runtime.every(1.0, tick, name="messaging-campaigns")
    return runner
