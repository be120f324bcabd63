"""A tenant's recommendation settings: feedback weights, when intent locks and lapses, complements per
category, how long bought and dismissed items stay out, replenishment lead, trending half-life and the
click-to-purchase attribution window. Zero in a request means the default; what is stored and served is
always the effective value."""

from __future__ import annotations

from dataclasses import dataclass, field, fields
from typing import Any

from mcloud.recommend.v1 import recommend_pb2 as pb
from mcloud_common.errors import InvalidArgument

VIEW, ADD_TO_CART, REMOVE_FROM_CART, PURCHASE, CLICK, DISMISS = (
    pb.FEEDBACK_KIND_VIEW, pb.FEEDBACK_KIND_ADD_TO_CART, pb.FEEDBACK_KIND_REMOVE_FROM_CART,
    pb.FEEDBACK_KIND_PURCHASE, pb.FEEDBACK_KIND_CLICK, pb.FEEDBACK_KIND_DISMISS)
KIND_NAMES = {VIEW: "view", ADD_TO_CART: "add_to_cart", REMOVE_FROM_CART: "remove_from_cart",
              PURCHASE: "purchase", CLICK: "click", DISMISS: "dismiss"}
DEFAULT_WEIGHTS = {"view": 1.0, "add_to_cart": 3.0, "remove_from_cart": -1.0, "purchase": 5.0, "click": 2.0,
                   "dismiss": -5.0}
_LIMITS = {"intent_min_views": (1, 100), "intent_window_hours": (1, 24 * 90), "intent_cart_minutes": (0, 24 * 60 * 30),
           "intent_ttl_hours": (1, 24 * 90), "exclude_purchased_days": (0, 3650), "replenish_lead_days": (0, 365),
           "dismiss_days": (1, 3650), "attribution_days": (1, 90)}


@dataclass(frozen=True)
class Config:
    weights: dict[str, float] = field(default_factory=lambda: dict(DEFAULT_WEIGHTS))
    intent_min_views: int = 3
    intent_window_hours: int = 168
    intent_cart_minutes: int = 10
    intent_ttl_hours: int = 72
    complements: dict[str, list[str]] = field(default_factory=dict)
    exclude_purchased_days: int = 180
    replenish_lead_days: int = 3
    trending_half_life_hours: float = 24.0
    dismiss_days: int = 30
    attribution_days: int = 7

    def weight(self, kind: int) -> float:
        return self.weights[KIND_NAMES[kind]]

    def to_json(self) -> dict[str, Any]:
        return {f.name: getattr(self, f.name) for f in fields(self)}

    @classmethod
    def from_json(cls, data: dict[str, Any] | None) -> Config:
        if not data:
            return cls()
        known = {f.name for f in fields(cls)}
        out = {k: v for k, v in data.items() if k in known}
        out["weights"] = {**DEFAULT_WEIGHTS, **(data.get("weights") or {})}
        return cls(**out)

    @classmethod
    def from_pb(cls, s: pb.RecommendSettings) -> Config:
        """Validated effective settings from a request (zero = default); INVALID_ARGUMENT names the field."""
        default = cls()
        weights = dict(DEFAULT_WEIGHTS)
        for name in DEFAULT_WEIGHTS:
            w = getattr(s.weights, name)
            if w:
                if abs(w) > 1000:
                    raise InvalidArgument(f"weights.{name} must be within -1000..1000", code="invalid_weight",
                                          field=f"weights.{name}")
                weights[name] = float(w)
        for name in ("view", "add_to_cart", "purchase", "click"):
            if weights[name] <= 0:
                raise InvalidArgument(f"weights.{name} must be positive", code="invalid_weight",
                                      field=f"weights.{name}")
        if weights["dismiss"] >= 0:
            raise InvalidArgument("weights.dismiss must be negative", code="invalid_weight", field="weights.dismiss")
        values: dict[str, Any] = {}
        for name, (lo, hi) in _LIMITS.items():
            v = getattr(s, name)
            if v and not lo <= v <= hi:
                raise InvalidArgument(f"{name} must be within {lo}..{hi}", code="invalid_setting", field=name)
            values[name] = v or getattr(default, name)
        half = s.trending_half_life_hours
        if half < 0 or half > 24 * 365:
            raise InvalidArgument("trending_half_life_hours must be within 0..8760", code="invalid_setting",
                                  field="trending_half_life_hours")
        complements: dict[str, list[str]] = {}
        for i, c in enumerate(s.complements):
            category = c.category.strip()
            targets = [t.strip() for t in c.complements if t.strip()]
            if not category or not targets:
                raise InvalidArgument("a complements entry needs a category and at least one complement",
                                      code="invalid_complements", field=f"complements[{i}]")
            if category in targets:
                raise InvalidArgument(f"{category!r} cannot complement itself", code="invalid_complements",
                                      field=f"complements[{i}]")
            complements[category] = list(dict.fromkeys(targets))
        return cls(weights=weights, complements=complements, trending_half_life_hours=half or 24.0, **values)

    def to_pb(self) -> pb.RecommendSettings:
        out = pb.RecommendSettings(
            weights=pb.FeedbackWeights(**self.weights),
            complements=[pb.CategoryComplements(category=k, complements=v)
                         for k, v in sorted(self.complements.items())],
            trending_half_life_hours=self.trending_half_life_hours)
        for name in _LIMITS:
            setattr(out, name, getattr(self, name))
        return out
