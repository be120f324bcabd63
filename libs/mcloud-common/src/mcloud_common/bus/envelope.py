"""Envelopes for domain events a service publishes about a person. Enqueue them with
mcloud_common.bus.enqueue in the transaction that made the change."""

from __future__ import annotations

import time
from datetime import datetime

from google.protobuf.message import Message

from mcloud.events.v1 import event_pb2
from mcloud_common.ids import new_id_str
from mcloud_common.telemetry import inject_traceparent
from mcloud_common.timestamps import set_timestamp


def envelope(source: str, tenant_id: str, type_: str, profile_id: str, payload: Message, *,
             at: datetime | None = None, trace: tuple[str, str] | None = None) -> event_pb2.Event:
    """An event of `type_` from service `source` about `profile_id`, `payload` packed; `at` defaults to
    now; `trace` to the current span's context."""
    ev = event_pb2.Event(id=new_id_str(), tenant_id=tenant_id, type=type_, profile_id=profile_id, source=source)
    # time.time_ns, not Timestamp.GetCurrentTime: the protobuf helper is pure Python and costly per event
    now_ns = time.time_ns()
    ev.received_at.seconds, ev.received_at.nanos = divmod(now_ns, 1_000_000_000)
    if at is None:
        ev.occurred_at.CopyFrom(ev.received_at)
    else:
        set_timestamp(ev.occurred_at, at)
    ev.trace.traceparent, ev.trace.tracestate = trace if trace is not None else inject_traceparent()
    ev.payload.Pack(payload)
    return ev
