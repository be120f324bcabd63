"""Segment rule trees: what parses, what is refused (with the path of the bad node), what is time
dependent, and that compiling keeps every user value out of the SQL text."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import orjson
import pytest

from identity.domain.segments import (
    All,
    Behaviour,
    Computed,
    InvalidRules,
    Not,
    evaluation_order,
    parse_rules,
    parse_rules_json,
    reads_transitively,
    time_dependent,
    time_dependent_ids,
)
from identity.repo.segments import compile_rules, page_token, read_page_token

NOW = datetime(2026, 3, 1, tzinfo=UTC)
LOCKED_ON_A_SHOE = {"all": [
    {"event": "Product Viewed", "within_days": 7, "count": {"op": "gte", "value": 3}, "same": "product_id",
     "same_in_cart": True},
]}


def error(tree) -> InvalidRules:
    with pytest.raises(InvalidRules) as caught:
        parse_rules(tree)
    return caught.value


def test_gold_members_who_visited_a_store_parse_into_two_computed_conditions():
    rule = parse_rules({"all": [{"computed": "loyalty_tier", "op": "eq", "value": "Gold"},
                                {"computed": "store_visits", "op": "gte", "value": 1}]})
    assert isinstance(rule, All)
    tier, visits = rule.rules
    assert isinstance(tier, Computed) and tier.condition.path == ("loyalty_tier",) and tier.condition.value == "Gold"
    assert visits.condition.op == "gte" and visits.condition.value == 1
    assert not time_dependent(rule)


def test_the_same_product_viewed_three_times_and_still_in_the_cart_is_one_behaviour_node():
    (node,) = parse_rules(LOCKED_ON_A_SHOE).rules
    assert node == Behaviour(event="Product Viewed", where=(), window=timedelta(days=7), count_op="gte",
                             count_value=3, same=("product_id",), same_in_cart=True)
    assert time_dependent(parse_rules(LOCKED_ON_A_SHOE))


@pytest.mark.parametrize(("tree", "message"), [
    ({"all": [{"tag": "vip"}, {"event": "Order Completed", "count": {"op": "gtx", "value": 3}}]},
     "all[1].count.op: unknown operator 'gtx'"),
    ({"any": [{"trait": "age", "op": "bigger", "value": 3}]}, "any[0].op: unknown operator 'bigger'"),
    ({"not": {"trait": "age", "op": "gt", "value": True}}, "not.value: must be a number or a string for gt"),
    ({"all": []}, "all: must be a non-empty list of rules"),
    ({"tag": "vip", "trait": "x"}, "rules: has both 'trait' and 'tag': a node is exactly one condition"),
    ({"computed": "loyalty_teir", "op": "eq", "value": "Gold"}, "computed: unknown computed trait 'loyalty_teir'"),
    ({"lifecycle": ["repeat", "vip"]}, "lifecycle[1]: unknown stage 'vip'"),
    ({"consent": "email", "purpose": "marketing", "state": "maybe"}, "state: must be one of granted"),
    ({"event": "Viewed", "within_days": 0}, "within_days: must be a positive number of days"),
    ({"event": "Viewed", "same_in_cart": True}, "same_in_cart: needs \"same\""),
    ({"event": "Viewed", "where": [{"property": "price", "op": "gte"}]}, "where[0].value: is required for gte"),
    ({"event": "Viewed", "colour": "red"}, "colour: unknown key 'colour'"),
    ({"trait": "signed_up", "op": "after", "value": "last tuesday"}, "value: must be an ISO-8601 date"),
    ({"trait": "a..b", "op": "exists"}, "trait: keys must be non-empty strings"),
    ({"trait": "a", "op": "exists", "value": 1}, "value: exists takes no value"),
    ({"segment": "not-a-uuid"}, "segment: must be a segment id (UUID)"),
    ({"trait": "tier", "op": "in", "value": []}, "value: must be a list of 1 to 1000 values for in"),
    ({"trait": "tier", "op": "eq", "value": {"nested": 1}}, "value: must be a string, number, boolean or null"),
    (["tag", "vip"], "rules: must be a JSON object"),
    ({"colour": "red"}, "rules: must have one of the keys"),
])
def test_bad_rules_are_refused_naming_the_bad_node(tree, message):
    exc = error(tree)
    assert exc.code == "invalid_rules"
    assert exc.detail.startswith(message), exc.detail


def test_the_error_path_rides_along_for_the_error_info():
    exc = error({"all": [{"tag": "vip"}, {"event": "X", "count": {"op": "gtx", "value": 3}}]})
    assert exc.extra == {"path": "all[1].count.op"}


def test_trees_too_deep_or_too_large_are_refused():
    deep: dict = {"tag": "vip"}
    for _ in range(12):
        deep = {"not": deep}
    assert "nest at most" in error(deep).detail
    assert "at most 200 nodes" in error({"any": [{"tag": f"t{i}"} for i in range(250)]}).detail
    assert "event conditions" in error({"any": [{"event": f"e{i}"} for i in range(21)]}).detail
    with pytest.raises(InvalidRules, match="at most 65536 bytes"):
        parse_rules_json(orjson.dumps({"trait": "x", "op": "eq", "value": "y" * 70_000}).decode())


def test_json_problems_are_invalid_rules_not_crashes():
    for text in ("", "{", "[" * 5000 + "]" * 5000, '{"tag": "a\\u0000b"}'):
        with pytest.raises(InvalidRules):
            parse_rules_json(text)


def test_did_x_but_not_y_within_z_is_all_of_an_event_and_a_negated_event():
    rule = parse_rules({"all": [{"event": "Added to Cart", "within_hours": 24},
                                {"not": {"event": "Order Completed", "within_hours": 24}}]})
    assert isinstance(rule.rules[1], Not)
    assert rule.rules[0].window == timedelta(hours=24)
    assert time_dependent(rule)


def test_date_conditions_relative_to_now_make_a_segment_time_dependent_absolute_ones_do_not():
    assert time_dependent(parse_rules({"computed": "last_order_at", "op": "within_days", "value": 30}))
    assert time_dependent(parse_rules({"computed": "last_order_at", "op": "older_than_days", "value": 90}))
    assert not time_dependent(parse_rules({"computed": "last_order_at", "op": "after", "value": "2026-01-01"}))
    assert not time_dependent(parse_rules({"event": "Order Completed", "count": {"op": "gte", "value": 2}}))


def test_segments_reading_segments_evaluate_after_what_they_read_and_inherit_time_dependency():
    a, b, c = "00000000-0000-0000-0000-00000000000a", "00000000-0000-0000-0000-00000000000b", \
        "00000000-0000-0000-0000-00000000000c"
    rules = {
        a: parse_rules({"all": [{"segment": b}, {"segment": c}]}),
        b: parse_rules({"segment": c}),
        c: parse_rules({"event": "Viewed", "within_days": 1}),
    }
    assert evaluation_order(rules) == [c, b, a]
    assert time_dependent_ids(rules) == {a, b, c}
    assert reads_transitively(rules, a, c) and not reads_transitively(rules, c, a)


def test_compiled_sql_carries_user_values_only_as_parameters():
    hostile = "x'); DROP TABLE profiles; --"
    rule = parse_rules({"all": [
        {"trait": [hostile], "op": "eq", "value": hostile},
        {"tag": hostile},
        {"event": hostile, "where": [{"property": hostile, "op": "contains", "value": hostile}], "within_days": 7,
         "same": hostile, "same_in_cart": True, "count": {"op": "gte", "value": 3}},
    ]})
    predicate = compile_rules(rule, NOW, first_param=4)
    assert "DROP" not in predicate.sql and hostile not in predicate.sql
    assert "$4::" in predicate.sql  # numbering starts where the caller's parameters end
    assert hostile in predicate.params and NOW - timedelta(days=7) in predicate.params


def test_page_tokens_round_trip_and_refuse_anything_else():
    seg, last = "0190b6a0-0000-7000-8000-000000000001", "0190b6a0-0000-7000-8000-000000000002"
    assert read_page_token(seg, page_token(seg, last)) == last
    assert read_page_token("0190b6a0-0000-7000-8000-000000000009", page_token(seg, last)) is None
    for junk in ("", "!!!", "bm90IGEgdG9rZW4", page_token(seg, "not-a-uuid")):
        assert read_page_token(seg, junk) is None
