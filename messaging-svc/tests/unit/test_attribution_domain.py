"""What an order is worth (total, revenue, value, else its lines; minor units per ISO 4217), and ROI."""

from __future__ import annotations

import pytest

from mcloud_common.errors import InvalidArgument
from messaging.domain.attribution import check_rules, order_value, roi


def test_the_order_value_follows_the_segment_spec_in_minor_units():
    assert order_value({"order_id": "A", "total": 120.5, "revenue": 1, "currency": "eur"}, "e1", "USD") == (
        order_value({"order_id": "A", "total": "120.50", "currency": "EUR"}, "e2", "USD"))
    v = order_value({"order_id": "A", "total": 120.5, "currency": "eur"}, "e1", "USD")
    assert (v.order_id, v.revenue_minor, v.currency) == ("A", 12050, "EUR")
    assert order_value({"revenue": 1000, "currency": "JPY"}, "e1", "USD").revenue_minor == 1000
    lines = order_value({"products": [{"price": 10, "quantity": 2}, {"price": 1.25}]}, "e9", "CNY")
    assert (lines.order_id, lines.revenue_minor, lines.currency) == ("event:e9", 2125, "CNY")
    assert order_value({"total": -5, "currency": "nope"}, "e1", "USD").revenue_minor == 0
    assert order_value({"total": True}, "e1", "USD").revenue_minor == 0  # a boolean is not an amount


def test_roi_is_undefined_without_a_cost():
    assert roi(1000, 0) is None
    assert roi(300, 100) == 2.0
    assert roi(0, 100) == -1.0


def test_rules_are_checked():
    assert check_rules(24, False, "cny").default_currency == "CNY"
    for hours, currency, code in ((0, "USD", "invalid_attribution_window"), (2161, "USD", "invalid_attribution_window"),
                                  (24, "EURO", "invalid_currency")):
        with pytest.raises(InvalidArgument) as err:
            check_rules(hours, True, currency)
        assert err.value.code == code
