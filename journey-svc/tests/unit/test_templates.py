"""The lifecycle journey templates shipped in journey-svc/templates: each file is a wrapper {name, description,
variables, definition}; with its `{{placeholders}}` filled (dummy UUIDs and names, or the declared defaults) the
definition validates without errors or warnings, every declared variable is used and every placeholder used is
declared, and each template enters the way its name promises."""

from __future__ import annotations

import re
import uuid
from pathlib import Path
from typing import Any

import orjson
import pytest

from journey.domain.definition import parse_duration, validate

TEMPLATES = Path(__file__).resolve().parents[2] / "templates"
PLACEHOLDER = re.compile(r"\{\{([a-z][a-z0-9_]*)\}\}")
WRAPPER_KEYS = {"name", "description", "variables", "definition"}
VARIABLE_TYPES = ("uuid", "template", "string", "duration", "date", "datetime")

# file stem -> (entry type, entry fields that must hold)
EXPECTED_ENTRY: dict[str, tuple[str, dict[str, Any]]] = {
    "welcome-first-purchase": ("event", {"event": "Signed Up"}),
    "repeat-purchase": ("event", {"event": "Order Completed", "key": "order_id"}),
    "tier-upgrade-congratulation": ("tier_change", {"direction": "upgrade"}),
    "coupon-expiry-reminder": ("event", {"event": "coupon.expiring"}),
    "replenishment-reminder": ("event", {"event": "Order Completed", "key": "order_id"}),
    "win-back-dormant": ("segment", {"segment_id": "{{dormant_segment_id}}"}),
    "double11-warm-up": ("schedule", {"every": "once"}),
}

# Event names from docs/events.md the templates may react to (a typo here would never fire).
KNOWN_EVENTS = {"Signed Up", "Order Completed", "Order Refunded", "Order Cancelled", "Product Shared",
                "message.opened", "message.clicked", "message.unsubscribed", "tier.changed", "coupon.expiring",
                "coupon.redeemed", "points.expiring"}

DUMMY = {"template": lambda name: f"tpl-{name.replace('_', '-')}", "string": lambda name: f"dummy-{name}",
         "duration": lambda _: "P9D", "date": lambda _: "2030-10-20",
         "datetime": lambda _: "2030-11-04T10:00:00+08:00",
         "uuid": lambda name: str(uuid.uuid5(uuid.NAMESPACE_URL, f"journey-template:{name}"))}


def _files() -> list[Path]:
    return sorted(TEMPLATES.glob("*.json"))


def _load(path: Path) -> dict:
    return orjson.loads(path.read_bytes())


def _placeholders(node: Any) -> set[str]:
    if isinstance(node, str):
        return set(PLACEHOLDER.findall(node))
    if isinstance(node, dict):
        return set().union(*(_placeholders(v) for v in node.values()), *(_placeholders(k) for k in node))
    if isinstance(node, list):
        return set().union(*(_placeholders(v) for v in node))
    return set()


def _fill(node: Any, values: dict[str, str]) -> Any:
    if isinstance(node, str):
        return PLACEHOLDER.sub(lambda m: values[m.group(1)], node)
    if isinstance(node, dict):
        return {k: _fill(v, values) for k, v in node.items()}
    if isinstance(node, list):
        return [_fill(v, values) for v in node]
    return node


def _dummy_values(variables: dict) -> dict[str, str]:
    return {name: DUMMY[spec["type"]](name) for name, spec in variables.items()}


def _default_values(variables: dict) -> dict[str, str]:
    return {name: spec.get("default", DUMMY[spec["type"]](name)) for name, spec in variables.items()}


def _known(variables: dict, values: dict[str, str], kind: str) -> set[str]:
    return {values[name] for name, spec in variables.items() if spec["type"] == kind}


def _events(definition: dict) -> set[str]:
    names = {definition["entry"].get("event"), (definition.get("goal") or {}).get("event")}
    names |= {c.get("event") for c in definition.get("exit_criteria", [])}
    names |= {s.get("event") for s in definition["steps"] if s["type"] == "wait_for_event"}
    return names - {None}


def test_every_template_is_shipped():
    assert {p.stem for p in _files()} == set(EXPECTED_ENTRY)
    readme = (TEMPLATES / "README.md").read_text()
    for stem in EXPECTED_ENTRY:
        assert f"{stem}.json" in readme


@pytest.mark.parametrize("path", _files(), ids=lambda p: p.stem)
def test_wrapper_shape(path):
    doc = _load(path)
    assert set(doc) == WRAPPER_KEYS
    assert isinstance(doc["name"], str) and doc["name"].strip()
    assert isinstance(doc["description"], str) and len(doc["description"]) > 40
    assert not {"name", "description"} & set(doc["definition"])
    for name, spec in doc["variables"].items():
        assert re.fullmatch(r"[a-z][a-z0-9_]*", name), name
        assert spec["type"] in VARIABLE_TYPES, name
        assert isinstance(spec["description"], str) and spec["description"].strip(), name
        assert set(spec) <= {"type", "description", "default"}, name
        if spec["type"] == "duration" and "default" in spec:
            parse_duration(spec["default"])


@pytest.mark.parametrize("path", _files(), ids=lambda p: p.stem)
def test_variables_declared_and_used(path):
    doc = _load(path)
    used = _placeholders(doc["definition"])
    assert used == set(doc["variables"]), (
        f"declared but unused: {sorted(set(doc['variables']) - used)}; used but undeclared: "
        f"{sorted(used - set(doc['variables']))}")
    # nothing placeholder-like that the pattern misses (a typo such as "{{ program_id}}" or "{program_id}")
    text = orjson.dumps(doc["definition"]).decode()
    assert text.count("{{") == text.count("}}") == len(PLACEHOLDER.findall(text))


@pytest.mark.parametrize("fill", [_dummy_values, _default_values], ids=["dummy", "defaults"])
@pytest.mark.parametrize("path", _files(), ids=lambda p: p.stem)
def test_filled_template_validates(path, fill):
    doc = _load(path)
    values = fill(doc["variables"])
    definition = _fill(doc["definition"], values)
    assert not _placeholders(definition)
    # Every template and segment the journey names must be one of its variables.
    result = validate(orjson.dumps(definition).decode(), templates=_known(doc["variables"], values, "template"),
                      segments=_known(doc["variables"], values, "uuid"))
    assert result.errors == []
    assert result.warnings == []
    assert result.definition is not None


@pytest.mark.parametrize("path", _files(), ids=lambda p: p.stem)
def test_entry_as_described(path):
    doc = _load(path)
    entry = doc["definition"]["entry"]
    kind, fields = EXPECTED_ENTRY[path.stem]
    assert entry["type"] == kind
    for key, value in fields.items():
        assert entry.get(key) == value, key


@pytest.mark.parametrize("path", _files(), ids=lambda p: p.stem)
def test_events_are_catalogued_and_unsubscribes_exit(path):
    definition = _load(path)["definition"]
    assert _events(definition) <= KNOWN_EVENTS
    assert {"event": "message.unsubscribed"} in definition["exit_criteria"]


def test_templates_carry_the_described_features():
    steps = {p.stem: _load(p)["definition"]["steps"] for p in _files()}
    docs = {p.stem: _load(p)["definition"] for p in _files()}

    def kinds(stem):
        return {s["type"] for s in steps[stem]}

    assert docs["welcome-first-purchase"]["holdout_percent"] == 10
    assert docs["welcome-first-purchase"]["goal"]["event"] == "Order Completed"
    assert {"send", "wait_for_event", "issue_coupon"} <= kinds("welcome-first-purchase")
    assert {"award_points", "issue_coupon"} <= kinds("repeat-purchase")
    assert any(s.get("best_send_time") for s in steps["tier-upgrade-congratulation"])
    assert any(s["type"] == "send" and s["channel"] == "best" for s in steps["tier-upgrade-congratulation"])
    assert "award_points" in kinds("tier-upgrade-congratulation")
    assert any(s.get("event") == "coupon.redeemed" and s.get("match_key") == "code" and s.get("timeout") == "P3D"
               for s in steps["coupon-expiry-reminder"])
    assert any(s["type"] == "send" and s["channel"] == "sms" for s in steps["coupon-expiry-reminder"])
    assert docs["replenishment-reminder"]["entry"]["where"]
    assert any(s["type"] == "wait" and s.get("duration") == "{{replenish_after}}"
               for s in steps["replenishment-reminder"])
    assert any(s.get("event") == "message.opened" and s.get("timeout") == "P3D" for s in steps["win-back-dormant"])
    assert any(s["type"] == "send" and s["channel"] == "sms" for s in steps["win-back-dormant"])
    d11 = {s["id"]: s for s in steps["double11-warm-up"]}
    route = d11[docs["double11-warm-up"]["start"]]
    assert route["type"] == "condition"
    assert [b["when"]["segment"] for b in route["branches"]] == [
        "{{new_leads_segment_id}}", "{{active_segment_id}}", "{{dormant_segment_id}}"]
    assert any(s["type"] == "wait" and s.get("until") == "{{reminder_at}}" for s in d11.values())
    assert any(s.get("event") == "Product Shared" for s in d11.values())
    assert {"issue_coupon", "send", "wait_for_event"} <= kinds("double11-warm-up")
