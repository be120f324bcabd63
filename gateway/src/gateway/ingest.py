"""Forwarding validated tracking calls to identity-svc: one IngestEvents call per HTTP request, with
the tenant in metadata. Rejections from the gateway and from identity come back merged, by the index
the client sent."""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime

from google.protobuf.timestamp_pb2 import Timestamp

from gateway.tracking import Rejection, TrackingCall
from mcloud.identity.v1 import identity_pb2, identity_pb2_grpc
from mcloud_common.grpc_client import tenant_metadata
from mcloud_common.timestamps import to_timestamp

_CALL_TYPE = {
    "track": identity_pb2.CALL_TYPE_TRACK,
    "identify": identity_pb2.CALL_TYPE_IDENTIFY,
    "alias": identity_pb2.CALL_TYPE_ALIAS,
    "page": identity_pb2.CALL_TYPE_PAGE,
    "screen": identity_pb2.CALL_TYPE_SCREEN,
    "group": identity_pb2.CALL_TYPE_GROUP,
}
CALL_TYPE_NAME = {v: k for k, v in _CALL_TYPE.items()}


@dataclass(frozen=True, slots=True)
class IndexedRejection:
    index: int
    code: str
    detail: str


@dataclass(slots=True)
class IngestResult:
    accepted: int = 0
    duplicates: int = 0
    rejected: list[IndexedRejection] = field(default_factory=list)


def to_inbound_event(call: TrackingCall, received_at: Timestamp) -> identity_pb2.InboundEvent:
    return identity_pb2.InboundEvent(
        type=_CALL_TYPE[call.type],
        message_id=call.message_id,
        anonymous_id=call.anonymous_id,
        user_id=call.user_id,
        name=call.name,
        properties_json=call.properties_json,
        traits_json=call.traits_json,
        context_json=call.context_json,
        previous_id=call.previous_id,
        group_id=call.group_id,
        timestamp=to_timestamp(call.timestamp),
        received_at=received_at,
        channel=call.channel,
    )


RPC_CHUNK = 1000  # events per IngestEvents call (identity takes up to 2,500)


async def forward(
    identity: identity_pb2_grpc.IdentityServiceStub,
    *,
    tenant_id: str,
    received_at: datetime,
    calls: list[TrackingCall | Rejection],
) -> IngestResult:
    """Send the valid calls to identity in one RPC; report the invalid ones by their client index.
    gRPC errors propagate (the caller maps them to HTTP) so a failed batch is retried whole."""
    result = IngestResult()
    events = []
    client_index = []
    received = to_timestamp(received_at)
    for i, call in enumerate(calls):
        if isinstance(call, Rejection):
            result.rejected.append(IndexedRejection(i, call.code, call.detail))
        else:
            client_index.append(i)
            events.append(to_inbound_event(call, received))
    # A 500 KB batch of tiny calls can exceed what identity takes in one RPC: send it in chunks.
    # If a later chunk fails the request fails and is retried whole; message ids dedupe the rest.
    for start in range(0, len(events), RPC_CHUNK):
        response = await identity.IngestEvents(
            identity_pb2.IngestEventsRequest(events=events[start:start + RPC_CHUNK]),
            metadata=tenant_metadata(tenant_id),
        )
        result.accepted += response.accepted
        result.duplicates += response.duplicates
        for r in response.rejected:
            position = start + r.index
            idx = client_index[position] if 0 <= position < len(client_index) else position
            result.rejected.append(IndexedRejection(idx, r.code, r.detail))
    result.rejected.sort(key=lambda r: r.index)
    return result
