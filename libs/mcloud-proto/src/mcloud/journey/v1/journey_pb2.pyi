import datetime

from google.protobuf import timestamp_pb2 as _timestamp_pb2
from google.protobuf.internal import containers as _containers
from google.protobuf.internal import enum_type_wrapper as _enum_type_wrapper
from google.protobuf import descriptor as _descriptor
from google.protobuf import message as _message
from collections.abc import Iterable as _Iterable, Mapping as _Mapping
from typing import ClassVar as _ClassVar, Optional as _Optional, Union as _Union

DESCRIPTOR: _descriptor.FileDescriptor

class JourneyStatus(int, metaclass=_enum_type_wrapper.EnumTypeWrapper):
    __slots__ = ()
    JOURNEY_STATUS_UNSPECIFIED: _ClassVar[JourneyStatus]
    JOURNEY_STATUS_DRAFT: _ClassVar[JourneyStatus]
    JOURNEY_STATUS_ACTIVE: _ClassVar[JourneyStatus]
    JOURNEY_STATUS_PAUSED: _ClassVar[JourneyStatus]
    JOURNEY_STATUS_ARCHIVED: _ClassVar[JourneyStatus]

class EnrollmentStatus(int, metaclass=_enum_type_wrapper.EnumTypeWrapper):
    __slots__ = ()
    ENROLLMENT_STATUS_UNSPECIFIED: _ClassVar[EnrollmentStatus]
    ENROLLMENT_STATUS_ACTIVE: _ClassVar[EnrollmentStatus]
    ENROLLMENT_STATUS_COMPLETED: _ClassVar[EnrollmentStatus]
    ENROLLMENT_STATUS_EXITED: _ClassVar[EnrollmentStatus]

class EnrollOutcome(int, metaclass=_enum_type_wrapper.EnumTypeWrapper):
    __slots__ = ()
    ENROLL_OUTCOME_UNSPECIFIED: _ClassVar[EnrollOutcome]
    ENROLL_OUTCOME_ENROLLED: _ClassVar[EnrollOutcome]
    ENROLL_OUTCOME_DUPLICATE: _ClassVar[EnrollOutcome]
    ENROLL_OUTCOME_REENTRY_BLOCKED: _ClassVar[EnrollOutcome]
    ENROLL_OUTCOME_EXCLUDED: _ClassVar[EnrollOutcome]
JOURNEY_STATUS_UNSPECIFIED: JourneyStatus
JOURNEY_STATUS_DRAFT: JourneyStatus
JOURNEY_STATUS_ACTIVE: JourneyStatus
JOURNEY_STATUS_PAUSED: JourneyStatus
JOURNEY_STATUS_ARCHIVED: JourneyStatus
ENROLLMENT_STATUS_UNSPECIFIED: EnrollmentStatus
ENROLLMENT_STATUS_ACTIVE: EnrollmentStatus
ENROLLMENT_STATUS_COMPLETED: EnrollmentStatus
ENROLLMENT_STATUS_EXITED: EnrollmentStatus
ENROLL_OUTCOME_UNSPECIFIED: EnrollOutcome
ENROLL_OUTCOME_ENROLLED: EnrollOutcome
ENROLL_OUTCOME_DUPLICATE: EnrollOutcome
ENROLL_OUTCOME_REENTRY_BLOCKED: EnrollOutcome
ENROLL_OUTCOME_EXCLUDED: EnrollOutcome

class Journey(_message.Message):
    __slots__ = ("id", "name", "description", "status", "draft_definition_json", "published_version", "definition_json", "version", "has_unpublished_changes", "created_at", "updated_at", "published_at")
    ID_FIELD_NUMBER: _ClassVar[int]
    NAME_FIELD_NUMBER: _ClassVar[int]
    DESCRIPTION_FIELD_NUMBER: _ClassVar[int]
    STATUS_FIELD_NUMBER: _ClassVar[int]
    DRAFT_DEFINITION_JSON_FIELD_NUMBER: _ClassVar[int]
    PUBLISHED_VERSION_FIELD_NUMBER: _ClassVar[int]
    DEFINITION_JSON_FIELD_NUMBER: _ClassVar[int]
    VERSION_FIELD_NUMBER: _ClassVar[int]
    HAS_UNPUBLISHED_CHANGES_FIELD_NUMBER: _ClassVar[int]
    CREATED_AT_FIELD_NUMBER: _ClassVar[int]
    UPDATED_AT_FIELD_NUMBER: _ClassVar[int]
    PUBLISHED_AT_FIELD_NUMBER: _ClassVar[int]
    id: str
    name: str
    description: str
    status: JourneyStatus
    draft_definition_json: str
    published_version: int
    definition_json: str
    version: int
    has_unpublished_changes: bool
    created_at: _timestamp_pb2.Timestamp
    updated_at: _timestamp_pb2.Timestamp
    published_at: _timestamp_pb2.Timestamp
    def __init__(self, id: _Optional[str] = ..., name: _Optional[str] = ..., description: _Optional[str] = ..., status: _Optional[_Union[JourneyStatus, str]] = ..., draft_definition_json: _Optional[str] = ..., published_version: _Optional[int] = ..., definition_json: _Optional[str] = ..., version: _Optional[int] = ..., has_unpublished_changes: _Optional[bool] = ..., created_at: _Optional[_Union[datetime.datetime, _timestamp_pb2.Timestamp, _Mapping]] = ..., updated_at: _Optional[_Union[datetime.datetime, _timestamp_pb2.Timestamp, _Mapping]] = ..., published_at: _Optional[_Union[datetime.datetime, _timestamp_pb2.Timestamp, _Mapping]] = ...) -> None: ...

class SaveJourneyDraftRequest(_message.Message):
    __slots__ = ("journey_id", "name", "description", "definition_json", "idempotency_key")
    JOURNEY_ID_FIELD_NUMBER: _ClassVar[int]
    NAME_FIELD_NUMBER: _ClassVar[int]
    DESCRIPTION_FIELD_NUMBER: _ClassVar[int]
    DEFINITION_JSON_FIELD_NUMBER: _ClassVar[int]
    IDEMPOTENCY_KEY_FIELD_NUMBER: _ClassVar[int]
    journey_id: str
    name: str
    description: str
    definition_json: str
    idempotency_key: str
    def __init__(self, journey_id: _Optional[str] = ..., name: _Optional[str] = ..., description: _Optional[str] = ..., definition_json: _Optional[str] = ..., idempotency_key: _Optional[str] = ...) -> None: ...

class SaveJourneyDraftResponse(_message.Message):
    __slots__ = ("journey", "errors")
    JOURNEY_FIELD_NUMBER: _ClassVar[int]
    ERRORS_FIELD_NUMBER: _ClassVar[int]
    journey: Journey
    errors: _containers.RepeatedCompositeFieldContainer[ValidationIssue]
    def __init__(self, journey: _Optional[_Union[Journey, _Mapping]] = ..., errors: _Optional[_Iterable[_Union[ValidationIssue, _Mapping]]] = ...) -> None: ...

class ValidationIssue(_message.Message):
    __slots__ = ("code", "message", "step_id", "path")
    CODE_FIELD_NUMBER: _ClassVar[int]
    MESSAGE_FIELD_NUMBER: _ClassVar[int]
    STEP_ID_FIELD_NUMBER: _ClassVar[int]
    PATH_FIELD_NUMBER: _ClassVar[int]
    code: str
    message: str
    step_id: str
    path: str
    def __init__(self, code: _Optional[str] = ..., message: _Optional[str] = ..., step_id: _Optional[str] = ..., path: _Optional[str] = ...) -> None: ...

class ValidateJourneyRequest(_message.Message):
    __slots__ = ("journey_id", "definition_json")
    JOURNEY_ID_FIELD_NUMBER: _ClassVar[int]
    DEFINITION_JSON_FIELD_NUMBER: _ClassVar[int]
    journey_id: str
    definition_json: str
    def __init__(self, journey_id: _Optional[str] = ..., definition_json: _Optional[str] = ...) -> None: ...

class ValidateJourneyResponse(_message.Message):
    __slots__ = ("valid", "errors", "warnings")
    VALID_FIELD_NUMBER: _ClassVar[int]
    ERRORS_FIELD_NUMBER: _ClassVar[int]
    WARNINGS_FIELD_NUMBER: _ClassVar[int]
    valid: bool
    errors: _containers.RepeatedCompositeFieldContainer[ValidationIssue]
    warnings: _containers.RepeatedCompositeFieldContainer[ValidationIssue]
    def __init__(self, valid: _Optional[bool] = ..., errors: _Optional[_Iterable[_Union[ValidationIssue, _Mapping]]] = ..., warnings: _Optional[_Iterable[_Union[ValidationIssue, _Mapping]]] = ...) -> None: ...

class PublishJourneyRequest(_message.Message):
    __slots__ = ("journey_id", "idempotency_key")
    JOURNEY_ID_FIELD_NUMBER: _ClassVar[int]
    IDEMPOTENCY_KEY_FIELD_NUMBER: _ClassVar[int]
    journey_id: str
    idempotency_key: str
    def __init__(self, journey_id: _Optional[str] = ..., idempotency_key: _Optional[str] = ...) -> None: ...

class PublishJourneyResponse(_message.Message):
    __slots__ = ("version", "journey")
    VERSION_FIELD_NUMBER: _ClassVar[int]
    JOURNEY_FIELD_NUMBER: _ClassVar[int]
    version: int
    journey: Journey
    def __init__(self, version: _Optional[int] = ..., journey: _Optional[_Union[Journey, _Mapping]] = ...) -> None: ...

class PauseJourneyRequest(_message.Message):
    __slots__ = ("journey_id",)
    JOURNEY_ID_FIELD_NUMBER: _ClassVar[int]
    journey_id: str
    def __init__(self, journey_id: _Optional[str] = ...) -> None: ...

class PauseJourneyResponse(_message.Message):
    __slots__ = ("journey",)
    JOURNEY_FIELD_NUMBER: _ClassVar[int]
    journey: Journey
    def __init__(self, journey: _Optional[_Union[Journey, _Mapping]] = ...) -> None: ...

class ResumeJourneyRequest(_message.Message):
    __slots__ = ("journey_id",)
    JOURNEY_ID_FIELD_NUMBER: _ClassVar[int]
    journey_id: str
    def __init__(self, journey_id: _Optional[str] = ...) -> None: ...

class ResumeJourneyResponse(_message.Message):
    __slots__ = ("journey",)
    JOURNEY_FIELD_NUMBER: _ClassVar[int]
    journey: Journey
    def __init__(self, journey: _Optional[_Union[Journey, _Mapping]] = ...) -> None: ...

class ArchiveJourneyRequest(_message.Message):
    __slots__ = ("journey_id",)
    JOURNEY_ID_FIELD_NUMBER: _ClassVar[int]
    journey_id: str
    def __init__(self, journey_id: _Optional[str] = ...) -> None: ...

class ArchiveJourneyResponse(_message.Message):
    __slots__ = ("journey",)
    JOURNEY_FIELD_NUMBER: _ClassVar[int]
    journey: Journey
    def __init__(self, journey: _Optional[_Union[Journey, _Mapping]] = ...) -> None: ...

class GetJourneyRequest(_message.Message):
    __slots__ = ("journey_id", "version")
    JOURNEY_ID_FIELD_NUMBER: _ClassVar[int]
    VERSION_FIELD_NUMBER: _ClassVar[int]
    journey_id: str
    version: int
    def __init__(self, journey_id: _Optional[str] = ..., version: _Optional[int] = ...) -> None: ...

class GetJourneyResponse(_message.Message):
    __slots__ = ("journey",)
    JOURNEY_FIELD_NUMBER: _ClassVar[int]
    journey: Journey
    def __init__(self, journey: _Optional[_Union[Journey, _Mapping]] = ...) -> None: ...

class ListJourneysRequest(_message.Message):
    __slots__ = ("statuses", "page_size", "page_token")
    STATUSES_FIELD_NUMBER: _ClassVar[int]
    PAGE_SIZE_FIELD_NUMBER: _ClassVar[int]
    PAGE_TOKEN_FIELD_NUMBER: _ClassVar[int]
    statuses: _containers.RepeatedScalarFieldContainer[JourneyStatus]
    page_size: int
    page_token: str
    def __init__(self, statuses: _Optional[_Iterable[_Union[JourneyStatus, str]]] = ..., page_size: _Optional[int] = ..., page_token: _Optional[str] = ...) -> None: ...

class ListJourneysResponse(_message.Message):
    __slots__ = ("journeys", "next_page_token")
    JOURNEYS_FIELD_NUMBER: _ClassVar[int]
    NEXT_PAGE_TOKEN_FIELD_NUMBER: _ClassVar[int]
    journeys: _containers.RepeatedCompositeFieldContainer[Journey]
    next_page_token: str
    def __init__(self, journeys: _Optional[_Iterable[_Union[Journey, _Mapping]]] = ..., next_page_token: _Optional[str] = ...) -> None: ...

class Enrollment(_message.Message):
    __slots__ = ("id", "journey_id", "journey_version", "profile_id", "status", "holdout", "entry_key", "trigger", "context_json", "current_step_id", "waiting_until", "waiting_for_event", "converted", "converted_at", "exit_reason", "entered_at", "updated_at", "ended_at")
    ID_FIELD_NUMBER: _ClassVar[int]
    JOURNEY_ID_FIELD_NUMBER: _ClassVar[int]
    JOURNEY_VERSION_FIELD_NUMBER: _ClassVar[int]
    PROFILE_ID_FIELD_NUMBER: _ClassVar[int]
    STATUS_FIELD_NUMBER: _ClassVar[int]
    HOLDOUT_FIELD_NUMBER: _ClassVar[int]
    ENTRY_KEY_FIELD_NUMBER: _ClassVar[int]
    TRIGGER_FIELD_NUMBER: _ClassVar[int]
    CONTEXT_JSON_FIELD_NUMBER: _ClassVar[int]
    CURRENT_STEP_ID_FIELD_NUMBER: _ClassVar[int]
    WAITING_UNTIL_FIELD_NUMBER: _ClassVar[int]
    WAITING_FOR_EVENT_FIELD_NUMBER: _ClassVar[int]
    CONVERTED_FIELD_NUMBER: _ClassVar[int]
    CONVERTED_AT_FIELD_NUMBER: _ClassVar[int]
    EXIT_REASON_FIELD_NUMBER: _ClassVar[int]
    ENTERED_AT_FIELD_NUMBER: _ClassVar[int]
    UPDATED_AT_FIELD_NUMBER: _ClassVar[int]
    ENDED_AT_FIELD_NUMBER: _ClassVar[int]
    id: str
    journey_id: str
    journey_version: int
    profile_id: str
    status: EnrollmentStatus
    holdout: bool
    entry_key: str
    trigger: str
    context_json: str
    current_step_id: str
    waiting_until: _timestamp_pb2.Timestamp
    waiting_for_event: str
    converted: bool
    converted_at: _timestamp_pb2.Timestamp
    exit_reason: str
    entered_at: _timestamp_pb2.Timestamp
    updated_at: _timestamp_pb2.Timestamp
    ended_at: _timestamp_pb2.Timestamp
    def __init__(self, id: _Optional[str] = ..., journey_id: _Optional[str] = ..., journey_version: _Optional[int] = ..., profile_id: _Optional[str] = ..., status: _Optional[_Union[EnrollmentStatus, str]] = ..., holdout: _Optional[bool] = ..., entry_key: _Optional[str] = ..., trigger: _Optional[str] = ..., context_json: _Optional[str] = ..., current_step_id: _Optional[str] = ..., waiting_until: _Optional[_Union[datetime.datetime, _timestamp_pb2.Timestamp, _Mapping]] = ..., waiting_for_event: _Optional[str] = ..., converted: _Optional[bool] = ..., converted_at: _Optional[_Union[datetime.datetime, _timestamp_pb2.Timestamp, _Mapping]] = ..., exit_reason: _Optional[str] = ..., entered_at: _Optional[_Union[datetime.datetime, _timestamp_pb2.Timestamp, _Mapping]] = ..., updated_at: _Optional[_Union[datetime.datetime, _timestamp_pb2.Timestamp, _Mapping]] = ..., ended_at: _Optional[_Union[datetime.datetime, _timestamp_pb2.Timestamp, _Mapping]] = ...) -> None: ...

class EnrollProfileRequest(_message.Message):
    __slots__ = ("journey_id", "profile_id", "entry_key", "context_json", "idempotency_key")
    JOURNEY_ID_FIELD_NUMBER: _ClassVar[int]
    PROFILE_ID_FIELD_NUMBER: _ClassVar[int]
    ENTRY_KEY_FIELD_NUMBER: _ClassVar[int]
    CONTEXT_JSON_FIELD_NUMBER: _ClassVar[int]
    IDEMPOTENCY_KEY_FIELD_NUMBER: _ClassVar[int]
    journey_id: str
    profile_id: str
    entry_key: str
    context_json: str
    idempotency_key: str
    def __init__(self, journey_id: _Optional[str] = ..., profile_id: _Optional[str] = ..., entry_key: _Optional[str] = ..., context_json: _Optional[str] = ..., idempotency_key: _Optional[str] = ...) -> None: ...

class EnrollProfileResponse(_message.Message):
    __slots__ = ("outcome", "enrollment")
    OUTCOME_FIELD_NUMBER: _ClassVar[int]
    ENROLLMENT_FIELD_NUMBER: _ClassVar[int]
    outcome: EnrollOutcome
    enrollment: Enrollment
    def __init__(self, outcome: _Optional[_Union[EnrollOutcome, str]] = ..., enrollment: _Optional[_Union[Enrollment, _Mapping]] = ...) -> None: ...

class GetEnrollmentRequest(_message.Message):
    __slots__ = ("enrollment_id",)
    ENROLLMENT_ID_FIELD_NUMBER: _ClassVar[int]
    enrollment_id: str
    def __init__(self, enrollment_id: _Optional[str] = ...) -> None: ...

class GetEnrollmentResponse(_message.Message):
    __slots__ = ("enrollment", "trace")
    ENROLLMENT_FIELD_NUMBER: _ClassVar[int]
    TRACE_FIELD_NUMBER: _ClassVar[int]
    enrollment: Enrollment
    trace: _containers.RepeatedCompositeFieldContainer[TraceStep]
    def __init__(self, enrollment: _Optional[_Union[Enrollment, _Mapping]] = ..., trace: _Optional[_Iterable[_Union[TraceStep, _Mapping]]] = ...) -> None: ...

class TraceStep(_message.Message):
    __slots__ = ("step_id", "step_type", "outcome", "at")
    STEP_ID_FIELD_NUMBER: _ClassVar[int]
    STEP_TYPE_FIELD_NUMBER: _ClassVar[int]
    OUTCOME_FIELD_NUMBER: _ClassVar[int]
    AT_FIELD_NUMBER: _ClassVar[int]
    step_id: str
    step_type: str
    outcome: str
    at: _timestamp_pb2.Timestamp
    def __init__(self, step_id: _Optional[str] = ..., step_type: _Optional[str] = ..., outcome: _Optional[str] = ..., at: _Optional[_Union[datetime.datetime, _timestamp_pb2.Timestamp, _Mapping]] = ...) -> None: ...

class ListEnrollmentsRequest(_message.Message):
    __slots__ = ("journey_id", "profile_id", "statuses", "page_size", "page_token")
    JOURNEY_ID_FIELD_NUMBER: _ClassVar[int]
    PROFILE_ID_FIELD_NUMBER: _ClassVar[int]
    STATUSES_FIELD_NUMBER: _ClassVar[int]
    PAGE_SIZE_FIELD_NUMBER: _ClassVar[int]
    PAGE_TOKEN_FIELD_NUMBER: _ClassVar[int]
    journey_id: str
    profile_id: str
    statuses: _containers.RepeatedScalarFieldContainer[EnrollmentStatus]
    page_size: int
    page_token: str
    def __init__(self, journey_id: _Optional[str] = ..., profile_id: _Optional[str] = ..., statuses: _Optional[_Iterable[_Union[EnrollmentStatus, str]]] = ..., page_size: _Optional[int] = ..., page_token: _Optional[str] = ...) -> None: ...

class ListEnrollmentsResponse(_message.Message):
    __slots__ = ("enrollments", "next_page_token")
    ENROLLMENTS_FIELD_NUMBER: _ClassVar[int]
    NEXT_PAGE_TOKEN_FIELD_NUMBER: _ClassVar[int]
    enrollments: _containers.RepeatedCompositeFieldContainer[Enrollment]
    next_page_token: str
    def __init__(self, enrollments: _Optional[_Iterable[_Union[Enrollment, _Mapping]]] = ..., next_page_token: _Optional[str] = ...) -> None: ...

class GetJourneyStatsRequest(_message.Message):
    __slots__ = ("journey_id", "version", "entered_from", "entered_to")
    JOURNEY_ID_FIELD_NUMBER: _ClassVar[int]
    VERSION_FIELD_NUMBER: _ClassVar[int]
    ENTERED_FROM_FIELD_NUMBER: _ClassVar[int]
    ENTERED_TO_FIELD_NUMBER: _ClassVar[int]
    journey_id: str
    version: int
    entered_from: _timestamp_pb2.Timestamp
    entered_to: _timestamp_pb2.Timestamp
    def __init__(self, journey_id: _Optional[str] = ..., version: _Optional[int] = ..., entered_from: _Optional[_Union[datetime.datetime, _timestamp_pb2.Timestamp, _Mapping]] = ..., entered_to: _Optional[_Union[datetime.datetime, _timestamp_pb2.Timestamp, _Mapping]] = ...) -> None: ...

class OutcomeCount(_message.Message):
    __slots__ = ("outcome", "count")
    OUTCOME_FIELD_NUMBER: _ClassVar[int]
    COUNT_FIELD_NUMBER: _ClassVar[int]
    outcome: str
    count: int
    def __init__(self, outcome: _Optional[str] = ..., count: _Optional[int] = ...) -> None: ...

class StepStats(_message.Message):
    __slots__ = ("step_id", "step_type", "name", "entered", "completed", "active", "failed", "outcomes")
    STEP_ID_FIELD_NUMBER: _ClassVar[int]
    STEP_TYPE_FIELD_NUMBER: _ClassVar[int]
    NAME_FIELD_NUMBER: _ClassVar[int]
    ENTERED_FIELD_NUMBER: _ClassVar[int]
    COMPLETED_FIELD_NUMBER: _ClassVar[int]
    ACTIVE_FIELD_NUMBER: _ClassVar[int]
    FAILED_FIELD_NUMBER: _ClassVar[int]
    OUTCOMES_FIELD_NUMBER: _ClassVar[int]
    step_id: str
    step_type: str
    name: str
    entered: int
    completed: int
    active: int
    failed: int
    outcomes: _containers.RepeatedCompositeFieldContainer[OutcomeCount]
    def __init__(self, step_id: _Optional[str] = ..., step_type: _Optional[str] = ..., name: _Optional[str] = ..., entered: _Optional[int] = ..., completed: _Optional[int] = ..., active: _Optional[int] = ..., failed: _Optional[int] = ..., outcomes: _Optional[_Iterable[_Union[OutcomeCount, _Mapping]]] = ...) -> None: ...

class GetJourneyStatsResponse(_message.Message):
    __slots__ = ("entered", "active", "completed", "exited", "converted", "conversion_rate", "holdout_entered", "holdout_converted", "holdout_conversion_rate", "uplift", "steps")
    ENTERED_FIELD_NUMBER: _ClassVar[int]
    ACTIVE_FIELD_NUMBER: _ClassVar[int]
    COMPLETED_FIELD_NUMBER: _ClassVar[int]
    EXITED_FIELD_NUMBER: _ClassVar[int]
    CONVERTED_FIELD_NUMBER: _ClassVar[int]
    CONVERSION_RATE_FIELD_NUMBER: _ClassVar[int]
    HOLDOUT_ENTERED_FIELD_NUMBER: _ClassVar[int]
    HOLDOUT_CONVERTED_FIELD_NUMBER: _ClassVar[int]
    HOLDOUT_CONVERSION_RATE_FIELD_NUMBER: _ClassVar[int]
    UPLIFT_FIELD_NUMBER: _ClassVar[int]
    STEPS_FIELD_NUMBER: _ClassVar[int]
    entered: int
    active: int
    completed: int
    exited: int
    converted: int
    conversion_rate: float
    holdout_entered: int
    holdout_converted: int
    holdout_conversion_rate: float
    uplift: float
    steps: _containers.RepeatedCompositeFieldContainer[StepStats]
    def __init__(self, entered: _Optional[int] = ..., active: _Optional[int] = ..., completed: _Optional[int] = ..., exited: _Optional[int] = ..., converted: _Optional[int] = ..., conversion_rate: _Optional[float] = ..., holdout_entered: _Optional[int] = ..., holdout_converted: _Optional[int] = ..., holdout_conversion_rate: _Optional[float] = ..., uplift: _Optional[float] = ..., steps: _Optional[_Iterable[_Union[StepStats, _Mapping]]] = ...) -> None: ...

class TestJourneyRequest(_message.Message):
    __slots__ = ("journey_id", "definition_json", "profile_id", "context_json", "events")
    JOURNEY_ID_FIELD_NUMBER: _ClassVar[int]
    DEFINITION_JSON_FIELD_NUMBER: _ClassVar[int]
    PROFILE_ID_FIELD_NUMBER: _ClassVar[int]
    CONTEXT_JSON_FIELD_NUMBER: _ClassVar[int]
    EVENTS_FIELD_NUMBER: _ClassVar[int]
    journey_id: str
    definition_json: str
    profile_id: str
    context_json: str
    events: _containers.RepeatedScalarFieldContainer[str]
    def __init__(self, journey_id: _Optional[str] = ..., definition_json: _Optional[str] = ..., profile_id: _Optional[str] = ..., context_json: _Optional[str] = ..., events: _Optional[_Iterable[str]] = ...) -> None: ...

class TestEffect(_message.Message):
    __slots__ = ("step_id", "kind", "spec_json")
    STEP_ID_FIELD_NUMBER: _ClassVar[int]
    KIND_FIELD_NUMBER: _ClassVar[int]
    SPEC_JSON_FIELD_NUMBER: _ClassVar[int]
    step_id: str
    kind: str
    spec_json: str
    def __init__(self, step_id: _Optional[str] = ..., kind: _Optional[str] = ..., spec_json: _Optional[str] = ...) -> None: ...

class TestJourneyResponse(_message.Message):
    __slots__ = ("trace", "effects", "status", "exit_reason", "waited_seconds", "errors")
    TRACE_FIELD_NUMBER: _ClassVar[int]
    EFFECTS_FIELD_NUMBER: _ClassVar[int]
    STATUS_FIELD_NUMBER: _ClassVar[int]
    EXIT_REASON_FIELD_NUMBER: _ClassVar[int]
    WAITED_SECONDS_FIELD_NUMBER: _ClassVar[int]
    ERRORS_FIELD_NUMBER: _ClassVar[int]
    trace: _containers.RepeatedCompositeFieldContainer[TraceStep]
    effects: _containers.RepeatedCompositeFieldContainer[TestEffect]
    status: str
    exit_reason: str
    waited_seconds: int
    errors: _containers.RepeatedCompositeFieldContainer[ValidationIssue]
    def __init__(self, trace: _Optional[_Iterable[_Union[TraceStep, _Mapping]]] = ..., effects: _Optional[_Iterable[_Union[TestEffect, _Mapping]]] = ..., status: _Optional[str] = ..., exit_reason: _Optional[str] = ..., waited_seconds: _Optional[int] = ..., errors: _Optional[_Iterable[_Union[ValidationIssue, _Mapping]]] = ...) -> None: ...

class DryRunJourneyRequest(_message.Message):
    __slots__ = ("journey_id", "definition_json", "days")
    JOURNEY_ID_FIELD_NUMBER: _ClassVar[int]
    DEFINITION_JSON_FIELD_NUMBER: _ClassVar[int]
    DAYS_FIELD_NUMBER: _ClassVar[int]
    journey_id: str
    definition_json: str
    days: int
    def __init__(self, journey_id: _Optional[str] = ..., definition_json: _Optional[str] = ..., days: _Optional[int] = ...) -> None: ...

class DryRunJourneyResponse(_message.Message):
    __slots__ = ("estimated_entrants", "total_profiles", "basis", "estimated_holdout")
    ESTIMATED_ENTRANTS_FIELD_NUMBER: _ClassVar[int]
    TOTAL_PROFILES_FIELD_NUMBER: _ClassVar[int]
    BASIS_FIELD_NUMBER: _ClassVar[int]
    ESTIMATED_HOLDOUT_FIELD_NUMBER: _ClassVar[int]
    estimated_entrants: int
    total_profiles: int
    basis: str
    estimated_holdout: int
    def __init__(self, estimated_entrants: _Optional[int] = ..., total_profiles: _Optional[int] = ..., basis: _Optional[str] = ..., estimated_holdout: _Optional[int] = ...) -> None: ...
