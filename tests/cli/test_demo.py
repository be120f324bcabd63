"""`mcloud demo` without a stack: the demo tenant's data are valid for the gateway's schemas and the journey
grammar, the adapted journeys never wait days, the templates render what the story looks for, the generator
is deterministic and realistic, and the demo's SMTP sink receives mail."""

from __future__ import annotations

import asyncio
import re
import smtplib
from collections import Counter
from datetime import UTC, datetime, timedelta
from email.message import EmailMessage

import httpx
import orjson
import pytest
from liquid import Environment

from gateway.schemas.coupons import CampaignWrite
from gateway.schemas.loyalty import ProgramWrite
from gateway.schemas.messaging_people import ChannelConfigWrite
from gateway.schemas.recommend import ItemUpsert, RecommendSettingsWrite
from gateway.schemas.templates import TemplateWrite
from journey.domain.definition import validate
from mcloud_cli.demo import catalog, generate
from mcloud_cli.demo.push import PushSink
from mcloud_cli.demo.smtp import MailSink, html_of

NOW = datetime(2027, 3, 1, 12, 0, tzinfo=UTC)


def test_the_demo_data_fit_the_gateways_schemas():
    ItemUpsert.model_validate({"items": catalog.CATALOGUE})
    RecommendSettingsWrite.model_validate(catalog.RECOMMEND_SETTINGS)
    program = ProgramWrite.model_validate(catalog.PROGRAM)
    assert [(t.code, t.threshold_points) for t in program.tiers] == [("normal", 0), ("silver", 1000), ("gold", 6000)]
    assert program.auto_enroll
    CampaignWrite.model_validate(catalog.WELCOME_COUPON)
    for key, (channel, content) in catalog.TEMPLATES.items():
        TemplateWrite.model_validate({"name": f"demo-{key}", "channel": channel, "default_locale": "en",
                                      "variants": [{"locale": "en", **content}]})
    ChannelConfigWrite.model_validate({"provider": "http_json", "settings": {"url": "http://127.0.0.1:1/push"}})
    for life in catalog.LIFECYCLE:
        for body in life.campaigns.values():
            CampaignWrite.model_validate(body)
    assert catalog.WELCOME_COUPON["remind_days_before_expiry"] > 0  # feeds the coupon-expiry journey


def test_the_catalogue_tells_the_story():
    categories = {i["categories"][-1] for i in catalog.PRODUCTS}
    for wanted in catalog.RECOMMEND_SETTINGS["complements"]["running_shoes"]:
        assert wanted in categories
    assert sum(1 for i in catalog.PRODUCTS if i["categories"][-1] == "running_shoes") >= 3
    assert any(i.get("kind") == "activity" and "marathon" in i["tags"] for i in catalog.CATALOGUE)
    assert len({i["id"] for i in catalog.CATALOGUE}) == len(catalog.CATALOGUE)
    # her order alone crosses Silver: 100 + the shoe's price in yuan
    assert 100 + catalog.BY_ID["aerorun-5"]["price"] >= 1000


@pytest.mark.parametrize(("file", "build"), [("welcome-first-purchase.json", catalog.welcome_journey),
                                             ("tier-upgrade-congratulation.json", catalog.tier_upgrade_journey)])
def test_the_adapted_journeys_are_valid_and_never_wait_days(file, build):
    template = orjson.loads((catalog.journey_templates_dir() / file).read_bytes())
    values = {k: "0193a0c2-8f00-7000-8000-000000000001" for k in template["variables"]}
    values["inapp_template"] = "0193a0c2-8f00-7000-8000-000000000002"
    definition, notes = build(template, values)
    result = validate(orjson.dumps(definition).decode())
    assert result.errors == [], result.errors
    assert notes
    steps = definition["steps"]
    assert not [s for s in steps if s.get("best_send_time")]
    assert not [s for s in steps for k in ("duration", "timeout") if re.search(r"\d+D", s.get(k, ""))]
    assert definition.get("holdout_percent", 0) == 0
    first = next(s for s in steps if s["id"] == definition["start"])
    if file.startswith("welcome"):
        assert first["type"] == "issue_coupon" and first["next"] == "welcome-email"
    else:
        assert first["id"] == "congratulate" and first["next"] == "congratulate-in-app"


FAKE = "0193a0c2-8f00-7000-8000-0000000000{:02d}"


def _valid_and_real_time(definition: dict) -> None:
    result = validate(orjson.dumps(definition).decode())
    assert result.errors == [], result.errors
    steps = definition["steps"]
    assert not [s for s in steps if s.get("best_send_time")]
    assert not [s for s in steps for k in ("duration", "timeout") if re.search(r"\d+D", s.get(k, ""))]
    assert definition.get("holdout_percent", 0) == 0


@pytest.mark.parametrize("life", catalog.LIFECYCLE, ids=lambda life: life.key)
def test_every_other_lifecycle_journey_is_filled_valid_and_adapted(life):
    template = orjson.loads((catalog.journey_templates_dir() / life.file).read_bytes())
    # the demo fills every variable of the template: templates it creates, campaigns, segments, values
    provided = {"program_id", *life.templates, *life.campaigns, *life.segments, *life.fixed}
    assert set(template["variables"]) <= provided, set(template["variables"]) - provided
    for key in life.templates.values():
        assert key in catalog.TEMPLATES
    values = {var: FAKE.format(i) for i, var in enumerate(sorted(provided))}
    values.update(life.fixed)
    definition, notes = catalog.lifecycle_journey(template, values)
    _valid_and_real_time(definition)
    assert "{{" not in orjson.dumps(definition).decode()
    assert notes or life.notes
    assert bool(life.draft) == (life.key == "double11")  # only the seasonal campaign waits as a draft
    if life.key == "replenishment":
        entry = definition["entry"]["where"][0]
        assert entry == {"property": "category", "op": "eq", "value": "nutrition"}
        assert definition["steps"][0]["duration"] == "PT25H"
    if life.key == "repeat_purchase":
        assert definition["entry"]["event"] == "Order Completed" and definition["start"] == "reordered-within-14d"


def test_the_push_journeys_are_valid_and_entered_by_the_apps_and_the_pos_events():
    nearby = catalog.store_nearby_journey(FAKE.format(1))
    _valid_and_real_time(nearby)
    assert nearby["entry"]["event"] == "Store Nearby" and nearby["reentry"]["mode"] == "cooldown"
    assert [s["channel"] for s in nearby["steps"] if s["type"] == "send"] == ["push"]
    thanks = catalog.post_purchase_journey(FAKE.format(2))
    _valid_and_real_time(thanks)
    assert thanks["entry"] == {"type": "event", "event": "Order Completed", "key": "order_id",
                               "where": [{"property": "store_id", "op": "exists"}]}  # POS orders only
    assert [s["channel"] for s in thanks["steps"] if s["type"] == "send"] == ["push"]


def test_adapt_rewires_every_edge_past_removed_waits():
    definition = {"entry": {"type": "api"}, "start": "w", "steps": [
        {"id": "w", "type": "wait", "best_send_time": True, "within": "P1D", "next": "a"},
        {"id": "a", "type": "wait_for_event", "event": "X", "timeout": "P3D", "next": "w", "timeout_next": "w"},
        {"id": "b", "type": "wait", "duration": "P14D", "next": "end"},
        {"id": "end", "type": "exit"}]}
    adapted, notes = catalog.adapt(definition)
    assert adapted["start"] == "a"
    a = adapted["steps"][0]
    assert (a["next"], a["timeout_next"], a["timeout"]) == ("a", "a", "PT3H")
    assert adapted["steps"][1]["duration"] == "PT14H"
    assert definition["steps"][0]["id"] == "w"  # the template itself is untouched
    assert len(notes) == 3


def test_the_templates_render_what_the_story_reads():
    env = Environment()
    changed = {"to_tier_code": "silver", "benefit_codes": ["early_access"], "next_tier_code": "gold",
               "points_to_next_tier": "4801", "profile": {"first_name": "Rachel"}}
    subject = env.from_string(catalog.TEMPLATES["tier-upgrade"][1]["subject"]).render(**changed)
    assert subject == "You are Silver now, Rachel"
    html = env.from_string(catalog.TEMPLATES["welcome"][1]["body_html"]).render(
        coupon={"code": "WELCOME-AB12"}, profile={"first_name": "Rachel"})
    assert "WELCOME-AB12" in html
    invite = catalog.TEMPLATES["store-invite-push"][1]
    assert env.from_string(invite["title"]).render(profile={"first_name": "Rachel"}) == (
        "Rachel, you are near Stride Jing'an")
    thanks = catalog.TEMPLATES["post-purchase-push"][1]
    body = env.from_string(thanks["body_text"]).render(order_id="POS-1", total=218)
    assert "POS-1 earned 318 points" in body


async def test_the_demo_push_sink_keeps_every_json_body():
    async with PushSink() as sink, httpx.AsyncClient() as client:
        r = await client.post(sink.url, json={"to": "tok-1", "title": "Hi", "body": "there", "data": {}})
        assert r.status_code == 200 and r.json()["id"]
        r = await client.post(sink.url, content=b"not json")
        assert r.status_code == 400
        await client.post(sink.url, json={"to": "tok-2", "title": "Other"})
    assert [p["title"] for p in sink.to("tok-1")] == ["Hi"] and len(sink.pushes) == 2


async def test_the_push_sink_stops_while_a_sender_keeps_its_connection_open():
    """messaging keeps its HTTP connection alive: stopping the sink ends that connection's handler itself,
    so nothing is left to be cancelled (and reported as a traceback) when the demo's event loop closes."""
    sink = await PushSink().start()
    client = httpx.AsyncClient()
    try:
        assert (await client.post(sink.url, json={"to": "t", "title": "hi"})).status_code == 200
        assert sink._handlers  # the kept-alive connection is being served
        await sink.stop()
        assert not sink._handlers
    finally:
        await client.aclose()


def test_the_generator_is_deterministic():
    a = generate.plan(60, 14, seed=7, now=NOW)
    b = generate.plan(60, 14, seed=7, now=NOW)
    c = generate.plan(60, 14, seed=8, now=NOW)
    assert a.events == b.events and (a.orders, a.revenue) == (b.orders, b.revenue)
    assert a.events != c.events


def test_the_generated_behaviour_is_realistic():
    p = generate.plan(300, 30, seed=1, now=NOW)
    events = p.events
    assert p.people == 300 and len(events) > 1000
    assert len({e["messageId"] for e in events}) == len(events)
    stamps = [datetime.fromisoformat(e["timestamp"].replace("Z", "+00:00")) for e in events]
    assert stamps == sorted(stamps)
    assert NOW - timedelta(days=30) <= stamps[0] and stamps[-1] <= NOW
    assert (stamps[-1] - stamps[0]) > timedelta(days=20)  # spread over the period
    counts = p.counts()
    assert counts["Product Viewed"] > counts["Product Added"] > counts["Order Completed"] > 0
    assert counts["Signed Up"] == len(p.known) and 0.4 < len(p.known) / p.people < 0.7
    assert {e["context"]["channel"] for e in events} >= {"web", "app", "pos"}
    orders = [e for e in events if e.get("event") == "Order Completed"]
    assert len(orders) == p.orders and p.pos_orders > 0
    assert sum(o["properties"]["total"] for o in orders) == pytest.approx(p.revenue)
    for o in orders:
        assert o["properties"]["total"] == sum(x["price"] * x["quantity"] for x in o["properties"]["products"])
    signups = [e for e in events if e["type"] == "identify"]
    assert all("@" in e["traits"]["email"] and e["anonymousId"] and e["userId"] for e in signups)
    assert any("phone" in e["traits"] for e in signups)
    pos = [o for o in orders if o["context"]["channel"] == "pos"]
    assert all(o["userId"] in p.known and "anonymousId" not in o for o in pos)
    per_person = Counter(e.get("anonymousId") for e in events if e.get("anonymousId"))
    assert len(per_person) == p.people


def test_the_generator_refuses_nonsense():
    with pytest.raises(ValueError):
        generate.plan(0, 10)


async def test_the_demo_smtp_sink_keeps_what_it_is_sent():
    async with MailSink() as sink:
        mail = EmailMessage()
        mail["From"], mail["To"], mail["Subject"] = "club@example.com", "rachel@example.com", "Hello"
        mail.set_content("plain")
        mail.add_alternative("<p>Hi <b>WELCOME-1</b></p>", subtype="html")

        def deliver():
            with smtplib.SMTP("127.0.0.1", sink.port, timeout=10) as client:
                client.send_message(mail)

        await asyncio.to_thread(deliver)
        [got] = sink.to("Rachel@example.com")
        assert got["Subject"] == "Hello" and "WELCOME-1" in html_of(got)


def test_kpi_lines_summarise_whatever_the_gateway_answers():
    from mcloud_cli.demo.story import kpi_lines

    lines = kpi_lines({"summary": {"members_gained": 1, "roi": None, "tier_upgrades": 1},
                       "journeys": [{"name": "Welcome", "entered": 1, "converted": 1, "conversion_rate": 1.0}],
                       "channels": {"channels": [{"channel": "email", "sent": 2, "opened": 0}]},
                       "audience": {"profiles": 1}, "since": "x"})
    assert lines[0] == "summary: members gained 1, tier upgrades 1"
    assert lines[1].startswith("journey Welcome: entered 1, converted 1")
    assert lines[2].startswith("channel email: sent 2")
    assert lines[-1] == "also in GET /v1/kpis: audience"
    assert kpi_lines([1, 2]) == ["[1, 2]"] and kpi_lines({}) == ["{}"]
