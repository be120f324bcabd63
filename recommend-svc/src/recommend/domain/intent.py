"""Purchase intent: a person locks onto an item after viewing it `intent_min_views` times within the
window while it has sat in their cart for `intent_cart_minutes`. While locked, recommendations switch to
complements from other categories. The lock lapses `intent_ttl_hours` after the last signal on the
item, and ends when the item is bought or leaves the cart."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta

from recommend.domain.config import VIEW, Config


@dataclass(frozen=True)
class Signal:
    item_id: str
    kind: int
    weight: float
    at: datetime


@dataclass(frozen=True)
class Candidate:
    item_id: str
    score: float
    views: int
    locked: bool
    last_signal: datetime


def evaluate(history: Sequence[Signal], cart: Mapping[str, datetime], config: Config, now: datetime
             ) -> Candidate | None:
    """The strongest intent among the cart's items (locked or not); None with an empty cart."""
    if not cart:
        return None
    since = now - timedelta(hours=config.intent_window_hours)
    views: dict[str, int] = {}
    last: dict[str, datetime] = {}
    for s in history:
        if s.item_id in cart:
            last[s.item_id] = max(last.get(s.item_id, s.at), s.at)
            if s.kind == VIEW and s.at >= since:
                views[s.item_id] = views.get(s.item_id, 0) + 1
    hold = timedelta(minutes=config.intent_cart_minutes)
    best: Candidate | None = None
    for item_id, added_at in cart.items():
        n = views.get(item_id, 0)
        age = now - added_at
        held = 1.0 if hold.total_seconds() == 0 else min(1.0, max(age / hold, 0.0))
        score = 0.5 * min(1.0, n / config.intent_min_views) + 0.5 * held
        last_signal = max(last.get(item_id, added_at), added_at)
        lapsed = now >= last_signal + timedelta(hours=config.intent_ttl_hours)
        locked = n >= config.intent_min_views and age >= hold and not lapsed
        c = Candidate(item_id, round(score, 4), n, locked, last_signal)
        if best is None or (c.locked, c.score, c.last_signal) > (best.locked, best.score, best.last_signal):
            best = c
    return best


def lapses_at(candidate: Candidate, config: Config) -> datetime:
    return candidate.last_signal + timedelta(hours=config.intent_ttl_hours)
