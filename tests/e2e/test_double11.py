"""The Double-11 warm-up of DOMAIN.md, end to end on a whole stack started as `mcloud up` starts it, with a
controlled clock (every process reads its time shift from one file) and a real SMTP server receiving
the mail. Everything goes through the public HTTP API: the shipped journey template
(journey-svc/templates/double11-warm-up.json) filled with templates, coupon campaigns and segments
created over HTTP, people and their behaviour sent as a storefront would.

- Lena, a new lead with no order: the welcome email on launch day at 10:00 in Shanghai; she opens it
  (the tracking pixel), so a coupon usable now is issued and emailed; she makes her first purchase,
  so the Double-11 voucher is issued and sent on her best channel.
- Adam, an active customer: a thank-you email with his early-access code; he opens it and gets the
  share task; he shares 10 times, joins the "sharers" segment and earns the voucher; a week before the
  day, the reminder carries his early-access code.
- Dora, a dormant customer with a cart: the cart-recovery email with a coupon; no order follows.
Groups are segments over what people did (orders, cart, shares), so people move between them by acting.
Every email arrives exactly once; coupons belong to the right person; Lena's order counts as the
journey's conversion.
"""

from __future__ import annotations

import re
import uuid
from datetime import UTC, datetime, timedelta
from pathlib import Path

import httpx
import orjson
import pytest

from mcloud_cli.stack import OffsetClock, start_stack
from mcloud_common.testing.services import wait_until
from messaging.testing import SmtpSink

ROOT = Path(__file__).resolve().parents[2]
TEMPLATE = ROOT / "journey-svc" / "templates" / "double11-warm-up.json"
SHANGHAI = timedelta(hours=8)
LAUNCH = datetime(2027, 1, 10, 10, 0, tzinfo=UTC) - SHANGHAI  # 10:00 in Shanghai on the launch day
REMINDER = LAUNCH + timedelta(days=5)


@pytest.fixture(scope="module")
def clock(tmp_path_factory) -> OffsetClock:
    return OffsetClock(tmp_path_factory.mktemp("clock") / "offset")


@pytest.fixture(scope="module")
def stack(tmp_path_factory, clock):
    with start_stack(tmp_path_factory.mktemp("d11") / "mcloud", extra_args=["--clock-offset-file", str(clock.path)],
                     env={"JOURNEY_SCHEDULE_INTERVAL_SECONDS": "1"}) as handle:
        yield handle


async def eventually(probe, timeout: float = 45):  # noqa: ASYNC109 (a deadline, not a cancel scope)
    return await wait_until(probe, timeout=timeout, interval=0.2, message=getattr(probe, "__name__", "condition"))


def ok(r: httpx.Response, *codes: int) -> dict:
    assert r.status_code in (codes or (200, 201, 202)), r.text
    return r.json()


EMAILS = {  # template default name -> (subject, html); Liquid sees the journey's context and the step's data
    "d11-lead-welcome": ("Free shipping on 11.11, {{ profile.first_name }}",
                         "<p>Welcome {{ profile.first_name }}: shipping is free on Double-11.</p>"
                         "<p><a href=\"https://shop.example.com/d11\">See the offers</a></p>"),
    "d11-lead-coupon": ("A coupon you can use now", "<p>Your coupon: <b>{{ coupon.code }}</b></p>"),
    "d11-voucher-earned": ("Your Double-11 voucher", "<p>Voucher {{ coupon.code }} ({{ reason }})</p>"),
    "d11-early-access": ("Thank you: early access", "<p>Your early-access code: {{ coupon.code }}</p>"),
    "d11-share-task": ("Share with {{ share_target }} friends", "<p>Share and earn the Double-11 voucher.</p>"),
    "d11-access-code-reminder": ("One week to go",
                                 "<p>Your access code: {{ coupons['issue-early-access'].code }}</p>"),
    "d11-cart-recovery": ("You left something behind", "<p>Come back with {{ coupon.code }}</p>"),
}


async def setup(api: httpx.AsyncClient, sink: SmtpSink) -> dict[str, str]:
    """Channel, templates, coupon campaigns and segments; the template's variables."""
    ok(await api.put("/v1/messaging/channels/email", json={
        "provider": "smtp", "settings": {"host": "127.0.0.1", "port": sink.port, "from_email": "d11@shop.example.com",
                                         "from_name": "Shop"}}))
    values: dict[str, str] = {"launch_date": "2027-01-10", "reminder_at": "2027-01-15T10:00:00+08:00"}
    for name, (subject, html) in EMAILS.items():
        t = ok(await api.post("/v1/templates", json={"name": name, "channel": "email", "default_locale": "en",
                                                     "variants": [{"locale": "en", "subject": subject,
                                                                   "body_html": html}]}))
        values[{"d11-lead-welcome": "lead_welcome_template", "d11-lead-coupon": "lead_coupon_template",
                "d11-voucher-earned": "voucher_template", "d11-early-access": "early_access_template",
                "d11-share-task": "share_task_template", "d11-access-code-reminder": "access_code_reminder_template",
                "d11-cart-recovery": "cart_recovery_template"}[name]] = t["id"]
    for var, prefix in (("lead_coupon_campaign_id", "LEAD-"), ("double11_voucher_campaign_id", "D11-"),
                        ("early_access_campaign_id", "EARLY-"), ("cart_coupon_campaign_id", "CART-")):
        c = ok(await api.post("/v1/coupon-campaigns", json={
            "name": var, "discount_type": "percent_off", "percent_off": 10, "code_prefix": prefix,
            "validity_days": 60}))
        values[var] = c["id"]
    segments = {
        "audience_segment_id": {"trait": "email", "op": "exists"},
        "new_leads_segment_id": {"all": [{"trait": "email", "op": "exists"},
                                         {"not": {"computed": "order_count", "op": "gte", "value": 1}}]},
        "active_segment_id": {"computed": "last_order_at", "op": "within_days", "value": 180},
        "dormant_segment_id": {"all": [{"computed": "last_order_at", "op": "older_than_days", "value": 180},
                                       {"computed": "cart", "op": "exists"}]},
        "sharers_segment_id": {"event": "Product Shared", "count": {"op": "gte", "value": 10}},
    }
    for var, rules in segments.items():
        values[var] = ok(await api.post("/v1/segments", json={"name": var, "rules": rules}))["id"]
    return values


def fill(node, values: dict[str, str]):
    if isinstance(node, dict):
        return {k: fill(v, values) for k, v in node.items()}
    if isinstance(node, list):
        return [fill(v, values) for v in node]
    if isinstance(node, str) and (m := re.fullmatch(r"\{\{(\w+)\}\}", node)):
        return values[m.group(1)]
    return node


def at(when: datetime) -> str:
    return when.isoformat().replace("+00:00", "Z")


async def test_double11_warm_up(stack, new_tenant, clock):
    tenant = new_tenant("d11")
    admin = {"Authorization": f"Bearer {tenant['secret_key']}"}
    async with SmtpSink() as sink, \
            httpx.AsyncClient(base_url=stack.gateway_url, headers=admin, timeout=15) as api, \
            httpx.AsyncClient(base_url=stack.gateway_url, auth=(tenant["write_key"], ""), timeout=15) as sdk, \
            httpx.AsyncClient(timeout=15) as browser:
        values = await setup(api, sink)
        # the eve of the campaign (everything before the launch is history by then)
        clock.set(LAUNCH - timedelta(days=1))
        run = uuid.uuid4().hex[:6]
        people = {name: f"{name}-{run}@example.com" for name in ("lena", "adam", "dora")}
        identify = [{"type": "identify", "userId": f"{n}-{run}", "timestamp": at(LAUNCH - timedelta(days=60)),
                     "traits": {"email": e, "first_name": n.title(), "timezone": "Asia/Shanghai"}}
                    for n, e in people.items()]
        history = [
            {"type": "track", "userId": f"adam-{run}", "event": "Order Completed",
             "timestamp": at(LAUNCH - timedelta(days=30)),
             "properties": {"order_id": f"a1-{run}", "total": 120, "currency": "CNY",
                            "products": [{"product_id": "pegasus-41", "category": "shoes", "price": 120}]}},
            {"type": "track", "userId": f"dora-{run}", "event": "Order Completed",
             "timestamp": at(LAUNCH - timedelta(days=300)),
             "properties": {"order_id": f"d1-{run}", "total": 60, "currency": "CNY",
                            "products": [{"product_id": "socks-3", "category": "apparel", "price": 60}]}},
            {"type": "track", "userId": f"dora-{run}", "event": "Product Added",
             "timestamp": at(LAUNCH - timedelta(days=20)),
             "properties": {"product_id": "vaporfly-3", "category": "shoes", "price": 250, "cart_id": f"c-{run}"}},
        ]
        ok(await sdk.post("/v1/batch", json={"batch": identify + history}))
        ids = {n: ok(await api.get(f"/v1/profiles/email:{e}"))["id"] for n, e in people.items()}

        async def grouped():
            members = {}
            for var in ("new_leads_segment_id", "active_segment_id", "dormant_segment_id"):
                r = ok(await api.get(f"/v1/segments/{values[var]}/members", params={"limit": 100}))
                members[var] = set(r.get("profile_ids") or r.get("items") or [])
            return members if (ids["lena"] in members["new_leads_segment_id"]
                               and ids["adam"] in members["active_segment_id"]
                               and ids["dora"] in members["dormant_segment_id"]) else None

        await eventually(grouped)

        definition = fill(orjson.loads(TEMPLATE.read_bytes())["definition"], values)
        definition["holdout_percent"] = 0  # three people: a 5% holdout could leave out the one a branch needs
        journey = ok(await api.post("/v1/journeys", json={"name": "Double-11 warm-up", "definition": definition}))
        assert not journey.get("errors"), journey["errors"]
        jid = journey["journey"]["id"]
        ok(await api.post(f"/v1/journeys/{jid}/publish"))

        # launch day: the occurrence is fanned out once it begins anywhere, each person waits for 10:00 at home
        clock.set(LAUNCH - timedelta(hours=2))

        async def entered():
            page = ok(await api.get(f"/v1/journeys/{jid}/enrollments", params={"limit": 50}))["enrollments"]
            return page if len(page) == 3 else None

        enrolled = await eventually(entered, timeout=60)
        assert {e["profile_id"] for e in enrolled} == set(ids.values())
        assert not sink.messages  # 08:00 in Shanghai: nobody is mailed yet
        clock.set(LAUNCH + timedelta(seconds=30))

        def mails_to(name: str) -> list:
            return [m for m in sink.messages if m["To"] == people[name]]

        def html(mail) -> str:
            return mail.get_body(("html",)).get_content()

        async def first_wave():
            return len(sink.messages) >= 3 or None

        await eventually(first_wave, timeout=60)
        [welcome] = mails_to("lena")
        assert welcome["Subject"] == "Free shipping on 11.11, Lena"
        [early] = mails_to("adam")
        early_code = re.search(r"early-access code: (EARLY-\S+?)<", html(early)).group(1)
        [cart] = mails_to("dora")
        assert re.search(r"Come back with CART-\S+<", html(cart))

        # Lena and Adam open their emails: their mail clients load the tracking pixel through the gateway
        for mail in (welcome, early):
            pixel = re.search(r'src="([^"]+/t/o/[^"]+\.gif)"', html(mail)).group(1)
            r = await browser.get(pixel)
            assert r.status_code == 200 and r.headers["content-type"] == "image/gif"

        async def second_wave():
            return (len(mails_to("lena")) >= 2 and len(mails_to("adam")) >= 2) or None

        await eventually(second_wave)
        lead_coupon = mails_to("lena")[1]
        lead_code = re.search(r"Your coupon: <b>(LEAD-\S+?)</b>", html(lead_coupon)).group(1)
        assert mails_to("adam")[1]["Subject"] == "Share with 10 friends"

        # Lena's first purchase, with the coupon; Adam shares ten times
        clock.set(LAUNCH + timedelta(hours=3))
        ok(await sdk.post("/v1/track", json={
            "userId": f"lena-{run}", "event": "Order Completed",
            "properties": {"order_id": f"l1-{run}", "total": 99, "currency": "CNY", "coupon": lead_code,
                           "products": [{"product_id": "gel-12", "category": "nutrition", "price": 99}]}}))
        ok(await sdk.post("/v1/batch", json={"batch": [
            {"type": "track", "userId": f"adam-{run}", "event": "Product Shared",
             "properties": {"product_id": "pegasus-41", "share_via": "wechat", "n": i}} for i in range(10)]}))

        async def lena_voucher():
            return len(mails_to("lena")) >= 3 or None

        await eventually(lena_voucher)
        assert re.search(r"Voucher D11-\S+ \(first_purchase\)", html(mails_to("lena")[2]))

        # the share task settles after ten minutes, then the sharers segment decides
        clock.set(LAUNCH + timedelta(hours=3, minutes=15))

        async def adam_voucher():
            return len(mails_to("adam")) >= 3 or None

        await eventually(adam_voucher)
        assert re.search(r"Voucher D11-\S+ \(share_task\)", html(mails_to("adam")[2]))

        # one week before the day: the reminder with the early-access code
        clock.set(REMINDER + timedelta(seconds=30))

        async def reminded():
            return len(mails_to("adam")) >= 4 or None

        await eventually(reminded)
        assert f"Your access code: {early_code}" in html(mails_to("adam")[3])

        # two weeks on, Dora has not ordered: her wait times out and she leaves; everyone is done
        clock.set(LAUNCH + timedelta(days=15))

        async def finished():
            page = ok(await api.get(f"/v1/journeys/{jid}/enrollments", params={"limit": 50}))["enrollments"]
            return page if all(e["status"] == "completed" for e in page) else None

        done = {e["profile_id"]: e for e in await eventually(finished, timeout=60)}
        assert done[ids["lena"]]["converted"] and not done[ids["dora"]]["converted"]
        stats = ok(await api.get(f"/v1/journeys/{jid}/stats"))
        assert stats["entered"] == 3 and stats["converted"] >= 1

        # each email exactly once, and nothing else
        assert [len(mails_to(n)) for n in ("lena", "adam", "dora")] == [3, 4, 1]
        assert len({m["Message-ID"] for m in sink.messages}) == len(sink.messages) == 8
        wallet = ok(await api.get(f"/v1/loyalty/members/{ids['lena']}/coupons"))
        codes = {c["code"] for c in wallet.get("coupons") or wallet.get("items") or []}
        assert lead_code in codes
