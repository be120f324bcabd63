from google.protobuf.internal import containers as _containers
from google.protobuf import descriptor as _descriptor
from google.protobuf import message as _message
from collections.abc import Iterable as _Iterable
from typing import ClassVar as _ClassVar, Optional as _Optional

DESCRIPTOR: _descriptor.FileDescriptor

class RecommendationServed(_message.Message):
    __slots__ = ("recommendation_id", "profile_id", "anonymous_id", "scenario", "context_item_id", "item_ids", "recommenders", "intent_locked", "cold_start")
    RECOMMENDATION_ID_FIELD_NUMBER: _ClassVar[int]
    PROFILE_ID_FIELD_NUMBER: _ClassVar[int]
    ANONYMOUS_ID_FIELD_NUMBER: _ClassVar[int]
    SCENARIO_FIELD_NUMBER: _ClassVar[int]
    CONTEXT_ITEM_ID_FIELD_NUMBER: _ClassVar[int]
    ITEM_IDS_FIELD_NUMBER: _ClassVar[int]
    RECOMMENDERS_FIELD_NUMBER: _ClassVar[int]
    INTENT_LOCKED_FIELD_NUMBER: _ClassVar[int]
    COLD_START_FIELD_NUMBER: _ClassVar[int]
    recommendation_id: str
    profile_id: str
    anonymous_id: str
    scenario: str
    context_item_id: str
    item_ids: _containers.RepeatedScalarFieldContainer[str]
    recommenders: _containers.RepeatedScalarFieldContainer[str]
    intent_locked: bool
    cold_start: bool
    def __init__(self, recommendation_id: _Optional[str] = ..., profile_id: _Optional[str] = ..., anonymous_id: _Optional[str] = ..., scenario: _Optional[str] = ..., context_item_id: _Optional[str] = ..., item_ids: _Optional[_Iterable[str]] = ..., recommenders: _Optional[_Iterable[str]] = ..., intent_locked: _Optional[bool] = ..., cold_start: _Optional[bool] = ...) -> None: ...

class RecommendationClicked(_message.Message):
    __slots__ = ("recommendation_id", "profile_id", "anonymous_id", "item_id", "position", "scenario", "recommender")
    RECOMMENDATION_ID_FIELD_NUMBER: _ClassVar[int]
    PROFILE_ID_FIELD_NUMBER: _ClassVar[int]
    ANONYMOUS_ID_FIELD_NUMBER: _ClassVar[int]
    ITEM_ID_FIELD_NUMBER: _ClassVar[int]
    POSITION_FIELD_NUMBER: _ClassVar[int]
    SCENARIO_FIELD_NUMBER: _ClassVar[int]
    RECOMMENDER_FIELD_NUMBER: _ClassVar[int]
    recommendation_id: str
    profile_id: str
    anonymous_id: str
    item_id: str
    position: int
    scenario: str
    recommender: str
    def __init__(self, recommendation_id: _Optional[str] = ..., profile_id: _Optional[str] = ..., anonymous_id: _Optional[str] = ..., item_id: _Optional[str] = ..., position: _Optional[int] = ..., scenario: _Optional[str] = ..., recommender: _Optional[str] = ...) -> None: ...

class IntentLocked(_message.Message):
    __slots__ = ("profile_id", "anonymous_id", "item_id", "category", "score", "cross_categories")
    PROFILE_ID_FIELD_NUMBER: _ClassVar[int]
    ANONYMOUS_ID_FIELD_NUMBER: _ClassVar[int]
    ITEM_ID_FIELD_NUMBER: _ClassVar[int]
    CATEGORY_FIELD_NUMBER: _ClassVar[int]
    SCORE_FIELD_NUMBER: _ClassVar[int]
    CROSS_CATEGORIES_FIELD_NUMBER: _ClassVar[int]
    profile_id: str
    anonymous_id: str
    item_id: str
    category: str
    score: float
    cross_categories: _containers.RepeatedScalarFieldContainer[str]
    def __init__(self, profile_id: _Optional[str] = ..., anonymous_id: _Optional[str] = ..., item_id: _Optional[str] = ..., category: _Optional[str] = ..., score: _Optional[float] = ..., cross_categories: _Optional[_Iterable[str]] = ...) -> None: ...
