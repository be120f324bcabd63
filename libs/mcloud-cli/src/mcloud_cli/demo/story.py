"""The Rachel story of DOMAIN.md, step by step, through the public HTTP API of a running stack.

    async with MailSink() as mail, PushSink() as push, Gateway(url, write_key, secret_key) as gw:
        setup = await configure(gw, mail.port, push_url=push.url)
        story = Story(gw, setup, mail, push)                      # real time
        story = Story(gw, setup, mail, push, advance=clock.advance)  # tests: OffsetClock moves every process
        async for step in story.play(): ...                 # one Step per part of the story

Each step is read back from the API (profiles, recommendations, loyalty, journeys, messages, clerk view)
and waits on conditions with deadlines; a missing effect raises DemoError naming the step. `advance`, when
given, makes time pass for the stack (the cart hold); without it the story waits for the real clock.
"""

from __future__ import annotations

import json
import re
import time
import uuid
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass, field
from datetime import timedelta
from typing import Any

from mcloud_cli.demo import catalog
from mcloud_cli.demo.api import Gateway
from mcloud_cli.demo.push import PushSink
from mcloud_cli.demo.setup import DemoSetup
from mcloud_cli.demo.smtp import MailSink, html_of

ANON_VIEWS = ["cloudstride-3", "aerorun-5"]
SHOE = "aerorun-5"
STORE_BASKET = ["cushion-socks", "energy-gel-12"]
JOURNEY_REFRESH_SECONDS = 6  # journey re-reads published journeys every 5 s
TIMEOUT = 45.0


@dataclass
class Step:
    key: str
    title: str
    lines: list[str] = field(default_factory=list)
    data: dict[str, Any] = field(default_factory=dict)

    def say(self, line: str) -> None:
        self.lines.append(line)


def recs_line(body: dict) -> list[str]:
    return [f"{i['item_id']} ({i['recommender']}: {i['explanation']})" for i in body.get("items", [])]


def _short(value: Any, most: int = 160) -> str:
    text = json.dumps(value, separators=(", ", ": "), default=str)
    return text if len(text) <= most else text[:most - 3] + "..."


def kpi_lines(body: Any) -> list[str]:
    """GET /v1/kpis for people: the summary's figures, each journey's conversion, each channel's sends; other
    parts by name (whatever their shape, this never fails on it)."""
    if not isinstance(body, dict):
        return [_short(body)]
    lines: list[str] = []
    summary = body.get("summary")
    if isinstance(summary, dict):
        figures = [f"{k.replace('_', ' ')} {v}" for k, v in summary.items() if isinstance(v, int | float | str)]
        lines.append("summary: " + ", ".join(figures))
    for j in body.get("journeys") or []:
        if isinstance(j, dict):
            lines.append(f"journey {j.get('name', j.get('journey_id'))}: entered {j.get('entered')}, converted "
                         f"{j.get('converted')} (rate {j.get('conversion_rate')}, holdout "
                         f"{j.get('holdout_conversion_rate')}, uplift {j.get('uplift')})")
    channels = body.get("channels")
    rows = channels.get("channels") if isinstance(channels, dict) else channels
    for c in rows or []:
        if isinstance(c, dict):
            lines.append(f"channel {c.get('channel')}: sent {c.get('sent')}, opened {c.get('opened')}, "
                         f"clicked {c.get('clicked')}, ROI {c.get('roi')}")
    others = [k for k in body if k not in ("summary", "journeys", "channels", "since", "until", "granularity",
                                           "unavailable")]
    if others:
        lines.append(f"also in GET /v1/kpis: {', '.join(others)}")
    if body.get("unavailable"):
        lines.append(f"unavailable: {body['unavailable']}")
    return lines or [_short(body)]


def money(amount: float) -> str:
    return f"{amount:,.0f} {catalog.CURRENCY}"


class Story:
    def __init__(self, gw: Gateway, setup: DemoSetup, mail: MailSink, push: PushSink, *,
                 advance: Callable[[timedelta], Any] | None = None, run: str | None = None,
                 timeout: float = TIMEOUT) -> None:
        self.gw, self.setup, self.mail, self.push, self.advance = gw, setup, mail, push, advance
        self.timeout = timeout
        self.run = run or uuid.uuid4().hex[:6]
        self.device = f"device-{self.run}-{uuid.uuid4().hex[:8]}"
        self.user_id = f"member-{self.run}"
        self.email = f"rachel-{self.run}@example.com"
        self.web_order = f"W-{self.run}"
        self.pos_order = f"POS-{self.run}"
        self.push_token = f"push-{self.run}-{uuid.uuid4().hex[:12]}"  # her phone, once she has the app
        self.profile_id = ""  # the surviving profile, once she signed up
        self.steps: dict[str, Step] = {}

    # -- helpers ---------------------------------------------------------------------------------------

    def _event(self, kind: str, channel: str = "web", *, known: bool = True, **fields: Any) -> dict:
        ids: dict[str, Any] = {"anonymousId": self.device}
        if known and self.profile_id:
            ids["userId"] = self.user_id
        return {"type": kind, **ids, "context": {"channel": channel}, **fields}

    def _track(self, name: str, channel: str = "web", **props: Any) -> dict:
        return self._event("track", channel, event=name, properties=props)

    async def recs(self, count: int = 6, **who: str) -> dict:
        who = who or {"profile": self.profile_id}
        return await self.gw.get("/v1/recommendations", count=count, include_items="true", **who)

    async def member(self) -> dict | None:
        return await self.gw.maybe(f"/v1/loyalty/members/{self.profile_id}", program_id=self.setup.program_id)

    async def enrollments(self) -> list[dict]:
        body = await self.gw.maybe(f"/v1/profiles/{self.profile_id}/enrollments", limit=50)
        return body["enrollments"] if body else []

    def mails(self, pattern: str) -> list:
        return [m for m in self.mail.to(self.email) if re.search(pattern, str(m["Subject"]))]

    async def _pass_time(self, by: timedelta) -> float:
        """Make `by` pass for the stack; the real seconds still to allow for it."""
        if self.advance is not None:
            self.advance(by)
            return 0.0
        return by.total_seconds()

    def pushes(self, pattern: str) -> list[dict]:
        return [p for p in self.push.to(self.push_token) if re.search(pattern, str(p.get("title", "")))]

    async def entered(self, key: str) -> list[dict]:
        return [e for e in await self.enrollments() if e["journey_id"] == self.setup.journeys[key]]

    def _begin(self, key: str, title: str) -> Step:
        self.gw.step = title
        step = self.steps[key] = Step(key, title)
        return step

    # -- the story -------------------------------------------------------------------------------------

    async def play(self) -> AsyncIterator[Step]:
        for part in (self.browse, self.sign_up, self.lock_intent, self.order, self.store_visit, self.store_order,
                     self.kpis):
            yield await part()

    async def browse(self) -> Step:
        """1-2. She arrives anonymously and views running shoes."""
        s = self._begin("browse", "1-2. Rachel browses anonymously")
        before = await self.recs(anonymous_id=self.device)
        s.say(f"device {self.device}: recommendations {'cold start (popular items)' if before['cold_start'] else ''}")
        s.data["before"] = before
        for line in recs_line(before)[:3]:
            s.say(f"  before: {line}")
        await self.gw.send(self._event("page", name="Running shoes", properties={"path": "/running/shoes"}),
                           *[self._track("Product Viewed", product_id=i, category="running_shoes",
                                         price=catalog.BY_ID[i]["price"], currency=catalog.CURRENCY)
                             for i in ANON_VIEWS])

        async def learned():
            body = await self.recs(anonymous_id=self.device)
            recommenders = {i["recommender"] for i in body["items"]}
            by = {i["item_id"]: i for i in body["items"]}
            ok = (not body["cold_start"] and "session" in recommenders
                  and by.get("city-marathon", {}).get("recommender") == "interest_activity")
            return body if ok else None

        after = await self.gw.until(learned, self.timeout * 2,
                                    "recommendations switching to similar items and the marathon")
        s.data["after"] = after
        s.say(f"viewed {', '.join(ANON_VIEWS)}: recommendations switched to similar items and the marathon:")
        for line in recs_line(after):
            s.say(f"  after: {line}")
        return s

    async def sign_up(self) -> Step:
        """3. Exit-intent popup: she signs up with her email; anonymous and known profiles become one."""
        s = self._begin("sign_up", "3. She signs up (exit-intent popup, 10% coupon)")
        anonymous = await self.gw.get(f"/v1/profiles/anonymous_id:{self.device}")
        # the shop's server creates the member...
        await self.gw.send({"type": "identify", "userId": self.user_id, "context": {"channel": "server"},
                            "traits": {"email": self.email, "first_name": "Rachel", "last_name": "Lin",
                                       "locale": "en", "timezone": "Asia/Shanghai"}})
        known = await self.gw.until(lambda: self.gw.maybe(f"/v1/profiles/user_id:{self.user_id}"), self.timeout,
                                    "the new member's profile")
        # ...and the browser that browsed anonymously learns who she is (journeys must be loaded by then)
        wait = self.setup.published_at + JOURNEY_REFRESH_SECONDS - time.monotonic()
        if wait > 0:
            await self.gw.until(lambda: time.monotonic() >= self.setup.published_at + JOURNEY_REFRESH_SECONDS or None,
                                wait + 1, "journeys loaded")
        self.profile_id = known["id"]
        await self.gw.send(self._event("identify", traits={"email": self.email}),
                           self._track("Signed Up", source="exit_intent_popup", method="email"))

        async def merged():
            p = await self.gw.get(f"/v1/profiles/anonymous_id:{self.device}")
            return p if p["id"] == known["id"] and anonymous["id"] in p.get("merged_from", []) else None

        profile = await self.gw.until(merged, self.timeout, "the anonymous profile merged into the member")
        events = (await self.gw.get(f"/v1/profiles/{self.profile_id}/events", limit=100))["events"]
        views = [e for e in events if e["name"] == "Product Viewed"]
        s.data.update(anonymous_id=anonymous["id"], known_id=known["id"], profile=profile, events=len(events),
                      views=len(views))
        s.say(f"anonymous profile {anonymous['id']} merged into member {known['id']} ({self.email})")
        s.say(f"her history: {len(events)} events, {len(views)} product views from before she signed up")

        member = await self.gw.until(self.member, self.timeout, "auto-enrolment in the loyalty program")
        s.data["member"] = member
        s.say(f"loyalty: member {member.get('member_number', '')} of Stride Club, tier {member['tier']['name']}, "
              f"{member['next_tier']['to_go']:,} points to {member['next_tier']['name']}")

        welcome = await self.gw.until(lambda: self.mails(r"Welcome to Stride Club") or None, self.timeout,
                                      "the welcome email in the SMTP sink")
        code = re.search(r"(WELCOME-[A-Z0-9-]+)", html_of(welcome[0]))
        s.data.update(welcome=welcome, coupon=code.group(1) if code else None)
        s.say(f"email received: \"{welcome[0]['Subject']}\" with coupon {s.data['coupon']}")
        enrolled = [e for e in await self.enrollments() if e["journey_id"] == self.setup.journeys["welcome"]]
        s.data["welcome_enrollments"] = enrolled
        if enrolled:
            s.say(f"journey: welcome enrollment on {enrolled[0]['profile_id']}, now at "
                  f"{enrolled[0]['current_step_id']}")
        recs = await self.gw.until(lambda: self._warm(), self.timeout, "her anonymous browsing reaching recommend")
        s.data["recs"] = recs
        s.say(f"recommendations for the member use her anonymous views: {', '.join(recs_line(recs)[:2])}")
        return s

    async def _warm(self) -> dict | None:
        body = await self.recs()
        return body if not body["cold_start"] else None

    async def lock_intent(self) -> Step:
        """4. The same shoe again and again, and into the cart: intent locks, complements lead."""
        s = self._begin("intent", "4. Same shoe again and again, into the cart: intent locks")
        shoe = catalog.BY_ID[SHOE]
        await self.gw.send(*[self._track("Product Viewed", product_id=SHOE, category="running_shoes",
                                         price=shoe["price"], currency=catalog.CURRENCY) for _ in range(3)],
                           self._track("Product Added", product_id=SHOE, category="running_shoes", quantity=1,
                                       price=shoe["price"], currency=catalog.CURRENCY, cart_id=f"cart-{self.run}"))

        async def in_cart():
            body = await self.gw.get("/v1/recommendations/intent", profile=self.profile_id)
            return body if body.get("item_id") == SHOE else None

        waiting = await self.gw.until(in_cart, self.timeout, "the shoe in her cart")
        s.say(f"{shoe['title']} viewed 4 times and in the cart: intent score {waiting['score']}, locked: "
              f"{waiting['locked']}")
        minutes = catalog.RECOMMEND_SETTINGS["intent_cart_minutes"]
        extra = await self._pass_time(timedelta(minutes=minutes, seconds=5))
        if extra:
            s.say(f"(the shoe has to sit {minutes} min in the cart: waiting for the real clock)")

        async def locked():
            body = await self.recs()
            return body if body["intent_locked"] else None

        body = await self.gw.until(locked, self.timeout + extra, "the intent lock")
        s.data["recs"] = body
        lead = body["items"][:3]
        s.say("intent locked: recommendations switched to cross-category complements:")
        for line in recs_line(body):
            s.say(f"  {line}")
        s.data["lead_categories"] = [(i.get("item") or {}).get("categories", [""])[-1] for i in lead]
        return s

    async def order(self) -> Step:
        """5. She orders: 100 points + 1 per yuan, Silver, the tier-upgrade journey congratulates her."""
        s = self._begin("order", "5. She orders the shoes: points, Silver, congratulations")
        shoe = catalog.BY_ID[SHOE]
        before = await self.member()
        order = self._track("Order Completed", order_id=self.web_order, total=shoe["price"], revenue=shoe["price"],
                            currency=catalog.CURRENCY,
                            products=[{"product_id": SHOE, "category": "running_shoes", "price": shoe["price"],
                                       "quantity": 1}])
        s.data["order_event"] = order
        await self.gw.send(order)
        earned = 100 + shoe["price"]

        async def silver():
            m = await self.member()
            return m if m and m["balance"]["qualifying"] >= before["balance"]["qualifying"] + earned else None

        member = await self.gw.until(silver, self.timeout, "the order's points")
        s.say(f"order {self.web_order}: {money(shoe['price'])} -> {earned:,} points (100 for the order + "
              f"{shoe['price']:,} for the yuan); qualifying points {before['balance']['qualifying']:,} -> "
              f"{member['balance']['qualifying']:,}")
        s.say(f"tier: {before['tier']['name']} -> {member['tier']['name']}; "
              f"{member['next_tier']['to_go']:,} points to {member['next_tier']['name']}")
        s.data["member"] = member
        congrats = await self.gw.until(lambda: self.mails(r"^You are Silver now") or None, self.timeout,
                                       "the tier-upgrade email in the SMTP sink")
        s.say(f"email received: \"{congrats[0]['Subject']}\"")
        inbox = await self.gw.until(lambda: self._inbox(), self.timeout, "the tier-upgrade message in the inbox")
        s.say(f"in-app inbox: \"{inbox['messages'][0]['title']}\" ({inbox['unread_count']} unread)")
        s.data.update(congrats=congrats, inbox=inbox)

        async def bonus():
            ledger = await self.gw.get(f"/v1/loyalty/members/{self.profile_id}/ledger",
                                       program_id=self.setup.program_id)
            found = any("bonus" in f"{e['reason']} {e['description']}".lower() for e in ledger["entries"])
            return ledger if found else None

        ledger = await self.gw.until(bonus, self.timeout, "the tier-upgrade journey's bonus points")
        s.data["ledger"] = ledger
        member = await self.member()
        s.data["member_after_bonus"] = member
        s.say(f"tier-upgrade journey: +500 bonus points; balance {member['balance']['available']:,} available, "
              f"{member['balance']['pending']:,} pending")

        async def released():
            body = await self.recs(count=9)
            return body if not body["intent_locked"] else None

        body = await self.gw.until(released, self.timeout, "the order reaching recommend")
        s.data["recs_after"] = body
        s.say(f"intent released; {SHOE} is not recommended back: "
              f"{', '.join(i['item_id'] for i in body['items'][:5])}")
        async def repeat_entered():
            return await self.entered("repeat_purchase") or None

        entered = await self.gw.until(repeat_entered, self.timeout,
                                      "the order entering the repeat-purchase journey")
        s.data["repeat_purchase"] = entered
        s.say(f"re-marketing: the order entered \"{self.setup.names['repeat_purchase']}\" (now at "
              f"{entered[0]['current_step_id']}: a cross-sell email unless she orders again first)")
        # she installs the Stride app and logs in: the app registers her phone's push token
        await self.gw.send({"type": "identify", "userId": self.user_id, "context": {"channel": "app"},
                            "traits": {"push_token": self.push_token}})

        async def registered():
            p = await self.gw.get(f"/v1/profiles/{self.profile_id}")
            return p if (p.get("traits") or {}).get("push_token") == self.push_token else None

        await self.gw.until(registered, self.timeout, "her app's push token in her profile")
        s.say(f"she installs the Stride app: push token {self.push_token} registered on her profile")
        return s

    async def _inbox(self) -> dict | None:
        body = await self.gw.get(f"/v1/messaging/profiles/{self.profile_id}/inbox")
        return body if body["messages"] else None

    async def store_visit(self) -> Step:
        """6. Near the store the app reports her location: a push invites her in; inside, the NFC beacon
        reports her visit and the clerk's tablet shows her."""
        s = self._begin("store", "6. Near the store: a push invites her in; the clerk's tablet")
        await self.gw.send({"type": "track", "userId": self.user_id, "event": "Store Nearby",
                            "context": {"channel": "app"},
                            "properties": {"store_id": catalog.STORE_ID, "distance_m": 180, "via": "geofence"}})
        s.say(f"the app reports her near {catalog.STORE_NAME} (Store Nearby, store {catalog.STORE_ID}, 180 m)")
        invite = await self.gw.until(lambda: self.pushes(r"you are near") or None, self.timeout,
                                     "the store invitation push in the push sink")
        s.data["invite"] = invite
        s.say(f"push received: \"{invite[0]['title']}\" - {invite[0]['body']}")
        await self.gw.send(self._track("Store Visited", "app", store_id=catalog.STORE_ID, via="nfc_beacon"))

        async def visited():
            events = (await self.gw.get(f"/v1/profiles/{self.profile_id}/events", limit=20))["events"]
            return events if any(e["name"] == "Store Visited" for e in events) else None

        await self.gw.until(visited, self.timeout, "the store visit in her profile")
        view = await self.gw.get(f"/v1/clerk/user_id:{self.user_id}")
        s.data["clerk"] = view
        loyalty = view.get("loyalty") or {}
        s.say(f"clerk sees {view['profile']['traits'].get('first_name')} ({view['profile']['id']}): tier "
              f"{(loyalty.get('tier') or {}).get('name')}, {(loyalty.get('points') or {}).get('available', 0):,} "
              f"points, lifecycle {view['profile'].get('lifecycle_stage')}")
        viewed = [v["properties"].get("product_id") for v in view["recent_views"]]
        s.say(f"recent views: {', '.join(v for v in viewed if v)}; cart: {', '.join(view.get('cart') or []) or '-'}")
        s.say(f"suggest: {', '.join(r['item_id'] for r in view['recommendations'][:4])}"
              + (f" (unavailable: {view['unavailable']})" if view["unavailable"] else ""))
        return s

    async def store_order(self) -> Step:
        """7. She buys in store: a POS order on the same profile earns more points."""
        s = self._begin("pos", "7. She buys in store (POS): more points")
        before = await self.member()
        total = sum(catalog.BY_ID[i]["price"] for i in STORE_BASKET)
        # the storefront retried the web order meanwhile: it must earn nothing
        replay = {**self.steps["order"].data["order_event"], "messageId": f"retry-{uuid.uuid4()}"}
        pos = {"type": "track", "userId": self.user_id, "event": "Order Completed", "context": {"channel": "pos"},
               "properties": {"order_id": self.pos_order, "total": total, "revenue": total,
                              "currency": catalog.CURRENCY, "store_id": catalog.STORE_ID, "category": "nutrition",
                              "products": [{"product_id": i, "price": catalog.BY_ID[i]["price"], "quantity": 1,
                                            "category": catalog.BY_ID[i]["categories"][-1]} for i in STORE_BASKET]}}
        await self.gw.send(replay)
        await self.gw.send(pos)
        earned = 100 + total

        async def landed():
            m = await self.member()
            return m if m["balance"]["qualifying"] >= before["balance"]["qualifying"] + earned else None

        member = await self.gw.until(landed, self.timeout, "the POS order's points")
        profile = await self.gw.until(lambda: self._orders(2), self.timeout, "two orders in her profile")
        s.data.update(before=before, member=member, earned=earned, profile=profile)
        s.say(f"POS order {self.pos_order} ({', '.join(STORE_BASKET)}): {money(total)} -> +{earned:,} points; "
              f"balance {member['balance']['available']:,}, tier {member['tier']['name']}")
        s.say(f"the web order, replayed by the storefront meanwhile, earned nothing: qualifying "
              f"{before['balance']['qualifying']:,} -> {member['balance']['qualifying']:,} "
              f"(+{earned:,}, the POS order)")
        computed = profile.get("computed", {})
        s.say(f"profile: {computed.get('order_count')} orders, lifetime value {computed.get('lifetime_value')}, "
              f"lifecycle {profile.get('lifecycle_stage')}")
        thanks = await self.gw.until(lambda: self.pushes(r"^Thanks for visiting") or None, self.timeout,
                                     "the post-purchase push in the push sink")
        s.data["thanks"] = thanks
        s.say(f"push received: \"{thanks[0]['title']}\" - {thanks[0]['body']}")

        async def remarketing():
            repeat = await self.entered("repeat_purchase")
            refill = await self.entered("replenishment")
            return (repeat, refill) if len(repeat) >= 2 and refill else None

        repeat, refill = await self.gw.until(remarketing, self.timeout, "the POS order entering re-marketing journeys")
        s.data.update(repeat_purchase=repeat, replenishment=refill)
        s.say(f"re-marketing: \"{self.setup.names['repeat_purchase']}\" entered for {len(repeat)} orders (the web "
              f"order's enrollment ends: she ordered again); \"{self.setup.names['replenishment']}\" entered (energy "
              f"gels run out: a reorder reminder with a coupon, at {refill[0]['current_step_id']})")
        return s

    async def _orders(self, n: int) -> dict | None:
        p = await self.gw.get(f"/v1/profiles/{self.profile_id}")
        return p if (p.get("computed") or {}).get("order_count", 0) >= n else None

    async def kpis(self) -> Step:
        """8. What marketers see."""
        s = self._begin("kpis", "8. What the marketer sees")
        r = await self.gw.api.get("/v1/kpis")
        if r.status_code == 200:
            s.data["kpis"] = body = r.json()
            for line in kpi_lines(body):
                s.say(line)
        else:
            s.data["kpis"] = None
            s.say(f"KPIs are not available (GET /v1/kpis answered {r.status_code})")
        return s

    # -- after the story (tests) -----------------------------------------------------------------------

    async def erase(self) -> dict:
        """GDPR/PIPL: erase her (the privacy endpoint) and return what the gateway answered."""
        self.gw.step = "erase"
        r = await self.gw.api.delete(f"/v1/profiles/{self.profile_id}",
                                     headers={"Idempotency-Key": f"erase-{self.run}"})
        return self.gw.ok(r)
