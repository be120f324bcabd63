"""Moving one enrollment through a (validated) journey definition, pure: from where it is to the next
point where it must wait, with the side effects to perform on the way.

The same state and time always give the same result (random splits draw from a hash of enrollment
and step), so a worker that dies after performing effects but before saving the new state re-runs
the same path and repeats the same effects with the same idempotency keys: the receiving services
apply each once. Holdout enrollments travel the same path (so their conversion windows match) but
perform no effects.
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

import orjson

from journey.domain import definition as grammar
from journey.domain.definition import parse_duration

MAX_STEPS_PER_RUN = 200
EFFECT_TYPES = ("send", "webhook", "update_profile", "award_points", "issue_coupon")


@dataclass
class State:
    """Where an enrollment is: its step, whether it is waiting there (`waiting_until`), its visit
    counts per step (idempotency keys of repeated visits differ), its entry context."""

    enrollment_id: str
    step_id: str
    context: dict
    visits: dict[str, int] = field(default_factory=dict)
    waiting_until: datetime | None = None
    waiting_for: str = ""
    holdout: bool = False
    # set by the event path: the awaited event came (wait_for_event continues by `next`)
    event_arrived: bool = False


@dataclass
class Effect:
    kind: str
    step_id: str
    key: str
    spec: dict


@dataclass
class Outcome:
    status: str = "active"  # active / completed / exited
    exit_reason: str = ""
    step_id: str = ""
    due_at: datetime | None = None
    waiting_until: datetime | None = None
    waiting_for: str = ""
    effects: list[Effect] = field(default_factory=list)
    # (step_id, step_type, outcome) for the trace and the per-step counts
    log: list[tuple[str, str, str]] = field(default_factory=list)
    visits: dict[str, int] = field(default_factory=dict)


def draw(enrollment_id: str, step_id: str) -> float:
    """A stable number in [0, 100) for this enrollment at this step."""
    digest = hashlib.blake2b(f"{enrollment_id}:{step_id}".encode(), digest_size=8).digest()
    return int.from_bytes(digest, "big") % 10_000 / 100


def holdout_draw(enrollment_key: str) -> float:
    return draw(enrollment_key, "holdout")


def advance(definition: dict, state: State, now: datetime, facts: dict | None = None,
            parsed: grammar.Definition | None = None) -> Outcome:
    """Run from `state` as of `now` until the enrollment must wait or ends. `parsed` is the validated
    definition (its conditions are evaluated by the grammar's own evaluator); parsed here if absent."""
    if parsed is None:
        parsed = grammar.validate(orjson.dumps(definition).decode()).definition
    steps = {s["id"]: s for s in definition["steps"]}
    visits = dict(state.visits)
    out = Outcome(visits=visits)
    step_id = state.step_id or definition["start"]
    resuming = state.waiting_until is not None or bool(state.waiting_for)
    facts = facts or {"context": state.context}
    if not state.step_id and state.context.get("_local_at"):
        # a scheduled entry: first wait for the occurrence's local time in the person's time zone
        if not resuming:
            until = local_time(state.context["_local_at"], facts)
            if until > now:
                return _waiting(out, "", until, "")
        resuming = False
    for _ in range(MAX_STEPS_PER_RUN):
        step = steps.get(step_id)
        if step is None:  # a published definition never names a missing step; be safe
            out.status, out.exit_reason, out.step_id = "exited", "error", step_id
            return out
        kind = step["type"]
        if not resuming:
            visits[step_id] = visits.get(step_id, 0) + 1
        nxt = step.get("next")
        if kind == "wait":
            if not resuming:
                until = _wait_until(step, now, facts)
                if until > now:
                    return _waiting(out, step_id, until, "")
            resuming = False
            out.log.append((step_id, kind, "next"))
        elif kind == "wait_for_event":
            if not resuming:
                until = now + parse_duration(step["timeout"])
                return _waiting(out, step_id, until, step["event"])
            resuming = False
            if state.event_arrived:
                out.log.append((step_id, kind, "event"))
            else:
                out.log.append((step_id, kind, "timeout"))
                nxt = step.get("timeout_next")
        elif kind == "condition":
            nxt, label = step.get("else"), "else"
            for branch in parsed.steps[step_id].branches:
                if holds(branch.when, facts):
                    nxt, label = branch.next, branch.label
                    break
            out.log.append((step_id, kind, label))
        elif kind in ("random_split", "ab_test"):
            branches = step.get("branches") or step.get("variants") or []
            winner = facts.get("ab_winners", {}).get(step_id) if kind == "ab_test" else None
            chosen = pick(branches, draw(state.enrollment_id, step_id), winner, step.get("winner_share", 100))
            nxt = chosen["next"]
            out.log.append((step_id, kind, label_of(branches, chosen)))
        elif kind in EFFECT_TYPES:
            if not state.holdout:
                key = f"journey:{state.enrollment_id}:{step_id}:{visits.get(step_id, 1)}"
                out.effects.append(Effect(kind, step_id, key, step))
            out.log.append((step_id, kind, "held_out" if state.holdout else "done"))
        elif kind == "jump":
            nxt = step["to"]
            out.log.append((step_id, kind, "next"))
        elif kind == "exit":
            out.log.append((step_id, kind, "exit"))
            out.status, out.step_id = "completed", step_id
            return out
        if not nxt:  # the end of a branch completes the journey
            out.status, out.step_id = "completed", step_id
            return out
        step_id = nxt
    out.status, out.exit_reason, out.step_id = "exited", "error", step_id  # ran round too long without waiting
    return out


def holds(cond: grammar.Condition, facts: dict) -> bool:
    """A parsed condition over the facts the worker gathered."""
    return grammar.evaluate_condition(cond, traits=facts.get("traits", {}), segments=facts.get("segments", set()),
                                      loyalty=facts.get("loyalty", {}), context=facts.get("context", {}),
                                      opened=facts.get("opened", set()))


def label_of(branches: list[dict], branch: dict) -> str:
    """A branch's label: its own, else A, B, C... by position (as the validator names them)."""
    return branch.get("label") or chr(ord("A") + branches.index(branch))


def pick(branches: list[dict], roll: float, winner: str | None = None, winner_share: float = 100) -> dict:
    """The branch a roll in [0, 100) lands in, by the branches' percents; once an A/B test has a
    `winner` (a label), it takes `winner_share` percent and the others share the rest by their percents."""
    won = next((b for b in branches if label_of(branches, b) == winner), None) if winner else None
    if won is None:
        return _landing(branches, roll)
    others = [b for b in branches if b is not won]
    if roll < winner_share or not others:
        return won
    scaled = (roll - winner_share) / (100 - winner_share) * 100
    total = sum(b["percent"] for b in others) or 1
    return _landing([{**b, "percent": b["percent"] * 100 / total} for b in others], scaled, others)


def _landing(branches: list[dict], roll: float, originals: list[dict] | None = None) -> dict:
    """The branch `roll` falls in (returned from `originals`, the same positions, when given)."""
    originals = originals or branches
    acc = 0.0
    for branch, original in zip(branches, originals, strict=True):
        acc += branch["percent"]
        if roll < acc:
            return original
    return originals[-1]


def local_time(local: str, facts: dict) -> datetime:
    """`local` (YYYY-MM-DDTHH:MM) in the person's time zone (trait `timezone` or `time_zone`; UTC when
    unknown or invalid)."""
    name = str(facts.get("traits", {}).get("timezone") or facts.get("traits", {}).get("time_zone") or "UTC")
    try:
        tz = ZoneInfo(name)
    except (ZoneInfoNotFoundError, ValueError):
        tz = ZoneInfo("UTC")
    return datetime.fromisoformat(local).replace(tzinfo=tz)


def _waiting(out: Outcome, step_id: str, until: datetime, event: str) -> Outcome:
    out.step_id, out.due_at, out.waiting_until, out.waiting_for = step_id, until, until, event
    return out


def _wait_until(step: dict, now: datetime, facts: dict) -> datetime:
    if "duration" in step:
        return now + parse_duration(step["duration"])
    if "until" in step:
        return datetime.fromisoformat(step["until"])
    if "until_trait" in step:
        raw = facts.get("traits", {}).get(step["until_trait"])
        try:
            base = datetime.fromisoformat(str(raw))
        except ValueError:
            return now
        if base.tzinfo is None:
            base = base.replace(tzinfo=now.tzinfo)
        return base + (parse_duration(step["offset"]) if step.get("offset") else timedelta())
    if step.get("best_send_time"):
        # the person's next best hour (from messaging's GetBestSendTime), never later than `within`
        best = facts.get("best_send_at")
        latest = now + parse_duration(step.get("within") or "P7D")
        return min(best, latest) if best is not None and best > now else now
    return now
