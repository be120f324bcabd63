"""Segment rules: the JSON rule tree a segment is defined by, parsed into typed nodes and validated
with errors that name the bad node (`all[1].count.op: unknown operator 'gtx'`). The grammar is
documented in identity-svc/README.md ("Segments"); repo.segments compiles a parsed tree to SQL."""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from decimal import Decimal
from typing import Any

import orjson

from mcloud_common.errors import InvalidArgument
from mcloud_common.ids import parse_uuid

# Keys of profiles.computed (kept by the profile features); a typo in one is an error, not an empty segment.
COMPUTED_KEYS = frozenset({
    "order_count", "lifetime_value", "avg_order_value", "first_order_at", "last_order_at", "favourite_category",
    "category_scores", "store_visits", "last_store_visit_at", "rfm", "cart", "last_seen_at", "loyalty_tier",
    "loyalty_member", "email_opens", "email_clicks", "last_engaged_at", "intent_item", "intent_category",
    "intent_locked_at",
})
LIFECYCLE_STAGES = ("potential", "first_purchase", "repeat", "retained", "churned")
CONSENT_STATES = ("granted", "denied", "withdrawn")

VALUE_OPS = frozenset({"eq", "neq", "gt", "gte", "lt", "lte", "in", "not_in", "contains", "starts_with",
                       "exists", "not_exists"})
DATE_OPS = frozenset({"before", "after", "within_days", "within_hours", "older_than_days"})
WINDOW_OPS = frozenset({"within_days", "within_hours", "older_than_days"})  # relative to now: time dependent
COUNT_OPS = frozenset({"eq", "neq", "gt", "gte", "lt", "lte"})
KINDS = ("all", "any", "not", "trait", "computed", "tag", "lifecycle", "consent", "segment", "event")

# Size limits: a segment is re-evaluated on every event of its members, so its cost must stay bounded.
MAX_RULES_BYTES = 64 * 1024
MAX_DEPTH = 10
MAX_NODES = 200
MAX_BEHAVIOURS = 20
MAX_LIST = 1000
MAX_STRING = 1000
MAX_PATH = 10
MAX_KEY = 200
MAX_WINDOW_DAYS = 3650
MAX_COUNT = 1_000_000


class InvalidRules(InvalidArgument):
    """A rule tree that does not parse; `path` names the node (empty for the whole tree)."""

    default_code = "invalid_rules"

    def __init__(self, path: str, problem: str) -> None:
        super().__init__(f"{path or 'rules'}: {problem}", code="invalid_rules", path=path or "rules")


@dataclass(frozen=True)
class All:
    rules: tuple[Rule, ...]


@dataclass(frozen=True)
class AnyOf:
    rules: tuple[Rule, ...]


@dataclass(frozen=True)
class Not:
    rule: Rule


@dataclass(frozen=True)
class Condition:
    """`op value` on the JSON found at `path` (in traits, computed or event properties). `value` is
    already typed for the op: Decimal for numeric compares, datetime for before/after, timedelta for
    the relative date windows, a tuple for in/not_in, None for exists/not_exists."""

    path: tuple[str, ...]
    op: str
    value: Any


@dataclass(frozen=True)
class Trait:
    condition: Condition


@dataclass(frozen=True)
class Computed:
    condition: Condition


@dataclass(frozen=True)
class Tag:
    name: str


@dataclass(frozen=True)
class Lifecycle:
    stages: tuple[str, ...]


@dataclass(frozen=True)
class Consent:
    channel: str
    purpose: str
    state: str


@dataclass(frozen=True)
class InSegment:
    segment_id: str
    path: str = field(default="", compare=False)  # where in the tree, for errors found against the database


@dataclass(frozen=True)
class Behaviour:
    """Events named `event` matching every `where` condition in the window: their count compares
    `count_op count_value`; with `same`, per distinct value of that property (some value must)."""

    event: str
    where: tuple[Condition, ...]
    window: timedelta | None
    count_op: str
    count_value: int
    same: tuple[str, ...] | None
    same_in_cart: bool


Rule = All | AnyOf | Not | Trait | Computed | Tag | Lifecycle | Consent | InSegment | Behaviour


def parse_rules_json(text: str) -> Rule:
    """The rule tree in JSON `text`; InvalidRules naming the first problem otherwise."""
    if not text:
        raise InvalidRules("", "rules are required")
    if len(text.encode()) > MAX_RULES_BYTES:
        raise InvalidRules("", f"rules must be at most {MAX_RULES_BYTES} bytes of JSON")
    try:
        tree = orjson.loads(text)
    except orjson.JSONDecodeError as exc:
        raise InvalidRules("", "not valid JSON") from exc
    if _has_nul(tree):  # valid JSON, but jsonb cannot hold it
        raise InvalidRules("", "contains a NUL character (\\u0000)")
    return parse_rules(tree)


def _has_nul(tree: Any) -> bool:
    todo = [tree]  # a stack, not recursion: JSON may nest deeper than Python recurses
    while todo:
        value = todo.pop()
        if isinstance(value, str) and "\x00" in value:
            return True
        if isinstance(value, list):
            todo.extend(value)
        elif isinstance(value, dict):
            todo.extend(value.keys())
            todo.extend(value.values())
    return False


def parse_rules(tree: Any) -> Rule:
    """The typed rule tree for a decoded JSON value (see parse_rules_json)."""
    parser = _Parser()
    rule = parser.node(tree, "", 1)
    if parser.behaviours > MAX_BEHAVIOURS:
        raise InvalidRules("", f"at most {MAX_BEHAVIOURS} event conditions per segment")
    return rule


def walk(rule: Rule) -> Iterator[Rule]:
    """Every node of the tree, parents before children."""
    yield rule
    if isinstance(rule, All | AnyOf):
        for child in rule.rules:
            yield from walk(child)
    elif isinstance(rule, Not):
        yield from walk(rule.rule)


def time_dependent(rule: Rule) -> bool:
    """Whether membership can change with the mere passing of time (an event window or a date
    condition relative to now), so a periodic pass must re-evaluate it."""
    for node in walk(rule):
        if isinstance(node, Trait | Computed) and node.condition.op in WINDOW_OPS:
            return True
        if isinstance(node, Behaviour) and (node.window is not None or any(c.op in WINDOW_OPS for c in node.where)):
            return True
    return False


def referenced_segments(rule: Rule) -> list[InSegment]:
    """The nodes reading another segment's membership, in tree order."""
    return [node for node in walk(rule) if isinstance(node, InSegment)]


def evaluation_order(rules: dict[str, Rule]) -> list[str]:
    """Segment ids, each after the segments it reads (ties in id order), so one pass over them sees
    fresh memberships; ids caught in a cycle (refused on save) come last, in id order."""
    reads = {sid: {n.segment_id for n in referenced_segments(rule)} & rules.keys() for sid, rule in rules.items()}
    order: list[str] = []
    done: set[str] = set()
    while len(done) < len(reads):
        ready = sorted(sid for sid, deps in reads.items() if sid not in done and deps <= done)
        if not ready:
            order.extend(sorted(reads.keys() - done))
            break
        order.extend(ready)
        done.update(ready)
    return order


def time_dependent_ids(rules: dict[str, Rule]) -> set[str]:
    """Segments whose membership can change with time alone: by their own rules or through a
    segment they read."""
    found = {sid for sid, rule in rules.items() if time_dependent(rule)}
    grew = True
    while grew:
        more = {sid for sid, rule in rules.items()
                if sid not in found and any(n.segment_id in found for n in referenced_segments(rule))}
        found |= more
        grew = bool(more)
    return found


def reads_transitively(rules: dict[str, Rule], start: str, target: str) -> bool:
    """Whether segment `start` reads `target`, directly or through other segments."""
    seen: set[str] = set()
    todo = [start]
    while todo:
        sid = todo.pop()
        if sid == target:
            return True
        if sid in seen or sid not in rules:
            continue
        seen.add(sid)
        todo.extend(n.segment_id for n in referenced_segments(rules[sid]))
    return False


def _at(path: str, key: str | int) -> str:
    if isinstance(key, int):
        return f"{path}[{key}]"
    return f"{path}.{key}" if path else key


def _is_number(value: Any) -> bool:
    return isinstance(value, int | float) and not isinstance(value, bool)


def _text(value: Any, path: str, what: str = "a non-empty string", limit: int = MAX_STRING) -> str:
    if not isinstance(value, str) or not value:
        raise InvalidRules(path, f"must be {what}")
    if len(value) > limit:
        raise InvalidRules(path, f"must be at most {limit} characters")
    return value


def _keys(node: dict, path: str, allowed: set[str]) -> None:
    for key in node:
        if key not in allowed:
            raise InvalidRules(_at(path, key), f"unknown key {key!r} (expected one of {', '.join(sorted(allowed))})")


def _json_path(value: Any, path: str) -> tuple[str, ...]:
    """A path into a JSON object: "a.b" or ["a", "b"] (the list form for keys holding dots)."""
    parts = value.split(".") if isinstance(value, str) else value
    if not isinstance(parts, list) or not parts:
        raise InvalidRules(path, "must be a path: \"a.b\" or a list of keys")
    if len(parts) > MAX_PATH:
        raise InvalidRules(path, f"must have at most {MAX_PATH} keys")
    for part in parts:
        if not isinstance(part, str) or not part or len(part) > MAX_KEY:
            raise InvalidRules(path, f"keys must be non-empty strings of at most {MAX_KEY} characters")
    return tuple(parts)


def _timestamp(value: Any, path: str) -> datetime:
    if isinstance(value, str):
        try:
            at = datetime.fromisoformat(value)
        except ValueError:
            at = None
        if at is not None:
            return at if at.tzinfo is not None else at.replace(tzinfo=UTC)
    raise InvalidRules(path, "must be an ISO-8601 date or timestamp, e.g. \"2026-01-31T00:00:00Z\"")


def _window(value: Any, path: str, unit: str) -> timedelta:
    hours = 24 if unit == "days" else 1
    if not _is_number(value) or not 0 < value * hours <= MAX_WINDOW_DAYS * 24:
        raise InvalidRules(path, f"must be a positive number of {unit}, at most {MAX_WINDOW_DAYS * 24 // hours}")
    return timedelta(hours=value * hours)


def _scalar(value: Any) -> bool:
    return value is None or isinstance(value, str | bool) or _is_number(value)


def _condition(node: dict, path: str) -> Condition:
    """The op/value part of a trait, computed or event-property condition (`path` is the node's)."""
    op = node.get("op")
    if not isinstance(op, str):
        raise InvalidRules(_at(path, "op"), "is required (one of " + ", ".join(sorted(VALUE_OPS | DATE_OPS)) + ")")
    if op not in VALUE_OPS | DATE_OPS:
        raise InvalidRules(_at(path, "op"), f"unknown operator {op!r}")
    at = _at(path, "value")
    if op in ("exists", "not_exists"):
        if "value" in node:
            raise InvalidRules(at, f"{op} takes no value")
        return Condition((), op, None)
    if "value" not in node:
        raise InvalidRules(at, f"is required for {op}")
    value = node["value"]
    if op in ("eq", "neq"):
        if not _scalar(value):
            raise InvalidRules(at, f"must be a string, number, boolean or null for {op}")
        if isinstance(value, str) and len(value) > MAX_STRING:
            raise InvalidRules(at, f"must be at most {MAX_STRING} characters")
        return Condition((), op, value)
    if op in ("gt", "gte", "lt", "lte"):
        if _is_number(value):
            return Condition((), op, Decimal(str(value)))
        if isinstance(value, str):
            return Condition((), op, _text(value, at, "a number or a string"))
        raise InvalidRules(at, f"must be a number or a string for {op} (use before/after for dates)")
    if op in ("in", "not_in"):
        if not isinstance(value, list) or not value or len(value) > MAX_LIST:
            raise InvalidRules(at, f"must be a list of 1 to {MAX_LIST} values for {op}")
        for i, item in enumerate(value):
            if not _scalar(item) or (isinstance(item, str) and len(item) > MAX_STRING):
                raise InvalidRules(_at(at, i), "must be a string, number, boolean or null")
        return Condition((), op, tuple(value))
    if op == "contains":
        if value is None or not _scalar(value):
            raise InvalidRules(at, "must be a string, number or boolean for contains")
        if isinstance(value, str):
            _text(value, at)
        return Condition((), op, value)
    if op == "starts_with":
        return Condition((), op, _text(value, at))
    if op in ("before", "after"):
        return Condition((), op, _timestamp(value, at))
    return Condition((), op, _window(value, at, "hours" if op == "within_hours" else "days"))


class _Parser:
    def __init__(self) -> None:
        self.nodes = 0
        self.behaviours = 0

    def node(self, node: Any, path: str, depth: int) -> Rule:
        self.nodes += 1
        if self.nodes > MAX_NODES:
            raise InvalidRules(path, f"a rule tree has at most {MAX_NODES} nodes")
        if depth > MAX_DEPTH:
            raise InvalidRules(path, f"rules nest at most {MAX_DEPTH} levels deep")
        if not isinstance(node, dict):
            raise InvalidRules(path, "must be a JSON object (a condition or all/any/not)")
        kinds = [k for k in KINDS if k in node]
        if not kinds:
            raise InvalidRules(path, "must have one of the keys " + ", ".join(KINDS))
        if len(kinds) > 1:
            raise InvalidRules(path, f"has both {kinds[0]!r} and {kinds[1]!r}: a node is exactly one condition")
        return getattr(self, f"_{kinds[0]}")(node, path, depth)

    def _children(self, node: dict, path: str, depth: int, kind: str) -> tuple[Rule, ...]:
        _keys(node, path, {kind})
        at = _at(path, kind)
        children = node[kind]
        if not isinstance(children, list) or not children:
            raise InvalidRules(at, "must be a non-empty list of rules")
        return tuple(self.node(child, _at(at, i), depth + 1) for i, child in enumerate(children))

    def _all(self, node: dict, path: str, depth: int) -> Rule:
        return All(self._children(node, path, depth, "all"))

    def _any(self, node: dict, path: str, depth: int) -> Rule:
        return AnyOf(self._children(node, path, depth, "any"))

    def _not(self, node: dict, path: str, depth: int) -> Rule:
        _keys(node, path, {"not"})
        return Not(self.node(node["not"], _at(path, "not"), depth + 1))

    def _trait(self, node: dict, path: str, depth: int) -> Rule:
        _keys(node, path, {"trait", "op", "value"})
        keys = _json_path(node["trait"], _at(path, "trait"))
        return Trait(_with_path(_condition(node, path), keys))

    def _computed(self, node: dict, path: str, depth: int) -> Rule:
        _keys(node, path, {"computed", "op", "value"})
        keys = _json_path(node["computed"], _at(path, "computed"))
        if keys[0] not in COMPUTED_KEYS:
            raise InvalidRules(_at(path, "computed"), f"unknown computed trait {keys[0]!r} (known: "
                               + ", ".join(sorted(COMPUTED_KEYS)) + ")")
        return Computed(_with_path(_condition(node, path), keys))

    def _tag(self, node: dict, path: str, depth: int) -> Rule:
        _keys(node, path, {"tag"})
        return Tag(_text(node["tag"], _at(path, "tag"), limit=MAX_KEY))

    def _lifecycle(self, node: dict, path: str, depth: int) -> Rule:
        _keys(node, path, {"lifecycle"})
        at = _at(path, "lifecycle")
        stages = node["lifecycle"]
        if not isinstance(stages, list) or not stages:
            raise InvalidRules(at, "must be a non-empty list of stages")
        for i, stage in enumerate(stages):
            if stage not in LIFECYCLE_STAGES:
                raise InvalidRules(_at(at, i), f"unknown stage {stage!r} (one of {', '.join(LIFECYCLE_STAGES)})")
        return Lifecycle(tuple(stages))

    def _consent(self, node: dict, path: str, depth: int) -> Rule:
        _keys(node, path, {"consent", "purpose", "state"})
        channel = _text(node["consent"], _at(path, "consent"), "a channel name", MAX_KEY)
        purpose = _text(node.get("purpose"), _at(path, "purpose"), "a purpose name", MAX_KEY)
        state = node.get("state", "granted")
        if state not in CONSENT_STATES:
            raise InvalidRules(_at(path, "state"), f"must be one of {', '.join(CONSENT_STATES)}")
        return Consent(channel, purpose, state)

    def _segment(self, node: dict, path: str, depth: int) -> Rule:
        _keys(node, path, {"segment"})
        value = node["segment"]
        if not isinstance(value, str) or parse_uuid(value) is None:
            raise InvalidRules(_at(path, "segment"), "must be a segment id (UUID)")
        return InSegment(str(parse_uuid(value)), _at(path, "segment"))

    def _event(self, node: dict, path: str, depth: int) -> Rule:
        _keys(node, path, {"event", "where", "within_days", "within_hours", "count", "same", "same_in_cart"})
        self.behaviours += 1
        name = _text(node["event"], _at(path, "event"), "an event name", MAX_KEY)
        where = node.get("where", [])
        at = _at(path, "where")
        if not isinstance(where, list) or len(where) > 20:
            raise InvalidRules(at, "must be a list of at most 20 property conditions")
        conditions = []
        for i, cond in enumerate(where):
            cond_at = _at(at, i)
            if not isinstance(cond, dict) or "property" not in cond:
                raise InvalidRules(cond_at, "must be an object {\"property\": ..., \"op\": ..., \"value\": ...}")
            _keys(cond, cond_at, {"property", "op", "value"})
            keys = _json_path(cond["property"], _at(cond_at, "property"))
            conditions.append(_with_path(_condition(cond, cond_at), keys))
        if "within_days" in node and "within_hours" in node:
            raise InvalidRules(_at(path, "within_hours"), "give within_days or within_hours, not both")
        window = None
        for unit in ("days", "hours"):
            if f"within_{unit}" in node:
                window = _window(node[f"within_{unit}"], _at(path, f"within_{unit}"), unit)
        count_op, count_value = self._count(node.get("count", {"op": "gte", "value": 1}), _at(path, "count"))
        same = _json_path(node["same"], _at(path, "same")) if "same" in node else None
        in_cart = node.get("same_in_cart", False)
        if not isinstance(in_cart, bool):
            raise InvalidRules(_at(path, "same_in_cart"), "must be true or false")
        if in_cart and same is None:
            raise InvalidRules(_at(path, "same_in_cart"), "needs \"same\" (the property holding the product id)")
        return Behaviour(name, tuple(conditions), window, count_op, count_value, same, in_cart)

    @staticmethod
    def _count(count: Any, path: str) -> tuple[str, int]:
        if not isinstance(count, dict):
            raise InvalidRules(path, "must be an object {\"op\": \"gte\", \"value\": 3}")
        _keys(count, path, {"op", "value"})
        op = count.get("op")
        if op not in COUNT_OPS:
            problem = "is required" if op is None else f"unknown operator {op!r}"
            raise InvalidRules(_at(path, "op"), f"{problem} (one of {', '.join(sorted(COUNT_OPS))})")
        value = count.get("value")
        if not isinstance(value, int) or isinstance(value, bool) or not 0 <= value <= MAX_COUNT:
            raise InvalidRules(_at(path, "value"), f"must be a whole number from 0 to {MAX_COUNT}")
        return op, value


def _with_path(condition: Condition, path: tuple[str, ...]) -> Condition:
    return Condition(path, condition.op, condition.value)
