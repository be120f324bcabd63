"""The whole Rachel story of DOMAIN.md on ONE stack started as `mcloud up` starts it (with a controlled clock),
driven by the same story module `mcloud demo` plays (mcloud_cli.demo.story), and every cross-service effect
asserted through the public HTTP API:

- identity merges her anonymous profile into the member she becomes, with its history;
- loyalty keys her membership by the surviving profile (also when asked by her anonymous id), earns 100 + 1 per
  yuan per order, makes her Silver once, and a replayed order earns nothing;
- journey enrols the survivor in the welcome journey (email with the 10% coupon) and in the tier-upgrade
  journey ONCE (email and in-app message), even though the order was replayed;
- recommend serves her anonymous history to the member, cross-category complements once her intent locks,
  and never the shoe she bought;
- near the store, the app's Store Nearby event sends ONE push invitation (generic JSON HTTP push provider, a
  local push sink); her POS order sends ONE post-purchase push and enters the re-marketing journeys
  (repeat purchase, replenishment); the other lifecycle journeys are published, Double-11 kept as a draft;
- each message arrives exactly once; erasing her removes her from identity, loyalty, journey, recommend and
  messaging.
"""

from __future__ import annotations

from collections import Counter

import pytest

from mcloud_cli.demo.api import Gateway
from mcloud_cli.demo.push import PushSink
from mcloud_cli.demo.setup import configure
from mcloud_cli.demo.smtp import MailSink
from mcloud_cli.demo.story import SHOE, Story
from mcloud_cli.stack import OffsetClock, start_stack


@pytest.fixture(scope="module")
def clock(tmp_path_factory) -> OffsetClock:
    return OffsetClock(tmp_path_factory.mktemp("clock") / "offset")


@pytest.fixture(scope="module")
def stack(tmp_path_factory, clock):
    with start_stack(tmp_path_factory.mktemp("story") / "mcloud",
                     extra_args=["--clock-offset-file", str(clock.path)]) as handle:
        yield handle


async def test_rachel_from_anonymous_visitor_to_silver_member_then_erased(stack, new_tenant, clock):
    tenant = new_tenant("rachel-story")
    async with (MailSink() as mail, PushSink() as push,
                Gateway(stack.gateway_url, tenant["write_key"], tenant["secret_key"]) as gw):
        setup = await configure(gw, mail.port, push_url=push.url)
        story = Story(gw, setup, mail, push, advance=clock.advance)
        steps = {step.key: step async for step in story.play()}
        survivor = story.profile_id

        # identity: one person, the anonymous profile merged into the member, her browsing kept
        signed = steps["sign_up"].data
        assert signed["known_id"] == survivor != signed["anonymous_id"]
        assert signed["anonymous_id"] in signed["profile"]["merged_from"]
        assert signed["views"] >= 2
        assert (await gw.get(f"/v1/profiles/anonymous_id:{story.device}"))["id"] == survivor

        # loyalty: the member is the survivor, whichever identifier the shop asks with
        by_device = await gw.get(f"/v1/loyalty/members/anonymous_id:{story.device}", program_id=setup.program_id)
        assert by_device["profile_id"] == survivor
        order = steps["order"].data
        assert order["member"]["tier"]["code"] == "silver"
        pos = steps["pos"].data
        assert pos["member"]["balance"]["qualifying"] == pos["before"]["balance"]["qualifying"] + pos["earned"]
        ledger = (await gw.get(f"/v1/loyalty/members/{survivor}/ledger", program_id=setup.program_id))["entries"]
        by_order = Counter(e["order_id"] for e in ledger if e["order_id"])
        assert set(by_order) == {story.web_order, story.pos_order}  # the replay added no entry
        assert sum(e["points"] for e in ledger if e["order_id"] == story.web_order) == 100 + 1099
        assert [e["points"] for e in ledger if "bonus" in f"{e['reason']} {e['description']}".lower()] == [500]

        # journey: enrolments on the survivor; the tier-upgrade journey entered once
        enrollments = (await gw.get(f"/v1/profiles/{survivor}/enrollments", limit=50))["enrollments"]
        assert {e["profile_id"] for e in enrollments} == {survivor}
        per_journey = Counter(e["journey_id"] for e in enrollments)
        j = setup.journeys
        assert per_journey == {j["welcome"]: 1, j["tier_upgrade"]: 1, j["store_nearby"]: 1, j["post_purchase"]: 1,
                               j["repeat_purchase"]: 2, j["replenishment"]: 1}, per_journey
        repeat = {e["entry_key"] for e in enrollments if e["journey_id"] == j["repeat_purchase"]}
        assert repeat == {story.web_order, story.pos_order}  # one per order; the replayed web order entered nothing
        # every lifecycle journey of journey-svc/templates is there: published, Double-11 a draft
        for key in ("welcome", "tier_upgrade", "store_nearby", "post_purchase", "repeat_purchase", "replenishment",
                    "coupon_expiry", "win_back", "double11"):
            journey = await gw.get(f"/v1/journeys/{j[key]}")
            assert journey["status"] == ("draft" if key == "double11" else "active"), (key, journey["status"])
        assert set(setup.drafts) == {"double11"}
        stats = await gw.get(f"/v1/journeys/{setup.journeys['tier_upgrade']}/stats")
        assert stats["entered"] == 1
        welcome = next(e for e in enrollments if e["journey_id"] == setup.journeys["welcome"])
        assert welcome["converted"]  # her first order is the welcome journey's goal

        async def invitation_converted():  # the invitation worked: she bought in the store
            return [e for e in await story.entered("store_nearby") if e["converted"]] or None

        await gw.until(invitation_converted, 30, "the store invitation converted by her POS order")

        # recommend: popular at first, then similar items and the marathon; her anonymous history served to the
        # member; complements once her intent locked; never the shoe she bought
        assert steps["browse"].data["before"]["cold_start"] is True
        assert not signed["recs"]["cold_start"]
        lead = steps["intent"].data["recs"]["items"][:3]
        assert [i["recommender"] for i in lead] == ["cross_category"] * 3
        assert set(steps["intent"].data["lead_categories"]) == {"socks", "watches", "energy_gels"}
        assert SHOE not in [i["item_id"] for i in order["recs_after"]["items"]]
        assert SHOE not in [r["item_id"] for r in steps["store"].data["clerk"]["recommendations"]]

        # messages: the welcome email with its coupon and the congratulation, each exactly once
        [welcome_mail] = story.mails(r"^Welcome to Stride Club")
        assert signed["coupon"] and signed["coupon"].startswith("WELCOME-")
        wallet = await gw.get(f"/v1/loyalty/members/{survivor}/coupons")
        assert signed["coupon"] in {c["code"] for c in wallet.get("coupons") or wallet.get("items") or []}
        assert len(story.mails(r"^You are Silver now")) == 1
        assert len(mail.to(story.email)) == 2, [m["Subject"] for m in mail.to(story.email)]
        inbox = await gw.get(f"/v1/messaging/profiles/{survivor}/inbox")
        assert [m["title"] for m in inbox["messages"]] == ["You are Silver now"]
        history = (await gw.get("/v1/messages", profile=survivor, limit=50))["items"]
        assert Counter(m["channel"] for m in history) == {"email": 2, "in_app": 1, "push": 2}

        # push: the invitation after the location event and the thank-you after the POS order, each once, on her
        # phone's token, through the generic JSON HTTP provider
        [invite] = story.pushes(r"you are near")
        assert invite["title"] == "Rachel, you are near Stride Jing'an" and invite["data"]["store_id"] == "SH-JINGAN"
        [thanks] = story.pushes(r"^Thanks for visiting")
        assert thanks["title"] == "Thanks for visiting Stride, Rachel"
        assert story.pos_order in thanks["body"]
        assert len(push.pushes) == 2 and {p["to"] for p in push.pushes} == {story.push_token}
        assert steps["store"].data["invite"] == [invite] and steps["pos"].data["thanks"] == [thanks]
        assert welcome_mail["To"] == story.email

        # the clerk's tablet: her, Silver, her views
        clerk = steps["store"].data["clerk"]
        assert clerk["profile"]["id"] == survivor and clerk["loyalty"]["tier"]["code"] == "silver"
        assert clerk["unavailable"] == []

        # erase: gone everywhere
        assert (await story.erase())["erased"] is True

        async def gone_from_identity():
            r = await gw.api.get(f"/v1/profiles/{survivor}")
            return r if r.status_code == 404 else None

        await gw.until(gone_from_identity, 30, "the profile erased in identity")

        async def gone_from_loyalty():
            report = await gw.get(f"/v1/loyalty/programs/{setup.program_id}/report")
            return report if report["members"] == 0 else None

        await gw.until(gone_from_loyalty, 30, "the membership deleted in loyalty")

        async def gone_from_journeys():
            for jid in setup.journeys.values():
                page = await gw.get(f"/v1/journeys/{jid}/enrollments", limit=50)
                if page["enrollments"]:
                    return None
            return True

        await gw.until(gone_from_journeys, 30, "the enrolments deleted in journey")

        async def gone_from_messaging():
            for jid in setup.journeys.values():
                if (await gw.get("/v1/messages", journey_id=jid, limit=50))["items"]:
                    return None
            return True

        await gw.until(gone_from_messaging, 30, "the message history deleted in messaging")

        async def nothing_personal():
            r = await gw.api.get("/v1/recommendations", params={"anonymous_id": story.device, "count": 6})
            if r.status_code == 404:
                return True
            body = r.json()
            return body if body["cold_start"] and not body["intent_locked"] else None

        await gw.until(nothing_personal, 30, "recommend forgetting her")
