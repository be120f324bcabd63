"""Coupons through gRPC against the real service: campaigns, generated and pooled codes, limits under
concurrency, idempotent issue, validation, reserve -> redeem -> release, owner-only release, redeeming
against an order, revoking, the expiry/reminder job, the helpers the identity-events consumer and
rewards use, and tenant isolation."""

from __future__ import annotations

import asyncio
import uuid
from datetime import timedelta

import asyncpg
import grpc
import pytest

from loyalty.background import coupons as coupon_jobs
from loyalty.repo import coupons as coupon_repo
from loyalty.testing import published, wait_published
from mcloud.events.v1 import loyalty_events_pb2 as events
from mcloud.loyalty.v1 import loyalty_pb2 as pb
from mcloud_common.db import asyncpg_dsn
from mcloud_common.testing.services import wait_until
from mcloud_common.timestamps import from_timestamp, to_timestamp

SHARDS = 4


def error_code(err: grpc.aio.AioRpcError) -> str:
    return dict(err.trailing_metadata() or ()).get("mcloud-error-code", "")


async def fails(call, status: grpc.StatusCode, code: str) -> None:
    with pytest.raises(grpc.aio.AioRpcError) as err:
        await call
    assert (err.value.code(), error_code(err.value)) == (status, code), err.value.details()


def person() -> str:
    return str(uuid.uuid4())


async def make_campaign(api, **kw) -> pb.CouponCampaign:
    spec = dict(name="Welcome 10%", discount_type=pb.DISCOUNT_TYPE_PERCENT_OFF, percent_off=10,
                code_prefix="WELCOME-", validity_days=30)
    spec.update(kw)
    r = await api.call("UpsertCouponCampaign", pb.UpsertCouponCampaignRequest(campaign=pb.CouponCampaign(**spec)))
    return r.campaign


async def issue(api, campaign_id: str, profile: str, key: str = "", source: str = "journey") -> pb.Coupon:
    r = await api.call("IssueCoupon", pb.IssueCouponRequest(campaign_id=campaign_id, profile_id=profile,
                                                            source=source, idempotency_key=key))
    return r.coupon


async def get_campaign(api, campaign_id: str) -> pb.CouponCampaign:
    return (await api.call("GetCouponCampaign", pb.GetCouponCampaignRequest(campaign_id=campaign_id))).campaign


async def get_coupon(api, code: str) -> pb.Coupon:
    return (await api.call("GetCoupon", pb.GetCouponRequest(code=code))).coupon


def reserve(api, code, profile, order_id, hold=0, key=""):
    return api.call("ReserveCoupon", pb.ReserveCouponRequest(code=code, profile_id=profile, order_id=order_id,
                                                             hold_seconds=hold, idempotency_key=key))


def redeem(api, code, profile, order_id, discount=0, key=""):
    return api.call("RedeemCoupon", pb.RedeemCouponRequest(code=code, profile_id=profile, order_id=order_id,
                                                           discount_minor=discount, currency="EUR",
                                                           idempotency_key=key))


def release(api, code, order_id, key="", profile=""):
    return api.call("ReleaseCoupon", pb.ReleaseCouponRequest(code=code, order_id=order_id, idempotency_key=key,
                                                             profile_id=profile))


def revoke(api, code, reason="fraud", actor="ops@example.com", key=""):
    return api.call("RevokeCoupon", pb.RevokeCouponRequest(code=code, reason=reason, actor=actor,
                                                           idempotency_key=key))


def order(order_id="o-1", total=10_000, currency="EUR", lines=()) -> pb.Order:
    return pb.Order(order_id=order_id, total_minor=total, currency=currency,
                    lines=[pb.OrderLine(item_id=f"sku-{i}", category=c, quantity=1, amount_minor=a)
                           for i, (c, a) in enumerate(lines)])


async def validate(api, code, profile, o=None) -> pb.ValidateCouponResponse:
    return await api.call("ValidateCoupon", pb.ValidateCouponRequest(code=code, profile_id=profile,
                                                                     order=o or order()))


async def settle(outcomes) -> tuple[list, list[str]]:
    """(results, error codes) of gathered calls run with return_exceptions=True."""
    ok = [o for o in outcomes if not isinstance(o, BaseException)]
    errs = [o for o in outcomes if isinstance(o, BaseException)]
    for e in errs:
        assert isinstance(e, grpc.aio.AioRpcError), repr(e)
        assert e.code() == grpc.StatusCode.RESOURCE_EXHAUSTED, e.details()
    return ok, [error_code(e) for e in errs]


@pytest.fixture
async def pool(loyalty_db):
    p = await asyncpg.create_pool(asyncpg_dsn(loyalty_db), min_size=1, max_size=4)
    yield p
    await p.close()


# ---------------------------------------------------------------------------------------------- campaigns

async def test_campaigns_are_created_updated_read_and_listed_newest_first(api, clock):
    first = await make_campaign(api, name="First", max_issued=100, categories=["shoes", "shoes", " bags "])
    assert first.id and first.status == pb.CAMPAIGN_STATUS_ACTIVE
    assert first.code_source == pb.CODE_SOURCE_GENERATED and first.code_prefix == "WELCOME-"
    assert list(first.categories) == ["shoes", "bags"]
    clock.advance(minutes=1)
    second = await make_campaign(api, name="Second", code_source=pb.CODE_SOURCE_POOL, code_prefix="")
    clock.advance(minutes=1)
    third = await make_campaign(api, name="Third")

    changed = pb.CouponCampaign()
    changed.CopyFrom(first)
    changed.name, changed.percent_off, changed.status = "First, now 15%", 15, pb.CAMPAIGN_STATUS_PAUSED
    changed.issued_count = 999  # counters are the service's: ignored
    r = await api.call("UpsertCouponCampaign", pb.UpsertCouponCampaignRequest(campaign=changed))
    assert (r.campaign.id, r.campaign.name, r.campaign.percent_off) == (first.id, "First, now 15%", 15)
    assert r.campaign.status == pb.CAMPAIGN_STATUS_PAUSED and r.campaign.issued_count == 0
    assert r.campaign.created_at == first.created_at and r.campaign.updated_at != first.updated_at
    assert (await get_campaign(api, first.id)).name == "First, now 15%"

    page1 = await api.call("ListCouponCampaigns", pb.ListCouponCampaignsRequest(page_size=2))
    assert [c.name for c in page1.campaigns] == ["Third", "Second"] and page1.next_page_token
    page2 = await api.call("ListCouponCampaigns", pb.ListCouponCampaignsRequest(
        page_size=2, page_token=page1.next_page_token))
    assert [c.name for c in page2.campaigns] == ["First, now 15%"] and not page2.next_page_token
    assert {third.id, second.id} == {c.id for c in page1.campaigns}

    pool_change = pb.CouponCampaign()
    pool_change.CopyFrom(second)
    pool_change.code_source = pb.CODE_SOURCE_GENERATED
    await fails(api.call("UpsertCouponCampaign", pb.UpsertCouponCampaignRequest(campaign=pool_change)),
                grpc.StatusCode.FAILED_PRECONDITION, "code_source_immutable")
    await fails(api.call("ListCouponCampaigns", pb.ListCouponCampaignsRequest(page_token="garbage")),
                grpc.StatusCode.INVALID_ARGUMENT, "invalid_page_token")


async def test_bad_campaigns_and_unknown_ids_are_refused_with_stable_codes(api, clock):
    await fails(make_campaign(api, percent_off=0), grpc.StatusCode.INVALID_ARGUMENT, "invalid_percent_off")
    await fails(make_campaign(api, discount_type=pb.DISCOUNT_TYPE_AMOUNT_OFF, percent_off=0, amount_off_minor=500),
                grpc.StatusCode.INVALID_ARGUMENT, "invalid_currency")
    await fails(make_campaign(api, valid_from=to_timestamp(clock.now()),
                              valid_until=to_timestamp(clock.now() - timedelta(days=1))),
                grpc.StatusCode.INVALID_ARGUMENT, "invalid_valid_until")
    missing = str(uuid.uuid4())
    await fails(make_campaign(api, id=missing), grpc.StatusCode.NOT_FOUND, "campaign_not_found")
    await fails(get_campaign(api, missing), grpc.StatusCode.NOT_FOUND, "campaign_not_found")
    await fails(get_campaign(api, "nope"), grpc.StatusCode.INVALID_ARGUMENT, "invalid_campaign_id")
    await fails(issue(api, missing, person()), grpc.StatusCode.NOT_FOUND, "campaign_not_found")
    await fails(issue(api, missing, "someone"), grpc.StatusCode.INVALID_ARGUMENT, "invalid_profile_id")
    await fails(get_coupon(api, "NOPE"), grpc.StatusCode.NOT_FOUND, "coupon_not_found")


# ---------------------------------------------------------------------------------------------- issuing

async def test_generated_codes_are_unique_prefixed_and_each_issue_emits_coupon_issued(api, redis, clock):
    campaign = await make_campaign(api, code_prefix="spring-", validity_days=14, remind_days_before_expiry=3)
    people = [person() for _ in range(40)]
    coupons = await asyncio.gather(*(issue(api, campaign.id, p) for p in people))
    codes = [c.code for c in coupons]
    assert len(set(codes)) == 40
    assert all(c.startswith("SPRING-") and len(c) == len("SPRING-") + 8 for c in codes)
    first = coupons[0]
    assert first.state == pb.COUPON_STATE_ISSUED and first.source == "journey"
    assert from_timestamp(first.expires_at) == clock.now() + timedelta(days=14)
    assert (await get_campaign(api, campaign.id)).issued_count == 40
    assert (await get_coupon(api, first.code.lower())).code == first.code  # codes are case-insensitive

    [event] = await wait_published(redis, api.tenant, people[0], "coupon.issued")
    payload = events.CouponIssued()
    event.payload.Unpack(payload)
    assert (payload.code, payload.campaign_id, payload.profile_id) == (first.code, campaign.id, people[0])
    assert (payload.discount_type, payload.percent_off, payload.source) == ("percent_off", 10, "journey")
    assert payload.expires_at == first.expires_at


async def test_pool_codes_are_issued_once_each_then_pool_empty(api, db):
    campaign = await make_campaign(api, code_source=pb.CODE_SOURCE_POOL, code_prefix="")
    r = await api.call("AddCouponCodes", pb.AddCouponCodesRequest(
        campaign_id=campaign.id, codes=["pos-001", "POS-002", " pos-003 ", "POS-001"]))
    assert (r.added, r.skipped, r.pool_available) == (3, 1, 3)
    again = await api.call("AddCouponCodes", pb.AddCouponCodesRequest(campaign_id=campaign.id,
                                                                      codes=["POS-003", "POS-004"]))
    assert (again.added, again.skipped, again.pool_available) == (1, 1, 4)

    outcomes = await asyncio.gather(*(issue(api, campaign.id, person()) for _ in range(7)), return_exceptions=True)
    ok, errors = await settle(outcomes)
    assert sorted(c.code for c in ok) == ["POS-001", "POS-002", "POS-003", "POS-004"]
    assert errors == ["pool_empty"] * 3
    after = await get_campaign(api, campaign.id)
    assert (after.issued_count, after.pool_available) == (4, 0)

    generated = await make_campaign(api)
    issued = await issue(api, generated.id, person())
    await fails(api.call("AddCouponCodes", pb.AddCouponCodesRequest(campaign_id=generated.id, codes=["X1"])),
                grpc.StatusCode.FAILED_PRECONDITION, "not_a_pool_campaign")
    # a code already anywhere in the tenant (here: a generated coupon) is skipped, not duplicated
    other_pool = await make_campaign(api, code_source=pb.CODE_SOURCE_POOL, code_prefix="")
    dup = await api.call("AddCouponCodes", pb.AddCouponCodesRequest(campaign_id=other_pool.id,
                                                                    codes=[issued.code, "POS-001", "NEW-1"]))
    assert (dup.added, dup.skipped) == (1, 2)
    await fails(api.call("AddCouponCodes", pb.AddCouponCodesRequest(campaign_id=other_pool.id, codes=["bad code"])),
                grpc.StatusCode.INVALID_ARGUMENT, "invalid_code")
    await fails(get_coupon(api, "NEW-1"), grpc.StatusCode.NOT_FOUND, "coupon_not_found")  # in the pool, not issued


async def test_thirty_concurrent_issues_of_a_ten_coupon_campaign_issue_exactly_ten(api, db):
    campaign = await make_campaign(api, max_issued=10)
    outcomes = await asyncio.gather(*(issue(api, campaign.id, person()) for _ in range(30)), return_exceptions=True)
    ok, errors = await settle(outcomes)
    assert len(ok) == 10 and errors == ["campaign_exhausted"] * 20
    assert (await get_campaign(api, campaign.id)).issued_count == 10
    assert await db.fetchval("SELECT count(*) FROM coupons WHERE campaign_id = $1", campaign.id) == 10


async def test_per_profile_limit_holds_under_concurrency(api, db):
    campaign = await make_campaign(api, per_profile_limit=2, max_issued=100)
    rachel, other = person(), person()
    outcomes = await asyncio.gather(*(issue(api, campaign.id, rachel) for _ in range(20)), return_exceptions=True)
    ok, errors = await settle(outcomes)
    assert len(ok) == 2 and errors == ["profile_limit_reached"] * 18
    assert (await issue(api, campaign.id, other)).profile_id == other
    assert (await get_campaign(api, campaign.id)).issued_count == 3


async def test_pool_campaign_limits_do_not_consume_codes_they_refuse(api):
    campaign = await make_campaign(api, code_source=pb.CODE_SOURCE_POOL, code_prefix="", max_issued=2)
    await api.call("AddCouponCodes", pb.AddCouponCodesRequest(campaign_id=campaign.id,
                                                              codes=[f"C{i}" for i in range(5)]))
    outcomes = await asyncio.gather(*(issue(api, campaign.id, person()) for _ in range(6)), return_exceptions=True)
    ok, errors = await settle(outcomes)
    assert len(ok) == 2 and set(errors) == {"campaign_exhausted"}
    after = await get_campaign(api, campaign.id)
    assert (after.issued_count, after.pool_available) == (2, 3)


async def test_issue_with_one_key_gives_one_coupon_however_often_and_concurrently_retried(api, db, redis):
    campaign = await make_campaign(api)
    rachel = person()
    key = "enrollment-42:step-3"
    first = await issue(api, campaign.id, rachel, key)
    sequential = [await issue(api, campaign.id, rachel, key) for _ in range(9)]
    concurrent = await asyncio.gather(*(issue(api, campaign.id, rachel, key) for _ in range(10)))
    assert {c.code for c in [first, *sequential, *concurrent]} == {first.code}
    fresh_key = "enrollment-7:step-1"
    racing = await asyncio.gather(*(issue(api, campaign.id, rachel, fresh_key) for _ in range(10)))
    assert len({c.code for c in racing}) == 1 and racing[0].code != first.code
    assert await db.fetchval("SELECT count(*) FROM coupons WHERE campaign_id = $1", campaign.id) == 2
    assert (await get_campaign(api, campaign.id)).issued_count == 2
    await wait_published(redis, api.tenant, rachel, "coupon.issued", 2)
    await wait_until(lambda: db.fetchval("SELECT count(*) = 0 FROM outbox"), message="outbox drained")
    assert len(await published(redis, api.tenant, rachel, "coupon.issued")) == 2


async def test_issuing_happens_only_inside_the_window_of_an_active_campaign(api, clock):
    start = clock.now() + timedelta(days=1)
    end = clock.now() + timedelta(days=10)
    campaign = await make_campaign(api, valid_from=to_timestamp(start), valid_until=to_timestamp(end),
                                   validity_days=30)
    await fails(issue(api, campaign.id, person()), grpc.StatusCode.FAILED_PRECONDITION, "campaign_not_active")
    clock.advance(days=2)
    coupon = await issue(api, campaign.id, person())
    assert from_timestamp(coupon.expires_at) == end  # valid_until is earlier than issue + 30 days
    short = await make_campaign(api, valid_until=to_timestamp(end), validity_days=3)
    assert from_timestamp((await issue(api, short.id, person())).expires_at) == clock.now() + timedelta(days=3)
    for status in (pb.CAMPAIGN_STATUS_PAUSED, pb.CAMPAIGN_STATUS_ENDED):
        paused = pb.CouponCampaign()
        paused.CopyFrom(campaign)
        paused.status = status
        await api.call("UpsertCouponCampaign", pb.UpsertCouponCampaignRequest(campaign=paused))
        await fails(issue(api, campaign.id, person()), grpc.StatusCode.FAILED_PRECONDITION, "campaign_not_active")
    # issued coupons of a paused/ended campaign stay usable
    assert (await validate(api, coupon.code, coupon.profile_id)).valid
    clock.set(end)
    await fails(issue(api, short.id, person()), grpc.StatusCode.FAILED_PRECONDITION, "campaign_not_active")


async def test_shortening_the_campaign_window_pulls_in_open_coupons(api, clock):
    campaign = await make_campaign(api, validity_days=30)
    coupon = await issue(api, campaign.id, person())
    shorter = pb.CouponCampaign()
    shorter.CopyFrom(campaign)
    shorter.valid_until.CopyFrom(to_timestamp(clock.now() + timedelta(days=5)))
    await api.call("UpsertCouponCampaign", pb.UpsertCouponCampaignRequest(campaign=shorter))
    assert from_timestamp((await get_coupon(api, coupon.code)).expires_at) == clock.now() + timedelta(days=5)
    clock.advance(days=5)
    assert (await validate(api, coupon.code, coupon.profile_id)).reason == "expired"


# ---------------------------------------------------------------------------------------------- validation

async def test_validate_gives_the_discount_for_the_order_and_changes_nothing(api, db):
    percent = await make_campaign(api, percent_off=20, categories=["shoes"], min_order_minor=5_000, currency="EUR")
    amount = await make_campaign(api, discount_type=pb.DISCOUNT_TYPE_AMOUNT_OFF, percent_off=0,
                                 amount_off_minor=1_500, currency="EUR")
    ship = await make_campaign(api, discount_type=pb.DISCOUNT_TYPE_FREE_SHIPPING, percent_off=0)
    gift = await make_campaign(api, discount_type=pb.DISCOUNT_TYPE_GIFT, percent_off=0, gift_item_id="tote-bag")
    rachel = person()
    p, a, s, g = [await issue(api, c.id, rachel) for c in (percent, amount, ship, gift)]
    shoes = order(total=12_000, lines=[("shoes", 8_000), ("socks", 4_000)])

    r = await validate(api, p.code, rachel, shoes)
    assert (r.valid, r.reason, r.discount_minor, r.currency) == (True, "", 1_600, "EUR")
    assert r.coupon.code == p.code and r.coupon.state == pb.COUPON_STATE_ISSUED
    assert (await validate(api, p.code, rachel, order(total=12_000, lines=[("socks", 12_000)]))).reason == (
        "no_eligible_lines")
    assert (await validate(api, p.code, rachel, order(total=4_000, lines=[("shoes", 4_000)]))).reason == (
        "min_order_not_met")
    assert (await validate(api, p.code, rachel, order(total=12_000, currency="USD",
                                                      lines=[("shoes", 8_000)]))).reason == "currency_mismatch"
    assert (await validate(api, a.code, rachel, order(total=1_000))).discount_minor == 1_000  # capped
    assert (await validate(api, a.code, rachel, order(total=9_000))).discount_minor == 1_500
    assert (await validate(api, a.code, rachel, order(currency="GBP"))).reason == "currency_mismatch"
    for free in (s, g):
        r = await validate(api, free.code, rachel)
        assert (r.valid, r.discount_minor) == (True, 0)

    # what each coupon gives, so checkout can show it without reading the campaign
    gives = {c.code: (r.discount_type, r.free_shipping, r.gift_item_id)
             for c in (p, a, s, g) for r in [await validate(api, c.code, rachel)]}
    assert gives == {p.code: (pb.DISCOUNT_TYPE_PERCENT_OFF, False, ""),
                     a.code: (pb.DISCOUNT_TYPE_AMOUNT_OFF, False, ""),
                     s.code: (pb.DISCOUNT_TYPE_FREE_SHIPPING, True, ""),
                     g.code: (pb.DISCOUNT_TYPE_GIFT, False, "tote-bag")}
    too_small = await validate(api, p.code, rachel, order(total=4_000, lines=[("shoes", 4_000)]))
    assert (too_small.valid, too_small.discount_type) == (False, pb.DISCOUNT_TYPE_PERCENT_OFF)  # said when invalid too

    stranger = await validate(api, p.code, person(), shoes)
    assert (stranger.valid, stranger.reason, stranger.HasField("coupon")) == (False, "not_owner", False)
    assert (stranger.discount_type, stranger.gift_item_id) == (pb.DISCOUNT_TYPE_UNSPECIFIED, "")
    stranger_gift = await validate(api, g.code, person())
    assert (stranger_gift.discount_type, stranger_gift.gift_item_id) == (pb.DISCOUNT_TYPE_UNSPECIFIED, "")
    assert (await validate(api, "NO-SUCH-CODE", rachel)).reason == "not_found"
    await fails(validate(api, p.code, rachel, order(total=-1)), grpc.StatusCode.INVALID_ARGUMENT, "invalid_order")
    assert await db.fetchval("SELECT count(*) FROM coupons WHERE state <> 'issued'") == 0


async def test_validate_reports_state_reasons(api, clock):
    campaign = await make_campaign(api, validity_days=2)
    rachel = person()
    held, used, old = [await issue(api, campaign.id, rachel) for _ in range(3)]
    await reserve(api, held.code, rachel, "cart-1")
    await redeem(api, used.code, rachel, "order-9")
    assert (await validate(api, held.code, rachel, order("cart-2"))).reason == "reserved"
    assert (await validate(api, held.code, rachel, order("cart-1"))).valid  # its own checkout
    assert (await validate(api, used.code, rachel)).reason == "redeemed"
    clock.advance(days=2)
    r = await validate(api, old.code, rachel)
    assert (r.valid, r.reason, r.coupon.state) == (False, "expired", pb.COUPON_STATE_EXPIRED)

    later = await make_campaign(api, valid_from=to_timestamp(clock.now() + timedelta(days=1)))
    before = pb.CouponCampaign()
    before.CopyFrom(later)
    before.ClearField("valid_from")
    await api.call("UpsertCouponCampaign", pb.UpsertCouponCampaignRequest(campaign=before))
    early = await issue(api, later.id, rachel)
    await api.call("UpsertCouponCampaign", pb.UpsertCouponCampaignRequest(campaign=later))  # window moved later
    assert (await validate(api, early.code, rachel)).reason == "not_started"


# ---------------------------------------------------------------------------------------------- using

async def test_reserve_redeem_release_lifecycle(api, redis, clock):
    campaign = await make_campaign(api)
    rachel = person()
    coupon = await issue(api, campaign.id, rachel)

    held = (await reserve(api, coupon.code, rachel, "cart-1", hold=600)).coupon
    assert held.state == pb.COUPON_STATE_RESERVED and held.reserved_order_id == "cart-1"
    assert from_timestamp(held.reserved_until) == clock.now() + timedelta(seconds=600)
    clock.advance(seconds=60)
    assert (await reserve(api, coupon.code, rachel, "cart-1", hold=600)).coupon == held  # no-op, hold not moved
    await fails(reserve(api, coupon.code, rachel, "cart-2"), grpc.StatusCode.FAILED_PRECONDITION, "reserved")
    await fails(redeem(api, coupon.code, rachel, "cart-2"), grpc.StatusCode.FAILED_PRECONDITION, "reserved")

    released = (await release(api, coupon.code, "cart-1")).coupon
    assert released.state == pb.COUPON_STATE_ISSUED and not released.reserved_order_id
    assert (await release(api, coupon.code, "cart-1")).coupon.state == pb.COUPON_STATE_ISSUED  # idempotent

    await reserve(api, coupon.code, rachel, "cart-2")  # default hold: 15 minutes
    clock.advance(seconds=901)
    lapsed = await get_coupon(api, coupon.code)
    assert lapsed.state == pb.COUPON_STATE_ISSUED and not lapsed.HasField("reserved_until")
    await reserve(api, coupon.code, rachel, "cart-3")
    assert (await release(api, coupon.code, "cart-2")).coupon.reserved_order_id == "cart-3"  # not cart-2's hold

    redeemed = (await redeem(api, coupon.code, rachel, "cart-3", discount=1_250)).coupon
    assert redeemed.state == pb.COUPON_STATE_REDEEMED and redeemed.redeemed_order_id == "cart-3"
    assert from_timestamp(redeemed.redeemed_at) == clock.now() and not redeemed.reserved_order_id
    assert (await release(api, coupon.code, "cart-3")).coupon.state == pb.COUPON_STATE_REDEEMED
    assert (await get_campaign(api, campaign.id)).redeemed_count == 1
    [event] = await wait_published(redis, api.tenant, rachel, "coupon.redeemed")
    payload = events.CouponRedeemed()
    event.payload.Unpack(payload)
    assert (payload.code, payload.order_id, payload.discount_minor, payload.currency) == (
        coupon.code, "cart-3", 1_250, "EUR")


async def test_redeem_is_idempotent_for_the_same_order_and_refused_for_another(api, db, redis):
    campaign = await make_campaign(api)
    rachel = person()
    coupon = await issue(api, campaign.id, rachel)
    results = await asyncio.gather(*(redeem(api, coupon.code, rachel, "order-1", 500) for _ in range(8)))
    assert {r.coupon.redeemed_order_id for r in results} == {"order-1"}
    assert (await redeem(api, coupon.code, rachel, "order-1", 500, key="k1")).coupon.state == (
        pb.COUPON_STATE_REDEEMED)
    await fails(redeem(api, coupon.code, rachel, "order-2"), grpc.StatusCode.FAILED_PRECONDITION, "redeemed")
    assert (await get_campaign(api, campaign.id)).redeemed_count == 1
    await wait_until(lambda: db.fetchval("SELECT count(*) = 0 FROM outbox"), message="outbox drained")
    assert len(await published(redis, api.tenant, rachel, "coupon.redeemed")) == 1


async def test_someone_else_cannot_reserve_or_redeem_a_coupon(api):
    campaign = await make_campaign(api)
    coupon = await issue(api, campaign.id, person())
    thief = person()
    await fails(reserve(api, coupon.code, thief, "o"), grpc.StatusCode.PERMISSION_DENIED, "not_owner")
    await fails(redeem(api, coupon.code, thief, "o"), grpc.StatusCode.PERMISSION_DENIED, "not_owner")
    await fails(reserve(api, coupon.code, coupon.profile_id, "o", hold=-5), grpc.StatusCode.INVALID_ARGUMENT,
                "invalid_hold_seconds")
    await fails(redeem(api, coupon.code, coupon.profile_id, ""), grpc.StatusCode.INVALID_ARGUMENT,
                "invalid_order_id")
    assert (await get_coupon(api, coupon.code)).state == pb.COUPON_STATE_ISSUED


async def test_a_live_hold_survives_expiry_and_its_release_expires_the_coupon(api, clock):
    campaign = await make_campaign(api, validity_days=0, valid_until=to_timestamp(clock.now() + timedelta(hours=1)))
    rachel = person()
    a, b = await issue(api, campaign.id, rachel), await issue(api, campaign.id, rachel)
    clock.advance(minutes=50)
    await reserve(api, a.code, rachel, "cart-a", hold=1800)
    await reserve(api, b.code, rachel, "cart-b", hold=1800)
    clock.advance(minutes=20)  # past expiry, inside the holds
    assert (await redeem(api, a.code, rachel, "cart-a")).coupon.state == pb.COUPON_STATE_REDEEMED
    assert (await release(api, b.code, "cart-b")).coupon.state == pb.COUPON_STATE_EXPIRED
    await fails(reserve(api, b.code, rachel, "cart-c"), grpc.StatusCode.FAILED_PRECONDITION, "expired")


async def test_release_with_a_profile_is_refused_to_anyone_but_the_owner(api):
    campaign = await make_campaign(api)
    rachel = person()
    coupon = await issue(api, campaign.id, rachel)
    await reserve(api, coupon.code, rachel, "cart-1")

    await fails(release(api, coupon.code, "cart-1", profile=person()), grpc.StatusCode.PERMISSION_DENIED,
                "not_owner")
    await fails(release(api, coupon.code, "cart-9", profile=person()), grpc.StatusCode.PERMISSION_DENIED,
                "not_owner")  # whatever the hold: a stranger learns nothing
    await fails(release(api, coupon.code, "cart-1", profile="not-a-uuid"), grpc.StatusCode.INVALID_ARGUMENT,
                "invalid_profile_id")
    still = await get_coupon(api, coupon.code)
    assert (still.state, still.reserved_order_id) == (pb.COUPON_STATE_RESERVED, "cart-1")

    released = (await release(api, coupon.code, "cart-1", profile=rachel)).coupon
    assert released.state == pb.COUPON_STATE_ISSUED and not released.reserved_order_id
    assert (await release(api, coupon.code, "cart-1", profile=rachel)).coupon.state == pb.COUPON_STATE_ISSUED


async def test_redeem_with_the_order_checks_it_and_prices_the_discount_itself(api, db, redis):
    campaign = await make_campaign(api, percent_off=20, categories=["shoes"], min_order_minor=5_000, currency="EUR")
    rachel = person()
    coupon = await issue(api, campaign.id, rachel)
    shoes = order("order-1", total=12_000, lines=[("shoes", 8_000), ("socks", 4_000)])

    def redeem_order(o, order_id="order-1", discount=999_999, key=""):
        return api.call("RedeemCoupon", pb.RedeemCouponRequest(
            code=coupon.code, profile_id=rachel, order_id=order_id, discount_minor=discount, currency="GBP",
            order=o, idempotency_key=key))

    for bad, reason in ((order("order-1", total=4_000, lines=[("shoes", 4_000)]), "min_order_not_met"),
                        (order("order-1", total=9_000, lines=[("socks", 9_000)]), "no_eligible_lines"),
                        (order("order-1", total=9_000, currency="USD", lines=[("shoes", 9_000)]),
                         "currency_mismatch")):
        await fails(redeem_order(bad), grpc.StatusCode.FAILED_PRECONDITION, reason)
    await fails(redeem_order(order("order-2", total=12_000, lines=[("shoes", 8_000)])),
                grpc.StatusCode.INVALID_ARGUMENT, "order_id_mismatch")
    await fails(redeem_order(order("order-1", total=-5)), grpc.StatusCode.INVALID_ARGUMENT, "invalid_order")
    assert (await get_coupon(api, coupon.code)).state == pb.COUPON_STATE_ISSUED  # refusals changed nothing

    await reserve(api, coupon.code, rachel, "order-1")
    done = await redeem_order(shoes, key="pay-1")
    assert (done.coupon.state, done.discount_minor, done.currency) == (pb.COUPON_STATE_REDEEMED, 1_600, "EUR")
    assert await redeem_order(shoes, key="pay-1") == done
    again = await redeem_order(shoes)  # no key: the same order again is a no-op with the recorded discount
    assert (again.discount_minor, again.currency) == (1_600, "EUR")
    assert await db.fetchval("SELECT discount_minor FROM coupons WHERE code = $1", coupon.code) == 1_600
    [event] = await wait_published(redis, api.tenant, rachel, "coupon.redeemed")
    payload = events.CouponRedeemed()
    event.payload.Unpack(payload)
    assert (payload.discount_minor, payload.currency) == (1_600, "EUR")  # the caller's 999999 GBP is ignored

    # without an order, the caller's figure is recorded as before; an order without order_id is this order
    other = await issue(api, campaign.id, rachel)
    plain = await redeem(api, other.code, rachel, "order-3", discount=700)
    assert (plain.discount_minor, plain.currency) == (700, "EUR")
    third = await issue(api, campaign.id, rachel)
    priced = await api.call("RedeemCoupon", pb.RedeemCouponRequest(
        code=third.code, profile_id=rachel, order_id="order-4",
        order=pb.Order(total_minor=10_000, currency="EUR", lines=[pb.OrderLine(category="shoes",
                                                                               amount_minor=10_000)])))
    assert (priced.coupon.redeemed_order_id, priced.discount_minor) == ("order-4", 2_000)


@pytest.mark.without_jobs  # the test runs the expiry pass itself
async def test_revoked_coupons_are_final_and_keep_why_and_by_whom(api, db, pool, clock):
    campaign = await make_campaign(api, validity_days=10)
    rachel = person()
    loose, held, used, old = [await issue(api, campaign.id, rachel) for _ in range(4)]
    await reserve(api, held.code, rachel, "cart-1", hold=3600)
    await redeem(api, used.code, rachel, "order-1")

    first = (await revoke(api, loose.code.lower(), reason=" fraud ", key="rv-1")).coupon
    assert (first.state, first.revoke_reason, first.revoked_by) == (pb.COUPON_STATE_REVOKED, "fraud",
                                                                    "ops@example.com")
    assert from_timestamp(first.revoked_at) == clock.now()
    clock.advance(minutes=1)
    assert (await revoke(api, loose.code, reason="fraud", key="rv-1")).coupon == first  # retried with its key
    again = (await revoke(api, loose.code, reason="changed my mind", actor="someone@else"))
    assert again.coupon == first  # revoking a revoked coupon changes nothing; the first reason stays

    ended = (await revoke(api, held.code, reason="issued_by_mistake")).coupon
    assert ended.state == pb.COUPON_STATE_REVOKED and not ended.reserved_order_id  # the hold ended
    assert not ended.HasField("reserved_until")

    for code in (loose.code, held.code):
        assert (await validate(api, code, rachel, order("cart-1"))).reason == "revoked"
        await fails(reserve(api, code, rachel, "cart-2"), grpc.StatusCode.FAILED_PRECONDITION, "revoked")
        await fails(redeem(api, code, rachel, "cart-1"), grpc.StatusCode.FAILED_PRECONDITION, "revoked")
        assert (await release(api, code, "cart-1")).coupon.state == pb.COUPON_STATE_REVOKED
    await fails(revoke(api, used.code), grpc.StatusCode.FAILED_PRECONDITION, "redeemed")
    await fails(revoke(api, "NO-SUCH-CODE"), grpc.StatusCode.NOT_FOUND, "coupon_not_found")
    await fails(revoke(api, old.code, reason=""), grpc.StatusCode.INVALID_ARGUMENT, "invalid_reason")
    await fails(revoke(api, old.code, actor=" "), grpc.StatusCode.INVALID_ARGUMENT, "invalid_actor")
    await fails(revoke(api, "", actor=" "), grpc.StatusCode.INVALID_ARGUMENT, "invalid_code")

    wallet = await api.call("ListCoupons", pb.ListCouponsRequest(profile_id=rachel,
                                                                 states=[pb.COUPON_STATE_REVOKED]))
    assert {c.code for c in wallet.coupons} == {loose.code, held.code}
    assert all(c.revoke_reason for c in wallet.coupons)
    clock.advance(days=11)  # past every expiry: revoked stays revoked, the overdue one cannot be revoked
    assert (await get_coupon(api, loose.code)).state == pb.COUPON_STATE_REVOKED
    await fails(revoke(api, old.code), grpc.StatusCode.FAILED_PRECONDITION, "expired")
    assert (await coupon_jobs.expire_and_remind(pool, clock, SHARDS)).expired == 1  # only the overdue one
    states = dict(await db.fetch("SELECT code, state FROM coupons WHERE profile_id = $1", rachel))
    assert states == {loose.code: "revoked", held.code: "revoked", used.code: "redeemed", old.code: "expired"}
    assert (await get_campaign(api, campaign.id)).redeemed_count == 1


async def test_wallet_lists_newest_first_by_state_with_pagination(api, clock):
    campaign = await make_campaign(api, validity_days=3)
    rachel = person()
    coupons = []
    for _ in range(5):
        coupons.append(await issue(api, campaign.id, rachel))
        clock.advance(hours=1)
    await issue(api, campaign.id, person())  # someone else's
    await redeem(api, coupons[1].code, rachel, "o-1")
    await reserve(api, coupons[2].code, rachel, "o-2")

    listed, token = [], ""
    while True:
        page = await api.call("ListCoupons", pb.ListCouponsRequest(profile_id=rachel, page_size=2, page_token=token))
        assert len(page.coupons) <= 2
        listed += page.coupons
        token = page.next_page_token
        if not token:
            break
    assert [c.code for c in listed] == [c.code for c in reversed(coupons)]

    def codes(resp):
        return {c.code for c in resp.coupons}

    usable = await api.call("ListCoupons", pb.ListCouponsRequest(profile_id=rachel, states=[pb.COUPON_STATE_ISSUED]))
    assert codes(usable) == {coupons[0].code, coupons[3].code, coupons[4].code}
    clock.advance(days=3)  # all but the redeemed one have expired, lazily (the job has not run)
    expired = await api.call("ListCoupons", pb.ListCouponsRequest(profile_id=rachel,
                                                                  states=[pb.COUPON_STATE_EXPIRED]))
    assert codes(expired) == {coupons[0].code, coupons[2].code, coupons[3].code, coupons[4].code}
    await fails(api.call("ListCoupons", pb.ListCouponsRequest(profile_id=person(), page_token=token or "x")),
                grpc.StatusCode.INVALID_ARGUMENT, "invalid_page_token")


# ---------------------------------------------------------------------------------------------- the job

@pytest.mark.without_jobs
async def test_job_expires_coupons_releases_lapsed_holds_and_reminds_once(api, pool, db, redis, clock):
    campaign = await make_campaign(api, validity_days=10, remind_days_before_expiry=3)
    rachel = person()
    unused, used, held = [await issue(api, campaign.id, rachel) for _ in range(3)]
    await redeem(api, used.code, rachel, "o-1")
    await reserve(api, held.code, rachel, "cart", hold=60)

    clock.advance(minutes=2)
    assert await coupon_jobs.expire_and_remind(pool, clock, SHARDS) == coupon_jobs.PassResult(1, 0, 0)
    assert await db.fetchval("SELECT state FROM coupons WHERE code = $1", held.code) == "issued"

    clock.advance(days=6, hours=23)  # just before the reminder is due
    assert (await coupon_jobs.expire_and_remind(pool, clock, SHARDS)).reminded == 0
    clock.advance(hours=2)
    results = await asyncio.gather(*(coupon_jobs.expire_and_remind(pool, clock, SHARDS) for _ in range(3)))
    assert sum(r.reminded for r in results) == 2  # unused and (released) held; never the redeemed one
    assert (await coupon_jobs.expire_and_remind(pool, clock, SHARDS)).reminded == 0
    reminders = await wait_published(redis, api.tenant, rachel, "coupon.expiring", 2)
    payload = events.CouponExpiring()
    reminders[0].payload.Unpack(payload)
    assert payload.code in {unused.code, held.code} and payload.expires_at == unused.expires_at

    clock.advance(days=3)
    assert (await coupon_jobs.expire_and_remind(pool, clock, SHARDS)).expired == 2
    assert (await coupon_jobs.expire_and_remind(pool, clock, SHARDS)).expired == 0
    states = dict(await db.fetch("SELECT code, state FROM coupons WHERE profile_id = $1", rachel))
    assert states == {unused.code: "expired", used.code: "redeemed", held.code: "expired"}
    await wait_until(lambda: db.fetchval("SELECT count(*) = 0 FROM outbox"), message="outbox drained")
    assert len(await published(redis, api.tenant, rachel, "coupon.expiring")) == 2


@pytest.mark.without_jobs
async def test_reminders_follow_the_campaign_setting_and_skip_coupons_too_short_lived(api, pool, clock):
    silent = await make_campaign(api, validity_days=10)
    brief = await make_campaign(api, validity_days=2, remind_days_before_expiry=3)
    await issue(api, silent.id, person())
    await issue(api, brief.id, person())
    clock.advance(days=1, hours=12)
    assert (await coupon_jobs.expire_and_remind(pool, clock, SHARDS)).reminded == 0
    # turning reminders on later schedules them for the coupons already out
    later = pb.CouponCampaign()
    later.CopyFrom(silent)
    later.remind_days_before_expiry = 3
    await api.call("UpsertCouponCampaign", pb.UpsertCouponCampaignRequest(campaign=later))
    clock.advance(days=5)
    assert await coupon_jobs.expire_and_remind(pool, clock, SHARDS) == coupon_jobs.PassResult(0, 1, 0)  # brief
    clock.advance(days=1)
    assert await coupon_jobs.expire_and_remind(pool, clock, SHARDS) == coupon_jobs.PassResult(0, 0, 1)


# ---------------------------------------------------------------------------------------------- helpers

async def test_merge_erase_and_redeem_for_order_helpers(api, db, redis, clock):
    campaign = await make_campaign(api, per_profile_limit=5)
    pooled = await make_campaign(api, code_source=pb.CODE_SOURCE_POOL, code_prefix="")
    await api.call("AddCouponCodes", pb.AddCouponCodesRequest(campaign_id=pooled.id, codes=["P-1"]))
    anon, known = person(), person()
    mine = await issue(api, campaign.id, anon)
    pool_code = await issue(api, pooled.id, anon)
    await issue(api, campaign.id, known)
    tenant, now = api.tenant, clock.now()

    async with db.transaction():
        assert await coupon_repo.merge_profile(db, tenant, anon, known) == 2
    wallet = await api.call("ListCoupons", pb.ListCouponsRequest(profile_id=known))
    assert len(wallet.coupons) == 3 and {mine.code, pool_code.code} <= {c.code for c in wallet.coupons}

    async with db.transaction():
        assert await coupon_repo.redeem_for_order(db, tenant, mine.code.lower(), known, "web-1", 300, "EUR",
                                                  now=now, shards=SHARDS)
        assert not await coupon_repo.redeem_for_order(db, tenant, mine.code, known, "web-1", 300, "EUR",
                                                      now=now, shards=SHARDS)  # replayed event
        assert not await coupon_repo.redeem_for_order(db, tenant, mine.code, known, "web-2", 300, "EUR",
                                                      now=now, shards=SHARDS)
        assert not await coupon_repo.redeem_for_order(db, tenant, pool_code.code, anon, "web-3", 0, "EUR",
                                                      now=now, shards=SHARDS)  # not theirs any more
        assert not await coupon_repo.redeem_for_order(db, tenant, "NOPE", known, "web-4", 0, "EUR",
                                                      now=now, shards=SHARDS)
        assert not await coupon_repo.redeem_for_order(db, tenant, "bad code!", "not-a-uuid", "", 0, "",
                                                      now=now, shards=SHARDS)
    assert (await get_coupon(api, mine.code)).redeemed_order_id == "web-1"
    assert (await get_campaign(api, campaign.id)).redeemed_count == 1
    await wait_published(redis, tenant, known, "coupon.redeemed")

    async with db.transaction():
        reward = await coupon_repo.issue(db, tenant, campaign.id, known, source="reward", key="redemption-1",
                                         now=now, shards=SHARDS)
        again = await coupon_repo.issue(db, tenant, campaign.id, known, source="reward", key="redemption-1",
                                        now=now, shards=SHARDS)
    assert reward.code == again.code and reward.source == "reward"

    await revoke(api, pool_code.code, reason="fraud by this person")  # a note about them, erased with them
    async with db.transaction():
        assert await coupon_repo.erase_profile(db, tenant, known) == 4
    assert not (await api.call("ListCoupons", pb.ListCouponsRequest(profile_id=known))).coupons
    kept = await db.fetchrow("SELECT state, revoke_reason, revoked_by, revoked_at FROM coupons WHERE code = $1",
                             pool_code.code)
    assert tuple(kept) == ("erased", "", "", None)
    await fails(get_coupon(api, pool_code.code), grpc.StatusCode.NOT_FOUND, "coupon_not_found")
    # the erased person's pool code stays consumed: never issued again nor re-loadable
    await fails(issue(api, pooled.id, person()), grpc.StatusCode.RESOURCE_EXHAUSTED, "pool_empty")
    readd = await api.call("AddCouponCodes", pb.AddCouponCodesRequest(campaign_id=pooled.id, codes=["P-1"]))
    assert (readd.added, readd.skipped) == (0, 1)


async def test_another_tenant_cannot_see_validate_or_redeem_a_code(api, api_for):
    campaign = await make_campaign(api, code_source=pb.CODE_SOURCE_POOL, code_prefix="")
    await api.call("AddCouponCodes", pb.AddCouponCodesRequest(campaign_id=campaign.id, codes=["SHARED-1"]))
    rachel = person()
    coupon = await issue(api, campaign.id, rachel)
    other = api_for()
    await fails(get_coupon(other, coupon.code), grpc.StatusCode.NOT_FOUND, "coupon_not_found")
    await fails(get_campaign(other, campaign.id), grpc.StatusCode.NOT_FOUND, "campaign_not_found")
    assert (await validate(other, coupon.code, rachel)).reason == "not_found"
    await fails(redeem(other, coupon.code, rachel, "o-1"), grpc.StatusCode.NOT_FOUND, "coupon_not_found")
    await fails(revoke(other, coupon.code), grpc.StatusCode.NOT_FOUND, "coupon_not_found")
    await fails(issue(other, campaign.id, rachel), grpc.StatusCode.NOT_FOUND, "campaign_not_found")
    assert not (await other.call("ListCoupons", pb.ListCouponsRequest(profile_id=rachel))).coupons
    assert not (await other.call("ListCouponCampaigns", pb.ListCouponCampaignsRequest())).campaigns
    # the same code string is free to use in another tenant
    theirs = await make_campaign(other, code_source=pb.CODE_SOURCE_POOL, code_prefix="")
    added = await other.call("AddCouponCodes", pb.AddCouponCodesRequest(campaign_id=theirs.id, codes=["SHARED-1"]))
    assert added.added == 1
    assert (await get_coupon(api, coupon.code)).state == pb.COUPON_STATE_ISSUED
