"""The send pipeline: claim due messages, check policies at send time, render, hand to providers,
record what happened. Any number of senders (in any number of processes) share the queue.

One batch = one claim (SKIP LOCKED) -> per tenant: load people, channels, suppressions and cap counts
with a handful of set-based reads -> decide each message -> render and dispatch concurrently, holding
no database connection -> one UPDATE for every outcome plus one outbox insert, in one transaction.

A sender killed after a provider accepted a message but before the outcome was written sends that
message again when its lease ends; it carries the same Message-ID (<message id@mcloud>) so receivers
and providers can drop the copy. That window is a few milliseconds per batch; closing it fully would
need two-phase commit with the provider.
"""

from __future__ import annotations

import asyncio
from collections import defaultdict
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Any

import asyncpg
import orjson

from mcloud.events.v1 import messaging_events_pb2 as ev
from mcloud_common.clock import Clock
from mcloud_common.errors import NotFound, Unavailable
from mcloud_common.logs import get_logger
from mcloud_common.runtime import Runtime
from messaging.domain import policies
from messaging.domain.names import CHANNELS
from messaging.domain.templates import Renderer, TemplateError, choose_variant
from messaging.domain.tracking import Links, track_html
from messaging.providers import Dispatcher, Outgoing, PermanentFailure, TemporaryFailure
from messaging.repo import channels as channel_repo
from messaging.repo import contacts as contact_repo
from messaging.repo import inbox as inbox_repo
from messaging.repo import messages as message_repo
from messaging.repo import preferences as preference_repo
from messaging.repo import suppressions as suppression_repo
from messaging.repo import templates as template_repo
from messaging.repo.events import envelope, message_ref, publish
from messaging.settings import MessagingSettings

log = get_logger(__name__)

# the order CHANNEL_BEST tries channels in when the person's engagement does not decide
BEST_ORDER = ("email", "push", "sms", "in_app")
NO_PROFILE = "00000000-0000-0000-0000-000000000000"  # the profile of a test send to an address only


@dataclass(slots=True)
class Outcome:
    """What became of one claimed message; written back in one statement per batch."""

    row: Mapping[str, Any]
    status: str = "queued"
    channel: str | None = None
    address: str = ""
    locale: str = ""
    template_version: int = 0
    provider: str = ""
    provider_message_id: str = ""
    error: str = ""
    block_reason: str = ""
    block_detail: str = ""
    due_at: datetime | None = None
    attempts_back: int = 0  # a hold is not an attempt
    hard_bounce: bool = False
    inbox: dict | None = None
    contact: policies.Contact | None = None
    pref: policies.Preferences | None = None
    config: Any = None
    version: Any = None
    setup: Any = None  # the channel's providers (messaging.providers.ChannelSetup), built once per batch


class Sender:
    def __init__(self, pool: asyncpg.Pool, clock: Clock, settings: MessagingSettings, identity,
                 dispatcher: Dispatcher) -> None:
        self._pool = pool
        self._clock = clock
        self._settings = settings
        self._identity = identity
        self._dispatcher = dispatcher
        self._renderer = Renderer()
        self._links = Links(settings.tracking_secret.get_secret_value().encode(), settings.public_url)
        self._slots = asyncio.Semaphore(settings.send_concurrency)

    async def run_once(self) -> int:
        """Claim and handle one batch; the number of messages handled (0 when nothing was due)."""
        now = self._clock.now()
        async with self._pool.acquire() as conn:
            rows = await message_repo.claim(conn, now=now, limit=self._settings.send_batch,
                                            lease_seconds=self._settings.send_lease_seconds)
        if not rows:
            return 0
        by_tenant: dict[str, list[asyncpg.Record]] = defaultdict(list)
        for r in rows:
            by_tenant[str(r["tenant_id"])].append(r)
        await asyncio.gather(*(self._tenant_batch(t, rs) for t, rs in by_tenant.items()))
        return len(rows)

    async def drain(self) -> int:
        """Handle batches until nothing is due (tests and benches)."""
        total = 0
        while n := await self.run_once():
            total += n
        return total

    async def _tenant_batch(self, tenant: str, rows: Sequence[asyncpg.Record]) -> None:
        now = self._clock.now()
        try:
            plans = await self._plan(tenant, rows, now)
        except Unavailable as exc:  # identity unreachable for someone we know nothing of: try again later
            log.warning("contacts unavailable, batch postponed", tenant=tenant, error=exc.detail)
            plans = [Outcome(row=r, error=exc.detail,
                             due_at=now + message_repo.retry_delay(r["attempts"], self._settings.retry_base_seconds))
                     for r in rows]
        # Outcomes are written as deliveries finish (each write takes whatever finished meanwhile), not once
        # for the batch: a sender killed mid-batch resends only the few accepted in the last moments, not
        # every message of the batch a provider had already taken.
        recorder = _Recorder(self, tenant, now)
        recorder.add([o for o in plans if o.status != "sending"])

        async def deliver(o: Outcome) -> None:
            await self._deliver(tenant, o, now)
            recorder.add([o])

        try:
            await asyncio.gather(*(deliver(o) for o in plans if o.status == "sending"))
        finally:
            await recorder.close()

    async def _plan(self, tenant: str, rows: Sequence[asyncpg.Record], now: datetime) -> list[Outcome]:
        pids = sorted({str(r["profile_id"]) for r in rows})
        async with self._pool.acquire() as conn:
            # people known only from identity's events (or not at all) are completed from GetProfile
            contacts = await contact_repo.fill_contacts(conn, self._identity, tenant,
                                                        [p for p in pids if p != NO_PROFILE])
            prefs = await preference_repo.load_preferences(conn, tenant, pids)
            configs = {c: await channel_repo.get_channel(conn, tenant, c) for c in CHANNELS}
            setups = {c: config.setup() for c, config in configs.items() if config is not None and c != "in_app"}
            engagement = await _engagement(conn, tenant, [str(r["profile_id"]) for r in rows
                                                         if r["requested_channel"] == "best"])
            outcomes: list[Outcome] = []
            for r in rows:
                pid = str(r["profile_id"])
                contact, pref = contacts.get(pid), prefs.get(pid)
                channel = r["requested_channel"]
                if channel == "best":
                    candidates = [c for c in BEST_ORDER if c == "in_app" or (configs[c] and configs[c].enabled)]
                    channel = policies.best_channel(candidates=candidates, contact=contact, prefs=pref,
                                                    engagement=engagement.get(pid)) or "email"
                o = Outcome(row=r, channel=channel, contact=contact, pref=pref, config=configs.get(channel),
                            setup=setups.get(channel))
                if r["to_override"]:  # test sends go to the given address
                    o.address = r["to_override"]
                elif contact is not None:
                    o.address = contact.address(channel) or ""
                outcomes.append(o)
            versions: dict[tuple[str, int], Any] = {}
            for key in {(str(r["template_id"]), r["template_version"]) for r in rows}:
                try:
                    versions[key] = await template_repo.get_version(conn, tenant, *key)
                except NotFound as exc:
                    versions[key] = exc
            suppressed = await suppression_repo.suppressed(
                conn, tenant, [(str(o.row["profile_id"]), o.channel, o.address) for o in outcomes])
            counts = await _cap_counts(conn, tenant, outcomes, configs, contacts, prefs, now,
                                       self._settings)
        seen: dict[tuple[str, str], int] = defaultdict(int)  # sends planned in this batch, for caps
        for o in outcomes:
            r, pid = o.row, str(o.row["profile_id"])
            config = configs.get(o.channel)
            if o.channel != "in_app" and (config is None or not config.enabled):
                self._block(o, "dropped", "channel_disabled", f"{o.channel} is not configured or is disabled", now)
                continue
            o.version = versions[(str(r["template_id"]), r["template_version"])]
            if isinstance(o.version, NotFound):
                self._block(o, "dropped", "template_error", o.version.detail, now)
                continue
            contact = contacts.get(pid)
            if r["to_override"]:
                contact = policies.Contact(profile_id=pid, email=o.address, phone=o.address,
                                           push_tokens=(o.address,), webhook_url=o.address)
            key = (pid, o.channel)
            window = {h: n + seen[key] for h, n in counts.get(key, {}).items()}
            decision = policies.decide(
                channel=o.channel, transactional=r["transactional"], quiet_behavior=r["quiet_hours_behavior"],
                now=now, contact=contact, prefs=prefs.get(pid),
                suppression=suppressed.get((pid, o.channel, o.address)),
                caps=config.caps if config is not None else (), sent_in_window=window)
            if decision.action == "block":
                self._block(o, decision.status, decision.reason, decision.detail, now)
            elif decision.action == "hold":
                o.due_at, o.attempts_back, o.channel = decision.until, 1, None
            else:
                o.status = "sending"
                seen[key] += 1
        return outcomes

    def _block(self, o: Outcome, status: str, reason: str, detail: str, now: datetime) -> None:
        o.status, o.block_reason, o.block_detail = status, reason, detail

    async def _deliver(self, tenant: str, o: Outcome, now: datetime) -> None:
        r = o.row
        async with self._slots:
            try:
                out = await self._render(tenant, o)
                if o.channel == "in_app":
                    o.status, o.provider = "sent", "inbox"
                    return
                delivery = await self._dispatcher.send(tenant, o.setup, out)
                o.status, o.provider, o.provider_message_id = "sent", delivery.provider, delivery.provider_message_id
            except TemplateError as exc:
                self._block(o, "dropped", "template_error", str(exc)[:500], now)
            except TemporaryFailure as exc:
                o.error = str(exc)[:500] or type(exc).__name__
                if r["attempts"] >= self._settings.max_attempts:
                    o.status = "failed"
                else:
                    o.status = "queued"
                    o.due_at = now + message_repo.retry_delay(r["attempts"], self._settings.retry_base_seconds,
                                                              getattr(exc, "retry_after", None))
            except PermanentFailure as exc:
                o.error = str(exc)[:500] or type(exc).__name__
                o.hard_bounce = bool(getattr(exc, "hard_bounce", False))
                o.status = "bounced" if o.hard_bounce else "failed"
            except Exception as exc:  # a bug must not wedge the queue: retry, then dead-letter with the reason
                log.exception("send failed unexpectedly", tenant=tenant, message_id=str(r["id"]))
                o.error = f"internal: {type(exc).__name__}"
                o.status = "failed" if r["attempts"] >= self._settings.max_attempts else "queued"
                o.due_at = now + message_repo.retry_delay(r["attempts"], self._settings.retry_base_seconds)

    async def _render(self, tenant: str, o: Outcome) -> Outgoing:
        r = o.row
        mid, pid = str(r["id"]), str(r["profile_id"])
        version, contact, pref = o.version, o.contact, o.pref
        locale = r["locale"] or policies.locale_of(contact, pref)
        variant = choose_variant(version, locale)
        unsubscribe = self._links.unsubscribe(tenant, pid, mid, o.channel)
        preferences = self._links.preferences(tenant, pid, mid, o.channel)
        variables = dict(r["variables"] or {})
        given = variables.get("profile")
        profile = dict(given) if isinstance(given, dict) else {}  # sample data of a test send
        if contact is not None:
            profile.update(contact.traits)
            profile.update({"id": pid, "email": contact.email or "", "phone": contact.phone or ""})
        variables.update(profile=profile, message={"id": mid}, links={"unsubscribe": unsubscribe,
                                                                        "preferences": preferences})
        rendered = self._renderer.render(version, variant, variables)
        o.locale, o.template_version = rendered.locale, version.version
        data = orjson.loads(rendered.data_json) if rendered.data_json.strip() else {}
        subject = ("[TEST] " if r["test"] else "") + rendered.subject
        if o.channel == "in_app":
            o.inbox = {"title": rendered.title or rendered.subject, "body": rendered.body_text,
                       "image_url": str(data.get("image_url", "")), "link_url": str(data.get("link_url", "")),
                       "data": data}
            return Outgoing(message_id=mid, tenant_id=tenant, channel="in_app", to="")
        headers: dict[str, str] = {}
        html = rendered.body_html
        if o.channel == "email":
            if html:
                html = track_html(html, self._links, tenant, mid)
            if not r["transactional"]:
                headers = {"List-Unsubscribe": f"<{unsubscribe}>",
                           "List-Unsubscribe-Post": "List-Unsubscribe=One-Click"}
        return Outgoing(message_id=mid, tenant_id=tenant, channel=o.channel, to=o.address, subject=subject,
                        body_text=rendered.body_text, body_html=html, title=rendered.title, data=data, headers=headers)

    async def _record(self, conn: asyncpg.Connection, tenant: str, outcomes: Sequence[Outcome], now: datetime) -> None:
        events = []
        async with conn.transaction():
            for o in outcomes:
                if o.status == "sent" and o.inbox is not None:
                    await inbox_repo.add(conn, tenant, message_id=str(o.row["id"]), profile_id=str(o.row["profile_id"]),
                                         now=now, expires_at=None, **o.inbox)
                if o.status == "bounced" and o.hard_bounce and o.address:
                    await suppression_repo.add_suppression(conn, tenant, channel=o.channel, address=o.address,
                                                           reason="hard_bounce", detail=o.error, now=now)
            updated = await conn.fetch(_RECORD, tenant, now, *_columns(outcomes))
            for r in updated:
                events.extend(_events(tenant, r, now))
            await publish(conn, events, self._settings.stream_shards)


class _Recorder:
    """Writes finished outcomes in the background, one transaction per flush with all that finished since
    the last one (micro-batches under load, one message at a time when sends trickle in)."""

    def __init__(self, sender: Sender, tenant: str, now: datetime) -> None:
        self._sender, self._tenant, self._now = sender, tenant, now
        self._pending: list[Outcome] = []
        self._wake = asyncio.Event()
        self._closing = False
        self._task = asyncio.create_task(self._run())

    def add(self, outcomes: Sequence[Outcome]) -> None:
        if outcomes:
            self._pending.extend(outcomes)
            self._wake.set()

    async def close(self) -> None:
        """Write what is left; raises what a write raised."""
        self._closing = True
        self._wake.set()
        await self._task

    async def _run(self) -> None:
        while True:
            await self._wake.wait()
            self._wake.clear()
            if self._pending:
                batch, self._pending = self._pending, []
                async with self._sender._pool.acquire() as conn:
                    await self._sender._record(conn, self._tenant, batch, self._now)
            elif self._closing:
                return
            if self._closing:
                self._wake.set()  # drain what arrived during the write, then stop


_RECORD = """
    UPDATE messages m SET
        status = x.status,
        channel = coalesce(x.channel, m.channel),
        address = coalesce(nullif(x.address, ''), m.address),
        locale = coalesce(nullif(x.locale, ''), m.locale),
        template_version = CASE WHEN x.template_version > 0 THEN x.template_version ELSE m.template_version END,
        provider = coalesce(nullif(x.provider, ''), m.provider),
        provider_message_id = coalesce(nullif(x.provider_message_id, ''), m.provider_message_id),
        error = x.error,
        block_reason = x.block_reason,
        block_detail = x.block_detail,
        due_at = coalesce(x.due_at, m.due_at),
        attempts = m.attempts - x.attempts_back,
        lease_until = NULL,
        sent_at = CASE WHEN x.status = 'sent' THEN $2 ELSE m.sent_at END,
        ended_at = CASE WHEN x.status IN ('bounced', 'failed', 'suppressed', 'dropped') THEN $2 ELSE m.ended_at END
    FROM unnest($3::uuid[], $4::int[], $5::text[], $6::text[], $7::text[], $8::text[], $9::int[], $10::text[],
                $11::text[], $12::text[], $13::text[], $14::text[], $15::timestamptz[], $16::int[], $17::bool[])
         AS x(id, attempts, status, channel, address, locale, template_version, provider, provider_message_id, error,
              block_reason, block_detail, due_at, attempts_back, hard_bounce)
    WHERE m.tenant_id = $1 AND m.id = x.id AND m.status = 'queued' AND m.attempts = x.attempts
    RETURNING m.*, x.hard_bounce AS hard_bounce
"""


def _columns(outcomes: Sequence[Outcome]) -> list[list]:
    rows = [(o.row["id"], o.row["attempts"], "queued" if o.status == "sending" else o.status, o.channel, o.address,
             o.locale, o.template_version, o.provider, o.provider_message_id, o.error, o.block_reason,
             o.block_detail, o.due_at, o.attempts_back, o.hard_bounce) for o in outcomes]
    return [list(c) for c in zip(*rows, strict=True)]


def _events(tenant: str, r: Mapping[str, Any], now: datetime) -> list:
    pid, ref, status = str(r["profile_id"]), message_ref(r), r["status"]
    if status == "sent":
        return [envelope(tenant, "message.sent", pid, ev.MessageSent(
            message=ref, provider=r["provider"], provider_message_id=r["provider_message_id"], attempt=r["attempts"]),
            at=now)]
    if status in ("suppressed", "dropped"):
        return [envelope(tenant, "message.dropped", pid, ev.MessageDropped(
            message=ref, status=status, block_reason=r["block_reason"]), at=now)]
    if status == "bounced":
        return [envelope(tenant, "message.bounced", pid, ev.MessageBounced(
            message=ref, hard_bounce=bool(r["hard_bounce"]), detail=r["error"]), at=now)]
    if status == "failed":
        return [envelope(tenant, "message.failed", pid, ev.MessageFailed(
            message=ref, error=r["error"] or r["block_detail"], attempts=r["attempts"]), at=now)]
    return []


async def _engagement(conn: asyncpg.Connection, tenant: str, pids: Sequence[str]) -> dict[str, dict[str, int]]:
    """Opens + 2 x clicks per channel for the people sent on their best channel."""
    if not pids:
        return {}
    rows = await conn.fetch("""
        SELECT profile_id, channel, sum(opens + 2 * clicks)::int AS score FROM engagement
        WHERE tenant_id = $1 AND profile_id = ANY($2::uuid[]) GROUP BY profile_id, channel""", tenant, list(set(pids)))
    out: dict[str, dict[str, int]] = defaultdict(dict)
    for r in rows:
        out[str(r["profile_id"])][r["channel"]] = r["score"]
    return out


async def _cap_counts(conn: asyncpg.Connection, tenant: str, outcomes: Sequence[Outcome],
                      configs: Mapping[str, Any], contacts, prefs, now: datetime,
                      settings: MessagingSettings) -> dict[tuple[str, str], dict[int, int]]:
    """Marketing messages each person got on each capped channel in the current window of each cap
    (windows in the person's calendar): one read per capped channel, since the start of each person's
    longest window, counted per cap here."""
    out: dict[tuple[str, str], dict[int, int]] = defaultdict(dict)
    for channel, config in configs.items():
        if config is None or not config.caps:
            continue
        pids = sorted({str(o.row["profile_id"]) for o in outcomes
                       if o.channel == channel and not o.row["transactional"]})
        if not pids:
            continue
        starts = {p: {cap.window_hours: policies.cap_window_start(
            now, policies.zone_of(contacts.get(p), prefs.get(p)), cap.window_hours) for cap in config.caps}
            for p in pids}
        rows = await conn.fetch("""
            SELECT x.pid AS profile_id, m.sent_at
            FROM unnest($3::uuid[], $4::timestamptz[]) AS x(pid, since)
            JOIN messages m ON m.tenant_id = $1 AND m.profile_id = x.pid AND m.channel = $2
                            AND m.sent_at >= x.since AND NOT m.transactional""",
            tenant, channel, pids, [min(starts[p].values()) for p in pids])
        sent: dict[str, list[datetime]] = defaultdict(list)
        for r in rows:
            sent[str(r["profile_id"])].append(r["sent_at"])
        for p in pids:
            out[(p, channel)] = {hours: sum(1 for at in sent.get(p, ()) if at >= since)
                                 for hours, since in starts[p].items()}
    return out


async def install(runtime: Runtime, settings: MessagingSettings, *, identity, **_kw) -> Sender:
    """Start a sender loop on this process: it works through due messages as fast as they come and
    polls every `send_interval_seconds` when idle."""
    dispatcher = Dispatcher(runtime.redis, clock=runtime.clock, smtp_pool_size=settings.smtp_connections)
    sender = Sender(runtime.pool, runtime.clock, settings, identity, dispatcher)
    running = settings.send_loops

    async def loop() -> None:
        nonlocal running
        try:
            while not runtime.closing:
                try:
                    if await sender.run_once():
                        continue
                except Exception:
                    log.exception("sender batch failed")
                await asyncio.sleep(settings.send_interval_seconds)
        finally:
            running -= 1
            if running == 0:
                await dispatcher.close()

    # several loops claim separate batches (SKIP LOCKED): one renders and records while another waits on
    # providers, so neither the database nor the providers sit idle
    for i in range(settings.send_loops):
        runtime.tasks.append(asyncio.create_task(loop(), name=f"messaging-sender-{i}"))
    return sender
