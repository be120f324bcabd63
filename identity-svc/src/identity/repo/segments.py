"""Segments in PostgreSQL: the dirty-profile queue, the rule tree compiled to one SQL predicate over
`profiles p`, set-based (re-)evaluation with membership events, and the segment CRUD.

Concurrency: every evaluation of a segment holds its advisory lock (`_SEGMENT_LOCK`) and reads the
segment's rules only after taking it, so two evaluations never act on different snapshots of the
same segment (a stale one could undo a fresh one). Lock order: a tenant's segments by id."""

from __future__ import annotations

import base64
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from datetime import datetime

import asyncpg
import orjson

from identity.domain.segments import (
    All,
    AnyOf,
    Behaviour,
    Computed,
    Condition,
    Consent,
    InSegment,
    InvalidRules,
    Lifecycle,
    Not,
    Rule,
    Tag,
    Trait,
    evaluation_order,
    parse_rules_json,
    reads_transitively,
    referenced_segments,
    time_dependent,
)
from identity.repo.events import envelope
from mcloud.events.v1 import event_pb2, identity_events_pb2
from mcloud_common.bus import enqueue
from mcloud_common.errors import AlreadyExists, FailedPrecondition, NotFound
from mcloud_common.ids import parse_uuid
from mcloud_common.logs import get_logger
from mcloud_common.telemetry import inject_traceparent

log = get_logger(__name__)

# ---------------------------------------------------------------------------------------------
# The dirty-profile queue (filled by every profile change, drained by the segment worker)


async def mark_dirty(conn: asyncpg.Connection, tenant_id: str, profile_ids: Iterable[str]) -> None:
    """Queue profiles for segment re-evaluation (called by ingest and every profile-changing call)."""
    ids = sorted(set(profile_ids))
    if ids:
        await conn.execute(
            """
            INSERT INTO dirty_profiles (tenant_id, profile_id) SELECT $1, p FROM unnest($2::uuid[]) AS p
            ON CONFLICT DO NOTHING
            """,
            tenant_id, ids,
        )


async def claim_dirty(conn: asyncpg.Connection, limit: int) -> dict[str, list[str]]:
    """Take up to `limit` queued profiles, by tenant, out of the queue. Call inside the transaction
    that evaluates them: if it fails they are queued again (concurrent workers skip each other's)."""
    rows = await conn.fetch(
        """
        DELETE FROM dirty_profiles d
        WHERE (d.tenant_id, d.profile_id) IN (
            SELECT tenant_id, profile_id FROM dirty_profiles LIMIT $1 FOR UPDATE SKIP LOCKED)
        RETURNING d.tenant_id::text AS tenant_id, d.profile_id::text AS profile_id
        """,
        limit,
    )
    by_tenant: dict[str, list[str]] = {}
    for r in rows:
        by_tenant.setdefault(r["tenant_id"], []).append(r["profile_id"])
    return by_tenant


# ---------------------------------------------------------------------------------------------
# Rule tree -> SQL predicate. Every user value (paths included) is a bind parameter.


@dataclass(frozen=True)
class Predicate:
    """A boolean SQL expression over `profiles p` (never NULL) and its parameters, numbered from
    the `first_param` it was compiled with."""

    sql: str
    params: tuple


def compile_rules(rule: Rule, now: datetime, *, first_param: int) -> Predicate:
    """`rule` as one SQL predicate; windows end at `now` (the service clock, never SQL now())."""
    compiler = _Compiler(now, first_param)
    return Predicate(compiler.rule(rule), tuple(compiler.params))


_COMPARE = {"eq": "=", "neq": "<>", "gt": ">", "gte": ">=", "lt": "<", "lte": "<="}


class _Compiler:
    def __init__(self, now: datetime, first: int) -> None:
        self.now = now
        self.first = first
        self.params: list = []

    def bind(self, value: object, cast: str) -> str:
        self.params.append(value)
        return f"${self.first + len(self.params) - 1}::{cast}"

    def rule(self, rule: Rule) -> str:
        # Every leaf is TRUE or FALSE, never NULL, so NOT means "everyone else".
        match rule:
            case All(rules=children):
                return "(" + " AND ".join(self.rule(c) for c in children) + ")"
            case AnyOf(rules=children):
                return "(" + " OR ".join(self.rule(c) for c in children) + ")"
            case Not(rule=child):
                return f"(NOT {self.rule(child)})"
            case Trait(condition=cond):
                return self.condition(f"(p.traits #> {self.bind(list(cond.path), 'text[]')})", cond)
            case Computed(condition=cond):
                return self.condition(f"(p.computed #> {self.bind(list(cond.path), 'text[]')})", cond)
            case Tag(name=name):
                return f"COALESCE({self.bind(name, 'text')} = ANY(p.tags), false)"
            case Lifecycle(stages=stages):
                return f"(p.lifecycle_stage = ANY({self.bind(list(stages), 'text[]')}))"
            case Consent(channel=channel, purpose=purpose, state=state):
                return ("EXISTS (SELECT 1 FROM consents c WHERE c.tenant_id = p.tenant_id AND c.profile_id = p.id"
                        f" AND c.channel = {self.bind(channel, 'text')} AND c.purpose = {self.bind(purpose, 'text')}"
                        f" AND c.state = {self.bind(state, 'text')})")
            case InSegment(segment_id=segment_id):
                return ("EXISTS (SELECT 1 FROM segment_members sm"
                        f" WHERE sm.segment_id = {self.bind(segment_id, 'uuid')} AND sm.profile_id = p.id)")
            case Behaviour():
                return self.behaviour(rule)
        raise AssertionError(f"unknown rule node {rule!r}")

    def condition(self, x: str, cond: Condition) -> str:
        """`cond` on the jsonb expression `x` (NULL when the path is missing: then FALSE)."""
        op, value = cond.op, cond.value
        if op == "exists":
            return f"COALESCE(jsonb_typeof({x}) <> 'null', false)"
        if op == "not_exists":
            return f"COALESCE(jsonb_typeof({x}) = 'null', true)"
        text = f"({x} #>> '{{}}')"
        if op in ("eq", "neq"):
            sql = f"{x} {_COMPARE[op]} {self.bind(orjson.dumps(value).decode(), 'jsonb')}"
        elif op in ("in", "not_in"):
            sql = f"{x} = ANY({self.bind([orjson.dumps(v).decode() for v in value], 'jsonb[]')})"
            sql = sql if op == "in" else f"NOT ({sql})"
        elif op in ("gt", "gte", "lt", "lte") and isinstance(value, str):
            sql = (f"CASE WHEN jsonb_typeof({x}) = 'string'"
                   f" THEN {text} COLLATE \"C\" {_COMPARE[op]} {self.bind(value, 'text')} END")
        elif op in ("gt", "gte", "lt", "lte"):  # numbers compare with numbers only (no cast errors)
            sql = (f"CASE WHEN jsonb_typeof({x}) = 'number'"
                   f" THEN ({x})::numeric {_COMPARE[op]} {self.bind(value, 'numeric')} END")
        elif op == "contains" and isinstance(value, str):
            item = self.bind(orjson.dumps(value).decode(), "jsonb")
            sql = (f"CASE jsonb_typeof({x}) WHEN 'array' THEN {x} @> jsonb_build_array({item})"
                   f" WHEN 'string' THEN strpos({text}, {self.bind(value, 'text')}) > 0 END")
        elif op == "contains":
            item = self.bind(orjson.dumps(value).decode(), "jsonb")
            sql = f"(jsonb_typeof({x}) = 'array' AND {x} @> jsonb_build_array({item}))"
        elif op == "starts_with":
            sql = f"CASE WHEN jsonb_typeof({x}) = 'string' THEN starts_with({text}, {self.bind(value, 'text')}) END"
        elif op in ("before", "after"):
            sql = f"segment_timestamp({x}) {'<' if op == 'before' else '>'} {self.bind(value, 'timestamptz')}"
        elif op in ("within_days", "within_hours"):
            sql = f"segment_timestamp({x}) >= {self.bind(self.now - value, 'timestamptz')}"
        elif op == "older_than_days":
            sql = f"segment_timestamp({x}) < {self.bind(self.now - value, 'timestamptz')}"
        else:
            raise AssertionError(f"unknown operator {op!r}")
        return f"COALESCE({sql}, false)"

    def behaviour(self, b: Behaviour) -> str:
        where = ["e.tenant_id = p.tenant_id", "e.profile_id = p.id", f"e.name = {self.bind(b.event, 'text')}"]
        if b.window is not None:
            where.append(f"e.timestamp >= {self.bind(self.now - b.window, 'timestamptz')}")
        where.extend(self.condition(f"(e.properties #> {self.bind(list(c.path), 'text[]')})", c) for c in b.where)
        if b.same is not None:
            # Counted per distinct value of the property; some value must satisfy the count.
            key = f"(e.properties #>> {self.bind(list(b.same), 'text[]')})"
            where.append(f"{key} IS NOT NULL")
            if b.same_in_cart:
                where.append(f"(jsonb_typeof(p.computed -> 'cart') = 'array' AND (p.computed -> 'cart') ? {key})")
            return (f"EXISTS (SELECT 1 FROM events e WHERE {' AND '.join(where)}"
                    f" GROUP BY {key} HAVING count(*) {self.count(b)})")
        events = f"SELECT 1 FROM events e WHERE {' AND '.join(where)}"
        if (b.count_op, b.count_value) in (("gte", 1), ("gt", 0)):
            return f"EXISTS ({events})"
        # Counting stops at value + 1 rows: enough to decide any comparison with value.
        return f"((SELECT count(*) FROM ({events} LIMIT {self.bind(b.count_value + 1, 'bigint')}) n) {self.count(b)})"

    def count(self, b: Behaviour) -> str:
        return f"{_COMPARE[b.count_op]} {self.bind(b.count_value, 'bigint')}"


# ---------------------------------------------------------------------------------------------
# Evaluation: one set-based statement per segment, diffed against segment_members in SQL.

# Profiles per transaction of a full evaluation (each holds the segment's lock that long).
CHUNK = 5000
_SEGMENT_LOCK = "SELECT pg_advisory_xact_lock(hashtextextended('identity.segment:' || $1::text, 0))"
_TENANT_LOCK = "SELECT pg_advisory_xact_lock(hashtextextended('identity.segments:' || $1::text, 0))"


@dataclass
class Change:
    segment_id: str
    entered: list[str]
    exited: list[str]


# Which profiles one evaluation covers: a list of ids ($4), or an id range ($4, $5].
_BY_IDS = ("p.id = ANY($4::uuid[])", "m.profile_id = ANY($4::uuid[])")
_BY_RANGE = ("p.id > $4::uuid AND p.id <= $5::uuid", "m.profile_id > $4::uuid AND m.profile_id <= $5::uuid")
_FIRST_ID = "00000000-0000-0000-0000-000000000000"
_LAST_ID = "ffffffff-ffff-ffff-ffff-ffffffffffff"


def _evaluate_sql(predicate: str, scope: tuple[str, str]) -> str:
    # $1 tenant, $2 segment, $3 now, then the scope's parameters, then the predicate's.
    profiles, members = scope
    return f"""
        WITH matched AS (
            SELECT p.id FROM profiles p
            WHERE p.tenant_id = $1 AND {profiles} AND p.merged_into IS NULL AND p.erased_at IS NULL
              AND EXISTS (SELECT 1 FROM segments s WHERE s.id = $2) AND {predicate}
        ),
        exited AS (
            DELETE FROM segment_members m
            WHERE m.segment_id = $2 AND {members} AND NOT EXISTS (SELECT 1 FROM matched x WHERE x.id = m.profile_id)
            RETURNING m.profile_id
        ),
        entered AS (
            INSERT INTO segment_members (tenant_id, segment_id, profile_id, entered_at)
            SELECT $1, $2, x.id, $3 FROM matched x
            WHERE NOT EXISTS (SELECT 1 FROM segment_members m WHERE m.segment_id = $2 AND m.profile_id = x.id)
            ON CONFLICT DO NOTHING
            RETURNING profile_id
        )
        SELECT ARRAY(SELECT profile_id::text FROM entered) AS entered,
               ARRAY(SELECT profile_id::text FROM exited) AS exited
    """


async def _evaluate(conn: asyncpg.Connection, tenant_id: str, segment_id: str, rule: Rule, now: datetime, *,
                    ids: Sequence[str] | None = None, id_range: tuple[str, str] | None = None) -> Change:
    """Re-evaluate one segment for `ids` or for the profiles in `id_range` (exclusive, inclusive) and
    apply the difference to segment_members. The caller holds the segment's lock."""
    scope, scope_args = (_BY_IDS, [list(ids)]) if ids is not None else (_BY_RANGE, list(id_range))
    predicate = compile_rules(rule, now, first_param=4 + len(scope_args))
    row = await conn.fetchrow(_evaluate_sql(predicate.sql, scope), tenant_id, segment_id, now, *scope_args,
                              *predicate.params)
    return Change(segment_id, list(row["entered"]), list(row["exited"]))


def _events(tenant_id: str, changes: Iterable[Change], now: datetime) -> list[event_pb2.Event]:
    trace = inject_traceparent()
    out = []
    for change in changes:
        for entered, ids in ((True, change.entered), (False, change.exited)):
            kind = "segment.entered" if entered else "segment.exited"
            out.extend(envelope(tenant_id, kind, pid, identity_events_pb2.SegmentMembershipChanged(
                profile_id=pid, segment_id=change.segment_id, entered=entered), at=now, trace=trace) for pid in ids)
    return out


def _parse_stored(segment_id: str, rules_text: str) -> Rule | None:
    try:
        return parse_rules_json(rules_text)
    except InvalidRules as exc:  # saved under older rules of validation: left alone, not fatal to the rest
        log.warning("segment rules no longer parse; not evaluated", segment_id=segment_id, error=exc.detail)
        return None


async def _load_locked(conn: asyncpg.Connection, tenant_id: str) -> list[tuple[str, Rule]]:
    """Lock every segment of the tenant (id order), then read them: rules as of after the locks."""
    locked = {r["id"] for r in await conn.fetch(
        """
        SELECT s.id, pg_advisory_xact_lock(hashtextextended('identity.segment:' || s.id::text, 0))
        FROM (SELECT id::text AS id FROM segments WHERE tenant_id = $1 ORDER BY id) s
        """,
        tenant_id,
    )}
    rows = await conn.fetch(
        "SELECT id::text AS id, rules::text AS rules FROM segments WHERE tenant_id = $1", tenant_id)
    rules = {r["id"]: rule for r in rows
             if r["id"] in locked and (rule := _parse_stored(r["id"], r["rules"])) is not None}
    return [(sid, rules[sid]) for sid in evaluation_order(rules)]


async def evaluate_profiles(conn: asyncpg.Connection, tenant_id: str, profile_ids: Sequence[str], now: datetime,
                            *, shards: int) -> int:
    """Re-evaluate every segment of the tenant for `profile_ids` (and for the members among the
    profiles merged into them, who leave), inside the caller's transaction; publish entered/exited.
    Returns profiles x segments evaluated."""
    merged_away = await conn.fetch(
        """
        SELECT DISTINCT g.from_profile::text AS id FROM merges g
        JOIN segment_members m ON m.tenant_id = g.tenant_id AND m.profile_id = g.from_profile
        WHERE g.tenant_id = $1 AND g.into_profile = ANY($2::uuid[])
        """,
        tenant_id, list(profile_ids),
    )
    ids = sorted(set(profile_ids) | {r["id"] for r in merged_away})
    segments = await _load_locked(conn, tenant_id)
    changes = [c for sid, rule in segments
               if (c := await _evaluate(conn, tenant_id, sid, rule, now, ids=ids)).entered or c.exited]
    if changes:
        await conn.execute(
            """
            UPDATE segments s SET member_count = s.member_count + d.delta
            FROM unnest($1::uuid[], $2::bigint[]) AS d(id, delta) WHERE s.id = d.id
            """,
            [c.segment_id for c in changes], [len(c.entered) - len(c.exited) for c in changes],
        )
        await enqueue(conn, _events(tenant_id, changes, now), producer="identity", shards=shards)
    return len(ids) * len(segments)


async def evaluate_segment(conn: asyncpg.Connection, tenant_id: str, segment_id: str, now: datetime, *,
                           shards: int, only_if_stale: bool = False, readers_stale: bool = True,
                           chunk: int = CHUNK) -> bool:
    """Fully re-evaluate one segment over every profile of the tenant (a backfill after its rules
    changed, or the time-based pass), `chunk` profiles per transaction so the segment's lock is
    never held long; the member count is recounted at the end. False when skipped: gone, or (with
    `only_if_stale`) its current rules fully evaluated already, or its rules changed meanwhile (then
    it is stale and evaluated again). `readers_stale`: segments reading this one become stale when
    its membership changed; passes that evaluate every reader afterwards anyway turn that off."""
    after, version, changed = _FIRST_ID, None, False
    while True:
        async with conn.transaction():
            await conn.execute(_SEGMENT_LOCK, segment_id)
            row = await conn.fetchrow(
                """
                SELECT rules::text AS rules, rules_version, evaluated_version,
                       (SELECT p.id::text FROM profiles p WHERE p.tenant_id = $1 AND p.id > $3::uuid
                        ORDER BY p.id OFFSET $4 LIMIT 1) AS upto
                FROM segments WHERE tenant_id = $1 AND id = $2
                """,
                tenant_id, segment_id, after, chunk - 1,
            )
            if row is None or (version is None and only_if_stale and row["evaluated_version"] >= row["rules_version"]):
                return False
            if version is not None and row["rules_version"] != version:
                return False
            version = row["rules_version"]
            rule = _parse_stored(segment_id, row["rules"])
            if rule is None:
                return False
            upto = row["upto"] or _LAST_ID
            change = await _evaluate(conn, tenant_id, segment_id, rule, now, id_range=(after, upto))
            if change.entered or change.exited:
                changed = True
                await enqueue(conn, _events(tenant_id, [change], now), producer="identity", shards=shards)
            if upto != _LAST_ID:
                await conn.execute("UPDATE segments SET member_count = member_count + $2 WHERE id = $1",
                                   segment_id, len(change.entered) - len(change.exited))
                after = upto
                continue
            await conn.execute(
                """
                UPDATE segments SET member_count = (SELECT count(*) FROM segment_members WHERE segment_id = $1),
                                    evaluated_at = $2, evaluated_version = GREATEST(evaluated_version, $3)
                WHERE id = $1
                """,
                segment_id, now, version,
            )
            if changed and readers_stale:
                # Not mark_dirty: a worker holding those profiles' queue rows may be waiting for this
                # segment's lock (a deadlock); a stale reader is backfilled by the worker instead.
                await conn.execute(
                    """
                    UPDATE segments SET evaluated_version = LEAST(evaluated_version, rules_version - 1)
                    WHERE tenant_id = $1 AND id <> $2
                      AND jsonb_path_exists(rules, 'lax $.**.segment ? (@ == $id)', jsonb_build_object('id', $3::text))
                    """,
                    tenant_id, segment_id, segment_id,
                )
            return True


async def tenant_segments(conn: asyncpg.Connection, tenant_id: str | None = None) -> dict[str, dict[str, Rule]]:
    """Segments (parsed rules) by tenant: every tenant's, or only `tenant_id`'s."""
    rows = await conn.fetch(
        "SELECT tenant_id::text AS tenant_id, id::text AS id, rules::text AS rules FROM segments"
        " WHERE $1::uuid IS NULL OR tenant_id = $1",
        tenant_id,
    )
    out: dict[str, dict[str, Rule]] = {}
    for r in rows:
        rule = _parse_stored(r["id"], r["rules"])
        if rule is not None:
            out.setdefault(r["tenant_id"], {})[r["id"]] = rule
    return out


async def stale_segments(conn: asyncpg.Connection) -> list[tuple[str, str]]:
    """(tenant, segment) of the segments whose current rules were never fully evaluated."""
    rows = await conn.fetch(
        "SELECT tenant_id::text AS tenant_id, id::text AS id FROM segments"
        " WHERE evaluated_version < rules_version ORDER BY updated_at"
    )
    return [(r["tenant_id"], r["id"]) for r in rows]


async def count_profiles(conn: asyncpg.Connection, tenant_id: str) -> int:
    return await conn.fetchval(
        "SELECT count(*) FROM profiles WHERE tenant_id = $1 AND merged_into IS NULL AND erased_at IS NULL",
        tenant_id,
    )


# ---------------------------------------------------------------------------------------------
# Segment CRUD, estimate, members


@dataclass
class SegmentRecord:
    id: str
    name: str
    description: str
    rules_json: str
    member_count: int
    created_at: datetime
    updated_at: datetime


_COLUMNS = "id::text AS id, name, description, rules::text AS rules_json, member_count, created_at, updated_at"


def _record(row: asyncpg.Record) -> SegmentRecord:
    return SegmentRecord(**{k: row[k] for k in SegmentRecord.__dataclass_fields__})


async def _check_references(conn: asyncpg.Connection, tenant_id: str, segment_id: str | None, rule: Rule
                            ) -> bool:
    """Segments read by `rule` exist in the tenant and do not read `segment_id` back (no cycles).
    Returns whether any of them is time dependent."""
    refs = referenced_segments(rule)
    if not refs:
        return False
    rows = await conn.fetch(
        "SELECT id::text AS id, rules::text AS rules, time_dependent FROM segments WHERE tenant_id = $1", tenant_id)
    others = {r["id"]: rule for r in rows if r["id"] != segment_id
              and (rule := _parse_stored(r["id"], r["rules"])) is not None}
    timed = {r["id"] for r in rows if r["time_dependent"]}
    for ref in refs:
        if ref.segment_id == segment_id:
            raise InvalidRules(ref.path, "a segment cannot contain itself")
        if ref.segment_id not in others:
            raise InvalidRules(ref.path, f"no segment {ref.segment_id}")
        if segment_id is not None and reads_transitively(others, ref.segment_id, segment_id):
            raise InvalidRules(ref.path, f"segment {ref.segment_id} reads this segment: that would be a cycle")
    return any(ref.segment_id in timed for ref in refs)


async def save_segment(conn: asyncpg.Connection, tenant_id: str, segment_id: str, *, name: str, description: str,
                       rule: Rule, rules_json: str, now: datetime) -> SegmentRecord:
    """Create or update (same id) a segment. Changed rules make it stale until fully evaluated
    (evaluate_segment); an unchanged save changes nothing."""
    async with conn.transaction():
        await conn.execute(_TENANT_LOCK, tenant_id)  # reference checks see every concurrent save
        timed = await _check_references(conn, tenant_id, segment_id, rule) or time_dependent(rule)
        row = await conn.fetchrow(
            f"""
            INSERT INTO segments AS s (id, tenant_id, name, description, rules, time_dependent, created_at, updated_at)
            VALUES ($1, $2, $3, $4, $5::jsonb, $6, $7, $7)
            ON CONFLICT (id) DO UPDATE SET
                name = excluded.name, description = excluded.description, rules = excluded.rules,
                time_dependent = excluded.time_dependent,
                rules_version = s.rules_version + (s.rules IS DISTINCT FROM excluded.rules)::int,
                updated_at = CASE WHEN (s.name, s.description, s.rules)
                                       IS DISTINCT FROM (excluded.name, excluded.description, excluded.rules)
                                  THEN excluded.updated_at ELSE s.updated_at END
            WHERE s.tenant_id = excluded.tenant_id
            RETURNING {_COLUMNS}
            """,
            segment_id, tenant_id, name, description, rules_json, timed, now,
        )
    if row is None:
        raise AlreadyExists(f"segment id {segment_id} is already in use", code="segment_id_taken")
    return _record(row)


async def get_segment(conn: asyncpg.Connection, tenant_id: str, segment_id: str) -> SegmentRecord:
    row = await conn.fetchrow(f"SELECT {_COLUMNS} FROM segments WHERE tenant_id = $1 AND id = $2", tenant_id,
                              segment_id)
    if row is None:
        raise NotFound(f"no segment {segment_id}", code="segment_not_found")
    return _record(row)


async def list_segments(conn: asyncpg.Connection, tenant_id: str) -> list[SegmentRecord]:
    rows = await conn.fetch(f"SELECT {_COLUMNS} FROM segments WHERE tenant_id = $1 ORDER BY name, id", tenant_id)
    return [_record(r) for r in rows]


async def delete_segment(conn: asyncpg.Connection, tenant_id: str, segment_id: str) -> bool:
    """Delete a segment and its memberships (no exited events). False when there was none;
    FailedPrecondition while another segment reads it."""
    async with conn.transaction():
        await conn.execute(_TENANT_LOCK, tenant_id)
        await conn.execute(_SEGMENT_LOCK, segment_id)  # an evaluation in flight finishes first
        rows = await conn.fetch("SELECT id::text AS id, name, rules::text AS rules FROM segments"
                                " WHERE tenant_id = $1 AND id <> $2", tenant_id, segment_id)
        readers = sorted(r["name"] for r in rows if (rule := _parse_stored(r["id"], r["rules"])) is not None
                         and any(n.segment_id == segment_id for n in referenced_segments(rule)))
        if readers:
            raise FailedPrecondition(f"segment is read by other segments: {', '.join(readers)}",
                                     code="segment_in_use")
        deleted = await conn.fetchval("DELETE FROM segments WHERE tenant_id = $1 AND id = $2 RETURNING true",
                                      tenant_id, segment_id)
    return bool(deleted)


async def estimate(conn: asyncpg.Connection, tenant_id: str, rule: Rule, now: datetime) -> tuple[int, int]:
    """(profiles `rule` matches now, profiles considered): merged and erased ones are not counted."""
    await _check_references(conn, tenant_id, None, rule)
    predicate = compile_rules(rule, now, first_param=2)
    row = await conn.fetchrow(
        f"""
        SELECT count(*) FILTER (WHERE {predicate.sql}) AS matched, count(*) AS total
        FROM profiles p WHERE p.tenant_id = $1 AND p.merged_into IS NULL AND p.erased_at IS NULL
        """,
        tenant_id, *predicate.params,
    )
    return row["matched"], row["total"]


def page_token(segment_id: str, last_profile_id: str) -> str:
    return base64.urlsafe_b64encode(f"{segment_id}|{last_profile_id}".encode()).decode().rstrip("=")


def read_page_token(segment_id: str, token: str) -> str | None:
    """The last profile id of the previous page, or None when `token` is not one we issued for this segment."""
    try:
        text = base64.urlsafe_b64decode(token + "=" * (-len(token) % 4)).decode()
    except (ValueError, UnicodeDecodeError):
        return None
    seg, _, last = text.partition("|")
    return last if seg == segment_id and _is_uuid(last) else None


def _is_uuid(value: str) -> bool:
    parsed = parse_uuid(value)
    return parsed is not None and str(parsed) == value


async def list_members(conn: asyncpg.Connection, tenant_id: str, segment_id: str, *, after: str | None,
                       limit: int) -> list[str]:
    """Member profile ids in id order, after `after` (keyset pagination)."""
    rows = await conn.fetch(
        """
        SELECT profile_id::text AS id FROM segment_members
        WHERE segment_id = $1 AND tenant_id = $2 AND ($3::uuid IS NULL OR profile_id > $3::uuid)
        ORDER BY profile_id LIMIT $4
        """,
        segment_id, tenant_id, after, limit,
    )
    return [r["id"] for r in rows]


async def memberships(conn: asyncpg.Connection, tenant_id: str, profile_id: str,
                      segment_ids: Sequence[str] | None) -> list[str]:
    """The segments (of `segment_ids`, in that order, or all in id order) the profile is a member of;
    NotFound naming an id that is not a segment of the tenant."""
    if segment_ids is None:
        rows = await conn.fetch(
            "SELECT segment_id::text AS id FROM segment_members WHERE tenant_id = $1 AND profile_id = $2"
            " ORDER BY segment_id", tenant_id, profile_id)
        return [r["id"] for r in rows]
    rows = await conn.fetch(
        """
        SELECT s.id::text AS id,
               EXISTS (SELECT 1 FROM segment_members m WHERE m.segment_id = s.id AND m.profile_id = $3) AS member
        FROM segments s WHERE s.tenant_id = $1 AND s.id = ANY($2::uuid[])
        """,
        tenant_id, list(segment_ids), profile_id,
    )
    found = {r["id"]: r["member"] for r in rows}
    for sid in segment_ids:
        if sid not in found:
            raise NotFound(f"no segment {sid}", code="segment_not_found")
    return [sid for sid in dict.fromkeys(segment_ids) if found[sid]]
