"""Segment Tracking API semantics as plain functions: validation of one call, clock-skew correction
and channel inference. No web framework, no gRPC: the rules read like the spec and test without I/O.

Hand-written over dicts (not pydantic) because /v1/batch runs this per event on the hot path.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

import orjson

from mcloud_common.ids import new_id_str
from mcloud_common.tracking_spec import CALL_TYPES, CHANNELS, MAX_ID_LENGTH

# Segment's own `channel` values
_SEGMENT_CHANNELS = {"browser": "web", "client": "web", "mobile": "app", "server": "server"}


@dataclass(frozen=True, slots=True)
class Rejection:
    code: str
    detail: str


@dataclass(slots=True)
class TrackingCall:
    """One validated, normalised call, ready to forward."""

    type: str
    message_id: str
    anonymous_id: str
    user_id: str
    name: str
    properties_json: str
    traits_json: str
    context_json: str
    previous_id: str
    group_id: str
    timestamp: datetime
    channel: str
    size: int


def parse_timestamp(value: Any) -> datetime | None:
    """An aware UTC datetime from an ISO-8601 string; None when absent. Raises ValueError if invalid."""
    if value is None or value == "":
        return None
    if not isinstance(value, str):
        raise ValueError("must be an ISO-8601 string")
    try:
        dt = datetime.fromisoformat(value)
    except ValueError:
        # .NET and Java send 7-9 fractional digits; Python takes at most 6
        trimmed = re.sub(r"(\.\d{6})\d+", r"\1", value)
        dt = datetime.fromisoformat(trimmed)
    if dt.tzinfo is None:
        dt = dt.replace(tzinfo=UTC)
    return dt.astimezone(UTC)


def corrected_timestamp(
    *, received_at: datetime, timestamp: datetime | None, sent_at: datetime | None
) -> datetime:
    """Segment's clock-skew correction: the client's clock may be wrong, but the interval between its
    `timestamp` and `sentAt` is right, so timestamp = receivedAt - (sentAt - timestamp). Without
    sentAt the client timestamp is taken as-is (historical imports); without either, receivedAt."""
    if timestamp is None:
        return received_at
    if sent_at is None:
        return timestamp
    return received_at - (sent_at - timestamp)


_APP_HINTS = (
    "ios",
    "android",
    "react-native",
    "react_native",
    "flutter",
    "kotlin",
    "swift",
    "xamarin",
    "unity",
    "mobile",
    "cordova",
    "capacitor",
)
_MINI_HINTS = ("miniprogram", "mini-program", "mini_program", "wechat", "weapp", "alipay", "taro", "uni-app")
_WEB_HINTS = ("analytics.js", "analytics-next", "javascript", "browser", "web", "ajs")
_SERVER_HINTS = (
    "python",
    "node",
    "go",
    "ruby",
    "java",
    "php",
    ".net",
    "dotnet",
    "csharp",
    "rust",
    "clojure",
    "server",
    "http",
)


def infer_channel(context: dict[str, Any] | None, top_level: Any = None) -> str:
    """The event's channel: context.channel when it names one of ours, Segment's top-level channel
    (browser/mobile/server), else a guess from context.library.name; 'server' when nothing says."""
    ctx = context or {}
    explicit = ctx.get("channel")
    if isinstance(explicit, str):
        explicit = explicit.lower()
        if explicit in CHANNELS:
            return explicit
        if explicit in _SEGMENT_CHANNELS:
            return _SEGMENT_CHANNELS[explicit]
    if isinstance(top_level, str) and top_level.lower() in CHANNELS | _SEGMENT_CHANNELS.keys():
        top = top_level.lower()
        return _SEGMENT_CHANNELS.get(top, top)
    library = ctx.get("library")
    name = library.get("name") if isinstance(library, dict) else None
    if isinstance(name, str) and name:
        n = name.lower()
        # order matters: "javascript" contains "java", "react-native" is an app, not the web
        if any(h in n for h in _MINI_HINTS):
            return "mini_program"
        if any(h in n for h in _APP_HINTS):
            return "app"
        if any(h in n for h in _WEB_HINTS):
            return "web"
        if any(h in n for h in _SERVER_HINTS):
            return "server"
    if "userAgent" in ctx and "os" not in ctx:
        return "web"
    return "server"


def _ident(event: dict[str, Any], field: str) -> str:
    """A string id field (numbers accepted and stringified, as SDKs do); '' when absent."""
    value = event.get(field)
    if value is None:
        return ""
    if isinstance(value, bool) or not isinstance(value, str | int | float):
        raise _Invalid("invalid_field", f"{field} must be a string")
    value = str(value)
    if len(value) > MAX_ID_LENGTH:
        raise _Invalid("invalid_field", f"{field} is longer than {MAX_ID_LENGTH} characters")
    return value


def _object(event: dict[str, Any], field: str) -> dict[str, Any] | None:
    value = event.get(field)
    if value is None:
        return None
    if not isinstance(value, dict):
        raise _Invalid("invalid_field", f"{field} must be an object")
    return value


class _Invalid(Exception):
    def __init__(self, code: str, detail: str) -> None:
        self.code = code
        self.detail = detail


_EMPTY = "{}"


def _dumps(value: dict[str, Any] | None) -> str:
    return orjson.dumps(value).decode() if value else _EMPTY


def normalise_call(
    event: Any,
    *,
    call_type: str | None,
    received_at: datetime,
    max_bytes: int,
    batch_context: dict[str, Any] | None = None,
    batch_sent_at: datetime | None = None,
) -> TrackingCall | Rejection:
    """Validate one Segment call and normalise it. `call_type` comes from the path for single calls
    and from the event's `type` in a batch (None)."""
    try:
        return _normalise(event, call_type, received_at, max_bytes, batch_context, batch_sent_at)
    except _Invalid as exc:
        return Rejection(exc.code, exc.detail)


def _normalise(
    event: Any,
    call_type: str | None,
    received_at: datetime,
    max_bytes: int,
    batch_context: dict[str, Any] | None,
    batch_sent_at: datetime | None,
) -> TrackingCall:
    if not isinstance(event, dict):
        raise _Invalid("invalid_event", "each call must be a JSON object")
    kind = call_type or event.get("type")
    if kind not in CALL_TYPES:
        raise _Invalid("invalid_type", f"type must be one of {', '.join(CALL_TYPES)}")
    user_id = _ident(event, "userId")
    anonymous_id = _ident(event, "anonymousId")
    if not user_id and not anonymous_id:
        raise _Invalid("missing_identity", "userId or anonymousId is required")
    name = ""
    previous_id = group_id = ""
    if kind == "track":
        name = event.get("event")
        if not isinstance(name, str) or not name.strip():
            raise _Invalid("missing_event", "a track call needs a non-empty event name")
    elif kind in ("page", "screen"):
        name = event.get("name") or ""
        if not isinstance(name, str):
            raise _Invalid("invalid_field", "name must be a string")
    elif kind == "alias":
        previous_id = _ident(event, "previousId")
        if not previous_id or not user_id:
            raise _Invalid("missing_previous_id", "an alias call needs previousId and userId")
    elif kind == "group":
        group_id = _ident(event, "groupId")
        if not group_id:
            raise _Invalid("missing_group_id", "a group call needs a groupId")

    properties = _object(event, "properties")
    traits = _object(event, "traits")
    context = _object(event, "context")
    if batch_context:
        context = {**batch_context, **context} if context else dict(batch_context)

    try:
        client_ts = parse_timestamp(event.get("timestamp"))
        raw_original = event.get("originalTimestamp")
        if client_ts is None and raw_original:
            client_ts = parse_timestamp(raw_original)
        sent_at = parse_timestamp(event.get("sentAt")) or batch_sent_at
        timestamp = corrected_timestamp(received_at=received_at, timestamp=client_ts, sent_at=sent_at)
    except (ValueError, OverflowError) as exc:  # OverflowError: year 1 or 9999 shifted past the range
        raise _Invalid(
            "invalid_timestamp", f"timestamp, originalTimestamp and sentAt must be ISO-8601 in range: {exc}"
        ) from None
    if client_ts is not None and sent_at is not None:
        # keep what the client's clock said, as Segment keeps originalTimestamp
        context = dict(context) if context else {}
        context["originalTimestamp"] = client_ts.isoformat().replace("+00:00", "Z")

    message_id = _ident(event, "messageId") or new_id_str()
    channel = infer_channel(context, event.get("channel"))
    properties_json = _dumps(properties)
    traits_json = _dumps(traits)
    context_json = _dumps(context)
    size = (
        len(properties_json)
        + len(traits_json)
        + len(context_json)
        + len(name)
        + len(user_id)
        + len(anonymous_id)
        + len(message_id)
    )
    if size > max_bytes:
        raise _Invalid("event_too_large", f"the call is larger than {max_bytes} bytes")
    return TrackingCall(
        type=kind,
        message_id=message_id,
        anonymous_id=anonymous_id,
        user_id=user_id,
        name=name,
        properties_json=properties_json,
        traits_json=traits_json,
        context_json=context_json,
        previous_id=previous_id,
        group_id=group_id,
        timestamp=timestamp,
        channel=channel,
        size=size,
    )


def batch_envelope(body: Any) -> tuple[list[Any], dict[str, Any] | None, datetime | None]:
    """(events, batch context, batch sentAt) of a /v1/batch body. Raises ValueError with a reason."""
    if not isinstance(body, dict):
        raise ValueError("the body must be a JSON object with a `batch` array")
    events = body.get("batch")
    if not isinstance(events, list):
        raise ValueError("`batch` must be an array of calls")
    context = body.get("context")
    if context is not None and not isinstance(context, dict):
        raise ValueError("`context` must be an object")
    try:
        sent_at = parse_timestamp(body.get("sentAt"))
    except (ValueError, OverflowError) as exc:
        raise ValueError(f"`sentAt` must be ISO-8601: {exc}") from None
    return events, context or None, sent_at
