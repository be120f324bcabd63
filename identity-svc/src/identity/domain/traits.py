"""Trait conflicts: which write of a trait wins when several sources disagree.

A profile keeps, next to each trait, where its current value came from and when
(`traits_meta[key] = {"source": ..., "at": ISO-8601}`). A write replaces the current state of a key
when its source ranks better (smaller rank; unknown sources rank after every listed one), or ranks
the same and is not older. So a CRM value is never overwritten by the website, and an identify call
that arrives late (older event time) does not undo a newer one. A null value removes the trait under
the same rules; its provenance stays in traits_meta (a key with meta but no value was removed), so a
stale write from a weaker or older source cannot bring it back.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

_OLDEST = datetime.min.replace(tzinfo=UTC)


@dataclass(frozen=True)
class TraitWrite:
    key: str
    value: Any  # None removes the trait
    source: str
    at: datetime


@dataclass
class TraitsResult:
    traits: dict
    meta: dict
    changed: bool  # traits (values) changed
    meta_changed: bool


def iso(at: datetime) -> str:
    """Fixed-width UTC ISO-8601 (microseconds, +00:00): sorts as text, casts to timestamptz."""
    if at.tzinfo is None:
        at = at.replace(tzinfo=UTC)
    return at.astimezone(UTC).isoformat(timespec="microseconds")


def parse_iso(text: object) -> datetime | None:
    """The aware datetime in an ISO-8601 string, None when it is not one."""
    if not isinstance(text, str):
        return None
    try:
        at = datetime.fromisoformat(text)
    except ValueError:
        return None
    return at if at.tzinfo is not None else at.replace(tzinfo=UTC)


def rank_of(rank: Mapping[str, int], source: str) -> int:
    """Smaller is stronger; a source not in the tenant's list ranks after every listed one."""
    return rank.get(source, len(rank))


def wins(write: TraitWrite, current: object, rank: Mapping[str, int]) -> bool:
    """Whether `write` replaces a key whose provenance is `current` (None: no provenance known)."""
    if not isinstance(current, dict):  # stored provenance is a JSON object; anything else is none
        return True
    new_rank, old_rank = rank_of(rank, write.source), rank_of(rank, str(current.get("source", "")))
    if new_rank != old_rank:
        return new_rank < old_rank
    return write.at >= (parse_iso(current.get("at")) or _OLDEST)


def _same(a: Any, b: Any) -> bool:
    return type(a) is type(b) and a == b  # 1 == True in Python, not in JSON


def apply_writes(traits: Mapping[str, Any], meta: Mapping[str, Any], writes: Iterable[TraitWrite],
                 rank: Mapping[str, int]) -> TraitsResult:
    """Apply `writes` in order to a profile's traits and their provenance (inputs are not modified)."""
    out_traits, out_meta = dict(traits), dict(meta)
    changed = meta_changed = False
    for w in writes:
        if not wins(w, out_meta.get(w.key), rank):
            continue
        provenance = {"source": w.source, "at": iso(w.at)}
        if out_meta.get(w.key) != provenance:
            out_meta[w.key] = provenance
            meta_changed = True
        if w.value is None:
            if w.key in out_traits:
                del out_traits[w.key]
                changed = True
        elif w.key not in out_traits or not _same(out_traits[w.key], w.value):
            out_traits[w.key] = w.value
            changed = True
    return TraitsResult(out_traits, out_meta, changed, meta_changed)
