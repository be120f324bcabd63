"""The audience report's window rules: defaults, buckets aligned like PostgreSQL's date_trunc, limits."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest

from identity.domain.reports import bucket_count, buckets, report_window
from mcloud_common.errors import InvalidArgument

NOW = datetime(2026, 12, 7, 15, 30, tzinfo=UTC)  # a Monday


def test_defaults_are_the_last_thirty_days_by_day():
    w = report_window(None, None, "", NOW)
    assert (w.since, w.until, w.granularity) == (NOW - timedelta(days=30), NOW, "day")
    assert len(buckets(w.since, w.until, "day")) == 31  # the first and last days are partial


def test_weeks_start_on_monday_and_months_on_the_first():
    assert buckets(datetime(2026, 11, 4, tzinfo=UTC), datetime(2026, 11, 17, tzinfo=UTC), "week") == [
        datetime(2026, 11, 2, tzinfo=UTC), datetime(2026, 11, 9, tzinfo=UTC), datetime(2026, 11, 16, tzinfo=UTC)]
    assert buckets(datetime(2026, 1, 31, tzinfo=UTC), datetime(2026, 3, 1, tzinfo=UTC), "month") == [
        datetime(2026, 1, 1, tzinfo=UTC), datetime(2026, 2, 1, tzinfo=UTC)]
    assert bucket_count(datetime(2026, 1, 1, tzinfo=UTC), datetime(2026, 1, 2, tzinfo=UTC), "day") == 1


@pytest.mark.parametrize(("since", "until", "granularity", "code"), [
    (NOW, NOW, "day", "invalid_window"),
    (NOW, NOW - timedelta(days=1), "day", "invalid_window"),
    (NOW - timedelta(days=1), NOW, "hour", "invalid_granularity"),
    (NOW - timedelta(days=800), NOW, "month", "window_too_long"),
    (NOW - timedelta(days=450), NOW, "day", "window_too_long"),
])
def test_bad_windows_name_their_problem(since, until, granularity, code):
    with pytest.raises(InvalidArgument) as err:
        report_window(since, until, granularity, NOW)
    assert err.value.code == code
