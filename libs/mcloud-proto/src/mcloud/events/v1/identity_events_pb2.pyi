import datetime

from google.protobuf import timestamp_pb2 as _timestamp_pb2
from google.protobuf.internal import containers as _containers
from google.protobuf import descriptor as _descriptor
from google.protobuf import message as _message
from collections.abc import Iterable as _Iterable, Mapping as _Mapping
from typing import ClassVar as _ClassVar, Optional as _Optional, Union as _Union

DESCRIPTOR: _descriptor.FileDescriptor

class ProfileMerged(_message.Message):
    __slots__ = ("from_profile_id", "into_profile_id", "reason")
    FROM_PROFILE_ID_FIELD_NUMBER: _ClassVar[int]
    INTO_PROFILE_ID_FIELD_NUMBER: _ClassVar[int]
    REASON_FIELD_NUMBER: _ClassVar[int]
    from_profile_id: str
    into_profile_id: str
    reason: str
    def __init__(self, from_profile_id: _Optional[str] = ..., into_profile_id: _Optional[str] = ..., reason: _Optional[str] = ...) -> None: ...

class ProfileSplit(_message.Message):
    __slots__ = ("profile_id", "new_profile_id", "moved_identifiers")
    PROFILE_ID_FIELD_NUMBER: _ClassVar[int]
    NEW_PROFILE_ID_FIELD_NUMBER: _ClassVar[int]
    MOVED_IDENTIFIERS_FIELD_NUMBER: _ClassVar[int]
    profile_id: str
    new_profile_id: str
    moved_identifiers: _containers.RepeatedScalarFieldContainer[str]
    def __init__(self, profile_id: _Optional[str] = ..., new_profile_id: _Optional[str] = ..., moved_identifiers: _Optional[_Iterable[str]] = ...) -> None: ...

class ProfileErased(_message.Message):
    __slots__ = ("profile_id", "requested_at")
    PROFILE_ID_FIELD_NUMBER: _ClassVar[int]
    REQUESTED_AT_FIELD_NUMBER: _ClassVar[int]
    profile_id: str
    requested_at: _timestamp_pb2.Timestamp
    def __init__(self, profile_id: _Optional[str] = ..., requested_at: _Optional[_Union[datetime.datetime, _timestamp_pb2.Timestamp, _Mapping]] = ...) -> None: ...

class ProfileIdentified(_message.Message):
    __slots__ = ("profile_id", "traits_json")
    PROFILE_ID_FIELD_NUMBER: _ClassVar[int]
    TRAITS_JSON_FIELD_NUMBER: _ClassVar[int]
    profile_id: str
    traits_json: str
    def __init__(self, profile_id: _Optional[str] = ..., traits_json: _Optional[str] = ...) -> None: ...

class LifecycleChanged(_message.Message):
    __slots__ = ("profile_id", "from_stage", "to_stage")
    PROFILE_ID_FIELD_NUMBER: _ClassVar[int]
    FROM_STAGE_FIELD_NUMBER: _ClassVar[int]
    TO_STAGE_FIELD_NUMBER: _ClassVar[int]
    profile_id: str
    from_stage: str
    to_stage: str
    def __init__(self, profile_id: _Optional[str] = ..., from_stage: _Optional[str] = ..., to_stage: _Optional[str] = ...) -> None: ...

class SegmentMembershipChanged(_message.Message):
    __slots__ = ("profile_id", "segment_id", "entered")
    PROFILE_ID_FIELD_NUMBER: _ClassVar[int]
    SEGMENT_ID_FIELD_NUMBER: _ClassVar[int]
    ENTERED_FIELD_NUMBER: _ClassVar[int]
    profile_id: str
    segment_id: str
    entered: bool
    def __init__(self, profile_id: _Optional[str] = ..., segment_id: _Optional[str] = ..., entered: _Optional[bool] = ...) -> None: ...

class ConsentChanged(_message.Message):
    __slots__ = ("profile_id", "channel", "purpose", "state")
    PROFILE_ID_FIELD_NUMBER: _ClassVar[int]
    CHANNEL_FIELD_NUMBER: _ClassVar[int]
    PURPOSE_FIELD_NUMBER: _ClassVar[int]
    STATE_FIELD_NUMBER: _ClassVar[int]
    profile_id: str
    channel: str
    purpose: str
    state: str
    def __init__(self, profile_id: _Optional[str] = ..., channel: _Optional[str] = ..., purpose: _Optional[str] = ..., state: _Optional[str] = ...) -> None: ...
