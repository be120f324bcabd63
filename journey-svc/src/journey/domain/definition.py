"""Journey definitions: the JSON graph a journey is defined by (grammar in journey-svc/docs/definition.md),
validated into typed dataclasses with every problem reported at once as an Issue carrying a stable code,
the step concerned and an RFC 6901 pointer (`/steps/3/duration`). Also the pure condition evaluation the
executor needs. No I/O here: template and segment ids to check against are passed in."""

from __future__ import annotations

import datetime as dt
import math
import re
from collections import deque
from collections.abc import Sequence
from dataclasses import dataclass, field, replace
from datetime import timedelta
from decimal import Decimal, InvalidOperation
from typing import Any
from urllib.parse import urlsplit

import orjson

STEP_ID = re.compile(r"[A-Za-z0-9_-]{1,64}")
ENTRY_TYPES = ("event", "segment", "tier_change", "schedule", "api")
SEGMENT_ON = ("enter", "exit")
TIER_DIRECTIONS = ("upgrade", "downgrade", "any")
SCHEDULE_EVERY = ("once", "daily", "weekly")
REENTRY_MODES = ("never", "after_exit", "cooldown")
STEP_TYPES = ("wait", "wait_for_event", "condition", "random_split", "ab_test", "send", "webhook",
              "update_profile", "award_points", "issue_coupon", "jump", "exit")
CHANNELS = ("email", "sms", "push", "in_app", "webhook", "best")
HTTP_METHODS = ("POST", "PUT", "PATCH", "GET", "DELETE")
OPS = ("eq", "neq", "gt", "gte", "lt", "lte", "in", "not_in", "contains", "exists", "not_exists")
UNSUBSCRIBED_EVENT = "message.unsubscribed"
# Leaves a `when` (step condition) may use; `where` filters only compare the event's own properties.
WHEN_LEAVES = ("trait", "segment", "loyalty", "event_property", "opened")
WHERE_LEAVES = ("property",)

MAX_HOLDOUT_PERCENT = 50
MAX_STEPS = 500
MAX_BRANCHES = 20
MAX_WHERE = 20
MAX_CONDITION_DEPTH = 10
MAX_TEXT = 1000
MAX_NAME = 200
MAX_LIST = 1000
MAX_DURATION = timedelta(days=3650)  # beyond this, now + duration is a mistake (and near datetime overflow)

_DURATION = re.compile(r"(-)?P(?:(\d+)W)?(?:(\d+)D)?(?:T(?:(\d+)H)?(?:(\d+)M)?(?:(\d+(?:\.\d+)?)S)?)?")
_MONTHS_OR_YEARS = re.compile(r"-?P[^T]*[YM]")
_HH_MM = re.compile(r"([01]\d|2[0-3]):([0-5]\d)")
_DATE = re.compile(r"\d{4}-\d{2}-\d{2}")
_RFC3339 = re.compile(r"\d{4}-\d{2}-\d{2}[Tt ]\d{2}:\d{2}:\d{2}(\.\d+)?([Zz]|[+-]\d{2}:\d{2})")


# --- issues -------------------------------------------------------------------------------------------------

@dataclass(frozen=True)
class Issue:
    """One problem: a stable `code`, a message, the step concerned ("" if none) and a JSON pointer ("" is
    the whole document)."""

    code: str
    message: str
    step_id: str = ""
    path: str = ""


@dataclass
class Result:
    """What validate found: the parsed definition (None when there is any error), errors and warnings."""

    definition: Definition | None
    errors: list[Issue] = field(default_factory=list)
    warnings: list[Issue] = field(default_factory=list)

    @property
    def valid(self) -> bool:
        return not self.errors


# --- conditions ---------------------------------------------------------------------------------------------

@dataclass(frozen=True)
class Compare:
    """`op value` on the value at `key` of `source`: "trait", "loyalty", "event_property" (the entry
    context) or, in `where` filters, "property" (the event's properties). `key` may be dotted ("address.city").
    `value` is None for exists / not_exists, a list for in / not_in."""

    source: str
    key: str
    op: str
    value: Any = None


@dataclass(frozen=True)
class InSegment:
    """The person is (member=True) or is not (member=False) in the segment."""

    segment_id: str
    member: bool = True


@dataclass(frozen=True)
class Opened:
    """The person opened the message sent by the `send` step `step_id` in this enrollment."""

    step_id: str


@dataclass(frozen=True)
class AllOf:
    conditions: list[Condition]


@dataclass(frozen=True)
class AnyOf:
    conditions: list[Condition]


@dataclass(frozen=True)
class Not:
    condition: Condition


Condition = Compare | InSegment | Opened | AllOf | AnyOf | Not


# --- the definition -----------------------------------------------------------------------------------------

@dataclass(frozen=True)
class Entry:
    """How people enter; the fields used depend on `type` (see the grammar), the others keep defaults."""

    type: str
    event: str | None = None
    where: list[Condition] | None = None
    key: str | None = None
    segment_id: str | None = None
    on: str = "enter"
    to: str | None = None
    direction: str = "upgrade"
    every: str | None = None
    at: dt.time | None = None
    weekday: int | None = None
    date: dt.date | None = None


@dataclass(frozen=True)
class Reentry:
    mode: str = "never"
    cooldown: timedelta | None = None


@dataclass(frozen=True)
class Goal:
    event: str
    where: list[Condition] | None = None
    within: timedelta | None = None
    exit: bool = True


@dataclass(frozen=True)
class ExitCriterion:
    """Exactly one of `event` (with optional `where`) or `segment_left` is set."""

    event: str | None = None
    where: list[Condition] | None = None
    segment_left: str | None = None


@dataclass(frozen=True)
class ConditionBranch:
    when: Condition
    next: str | None
    label: str


@dataclass(frozen=True)
class SplitBranch:
    percent: float
    next: str | None
    label: str


@dataclass(frozen=True, kw_only=True)
class Step:
    """A step: `edges` lists its outcomes as (label, next step id): ("next", id), ("timeout", id), a branch
    or variant label, ("else", id), ("jump", id). An outcome with no edge completes the journey."""

    id: str
    type: str
    edges: list[tuple[str, str]] = field(default_factory=list)

    def target(self, label: str) -> str | None:
        """The step the outcome `label` leads to; None when it completes the journey."""
        return next((to for name, to in self.edges if name == label), None)


@dataclass(frozen=True, kw_only=True)
class WaitStep(Step):
    """Exactly one of duration, until, until_trait (+ offset) or best_send_time (+ within) is set."""

    type: str = "wait"
    duration: timedelta | None = None
    until: dt.datetime | None = None
    until_trait: str | None = None
    offset: timedelta | None = None
    best_send_time: bool = False
    within: timedelta | None = None
    next: str | None = None


@dataclass(frozen=True, kw_only=True)
class WaitForEventStep(Step):
    type: str = "wait_for_event"
    event: str
    where: list[Condition] | None = None
    match_key: str | None = None
    timeout: timedelta
    next: str | None = None
    timeout_next: str | None = None


@dataclass(frozen=True, kw_only=True)
class ConditionStep(Step):
    type: str = "condition"
    branches: list[ConditionBranch]
    else_: str | None = None


@dataclass(frozen=True, kw_only=True)
class RandomSplitStep(Step):
    type: str = "random_split"
    branches: list[SplitBranch]


@dataclass(frozen=True, kw_only=True)
class ABTestStep(Step):
    type: str = "ab_test"
    variants: list[SplitBranch]
    goal: str
    decide_after: timedelta
    winner_share: float


@dataclass(frozen=True, kw_only=True)
class SendStep(Step):
    type: str = "send"
    channel: str
    template: str
    data: dict | None = None
    next: str | None = None


@dataclass(frozen=True, kw_only=True)
class WebhookStep(Step):
    type: str = "webhook"
    url: str
    method: str = "POST"
    body: Any = None
    next: str | None = None


@dataclass(frozen=True, kw_only=True)
class UpdateProfileStep(Step):
    type: str = "update_profile"
    add_tags: list[str] = field(default_factory=list)
    remove_tags: list[str] = field(default_factory=list)
    traits: dict = field(default_factory=dict)
    next: str | None = None


@dataclass(frozen=True, kw_only=True)
class AwardPointsStep(Step):
    type: str = "award_points"
    points: int
    program_id: str | None = None
    reason: str
    next: str | None = None


@dataclass(frozen=True, kw_only=True)
class IssueCouponStep(Step):
    type: str = "issue_coupon"
    campaign_id: str
    next: str | None = None


@dataclass(frozen=True, kw_only=True)
class JumpStep(Step):
    type: str = "jump"
    to: str


@dataclass(frozen=True, kw_only=True)
class ExitStep(Step):
    type: str = "exit"


@dataclass(frozen=True)
class Definition:
    entry: Entry
    reentry: Reentry
    holdout_percent: float
    goal: Goal | None
    exit_criteria: list[ExitCriterion]
    start: str
    steps: dict[str, Step]  # in document order


# --- durations ----------------------------------------------------------------------------------------------

def parse_duration(text: str) -> timedelta:
    """An ISO 8601 duration of weeks, days, hours, minutes and seconds (`PT30M`, `P2DT12H`, `-P3D`);
    ValueError for anything else, months and years included (their length varies)."""
    if not isinstance(text, str):
        raise ValueError("must be an ISO 8601 duration string such as PT30M or P1D")
    match = _DURATION.fullmatch(text)
    if match is None or not any(match.groups()[1:]) or text.endswith("T"):
        if _MONTHS_OR_YEARS.match(text):
            raise ValueError(f"{text!r}: months and years are not supported (their length varies); use days")
        raise ValueError(f"{text!r} is not an ISO 8601 duration such as PT30M, P1D or P2DT12H")
    sign, weeks, days, hours, minutes, seconds = match.groups()
    try:
        value = timedelta(weeks=int(weeks or 0), days=int(days or 0), hours=int(hours or 0),
                          minutes=int(minutes or 0), seconds=float(seconds or 0))
    except (OverflowError, ValueError):  # more days than a timedelta holds, or digits than int() reads
        value = None
    if value is None or value > MAX_DURATION:
        raise ValueError(f"{text!r} is too long (at most P{MAX_DURATION.days}D)")
    return -value if sign else value


# --- validation ---------------------------------------------------------------------------------------------

def validate(text: str, *, templates: set[str] | None = None, segments: set[str] | None = None) -> Result:
    """Every error and warning in the definition `text`, and the parsed Definition when there is no error.
    `templates` / `segments` are the known ids; None means they cannot be checked here."""
    try:
        raw = orjson.loads(text)
    except (orjson.JSONDecodeError, TypeError):
        return Result(None, [Issue("invalid_json", "the definition is not valid JSON")])
    if not isinstance(raw, dict):
        return Result(None, [Issue("not_an_object", "the definition must be a JSON object")])
    checker = _Validator(templates, segments)
    definition = checker.definition(raw)
    return Result(None if checker.errors else definition, checker.errors, checker.warnings)


def _at(path: str, key: str | int) -> str:
    """`path` extended by one RFC 6901 reference token."""
    return f"{path}/{str(key).replace('~', '~0').replace('/', '~1')}"


def _has(node: dict, key: str) -> bool:
    """Whether an optional field is given (null counts as absent: editors write it for "none")."""
    return node.get(key) is not None


def _is_number(value: Any) -> bool:
    return isinstance(value, int | float) and not isinstance(value, bool) and math.isfinite(value)


def _scalar(value: Any) -> bool:
    return value is None or isinstance(value, str | bool) or _is_number(value)


def _default_split_label(index: int) -> str:
    return chr(ord("A") + index) if index < 26 else f"V{index + 1}"


class _Validator:
    def __init__(self, templates: set[str] | None, segments: set[str] | None) -> None:
        self.templates = templates
        self.segments = segments
        self.errors: list[Issue] = []
        self.warnings: list[Issue] = []
        self.segment_refs: list[tuple[str, str, str]] = []  # (segment id, path, step id)
        self.opened_refs: list[tuple[str, str, str]] = []  # (send step id, path, step id)
        # The graph is built from every step with a usable id, even one with field errors, so that graph
        # problems are reported alongside field problems.
        self.nodes: dict[str, int] = {}  # step id -> index of its (first) occurrence
        self.types: dict[str, str] = {}
        self.links: list[tuple[int, str, str, str, str]] = []  # (step index, step id, label, target, path)
        self.holds: set[int] = set()  # indexes of steps that make a person wait a while

    def error(self, code: str, path: str, message: str, step_id: str = "") -> None:
        self.errors.append(Issue(code, message, step_id, path))

    def warn(self, code: str, path: str, message: str, step_id: str = "") -> None:
        self.warnings.append(Issue(code, message, step_id, path))

    # field readers: each reports its own problem and returns None when the field is absent or bad

    def text(self, node: dict, key: str, at: str, sid: str, *, required: bool = True,
             limit: int = MAX_NAME) -> str | None:
        path = _at(at, key)
        if not _has(node, key):
            if required:
                self.error("missing_field", path, f"{key} is required", sid)
            return None
        value = node[key]
        if not isinstance(value, str) or not value.strip() or len(value) > limit:
            self.error("invalid_field", path, f"{key} must be a non-empty string of at most {limit} characters",
                       sid)
            return None
        return value

    def choice(self, node: dict, key: str, at: str, sid: str, options: Sequence[str],
               default: str | None = None) -> str | None:
        if not _has(node, key):
            if default is None:
                self.error("missing_field", _at(at, key), f"{key} is required (one of {', '.join(options)})", sid)
            return default
        value = node[key]
        if not isinstance(value, str) or value not in options:
            self.error("invalid_field", _at(at, key), f"{key} must be one of {', '.join(options)}, not {value!r}",
                       sid)
            return None
        return value

    def duration(self, node: dict, key: str, at: str, sid: str, *, required: bool = True,
                 negative_ok: bool = False) -> timedelta | None:
        path = _at(at, key)
        if not _has(node, key):
            if required:
                self.error("missing_field", path, f"{key} is required (an ISO 8601 duration such as PT1H)", sid)
            return None
        try:
            value = parse_duration(node[key])
        except ValueError as exc:
            self.error("invalid_duration", path, f"{key}: {exc}", sid)
            return None
        if value <= timedelta(0) and not negative_ok:
            self.error("invalid_duration", path, f"{key} must be a positive duration", sid)
            return None
        return value

    def flag(self, node: dict, key: str, at: str, sid: str, default: bool) -> bool:
        if not _has(node, key):
            return default
        if not isinstance(node[key], bool):
            self.error("invalid_field", _at(at, key), f"{key} must be true or false", sid)
            return default
        return node[key]

    def segment(self, node: dict, key: str, at: str, sid: str, *, required: bool = True) -> str | None:
        value = self.text(node, key, at, sid, required=required)
        if value is not None:
            self.segment_refs.append((value, _at(at, key), sid))
        return value

    def link(self, node: dict, key: str, at: str, sid: str, index: int, label: str, *,
             required: bool = False) -> str | None:
        """An edge of step `index` to the step named by `key`; checked for dangling once all steps are read."""
        target = self.text(node, key, at, sid, required=required, limit=64)
        if target is not None:
            self.links.append((index, sid, label, target, _at(at, key)))
        return target

    # conditions

    def where(self, node: dict, key: str, at: str, sid: str) -> list[Condition] | None:
        if not _has(node, key):
            return None
        path = _at(at, key)
        items = node[key]
        if not isinstance(items, list) or len(items) > MAX_WHERE:
            self.error("invalid_condition", path, f"{key} must be a list of at most {MAX_WHERE} conditions", sid)
            return None
        return [self.condition(item, _at(path, i), sid, WHERE_LEAVES, 1) for i, item in enumerate(items)]

    def condition(self, node: Any, at: str, sid: str, leaves: Sequence[str], depth: int) -> Condition | None:
        kinds = ("all", "any", "not", *leaves)
        if depth > MAX_CONDITION_DEPTH:
            self.error("invalid_condition", at, f"conditions nest at most {MAX_CONDITION_DEPTH} levels deep", sid)
            return None
        if not isinstance(node, dict):
            self.error("invalid_condition", at, f"must be a condition object (one of {', '.join(kinds)})", sid)
            return None
        found = [kind for kind in kinds if kind in node]
        if len(found) != 1:
            problem = "has none of" if not found else f"has both {found[0]!r} and {found[1]!r}; give one of"
            self.error("invalid_condition", at, f"{problem} {', '.join(kinds)}", sid)
            return None
        kind = found[0]
        allowed = {"segment": {"segment", "in"}, "opened": {"opened"}, "all": {"all"}, "any": {"any"},
                   "not": {"not"}}.get(kind, {kind, "op", "value"})
        extra = sorted(set(node) - allowed)
        if extra:
            self.error("invalid_condition", _at(at, extra[0]), f"unknown key {extra[0]!r} in a {kind} condition", sid)
            return None
        value = node[kind]
        if kind in ("all", "any"):
            if not isinstance(value, list) or not value or len(value) > MAX_LIST:
                self.error("invalid_condition", _at(at, kind), f"{kind} must be a non-empty list of conditions", sid)
                return None
            children = [self.condition(c, _at(_at(at, kind), i), sid, leaves, depth + 1) for i, c in enumerate(value)]
            return AllOf(children) if kind == "all" else AnyOf(children)
        if kind == "not":
            child = self.condition(value, _at(at, "not"), sid, leaves, depth + 1)
            return Not(child)
        if not isinstance(value, str) or not value.strip() or len(value) > MAX_NAME:
            self.error("invalid_condition", _at(at, kind), f"{kind} must be a non-empty string", sid)
            return None
        if kind == "segment":
            member = node.get("in", True)
            if not isinstance(member, bool):
                self.error("invalid_condition", _at(at, "in"), "in must be true or false", sid)
                return None
            self.segment_refs.append((value, _at(at, "segment"), sid))
            return InSegment(value, member)
        if kind == "opened":
            self.opened_refs.append((value, _at(at, "opened"), sid))
            return Opened(value)
        return self.compare(node, kind, value, at, sid)

    def compare(self, node: dict, source: str, key: str, at: str, sid: str) -> Compare | None:
        op = node.get("op")
        if op not in OPS:
            problem = "op is required" if op is None else f"unknown operator {op!r}"
            self.error("invalid_condition", _at(at, "op"), f"{problem} (one of {', '.join(OPS)})", sid)
            return None
        path = _at(at, "value")
        if op in ("exists", "not_exists"):
            if "value" in node:
                self.error("invalid_condition", path, f"{op} takes no value", sid)
                return None
            return Compare(source, key, op)
        if "value" not in node:
            self.error("invalid_condition", path, f"value is required for {op}", sid)
            return None
        value = node["value"]
        if op in ("eq", "neq"):
            ok, want = _scalar(value), "a string, number, boolean or null"
        elif op in ("gt", "gte", "lt", "lte"):
            ok, want = _is_number(value) or isinstance(value, str), "a number or a string"
        elif op in ("in", "not_in"):
            ok = isinstance(value, list) and 0 < len(value) <= MAX_LIST and all(_scalar(v) for v in value)
            want = f"a list of 1 to {MAX_LIST} strings, numbers, booleans or nulls"
        else:  # contains
            ok, want = value is not None and _scalar(value), "a string, number or boolean"
        if not ok:
            self.error("invalid_condition", path, f"value must be {want} for {op}", sid)
            return None
        return Compare(source, key, op, value)

    # the document

    def definition(self, raw: dict) -> Definition:
        entry = self.entry(raw)
        reentry = self.reentry(raw)
        holdout = self.holdout(raw)
        goal = self.goal(raw)
        exit_criteria = self.exit_criteria(raw)
        steps = self.steps(raw)
        start = self.start(raw)
        self.check_links()
        self.check_graph(start)
        self.check_references()
        self.warn_about(exit_criteria)
        return Definition(entry, reentry, holdout, goal, exit_criteria, start, steps)

    def entry(self, raw: dict) -> Entry | None:
        if not _has(raw, "entry"):
            self.error("missing_entry", "/entry", "entry is required: how people enter the journey")
            return None
        node, at = raw["entry"], "/entry"
        if not isinstance(node, dict):
            self.error("invalid_field", at, "entry must be an object with a type")
            return None
        kind = node.get("type")
        if kind is None:
            self.error("missing_field", "/entry/type", f"entry.type is required (one of {', '.join(ENTRY_TYPES)})")
            return None
        if kind not in ENTRY_TYPES:
            self.error("unknown_entry_type", "/entry/type",
                       f"unknown entry type {kind!r} (one of {', '.join(ENTRY_TYPES)})")
            return None
        if kind == "event":
            return Entry(kind, event=self.text(node, "event", at, ""), where=self.where(node, "where", at, ""),
                         key=self.text(node, "key", at, "", required=False))
        if kind == "segment":
            return Entry(kind, segment_id=self.segment(node, "segment_id", at, ""),
                         on=self.choice(node, "on", at, "", SEGMENT_ON, "enter"))
        if kind == "tier_change":
            return Entry(kind, to=self.text(node, "to", at, "", required=False),
                         direction=self.choice(node, "direction", at, "", TIER_DIRECTIONS, "upgrade"))
        if kind == "schedule":
            return self.schedule(node, at)
        return Entry(kind)

    def schedule(self, node: dict, at: str) -> Entry:
        every = self.choice(node, "every", at, "", SCHEDULE_EVERY)
        when = self.text(node, "at", at, "")
        time = None
        if when is not None:
            match = _HH_MM.fullmatch(when)
            if match is None:
                self.error("invalid_field", "/entry/at", f"at must be a time HH:MM (24h), not {when!r}")
            else:
                time = dt.time(int(match[1]), int(match[2]))
        weekday = date = None
        if every == "weekly":
            weekday = node.get("weekday")
            if weekday is None:
                self.error("missing_field", "/entry/weekday", "weekday is required for a weekly schedule (1-7)")
            elif not isinstance(weekday, int) or isinstance(weekday, bool) or not 1 <= weekday <= 7:
                self.error("invalid_field", "/entry/weekday", "weekday must be 1 (Monday) to 7 (Sunday)")
        elif _has(node, "weekday"):
            self.error("invalid_field", "/entry/weekday", "weekday applies only to weekly schedules")
        if every == "once":
            day = self.text(node, "date", at, "")
            if day is not None:
                try:
                    date = dt.date.fromisoformat(day) if _DATE.fullmatch(day) else None
                except ValueError:
                    date = None
                if date is None:
                    self.error("invalid_field", "/entry/date", f"date must be a date YYYY-MM-DD, not {day!r}")
        elif _has(node, "date"):
            self.error("invalid_field", "/entry/date", "date applies only to once schedules")
        return Entry("schedule", every=every, at=time, weekday=weekday, date=date,
                     segment_id=self.segment(node, "segment_id", at, ""))

    def reentry(self, raw: dict) -> Reentry:
        if not _has(raw, "reentry"):
            return Reentry()
        node, at = raw["reentry"], "/reentry"
        if not isinstance(node, dict):
            self.error("invalid_field", at, "reentry must be an object {\"mode\": ...}")
            return Reentry()
        mode = self.choice(node, "mode", at, "", REENTRY_MODES, "never")
        cooldown = None
        if mode == "cooldown":
            cooldown = self.duration(node, "cooldown", at, "")
        elif _has(node, "cooldown"):
            self.error("invalid_field", "/reentry/cooldown", "cooldown applies only to mode \"cooldown\"")
        return Reentry(mode or "never", cooldown)

    def holdout(self, raw: dict) -> float:
        if not _has(raw, "holdout_percent"):
            return 0
        value = raw["holdout_percent"]
        if not _is_number(value) or not 0 <= value <= MAX_HOLDOUT_PERCENT:
            self.error("invalid_field", "/holdout_percent",
                       f"holdout_percent must be a number from 0 to {MAX_HOLDOUT_PERCENT}")
            return 0
        return value

    def goal(self, raw: dict) -> Goal | None:
        if not _has(raw, "goal"):
            self.warn("no_goal", "/goal", "the journey has no goal: conversions (and the holdout comparison) "
                      "cannot be measured")
            return None
        node, at = raw["goal"], "/goal"
        if not isinstance(node, dict):
            self.error("invalid_field", at, "goal must be an object {\"event\": ...}")
            return None
        return Goal(self.text(node, "event", at, ""), self.where(node, "where", at, ""),
                    self.duration(node, "within", at, "", required=False), self.flag(node, "exit", at, "", True))

    def exit_criteria(self, raw: dict) -> list[ExitCriterion]:
        if not _has(raw, "exit_criteria"):
            return []
        items = raw["exit_criteria"]
        if not isinstance(items, list) or len(items) > MAX_WHERE:
            self.error("invalid_field", "/exit_criteria", f"exit_criteria must be a list of at most {MAX_WHERE}")
            return []
        found = []
        for i, node in enumerate(items):
            at = _at("/exit_criteria", i)
            kinds = [k for k in ("event", "segment_left") if isinstance(node, dict) and k in node]
            if len(kinds) != 1:
                self.error("invalid_field", at, "an exit criterion is {\"event\": name, \"where\": [...]} or "
                           "{\"segment_left\": id}")
            elif kinds == ["event"]:
                found.append(ExitCriterion(event=self.text(node, "event", at, ""),
                                           where=self.where(node, "where", at, "")))
            else:
                if "where" in node:
                    self.error("invalid_field", _at(at, "where"), "where applies only to event criteria")
                found.append(ExitCriterion(segment_left=self.segment(node, "segment_left", at, "")))
        return found

    def start(self, raw: dict) -> str | None:
        start = raw.get("start")
        if start is None:
            self.error("missing_start", "/start", "start is required: the id of the first step")
            return None
        if not isinstance(start, str) or start not in self.nodes:
            self.error("missing_start", "/start", f"start names no step: {start!r}")
            return None
        return start

    # steps

    def steps(self, raw: dict) -> dict[str, Step]:
        if not _has(raw, "steps"):
            self.error("missing_field", "/steps", "steps is required: a list of steps")
            return {}
        items = raw["steps"]
        if not isinstance(items, list) or not items:
            self.error("invalid_field", "/steps", "steps must be a non-empty list of steps")
            return {}
        if len(items) > MAX_STEPS:
            self.error("invalid_field", "/steps", f"a journey has at most {MAX_STEPS} steps")
            return {}
        steps: dict[str, Step] = {}
        for i, node in enumerate(items):
            step = self.step(node, i)
            if step is not None:
                steps[step.id] = step
        return steps

    def step(self, node: Any, index: int) -> Step | None:
        at = _at("/steps", index)
        if not isinstance(node, dict):
            self.error("invalid_field", at, "a step must be an object with an id and a type")
            return None
        sid, usable = node.get("id"), False
        if sid is None:
            self.error("missing_field", _at(at, "id"), "id is required")
        elif not isinstance(sid, str) or not sid:
            self.error("invalid_field", _at(at, "id"), f"id must be 1-64 letters, digits, _ or -, not {sid!r}")
        elif sid in self.nodes:
            self.error("duplicate_step_id", _at(at, "id"),
                       f"step id {sid!r} is already used by /steps/{self.nodes[sid]}", sid)
        else:
            if not STEP_ID.fullmatch(sid):
                self.error("invalid_field", _at(at, "id"), f"id must be 1-64 letters, digits, _ or -, not {sid!r}",
                           sid)
            # still a node, so that the steps naming it are not reported as dangling as well
            self.nodes[sid], usable = index, True
        sid = sid if isinstance(sid, str) else ""
        kind = node.get("type")
        if kind is None:
            self.error("missing_field", _at(at, "type"), "type is required", sid)
            return None
        if kind not in STEP_TYPES:
            self.error("unknown_step_type", _at(at, "type"),
                       f"unknown step type {kind!r} (one of {', '.join(STEP_TYPES)})", sid)
            self.link(node, "next", at, sid, index, "next")  # keeps the rest of the graph checkable
            return None
        if usable:
            self.types[sid] = kind
        step = getattr(self, f"_{kind}")(node, at, sid, index)
        if kind in ("condition", "random_split", "ab_test", "jump") and _has(node, "next"):
            self.error("invalid_field", _at(at, "next"), f"a {kind} step has no next: its outcomes name the steps",
                       sid)
        edges = [(label, target) for i, _, label, target, _ in self.links if i == index]
        return replace(step, edges=edges) if usable else None

    def _wait(self, node: dict, at: str, sid: str, index: int) -> Step:
        modes = [k for k in ("duration", "until", "until_trait", "best_send_time") if _has(node, k)]
        if not modes:
            self.error("missing_field", at, "a wait needs one of duration, until, until_trait or best_send_time", sid)
        elif len(modes) > 1:
            self.error("invalid_field", _at(at, modes[1]), f"give one of {modes[0]} and {modes[1]}, not both", sid)
        duration = self.duration(node, "duration", at, sid, required=False)
        if duration is not None:
            self.holds.add(index)
        until = None
        if _has(node, "until"):
            value = node["until"]
            if isinstance(value, str) and _RFC3339.fullmatch(value):
                until = dt.datetime.fromisoformat(value)
            else:
                self.error("invalid_field", _at(at, "until"),
                           "until must be an RFC 3339 time with an offset, e.g. 2026-05-01T09:00:00Z", sid)
        until_trait = self.text(node, "until_trait", at, sid, required=False)
        offset = self.duration(node, "offset", at, sid, required=False, negative_ok=True)
        if offset is not None and until_trait is None:
            self.error("invalid_field", _at(at, "offset"), "offset applies only to until_trait", sid)
        best = _has(node, "best_send_time")
        if best and node["best_send_time"] is not True:
            self.error("invalid_field", _at(at, "best_send_time"), "best_send_time must be true when given", sid)
        within = self.duration(node, "within", at, sid, required=False)
        if within is not None and not best:
            self.error("invalid_field", _at(at, "within"), "within applies only to best_send_time", sid)
        return WaitStep(id=sid, duration=duration, until=until, until_trait=until_trait, offset=offset,
                        best_send_time=best, within=within, next=self.link(node, "next", at, sid, index, "next"))

    def _wait_for_event(self, node: dict, at: str, sid: str, index: int) -> Step:
        self.holds.add(index)
        return WaitForEventStep(
            id=sid, event=self.text(node, "event", at, sid), where=self.where(node, "where", at, sid),
            match_key=self.text(node, "match_key", at, sid, required=False),
            timeout=self.duration(node, "timeout", at, sid), next=self.link(node, "next", at, sid, index, "next"),
            timeout_next=self.link(node, "timeout_next", at, sid, index, "timeout"))

    def _condition(self, node: dict, at: str, sid: str, index: int) -> Step:
        items = self.branch_list(node, "branches", at, sid, minimum=1)
        branches = []
        labels: set[str] = {"else"}
        for i, item in enumerate(items):
            bat = _at(_at(at, "branches"), i)
            if not isinstance(item, dict):
                self.error("invalid_field", bat, "a branch is {\"when\": <condition>, \"next\": id}", sid)
                continue
            label = self.label(item, bat, sid, labels, "yes" if len(items) == 1 else f"branch_{i + 1}")
            when = None
            if "when" not in item:
                self.error("missing_field", _at(bat, "when"), "when is required (a condition)", sid)
            else:
                when = self.condition(item["when"], _at(bat, "when"), sid, WHEN_LEAVES, 1)
            branches.append(ConditionBranch(when, self.link(item, "next", bat, sid, index, label), label))
        return ConditionStep(id=sid, branches=branches, else_=self.link(node, "else", at, sid, index, "else"))

    def _random_split(self, node: dict, at: str, sid: str, index: int) -> Step:
        return RandomSplitStep(id=sid, branches=self.split(node, "branches", at, sid, index))

    def _ab_test(self, node: dict, at: str, sid: str, index: int) -> Step:
        variants = self.split(node, "variants", at, sid, index)
        share = node.get("winner_share")
        if share is None:
            self.error("missing_field", _at(at, "winner_share"), "winner_share is required (a percent)", sid)
        elif not _is_number(share) or not 0 < share <= 100:
            self.error("invalid_percentages", _at(at, "winner_share"),
                       "winner_share must be a percent above 0, at most 100", sid)
        return ABTestStep(id=sid, variants=variants, goal=self.text(node, "goal", at, sid),
                          decide_after=self.duration(node, "decide_after", at, sid), winner_share=share)

    def _send(self, node: dict, at: str, sid: str, index: int) -> Step:
        channel = self.choice(node, "channel", at, sid, CHANNELS)
        template = self.text(node, "template", at, sid)
        if template is not None and self.templates is not None and template not in self.templates:
            self.error("unknown_template", _at(at, "template"), f"no template {template!r}", sid)
        data = node.get("data")
        if data is not None and not isinstance(data, dict):
            self.error("invalid_field", _at(at, "data"), "data must be an object", sid)
        return SendStep(id=sid, channel=channel, template=template, data=data,
                        next=self.link(node, "next", at, sid, index, "next"))

    def _webhook(self, node: dict, at: str, sid: str, index: int) -> Step:
        url = self.text(node, "url", at, sid, limit=2048)
        if url is not None:
            parts = urlsplit(url) if not any(c.isspace() for c in url) else None
            if parts is None or parts.scheme != "https" or not parts.hostname:
                self.error("invalid_field", _at(at, "url"), f"url must be an https URL, not {url!r}", sid)
        return WebhookStep(id=sid, url=url, method=self.choice(node, "method", at, sid, HTTP_METHODS, "POST"),
                           body=node.get("body"), next=self.link(node, "next", at, sid, index, "next"))

    def _update_profile(self, node: dict, at: str, sid: str, index: int) -> Step:
        if not any(_has(node, k) for k in ("add_tags", "remove_tags", "traits")):
            self.error("missing_field", at, "update_profile needs add_tags, remove_tags or traits", sid)
        tags = {}
        for key in ("add_tags", "remove_tags"):
            value = node.get(key) or []
            if not isinstance(value, list) or len(value) > MAX_LIST or not all(
                    isinstance(t, str) and t.strip() and len(t) <= MAX_NAME for t in value):
                self.error("invalid_field", _at(at, key), f"{key} must be a list of non-empty strings", sid)
                value = []
            tags[key] = value
        traits = node.get("traits") or {}
        if not isinstance(traits, dict):
            self.error("invalid_field", _at(at, "traits"), "traits must be an object", sid)
        return UpdateProfileStep(id=sid, add_tags=tags["add_tags"], remove_tags=tags["remove_tags"], traits=traits,
                                 next=self.link(node, "next", at, sid, index, "next"))

    def _award_points(self, node: dict, at: str, sid: str, index: int) -> Step:
        points = node.get("points")
        if points is None:
            self.error("missing_field", _at(at, "points"), "points is required (a whole number above 0)", sid)
        elif not isinstance(points, int) or isinstance(points, bool) or points <= 0:
            self.error("invalid_field", _at(at, "points"), f"points must be a whole number above 0, not {points!r}",
                       sid)
        return AwardPointsStep(id=sid, points=points, program_id=self.text(node, "program_id", at, sid, required=False),
                               reason=self.text(node, "reason", at, sid, limit=MAX_TEXT),
                               next=self.link(node, "next", at, sid, index, "next"))

    def _issue_coupon(self, node: dict, at: str, sid: str, index: int) -> Step:
        return IssueCouponStep(id=sid, campaign_id=self.text(node, "campaign_id", at, sid),
                               next=self.link(node, "next", at, sid, index, "next"))

    def _jump(self, node: dict, at: str, sid: str, index: int) -> Step:
        return JumpStep(id=sid, to=self.link(node, "to", at, sid, index, "jump", required=True))

    def _exit(self, node: dict, at: str, sid: str, index: int) -> Step:
        if _has(node, "next"):
            self.error("invalid_field", _at(at, "next"), "an exit step has no next: it ends the enrollment", sid)
        return ExitStep(id=sid)

    def branch_list(self, node: dict, key: str, at: str, sid: str, *, minimum: int) -> list:
        items = node.get(key)
        if items is None:
            self.error("missing_field", _at(at, key), f"{key} is required", sid)
            return []
        if not isinstance(items, list) or not minimum <= len(items) <= MAX_BRANCHES:
            self.error("invalid_field", _at(at, key), f"{key} must be a list of {minimum} to {MAX_BRANCHES}", sid)
            return []
        return items

    def label(self, item: dict, at: str, sid: str, taken: set[str], default: str) -> str:
        label = self.text(item, "label", at, sid, required=False, limit=64) or default
        if label in taken:
            self.error("invalid_field", _at(at, "label"), f"label {label!r} is used twice in this step", sid)
        taken.add(label)
        return label

    def split(self, node: dict, key: str, at: str, sid: str, index: int) -> list[SplitBranch]:
        """Branches drawn at random by percent (random_split branches, ab_test variants)."""
        items = self.branch_list(node, key, at, sid, minimum=2)
        found, total, complete = [], 0, True
        labels: set[str] = set()
        for i, item in enumerate(items):
            bat = _at(_at(at, key), i)
            if not isinstance(item, dict):
                self.error("invalid_field", bat, "a branch is {\"percent\": n, \"next\": id, \"label\": \"A\"}", sid)
                complete = False
                continue
            label = self.label(item, bat, sid, labels, _default_split_label(i))
            percent = item.get("percent")
            if percent is None:
                self.error("missing_field", _at(bat, "percent"), "percent is required", sid)
                complete = False
            elif not _is_number(percent) or not 0 < percent <= 100:
                self.error("invalid_percentages", _at(bat, "percent"), "percent must be above 0, at most 100", sid)
                complete = False
            else:
                total += percent
            found.append(SplitBranch(percent, self.link(item, "next", bat, sid, index, label), label))
        if items and complete and abs(total - 100) > 1e-9:
            self.error("invalid_percentages", _at(at, key), f"the percents of {key} sum to {total:g}, not 100", sid)
        return found

    # the graph

    def check_links(self) -> None:
        for _, sid, label, target, path in self.links:
            if target not in self.nodes:
                self.error("dangling_edge", path, f"{label} names no step: {target!r}", sid)

    def graph(self) -> dict[str, list[str]]:
        out: dict[str, list[str]] = {sid: [] for sid in self.nodes}
        for index, sid, _, target, _ in self.links:
            if self.nodes.get(sid) == index and target in self.nodes and target not in out[sid]:
                out[sid].append(target)
        return out

    def check_graph(self, start: str | None) -> None:
        graph = self.graph()
        if start is not None:
            seen, todo = {start}, deque([start])
            while todo:
                for target in graph[todo.popleft()]:
                    if target not in seen:
                        seen.add(target)
                        todo.append(target)
            for sid, index in self.nodes.items():
                if sid not in seen:
                    self.error("unreachable_step", _at("/steps", index), f"step {sid!r} cannot be reached from start",
                               sid)
        # A loop is safe only if it passes a step that makes the person wait a while (a wait with a duration,
        # or a wait_for_event); a wait `until` a time or trait, or for the best send time, only waits once.
        free = {sid for sid, index in self.nodes.items() if index not in self.holds}
        loose = {sid: [t for t in graph[sid] if t in free] for sid in free}
        for component in _strongly_connected(loose):
            first = min(component, key=self.nodes.__getitem__)
            if len(component) == 1 and first not in loose[first]:
                continue
            loop = " → ".join([*_cycle_from(first, loose, set(component)), first])
            self.error("cycle_without_wait", _at("/steps", self.nodes[first]),
                       f"the loop {loop} has no wait with a duration or wait_for_event: a person could run round "
                       f"it forever", first)

    def check_references(self) -> None:
        for target, path, sid in self.opened_refs:
            if self.types.get(target) != "send":
                self.error("invalid_condition", path, f"opened must name a send step, not {target!r}", sid)
        if self.segments is not None:
            for segment_id, path, sid in self.segment_refs:
                if segment_id not in self.segments:
                    self.error("unknown_segment", path, f"no segment {segment_id!r}", sid)

    def warn_about(self, exit_criteria: list[ExitCriterion]) -> None:
        sends = [sid for sid, kind in self.types.items() if kind == "send"]
        if sends and not any(c.event == UNSUBSCRIBED_EVENT for c in exit_criteria):
            self.warn("no_unsubscribe_exit", "/exit_criteria",
                      f"the journey sends messages but does not exit people who unsubscribe: add "
                      f"{{\"event\": \"{UNSUBSCRIBED_EVENT}\"}} to exit_criteria", sends[0])


def _strongly_connected(graph: dict[str, list[str]]) -> list[list[str]]:
    """Tarjan's strongly connected components, iteratively (a long chain of steps must not hit the
    recursion limit)."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    on_stack: set[str] = set()
    components: list[list[str]] = []
    for root in graph:
        if root in index:
            continue
        work = [(root, iter(graph[root]))]
        index[root] = low[root] = len(index)
        stack.append(root)
        on_stack.add(root)
        while work:
            node, children = work[-1]
            child = next(children, None)
            if child is not None:
                if child not in index:
                    index[child] = low[child] = len(index)
                    stack.append(child)
                    on_stack.add(child)
                    work.append((child, iter(graph[child])))
                elif child in on_stack:
                    low[node] = min(low[node], index[child])
                continue
            work.pop()
            if work:
                low[work[-1][0]] = min(low[work[-1][0]], low[node])
            if low[node] == index[node]:
                component = []
                while True:
                    member = stack.pop()
                    on_stack.discard(member)
                    component.append(member)
                    if member == node:
                        break
                components.append(component)
    return components


def _cycle_from(first: str, graph: dict[str, list[str]], within: set[str]) -> list[str]:
    """The steps of a shortest loop from `first` back to itself inside `within` (first included)."""
    came_from: dict[str, str] = {}
    todo = deque([first])
    while todo:
        node = todo.popleft()
        for target in graph[node]:
            if target == first:
                path = [node]
                while path[-1] != first:
                    path.append(came_from[path[-1]])
                return path[::-1]
            if target in within and target not in came_from:
                came_from[target] = node
                todo.append(target)
    return [first]


# --- evaluation ---------------------------------------------------------------------------------------------

_MISSING = object()


def evaluate_condition(cond: Condition, *, traits: dict, segments: set[str], loyalty: dict, context: dict,
                       opened: set[str]) -> bool:
    """Whether `cond` holds for a person with these traits, segment ids, loyalty facts (tier, points...),
    entry context (event properties) and ids of the send steps whose message they opened."""
    sources = {"trait": traits, "loyalty": loyalty, "event_property": context, "property": context}
    return _holds(cond, sources, segments, opened)


def matches(where: Sequence[Condition] | None, properties: dict) -> bool:
    """Whether an event with `properties` passes every `where` filter (no filter passes everything)."""
    sources = {"property": properties, "event_property": properties}
    return all(_holds(cond, sources, set(), set()) for cond in where or ())


def _holds(cond: Condition, sources: dict[str, dict], segments: set[str], opened: set[str]) -> bool:
    if isinstance(cond, AllOf):
        return all(_holds(c, sources, segments, opened) for c in cond.conditions)
    if isinstance(cond, AnyOf):
        return any(_holds(c, sources, segments, opened) for c in cond.conditions)
    if isinstance(cond, Not):
        return not _holds(cond.condition, sources, segments, opened)
    if isinstance(cond, InSegment):
        return (cond.segment_id in segments) == cond.member
    if isinstance(cond, Opened):
        return cond.step_id in opened
    return _compare(_lookup(sources.get(cond.source) or {}, cond.key), cond.op, cond.value)


def _lookup(data: dict, key: str) -> Any:
    """`data[key]`, or the nested value of a dotted key ("address.city"); _MISSING if there is none."""
    if key in data:
        return data[key]
    value: Any = data
    for part in key.split("."):
        if not isinstance(value, dict) or part not in value:
            return _MISSING
        value = value[part]
    return value


def _equal(a: Any, b: Any) -> bool:
    if isinstance(a, bool) or isinstance(b, bool):  # True == 1 in Python, not in JSON
        return type(a) is type(b) and a == b
    return a == b


def _number(value: Any) -> Decimal | None:
    if isinstance(value, bool):
        return None
    if isinstance(value, int | float | str):
        try:
            number = Decimal(str(value).strip())
        except InvalidOperation:
            return None
        return number if number.is_finite() else None
    return None


def _compare(actual: Any, op: str, expected: Any) -> bool:
    """`actual op expected`; a missing value is null: it exists not, equals only null and orders nowhere."""
    if actual is _MISSING:
        actual = None
    if op == "exists":
        return actual is not None
    if op == "not_exists":
        return actual is None
    if op == "eq":
        return _equal(actual, expected)
    if op == "neq":
        return not _equal(actual, expected)
    if op in ("in", "not_in"):
        values = actual if isinstance(actual, list) else [actual]
        found = actual is not None and any(_equal(v, e) for v in values for e in expected)
        return found if op == "in" else not found
    if op == "contains":
        if isinstance(actual, str) and isinstance(expected, str):
            return expected in actual
        return isinstance(actual, list) and any(_equal(v, expected) for v in actual)
    # gt / gte / lt / lte: numbers (numeric strings included) against a number, strings against a string
    if isinstance(expected, str):
        left, right = (actual, expected) if isinstance(actual, str) else (None, None)
    else:
        left, right = _number(actual), _number(expected)
    if left is None or right is None:
        return False
    return {"gt": left > right, "gte": left >= right, "lt": left < right, "lte": left <= right}[op]
