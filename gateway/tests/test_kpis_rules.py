"""The KPI route's own rules, without services: windows, the recommendation CTR uplift, the summary."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest

from gateway.errors import ProblemError
from gateway.routes.kpis import recommendation_kpis, summary_of, window_of
from gateway.schemas.kpis import (
    AttributionRead,
    ChannelKpis,
    ChannelsKpis,
    ProgramKpis,
    RecommenderKpis,
    RevenueRead,
)

NOW = datetime(2026, 12, 7, 12, tzinfo=UTC)


def test_windows_default_to_thirty_days_and_refuse_reversed_or_too_long_ones():
    w = window_of(None, None, "day", NOW)
    assert (w.since, w.until) == (NOW - timedelta(days=30), NOW)
    for since, granularity, code in ((NOW, "day", "invalid_window"),
                                     (NOW - timedelta(days=367), "day", "window_too_long"),
                                     (NOW - timedelta(days=732), "month", "window_too_long")):
        with pytest.raises(ProblemError) as err:
            window_of(since, NOW, granularity, NOW)
        assert (err.value.code, err.value.status) == (code, 400)
    assert window_of(NOW - timedelta(days=700), NOW, "week", NOW).since == NOW - timedelta(days=700)


def row(recommender: str, impressions: int, clicks: int, scenario: str = "home") -> RecommenderKpis:
    return RecommenderKpis(scenario=scenario, recommender=recommender, impressions=impressions, clicks=clicks,
                           conversions=0, click_through_rate=clicks / impressions if impressions else 0,
                           conversion_rate=0)


def test_ctr_uplift_compares_personalised_recommenders_with_popular_and_trending():
    got = recommendation_kpis([row("popular", 100, 2), row("trending", 100, 2), row("personalized", 100, 6),
                               row("cross_category", 100, 2, "cart"), row("*", 400, 12)])
    assert (got.baseline_ctr, got.personalised_ctr) == (0.02, 0.04)
    assert got.ctr_uplift == pytest.approx(1.0)
    assert recommendation_kpis([row("personalized", 10, 1)]).ctr_uplift is None  # nothing to compare with


def channel(name: str, cost: int, currency: str, revenue: list[tuple[str, int]]) -> ChannelKpis:
    return ChannelKpis(channel=name, sent=10, delivered=10, opened=5, clicked=2, bounced=0, unsubscribed=0,
                       open_rate=0.5, click_rate=0.2, attributed_orders=len(revenue),
                       revenue=[RevenueRead(currency=c, orders=1, revenue_minor=v) for c, v in revenue],
                       cost_minor=cost, cost_currency=currency, roi=None)


def program(gained: int) -> ProgramKpis:
    return ProgramKpis(program_id="p", name="Club", members=gained, members_gained=gained, members_lost=1,
                       tier_upgrades=1, tier_downgrades=0, tiers=[], outstanding_points=0, liability_minor=0,
                       currency="EUR", periods=[])


def test_the_summary_adds_channels_up_and_prices_an_acquired_member():
    channels = ChannelsKpis(channels=[channel("email", 30, "EUR", [("EUR", 900)]), channel("sms", 70, "EUR", []),
                                      channel("push", 0, "", [("USD", 100)])],
                            sources=[], unsubscribed_all_channels=0,
                            attribution=AttributionRead(window_hours=168, count_opens=True, default_currency="USD"))
    s = summary_of(None, [program(3), program(1)], channels, None)
    assert [(m.currency, m.amount_minor) for m in s.attributed_revenue] == [("EUR", 900), ("USD", 100)]
    assert [(m.currency, m.amount_minor) for m in s.messaging_cost] == [("EUR", 100)]
    assert s.roi == 8.0 and (s.cost_per_acquired_member.currency, s.cost_per_acquired_member.amount_minor) == (
        "EUR", 25)
    assert (s.members_gained, s.tier_upgrades, s.members_lost, s.repurchase_rate) == (4, 2, 2, None)
    empty = summary_of(None, None, None, None)
    assert empty.roi is None and empty.attributed_revenue is None and empty.members_gained is None
