"""The audience report (GetAudienceReport): set-based reads over profiles, identifiers and events, in
one repeatable-read snapshot. Every count is of live profiles (not merged away, not erased) unless
it counts erasures; events of merged-away profiles already belong to their survivor."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import datetime

import asyncpg

from identity.domain.reports import LIFECYCLE_STAGES, Window, buckets

# A profile became known when its first strong identifier was stored (identifiers keep their
# created_at through merges). Scans the tenant's strong identifiers (primary key prefix).
_KNOWN_GAINED = """
    WITH firsts AS (
        SELECT i.profile_id, min(i.created_at) AS at
        FROM identifiers i JOIN profiles p ON p.id = i.profile_id
        WHERE i.tenant_id = $1 AND i.type = ANY($5::text[]) AND p.merged_into IS NULL AND p.erased_at IS NULL
        GROUP BY i.profile_id
    )
    SELECT b.bucket, count(*) AS n
    FROM (SELECT date_trunc($4, at, 'UTC') AS bucket FROM firsts WHERE at >= $2 AND at < $3) b
    GROUP BY GROUPING SETS ((b.bucket), ())
"""
# A person is erased as a merge family; the survivor (merged_into NULL) stands for it.
_ERASED = """
    SELECT b.bucket, count(*) AS n
    FROM (SELECT date_trunc($4, erased_at, 'UTC') AS bucket FROM profiles
          WHERE tenant_id = $1 AND merged_into IS NULL AND erased_at >= $2 AND erased_at < $3) b
    GROUP BY GROUPING SETS ((b.bucket), ())
"""
_ACTIVE = """
    WITH seen AS (
        SELECT DISTINCT date_trunc($4, e.timestamp, 'UTC') AS bucket, e.profile_id
        FROM events e
        WHERE e.tenant_id = $1 AND e.timestamp >= $2 AND e.timestamp < $3
    )
    SELECT s.bucket, count(DISTINCT s.profile_id) AS active,
           count(DISTINCT s.profile_id) FILTER (WHERE p.computed->'loyalty_member' = 'true'::jsonb) AS members
    FROM seen s JOIN profiles p ON p.id = s.profile_id
    WHERE p.merged_into IS NULL AND p.erased_at IS NULL
    GROUP BY GROUPING SETS ((s.bucket), ())
"""
# Orders: the tenant's order event names; an order id seen twice (a resent order) counts once.
_ORDERS = """
    WITH o AS (
        SELECT DISTINCT ON (e.profile_id, COALESCE(e.properties->>'order_id', e.id::text))
               e.profile_id, date_trunc($4, e.timestamp, 'UTC') AS bucket
        FROM events e
        WHERE e.tenant_id = $1 AND e.type = 'track' AND e.name = ANY($5::text[])
          AND e.timestamp >= $2 AND e.timestamp < $3
        ORDER BY e.profile_id, COALESCE(e.properties->>'order_id', e.id::text), e.timestamp
    )
    SELECT o.bucket, count(DISTINCT o.profile_id) AS buyers, count(*) AS orders,
           (SELECT count(*) FROM (SELECT 1 FROM o GROUP BY profile_id HAVING count(*) >= 2) r) AS repeat_buyers
    FROM o JOIN profiles p ON p.id = o.profile_id
    WHERE p.merged_into IS NULL AND p.erased_at IS NULL
    GROUP BY GROUPING SETS ((o.bucket), ())
"""
# Churn in the window: profiles whose latest stage change, to churned, falls in it (a customer who
# churned and ordered again since is no longer counted).
_CHURNED = """
    SELECT b.bucket, count(*) AS n
    FROM (SELECT date_trunc($4, lifecycle_changed_at, 'UTC') AS bucket FROM profiles
          WHERE tenant_id = $1 AND merged_into IS NULL AND erased_at IS NULL AND lifecycle_stage = 'churned'
            AND lifecycle_changed_at >= $2 AND lifecycle_changed_at < $3) b
    GROUP BY GROUPING SETS ((b.bucket), ())
"""
_NOW = """
    SELECT p.lifecycle_stage AS stage, count(*) AS profiles,
           count(*) FILTER (WHERE EXISTS (SELECT 1 FROM identifiers i WHERE i.tenant_id = p.tenant_id
                                          AND i.profile_id = p.id AND i.type = ANY($2::text[]))) AS known,
           count(*) FILTER (WHERE COALESCE((p.computed->>'order_count')::numeric, 0) >= 1) AS customers,
           count(*) FILTER (WHERE COALESCE((p.computed->>'order_count')::numeric, 0) >= 2) AS repeat_customers
    FROM profiles p
    WHERE p.tenant_id = $1 AND p.merged_into IS NULL AND p.erased_at IS NULL
    GROUP BY p.lifecycle_stage
"""


@dataclass
class Period:
    start: datetime
    known_gained: int = 0
    erased: int = 0
    active: int = 0
    active_members: int = 0
    churned: int = 0
    buyers: int = 0
    orders: int = 0


@dataclass
class AudienceReport:
    window: Window
    periods: list[Period]
    totals: Period
    lifecycle: dict[str, int] = field(default_factory=dict)
    profiles: int = 0
    known_profiles: int = 0
    customers: int = 0
    repeat_customers: int = 0
    window_repeat_buyers: int = 0


async def audience_report(conn: asyncpg.Connection, tenant: str, window: Window, *,
                          strong_types: Sequence[str], order_names: Sequence[str]) -> AudienceReport:
    """The audience over `window` and now (see the module docstring)."""
    starts = buckets(window.since, window.until, window.granularity)
    per = {s: Period(start=s) for s in starts}
    args = (tenant, window.since, window.until, window.granularity)
    strong, orders = list(strong_types), list(order_names)
    report = AudienceReport(window=window, periods=[], totals=Period(start=starts[0]))
    async with conn.transaction(isolation="repeatable_read", readonly=True):
        for row in await conn.fetch(_KNOWN_GAINED, *args, strong):
            _slot(per, report, row["bucket"]).known_gained = row["n"]
        for row in await conn.fetch(_ERASED, *args):
            _slot(per, report, row["bucket"]).erased = row["n"]
        for row in await conn.fetch(_ACTIVE, *args):
            slot = _slot(per, report, row["bucket"])
            slot.active, slot.active_members = row["active"], row["members"]
        for row in await conn.fetch(_ORDERS, *args, orders):
            slot = _slot(per, report, row["bucket"])
            slot.buyers, slot.orders = row["buyers"], row["orders"]
            report.window_repeat_buyers = row["repeat_buyers"]
        for row in await conn.fetch(_CHURNED, *args):
            _slot(per, report, row["bucket"]).churned = row["n"]
        for row in await conn.fetch(_NOW, tenant, strong):
            report.lifecycle[row["stage"]] = row["profiles"]
            report.profiles += row["profiles"]
            report.known_profiles += row["known"]
            report.customers += row["customers"]
            report.repeat_customers += row["repeat_customers"]
    report.periods = [per[s] for s in starts]
    for stage in LIFECYCLE_STAGES:
        report.lifecycle.setdefault(stage, 0)
    return report


def _slot(per: dict[datetime, Period], report: AudienceReport, bucket: datetime | None) -> Period:
    """The period a row is about; the grouping set's grand total (bucket NULL) is the window's."""
    if bucket is None:
        return report.totals
    return per.setdefault(bucket, Period(start=bucket))
