"""A service killed (SIGKILL) in the middle of its work: `mcloud up` restarts it and the system recovers by
itself. Identity during batch ingest: every event the API accepted is stored exactly once. Messaging during a
campaign: every recipient gets the email once."""

from __future__ import annotations

import asyncio
import time
import uuid
from collections import Counter, defaultdict

import httpx

from messaging.testing import SmtpSink

from .conftest import SEND_CONCURRENCY, Storefront, assert_stored_once, eventually, fetchval, stored_events, track


async def test_identity_killed_during_batch_ingest_loses_and_duplicates_no_accepted_event(stack, new_tenant):
    tenant = new_tenant("crash-ingest")
    async with httpx.AsyncClient(base_url=stack.gateway_url, auth=(tenant["write_key"], ""), timeout=15) as sdk:
        shop = Storefront(sdk)
        deadline = time.monotonic() + 90
        batches = [[track(f"u{b % 7}-{i}", sku=f"sku-{i}") for i in range(50)] for b in range(40)]
        queue: asyncio.Queue = asyncio.Queue()
        for b in batches:
            queue.put_nowait(b)

        async def worker():
            while not queue.empty():
                assert await shop.send(queue.get_nowait(), deadline=deadline)

        workers = [asyncio.create_task(worker()) for _ in range(4)]
        await eventually(lambda: shop.accepted_batches >= 8, timeout=30)
        killed = stack.kill("identity")
        await asyncio.gather(*workers)
        await asyncio.to_thread(stack.wait_healthy, "identity", not_pid=killed)

    assert shop.accepted_batches == len(batches), shop.statuses
    assert not shop.bad, shop.bad[:5]
    assert set(shop.statuses) <= {200, 503, 504}, shop.statuses
    assert_stored_once(await stored_events(stack, tenant["tenant_id"]), shop.accepted)


async def test_messaging_killed_during_a_campaign_sends_every_email_exactly_once(stack, new_tenant):
    tenant = new_tenant("crash-campaign")
    admin = {"Authorization": f"Bearer {tenant['secret_key']}"}
    people = [f"p{i}-{uuid.uuid4().hex[:6]}@example.com" for i in range(600)]
    async with SmtpSink() as sink, \
            httpx.AsyncClient(base_url=stack.gateway_url, headers=admin, timeout=15) as api, \
            httpx.AsyncClient(base_url=stack.gateway_url, auth=(tenant["write_key"], ""), timeout=15) as sdk:
        r = await api.put("/v1/messaging/channels/email", json={"provider": "smtp", "settings": {
            "host": "127.0.0.1", "port": sink.port, "from_email": "news@shop.example.com"}})
        assert r.status_code == 200, r.text
        r = await api.post("/v1/templates", json={"name": "news", "channel": "email", "default_locale": "en",
                                                 "variants": [{"locale": "en", "subject": "News",
                                                               "body_html": "<p>Hello {{ profile.email }}</p>"}]})
        assert r.status_code == 201, r.text
        template_id = r.json()["id"]
        r = await api.post("/v1/segments", json={"name": "everyone", "rules": {"trait": "email", "op": "exists"}})
        assert r.status_code in (200, 201), r.text
        segment_id = r.json()["id"]
        for start in range(0, len(people), 200):
            chunk = people[start:start + 200]
            r = await sdk.post("/v1/batch", json={"batch": [
                {"type": "identify", "userId": email, "traits": {"email": email}} for email in chunk]})
            assert r.status_code == 200 and r.json()["accepted"] == 200, r.text

        async def segment_full():
            r = await api.get(f"/v1/segments/{segment_id}")
            return r.status_code == 200 and r.json()["member_count"] == len(people)

        await eventually(segment_full)
        r = await api.post("/v1/campaigns", json={"name": "news", "segment_id": segment_id,
                                                 "template_id": template_id, "batch_size": 200})
        assert r.status_code == 202, r.text
        campaign_id = r.json()["id"]

        await eventually(lambda: sink.count >= 3 * SEND_CONCURRENCY, timeout=60, message="the first emails")
        killed = stack.kill("messaging")
        sent_before_kill = sink.count
        await asyncio.to_thread(stack.wait_healthy, "messaging", not_pid=killed)

        async def all_recorded_sent():
            unsent = await fetchval(stack, "messaging", "SELECT count(*) FROM messages WHERE campaign_id = $1 "
                                    "AND status <> 'sent'", uuid.UUID(campaign_id))
            total = await fetchval(stack, "messaging", "SELECT count(*) FROM messages WHERE campaign_id = $1",
                                   uuid.UUID(campaign_id))
            return total == len(people) and unsent == 0

        await eventually(all_recorded_sent, timeout=90, message="every campaign message recorded as sent")

    assert sent_before_kill < len(people), "the kill came after the campaign had finished: not mid-send"
    message_ids: dict[str, set[str]] = defaultdict(set)
    copies: Counter = Counter()
    for mail in sink.messages:
        message_ids[mail["To"]].add(mail["Message-ID"])
        copies[mail["To"]] += 1
    assert set(message_ids) == set(people)
    twice = {a: ids for a, ids in message_ids.items() if len(ids) > 1}
    assert not twice, f"{len(twice)} recipients got two different emails, e.g. {list(twice.items())[:3]}"
    # An SMTP server that took a message before the sender could write so is sent it again (same Message-ID,
    # which receivers drop); outcomes are written as sends finish, so that is at most the few in flight (before,
    # a whole claimed batch, every email sent of it before the kill, went out again).
    resent = {a: n for a, n in copies.items() if n > 1}
    assert len(resent) <= SEND_CONCURRENCY, f"{len(resent)} emails sent again after the kill (sent before it: " \
                                      f"{sent_before_kill}), e.g. {list(resent.items())[:3]}"
