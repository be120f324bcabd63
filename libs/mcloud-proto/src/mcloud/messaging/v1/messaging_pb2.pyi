import datetime

from google.protobuf import timestamp_pb2 as _timestamp_pb2
from google.protobuf.internal import containers as _containers
from google.protobuf.internal import enum_type_wrapper as _enum_type_wrapper
from google.protobuf import descriptor as _descriptor
from google.protobuf import message as _message
from collections.abc import Iterable as _Iterable, Mapping as _Mapping
from typing import ClassVar as _ClassVar, Optional as _Optional, Union as _Union

DESCRIPTOR: _descriptor.FileDescriptor

class Channel(int, metaclass=_enum_type_wrapper.EnumTypeWrapper):
    __slots__ = ()
    CHANNEL_UNSPECIFIED: _ClassVar[Channel]
    CHANNEL_EMAIL: _ClassVar[Channel]
    CHANNEL_SMS: _ClassVar[Channel]
    CHANNEL_PUSH: _ClassVar[Channel]
    CHANNEL_IN_APP: _ClassVar[Channel]
    CHANNEL_WEBHOOK: _ClassVar[Channel]
    CHANNEL_BEST: _ClassVar[Channel]

class QuietHoursBehavior(int, metaclass=_enum_type_wrapper.EnumTypeWrapper):
    __slots__ = ()
    QUIET_HOURS_BEHAVIOR_UNSPECIFIED: _ClassVar[QuietHoursBehavior]
    QUIET_HOURS_BEHAVIOR_HOLD: _ClassVar[QuietHoursBehavior]
    QUIET_HOURS_BEHAVIOR_DROP: _ClassVar[QuietHoursBehavior]

class MessageStatus(int, metaclass=_enum_type_wrapper.EnumTypeWrapper):
    __slots__ = ()
    MESSAGE_STATUS_UNSPECIFIED: _ClassVar[MessageStatus]
    MESSAGE_STATUS_QUEUED: _ClassVar[MessageStatus]
    MESSAGE_STATUS_SENT: _ClassVar[MessageStatus]
    MESSAGE_STATUS_DELIVERED: _ClassVar[MessageStatus]
    MESSAGE_STATUS_OPENED: _ClassVar[MessageStatus]
    MESSAGE_STATUS_CLICKED: _ClassVar[MessageStatus]
    MESSAGE_STATUS_BOUNCED: _ClassVar[MessageStatus]
    MESSAGE_STATUS_FAILED: _ClassVar[MessageStatus]
    MESSAGE_STATUS_SUPPRESSED: _ClassVar[MessageStatus]
    MESSAGE_STATUS_DROPPED: _ClassVar[MessageStatus]

class BlockReason(int, metaclass=_enum_type_wrapper.EnumTypeWrapper):
    __slots__ = ()
    BLOCK_REASON_UNSPECIFIED: _ClassVar[BlockReason]
    BLOCK_REASON_NO_CONSENT: _ClassVar[BlockReason]
    BLOCK_REASON_UNSUBSCRIBED: _ClassVar[BlockReason]
    BLOCK_REASON_SUPPRESSED: _ClassVar[BlockReason]
    BLOCK_REASON_QUIET_HOURS: _ClassVar[BlockReason]
    BLOCK_REASON_FREQUENCY_CAP: _ClassVar[BlockReason]
    BLOCK_REASON_NO_ADDRESS: _ClassVar[BlockReason]
    BLOCK_REASON_TEMPLATE_ERROR: _ClassVar[BlockReason]
    BLOCK_REASON_CHANNEL_DISABLED: _ClassVar[BlockReason]
    BLOCK_REASON_PROFILE_ERASED: _ClassVar[BlockReason]
    BLOCK_REASON_ENROLLMENT_ENDED: _ClassVar[BlockReason]

class CampaignStatus(int, metaclass=_enum_type_wrapper.EnumTypeWrapper):
    __slots__ = ()
    CAMPAIGN_STATUS_UNSPECIFIED: _ClassVar[CampaignStatus]
    CAMPAIGN_STATUS_SCHEDULED: _ClassVar[CampaignStatus]
    CAMPAIGN_STATUS_RUNNING: _ClassVar[CampaignStatus]
    CAMPAIGN_STATUS_COMPLETED: _ClassVar[CampaignStatus]
    CAMPAIGN_STATUS_CANCELLED: _ClassVar[CampaignStatus]
    CAMPAIGN_STATUS_FAILED: _ClassVar[CampaignStatus]

class MessageEventKind(int, metaclass=_enum_type_wrapper.EnumTypeWrapper):
    __slots__ = ()
    MESSAGE_EVENT_KIND_UNSPECIFIED: _ClassVar[MessageEventKind]
    MESSAGE_EVENT_KIND_DELIVERED: _ClassVar[MessageEventKind]
    MESSAGE_EVENT_KIND_OPENED: _ClassVar[MessageEventKind]
    MESSAGE_EVENT_KIND_CLICKED: _ClassVar[MessageEventKind]
    MESSAGE_EVENT_KIND_BOUNCED: _ClassVar[MessageEventKind]
    MESSAGE_EVENT_KIND_FAILED: _ClassVar[MessageEventKind]
    MESSAGE_EVENT_KIND_COMPLAINED: _ClassVar[MessageEventKind]
    MESSAGE_EVENT_KIND_UNSUBSCRIBED: _ClassVar[MessageEventKind]

class SuppressionReason(int, metaclass=_enum_type_wrapper.EnumTypeWrapper):
    __slots__ = ()
    SUPPRESSION_REASON_UNSPECIFIED: _ClassVar[SuppressionReason]
    SUPPRESSION_REASON_UNSUBSCRIBE: _ClassVar[SuppressionReason]
    SUPPRESSION_REASON_HARD_BOUNCE: _ClassVar[SuppressionReason]
    SUPPRESSION_REASON_COMPLAINT: _ClassVar[SuppressionReason]
    SUPPRESSION_REASON_INVALID_ADDRESS: _ClassVar[SuppressionReason]
    SUPPRESSION_REASON_MANUAL: _ClassVar[SuppressionReason]
CHANNEL_UNSPECIFIED: Channel
CHANNEL_EMAIL: Channel
CHANNEL_SMS: Channel
CHANNEL_PUSH: Channel
CHANNEL_IN_APP: Channel
CHANNEL_WEBHOOK: Channel
CHANNEL_BEST: Channel
QUIET_HOURS_BEHAVIOR_UNSPECIFIED: QuietHoursBehavior
QUIET_HOURS_BEHAVIOR_HOLD: QuietHoursBehavior
QUIET_HOURS_BEHAVIOR_DROP: QuietHoursBehavior
MESSAGE_STATUS_UNSPECIFIED: MessageStatus
MESSAGE_STATUS_QUEUED: MessageStatus
MESSAGE_STATUS_SENT: MessageStatus
MESSAGE_STATUS_DELIVERED: MessageStatus
MESSAGE_STATUS_OPENED: MessageStatus
MESSAGE_STATUS_CLICKED: MessageStatus
MESSAGE_STATUS_BOUNCED: MessageStatus
MESSAGE_STATUS_FAILED: MessageStatus
MESSAGE_STATUS_SUPPRESSED: MessageStatus
MESSAGE_STATUS_DROPPED: MessageStatus
BLOCK_REASON_UNSPECIFIED: BlockReason
BLOCK_REASON_NO_CONSENT: BlockReason
BLOCK_REASON_UNSUBSCRIBED: BlockReason
BLOCK_REASON_SUPPRESSED: BlockReason
BLOCK_REASON_QUIET_HOURS: BlockReason
BLOCK_REASON_FREQUENCY_CAP: BlockReason
BLOCK_REASON_NO_ADDRESS: BlockReason
BLOCK_REASON_TEMPLATE_ERROR: BlockReason
BLOCK_REASON_CHANNEL_DISABLED: BlockReason
BLOCK_REASON_PROFILE_ERASED: BlockReason
BLOCK_REASON_ENROLLMENT_ENDED: BlockReason
CAMPAIGN_STATUS_UNSPECIFIED: CampaignStatus
CAMPAIGN_STATUS_SCHEDULED: CampaignStatus
CAMPAIGN_STATUS_RUNNING: CampaignStatus
CAMPAIGN_STATUS_COMPLETED: CampaignStatus
CAMPAIGN_STATUS_CANCELLED: CampaignStatus
CAMPAIGN_STATUS_FAILED: CampaignStatus
MESSAGE_EVENT_KIND_UNSPECIFIED: MessageEventKind
MESSAGE_EVENT_KIND_DELIVERED: MessageEventKind
MESSAGE_EVENT_KIND_OPENED: MessageEventKind
MESSAGE_EVENT_KIND_CLICKED: MessageEventKind
MESSAGE_EVENT_KIND_BOUNCED: MessageEventKind
MESSAGE_EVENT_KIND_FAILED: MessageEventKind
MESSAGE_EVENT_KIND_COMPLAINED: MessageEventKind
MESSAGE_EVENT_KIND_UNSUBSCRIBED: MessageEventKind
SUPPRESSION_REASON_UNSPECIFIED: SuppressionReason
SUPPRESSION_REASON_UNSUBSCRIBE: SuppressionReason
SUPPRESSION_REASON_HARD_BOUNCE: SuppressionReason
SUPPRESSION_REASON_COMPLAINT: SuppressionReason
SUPPRESSION_REASON_INVALID_ADDRESS: SuppressionReason
SUPPRESSION_REASON_MANUAL: SuppressionReason

class TemplateVariant(_message.Message):
    __slots__ = ("locale", "subject", "body_text", "body_html", "title", "data_json")
    LOCALE_FIELD_NUMBER: _ClassVar[int]
    SUBJECT_FIELD_NUMBER: _ClassVar[int]
    BODY_TEXT_FIELD_NUMBER: _ClassVar[int]
    BODY_HTML_FIELD_NUMBER: _ClassVar[int]
    TITLE_FIELD_NUMBER: _ClassVar[int]
    DATA_JSON_FIELD_NUMBER: _ClassVar[int]
    locale: str
    subject: str
    body_text: str
    body_html: str
    title: str
    data_json: str
    def __init__(self, locale: _Optional[str] = ..., subject: _Optional[str] = ..., body_text: _Optional[str] = ..., body_html: _Optional[str] = ..., title: _Optional[str] = ..., data_json: _Optional[str] = ...) -> None: ...

class Template(_message.Message):
    __slots__ = ("id", "name", "description", "channel", "default_locale", "variants", "version", "latest_version", "created_at", "updated_at")
    ID_FIELD_NUMBER: _ClassVar[int]
    NAME_FIELD_NUMBER: _ClassVar[int]
    DESCRIPTION_FIELD_NUMBER: _ClassVar[int]
    CHANNEL_FIELD_NUMBER: _ClassVar[int]
    DEFAULT_LOCALE_FIELD_NUMBER: _ClassVar[int]
    VARIANTS_FIELD_NUMBER: _ClassVar[int]
    VERSION_FIELD_NUMBER: _ClassVar[int]
    LATEST_VERSION_FIELD_NUMBER: _ClassVar[int]
    CREATED_AT_FIELD_NUMBER: _ClassVar[int]
    UPDATED_AT_FIELD_NUMBER: _ClassVar[int]
    id: str
    name: str
    description: str
    channel: Channel
    default_locale: str
    variants: _containers.RepeatedCompositeFieldContainer[TemplateVariant]
    version: int
    latest_version: int
    created_at: _timestamp_pb2.Timestamp
    updated_at: _timestamp_pb2.Timestamp
    def __init__(self, id: _Optional[str] = ..., name: _Optional[str] = ..., description: _Optional[str] = ..., channel: _Optional[_Union[Channel, str]] = ..., default_locale: _Optional[str] = ..., variants: _Optional[_Iterable[_Union[TemplateVariant, _Mapping]]] = ..., version: _Optional[int] = ..., latest_version: _Optional[int] = ..., created_at: _Optional[_Union[datetime.datetime, _timestamp_pb2.Timestamp, _Mapping]] = ..., updated_at: _Optional[_Union[datetime.datetime, _timestamp_pb2.Timestamp, _Mapping]] = ...) -> None: ...

class UpsertTemplateRequest(_message.Message):
    __slots__ = ("template", "idempotency_key")
    TEMPLATE_FIELD_NUMBER: _ClassVar[int]
    IDEMPOTENCY_KEY_FIELD_NUMBER: _ClassVar[int]
    template: Template
    idempotency_key: str
    def __init__(self, template: _Optional[_Union[Template, _Mapping]] = ..., idempotency_key: _Optional[str] = ...) -> None: ...

class UpsertTemplateResponse(_message.Message):
    __slots__ = ("template",)
    TEMPLATE_FIELD_NUMBER: _ClassVar[int]
    template: Template
    def __init__(self, template: _Optional[_Union[Template, _Mapping]] = ...) -> None: ...

class GetTemplateRequest(_message.Message):
    __slots__ = ("template_id", "version")
    TEMPLATE_ID_FIELD_NUMBER: _ClassVar[int]
    VERSION_FIELD_NUMBER: _ClassVar[int]
    template_id: str
    version: int
    def __init__(self, template_id: _Optional[str] = ..., version: _Optional[int] = ...) -> None: ...

class GetTemplateResponse(_message.Message):
    __slots__ = ("template",)
    TEMPLATE_FIELD_NUMBER: _ClassVar[int]
    template: Template
    def __init__(self, template: _Optional[_Union[Template, _Mapping]] = ...) -> None: ...

class PreviewTemplateRequest(_message.Message):
    __slots__ = ("template_id", "version", "locale", "variables_json", "profile_id")
    TEMPLATE_ID_FIELD_NUMBER: _ClassVar[int]
    VERSION_FIELD_NUMBER: _ClassVar[int]
    LOCALE_FIELD_NUMBER: _ClassVar[int]
    VARIABLES_JSON_FIELD_NUMBER: _ClassVar[int]
    PROFILE_ID_FIELD_NUMBER: _ClassVar[int]
    template_id: str
    version: int
    locale: str
    variables_json: str
    profile_id: str
    def __init__(self, template_id: _Optional[str] = ..., version: _Optional[int] = ..., locale: _Optional[str] = ..., variables_json: _Optional[str] = ..., profile_id: _Optional[str] = ...) -> None: ...

class PreviewTemplateResponse(_message.Message):
    __slots__ = ("locale", "subject", "body_text", "body_html", "title", "data_json", "missing_variables")
    LOCALE_FIELD_NUMBER: _ClassVar[int]
    SUBJECT_FIELD_NUMBER: _ClassVar[int]
    BODY_TEXT_FIELD_NUMBER: _ClassVar[int]
    BODY_HTML_FIELD_NUMBER: _ClassVar[int]
    TITLE_FIELD_NUMBER: _ClassVar[int]
    DATA_JSON_FIELD_NUMBER: _ClassVar[int]
    MISSING_VARIABLES_FIELD_NUMBER: _ClassVar[int]
    locale: str
    subject: str
    body_text: str
    body_html: str
    title: str
    data_json: str
    missing_variables: _containers.RepeatedScalarFieldContainer[str]
    def __init__(self, locale: _Optional[str] = ..., subject: _Optional[str] = ..., body_text: _Optional[str] = ..., body_html: _Optional[str] = ..., title: _Optional[str] = ..., data_json: _Optional[str] = ..., missing_variables: _Optional[_Iterable[str]] = ...) -> None: ...

class ListTemplatesRequest(_message.Message):
    __slots__ = ("channel", "page_size", "page_token")
    CHANNEL_FIELD_NUMBER: _ClassVar[int]
    PAGE_SIZE_FIELD_NUMBER: _ClassVar[int]
    PAGE_TOKEN_FIELD_NUMBER: _ClassVar[int]
    channel: Channel
    page_size: int
    page_token: str
    def __init__(self, channel: _Optional[_Union[Channel, str]] = ..., page_size: _Optional[int] = ..., page_token: _Optional[str] = ...) -> None: ...

class ListTemplatesResponse(_message.Message):
    __slots__ = ("templates", "next_page_token")
    TEMPLATES_FIELD_NUMBER: _ClassVar[int]
    NEXT_PAGE_TOKEN_FIELD_NUMBER: _ClassVar[int]
    templates: _containers.RepeatedCompositeFieldContainer[Template]
    next_page_token: str
    def __init__(self, templates: _Optional[_Iterable[_Union[Template, _Mapping]]] = ..., next_page_token: _Optional[str] = ...) -> None: ...

class Attribution(_message.Message):
    __slots__ = ("journey_id", "journey_version", "enrollment_id", "step_id", "campaign_id")
    JOURNEY_ID_FIELD_NUMBER: _ClassVar[int]
    JOURNEY_VERSION_FIELD_NUMBER: _ClassVar[int]
    ENROLLMENT_ID_FIELD_NUMBER: _ClassVar[int]
    STEP_ID_FIELD_NUMBER: _ClassVar[int]
    CAMPAIGN_ID_FIELD_NUMBER: _ClassVar[int]
    journey_id: str
    journey_version: int
    enrollment_id: str
    step_id: str
    campaign_id: str
    def __init__(self, journey_id: _Optional[str] = ..., journey_version: _Optional[int] = ..., enrollment_id: _Optional[str] = ..., step_id: _Optional[str] = ..., campaign_id: _Optional[str] = ...) -> None: ...

class Message(_message.Message):
    __slots__ = ("id", "profile_id", "channel", "template_id", "template_version", "locale", "status", "block_reason", "block_detail", "transactional", "attribution", "idempotency_key", "scheduled_at", "queued_at", "sent_at", "delivered_at", "opened_at", "clicked_at", "ended_at", "attempts", "provider", "provider_message_id", "error")
    ID_FIELD_NUMBER: _ClassVar[int]
    PROFILE_ID_FIELD_NUMBER: _ClassVar[int]
    CHANNEL_FIELD_NUMBER: _ClassVar[int]
    TEMPLATE_ID_FIELD_NUMBER: _ClassVar[int]
    TEMPLATE_VERSION_FIELD_NUMBER: _ClassVar[int]
    LOCALE_FIELD_NUMBER: _ClassVar[int]
    STATUS_FIELD_NUMBER: _ClassVar[int]
    BLOCK_REASON_FIELD_NUMBER: _ClassVar[int]
    BLOCK_DETAIL_FIELD_NUMBER: _ClassVar[int]
    TRANSACTIONAL_FIELD_NUMBER: _ClassVar[int]
    ATTRIBUTION_FIELD_NUMBER: _ClassVar[int]
    IDEMPOTENCY_KEY_FIELD_NUMBER: _ClassVar[int]
    SCHEDULED_AT_FIELD_NUMBER: _ClassVar[int]
    QUEUED_AT_FIELD_NUMBER: _ClassVar[int]
    SENT_AT_FIELD_NUMBER: _ClassVar[int]
    DELIVERED_AT_FIELD_NUMBER: _ClassVar[int]
    OPENED_AT_FIELD_NUMBER: _ClassVar[int]
    CLICKED_AT_FIELD_NUMBER: _ClassVar[int]
    ENDED_AT_FIELD_NUMBER: _ClassVar[int]
    ATTEMPTS_FIELD_NUMBER: _ClassVar[int]
    PROVIDER_FIELD_NUMBER: _ClassVar[int]
    PROVIDER_MESSAGE_ID_FIELD_NUMBER: _ClassVar[int]
    ERROR_FIELD_NUMBER: _ClassVar[int]
    id: str
    profile_id: str
    channel: Channel
    template_id: str
    template_version: int
    locale: str
    status: MessageStatus
    block_reason: BlockReason
    block_detail: str
    transactional: bool
    attribution: Attribution
    idempotency_key: str
    scheduled_at: _timestamp_pb2.Timestamp
    queued_at: _timestamp_pb2.Timestamp
    sent_at: _timestamp_pb2.Timestamp
    delivered_at: _timestamp_pb2.Timestamp
    opened_at: _timestamp_pb2.Timestamp
    clicked_at: _timestamp_pb2.Timestamp
    ended_at: _timestamp_pb2.Timestamp
    attempts: int
    provider: str
    provider_message_id: str
    error: str
    def __init__(self, id: _Optional[str] = ..., profile_id: _Optional[str] = ..., channel: _Optional[_Union[Channel, str]] = ..., template_id: _Optional[str] = ..., template_version: _Optional[int] = ..., locale: _Optional[str] = ..., status: _Optional[_Union[MessageStatus, str]] = ..., block_reason: _Optional[_Union[BlockReason, str]] = ..., block_detail: _Optional[str] = ..., transactional: _Optional[bool] = ..., attribution: _Optional[_Union[Attribution, _Mapping]] = ..., idempotency_key: _Optional[str] = ..., scheduled_at: _Optional[_Union[datetime.datetime, _timestamp_pb2.Timestamp, _Mapping]] = ..., queued_at: _Optional[_Union[datetime.datetime, _timestamp_pb2.Timestamp, _Mapping]] = ..., sent_at: _Optional[_Union[datetime.datetime, _timestamp_pb2.Timestamp, _Mapping]] = ..., delivered_at: _Optional[_Union[datetime.datetime, _timestamp_pb2.Timestamp, _Mapping]] = ..., opened_at: _Optional[_Union[datetime.datetime, _timestamp_pb2.Timestamp, _Mapping]] = ..., clicked_at: _Optional[_Union[datetime.datetime, _timestamp_pb2.Timestamp, _Mapping]] = ..., ended_at: _Optional[_Union[datetime.datetime, _timestamp_pb2.Timestamp, _Mapping]] = ..., attempts: _Optional[int] = ..., provider: _Optional[str] = ..., provider_message_id: _Optional[str] = ..., error: _Optional[str] = ...) -> None: ...

class SendMessageRequest(_message.Message):
    __slots__ = ("channel", "profile_id", "template_id", "template_version", "locale", "variables_json", "idempotency_key", "transactional", "scheduled_at", "quiet_hours_behavior", "attribution")
    CHANNEL_FIELD_NUMBER: _ClassVar[int]
    PROFILE_ID_FIELD_NUMBER: _ClassVar[int]
    TEMPLATE_ID_FIELD_NUMBER: _ClassVar[int]
    TEMPLATE_VERSION_FIELD_NUMBER: _ClassVar[int]
    LOCALE_FIELD_NUMBER: _ClassVar[int]
    VARIABLES_JSON_FIELD_NUMBER: _ClassVar[int]
    IDEMPOTENCY_KEY_FIELD_NUMBER: _ClassVar[int]
    TRANSACTIONAL_FIELD_NUMBER: _ClassVar[int]
    SCHEDULED_AT_FIELD_NUMBER: _ClassVar[int]
    QUIET_HOURS_BEHAVIOR_FIELD_NUMBER: _ClassVar[int]
    ATTRIBUTION_FIELD_NUMBER: _ClassVar[int]
    channel: Channel
    profile_id: str
    template_id: str
    template_version: int
    locale: str
    variables_json: str
    idempotency_key: str
    transactional: bool
    scheduled_at: _timestamp_pb2.Timestamp
    quiet_hours_behavior: QuietHoursBehavior
    attribution: Attribution
    def __init__(self, channel: _Optional[_Union[Channel, str]] = ..., profile_id: _Optional[str] = ..., template_id: _Optional[str] = ..., template_version: _Optional[int] = ..., locale: _Optional[str] = ..., variables_json: _Optional[str] = ..., idempotency_key: _Optional[str] = ..., transactional: _Optional[bool] = ..., scheduled_at: _Optional[_Union[datetime.datetime, _timestamp_pb2.Timestamp, _Mapping]] = ..., quiet_hours_behavior: _Optional[_Union[QuietHoursBehavior, str]] = ..., attribution: _Optional[_Union[Attribution, _Mapping]] = ...) -> None: ...

class SendMessageResponse(_message.Message):
    __slots__ = ("message",)
    MESSAGE_FIELD_NUMBER: _ClassVar[int]
    message: Message
    def __init__(self, message: _Optional[_Union[Message, _Mapping]] = ...) -> None: ...

class GetMessageRequest(_message.Message):
    __slots__ = ("message_id",)
    MESSAGE_ID_FIELD_NUMBER: _ClassVar[int]
    message_id: str
    def __init__(self, message_id: _Optional[str] = ...) -> None: ...

class GetMessageResponse(_message.Message):
    __slots__ = ("message",)
    MESSAGE_FIELD_NUMBER: _ClassVar[int]
    message: Message
    def __init__(self, message: _Optional[_Union[Message, _Mapping]] = ...) -> None: ...

class Campaign(_message.Message):
    __slots__ = ("id", "name", "segment_id", "channel", "template_id", "template_version", "status", "audience_size", "queued", "blocked", "scheduled_at", "started_at", "completed_at")
    ID_FIELD_NUMBER: _ClassVar[int]
    NAME_FIELD_NUMBER: _ClassVar[int]
    SEGMENT_ID_FIELD_NUMBER: _ClassVar[int]
    CHANNEL_FIELD_NUMBER: _ClassVar[int]
    TEMPLATE_ID_FIELD_NUMBER: _ClassVar[int]
    TEMPLATE_VERSION_FIELD_NUMBER: _ClassVar[int]
    STATUS_FIELD_NUMBER: _ClassVar[int]
    AUDIENCE_SIZE_FIELD_NUMBER: _ClassVar[int]
    QUEUED_FIELD_NUMBER: _ClassVar[int]
    BLOCKED_FIELD_NUMBER: _ClassVar[int]
    SCHEDULED_AT_FIELD_NUMBER: _ClassVar[int]
    STARTED_AT_FIELD_NUMBER: _ClassVar[int]
    COMPLETED_AT_FIELD_NUMBER: _ClassVar[int]
    id: str
    name: str
    segment_id: str
    channel: Channel
    template_id: str
    template_version: int
    status: CampaignStatus
    audience_size: int
    queued: int
    blocked: int
    scheduled_at: _timestamp_pb2.Timestamp
    started_at: _timestamp_pb2.Timestamp
    completed_at: _timestamp_pb2.Timestamp
    def __init__(self, id: _Optional[str] = ..., name: _Optional[str] = ..., segment_id: _Optional[str] = ..., channel: _Optional[_Union[Channel, str]] = ..., template_id: _Optional[str] = ..., template_version: _Optional[int] = ..., status: _Optional[_Union[CampaignStatus, str]] = ..., audience_size: _Optional[int] = ..., queued: _Optional[int] = ..., blocked: _Optional[int] = ..., scheduled_at: _Optional[_Union[datetime.datetime, _timestamp_pb2.Timestamp, _Mapping]] = ..., started_at: _Optional[_Union[datetime.datetime, _timestamp_pb2.Timestamp, _Mapping]] = ..., completed_at: _Optional[_Union[datetime.datetime, _timestamp_pb2.Timestamp, _Mapping]] = ...) -> None: ...

class SendCampaignRequest(_message.Message):
    __slots__ = ("name", "segment_id", "channel", "template_id", "template_version", "variables_json", "batch_size", "scheduled_at", "quiet_hours_behavior", "idempotency_key")
    NAME_FIELD_NUMBER: _ClassVar[int]
    SEGMENT_ID_FIELD_NUMBER: _ClassVar[int]
    CHANNEL_FIELD_NUMBER: _ClassVar[int]
    TEMPLATE_ID_FIELD_NUMBER: _ClassVar[int]
    TEMPLATE_VERSION_FIELD_NUMBER: _ClassVar[int]
    VARIABLES_JSON_FIELD_NUMBER: _ClassVar[int]
    BATCH_SIZE_FIELD_NUMBER: _ClassVar[int]
    SCHEDULED_AT_FIELD_NUMBER: _ClassVar[int]
    QUIET_HOURS_BEHAVIOR_FIELD_NUMBER: _ClassVar[int]
    IDEMPOTENCY_KEY_FIELD_NUMBER: _ClassVar[int]
    name: str
    segment_id: str
    channel: Channel
    template_id: str
    template_version: int
    variables_json: str
    batch_size: int
    scheduled_at: _timestamp_pb2.Timestamp
    quiet_hours_behavior: QuietHoursBehavior
    idempotency_key: str
    def __init__(self, name: _Optional[str] = ..., segment_id: _Optional[str] = ..., channel: _Optional[_Union[Channel, str]] = ..., template_id: _Optional[str] = ..., template_version: _Optional[int] = ..., variables_json: _Optional[str] = ..., batch_size: _Optional[int] = ..., scheduled_at: _Optional[_Union[datetime.datetime, _timestamp_pb2.Timestamp, _Mapping]] = ..., quiet_hours_behavior: _Optional[_Union[QuietHoursBehavior, str]] = ..., idempotency_key: _Optional[str] = ...) -> None: ...

class SendCampaignResponse(_message.Message):
    __slots__ = ("campaign",)
    CAMPAIGN_FIELD_NUMBER: _ClassVar[int]
    campaign: Campaign
    def __init__(self, campaign: _Optional[_Union[Campaign, _Mapping]] = ...) -> None: ...

class RecordMessageEventRequest(_message.Message):
    __slots__ = ("message_id", "provider_message_id", "kind", "provider_event_id", "occurred_at", "url", "hard_bounce", "detail", "user_agent", "tracking_token")
    MESSAGE_ID_FIELD_NUMBER: _ClassVar[int]
    PROVIDER_MESSAGE_ID_FIELD_NUMBER: _ClassVar[int]
    KIND_FIELD_NUMBER: _ClassVar[int]
    PROVIDER_EVENT_ID_FIELD_NUMBER: _ClassVar[int]
    OCCURRED_AT_FIELD_NUMBER: _ClassVar[int]
    URL_FIELD_NUMBER: _ClassVar[int]
    HARD_BOUNCE_FIELD_NUMBER: _ClassVar[int]
    DETAIL_FIELD_NUMBER: _ClassVar[int]
    USER_AGENT_FIELD_NUMBER: _ClassVar[int]
    TRACKING_TOKEN_FIELD_NUMBER: _ClassVar[int]
    message_id: str
    provider_message_id: str
    kind: MessageEventKind
    provider_event_id: str
    occurred_at: _timestamp_pb2.Timestamp
    url: str
    hard_bounce: bool
    detail: str
    user_agent: str
    tracking_token: str
    def __init__(self, message_id: _Optional[str] = ..., provider_message_id: _Optional[str] = ..., kind: _Optional[_Union[MessageEventKind, str]] = ..., provider_event_id: _Optional[str] = ..., occurred_at: _Optional[_Union[datetime.datetime, _timestamp_pb2.Timestamp, _Mapping]] = ..., url: _Optional[str] = ..., hard_bounce: _Optional[bool] = ..., detail: _Optional[str] = ..., user_agent: _Optional[str] = ..., tracking_token: _Optional[str] = ...) -> None: ...

class RecordMessageEventResponse(_message.Message):
    __slots__ = ("message", "duplicate", "redirect_url")
    MESSAGE_FIELD_NUMBER: _ClassVar[int]
    DUPLICATE_FIELD_NUMBER: _ClassVar[int]
    REDIRECT_URL_FIELD_NUMBER: _ClassVar[int]
    message: Message
    duplicate: bool
    redirect_url: str
    def __init__(self, message: _Optional[_Union[Message, _Mapping]] = ..., duplicate: _Optional[bool] = ..., redirect_url: _Optional[str] = ...) -> None: ...

class InboxMessage(_message.Message):
    __slots__ = ("id", "message_id", "title", "body", "image_url", "link_url", "data_json", "read", "created_at", "read_at", "expires_at")
    ID_FIELD_NUMBER: _ClassVar[int]
    MESSAGE_ID_FIELD_NUMBER: _ClassVar[int]
    TITLE_FIELD_NUMBER: _ClassVar[int]
    BODY_FIELD_NUMBER: _ClassVar[int]
    IMAGE_URL_FIELD_NUMBER: _ClassVar[int]
    LINK_URL_FIELD_NUMBER: _ClassVar[int]
    DATA_JSON_FIELD_NUMBER: _ClassVar[int]
    READ_FIELD_NUMBER: _ClassVar[int]
    CREATED_AT_FIELD_NUMBER: _ClassVar[int]
    READ_AT_FIELD_NUMBER: _ClassVar[int]
    EXPIRES_AT_FIELD_NUMBER: _ClassVar[int]
    id: str
    message_id: str
    title: str
    body: str
    image_url: str
    link_url: str
    data_json: str
    read: bool
    created_at: _timestamp_pb2.Timestamp
    read_at: _timestamp_pb2.Timestamp
    expires_at: _timestamp_pb2.Timestamp
    def __init__(self, id: _Optional[str] = ..., message_id: _Optional[str] = ..., title: _Optional[str] = ..., body: _Optional[str] = ..., image_url: _Optional[str] = ..., link_url: _Optional[str] = ..., data_json: _Optional[str] = ..., read: _Optional[bool] = ..., created_at: _Optional[_Union[datetime.datetime, _timestamp_pb2.Timestamp, _Mapping]] = ..., read_at: _Optional[_Union[datetime.datetime, _timestamp_pb2.Timestamp, _Mapping]] = ..., expires_at: _Optional[_Union[datetime.datetime, _timestamp_pb2.Timestamp, _Mapping]] = ...) -> None: ...

class ListInboxRequest(_message.Message):
    __slots__ = ("profile_id", "unread_only", "page_size", "page_token")
    PROFILE_ID_FIELD_NUMBER: _ClassVar[int]
    UNREAD_ONLY_FIELD_NUMBER: _ClassVar[int]
    PAGE_SIZE_FIELD_NUMBER: _ClassVar[int]
    PAGE_TOKEN_FIELD_NUMBER: _ClassVar[int]
    profile_id: str
    unread_only: bool
    page_size: int
    page_token: str
    def __init__(self, profile_id: _Optional[str] = ..., unread_only: _Optional[bool] = ..., page_size: _Optional[int] = ..., page_token: _Optional[str] = ...) -> None: ...

class ListInboxResponse(_message.Message):
    __slots__ = ("messages", "unread_count", "next_page_token")
    MESSAGES_FIELD_NUMBER: _ClassVar[int]
    UNREAD_COUNT_FIELD_NUMBER: _ClassVar[int]
    NEXT_PAGE_TOKEN_FIELD_NUMBER: _ClassVar[int]
    messages: _containers.RepeatedCompositeFieldContainer[InboxMessage]
    unread_count: int
    next_page_token: str
    def __init__(self, messages: _Optional[_Iterable[_Union[InboxMessage, _Mapping]]] = ..., unread_count: _Optional[int] = ..., next_page_token: _Optional[str] = ...) -> None: ...

class MarkInboxReadRequest(_message.Message):
    __slots__ = ("profile_id", "inbox_message_ids", "all")
    PROFILE_ID_FIELD_NUMBER: _ClassVar[int]
    INBOX_MESSAGE_IDS_FIELD_NUMBER: _ClassVar[int]
    ALL_FIELD_NUMBER: _ClassVar[int]
    profile_id: str
    inbox_message_ids: _containers.RepeatedScalarFieldContainer[str]
    all: bool
    def __init__(self, profile_id: _Optional[str] = ..., inbox_message_ids: _Optional[_Iterable[str]] = ..., all: _Optional[bool] = ...) -> None: ...

class MarkInboxReadResponse(_message.Message):
    __slots__ = ("marked", "unread_count")
    MARKED_FIELD_NUMBER: _ClassVar[int]
    UNREAD_COUNT_FIELD_NUMBER: _ClassVar[int]
    marked: int
    unread_count: int
    def __init__(self, marked: _Optional[int] = ..., unread_count: _Optional[int] = ...) -> None: ...

class ChannelPreference(_message.Message):
    __slots__ = ("channel", "opted_in", "updated_at")
    CHANNEL_FIELD_NUMBER: _ClassVar[int]
    OPTED_IN_FIELD_NUMBER: _ClassVar[int]
    UPDATED_AT_FIELD_NUMBER: _ClassVar[int]
    channel: Channel
    opted_in: bool
    updated_at: _timestamp_pb2.Timestamp
    def __init__(self, channel: _Optional[_Union[Channel, str]] = ..., opted_in: _Optional[bool] = ..., updated_at: _Optional[_Union[datetime.datetime, _timestamp_pb2.Timestamp, _Mapping]] = ...) -> None: ...

class QuietHours(_message.Message):
    __slots__ = ("enabled", "start_minute", "end_minute")
    ENABLED_FIELD_NUMBER: _ClassVar[int]
    START_MINUTE_FIELD_NUMBER: _ClassVar[int]
    END_MINUTE_FIELD_NUMBER: _ClassVar[int]
    enabled: bool
    start_minute: int
    end_minute: int
    def __init__(self, enabled: _Optional[bool] = ..., start_minute: _Optional[int] = ..., end_minute: _Optional[int] = ...) -> None: ...

class Preferences(_message.Message):
    __slots__ = ("profile_id", "channels", "locale", "timezone", "quiet_hours", "preferred_channel", "updated_at")
    PROFILE_ID_FIELD_NUMBER: _ClassVar[int]
    CHANNELS_FIELD_NUMBER: _ClassVar[int]
    LOCALE_FIELD_NUMBER: _ClassVar[int]
    TIMEZONE_FIELD_NUMBER: _ClassVar[int]
    QUIET_HOURS_FIELD_NUMBER: _ClassVar[int]
    PREFERRED_CHANNEL_FIELD_NUMBER: _ClassVar[int]
    UPDATED_AT_FIELD_NUMBER: _ClassVar[int]
    profile_id: str
    channels: _containers.RepeatedCompositeFieldContainer[ChannelPreference]
    locale: str
    timezone: str
    quiet_hours: QuietHours
    preferred_channel: Channel
    updated_at: _timestamp_pb2.Timestamp
    def __init__(self, profile_id: _Optional[str] = ..., channels: _Optional[_Iterable[_Union[ChannelPreference, _Mapping]]] = ..., locale: _Optional[str] = ..., timezone: _Optional[str] = ..., quiet_hours: _Optional[_Union[QuietHours, _Mapping]] = ..., preferred_channel: _Optional[_Union[Channel, str]] = ..., updated_at: _Optional[_Union[datetime.datetime, _timestamp_pb2.Timestamp, _Mapping]] = ...) -> None: ...

class SetPreferencesRequest(_message.Message):
    __slots__ = ("preferences", "idempotency_key")
    PREFERENCES_FIELD_NUMBER: _ClassVar[int]
    IDEMPOTENCY_KEY_FIELD_NUMBER: _ClassVar[int]
    preferences: Preferences
    idempotency_key: str
    def __init__(self, preferences: _Optional[_Union[Preferences, _Mapping]] = ..., idempotency_key: _Optional[str] = ...) -> None: ...

class SetPreferencesResponse(_message.Message):
    __slots__ = ("preferences",)
    PREFERENCES_FIELD_NUMBER: _ClassVar[int]
    preferences: Preferences
    def __init__(self, preferences: _Optional[_Union[Preferences, _Mapping]] = ...) -> None: ...

class GetPreferencesRequest(_message.Message):
    __slots__ = ("profile_id",)
    PROFILE_ID_FIELD_NUMBER: _ClassVar[int]
    profile_id: str
    def __init__(self, profile_id: _Optional[str] = ...) -> None: ...

class GetPreferencesResponse(_message.Message):
    __slots__ = ("preferences",)
    PREFERENCES_FIELD_NUMBER: _ClassVar[int]
    preferences: Preferences
    def __init__(self, preferences: _Optional[_Union[Preferences, _Mapping]] = ...) -> None: ...

class Suppression(_message.Message):
    __slots__ = ("id", "channel", "address", "profile_id", "reason", "detail", "created_at")
    ID_FIELD_NUMBER: _ClassVar[int]
    CHANNEL_FIELD_NUMBER: _ClassVar[int]
    ADDRESS_FIELD_NUMBER: _ClassVar[int]
    PROFILE_ID_FIELD_NUMBER: _ClassVar[int]
    REASON_FIELD_NUMBER: _ClassVar[int]
    DETAIL_FIELD_NUMBER: _ClassVar[int]
    CREATED_AT_FIELD_NUMBER: _ClassVar[int]
    id: str
    channel: Channel
    address: str
    profile_id: str
    reason: SuppressionReason
    detail: str
    created_at: _timestamp_pb2.Timestamp
    def __init__(self, id: _Optional[str] = ..., channel: _Optional[_Union[Channel, str]] = ..., address: _Optional[str] = ..., profile_id: _Optional[str] = ..., reason: _Optional[_Union[SuppressionReason, str]] = ..., detail: _Optional[str] = ..., created_at: _Optional[_Union[datetime.datetime, _timestamp_pb2.Timestamp, _Mapping]] = ...) -> None: ...

class SuppressRequest(_message.Message):
    __slots__ = ("channel", "address", "profile_id", "reason", "detail", "idempotency_key")
    CHANNEL_FIELD_NUMBER: _ClassVar[int]
    ADDRESS_FIELD_NUMBER: _ClassVar[int]
    PROFILE_ID_FIELD_NUMBER: _ClassVar[int]
    REASON_FIELD_NUMBER: _ClassVar[int]
    DETAIL_FIELD_NUMBER: _ClassVar[int]
    IDEMPOTENCY_KEY_FIELD_NUMBER: _ClassVar[int]
    channel: Channel
    address: str
    profile_id: str
    reason: SuppressionReason
    detail: str
    idempotency_key: str
    def __init__(self, channel: _Optional[_Union[Channel, str]] = ..., address: _Optional[str] = ..., profile_id: _Optional[str] = ..., reason: _Optional[_Union[SuppressionReason, str]] = ..., detail: _Optional[str] = ..., idempotency_key: _Optional[str] = ...) -> None: ...

class SuppressResponse(_message.Message):
    __slots__ = ("suppression",)
    SUPPRESSION_FIELD_NUMBER: _ClassVar[int]
    suppression: Suppression
    def __init__(self, suppression: _Optional[_Union[Suppression, _Mapping]] = ...) -> None: ...

class GetBestSendTimeRequest(_message.Message):
    __slots__ = ("profile_id", "channel")
    PROFILE_ID_FIELD_NUMBER: _ClassVar[int]
    CHANNEL_FIELD_NUMBER: _ClassVar[int]
    profile_id: str
    channel: Channel
    def __init__(self, profile_id: _Optional[str] = ..., channel: _Optional[_Union[Channel, str]] = ...) -> None: ...

class GetBestSendTimeResponse(_message.Message):
    __slots__ = ("best_hour_of_week", "best_channel", "timezone", "next_send_at", "confidence", "sample_size", "is_default")
    BEST_HOUR_OF_WEEK_FIELD_NUMBER: _ClassVar[int]
    BEST_CHANNEL_FIELD_NUMBER: _ClassVar[int]
    TIMEZONE_FIELD_NUMBER: _ClassVar[int]
    NEXT_SEND_AT_FIELD_NUMBER: _ClassVar[int]
    CONFIDENCE_FIELD_NUMBER: _ClassVar[int]
    SAMPLE_SIZE_FIELD_NUMBER: _ClassVar[int]
    IS_DEFAULT_FIELD_NUMBER: _ClassVar[int]
    best_hour_of_week: int
    best_channel: Channel
    timezone: str
    next_send_at: _timestamp_pb2.Timestamp
    confidence: float
    sample_size: int
    is_default: bool
    def __init__(self, best_hour_of_week: _Optional[int] = ..., best_channel: _Optional[_Union[Channel, str]] = ..., timezone: _Optional[str] = ..., next_send_at: _Optional[_Union[datetime.datetime, _timestamp_pb2.Timestamp, _Mapping]] = ..., confidence: _Optional[float] = ..., sample_size: _Optional[int] = ..., is_default: _Optional[bool] = ...) -> None: ...

class FrequencyCap(_message.Message):
    __slots__ = ("max_messages", "window_hours")
    MAX_MESSAGES_FIELD_NUMBER: _ClassVar[int]
    WINDOW_HOURS_FIELD_NUMBER: _ClassVar[int]
    max_messages: int
    window_hours: int
    def __init__(self, max_messages: _Optional[int] = ..., window_hours: _Optional[int] = ...) -> None: ...

class ChannelConfig(_message.Message):
    __slots__ = ("channel", "provider", "enabled", "settings_json", "secrets_json", "rate_limit_per_second", "frequency_caps", "updated_at", "fallbacks", "cost_per_message_minor", "cost_currency")
    CHANNEL_FIELD_NUMBER: _ClassVar[int]
    PROVIDER_FIELD_NUMBER: _ClassVar[int]
    ENABLED_FIELD_NUMBER: _ClassVar[int]
    SETTINGS_JSON_FIELD_NUMBER: _ClassVar[int]
    SECRETS_JSON_FIELD_NUMBER: _ClassVar[int]
    RATE_LIMIT_PER_SECOND_FIELD_NUMBER: _ClassVar[int]
    FREQUENCY_CAPS_FIELD_NUMBER: _ClassVar[int]
    UPDATED_AT_FIELD_NUMBER: _ClassVar[int]
    FALLBACKS_FIELD_NUMBER: _ClassVar[int]
    COST_PER_MESSAGE_MINOR_FIELD_NUMBER: _ClassVar[int]
    COST_CURRENCY_FIELD_NUMBER: _ClassVar[int]
    channel: Channel
    provider: str
    enabled: bool
    settings_json: str
    secrets_json: str
    rate_limit_per_second: int
    frequency_caps: _containers.RepeatedCompositeFieldContainer[FrequencyCap]
    updated_at: _timestamp_pb2.Timestamp
    fallbacks: _containers.RepeatedCompositeFieldContainer[ProviderConfig]
    cost_per_message_minor: int
    cost_currency: str
    def __init__(self, channel: _Optional[_Union[Channel, str]] = ..., provider: _Optional[str] = ..., enabled: _Optional[bool] = ..., settings_json: _Optional[str] = ..., secrets_json: _Optional[str] = ..., rate_limit_per_second: _Optional[int] = ..., frequency_caps: _Optional[_Iterable[_Union[FrequencyCap, _Mapping]]] = ..., updated_at: _Optional[_Union[datetime.datetime, _timestamp_pb2.Timestamp, _Mapping]] = ..., fallbacks: _Optional[_Iterable[_Union[ProviderConfig, _Mapping]]] = ..., cost_per_message_minor: _Optional[int] = ..., cost_currency: _Optional[str] = ...) -> None: ...

class ProviderConfig(_message.Message):
    __slots__ = ("provider", "settings_json", "secrets_json", "rate_limit_per_second")
    PROVIDER_FIELD_NUMBER: _ClassVar[int]
    SETTINGS_JSON_FIELD_NUMBER: _ClassVar[int]
    SECRETS_JSON_FIELD_NUMBER: _ClassVar[int]
    RATE_LIMIT_PER_SECOND_FIELD_NUMBER: _ClassVar[int]
    provider: str
    settings_json: str
    secrets_json: str
    rate_limit_per_second: int
    def __init__(self, provider: _Optional[str] = ..., settings_json: _Optional[str] = ..., secrets_json: _Optional[str] = ..., rate_limit_per_second: _Optional[int] = ...) -> None: ...

class ConfigureChannelRequest(_message.Message):
    __slots__ = ("config", "idempotency_key")
    CONFIG_FIELD_NUMBER: _ClassVar[int]
    IDEMPOTENCY_KEY_FIELD_NUMBER: _ClassVar[int]
    config: ChannelConfig
    idempotency_key: str
    def __init__(self, config: _Optional[_Union[ChannelConfig, _Mapping]] = ..., idempotency_key: _Optional[str] = ...) -> None: ...

class ConfigureChannelResponse(_message.Message):
    __slots__ = ("config",)
    CONFIG_FIELD_NUMBER: _ClassVar[int]
    config: ChannelConfig
    def __init__(self, config: _Optional[_Union[ChannelConfig, _Mapping]] = ...) -> None: ...

class SendMessagesRequest(_message.Message):
    __slots__ = ("messages",)
    MESSAGES_FIELD_NUMBER: _ClassVar[int]
    messages: _containers.RepeatedCompositeFieldContainer[SendMessageRequest]
    def __init__(self, messages: _Optional[_Iterable[_Union[SendMessageRequest, _Mapping]]] = ...) -> None: ...

class SendResult(_message.Message):
    __slots__ = ("message", "error_code", "error_detail")
    MESSAGE_FIELD_NUMBER: _ClassVar[int]
    ERROR_CODE_FIELD_NUMBER: _ClassVar[int]
    ERROR_DETAIL_FIELD_NUMBER: _ClassVar[int]
    message: Message
    error_code: str
    error_detail: str
    def __init__(self, message: _Optional[_Union[Message, _Mapping]] = ..., error_code: _Optional[str] = ..., error_detail: _Optional[str] = ...) -> None: ...

class SendMessagesResponse(_message.Message):
    __slots__ = ("results",)
    RESULTS_FIELD_NUMBER: _ClassVar[int]
    results: _containers.RepeatedCompositeFieldContainer[SendResult]
    def __init__(self, results: _Optional[_Iterable[_Union[SendResult, _Mapping]]] = ...) -> None: ...

class ListMessagesRequest(_message.Message):
    __slots__ = ("profile_id", "campaign_id", "journey_id", "page_size", "page_token")
    PROFILE_ID_FIELD_NUMBER: _ClassVar[int]
    CAMPAIGN_ID_FIELD_NUMBER: _ClassVar[int]
    JOURNEY_ID_FIELD_NUMBER: _ClassVar[int]
    PAGE_SIZE_FIELD_NUMBER: _ClassVar[int]
    PAGE_TOKEN_FIELD_NUMBER: _ClassVar[int]
    profile_id: str
    campaign_id: str
    journey_id: str
    page_size: int
    page_token: str
    def __init__(self, profile_id: _Optional[str] = ..., campaign_id: _Optional[str] = ..., journey_id: _Optional[str] = ..., page_size: _Optional[int] = ..., page_token: _Optional[str] = ...) -> None: ...

class ListMessagesResponse(_message.Message):
    __slots__ = ("messages", "next_page_token")
    MESSAGES_FIELD_NUMBER: _ClassVar[int]
    NEXT_PAGE_TOKEN_FIELD_NUMBER: _ClassVar[int]
    messages: _containers.RepeatedCompositeFieldContainer[Message]
    next_page_token: str
    def __init__(self, messages: _Optional[_Iterable[_Union[Message, _Mapping]]] = ..., next_page_token: _Optional[str] = ...) -> None: ...

class GetCampaignRequest(_message.Message):
    __slots__ = ("campaign_id",)
    CAMPAIGN_ID_FIELD_NUMBER: _ClassVar[int]
    campaign_id: str
    def __init__(self, campaign_id: _Optional[str] = ...) -> None: ...

class GetCampaignResponse(_message.Message):
    __slots__ = ("campaign",)
    CAMPAIGN_FIELD_NUMBER: _ClassVar[int]
    campaign: Campaign
    def __init__(self, campaign: _Optional[_Union[Campaign, _Mapping]] = ...) -> None: ...

class TestSendTemplateRequest(_message.Message):
    __slots__ = ("template_id", "version", "locale", "variables_json", "profile_id", "to_address", "idempotency_key")
    TEMPLATE_ID_FIELD_NUMBER: _ClassVar[int]
    VERSION_FIELD_NUMBER: _ClassVar[int]
    LOCALE_FIELD_NUMBER: _ClassVar[int]
    VARIABLES_JSON_FIELD_NUMBER: _ClassVar[int]
    PROFILE_ID_FIELD_NUMBER: _ClassVar[int]
    TO_ADDRESS_FIELD_NUMBER: _ClassVar[int]
    IDEMPOTENCY_KEY_FIELD_NUMBER: _ClassVar[int]
    template_id: str
    version: int
    locale: str
    variables_json: str
    profile_id: str
    to_address: str
    idempotency_key: str
    def __init__(self, template_id: _Optional[str] = ..., version: _Optional[int] = ..., locale: _Optional[str] = ..., variables_json: _Optional[str] = ..., profile_id: _Optional[str] = ..., to_address: _Optional[str] = ..., idempotency_key: _Optional[str] = ...) -> None: ...

class TestSendTemplateResponse(_message.Message):
    __slots__ = ("message",)
    MESSAGE_FIELD_NUMBER: _ClassVar[int]
    message: Message
    def __init__(self, message: _Optional[_Union[Message, _Mapping]] = ...) -> None: ...

class HandleProviderWebhookRequest(_message.Message):
    __slots__ = ("provider", "headers", "body")
    class HeadersEntry(_message.Message):
        __slots__ = ("key", "value")
        KEY_FIELD_NUMBER: _ClassVar[int]
        VALUE_FIELD_NUMBER: _ClassVar[int]
        key: str
        value: str
        def __init__(self, key: _Optional[str] = ..., value: _Optional[str] = ...) -> None: ...
    PROVIDER_FIELD_NUMBER: _ClassVar[int]
    HEADERS_FIELD_NUMBER: _ClassVar[int]
    BODY_FIELD_NUMBER: _ClassVar[int]
    provider: str
    headers: _containers.ScalarMap[str, str]
    body: bytes
    def __init__(self, provider: _Optional[str] = ..., headers: _Optional[_Mapping[str, str]] = ..., body: _Optional[bytes] = ...) -> None: ...

class HandleProviderWebhookResponse(_message.Message):
    __slots__ = ("recorded", "duplicates", "unknown")
    RECORDED_FIELD_NUMBER: _ClassVar[int]
    DUPLICATES_FIELD_NUMBER: _ClassVar[int]
    UNKNOWN_FIELD_NUMBER: _ClassVar[int]
    recorded: int
    duplicates: int
    unknown: int
    def __init__(self, recorded: _Optional[int] = ..., duplicates: _Optional[int] = ..., unknown: _Optional[int] = ...) -> None: ...

class VerifyLinkTokenRequest(_message.Message):
    __slots__ = ("token",)
    TOKEN_FIELD_NUMBER: _ClassVar[int]
    token: str
    def __init__(self, token: _Optional[str] = ...) -> None: ...

class VerifyLinkTokenResponse(_message.Message):
    __slots__ = ("profile_id", "message_id", "channel")
    PROFILE_ID_FIELD_NUMBER: _ClassVar[int]
    MESSAGE_ID_FIELD_NUMBER: _ClassVar[int]
    CHANNEL_FIELD_NUMBER: _ClassVar[int]
    profile_id: str
    message_id: str
    channel: Channel
    def __init__(self, profile_id: _Optional[str] = ..., message_id: _Optional[str] = ..., channel: _Optional[_Union[Channel, str]] = ...) -> None: ...

class UnsubscribeRequest(_message.Message):
    __slots__ = ("token", "profile_id", "channel", "source", "all_channels")
    TOKEN_FIELD_NUMBER: _ClassVar[int]
    PROFILE_ID_FIELD_NUMBER: _ClassVar[int]
    CHANNEL_FIELD_NUMBER: _ClassVar[int]
    SOURCE_FIELD_NUMBER: _ClassVar[int]
    ALL_CHANNELS_FIELD_NUMBER: _ClassVar[int]
    token: str
    profile_id: str
    channel: Channel
    source: str
    all_channels: bool
    def __init__(self, token: _Optional[str] = ..., profile_id: _Optional[str] = ..., channel: _Optional[_Union[Channel, str]] = ..., source: _Optional[str] = ..., all_channels: _Optional[bool] = ...) -> None: ...

class UnsubscribeResponse(_message.Message):
    __slots__ = ("profile_id", "channel", "already")
    PROFILE_ID_FIELD_NUMBER: _ClassVar[int]
    CHANNEL_FIELD_NUMBER: _ClassVar[int]
    ALREADY_FIELD_NUMBER: _ClassVar[int]
    profile_id: str
    channel: Channel
    already: bool
    def __init__(self, profile_id: _Optional[str] = ..., channel: _Optional[_Union[Channel, str]] = ..., already: _Optional[bool] = ...) -> None: ...

class GetChannelReportRequest(_message.Message):
    __slots__ = ("since", "until")
    SINCE_FIELD_NUMBER: _ClassVar[int]
    UNTIL_FIELD_NUMBER: _ClassVar[int]
    since: _timestamp_pb2.Timestamp
    until: _timestamp_pb2.Timestamp
    def __init__(self, since: _Optional[_Union[datetime.datetime, _timestamp_pb2.Timestamp, _Mapping]] = ..., until: _Optional[_Union[datetime.datetime, _timestamp_pb2.Timestamp, _Mapping]] = ...) -> None: ...

class AttributedRevenue(_message.Message):
    __slots__ = ("currency", "orders", "revenue_minor")
    CURRENCY_FIELD_NUMBER: _ClassVar[int]
    ORDERS_FIELD_NUMBER: _ClassVar[int]
    REVENUE_MINOR_FIELD_NUMBER: _ClassVar[int]
    currency: str
    orders: int
    revenue_minor: int
    def __init__(self, currency: _Optional[str] = ..., orders: _Optional[int] = ..., revenue_minor: _Optional[int] = ...) -> None: ...

class ChannelReport(_message.Message):
    __slots__ = ("channel", "sent", "delivered", "opened", "clicked", "bounced", "unsubscribed", "revenue", "attributed_orders", "cost_minor", "cost_currency", "roi", "open_rate", "click_rate")
    CHANNEL_FIELD_NUMBER: _ClassVar[int]
    SENT_FIELD_NUMBER: _ClassVar[int]
    DELIVERED_FIELD_NUMBER: _ClassVar[int]
    OPENED_FIELD_NUMBER: _ClassVar[int]
    CLICKED_FIELD_NUMBER: _ClassVar[int]
    BOUNCED_FIELD_NUMBER: _ClassVar[int]
    UNSUBSCRIBED_FIELD_NUMBER: _ClassVar[int]
    REVENUE_FIELD_NUMBER: _ClassVar[int]
    ATTRIBUTED_ORDERS_FIELD_NUMBER: _ClassVar[int]
    COST_MINOR_FIELD_NUMBER: _ClassVar[int]
    COST_CURRENCY_FIELD_NUMBER: _ClassVar[int]
    ROI_FIELD_NUMBER: _ClassVar[int]
    OPEN_RATE_FIELD_NUMBER: _ClassVar[int]
    CLICK_RATE_FIELD_NUMBER: _ClassVar[int]
    channel: Channel
    sent: int
    delivered: int
    opened: int
    clicked: int
    bounced: int
    unsubscribed: int
    revenue: _containers.RepeatedCompositeFieldContainer[AttributedRevenue]
    attributed_orders: int
    cost_minor: int
    cost_currency: str
    roi: float
    open_rate: float
    click_rate: float
    def __init__(self, channel: _Optional[_Union[Channel, str]] = ..., sent: _Optional[int] = ..., delivered: _Optional[int] = ..., opened: _Optional[int] = ..., clicked: _Optional[int] = ..., bounced: _Optional[int] = ..., unsubscribed: _Optional[int] = ..., revenue: _Optional[_Iterable[_Union[AttributedRevenue, _Mapping]]] = ..., attributed_orders: _Optional[int] = ..., cost_minor: _Optional[int] = ..., cost_currency: _Optional[str] = ..., roi: _Optional[float] = ..., open_rate: _Optional[float] = ..., click_rate: _Optional[float] = ...) -> None: ...

class AttributedSource(_message.Message):
    __slots__ = ("journey_id", "campaign_id", "channel", "currency", "orders", "revenue_minor")
    JOURNEY_ID_FIELD_NUMBER: _ClassVar[int]
    CAMPAIGN_ID_FIELD_NUMBER: _ClassVar[int]
    CHANNEL_FIELD_NUMBER: _ClassVar[int]
    CURRENCY_FIELD_NUMBER: _ClassVar[int]
    ORDERS_FIELD_NUMBER: _ClassVar[int]
    REVENUE_MINOR_FIELD_NUMBER: _ClassVar[int]
    journey_id: str
    campaign_id: str
    channel: Channel
    currency: str
    orders: int
    revenue_minor: int
    def __init__(self, journey_id: _Optional[str] = ..., campaign_id: _Optional[str] = ..., channel: _Optional[_Union[Channel, str]] = ..., currency: _Optional[str] = ..., orders: _Optional[int] = ..., revenue_minor: _Optional[int] = ...) -> None: ...

class GetChannelReportResponse(_message.Message):
    __slots__ = ("since", "until", "channels", "sources", "attribution", "as_of", "unsubscribed_all_channels")
    SINCE_FIELD_NUMBER: _ClassVar[int]
    UNTIL_FIELD_NUMBER: _ClassVar[int]
    CHANNELS_FIELD_NUMBER: _ClassVar[int]
    SOURCES_FIELD_NUMBER: _ClassVar[int]
    ATTRIBUTION_FIELD_NUMBER: _ClassVar[int]
    AS_OF_FIELD_NUMBER: _ClassVar[int]
    UNSUBSCRIBED_ALL_CHANNELS_FIELD_NUMBER: _ClassVar[int]
    since: _timestamp_pb2.Timestamp
    until: _timestamp_pb2.Timestamp
    channels: _containers.RepeatedCompositeFieldContainer[ChannelReport]
    sources: _containers.RepeatedCompositeFieldContainer[AttributedSource]
    attribution: AttributionSettings
    as_of: _timestamp_pb2.Timestamp
    unsubscribed_all_channels: int
    def __init__(self, since: _Optional[_Union[datetime.datetime, _timestamp_pb2.Timestamp, _Mapping]] = ..., until: _Optional[_Union[datetime.datetime, _timestamp_pb2.Timestamp, _Mapping]] = ..., channels: _Optional[_Iterable[_Union[ChannelReport, _Mapping]]] = ..., sources: _Optional[_Iterable[_Union[AttributedSource, _Mapping]]] = ..., attribution: _Optional[_Union[AttributionSettings, _Mapping]] = ..., as_of: _Optional[_Union[datetime.datetime, _timestamp_pb2.Timestamp, _Mapping]] = ..., unsubscribed_all_channels: _Optional[int] = ...) -> None: ...

class AttributionSettings(_message.Message):
    __slots__ = ("window_hours", "count_opens", "default_currency", "updated_at")
    WINDOW_HOURS_FIELD_NUMBER: _ClassVar[int]
    COUNT_OPENS_FIELD_NUMBER: _ClassVar[int]
    DEFAULT_CURRENCY_FIELD_NUMBER: _ClassVar[int]
    UPDATED_AT_FIELD_NUMBER: _ClassVar[int]
    window_hours: int
    count_opens: bool
    default_currency: str
    updated_at: _timestamp_pb2.Timestamp
    def __init__(self, window_hours: _Optional[int] = ..., count_opens: _Optional[bool] = ..., default_currency: _Optional[str] = ..., updated_at: _Optional[_Union[datetime.datetime, _timestamp_pb2.Timestamp, _Mapping]] = ...) -> None: ...

class GetAttributionSettingsRequest(_message.Message):
    __slots__ = ()
    def __init__(self) -> None: ...

class GetAttributionSettingsResponse(_message.Message):
    __slots__ = ("settings",)
    SETTINGS_FIELD_NUMBER: _ClassVar[int]
    settings: AttributionSettings
    def __init__(self, settings: _Optional[_Union[AttributionSettings, _Mapping]] = ...) -> None: ...

class SetAttributionSettingsRequest(_message.Message):
    __slots__ = ("settings",)
    SETTINGS_FIELD_NUMBER: _ClassVar[int]
    settings: AttributionSettings
    def __init__(self, settings: _Optional[_Union[AttributionSettings, _Mapping]] = ...) -> None: ...

class SetAttributionSettingsResponse(_message.Message):
    __slots__ = ("settings",)
    SETTINGS_FIELD_NUMBER: _ClassVar[int]
    settings: AttributionSettings
    def __init__(self, settings: _Optional[_Union[AttributionSettings, _Mapping]] = ...) -> None: ...
