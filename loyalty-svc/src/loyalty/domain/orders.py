"""Orders as storefront events describe them (Segment e-commerce spec: decimal `total`, `revenue`,
`currency`, `products[]` with `price` x `quantity`) turned into the contract's Order (minor units)."""

from __future__ import annotations

from collections.abc import Mapping
from decimal import Decimal, InvalidOperation

from mcloud.loyalty.v1 import loyalty_pb2 as pb

# ISO 4217 minor-unit exponents that are not 2
_EXPONENTS = {"JPY": 0, "KRW": 0, "VND": 0, "CLP": 0, "ISK": 0, "UGX": 0, "XOF": 0, "XAF": 0, "PYG": 0,
              "BHD": 3, "KWD": 3, "OMR": 3, "JOD": 3, "TND": 3, "IQD": 3, "LYD": 3}


def exponent(currency: str) -> int:
    return _EXPONENTS.get(currency.upper(), 2)


def to_minor(value: object, currency: str) -> int | None:
    """A decimal amount in major units as an integer of minor units (None if not a number)."""
    if isinstance(value, bool) or value is None:
        return None
    try:
        amount = Decimal(str(value))
    except InvalidOperation:
        return None
    if not amount.is_finite():
        return None
    return int((amount * (10 ** exponent(currency))).to_integral_value())


def order_from_properties(props: Mapping, *, default_currency: str, channel: str = "") -> pb.Order | None:
    """The order an "Order Completed"-style event describes; None without an order_id."""
    order_id = str(props.get("order_id") or props.get("checkout_id") or "")
    if not order_id:
        return None
    currency = str(props.get("currency") or default_currency).upper()
    order = pb.Order(order_id=order_id, currency=currency, channel=channel, store_id=str(props.get("store_id") or ""))
    products = props.get("products")
    if not isinstance(products, list):
        products = [props] if props.get("product_id") and props.get("price") is not None else []
    for p in products:
        if not isinstance(p, Mapping):
            continue
        qty = p.get("quantity", 1)
        qty = qty if isinstance(qty, int) and not isinstance(qty, bool) and qty > 0 else 1
        price = to_minor(p.get("price"), currency)
        if price is None:
            continue
        order.lines.add(item_id=str(p.get("product_id") or p.get("sku") or ""), category=str(p.get("category") or ""),
                        quantity=qty, amount_minor=max(price * qty, 0))
    total = None
    for key in ("total", "revenue", "value"):
        total = to_minor(props.get(key), currency)
        if total is not None:
            break
    order.total_minor = max(total if total is not None else sum(line.amount_minor for line in order.lines), 0)
    return order


def refund_from_properties(props: Mapping, *, default_currency: str) -> tuple[str, int]:
    """(order_id, refunded minor units; 0 = the whole order) of an "Order Refunded" event."""
    currency = str(props.get("currency") or default_currency).upper()
    for key in ("total", "revenue", "value", "amount"):
        amount = to_minor(props.get(key), currency)
        if amount is not None:
            return str(props.get("order_id") or ""), max(amount, 0)
    return str(props.get("order_id") or ""), 0
