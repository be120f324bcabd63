import datetime

from google.protobuf import timestamp_pb2 as _timestamp_pb2
from google.protobuf import descriptor as _descriptor
from google.protobuf import message as _message
from collections.abc import Mapping as _Mapping
from typing import ClassVar as _ClassVar, Optional as _Optional, Union as _Union

DESCRIPTOR: _descriptor.FileDescriptor

class JourneyEntered(_message.Message):
    __slots__ = ("journey_id", "journey_version", "enrollment_id", "profile_id", "entry_key", "trigger", "trigger_event_id", "holdout")
    JOURNEY_ID_FIELD_NUMBER: _ClassVar[int]
    JOURNEY_VERSION_FIELD_NUMBER: _ClassVar[int]
    ENROLLMENT_ID_FIELD_NUMBER: _ClassVar[int]
    PROFILE_ID_FIELD_NUMBER: _ClassVar[int]
    ENTRY_KEY_FIELD_NUMBER: _ClassVar[int]
    TRIGGER_FIELD_NUMBER: _ClassVar[int]
    TRIGGER_EVENT_ID_FIELD_NUMBER: _ClassVar[int]
    HOLDOUT_FIELD_NUMBER: _ClassVar[int]
    journey_id: str
    journey_version: int
    enrollment_id: str
    profile_id: str
    entry_key: str
    trigger: str
    trigger_event_id: str
    holdout: bool
    def __init__(self, journey_id: _Optional[str] = ..., journey_version: _Optional[int] = ..., enrollment_id: _Optional[str] = ..., profile_id: _Optional[str] = ..., entry_key: _Optional[str] = ..., trigger: _Optional[str] = ..., trigger_event_id: _Optional[str] = ..., holdout: _Optional[bool] = ...) -> None: ...

class JourneyStepCompleted(_message.Message):
    __slots__ = ("journey_id", "journey_version", "enrollment_id", "profile_id", "step_id", "step_type", "outcome", "next_step_id", "result_ref")
    JOURNEY_ID_FIELD_NUMBER: _ClassVar[int]
    JOURNEY_VERSION_FIELD_NUMBER: _ClassVar[int]
    ENROLLMENT_ID_FIELD_NUMBER: _ClassVar[int]
    PROFILE_ID_FIELD_NUMBER: _ClassVar[int]
    STEP_ID_FIELD_NUMBER: _ClassVar[int]
    STEP_TYPE_FIELD_NUMBER: _ClassVar[int]
    OUTCOME_FIELD_NUMBER: _ClassVar[int]
    NEXT_STEP_ID_FIELD_NUMBER: _ClassVar[int]
    RESULT_REF_FIELD_NUMBER: _ClassVar[int]
    journey_id: str
    journey_version: int
    enrollment_id: str
    profile_id: str
    step_id: str
    step_type: str
    outcome: str
    next_step_id: str
    result_ref: str
    def __init__(self, journey_id: _Optional[str] = ..., journey_version: _Optional[int] = ..., enrollment_id: _Optional[str] = ..., profile_id: _Optional[str] = ..., step_id: _Optional[str] = ..., step_type: _Optional[str] = ..., outcome: _Optional[str] = ..., next_step_id: _Optional[str] = ..., result_ref: _Optional[str] = ...) -> None: ...

class JourneyExited(_message.Message):
    __slots__ = ("journey_id", "journey_version", "enrollment_id", "profile_id", "reason", "step_id", "holdout")
    JOURNEY_ID_FIELD_NUMBER: _ClassVar[int]
    JOURNEY_VERSION_FIELD_NUMBER: _ClassVar[int]
    ENROLLMENT_ID_FIELD_NUMBER: _ClassVar[int]
    PROFILE_ID_FIELD_NUMBER: _ClassVar[int]
    REASON_FIELD_NUMBER: _ClassVar[int]
    STEP_ID_FIELD_NUMBER: _ClassVar[int]
    HOLDOUT_FIELD_NUMBER: _ClassVar[int]
    journey_id: str
    journey_version: int
    enrollment_id: str
    profile_id: str
    reason: str
    step_id: str
    holdout: bool
    def __init__(self, journey_id: _Optional[str] = ..., journey_version: _Optional[int] = ..., enrollment_id: _Optional[str] = ..., profile_id: _Optional[str] = ..., reason: _Optional[str] = ..., step_id: _Optional[str] = ..., holdout: _Optional[bool] = ...) -> None: ...

class JourneyConverted(_message.Message):
    __slots__ = ("journey_id", "journey_version", "enrollment_id", "profile_id", "goal_id", "holdout", "trigger_event_id", "value_minor", "currency", "entered_at")
    JOURNEY_ID_FIELD_NUMBER: _ClassVar[int]
    JOURNEY_VERSION_FIELD_NUMBER: _ClassVar[int]
    ENROLLMENT_ID_FIELD_NUMBER: _ClassVar[int]
    PROFILE_ID_FIELD_NUMBER: _ClassVar[int]
    GOAL_ID_FIELD_NUMBER: _ClassVar[int]
    HOLDOUT_FIELD_NUMBER: _ClassVar[int]
    TRIGGER_EVENT_ID_FIELD_NUMBER: _ClassVar[int]
    VALUE_MINOR_FIELD_NUMBER: _ClassVar[int]
    CURRENCY_FIELD_NUMBER: _ClassVar[int]
    ENTERED_AT_FIELD_NUMBER: _ClassVar[int]
    journey_id: str
    journey_version: int
    enrollment_id: str
    profile_id: str
    goal_id: str
    holdout: bool
    trigger_event_id: str
    value_minor: int
    currency: str
    entered_at: _timestamp_pb2.Timestamp
    def __init__(self, journey_id: _Optional[str] = ..., journey_version: _Optional[int] = ..., enrollment_id: _Optional[str] = ..., profile_id: _Optional[str] = ..., goal_id: _Optional[str] = ..., holdout: _Optional[bool] = ..., trigger_event_id: _Optional[str] = ..., value_minor: _Optional[int] = ..., currency: _Optional[str] = ..., entered_at: _Optional[_Union[datetime.datetime, _timestamp_pb2.Timestamp, _Mapping]] = ...) -> None: ...
