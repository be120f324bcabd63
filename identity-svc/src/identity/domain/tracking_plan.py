"""A tenant's tracking plan: a JSON Schema (Draft 2020-12) for the properties of each planned track
event and one for identify traits. Events that break it are blocked (rejected) or flagged (stored,
counted), as the plan's mode says.

Plan JSON: {"mode": "block"|"flag", "events": {"Order Completed": <schema>, ...},
            "traits": <schema>|null, "allow_unplanned": true|false}
Only track calls (by event name) and identify calls (traits) are checked; the other call types pass.
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

import orjson
from jsonschema import Draft202012Validator
from jsonschema.exceptions import SchemaError, best_match
from referencing.exceptions import Unresolvable

from identity.domain.calls import Call
from mcloud_common.errors import InvalidArgument

MODES = ("block", "flag")
IDENTIFY = "$identify"  # the event name violations of the traits schema are counted under
_PLAN_KEYS = {"mode", "events", "traits", "allow_unplanned"}
_REF_KEYWORDS = ("$ref", "$dynamicRef")
MAX_EVENTS = 2000


@dataclass(frozen=True)
class Violation:
    """What one call broke: the event it is counted under and a detail naming the failing path."""

    event: str
    detail: str


@dataclass(frozen=True)
class TrackingPlan:
    mode: str
    allow_unplanned: bool
    events: dict[str, Draft202012Validator]
    traits: Draft202012Validator | None
    source: dict[str, Any]  # the plan as stored, defaults filled in

    @property
    def blocks(self) -> bool:
        return self.mode == "block"

    def to_json(self) -> str:
        return orjson.dumps(self.source).decode()

    def check(self, call: Call) -> Violation | None:
        """The violation of one call, or None when it conforms."""
        if call.type == "track":
            validator = self.events.get(call.name)
            if validator is None:
                if self.allow_unplanned:
                    return None
                return Violation(call.name, f"event {call.name!r} is not in the tracking plan")
            # properties_json is a validated JSON object; parsed only for planned events
            return _violation(validator, call.name, "properties", orjson.loads(call.properties_json))
        if call.type == "identify" and self.traits is not None:
            return _violation(self.traits, IDENTIFY, "traits", call.traits)
        return None


def _violation(validator: Draft202012Validator, event: str, root: str, instance: Any) -> Violation | None:
    try:
        if validator.is_valid(instance):
            return None
        error = best_match(validator.iter_errors(instance))
    except Unresolvable as exc:  # a local $ref that points nowhere: the plan is wrong, not the event
        return Violation(event, f"{root}: the plan's schema cannot be applied ({exc})")
    path = error.json_path  # "$", "$.revenue", "$.products[0]"
    return Violation(event, f"{root}{path[1:]}: {error.message}"[:500])


def _schema_problem(schema: Any, where: str) -> str | None:
    if not isinstance(schema, (dict, bool)):
        return f"{where} must be a JSON Schema (an object or a boolean)"
    try:
        Draft202012Validator.check_schema(schema)
    except SchemaError as exc:
        return f"{where}{exc.json_path[1:]}: {exc.message}"
    for ref in _refs(schema):
        if not ref.startswith("#"):  # never fetched: validation must not depend on the network
            return f"{where}: only local references (#...) are allowed, not {ref!r}"
    return None


def _refs(node: Any) -> Iterator[str]:
    if isinstance(node, dict):
        for key, value in node.items():
            if key in _REF_KEYWORDS and isinstance(value, str):
                yield value
            else:
                yield from _refs(value)
    elif isinstance(node, list):
        for item in node:
            yield from _refs(item)


def _invalid(reason: str) -> InvalidArgument:
    return InvalidArgument(f"invalid tracking plan: {reason}", code="invalid_tracking_plan")


def parse_plan(text: str) -> TrackingPlan | None:
    """The plan in `text` (None for an empty text: no plan); InvalidArgument "invalid_tracking_plan"
    with the reason when it is not one."""
    if not text.strip():
        return None
    try:
        raw = orjson.loads(text)
    except orjson.JSONDecodeError as exc:
        raise _invalid(f"not valid JSON ({exc})") from None
    if not isinstance(raw, dict):
        raise _invalid("the plan must be a JSON object")
    unknown = sorted(set(raw) - _PLAN_KEYS)
    if unknown:
        raise _invalid(f"unknown keys {unknown}; a plan has {sorted(_PLAN_KEYS)}")
    mode = raw.get("mode", "flag")
    if mode not in MODES:
        raise _invalid(f"mode must be 'block' or 'flag', not {mode!r}")
    allow_unplanned = raw.get("allow_unplanned", True)
    if not isinstance(allow_unplanned, bool):
        raise _invalid("allow_unplanned must be true or false")
    events = raw.get("events", {})
    if not isinstance(events, dict):
        raise _invalid("events must be an object of event name -> JSON Schema of its properties")
    if len(events) > MAX_EVENTS:
        raise _invalid(f"at most {MAX_EVENTS} events")
    traits = raw.get("traits")
    problems = [p for p in (
        *(_schema_problem(schema, f"events[{name!r}]") for name, schema in events.items()),
        _schema_problem(traits, "traits") if traits is not None else None,
    ) if p]
    if any(not name for name in events):
        problems.insert(0, "event names must not be empty")
    if problems:
        raise _invalid("; ".join(problems[:5]))
    return compile_plan({"mode": mode, "events": events, "traits": traits, "allow_unplanned": allow_unplanned})


def compile_plan(source: dict[str, Any]) -> TrackingPlan:
    """A plan from its stored (already checked) form."""
    checker = Draft202012Validator.FORMAT_CHECKER
    traits = source.get("traits")
    return TrackingPlan(
        mode=source["mode"],
        allow_unplanned=source["allow_unplanned"],
        events={name: Draft202012Validator(schema, format_checker=checker)
                for name, schema in source["events"].items()},
        traits=Draft202012Validator(traits, format_checker=checker) if traits is not None else None,
        source=source,
    )
