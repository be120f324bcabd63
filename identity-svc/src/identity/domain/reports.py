"""The audience report's window rules: defaults, granularity, limits (no I/O)."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime, timedelta

from mcloud_common.errors import InvalidArgument

GRANULARITIES = ("day", "week", "month")
DEFAULT_WINDOW = timedelta(days=30)
MAX_WINDOW = timedelta(days=731)  # two years (and a leap day)
MAX_BUCKETS = {"day": 400, "week": 110, "month": 26}
LIFECYCLE_STAGES = ("potential", "first_purchase", "repeat", "retained", "churned")


@dataclass(frozen=True, slots=True)
class Window:
    since: datetime
    until: datetime
    granularity: str


def report_window(since: datetime | None, until: datetime | None, granularity: str, now: datetime) -> Window:
    """The window [since, until) asked for, with defaults (until = now, since = until - 30 days, day
    buckets); INVALID_ARGUMENT for an unknown granularity, an empty or reversed window, or one longer
    than two years or holding too many buckets."""
    granularity = (granularity or "day").strip().lower()
    if granularity not in GRANULARITIES:
        raise InvalidArgument(f"granularity must be one of {', '.join(GRANULARITIES)}", code="invalid_granularity",
                              field="granularity")
    until = until or now
    since = since or until - DEFAULT_WINDOW
    if since >= until:
        raise InvalidArgument("since must be before until", code="invalid_window", field="since")
    if until - since > MAX_WINDOW:
        raise InvalidArgument("the window is longer than two years", code="window_too_long", field="since")
    buckets = bucket_count(since, until, granularity)
    if buckets > MAX_BUCKETS[granularity]:
        raise InvalidArgument(f"{buckets} {granularity} buckets; at most {MAX_BUCKETS[granularity]} (use a coarser "
                              "granularity)", code="window_too_long", field="granularity")
    return Window(since, until, granularity)


def bucket_start(at: datetime, granularity: str) -> datetime:
    """The UTC start of the day, ISO week (Monday) or month holding `at` (as PostgreSQL's date_trunc)."""
    day = at.replace(hour=0, minute=0, second=0, microsecond=0)
    if granularity == "day":
        return day
    if granularity == "week":
        return day - timedelta(days=day.weekday())
    return day.replace(day=1)


def next_bucket(start: datetime, granularity: str) -> datetime:
    if granularity == "day":
        return start + timedelta(days=1)
    if granularity == "week":
        return start + timedelta(days=7)
    return (start.replace(day=28) + timedelta(days=4)).replace(day=1)


def buckets(since: datetime, until: datetime, granularity: str) -> list[datetime]:
    """Every bucket start from the one holding `since` up to the one holding the last instant before `until`."""
    out = []
    start = bucket_start(since, granularity)
    while start < until:
        out.append(start)
        start = next_bucket(start, granularity)
    return out


def bucket_count(since: datetime, until: datetime, granularity: str) -> int:
    if granularity == "day":
        return (bucket_start(until - timedelta(microseconds=1), "day") - bucket_start(since, "day")).days + 1
    return len(buckets(since, until, granularity))


def ratio(part: int, whole: int) -> float:
    return part / whole if whole else 0.0
