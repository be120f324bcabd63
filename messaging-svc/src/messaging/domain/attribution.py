"""Revenue attribution rules (no I/O): what an order is worth, which touch takes the credit, and the
channel report's ratios.

An order (`Order Completed`, Segment e-commerce spec) is credited to ONE message, last touch: the
person's latest click within the tenant's window before the order, else (when opens count) their
latest open. Its value is `total`, else `revenue`, else `value`, else the sum of products' price x
quantity, in major units of `currency` (else the tenant's default currency), stored in minor units."""

from __future__ import annotations

import re
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import datetime, timedelta
from decimal import Decimal, InvalidOperation
from typing import Any

from mcloud_common.errors import InvalidArgument

ORDER_EVENT = "Order Completed"
DEFAULT_WINDOW_HOURS = 168
MAX_WINDOW_HOURS = 2160  # 90 days
DEFAULT_CURRENCY = "USD"
_CURRENCY = re.compile(r"^[A-Z]{3}$")
# ISO 4217 minor-unit exponents that are not 2
_EXPONENTS: dict[str, int] = {
    **dict.fromkeys(("BIF", "CLP", "DJF", "GNF", "ISK", "JPY", "KMF", "KRW", "PYG", "RWF", "UGX", "UYI", "VND", "VUV",
                     "XAF", "XOF", "XPF"), 0),
    **dict.fromkeys(("BHD", "IQD", "JOD", "KWD", "LYD", "OMR", "TND"), 3),
    **dict.fromkeys(("CLF", "UYW"), 4),
}
_MAX_MINOR = 2**62


@dataclass(frozen=True, slots=True)
class AttributionRules:
    window_hours: int = DEFAULT_WINDOW_HOURS
    count_opens: bool = True
    default_currency: str = DEFAULT_CURRENCY


@dataclass(frozen=True, slots=True)
class OrderValue:
    order_id: str
    revenue_minor: int
    currency: str


def check_currency(value: str, field: str) -> str:
    """`value` upper-cased if it is an ISO 4217 code, else INVALID_ARGUMENT invalid_currency."""
    code = value.strip().upper()
    if not _CURRENCY.fullmatch(code):
        raise InvalidArgument(f"{field} must be an ISO 4217 code such as EUR", code="invalid_currency", field=field)
    return code


def check_rules(window_hours: int, count_opens: bool, default_currency: str) -> AttributionRules:
    if not 1 <= window_hours <= MAX_WINDOW_HOURS:
        raise InvalidArgument(f"window_hours must be 1..{MAX_WINDOW_HOURS}", code="invalid_attribution_window",
                              field="settings.window_hours")
    currency = check_currency(default_currency or DEFAULT_CURRENCY, "settings.default_currency")
    return AttributionRules(window_hours, count_opens, currency)


def _decimal(value: Any) -> Decimal | None:
    if isinstance(value, bool) or value is None:
        return None
    try:
        d = Decimal(str(value))
    except (InvalidOperation, ValueError):
        return None
    return d if d.is_finite() else None


def to_minor(amount: Decimal, currency: str) -> int:
    """Major units to minor units of `currency`, rounded half-up, clamped to [0, 2**62]."""
    minor = (amount * (Decimal(10) ** _EXPONENTS.get(currency, 2))).to_integral_value(rounding="ROUND_HALF_UP")
    return int(min(max(minor, Decimal(0)), Decimal(_MAX_MINOR)))


def order_value(props: Mapping[str, Any], event_id: str, default_currency: str) -> OrderValue:
    """The order an `Order Completed` event describes (its id: `order_id`, else the event's id)."""
    order_id = str(props.get("order_id") or "").strip()[:200] or f"event:{event_id}"
    raw_currency = props.get("currency")
    currency = raw_currency.strip().upper() if isinstance(raw_currency, str) else ""
    if not _CURRENCY.fullmatch(currency):
        currency = default_currency
    total = None
    for key in ("total", "revenue", "value"):
        total = _decimal(props.get(key))
        if total is not None:
            break
    if total is None:
        total = Decimal(0)
        products = props.get("products")
        for line in products if isinstance(products, list) else []:
            if isinstance(line, Mapping):
                price = _decimal(line.get("price")) or Decimal(0)
                quantity = _decimal(line.get("quantity"))
                total += price * (quantity if quantity is not None else 1)
    return OrderValue(order_id, to_minor(total, currency), currency)


def roi(revenue_minor: int, cost_minor: int) -> float | None:
    """(revenue - cost) / cost; None when nothing was spent."""
    return (revenue_minor - cost_minor) / cost_minor if cost_minor > 0 else None


def rate(part: int, whole: int) -> float:
    return part / whole if whole else 0.0


DEFAULT_REPORT_DAYS = 30
MAX_REPORT_DAYS = 731


def report_window(since: datetime | None, until: datetime | None, now: datetime) -> tuple[datetime, datetime]:
    """[since, until) with defaults (until = now, since = until - 30 days); INVALID_ARGUMENT
    invalid_window when since is not before until, window_too_long past two years."""
    until = until or now
    since = since or until - timedelta(days=DEFAULT_REPORT_DAYS)
    if since >= until:
        raise InvalidArgument("since must be before until", code="invalid_window", field="since")
    if until - since > timedelta(days=MAX_REPORT_DAYS):
        raise InvalidArgument("the window is longer than two years", code="window_too_long", field="since")
    return since, until
