"""Earn rules: how many points an occurrence (an order, a signup, a review...) earns.

For a rule that matches the occurrence:
    points = rule.points
           + floor(sum(line amount x line multiplier over matching lines) / unit_minor) x points_per_unit
    points x= rule.multiplier x tier multiplier x every active boost of the same trigger
    then capped by what the rule may still give this member in its cap window.
A line's multiplier is its item's (item_multipliers), else its category's, else 1. An order without
lines counts its total as one line of no category. conditions_json (optional) may hold
{"channels": [...], "stores": [...], "min_total_minor": N}.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import datetime

import orjson

from mcloud.loyalty.v1 import loyalty_pb2 as pb
from mcloud_common.timestamps import from_timestamp


@dataclass(frozen=True)
class Earn:
    rule_id: str
    points: int
    qualifying: bool
    # points the rule would have given before its cap
    uncapped: int


def active(rule: pb.EarnRule, now: datetime) -> bool:
    if not rule.enabled:
        return False
    if rule.HasField("valid_from") and now < from_timestamp(rule.valid_from):
        return False
    return not (rule.HasField("valid_until") and now >= from_timestamp(rule.valid_until))


def conditions(rule: pb.EarnRule) -> dict:
    if not rule.conditions_json:
        return {}
    try:
        value = orjson.loads(rule.conditions_json)
    except orjson.JSONDecodeError:
        return {}
    return value if isinstance(value, dict) else {}


def conditions_met(rule: pb.EarnRule, order: pb.Order | None) -> bool:
    cond = conditions(rule)
    if not cond or order is None:
        return True
    if (channels := cond.get("channels")) and order.channel not in channels:
        return False
    if (stores := cond.get("stores")) and order.store_id not in stores:
        return False
    return order.total_minor >= int(cond.get("min_total_minor") or 0)


def _weighted_amount(rule: pb.EarnRule, order: pb.Order) -> float:
    lines = list(order.lines) or [pb.OrderLine(amount_minor=order.total_minor)]
    total = 0.0
    for line in lines:
        if rule.categories and line.category not in rule.categories:
            continue
        m = rule.item_multipliers.get(line.item_id)
        if m is None:
            m = rule.category_multipliers.get(line.category, 1.0)
        total += max(line.amount_minor, 0) * m
    return total


def base_points(rule: pb.EarnRule, order: pb.Order | None) -> int:
    points = rule.points
    if rule.points_per_unit and rule.unit_minor and order is not None:
        points += math.floor(_weighted_amount(rule, order) / rule.unit_minor) * rule.points_per_unit
    return points


def evaluate(program: pb.Program, trigger: str, *, now: datetime, tier: pb.Tier,
             order: pb.Order | None = None, earned_in_window: Mapping[str, int] | None = None) -> list[Earn]:
    """The points each of `program`'s rules for `trigger` gives, as of `now`, for a member in `tier`
    (rules giving nothing are left out). `earned_in_window[rule_id]` is what the rule already gave
    the member inside its cap window."""
    rules = [r for r in program.earn_rules if r.trigger == trigger and active(r, now) and conditions_met(r, order)]
    boost = math.prod(r.multiplier for r in rules if r.boost)
    earned_in_window = earned_in_window or {}
    out = []
    for rule in rules:
        if rule.boost:
            continue
        raw = base_points(rule, order) * rule.multiplier * (tier.points_multiplier or 1.0) * boost
        uncapped = math.floor(raw + 1e-9)
        points = uncapped
        if rule.cap_points:
            points = max(0, min(points, rule.cap_points - earned_in_window.get(rule.id, 0)))
        if points > 0:
            out.append(Earn(rule.id, points, not rule.not_qualifying, uncapped))
    return out


def capped_rules(program: pb.Program, trigger: str) -> list[pb.EarnRule]:
    return [r for r in program.earn_rules if r.trigger == trigger and r.cap_points and not r.boost]


def trigger_of(program: pb.Program, event_name: str) -> str | None:
    """The rule trigger an event name fires in `program`: a named trigger ("order" for
    "Order Completed"...) or the event name itself when some rule uses it; None if nothing."""
    from loyalty.domain.programs import TRIGGER_EVENTS

    for trigger, names in TRIGGER_EVENTS.items():
        if event_name in names:
            return trigger
    if any(r.trigger == event_name for r in program.earn_rules):
        return event_name
    return None
