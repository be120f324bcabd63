"""Point lots, the open state of a member's ledger, and the pure rules for consuming them.

Every credit opens a lot (amount, remaining, available_at, expires_at). A debit consumes available,
unexpired lots soonest-expiring first (lots that never expire last, then oldest first). A reversal
takes the order's own lots first (pending or not), then other available points; what nothing covers
becomes debt, which later credits repay first. Expiry closes what is left of a lot once its time has
come; a lot's remaining never goes below zero, so a second expiry of the same lot finds nothing.
"""

from __future__ import annotations

import uuid
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from datetime import datetime


@dataclass
class Lot:
    id: uuid.UUID
    remaining: int
    available_at: datetime
    expires_at: datetime | None = None
    order_id: str = ""

    def open(self, now: datetime) -> bool:
        return self.remaining > 0 and not self.expired(now)

    def available(self, now: datetime) -> bool:
        return self.open(now) and self.available_at <= now

    def expired(self, now: datetime) -> bool:
        return self.expires_at is not None and self.expires_at <= now


Take = tuple[uuid.UUID, int]


def _spend_order(lot: Lot) -> tuple:
    return (lot.expires_at is None, lot.expires_at or lot.available_at, lot.available_at, lot.id)


@dataclass(frozen=True)
class Balance:
    available: int
    pending: int
    next_expiring: int = 0
    next_expiry_at: datetime | None = None


def balance(lots: Iterable[Lot], debt: int, now: datetime) -> Balance:
    """Available is net of debt (it can be negative); pending are points still in the return window."""
    available = pending = 0
    expiring: dict[datetime, int] = {}
    for lot in lots:
        if not lot.open(now):
            continue
        if lot.available_at <= now:
            available += lot.remaining
        else:
            pending += lot.remaining
        if lot.expires_at is not None:
            expiring[lot.expires_at] = expiring.get(lot.expires_at, 0) + lot.remaining
    first = min(expiring) if expiring else None
    return Balance(available - debt, pending, expiring.get(first, 0) if first else 0, first)


def plan_debit(lots: Sequence[Lot], points: int, now: datetime) -> tuple[list[Take], int]:
    """Which available lots a debit of `points` consumes, soonest-expiring first, and the shortfall
    (points no lot covers)."""
    takes: list[Take] = []
    left = points
    for lot in sorted((lot for lot in lots if lot.available(now)), key=_spend_order):
        if left <= 0:
            break
        take = min(lot.remaining, left)
        takes.append((lot.id, take))
        left -= take
    return takes, left


def plan_reversal(lots: Sequence[Lot], order_id: str, points: int, now: datetime) -> tuple[list[Take], int]:
    """Take back `points` of an order: from the order's own open lots (pending ones first), then from
    other available points (the claw-back of points spent meanwhile); the shortfall becomes debt."""
    own = sorted((lot for lot in lots if lot.order_id == order_id and lot.open(now)),
                 key=lambda lot: (lot.available_at <= now, lot.available_at, lot.id))
    takes: list[Take] = []
    left = points
    for lot in own:
        if left <= 0:
            break
        take = min(lot.remaining, left)
        takes.append((lot.id, take))
        left -= take
    if left > 0:
        taken = {lot_id for lot_id, _ in takes}
        others = [lot for lot in lots if lot.id not in taken]
        more, left = plan_debit(others, left, now)
        takes += more
    return takes, left


def apply(lots: Sequence[Lot], takes: Iterable[Take]) -> None:
    """Consume `takes` from `lots` in place."""
    by_id = {lot.id: lot for lot in lots}
    for lot_id, take in takes:
        lot = by_id[lot_id]
        if take <= 0 or take > lot.remaining:
            raise ValueError(f"cannot take {take} from lot {lot_id} holding {lot.remaining}")
        lot.remaining -= take


def expired_now(lots: Iterable[Lot], now: datetime) -> list[Take]:
    """What expiry closes as of `now`: the remaining points of every lot whose time has come."""
    return [(lot.id, lot.remaining) for lot in lots if lot.remaining > 0 and lot.expired(now)]
