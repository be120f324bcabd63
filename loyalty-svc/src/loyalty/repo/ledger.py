"""The ledger: every change of a member's points is an immutable entry; lots are the open state it
implies. All changes of one member go through a `Book`, which holds the member's row lock for the
transaction, so concurrent spends, earns, reversals, expiry and merges of one member are serialised
and can never take the balance below what the ledger allows.

Invariant, per member, at every commit: sum(entries.points) = sum(lots.remaining) - members.debt.
"""

from __future__ import annotations

import uuid
from collections.abc import Iterable
from dataclasses import dataclass, field
from datetime import datetime, timedelta

import asyncpg
import orjson

from loyalty.domain import lots as lot_rules
from loyalty.domain import programs as prog
from loyalty.domain import rules
from loyalty.domain.lots import Lot
from loyalty.repo import members as member_repo
from loyalty.repo.events import PRODUCER, envelope
from mcloud.events.v1 import event_pb2, loyalty_events_pb2
from mcloud.loyalty.v1 import loyalty_pb2 as pb
from mcloud_common import paging
from mcloud_common.bus.outbox import outbox_rows
from mcloud_common.errors import FailedPrecondition, InvalidArgument
from mcloud_common.ids import new_id
from mcloud_common.timestamps import set_timestamp

KINDS = {"earn": pb.LEDGER_ENTRY_KIND_EARN, "spend": pb.LEDGER_ENTRY_KIND_SPEND,
         "reversal": pb.LEDGER_ENTRY_KIND_REVERSAL, "expiry": pb.LEDGER_ENTRY_KIND_EXPIRY,
         "adjustment": pb.LEDGER_ENTRY_KIND_ADJUSTMENT, "merge": pb.LEDGER_ENTRY_KIND_MERGE}
_ORDER_NS = uuid.UUID("6f1d3c52-9a4b-4b1e-8f0c-1b7e5d2a9c10")

_ENTRY_COLUMNS = """id, program_id, profile_id, kind, points, qualifying_points, balance_after, debt_points, reason,
    description, order_id, rule_id, reverses_entry_id, idempotency_key, actor, consumed, details, available_at,
    expires_at, created_at"""


def order_fact_id(program_id: str, order_id: str) -> uuid.UUID:
    """The id of an order's qualifying fact: one per order, so an order counts once however often it
    is replayed."""
    return uuid.uuid5(_ORDER_NS, f"{program_id}:order:{order_id}")


def entry_pb(row: asyncpg.Record | dict) -> pb.LedgerEntry:
    e = pb.LedgerEntry(
        id=str(row["id"]), program_id=str(row["program_id"]), profile_id=str(row["profile_id"]),
        kind=KINDS.get(row["kind"], pb.LEDGER_ENTRY_KIND_UNSPECIFIED), points=row["points"],
        balance_after=row["balance_after"], reason=row["reason"], description=row["description"],
        order_id=row["order_id"], rule_id=row["rule_id"], idempotency_key=row["idempotency_key"],
        actor=row["actor"], qualifying_points=row["qualifying_points"], debt_points=row["debt_points"],
        reverses_entry_id=str(row["reverses_entry_id"]) if row["reverses_entry_id"] else "")
    consumed = row["consumed"]
    if isinstance(consumed, str | bytes):
        consumed = orjson.loads(consumed)
    for c in consumed or ():
        e.consumed.add(lot_id=c["lot_id"], points=c["points"])
    set_timestamp(e.created_at, row["created_at"])
    if row["available_at"] is not None:
        set_timestamp(e.available_at, row["available_at"])
    if row["expires_at"] is not None:
        set_timestamp(e.expires_at, row["expires_at"])
    return e


# What a locked member's book needs, read in one statement AFTER the row lock is held (a statement
# started before the lock was granted could see lots as they were before the previous holder's commit).
_STATE = """
    SELECT
      (SELECT array_agg((id, remaining, available_at, expires_at, order_id)) FROM lots
        WHERE tenant_id = $1 AND program_id = $2 AND profile_id = $3 AND remaining > 0) AS lots,
      (SELECT row(coalesce(sum(points), 0)::bigint, coalesce(sum(spend_minor), 0)::bigint,
                  coalesce(sum(orders), 0)::bigint)
         FROM qualifying WHERE tenant_id = $1 AND program_id = $2 AND profile_id = $3
          AND ($4::timestamptz IS NULL OR occurred_at >= $4) AND occurred_at <= $5) AS progress,
      EXISTS (SELECT 1 FROM ledger_entries WHERE tenant_id = $1 AND program_id = $2
               AND idempotency_key = ANY($6::text[])) AS replay,
      EXISTS (SELECT 1 FROM qualifying WHERE tenant_id = $1 AND entry_id = $7) AS order_seen
"""

# Everything a book changed, in one statement: new lots, consumed lots, entries, qualifying facts, a
# tier change, the outbox, and the member row (debt, counters, tier).
_WRITE = """
    WITH
    nl AS (
        INSERT INTO lots (tenant_id, id, program_id, profile_id, amount, remaining, available_at, expires_at,
                          order_id, created_at)
        SELECT $1, u.id, $2, u.profile_id, u.amount, u.remaining, u.available_at, u.expires_at, u.order_id, $3
        FROM unnest($4::uuid[], $5::uuid[], $6::bigint[], $7::bigint[], $8::timestamptz[], $9::timestamptz[],
                    $10::text[]) AS u(id, profile_id, amount, remaining, available_at, expires_at, order_id)),
    ul AS (
        UPDATE lots l SET remaining = u.remaining
        FROM unnest($11::uuid[], $12::bigint[]) AS u(id, remaining)
        WHERE l.tenant_id = $1 AND l.id = u.id),
    le AS (
        INSERT INTO ledger_entries (tenant_id, id, program_id, profile_id, kind, points, qualifying_points,
                                    balance_after, debt_points, reason, description, order_id, rule_id,
                                    reverses_entry_id, idempotency_key, actor, consumed, details, available_at,
                                    expires_at, created_at)
        SELECT $1, u.id, $2, u.profile_id, u.kind, u.points, u.qualifying, u.balance_after, u.debt, u.reason,
               u.description, u.order_id, u.rule_id, u.reverses, u.key, u.actor, u.consumed::jsonb, u.details::jsonb,
               u.available_at, u.expires_at, $3
        FROM unnest($13::uuid[], $14::uuid[], $15::text[], $16::bigint[], $17::bigint[], $18::bigint[],
                    $19::bigint[], $20::text[], $21::text[], $22::text[], $23::text[], $24::uuid[], $25::text[],
                    $26::text[], $27::text[], $28::text[], $29::timestamptz[], $30::timestamptz[])
             AS u(id, profile_id, kind, points, qualifying, balance_after, debt, reason, description, order_id,
                  rule_id, reverses, key, actor, consumed, details, available_at, expires_at)),
    q AS (
        INSERT INTO qualifying (tenant_id, entry_id, program_id, profile_id, points, spend_minor, orders, order_id,
                                occurred_at)
        SELECT $1, u.id, $2, u.profile_id, u.points, u.spend, u.orders, u.order_id, $3
        FROM unnest($31::uuid[], $32::uuid[], $33::bigint[], $34::bigint[], $35::int[], $36::text[])
             AS u(id, profile_id, points, spend, orders, order_id)
        ON CONFLICT DO NOTHING),
    tc AS (
        INSERT INTO tier_changes (tenant_id, program_id, profile_id, from_tier, to_tier, direction, changed_at)
        SELECT $1, $2, u.profile_id, u.f, u.t, u.d, $3
        FROM unnest($37::uuid[], $38::text[], $39::text[], $40::text[]) AS u(profile_id, f, t, d)),
    ob AS (
        INSERT INTO outbox (stream, event_id, type, tenant_id, payload)
        SELECT * FROM unnest($41::text[], $42::uuid[], $43::text[], $44::text[], $45::bytea[]))
    UPDATE members m SET debt = u.debt, lifetime_earned = m.lifetime_earned + u.earned,
        lifetime_spent = m.lifetime_spent + u.spent, lifetime_expired = m.lifetime_expired + u.expired,
        lifetime_reversed = m.lifetime_reversed + u.reversed,
        tier_code = coalesce(u.tier, m.tier_code),
        tier_since = CASE WHEN u.tier IS NULL THEN m.tier_since ELSE $3 END,
        tier_review_at = CASE WHEN u.tier IS NULL THEN m.tier_review_at ELSE u.review_at END,
        updated_at = $3
    FROM unnest($46::uuid[], $47::bigint[], $48::bigint[], $49::bigint[], $50::bigint[], $51::bigint[], $52::text[],
                $53::timestamptz[]) AS u(profile_id, debt, earned, spent, expired, reversed, tier, review_at)
    WHERE m.tenant_id = $1 AND m.program_id = $2 AND m.profile_id = u.profile_id
    RETURNING m.*
"""

# The same for several members at once (group commit): every member's lots, progress, and which of
# the keys / order facts are already booked.
_STATE_MANY = """
    SELECT
      (SELECT array_agg((profile_id, id, remaining, available_at, expires_at, order_id)) FROM lots
        WHERE tenant_id = $1 AND program_id = $2 AND profile_id = ANY($3::uuid[]) AND remaining > 0) AS lots,
      (SELECT array_agg((profile_id, p, s, o)) FROM (
          SELECT profile_id, sum(points)::bigint AS p, sum(spend_minor)::bigint AS s, sum(orders)::bigint AS o
          FROM qualifying WHERE tenant_id = $1 AND program_id = $2 AND profile_id = ANY($3::uuid[])
           AND ($4::timestamptz IS NULL OR occurred_at >= $4) AND occurred_at <= $5
          GROUP BY profile_id) AS x) AS progress,
      (SELECT array_agg(idempotency_key) FROM ledger_entries WHERE tenant_id = $1 AND program_id = $2
        AND idempotency_key = ANY($6::text[])) AS keys,
      (SELECT array_agg(entry_id) FROM qualifying WHERE tenant_id = $1 AND entry_id = ANY($7::uuid[])) AS facts
"""
_LOCK_MANY = """
    SELECT * FROM members WHERE tenant_id = $1 AND program_id = $2 AND profile_id = ANY($3::uuid[])
    ORDER BY profile_id FOR UPDATE
"""


@dataclass
class Book:
    """One member's points inside one transaction: lock, change in memory, `flush()` once."""

    conn: asyncpg.Connection
    tenant: str
    program: pb.Program
    member: asyncpg.Record
    now: datetime
    lots: list[Lot]
    debt: int
    progress: prog.Progress = field(default_factory=prog.Progress)
    # keys and order facts already booked (shared by the books of one batch, grown as it books)
    seen_keys: set[str] = field(default_factory=set)
    seen_facts: set[uuid.UUID] = field(default_factory=set)
    entries: list[dict] = field(default_factory=list)
    events: list[event_pb2.Event] = field(default_factory=list)
    # lots this book opened: id -> amount (their remaining is on the Lot in `lots`)
    new_lots: dict[uuid.UUID, int] = field(default_factory=dict)
    touched: set[uuid.UUID] = field(default_factory=set)
    qualifying: list[tuple] = field(default_factory=list)
    counters: dict[str, int] = field(default_factory=lambda: dict.fromkeys(
        ("lifetime_earned", "lifetime_spent", "lifetime_expired", "lifetime_reversed"), 0))

    @classmethod
    async def open(cls, conn: asyncpg.Connection, tenant: str, program: pb.Program, profile_id: str,
                   now: datetime, *, active: bool = True, keys: list[str] | tuple[str, ...] = (),
                   order_fact: uuid.UUID | None = None) -> Book:
        """Lock the member (following merges), then read its open lots, qualifying progress, whether
        whether `keys` are already booked (`seen_keys`) and whether `order_fact` exists (`seen_facts`)."""
        member = (await member_repo.lock_active(conn, tenant, program.id, profile_id) if active
                  else await member_repo.get(conn, tenant, program.id, profile_id, lock=True))
        state = await conn.fetchrow(_STATE, tenant, program.id, member["profile_id"],
                                    prog.window_start(program, now), now, list(keys), order_fact)
        lots = [Lot(*r) for r in state["lots"] or ()]
        return cls(conn, tenant, program, member, now, lots, member["debt"], prog.Progress(*state["progress"]),
                   seen_keys=set(keys) if state["replay"] else set(),
                   seen_facts={order_fact} if state["order_seen"] else set())

    @classmethod
    async def open_many(cls, conn: asyncpg.Connection, tenant: str, program: pb.Program, profile_ids: list[str],
                        now: datetime, *, keys: list[str], facts: list[uuid.UUID]) -> dict[str, Book]:
        """Lock several members at once (in profile id order, as every batch does: no deadlocks) and
        read their state in one statement. Only active, unmerged members get a book."""
        rows = await conn.fetch(_LOCK_MANY, tenant, program.id, profile_ids)
        members = {str(r["profile_id"]): r for r in rows if r["status"] == "active" and r["merged_into"] is None}
        state = await conn.fetchrow(_STATE_MANY, tenant, program.id, list(members), prog.window_start(program, now),
                                    now, keys, facts)
        lots: dict[str, list[Lot]] = {pid: [] for pid in members}
        for pid, *lot in state["lots"] or ():
            lots[str(pid)].append(Lot(*lot))
        progress = {str(pid): prog.Progress(p, sp, o) for pid, p, sp, o in state["progress"] or ()}
        seen_keys, seen_facts = set(state["keys"] or ()), set(state["facts"] or ())
        return {pid: cls(conn, tenant, program, row, now, lots[pid], row["debt"], progress.get(pid, prog.Progress()),
                         seen_keys=seen_keys, seen_facts=seen_facts)
                for pid, row in members.items()}

    @property
    def profile_id(self) -> str:
        return str(self.member["profile_id"])

    def available(self) -> int:
        return lot_rules.balance(self.lots, self.debt, self.now).available

    def balance(self) -> lot_rules.Balance:
        return lot_rules.balance(self.lots, self.debt, self.now)

    # --- postings ---------------------------------------------------------------------------

    def _entry(self, kind: str, points: int, key: str, **kw) -> dict:
        entry = {"id": new_id(), "program_id": self.program.id, "profile_id": self.member["profile_id"],
                 "kind": kind, "points": points, "idempotency_key": key, "created_at": self.now,
                 "qualifying_points": 0, "debt_points": 0, "reason": "", "description": "", "order_id": "",
                 "rule_id": "", "reverses_entry_id": None, "actor": "", "consumed": [], "details": {},
                 "available_at": None, "expires_at": None}
        entry.update(kw)
        entry["balance_after"] = self.available()
        self.entries.append(entry)
        return entry

    def _take(self, takes: Iterable[lot_rules.Take]) -> list[dict]:
        takes = list(takes)
        lot_rules.apply(self.lots, takes)
        self.touched.update(lot_id for lot_id, _ in takes)
        return [{"lot_id": str(lot_id), "points": n} for lot_id, n in takes]

    def credit(self, kind: str, points: int, key: str, *, available_at: datetime | None = None,
               order_id: str = "", qualifying: int = 0, into_lot: uuid.UUID | None = None, **kw) -> dict:
        """A credit: a new lot (pending until `available_at`, expiring per the program), or more points
        in `into_lot`, a lot this book opened (the rules of one order share a lot); debt is repaid from
        it first."""
        available = available_at or self.now
        expires = prog.expires_at(self.program, available)
        repaid = min(self.debt, points)
        self.debt -= repaid
        entry_id = new_id()
        if into_lot is not None and into_lot in self.new_lots:
            lot = next(lot for lot in self.lots if lot.id == into_lot)
            lot.remaining += points - repaid
            self.new_lots[into_lot] += points
        else:
            lot = Lot(entry_id, points - repaid, available, expires, order_id)
            self.lots.append(lot)
            self.new_lots[entry_id] = points
        details = kw.pop("details", {}) | ({"debt_repaid": repaid} if repaid else {})
        details = details | ({"lot_id": str(lot.id)} if lot.id != entry_id else {})
        entry = self._entry(kind, points, key, id=entry_id, available_at=available, expires_at=expires,
                            order_id=order_id, qualifying_points=qualifying, details=details, **kw)
        if kind == "earn":
            self.counters["lifetime_earned"] += points
        return entry

    def debit(self, kind: str, points: int, key: str, *, allow_debt: bool = False, **kw) -> dict:
        """A debit of available points, soonest-expiring lots first; FailedPrecondition when the
        available balance is short (unless `allow_debt`: the rest becomes debt)."""
        available = self.available()
        if points > max(available, 0) and not allow_debt:
            raise FailedPrecondition(f"{points} points requested, {max(available, 0)} available",
                                     code="insufficient_points", available=max(available, 0), requested=points)
        takes, short = lot_rules.plan_debit(self.lots, min(points, max(available, 0)), self.now)
        short += points - min(points, max(available, 0))
        consumed = self._take(takes)
        self.debt += short
        if kind == "spend":
            self.counters["lifetime_spent"] += points
        return self._entry(kind, -points, key, consumed=consumed, debt_points=short, **kw)

    def reverse(self, order_id: str, points: int, key: str, **kw) -> dict:
        takes, short = lot_rules.plan_reversal(self.lots, order_id, points, self.now)
        consumed = self._take(takes)
        self.debt += short
        self.counters["lifetime_reversed"] += points
        return self._entry("reversal", -points, key, consumed=consumed, debt_points=short, order_id=order_id, **kw)

    def expire(self, key: str) -> dict | None:
        takes = lot_rules.expired_now(self.lots, self.now)
        if not takes:
            return None
        points = sum(n for _, n in takes)
        consumed = self._take(takes)
        self.counters["lifetime_expired"] += points
        return self._entry("expiry", -points, key, consumed=consumed, reason="expiry")

    def qualify(self, fact_id: uuid.UUID, *, points: int = 0, spend_minor: int = 0, orders: int = 0,
                order_id: str = "") -> None:
        self.qualifying.append((fact_id, points, spend_minor, orders, order_id))

    # --- writing ------------------------------------------------------------------------------

    async def flush(self, shards: int, *, evaluate_tier: bool = True) -> pb.Member:
        """Write everything in one statement; the member after (see flush_all)."""
        return (await flush_all([self], shards))[0]

    def _entry_events(self) -> list[event_pb2.Event]:
        """One points.earned for the credits of a call (an order earning by two rules is one "you
        earned N points" to the person), one points.spent / points.expired per debit, one
        points.reversed per reversal call."""
        out = []
        t, pid, program_id = self.tenant, self.profile_id, self.program.id
        bal = self.balance()
        credits = [e for e in self.entries if e["kind"] in ("earn", "adjustment") and e["points"] > 0]
        if credits:
            first = credits[0]
            rule_ids = {e["rule_id"] for e in credits}
            ev = loyalty_events_pb2.PointsEarned(
                profile_id=pid, program_id=program_id, ledger_entry_id=str(first["id"]),
                points=sum(e["points"] for e in credits), reason=first["reason"], order_id=first["order_id"],
                rule_id=first["rule_id"] if len(rule_ids) == 1 else "",
                balance_available=bal.available, balance_pending=bal.pending)
            set_timestamp(ev.available_at, max(e["available_at"] for e in credits))
            expiries = [e["expires_at"] for e in credits if e["expires_at"] is not None]
            if expiries:
                set_timestamp(ev.expires_at, min(expiries))
            out.append(envelope(t, "points.earned", pid, ev, at=self.now))
        for e in self.entries:
            kind, points = e["kind"], e["points"]
            if kind in ("spend", "adjustment") and points < 0:
                ev = loyalty_events_pb2.PointsSpent(
                    profile_id=pid, program_id=program_id, ledger_entry_id=str(e["id"]), points=-points,
                    reason=e["reason"], order_id=e["order_id"],
                    reward_redemption_id=e["details"].get("reward_redemption_id", ""),
                    balance_available=bal.available)
                out.append(envelope(t, "points.spent", pid, ev, at=self.now))
            elif kind == "expiry":
                ev = loyalty_events_pb2.PointsExpired(profile_id=pid, program_id=program_id,
                                                      ledger_entry_id=str(e["id"]), points=-points,
                                                      balance_available=bal.available)
                out.append(envelope(t, "points.expired", pid, ev, at=self.now))
        reversals = [e for e in self.entries if e["kind"] == "reversal"]
        if reversals:
            ev = loyalty_events_pb2.PointsReversed(
                profile_id=pid, program_id=program_id, order_id=reversals[0]["order_id"],
                points=-sum(e["points"] for e in reversals), ledger_entry_ids=[str(e["id"]) for e in reversals],
                balance_available=bal.available)
            out.append(envelope(t, "points.reversed", pid, ev, at=self.now))
        return out

    def entry_pbs(self) -> list[pb.LedgerEntry]:
        return [entry_pb({**e, "program_id": self.program.id}) for e in self.entries]


async def flush_all(books: list[Book], shards: int) -> list[pb.Member]:
    """Write what `books` (of one tenant, program and transaction) changed, in one statement: lots,
    entries, qualifying facts, tier moves (up at once when the new qualifying totals earn it; down only
    under an IMMEDIATE policy) with their events; the members after, in the order of `books`."""
    if not books:
        return []
    first = books[0]
    t, p, now = first.tenant, first.program, first.now
    lots, changed, entries, quals, moves, events, members = [], [], [], [], [], [], []
    gots = []
    for book in books:
        pid = book.member["profile_id"]
        got = prog.Progress(book.progress.points + sum(q[1] for q in book.qualifying),
                            book.progress.spend_minor + sum(q[2] for q in book.qualifying),
                            book.progress.orders + sum(q[3] for q in book.qualifying))
        gots.append(got)
        move = member_repo.decide_tier(p, book.member, got) if book.qualifying else None
        events += book._entry_events()
        if move is not None:
            events.append(member_repo.tier_event(t, p, book.profile_id, move, got, now))
            moves.append((pid, move))
        events += book.events
        lots += [(lot.id, pid, book.new_lots[lot.id], lot.remaining, lot.available_at, lot.expires_at, lot.order_id)
                 for lot in book.lots if lot.id in book.new_lots]
        changed += [lot for lot in book.lots if lot.id in book.touched and lot.id not in book.new_lots]
        entries += [(pid, e) for e in book.entries]
        quals += [(q[0], pid, *q[1:]) for q in book.qualifying]
        c = book.counters
        members.append((pid, book.debt, c["lifetime_earned"], c["lifetime_spent"], c["lifetime_expired"],
                        c["lifetime_reversed"], move.to_tier.code if move else None,
                        member_repo.next_review(p, now) if move else None))

    def col(rows, i):
        return [r[i] for r in rows]

    def ecol(name):
        return [e[name] for _, e in entries]

    rows = await first.conn.fetch(
        _WRITE, t, p.id, now,
        *(col(lots, i) for i in range(7)),
        [lot.id for lot in changed], [lot.remaining for lot in changed],
        ecol("id"), col(entries, 0), ecol("kind"), ecol("points"), ecol("qualifying_points"), ecol("balance_after"),
        ecol("debt_points"), ecol("reason"), ecol("description"), ecol("order_id"), ecol("rule_id"),
        ecol("reverses_entry_id"), ecol("idempotency_key"), ecol("actor"),
        [orjson.dumps(e["consumed"]).decode() for _, e in entries],
        [orjson.dumps(e["details"]).decode() for _, e in entries], ecol("available_at"), ecol("expires_at"),
        *(col(quals, i) for i in range(6)),
        [pid for pid, _ in moves], [m.from_tier.code for _, m in moves], [m.to_tier.code for _, m in moves],
        [m.direction for _, m in moves],
        *outbox_rows(events, producer=PRODUCER, shards=shards),
        *(col(members, i) for i in range(8)))
    by_id = {r["profile_id"]: r for r in rows}
    out = []
    for book, got in zip(books, gots, strict=True):
        book.member = by_id[book.member["profile_id"]]
        out.append(await member_repo.view(book.conn, t, p, book.member, now, lots=book.lots, got=got, debt=book.debt))
    return out


async def existing(conn: asyncpg.Connection, tenant: str, program_id: str, keys: list[str]) -> list[pb.LedgerEntry]:
    rows = await conn.fetch(
        f"SELECT {_ENTRY_COLUMNS} FROM ledger_entries WHERE tenant_id = $1 AND program_id = $2 "
        "AND idempotency_key = ANY($3::text[]) ORDER BY created_at, id", tenant, program_id, keys)
    return [entry_pb(r) for r in rows]


async def order_entries(conn: asyncpg.Connection, tenant: str, program_id: str, order_id: str,
                        kinds: tuple[str, ...] = ("earn",)) -> list[asyncpg.Record]:
    return await conn.fetch(
        f"SELECT {_ENTRY_COLUMNS} FROM ledger_entries WHERE tenant_id = $1 AND program_id = $2 AND order_id = $3 "
        "AND kind = ANY($4::text[]) ORDER BY created_at, id", tenant, program_id, order_id, list(kinds))


# --- operations -----------------------------------------------------------------------------------

async def _earned_in_window(conn: asyncpg.Connection, book: Book, trigger: str) -> dict[str, int]:
    capped = rules.capped_rules(book.program, trigger)
    if not capped:
        return {}
    out = {}
    for rule in capped:
        since = book.now - timedelta(days=rule.cap_window_days) if rule.cap_window_days else None
        out[rule.id] = await conn.fetchval(
            """
            SELECT coalesce(sum(points), 0)::bigint FROM ledger_entries
            WHERE tenant_id = $1 AND program_id = $2 AND profile_id = $3 AND kind = 'earn' AND rule_id = $4
              AND ($5::timestamptz IS NULL OR created_at >= $5)
            """, book.tenant, book.program.id, book.member["profile_id"], rule.id, since)
    return out


def check_order(program: pb.Program, order: pb.Order) -> None:
    """INVALID_ARGUMENT for an order that cannot earn in `program`."""
    if not order.order_id:
        raise InvalidArgument("order.order_id is required", code="missing_order_id", field="order.order_id")
    if order.total_minor < 0 or any(line.amount_minor < 0 for line in order.lines):
        raise InvalidArgument("order amounts must be >= 0", code="invalid_amount", field="order.total_minor")
    if order.currency and order.currency.upper() != program.currency:
        raise InvalidArgument(f"order currency {order.currency} is not the program's ({program.currency})",
                              code="currency_mismatch", field="order.currency")


async def book_order(book: Book, order: pb.Order) -> bool:
    """Book what `order` earns by the program's order rules (pending for the return window) and its
    qualifying fact; False when the order was booked before (nothing done)."""
    program = book.program
    fact = order_fact_id(program.id, order.order_id)
    if fact in book.seen_facts:
        return False
    tier = prog.tier_by_code(program, book.member["tier_code"])
    earns = rules.evaluate(program, "order", now=book.now, tier=tier, order=order,
                           earned_in_window=await _earned_in_window(book.conn, book, "order"))
    available = prog.available_at(program, book.now, order=True)
    details = {"order_total_minor": order.total_minor, "currency": program.currency}
    lot = None
    for e in earns:
        entry = book.credit("earn", e.points, f"order:{order.order_id}:{e.rule_id}", available_at=available,
                            order_id=order.order_id, rule_id=e.rule_id, reason="order", details=details,
                            qualifying=e.points if e.qualifying else 0, into_lot=lot)
        lot = lot or entry["id"]
    book.qualify(fact, points=sum(e.points for e in earns if e.qualifying), spend_minor=order.total_minor,
                 orders=1, order_id=order.order_id)
    book.seen_facts.add(fact)
    return True


def book_points(book: Book, points: int, key: str, *, reason: str, description: str = "",
                available_at: datetime | None = None, qualifying: bool = False) -> bool:
    """Book explicit points once per `key`; False when `key` was booked before."""
    if key in book.seen_keys:
        return False
    entry = book.credit("earn", points, key, available_at=available_at, reason=reason or "manual",
                        description=description, qualifying=points if qualifying else 0)
    if qualifying:
        book.qualify(entry["id"], points=points)
    book.seen_keys.add(key)
    return True


def book_debit(book: Book, points: int, key: str, *, reason: str, description: str = "", order_id: str = "",
               details: dict | None = None) -> bool:
    """Spend available points once per `key` (FailedPrecondition, nothing done, if too few); False
    when `key` was booked before."""
    if key in book.seen_keys:
        return False
    book.debit("spend", points, key, reason=reason, description=description, order_id=order_id,
               details=details or {})
    book.seen_keys.add(key)
    return True


async def replayed_order(book: Book, order_id: str) -> list[pb.LedgerEntry]:
    return [entry_pb(r) for r in await order_entries(book.conn, book.tenant, book.program.id, order_id)]


async def earn_order(conn: asyncpg.Connection, tenant: str, program: pb.Program, profile_id: str, order: pb.Order,
                     *, now: datetime, shards: int) -> tuple[list[pb.LedgerEntry], pb.Member]:
    """Apply the program's order rules to `order` once. A replay of the same order returns what it
    earned the first time."""
    check_order(program, order)
    book = await Book.open(conn, tenant, program, profile_id, now, order_fact=order_fact_id(program.id, order.order_id))
    if not await book_order(book, order):
        return await replayed_order(book, order.order_id), await member_repo.view(conn, tenant, program, book.member,
                                                                                  now, lots=book.lots)
    member = await book.flush(shards)
    return book.entry_pbs(), member


async def earn_trigger(conn: asyncpg.Connection, tenant: str, program: pb.Program, profile_id: str, trigger: str,
                       key: str, *, now: datetime, shards: int, description: str = ""
                       ) -> tuple[list[pb.LedgerEntry], pb.Member | None]:
    """Apply the program's rules for a non-order trigger (signup, review, birthday, a custom event)
    once per `key`."""
    keys = [f"{key}:{r.id}" for r in program.earn_rules if r.trigger == trigger]
    book = await Book.open(conn, tenant, program, profile_id, now, keys=keys)
    if book.seen_keys:  # this occurrence was booked before
        return await existing(conn, tenant, program.id, keys), None
    tier = prog.tier_by_code(program, book.member["tier_code"])
    earns = rules.evaluate(program, trigger, now=now, tier=tier,
                           earned_in_window=await _earned_in_window(conn, book, trigger))
    keys = [f"{key}:{e.rule_id}" for e in earns]
    if not earns:
        return [], None
    for e, k in zip(earns, keys, strict=True):
        entry = book.credit("earn", e.points, k, rule_id=e.rule_id, reason=trigger, description=description,
                            qualifying=e.points if e.qualifying else 0)
        if e.qualifying:
            book.qualify(entry["id"], points=e.points)
    member = await book.flush(shards)
    return book.entry_pbs(), member


async def earn_points(conn: asyncpg.Connection, tenant: str, program: pb.Program, profile_id: str, points: int, *,
                      key: str, reason: str, description: str = "", available_at: datetime | None = None,
                      qualifying: bool = False, now: datetime, shards: int) -> tuple[list[pb.LedgerEntry], pb.Member]:
    if points <= 0:
        raise InvalidArgument("points must be > 0", code="invalid_points", field="points")
    book = await Book.open(conn, tenant, program, profile_id, now, keys=[key])
    if not book_points(book, points, key, reason=reason, description=description, available_at=available_at,
                       qualifying=qualifying):
        done = await existing(conn, tenant, program.id, [key])
        return done, await member_repo.view(conn, tenant, program, book.member, now, lots=book.lots)
    member = await book.flush(shards)
    return book.entry_pbs(), member


async def debit(conn: asyncpg.Connection, tenant: str, program: pb.Program, profile_id: str, points: int, *,
                reason: str, key: str, now: datetime, shards: int, description: str = "", order_id: str = "",
                details: dict | None = None) -> tuple[pb.LedgerEntry, pb.Member]:
    """Spend available points (FailedPrecondition "insufficient_points" if too few). Once per `key`."""
    if points <= 0:
        raise InvalidArgument("points must be > 0", code="invalid_points", field="points")
    book = await Book.open(conn, tenant, program, profile_id, now, keys=[key])
    if not book_debit(book, points, key, reason=reason, description=description, order_id=order_id,
                      details=details):
        done = await existing(conn, tenant, program.id, [key])
        return done[0], await member_repo.view(conn, tenant, program, book.member, now, lots=book.lots)
    member = await book.flush(shards)
    return book.entry_pbs()[0], member


async def credit(conn: asyncpg.Connection, tenant: str, program: pb.Program, profile_id: str, points: int, *,
                 reason: str, key: str, now: datetime, shards: int, description: str = "",
                 reverses_entry_id: uuid.UUID | None = None, details: dict | None = None
                 ) -> tuple[pb.LedgerEntry, pb.Member]:
    """Give points back (a cancelled reward redemption): an ADJUSTMENT credit by the system, once per `key`."""
    book = await Book.open(conn, tenant, program, profile_id, now, active=False, keys=[key])
    if key in book.seen_keys:
        done = await existing(conn, tenant, program.id, [key])
        return done[0], await member_repo.view(conn, tenant, program, book.member, now, lots=book.lots)
    book.credit("adjustment", points, key, reason=reason, description=description, actor="system",
                reverses_entry_id=reverses_entry_id, details=details or {})
    member = await book.flush(shards, evaluate_tier=False)
    return book.entry_pbs()[0], member


async def adjust(conn: asyncpg.Connection, tenant: str, program: pb.Program, request: pb.AdjustPointsRequest, *,
                 key: str, now: datetime, shards: int) -> tuple[pb.LedgerEntry, pb.Member]:
    if not request.points:
        raise InvalidArgument("points must not be 0", code="invalid_points", field="points")
    if not request.actor.strip() or not request.reason.strip():
        raise InvalidArgument("actor and reason are required for a manual adjustment", code="actor_and_reason_required",
                              field="actor" if not request.actor.strip() else "reason")
    book = await Book.open(conn, tenant, program, request.profile_id, now, active=False, keys=[key])
    if key in book.seen_keys:
        done = await existing(conn, tenant, program.id, [key])
        return done[0], await member_repo.view(conn, tenant, program, book.member, now, lots=book.lots)
    common = {"reason": request.reason, "description": request.description, "actor": request.actor}
    if request.qualifying:
        entry = book._entry("adjustment", 0, key, qualifying_points=request.points, **common)
        book.qualify(entry["id"], points=request.points)
    elif request.points > 0:
        book.credit("adjustment", request.points, key, **common)
    else:
        book.debit("adjustment", -request.points, key, allow_debt=request.allow_negative, **common)
    member = await book.flush(shards)
    return book.entry_pbs()[0], member


async def reverse_order(conn: asyncpg.Connection, tenant: str, program: pb.Program, profile_id: str, order_id: str,
                        refund_minor: int, *, key: str, reason: str, now: datetime, shards: int
                        ) -> tuple[list[pb.LedgerEntry], pb.Member]:
    """Take back what an order earned, in proportion to the cumulative refunded amount (0 = all):
    from the order's own lots first, then other available points, the rest as debt. Qualifying
    points, spend and the order count go down alike. Once per `key`."""
    if not order_id:
        raise InvalidArgument("order_id is required", code="missing_order_id", field="order_id")
    if refund_minor < 0:
        raise InvalidArgument("refund_minor must be >= 0", code="invalid_amount", field="refund_minor")
    book = await Book.open(conn, tenant, program, profile_id, now, active=False, keys=[key])
    if key in book.seen_keys:
        done = await existing(conn, tenant, program.id, [key])
        return done, await member_repo.view(conn, tenant, program, book.member, now, lots=book.lots)
    rows = await order_entries(conn, tenant, program.id, order_id, ("earn", "reversal"))
    earned = [r for r in rows if r["kind"] == "earn"]
    fact = await conn.fetchrow("SELECT spend_minor FROM qualifying WHERE tenant_id = $1 AND entry_id = $2",
                               tenant, order_fact_id(program.id, order_id))
    if not earned and fact is None:
        raise FailedPrecondition(f"order {order_id} earned nothing in this program", code="order_not_found")
    total = fact["spend_minor"] if fact else 0
    reversed_rows = [r for r in rows if r["kind"] == "reversal"]
    refunded_before = sum(int(r["details"].get("refund_minor", 0)) for r in reversed_rows)
    if refunded_before >= total and reversed_rows:
        return [], await member_repo.view(conn, tenant, program, book.member, now, lots=book.lots)
    refunded = total if refund_minor == 0 or total == 0 else min(total, refunded_before + refund_minor)
    share = (refunded / total) if total else 1.0
    points_earned = sum(r["points"] for r in earned)
    qual_earned = sum(r["qualifying_points"] for r in earned)
    points = round(points_earned * share) - (-sum(r["points"] for r in reversed_rows))
    qual = round(qual_earned * share) - (-sum(r["qualifying_points"] for r in reversed_rows))
    full = refunded >= total
    details = {"refund_minor": refunded - refunded_before, "refunded_total_minor": refunded}
    entry = book.reverse(order_id, max(points, 0), key, reason=reason or "return", qualifying_points=-max(qual, 0),
                         details=details)
    book.qualify(entry["id"], points=-max(qual, 0), spend_minor=-(refunded - refunded_before),
                 orders=-1 if full else 0, order_id=order_id)
    member = await book.flush(shards)
    return book.entry_pbs(), member


# --- the statement ------------------------------------------------------------------------------



async def page(conn: asyncpg.Connection, tenant: str, program_id: str, profile_id: str, size: int, token: str
               ) -> tuple[list[pb.LedgerEntry], str]:
    """The member's entries newest first, including those of profiles merged into it."""
    size = paging.page_size(size)
    at, last = paging.after(token)
    rows = await conn.fetch(
        f"""
        SELECT {_ENTRY_COLUMNS} FROM ledger_entries
        WHERE tenant_id = $1 AND program_id = $2
          AND profile_id = ANY(SELECT $3::uuid UNION ALL
                               SELECT profile_id FROM members
                               WHERE tenant_id = $1 AND program_id = $2 AND merged_into = $3)
          AND ($4::timestamptz IS NULL OR (created_at, id) < ($4, $5))
        ORDER BY created_at DESC, id DESC LIMIT $6
        """, tenant, program_id, profile_id, at, last, size + 1)
    rows, token = paging.cut(rows, size, "created_at")
    return [entry_pb(r) for r in rows], token
