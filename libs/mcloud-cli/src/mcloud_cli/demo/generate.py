"""`mcloud demo generate`: realistic shopper behaviour for load and dashboards, sent through the public HTTP API.

`plan()` is pure and deterministic (a seed and a `now` give the same events, message ids included, so the same
plan sent twice is stored once): visitors browse on the web or in the app over the last D days (page views,
product views led by a favourite category, carts, checkouts, orders), a share signs up with an email (some with a
phone too), some visit a store and buy at the till (POS). `send()` posts the events to /v1/batch in batches with
the write key. `engage()` then does what the system really counts as engagement: messaging's in-app messages sent
to a share of the members and opened by some (the first read of an inbox message is an open: message.opened,
which identity's engagement traits and messaging's best send time learn from). `click_recommendations()` has
a share of the members look at their home-page recommendations and click one (feedback naming the served
list's `recommendation_id`: recommend's click-through and conversion figures count it). Email clicks only exist
through the tracking links of emails really sent, so the generator does not fake them.
"""

from __future__ import annotations

import asyncio
import random
import time
import uuid
from collections import Counter
from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta

import httpx

from mcloud_cli.demo import catalog

FIRST_NAMES = ["Rachel", "Wei", "Li", "Mei", "Jun", "Anna", "Tom", "Sara", "Hao", "Yan", "Lena", "Adam", "Dora",
               "Chen", "Min", "Kai", "Zoe", "Ivan", "Nora", "Leo"]
INTERESTS = {  # favourite category -> weight among visitors
    "running_shoes": 40, "apparel": 20, "socks": 8, "watches": 8, "energy_gels": 10, "electrolytes": 4, "mats": 10}
BATCH = 200  # events per /v1/batch call (well under the 500 KB limit)


@dataclass
class Plan:
    events: list[dict] = field(default_factory=list)
    people: int = 0
    known: list[str] = field(default_factory=list)  # userIds of the people who signed up
    orders: int = 0
    pos_orders: int = 0
    revenue: float = 0.0
    sessions: int = 0
    store_visits: int = 0

    def counts(self) -> Counter:
        return Counter(e.get("event") or e["type"] for e in self.events)


def _iso(t: datetime) -> str:
    return t.astimezone(UTC).isoformat().replace("+00:00", "Z")


def plan(customers: int, days: int, seed: int = 42, *, now: datetime | None = None,
         products: Sequence[dict] = catalog.PRODUCTS, currency: str = catalog.CURRENCY) -> Plan:
    """The behaviour of `customers` visitors over the `days` before `now`, in time order."""
    if customers < 1 or days < 1:
        raise ValueError("customers and days must be at least 1")
    rng = random.Random(seed)
    now = (now or datetime.now(UTC)).replace(microsecond=0)
    start = now - timedelta(days=days)
    by_category: dict[str, list[dict]] = {}
    for p in products:
        by_category.setdefault(p["categories"][-1], []).append(p)
    interests = [c for c in INTERESTS if c in by_category] or list(by_category)
    weights = [INTERESTS.get(c, 1) for c in interests]
    out = Plan(people=customers)
    timed: list[tuple[datetime, int, dict]] = []
    seq = 0

    def uid() -> str:
        return str(uuid.UUID(int=rng.getrandbits(128), version=4))

    def emit(at: datetime, event: dict) -> None:
        nonlocal seq
        seq += 1
        timed.append((at, seq, {**event, "messageId": f"gen-{seed}-{seq}", "timestamp": _iso(at)}))

    for n in range(customers):
        anon = f"anon-{uid()}"
        user_id = f"cust-{seed}-{n}"
        name = rng.choice(FIRST_NAMES)
        favourite = rng.choices(interests, weights)[0]
        device_channel = "app" if rng.random() < 0.4 else "web"
        signs_up = rng.random() < 0.55
        known = False
        sessions = 1 + min(int(rng.expovariate(1 / max(days / 7, 1))), days * 2)
        moments = sorted(start + timedelta(seconds=rng.uniform(0, days * 86400 - 3600)) for _ in range(sessions))
        signup_session = rng.randrange(sessions) if signs_up else None
        for k, at in enumerate(moments):
            out.sessions += 1
            ids = {"anonymousId": anon, **({"userId": user_id} if known else {})}
            ctx = {"channel": device_channel}
            emit(at, {"type": "page" if device_channel == "web" else "screen", **ids, "context": ctx,
                      "name": "Home", "properties": {"path": "/"}})
            viewed: list[dict] = []
            for _ in range(rng.randint(1, 6)):
                at += timedelta(seconds=rng.randint(10, 120))
                category = favourite if rng.random() < 0.7 else rng.choice(list(by_category))
                item = rng.choice(by_category[category])
                viewed.append(item)
                emit(at, {"type": "track", **ids, "context": ctx, "event": "Product Viewed",
                          "properties": {"product_id": item["id"], "category": item["categories"][-1],
                                         "price": item["price"], "currency": currency}})
            if k == signup_session:
                at += timedelta(seconds=rng.randint(5, 60))
                known = True
                ids = {"anonymousId": anon, "userId": user_id}
                traits = {"email": f"{user_id}@example.com", "first_name": name}
                if rng.random() < 0.4:
                    traits["phone"] = f"+86138{rng.randrange(10**8):08d}"
                emit(at, {"type": "identify", **ids, "context": ctx, "traits": traits})
                emit(at + timedelta(seconds=1), {"type": "track", **ids, "context": ctx, "event": "Signed Up",
                                                 "properties": {"method": "email"}})
                out.known.append(user_id)
            if viewed and rng.random() < 0.3:
                at += timedelta(seconds=rng.randint(10, 90))
                cart = rng.sample(viewed, k=min(len(viewed), rng.randint(1, 2)))
                cart_id = f"cart-{uid()[:8]}"
                for item in cart:
                    emit(at, {"type": "track", **ids, "context": ctx, "event": "Product Added",
                              "properties": {"product_id": item["id"], "price": item["price"], "quantity": 1,
                                             "currency": currency, "cart_id": cart_id}})
                if rng.random() < 0.5:
                    total = float(sum(i["price"] for i in cart))
                    lines = [{"product_id": i["id"], "category": i["categories"][-1], "price": i["price"],
                              "quantity": 1} for i in cart]
                    emit(at + timedelta(seconds=30), {"type": "track", **ids, "context": ctx,
                                                      "event": "Checkout Started",
                                                      "properties": {"cart_id": cart_id, "total": total,
                                                                     "currency": currency}})
                    emit(at + timedelta(seconds=rng.randint(60, 300)), {
                        "type": "track", **ids, "context": ctx, "event": "Order Completed",
                        "properties": {"order_id": f"O-{uid()[:12]}", "total": total, "revenue": total,
                                       "currency": currency, "cart_id": cart_id, "products": lines}})
                    out.orders += 1
                    out.revenue += total
        if known and rng.random() < 0.25:  # a store visit, and often a purchase at the till
            at = start + timedelta(seconds=rng.uniform(days * 43200, days * 86400 - 3600))
            emit(at, {"type": "track", "userId": user_id, "context": {"channel": "app"}, "event": "Store Visited",
                      "properties": {"store_id": rng.choice(["SH-JINGAN", "SH-XINTIANDI", "BJ-SANLITUN"]),
                                     "via": rng.choice(["nfc_beacon", "lbs", "booking"])}})
            out.store_visits += 1
            if rng.random() < 0.6:
                basket = rng.sample(list(products), k=rng.randint(1, 3))
                total = float(sum(i["price"] for i in basket))
                emit(at + timedelta(minutes=rng.randint(5, 40)), {
                    "type": "track", "userId": user_id, "context": {"channel": "pos"}, "event": "Order Completed",
                    "properties": {"order_id": f"POS-{uid()[:12]}", "total": total, "revenue": total,
                                   "currency": currency,
                                   "products": [{"product_id": i["id"], "category": i["categories"][-1],
                                                 "price": i["price"], "quantity": 1} for i in basket]}})
                out.orders += 1
                out.pos_orders += 1
                out.revenue += total
    timed.sort(key=lambda t: (t[0], t[1]))
    out.events = [e for _, _, e in timed]
    return out


@dataclass
class Sent:
    events: int
    seconds: float
    rejected: int

    @property
    def rate(self) -> float:
        return self.events / self.seconds if self.seconds else 0.0


async def send(sdk: httpx.AsyncClient, events: Sequence[dict], *, batch: int = BATCH, concurrency: int = 4,
               progress=None) -> Sent:
    """POST the events to /v1/batch, `concurrency` batches in flight (a person's events keep their order:
    batches are cut in time order and a 429 is retried after Retry-After)."""
    chunks = [list(events[i:i + batch]) for i in range(0, len(events), batch)]
    rejected = 0
    began = time.monotonic()
    queue: asyncio.Queue = asyncio.Queue()
    for c in chunks:
        queue.put_nowait(c)

    async def worker() -> None:
        nonlocal rejected
        while not queue.empty():
            chunk = queue.get_nowait()
            for attempt in range(20):
                r = await sdk.post("/v1/batch", json={"batch": chunk})
                if r.status_code == 429 or r.status_code >= 500:
                    await asyncio.sleep(float(r.headers.get("Retry-After", "1") or 1) * (1 + attempt / 4))
                    continue
                if r.status_code != 200:
                    raise RuntimeError(f"/v1/batch answered {r.status_code}: {r.text[:300]}")
                rejected += len(r.json().get("rejected") or [])
                break
            else:
                raise RuntimeError("/v1/batch kept refusing (429/5xx)")
            if progress:
                progress(len(chunk))

    # ordered per person: a person's events are spread in time, so with a few batches in flight a later batch
    # may land first; identity orders a person's history by timestamp, and sign-ups come in early batches
    await asyncio.gather(*(worker() for _ in range(max(1, concurrency))))
    return Sent(events=len(events), seconds=time.monotonic() - began, rejected=rejected)


async def engage(api: httpx.AsyncClient, user_ids: Sequence[str], template_id: str, seed: int, *,
                 share: float = 0.5, open_share: float = 0.4) -> tuple[int, int]:
    """In-app messages to `share` of the members, opened (inbox read) by `open_share` of them: (sent, opened)."""
    rng = random.Random(seed + 1)
    chosen = [u for u in user_ids if rng.random() < share]
    sent = 0
    for i in range(0, len(chosen), 1000):
        part = chosen[i:i + 1000]
        r = await api.post("/v1/messages/batch", json={"messages": [
            {"profile": f"user_id:{u}", "template_id": template_id, "channel": "in_app",
             "idempotency_key": f"gen-{seed}-news-{u}"} for u in part]})
        if r.status_code not in (200, 202):
            raise RuntimeError(f"/v1/messages/batch answered {r.status_code}: {r.text[:300]}")
        sent += sum(1 for item in r.json()["results"] if not item.get("error"))
    readers = [u for u in chosen if rng.random() < open_share]
    opened = 0
    deadline = time.monotonic() + 60
    pending = list(readers)
    while pending and time.monotonic() < deadline:
        left = []
        for u in pending:
            r = await api.post(f"/v1/messaging/profiles/user_id:{u}/inbox/read", json={"all": True})
            if r.status_code == 200 and r.json().get("marked"):
                opened += 1
            else:
                left.append(u)  # not delivered to the inbox yet
        pending = left
        if pending:
            await asyncio.sleep(0.5)
    return sent, opened


async def click_recommendations(api: httpx.AsyncClient, user_ids: Sequence[str], seed: int, *,
                                share: float = 0.3, click_share: float = 0.5) -> tuple[int, int]:
    """Home-page recommendations served to `share` of the members, one item clicked by `click_share` of those
    (a click on a served list): (lists served, clicks recorded)."""
    rng = random.Random(seed + 2)
    shown = clicked = 0
    clicks = []
    for u in (u for u in user_ids if rng.random() < share):
        r = await api.get("/v1/recommendations", params={"profile": f"user_id:{u}", "scenario": "home", "count": 6})
        if r.status_code != 200 or not r.json().get("items"):
            continue
        shown += 1
        body = r.json()
        if rng.random() < click_share:
            item = rng.choice(body["items"])
            clicks.append({"event_id": f"gen-{seed}-click-{u}", "profile": f"user_id:{u}", "item_id": item["item_id"],
                           "kind": "click", "recommendation_id": body["recommendation_id"]})
    for i in range(0, len(clicks), 1000):
        r = await api.post("/v1/recommendations/feedback", json={"feedback": clicks[i:i + 1000]})
        if r.status_code != 200:
            raise RuntimeError(f"/v1/recommendations/feedback answered {r.status_code}: {r.text[:300]}")
        clicked += r.json()["accepted"] + r.json()["duplicates"]
    return shown, clicked
