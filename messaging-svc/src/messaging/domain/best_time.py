"""Best send time and channel from engagement (opens and clicks by hour of week in the person's zone).

Hour of week: 0 = Monday 00:00-00:59 local ... 167 = Sunday 23:00-23:59.

Scoring: each hour's engagement is opens + 2 x clicks; an hour's score is its own engagement counted
twice plus its neighbours' (±1 h, wrapping around the week), so a peak spread over adjacent hours wins
over an isolated blip and ties break towards the real peak. Ties left over go to the earliest hour.

Fallbacks: a person with fewer than MIN_EVENTS opens+clicks gets the tenant-wide distribution (everyone's
engagement in the tenant, in each person's local hours, so it transfers to any zone); with no
engagement at all in the tenant, DEFAULT_HOUR = 34 = Tuesday 10:00 local (a common marketing-email
default: mid-morning, early week). Both fallbacks answer is_default.

Confidence (in [0, 1]): n / (n + 10) for n personal events (5 -> 0.33, 30 -> 0.75), times the share of the
scored weight that falls in the winning window, floored so a flat but large sample still counts for
something; tenant-wide estimates are capped at 0.3, the fixed default is 0.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from datetime import UTC, datetime, time, timedelta
from zoneinfo import ZoneInfo

from messaging.domain.policies import zone_named  # noqa: F401  (re-exported: tracking uses best_time.zone_named)

HOURS_PER_WEEK = 168
MIN_EVENTS = 3
DEFAULT_HOUR = 34  # Tuesday 10:00 local
CLICK_WEIGHT = 2
TENANT_CONFIDENCE_CAP = 0.3
DEFAULT_CHANNEL = "email"

Counts = Mapping[int, tuple[int, int]]  # hour_of_week -> (opens, clicks)


@dataclass(frozen=True, slots=True)
class BestTime:
    hour_of_week: int
    confidence: float
    sample_size: int
    is_default: bool


def hour_of_week(at: datetime, zone: ZoneInfo) -> int:
    local = at.astimezone(zone)
    return local.weekday() * 24 + local.hour


def _weights(counts: Counts) -> list[int]:
    weights = [0] * HOURS_PER_WEEK
    for hour, (opens, clicks) in counts.items():
        if 0 <= hour < HOURS_PER_WEEK:
            weights[hour] += max(opens, 0) + CLICK_WEIGHT * max(clicks, 0)
    return weights


def _events(counts: Counts) -> int:
    return sum(max(o, 0) + max(c, 0) for o, c in counts.values())


def _peak(counts: Counts) -> tuple[int, float]:
    """(best hour, share of the weight inside its ±1 h window)."""
    w = _weights(counts)
    scores = [2 * w[h] + w[(h - 1) % HOURS_PER_WEEK] + w[(h + 1) % HOURS_PER_WEEK] for h in range(HOURS_PER_WEEK)]
    best = max(range(HOURS_PER_WEEK), key=lambda h: (scores[h], -h))
    total = sum(w)
    window = w[best] + w[(best - 1) % HOURS_PER_WEEK] + w[(best + 1) % HOURS_PER_WEEK]
    return best, (window / total if total else 0.0)


def best_hour(personal: Counts, tenant: Counts | None = None) -> BestTime:
    """The best hour for a person with engagement `personal`, falling back to `tenant` (everyone's) and
    then to DEFAULT_HOUR."""
    n = _events(personal)
    if n >= MIN_EVENTS:
        hour, share = _peak(personal)
        confidence = (n / (n + 10)) * max(share, 0.25)
        return BestTime(hour, round(min(confidence, 1.0), 3), n, False)
    tenant_n = _events(tenant or {})
    if tenant_n >= MIN_EVENTS:
        hour, share = _peak(tenant or {})
        confidence = min(TENANT_CONFIDENCE_CAP, (tenant_n / (tenant_n + 50)) * max(share, 0.25))
        return BestTime(hour, round(confidence, 3), tenant_n, True)
    return BestTime(DEFAULT_HOUR, 0.0, n, True)


def best_channel(engagement: Mapping[str, int], preferred: str | None = None) -> str:
    """The person's explicit preferred channel, else the channel they engage with most (ties and no
    engagement: email, then the order of names)."""
    if preferred:
        return preferred
    best = max(sorted(engagement), key=lambda c: (engagement[c], c == DEFAULT_CHANNEL), default=None)
    return best if best is not None and engagement[best] > 0 else DEFAULT_CHANNEL


def next_occurrence(hour: int, zone: ZoneInfo, now: datetime) -> datetime:
    """The next start of local `hour` of the week strictly after `now`, as an aware UTC datetime. A start
    that does not exist locally (spring-forward gap) maps to the instant just after the gap."""
    if not 0 <= hour < HOURS_PER_WEEK:
        raise ValueError("hour of week must be 0..167")
    now = now.astimezone(UTC)
    local = now.astimezone(zone)
    monday = local.date() - timedelta(days=local.weekday())
    day, hour_of_day = divmod(hour, 24)
    for week in range(3):
        start = datetime.combine(monday + timedelta(days=day + 7 * week), time(hour_of_day), zone)
        at = start.astimezone(UTC)
        if at > now:
            return at
    raise AssertionError("unreachable")  # pragma: no cover
