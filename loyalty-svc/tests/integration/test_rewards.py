"""The rewards catalogue through gRPC against the real service: catalogue CRUD and validation,
eligibility, redeeming gifts, digital goods and coupons, stock under concurrency, idempotent
redemption, the fulfilment lifecycle with cancellation refunds, and the profile merge/erase helpers."""

from __future__ import annotations

import asyncio
import uuid

import grpc
import orjson
import pytest

from loyalty.repo import rewards as reward_repo
from loyalty.testing import assert_reconciles, setup, sports_program, wait_published
from mcloud.events.v1 import loyalty_events_pb2 as events
from mcloud.loyalty.v1 import loyalty_pb2 as pb

pytestmark = pytest.mark.without_jobs

ADDRESS = orjson.dumps({"name": "Rachel Green", "street": "90 Bedford St", "city": "New York", "zip": "10014"}).decode()


def error_code(err: grpc.aio.AioRpcError) -> str:
    return dict(err.trailing_metadata() or ()).get("mcloud-error-code", "")


async def fails(call, status: grpc.StatusCode, code: str) -> None:
    with pytest.raises(grpc.aio.AioRpcError) as err:
        await call
    assert (err.value.code(), error_code(err.value)) == (status, code), err.value.details()


async def funded(api, points: int = 0, program: pb.Program | None = None) -> tuple[str, str]:
    """A program (points available at once) and a member holding `points`."""
    program_id, profile = await setup(api, program or sports_program(pending_days=0))
    if points:
        await fund(api, program_id, profile, points)
    return program_id, profile


async def fund(api, program_id: str, profile: str, points: int, *, qualifying: bool = False) -> None:
    await api.call("EarnPoints", pb.EarnPointsRequest(program_id=program_id, profile_id=profile, points=points,
                                                      reason="manual", qualifying=qualifying,
                                                      idempotency_key=str(uuid.uuid4())))


async def member_of(api, program_id: str) -> str:
    profile = str(uuid.uuid4())
    await api.call("EnrollMember", pb.EnrollMemberRequest(program_id=program_id, profile_id=profile, source="web"))
    return profile


async def make_reward(api, program_id: str, **kw) -> pb.Reward:
    spec = dict(program_id=program_id, name="Running socks", kind=pb.REWARD_KIND_GIFT, points_cost=500, stock=10,
                enabled=True)
    spec.update(kw)
    return (await api.call("UpsertReward", pb.UpsertRewardRequest(reward=pb.Reward(**spec)))).reward


async def redeem(api, program_id: str, profile: str, reward_id: str, **kw) -> pb.RedeemRewardResponse:
    kw.setdefault("shipping_address_json", ADDRESS)
    return await api.call("RedeemReward", pb.RedeemRewardRequest(program_id=program_id, profile_id=profile,
                                                                 reward_id=reward_id, **kw))


async def balance(api, program_id: str, profile: str) -> int:
    r = await api.call("GetMember", pb.GetMemberRequest(program_id=program_id, profile_id=profile))
    return r.member.balance.available


async def reward_stock(api, program_id: str, reward_id: str) -> int:
    rewards = (await api.call("ListRewards", pb.ListRewardsRequest(program_id=program_id, page_size=500))).rewards
    return next(r.stock for r in rewards if r.id == reward_id)


async def update(api, redemption_id: str, status: int, **kw) -> pb.RewardRedemption:
    r = await api.call("UpdateRewardRedemption", pb.UpdateRewardRedemptionRequest(
        redemption_id=redemption_id, status=status, **kw))
    return r.redemption


async def ledger(api, program_id: str, profile: str) -> list[pb.LedgerEntry]:
    r = await api.call("GetLedger", pb.GetLedgerRequest(program_id=program_id, profile_id=profile, page_size=500))
    return list(r.entries)


# --- catalogue ------------------------------------------------------------------------------------

async def test_catalogue_is_created_updated_and_listed_cheapest_first_in_pages(api):
    program_id, _ = await funded(api)
    mug = await make_reward(api, program_id, name="Mug", points_cost=800)
    socks = await make_reward(api, program_id, name="Socks", points_cost=300, min_tier_code="silver")
    ticket = await make_reward(api, program_id, name="Race ticket", kind=pb.REWARD_KIND_DIGITAL, points_cost=1500,
                               unlimited_stock=True, stock=0)
    assert mug.id and mug.program_id == program_id and mug.enabled and mug.stock == 10
    assert socks.min_tier_code == "silver" and ticket.unlimited_stock and ticket.kind == pb.REWARD_KIND_DIGITAL

    first = await api.call("ListRewards", pb.ListRewardsRequest(program_id=program_id, page_size=2))
    assert [r.name for r in first.rewards] == ["Socks", "Mug"] and first.next_page_token
    second = await api.call("ListRewards", pb.ListRewardsRequest(program_id=program_id, page_size=2,
                                                                 page_token=first.next_page_token))
    assert [r.name for r in second.rewards] == ["Race ticket"] and not second.next_page_token

    changed = pb.Reward()
    changed.CopyFrom(mug)
    changed.name, changed.points_cost, changed.stock, changed.enabled = "Big mug", 200, 3, False
    saved = (await api.call("UpsertReward", pb.UpsertRewardRequest(reward=changed))).reward
    assert (saved.id, saved.name, saved.points_cost, saved.stock, saved.enabled) == (mug.id, "Big mug", 200, 3, False)
    assert saved.created_at == mug.created_at
    listed = (await api.call("ListRewards", pb.ListRewardsRequest(program_id=program_id))).rewards
    assert [r.name for r in listed] == ["Big mug", "Socks", "Race ticket"]

    changed.id = str(uuid.uuid4())
    await fails(api.call("UpsertReward", pb.UpsertRewardRequest(reward=changed)),
                grpc.StatusCode.NOT_FOUND, "reward_not_found")
    await fails(api.call("ListRewards", pb.ListRewardsRequest(program_id=program_id, page_token="bogus")),
                grpc.StatusCode.INVALID_ARGUMENT, "invalid_page_token")


async def test_upsert_reward_refuses_invalid_items_with_precise_codes(api):
    program_id, _ = await funded(api)
    cases = [
        (dict(name=" "), "name_required"),
        (dict(points_cost=0), "invalid_points_cost"),
        (dict(points_cost=-5), "invalid_points_cost"),
        (dict(kind=pb.REWARD_KIND_UNSPECIFIED), "kind_required"),
        (dict(kind=pb.REWARD_KIND_COUPON), "coupon_campaign_required"),
        (dict(kind=pb.REWARD_KIND_COUPON, coupon_campaign_id="nope"), "invalid_coupon_campaign_id"),
        (dict(kind=pb.REWARD_KIND_COUPON, coupon_campaign_id=str(uuid.uuid4())), "unknown_coupon_campaign"),
        (dict(coupon_campaign_id=str(uuid.uuid4())), "coupon_campaign_not_allowed"),
        (dict(min_tier_code="platinum"), "unknown_tier"),
        (dict(stock=-1), "invalid_stock"),
        (dict(id="not-a-uuid"), "invalid_reward_id"),
    ]
    for override, code in cases:
        await fails(make_reward(api, program_id, **override), grpc.StatusCode.INVALID_ARGUMENT, code)
    await fails(make_reward(api, str(uuid.uuid4())), grpc.StatusCode.NOT_FOUND, "program_not_found")
    assert not (await api.call("ListRewards", pb.ListRewardsRequest(program_id=program_id))).rewards


async def test_eligible_only_lists_what_the_members_tier_and_balance_allow(api):
    program_id, normal = await funded(api, 1000)
    silver = await member_of(api, program_id)
    await fund(api, program_id, silver, 1000, qualifying=True)  # 1,000 qualifying points: Silver
    cheap = await make_reward(api, program_id, name="Cheap", points_cost=300)
    await make_reward(api, program_id, name="Silver only", points_cost=400, min_tier_code="silver")
    await make_reward(api, program_id, name="Gold only", points_cost=100, min_tier_code="gold")
    await make_reward(api, program_id, name="Too dear", points_cost=1001)
    await make_reward(api, program_id, name="Disabled", points_cost=200, enabled=False)
    await make_reward(api, program_id, name="Sold out", points_cost=200, stock=0)
    await make_reward(api, program_id, name="Endless", points_cost=1000, stock=0, unlimited_stock=True)

    async def eligible(profile: str) -> list[str]:
        r = await api.call("ListRewards", pb.ListRewardsRequest(program_id=program_id, profile_id=profile,
                                                                eligible_only=True))
        return [x.name for x in r.rewards]

    assert await eligible(normal) == ["Cheap", "Endless"]
    assert await eligible(silver) == ["Cheap", "Silver only", "Endless"]
    await redeem(api, program_id, normal, cheap.id)  # 700 left
    assert await eligible(normal) == ["Cheap"]
    everything = (await api.call("ListRewards", pb.ListRewardsRequest(program_id=program_id, profile_id=normal)))
    assert len(everything.rewards) == 7
    await fails(api.call("ListRewards", pb.ListRewardsRequest(program_id=program_id, eligible_only=True)),
                grpc.StatusCode.INVALID_ARGUMENT, "profile_id_required")
    await fails(api.call("ListRewards", pb.ListRewardsRequest(program_id=program_id, profile_id=str(uuid.uuid4()),
                                                              eligible_only=True)),
                grpc.StatusCode.NOT_FOUND, "not_a_member")


# --- redeeming ------------------------------------------------------------------------------------

async def test_redeeming_a_gift_debits_points_takes_stock_and_emits_reward_redeemed(api, db, redis):
    program_id, profile = await funded(api, 2000)
    socks = await make_reward(api, program_id, points_cost=600, stock=4)
    r = await redeem(api, program_id, profile, socks.id, quantity=2, idempotency_key="redeem-1")
    red = r.redemption
    assert (red.status, red.quantity, red.points, red.reward_id) == (pb.REDEMPTION_STATUS_PENDING, 2, 1200, socks.id)
    assert orjson.loads(red.shipping_address_json) == orjson.loads(ADDRESS)
    assert r.member.balance.available == 800 and r.member.balance.lifetime_spent == 1200
    assert await balance(api, program_id, profile) == 800
    assert await reward_stock(api, program_id, socks.id) == 2

    spend = next(e for e in await ledger(api, program_id, profile) if e.kind == pb.LEDGER_ENTRY_KIND_SPEND)
    assert (spend.id, spend.points, spend.reason) == (red.ledger_entry_id, -1200, "reward")
    got = (await api.call("GetRewardRedemption", pb.GetRewardRedemptionRequest(redemption_id=red.id))).redemption
    assert got == red

    (event,) = await wait_published(redis, api.tenant, profile, "reward.redeemed")
    payload = events.RewardRedeemed()
    event.payload.Unpack(payload)
    assert (payload.redemption_id, payload.reward_id, payload.quantity, payload.points, payload.reward_kind) == (
        red.id, socks.id, 2, 1200, "gift")
    (spent,) = await wait_published(redis, api.tenant, profile, "points.spent")
    spent_payload = events.PointsSpent()
    spent.payload.Unpack(spent_payload)
    assert spent_payload.reward_redemption_id == red.id and spent_payload.ledger_entry_id == red.ledger_entry_id
    await assert_reconciles(db, api.tenant, program_id)


async def test_redemption_refusals_change_nothing(api, db):
    program_id, profile = await funded(api, 1000)
    socks = await make_reward(api, program_id, points_cost=600, stock=5)
    fail = grpc.StatusCode.FAILED_PRECONDITION
    bad = grpc.StatusCode.INVALID_ARGUMENT
    await fails(redeem(api, program_id, profile, socks.id, quantity=2), fail, "insufficient_points")
    await fails(redeem(api, program_id, profile, socks.id, quantity=6), fail, "out_of_stock")
    await fails(redeem(api, program_id, profile, socks.id, quantity=-1), bad, "invalid_quantity")
    await fails(redeem(api, program_id, profile, socks.id, shipping_address_json=""), bad, "shipping_address_required")
    for address in ("{not json", "[1, 2]", "{}", '"a street"'):
        await fails(redeem(api, program_id, profile, socks.id, shipping_address_json=address), bad,
                    "invalid_shipping_address")
    await fails(redeem(api, program_id, profile, str(uuid.uuid4())), grpc.StatusCode.NOT_FOUND, "reward_not_found")
    await fails(redeem(api, program_id, str(uuid.uuid4()), socks.id), grpc.StatusCode.NOT_FOUND, "not_a_member")
    off = await make_reward(api, program_id, name="Off", points_cost=100, enabled=False)
    await fails(redeem(api, program_id, profile, off.id), fail, "reward_disabled")
    gold = await make_reward(api, program_id, name="Gold cap", points_cost=100, min_tier_code="gold")
    await fails(redeem(api, program_id, profile, gold.id), fail, "tier_too_low")

    assert await balance(api, program_id, profile) == 1000
    assert await reward_stock(api, program_id, socks.id) == 5
    assert await db.fetchval("SELECT count(*) FROM reward_redemptions WHERE tenant_id = $1", uuid.UUID(api.tenant)) == 0
    assert await db.fetchval("SELECT count(*) FROM ledger_entries WHERE tenant_id = $1 AND kind = 'spend'",
                             uuid.UUID(api.tenant)) == 0
    await assert_reconciles(db, api.tenant, program_id)


async def test_a_tier_restricted_reward_opens_when_the_member_reaches_the_tier(api, db):
    program_id, profile = await funded(api, 500)
    vip = await make_reward(api, program_id, name="VIP lounge", kind=pb.REWARD_KIND_DIGITAL, points_cost=400,
                            min_tier_code="silver")
    await fails(redeem(api, program_id, profile, vip.id), grpc.StatusCode.FAILED_PRECONDITION, "tier_too_low")
    await fund(api, program_id, profile, 1000, qualifying=True)
    r = await redeem(api, program_id, profile, vip.id)
    assert r.redemption.status == pb.REDEMPTION_STATUS_PENDING and r.member.balance.available == 1100
    await assert_reconciles(db, api.tenant, program_id)


async def test_stock_of_five_lets_exactly_five_of_twenty_concurrent_members_redeem(api, db):
    program_id, first = await funded(api, 1000)
    shoes = await make_reward(api, program_id, name="Limited shoes", points_cost=1000, stock=5)
    profiles = [first] + [await member_of(api, program_id) for _ in range(19)]
    for p in profiles[1:]:
        await fund(api, program_id, p, 1000)

    results = await asyncio.gather(*(redeem(api, program_id, p, shoes.id) for p in profiles), return_exceptions=True)
    won = [r for r in results if isinstance(r, pb.RedeemRewardResponse)]
    lost = [r for r in results if not isinstance(r, pb.RedeemRewardResponse)]
    assert len(won) == 5
    assert {(e.code(), error_code(e)) for e in lost} == {(grpc.StatusCode.FAILED_PRECONDITION, "out_of_stock")}
    assert await reward_stock(api, program_id, shoes.id) == 0
    assert await db.fetchval("SELECT count(*) FROM reward_redemptions WHERE tenant_id = $1",
                             uuid.UUID(api.tenant)) == 5
    balances = [await balance(api, program_id, p) for p in profiles]
    assert sorted(balances) == [0] * 5 + [1000] * 15
    await assert_reconciles(db, api.tenant, program_id)


async def test_the_same_idempotency_key_five_times_at_once_debits_once(api, db):
    program_id, profile = await funded(api, 5000)
    socks = await make_reward(api, program_id, points_cost=700, stock=10)
    results = await asyncio.gather(*(redeem(api, program_id, profile, socks.id, idempotency_key="checkout-42")
                                     for _ in range(5)))
    assert len({r.redemption.id for r in results}) == 1
    again = await redeem(api, program_id, profile, socks.id, idempotency_key="checkout-42")
    assert again.redemption.id == results[0].redemption.id
    assert await balance(api, program_id, profile) == 4300
    assert await reward_stock(api, program_id, socks.id) == 9
    spends = [e for e in await ledger(api, program_id, profile) if e.kind == pb.LEDGER_ENTRY_KIND_SPEND]
    assert len(spends) == 1
    await assert_reconciles(db, api.tenant, program_id)


async def test_a_coupon_reward_issues_the_coupon_at_once_and_cannot_be_cancelled(api, db, redis):
    program_id, profile = await funded(api, 1000)
    campaign = (await api.call("UpsertCouponCampaign", pb.UpsertCouponCampaignRequest(campaign=pb.CouponCampaign(
        name="10% off", discount_type=pb.DISCOUNT_TYPE_PERCENT_OFF, percent_off=10, code_prefix="RW-",
        validity_days=30)))).campaign
    ten_off = await make_reward(api, program_id, name="10% coupon", kind=pb.REWARD_KIND_COUPON, points_cost=250,
                                unlimited_stock=True, coupon_campaign_id=campaign.id)
    r = await redeem(api, program_id, profile, ten_off.id, shipping_address_json="")
    red = r.redemption
    assert red.status == pb.REDEMPTION_STATUS_FULFILLED and red.coupon_code.startswith("RW-")
    coupon = (await api.call("GetCoupon", pb.GetCouponRequest(code=red.coupon_code))).coupon
    assert coupon.profile_id == profile and coupon.campaign_id == campaign.id
    assert r.member.balance.available == 750
    (event,) = await wait_published(redis, api.tenant, profile, "reward.redeemed")
    payload = events.RewardRedeemed()
    event.payload.Unpack(payload)
    assert (payload.reward_kind, payload.coupon_code) == ("coupon", red.coupon_code)

    await fails(update(api, red.id, pb.REDEMPTION_STATUS_CANCELLED, reason="changed my mind"),
                grpc.StatusCode.FAILED_PRECONDITION, "not_cancellable")
    await fails(update(api, red.id, pb.REDEMPTION_STATUS_SHIPPED), grpc.StatusCode.FAILED_PRECONDITION,
                "invalid_transition")
    assert await balance(api, program_id, profile) == 750
    await assert_reconciles(db, api.tenant, program_id)


# --- lifecycle ------------------------------------------------------------------------------------

async def test_gift_goes_pending_shipped_delivered_and_illegal_moves_are_refused(api, api_for):
    program_id, profile = await funded(api, 3000)
    socks = await make_reward(api, program_id, points_cost=500)
    red = (await redeem(api, program_id, profile, socks.id)).redemption
    await fails(update(api, red.id, pb.REDEMPTION_STATUS_DELIVERED), grpc.StatusCode.FAILED_PRECONDITION,
                "invalid_transition")
    await fails(update(api, red.id, pb.REDEMPTION_STATUS_FULFILLED), grpc.StatusCode.FAILED_PRECONDITION,
                "invalid_transition")
    shipped = await update(api, red.id, pb.REDEMPTION_STATUS_SHIPPED, tracking_number="1Z999")
    assert (shipped.status, shipped.tracking_number) == (pb.REDEMPTION_STATUS_SHIPPED, "1Z999")
    assert (await update(api, red.id, pb.REDEMPTION_STATUS_SHIPPED)).tracking_number == "1Z999"  # a repeat: no-op
    delivered = await update(api, red.id, pb.REDEMPTION_STATUS_DELIVERED, idempotency_key="deliver-1")
    assert delivered.status == pb.REDEMPTION_STATUS_DELIVERED
    assert (await update(api, red.id, pb.REDEMPTION_STATUS_DELIVERED, idempotency_key="deliver-1")) == delivered
    await fails(update(api, red.id, pb.REDEMPTION_STATUS_CANCELLED, reason="lost"),
                grpc.StatusCode.FAILED_PRECONDITION, "invalid_transition")
    await fails(update(api, red.id, pb.REDEMPTION_STATUS_PENDING), grpc.StatusCode.FAILED_PRECONDITION,
                "invalid_transition")
    await fails(update(api, red.id, pb.REDEMPTION_STATUS_UNSPECIFIED), grpc.StatusCode.INVALID_ARGUMENT,
                "status_required")

    ticket = await make_reward(api, program_id, name="Race ticket", kind=pb.REWARD_KIND_DIGITAL, points_cost=300)
    digital = (await redeem(api, program_id, profile, ticket.id, shipping_address_json="")).redemption
    assert not digital.shipping_address_json
    await fails(update(api, digital.id, pb.REDEMPTION_STATUS_SHIPPED), grpc.StatusCode.FAILED_PRECONDITION,
                "invalid_transition")
    assert (await update(api, digital.id, pb.REDEMPTION_STATUS_FULFILLED)).status == pb.REDEMPTION_STATUS_FULFILLED

    page1 = await api.call("ListRewardRedemptions", pb.ListRewardRedemptionsRequest(
        program_id=program_id, profile_id=profile, page_size=1))
    page2 = await api.call("ListRewardRedemptions", pb.ListRewardRedemptionsRequest(
        program_id=program_id, profile_id=profile, page_size=1, page_token=page1.next_page_token))
    assert [r.id for r in page1.redemptions] + [r.id for r in page2.redemptions] == [digital.id, red.id]
    assert not page2.next_page_token

    other = api_for()
    await fails(other.call("GetRewardRedemption", pb.GetRewardRedemptionRequest(redemption_id=red.id)),
                grpc.StatusCode.NOT_FOUND, "redemption_not_found")
    await fails(update(other, red.id, pb.REDEMPTION_STATUS_SHIPPED), grpc.StatusCode.NOT_FOUND,
                "redemption_not_found")


async def test_cancelling_refunds_the_points_once_and_returns_the_stock(api, db):
    program_id, profile = await funded(api, 2000)
    socks = await make_reward(api, program_id, points_cost=400, stock=5)
    pending = (await redeem(api, program_id, profile, socks.id, quantity=2)).redemption
    shipped = (await redeem(api, program_id, profile, socks.id)).redemption
    await update(api, shipped.id, pb.REDEMPTION_STATUS_SHIPPED, tracking_number="T-1")
    assert await balance(api, program_id, profile) == 800 and await reward_stock(api, program_id, socks.id) == 2

    await fails(update(api, pending.id, pb.REDEMPTION_STATUS_CANCELLED), grpc.StatusCode.INVALID_ARGUMENT,
                "reason_required")
    cancels = await asyncio.gather(*(update(api, pending.id, pb.REDEMPTION_STATUS_CANCELLED, reason="out of size")
                                     for _ in range(3)))
    assert {c.status for c in cancels} == {pb.REDEMPTION_STATUS_CANCELLED}
    assert await balance(api, program_id, profile) == 1600
    assert await reward_stock(api, program_id, socks.id) == 4
    cancelled = await update(api, shipped.id, pb.REDEMPTION_STATUS_CANCELLED, reason="returned to sender")
    assert cancelled.status == pb.REDEMPTION_STATUS_CANCELLED and cancelled.tracking_number == "T-1"
    assert await balance(api, program_id, profile) == 2000
    assert await reward_stock(api, program_id, socks.id) == 5

    refunds = [e for e in await ledger(api, program_id, profile) if e.reason == "reward_cancelled"]
    assert sorted((e.reverses_entry_id, e.points) for e in refunds) == sorted(
        [(pending.ledger_entry_id, 800), (shipped.ledger_entry_id, 400)])
    assert {e.kind for e in refunds} == {pb.LEDGER_ENTRY_KIND_ADJUSTMENT}
    await fails(update(api, pending.id, pb.REDEMPTION_STATUS_SHIPPED), grpc.StatusCode.FAILED_PRECONDITION,
                "invalid_transition")
    await assert_reconciles(db, api.tenant, program_id)


# --- people ---------------------------------------------------------------------------------------

async def test_merge_moves_redemptions_and_erase_deletes_them_with_the_address(api, db):
    program_id, source = await funded(api, 1000)
    socks = await make_reward(api, program_id, points_cost=300)
    red = (await redeem(api, program_id, source, socks.id)).redemption
    survivor = str(uuid.uuid4())
    assert await reward_repo.merge_profile(db, api.tenant, source, survivor) == 1
    assert await reward_repo.merge_profile(db, api.tenant, source, survivor) == 0
    got = (await api.call("GetRewardRedemption", pb.GetRewardRedemptionRequest(redemption_id=red.id))).redemption
    assert got.profile_id == survivor and got.shipping_address_json

    other = str(uuid.uuid4())
    assert await reward_repo.erase_profile(db, api.tenant, other) == 0
    assert await reward_repo.erase_profile(db, api.tenant, survivor) == 1
    await fails(api.call("GetRewardRedemption", pb.GetRewardRedemptionRequest(redemption_id=red.id)),
                grpc.StatusCode.NOT_FOUND, "redemption_not_found")
    assert await db.fetchval("SELECT count(*) FROM reward_redemptions WHERE tenant_id = $1 AND shipping_address::text "
                             "LIKE '%Bedford%'", uuid.UUID(api.tenant)) == 0
