"""Identity resolution: which profile each event belongs to, which identifiers are new, which
profiles merge. Pure: the repository feeds in what the database knows and applies the plan.

Each event brings identifiers (type, value), already normalised, junk removed, strongest first
(by the tenant's per-type priority). They are taken greedily in priority order: an identifier joins
the event's identity set only if the set can still live on ONE profile, that is
- at most one identified profile is involved (holds a strong identifier such as user_id or email):
  two known people are never merged silently (PostHog semantics); anonymous history folds into
  the known person;
- no type's limit per profile (1 user_id, 1 email, 5 devices, ...) is exceeded by the union
  (Segment semantics: the lowest-priority identifier is dropped instead of merging).
A dropped identifier that is already known stays where it is (a shared device keeps its first
owner); a dropped new one is not stored. The event goes to the surviving profile of its set: the
identified one, else the oldest; a set of unknown identifiers makes a new profile.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable
from dataclasses import dataclass, field

from identity.domain.settings import TenantSettings

Key = tuple[str, str]  # (type, value)


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
    # Per event, the identifiers left out (they would have broken a limit or glued two people).
    dropped: list[list[Key]] = field(default_factory=list)


class _State:
    """What is known so far: the database's view, updated as the batch is resolved in order."""

    def __init__(self, settings: TenantSettings, known: dict[Key, str], counts: dict[str, dict[str, int]],
                 created: dict[str, int]) -> None:
        self.settings = settings
        self.owner = dict(known)
        self.counts = {p: dict(c) for p, c in counts.items()}
        self.created = dict(created)  # profile -> order of creation, older first
        self.redirect: dict[str, str] = {}

    def find(self, profile: str) -> str:
        while profile in self.redirect:
            profile = self.redirect[profile]
        return profile

    def strong(self, type_: str) -> bool:
        rule = self.settings.rule(type_)
        return rule is None or rule.strong

    def limit(self, type_: str) -> int:
        rule = self.settings.rule(type_)
        return rule.limit if rule is not None else 1

    def identified(self, profile: str) -> bool:
        return any(n and self.strong(t) for t, n in self.counts.get(profile, {}).items())

    def take(self, keys: list[Key]) -> tuple[list[Key], list[Key], list[str]]:
        """Greedy in priority order: (taken, dropped, profiles of the taken known identifiers). An
        identifier is taken if the taken set can still be one profile: at most one identified
        profile, and no type past its limit (only growth is judged: a profile already past a limit,
        after an audited manual merge, still resolves)."""
        taken: list[Key] = []
        dropped: list[Key] = []
        found: list[str] = []
        total: dict[str, int] = {}
        largest: dict[str, int] = {}
        identified = False
        for k in keys:
            owner = self.owner.get(k)
            if owner is None:
                t = k[0]
                if total.get(t, 0) + 1 > max(self.limit(t), largest.get(t, 0)):
                    dropped.append(k)
                    continue
                total[t] = total.get(t, 0) + 1
                taken.append(k)
                continue
            p = self.find(owner)
            if p in found:
                taken.append(k)
                continue
            p_identified = self.identified(p)
            held = self.counts.get(p, {})
            if (identified and p_identified) or any(
                    total.get(t, 0) + n > max(self.limit(t), largest.get(t, 0), n) for t, n in held.items()):
                dropped.append(k)
                continue
            for t, n in held.items():
                total[t] = total.get(t, 0) + n
                largest[t] = max(largest.get(t, 0), n)
            identified = identified or p_identified
            found.append(p)
            taken.append(k)
        return taken, dropped, found

    def survivor(self, profiles: list[str]) -> str:
        identified = [p for p in profiles if self.identified(p)]
        if identified:
            return identified[0]
        return min(profiles, key=lambda p: self.created.get(p, 0))

    def fold(self, other: str, into: str) -> None:
        self.redirect[other] = into
        mine = self.counts.setdefault(into, {})
        for t, n in self.counts.pop(other, {}).items():
            mine[t] = mine.get(t, 0) + n


def resolve(batch: Iterable[list[Key]], *, settings: TenantSettings, known: dict[Key, str],
            counts: dict[str, dict[str, int]], created: dict[str, int], new_id: Callable[[], str]) -> ResolutionPlan:
    """Resolve events in order. `batch` holds each event's identifiers, strongest first; `known` maps
    identifiers to their (possibly merged-away) profile, `counts` the identifiers per type of each
    profile involved, `created` their creation order."""
    state = _State(settings, known, counts, created)
    plan = ResolutionPlan()
    counter = len(created)

    for keys in batch:
        owners = {state.owner.get(k) for k in keys}
        if None not in owners and len(owners) == 1:
            # the usual case, a returning person: every identifier known, all on one profile
            plan.event_profiles.append(state.find(next(iter(owners))))
            plan.dropped.append([])
            continue
        taken, dropped, found = state.take(keys)
        if found:
            target = state.survivor(found)
            for other in found:
                if other != target:
                    plan.merges.append(Merge(other, target))
                    state.fold(other, target)
        else:
            target = new_id()
            counter += 1
            state.created[target] = counter
            plan.new_profiles.append(target)
        for k in taken:
            if k not in state.owner:
                state.owner[k] = target
                plan.new_identifiers.append((k[0], k[1], target))
                held = state.counts.setdefault(target, {})
                held[k[0]] = held.get(k[0], 0) + 1
        plan.event_profiles.append(target)
        plan.dropped.append(dropped)
    # Collapse merge chains so every merge points at a surviving profile.
    plan.merges = [Merge(m.from_profile, state.find(m.into_profile)) for m in plan.merges]
    plan.event_profiles = [state.find(p) for p in plan.event_profiles]
    plan.new_identifiers = [(t, v, state.find(p)) for t, v, p in plan.new_identifiers]
    return plan
