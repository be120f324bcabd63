"""What an event says, as a plain dict: a behaviour event's properties, or a domain event's typed
payload fields (e.g. coupon.expiring's `code`, message.opened's `message.step_id`)."""

from __future__ import annotations

import orjson
from google.protobuf import json_format, symbol_database

from mcloud.events.v1 import (  # noqa: F401 - importing registers every payload type
    event_pb2,
    identity_events_pb2,
    journey_events_pb2,
    loyalty_events_pb2,
    messaging_events_pb2,
    recommend_events_pb2,
)


def event_properties(event: event_pb2.Event) -> dict:
    """The payload's fields when the event has a typed payload, else its properties (a JSON object;
    {} when absent or not an object)."""
    if event.HasField("payload") and event.payload.type_url:
        try:
            cls = symbol_database.Default().GetSymbol(event.payload.type_url.rsplit("/", 1)[-1])
        except KeyError:
            return {}
        message = cls()
        event.payload.Unpack(message)
        return json_format.MessageToDict(message, preserving_proto_field_name=True)
    try:
        value = orjson.loads(event.properties_json or "{}")
    except orjson.JSONDecodeError:
        return {}
    return value if isinstance(value, dict) else {}
