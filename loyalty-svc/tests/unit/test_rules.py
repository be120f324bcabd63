"""Earn rules, program validation and the points lifecycle, as pure functions."""

from __future__ import annotations

from datetime import UTC, datetime

import pytest

from loyalty.domain import orders, programs, rules
from loyalty.testing import sports_program
from mcloud.loyalty.v1 import loyalty_pb2 as pb
from mcloud_common.errors import InvalidArgument
from mcloud_common.timestamps import to_timestamp

NOW = datetime(2026, 11, 11, 12, tzinfo=UTC)


def order(*lines, total=None) -> pb.Order:
    o = pb.Order(order_id="A", currency="EUR", lines=[pb.OrderLine(item_id=i, category=c, amount_minor=a)
                                                      for i, c, a in lines])
    o.total_minor = total if total is not None else sum(a for _, _, a in lines)
    return o


def test_fixed_plus_per_amount_with_tier_multiplier():
    p = programs.validate(sports_program())
    earned = rules.evaluate(p, "order", now=NOW, tier=p.tiers[1], order=order(("s", "shoes", 10_050)))
    assert {e.rule_id: e.points for e in earned} == {"per-order": 125, "per-euro": 125}  # 100 / 100 x 1.25


def test_category_and_item_multipliers_and_category_filter():
    rule = pb.EarnRule(id="r", trigger="order", points_per_unit=1, unit_minor=100, enabled=True,
                       categories=["nutrition", "shoes"], category_multipliers={"nutrition": 3.0},
                       item_multipliers={"gel-1": 5.0})
    p = programs.validate(sports_program(earn_rules=[rule]))
    o = order(("gel-1", "nutrition", 200), ("bar", "nutrition", 300), ("s", "shoes", 1000), ("t", "apparel", 900))
    [e] = rules.evaluate(p, "order", now=NOW, tier=p.tiers[0], order=o)
    assert e.points == 10 + 9 + 10


def test_double_points_week_is_a_boost_inside_its_window_only():
    p = sports_program()
    p.earn_rules.add(id="double", trigger="order", multiplier=2.0, boost=True, enabled=True,
                     valid_from=to_timestamp(datetime(2026, 11, 9, tzinfo=UTC)),
                     valid_until=to_timestamp(datetime(2026, 11, 16, tzinfo=UTC)))
    p = programs.validate(p)
    o = order(("s", "shoes", 5000))
    inside = rules.evaluate(p, "order", now=NOW, tier=p.tiers[0], order=o)
    after = rules.evaluate(p, "order", now=datetime(2026, 11, 20, tzinfo=UTC), tier=p.tiers[0], order=o)
    assert sum(e.points for e in inside) == 300 and sum(e.points for e in after) == 150


def test_caps_and_conditions():
    p = programs.validate(sports_program())
    [review] = rules.evaluate(p, "review", now=NOW, tier=p.tiers[0], earned_in_window={"review": 30})
    assert review.points == 10 and review.uncapped == 20
    assert rules.evaluate(p, "review", now=NOW, tier=p.tiers[0], earned_in_window={"review": 40}) == []
    pos = pb.EarnRule(id="pos", trigger="order", points=7, enabled=True, conditions_json='{"channels": ["pos"]}')
    p2 = programs.validate(sports_program(earn_rules=[pos]))
    assert rules.evaluate(p2, "order", now=NOW, tier=p2.tiers[0], order=order(("a", "b", 1))) == []


def test_disabled_rules_earn_nothing_and_triggers_map_event_names():
    p = sports_program()
    p.earn_rules.add(id="quiz", trigger="Quiz Completed", points=5, enabled=True)
    p = programs.validate(p)
    assert rules.trigger_of(p, "Order Completed") == "order"
    assert rules.trigger_of(p, "Cart Shared") == "referral_share"
    assert rules.trigger_of(p, "Quiz Completed") == "Quiz Completed"
    assert rules.trigger_of(p, "Product Viewed") is None
    p.earn_rules[0].enabled = False
    assert [e.rule_id for e in rules.evaluate(p, "order", now=NOW, tier=p.tiers[0], order=order())] == []


@pytest.mark.parametrize("mutate, field", [
    (lambda p: setattr(p, "currency", "euro"), "currency"),
    (lambda p: setattr(p.tiers[1], "code", "gold"), "tiers[2].code"),
    (lambda p: setattr(p.earn_rules[1], "unit_minor", 0), "earn_rules[1].unit_minor"),
    (lambda p: setattr(p, "time_zone", "Mars/Olympus"), "time_zone"),
])
def test_validation_names_the_field(mutate, field):
    p = sports_program()
    mutate(p)
    with pytest.raises(InvalidArgument) as err:
        programs.validate(p)
    assert err.value.extra.get("field") == field


def test_expiry_modes():
    p = programs.validate(sports_program(points_validity_days=30))
    assert programs.expires_at(p, NOW) == datetime(2026, 12, 11, 12, tzinfo=UTC)
    p.expiry_mode = pb.EXPIRY_MODE_END_OF_YEAR
    assert programs.expires_at(p, NOW) == datetime(2027, 1, 1, tzinfo=UTC)
    p.time_zone = "Asia/Shanghai"
    p.expiry_mode = pb.EXPIRY_MODE_END_OF_MONTH
    assert programs.expires_at(p, NOW) == datetime(2026, 12, 31, 16, tzinfo=UTC)  # Jan 1st 00:00 in Shanghai
    p.expiry_mode = pb.EXPIRY_MODE_NEVER
    assert programs.expires_at(p, NOW) is None


def test_orders_from_segment_properties():
    o = orders.order_from_properties({"order_id": "X", "total": "129.99", "currency": "eur", "products": [
        {"product_id": "s", "category": "shoes", "price": 59.995, "quantity": 2}, "junk"]}, default_currency="USD")
    assert (o.currency, o.total_minor, [(x.item_id, x.amount_minor) for x in o.lines]) == ("EUR", 12999, [("s", 12000)])
    assert orders.order_from_properties({"order_id": "Y", "revenue": 1000}, default_currency="JPY").total_minor == 1000
    assert orders.order_from_properties({"total": 5}, default_currency="EUR") is None
    assert orders.refund_from_properties({"order_id": "X", "total": 10.5}, default_currency="EUR") == ("X", 1050)
