"""The durable executor: any number of workers claim due enrollments (FOR UPDATE SKIP LOCKED, leased
by moving due_at forward), run each to its next wait with domain.engine, perform the side effects
through the owning services with idempotency keys derived from enrollment, step and visit, then save
where each enrollment is (only if its lease is still theirs). A worker killed at any point loses
nothing: its claims come due again after the lease and the re-run repeats the same effects with the
same keys, which the services apply once. Timers are rows: they survive restarts.
"""

from __future__ import annotations

import asyncio
import time
from dataclasses import dataclass
from datetime import UTC, datetime

import asyncpg
import grpc
import orjson
from opentelemetry import trace

from journey.background.gauges import TIMER_LAG_AT_CLAIM
from journey.background.sends import SendBatcher, SendRefused
from journey.domain import definition as grammar
from journey.domain import engine
from journey.domain.definition import parse_duration
from journey.repo import enrollments as repo
from journey.repo import events as journey_events
from journey.settings import JourneySettings
from mcloud.identity.v1 import identity_pb2, identity_pb2_grpc
from mcloud.loyalty.v1 import loyalty_pb2, loyalty_pb2_grpc
from mcloud.messaging.v1 import messaging_pb2, messaging_pb2_grpc
from mcloud_common.bus import enqueue
from mcloud_common.clock import Clock
from mcloud_common.grpc_client import make_channel, tenant_metadata
from mcloud_common.logs import get_logger
from mcloud_common.runtime import Runtime
from mcloud_common.telemetry import span_link

log = get_logger(__name__)
_tracer = trace.get_tracer("mcloud.journey.worker")

MAX_ATTEMPTS = 5
CONCURRENCY = 256  # steps in flight per worker; their sends share SendMessages calls
_CHANNELS = {"email": messaging_pb2.CHANNEL_EMAIL, "sms": messaging_pb2.CHANNEL_SMS,
             "push": messaging_pb2.CHANNEL_PUSH, "in_app": messaging_pb2.CHANNEL_IN_APP,
             "webhook": messaging_pb2.CHANNEL_WEBHOOK, "best": messaging_pb2.CHANNEL_BEST}


def _needs_best_time(definition: dict) -> bool:
    return any(s.get("type") == "wait" and s.get("best_send_time") for s in definition.get("steps", []))


def _needs(definition: dict) -> tuple[bool, bool]:
    """Whether running `definition` needs the person's profile (traits, segments) and loyalty status."""
    steps = definition.get("steps", [])
    text = orjson.dumps(steps).decode()
    loyalty = '"loyalty"' in text
    # conditions on opens or event properties need nothing from identity; traits and segments do
    profile = loyalty or definition.get("entry", {}).get("type") == "schedule" or any(
        "until_trait" in s for s in steps) or '"trait"' in text or '"segment"' in text
    return profile, loyalty


class Effects:
    """Performs a step's side effect in the service that owns it, with the step's idempotency key."""

    def __init__(self, identity: str, loyalty: str, messaging: str) -> None:
        self._channels = [make_channel(identity), make_channel(loyalty), make_channel(messaging)]
        self.identity = identity_pb2_grpc.IdentityServiceStub(self._channels[0])
        self.loyalty = loyalty_pb2_grpc.LoyaltyServiceStub(self._channels[1])
        self.messaging = messaging_pb2_grpc.MessagingServiceStub(self._channels[2])
        self.sends = SendBatcher(self.messaging)

    @classmethod
    def from_settings(cls, settings: JourneySettings) -> Effects:
        return cls(settings.identity_target, settings.loyalty_target, settings.messaging_target)

    async def close(self) -> None:
        for channel in self._channels:
            await channel.close()

    async def facts(self, tenant: str, row: asyncpg.Record, definition: dict) -> dict:
        """What conditions look at: entry context, traits (computed ones included), segments, loyalty
        tier and points, the send steps whose message was opened."""
        context = row["context"] or {}
        out = {"context": context, "traits": {}, "segments": set(), "loyalty": {},
               "opened": set(context.get("_opened", []))}
        need_profile, need_loyalty = _needs(definition)
        md, profile = tenant_metadata(tenant), str(row["profile_id"])
        if need_profile:
            try:
                found = (await self.identity.GetProfile(identity_pb2.GetProfileRequest(profile_id=profile),
                                                        metadata=md)).profile
                out["traits"] = {**orjson.loads(found.computed_json or "{}"), **orjson.loads(found.traits_json or "{}")}
                out["segments"] = set(found.segment_ids)
            except grpc.aio.AioRpcError as exc:
                if exc.code() != grpc.StatusCode.NOT_FOUND:
                    raise
        if _needs_best_time(definition):
            try:
                best = await self.messaging.GetBestSendTime(messaging_pb2.GetBestSendTimeRequest(profile_id=profile),
                                                            metadata=md)
                if best.HasField("next_send_at"):
                    out["best_send_at"] = best.next_send_at.ToDatetime(tzinfo=UTC)
            except grpc.aio.AioRpcError as exc:
                if exc.code() not in (grpc.StatusCode.NOT_FOUND, grpc.StatusCode.INVALID_ARGUMENT):
                    raise
        if need_loyalty:
            try:
                member = (await self.loyalty.GetMember(loyalty_pb2.GetMemberRequest(profile_id=profile),
                                                       metadata=md)).member
                out["loyalty"] = {"tier": member.tier.tier_code, "points": member.balance.available,
                                  "qualifying": member.balance.qualifying}
            except grpc.aio.AioRpcError as exc:
                if exc.code() not in (grpc.StatusCode.NOT_FOUND, grpc.StatusCode.INVALID_ARGUMENT):
                    raise
        return out

    async def perform(self, tenant: str, row: asyncpg.Record, effect: engine.Effect, context: dict | None = None
                      ) -> None:
        """Perform `effect`; what it produced that later steps use (an issued coupon) is put into `context`,
        the enrollment's context as of this step, which is also what a send's template sees."""
        md, spec, profile = tenant_metadata(tenant), effect.spec, str(row["profile_id"])
        context = context if context is not None else dict(row["context"] or {})
        if effect.kind == "award_points":
            await self.loyalty.EarnPoints(loyalty_pb2.EarnPointsRequest(
                program_id=spec.get("program_id", ""), profile_id=profile, points=int(spec["points"]),
                reason=spec.get("reason") or "journey", description=f"journey {row['journey_id']}",
                idempotency_key=effect.key), metadata=md)
        elif effect.kind == "issue_coupon":
            coupon = (await self.loyalty.IssueCoupon(loyalty_pb2.IssueCouponRequest(
                campaign_id=spec["campaign_id"], profile_id=profile, source="journey", idempotency_key=effect.key),
                metadata=md)).coupon
            issued = {"code": coupon.code, "campaign_id": coupon.campaign_id,
                      "expires_at": coupon.expires_at.ToDatetime(tzinfo=UTC).isoformat()
                      if coupon.HasField("expires_at") else None}
            # the latest coupon as `coupon`, every coupon by its step as `coupons`, for later sends
            context["coupon"] = issued
            context["coupons"] = {**context.get("coupons", {}), effect.step_id: issued}
        elif effect.kind == "update_profile":
            await self.identity.UpdateProfile(identity_pb2.UpdateProfileRequest(
                profile_id=profile, traits_json=orjson.dumps(spec.get("traits") or {}).decode(),
                add_tags=spec.get("add_tags") or [], remove_tags=spec.get("remove_tags") or [], source="journey",
                idempotency_key=effect.key), metadata=md)
        elif effect.kind in ("send", "webhook"):
            channel = messaging_pb2.CHANNEL_WEBHOOK if effect.kind == "webhook" else _CHANNELS.get(spec.get("channel"),
                                                                                                   0)
            await self.sends.send(tenant, messaging_pb2.SendMessageRequest(
                channel=channel, profile_id=profile, template_id=spec.get("template", ""),
                variables_json=orjson.dumps({**context, **(spec.get("data") or {})}).decode(),
                idempotency_key=effect.key,
                attribution=messaging_pb2.Attribution(journey_id=str(row["journey_id"]), journey_version=row["version"],
                                                      enrollment_id=str(row["id"]), step_id=effect.step_id)))


class Definitions:
    """Published versions never change: cached forever by (tenant, journey, version), as stored (the
    engine walks it) and as parsed by the grammar (its conditions)."""

    def __init__(self) -> None:
        self._cache: dict[tuple, tuple[dict, grammar.Definition]] = {}

    async def get(self, conn: asyncpg.Connection | asyncpg.Pool, tenant, journey_id, version: int
                  ) -> tuple[dict, grammar.Definition]:
        key = (str(tenant), str(journey_id), version)
        if key not in self._cache:
            text = await conn.fetchval("SELECT definition FROM journey_versions WHERE tenant_id = $1 "
                                       "AND journey_id = $2 AND version = $3", tenant, journey_id, version)
            self._cache[key] = (orjson.loads(text), grammar.validate(text).definition)
        return self._cache[key]


_AB_RESULTS = """
    SELECT l.outcome AS variant, count(*) AS entered, count(*) FILTER (WHERE e.converted_at IS NOT NULL) AS converted
    FROM step_log l JOIN enrollments e ON e.tenant_id = l.tenant_id AND e.id = l.enrollment_id
    WHERE l.tenant_id = $1 AND l.journey_id = $2 AND l.version = $3 AND l.step_id = $4 AND l.step_type = 'ab_test'
      AND NOT l.holdout
    GROUP BY 1
"""
AB_REFRESH_SECONDS = 60.0


class Winners:
    """A/B tests decide once `decide_after` has passed since the version was published: the variant
    with the best conversion to the journey's goal (at least one conversion) wins; re-read every
    AB_REFRESH_SECONDS."""

    def __init__(self) -> None:
        self._published: dict[tuple, datetime | None] = {}
        self._cache: dict[tuple, tuple[float, dict[str, str]]] = {}

    async def get(self, pool: asyncpg.Pool, row: asyncpg.Record, definition: dict, now: datetime) -> dict[str, str]:
        tests = [s for s in definition.get("steps", []) if s.get("type") == "ab_test"]
        if not tests:
            return {}
        key = (row["tenant_id"], row["journey_id"], row["version"])
        if key not in self._published:
            self._published[key] = await pool.fetchval(
                "SELECT published_at FROM journey_versions WHERE tenant_id = $1 AND journey_id = $2 AND version = $3",
                *key)
        published = self._published[key]
        due = tuple(s["id"] for s in tests
                    if published is not None and now >= published + parse_duration(s["decide_after"]))
        if not due:
            return {}
        hit = self._cache.get((key, due))
        if hit is not None and time.monotonic() - hit[0] < AB_REFRESH_SECONDS:
            return hit[1]
        winners = {}
        for step_id in due:
            results = await pool.fetch(_AB_RESULTS, *key, step_id)
            best = max(results, key=lambda r: (r["converted"] / r["entered"], r["converted"]), default=None)
            if best is not None and best["converted"] > 0:
                winners[step_id] = best["variant"]
        self._cache[(key, due)] = (time.monotonic(), winners)
        return winners


@dataclass
class Done:
    row: asyncpg.Record
    outcome: engine.Outcome | None = None
    error: str = ""
    hold: bool = False
    context: dict | None = None  # the enrollment's context when a step added to it (an issued coupon)


class Worker:
    def __init__(self, pool: asyncpg.Pool, clock: Clock, effects: Effects, *, batch: int = 500,
                 lease_seconds: float = 60, shards: int = 4) -> None:
        self._pool = pool
        self._shards = shards
        self._clock = clock
        self._effects = effects
        self._batch = batch
        self._lease = lease_seconds
        self._definitions = Definitions()
        self._winners = Winners()
        self.steps_total = 0

    async def run_once(self) -> int:
        """Claim what is due now, run it, save it; the number of enrollments handled."""
        now = self._clock.now()
        async with self._pool.acquire() as conn, conn.transaction():
            rows = await repo.claim(conn, now, self._batch, self._lease)
        if not rows:
            return 0
        for r in rows:
            TIMER_LAG_AT_CLAIM.observe(max((now - r["was_due"]).total_seconds(), 0.0))
        statuses = {(r["tenant_id"], r["id"]): r["status"] for r in await self._pool.fetch(
            "SELECT tenant_id, id, status FROM journeys WHERE (tenant_id, id) IN "
            "(SELECT * FROM unnest($1::uuid[], $2::uuid[]))",
            [r["tenant_id"] for r in rows], [r["journey_id"] for r in rows])}
        gate = asyncio.Semaphore(CONCURRENCY)

        async def one(row: asyncpg.Record) -> Done:
            status = statuses.get((row["tenant_id"], row["journey_id"]), "archived")
            if status == "paused":
                return Done(row, hold=True)
            if status == "archived":
                return Done(row, engine.Outcome(status="exited", exit_reason="archived", step_id=row["step_id"]))
            async with gate:
                # a new trace per step, linked to the event (or API call) that led to it
                link = span_link(row.get("traceparent") or "")
                with _tracer.start_as_current_span("journey step", kind=trace.SpanKind.CONSUMER,
                                                   links=[link] if link else None, attributes={
                                                       "mcloud.enrollment.id": str(row["id"]),
                                                       "mcloud.journey.step_id": row["step_id"]}):
                    return await self._run(row, now)

        done = await asyncio.gather(*(one(r) for r in rows))
        await self._save(done, now)
        return len(rows)

    async def _run(self, row: asyncpg.Record, now: datetime) -> Done:
        definition, parsed = await self._definitions.get(self._pool, row["tenant_id"], row["journey_id"],
                                                         row["version"])
        state = engine.State(str(row["id"]), row["step_id"], row["context"], row["visits"],
                             row["waiting_until"], row["waiting_for"], row["holdout"], row["arrived"])
        try:
            facts = await self._effects.facts(str(row["tenant_id"]), row, definition)
        except grpc.aio.AioRpcError as exc:
            return Done(row, error=f"reading the profile: {exc.code().name} {exc.details()}")
        facts["ab_winners"] = await self._winners.get(self._pool, row, definition, now)
        outcome = engine.advance(definition, state, now, facts, parsed)
        context = dict(row["context"] or {})
        for effect in outcome.effects:
            try:
                await self._effects.perform(str(row["tenant_id"]), row, effect, context)
            except grpc.aio.AioRpcError as exc:
                return Done(row, error=f"{effect.kind} at {effect.step_id}: {exc.code().name} {exc.details()}")
            except SendRefused as exc:
                return Done(row, error=f"{effect.kind} at {effect.step_id}: {exc}")
        return Done(row, outcome, context=context if context != (row["context"] or {}) else None)

    async def _save(self, done: list[Done], now: datetime) -> None:
        ok = [d for d in done if d.outcome is not None]
        failed = [d for d in done if d.error]
        held = [d for d in done if d.hold]
        async with self._pool.acquire() as conn, conn.transaction():
            if ok:
                # one statement for the whole batch; a row whose lease is no longer ours is left alone. The lease
                # check is IS NOT DISTINCT FROM, not =: with `=` the planner may look rows up by due_at, and a
                # claimed batch shares one lease end, so each of its rows scanned the whole batch (or, with
                # leases that coincide, far more: 12 minutes per 2,000 rows at 1,000,000 enrollments)
                cols = list(zip(*[(d.row["tenant_id"], d.row["id"], d.outcome.status, d.outcome.step_id,
                                   orjson.dumps(d.outcome.visits).decode(),
                                   d.outcome.due_at if d.outcome.status == "active" else None,
                                   d.outcome.waiting_until, d.outcome.waiting_for, d.outcome.exit_reason,
                                   None if d.outcome.status == "active" else now, d.row["due_at"],
                                   None if d.context is None else orjson.dumps(d.context).decode()) for d in ok],
                                 strict=True))
                await conn.execute(
                    """
                    UPDATE enrollments e SET status = u.status, step_id = u.step_id, visits = u.visits::jsonb,
                        due_at = u.due_at, waiting_until = u.waiting_until, waiting_for = u.waiting_for,
                        exit_reason = u.exit_reason, ended_at = u.ended_at, attempts = 0, last_error = '',
                        arrived = false, updated_at = $13, context = coalesce(u.context::jsonb, e.context)
                    FROM unnest($1::uuid[], $2::uuid[], $3::text[], $4::text[], $5::text[], $6::timestamptz[],
                                $7::timestamptz[], $8::text[], $9::text[], $10::timestamptz[], $11::timestamptz[],
                                $12::text[])
                         AS u(tenant_id, id, status, step_id, visits, due_at, waiting_until, waiting_for, exit_reason,
                              ended_at, leased, context)
                    WHERE e.tenant_id = u.tenant_id AND e.id = u.id AND e.status = 'active'
                      AND e.due_at IS NOT DISTINCT FROM u.leased
                    """, *[list(c) for c in cols], now)
                rows = [(d.row["tenant_id"], (d.row["id"], d.row["journey_id"], d.row["version"], step, kind, result,
                                              d.row["holdout"]))
                        for d in ok for step, kind, result in d.outcome.log]
                by_tenant: dict = {}
                for tenant, r in rows:
                    by_tenant.setdefault(tenant, []).append(r)
                for tenant, r in by_tenant.items():
                    await repo.log(conn, tenant, r, now)
                self.steps_total += len(rows)
                ended = [journey_events.exited_event(
                    str(d.row["tenant_id"]), d.row, d.outcome.exit_reason or d.outcome.status, d.outcome.step_id, now)
                    for d in ok if d.outcome.status != "active"]
                await enqueue(conn, ended, producer="journey", shards=self._shards)
            for d in failed:
                attempts = d.row["attempts"] + 1
                give_up = attempts >= MAX_ATTEMPTS
                log.warning("journey step failed", enrollment_id=str(d.row["id"]), attempts=attempts, error=d.error)
                await conn.execute(
                    """
                    UPDATE enrollments SET attempts = $3, last_error = $4, due_at = $5, updated_at = $6,
                        status = CASE WHEN $7 THEN 'exited' ELSE status END,
                        exit_reason = CASE WHEN $7 THEN 'error' ELSE exit_reason END,
                        ended_at = CASE WHEN $7 THEN $6 ELSE ended_at END
                    WHERE tenant_id = $1 AND id = $2 AND status = 'active' AND due_at = $8
                    """, d.row["tenant_id"], d.row["id"], attempts, d.error[:1000],
                    None if give_up else now + repo.backoff(attempts), now, give_up, d.row["due_at"])
                if give_up:
                    await enqueue(conn, [journey_events.exited_event(str(d.row["tenant_id"]), d.row, "error",
                                                                     d.row["step_id"], now)],
                                  producer="journey", shards=self._shards)
            if held:  # a paused journey: look again in a minute
                await conn.executemany(
                    "UPDATE enrollments SET due_at = $3 WHERE tenant_id = $1 AND id = $2 AND due_at = $4",
                    [(d.row["tenant_id"], d.row["id"], now + repo.backoff(2), d.row["due_at"]) for d in held])


async def install(runtime: Runtime, settings: JourneySettings) -> None:
    """Run the worker every 200 ms (it drains what is due each time); it stops with `runtime`."""
    effects = Effects.from_settings(settings)
    worker = Worker(runtime.pool, runtime.clock, effects, batch=settings.worker_batch,
                    lease_seconds=settings.worker_lease_seconds, shards=settings.stream_shards)

    async def drain() -> None:
        while await worker.run_once():
            pass

    runtime.every(0.2, drain, name="journey-worker")
