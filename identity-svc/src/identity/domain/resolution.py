"""Identity resolution: which profile each event belongs to, which identifiers are new, which
profiles merge. Pure: the repository feeds in what the database knows and applies the plan.

Rules (Segment + PostHog semantics):
- An event's identifiers are found among known ones; none known -> a new profile.
- Profiles found together merge only when at most one of them is identified (holds a strong
  identifier such as user_id or email): anonymous history folds into the known person.
- Two identified profiles are never merged silently; the event goes to the profile of its
  strongest identifier and weak identifiers (a shared device) stay where they were.
- A profile never gets a second value of a strong identifier type it already has.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable
from dataclasses import dataclass, field

# Identifier types that name a person; the rest (anonymous_id, device_id) name a browser/device.
STRONG_TYPES = ("user_id", "email", "phone", "member_id", "crm_id", "pos_card", "wechat_unionid",
                "wechat_openid")
_RANK = {t: i for i, t in enumerate(STRONG_TYPES)}

Key = tuple[str, str]  # (type, value)


def is_strong(key: Key) -> bool:
    return key[0] in _RANK


def normalise_email(value: str) -> str:
    return value.strip().lower()


@dataclass
class Merge:
    from_profile: str
    into_profile: str


@dataclass
class ResolutionPlan:
    event_profiles: list[str] = field(default_factory=list)
    new_profiles: list[str] = field(default_factory=list)
    new_identifiers: list[tuple[str, str, str]] = field(default_factory=list)  # type, value, profile
    merges: list[Merge] = field(default_factory=list)


class _State:
    """What is known so far: the database's view, updated as the batch is resolved in order."""

    def __init__(self, known: dict[Key, str], strong: dict[str, dict[str, set[str]]],
                 created: dict[str, int]) -> None:
        self.owner = dict(known)
        self.strong = {p: {t: set(v) for t, v in ts.items()} for p, ts in strong.items()}
        self.created = dict(created)  # profile -> order of creation, older first
        self.redirect: dict[str, str] = {}

    def find(self, profile: str) -> str:
        while profile in self.redirect:
            profile = self.redirect[profile]
        return profile

    def identified(self, profile: str) -> bool:
        return bool(self.strong.get(profile))

    def conflicts(self, profile: str, key: Key) -> bool:
        """True if `profile` already holds another value of this strong type."""
        held = self.strong.get(profile, {}).get(key[0])
        return bool(held) and key[1] not in held


def resolve(batch: Iterable[list[Key]], *, known: dict[Key, str], strong: dict[str, dict[str, set[str]]],
            created: dict[str, int], new_id: Callable[[], str]) -> ResolutionPlan:
    """Resolve events in order. `batch` holds each event's identifiers, strongest first."""
    state = _State(known, strong, created)
    plan = ResolutionPlan()
    counter = len(created)

    def assign(key: Key, profile: str) -> None:
        state.owner[key] = profile
        plan.new_identifiers.append((key[0], key[1], profile))
        if is_strong(key):
            state.strong.setdefault(profile, {}).setdefault(key[0], set()).add(key[1])

    for keys in batch:
        found = [state.find(state.owner[k]) for k in keys if k in state.owner]
        profiles = list(dict.fromkeys(found))
        identified = [p for p in profiles if state.identified(p)]
        if not profiles:
            target = new_id()
            counter += 1
            state.created[target] = counter
            plan.new_profiles.append(target)
        elif len(identified) <= 1:
            target = identified[0] if identified else min(profiles, key=lambda p: state.created.get(p, 0))
            for other in profiles:
                if other != target:
                    plan.merges.append(Merge(other, target))
                    state.redirect[other] = target
                    for t, values in state.strong.pop(other, {}).items():
                        state.strong.setdefault(target, {}).setdefault(t, set()).update(values)
        else:
            # Two known people meet on one event: the strongest identifier decides, nothing merges.
            strongest = next(k for k in keys if k in state.owner and is_strong(k))
            target = state.find(state.owner[strongest])
        new_strong = [k for k in keys if k not in state.owner and is_strong(k)]
        if any(state.conflicts(target, k) for k in new_strong):
            # A different person on a known device/profile: give them a profile of their own.
            target = new_id()
            counter += 1
            state.created[target] = counter
            plan.new_profiles.append(target)
        for k in keys:
            if k not in state.owner:
                assign(k, target)
        plan.event_profiles.append(target)
    # Collapse merge chains so every merge points at a surviving profile.
    plan.merges = [Merge(m.from_profile, state.find(m.into_profile)) for m in plan.merges]
    plan.event_profiles = [state.find(p) for p in plan.event_profiles]
    plan.new_identifiers = [(t, v, state.find(p)) for t, v, p in plan.new_identifiers]
    return plan
