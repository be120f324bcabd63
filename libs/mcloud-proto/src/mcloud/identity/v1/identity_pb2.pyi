import datetime

from google.protobuf import timestamp_pb2 as _timestamp_pb2
from google.protobuf.internal import containers as _containers
from google.protobuf.internal import enum_type_wrapper as _enum_type_wrapper
from google.protobuf import descriptor as _descriptor
from google.protobuf import message as _message
from collections.abc import Iterable as _Iterable, Mapping as _Mapping
from typing import ClassVar as _ClassVar, Optional as _Optional, Union as _Union

DESCRIPTOR: _descriptor.FileDescriptor

class CallType(int, metaclass=_enum_type_wrapper.EnumTypeWrapper):
    __slots__ = ()
    CALL_TYPE_UNSPECIFIED: _ClassVar[CallType]
    CALL_TYPE_TRACK: _ClassVar[CallType]
    CALL_TYPE_IDENTIFY: _ClassVar[CallType]
    CALL_TYPE_ALIAS: _ClassVar[CallType]
    CALL_TYPE_PAGE: _ClassVar[CallType]
    CALL_TYPE_SCREEN: _ClassVar[CallType]
    CALL_TYPE_GROUP: _ClassVar[CallType]

class ConsentState(int, metaclass=_enum_type_wrapper.EnumTypeWrapper):
    __slots__ = ()
    CONSENT_STATE_UNSPECIFIED: _ClassVar[ConsentState]
    CONSENT_STATE_GRANTED: _ClassVar[ConsentState]
    CONSENT_STATE_DENIED: _ClassVar[ConsentState]
    CONSENT_STATE_WITHDRAWN: _ClassVar[ConsentState]
CALL_TYPE_UNSPECIFIED: CallType
CALL_TYPE_TRACK: CallType
CALL_TYPE_IDENTIFY: CallType
CALL_TYPE_ALIAS: CallType
CALL_TYPE_PAGE: CallType
CALL_TYPE_SCREEN: CallType
CALL_TYPE_GROUP: CallType
CONSENT_STATE_UNSPECIFIED: ConsentState
CONSENT_STATE_GRANTED: ConsentState
CONSENT_STATE_DENIED: ConsentState
CONSENT_STATE_WITHDRAWN: ConsentState

class InboundEvent(_message.Message):
    __slots__ = ("type", "message_id", "anonymous_id", "user_id", "name", "properties_json", "traits_json", "context_json", "previous_id", "group_id", "timestamp", "received_at", "channel")
    TYPE_FIELD_NUMBER: _ClassVar[int]
    MESSAGE_ID_FIELD_NUMBER: _ClassVar[int]
    ANONYMOUS_ID_FIELD_NUMBER: _ClassVar[int]
    USER_ID_FIELD_NUMBER: _ClassVar[int]
    NAME_FIELD_NUMBER: _ClassVar[int]
    PROPERTIES_JSON_FIELD_NUMBER: _ClassVar[int]
    TRAITS_JSON_FIELD_NUMBER: _ClassVar[int]
    CONTEXT_JSON_FIELD_NUMBER: _ClassVar[int]
    PREVIOUS_ID_FIELD_NUMBER: _ClassVar[int]
    GROUP_ID_FIELD_NUMBER: _ClassVar[int]
    TIMESTAMP_FIELD_NUMBER: _ClassVar[int]
    RECEIVED_AT_FIELD_NUMBER: _ClassVar[int]
    CHANNEL_FIELD_NUMBER: _ClassVar[int]
    type: CallType
    message_id: str
    anonymous_id: str
    user_id: str
    name: str
    properties_json: str
    traits_json: str
    context_json: str
    previous_id: str
    group_id: str
    timestamp: _timestamp_pb2.Timestamp
    received_at: _timestamp_pb2.Timestamp
    channel: str
    def __init__(self, type: _Optional[_Union[CallType, str]] = ..., message_id: _Optional[str] = ..., anonymous_id: _Optional[str] = ..., user_id: _Optional[str] = ..., name: _Optional[str] = ..., properties_json: _Optional[str] = ..., traits_json: _Optional[str] = ..., context_json: _Optional[str] = ..., previous_id: _Optional[str] = ..., group_id: _Optional[str] = ..., timestamp: _Optional[_Union[datetime.datetime, _timestamp_pb2.Timestamp, _Mapping]] = ..., received_at: _Optional[_Union[datetime.datetime, _timestamp_pb2.Timestamp, _Mapping]] = ..., channel: _Optional[str] = ...) -> None: ...

class IngestEventsRequest(_message.Message):
    __slots__ = ("events",)
    EVENTS_FIELD_NUMBER: _ClassVar[int]
    events: _containers.RepeatedCompositeFieldContainer[InboundEvent]
    def __init__(self, events: _Optional[_Iterable[_Union[InboundEvent, _Mapping]]] = ...) -> None: ...

class EventRejection(_message.Message):
    __slots__ = ("index", "code", "detail")
    INDEX_FIELD_NUMBER: _ClassVar[int]
    CODE_FIELD_NUMBER: _ClassVar[int]
    DETAIL_FIELD_NUMBER: _ClassVar[int]
    index: int
    code: str
    detail: str
    def __init__(self, index: _Optional[int] = ..., code: _Optional[str] = ..., detail: _Optional[str] = ...) -> None: ...

class IngestEventsResponse(_message.Message):
    __slots__ = ("accepted", "duplicates", "rejected", "profile_ids")
    ACCEPTED_FIELD_NUMBER: _ClassVar[int]
    DUPLICATES_FIELD_NUMBER: _ClassVar[int]
    REJECTED_FIELD_NUMBER: _ClassVar[int]
    PROFILE_IDS_FIELD_NUMBER: _ClassVar[int]
    accepted: int
    duplicates: int
    rejected: _containers.RepeatedCompositeFieldContainer[EventRejection]
    profile_ids: _containers.RepeatedScalarFieldContainer[str]
    def __init__(self, accepted: _Optional[int] = ..., duplicates: _Optional[int] = ..., rejected: _Optional[_Iterable[_Union[EventRejection, _Mapping]]] = ..., profile_ids: _Optional[_Iterable[str]] = ...) -> None: ...

class Identifier(_message.Message):
    __slots__ = ("type", "value")
    TYPE_FIELD_NUMBER: _ClassVar[int]
    VALUE_FIELD_NUMBER: _ClassVar[int]
    type: str
    value: str
    def __init__(self, type: _Optional[str] = ..., value: _Optional[str] = ...) -> None: ...

class Profile(_message.Message):
    __slots__ = ("id", "identifiers", "traits_json", "tags", "lifecycle_stage", "computed_json", "created_at", "updated_at", "merged_from", "consents", "segment_ids")
    ID_FIELD_NUMBER: _ClassVar[int]
    IDENTIFIERS_FIELD_NUMBER: _ClassVar[int]
    TRAITS_JSON_FIELD_NUMBER: _ClassVar[int]
    TAGS_FIELD_NUMBER: _ClassVar[int]
    LIFECYCLE_STAGE_FIELD_NUMBER: _ClassVar[int]
    COMPUTED_JSON_FIELD_NUMBER: _ClassVar[int]
    CREATED_AT_FIELD_NUMBER: _ClassVar[int]
    UPDATED_AT_FIELD_NUMBER: _ClassVar[int]
    MERGED_FROM_FIELD_NUMBER: _ClassVar[int]
    CONSENTS_FIELD_NUMBER: _ClassVar[int]
    SEGMENT_IDS_FIELD_NUMBER: _ClassVar[int]
    id: str
    identifiers: _containers.RepeatedCompositeFieldContainer[Identifier]
    traits_json: str
    tags: _containers.RepeatedScalarFieldContainer[str]
    lifecycle_stage: str
    computed_json: str
    created_at: _timestamp_pb2.Timestamp
    updated_at: _timestamp_pb2.Timestamp
    merged_from: _containers.RepeatedScalarFieldContainer[str]
    consents: _containers.RepeatedCompositeFieldContainer[Consent]
    segment_ids: _containers.RepeatedScalarFieldContainer[str]
    def __init__(self, id: _Optional[str] = ..., identifiers: _Optional[_Iterable[_Union[Identifier, _Mapping]]] = ..., traits_json: _Optional[str] = ..., tags: _Optional[_Iterable[str]] = ..., lifecycle_stage: _Optional[str] = ..., computed_json: _Optional[str] = ..., created_at: _Optional[_Union[datetime.datetime, _timestamp_pb2.Timestamp, _Mapping]] = ..., updated_at: _Optional[_Union[datetime.datetime, _timestamp_pb2.Timestamp, _Mapping]] = ..., merged_from: _Optional[_Iterable[str]] = ..., consents: _Optional[_Iterable[_Union[Consent, _Mapping]]] = ..., segment_ids: _Optional[_Iterable[str]] = ...) -> None: ...

class Consent(_message.Message):
    __slots__ = ("channel", "purpose", "state", "source", "at")
    CHANNEL_FIELD_NUMBER: _ClassVar[int]
    PURPOSE_FIELD_NUMBER: _ClassVar[int]
    STATE_FIELD_NUMBER: _ClassVar[int]
    SOURCE_FIELD_NUMBER: _ClassVar[int]
    AT_FIELD_NUMBER: _ClassVar[int]
    channel: str
    purpose: str
    state: ConsentState
    source: str
    at: _timestamp_pb2.Timestamp
    def __init__(self, channel: _Optional[str] = ..., purpose: _Optional[str] = ..., state: _Optional[_Union[ConsentState, str]] = ..., source: _Optional[str] = ..., at: _Optional[_Union[datetime.datetime, _timestamp_pb2.Timestamp, _Mapping]] = ...) -> None: ...

class GetProfileRequest(_message.Message):
    __slots__ = ("profile_id", "identifier")
    PROFILE_ID_FIELD_NUMBER: _ClassVar[int]
    IDENTIFIER_FIELD_NUMBER: _ClassVar[int]
    profile_id: str
    identifier: Identifier
    def __init__(self, profile_id: _Optional[str] = ..., identifier: _Optional[_Union[Identifier, _Mapping]] = ...) -> None: ...

class GetProfileResponse(_message.Message):
    __slots__ = ("profile",)
    PROFILE_FIELD_NUMBER: _ClassVar[int]
    profile: Profile
    def __init__(self, profile: _Optional[_Union[Profile, _Mapping]] = ...) -> None: ...

class ProfileEvent(_message.Message):
    __slots__ = ("id", "type", "name", "properties_json", "timestamp", "channel", "message_id")
    ID_FIELD_NUMBER: _ClassVar[int]
    TYPE_FIELD_NUMBER: _ClassVar[int]
    NAME_FIELD_NUMBER: _ClassVar[int]
    PROPERTIES_JSON_FIELD_NUMBER: _ClassVar[int]
    TIMESTAMP_FIELD_NUMBER: _ClassVar[int]
    CHANNEL_FIELD_NUMBER: _ClassVar[int]
    MESSAGE_ID_FIELD_NUMBER: _ClassVar[int]
    id: str
    type: CallType
    name: str
    properties_json: str
    timestamp: _timestamp_pb2.Timestamp
    channel: str
    message_id: str
    def __init__(self, id: _Optional[str] = ..., type: _Optional[_Union[CallType, str]] = ..., name: _Optional[str] = ..., properties_json: _Optional[str] = ..., timestamp: _Optional[_Union[datetime.datetime, _timestamp_pb2.Timestamp, _Mapping]] = ..., channel: _Optional[str] = ..., message_id: _Optional[str] = ...) -> None: ...

class ListProfileEventsRequest(_message.Message):
    __slots__ = ("profile_id", "page_size", "page_token")
    PROFILE_ID_FIELD_NUMBER: _ClassVar[int]
    PAGE_SIZE_FIELD_NUMBER: _ClassVar[int]
    PAGE_TOKEN_FIELD_NUMBER: _ClassVar[int]
    profile_id: str
    page_size: int
    page_token: str
    def __init__(self, profile_id: _Optional[str] = ..., page_size: _Optional[int] = ..., page_token: _Optional[str] = ...) -> None: ...

class ListProfileEventsResponse(_message.Message):
    __slots__ = ("events", "next_page_token")
    EVENTS_FIELD_NUMBER: _ClassVar[int]
    NEXT_PAGE_TOKEN_FIELD_NUMBER: _ClassVar[int]
    events: _containers.RepeatedCompositeFieldContainer[ProfileEvent]
    next_page_token: str
    def __init__(self, events: _Optional[_Iterable[_Union[ProfileEvent, _Mapping]]] = ..., next_page_token: _Optional[str] = ...) -> None: ...

class UpdateProfileRequest(_message.Message):
    __slots__ = ("profile_id", "traits_json", "add_tags", "remove_tags", "source", "idempotency_key")
    PROFILE_ID_FIELD_NUMBER: _ClassVar[int]
    TRAITS_JSON_FIELD_NUMBER: _ClassVar[int]
    ADD_TAGS_FIELD_NUMBER: _ClassVar[int]
    REMOVE_TAGS_FIELD_NUMBER: _ClassVar[int]
    SOURCE_FIELD_NUMBER: _ClassVar[int]
    IDEMPOTENCY_KEY_FIELD_NUMBER: _ClassVar[int]
    profile_id: str
    traits_json: str
    add_tags: _containers.RepeatedScalarFieldContainer[str]
    remove_tags: _containers.RepeatedScalarFieldContainer[str]
    source: str
    idempotency_key: str
    def __init__(self, profile_id: _Optional[str] = ..., traits_json: _Optional[str] = ..., add_tags: _Optional[_Iterable[str]] = ..., remove_tags: _Optional[_Iterable[str]] = ..., source: _Optional[str] = ..., idempotency_key: _Optional[str] = ...) -> None: ...

class UpdateProfileResponse(_message.Message):
    __slots__ = ("profile",)
    PROFILE_FIELD_NUMBER: _ClassVar[int]
    profile: Profile
    def __init__(self, profile: _Optional[_Union[Profile, _Mapping]] = ...) -> None: ...

class MergeProfilesRequest(_message.Message):
    __slots__ = ("from_profile_id", "into_profile_id", "reason", "actor", "idempotency_key")
    FROM_PROFILE_ID_FIELD_NUMBER: _ClassVar[int]
    INTO_PROFILE_ID_FIELD_NUMBER: _ClassVar[int]
    REASON_FIELD_NUMBER: _ClassVar[int]
    ACTOR_FIELD_NUMBER: _ClassVar[int]
    IDEMPOTENCY_KEY_FIELD_NUMBER: _ClassVar[int]
    from_profile_id: str
    into_profile_id: str
    reason: str
    actor: str
    idempotency_key: str
    def __init__(self, from_profile_id: _Optional[str] = ..., into_profile_id: _Optional[str] = ..., reason: _Optional[str] = ..., actor: _Optional[str] = ..., idempotency_key: _Optional[str] = ...) -> None: ...

class MergeProfilesResponse(_message.Message):
    __slots__ = ("profile",)
    PROFILE_FIELD_NUMBER: _ClassVar[int]
    profile: Profile
    def __init__(self, profile: _Optional[_Union[Profile, _Mapping]] = ...) -> None: ...

class SplitProfileRequest(_message.Message):
    __slots__ = ("profile_id", "identifiers", "reason", "actor", "idempotency_key", "merge_id")
    PROFILE_ID_FIELD_NUMBER: _ClassVar[int]
    IDENTIFIERS_FIELD_NUMBER: _ClassVar[int]
    REASON_FIELD_NUMBER: _ClassVar[int]
    ACTOR_FIELD_NUMBER: _ClassVar[int]
    IDEMPOTENCY_KEY_FIELD_NUMBER: _ClassVar[int]
    MERGE_ID_FIELD_NUMBER: _ClassVar[int]
    profile_id: str
    identifiers: _containers.RepeatedCompositeFieldContainer[Identifier]
    reason: str
    actor: str
    idempotency_key: str
    merge_id: str
    def __init__(self, profile_id: _Optional[str] = ..., identifiers: _Optional[_Iterable[_Union[Identifier, _Mapping]]] = ..., reason: _Optional[str] = ..., actor: _Optional[str] = ..., idempotency_key: _Optional[str] = ..., merge_id: _Optional[str] = ...) -> None: ...

class SplitProfileResponse(_message.Message):
    __slots__ = ("original", "split")
    ORIGINAL_FIELD_NUMBER: _ClassVar[int]
    SPLIT_FIELD_NUMBER: _ClassVar[int]
    original: Profile
    split: Profile
    def __init__(self, original: _Optional[_Union[Profile, _Mapping]] = ..., split: _Optional[_Union[Profile, _Mapping]] = ...) -> None: ...

class SetConsentRequest(_message.Message):
    __slots__ = ("profile_id", "channel", "purpose", "state", "source", "at")
    PROFILE_ID_FIELD_NUMBER: _ClassVar[int]
    CHANNEL_FIELD_NUMBER: _ClassVar[int]
    PURPOSE_FIELD_NUMBER: _ClassVar[int]
    STATE_FIELD_NUMBER: _ClassVar[int]
    SOURCE_FIELD_NUMBER: _ClassVar[int]
    AT_FIELD_NUMBER: _ClassVar[int]
    profile_id: str
    channel: str
    purpose: str
    state: ConsentState
    source: str
    at: _timestamp_pb2.Timestamp
    def __init__(self, profile_id: _Optional[str] = ..., channel: _Optional[str] = ..., purpose: _Optional[str] = ..., state: _Optional[_Union[ConsentState, str]] = ..., source: _Optional[str] = ..., at: _Optional[_Union[datetime.datetime, _timestamp_pb2.Timestamp, _Mapping]] = ...) -> None: ...

class SetConsentResponse(_message.Message):
    __slots__ = ("state",)
    STATE_FIELD_NUMBER: _ClassVar[int]
    state: ConsentState
    def __init__(self, state: _Optional[_Union[ConsentState, str]] = ...) -> None: ...

class EraseProfileRequest(_message.Message):
    __slots__ = ("profile_id", "idempotency_key")
    PROFILE_ID_FIELD_NUMBER: _ClassVar[int]
    IDEMPOTENCY_KEY_FIELD_NUMBER: _ClassVar[int]
    profile_id: str
    idempotency_key: str
    def __init__(self, profile_id: _Optional[str] = ..., idempotency_key: _Optional[str] = ...) -> None: ...

class EraseProfileResponse(_message.Message):
    __slots__ = ("erased",)
    ERASED_FIELD_NUMBER: _ClassVar[int]
    erased: bool
    def __init__(self, erased: _Optional[bool] = ...) -> None: ...

class ExportProfileRequest(_message.Message):
    __slots__ = ("profile_id",)
    PROFILE_ID_FIELD_NUMBER: _ClassVar[int]
    profile_id: str
    def __init__(self, profile_id: _Optional[str] = ...) -> None: ...

class ExportProfileResponse(_message.Message):
    __slots__ = ("export_json",)
    EXPORT_JSON_FIELD_NUMBER: _ClassVar[int]
    export_json: str
    def __init__(self, export_json: _Optional[str] = ...) -> None: ...

class Segment(_message.Message):
    __slots__ = ("id", "name", "rules_json", "member_count", "description", "created_at", "updated_at")
    ID_FIELD_NUMBER: _ClassVar[int]
    NAME_FIELD_NUMBER: _ClassVar[int]
    RULES_JSON_FIELD_NUMBER: _ClassVar[int]
    MEMBER_COUNT_FIELD_NUMBER: _ClassVar[int]
    DESCRIPTION_FIELD_NUMBER: _ClassVar[int]
    CREATED_AT_FIELD_NUMBER: _ClassVar[int]
    UPDATED_AT_FIELD_NUMBER: _ClassVar[int]
    id: str
    name: str
    rules_json: str
    member_count: int
    description: str
    created_at: _timestamp_pb2.Timestamp
    updated_at: _timestamp_pb2.Timestamp
    def __init__(self, id: _Optional[str] = ..., name: _Optional[str] = ..., rules_json: _Optional[str] = ..., member_count: _Optional[int] = ..., description: _Optional[str] = ..., created_at: _Optional[_Union[datetime.datetime, _timestamp_pb2.Timestamp, _Mapping]] = ..., updated_at: _Optional[_Union[datetime.datetime, _timestamp_pb2.Timestamp, _Mapping]] = ...) -> None: ...

class UpsertSegmentRequest(_message.Message):
    __slots__ = ("segment",)
    SEGMENT_FIELD_NUMBER: _ClassVar[int]
    segment: Segment
    def __init__(self, segment: _Optional[_Union[Segment, _Mapping]] = ...) -> None: ...

class UpsertSegmentResponse(_message.Message):
    __slots__ = ("segment",)
    SEGMENT_FIELD_NUMBER: _ClassVar[int]
    segment: Segment
    def __init__(self, segment: _Optional[_Union[Segment, _Mapping]] = ...) -> None: ...

class ListSegmentMembersRequest(_message.Message):
    __slots__ = ("segment_id", "page_size", "page_token")
    SEGMENT_ID_FIELD_NUMBER: _ClassVar[int]
    PAGE_SIZE_FIELD_NUMBER: _ClassVar[int]
    PAGE_TOKEN_FIELD_NUMBER: _ClassVar[int]
    segment_id: str
    page_size: int
    page_token: str
    def __init__(self, segment_id: _Optional[str] = ..., page_size: _Optional[int] = ..., page_token: _Optional[str] = ...) -> None: ...

class ListSegmentMembersResponse(_message.Message):
    __slots__ = ("profile_ids", "next_page_token")
    PROFILE_IDS_FIELD_NUMBER: _ClassVar[int]
    NEXT_PAGE_TOKEN_FIELD_NUMBER: _ClassVar[int]
    profile_ids: _containers.RepeatedScalarFieldContainer[str]
    next_page_token: str
    def __init__(self, profile_ids: _Optional[_Iterable[str]] = ..., next_page_token: _Optional[str] = ...) -> None: ...

class CheckMembershipRequest(_message.Message):
    __slots__ = ("profile_id", "segment_ids")
    PROFILE_ID_FIELD_NUMBER: _ClassVar[int]
    SEGMENT_IDS_FIELD_NUMBER: _ClassVar[int]
    profile_id: str
    segment_ids: _containers.RepeatedScalarFieldContainer[str]
    def __init__(self, profile_id: _Optional[str] = ..., segment_ids: _Optional[_Iterable[str]] = ...) -> None: ...

class CheckMembershipResponse(_message.Message):
    __slots__ = ("member_of",)
    MEMBER_OF_FIELD_NUMBER: _ClassVar[int]
    member_of: _containers.RepeatedScalarFieldContainer[str]
    def __init__(self, member_of: _Optional[_Iterable[str]] = ...) -> None: ...

class GetSegmentRequest(_message.Message):
    __slots__ = ("segment_id",)
    SEGMENT_ID_FIELD_NUMBER: _ClassVar[int]
    segment_id: str
    def __init__(self, segment_id: _Optional[str] = ...) -> None: ...

class GetSegmentResponse(_message.Message):
    __slots__ = ("segment",)
    SEGMENT_FIELD_NUMBER: _ClassVar[int]
    segment: Segment
    def __init__(self, segment: _Optional[_Union[Segment, _Mapping]] = ...) -> None: ...

class ListSegmentsRequest(_message.Message):
    __slots__ = ()
    def __init__(self) -> None: ...

class ListSegmentsResponse(_message.Message):
    __slots__ = ("segments",)
    SEGMENTS_FIELD_NUMBER: _ClassVar[int]
    segments: _containers.RepeatedCompositeFieldContainer[Segment]
    def __init__(self, segments: _Optional[_Iterable[_Union[Segment, _Mapping]]] = ...) -> None: ...

class DeleteSegmentRequest(_message.Message):
    __slots__ = ("segment_id",)
    SEGMENT_ID_FIELD_NUMBER: _ClassVar[int]
    segment_id: str
    def __init__(self, segment_id: _Optional[str] = ...) -> None: ...

class DeleteSegmentResponse(_message.Message):
    __slots__ = ("deleted",)
    DELETED_FIELD_NUMBER: _ClassVar[int]
    deleted: bool
    def __init__(self, deleted: _Optional[bool] = ...) -> None: ...

class EstimateSegmentRequest(_message.Message):
    __slots__ = ("rules_json",)
    RULES_JSON_FIELD_NUMBER: _ClassVar[int]
    rules_json: str
    def __init__(self, rules_json: _Optional[str] = ...) -> None: ...

class EstimateSegmentResponse(_message.Message):
    __slots__ = ("count", "total")
    COUNT_FIELD_NUMBER: _ClassVar[int]
    TOTAL_FIELD_NUMBER: _ClassVar[int]
    count: int
    total: int
    def __init__(self, count: _Optional[int] = ..., total: _Optional[int] = ...) -> None: ...

class ListMergesRequest(_message.Message):
    __slots__ = ("profile_id",)
    PROFILE_ID_FIELD_NUMBER: _ClassVar[int]
    profile_id: str
    def __init__(self, profile_id: _Optional[str] = ...) -> None: ...

class MergeRecord(_message.Message):
    __slots__ = ("id", "from_profile_id", "into_profile_id", "reason", "actor", "merged_at", "undone_at", "moved_identifiers")
    ID_FIELD_NUMBER: _ClassVar[int]
    FROM_PROFILE_ID_FIELD_NUMBER: _ClassVar[int]
    INTO_PROFILE_ID_FIELD_NUMBER: _ClassVar[int]
    REASON_FIELD_NUMBER: _ClassVar[int]
    ACTOR_FIELD_NUMBER: _ClassVar[int]
    MERGED_AT_FIELD_NUMBER: _ClassVar[int]
    UNDONE_AT_FIELD_NUMBER: _ClassVar[int]
    MOVED_IDENTIFIERS_FIELD_NUMBER: _ClassVar[int]
    id: str
    from_profile_id: str
    into_profile_id: str
    reason: str
    actor: str
    merged_at: _timestamp_pb2.Timestamp
    undone_at: _timestamp_pb2.Timestamp
    moved_identifiers: _containers.RepeatedCompositeFieldContainer[Identifier]
    def __init__(self, id: _Optional[str] = ..., from_profile_id: _Optional[str] = ..., into_profile_id: _Optional[str] = ..., reason: _Optional[str] = ..., actor: _Optional[str] = ..., merged_at: _Optional[_Union[datetime.datetime, _timestamp_pb2.Timestamp, _Mapping]] = ..., undone_at: _Optional[_Union[datetime.datetime, _timestamp_pb2.Timestamp, _Mapping]] = ..., moved_identifiers: _Optional[_Iterable[_Union[Identifier, _Mapping]]] = ...) -> None: ...

class ListMergesResponse(_message.Message):
    __slots__ = ("merges",)
    MERGES_FIELD_NUMBER: _ClassVar[int]
    merges: _containers.RepeatedCompositeFieldContainer[MergeRecord]
    def __init__(self, merges: _Optional[_Iterable[_Union[MergeRecord, _Mapping]]] = ...) -> None: ...

class GetSettingsRequest(_message.Message):
    __slots__ = ()
    def __init__(self) -> None: ...

class GetSettingsResponse(_message.Message):
    __slots__ = ("settings_json",)
    SETTINGS_JSON_FIELD_NUMBER: _ClassVar[int]
    settings_json: str
    def __init__(self, settings_json: _Optional[str] = ...) -> None: ...

class UpdateSettingsRequest(_message.Message):
    __slots__ = ("settings_json",)
    SETTINGS_JSON_FIELD_NUMBER: _ClassVar[int]
    settings_json: str
    def __init__(self, settings_json: _Optional[str] = ...) -> None: ...

class UpdateSettingsResponse(_message.Message):
    __slots__ = ("settings_json",)
    SETTINGS_JSON_FIELD_NUMBER: _ClassVar[int]
    settings_json: str
    def __init__(self, settings_json: _Optional[str] = ...) -> None: ...

class SetTrackingPlanRequest(_message.Message):
    __slots__ = ("plan_json",)
    PLAN_JSON_FIELD_NUMBER: _ClassVar[int]
    plan_json: str
    def __init__(self, plan_json: _Optional[str] = ...) -> None: ...

class SetTrackingPlanResponse(_message.Message):
    __slots__ = ("plan_json",)
    PLAN_JSON_FIELD_NUMBER: _ClassVar[int]
    plan_json: str
    def __init__(self, plan_json: _Optional[str] = ...) -> None: ...

class GetTrackingPlanRequest(_message.Message):
    __slots__ = ()
    def __init__(self) -> None: ...

class TrackingPlanViolations(_message.Message):
    __slots__ = ("event", "outcome", "count", "last_error", "last_seen_at")
    EVENT_FIELD_NUMBER: _ClassVar[int]
    OUTCOME_FIELD_NUMBER: _ClassVar[int]
    COUNT_FIELD_NUMBER: _ClassVar[int]
    LAST_ERROR_FIELD_NUMBER: _ClassVar[int]
    LAST_SEEN_AT_FIELD_NUMBER: _ClassVar[int]
    event: str
    outcome: str
    count: int
    last_error: str
    last_seen_at: _timestamp_pb2.Timestamp
    def __init__(self, event: _Optional[str] = ..., outcome: _Optional[str] = ..., count: _Optional[int] = ..., last_error: _Optional[str] = ..., last_seen_at: _Optional[_Union[datetime.datetime, _timestamp_pb2.Timestamp, _Mapping]] = ...) -> None: ...

class GetTrackingPlanResponse(_message.Message):
    __slots__ = ("plan_json", "violations")
    PLAN_JSON_FIELD_NUMBER: _ClassVar[int]
    VIOLATIONS_FIELD_NUMBER: _ClassVar[int]
    plan_json: str
    violations: _containers.RepeatedCompositeFieldContainer[TrackingPlanViolations]
    def __init__(self, plan_json: _Optional[str] = ..., violations: _Optional[_Iterable[_Union[TrackingPlanViolations, _Mapping]]] = ...) -> None: ...

class StartImportRequest(_message.Message):
    __slots__ = ("import_id", "name", "source", "columns")
    IMPORT_ID_FIELD_NUMBER: _ClassVar[int]
    NAME_FIELD_NUMBER: _ClassVar[int]
    SOURCE_FIELD_NUMBER: _ClassVar[int]
    COLUMNS_FIELD_NUMBER: _ClassVar[int]
    import_id: str
    name: str
    source: str
    columns: _containers.RepeatedScalarFieldContainer[str]
    def __init__(self, import_id: _Optional[str] = ..., name: _Optional[str] = ..., source: _Optional[str] = ..., columns: _Optional[_Iterable[str]] = ...) -> None: ...

class StartImportResponse(_message.Message):
    __slots__ = ("report",)
    REPORT_FIELD_NUMBER: _ClassVar[int]
    report: ImportReport
    def __init__(self, report: _Optional[_Union[ImportReport, _Mapping]] = ...) -> None: ...

class ImportRow(_message.Message):
    __slots__ = ("number", "cells")
    NUMBER_FIELD_NUMBER: _ClassVar[int]
    CELLS_FIELD_NUMBER: _ClassVar[int]
    number: int
    cells: _containers.RepeatedScalarFieldContainer[str]
    def __init__(self, number: _Optional[int] = ..., cells: _Optional[_Iterable[str]] = ...) -> None: ...

class ImportRowsRequest(_message.Message):
    __slots__ = ("import_id", "rows")
    IMPORT_ID_FIELD_NUMBER: _ClassVar[int]
    ROWS_FIELD_NUMBER: _ClassVar[int]
    import_id: str
    rows: _containers.RepeatedCompositeFieldContainer[ImportRow]
    def __init__(self, import_id: _Optional[str] = ..., rows: _Optional[_Iterable[_Union[ImportRow, _Mapping]]] = ...) -> None: ...

class ImportRowRejection(_message.Message):
    __slots__ = ("number", "code", "detail")
    NUMBER_FIELD_NUMBER: _ClassVar[int]
    CODE_FIELD_NUMBER: _ClassVar[int]
    DETAIL_FIELD_NUMBER: _ClassVar[int]
    number: int
    code: str
    detail: str
    def __init__(self, number: _Optional[int] = ..., code: _Optional[str] = ..., detail: _Optional[str] = ...) -> None: ...

class ImportRowsResponse(_message.Message):
    __slots__ = ("report", "rejected")
    REPORT_FIELD_NUMBER: _ClassVar[int]
    REJECTED_FIELD_NUMBER: _ClassVar[int]
    report: ImportReport
    rejected: _containers.RepeatedCompositeFieldContainer[ImportRowRejection]
    def __init__(self, report: _Optional[_Union[ImportReport, _Mapping]] = ..., rejected: _Optional[_Iterable[_Union[ImportRowRejection, _Mapping]]] = ...) -> None: ...

class GetImportRequest(_message.Message):
    __slots__ = ("import_id",)
    IMPORT_ID_FIELD_NUMBER: _ClassVar[int]
    import_id: str
    def __init__(self, import_id: _Optional[str] = ...) -> None: ...

class GetImportResponse(_message.Message):
    __slots__ = ("report",)
    REPORT_FIELD_NUMBER: _ClassVar[int]
    report: ImportReport
    def __init__(self, report: _Optional[_Union[ImportReport, _Mapping]] = ...) -> None: ...

class ImportReport(_message.Message):
    __slots__ = ("import_id", "name", "source", "columns", "last_row", "accepted", "merged", "rejected", "rejected_by_code", "started_at", "updated_at")
    class RejectedByCodeEntry(_message.Message):
        __slots__ = ("key", "value")
        KEY_FIELD_NUMBER: _ClassVar[int]
        VALUE_FIELD_NUMBER: _ClassVar[int]
        key: str
        value: int
        def __init__(self, key: _Optional[str] = ..., value: _Optional[int] = ...) -> None: ...
    IMPORT_ID_FIELD_NUMBER: _ClassVar[int]
    NAME_FIELD_NUMBER: _ClassVar[int]
    SOURCE_FIELD_NUMBER: _ClassVar[int]
    COLUMNS_FIELD_NUMBER: _ClassVar[int]
    LAST_ROW_FIELD_NUMBER: _ClassVar[int]
    ACCEPTED_FIELD_NUMBER: _ClassVar[int]
    MERGED_FIELD_NUMBER: _ClassVar[int]
    REJECTED_FIELD_NUMBER: _ClassVar[int]
    REJECTED_BY_CODE_FIELD_NUMBER: _ClassVar[int]
    STARTED_AT_FIELD_NUMBER: _ClassVar[int]
    UPDATED_AT_FIELD_NUMBER: _ClassVar[int]
    import_id: str
    name: str
    source: str
    columns: _containers.RepeatedScalarFieldContainer[str]
    last_row: int
    accepted: int
    merged: int
    rejected: int
    rejected_by_code: _containers.ScalarMap[str, int]
    started_at: _timestamp_pb2.Timestamp
    updated_at: _timestamp_pb2.Timestamp
    def __init__(self, import_id: _Optional[str] = ..., name: _Optional[str] = ..., source: _Optional[str] = ..., columns: _Optional[_Iterable[str]] = ..., last_row: _Optional[int] = ..., accepted: _Optional[int] = ..., merged: _Optional[int] = ..., rejected: _Optional[int] = ..., rejected_by_code: _Optional[_Mapping[str, int]] = ..., started_at: _Optional[_Union[datetime.datetime, _timestamp_pb2.Timestamp, _Mapping]] = ..., updated_at: _Optional[_Union[datetime.datetime, _timestamp_pb2.Timestamp, _Mapping]] = ...) -> None: ...

class GetAudienceReportRequest(_message.Message):
    __slots__ = ("since", "until", "granularity")
    SINCE_FIELD_NUMBER: _ClassVar[int]
    UNTIL_FIELD_NUMBER: _ClassVar[int]
    GRANULARITY_FIELD_NUMBER: _ClassVar[int]
    since: _timestamp_pb2.Timestamp
    until: _timestamp_pb2.Timestamp
    granularity: str
    def __init__(self, since: _Optional[_Union[datetime.datetime, _timestamp_pb2.Timestamp, _Mapping]] = ..., until: _Optional[_Union[datetime.datetime, _timestamp_pb2.Timestamp, _Mapping]] = ..., granularity: _Optional[str] = ...) -> None: ...

class AudiencePeriod(_message.Message):
    __slots__ = ("start", "known_gained", "erased", "active", "active_members", "churned", "buyers", "orders")
    START_FIELD_NUMBER: _ClassVar[int]
    KNOWN_GAINED_FIELD_NUMBER: _ClassVar[int]
    ERASED_FIELD_NUMBER: _ClassVar[int]
    ACTIVE_FIELD_NUMBER: _ClassVar[int]
    ACTIVE_MEMBERS_FIELD_NUMBER: _ClassVar[int]
    CHURNED_FIELD_NUMBER: _ClassVar[int]
    BUYERS_FIELD_NUMBER: _ClassVar[int]
    ORDERS_FIELD_NUMBER: _ClassVar[int]
    start: _timestamp_pb2.Timestamp
    known_gained: int
    erased: int
    active: int
    active_members: int
    churned: int
    buyers: int
    orders: int
    def __init__(self, start: _Optional[_Union[datetime.datetime, _timestamp_pb2.Timestamp, _Mapping]] = ..., known_gained: _Optional[int] = ..., erased: _Optional[int] = ..., active: _Optional[int] = ..., active_members: _Optional[int] = ..., churned: _Optional[int] = ..., buyers: _Optional[int] = ..., orders: _Optional[int] = ...) -> None: ...

class LifecycleCount(_message.Message):
    __slots__ = ("stage", "profiles")
    STAGE_FIELD_NUMBER: _ClassVar[int]
    PROFILES_FIELD_NUMBER: _ClassVar[int]
    stage: str
    profiles: int
    def __init__(self, stage: _Optional[str] = ..., profiles: _Optional[int] = ...) -> None: ...

class GetAudienceReportResponse(_message.Message):
    __slots__ = ("since", "until", "granularity", "known_gained", "erased", "active", "active_members", "churned", "profiles", "known_profiles", "lifecycle", "customers", "repeat_customers", "repurchase_rate", "window_buyers", "window_repeat_buyers", "window_repurchase_rate", "churn_rate", "periods", "as_of")
    SINCE_FIELD_NUMBER: _ClassVar[int]
    UNTIL_FIELD_NUMBER: _ClassVar[int]
    GRANULARITY_FIELD_NUMBER: _ClassVar[int]
    KNOWN_GAINED_FIELD_NUMBER: _ClassVar[int]
    ERASED_FIELD_NUMBER: _ClassVar[int]
    ACTIVE_FIELD_NUMBER: _ClassVar[int]
    ACTIVE_MEMBERS_FIELD_NUMBER: _ClassVar[int]
    CHURNED_FIELD_NUMBER: _ClassVar[int]
    PROFILES_FIELD_NUMBER: _ClassVar[int]
    KNOWN_PROFILES_FIELD_NUMBER: _ClassVar[int]
    LIFECYCLE_FIELD_NUMBER: _ClassVar[int]
    CUSTOMERS_FIELD_NUMBER: _ClassVar[int]
    REPEAT_CUSTOMERS_FIELD_NUMBER: _ClassVar[int]
    REPURCHASE_RATE_FIELD_NUMBER: _ClassVar[int]
    WINDOW_BUYERS_FIELD_NUMBER: _ClassVar[int]
    WINDOW_REPEAT_BUYERS_FIELD_NUMBER: _ClassVar[int]
    WINDOW_REPURCHASE_RATE_FIELD_NUMBER: _ClassVar[int]
    CHURN_RATE_FIELD_NUMBER: _ClassVar[int]
    PERIODS_FIELD_NUMBER: _ClassVar[int]
    AS_OF_FIELD_NUMBER: _ClassVar[int]
    since: _timestamp_pb2.Timestamp
    until: _timestamp_pb2.Timestamp
    granularity: str
    known_gained: int
    erased: int
    active: int
    active_members: int
    churned: int
    profiles: int
    known_profiles: int
    lifecycle: _containers.RepeatedCompositeFieldContainer[LifecycleCount]
    customers: int
    repeat_customers: int
    repurchase_rate: float
    window_buyers: int
    window_repeat_buyers: int
    window_repurchase_rate: float
    churn_rate: float
    periods: _containers.RepeatedCompositeFieldContainer[AudiencePeriod]
    as_of: _timestamp_pb2.Timestamp
    def __init__(self, since: _Optional[_Union[datetime.datetime, _timestamp_pb2.Timestamp, _Mapping]] = ..., until: _Optional[_Union[datetime.datetime, _timestamp_pb2.Timestamp, _Mapping]] = ..., granularity: _Optional[str] = ..., known_gained: _Optional[int] = ..., erased: _Optional[int] = ..., active: _Optional[int] = ..., active_members: _Optional[int] = ..., churned: _Optional[int] = ..., profiles: _Optional[int] = ..., known_profiles: _Optional[int] = ..., lifecycle: _Optional[_Iterable[_Union[LifecycleCount, _Mapping]]] = ..., customers: _Optional[int] = ..., repeat_customers: _Optional[int] = ..., repurchase_rate: _Optional[float] = ..., window_buyers: _Optional[int] = ..., window_repeat_buyers: _Optional[int] = ..., window_repurchase_rate: _Optional[float] = ..., churn_rate: _Optional[float] = ..., periods: _Optional[_Iterable[_Union[AudiencePeriod, _Mapping]]] = ..., as_of: _Optional[_Union[datetime.datetime, _timestamp_pb2.Timestamp, _Mapping]] = ...) -> None: ...
