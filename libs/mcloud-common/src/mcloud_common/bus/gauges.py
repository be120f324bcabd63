"""The bus's sampled gauges: consumer lag per group and stream, outbox backlog. Run by the service's
metrics sampler (never per scrape), see mcloud_common.metrics."""

from __future__ import annotations

from collections.abc import Iterable

import asyncpg

from mcloud_common.bus.consumer import StreamConsumer, running_consumers
from mcloud_common.metrics import CONSUMER_LAG, OUTBOX_BACKLOG, OUTBOX_OLDEST_SECONDS

_OUTBOX = "SELECT count(*) AS rows, coalesce(extract(epoch FROM now() - min(created_at)), 0) AS age FROM outbox"


async def sample_consumer_lag(consumers: Iterable[StreamConsumer] | None = None) -> None:
    """Set `mcloud_bus_consumer_lag` for every stream of `consumers` (default: the running ones of this
    process); one pipelined round trip per consumer."""
    for consumer in running_consumers() if consumers is None else consumers:
        for stream, lag in (await consumer.lag()).items():
            CONSUMER_LAG.labels(consumer.group, stream).set(lag)


async def sample_outbox(pool: asyncpg.Pool) -> None:
    """Set `mcloud_outbox_backlog` and `mcloud_outbox_oldest_seconds` from the outbox of `pool`'s database."""
    row = await pool.fetchrow(_OUTBOX)
    OUTBOX_BACKLOG.set(row["rows"])
    OUTBOX_OLDEST_SECONDS.set(float(row["age"]))
