"""Stream naming, sharding and encoding."""

from __future__ import annotations

import zlib
from collections import Counter

import pytest

from mcloud.events.v1 import event_pb2
from mcloud_common.bus import UndecodableEvent, decode, encode, publish, shard_of, stream_for, streams_of


def test_shard_of_is_stable_crc32_and_spreads_keys_evenly():
    assert shard_of("profile-42", 8) == zlib.crc32(b"profile-42") % 8
    assert all(shard_of("profile-42", 8) == shard_of("profile-42", 8) for _ in range(10))
    counts = Counter(shard_of(f"profile-{i}", 8) for i in range(16_000))
    assert set(counts) == set(range(8))
    assert all(1_700 < n < 2_300 for n in counts.values()), counts
    with pytest.raises(ValueError):
        shard_of("x", 0)


def test_stream_for_keys_by_profile_then_anonymous_id(make_event):
    by_profile = make_event("prof-1", anonymous_id="anon-9")
    assert stream_for(by_profile, "identity", 16) == f"events.identity.{shard_of('prof-1', 16)}"
    anonymous = make_event(anonymous_id="anon-9")
    assert stream_for(anonymous, "identity", 16) == f"events.identity.{shard_of('anon-9', 16)}"
    assert streams_of("loyalty", 3) == ["events.loyalty.0", "events.loyalty.1", "events.loyalty.2"]


def test_encode_decode_round_trip_and_garbage_is_rejected(make_event):
    event = make_event("prof-1", type="order.completed", tenant_id="acme", name="Order Completed")
    fields = encode(event)
    assert fields[b"t"] == b"order.completed"
    assert fields[b"tn"] == b"acme"
    assert decode(fields) == event
    assert decode({k.decode(): v for k, v in fields.items()}) == event
    with pytest.raises(UndecodableEvent):
        decode({b"e": b"\xff\xff not protobuf"})
    with pytest.raises(UndecodableEvent):
        decode({b"t": b"track"})
    with pytest.raises(UndecodableEvent):
        decode({b"e": event_pb2.Event(type="no-id").SerializeToString()})


async def test_one_profiles_events_land_on_one_stream_in_order(redis, producer, make_event):
    events = [make_event(profile) for _ in range(30) for profile in ("rachel", "monica", "ross")]
    ids = await publish(redis, events, producer, 4)
    assert len(ids) == len(events)
    for profile in ("rachel", "monica", "ross"):
        stream = f"events.{producer}.{shard_of(profile, 4)}"
        seen = [decode(fields) for _, fields in await redis.xrange(stream)]
        mine = [e.id for e in seen if e.profile_id == profile]
        assert mine == [e.id for e in events if e.profile_id == profile]
