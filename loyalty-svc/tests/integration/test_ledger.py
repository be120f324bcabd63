"""The ledger through gRPC: earning by rules, spending, reversals, adjustments, the statement, and
the guarantees: no double spend under concurrency, one earn per order however often it is replayed."""

from __future__ import annotations

import asyncio
import uuid

import grpc
import pytest

from loyalty.testing import assert_reconciles, order, setup, sports_program, wait_published
from mcloud.events.v1 import loyalty_events_pb2
from mcloud.loyalty.v1 import loyalty_pb2 as pb

pytestmark = pytest.mark.without_jobs


def error_code(err: grpc.aio.AioRpcError) -> str:
    return dict(err.trailing_metadata() or ()).get("mcloud-error-code", "")


async def earn(api, program_id, profile, points, key=None, **kw):
    return await api.call("EarnPoints", pb.EarnPointsRequest(program_id=program_id, profile_id=profile, points=points,
                                                             reason=kw.pop("reason", "manual"),
                                                             idempotency_key=key or str(uuid.uuid4()), **kw))


async def test_order_earns_by_rules_pending_then_available(api, db, clock):
    program_id, profile = await setup(api)
    r = await api.call("EarnPoints", pb.EarnPointsRequest(
        program_id=program_id, profile_id=profile, idempotency_key="o-1",
        order=order("A-1", 12_999, ("shoe-1", "shoes", 12_999))))
    assert sorted((e.rule_id, e.points) for e in r.entries) == [("per-euro", 129), ("per-order", 100)]
    assert r.member.balance.pending == 229 and r.member.balance.available == 0
    assert r.member.balance.qualifying == 229 and r.member.balance.qualifying_orders == 1
    assert r.member.balance.qualifying_spend_minor == 12_999
    assert r.member.tier.tier_code == "normal" and r.member.tier.points_to_next_tier == 771
    clock.advance(days=15)  # the return window has passed
    member = (await api.call("GetMember", pb.GetMemberRequest(program_id=program_id, profile_id=profile))).member
    assert member.balance.available == 229 and member.balance.pending == 0
    await assert_reconciles(db, api.tenant, program_id)


async def test_replaying_an_order_ten_times_earns_once(api, db):
    program_id, profile = await setup(api)
    request = pb.EarnPointsRequest(program_id=program_id, profile_id=profile,
                                   order=order("A-2", 5_000, ("gel", "nutrition", 5_000)))
    results = [await api.call("EarnPoints", pb.EarnPointsRequest(**{**_fields(request), "idempotency_key": f"k{i}"}))
               for i in range(5)]
    results += await asyncio.gather(*(api.call("EarnPoints", pb.EarnPointsRequest(
        **{**_fields(request), "idempotency_key": f"c{i}"})) for i in range(5)))
    assert {sum(e.points for e in r.entries) for r in results} == {150}
    assert await db.fetchval("SELECT count(*) FROM ledger_entries WHERE order_id = 'A-2'") == 2
    member = (await api.call("GetMember", pb.GetMemberRequest(program_id=program_id, profile_id=profile))).member
    assert member.balance.pending == 150 and member.balance.qualifying_orders == 1


def _fields(message) -> dict:
    return {f.name: v for f, v in message.ListFields()}


async def test_rachel_order_crosses_silver_and_emits_tier_changed(api, redis):
    program_id, profile = await setup(api)
    await earn(api, program_id, profile, 800, qualifying=True, reason="signup")
    r = await api.call("EarnPoints", pb.EarnPointsRequest(
        program_id=program_id, profile_id=profile, idempotency_key="rachel-order",
        order=order("R-1", 15_900, ("shoe-42", "running_shoes", 15_900))))
    assert sum(e.points for e in r.entries) == 100 + 159
    tier = r.member.tier
    assert (tier.tier_code, tier.next_tier_code, tier.points_to_next_tier) == ("silver", "gold", 6000 - 1059)
    assert tier.discount_percent == 5 and tier.points_multiplier == 1.25
    assert [b.code for b in r.member.benefits] == ["early_access"]
    [event] = await wait_published(redis, api.tenant, profile, "tier.changed")
    changed = loyalty_events_pb2.TierChanged()
    event.payload.Unpack(changed)
    assert (changed.from_tier_code, changed.to_tier_code, changed.direction) == ("normal", "silver", "upgrade")
    assert changed.points_to_next_tier == 6000 - 1059 and changed.benefit_codes == ["early_access"]
    assert len(await wait_published(redis, api.tenant, profile, "points.earned", 2)) == 2  # signup, then the order


async def test_spend_consumes_soonest_expiring_lots_and_refuses_overdraft(api, db, clock):
    program_id, profile = await setup(api, sports_program(pending_days=0))
    first = (await earn(api, program_id, profile, 100)).entries[0]
    clock.advance(days=10)
    second = (await earn(api, program_id, profile, 100)).entries[0]
    spent = await api.call("SpendPoints", pb.SpendPointsRequest(program_id=program_id, profile_id=profile,
                                                                points=150, reason="order_payment",
                                                                idempotency_key="s1"))
    assert [(c.lot_id, c.points) for c in spent.entry.consumed] == [(first.id, 100), (second.id, 50)]
    assert spent.member.balance.available == 50 and spent.entry.balance_after == 50
    with pytest.raises(grpc.aio.AioRpcError) as err:
        await api.call("SpendPoints", pb.SpendPointsRequest(program_id=program_id, profile_id=profile, points=51,
                                                            idempotency_key="s2"))
    assert err.value.code() == grpc.StatusCode.FAILED_PRECONDITION and error_code(err.value) == "insufficient_points"
    again = await api.call("SpendPoints", pb.SpendPointsRequest(program_id=program_id, profile_id=profile,
                                                                points=150, idempotency_key="s1"))
    assert again.entry.id == spent.entry.id and again.member.balance.available == 50
    await assert_reconciles(db, api.tenant, program_id)


async def test_64_concurrent_redemptions_never_overdraw(api, db):
    program_id, profile = await setup(api, sports_program(pending_days=0))
    await earn(api, program_id, profile, 1000)

    async def spend(i: int):
        try:
            return await api.call("SpendPoints", pb.SpendPointsRequest(
                program_id=program_id, profile_id=profile, points=70, reason="reward", idempotency_key=f"r{i}"))
        except grpc.aio.AioRpcError as e:
            assert error_code(e) == "insufficient_points"
            return None

    results = await asyncio.gather(*(spend(i) for i in range(64)))
    accepted = [r for r in results if r is not None]
    assert len(accepted) == 1000 // 70  # 14
    retried = await asyncio.gather(*(spend(i) for i in range(64)))  # every retry returns its first answer
    assert sum(r is not None for r in retried) == len(accepted)
    member = (await api.call("GetMember", pb.GetMemberRequest(program_id=program_id, profile_id=profile))).member
    assert member.balance.available == 1000 - 70 * len(accepted) >= 0
    assert member.balance.lifetime_spent == 70 * len(accepted)
    assert await db.fetchval("SELECT count(*) FROM ledger_entries WHERE kind = 'spend'") == len(accepted)
    assert await db.fetchval("SELECT min(balance_after) FROM ledger_entries") >= 0
    await assert_reconciles(db, api.tenant, program_id)


async def test_partial_return_reverses_pro_rata_and_claws_back_into_debt(api, db, clock):
    program_id, profile = await setup(api, sports_program(pending_days=0))
    await api.call("EarnPoints", pb.EarnPointsRequest(program_id=program_id, profile_id=profile, idempotency_key="e",
                                                      order=order("B-1", 20_000)))  # 100 + 200 = 300
    await api.call("SpendPoints", pb.SpendPointsRequest(program_id=program_id, profile_id=profile, points=250,
                                                        idempotency_key="sp"))
    half = await api.call("ReverseOrder", pb.ReverseOrderRequest(program_id=program_id, profile_id=profile,
                                                                 order_id="B-1", refund_minor=10_000,
                                                                 idempotency_key="ret-1"))
    assert [e.points for e in half.entries] == [-150]
    assert half.member.balance.available == -100 and half.member.balance.debt == 100  # 50 left, 150 taken
    assert half.member.balance.qualifying == 150 and half.member.balance.qualifying_orders == 1
    rest = await api.call("ReverseOrder", pb.ReverseOrderRequest(program_id=program_id, profile_id=profile,
                                                                 order_id="B-1", refund_minor=0,
                                                                 idempotency_key="ret-2"))
    assert [e.points for e in rest.entries] == [-150] and rest.member.balance.debt == 250
    assert rest.member.balance.qualifying == 0 and rest.member.balance.qualifying_orders == 0
    repaid = await earn(api, program_id, profile, 300)
    assert repaid.member.balance.debt == 0 and repaid.member.balance.available == 50
    await assert_reconciles(db, api.tenant, program_id)


async def test_manual_adjustment_needs_actor_and_reason(api, db):
    program_id, profile = await setup(api, sports_program(pending_days=0))
    with pytest.raises(grpc.aio.AioRpcError) as err:
        await api.call("AdjustPoints", pb.AdjustPointsRequest(program_id=program_id, profile_id=profile, points=10))
    assert err.value.code() == grpc.StatusCode.INVALID_ARGUMENT
    r = await api.call("AdjustPoints", pb.AdjustPointsRequest(program_id=program_id, profile_id=profile, points=40,
                                                              actor="ops@brand", reason="goodwill",
                                                              idempotency_key="adj"))
    assert r.entry.kind == pb.LEDGER_ENTRY_KIND_ADJUSTMENT and r.entry.actor == "ops@brand"
    assert r.member.balance.available == 40
    q = await api.call("AdjustPoints", pb.AdjustPointsRequest(program_id=program_id, profile_id=profile, points=1000,
                                                              actor="ops@brand", reason="status match",
                                                              qualifying=True, idempotency_key="adj-q"))
    assert q.member.tier.tier_code == "silver" and q.member.balance.available == 40
    await assert_reconciles(db, api.tenant, program_id)


async def test_statement_pages_newest_first(api):
    program_id, profile = await setup(api, sports_program(pending_days=0))
    for _ in range(5):
        await earn(api, program_id, profile, 10)
    seen, token = [], ""
    while True:
        page = await api.call("GetLedger", pb.GetLedgerRequest(program_id=program_id, profile_id=profile,
                                                               page_size=2, page_token=token))
        seen += [e.balance_after for e in page.entries]
        token = page.next_page_token
        if not token:
            break
    assert seen == [50, 40, 30, 20, 10]


async def test_ledger_rows_cannot_be_edited(api, db):
    program_id, profile = await setup(api, sports_program(pending_days=0))
    await earn(api, program_id, profile, 10)
    import asyncpg
    with pytest.raises(asyncpg.RestrictViolationError):
        await db.execute("UPDATE ledger_entries SET points = 1000")
    with pytest.raises(asyncpg.RestrictViolationError):
        await db.execute("DELETE FROM ledger_entries")


async def test_program_validation_errors_name_the_field(api):
    bad = sports_program()
    bad.tiers[2].threshold_points = 500  # gold below silver
    with pytest.raises(grpc.aio.AioRpcError) as err:
        await api.call("UpsertProgram", pb.UpsertProgramRequest(program=bad))
    assert err.value.code() == grpc.StatusCode.INVALID_ARGUMENT and "gold" in err.value.details()
    with pytest.raises(grpc.aio.AioRpcError) as err:
        await api.call("GetMember", pb.GetMemberRequest(program_id=str(uuid.uuid4()), profile_id=str(uuid.uuid4())))
    assert err.value.code() == grpc.StatusCode.NOT_FOUND


async def test_tenants_do_not_see_each_others_programs(api, api_for):
    program_id, profile = await setup(api)
    other = api_for()
    with pytest.raises(grpc.aio.AioRpcError) as err:
        await other.call("GetMember", pb.GetMemberRequest(program_id=program_id, profile_id=profile))
    assert err.value.code() == grpc.StatusCode.NOT_FOUND


async def test_program_report_liability_tiers_and_periods(api, db, clock, loyalty_db):
    program = sports_program(pending_days=0, point_value_minor=1, points_validity_days=30)
    program_id, first = await setup(api, program)
    second = str(uuid.uuid4())
    await api.call("EnrollMember", pb.EnrollMemberRequest(program_id=program_id, profile_id=second))
    await earn(api, program_id, first, 1200, qualifying=True)
    await earn(api, program_id, second, 300)
    await api.call("SpendPoints", pb.SpendPointsRequest(program_id=program_id, profile_id=first, points=200,
                                                        idempotency_key="s"))
    clock.advance(days=40)  # into December; everything left expires
    from loyalty.background.ledger import expire_due
    from mcloud_common.db import create_pool
    pool = await create_pool(loyalty_db)
    try:
        assert await expire_due(pool, clock, 4) == 1300
    finally:
        await pool.close()
    await earn(api, program_id, second, 50)
    report = await api.call("GetProgramReport", pb.GetProgramReportRequest(program_id=program_id, period="month"))
    assert report.members == 2 and report.outstanding_points == 50 and report.liability_minor == 50
    assert {t.tier_code: t.members for t in report.tiers} == {"normal": 1, "silver": 1, "gold": 0}
    months = [(p.start.ToDatetime().month, p.earned, p.spent, p.expired, p.members_enrolled, p.tier_upgrades)
              for p in report.periods]
    assert months == [(11, 1500, 200, 0, 2, 1), (12, 50, 0, 1300, 0, 0)]
    await assert_reconciles(db, api.tenant, program_id)



async def test_calls_batched_together_keep_their_own_outcomes(api, db):
    """Concurrent calls share a transaction (group commit); each still gets its own answer: a stranger
    is NOT_FOUND, an overdraft FAILED_PRECONDITION, the rest booked, one order booked once."""
    program_id, rich = await setup(api, sports_program(pending_days=0))
    poor = str(uuid.uuid4())
    await api.call("EnrollMember", pb.EnrollMemberRequest(program_id=program_id, profile_id=poor))
    await earn(api, program_id, rich, 500)
    stranger = str(uuid.uuid4())

    def spend(who, points, key):
        return api.call("SpendPoints", pb.SpendPointsRequest(program_id=program_id, profile_id=who, points=points,
                                                             idempotency_key=key))

    def order_for(who, order_id):
        return api.call("EarnPoints", pb.EarnPointsRequest(program_id=program_id, profile_id=who,
                                                           order=order(order_id, 1000)))

    calls = [spend(rich, 100, "a"), spend(poor, 500, "b"), order_for(stranger, "S-1"), order_for(poor, "P-1"),
             order_for(poor, "P-1"), spend(rich, 100, "a"), spend(rich, 350, "c")]
    results = await asyncio.gather(*calls, return_exceptions=True)
    codes = [r.code() if isinstance(r, grpc.aio.AioRpcError) else grpc.StatusCode.OK for r in results]
    assert codes[1] == grpc.StatusCode.FAILED_PRECONDITION and codes[2] == grpc.StatusCode.NOT_FOUND
    assert codes[0] == codes[3] == codes[4] == codes[5] == grpc.StatusCode.OK
    assert results[0].entry.id == results[5].entry.id  # the same key, in one batch or not, books once
    assert [e.id for e in results[3].entries] == [e.id for e in results[4].entries]
    # 500 - 100 leaves 400: the 350 spend fits, whatever order the batch applied them in
    assert codes[6] == grpc.StatusCode.OK
    m = (await api.call("GetMember", pb.GetMemberRequest(program_id=program_id, profile_id=rich))).member
    assert m.balance.available == 50
    p = (await api.call("GetMember", pb.GetMemberRequest(program_id=program_id, profile_id=poor))).member
    assert p.balance.available == 110 and p.balance.qualifying_orders == 1
    await assert_reconciles(db, api.tenant, program_id)


@pytest.mark.parametrize("basis, thresholds, orders, expected", [
    (pb.TIER_BASIS_SPEND, {"threshold_spend_minor": 50_000}, [30_000, 25_000], ("silver", 55_000, 0)),
    (pb.TIER_BASIS_ORDERS, {"threshold_orders": 3}, [1_000, 1_000, 1_000], ("silver", 3, 0)),
])
async def test_tiers_by_spend_or_order_count(api, basis, thresholds, orders, expected):
    program = sports_program(pending_days=0, tier_basis=basis,
                             tiers=[pb.Tier(code="normal", name="Normal", rank=0),
                                    pb.Tier(code="silver", name="Silver", rank=1, **thresholds)])
    program_id, profile = await setup(api, program)
    for i, total in enumerate(orders):
        r = await api.call("EarnPoints", pb.EarnPointsRequest(program_id=program_id, profile_id=profile,
                                                              order=order(f"T-{i}", total)))
    tier = r.member.tier
    measured = r.member.balance.qualifying_spend_minor if basis == pb.TIER_BASIS_SPEND \
        else r.member.balance.qualifying_orders
    assert (tier.tier_code, measured, tier.points_to_next_tier) == expected
    assert tier.basis == ("spend" if basis == pb.TIER_BASIS_SPEND else "orders")


async def test_a_spend_batched_right_after_an_earn_of_the_same_member_consumes_the_new_lot(api, db, loyalty_db, clock):
    from loyalty.ledger_lanes import LedgerLanes, Op
    from loyalty.repo.programs import load_all
    from mcloud_common.db import create_pool

    program_id, profile = await setup(api, sports_program(pending_days=0))
    pool = await create_pool(loyalty_db)
    try:
        program = (await load_all(pool, api.tenant))[program_id]
        lanes = LedgerLanes(pool, clock, 4)
        earned, spent, again = await asyncio.gather(
            lanes.submit(api.tenant, program, Op("order", profile, order=order("L-1", 10_000))),
            lanes.submit(api.tenant, program, Op("spend", profile, points=150, key="s-1", reason="reward")),
            lanes.submit(api.tenant, program, Op("spend", profile, points=150, key="s-1", reason="reward")))
        assert lanes.batches == 1 and lanes.calls == 3  # one transaction for the three
    finally:
        await pool.close()
    assert sum(e.points for e in earned[0]) == 200 and len({e.expires_at.seconds for e in earned[0]}) == 1
    assert spent[0][0].points == -150 and again[0][0].id == spent[0][0].id
    assert spent[1].balance.available == 50
    lots = await db.fetch("SELECT amount, remaining FROM lots")
    assert [(r["amount"], r["remaining"]) for r in lots] == [(200, 50)]  # the order's rules share one lot
    await assert_reconciles(db, api.tenant, program_id)
