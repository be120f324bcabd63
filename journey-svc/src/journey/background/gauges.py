"""Journey timer metrics: how late due enrollments are (sampled; see mcloud_common.metrics) and how late
each one was when a worker claimed it."""

from __future__ import annotations

import asyncpg
from prometheus_client import Gauge, Histogram

from mcloud_common.clock import Clock
from mcloud_common.runtime import Runtime

TIMER_LAG = Gauge("mcloud_journey_timer_lag_seconds", "Now minus the earliest due_at of active enrollments that "
                  "are due and not claimed yet; 0 when nothing is overdue (sampled)")
TIMERS_DUE = Gauge("mcloud_journey_timers_due", "Active enrollments due and not claimed yet (sampled)")
TIMER_LAG_AT_CLAIM = Histogram("mcloud_journey_timer_claim_lag_seconds", "How late each due enrollment was when a "
                               "worker claimed it", buckets=(0.05, 0.1, 0.25, 0.5, 1, 2, 5, 10, 30, 60, 300, 900,
                                                             3600))

_DUE = """
    SELECT count(*) AS due, min(due_at) AS earliest FROM enrollments
    WHERE status = 'active' AND due_at <= $1
"""


async def sample_timer_lag(pool: asyncpg.Pool, clock: Clock) -> None:
    """Set the timer-lag gauges from the enrollments due now (the partial index enrollments_due)."""
    now = clock.now()
    row = await pool.fetchrow(_DUE, now)
    TIMERS_DUE.set(row["due"])
    TIMER_LAG.set(max((now - row["earliest"]).total_seconds(), 0.0) if row["earliest"] is not None else 0.0)


def install(runtime: Runtime) -> None:
    runtime.sample(lambda: sample_timer_lag(runtime.pool, runtime.clock), name="journey-timers")
