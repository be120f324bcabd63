import datetime

from google.protobuf import timestamp_pb2 as _timestamp_pb2
from google.protobuf.internal import containers as _containers
from google.protobuf.internal import enum_type_wrapper as _enum_type_wrapper
from google.protobuf import descriptor as _descriptor
from google.protobuf import message as _message
from collections.abc import Iterable as _Iterable, Mapping as _Mapping
from typing import ClassVar as _ClassVar, Optional as _Optional, Union as _Union

DESCRIPTOR: _descriptor.FileDescriptor

class ExpiryMode(int, metaclass=_enum_type_wrapper.EnumTypeWrapper):
    __slots__ = ()
    EXPIRY_MODE_UNSPECIFIED: _ClassVar[ExpiryMode]
    EXPIRY_MODE_AFTER_DAYS: _ClassVar[ExpiryMode]
    EXPIRY_MODE_END_OF_MONTH: _ClassVar[ExpiryMode]
    EXPIRY_MODE_END_OF_YEAR: _ClassVar[ExpiryMode]
    EXPIRY_MODE_NEVER: _ClassVar[ExpiryMode]

class TierBasis(int, metaclass=_enum_type_wrapper.EnumTypeWrapper):
    __slots__ = ()
    TIER_BASIS_UNSPECIFIED: _ClassVar[TierBasis]
    TIER_BASIS_POINTS: _ClassVar[TierBasis]
    TIER_BASIS_SPEND: _ClassVar[TierBasis]
    TIER_BASIS_ORDERS: _ClassVar[TierBasis]

class DowngradePolicy(int, metaclass=_enum_type_wrapper.EnumTypeWrapper):
    __slots__ = ()
    DOWNGRADE_POLICY_UNSPECIFIED: _ClassVar[DowngradePolicy]
    DOWNGRADE_POLICY_PERIOD_END: _ClassVar[DowngradePolicy]
    DOWNGRADE_POLICY_NEVER: _ClassVar[DowngradePolicy]
    DOWNGRADE_POLICY_IMMEDIATE: _ClassVar[DowngradePolicy]

class MemberStatus(int, metaclass=_enum_type_wrapper.EnumTypeWrapper):
    __slots__ = ()
    MEMBER_STATUS_UNSPECIFIED: _ClassVar[MemberStatus]
    MEMBER_STATUS_ACTIVE: _ClassVar[MemberStatus]
    MEMBER_STATUS_SUSPENDED: _ClassVar[MemberStatus]

class LedgerEntryKind(int, metaclass=_enum_type_wrapper.EnumTypeWrapper):
    __slots__ = ()
    LEDGER_ENTRY_KIND_UNSPECIFIED: _ClassVar[LedgerEntryKind]
    LEDGER_ENTRY_KIND_EARN: _ClassVar[LedgerEntryKind]
    LEDGER_ENTRY_KIND_SPEND: _ClassVar[LedgerEntryKind]
    LEDGER_ENTRY_KIND_REVERSAL: _ClassVar[LedgerEntryKind]
    LEDGER_ENTRY_KIND_EXPIRY: _ClassVar[LedgerEntryKind]
    LEDGER_ENTRY_KIND_ADJUSTMENT: _ClassVar[LedgerEntryKind]
    LEDGER_ENTRY_KIND_MERGE: _ClassVar[LedgerEntryKind]

class DiscountType(int, metaclass=_enum_type_wrapper.EnumTypeWrapper):
    __slots__ = ()
    DISCOUNT_TYPE_UNSPECIFIED: _ClassVar[DiscountType]
    DISCOUNT_TYPE_PERCENT_OFF: _ClassVar[DiscountType]
    DISCOUNT_TYPE_AMOUNT_OFF: _ClassVar[DiscountType]
    DISCOUNT_TYPE_FREE_SHIPPING: _ClassVar[DiscountType]
    DISCOUNT_TYPE_GIFT: _ClassVar[DiscountType]

class CampaignStatus(int, metaclass=_enum_type_wrapper.EnumTypeWrapper):
    __slots__ = ()
    CAMPAIGN_STATUS_UNSPECIFIED: _ClassVar[CampaignStatus]
    CAMPAIGN_STATUS_ACTIVE: _ClassVar[CampaignStatus]
    CAMPAIGN_STATUS_PAUSED: _ClassVar[CampaignStatus]
    CAMPAIGN_STATUS_ENDED: _ClassVar[CampaignStatus]

class CodeSource(int, metaclass=_enum_type_wrapper.EnumTypeWrapper):
    __slots__ = ()
    CODE_SOURCE_UNSPECIFIED: _ClassVar[CodeSource]
    CODE_SOURCE_GENERATED: _ClassVar[CodeSource]
    CODE_SOURCE_POOL: _ClassVar[CodeSource]

class CouponState(int, metaclass=_enum_type_wrapper.EnumTypeWrapper):
    __slots__ = ()
    COUPON_STATE_UNSPECIFIED: _ClassVar[CouponState]
    COUPON_STATE_ISSUED: _ClassVar[CouponState]
    COUPON_STATE_RESERVED: _ClassVar[CouponState]
    COUPON_STATE_REDEEMED: _ClassVar[CouponState]
    COUPON_STATE_EXPIRED: _ClassVar[CouponState]
    COUPON_STATE_REVOKED: _ClassVar[CouponState]

class RewardKind(int, metaclass=_enum_type_wrapper.EnumTypeWrapper):
    __slots__ = ()
    REWARD_KIND_UNSPECIFIED: _ClassVar[RewardKind]
    REWARD_KIND_GIFT: _ClassVar[RewardKind]
    REWARD_KIND_COUPON: _ClassVar[RewardKind]
    REWARD_KIND_DIGITAL: _ClassVar[RewardKind]

class RedemptionStatus(int, metaclass=_enum_type_wrapper.EnumTypeWrapper):
    __slots__ = ()
    REDEMPTION_STATUS_UNSPECIFIED: _ClassVar[RedemptionStatus]
    REDEMPTION_STATUS_PENDING: _ClassVar[RedemptionStatus]
    REDEMPTION_STATUS_FULFILLED: _ClassVar[RedemptionStatus]
    REDEMPTION_STATUS_SHIPPED: _ClassVar[RedemptionStatus]
    REDEMPTION_STATUS_DELIVERED: _ClassVar[RedemptionStatus]
    REDEMPTION_STATUS_CANCELLED: _ClassVar[RedemptionStatus]
EXPIRY_MODE_UNSPECIFIED: ExpiryMode
EXPIRY_MODE_AFTER_DAYS: ExpiryMode
EXPIRY_MODE_END_OF_MONTH: ExpiryMode
EXPIRY_MODE_END_OF_YEAR: ExpiryMode
EXPIRY_MODE_NEVER: ExpiryMode
TIER_BASIS_UNSPECIFIED: TierBasis
TIER_BASIS_POINTS: TierBasis
TIER_BASIS_SPEND: TierBasis
TIER_BASIS_ORDERS: TierBasis
DOWNGRADE_POLICY_UNSPECIFIED: DowngradePolicy
DOWNGRADE_POLICY_PERIOD_END: DowngradePolicy
DOWNGRADE_POLICY_NEVER: DowngradePolicy
DOWNGRADE_POLICY_IMMEDIATE: DowngradePolicy
MEMBER_STATUS_UNSPECIFIED: MemberStatus
MEMBER_STATUS_ACTIVE: MemberStatus
MEMBER_STATUS_SUSPENDED: MemberStatus
LEDGER_ENTRY_KIND_UNSPECIFIED: LedgerEntryKind
LEDGER_ENTRY_KIND_EARN: LedgerEntryKind
LEDGER_ENTRY_KIND_SPEND: LedgerEntryKind
LEDGER_ENTRY_KIND_REVERSAL: LedgerEntryKind
LEDGER_ENTRY_KIND_EXPIRY: LedgerEntryKind
LEDGER_ENTRY_KIND_ADJUSTMENT: LedgerEntryKind
LEDGER_ENTRY_KIND_MERGE: LedgerEntryKind
DISCOUNT_TYPE_UNSPECIFIED: DiscountType
DISCOUNT_TYPE_PERCENT_OFF: DiscountType
DISCOUNT_TYPE_AMOUNT_OFF: DiscountType
DISCOUNT_TYPE_FREE_SHIPPING: DiscountType
DISCOUNT_TYPE_GIFT: DiscountType
CAMPAIGN_STATUS_UNSPECIFIED: CampaignStatus
CAMPAIGN_STATUS_ACTIVE: CampaignStatus
CAMPAIGN_STATUS_PAUSED: CampaignStatus
CAMPAIGN_STATUS_ENDED: CampaignStatus
CODE_SOURCE_UNSPECIFIED: CodeSource
CODE_SOURCE_GENERATED: CodeSource
CODE_SOURCE_POOL: CodeSource
COUPON_STATE_UNSPECIFIED: CouponState
COUPON_STATE_ISSUED: CouponState
COUPON_STATE_RESERVED: CouponState
COUPON_STATE_REDEEMED: CouponState
COUPON_STATE_EXPIRED: CouponState
COUPON_STATE_REVOKED: CouponState
REWARD_KIND_UNSPECIFIED: RewardKind
REWARD_KIND_GIFT: RewardKind
REWARD_KIND_COUPON: RewardKind
REWARD_KIND_DIGITAL: RewardKind
REDEMPTION_STATUS_UNSPECIFIED: RedemptionStatus
REDEMPTION_STATUS_PENDING: RedemptionStatus
REDEMPTION_STATUS_FULFILLED: RedemptionStatus
REDEMPTION_STATUS_SHIPPED: RedemptionStatus
REDEMPTION_STATUS_DELIVERED: RedemptionStatus
REDEMPTION_STATUS_CANCELLED: RedemptionStatus

class Tier(_message.Message):
    __slots__ = ("code", "name", "rank", "threshold_points", "points_multiplier", "benefits", "threshold_spend_minor", "threshold_orders", "discount_percent", "free_shipping")
    CODE_FIELD_NUMBER: _ClassVar[int]
    NAME_FIELD_NUMBER: _ClassVar[int]
    RANK_FIELD_NUMBER: _ClassVar[int]
    THRESHOLD_POINTS_FIELD_NUMBER: _ClassVar[int]
    POINTS_MULTIPLIER_FIELD_NUMBER: _ClassVar[int]
    BENEFITS_FIELD_NUMBER: _ClassVar[int]
    THRESHOLD_SPEND_MINOR_FIELD_NUMBER: _ClassVar[int]
    THRESHOLD_ORDERS_FIELD_NUMBER: _ClassVar[int]
    DISCOUNT_PERCENT_FIELD_NUMBER: _ClassVar[int]
    FREE_SHIPPING_FIELD_NUMBER: _ClassVar[int]
    code: str
    name: str
    rank: int
    threshold_points: int
    points_multiplier: float
    benefits: _containers.RepeatedCompositeFieldContainer[Benefit]
    threshold_spend_minor: int
    threshold_orders: int
    discount_percent: int
    free_shipping: bool
    def __init__(self, code: _Optional[str] = ..., name: _Optional[str] = ..., rank: _Optional[int] = ..., threshold_points: _Optional[int] = ..., points_multiplier: _Optional[float] = ..., benefits: _Optional[_Iterable[_Union[Benefit, _Mapping]]] = ..., threshold_spend_minor: _Optional[int] = ..., threshold_orders: _Optional[int] = ..., discount_percent: _Optional[int] = ..., free_shipping: _Optional[bool] = ...) -> None: ...

class Benefit(_message.Message):
    __slots__ = ("code", "name", "description", "config_json")
    CODE_FIELD_NUMBER: _ClassVar[int]
    NAME_FIELD_NUMBER: _ClassVar[int]
    DESCRIPTION_FIELD_NUMBER: _ClassVar[int]
    CONFIG_JSON_FIELD_NUMBER: _ClassVar[int]
    code: str
    name: str
    description: str
    config_json: str
    def __init__(self, code: _Optional[str] = ..., name: _Optional[str] = ..., description: _Optional[str] = ..., config_json: _Optional[str] = ...) -> None: ...

class EarnRule(_message.Message):
    __slots__ = ("id", "name", "trigger", "points", "points_per_unit", "unit_minor", "categories", "multiplier", "cap_points", "cap_window_days", "valid_from", "valid_until", "enabled", "conditions_json", "category_multipliers", "item_multipliers", "boost", "not_qualifying")
    class CategoryMultipliersEntry(_message.Message):
        __slots__ = ("key", "value")
        KEY_FIELD_NUMBER: _ClassVar[int]
        VALUE_FIELD_NUMBER: _ClassVar[int]
        key: str
        value: float
        def __init__(self, key: _Optional[str] = ..., value: _Optional[float] = ...) -> None: ...
    class ItemMultipliersEntry(_message.Message):
        __slots__ = ("key", "value")
        KEY_FIELD_NUMBER: _ClassVar[int]
        VALUE_FIELD_NUMBER: _ClassVar[int]
        key: str
        value: float
        def __init__(self, key: _Optional[str] = ..., value: _Optional[float] = ...) -> None: ...
    ID_FIELD_NUMBER: _ClassVar[int]
    NAME_FIELD_NUMBER: _ClassVar[int]
    TRIGGER_FIELD_NUMBER: _ClassVar[int]
    POINTS_FIELD_NUMBER: _ClassVar[int]
    POINTS_PER_UNIT_FIELD_NUMBER: _ClassVar[int]
    UNIT_MINOR_FIELD_NUMBER: _ClassVar[int]
    CATEGORIES_FIELD_NUMBER: _ClassVar[int]
    MULTIPLIER_FIELD_NUMBER: _ClassVar[int]
    CAP_POINTS_FIELD_NUMBER: _ClassVar[int]
    CAP_WINDOW_DAYS_FIELD_NUMBER: _ClassVar[int]
    VALID_FROM_FIELD_NUMBER: _ClassVar[int]
    VALID_UNTIL_FIELD_NUMBER: _ClassVar[int]
    ENABLED_FIELD_NUMBER: _ClassVar[int]
    CONDITIONS_JSON_FIELD_NUMBER: _ClassVar[int]
    CATEGORY_MULTIPLIERS_FIELD_NUMBER: _ClassVar[int]
    ITEM_MULTIPLIERS_FIELD_NUMBER: _ClassVar[int]
    BOOST_FIELD_NUMBER: _ClassVar[int]
    NOT_QUALIFYING_FIELD_NUMBER: _ClassVar[int]
    id: str
    name: str
    trigger: str
    points: int
    points_per_unit: int
    unit_minor: int
    categories: _containers.RepeatedScalarFieldContainer[str]
    multiplier: float
    cap_points: int
    cap_window_days: int
    valid_from: _timestamp_pb2.Timestamp
    valid_until: _timestamp_pb2.Timestamp
    enabled: bool
    conditions_json: str
    category_multipliers: _containers.ScalarMap[str, float]
    item_multipliers: _containers.ScalarMap[str, float]
    boost: bool
    not_qualifying: bool
    def __init__(self, id: _Optional[str] = ..., name: _Optional[str] = ..., trigger: _Optional[str] = ..., points: _Optional[int] = ..., points_per_unit: _Optional[int] = ..., unit_minor: _Optional[int] = ..., categories: _Optional[_Iterable[str]] = ..., multiplier: _Optional[float] = ..., cap_points: _Optional[int] = ..., cap_window_days: _Optional[int] = ..., valid_from: _Optional[_Union[datetime.datetime, _timestamp_pb2.Timestamp, _Mapping]] = ..., valid_until: _Optional[_Union[datetime.datetime, _timestamp_pb2.Timestamp, _Mapping]] = ..., enabled: _Optional[bool] = ..., conditions_json: _Optional[str] = ..., category_multipliers: _Optional[_Mapping[str, float]] = ..., item_multipliers: _Optional[_Mapping[str, float]] = ..., boost: _Optional[bool] = ..., not_qualifying: _Optional[bool] = ...) -> None: ...

class Program(_message.Message):
    __slots__ = ("id", "name", "currency", "tiers", "earn_rules", "points_validity_days", "pending_days", "expiry_reminder_days", "tier_window_months", "enabled", "created_at", "updated_at", "expiry_mode", "tier_basis", "downgrade_policy", "auto_enroll", "enroll_on_order", "point_value_minor", "time_zone")
    ID_FIELD_NUMBER: _ClassVar[int]
    NAME_FIELD_NUMBER: _ClassVar[int]
    CURRENCY_FIELD_NUMBER: _ClassVar[int]
    TIERS_FIELD_NUMBER: _ClassVar[int]
    EARN_RULES_FIELD_NUMBER: _ClassVar[int]
    POINTS_VALIDITY_DAYS_FIELD_NUMBER: _ClassVar[int]
    PENDING_DAYS_FIELD_NUMBER: _ClassVar[int]
    EXPIRY_REMINDER_DAYS_FIELD_NUMBER: _ClassVar[int]
    TIER_WINDOW_MONTHS_FIELD_NUMBER: _ClassVar[int]
    ENABLED_FIELD_NUMBER: _ClassVar[int]
    CREATED_AT_FIELD_NUMBER: _ClassVar[int]
    UPDATED_AT_FIELD_NUMBER: _ClassVar[int]
    EXPIRY_MODE_FIELD_NUMBER: _ClassVar[int]
    TIER_BASIS_FIELD_NUMBER: _ClassVar[int]
    DOWNGRADE_POLICY_FIELD_NUMBER: _ClassVar[int]
    AUTO_ENROLL_FIELD_NUMBER: _ClassVar[int]
    ENROLL_ON_ORDER_FIELD_NUMBER: _ClassVar[int]
    POINT_VALUE_MINOR_FIELD_NUMBER: _ClassVar[int]
    TIME_ZONE_FIELD_NUMBER: _ClassVar[int]
    id: str
    name: str
    currency: str
    tiers: _containers.RepeatedCompositeFieldContainer[Tier]
    earn_rules: _containers.RepeatedCompositeFieldContainer[EarnRule]
    points_validity_days: int
    pending_days: int
    expiry_reminder_days: int
    tier_window_months: int
    enabled: bool
    created_at: _timestamp_pb2.Timestamp
    updated_at: _timestamp_pb2.Timestamp
    expiry_mode: ExpiryMode
    tier_basis: TierBasis
    downgrade_policy: DowngradePolicy
    auto_enroll: bool
    enroll_on_order: bool
    point_value_minor: int
    time_zone: str
    def __init__(self, id: _Optional[str] = ..., name: _Optional[str] = ..., currency: _Optional[str] = ..., tiers: _Optional[_Iterable[_Union[Tier, _Mapping]]] = ..., earn_rules: _Optional[_Iterable[_Union[EarnRule, _Mapping]]] = ..., points_validity_days: _Optional[int] = ..., pending_days: _Optional[int] = ..., expiry_reminder_days: _Optional[int] = ..., tier_window_months: _Optional[int] = ..., enabled: _Optional[bool] = ..., created_at: _Optional[_Union[datetime.datetime, _timestamp_pb2.Timestamp, _Mapping]] = ..., updated_at: _Optional[_Union[datetime.datetime, _timestamp_pb2.Timestamp, _Mapping]] = ..., expiry_mode: _Optional[_Union[ExpiryMode, str]] = ..., tier_basis: _Optional[_Union[TierBasis, str]] = ..., downgrade_policy: _Optional[_Union[DowngradePolicy, str]] = ..., auto_enroll: _Optional[bool] = ..., enroll_on_order: _Optional[bool] = ..., point_value_minor: _Optional[int] = ..., time_zone: _Optional[str] = ...) -> None: ...

class UpsertProgramRequest(_message.Message):
    __slots__ = ("program", "idempotency_key")
    PROGRAM_FIELD_NUMBER: _ClassVar[int]
    IDEMPOTENCY_KEY_FIELD_NUMBER: _ClassVar[int]
    program: Program
    idempotency_key: str
    def __init__(self, program: _Optional[_Union[Program, _Mapping]] = ..., idempotency_key: _Optional[str] = ...) -> None: ...

class UpsertProgramResponse(_message.Message):
    __slots__ = ("program",)
    PROGRAM_FIELD_NUMBER: _ClassVar[int]
    program: Program
    def __init__(self, program: _Optional[_Union[Program, _Mapping]] = ...) -> None: ...

class GetProgramRequest(_message.Message):
    __slots__ = ("program_id",)
    PROGRAM_ID_FIELD_NUMBER: _ClassVar[int]
    program_id: str
    def __init__(self, program_id: _Optional[str] = ...) -> None: ...

class GetProgramResponse(_message.Message):
    __slots__ = ("program",)
    PROGRAM_FIELD_NUMBER: _ClassVar[int]
    program: Program
    def __init__(self, program: _Optional[_Union[Program, _Mapping]] = ...) -> None: ...

class Balance(_message.Message):
    __slots__ = ("available", "pending", "lifetime_earned", "lifetime_spent", "lifetime_expired", "qualifying", "next_expiring_points", "next_expiry_at", "debt", "qualifying_spend_minor", "qualifying_orders", "lifetime_reversed")
    AVAILABLE_FIELD_NUMBER: _ClassVar[int]
    PENDING_FIELD_NUMBER: _ClassVar[int]
    LIFETIME_EARNED_FIELD_NUMBER: _ClassVar[int]
    LIFETIME_SPENT_FIELD_NUMBER: _ClassVar[int]
    LIFETIME_EXPIRED_FIELD_NUMBER: _ClassVar[int]
    QUALIFYING_FIELD_NUMBER: _ClassVar[int]
    NEXT_EXPIRING_POINTS_FIELD_NUMBER: _ClassVar[int]
    NEXT_EXPIRY_AT_FIELD_NUMBER: _ClassVar[int]
    DEBT_FIELD_NUMBER: _ClassVar[int]
    QUALIFYING_SPEND_MINOR_FIELD_NUMBER: _ClassVar[int]
    QUALIFYING_ORDERS_FIELD_NUMBER: _ClassVar[int]
    LIFETIME_REVERSED_FIELD_NUMBER: _ClassVar[int]
    available: int
    pending: int
    lifetime_earned: int
    lifetime_spent: int
    lifetime_expired: int
    qualifying: int
    next_expiring_points: int
    next_expiry_at: _timestamp_pb2.Timestamp
    debt: int
    qualifying_spend_minor: int
    qualifying_orders: int
    lifetime_reversed: int
    def __init__(self, available: _Optional[int] = ..., pending: _Optional[int] = ..., lifetime_earned: _Optional[int] = ..., lifetime_spent: _Optional[int] = ..., lifetime_expired: _Optional[int] = ..., qualifying: _Optional[int] = ..., next_expiring_points: _Optional[int] = ..., next_expiry_at: _Optional[_Union[datetime.datetime, _timestamp_pb2.Timestamp, _Mapping]] = ..., debt: _Optional[int] = ..., qualifying_spend_minor: _Optional[int] = ..., qualifying_orders: _Optional[int] = ..., lifetime_reversed: _Optional[int] = ...) -> None: ...

class TierStatus(_message.Message):
    __slots__ = ("tier_code", "tier_name", "rank", "since", "next_tier_code", "next_tier_name", "next_tier_threshold", "points_to_next_tier", "basis", "review_at", "points_multiplier", "discount_percent", "free_shipping")
    TIER_CODE_FIELD_NUMBER: _ClassVar[int]
    TIER_NAME_FIELD_NUMBER: _ClassVar[int]
    RANK_FIELD_NUMBER: _ClassVar[int]
    SINCE_FIELD_NUMBER: _ClassVar[int]
    NEXT_TIER_CODE_FIELD_NUMBER: _ClassVar[int]
    NEXT_TIER_NAME_FIELD_NUMBER: _ClassVar[int]
    NEXT_TIER_THRESHOLD_FIELD_NUMBER: _ClassVar[int]
    POINTS_TO_NEXT_TIER_FIELD_NUMBER: _ClassVar[int]
    BASIS_FIELD_NUMBER: _ClassVar[int]
    REVIEW_AT_FIELD_NUMBER: _ClassVar[int]
    POINTS_MULTIPLIER_FIELD_NUMBER: _ClassVar[int]
    DISCOUNT_PERCENT_FIELD_NUMBER: _ClassVar[int]
    FREE_SHIPPING_FIELD_NUMBER: _ClassVar[int]
    tier_code: str
    tier_name: str
    rank: int
    since: _timestamp_pb2.Timestamp
    next_tier_code: str
    next_tier_name: str
    next_tier_threshold: int
    points_to_next_tier: int
    basis: str
    review_at: _timestamp_pb2.Timestamp
    points_multiplier: float
    discount_percent: int
    free_shipping: bool
    def __init__(self, tier_code: _Optional[str] = ..., tier_name: _Optional[str] = ..., rank: _Optional[int] = ..., since: _Optional[_Union[datetime.datetime, _timestamp_pb2.Timestamp, _Mapping]] = ..., next_tier_code: _Optional[str] = ..., next_tier_name: _Optional[str] = ..., next_tier_threshold: _Optional[int] = ..., points_to_next_tier: _Optional[int] = ..., basis: _Optional[str] = ..., review_at: _Optional[_Union[datetime.datetime, _timestamp_pb2.Timestamp, _Mapping]] = ..., points_multiplier: _Optional[float] = ..., discount_percent: _Optional[int] = ..., free_shipping: _Optional[bool] = ...) -> None: ...

class Member(_message.Message):
    __slots__ = ("profile_id", "program_id", "member_number", "status", "balance", "tier", "benefits", "enrolled_at", "updated_at")
    PROFILE_ID_FIELD_NUMBER: _ClassVar[int]
    PROGRAM_ID_FIELD_NUMBER: _ClassVar[int]
    MEMBER_NUMBER_FIELD_NUMBER: _ClassVar[int]
    STATUS_FIELD_NUMBER: _ClassVar[int]
    BALANCE_FIELD_NUMBER: _ClassVar[int]
    TIER_FIELD_NUMBER: _ClassVar[int]
    BENEFITS_FIELD_NUMBER: _ClassVar[int]
    ENROLLED_AT_FIELD_NUMBER: _ClassVar[int]
    UPDATED_AT_FIELD_NUMBER: _ClassVar[int]
    profile_id: str
    program_id: str
    member_number: str
    status: MemberStatus
    balance: Balance
    tier: TierStatus
    benefits: _containers.RepeatedCompositeFieldContainer[Benefit]
    enrolled_at: _timestamp_pb2.Timestamp
    updated_at: _timestamp_pb2.Timestamp
    def __init__(self, profile_id: _Optional[str] = ..., program_id: _Optional[str] = ..., member_number: _Optional[str] = ..., status: _Optional[_Union[MemberStatus, str]] = ..., balance: _Optional[_Union[Balance, _Mapping]] = ..., tier: _Optional[_Union[TierStatus, _Mapping]] = ..., benefits: _Optional[_Iterable[_Union[Benefit, _Mapping]]] = ..., enrolled_at: _Optional[_Union[datetime.datetime, _timestamp_pb2.Timestamp, _Mapping]] = ..., updated_at: _Optional[_Union[datetime.datetime, _timestamp_pb2.Timestamp, _Mapping]] = ...) -> None: ...

class EnrollMemberRequest(_message.Message):
    __slots__ = ("program_id", "profile_id", "source", "idempotency_key")
    PROGRAM_ID_FIELD_NUMBER: _ClassVar[int]
    PROFILE_ID_FIELD_NUMBER: _ClassVar[int]
    SOURCE_FIELD_NUMBER: _ClassVar[int]
    IDEMPOTENCY_KEY_FIELD_NUMBER: _ClassVar[int]
    program_id: str
    profile_id: str
    source: str
    idempotency_key: str
    def __init__(self, program_id: _Optional[str] = ..., profile_id: _Optional[str] = ..., source: _Optional[str] = ..., idempotency_key: _Optional[str] = ...) -> None: ...

class EnrollMemberResponse(_message.Message):
    __slots__ = ("member", "created")
    MEMBER_FIELD_NUMBER: _ClassVar[int]
    CREATED_FIELD_NUMBER: _ClassVar[int]
    member: Member
    created: bool
    def __init__(self, member: _Optional[_Union[Member, _Mapping]] = ..., created: _Optional[bool] = ...) -> None: ...

class GetMemberRequest(_message.Message):
    __slots__ = ("program_id", "profile_id")
    PROGRAM_ID_FIELD_NUMBER: _ClassVar[int]
    PROFILE_ID_FIELD_NUMBER: _ClassVar[int]
    program_id: str
    profile_id: str
    def __init__(self, program_id: _Optional[str] = ..., profile_id: _Optional[str] = ...) -> None: ...

class GetMemberResponse(_message.Message):
    __slots__ = ("member",)
    MEMBER_FIELD_NUMBER: _ClassVar[int]
    member: Member
    def __init__(self, member: _Optional[_Union[Member, _Mapping]] = ...) -> None: ...

class OrderLine(_message.Message):
    __slots__ = ("item_id", "category", "quantity", "amount_minor")
    ITEM_ID_FIELD_NUMBER: _ClassVar[int]
    CATEGORY_FIELD_NUMBER: _ClassVar[int]
    QUANTITY_FIELD_NUMBER: _ClassVar[int]
    AMOUNT_MINOR_FIELD_NUMBER: _ClassVar[int]
    item_id: str
    category: str
    quantity: int
    amount_minor: int
    def __init__(self, item_id: _Optional[str] = ..., category: _Optional[str] = ..., quantity: _Optional[int] = ..., amount_minor: _Optional[int] = ...) -> None: ...

class Order(_message.Message):
    __slots__ = ("order_id", "total_minor", "currency", "lines", "channel", "store_id", "ordered_at")
    ORDER_ID_FIELD_NUMBER: _ClassVar[int]
    TOTAL_MINOR_FIELD_NUMBER: _ClassVar[int]
    CURRENCY_FIELD_NUMBER: _ClassVar[int]
    LINES_FIELD_NUMBER: _ClassVar[int]
    CHANNEL_FIELD_NUMBER: _ClassVar[int]
    STORE_ID_FIELD_NUMBER: _ClassVar[int]
    ORDERED_AT_FIELD_NUMBER: _ClassVar[int]
    order_id: str
    total_minor: int
    currency: str
    lines: _containers.RepeatedCompositeFieldContainer[OrderLine]
    channel: str
    store_id: str
    ordered_at: _timestamp_pb2.Timestamp
    def __init__(self, order_id: _Optional[str] = ..., total_minor: _Optional[int] = ..., currency: _Optional[str] = ..., lines: _Optional[_Iterable[_Union[OrderLine, _Mapping]]] = ..., channel: _Optional[str] = ..., store_id: _Optional[str] = ..., ordered_at: _Optional[_Union[datetime.datetime, _timestamp_pb2.Timestamp, _Mapping]] = ...) -> None: ...

class LedgerEntry(_message.Message):
    __slots__ = ("id", "program_id", "profile_id", "kind", "points", "balance_after", "reason", "description", "order_id", "rule_id", "reverses_entry_id", "idempotency_key", "created_at", "available_at", "expires_at", "actor", "qualifying_points", "consumed", "debt_points")
    ID_FIELD_NUMBER: _ClassVar[int]
    PROGRAM_ID_FIELD_NUMBER: _ClassVar[int]
    PROFILE_ID_FIELD_NUMBER: _ClassVar[int]
    KIND_FIELD_NUMBER: _ClassVar[int]
    POINTS_FIELD_NUMBER: _ClassVar[int]
    BALANCE_AFTER_FIELD_NUMBER: _ClassVar[int]
    REASON_FIELD_NUMBER: _ClassVar[int]
    DESCRIPTION_FIELD_NUMBER: _ClassVar[int]
    ORDER_ID_FIELD_NUMBER: _ClassVar[int]
    RULE_ID_FIELD_NUMBER: _ClassVar[int]
    REVERSES_ENTRY_ID_FIELD_NUMBER: _ClassVar[int]
    IDEMPOTENCY_KEY_FIELD_NUMBER: _ClassVar[int]
    CREATED_AT_FIELD_NUMBER: _ClassVar[int]
    AVAILABLE_AT_FIELD_NUMBER: _ClassVar[int]
    EXPIRES_AT_FIELD_NUMBER: _ClassVar[int]
    ACTOR_FIELD_NUMBER: _ClassVar[int]
    QUALIFYING_POINTS_FIELD_NUMBER: _ClassVar[int]
    CONSUMED_FIELD_NUMBER: _ClassVar[int]
    DEBT_POINTS_FIELD_NUMBER: _ClassVar[int]
    id: str
    program_id: str
    profile_id: str
    kind: LedgerEntryKind
    points: int
    balance_after: int
    reason: str
    description: str
    order_id: str
    rule_id: str
    reverses_entry_id: str
    idempotency_key: str
    created_at: _timestamp_pb2.Timestamp
    available_at: _timestamp_pb2.Timestamp
    expires_at: _timestamp_pb2.Timestamp
    actor: str
    qualifying_points: int
    consumed: _containers.RepeatedCompositeFieldContainer[LotConsumption]
    debt_points: int
    def __init__(self, id: _Optional[str] = ..., program_id: _Optional[str] = ..., profile_id: _Optional[str] = ..., kind: _Optional[_Union[LedgerEntryKind, str]] = ..., points: _Optional[int] = ..., balance_after: _Optional[int] = ..., reason: _Optional[str] = ..., description: _Optional[str] = ..., order_id: _Optional[str] = ..., rule_id: _Optional[str] = ..., reverses_entry_id: _Optional[str] = ..., idempotency_key: _Optional[str] = ..., created_at: _Optional[_Union[datetime.datetime, _timestamp_pb2.Timestamp, _Mapping]] = ..., available_at: _Optional[_Union[datetime.datetime, _timestamp_pb2.Timestamp, _Mapping]] = ..., expires_at: _Optional[_Union[datetime.datetime, _timestamp_pb2.Timestamp, _Mapping]] = ..., actor: _Optional[str] = ..., qualifying_points: _Optional[int] = ..., consumed: _Optional[_Iterable[_Union[LotConsumption, _Mapping]]] = ..., debt_points: _Optional[int] = ...) -> None: ...

class LotConsumption(_message.Message):
    __slots__ = ("lot_id", "points")
    LOT_ID_FIELD_NUMBER: _ClassVar[int]
    POINTS_FIELD_NUMBER: _ClassVar[int]
    lot_id: str
    points: int
    def __init__(self, lot_id: _Optional[str] = ..., points: _Optional[int] = ...) -> None: ...

class EarnPointsRequest(_message.Message):
    __slots__ = ("program_id", "profile_id", "points", "order", "reason", "description", "available_at", "idempotency_key", "qualifying")
    PROGRAM_ID_FIELD_NUMBER: _ClassVar[int]
    PROFILE_ID_FIELD_NUMBER: _ClassVar[int]
    POINTS_FIELD_NUMBER: _ClassVar[int]
    ORDER_FIELD_NUMBER: _ClassVar[int]
    REASON_FIELD_NUMBER: _ClassVar[int]
    DESCRIPTION_FIELD_NUMBER: _ClassVar[int]
    AVAILABLE_AT_FIELD_NUMBER: _ClassVar[int]
    IDEMPOTENCY_KEY_FIELD_NUMBER: _ClassVar[int]
    QUALIFYING_FIELD_NUMBER: _ClassVar[int]
    program_id: str
    profile_id: str
    points: int
    order: Order
    reason: str
    description: str
    available_at: _timestamp_pb2.Timestamp
    idempotency_key: str
    qualifying: bool
    def __init__(self, program_id: _Optional[str] = ..., profile_id: _Optional[str] = ..., points: _Optional[int] = ..., order: _Optional[_Union[Order, _Mapping]] = ..., reason: _Optional[str] = ..., description: _Optional[str] = ..., available_at: _Optional[_Union[datetime.datetime, _timestamp_pb2.Timestamp, _Mapping]] = ..., idempotency_key: _Optional[str] = ..., qualifying: _Optional[bool] = ...) -> None: ...

class EarnPointsResponse(_message.Message):
    __slots__ = ("entries", "member")
    ENTRIES_FIELD_NUMBER: _ClassVar[int]
    MEMBER_FIELD_NUMBER: _ClassVar[int]
    entries: _containers.RepeatedCompositeFieldContainer[LedgerEntry]
    member: Member
    def __init__(self, entries: _Optional[_Iterable[_Union[LedgerEntry, _Mapping]]] = ..., member: _Optional[_Union[Member, _Mapping]] = ...) -> None: ...

class SpendPointsRequest(_message.Message):
    __slots__ = ("program_id", "profile_id", "points", "reason", "description", "order_id", "idempotency_key")
    PROGRAM_ID_FIELD_NUMBER: _ClassVar[int]
    PROFILE_ID_FIELD_NUMBER: _ClassVar[int]
    POINTS_FIELD_NUMBER: _ClassVar[int]
    REASON_FIELD_NUMBER: _ClassVar[int]
    DESCRIPTION_FIELD_NUMBER: _ClassVar[int]
    ORDER_ID_FIELD_NUMBER: _ClassVar[int]
    IDEMPOTENCY_KEY_FIELD_NUMBER: _ClassVar[int]
    program_id: str
    profile_id: str
    points: int
    reason: str
    description: str
    order_id: str
    idempotency_key: str
    def __init__(self, program_id: _Optional[str] = ..., profile_id: _Optional[str] = ..., points: _Optional[int] = ..., reason: _Optional[str] = ..., description: _Optional[str] = ..., order_id: _Optional[str] = ..., idempotency_key: _Optional[str] = ...) -> None: ...

class SpendPointsResponse(_message.Message):
    __slots__ = ("entry", "member")
    ENTRY_FIELD_NUMBER: _ClassVar[int]
    MEMBER_FIELD_NUMBER: _ClassVar[int]
    entry: LedgerEntry
    member: Member
    def __init__(self, entry: _Optional[_Union[LedgerEntry, _Mapping]] = ..., member: _Optional[_Union[Member, _Mapping]] = ...) -> None: ...

class ReverseOrderRequest(_message.Message):
    __slots__ = ("program_id", "profile_id", "order_id", "refund_minor", "currency", "reason", "idempotency_key")
    PROGRAM_ID_FIELD_NUMBER: _ClassVar[int]
    PROFILE_ID_FIELD_NUMBER: _ClassVar[int]
    ORDER_ID_FIELD_NUMBER: _ClassVar[int]
    REFUND_MINOR_FIELD_NUMBER: _ClassVar[int]
    CURRENCY_FIELD_NUMBER: _ClassVar[int]
    REASON_FIELD_NUMBER: _ClassVar[int]
    IDEMPOTENCY_KEY_FIELD_NUMBER: _ClassVar[int]
    program_id: str
    profile_id: str
    order_id: str
    refund_minor: int
    currency: str
    reason: str
    idempotency_key: str
    def __init__(self, program_id: _Optional[str] = ..., profile_id: _Optional[str] = ..., order_id: _Optional[str] = ..., refund_minor: _Optional[int] = ..., currency: _Optional[str] = ..., reason: _Optional[str] = ..., idempotency_key: _Optional[str] = ...) -> None: ...

class ReverseOrderResponse(_message.Message):
    __slots__ = ("entries", "member")
    ENTRIES_FIELD_NUMBER: _ClassVar[int]
    MEMBER_FIELD_NUMBER: _ClassVar[int]
    entries: _containers.RepeatedCompositeFieldContainer[LedgerEntry]
    member: Member
    def __init__(self, entries: _Optional[_Iterable[_Union[LedgerEntry, _Mapping]]] = ..., member: _Optional[_Union[Member, _Mapping]] = ...) -> None: ...

class GetLedgerRequest(_message.Message):
    __slots__ = ("program_id", "profile_id", "page_size", "page_token")
    PROGRAM_ID_FIELD_NUMBER: _ClassVar[int]
    PROFILE_ID_FIELD_NUMBER: _ClassVar[int]
    PAGE_SIZE_FIELD_NUMBER: _ClassVar[int]
    PAGE_TOKEN_FIELD_NUMBER: _ClassVar[int]
    program_id: str
    profile_id: str
    page_size: int
    page_token: str
    def __init__(self, program_id: _Optional[str] = ..., profile_id: _Optional[str] = ..., page_size: _Optional[int] = ..., page_token: _Optional[str] = ...) -> None: ...

class GetLedgerResponse(_message.Message):
    __slots__ = ("entries", "next_page_token")
    ENTRIES_FIELD_NUMBER: _ClassVar[int]
    NEXT_PAGE_TOKEN_FIELD_NUMBER: _ClassVar[int]
    entries: _containers.RepeatedCompositeFieldContainer[LedgerEntry]
    next_page_token: str
    def __init__(self, entries: _Optional[_Iterable[_Union[LedgerEntry, _Mapping]]] = ..., next_page_token: _Optional[str] = ...) -> None: ...

class CouponCampaign(_message.Message):
    __slots__ = ("id", "name", "description", "discount_type", "percent_off", "amount_off_minor", "currency", "min_order_minor", "categories", "gift_item_id", "valid_from", "valid_until", "validity_days", "max_issued", "per_profile_limit", "remind_days_before_expiry", "code_prefix", "status", "issued_count", "redeemed_count", "created_at", "updated_at", "code_source", "pool_available")
    ID_FIELD_NUMBER: _ClassVar[int]
    NAME_FIELD_NUMBER: _ClassVar[int]
    DESCRIPTION_FIELD_NUMBER: _ClassVar[int]
    DISCOUNT_TYPE_FIELD_NUMBER: _ClassVar[int]
    PERCENT_OFF_FIELD_NUMBER: _ClassVar[int]
    AMOUNT_OFF_MINOR_FIELD_NUMBER: _ClassVar[int]
    CURRENCY_FIELD_NUMBER: _ClassVar[int]
    MIN_ORDER_MINOR_FIELD_NUMBER: _ClassVar[int]
    CATEGORIES_FIELD_NUMBER: _ClassVar[int]
    GIFT_ITEM_ID_FIELD_NUMBER: _ClassVar[int]
    VALID_FROM_FIELD_NUMBER: _ClassVar[int]
    VALID_UNTIL_FIELD_NUMBER: _ClassVar[int]
    VALIDITY_DAYS_FIELD_NUMBER: _ClassVar[int]
    MAX_ISSUED_FIELD_NUMBER: _ClassVar[int]
    PER_PROFILE_LIMIT_FIELD_NUMBER: _ClassVar[int]
    REMIND_DAYS_BEFORE_EXPIRY_FIELD_NUMBER: _ClassVar[int]
    CODE_PREFIX_FIELD_NUMBER: _ClassVar[int]
    STATUS_FIELD_NUMBER: _ClassVar[int]
    ISSUED_COUNT_FIELD_NUMBER: _ClassVar[int]
    REDEEMED_COUNT_FIELD_NUMBER: _ClassVar[int]
    CREATED_AT_FIELD_NUMBER: _ClassVar[int]
    UPDATED_AT_FIELD_NUMBER: _ClassVar[int]
    CODE_SOURCE_FIELD_NUMBER: _ClassVar[int]
    POOL_AVAILABLE_FIELD_NUMBER: _ClassVar[int]
    id: str
    name: str
    description: str
    discount_type: DiscountType
    percent_off: int
    amount_off_minor: int
    currency: str
    min_order_minor: int
    categories: _containers.RepeatedScalarFieldContainer[str]
    gift_item_id: str
    valid_from: _timestamp_pb2.Timestamp
    valid_until: _timestamp_pb2.Timestamp
    validity_days: int
    max_issued: int
    per_profile_limit: int
    remind_days_before_expiry: int
    code_prefix: str
    status: CampaignStatus
    issued_count: int
    redeemed_count: int
    created_at: _timestamp_pb2.Timestamp
    updated_at: _timestamp_pb2.Timestamp
    code_source: CodeSource
    pool_available: int
    def __init__(self, id: _Optional[str] = ..., name: _Optional[str] = ..., description: _Optional[str] = ..., discount_type: _Optional[_Union[DiscountType, str]] = ..., percent_off: _Optional[int] = ..., amount_off_minor: _Optional[int] = ..., currency: _Optional[str] = ..., min_order_minor: _Optional[int] = ..., categories: _Optional[_Iterable[str]] = ..., gift_item_id: _Optional[str] = ..., valid_from: _Optional[_Union[datetime.datetime, _timestamp_pb2.Timestamp, _Mapping]] = ..., valid_until: _Optional[_Union[datetime.datetime, _timestamp_pb2.Timestamp, _Mapping]] = ..., validity_days: _Optional[int] = ..., max_issued: _Optional[int] = ..., per_profile_limit: _Optional[int] = ..., remind_days_before_expiry: _Optional[int] = ..., code_prefix: _Optional[str] = ..., status: _Optional[_Union[CampaignStatus, str]] = ..., issued_count: _Optional[int] = ..., redeemed_count: _Optional[int] = ..., created_at: _Optional[_Union[datetime.datetime, _timestamp_pb2.Timestamp, _Mapping]] = ..., updated_at: _Optional[_Union[datetime.datetime, _timestamp_pb2.Timestamp, _Mapping]] = ..., code_source: _Optional[_Union[CodeSource, str]] = ..., pool_available: _Optional[int] = ...) -> None: ...

class UpsertCouponCampaignRequest(_message.Message):
    __slots__ = ("campaign", "idempotency_key")
    CAMPAIGN_FIELD_NUMBER: _ClassVar[int]
    IDEMPOTENCY_KEY_FIELD_NUMBER: _ClassVar[int]
    campaign: CouponCampaign
    idempotency_key: str
    def __init__(self, campaign: _Optional[_Union[CouponCampaign, _Mapping]] = ..., idempotency_key: _Optional[str] = ...) -> None: ...

class UpsertCouponCampaignResponse(_message.Message):
    __slots__ = ("campaign",)
    CAMPAIGN_FIELD_NUMBER: _ClassVar[int]
    campaign: CouponCampaign
    def __init__(self, campaign: _Optional[_Union[CouponCampaign, _Mapping]] = ...) -> None: ...

class Coupon(_message.Message):
    __slots__ = ("code", "campaign_id", "profile_id", "state", "issued_at", "expires_at", "reserved_order_id", "reserved_until", "redeemed_order_id", "redeemed_at", "source", "revoked_at", "revoke_reason", "revoked_by")
    CODE_FIELD_NUMBER: _ClassVar[int]
    CAMPAIGN_ID_FIELD_NUMBER: _ClassVar[int]
    PROFILE_ID_FIELD_NUMBER: _ClassVar[int]
    STATE_FIELD_NUMBER: _ClassVar[int]
    ISSUED_AT_FIELD_NUMBER: _ClassVar[int]
    EXPIRES_AT_FIELD_NUMBER: _ClassVar[int]
    RESERVED_ORDER_ID_FIELD_NUMBER: _ClassVar[int]
    RESERVED_UNTIL_FIELD_NUMBER: _ClassVar[int]
    REDEEMED_ORDER_ID_FIELD_NUMBER: _ClassVar[int]
    REDEEMED_AT_FIELD_NUMBER: _ClassVar[int]
    SOURCE_FIELD_NUMBER: _ClassVar[int]
    REVOKED_AT_FIELD_NUMBER: _ClassVar[int]
    REVOKE_REASON_FIELD_NUMBER: _ClassVar[int]
    REVOKED_BY_FIELD_NUMBER: _ClassVar[int]
    code: str
    campaign_id: str
    profile_id: str
    state: CouponState
    issued_at: _timestamp_pb2.Timestamp
    expires_at: _timestamp_pb2.Timestamp
    reserved_order_id: str
    reserved_until: _timestamp_pb2.Timestamp
    redeemed_order_id: str
    redeemed_at: _timestamp_pb2.Timestamp
    source: str
    revoked_at: _timestamp_pb2.Timestamp
    revoke_reason: str
    revoked_by: str
    def __init__(self, code: _Optional[str] = ..., campaign_id: _Optional[str] = ..., profile_id: _Optional[str] = ..., state: _Optional[_Union[CouponState, str]] = ..., issued_at: _Optional[_Union[datetime.datetime, _timestamp_pb2.Timestamp, _Mapping]] = ..., expires_at: _Optional[_Union[datetime.datetime, _timestamp_pb2.Timestamp, _Mapping]] = ..., reserved_order_id: _Optional[str] = ..., reserved_until: _Optional[_Union[datetime.datetime, _timestamp_pb2.Timestamp, _Mapping]] = ..., redeemed_order_id: _Optional[str] = ..., redeemed_at: _Optional[_Union[datetime.datetime, _timestamp_pb2.Timestamp, _Mapping]] = ..., source: _Optional[str] = ..., revoked_at: _Optional[_Union[datetime.datetime, _timestamp_pb2.Timestamp, _Mapping]] = ..., revoke_reason: _Optional[str] = ..., revoked_by: _Optional[str] = ...) -> None: ...

class IssueCouponRequest(_message.Message):
    __slots__ = ("campaign_id", "profile_id", "source", "idempotency_key")
    CAMPAIGN_ID_FIELD_NUMBER: _ClassVar[int]
    PROFILE_ID_FIELD_NUMBER: _ClassVar[int]
    SOURCE_FIELD_NUMBER: _ClassVar[int]
    IDEMPOTENCY_KEY_FIELD_NUMBER: _ClassVar[int]
    campaign_id: str
    profile_id: str
    source: str
    idempotency_key: str
    def __init__(self, campaign_id: _Optional[str] = ..., profile_id: _Optional[str] = ..., source: _Optional[str] = ..., idempotency_key: _Optional[str] = ...) -> None: ...

class IssueCouponResponse(_message.Message):
    __slots__ = ("coupon",)
    COUPON_FIELD_NUMBER: _ClassVar[int]
    coupon: Coupon
    def __init__(self, coupon: _Optional[_Union[Coupon, _Mapping]] = ...) -> None: ...

class ValidateCouponRequest(_message.Message):
    __slots__ = ("code", "profile_id", "order")
    CODE_FIELD_NUMBER: _ClassVar[int]
    PROFILE_ID_FIELD_NUMBER: _ClassVar[int]
    ORDER_FIELD_NUMBER: _ClassVar[int]
    code: str
    profile_id: str
    order: Order
    def __init__(self, code: _Optional[str] = ..., profile_id: _Optional[str] = ..., order: _Optional[_Union[Order, _Mapping]] = ...) -> None: ...

class ValidateCouponResponse(_message.Message):
    __slots__ = ("valid", "reason", "discount_minor", "currency", "coupon", "discount_type", "free_shipping", "gift_item_id")
    VALID_FIELD_NUMBER: _ClassVar[int]
    REASON_FIELD_NUMBER: _ClassVar[int]
    DISCOUNT_MINOR_FIELD_NUMBER: _ClassVar[int]
    CURRENCY_FIELD_NUMBER: _ClassVar[int]
    COUPON_FIELD_NUMBER: _ClassVar[int]
    DISCOUNT_TYPE_FIELD_NUMBER: _ClassVar[int]
    FREE_SHIPPING_FIELD_NUMBER: _ClassVar[int]
    GIFT_ITEM_ID_FIELD_NUMBER: _ClassVar[int]
    valid: bool
    reason: str
    discount_minor: int
    currency: str
    coupon: Coupon
    discount_type: DiscountType
    free_shipping: bool
    gift_item_id: str
    def __init__(self, valid: _Optional[bool] = ..., reason: _Optional[str] = ..., discount_minor: _Optional[int] = ..., currency: _Optional[str] = ..., coupon: _Optional[_Union[Coupon, _Mapping]] = ..., discount_type: _Optional[_Union[DiscountType, str]] = ..., free_shipping: _Optional[bool] = ..., gift_item_id: _Optional[str] = ...) -> None: ...

class ReserveCouponRequest(_message.Message):
    __slots__ = ("code", "profile_id", "order_id", "hold_seconds", "idempotency_key")
    CODE_FIELD_NUMBER: _ClassVar[int]
    PROFILE_ID_FIELD_NUMBER: _ClassVar[int]
    ORDER_ID_FIELD_NUMBER: _ClassVar[int]
    HOLD_SECONDS_FIELD_NUMBER: _ClassVar[int]
    IDEMPOTENCY_KEY_FIELD_NUMBER: _ClassVar[int]
    code: str
    profile_id: str
    order_id: str
    hold_seconds: int
    idempotency_key: str
    def __init__(self, code: _Optional[str] = ..., profile_id: _Optional[str] = ..., order_id: _Optional[str] = ..., hold_seconds: _Optional[int] = ..., idempotency_key: _Optional[str] = ...) -> None: ...

class ReserveCouponResponse(_message.Message):
    __slots__ = ("coupon",)
    COUPON_FIELD_NUMBER: _ClassVar[int]
    coupon: Coupon
    def __init__(self, coupon: _Optional[_Union[Coupon, _Mapping]] = ...) -> None: ...

class RedeemCouponRequest(_message.Message):
    __slots__ = ("code", "profile_id", "order_id", "discount_minor", "currency", "idempotency_key", "order")
    CODE_FIELD_NUMBER: _ClassVar[int]
    PROFILE_ID_FIELD_NUMBER: _ClassVar[int]
    ORDER_ID_FIELD_NUMBER: _ClassVar[int]
    DISCOUNT_MINOR_FIELD_NUMBER: _ClassVar[int]
    CURRENCY_FIELD_NUMBER: _ClassVar[int]
    IDEMPOTENCY_KEY_FIELD_NUMBER: _ClassVar[int]
    ORDER_FIELD_NUMBER: _ClassVar[int]
    code: str
    profile_id: str
    order_id: str
    discount_minor: int
    currency: str
    idempotency_key: str
    order: Order
    def __init__(self, code: _Optional[str] = ..., profile_id: _Optional[str] = ..., order_id: _Optional[str] = ..., discount_minor: _Optional[int] = ..., currency: _Optional[str] = ..., idempotency_key: _Optional[str] = ..., order: _Optional[_Union[Order, _Mapping]] = ...) -> None: ...

class RedeemCouponResponse(_message.Message):
    __slots__ = ("coupon", "discount_minor", "currency")
    COUPON_FIELD_NUMBER: _ClassVar[int]
    DISCOUNT_MINOR_FIELD_NUMBER: _ClassVar[int]
    CURRENCY_FIELD_NUMBER: _ClassVar[int]
    coupon: Coupon
    discount_minor: int
    currency: str
    def __init__(self, coupon: _Optional[_Union[Coupon, _Mapping]] = ..., discount_minor: _Optional[int] = ..., currency: _Optional[str] = ...) -> None: ...

class ReleaseCouponRequest(_message.Message):
    __slots__ = ("code", "order_id", "idempotency_key", "profile_id")
    CODE_FIELD_NUMBER: _ClassVar[int]
    ORDER_ID_FIELD_NUMBER: _ClassVar[int]
    IDEMPOTENCY_KEY_FIELD_NUMBER: _ClassVar[int]
    PROFILE_ID_FIELD_NUMBER: _ClassVar[int]
    code: str
    order_id: str
    idempotency_key: str
    profile_id: str
    def __init__(self, code: _Optional[str] = ..., order_id: _Optional[str] = ..., idempotency_key: _Optional[str] = ..., profile_id: _Optional[str] = ...) -> None: ...

class ReleaseCouponResponse(_message.Message):
    __slots__ = ("coupon",)
    COUPON_FIELD_NUMBER: _ClassVar[int]
    coupon: Coupon
    def __init__(self, coupon: _Optional[_Union[Coupon, _Mapping]] = ...) -> None: ...

class RevokeCouponRequest(_message.Message):
    __slots__ = ("code", "reason", "actor", "idempotency_key")
    CODE_FIELD_NUMBER: _ClassVar[int]
    REASON_FIELD_NUMBER: _ClassVar[int]
    ACTOR_FIELD_NUMBER: _ClassVar[int]
    IDEMPOTENCY_KEY_FIELD_NUMBER: _ClassVar[int]
    code: str
    reason: str
    actor: str
    idempotency_key: str
    def __init__(self, code: _Optional[str] = ..., reason: _Optional[str] = ..., actor: _Optional[str] = ..., idempotency_key: _Optional[str] = ...) -> None: ...

class RevokeCouponResponse(_message.Message):
    __slots__ = ("coupon",)
    COUPON_FIELD_NUMBER: _ClassVar[int]
    coupon: Coupon
    def __init__(self, coupon: _Optional[_Union[Coupon, _Mapping]] = ...) -> None: ...

class ListCouponsRequest(_message.Message):
    __slots__ = ("profile_id", "states", "page_size", "page_token")
    PROFILE_ID_FIELD_NUMBER: _ClassVar[int]
    STATES_FIELD_NUMBER: _ClassVar[int]
    PAGE_SIZE_FIELD_NUMBER: _ClassVar[int]
    PAGE_TOKEN_FIELD_NUMBER: _ClassVar[int]
    profile_id: str
    states: _containers.RepeatedScalarFieldContainer[CouponState]
    page_size: int
    page_token: str
    def __init__(self, profile_id: _Optional[str] = ..., states: _Optional[_Iterable[_Union[CouponState, str]]] = ..., page_size: _Optional[int] = ..., page_token: _Optional[str] = ...) -> None: ...

class ListCouponsResponse(_message.Message):
    __slots__ = ("coupons", "next_page_token")
    COUPONS_FIELD_NUMBER: _ClassVar[int]
    NEXT_PAGE_TOKEN_FIELD_NUMBER: _ClassVar[int]
    coupons: _containers.RepeatedCompositeFieldContainer[Coupon]
    next_page_token: str
    def __init__(self, coupons: _Optional[_Iterable[_Union[Coupon, _Mapping]]] = ..., next_page_token: _Optional[str] = ...) -> None: ...

class Reward(_message.Message):
    __slots__ = ("id", "program_id", "name", "description", "image_url", "kind", "points_cost", "stock", "unlimited_stock", "min_tier_code", "coupon_campaign_id", "enabled", "created_at", "updated_at")
    ID_FIELD_NUMBER: _ClassVar[int]
    PROGRAM_ID_FIELD_NUMBER: _ClassVar[int]
    NAME_FIELD_NUMBER: _ClassVar[int]
    DESCRIPTION_FIELD_NUMBER: _ClassVar[int]
    IMAGE_URL_FIELD_NUMBER: _ClassVar[int]
    KIND_FIELD_NUMBER: _ClassVar[int]
    POINTS_COST_FIELD_NUMBER: _ClassVar[int]
    STOCK_FIELD_NUMBER: _ClassVar[int]
    UNLIMITED_STOCK_FIELD_NUMBER: _ClassVar[int]
    MIN_TIER_CODE_FIELD_NUMBER: _ClassVar[int]
    COUPON_CAMPAIGN_ID_FIELD_NUMBER: _ClassVar[int]
    ENABLED_FIELD_NUMBER: _ClassVar[int]
    CREATED_AT_FIELD_NUMBER: _ClassVar[int]
    UPDATED_AT_FIELD_NUMBER: _ClassVar[int]
    id: str
    program_id: str
    name: str
    description: str
    image_url: str
    kind: RewardKind
    points_cost: int
    stock: int
    unlimited_stock: bool
    min_tier_code: str
    coupon_campaign_id: str
    enabled: bool
    created_at: _timestamp_pb2.Timestamp
    updated_at: _timestamp_pb2.Timestamp
    def __init__(self, id: _Optional[str] = ..., program_id: _Optional[str] = ..., name: _Optional[str] = ..., description: _Optional[str] = ..., image_url: _Optional[str] = ..., kind: _Optional[_Union[RewardKind, str]] = ..., points_cost: _Optional[int] = ..., stock: _Optional[int] = ..., unlimited_stock: _Optional[bool] = ..., min_tier_code: _Optional[str] = ..., coupon_campaign_id: _Optional[str] = ..., enabled: _Optional[bool] = ..., created_at: _Optional[_Union[datetime.datetime, _timestamp_pb2.Timestamp, _Mapping]] = ..., updated_at: _Optional[_Union[datetime.datetime, _timestamp_pb2.Timestamp, _Mapping]] = ...) -> None: ...

class UpsertRewardRequest(_message.Message):
    __slots__ = ("reward", "idempotency_key")
    REWARD_FIELD_NUMBER: _ClassVar[int]
    IDEMPOTENCY_KEY_FIELD_NUMBER: _ClassVar[int]
    reward: Reward
    idempotency_key: str
    def __init__(self, reward: _Optional[_Union[Reward, _Mapping]] = ..., idempotency_key: _Optional[str] = ...) -> None: ...

class UpsertRewardResponse(_message.Message):
    __slots__ = ("reward",)
    REWARD_FIELD_NUMBER: _ClassVar[int]
    reward: Reward
    def __init__(self, reward: _Optional[_Union[Reward, _Mapping]] = ...) -> None: ...

class ListRewardsRequest(_message.Message):
    __slots__ = ("program_id", "profile_id", "eligible_only", "page_size", "page_token")
    PROGRAM_ID_FIELD_NUMBER: _ClassVar[int]
    PROFILE_ID_FIELD_NUMBER: _ClassVar[int]
    ELIGIBLE_ONLY_FIELD_NUMBER: _ClassVar[int]
    PAGE_SIZE_FIELD_NUMBER: _ClassVar[int]
    PAGE_TOKEN_FIELD_NUMBER: _ClassVar[int]
    program_id: str
    profile_id: str
    eligible_only: bool
    page_size: int
    page_token: str
    def __init__(self, program_id: _Optional[str] = ..., profile_id: _Optional[str] = ..., eligible_only: _Optional[bool] = ..., page_size: _Optional[int] = ..., page_token: _Optional[str] = ...) -> None: ...

class ListRewardsResponse(_message.Message):
    __slots__ = ("rewards", "next_page_token")
    REWARDS_FIELD_NUMBER: _ClassVar[int]
    NEXT_PAGE_TOKEN_FIELD_NUMBER: _ClassVar[int]
    rewards: _containers.RepeatedCompositeFieldContainer[Reward]
    next_page_token: str
    def __init__(self, rewards: _Optional[_Iterable[_Union[Reward, _Mapping]]] = ..., next_page_token: _Optional[str] = ...) -> None: ...

class RewardRedemption(_message.Message):
    __slots__ = ("id", "program_id", "profile_id", "reward_id", "quantity", "points", "status", "ledger_entry_id", "coupon_code", "shipping_address_json", "tracking_number", "created_at", "updated_at")
    ID_FIELD_NUMBER: _ClassVar[int]
    PROGRAM_ID_FIELD_NUMBER: _ClassVar[int]
    PROFILE_ID_FIELD_NUMBER: _ClassVar[int]
    REWARD_ID_FIELD_NUMBER: _ClassVar[int]
    QUANTITY_FIELD_NUMBER: _ClassVar[int]
    POINTS_FIELD_NUMBER: _ClassVar[int]
    STATUS_FIELD_NUMBER: _ClassVar[int]
    LEDGER_ENTRY_ID_FIELD_NUMBER: _ClassVar[int]
    COUPON_CODE_FIELD_NUMBER: _ClassVar[int]
    SHIPPING_ADDRESS_JSON_FIELD_NUMBER: _ClassVar[int]
    TRACKING_NUMBER_FIELD_NUMBER: _ClassVar[int]
    CREATED_AT_FIELD_NUMBER: _ClassVar[int]
    UPDATED_AT_FIELD_NUMBER: _ClassVar[int]
    id: str
    program_id: str
    profile_id: str
    reward_id: str
    quantity: int
    points: int
    status: RedemptionStatus
    ledger_entry_id: str
    coupon_code: str
    shipping_address_json: str
    tracking_number: str
    created_at: _timestamp_pb2.Timestamp
    updated_at: _timestamp_pb2.Timestamp
    def __init__(self, id: _Optional[str] = ..., program_id: _Optional[str] = ..., profile_id: _Optional[str] = ..., reward_id: _Optional[str] = ..., quantity: _Optional[int] = ..., points: _Optional[int] = ..., status: _Optional[_Union[RedemptionStatus, str]] = ..., ledger_entry_id: _Optional[str] = ..., coupon_code: _Optional[str] = ..., shipping_address_json: _Optional[str] = ..., tracking_number: _Optional[str] = ..., created_at: _Optional[_Union[datetime.datetime, _timestamp_pb2.Timestamp, _Mapping]] = ..., updated_at: _Optional[_Union[datetime.datetime, _timestamp_pb2.Timestamp, _Mapping]] = ...) -> None: ...

class RedeemRewardRequest(_message.Message):
    __slots__ = ("program_id", "profile_id", "reward_id", "quantity", "shipping_address_json", "idempotency_key")
    PROGRAM_ID_FIELD_NUMBER: _ClassVar[int]
    PROFILE_ID_FIELD_NUMBER: _ClassVar[int]
    REWARD_ID_FIELD_NUMBER: _ClassVar[int]
    QUANTITY_FIELD_NUMBER: _ClassVar[int]
    SHIPPING_ADDRESS_JSON_FIELD_NUMBER: _ClassVar[int]
    IDEMPOTENCY_KEY_FIELD_NUMBER: _ClassVar[int]
    program_id: str
    profile_id: str
    reward_id: str
    quantity: int
    shipping_address_json: str
    idempotency_key: str
    def __init__(self, program_id: _Optional[str] = ..., profile_id: _Optional[str] = ..., reward_id: _Optional[str] = ..., quantity: _Optional[int] = ..., shipping_address_json: _Optional[str] = ..., idempotency_key: _Optional[str] = ...) -> None: ...

class RedeemRewardResponse(_message.Message):
    __slots__ = ("redemption", "member")
    REDEMPTION_FIELD_NUMBER: _ClassVar[int]
    MEMBER_FIELD_NUMBER: _ClassVar[int]
    redemption: RewardRedemption
    member: Member
    def __init__(self, redemption: _Optional[_Union[RewardRedemption, _Mapping]] = ..., member: _Optional[_Union[Member, _Mapping]] = ...) -> None: ...

class GetRewardRedemptionRequest(_message.Message):
    __slots__ = ("redemption_id",)
    REDEMPTION_ID_FIELD_NUMBER: _ClassVar[int]
    redemption_id: str
    def __init__(self, redemption_id: _Optional[str] = ...) -> None: ...

class GetRewardRedemptionResponse(_message.Message):
    __slots__ = ("redemption",)
    REDEMPTION_FIELD_NUMBER: _ClassVar[int]
    redemption: RewardRedemption
    def __init__(self, redemption: _Optional[_Union[RewardRedemption, _Mapping]] = ...) -> None: ...

class ListProgramsRequest(_message.Message):
    __slots__ = ()
    def __init__(self) -> None: ...

class ListProgramsResponse(_message.Message):
    __slots__ = ("programs",)
    PROGRAMS_FIELD_NUMBER: _ClassVar[int]
    programs: _containers.RepeatedCompositeFieldContainer[Program]
    def __init__(self, programs: _Optional[_Iterable[_Union[Program, _Mapping]]] = ...) -> None: ...

class AdjustPointsRequest(_message.Message):
    __slots__ = ("program_id", "profile_id", "points", "actor", "reason", "description", "qualifying", "allow_negative", "idempotency_key")
    PROGRAM_ID_FIELD_NUMBER: _ClassVar[int]
    PROFILE_ID_FIELD_NUMBER: _ClassVar[int]
    POINTS_FIELD_NUMBER: _ClassVar[int]
    ACTOR_FIELD_NUMBER: _ClassVar[int]
    REASON_FIELD_NUMBER: _ClassVar[int]
    DESCRIPTION_FIELD_NUMBER: _ClassVar[int]
    QUALIFYING_FIELD_NUMBER: _ClassVar[int]
    ALLOW_NEGATIVE_FIELD_NUMBER: _ClassVar[int]
    IDEMPOTENCY_KEY_FIELD_NUMBER: _ClassVar[int]
    program_id: str
    profile_id: str
    points: int
    actor: str
    reason: str
    description: str
    qualifying: bool
    allow_negative: bool
    idempotency_key: str
    def __init__(self, program_id: _Optional[str] = ..., profile_id: _Optional[str] = ..., points: _Optional[int] = ..., actor: _Optional[str] = ..., reason: _Optional[str] = ..., description: _Optional[str] = ..., qualifying: _Optional[bool] = ..., allow_negative: _Optional[bool] = ..., idempotency_key: _Optional[str] = ...) -> None: ...

class AdjustPointsResponse(_message.Message):
    __slots__ = ("entry", "member")
    ENTRY_FIELD_NUMBER: _ClassVar[int]
    MEMBER_FIELD_NUMBER: _ClassVar[int]
    entry: LedgerEntry
    member: Member
    def __init__(self, entry: _Optional[_Union[LedgerEntry, _Mapping]] = ..., member: _Optional[_Union[Member, _Mapping]] = ...) -> None: ...

class GetProgramReportRequest(_message.Message):
    __slots__ = ("program_id", "to", "period")
    PROGRAM_ID_FIELD_NUMBER: _ClassVar[int]
    FROM_FIELD_NUMBER: _ClassVar[int]
    TO_FIELD_NUMBER: _ClassVar[int]
    PERIOD_FIELD_NUMBER: _ClassVar[int]
    program_id: str
    to: _timestamp_pb2.Timestamp
    period: str
    def __init__(self, program_id: _Optional[str] = ..., to: _Optional[_Union[datetime.datetime, _timestamp_pb2.Timestamp, _Mapping]] = ..., period: _Optional[str] = ..., **kwargs) -> None: ...

class TierCount(_message.Message):
    __slots__ = ("tier_code", "tier_name", "members")
    TIER_CODE_FIELD_NUMBER: _ClassVar[int]
    TIER_NAME_FIELD_NUMBER: _ClassVar[int]
    MEMBERS_FIELD_NUMBER: _ClassVar[int]
    tier_code: str
    tier_name: str
    members: int
    def __init__(self, tier_code: _Optional[str] = ..., tier_name: _Optional[str] = ..., members: _Optional[int] = ...) -> None: ...

class PeriodTotals(_message.Message):
    __slots__ = ("start", "earned", "spent", "expired", "reversed", "adjusted", "members_enrolled", "tier_upgrades", "tier_downgrades", "members_lost")
    START_FIELD_NUMBER: _ClassVar[int]
    EARNED_FIELD_NUMBER: _ClassVar[int]
    SPENT_FIELD_NUMBER: _ClassVar[int]
    EXPIRED_FIELD_NUMBER: _ClassVar[int]
    REVERSED_FIELD_NUMBER: _ClassVar[int]
    ADJUSTED_FIELD_NUMBER: _ClassVar[int]
    MEMBERS_ENROLLED_FIELD_NUMBER: _ClassVar[int]
    TIER_UPGRADES_FIELD_NUMBER: _ClassVar[int]
    TIER_DOWNGRADES_FIELD_NUMBER: _ClassVar[int]
    MEMBERS_LOST_FIELD_NUMBER: _ClassVar[int]
    start: _timestamp_pb2.Timestamp
    earned: int
    spent: int
    expired: int
    reversed: int
    adjusted: int
    members_enrolled: int
    tier_upgrades: int
    tier_downgrades: int
    members_lost: int
    def __init__(self, start: _Optional[_Union[datetime.datetime, _timestamp_pb2.Timestamp, _Mapping]] = ..., earned: _Optional[int] = ..., spent: _Optional[int] = ..., expired: _Optional[int] = ..., reversed: _Optional[int] = ..., adjusted: _Optional[int] = ..., members_enrolled: _Optional[int] = ..., tier_upgrades: _Optional[int] = ..., tier_downgrades: _Optional[int] = ..., members_lost: _Optional[int] = ...) -> None: ...

class GetProgramReportResponse(_message.Message):
    __slots__ = ("program_id", "members", "outstanding_points", "pending_points", "debt_points", "liability_minor", "currency", "tiers", "periods", "as_of")
    PROGRAM_ID_FIELD_NUMBER: _ClassVar[int]
    MEMBERS_FIELD_NUMBER: _ClassVar[int]
    OUTSTANDING_POINTS_FIELD_NUMBER: _ClassVar[int]
    PENDING_POINTS_FIELD_NUMBER: _ClassVar[int]
    DEBT_POINTS_FIELD_NUMBER: _ClassVar[int]
    LIABILITY_MINOR_FIELD_NUMBER: _ClassVar[int]
    CURRENCY_FIELD_NUMBER: _ClassVar[int]
    TIERS_FIELD_NUMBER: _ClassVar[int]
    PERIODS_FIELD_NUMBER: _ClassVar[int]
    AS_OF_FIELD_NUMBER: _ClassVar[int]
    program_id: str
    members: int
    outstanding_points: int
    pending_points: int
    debt_points: int
    liability_minor: int
    currency: str
    tiers: _containers.RepeatedCompositeFieldContainer[TierCount]
    periods: _containers.RepeatedCompositeFieldContainer[PeriodTotals]
    as_of: _timestamp_pb2.Timestamp
    def __init__(self, program_id: _Optional[str] = ..., members: _Optional[int] = ..., outstanding_points: _Optional[int] = ..., pending_points: _Optional[int] = ..., debt_points: _Optional[int] = ..., liability_minor: _Optional[int] = ..., currency: _Optional[str] = ..., tiers: _Optional[_Iterable[_Union[TierCount, _Mapping]]] = ..., periods: _Optional[_Iterable[_Union[PeriodTotals, _Mapping]]] = ..., as_of: _Optional[_Union[datetime.datetime, _timestamp_pb2.Timestamp, _Mapping]] = ...) -> None: ...

class GetCouponCampaignRequest(_message.Message):
    __slots__ = ("campaign_id",)
    CAMPAIGN_ID_FIELD_NUMBER: _ClassVar[int]
    campaign_id: str
    def __init__(self, campaign_id: _Optional[str] = ...) -> None: ...

class GetCouponCampaignResponse(_message.Message):
    __slots__ = ("campaign",)
    CAMPAIGN_FIELD_NUMBER: _ClassVar[int]
    campaign: CouponCampaign
    def __init__(self, campaign: _Optional[_Union[CouponCampaign, _Mapping]] = ...) -> None: ...

class ListCouponCampaignsRequest(_message.Message):
    __slots__ = ("page_size", "page_token")
    PAGE_SIZE_FIELD_NUMBER: _ClassVar[int]
    PAGE_TOKEN_FIELD_NUMBER: _ClassVar[int]
    page_size: int
    page_token: str
    def __init__(self, page_size: _Optional[int] = ..., page_token: _Optional[str] = ...) -> None: ...

class ListCouponCampaignsResponse(_message.Message):
    __slots__ = ("campaigns", "next_page_token")
    CAMPAIGNS_FIELD_NUMBER: _ClassVar[int]
    NEXT_PAGE_TOKEN_FIELD_NUMBER: _ClassVar[int]
    campaigns: _containers.RepeatedCompositeFieldContainer[CouponCampaign]
    next_page_token: str
    def __init__(self, campaigns: _Optional[_Iterable[_Union[CouponCampaign, _Mapping]]] = ..., next_page_token: _Optional[str] = ...) -> None: ...

class AddCouponCodesRequest(_message.Message):
    __slots__ = ("campaign_id", "codes", "idempotency_key")
    CAMPAIGN_ID_FIELD_NUMBER: _ClassVar[int]
    CODES_FIELD_NUMBER: _ClassVar[int]
    IDEMPOTENCY_KEY_FIELD_NUMBER: _ClassVar[int]
    campaign_id: str
    codes: _containers.RepeatedScalarFieldContainer[str]
    idempotency_key: str
    def __init__(self, campaign_id: _Optional[str] = ..., codes: _Optional[_Iterable[str]] = ..., idempotency_key: _Optional[str] = ...) -> None: ...

class AddCouponCodesResponse(_message.Message):
    __slots__ = ("added", "skipped", "pool_available")
    ADDED_FIELD_NUMBER: _ClassVar[int]
    SKIPPED_FIELD_NUMBER: _ClassVar[int]
    POOL_AVAILABLE_FIELD_NUMBER: _ClassVar[int]
    added: int
    skipped: int
    pool_available: int
    def __init__(self, added: _Optional[int] = ..., skipped: _Optional[int] = ..., pool_available: _Optional[int] = ...) -> None: ...

class GetCouponRequest(_message.Message):
    __slots__ = ("code",)
    CODE_FIELD_NUMBER: _ClassVar[int]
    code: str
    def __init__(self, code: _Optional[str] = ...) -> None: ...

class GetCouponResponse(_message.Message):
    __slots__ = ("coupon",)
    COUPON_FIELD_NUMBER: _ClassVar[int]
    coupon: Coupon
    def __init__(self, coupon: _Optional[_Union[Coupon, _Mapping]] = ...) -> None: ...

class UpdateRewardRedemptionRequest(_message.Message):
    __slots__ = ("redemption_id", "status", "tracking_number", "reason", "idempotency_key")
    REDEMPTION_ID_FIELD_NUMBER: _ClassVar[int]
    STATUS_FIELD_NUMBER: _ClassVar[int]
    TRACKING_NUMBER_FIELD_NUMBER: _ClassVar[int]
    REASON_FIELD_NUMBER: _ClassVar[int]
    IDEMPOTENCY_KEY_FIELD_NUMBER: _ClassVar[int]
    redemption_id: str
    status: RedemptionStatus
    tracking_number: str
    reason: str
    idempotency_key: str
    def __init__(self, redemption_id: _Optional[str] = ..., status: _Optional[_Union[RedemptionStatus, str]] = ..., tracking_number: _Optional[str] = ..., reason: _Optional[str] = ..., idempotency_key: _Optional[str] = ...) -> None: ...

class UpdateRewardRedemptionResponse(_message.Message):
    __slots__ = ("redemption",)
    REDEMPTION_FIELD_NUMBER: _ClassVar[int]
    redemption: RewardRedemption
    def __init__(self, redemption: _Optional[_Union[RewardRedemption, _Mapping]] = ...) -> None: ...

class ListRewardRedemptionsRequest(_message.Message):
    __slots__ = ("program_id", "profile_id", "page_size", "page_token")
    PROGRAM_ID_FIELD_NUMBER: _ClassVar[int]
    PROFILE_ID_FIELD_NUMBER: _ClassVar[int]
    PAGE_SIZE_FIELD_NUMBER: _ClassVar[int]
    PAGE_TOKEN_FIELD_NUMBER: _ClassVar[int]
    program_id: str
    profile_id: str
    page_size: int
    page_token: str
    def __init__(self, program_id: _Optional[str] = ..., profile_id: _Optional[str] = ..., page_size: _Optional[int] = ..., page_token: _Optional[str] = ...) -> None: ...

class ListRewardRedemptionsResponse(_message.Message):
    __slots__ = ("redemptions", "next_page_token")
    REDEMPTIONS_FIELD_NUMBER: _ClassVar[int]
    NEXT_PAGE_TOKEN_FIELD_NUMBER: _ClassVar[int]
    redemptions: _containers.RepeatedCompositeFieldContainer[RewardRedemption]
    next_page_token: str
    def __init__(self, redemptions: _Optional[_Iterable[_Union[RewardRedemption, _Mapping]]] = ..., next_page_token: _Optional[str] = ...) -> None: ...
