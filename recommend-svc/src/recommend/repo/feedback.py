"""Feedback: the interactions log (once per event id), the carts and intents it moves, clicks on served
recommendations and the purchases that convert them; and a person's state as serving reads it."""

from __future__ import annotations

import uuid
from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import datetime, timedelta

import asyncpg

from mcloud.events.v1 import recommend_events_pb2 as rev
from mcloud_common.ids import parse_uuid
from recommend.domain.config import ADD_TO_CART, CLICK, DISMISS, PURCHASE, REMOVE_FROM_CART, Config
from recommend.domain.intent import Signal
from recommend.repo import events


@dataclass(frozen=True)
class Row:
    event_id: str
    person: str
    item_id: str
    kind: int
    weight: float
    occurred_at: datetime
    quantity: int = 1
    recommendation_id: str = ""
    anonymous_id: str = ""  # the device id of a profile's event: remembered as an alias of the profile


@dataclass
class PersonState:
    """What serving needs to know about a person (one or more person keys read together)."""

    keys: list[str]
    resolved: str = ""  # the profile an anonymous-only request was recognised as (via an alias), else keys[0]
    history: list[Signal] = field(default_factory=list)  # newest first
    cart: dict[str, datetime] = field(default_factory=dict)
    purchases: dict[str, datetime] = field(default_factory=dict)  # item -> last bought
    dismissed: dict[str, datetime] = field(default_factory=dict)
    # (item_id, category, score, cross_categories, locked_at, expires_at) of a lock in force
    intent: tuple | None = None

    @property
    def known(self) -> bool:
        return bool(self.history or self.cart or self.purchases)


_INSERT = """
    INSERT INTO interactions (tenant_id, event_id, person, item_id, kind, weight, quantity, recommendation_id,
                              occurred_at)
    SELECT $1, * FROM unnest($2::text[], $3::text[], $4::text[], $5::smallint[], $6::real[], $7::int[], $8::text[],
                             $9::timestamptz[])
    ON CONFLICT (tenant_id, event_id) DO NOTHING
    RETURNING event_id
"""


async def record(conn: asyncpg.Connection, tenant: str, rows: Sequence[Row], config: Config, *, shards: int
                 ) -> list[Row]:
    """Store `rows` (inside the caller's transaction); the ones not seen before, whose effects were applied."""
    if not rows:
        return []
    unique = list({r.event_id: r for r in rows}.values())
    inserted = {r["event_id"] for r in await conn.fetch(
        _INSERT, tenant, [r.event_id for r in unique], [r.person for r in unique], [r.item_id for r in unique],
        [r.kind for r in unique], [r.weight for r in unique], [r.quantity for r in unique],
        [r.recommendation_id for r in unique], [r.occurred_at for r in unique])}
    new = [r for r in unique if r.event_id in inserted]
    aliases = {r.anonymous_id: r for r in new if r.anonymous_id and not r.person.startswith(events.ANON)}
    if aliases:
        await conn.execute(
            "INSERT INTO person_aliases (tenant_id, anonymous_id, person, updated_at) "
            "SELECT $1, * FROM unnest($2::text[], $3::text[], $4::timestamptz[]) "
            "ON CONFLICT (tenant_id, anonymous_id) DO UPDATE SET person = EXCLUDED.person, "
            "updated_at = EXCLUDED.updated_at WHERE person_aliases.updated_at <= EXCLUDED.updated_at",
            tenant, list(aliases), [r.person for r in aliases.values()], [r.occurred_at for r in aliases.values()])
    if not new:
        return []
    added = [r for r in new if r.kind == ADD_TO_CART]
    if added:
        await conn.execute(
            "INSERT INTO carts (tenant_id, person, item_id, added_at) "
            "SELECT $1, * FROM unnest($2::text[], $3::text[], $4::timestamptz[]) "
            "ON CONFLICT (tenant_id, person, item_id) DO UPDATE SET added_at = least(carts.added_at, "
            "EXCLUDED.added_at)",
            tenant, [r.person for r in added], [r.item_id for r in added], [r.occurred_at for r in added])
    gone = [r for r in new if r.kind in (REMOVE_FROM_CART, PURCHASE)]
    if gone:
        people, items = [r.person for r in gone], [r.item_id for r in gone]
        await conn.execute(
            "DELETE FROM carts c USING unnest($2::text[], $3::text[]) AS g(person, item_id) "
            "WHERE c.tenant_id = $1 AND c.person = g.person AND c.item_id = g.item_id", tenant, people, items)
        await conn.execute(
            "DELETE FROM intents i USING unnest($2::text[], $3::text[]) AS g(person, item_id) "
            "WHERE i.tenant_id = $1 AND i.person = g.person AND i.item_id = g.item_id", tenant, people, items)
    clicks = [r for r in new if r.kind == CLICK and parse_uuid(r.recommendation_id) is not None]
    if clicks:
        await _clicks(conn, tenant, clicks, shards)
    bought = [r for r in new if r.kind == PURCHASE]
    if bought:
        await conn.execute(
            """
            UPDATE clicks c SET converted_at = b.at
            FROM unnest($2::text[], $3::text[], $4::timestamptz[]) AS b(person, item_id, at)
            WHERE c.tenant_id = $1 AND c.person = b.person AND c.item_id = b.item_id AND c.converted_at IS NULL
              AND c.clicked_at <= b.at AND c.clicked_at > b.at - make_interval(days => $5)
            """, tenant, [r.person for r in bought], [r.item_id for r in bought], [r.occurred_at for r in bought],
            config.attribution_days)
    return new


async def _clicks(conn: asyncpg.Connection, tenant: str, clicks: Sequence[Row], shards: int) -> None:
    """A click on a served item: counted once per (recommendation, item), recommendation.clicked emitted."""
    rows = await conn.fetch(
        """
        INSERT INTO clicks (tenant_id, recommendation_id, item_id, person, scenario, recommender, position, clicked_at)
        SELECT $1, s.id, c.item_id, c.person, s.scenario, s.recommenders[array_position(s.item_ids, c.item_id)],
               array_position(s.item_ids, c.item_id) - 1, c.at
        FROM unnest($2::uuid[], $3::text[], $4::text[], $5::timestamptz[]) AS c(rec_id, item_id, person, at)
        JOIN served s ON s.tenant_id = $1 AND s.id = c.rec_id AND c.item_id = ANY(s.item_ids)
        ON CONFLICT DO NOTHING
        RETURNING recommendation_id, item_id, person, scenario, recommender, position, clicked_at
        """, tenant, [uuid.UUID(r.recommendation_id) for r in clicks], [r.item_id for r in clicks],
        [r.person for r in clicks], [r.occurred_at for r in clicks])
    out = []
    for r in rows:
        profile_id, anonymous_id = events.split_person(r["person"])
        payload = rev.RecommendationClicked(
            recommendation_id=str(r["recommendation_id"]), profile_id=profile_id, anonymous_id=anonymous_id,
            item_id=r["item_id"], position=r["position"], scenario=r["scenario"], recommender=r["recommender"])
        out.append(events.envelope(tenant, "recommendation.clicked", r["person"], payload, at=r["clicked_at"]))
    await events.publish(conn, out, shards)


# the kinds as literals: the partial index interactions_marks matches them (a parameter would not)
_STATE = f"""
WITH k AS (
  SELECT unnest($2::text[]) AS person
  UNION
  SELECT person FROM person_aliases WHERE tenant_id = $1 AND anonymous_id = ANY($6::text[]))
SELECT
  (SELECT array_agg(person) FROM k) AS keys,
  (SELECT coalesce(array_agg(row(h.item_id, h.kind, h.weight, h.occurred_at) ORDER BY h.occurred_at DESC), '{{}}')
     FROM (SELECT item_id, kind, weight, occurred_at FROM interactions
           WHERE tenant_id = $1 AND person IN (SELECT person FROM k) ORDER BY occurred_at DESC LIMIT $3) h) AS history,
  (SELECT coalesce(array_agg(row(item_id, added_at)), '{{}}') FROM carts
     WHERE tenant_id = $1 AND person IN (SELECT person FROM k)) AS cart,
  (SELECT coalesce(array_agg(row(x.item_id, x.kind, x.at)), '{{}}') FROM (
     SELECT item_id, kind, max(occurred_at) AS at FROM interactions
     WHERE tenant_id = $1 AND person IN (SELECT person FROM k) AND kind IN ({PURCHASE}, {DISMISS})
       AND occurred_at > $4
     GROUP BY item_id, kind) x) AS marks,
  (SELECT row(item_id, category, score, cross_categories, locked_at, expires_at) FROM intents
     WHERE tenant_id = $1 AND person IN (SELECT person FROM k) AND expires_at > $5
     ORDER BY locked_at DESC LIMIT 1) AS intent
"""


async def state(conn: asyncpg.Connection | asyncpg.Pool, tenant: str, keys: list[str], config: Config,
                now: datetime, *, limit: int) -> PersonState:
    """A person's latest interactions, cart, purchases and dismissals still in force, and locked intent."""
    horizon = now - timedelta(days=max(config.exclude_purchased_days, config.dismiss_days, 365))
    anonymous = [k[len(events.ANON):] for k in keys if k.startswith(events.ANON)]
    r = await conn.fetchrow(_STATE, tenant, keys, limit, horizon, now, anonymous)
    profiles = [k for k in r["keys"] or () if not k.startswith(events.ANON)]
    resolved = keys[0] if not keys[0].startswith(events.ANON) else (min(profiles) if profiles else keys[0])
    out = PersonState(keys=keys, resolved=resolved)
    out.history = [Signal(item_id, kind, weight, at) for item_id, kind, weight, at in r["history"]]
    out.cart = {item_id: at for item_id, at in r["cart"]}
    dismiss_since = now - timedelta(days=config.dismiss_days)
    for item_id, kind, at in r["marks"]:
        if kind == PURCHASE:
            out.purchases[item_id] = max(out.purchases.get(item_id, at), at)
        elif at > dismiss_since:
            out.dismissed[item_id] = at
    out.intent = tuple(r["intent"]) if r["intent"] is not None else None
    return out
