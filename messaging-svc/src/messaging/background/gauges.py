"""Send-queue metrics (sampled; see mcloud_common.metrics): queued messages, due now or held for later
(scheduled, quiet hours, retries)."""

from __future__ import annotations

import asyncpg
from prometheus_client import Gauge

from mcloud_common.clock import Clock
from mcloud_common.runtime import Runtime

SEND_QUEUE_DEPTH = Gauge("mcloud_messaging_send_queue_depth", "Messages queued and not sent yet: `due` ones can "
                         "go now, `later` ones wait for their time (sampled)", ["when"])
SEND_QUEUE_OLDEST_DUE_SECONDS = Gauge("mcloud_messaging_send_queue_oldest_due_seconds", "Now minus the earliest "
                                      "due_at of queued messages that are due; 0 when none is (sampled)")

_QUEUED = """
    SELECT count(*) FILTER (WHERE due_at <= $1) AS due, count(*) FILTER (WHERE due_at > $1) AS later,
           min(due_at) FILTER (WHERE due_at <= $1) AS earliest
    FROM messages WHERE status = 'queued'
"""


async def sample_send_queue(pool: asyncpg.Pool, clock: Clock) -> None:
    """Set the send-queue gauges (the partial index messages_due holds only queued rows)."""
    now = clock.now()
    row = await pool.fetchrow(_QUEUED, now)
    SEND_QUEUE_DEPTH.labels("due").set(row["due"])
    SEND_QUEUE_DEPTH.labels("later").set(row["later"])
    earliest = row["earliest"]
    SEND_QUEUE_OLDEST_DUE_SECONDS.set(max((now - earliest).total_seconds(), 0.0) if earliest is not None else 0.0)


def install(runtime: Runtime) -> None:
    runtime.sample(lambda: sample_send_queue(runtime.pool, runtime.clock), name="send-queue")
