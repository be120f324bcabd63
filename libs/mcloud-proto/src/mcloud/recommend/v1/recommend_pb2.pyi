import datetime

from google.protobuf import timestamp_pb2 as _timestamp_pb2
from google.protobuf.internal import containers as _containers
from google.protobuf.internal import enum_type_wrapper as _enum_type_wrapper
from google.protobuf import descriptor as _descriptor
from google.protobuf import message as _message
from collections.abc import Iterable as _Iterable, Mapping as _Mapping
from typing import ClassVar as _ClassVar, Optional as _Optional, Union as _Union

DESCRIPTOR: _descriptor.FileDescriptor

class ItemKind(int, metaclass=_enum_type_wrapper.EnumTypeWrapper):
    __slots__ = ()
    ITEM_KIND_UNSPECIFIED: _ClassVar[ItemKind]
    ITEM_KIND_PRODUCT: _ClassVar[ItemKind]
    ITEM_KIND_ACTIVITY: _ClassVar[ItemKind]
    ITEM_KIND_CONTENT: _ClassVar[ItemKind]

class FeedbackKind(int, metaclass=_enum_type_wrapper.EnumTypeWrapper):
    __slots__ = ()
    FEEDBACK_KIND_UNSPECIFIED: _ClassVar[FeedbackKind]
    FEEDBACK_KIND_VIEW: _ClassVar[FeedbackKind]
    FEEDBACK_KIND_ADD_TO_CART: _ClassVar[FeedbackKind]
    FEEDBACK_KIND_REMOVE_FROM_CART: _ClassVar[FeedbackKind]
    FEEDBACK_KIND_PURCHASE: _ClassVar[FeedbackKind]
    FEEDBACK_KIND_CLICK: _ClassVar[FeedbackKind]
    FEEDBACK_KIND_DISMISS: _ClassVar[FeedbackKind]

class Scenario(int, metaclass=_enum_type_wrapper.EnumTypeWrapper):
    __slots__ = ()
    SCENARIO_UNSPECIFIED: _ClassVar[Scenario]
    SCENARIO_HOME: _ClassVar[Scenario]
    SCENARIO_PRODUCT_PAGE: _ClassVar[Scenario]
    SCENARIO_CART: _ClassVar[Scenario]
    SCENARIO_EMAIL: _ClassVar[Scenario]
    SCENARIO_STORE_TABLET: _ClassVar[Scenario]

class TrainingStatus(int, metaclass=_enum_type_wrapper.EnumTypeWrapper):
    __slots__ = ()
    TRAINING_STATUS_UNSPECIFIED: _ClassVar[TrainingStatus]
    TRAINING_STATUS_QUEUED: _ClassVar[TrainingStatus]
    TRAINING_STATUS_RUNNING: _ClassVar[TrainingStatus]
    TRAINING_STATUS_SUCCEEDED: _ClassVar[TrainingStatus]
    TRAINING_STATUS_FAILED: _ClassVar[TrainingStatus]
ITEM_KIND_UNSPECIFIED: ItemKind
ITEM_KIND_PRODUCT: ItemKind
ITEM_KIND_ACTIVITY: ItemKind
ITEM_KIND_CONTENT: ItemKind
FEEDBACK_KIND_UNSPECIFIED: FeedbackKind
FEEDBACK_KIND_VIEW: FeedbackKind
FEEDBACK_KIND_ADD_TO_CART: FeedbackKind
FEEDBACK_KIND_REMOVE_FROM_CART: FeedbackKind
FEEDBACK_KIND_PURCHASE: FeedbackKind
FEEDBACK_KIND_CLICK: FeedbackKind
FEEDBACK_KIND_DISMISS: FeedbackKind
SCENARIO_UNSPECIFIED: Scenario
SCENARIO_HOME: Scenario
SCENARIO_PRODUCT_PAGE: Scenario
SCENARIO_CART: Scenario
SCENARIO_EMAIL: Scenario
SCENARIO_STORE_TABLET: Scenario
TRAINING_STATUS_UNSPECIFIED: TrainingStatus
TRAINING_STATUS_QUEUED: TrainingStatus
TRAINING_STATUS_RUNNING: TrainingStatus
TRAINING_STATUS_SUCCEEDED: TrainingStatus
TRAINING_STATUS_FAILED: TrainingStatus

class Item(_message.Message):
    __slots__ = ("id", "kind", "title", "categories", "brand", "price_minor", "currency", "in_stock", "tags", "image_url", "url", "replenish_after_days", "starts_at", "ends_at", "attributes_json", "updated_at")
    ID_FIELD_NUMBER: _ClassVar[int]
    KIND_FIELD_NUMBER: _ClassVar[int]
    TITLE_FIELD_NUMBER: _ClassVar[int]
    CATEGORIES_FIELD_NUMBER: _ClassVar[int]
    BRAND_FIELD_NUMBER: _ClassVar[int]
    PRICE_MINOR_FIELD_NUMBER: _ClassVar[int]
    CURRENCY_FIELD_NUMBER: _ClassVar[int]
    IN_STOCK_FIELD_NUMBER: _ClassVar[int]
    TAGS_FIELD_NUMBER: _ClassVar[int]
    IMAGE_URL_FIELD_NUMBER: _ClassVar[int]
    URL_FIELD_NUMBER: _ClassVar[int]
    REPLENISH_AFTER_DAYS_FIELD_NUMBER: _ClassVar[int]
    STARTS_AT_FIELD_NUMBER: _ClassVar[int]
    ENDS_AT_FIELD_NUMBER: _ClassVar[int]
    ATTRIBUTES_JSON_FIELD_NUMBER: _ClassVar[int]
    UPDATED_AT_FIELD_NUMBER: _ClassVar[int]
    id: str
    kind: ItemKind
    title: str
    categories: _containers.RepeatedScalarFieldContainer[str]
    brand: str
    price_minor: int
    currency: str
    in_stock: bool
    tags: _containers.RepeatedScalarFieldContainer[str]
    image_url: str
    url: str
    replenish_after_days: int
    starts_at: _timestamp_pb2.Timestamp
    ends_at: _timestamp_pb2.Timestamp
    attributes_json: str
    updated_at: _timestamp_pb2.Timestamp
    def __init__(self, id: _Optional[str] = ..., kind: _Optional[_Union[ItemKind, str]] = ..., title: _Optional[str] = ..., categories: _Optional[_Iterable[str]] = ..., brand: _Optional[str] = ..., price_minor: _Optional[int] = ..., currency: _Optional[str] = ..., in_stock: _Optional[bool] = ..., tags: _Optional[_Iterable[str]] = ..., image_url: _Optional[str] = ..., url: _Optional[str] = ..., replenish_after_days: _Optional[int] = ..., starts_at: _Optional[_Union[datetime.datetime, _timestamp_pb2.Timestamp, _Mapping]] = ..., ends_at: _Optional[_Union[datetime.datetime, _timestamp_pb2.Timestamp, _Mapping]] = ..., attributes_json: _Optional[str] = ..., updated_at: _Optional[_Union[datetime.datetime, _timestamp_pb2.Timestamp, _Mapping]] = ...) -> None: ...

class UpsertItemsRequest(_message.Message):
    __slots__ = ("items",)
    ITEMS_FIELD_NUMBER: _ClassVar[int]
    items: _containers.RepeatedCompositeFieldContainer[Item]
    def __init__(self, items: _Optional[_Iterable[_Union[Item, _Mapping]]] = ...) -> None: ...

class UpsertItemsResponse(_message.Message):
    __slots__ = ("upserted",)
    UPSERTED_FIELD_NUMBER: _ClassVar[int]
    upserted: int
    def __init__(self, upserted: _Optional[int] = ...) -> None: ...

class DeleteItemsRequest(_message.Message):
    __slots__ = ("item_ids",)
    ITEM_IDS_FIELD_NUMBER: _ClassVar[int]
    item_ids: _containers.RepeatedScalarFieldContainer[str]
    def __init__(self, item_ids: _Optional[_Iterable[str]] = ...) -> None: ...

class DeleteItemsResponse(_message.Message):
    __slots__ = ("deleted",)
    DELETED_FIELD_NUMBER: _ClassVar[int]
    deleted: int
    def __init__(self, deleted: _Optional[int] = ...) -> None: ...

class Feedback(_message.Message):
    __slots__ = ("event_id", "profile_id", "anonymous_id", "item_id", "kind", "weight", "occurred_at", "recommendation_id", "quantity")
    EVENT_ID_FIELD_NUMBER: _ClassVar[int]
    PROFILE_ID_FIELD_NUMBER: _ClassVar[int]
    ANONYMOUS_ID_FIELD_NUMBER: _ClassVar[int]
    ITEM_ID_FIELD_NUMBER: _ClassVar[int]
    KIND_FIELD_NUMBER: _ClassVar[int]
    WEIGHT_FIELD_NUMBER: _ClassVar[int]
    OCCURRED_AT_FIELD_NUMBER: _ClassVar[int]
    RECOMMENDATION_ID_FIELD_NUMBER: _ClassVar[int]
    QUANTITY_FIELD_NUMBER: _ClassVar[int]
    event_id: str
    profile_id: str
    anonymous_id: str
    item_id: str
    kind: FeedbackKind
    weight: float
    occurred_at: _timestamp_pb2.Timestamp
    recommendation_id: str
    quantity: int
    def __init__(self, event_id: _Optional[str] = ..., profile_id: _Optional[str] = ..., anonymous_id: _Optional[str] = ..., item_id: _Optional[str] = ..., kind: _Optional[_Union[FeedbackKind, str]] = ..., weight: _Optional[float] = ..., occurred_at: _Optional[_Union[datetime.datetime, _timestamp_pb2.Timestamp, _Mapping]] = ..., recommendation_id: _Optional[str] = ..., quantity: _Optional[int] = ...) -> None: ...

class RecordFeedbackRequest(_message.Message):
    __slots__ = ("feedback",)
    FEEDBACK_FIELD_NUMBER: _ClassVar[int]
    feedback: _containers.RepeatedCompositeFieldContainer[Feedback]
    def __init__(self, feedback: _Optional[_Iterable[_Union[Feedback, _Mapping]]] = ...) -> None: ...

class RecordFeedbackResponse(_message.Message):
    __slots__ = ("accepted", "duplicates")
    ACCEPTED_FIELD_NUMBER: _ClassVar[int]
    DUPLICATES_FIELD_NUMBER: _ClassVar[int]
    accepted: int
    duplicates: int
    def __init__(self, accepted: _Optional[int] = ..., duplicates: _Optional[int] = ...) -> None: ...

class Filters(_message.Message):
    __slots__ = ("categories", "exclude_categories", "min_price_minor", "max_price_minor", "currency", "in_stock_only", "kinds", "exclude_item_ids")
    CATEGORIES_FIELD_NUMBER: _ClassVar[int]
    EXCLUDE_CATEGORIES_FIELD_NUMBER: _ClassVar[int]
    MIN_PRICE_MINOR_FIELD_NUMBER: _ClassVar[int]
    MAX_PRICE_MINOR_FIELD_NUMBER: _ClassVar[int]
    CURRENCY_FIELD_NUMBER: _ClassVar[int]
    IN_STOCK_ONLY_FIELD_NUMBER: _ClassVar[int]
    KINDS_FIELD_NUMBER: _ClassVar[int]
    EXCLUDE_ITEM_IDS_FIELD_NUMBER: _ClassVar[int]
    categories: _containers.RepeatedScalarFieldContainer[str]
    exclude_categories: _containers.RepeatedScalarFieldContainer[str]
    min_price_minor: int
    max_price_minor: int
    currency: str
    in_stock_only: bool
    kinds: _containers.RepeatedScalarFieldContainer[ItemKind]
    exclude_item_ids: _containers.RepeatedScalarFieldContainer[str]
    def __init__(self, categories: _Optional[_Iterable[str]] = ..., exclude_categories: _Optional[_Iterable[str]] = ..., min_price_minor: _Optional[int] = ..., max_price_minor: _Optional[int] = ..., currency: _Optional[str] = ..., in_stock_only: _Optional[bool] = ..., kinds: _Optional[_Iterable[_Union[ItemKind, str]]] = ..., exclude_item_ids: _Optional[_Iterable[str]] = ...) -> None: ...

class RecommendedItem(_message.Message):
    __slots__ = ("item_id", "score", "recommender", "explanation", "item")
    ITEM_ID_FIELD_NUMBER: _ClassVar[int]
    SCORE_FIELD_NUMBER: _ClassVar[int]
    RECOMMENDER_FIELD_NUMBER: _ClassVar[int]
    EXPLANATION_FIELD_NUMBER: _ClassVar[int]
    ITEM_FIELD_NUMBER: _ClassVar[int]
    item_id: str
    score: float
    recommender: str
    explanation: str
    item: Item
    def __init__(self, item_id: _Optional[str] = ..., score: _Optional[float] = ..., recommender: _Optional[str] = ..., explanation: _Optional[str] = ..., item: _Optional[_Union[Item, _Mapping]] = ...) -> None: ...

class RecommendRequest(_message.Message):
    __slots__ = ("scenario", "profile_id", "anonymous_id", "context_item_id", "context_item_ids", "filters", "count", "include_items")
    SCENARIO_FIELD_NUMBER: _ClassVar[int]
    PROFILE_ID_FIELD_NUMBER: _ClassVar[int]
    ANONYMOUS_ID_FIELD_NUMBER: _ClassVar[int]
    CONTEXT_ITEM_ID_FIELD_NUMBER: _ClassVar[int]
    CONTEXT_ITEM_IDS_FIELD_NUMBER: _ClassVar[int]
    FILTERS_FIELD_NUMBER: _ClassVar[int]
    COUNT_FIELD_NUMBER: _ClassVar[int]
    INCLUDE_ITEMS_FIELD_NUMBER: _ClassVar[int]
    scenario: Scenario
    profile_id: str
    anonymous_id: str
    context_item_id: str
    context_item_ids: _containers.RepeatedScalarFieldContainer[str]
    filters: Filters
    count: int
    include_items: bool
    def __init__(self, scenario: _Optional[_Union[Scenario, str]] = ..., profile_id: _Optional[str] = ..., anonymous_id: _Optional[str] = ..., context_item_id: _Optional[str] = ..., context_item_ids: _Optional[_Iterable[str]] = ..., filters: _Optional[_Union[Filters, _Mapping]] = ..., count: _Optional[int] = ..., include_items: _Optional[bool] = ...) -> None: ...

class RecommendResponse(_message.Message):
    __slots__ = ("recommendation_id", "items", "intent_locked", "cold_start")
    RECOMMENDATION_ID_FIELD_NUMBER: _ClassVar[int]
    ITEMS_FIELD_NUMBER: _ClassVar[int]
    INTENT_LOCKED_FIELD_NUMBER: _ClassVar[int]
    COLD_START_FIELD_NUMBER: _ClassVar[int]
    recommendation_id: str
    items: _containers.RepeatedCompositeFieldContainer[RecommendedItem]
    intent_locked: bool
    cold_start: bool
    def __init__(self, recommendation_id: _Optional[str] = ..., items: _Optional[_Iterable[_Union[RecommendedItem, _Mapping]]] = ..., intent_locked: _Optional[bool] = ..., cold_start: _Optional[bool] = ...) -> None: ...

class GetSimilarItemsRequest(_message.Message):
    __slots__ = ("item_id", "filters", "count", "include_items")
    ITEM_ID_FIELD_NUMBER: _ClassVar[int]
    FILTERS_FIELD_NUMBER: _ClassVar[int]
    COUNT_FIELD_NUMBER: _ClassVar[int]
    INCLUDE_ITEMS_FIELD_NUMBER: _ClassVar[int]
    item_id: str
    filters: Filters
    count: int
    include_items: bool
    def __init__(self, item_id: _Optional[str] = ..., filters: _Optional[_Union[Filters, _Mapping]] = ..., count: _Optional[int] = ..., include_items: _Optional[bool] = ...) -> None: ...

class GetSimilarItemsResponse(_message.Message):
    __slots__ = ("items",)
    ITEMS_FIELD_NUMBER: _ClassVar[int]
    items: _containers.RepeatedCompositeFieldContainer[RecommendedItem]
    def __init__(self, items: _Optional[_Iterable[_Union[RecommendedItem, _Mapping]]] = ...) -> None: ...

class Metric(_message.Message):
    __slots__ = ("name", "value")
    NAME_FIELD_NUMBER: _ClassVar[int]
    VALUE_FIELD_NUMBER: _ClassVar[int]
    name: str
    value: float
    def __init__(self, name: _Optional[str] = ..., value: _Optional[float] = ...) -> None: ...

class TrainingRun(_message.Message):
    __slots__ = ("id", "status", "started_at", "finished_at", "item_count", "interaction_count", "metrics", "error")
    ID_FIELD_NUMBER: _ClassVar[int]
    STATUS_FIELD_NUMBER: _ClassVar[int]
    STARTED_AT_FIELD_NUMBER: _ClassVar[int]
    FINISHED_AT_FIELD_NUMBER: _ClassVar[int]
    ITEM_COUNT_FIELD_NUMBER: _ClassVar[int]
    INTERACTION_COUNT_FIELD_NUMBER: _ClassVar[int]
    METRICS_FIELD_NUMBER: _ClassVar[int]
    ERROR_FIELD_NUMBER: _ClassVar[int]
    id: str
    status: TrainingStatus
    started_at: _timestamp_pb2.Timestamp
    finished_at: _timestamp_pb2.Timestamp
    item_count: int
    interaction_count: int
    metrics: _containers.RepeatedCompositeFieldContainer[Metric]
    error: str
    def __init__(self, id: _Optional[str] = ..., status: _Optional[_Union[TrainingStatus, str]] = ..., started_at: _Optional[_Union[datetime.datetime, _timestamp_pb2.Timestamp, _Mapping]] = ..., finished_at: _Optional[_Union[datetime.datetime, _timestamp_pb2.Timestamp, _Mapping]] = ..., item_count: _Optional[int] = ..., interaction_count: _Optional[int] = ..., metrics: _Optional[_Iterable[_Union[Metric, _Mapping]]] = ..., error: _Optional[str] = ...) -> None: ...

class RetrainModelRequest(_message.Message):
    __slots__ = ("wait", "idempotency_key")
    WAIT_FIELD_NUMBER: _ClassVar[int]
    IDEMPOTENCY_KEY_FIELD_NUMBER: _ClassVar[int]
    wait: bool
    idempotency_key: str
    def __init__(self, wait: _Optional[bool] = ..., idempotency_key: _Optional[str] = ...) -> None: ...

class RetrainModelResponse(_message.Message):
    __slots__ = ("run",)
    RUN_FIELD_NUMBER: _ClassVar[int]
    run: TrainingRun
    def __init__(self, run: _Optional[_Union[TrainingRun, _Mapping]] = ...) -> None: ...

class Intent(_message.Message):
    __slots__ = ("locked", "item_id", "category", "score", "cross_categories", "locked_at", "expires_at")
    LOCKED_FIELD_NUMBER: _ClassVar[int]
    ITEM_ID_FIELD_NUMBER: _ClassVar[int]
    CATEGORY_FIELD_NUMBER: _ClassVar[int]
    SCORE_FIELD_NUMBER: _ClassVar[int]
    CROSS_CATEGORIES_FIELD_NUMBER: _ClassVar[int]
    LOCKED_AT_FIELD_NUMBER: _ClassVar[int]
    EXPIRES_AT_FIELD_NUMBER: _ClassVar[int]
    locked: bool
    item_id: str
    category: str
    score: float
    cross_categories: _containers.RepeatedScalarFieldContainer[str]
    locked_at: _timestamp_pb2.Timestamp
    expires_at: _timestamp_pb2.Timestamp
    def __init__(self, locked: _Optional[bool] = ..., item_id: _Optional[str] = ..., category: _Optional[str] = ..., score: _Optional[float] = ..., cross_categories: _Optional[_Iterable[str]] = ..., locked_at: _Optional[_Union[datetime.datetime, _timestamp_pb2.Timestamp, _Mapping]] = ..., expires_at: _Optional[_Union[datetime.datetime, _timestamp_pb2.Timestamp, _Mapping]] = ...) -> None: ...

class GetIntentRequest(_message.Message):
    __slots__ = ("profile_id", "anonymous_id")
    PROFILE_ID_FIELD_NUMBER: _ClassVar[int]
    ANONYMOUS_ID_FIELD_NUMBER: _ClassVar[int]
    profile_id: str
    anonymous_id: str
    def __init__(self, profile_id: _Optional[str] = ..., anonymous_id: _Optional[str] = ...) -> None: ...

class GetIntentResponse(_message.Message):
    __slots__ = ("intent",)
    INTENT_FIELD_NUMBER: _ClassVar[int]
    intent: Intent
    def __init__(self, intent: _Optional[_Union[Intent, _Mapping]] = ...) -> None: ...

class GetItemRequest(_message.Message):
    __slots__ = ("item_id",)
    ITEM_ID_FIELD_NUMBER: _ClassVar[int]
    item_id: str
    def __init__(self, item_id: _Optional[str] = ...) -> None: ...

class GetItemResponse(_message.Message):
    __slots__ = ("item",)
    ITEM_FIELD_NUMBER: _ClassVar[int]
    item: Item
    def __init__(self, item: _Optional[_Union[Item, _Mapping]] = ...) -> None: ...

class ListItemsRequest(_message.Message):
    __slots__ = ("category", "kind", "page_size", "page_token")
    CATEGORY_FIELD_NUMBER: _ClassVar[int]
    KIND_FIELD_NUMBER: _ClassVar[int]
    PAGE_SIZE_FIELD_NUMBER: _ClassVar[int]
    PAGE_TOKEN_FIELD_NUMBER: _ClassVar[int]
    category: str
    kind: ItemKind
    page_size: int
    page_token: str
    def __init__(self, category: _Optional[str] = ..., kind: _Optional[_Union[ItemKind, str]] = ..., page_size: _Optional[int] = ..., page_token: _Optional[str] = ...) -> None: ...

class ListItemsResponse(_message.Message):
    __slots__ = ("items", "next_page_token")
    ITEMS_FIELD_NUMBER: _ClassVar[int]
    NEXT_PAGE_TOKEN_FIELD_NUMBER: _ClassVar[int]
    items: _containers.RepeatedCompositeFieldContainer[Item]
    next_page_token: str
    def __init__(self, items: _Optional[_Iterable[_Union[Item, _Mapping]]] = ..., next_page_token: _Optional[str] = ...) -> None: ...

class FeedbackWeights(_message.Message):
    __slots__ = ("view", "add_to_cart", "remove_from_cart", "purchase", "click", "dismiss")
    VIEW_FIELD_NUMBER: _ClassVar[int]
    ADD_TO_CART_FIELD_NUMBER: _ClassVar[int]
    REMOVE_FROM_CART_FIELD_NUMBER: _ClassVar[int]
    PURCHASE_FIELD_NUMBER: _ClassVar[int]
    CLICK_FIELD_NUMBER: _ClassVar[int]
    DISMISS_FIELD_NUMBER: _ClassVar[int]
    view: float
    add_to_cart: float
    remove_from_cart: float
    purchase: float
    click: float
    dismiss: float
    def __init__(self, view: _Optional[float] = ..., add_to_cart: _Optional[float] = ..., remove_from_cart: _Optional[float] = ..., purchase: _Optional[float] = ..., click: _Optional[float] = ..., dismiss: _Optional[float] = ...) -> None: ...

class CategoryComplements(_message.Message):
    __slots__ = ("category", "complements")
    CATEGORY_FIELD_NUMBER: _ClassVar[int]
    COMPLEMENTS_FIELD_NUMBER: _ClassVar[int]
    category: str
    complements: _containers.RepeatedScalarFieldContainer[str]
    def __init__(self, category: _Optional[str] = ..., complements: _Optional[_Iterable[str]] = ...) -> None: ...

class RecommendSettings(_message.Message):
    __slots__ = ("weights", "intent_min_views", "intent_window_hours", "intent_cart_minutes", "intent_ttl_hours", "complements", "exclude_purchased_days", "replenish_lead_days", "trending_half_life_hours", "dismiss_days", "attribution_days", "updated_at")
    WEIGHTS_FIELD_NUMBER: _ClassVar[int]
    INTENT_MIN_VIEWS_FIELD_NUMBER: _ClassVar[int]
    INTENT_WINDOW_HOURS_FIELD_NUMBER: _ClassVar[int]
    INTENT_CART_MINUTES_FIELD_NUMBER: _ClassVar[int]
    INTENT_TTL_HOURS_FIELD_NUMBER: _ClassVar[int]
    COMPLEMENTS_FIELD_NUMBER: _ClassVar[int]
    EXCLUDE_PURCHASED_DAYS_FIELD_NUMBER: _ClassVar[int]
    REPLENISH_LEAD_DAYS_FIELD_NUMBER: _ClassVar[int]
    TRENDING_HALF_LIFE_HOURS_FIELD_NUMBER: _ClassVar[int]
    DISMISS_DAYS_FIELD_NUMBER: _ClassVar[int]
    ATTRIBUTION_DAYS_FIELD_NUMBER: _ClassVar[int]
    UPDATED_AT_FIELD_NUMBER: _ClassVar[int]
    weights: FeedbackWeights
    intent_min_views: int
    intent_window_hours: int
    intent_cart_minutes: int
    intent_ttl_hours: int
    complements: _containers.RepeatedCompositeFieldContainer[CategoryComplements]
    exclude_purchased_days: int
    replenish_lead_days: int
    trending_half_life_hours: float
    dismiss_days: int
    attribution_days: int
    updated_at: _timestamp_pb2.Timestamp
    def __init__(self, weights: _Optional[_Union[FeedbackWeights, _Mapping]] = ..., intent_min_views: _Optional[int] = ..., intent_window_hours: _Optional[int] = ..., intent_cart_minutes: _Optional[int] = ..., intent_ttl_hours: _Optional[int] = ..., complements: _Optional[_Iterable[_Union[CategoryComplements, _Mapping]]] = ..., exclude_purchased_days: _Optional[int] = ..., replenish_lead_days: _Optional[int] = ..., trending_half_life_hours: _Optional[float] = ..., dismiss_days: _Optional[int] = ..., attribution_days: _Optional[int] = ..., updated_at: _Optional[_Union[datetime.datetime, _timestamp_pb2.Timestamp, _Mapping]] = ...) -> None: ...

class GetRecommendSettingsRequest(_message.Message):
    __slots__ = ()
    def __init__(self) -> None: ...

class GetRecommendSettingsResponse(_message.Message):
    __slots__ = ("settings",)
    SETTINGS_FIELD_NUMBER: _ClassVar[int]
    settings: RecommendSettings
    def __init__(self, settings: _Optional[_Union[RecommendSettings, _Mapping]] = ...) -> None: ...

class UpdateRecommendSettingsRequest(_message.Message):
    __slots__ = ("settings",)
    SETTINGS_FIELD_NUMBER: _ClassVar[int]
    settings: RecommendSettings
    def __init__(self, settings: _Optional[_Union[RecommendSettings, _Mapping]] = ...) -> None: ...

class UpdateRecommendSettingsResponse(_message.Message):
    __slots__ = ("settings",)
    SETTINGS_FIELD_NUMBER: _ClassVar[int]
    settings: RecommendSettings
    def __init__(self, settings: _Optional[_Union[RecommendSettings, _Mapping]] = ...) -> None: ...

class GetTrainingRunRequest(_message.Message):
    __slots__ = ("run_id",)
    RUN_ID_FIELD_NUMBER: _ClassVar[int]
    run_id: str
    def __init__(self, run_id: _Optional[str] = ...) -> None: ...

class GetTrainingRunResponse(_message.Message):
    __slots__ = ("run",)
    RUN_FIELD_NUMBER: _ClassVar[int]
    run: TrainingRun
    def __init__(self, run: _Optional[_Union[TrainingRun, _Mapping]] = ...) -> None: ...

class GetRecommendationStatsRequest(_message.Message):
    __slots__ = ("since", "until")
    SINCE_FIELD_NUMBER: _ClassVar[int]
    UNTIL_FIELD_NUMBER: _ClassVar[int]
    since: _timestamp_pb2.Timestamp
    until: _timestamp_pb2.Timestamp
    def __init__(self, since: _Optional[_Union[datetime.datetime, _timestamp_pb2.Timestamp, _Mapping]] = ..., until: _Optional[_Union[datetime.datetime, _timestamp_pb2.Timestamp, _Mapping]] = ...) -> None: ...

class RecommendationStat(_message.Message):
    __slots__ = ("scenario", "recommender", "impressions", "clicks", "conversions", "click_through_rate", "conversion_rate")
    SCENARIO_FIELD_NUMBER: _ClassVar[int]
    RECOMMENDER_FIELD_NUMBER: _ClassVar[int]
    IMPRESSIONS_FIELD_NUMBER: _ClassVar[int]
    CLICKS_FIELD_NUMBER: _ClassVar[int]
    CONVERSIONS_FIELD_NUMBER: _ClassVar[int]
    CLICK_THROUGH_RATE_FIELD_NUMBER: _ClassVar[int]
    CONVERSION_RATE_FIELD_NUMBER: _ClassVar[int]
    scenario: str
    recommender: str
    impressions: int
    clicks: int
    conversions: int
    click_through_rate: float
    conversion_rate: float
    def __init__(self, scenario: _Optional[str] = ..., recommender: _Optional[str] = ..., impressions: _Optional[int] = ..., clicks: _Optional[int] = ..., conversions: _Optional[int] = ..., click_through_rate: _Optional[float] = ..., conversion_rate: _Optional[float] = ...) -> None: ...

class GetRecommendationStatsResponse(_message.Message):
    __slots__ = ("stats",)
    STATS_FIELD_NUMBER: _ClassVar[int]
    stats: _containers.RepeatedCompositeFieldContainer[RecommendationStat]
    def __init__(self, stats: _Optional[_Iterable[_Union[RecommendationStat, _Mapping]]] = ...) -> None: ...
