"""messaging-svc figures: personalised emails/s delivered into a local SMTP server, and the send
queue's throughput with policies on (frequency caps counted, quiet-hours preferences and suppressions
looked up for everyone), next to this machine's raw ceiling: the same SMTP server fed directly by
aiosmtplib at the same concurrency (no queue, no templates, no policies).

    python -m bench.messaging [--emails 20000] [--people 5000] [--batch 1000]

The SMTP server runs in its own process (aiosmtpd) and only counts what it receives, so the figure is
what a real relay on this machine could take. Messages go in through SendMessages (1,000 per call, as
journeys and campaigns do), all scheduled for one moment after they are queued; emails/s is the drain:
from that moment until the SMTP server has received them all. Queueing (accepted/s) is reported apart.
"""

from __future__ import annotations

import argparse
import asyncio
import multiprocessing as mp
import tempfile
import time
import uuid
from datetime import UTC, datetime, timedelta
from email.message import EmailMessage
from pathlib import Path

import aiosmtplib
import asyncpg
import orjson

from bench.common import create_tenant, write_section
from mcloud.messaging.v1 import messaging_pb2 as pb
from mcloud.messaging.v1 import messaging_pb2_grpc
from mcloud_cli.stack import start_stack
from mcloud_common.db import asyncpg_dsn
from mcloud_common.embedded import free_port
from mcloud_common.grpc_client import make_channel, tenant_metadata
from mcloud_common.timestamps import to_timestamp


def _sink(port: int, counter, ready) -> None:  # pragma: no cover - runs in a child process
    from aiosmtpd.smtp import SMTP

    class Counter:
        async def handle_DATA(self, server, session, envelope):
            with counter.get_lock():
                counter.value += 1
            return "250 OK"

    async def serve() -> None:
        loop = asyncio.get_running_loop()
        server = await loop.create_server(lambda: SMTP(Counter()), "127.0.0.1", port)
        ready.set()
        async with server:
            await server.serve_forever()

    asyncio.run(serve())


class Sink:
    """An SMTP server in its own process that counts received messages."""

    def __init__(self) -> None:
        self.port = free_port()
        self.counter = mp.Value("l", 0)
        ready = mp.Event()
        self.process = mp.Process(target=_sink, args=(self.port, self.counter, ready), daemon=True)
        self.process.start()
        ready.wait(30)

    @property
    def received(self) -> int:
        return self.counter.value

    def close(self) -> None:
        self.process.terminate()


async def raw_ceiling(port: int, n: int, concurrency: int) -> float:
    """Emails/s straight from aiosmtplib into the sink on `concurrency` kept-open connections."""
    clients = [aiosmtplib.SMTP(hostname="127.0.0.1", port=port) for _ in range(concurrency)]
    for c in clients:
        await c.connect()
    todo = iter(range(n))

    msg = EmailMessage()
    msg["From"], msg["To"], msg["Subject"] = "shop@example.com", "p@example.com", "Hello"
    msg.set_content("Hi person")
    msg.add_alternative("<p>Hi person</p>", subtype="html")
    raw = msg.as_bytes()  # built once: the ceiling is the SMTP conversation, not MIME building

    async def worker(client: aiosmtplib.SMTP) -> None:
        for i in todo:
            await client.sendmail("shop@example.com", [f"p{i}@example.com"], raw)

    t = time.perf_counter()
    await asyncio.gather(*(worker(c) for c in clients))
    elapsed = time.perf_counter() - t
    for c in clients:
        await c.quit()
    return n / elapsed


TEMPLATE = pb.Template(
    name="Double-11 early access", channel=pb.CHANNEL_EMAIL, default_locale="en",
    variants=[pb.TemplateVariant(
        locale="en", subject="{{ profile.first_name }}, your early access starts now",
        body_html="<p>Hi {{ profile.first_name }},</p><p>Use <b>{{ coupon.code }}</b> before 11.11.</p>"
                  "<p><a href=\"https://shop.example.com/d11?u={{ profile.id }}\">Shop now</a></p>"
                  "<p><a href=\"{{ links.unsubscribe }}\">Unsubscribe</a></p>"),
        pb.TemplateVariant(
        locale="zh-CN", subject="{{ profile.first_name }}，您的双11提前购已开启",
        body_html="<p>{{ profile.first_name }}，您好</p><p>优惠码 <b>{{ coupon.code }}</b></p>"
                  "<p><a href=\"https://shop.example.com/d11\">立即选购</a></p>")])


async def seed_people(db_url: str, tenant: str, people: int, policies: bool) -> list[str]:
    """Contacts for `people` people (as identity's events would leave them) and, with `policies`,
    everyone's preferences (quiet hours outside the run's time) so every policy is looked up."""
    ids = [str(uuid.uuid4()) for _ in range(people)]
    conn = await asyncpg.connect(asyncpg_dsn(db_url))
    try:
        await conn.copy_records_to_table(
            "contacts", columns=["tenant_id", "profile_id", "email", "locale", "timezone", "traits", "synced_at"],
            records=[(uuid.UUID(tenant), uuid.UUID(p), f"p{i}@example.com", "zh-CN" if i % 2 else "en",
                      "Asia/Shanghai", orjson.dumps({"first_name": f"Runner{i}"}).decode(),
                      datetime.now(UTC)) for i, p in enumerate(ids)])
        if policies:
            await conn.execute("""
                INSERT INTO preferences (tenant_id, profile_id, channels, quiet_enabled, quiet_start_minute,
                                         quiet_end_minute, updated_at)
                SELECT $1, p, '{"email": true}', true, 1439, 0, now() FROM unnest($2::uuid[]) AS p""",
                tenant, ids)
    finally:
        await conn.close()
    return ids


async def run(stub, md, sink: Sink, db_url: str, people: list[str], emails: int, batch: int, tag: str) -> dict:
    """Queue `emails` messages (all scheduled for one moment after the queueing is done, as a campaign
    or a journey step hands over its audience), then time the queue draining into the SMTP server."""
    template = (await stub.UpsertTemplate(pb.UpsertTemplateRequest(template=TEMPLATE), metadata=md)).template
    start_count = sink.received
    due = datetime.now(UTC) + timedelta(seconds=15 + emails / 1000)
    at = to_timestamp(due)
    t0 = time.perf_counter()
    for start in range(0, emails, batch):
        await stub.SendMessages(pb.SendMessagesRequest(messages=[pb.SendMessageRequest(
            profile_id=people[i % len(people)], template_id=template.id, idempotency_key=f"{tag}-{i}",
            variables_json=orjson.dumps({"coupon": {"code": f"D11-{i:06d}"}}).decode(), scheduled_at=at)
            for i in range(start, min(start + batch, emails))]), metadata=md)
    accepted = time.perf_counter() - t0
    wait = (due - datetime.now(UTC)).total_seconds()
    if wait > 0:
        await asyncio.sleep(wait)
    t1 = time.perf_counter()
    deadline = t1 + 600
    while sink.received - start_count < emails and time.perf_counter() < deadline:  # noqa: ASYNC110 (another process)
        await asyncio.sleep(0.1)
    elapsed = time.perf_counter() - t1
    delivered = sink.received - start_count
    conn = await asyncpg.connect(asyncpg_dsn(db_url))
    try:
        statuses = dict(await conn.fetch("SELECT status, count(*) FROM messages WHERE idempotency_key LIKE $1 "
                                         "GROUP BY status", f"{tag}-%"))
    finally:
        await conn.close()
    return {"emails": emails, "delivered": delivered, "seconds": round(elapsed, 2),
            "emails_per_s": round(delivered / elapsed, 1), "accept_per_s": round(emails / accepted, 1),
            "accept_seconds": round(accepted, 2), "statuses": statuses}


async def main_async(args: argparse.Namespace) -> dict:
    sink = Sink()
    home = Path(tempfile.mkdtemp(prefix="mcloud-bench-"))
    try:
        with start_stack(home / "mcloud") as stack:
            keys = create_tenant(stack.home, f"bench-{uuid.uuid4().hex[:6]}")
            tenant = keys["tenant_id"]
            md = tenant_metadata(tenant)
            stub = messaging_pb2_grpc.MessagingServiceStub(make_channel(stack.grpc_address("messaging"),
                                                                        default_timeout=60))
            await stub.ConfigureChannel(pb.ConfigureChannelRequest(config=pb.ChannelConfig(
                channel=pb.CHANNEL_EMAIL, provider="smtp", enabled=True,
                settings_json=orjson.dumps({"host": "127.0.0.1", "port": sink.port,
                                            "from_email": "news@shop.example.com", "from_name": "Shop"}).decode())),
                metadata=md)
            db_url = stack.database_url("messaging")
            people = await seed_people(db_url, tenant, args.people, policies=False)
            plain = await run(stub, md, sink, db_url, people, args.emails, args.batch, "plain")
            # policies on: caps (counted per person per send), everyone's preferences and quiet hours looked up
            await stub.ConfigureChannel(pb.ConfigureChannelRequest(config=pb.ChannelConfig(
                channel=pb.CHANNEL_EMAIL, provider="smtp", enabled=True,
                settings_json=orjson.dumps({"host": "127.0.0.1", "port": sink.port,
                                            "from_email": "news@shop.example.com"}).decode(),
                frequency_caps=[pb.FrequencyCap(max_messages=1000, window_hours=24),
                                pb.FrequencyCap(max_messages=5000, window_hours=168)])), metadata=md)
            people2 = await seed_people(db_url, tenant, args.people, policies=True)
            await asyncio.sleep(2.5)  # the channel cache's TTL, so the caps are in force
            with_policies = await run(stub, md, sink, db_url, people2, args.emails, args.batch, "policies")
            # measured last: its client connections leave ports in TIME_WAIT that a starting stack could pick
            ceiling = await raw_ceiling(sink.port, min(args.emails, 10_000), 64)
    finally:
        sink.close()
    return {"raw_smtp_ceiling_per_s": round(ceiling, 1), "plain": plain, "policies": with_policies}


def row(name: str, r: dict, ceiling: float) -> str:
    return (f"| {name} | {r['emails']} | {r['delivered']} | {r['emails_per_s']} | {r['emails_per_s'] / ceiling:.2f} "
            f"| {r['accept_per_s']} |")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--emails", type=int, default=20_000)
    parser.add_argument("--people", type=int, default=5_000)
    parser.add_argument("--batch", type=int, default=1000)
    args = parser.parse_args()
    data = asyncio.run(main_async(args))
    plain, pol, ceiling = data["plain"], data["policies"], data["raw_smtp_ceiling_per_s"]
    markdown = f"""
| run | emails | delivered | emails/s | ratio to raw SMTP ceiling | accepted/s (SendMessages) |
|---|---|---|---|---|---|
{row("personalised (2 locales, tracked links)", plain, ceiling)}
{row("+ policies (caps, preferences, quiet hours)", pol, ceiling)}

Raw ceiling: aiosmtplib straight into the same SMTP server, 64 connections: **{ceiling} emails/s**.
Target: >= 1,000 personalised emails/s (listmonk reports ~50k/min = 833/s on production SMTP).
"""
    write_section("messaging", markdown, data)
    print(orjson.dumps(data, option=orjson.OPT_INDENT_2).decode())


if __name__ == "__main__":
    main()
