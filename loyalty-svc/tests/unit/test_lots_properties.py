"""Property tests of the lot rules every balance change uses: whatever sequence of credits, debits,
reversals, expiry runs and passing time, the ledger sum equals open lots minus debt, no lot goes
negative or above its amount, and expiry never takes a point twice."""

from __future__ import annotations

import uuid
from datetime import UTC, datetime, timedelta

from hypothesis import given, settings
from hypothesis import strategies as st

from loyalty.domain.lots import Lot, apply, balance, expired_now, plan_debit, plan_reversal

T0 = datetime(2026, 1, 1, tzinfo=UTC)

ops = st.lists(st.one_of(
    st.tuples(st.just("credit"), st.integers(1, 500), st.integers(0, 3), st.sampled_from([None, 5, 20, 60])),
    st.tuples(st.just("debit"), st.integers(1, 400)),
    st.tuples(st.just("reverse"), st.integers(1, 400), st.integers(0, 3)),
    st.tuples(st.just("expire")),
    st.tuples(st.just("wait"), st.integers(1, 30)),
), max_size=60)


@settings(max_examples=300, deadline=None)
@given(ops)
def test_ledger_sum_is_open_lots_minus_debt_and_expiry_never_double_counts(sequence):
    now, lots, debt, ledger, amounts = T0, [], 0, 0, {}
    expired_total = credited = 0
    for op in sequence:
        if op[0] == "credit":
            _, points, order, validity = op
            lot_id = uuid.uuid4()
            repaid = min(debt, points)
            debt -= repaid
            lots.append(Lot(lot_id, points - repaid, now, now + timedelta(days=validity) if validity else None,
                            f"o{order}"))
            amounts[lot_id] = points
            ledger += points
            credited += points
        elif op[0] == "debit":
            available = balance(lots, debt, now).available
            if op[1] > available:
                continue  # refused: insufficient points
            takes, short = plan_debit(lots, op[1], now)
            assert short == 0
            apply(lots, takes)
            ledger -= op[1]
        elif op[0] == "reverse":
            takes, short = plan_reversal(lots, f"o{op[2]}", op[1], now)
            apply(lots, takes)
            assert sum(n for _, n in takes) + short == op[1]
            debt += short
            ledger -= op[1]
        elif op[0] == "expire":
            takes = expired_now(lots, now)
            apply(lots, takes)
            expired = sum(n for _, n in takes)
            expired_total += expired
            ledger -= expired
            assert expired_now(lots, now) == []  # a second run finds nothing
        else:
            now += timedelta(days=op[1])
        assert ledger == sum(lot.remaining for lot in lots) - debt
        assert all(0 <= lot.remaining <= amounts[lot.id] for lot in lots)
        assert debt >= 0
    assert expired_total <= credited


def test_debit_takes_soonest_expiring_first_and_never_expiring_last():
    never = Lot(uuid.uuid4(), 50, T0)
    late = Lot(uuid.uuid4(), 50, T0, T0 + timedelta(days=60))
    soon = Lot(uuid.uuid4(), 50, T0, T0 + timedelta(days=5))
    takes, short = plan_debit([never, late, soon], 120, T0)
    assert takes == [(soon.id, 50), (late.id, 50), (never.id, 20)] and short == 0


def test_pending_and_expired_lots_are_not_spendable():
    pending = Lot(uuid.uuid4(), 50, T0 + timedelta(days=3))
    expired = Lot(uuid.uuid4(), 50, T0 - timedelta(days=9), T0)
    assert plan_debit([pending, expired], 10, T0) == ([], 10)
    assert balance([pending, expired], 0, T0).pending == 50


def test_reversal_takes_the_orders_own_lots_then_other_points_then_debt():
    own = Lot(uuid.uuid4(), 30, T0 + timedelta(days=14), order_id="A")
    other = Lot(uuid.uuid4(), 20, T0, order_id="B")
    takes, short = plan_reversal([own, other], "A", 60, T0)
    assert takes == [(own.id, 30), (other.id, 20)] and short == 10
