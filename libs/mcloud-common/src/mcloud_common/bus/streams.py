"""Stream naming, sharding and the wire encoding of an event on a Redis stream.

A stream is `events.<producer>.<shard>`; the shard is crc32(profile id, else anonymous id) so one
person's events always land on one stream, in order. Each entry has three fields:
`e` (the serialized `mcloud.events.v1.Event`), `t` (its type, so consumers can filter without
decoding) and `tn` (tenant id). Redis clients used with the bus must keep `decode_responses=False`:
`e` is binary.
"""

from __future__ import annotations

import time
import zlib
from collections.abc import Iterable, Mapping, Sequence

import redis.asyncio as aioredis
from google.protobuf.message import DecodeError
from redis import exceptions as redis_exceptions

from mcloud.events.v1 import event_pb2

STREAM_PREFIX = "events"
DLQ_PREFIX = "dlq"

FIELD_EVENT = b"e"
FIELD_TYPE = b"t"
FIELD_TENANT = b"tn"


class UndecodableEvent(ValueError):
    """A stream entry that does not hold a valid event envelope."""


def stream_name(producer: str, shard: int) -> str:
    """`events.<producer>.<shard>`."""
    return f"{STREAM_PREFIX}.{producer}.{shard}"


def streams_of(producer: str, shards: int) -> list[str]:
    """Every stream of one producer: `events.<producer>.0` .. `events.<producer>.<shards-1>`."""
    return [stream_name(producer, shard) for shard in range(shards)]


def dlq_stream(group: str) -> str:
    """Where a consumer group's dead letters go: `dlq.<group>`."""
    return f"{DLQ_PREFIX}.{group}"


def shard_of(key: str, shards: int) -> int:
    """The shard of a partition key: crc32(key) mod shards. Stable across processes and releases."""
    if shards < 1:
        raise ValueError("shards must be >= 1")
    return zlib.crc32(key.encode()) % shards


def partition_key(event: event_pb2.Event) -> str:
    """The profile id, else the anonymous id; events about nobody in particular fall back to the
    tenant id so a tenant's housekeeping events still keep their order."""
    return event.profile_id or event.anonymous_id or event.tenant_id


def stream_for(event: event_pb2.Event, producer: str, shards: int) -> str:
    """The stream `event` belongs on."""
    return stream_name(producer, shard_of(partition_key(event), shards))


def encode(event: event_pb2.Event, payload: bytes | None = None) -> dict[bytes, bytes]:
    """Stream fields for `event`; pass `payload` when the serialized bytes are already at hand."""
    return {
        FIELD_EVENT: event.SerializeToString() if payload is None else payload,
        FIELD_TYPE: event.type.encode(),
        FIELD_TENANT: event.tenant_id.encode(),
    }


def _field(fields: Mapping, name: bytes) -> bytes | None:
    value = fields.get(name)
    if value is None:
        value = fields.get(name.decode())
    if isinstance(value, str):
        value = value.encode()
    return value


def entry_payload(fields: Mapping) -> bytes | None:
    """The raw serialized envelope of a stream entry, None when missing."""
    return _field(fields, FIELD_EVENT) if fields else None


def entry_type(fields: Mapping) -> str:
    """The event type of a stream entry without decoding the envelope ("" when missing)."""
    value = _field(fields, FIELD_TYPE)
    return value.decode(errors="replace") if value else ""


def decode(fields: Mapping) -> event_pb2.Event:
    """The event in a stream entry's fields; raises UndecodableEvent when there is none."""
    payload = entry_payload(fields)
    if not payload:
        raise UndecodableEvent("stream entry has no 'e' field")
    try:
        event = event_pb2.Event.FromString(payload)
    except DecodeError as exc:
        raise UndecodableEvent(f"not an Event envelope: {exc}") from exc
    if not event.id:
        raise UndecodableEvent("event has no id")
    return event


async def publish(
    redis: aioredis.Redis,
    events: Sequence[event_pb2.Event],
    producer: str,
    shards: int,
    *,
    maxlen: int | None = None,
) -> list[str]:
    """XADD `events` directly (no outbox, no transaction with any database), in order, in one
    pipeline; returns the entry ids. For tests and tools only: services publish through the outbox."""
    if not events:
        return []
    pipe = redis.pipeline(transaction=False)
    for event in events:
        pipe.xadd(stream_for(event, producer, shards), encode(event), maxlen=maxlen, approximate=True)
    ids = await pipe.execute()
    return [i.decode() if isinstance(i, bytes) else str(i) for i in ids]


def _id_tuple(entry_id: bytes | str) -> tuple[int, int]:
    text = entry_id.decode() if isinstance(entry_id, bytes) else entry_id
    ms, _, seq = text.partition("-")
    return int(ms), int(seq or 0)


async def trim_consumed(redis: aioredis.Redis, streams: Iterable[str], *, retention_ms: int,
                        now_ms: int | None = None) -> dict[str, str]:
    """Trim each stream up to what every consumer group has finished with (the oldest entry still
    pending, else the last delivered one), and never keep entries older than `retention_ms`.

    Returns the MINID applied per stream. A stream without groups keeps `retention_ms` of history, so
    a service that subscribes later still finds it. This replaces blind MAXLEN trimming, which drops
    entries a lagging group has not read yet."""
    now_ms = int(time.time() * 1000) if now_ms is None else now_ms
    floor = (now_ms - retention_ms, 0)
    applied: dict[str, str] = {}
    for stream in streams:
        try:
            groups = await redis.xinfo_groups(stream)
        except redis_exceptions.ResponseError:  # no such stream
            continue
        safe: tuple[int, int] | None = None
        for group in groups:
            name = group["name"]
            oldest = _id_tuple(group["last-delivered-id"])
            if group.get("pending"):
                summary = await redis.xpending(stream, name)
                if summary.get("min"):
                    oldest = min(oldest, _id_tuple(summary["min"]))
            safe = oldest if safe is None else min(safe, oldest)
        minid = floor if safe is None else max(safe, floor)
        if minid[0] <= 0:
            continue
        text = f"{minid[0]}-{minid[1]}"
        await redis.xtrim(stream, minid=text, approximate=False)
        applied[stream] = text
    return applied
