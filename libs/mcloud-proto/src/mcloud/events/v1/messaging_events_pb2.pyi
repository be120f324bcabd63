import datetime

from google.protobuf import timestamp_pb2 as _timestamp_pb2
from google.protobuf import descriptor as _descriptor
from google.protobuf import message as _message
from collections.abc import Mapping as _Mapping
from typing import ClassVar as _ClassVar, Optional as _Optional, Union as _Union

DESCRIPTOR: _descriptor.FileDescriptor

class MessageRef(_message.Message):
    __slots__ = ("message_id", "profile_id", "channel", "template_id", "template_version", "transactional", "journey_id", "journey_version", "enrollment_id", "step_id", "campaign_id")
    MESSAGE_ID_FIELD_NUMBER: _ClassVar[int]
    PROFILE_ID_FIELD_NUMBER: _ClassVar[int]
    CHANNEL_FIELD_NUMBER: _ClassVar[int]
    TEMPLATE_ID_FIELD_NUMBER: _ClassVar[int]
    TEMPLATE_VERSION_FIELD_NUMBER: _ClassVar[int]
    TRANSACTIONAL_FIELD_NUMBER: _ClassVar[int]
    JOURNEY_ID_FIELD_NUMBER: _ClassVar[int]
    JOURNEY_VERSION_FIELD_NUMBER: _ClassVar[int]
    ENROLLMENT_ID_FIELD_NUMBER: _ClassVar[int]
    STEP_ID_FIELD_NUMBER: _ClassVar[int]
    CAMPAIGN_ID_FIELD_NUMBER: _ClassVar[int]
    message_id: str
    profile_id: str
    channel: str
    template_id: str
    template_version: int
    transactional: bool
    journey_id: str
    journey_version: int
    enrollment_id: str
    step_id: str
    campaign_id: str
    def __init__(self, message_id: _Optional[str] = ..., profile_id: _Optional[str] = ..., channel: _Optional[str] = ..., template_id: _Optional[str] = ..., template_version: _Optional[int] = ..., transactional: _Optional[bool] = ..., journey_id: _Optional[str] = ..., journey_version: _Optional[int] = ..., enrollment_id: _Optional[str] = ..., step_id: _Optional[str] = ..., campaign_id: _Optional[str] = ...) -> None: ...

class MessageQueued(_message.Message):
    __slots__ = ("message", "send_at", "held_for_quiet_hours")
    MESSAGE_FIELD_NUMBER: _ClassVar[int]
    SEND_AT_FIELD_NUMBER: _ClassVar[int]
    HELD_FOR_QUIET_HOURS_FIELD_NUMBER: _ClassVar[int]
    message: MessageRef
    send_at: _timestamp_pb2.Timestamp
    held_for_quiet_hours: bool
    def __init__(self, message: _Optional[_Union[MessageRef, _Mapping]] = ..., send_at: _Optional[_Union[datetime.datetime, _timestamp_pb2.Timestamp, _Mapping]] = ..., held_for_quiet_hours: _Optional[bool] = ...) -> None: ...

class MessageSent(_message.Message):
    __slots__ = ("message", "provider", "provider_message_id", "attempt")
    MESSAGE_FIELD_NUMBER: _ClassVar[int]
    PROVIDER_FIELD_NUMBER: _ClassVar[int]
    PROVIDER_MESSAGE_ID_FIELD_NUMBER: _ClassVar[int]
    ATTEMPT_FIELD_NUMBER: _ClassVar[int]
    message: MessageRef
    provider: str
    provider_message_id: str
    attempt: int
    def __init__(self, message: _Optional[_Union[MessageRef, _Mapping]] = ..., provider: _Optional[str] = ..., provider_message_id: _Optional[str] = ..., attempt: _Optional[int] = ...) -> None: ...

class MessageDelivered(_message.Message):
    __slots__ = ("message",)
    MESSAGE_FIELD_NUMBER: _ClassVar[int]
    message: MessageRef
    def __init__(self, message: _Optional[_Union[MessageRef, _Mapping]] = ...) -> None: ...

class MessageOpened(_message.Message):
    __slots__ = ("message", "user_agent")
    MESSAGE_FIELD_NUMBER: _ClassVar[int]
    USER_AGENT_FIELD_NUMBER: _ClassVar[int]
    message: MessageRef
    user_agent: str
    def __init__(self, message: _Optional[_Union[MessageRef, _Mapping]] = ..., user_agent: _Optional[str] = ...) -> None: ...

class MessageClicked(_message.Message):
    __slots__ = ("message", "url", "item_id", "recommendation_id")
    MESSAGE_FIELD_NUMBER: _ClassVar[int]
    URL_FIELD_NUMBER: _ClassVar[int]
    ITEM_ID_FIELD_NUMBER: _ClassVar[int]
    RECOMMENDATION_ID_FIELD_NUMBER: _ClassVar[int]
    message: MessageRef
    url: str
    item_id: str
    recommendation_id: str
    def __init__(self, message: _Optional[_Union[MessageRef, _Mapping]] = ..., url: _Optional[str] = ..., item_id: _Optional[str] = ..., recommendation_id: _Optional[str] = ...) -> None: ...

class MessageBounced(_message.Message):
    __slots__ = ("message", "hard_bounce", "detail")
    MESSAGE_FIELD_NUMBER: _ClassVar[int]
    HARD_BOUNCE_FIELD_NUMBER: _ClassVar[int]
    DETAIL_FIELD_NUMBER: _ClassVar[int]
    message: MessageRef
    hard_bounce: bool
    detail: str
    def __init__(self, message: _Optional[_Union[MessageRef, _Mapping]] = ..., hard_bounce: _Optional[bool] = ..., detail: _Optional[str] = ...) -> None: ...

class MessageFailed(_message.Message):
    __slots__ = ("message", "error", "attempts")
    MESSAGE_FIELD_NUMBER: _ClassVar[int]
    ERROR_FIELD_NUMBER: _ClassVar[int]
    ATTEMPTS_FIELD_NUMBER: _ClassVar[int]
    message: MessageRef
    error: str
    attempts: int
    def __init__(self, message: _Optional[_Union[MessageRef, _Mapping]] = ..., error: _Optional[str] = ..., attempts: _Optional[int] = ...) -> None: ...

class MessageDropped(_message.Message):
    __slots__ = ("message", "status", "block_reason")
    MESSAGE_FIELD_NUMBER: _ClassVar[int]
    STATUS_FIELD_NUMBER: _ClassVar[int]
    BLOCK_REASON_FIELD_NUMBER: _ClassVar[int]
    message: MessageRef
    status: str
    block_reason: str
    def __init__(self, message: _Optional[_Union[MessageRef, _Mapping]] = ..., status: _Optional[str] = ..., block_reason: _Optional[str] = ...) -> None: ...

class MessageUnsubscribed(_message.Message):
    __slots__ = ("message", "profile_id", "channel", "source")
    MESSAGE_FIELD_NUMBER: _ClassVar[int]
    PROFILE_ID_FIELD_NUMBER: _ClassVar[int]
    CHANNEL_FIELD_NUMBER: _ClassVar[int]
    SOURCE_FIELD_NUMBER: _ClassVar[int]
    message: MessageRef
    profile_id: str
    channel: str
    source: str
    def __init__(self, message: _Optional[_Union[MessageRef, _Mapping]] = ..., profile_id: _Optional[str] = ..., channel: _Optional[str] = ..., source: _Optional[str] = ...) -> None: ...
