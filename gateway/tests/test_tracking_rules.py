"""Unit tests of the Segment rules: validation, clock-skew correction, channel inference."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import orjson
import pytest

from gateway.tracking import (
    Rejection,
    TrackingCall,
    batch_envelope,
    corrected_timestamp,
    infer_channel,
    normalise_call,
    parse_timestamp,
)

NOW = datetime(2026, 11, 11, 12, 0, 0, tzinfo=UTC)


def norm(event, call_type=None, **kw):
    return normalise_call(event, call_type=call_type, received_at=NOW, max_bytes=32 * 1024, **kw)


def test_clock_skew_is_corrected_by_the_client_send_delay():
    # the client clock is 1 hour behind; the event happened 5 s before it was sent
    client_ts = datetime(2026, 11, 11, 10, 59, 50, tzinfo=UTC)
    sent_at = datetime(2026, 11, 11, 10, 59, 55, tzinfo=UTC)
    assert corrected_timestamp(received_at=NOW, timestamp=client_ts, sent_at=sent_at) == NOW - timedelta(
        seconds=5
    )


def test_without_sent_at_the_client_timestamp_is_kept_and_without_either_received_at_is_used():
    ts = datetime(2020, 1, 1, tzinfo=UTC)
    assert corrected_timestamp(received_at=NOW, timestamp=ts, sent_at=None) == ts
    assert corrected_timestamp(received_at=NOW, timestamp=None, sent_at=ts) == NOW
    assert corrected_timestamp(received_at=NOW, timestamp=None, sent_at=None) == NOW


def test_normalised_call_carries_corrected_timestamp_and_keeps_original_in_context():
    call = norm(
        {
            "userId": "42",
            "event": "Clicked",
            "timestamp": "2026-11-11T10:59:50Z",
            "sentAt": "2026-11-11T10:59:55.000Z",
        },
        "track",
    )
    assert isinstance(call, TrackingCall)
    assert call.timestamp == NOW - timedelta(seconds=5)
    assert orjson.loads(call.context_json)["originalTimestamp"] == "2026-11-11T10:59:50Z"


def test_batch_sent_at_applies_to_events_without_their_own():
    call = norm(
        {"type": "track", "userId": "1", "event": "x", "timestamp": "2026-11-11T11:00:00Z"},
        batch_sent_at=datetime(2026, 11, 11, 11, 0, 2, tzinfo=UTC),
    )
    assert call.timestamp == NOW - timedelta(seconds=2)


def test_rudderstack_original_timestamp_is_the_client_time():
    call = norm(
        {
            "type": "track",
            "anonymousId": "a",
            "event": "x",
            "originalTimestamp": "2026-11-11T11:00:00Z",
            "sentAt": "2026-11-11T11:00:01Z",
        }
    )
    assert call.timestamp == NOW - timedelta(seconds=1)


def test_parse_timestamp_accepts_offsets_naive_and_seven_fraction_digits():
    assert parse_timestamp("2026-11-11T20:00:00+08:00") == datetime(2026, 11, 11, 12, tzinfo=UTC)
    assert parse_timestamp("2026-11-11T12:00:00") == NOW
    assert parse_timestamp("2026-11-11T12:00:00.1234567Z") == NOW.replace(microsecond=123456)
    with pytest.raises(ValueError):
        parse_timestamp("yesterday")


@pytest.mark.parametrize(
    ("event", "call_type", "code"),
    [
        ({"userId": "1"}, "track", "missing_event"),
        ({"userId": "1", "event": "  "}, "track", "missing_event"),
        ({"event": "x"}, "track", "missing_identity"),
        ({"userId": "", "anonymousId": None, "event": "x"}, "track", "missing_identity"),
        ({"userId": "1"}, "alias", "missing_previous_id"),
        ({"anonymousId": "a", "previousId": "p"}, "alias", "missing_previous_id"),
        ({"userId": "1"}, "group", "missing_group_id"),
        ({"type": "purchase", "userId": "1"}, None, "invalid_type"),
        ({"userId": "1"}, None, "invalid_type"),
        ({"userId": "1", "event": "x", "properties": [1]}, "track", "invalid_field"),
        ({"userId": {"a": 1}, "event": "x"}, "track", "invalid_field"),
        ({"userId": "1", "event": "x", "timestamp": "noon"}, "track", "invalid_timestamp"),
        ("not an object", None, "invalid_event"),
    ],
)
def test_segment_validation_rules(event, call_type, code):
    result = norm(event, call_type)
    assert isinstance(result, Rejection)
    assert result.code == code


def test_valid_calls_of_every_type():
    for event, kind in [
        ({"userId": 42, "event": "Signed Up"}, "track"),
        ({"anonymousId": "a", "traits": {"email": "r@example.com"}}, "identify"),
        ({"previousId": "a", "userId": "u"}, "alias"),
        ({"anonymousId": "a"}, "page"),
        ({"anonymousId": "a", "name": "Cart"}, "screen"),
        ({"userId": "u", "groupId": "g"}, "group"),
    ]:
        call = norm(event, kind)
        assert isinstance(call, TrackingCall), (kind, call)
        assert call.type == kind
        assert call.message_id  # generated when the client sent none


def test_numeric_user_id_is_stringified_and_message_id_kept():
    call = norm({"userId": 42, "event": "x", "messageId": "m-1"}, "track")
    assert call.user_id == "42"
    assert call.message_id == "m-1"


def test_oversize_call_in_a_batch_is_rejected():
    call = normalise_call(
        {"type": "track", "userId": "1", "event": "x", "properties": {"p": "x" * 2000}},
        call_type=None,
        received_at=NOW,
        max_bytes=1024,
    )
    assert isinstance(call, Rejection) and call.code == "event_too_large"


def test_batch_context_is_merged_under_the_event_context():
    call = norm(
        {"type": "track", "userId": "1", "event": "x", "context": {"ip": "1.2.3.4"}},
        batch_context={"ip": "9.9.9.9", "library": {"name": "analytics-python"}},
    )
    ctx = orjson.loads(call.context_json)
    assert ctx == {"ip": "1.2.3.4", "library": {"name": "analytics-python"}}
    assert call.channel == "server"


@pytest.mark.parametrize(
    ("context", "top", "channel"),
    [
        ({"channel": "pos"}, None, "pos"),
        ({"channel": "mini_program"}, None, "mini_program"),
        ({"channel": "browser"}, None, "web"),
        ({}, "mobile", "app"),
        ({"library": {"name": "analytics.js"}}, None, "web"),
        ({"library": {"name": "@segment/analytics-next"}}, None, "web"),
        ({"library": {"name": "RudderLabs JavaScript SDK"}}, None, "web"),
        ({"library": {"name": "analytics-ios"}}, None, "app"),
        ({"library": {"name": "com.rudderstack.android.sdk.core"}}, None, "app"),
        ({"library": {"name": "@segment/analytics-react-native"}}, None, "app"),
        ({"library": {"name": "analytics-python"}}, None, "server"),
        ({"library": {"name": "analytics-node"}}, None, "server"),
        ({"library": {"name": "analytics-java"}}, None, "server"),
        ({"library": {"name": "rudder-sdk-wechat-miniprogram"}}, None, "mini_program"),
        ({"userAgent": "Mozilla/5.0"}, None, "web"),
        (None, None, "server"),
    ],
)
def test_channel_inference(context, top, channel):
    assert infer_channel(context, top) == channel


def test_batch_envelope_rules():
    events, ctx, sent = batch_envelope({"batch": [{}], "context": {"a": 1}, "sentAt": "2026-11-11T12:00:00Z"})
    assert events == [{}] and ctx == {"a": 1} and sent == NOW
    for bad in [[], {"batch": {}}, {"batch": [], "context": 3}, {"batch": [], "sentAt": "x"}]:
        with pytest.raises(ValueError):
            batch_envelope(bad)
