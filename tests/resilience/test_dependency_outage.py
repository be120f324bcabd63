"""Dependencies going away under load, on a stack started as `mcloud up` starts it: a service down (the
gateway answers 503 with Retry-After), Valkey stopped for 30 s during ingest (the outbox keeps the events
and delivers them when it returns), PostgreSQL restarted (services reconnect by themselves). Nothing the
API accepted is lost or stored twice, and no request is answered 500."""

from __future__ import annotations

import asyncio
import os
import signal
import time
import uuid

import httpx

from .conftest import Storefront, assert_stored_once, assert_unavailable, eventually, fetchval, stored_events, track

VALKEY_OUTAGE_SECONDS = 30  # as issue 9 asks

PROGRAM = {"name": "Club", "currency": "EUR", "auto_enroll": True, "pending_days": 14,
           "tiers": [{"code": "member", "name": "Member", "rank": 0}],
           "earn_rules": [{"name": "An order earns 100 points", "trigger": "order", "points": 100}]}


async def test_gateway_answers_503_with_retry_after_while_a_service_is_down(stack, new_tenant):
    tenant = new_tenant("down")
    admin = {"Authorization": f"Bearer {tenant['secret_key']}"}
    async with httpx.AsyncClient(base_url=stack.gateway_url, headers=admin, timeout=15) as api:
        assert (await api.get("/v1/loyalty/programs")).status_code == 200
        os.kill(stack.process.pid, signal.SIGSTOP)  # `up` cannot restart loyalty until SIGCONT: it stays down
        try:
            killed = stack.kill("loyalty")
            assert_unavailable(await api.get("/v1/loyalty/programs"))
            r = await api.post("/v1/loyalty/programs", json=PROGRAM)
            assert_unavailable(r)
            assert r.json()["code"] == "service_unavailable"
        finally:
            os.kill(stack.process.pid, signal.SIGCONT)
        await asyncio.to_thread(stack.wait_healthy, "loyalty", not_pid=killed)

        async def back():  # the gateway reconnects within its (short) reconnect backoff
            return (await api.get("/v1/loyalty/programs")).status_code == 200

        await eventually(back, timeout=10)


async def test_valkey_down_for_30s_during_ingest_loses_nothing(stack, new_tenant):
    tenant = new_tenant("valkey")
    admin = {"Authorization": f"Bearer {tenant['secret_key']}"}
    users = {f"v{i}-{uuid.uuid4().hex[:6]}": None for i in range(8)}
    async with httpx.AsyncClient(base_url=stack.gateway_url, headers=admin, timeout=15) as api, \
            httpx.AsyncClient(base_url=stack.gateway_url, auth=(tenant["write_key"], ""), timeout=15) as sdk:
        r = await api.post("/v1/loyalty/programs", json=PROGRAM)
        assert r.status_code == 201, r.text
        program_id = r.json()["id"]
        r = await sdk.post("/v1/batch", json={"batch": [
            e for u in users for e in ({"type": "identify", "userId": u, "traits": {"email": f"{u}@example.com"}},
                                       track(u, "Signed Up"))]})
        assert r.status_code == 200, r.text

        async def balance(user: str) -> dict | None:
            r = await api.get(f"/v1/loyalty/members/email:{user}@example.com", params={"program_id": program_id})
            return r.json()["balance"] if r.status_code == 200 else None

        for u in users:  # every member enrolled through the bus before the outage
            await eventually(lambda u=u: balance(u), timeout=30, message=f"{u} enrolled")

        shop = Storefront(sdk)
        orders: dict[str, set[str]] = {u: set() for u in users}
        outage_ends = time.monotonic() + VALKEY_OUTAGE_SECONDS

        async def load():
            n = 0
            while time.monotonic() < outage_ends:
                user = list(users)[n % len(users)]
                order = track(user, "Order Completed", order_id=f"o-{uuid.uuid4().hex[:8]}", total=10, currency="EUR")
                orders[user].add(order["messageId"])
                batch = [order, *(track(user, sku=f"s{i}") for i in range(9))]
                assert await shop.send(batch, deadline=outage_ends + 60)
                n += 1
                await asyncio.sleep(0.2)  # a storefront's pace, not a flood

        stack.stop_valkey()
        try:
            task = asyncio.create_task(load())
            await asyncio.sleep(VALKEY_OUTAGE_SECONDS)  # the outage itself (a duration, not a synchronisation)
        finally:
            stack.start_valkey()
        await task
        assert shop.accepted_batches >= 10, shop.statuses
        assert not shop.bad, shop.bad[:5]
        assert set(shop.statuses) <= {200, 503}, shop.statuses
        assert_stored_once(await stored_events(stack, tenant["tenant_id"]), shop.accepted)

        async def outbox_drained():
            return await fetchval(stack, "identity", "SELECT count(*) FROM outbox") == 0

        await eventually(outbox_drained, timeout=60)
        for user, placed in orders.items():  # the events reached loyalty over the bus: one earn per order
            accepted = len(placed & shop.accepted)

            async def earned(user=user, accepted=accepted):
                b = await balance(user)
                return b is not None and b["pending"] == 100 * accepted

            await eventually(earned, timeout=60, message=f"{user}'s {accepted} orders earned")


async def test_postgres_restart_services_reconnect_and_nothing_accepted_is_lost(stack, new_tenant):
    tenant = new_tenant("pg")
    admin = {"Authorization": f"Bearer {tenant['secret_key']}"}
    async with httpx.AsyncClient(base_url=stack.gateway_url, headers=admin, timeout=15) as api, \
            httpx.AsyncClient(base_url=stack.gateway_url, auth=(tenant["write_key"], ""), timeout=15) as sdk:
        shop = Storefront(sdk)
        deadline = time.monotonic() + 90
        batches = [[track(f"pg{b % 5}", sku=f"sku-{i}") for i in range(20)] for b in range(30)]

        async def load():
            for batch in batches:
                assert await shop.send(batch, deadline=deadline)
                await asyncio.sleep(0.1)

        task = asyncio.create_task(load())
        await eventually(lambda: shop.accepted_batches >= 5, timeout=30)
        stack.stop_postgres()
        try:
            during = await api.get("/v1/profiles/user_id:pg0")
            assert_unavailable(during)
            await eventually(lambda: shop.statuses[503] >= 1, timeout=15, message="ingest answering 503")
        finally:
            stack.start_postgres()
        await task
        assert shop.accepted_batches == len(batches), shop.statuses
        assert not shop.bad, shop.bad[:5]
        assert set(shop.statuses) <= {200, 503, 504}, shop.statuses
        assert_stored_once(await stored_events(stack, tenant["tenant_id"]), shop.accepted)

        # every service (and the gateway's own key store) reads its database again without being restarted
        pids = {s: stack.pid(s) for s in ("identity", "loyalty", "journey", "recommend", "messaging", "gateway")}
        for path in ("/v1/profiles/user_id:pg0", "/v1/loyalty/programs", "/v1/journeys", "/v1/templates",
                     "/v1/recommendations/settings", "/v1/segments"):
            async def answers(path=path):
                r = await api.get(path)
                assert r.status_code in (200, 503), (path, r.status_code, r.text)
                return r.status_code == 200

            await eventually(answers, timeout=30, message=f"GET {path} answering 200")
        assert {s: stack.pid(s) for s in pids} == pids, "a service had to be restarted to reconnect"
