"""The event bus: transactional outbox -> relay -> Redis Streams -> idempotent consumers.

Producers `enqueue()` events in the transaction that changes their state; an `OutboxRelay` per
service publishes the outbox; a `StreamConsumer` per consuming service applies each event once.
"""

from mcloud_common.bus.consumer import Handler, StreamConsumer
from mcloud_common.bus.outbox import enqueue
from mcloud_common.bus.properties import event_properties
from mcloud_common.bus.relay import OutboxRelay
from mcloud_common.bus.schema import BUS_DDL, NOTIFY_CHANNEL, create_bus_tables, drop_bus_tables
from mcloud_common.bus.streams import (
    UndecodableEvent,
    decode,
    dlq_stream,
    encode,
    partition_key,
    publish,
    shard_of,
    stream_for,
    stream_name,
    streams_of,
    trim_consumed,
)

__all__ = [
    "BUS_DDL",
    "NOTIFY_CHANNEL",
    "Handler",
    "OutboxRelay",
    "StreamConsumer",
    "UndecodableEvent",
    "create_bus_tables",
    "decode",
    "dlq_stream",
    "drop_bus_tables",
    "encode",
    "enqueue",
    "event_properties",
    "partition_key",
    "publish",
    "shard_of",
    "stream_for",
    "stream_name",
    "streams_of",
    "trim_consumed",
]
