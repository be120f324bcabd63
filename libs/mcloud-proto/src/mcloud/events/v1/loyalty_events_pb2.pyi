import datetime

from google.protobuf import timestamp_pb2 as _timestamp_pb2
from google.protobuf.internal import containers as _containers
from google.protobuf import descriptor as _descriptor
from google.protobuf import message as _message
from collections.abc import Iterable as _Iterable, Mapping as _Mapping
from typing import ClassVar as _ClassVar, Optional as _Optional, Union as _Union

DESCRIPTOR: _descriptor.FileDescriptor

class MemberEnrolled(_message.Message):
    __slots__ = ("profile_id", "program_id", "member_number", "tier_code", "source")
    PROFILE_ID_FIELD_NUMBER: _ClassVar[int]
    PROGRAM_ID_FIELD_NUMBER: _ClassVar[int]
    MEMBER_NUMBER_FIELD_NUMBER: _ClassVar[int]
    TIER_CODE_FIELD_NUMBER: _ClassVar[int]
    SOURCE_FIELD_NUMBER: _ClassVar[int]
    profile_id: str
    program_id: str
    member_number: str
    tier_code: str
    source: str
    def __init__(self, profile_id: _Optional[str] = ..., program_id: _Optional[str] = ..., member_number: _Optional[str] = ..., tier_code: _Optional[str] = ..., source: _Optional[str] = ...) -> None: ...

class PointsEarned(_message.Message):
    __slots__ = ("profile_id", "program_id", "ledger_entry_id", "points", "reason", "order_id", "rule_id", "available_at", "expires_at", "balance_available", "balance_pending")
    PROFILE_ID_FIELD_NUMBER: _ClassVar[int]
    PROGRAM_ID_FIELD_NUMBER: _ClassVar[int]
    LEDGER_ENTRY_ID_FIELD_NUMBER: _ClassVar[int]
    POINTS_FIELD_NUMBER: _ClassVar[int]
    REASON_FIELD_NUMBER: _ClassVar[int]
    ORDER_ID_FIELD_NUMBER: _ClassVar[int]
    RULE_ID_FIELD_NUMBER: _ClassVar[int]
    AVAILABLE_AT_FIELD_NUMBER: _ClassVar[int]
    EXPIRES_AT_FIELD_NUMBER: _ClassVar[int]
    BALANCE_AVAILABLE_FIELD_NUMBER: _ClassVar[int]
    BALANCE_PENDING_FIELD_NUMBER: _ClassVar[int]
    profile_id: str
    program_id: str
    ledger_entry_id: str
    points: int
    reason: str
    order_id: str
    rule_id: str
    available_at: _timestamp_pb2.Timestamp
    expires_at: _timestamp_pb2.Timestamp
    balance_available: int
    balance_pending: int
    def __init__(self, profile_id: _Optional[str] = ..., program_id: _Optional[str] = ..., ledger_entry_id: _Optional[str] = ..., points: _Optional[int] = ..., reason: _Optional[str] = ..., order_id: _Optional[str] = ..., rule_id: _Optional[str] = ..., available_at: _Optional[_Union[datetime.datetime, _timestamp_pb2.Timestamp, _Mapping]] = ..., expires_at: _Optional[_Union[datetime.datetime, _timestamp_pb2.Timestamp, _Mapping]] = ..., balance_available: _Optional[int] = ..., balance_pending: _Optional[int] = ...) -> None: ...

class PointsSpent(_message.Message):
    __slots__ = ("profile_id", "program_id", "ledger_entry_id", "points", "reason", "order_id", "reward_redemption_id", "balance_available")
    PROFILE_ID_FIELD_NUMBER: _ClassVar[int]
    PROGRAM_ID_FIELD_NUMBER: _ClassVar[int]
    LEDGER_ENTRY_ID_FIELD_NUMBER: _ClassVar[int]
    POINTS_FIELD_NUMBER: _ClassVar[int]
    REASON_FIELD_NUMBER: _ClassVar[int]
    ORDER_ID_FIELD_NUMBER: _ClassVar[int]
    REWARD_REDEMPTION_ID_FIELD_NUMBER: _ClassVar[int]
    BALANCE_AVAILABLE_FIELD_NUMBER: _ClassVar[int]
    profile_id: str
    program_id: str
    ledger_entry_id: str
    points: int
    reason: str
    order_id: str
    reward_redemption_id: str
    balance_available: int
    def __init__(self, profile_id: _Optional[str] = ..., program_id: _Optional[str] = ..., ledger_entry_id: _Optional[str] = ..., points: _Optional[int] = ..., reason: _Optional[str] = ..., order_id: _Optional[str] = ..., reward_redemption_id: _Optional[str] = ..., balance_available: _Optional[int] = ...) -> None: ...

class PointsReversed(_message.Message):
    __slots__ = ("profile_id", "program_id", "order_id", "points", "ledger_entry_ids", "balance_available")
    PROFILE_ID_FIELD_NUMBER: _ClassVar[int]
    PROGRAM_ID_FIELD_NUMBER: _ClassVar[int]
    ORDER_ID_FIELD_NUMBER: _ClassVar[int]
    POINTS_FIELD_NUMBER: _ClassVar[int]
    LEDGER_ENTRY_IDS_FIELD_NUMBER: _ClassVar[int]
    BALANCE_AVAILABLE_FIELD_NUMBER: _ClassVar[int]
    profile_id: str
    program_id: str
    order_id: str
    points: int
    ledger_entry_ids: _containers.RepeatedScalarFieldContainer[str]
    balance_available: int
    def __init__(self, profile_id: _Optional[str] = ..., program_id: _Optional[str] = ..., order_id: _Optional[str] = ..., points: _Optional[int] = ..., ledger_entry_ids: _Optional[_Iterable[str]] = ..., balance_available: _Optional[int] = ...) -> None: ...

class PointsExpiring(_message.Message):
    __slots__ = ("profile_id", "program_id", "points", "expires_at", "balance_available")
    PROFILE_ID_FIELD_NUMBER: _ClassVar[int]
    PROGRAM_ID_FIELD_NUMBER: _ClassVar[int]
    POINTS_FIELD_NUMBER: _ClassVar[int]
    EXPIRES_AT_FIELD_NUMBER: _ClassVar[int]
    BALANCE_AVAILABLE_FIELD_NUMBER: _ClassVar[int]
    profile_id: str
    program_id: str
    points: int
    expires_at: _timestamp_pb2.Timestamp
    balance_available: int
    def __init__(self, profile_id: _Optional[str] = ..., program_id: _Optional[str] = ..., points: _Optional[int] = ..., expires_at: _Optional[_Union[datetime.datetime, _timestamp_pb2.Timestamp, _Mapping]] = ..., balance_available: _Optional[int] = ...) -> None: ...

class PointsExpired(_message.Message):
    __slots__ = ("profile_id", "program_id", "ledger_entry_id", "points", "balance_available")
    PROFILE_ID_FIELD_NUMBER: _ClassVar[int]
    PROGRAM_ID_FIELD_NUMBER: _ClassVar[int]
    LEDGER_ENTRY_ID_FIELD_NUMBER: _ClassVar[int]
    POINTS_FIELD_NUMBER: _ClassVar[int]
    BALANCE_AVAILABLE_FIELD_NUMBER: _ClassVar[int]
    profile_id: str
    program_id: str
    ledger_entry_id: str
    points: int
    balance_available: int
    def __init__(self, profile_id: _Optional[str] = ..., program_id: _Optional[str] = ..., ledger_entry_id: _Optional[str] = ..., points: _Optional[int] = ..., balance_available: _Optional[int] = ...) -> None: ...

class TierChanged(_message.Message):
    __slots__ = ("profile_id", "program_id", "from_tier_code", "to_tier_code", "direction", "qualifying_points", "benefit_codes", "next_tier_code", "points_to_next_tier")
    PROFILE_ID_FIELD_NUMBER: _ClassVar[int]
    PROGRAM_ID_FIELD_NUMBER: _ClassVar[int]
    FROM_TIER_CODE_FIELD_NUMBER: _ClassVar[int]
    TO_TIER_CODE_FIELD_NUMBER: _ClassVar[int]
    DIRECTION_FIELD_NUMBER: _ClassVar[int]
    QUALIFYING_POINTS_FIELD_NUMBER: _ClassVar[int]
    BENEFIT_CODES_FIELD_NUMBER: _ClassVar[int]
    NEXT_TIER_CODE_FIELD_NUMBER: _ClassVar[int]
    POINTS_TO_NEXT_TIER_FIELD_NUMBER: _ClassVar[int]
    profile_id: str
    program_id: str
    from_tier_code: str
    to_tier_code: str
    direction: str
    qualifying_points: int
    benefit_codes: _containers.RepeatedScalarFieldContainer[str]
    next_tier_code: str
    points_to_next_tier: int
    def __init__(self, profile_id: _Optional[str] = ..., program_id: _Optional[str] = ..., from_tier_code: _Optional[str] = ..., to_tier_code: _Optional[str] = ..., direction: _Optional[str] = ..., qualifying_points: _Optional[int] = ..., benefit_codes: _Optional[_Iterable[str]] = ..., next_tier_code: _Optional[str] = ..., points_to_next_tier: _Optional[int] = ...) -> None: ...

class CouponIssued(_message.Message):
    __slots__ = ("profile_id", "campaign_id", "code", "expires_at", "discount_type", "percent_off", "amount_off_minor", "currency", "source")
    PROFILE_ID_FIELD_NUMBER: _ClassVar[int]
    CAMPAIGN_ID_FIELD_NUMBER: _ClassVar[int]
    CODE_FIELD_NUMBER: _ClassVar[int]
    EXPIRES_AT_FIELD_NUMBER: _ClassVar[int]
    DISCOUNT_TYPE_FIELD_NUMBER: _ClassVar[int]
    PERCENT_OFF_FIELD_NUMBER: _ClassVar[int]
    AMOUNT_OFF_MINOR_FIELD_NUMBER: _ClassVar[int]
    CURRENCY_FIELD_NUMBER: _ClassVar[int]
    SOURCE_FIELD_NUMBER: _ClassVar[int]
    profile_id: str
    campaign_id: str
    code: str
    expires_at: _timestamp_pb2.Timestamp
    discount_type: str
    percent_off: int
    amount_off_minor: int
    currency: str
    source: str
    def __init__(self, profile_id: _Optional[str] = ..., campaign_id: _Optional[str] = ..., code: _Optional[str] = ..., expires_at: _Optional[_Union[datetime.datetime, _timestamp_pb2.Timestamp, _Mapping]] = ..., discount_type: _Optional[str] = ..., percent_off: _Optional[int] = ..., amount_off_minor: _Optional[int] = ..., currency: _Optional[str] = ..., source: _Optional[str] = ...) -> None: ...

class CouponExpiring(_message.Message):
    __slots__ = ("profile_id", "campaign_id", "code", "expires_at")
    PROFILE_ID_FIELD_NUMBER: _ClassVar[int]
    CAMPAIGN_ID_FIELD_NUMBER: _ClassVar[int]
    CODE_FIELD_NUMBER: _ClassVar[int]
    EXPIRES_AT_FIELD_NUMBER: _ClassVar[int]
    profile_id: str
    campaign_id: str
    code: str
    expires_at: _timestamp_pb2.Timestamp
    def __init__(self, profile_id: _Optional[str] = ..., campaign_id: _Optional[str] = ..., code: _Optional[str] = ..., expires_at: _Optional[_Union[datetime.datetime, _timestamp_pb2.Timestamp, _Mapping]] = ...) -> None: ...

class CouponRedeemed(_message.Message):
    __slots__ = ("profile_id", "campaign_id", "code", "order_id", "discount_minor", "currency")
    PROFILE_ID_FIELD_NUMBER: _ClassVar[int]
    CAMPAIGN_ID_FIELD_NUMBER: _ClassVar[int]
    CODE_FIELD_NUMBER: _ClassVar[int]
    ORDER_ID_FIELD_NUMBER: _ClassVar[int]
    DISCOUNT_MINOR_FIELD_NUMBER: _ClassVar[int]
    CURRENCY_FIELD_NUMBER: _ClassVar[int]
    profile_id: str
    campaign_id: str
    code: str
    order_id: str
    discount_minor: int
    currency: str
    def __init__(self, profile_id: _Optional[str] = ..., campaign_id: _Optional[str] = ..., code: _Optional[str] = ..., order_id: _Optional[str] = ..., discount_minor: _Optional[int] = ..., currency: _Optional[str] = ...) -> None: ...

class RewardRedeemed(_message.Message):
    __slots__ = ("profile_id", "program_id", "redemption_id", "reward_id", "quantity", "points", "reward_kind", "coupon_code")
    PROFILE_ID_FIELD_NUMBER: _ClassVar[int]
    PROGRAM_ID_FIELD_NUMBER: _ClassVar[int]
    REDEMPTION_ID_FIELD_NUMBER: _ClassVar[int]
    REWARD_ID_FIELD_NUMBER: _ClassVar[int]
    QUANTITY_FIELD_NUMBER: _ClassVar[int]
    POINTS_FIELD_NUMBER: _ClassVar[int]
    REWARD_KIND_FIELD_NUMBER: _ClassVar[int]
    COUPON_CODE_FIELD_NUMBER: _ClassVar[int]
    profile_id: str
    program_id: str
    redemption_id: str
    reward_id: str
    quantity: int
    points: int
    reward_kind: str
    coupon_code: str
    def __init__(self, profile_id: _Optional[str] = ..., program_id: _Optional[str] = ..., redemption_id: _Optional[str] = ..., reward_id: _Optional[str] = ..., quantity: _Optional[int] = ..., points: _Optional[int] = ..., reward_kind: _Optional[str] = ..., coupon_code: _Optional[str] = ...) -> None: ...
