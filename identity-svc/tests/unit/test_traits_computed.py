"""Trait conflict rules, computed traits, RFM and lifecycle stages, without I/O."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest

from identity.domain.computed import (
    ORDER,
    PRODUCT_ADDED,
    PRODUCT_REMOVED,
    PRODUCT_VIEWED,
    STORE_VISIT,
    Activity,
    apply_activity,
    event_kinds,
    lifecycle_stage,
    merge_computed,
    order_amount,
    rfm,
    seen,
)
from identity.domain.settings import DEFAULT_SETTINGS, ComputedEvents, LifecycleThresholds
from identity.domain.traits import TraitWrite, apply_writes, iso

T0 = datetime(2026, 3, 1, 12, 0, tzinfo=UTC)
RANK = DEFAULT_SETTINGS.source_rank  # server, crm, pos, app, mini_program, web, ads


def write(key, value, source, minutes=0):
    return TraitWrite(key, value, source, T0 + timedelta(minutes=minutes))


def test_a_crm_value_is_not_overwritten_by_the_website_even_when_newer():
    first = apply_writes({}, {}, [write("name", "Rachel Green", "crm")], RANK)
    later = apply_writes(first.traits, first.meta, [write("name", "rach", "web", minutes=5)], RANK)
    assert later.traits == {"name": "Rachel Green"}
    assert later.meta == {"name": {"source": "crm", "at": iso(T0)}}
    assert not later.changed and not later.meta_changed


def test_a_stronger_source_overwrites_a_weaker_one_even_when_older():
    first = apply_writes({}, {}, [write("city", "Paris", "web", minutes=10)], RANK)
    later = apply_writes(first.traits, first.meta, [write("city", "Lyon", "crm")], RANK)
    assert later.traits == {"city": "Lyon"}
    assert later.meta["city"] == {"source": "crm", "at": iso(T0)}


def test_between_equal_sources_the_later_event_wins_and_a_late_older_one_does_not():
    result = apply_writes({}, {}, [write("plan", "gold", "web", minutes=10), write("plan", "free", "web", minutes=1)],
                          RANK)
    assert result.traits == {"plan": "gold"}
    newer = apply_writes(result.traits, result.meta, [write("plan", "platinum", "web", minutes=11)], RANK)
    assert newer.traits == {"plan": "platinum"}


def test_unknown_sources_rank_after_every_listed_one_and_tie_among_themselves():
    first = apply_writes({}, {}, [write("x", 1, "ads")], RANK)
    assert apply_writes(first.traits, first.meta, [write("x", 2, "partner", minutes=5)], RANK).traits == {"x": 1}
    u = apply_writes({}, {}, [write("x", 1, "partner")], RANK)
    assert apply_writes(u.traits, u.meta, [write("x", 2, "other", minutes=5)], RANK).traits == {"x": 2}


def test_null_removes_a_trait_and_a_stale_write_cannot_bring_it_back():
    first = apply_writes({}, {}, [write("phone_hint", "1234", "app")], RANK)
    removed = apply_writes(first.traits, first.meta, [write("phone_hint", None, "app", minutes=5)], RANK)
    assert removed.traits == {} and removed.changed
    assert removed.meta["phone_hint"]["source"] == "app"
    stale = apply_writes(removed.traits, removed.meta, [write("phone_hint", "1234", "app", minutes=2)], RANK)
    assert stale.traits == {}
    weaker_null = apply_writes(first.traits, first.meta, [write("phone_hint", None, "web", minutes=9)], RANK)
    assert weaker_null.traits == {"phone_hint": "1234"}


def test_a_trait_without_provenance_takes_any_write_and_equal_values_change_only_meta():
    result = apply_writes({"a": 1, "b": True}, {}, [write("a", 1, "ads"), write("b", 1, "ads")], RANK)
    assert result.traits == {"a": 1, "b": 1}
    assert result.changed  # true -> 1 is a change in JSON even though True == 1 in Python
    same = apply_writes({"a": 1}, {}, [write("a", 1, "ads")], RANK)
    assert not same.changed and same.meta_changed


def act(kind, at=T0, channel="web", **props):
    return Activity(kind, props, at, channel)


def test_orders_count_value_average_and_first_last_order_times():
    c: dict = {}
    assert apply_activity(c, act(ORDER, order_id="o1", total=100))
    assert apply_activity(c, act(ORDER, T0 - timedelta(days=3), order_id="o2", revenue="50.5"))
    assert apply_activity(c, act(ORDER, T0 + timedelta(days=1), order_id="o3", value=19.99))
    assert c["order_count"] == 3
    assert c["lifetime_value"] == 170.49
    assert c["avg_order_value"] == 56.83
    assert c["first_order_at"] == iso(T0 - timedelta(days=3))
    assert c["last_order_at"] == iso(T0 + timedelta(days=1))


def test_the_same_order_id_is_counted_once_but_orders_without_id_always_count():
    c: dict = {}
    apply_activity(c, act(ORDER, order_id="o1", total=10))
    assert not apply_activity(c, act(ORDER, channel="pos", order_id="o1", total=10))
    apply_activity(c, act(ORDER, total=5))
    apply_activity(c, act(ORDER, total=5))
    assert c["order_count"] == 3 and c["lifetime_value"] == 20
    assert "store_visits" not in c  # the duplicate POS report did not count as a visit either


def test_order_amount_falls_back_to_product_lines_and_ignores_junk():
    assert order_amount({"products": [{"price": 10, "quantity": 2}, {"price": "2.5"}]}) == 22.5
    assert order_amount({"total": "abc", "revenue": 7}) == 7
    assert order_amount({"total": True}) == 0
    assert order_amount({"total": -5}) == 0
    assert order_amount({"total": float("nan"), "value": 3}) == 3


def test_category_scores_favourite_and_cart_follow_views_adds_removes_and_orders():
    c: dict = {}
    for _ in range(4):
        apply_activity(c, act(PRODUCT_VIEWED, product_id="p1", category="shoes"))
    apply_activity(c, act(PRODUCT_ADDED, product_id="p2", category="bags"))
    apply_activity(c, act(PRODUCT_ADDED, product_id="p3", category="bags"))
    apply_activity(c, act(PRODUCT_ADDED, product_id="p4", category="hats"))
    assert c["category_scores"] == {"shoes": 4, "bags": 6, "hats": 3}
    assert c["favourite_category"] == "bags"
    assert c["cart"] == ["p2", "p3", "p4"]
    apply_activity(c, act(PRODUCT_REMOVED, product_id="p4"))
    apply_activity(c, act(ORDER, order_id="o1", total=80, products=[
        {"product_id": "p2", "category": "bags"}, {"product_id": "p9", "category": "shoes"}]))
    assert c["cart"] == ["p3"]
    assert c["category_scores"] == {"shoes": 9, "bags": 11, "hats": 3}
    assert c["favourite_category"] == "bags"


def test_favourite_ties_go_to_the_first_name_and_the_cart_holds_a_product_once():
    c: dict = {}
    apply_activity(c, act(PRODUCT_ADDED, sku="s1", category="zebra"))
    apply_activity(c, act(PRODUCT_ADDED, sku="s1", category="apple"))
    assert c["favourite_category"] == "apple"
    assert c["cart"] == ["s1"]


def test_store_visits_count_once_per_day_including_pos_orders():
    c: dict = {}
    apply_activity(c, act(STORE_VISIT, store_id="sh-1"))
    apply_activity(c, act(ORDER, T0 + timedelta(hours=2), channel="pos", total=30))  # same day: same visit
    apply_activity(c, act(STORE_VISIT, T0 + timedelta(days=2)))
    apply_activity(c, act(ORDER, T0 + timedelta(days=5), channel="pos", total=30))
    apply_activity(c, act(STORE_VISIT, T0 + timedelta(hours=5)))  # late report of day one
    assert c["store_visits"] == 3
    assert c["last_store_visit_at"] == iso(T0 + timedelta(days=5))


def test_last_seen_only_moves_forward():
    c: dict = {}
    seen(c, T0)
    seen(c, T0 - timedelta(days=1))
    assert c["last_seen_at"] == iso(T0)


@pytest.mark.parametrize(("days", "orders", "value", "score"), [
    (0, 1, 10, "511"), (30, 2, 50, "522"), (31, 3, 199.99, "432"), (91, 5, 200, "343"),
    (181, 10, 999, "254"), (366, 40, 1000, "155"),
])
def test_rfm_breakpoints(days, orders, value, score):
    c = {"order_count": orders, "lifetime_value": value, "last_order_at": iso(T0 - timedelta(days=days))}
    result = rfm(c, T0)
    assert result["score"] == score
    assert (result["r"], result["f"], result["m"]) == tuple(int(x) for x in score)


def test_no_orders_no_rfm():
    assert rfm({}, T0) is None


def test_lifecycle_stages_follow_order_count_and_churn_threshold():
    t = LifecycleThresholds(repeat_min_orders=2, retained_min_orders=4, churn_after_days=90)

    def stage(orders, days_ago=1):
        return lifecycle_stage({"order_count": orders, "last_order_at": iso(T0 - timedelta(days=days_ago))}, T0, t)

    assert lifecycle_stage({}, T0, t) == "potential"
    assert stage(1) == "first_purchase"
    assert stage(2) == "repeat"
    assert stage(3) == "repeat"
    assert stage(4) == "retained"
    assert stage(4, days_ago=89) == "retained"
    assert stage(4, days_ago=90) == "churned"
    assert stage(1, days_ago=400) == "churned"


def test_event_kinds_map_the_tenants_names():
    kinds = event_kinds(ComputedEvents(order=["Order Completed", "Purchase"], store_visit=["Check In"]))
    assert kinds["Purchase"] == ORDER and kinds["Check In"] == STORE_VISIT
    assert kinds["Product Viewed"] == PRODUCT_VIEWED


def test_merging_two_profiles_adds_up_their_activity_and_rescores():
    survivor: dict = {}
    merged: dict = {}
    apply_activity(survivor, act(ORDER, T0 - timedelta(days=40), order_id="a1", total=100,
                                 products=[{"category": "shoes"}]))
    apply_activity(survivor, act(STORE_VISIT, T0 - timedelta(days=40)))
    apply_activity(survivor, act(PRODUCT_ADDED, product_id="p1"))
    survivor["loyalty_tier"] = "gold"
    apply_activity(merged, act(ORDER, T0 - timedelta(days=2), order_id="b1", total=50.5))
    apply_activity(merged, act(STORE_VISIT, T0 - timedelta(days=40, hours=-1)))  # the same day as the survivor's
    apply_activity(merged, act(PRODUCT_VIEWED, category="bags"))
    apply_activity(merged, act(PRODUCT_ADDED, product_id="p2", category="bags"))
    merged.update(loyalty_tier="silver", email_opens=3)
    out = merge_computed(survivor, merged, T0)
    assert out["order_count"] == 2 and out["lifetime_value"] == 150.5 and out["avg_order_value"] == 75.25
    assert out["first_order_at"] == iso(T0 - timedelta(days=40))
    assert out["last_order_at"] == iso(T0 - timedelta(days=2))
    assert out["store_visits"] == 1
    assert out["category_scores"] == {"shoes": 5, "bags": 4} and out["favourite_category"] == "shoes"
    assert out["cart"] == ["p2", "p1"]
    assert out["loyalty_tier"] == "gold" and out["email_opens"] == 3
    assert out["recent_order_ids"] == ["b1", "a1"]
    assert out["rfm"] == {"r": 5, "f": 2, "m": 2, "score": "522"}
    assert lifecycle_stage(out, T0, LifecycleThresholds()) == "repeat"
