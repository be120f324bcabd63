"""Tracking plans (one per tenant) and the violation counters the ingest path keeps."""

from __future__ import annotations

from collections.abc import Mapping
from datetime import datetime

import asyncpg

from identity.domain.tracking_plan import TrackingPlan, compile_plan

ViolationKey = tuple[str, str]  # (event, outcome: "blocked" | "flagged")


async def load_plan(conn: asyncpg.Connection, tenant_id: str) -> TrackingPlan | None:
    """The tenant's compiled plan, None when it has none (stored plans were checked when saved)."""
    source = await conn.fetchval("SELECT plan FROM tracking_plans WHERE tenant_id = $1", tenant_id)
    return None if source is None else compile_plan(source)


async def save_plan(conn: asyncpg.Connection, tenant_id: str, plan: TrackingPlan | None, at: datetime) -> None:
    """Replace the tenant's plan; None removes it."""
    if plan is None:
        await conn.execute("DELETE FROM tracking_plans WHERE tenant_id = $1", tenant_id)
        return
    await conn.execute(
        """
        INSERT INTO tracking_plans (tenant_id, plan, updated_at) VALUES ($1, $2, $3)
        ON CONFLICT (tenant_id) DO UPDATE SET plan = excluded.plan, updated_at = excluded.updated_at
        """,
        tenant_id, plan.source, at,
    )


async def count_violations(conn: asyncpg.Connection, tenant_id: str,
                           counts: Mapping[ViolationKey, tuple[int, str]], at: datetime) -> None:
    """Add a batch's violations, {(event, outcome): (count, last error)}, in one statement (rows in
    key order, so concurrent batches lock the counters in the same order)."""
    if not counts:
        return
    keys = sorted(counts)
    await conn.execute(
        """
        INSERT INTO tracking_violations AS v (tenant_id, event, outcome, count, last_error, last_seen_at)
        SELECT $1, e, o, c, err, $6 FROM unnest($2::text[], $3::text[], $4::bigint[], $5::text[]) AS x(e, o, c, err)
        ON CONFLICT (tenant_id, event, outcome) DO UPDATE
        SET count = v.count + excluded.count, last_error = excluded.last_error,
            last_seen_at = GREATEST(v.last_seen_at, excluded.last_seen_at)
        """,
        tenant_id, [k[0] for k in keys], [k[1] for k in keys], [counts[k][0] for k in keys],
        [counts[k][1] for k in keys], at,
    )


async def list_violations(conn: asyncpg.Connection, tenant_id: str) -> list[asyncpg.Record]:
    return await conn.fetch(
        """
        SELECT event, outcome, count, last_error, last_seen_at FROM tracking_violations
        WHERE tenant_id = $1 ORDER BY event, outcome
        """,
        tenant_id,
    )
