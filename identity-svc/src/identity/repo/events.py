"""Envelopes for the events identity publishes about profiles (merged, split, erased, lifecycle,
consent, segment membership). Enqueue them with mcloud_common.bus.enqueue in the transaction that
made the change."""

from __future__ import annotations

from datetime import datetime

from google.protobuf.message import Message

from mcloud.events.v1 import event_pb2
from mcloud_common.bus.envelope import envelope as _envelope


def envelope(tenant_id: str, type_: str, profile_id: str, payload: Message, *, at: datetime | None = None,
             trace: tuple[str, str] | None = None) -> event_pb2.Event:
    """An identity event of `type_` about `profile_id`, `payload` packed; `at` defaults to now."""
    return _envelope("identity", tenant_id, type_, profile_id, payload, at=at, trace=trace)
