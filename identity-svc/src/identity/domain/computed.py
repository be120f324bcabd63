"""Computed traits, RFM and lifecycle stage: kept current event by event, without re-reading history.

The state is the profile's `computed` object (keys listed in identity-svc/README.md). Events are the
tenant's `computed_events` track names (Segment e-commerce names by default):
- order: order_count, lifetime_value (properties `total`, else `revenue`, else `value`, else the sum
  of products[].price x quantity), avg_order_value, first/last_order_at, category scores (+5 per
  ordered product's category), ordered products leave the cart. An order_id seen among the
  profile's last RECENT_ORDER_IDS orders is not counted again (the same order reported by two
  channels under different message ids; retries of one message are already dropped by ingest).
- product viewed (+1 to its category), product added (+3, product joins the cart), product removed
  (leaves the cart).
- store visit: a store_visit event, or an order on the "pos" channel (buying in a store is a visit);
  at most one visit per UTC day, so a visit event and a till receipt the same day count once.
Every call moves last_seen_at forward. RFM scores 1-5 from fixed breakpoints (below); recency is
recomputed on every order and by the periodic pass as time goes by.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import datetime

from identity.domain.settings import ComputedEvents, LifecycleThresholds
from identity.domain.traits import iso, parse_iso

ORDER = "order"
PRODUCT_VIEWED = "product_viewed"
PRODUCT_ADDED = "product_added"
PRODUCT_REMOVED = "product_removed"
STORE_VISIT = "store_visit"
KINDS = (ORDER, PRODUCT_VIEWED, PRODUCT_ADDED, PRODUCT_REMOVED, STORE_VISIT)

CATEGORY_POINTS = {PRODUCT_VIEWED: 1, PRODUCT_ADDED: 3, ORDER: 5}
# RFM breakpoints. r: days since the last order, 5 when within 30 days, one less per breakpoint passed;
# f: orders, 1 + breakpoints reached; m: lifetime value in major currency units, 1 + breakpoints reached.
RECENCY_DAYS = (30, 90, 180, 365)
FREQUENCY_ORDERS = (2, 3, 5, 10)
MONETARY_VALUE = (50, 200, 500, 1000)

MAX_CART = 100
MAX_CATEGORIES = 50
RECENT_ORDER_IDS = 20
RECENT_VISIT_DAYS = 10
MAX_TEXT = 256

POTENTIAL, FIRST_PURCHASE, REPEAT, RETAINED, CHURNED = "potential", "first_purchase", "repeat", "retained", "churned"


@dataclass(frozen=True)
class Activity:
    """One event that feeds computed traits: its kind, properties, time and channel."""

    kind: str
    properties: Mapping
    at: datetime
    channel: str


def event_kinds(events: ComputedEvents) -> dict[str, str]:
    """Track event name -> kind (a name listed under two kinds counts as the first)."""
    kinds: dict[str, str] = {}
    for kind in KINDS:
        for name in getattr(events, kind):
            kinds.setdefault(name, kind)
    return kinds


def _number(value: object) -> float | None:
    if isinstance(value, bool):
        return None
    if isinstance(value, str):
        try:
            value = float(value)
        except ValueError:
            return None
    if type(value) in (int, float) and math.isfinite(value):
        return float(value)
    return None


def _text(value: object) -> str | None:
    if isinstance(value, bool):
        return None
    if isinstance(value, int):
        value = str(value)
    if isinstance(value, str):
        value = value.strip()
        if 0 < len(value) <= MAX_TEXT:
            return value
    return None


def _products(props: Mapping) -> list[Mapping]:
    """The order's product lines; an order without products[] may describe one product inline."""
    products = props.get("products")
    if isinstance(products, list):
        return [p for p in products if isinstance(p, dict)]
    return [props] if ("product_id" in props or "category" in props) else []


def _product_id(product: Mapping) -> str | None:
    return _text(product.get("product_id")) or _text(product.get("sku"))


def order_amount(props: Mapping) -> float:
    """total, else revenue, else value, else the product lines; never negative."""
    for key in ("total", "revenue", "value"):
        amount = _number(props.get(key))
        if amount is not None:
            return max(amount, 0.0)
    lines = 0.0
    for p in _products(props):
        price, quantity = _number(p.get("price")), _number(p.get("quantity"))
        if price is not None:
            lines += price * (quantity if quantity is not None and quantity > 0 else 1)
    return max(lines, 0.0)


def _later(a: str | None, b: datetime) -> str:
    current = parse_iso(a)
    return iso(b) if current is None or b > current else a  # type: ignore[return-value]


def _earlier(a: str | None, b: datetime) -> str:
    current = parse_iso(a)
    return iso(b) if current is None or b < current else a  # type: ignore[return-value]


def _score_category(c: dict, category: object, points: int) -> None:
    name = _text(category)
    if name is None:
        return
    scores = dict(c.get("category_scores") or {})
    scores[name] = scores.get(name, 0) + points
    if len(scores) > MAX_CATEGORIES:  # drop the weakest interests, never the favourite
        keep = sorted(scores.items(), key=lambda kv: (-kv[1], kv[0]))[:MAX_CATEGORIES]
        scores = dict(keep)
    c["category_scores"] = scores
    c["favourite_category"] = min(scores.items(), key=lambda kv: (-kv[1], kv[0]))[0]


def _cart_add(c: dict, product_id: str | None) -> None:
    if product_id is None:
        return
    cart = [p for p in c.get("cart") or [] if p != product_id]
    cart.append(product_id)
    c["cart"] = cart[-MAX_CART:]


def _cart_remove(c: dict, product_ids: set[str]) -> None:
    if product_ids and c.get("cart"):
        c["cart"] = [p for p in c["cart"] if p not in product_ids]


def _store_visit(c: dict, at: datetime) -> None:
    day = iso(at)[:10]
    days = list(c.get("recent_store_visit_days") or [])
    if day in days:
        return
    c["store_visits"] = int(c.get("store_visits") or 0) + 1
    c["last_store_visit_at"] = _later(c.get("last_store_visit_at"), at)
    c["recent_store_visit_days"] = sorted([*days, day])[-RECENT_VISIT_DAYS:]


def _order(c: dict, a: Activity) -> bool:
    props = a.properties
    order_id = _text(props.get("order_id"))
    recent = list(c.get("recent_order_ids") or [])
    if order_id is not None and order_id in recent:
        return False
    count = int(c.get("order_count") or 0) + 1
    value = round(float(c.get("lifetime_value") or 0) + order_amount(props), 2)
    c["order_count"] = count
    c["lifetime_value"] = value
    c["avg_order_value"] = round(value / count, 2)
    c["first_order_at"] = _earlier(c.get("first_order_at"), a.at)
    c["last_order_at"] = _later(c.get("last_order_at"), a.at)
    ordered: set[str] = set()
    for product in _products(props):
        _score_category(c, product.get("category"), CATEGORY_POINTS[ORDER])
        pid = _product_id(product)
        if pid is not None:
            ordered.add(pid)
    _cart_remove(c, ordered)
    if order_id is not None:
        c["recent_order_ids"] = [*recent, order_id][-RECENT_ORDER_IDS:]
    if a.channel == "pos":
        _store_visit(c, a.at)
    return True


def apply_activity(c: dict, a: Activity) -> bool:
    """Fold one event into computed state `c` (in place); True when it counted an order."""
    if a.kind == ORDER:
        return _order(c, a)
    if a.kind in (PRODUCT_VIEWED, PRODUCT_ADDED):
        _score_category(c, a.properties.get("category"), CATEGORY_POINTS[a.kind])
        if a.kind == PRODUCT_ADDED:
            _cart_add(c, _product_id(a.properties))
    elif a.kind == PRODUCT_REMOVED:
        pid = _product_id(a.properties)
        _cart_remove(c, {pid} if pid else set())
    elif a.kind == STORE_VISIT:
        _store_visit(c, a.at)
    return False


def seen(c: dict, at: datetime) -> None:
    """Any call: last_seen_at moves forward."""
    c["last_seen_at"] = _later(c.get("last_seen_at"), at)


def days_since(then: datetime, now: datetime) -> int:
    """Whole days elapsed (never negative)."""
    return max((now - then).days, 0)


def recency_score(days: int) -> int:
    return 5 - sum(days > b for b in RECENCY_DAYS)


def frequency_score(orders: int) -> int:
    return 1 + sum(orders >= b for b in FREQUENCY_ORDERS)


def monetary_score(value: float) -> int:
    return 1 + sum(value >= b for b in MONETARY_VALUE)


def rfm(c: Mapping, now: datetime) -> dict | None:
    """{"r", "f", "m", "score"} for a profile with orders, None without."""
    orders = int(c.get("order_count") or 0)
    last = parse_iso(c.get("last_order_at"))
    if orders <= 0 or last is None:
        return None
    r = recency_score(days_since(last, now))
    f = frequency_score(orders)
    m = monetary_score(float(c.get("lifetime_value") or 0))
    return {"r": r, "f": f, "m": m, "score": f"{r}{f}{m}"}


def lifecycle_stage(c: Mapping, now: datetime, t: LifecycleThresholds) -> str:
    """potential (no order), churned (no order for churn_after_days), else by order count:
    retained (>= retained_min_orders), repeat (>= repeat_min_orders), first_purchase."""
    orders = int(c.get("order_count") or 0)
    if orders <= 0:
        return POTENTIAL
    last = parse_iso(c.get("last_order_at"))
    if last is not None and days_since(last, now) >= t.churn_after_days:
        return CHURNED
    if orders >= t.retained_min_orders:
        return RETAINED
    if orders >= t.repeat_min_orders:
        return REPEAT
    return FIRST_PURCHASE


_SUMMED = ("order_count", "store_visits", "email_opens", "email_clicks")
_LATEST = ("last_order_at", "last_seen_at", "last_store_visit_at", "last_engaged_at")


def merge_computed(survivor: Mapping, merged: Mapping, now: datetime) -> dict:
    """One person's computed state from two profiles that turned out to be the same person: counts
    and value add up (a store visit on a day both recorded counts once), earliest first order, latest
    times, category scores add up, carts join, the survivor's loyalty facts win, RFM is re-scored."""
    out = {**merged, **survivor}
    for key in _SUMMED:
        total = int(survivor.get(key) or 0) + int(merged.get(key) or 0)
        if total:
            out[key] = total
    value = float(survivor.get("lifetime_value") or 0) + float(merged.get("lifetime_value") or 0)
    if out.get("order_count"):
        out["lifetime_value"] = round(value, 2)
        out["avg_order_value"] = round(value / out["order_count"], 2)
    both_days = set(survivor.get("recent_store_visit_days") or []) & set(merged.get("recent_store_visit_days") or [])
    if both_days:
        out["store_visits"] -= len(both_days)
    for key in _LATEST:
        times = [t for t in (parse_iso(survivor.get(key)), parse_iso(merged.get(key))) if t is not None]
        if times:
            out[key] = iso(max(times))
    firsts = [t for t in (parse_iso(survivor.get("first_order_at")), parse_iso(merged.get("first_order_at")))
              if t is not None]
    if firsts:
        out["first_order_at"] = iso(min(firsts))
    scores = dict(merged.get("category_scores") or {})
    for name, points in (survivor.get("category_scores") or {}).items():
        scores[name] = scores.get(name, 0) + points
    if scores:
        out["category_scores"] = dict(sorted(scores.items(), key=lambda kv: (-kv[1], kv[0]))[:MAX_CATEGORIES])
        out["favourite_category"] = next(iter(out["category_scores"]))
    cart = list(dict.fromkeys([*(merged.get("cart") or []), *(survivor.get("cart") or [])]))
    if cart:
        out["cart"] = cart[-MAX_CART:]
    order_ids = list(dict.fromkeys([*(merged.get("recent_order_ids") or []),
                                    *(survivor.get("recent_order_ids") or [])]))
    if order_ids:
        out["recent_order_ids"] = order_ids[-RECENT_ORDER_IDS:]
    days = sorted(set(merged.get("recent_store_visit_days") or []) | set(survivor.get("recent_store_visit_days") or []))
    if days:
        out["recent_store_visit_days"] = days[-RECENT_VISIT_DAYS:]
    score = rfm(out, now)
    if score is not None:
        out["rfm"] = score
    return out
