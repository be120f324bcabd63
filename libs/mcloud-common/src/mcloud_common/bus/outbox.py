"""Writing events to the transactional outbox, in the caller's transaction."""

from __future__ import annotations

import uuid
from collections.abc import Sequence

import asyncpg

from mcloud.events.v1 import event_pb2
from mcloud_common.bus.streams import stream_for

_INSERT = """
    INSERT INTO outbox (stream, event_id, type, tenant_id, payload)
    SELECT * FROM unnest($1::text[], $2::uuid[], $3::text[], $4::text[], $5::bytea[])
"""


def outbox_rows(events: Sequence[event_pb2.Event], *, producer: str, shards: int
                ) -> tuple[list[str], list[uuid.UUID], list[str], list[str], list[bytes]]:
    """The outbox columns (stream, event_id, type, tenant_id, payload) of `events`, for callers that
    insert them inside a larger statement (`INSERT INTO outbox (...) SELECT * FROM unnest(...)`)."""
    streams: list[str] = []
    ids: list[uuid.UUID] = []
    types: list[str] = []
    tenants: list[str] = []
    payloads: list[bytes] = []
    for event in events:
        try:
            ids.append(uuid.UUID(event.id))
        except ValueError:
            raise ValueError(f"event id must be a UUID, got {event.id!r} (type {event.type!r})") from None
        streams.append(stream_for(event, producer, shards))
        types.append(event.type)
        tenants.append(event.tenant_id)
        payloads.append(event.SerializeToString())
    return streams, ids, types, tenants, payloads


async def enqueue(
    conn: asyncpg.Connection,
    events: Sequence[event_pb2.Event],
    *,
    producer: str,
    shards: int,
) -> None:
    """Add `events` to the outbox in ONE statement on `conn`; they are published (in this order per
    stream) only if the caller's transaction commits. Every event needs a UUID `id`."""
    if not events:
        return
    # type and tenant ride along so the relay can publish without decoding each payload
    await conn.execute(_INSERT, *outbox_rows(events, producer=producer, shards=shards))
