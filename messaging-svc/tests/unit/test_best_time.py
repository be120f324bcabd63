from __future__ import annotations

from datetime import UTC, datetime
from zoneinfo import ZoneInfo

import pytest

from messaging.domain.best_time import (
    DEFAULT_HOUR,
    best_channel,
    best_hour,
    hour_of_week,
    next_occurrence,
    zone_named,
)

SHANGHAI = ZoneInfo("Asia/Shanghai")
BERLIN = ZoneInfo("Europe/Berlin")


def test_hour_of_week_is_local():
    monday_10_utc = datetime(2026, 11, 2, 10, 0, tzinfo=UTC)
    assert hour_of_week(monday_10_utc, ZoneInfo("UTC")) == 10
    assert hour_of_week(monday_10_utc, SHANGHAI) == 18
    assert hour_of_week(datetime(2026, 11, 1, 23, 30, tzinfo=UTC), SHANGHAI) == 7  # Monday 07:30 local
    assert hour_of_week(datetime(2026, 11, 1, 23, 30, tzinfo=UTC), ZoneInfo("UTC")) == 167


def test_rich_personal_data_wins_with_smoothing_and_clicks_weighted():
    # a spread peak Wednesday evening (hours 67..69) beats an isolated bigger blip on Monday 03:00
    personal = {3: (4, 0), 67: (2, 0), 68: (2, 1), 69: (2, 0)}
    best = best_hour(personal, {100: (1000, 0)})
    assert best.hour_of_week == 68 and not best.is_default and best.sample_size == 11
    assert 0 < best.confidence < 1
    # clicks count double
    assert best_hour({10: (3, 0), 50: (0, 2)}).hour_of_week == 50


def test_confidence_grows_with_the_sample():
    small = best_hour({40: (3, 0)})
    large = best_hour({40: (60, 0)})
    assert small.confidence < large.confidence <= 1


def test_thin_data_falls_back_to_the_tenant_then_the_default():
    thin = {12: (1, 1)}  # two events: below the threshold
    tenant = {80: (30, 5), 81: (10, 0)}
    best = best_hour(thin, tenant)
    assert best.hour_of_week == 80 and best.is_default and best.sample_size == 45 and best.confidence <= 0.3
    fallback = best_hour(thin, {})
    assert (fallback.hour_of_week, fallback.is_default, fallback.confidence) == (DEFAULT_HOUR, True, 0.0)
    assert DEFAULT_HOUR == 34  # Tuesday 10:00 local
    assert best_hour({}).hour_of_week == DEFAULT_HOUR


def test_best_channel():
    assert best_channel({}) == "email"
    assert best_channel({"sms": 3, "email": 1}) == "sms"
    assert best_channel({"sms": 2, "email": 2}) == "email"
    assert best_channel({"sms": 2, "email": 2}, preferred="push") == "push"
    assert best_channel({"sms": 0}) == "email"


def test_next_occurrence_in_a_zone_without_dst():
    now = datetime(2026, 11, 2, 10, 0, tzinfo=UTC)  # Monday 18:00 in Shanghai
    # Tuesday 10:00 Shanghai = Tuesday 02:00 UTC
    assert next_occurrence(34, SHANGHAI, now) == datetime(2026, 11, 3, 2, 0, tzinfo=UTC)
    # Monday 09:00 Shanghai has passed this week -> next week
    assert next_occurrence(9, SHANGHAI, now) == datetime(2026, 11, 9, 1, 0, tzinfo=UTC)
    # the current hour's start (18:00) is not strictly after now -> next week
    assert next_occurrence(18, SHANGHAI, now) == datetime(2026, 11, 9, 10, 0, tzinfo=UTC)
    # Sunday 23:00 local of this week
    assert next_occurrence(167, SHANGHAI, now) == datetime(2026, 11, 8, 15, 0, tzinfo=UTC)


def test_next_occurrence_across_a_dst_change():
    # Berlin leaves summer time on Sunday 2026-10-25 03:00 CEST -> 02:00 CET
    now = datetime(2026, 10, 24, 12, 0, tzinfo=UTC)  # Saturday 14:00 CEST
    # Monday 10:00 local falls after the change: 09:00 UTC (CET, +1)
    assert next_occurrence(10, BERLIN, now) == datetime(2026, 10, 26, 9, 0, tzinfo=UTC)
    # Saturday 15:00 local still in summer time: 13:00 UTC
    assert next_occurrence(5 * 24 + 15, BERLIN, now) == datetime(2026, 10, 24, 13, 0, tzinfo=UTC)
    # spring forward Sunday 2026-03-29 02:00 -> 03:00: a 02:00 start does not exist locally
    gap = next_occurrence(6 * 24 + 2, BERLIN, datetime(2026, 3, 28, 12, 0, tzinfo=UTC))
    assert gap == datetime(2026, 3, 29, 1, 0, tzinfo=UTC)  # the instant the gap ends (03:00 CEST)
    assert next_occurrence(6 * 24 + 2, BERLIN, gap) > gap


def test_next_occurrence_rejects_bad_hours():
    with pytest.raises(ValueError):
        next_occurrence(168, BERLIN, datetime(2026, 1, 1, tzinfo=UTC))


def test_zone_named_falls_back():
    assert zone_named(None, "Not/AZone", "Asia/Shanghai").key == "Asia/Shanghai"
    assert zone_named(None, "").key == "UTC"
