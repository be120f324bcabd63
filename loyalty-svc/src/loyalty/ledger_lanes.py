"""Group commit for the hot point-changing calls (earn for an order, earn explicit points, spend).

Calls for one (tenant, program) queue in a lane; while a batch is being written the next calls
gather, and the lane takes up to MAX_BATCH of them into ONE transaction: the members are locked
together (in profile id order, so batches never deadlock), their state is read in one statement,
every call is applied in arrival order in memory (a call refused for too few points changes nothing
and gets its error; calls for the same member see each other), and everything is written in one
statement. The guarantees are those of one call per transaction: a member's changes are serialised
by its row lock, an idempotency key or an order id is booked once (also twice in one batch).

A call whose member cannot be taken in a batch (not a member, merged away, suspended) runs on its
own afterwards and gets the usual answer; if a batch fails as a whole, each of its calls is retried
on its own, so one bad call never fails the others.
"""

from __future__ import annotations

import asyncio
from collections import defaultdict
from dataclasses import dataclass, field
from datetime import datetime

import asyncpg

from loyalty.repo import ledger
from loyalty.repo import members as member_repo
from mcloud.loyalty.v1 import loyalty_pb2 as pb
from mcloud_common.clock import Clock
from mcloud_common.errors import DomainError
from mcloud_common.logs import get_logger

log = get_logger(__name__)

MAX_BATCH = 128

Result = tuple[list[pb.LedgerEntry], pb.Member]


@dataclass(eq=False)
class Op:
    """One call: kind "order" (order), "points" (points, key...) or "spend" (points, key...)."""

    kind: str
    profile_id: str
    order: pb.Order | None = None
    points: int = 0
    key: str = ""
    reason: str = ""
    description: str = ""
    order_id: str = ""
    available_at: datetime | None = None
    qualifying: bool = False
    future: asyncio.Future = field(default_factory=lambda: asyncio.get_running_loop().create_future())

    def fact(self, program: pb.Program):
        return ledger.order_fact_id(program.id, self.order.order_id) if self.kind == "order" else None

    async def book(self, book: ledger.Book) -> bool:
        if self.kind == "order":
            return await ledger.book_order(book, self.order)
        if self.kind == "points":
            return ledger.book_points(book, self.points, self.key, reason=self.reason, description=self.description,
                                      available_at=self.available_at, qualifying=self.qualifying)
        return ledger.book_debit(book, self.points, self.key, reason=self.reason, description=self.description,
                                 order_id=self.order_id)

    async def alone(self, conn: asyncpg.Connection, tenant: str, program: pb.Program, now: datetime,
                    shards: int) -> Result:
        """The same call in a transaction of its own (the one-call path)."""
        async with conn.transaction():
            if self.kind == "order":
                return await ledger.earn_order(conn, tenant, program, self.profile_id, self.order, now=now,
                                               shards=shards)
            if self.kind == "points":
                return await ledger.earn_points(conn, tenant, program, self.profile_id, self.points, key=self.key,
                                                reason=self.reason, description=self.description,
                                                available_at=self.available_at, qualifying=self.qualifying,
                                                now=now, shards=shards)
            entry, member = await ledger.debit(conn, tenant, program, self.profile_id, self.points,
                                               reason=self.reason, key=self.key, now=now, shards=shards,
                                               description=self.description, order_id=self.order_id)
            return [entry], member


class LedgerLanes:
    def __init__(self, pool: asyncpg.Pool, clock: Clock, shards: int, *, max_batch: int = MAX_BATCH) -> None:
        self._pool = pool
        self._clock = clock
        self._shards = shards
        self._max = max_batch
        self._queues: dict[tuple[str, str], list[tuple[pb.Program, Op]]] = defaultdict(list)
        self._running: dict[tuple[str, str], asyncio.Task] = {}
        self.batches = 0
        self.calls = 0

    async def submit(self, tenant: str, program: pb.Program, op: Op) -> Result:
        lane = (tenant, program.id)
        self._queues[lane].append((program, op))
        if lane not in self._running:
            self._running[lane] = asyncio.create_task(self._drain(lane), name=f"ledger-lane-{program.id}")
        return await asyncio.shield(op.future)

    async def _drain(self, lane: tuple[str, str]) -> None:
        try:
            queue = self._queues[lane]
            while queue:
                batch = queue[:self._max]
                del queue[:self._max]
                await self._run(lane[0], batch)
        finally:
            self._running.pop(lane, None)
            if self._queues.get(lane):  # arrived after the loop ended
                self._running[lane] = asyncio.create_task(self._drain(lane))
            elif lane in self._queues:
                del self._queues[lane]

    async def _run(self, tenant: str, batch: list[tuple[pb.Program, Op]]) -> None:
        program = batch[-1][0]  # the newest definition seen by the callers
        ops = [op for _, op in batch]
        now = self._clock.now()
        self.batches += 1
        self.calls += len(ops)
        try:
            async with self._pool.acquire() as conn:
                async with conn.transaction():
                    results, deferred = await self._apply(conn, tenant, program, ops, now)
                for op in deferred:
                    await self._settle(op, op.alone(conn, tenant, program, now, self._shards))
        except Exception as exc:
            if len(ops) == 1:
                if not ops[0].future.done():
                    ops[0].future.set_exception(exc)
                return
            log.warning("ledger batch failed, retrying its calls one by one", calls=len(ops), error=repr(exc))
            async with self._pool.acquire() as conn:
                for op in ops:
                    if not op.future.done():
                        await self._settle(op, op.alone(conn, tenant, program, now, self._shards))
            return
        for op, result in results.items():
            if op.future.done():
                continue
            if isinstance(result, BaseException):
                op.future.set_exception(result)
            else:
                op.future.set_result(result)

    @staticmethod
    async def _settle(op: Op, call) -> None:
        try:
            result = await call
        except Exception as exc:
            if not op.future.done():
                op.future.set_exception(exc)
        else:
            if not op.future.done():
                op.future.set_result(result)

    async def _apply(self, conn: asyncpg.Connection, tenant: str, program: pb.Program, ops: list[Op],
                     now: datetime) -> tuple[dict[Op, Result | BaseException], list[Op]]:
        profiles = sorted({op.profile_id for op in ops})
        keys = [op.key for op in ops if op.key]
        facts = [f for op in ops if (f := op.fact(program)) is not None]
        books = await ledger.Book.open_many(conn, tenant, program, profiles, now, keys=keys, facts=facts)
        deferred: list[Op] = []
        booked: dict[Op, tuple[ledger.Book, int, int]] = {}
        replays: dict[Op, ledger.Book] = {}
        errors: dict[Op, BaseException] = {}
        for op in ops:
            book = books.get(op.profile_id)
            if book is None:
                deferred.append(op)
                continue
            start = len(book.entries)
            try:
                done = await op.book(book)
            except DomainError as exc:
                errors[op] = exc
                continue
            if done:
                booked[op] = (book, start, len(book.entries))
            else:
                replays[op] = book
        touched = [b for b in books.values() if b.entries or b.qualifying]
        views = dict(zip((id(b) for b in touched), await ledger.flush_all(touched, self._shards), strict=True))
        results: dict[Op, Result | BaseException] = dict(errors)
        for op, (book, start, end) in booked.items():
            entries = [ledger.entry_pb({**e, "program_id": program.id}) for e in book.entries[start:end]]
            results[op] = (entries, views[id(book)])
        for op, book in replays.items():
            if op.kind == "order":
                entries = await ledger.replayed_order(book, op.order.order_id)
            else:
                entries = await ledger.existing(conn, tenant, program.id, [op.key])
            view = views.get(id(book)) or await member_repo.view(conn, tenant, program, book.member, now,
                                                                  lots=book.lots)
            results[op] = (entries, view)
        return results, deferred
