from __future__ import annotations

import random
from datetime import UTC, datetime, timedelta

import pytest

from loyalty.domain import coupons as rules
from mcloud.loyalty.v1 import loyalty_pb2 as pb
from mcloud_common.errors import InvalidArgument
from mcloud_common.timestamps import to_timestamp

NOW = datetime(2026, 11, 1, 9, 0, tzinfo=UTC)
ME = "0190a000-0000-7000-8000-000000000001"
YOU = "0190a000-0000-7000-8000-000000000002"


def order(total: int = 0, currency: str = "EUR", lines=(), order_id: str = "o1") -> pb.Order:
    return pb.Order(order_id=order_id, total_minor=total, currency=currency,
                    lines=[pb.OrderLine(item_id=f"i{n}", category=c, quantity=1, amount_minor=a)
                           for n, (c, a) in enumerate(lines)])


def campaign(**kw) -> pb.CouponCampaign:
    base = dict(name="Ten off", discount_type=pb.DISCOUNT_TYPE_PERCENT_OFF, percent_off=10)
    base.update(kw)
    return pb.CouponCampaign(**base)


def facts(**kw) -> rules.CouponFacts:
    base = dict(profile_id=ME, state=rules.ISSUED, expires_at=NOW + timedelta(days=5))
    base.update(kw)
    return rules.CouponFacts(**base)


def use(c: rules.CouponFacts, *, profile_id=ME, order_id="o1", now=NOW, valid_from=None, valid_until=None):
    return rules.usability(c, profile_id=profile_id, order_id=order_id, now=now, valid_from=valid_from,
                           valid_until=valid_until)


def test_generated_codes_use_the_prefix_and_only_unambiguous_characters():
    codes = {rules.generate_code("WELCOME-") for _ in range(2000)}
    assert len(codes) == 2000
    for code in codes:
        assert code.startswith("WELCOME-")
        body = code.removeprefix("WELCOME-")
        assert len(body) == rules.CODE_LENGTH
        assert not set(body) & set("01OIL")
        assert rules.code_problem(code) is None


def test_generated_code_is_drawn_with_the_given_random_choice():
    rng, twin = random.Random(7), random.Random(7)
    assert rules.generate_code("X", length=4, choice=rng.choice) == "X" + "".join(
        twin.choice(rules.ALPHABET) for _ in range(4))


@pytest.mark.parametrize(("raw", "norm", "ok"), [
    ("  summer-2026 ", "SUMMER-2026", True),
    ("a.b_c", "A.B_C", True),
    ("", "", False),
    ("-LEADING", "-LEADING", False),
    ("HAS SPACE", "HAS SPACE", False),
    ("X" * 65, "X" * 65, False),
])
def test_codes_are_normalized_and_checked(raw, norm, ok):
    assert rules.normalize_code(raw) == norm
    assert (rules.code_problem(norm) is None) is ok


def test_expiry_is_the_earlier_of_validity_days_and_campaign_end():
    end = NOW + timedelta(days=10)
    assert rules.coupon_expiry(NOW, 30, end) == end
    assert rules.coupon_expiry(NOW, 3, end) == NOW + timedelta(days=3)
    assert rules.coupon_expiry(NOW, 3, None) == NOW + timedelta(days=3)
    assert rules.coupon_expiry(NOW, 0, end) == end
    assert rules.coupon_expiry(NOW, 0, None) is None


def test_reminder_is_due_days_before_expiry_only_when_that_is_after_the_issue():
    assert rules.remind_at(NOW, NOW + timedelta(days=10), 3) == NOW + timedelta(days=7)
    assert rules.remind_at(NOW, NOW + timedelta(days=2), 3) is None
    assert rules.remind_at(NOW, NOW + timedelta(days=10), 0) is None
    assert rules.remind_at(NOW, None, 3) is None


def test_effective_state_releases_lapsed_holds_and_expires_overdue_coupons():
    soon, past = NOW + timedelta(minutes=5), NOW - timedelta(seconds=1)
    assert rules.effective_state(rules.RESERVED, NOW + timedelta(days=1), soon, NOW) == rules.RESERVED
    assert rules.effective_state(rules.RESERVED, NOW + timedelta(days=1), past, NOW) == rules.ISSUED
    assert rules.effective_state(rules.RESERVED, past, past, NOW) == rules.EXPIRED
    # a live hold is honoured even when the coupon's expiry passes during checkout
    assert rules.effective_state(rules.RESERVED, past, soon, NOW) == rules.RESERVED
    assert rules.effective_state(rules.ISSUED, NOW, None, NOW) == rules.EXPIRED
    assert rules.effective_state(rules.ISSUED, None, None, NOW) == rules.ISSUED
    assert rules.effective_state(rules.REDEEMED, past, None, NOW) == rules.REDEEMED


def test_usability_reasons():
    assert use(facts()) is None
    assert use(facts(), profile_id=YOU) == rules.NOT_OWNER
    assert use(facts(state=rules.REVOKED)) == rules.R_REVOKED
    assert use(facts(state=rules.REDEEMED, redeemed_order_id="o1")) == rules.R_REDEEMED
    assert use(facts(expires_at=NOW)) == rules.R_EXPIRED
    assert use(facts(state=rules.EXPIRED)) == rules.R_EXPIRED
    assert use(facts(), valid_until=NOW) == rules.R_EXPIRED
    assert use(facts(), valid_from=NOW + timedelta(hours=1)) == rules.NOT_STARTED
    held = facts(state=rules.RESERVED, reserved_order_id="o1", reserved_until=NOW + timedelta(minutes=1))
    assert use(held) is None
    assert use(held, order_id="o2") == rules.R_RESERVED
    assert use(held, order_id="") == rules.R_RESERVED
    lapsed = facts(state=rules.RESERVED, reserved_order_id="o1", reserved_until=NOW)
    assert use(lapsed, order_id="o2") is None


def test_ownership_is_checked_before_state_so_strangers_learn_nothing():
    assert use(facts(state=rules.REDEEMED), profile_id=YOU) == rules.NOT_OWNER
    assert use(facts(expires_at=NOW - timedelta(days=1)), profile_id=YOU) == rules.NOT_OWNER


def test_percent_off_applies_to_the_order_total_rounded_half_up():
    assert rules.order_discount(campaign(percent_off=10), order(total=1005)) == rules.Discount(None, 101, "EUR")
    assert rules.order_discount(campaign(percent_off=10), order(total=1004)).discount_minor == 100
    assert rules.order_discount(campaign(percent_off=100), order(total=999)).discount_minor == 999


def test_percent_off_counts_only_lines_of_the_campaign_categories():
    c = campaign(percent_off=20, categories=["Shoes"])
    o = order(total=10000, lines=[("shoes", 5000), ("bags", 4000), ("SHOES", 1000)])
    assert rules.order_discount(c, o).discount_minor == 1200


def test_without_a_total_the_lines_are_the_eligible_amount():
    assert rules.order_discount(campaign(percent_off=50), order(lines=[("a", 300), ("b", 100)])).discount_minor == 200


def test_category_filter_with_no_matching_line_is_no_eligible_lines():
    c = campaign(categories=["shoes"])
    assert rules.order_discount(c, order(total=500, lines=[("bags", 500)])).reason == rules.NO_ELIGIBLE_LINES
    assert rules.order_discount(c, order(total=500)).reason == rules.NO_ELIGIBLE_LINES


def test_eligible_lines_are_capped_at_the_order_total():
    c = campaign(discount_type=pb.DISCOUNT_TYPE_AMOUNT_OFF, percent_off=0, amount_off_minor=5000, currency="EUR",
                 categories=["shoes"])
    assert rules.order_discount(c, order(total=800, lines=[("shoes", 1000)])).discount_minor == 800


def test_amount_off_is_capped_at_the_eligible_amount():
    c = campaign(discount_type=pb.DISCOUNT_TYPE_AMOUNT_OFF, percent_off=0, amount_off_minor=1500, currency="EUR")
    assert rules.order_discount(c, order(total=5000)).discount_minor == 1500
    assert rules.order_discount(c, order(total=900)).discount_minor == 900


def test_amount_off_in_another_currency_is_a_mismatch_but_percent_off_is_not():
    amount = campaign(discount_type=pb.DISCOUNT_TYPE_AMOUNT_OFF, percent_off=0, amount_off_minor=500, currency="EUR")
    assert rules.order_discount(amount, order(total=5000, currency="USD")).reason == rules.CURRENCY_MISMATCH
    assert rules.order_discount(amount, order(total=5000, currency="eur")).reason is None
    percent = campaign(percent_off=10, currency="EUR")
    assert rules.order_discount(percent, order(total=5000, currency="USD")) == rules.Discount(None, 500, "USD")
    with_minimum = campaign(percent_off=10, currency="EUR", min_order_minor=100)
    assert rules.order_discount(with_minimum, order(total=5000, currency="USD")).reason == rules.CURRENCY_MISMATCH


def test_minimum_order_is_measured_on_the_eligible_amount():
    c = campaign(min_order_minor=3000, currency="EUR", categories=["shoes"])
    assert rules.order_discount(c, order(total=9000, lines=[("shoes", 2000), ("bags", 7000)])).reason == (
        rules.MIN_ORDER_NOT_MET)
    assert rules.order_discount(c, order(total=9000, lines=[("shoes", 3000), ("bags", 6000)])).discount_minor == 300


def test_free_shipping_and_gift_are_valid_with_no_discount():
    ship = campaign(discount_type=pb.DISCOUNT_TYPE_FREE_SHIPPING, percent_off=0)
    gift = campaign(discount_type=pb.DISCOUNT_TYPE_GIFT, percent_off=0, gift_item_id="tote")
    assert rules.order_discount(ship, order(total=100)) == rules.Discount(None, 0, "EUR")
    assert rules.order_discount(gift, order(total=100)) == rules.Discount(None, 0, "EUR")


@pytest.mark.parametrize(("changes", "field"), [
    ({"name": " "}, "name"),
    ({"discount_type": pb.DISCOUNT_TYPE_UNSPECIFIED}, "discount_type"),
    ({"percent_off": 0}, "percent_off"),
    ({"percent_off": 101}, "percent_off"),
    ({"discount_type": pb.DISCOUNT_TYPE_AMOUNT_OFF, "percent_off": 0, "currency": "EUR"}, "amount_off_minor"),
    ({"discount_type": pb.DISCOUNT_TYPE_AMOUNT_OFF, "percent_off": 0, "amount_off_minor": 5}, "currency"),
    ({"discount_type": pb.DISCOUNT_TYPE_GIFT, "percent_off": 0}, "gift_item_id"),
    ({"min_order_minor": 100}, "currency"),
    ({"currency": "EURO"}, "currency"),
    ({"valid_from": to_timestamp(NOW), "valid_until": to_timestamp(NOW)}, "valid_until"),
    ({"max_issued": -1}, "max_issued"),
    ({"per_profile_limit": -1}, "per_profile_limit"),
    ({"validity_days": -1}, "validity_days"),
    ({"code_prefix": "BAD PREFIX"}, "code_prefix"),
    ({"code_prefix": "X" * 25}, "code_prefix"),
    ({"code_prefix": "A-", "code_source": pb.CODE_SOURCE_POOL}, "code_prefix"),
    ({"status": 42}, "status"),
])
def test_campaign_checks_name_the_bad_field(changes, field):
    with pytest.raises(InvalidArgument) as err:
        rules.check_campaign(campaign(**changes))
    assert err.value.code == f"invalid_{field}"
    assert err.value.extra["field"] == f"campaign.{field}"


def test_a_sensible_campaign_passes_the_checks():
    rules.check_campaign(campaign(code_prefix="welcome-", max_issued=10, per_profile_limit=1, validity_days=30,
                                  valid_from=to_timestamp(NOW), valid_until=to_timestamp(NOW + timedelta(days=1))))


def test_only_coupons_still_usable_can_be_revoked():
    later, earlier = NOW + timedelta(days=1), NOW - timedelta(seconds=1)
    assert rules.revoke_refusal(rules.ISSUED, later, None, NOW) is None
    assert rules.revoke_refusal(rules.RESERVED, later, NOW + timedelta(minutes=5), NOW) is None
    assert rules.revoke_refusal(rules.RESERVED, earlier, NOW + timedelta(minutes=5), NOW) is None  # live hold
    assert rules.revoke_refusal(rules.REDEEMED, later, None, NOW) == "redeemed"
    assert rules.revoke_refusal(rules.EXPIRED, earlier, None, NOW) == "expired"
    assert rules.revoke_refusal(rules.ISSUED, earlier, None, NOW) == "expired"  # overdue, job not run yet
    assert rules.revoke_refusal(rules.RESERVED, earlier, earlier, NOW) == "expired"  # lapsed hold, overdue
    assert rules.revoke_refusal(rules.REVOKED, later, None, NOW) is None  # a no-op the caller handles


def test_a_revoked_coupon_is_unusable_even_for_its_owner():
    assert use(facts(state=rules.REVOKED)) == "revoked"
    assert use(facts(state=rules.REVOKED), profile_id=YOU) == "not_owner"


@pytest.mark.parametrize(("reason", "actor", "field"), [
    ("", "ops@example.com", "reason"), ("   ", "ops@example.com", "reason"), ("x" * 501, "ops", "reason"),
    ("fraud", "", "actor"), ("fraud", "a" * 201, "actor"),
])
def test_revoking_needs_a_reason_and_an_actor(reason, actor, field):
    with pytest.raises(InvalidArgument) as err:
        rules.check_revoke(reason, actor)
    assert (err.value.code, err.value.extra["field"]) == (f"invalid_{field}", field)


def test_revoke_reason_and_actor_are_stripped():
    assert rules.check_revoke("  fraud ", " ops@example.com ") == ("fraud", "ops@example.com")


def test_offer_names_the_benefit_of_each_discount_type():
    assert rules.offer(campaign()) == rules.Offer(pb.DISCOUNT_TYPE_PERCENT_OFF, False, "")
    assert rules.offer(campaign(discount_type=pb.DISCOUNT_TYPE_FREE_SHIPPING, percent_off=0)) == rules.Offer(
        pb.DISCOUNT_TYPE_FREE_SHIPPING, True, "")
    assert rules.offer(campaign(discount_type=pb.DISCOUNT_TYPE_GIFT, percent_off=0, gift_item_id="tote")) == (
        rules.Offer(pb.DISCOUNT_TYPE_GIFT, False, "tote"))
    # a gift item left on a campaign that is not a gift is not offered
    assert rules.offer(campaign(gift_item_id="tote")).gift_item_id == ""


def test_orders_with_negative_amounts_are_refused():
    rules.check_order(order(100, lines=[("shoes", 100)]))
    for bad in (order(-1), order(100, lines=[("shoes", -5)])):
        with pytest.raises(InvalidArgument) as err:
            rules.check_order(bad)
        assert err.value.code == "invalid_order"
