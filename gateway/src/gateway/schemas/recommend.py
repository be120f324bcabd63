"""Recommend API shapes: the catalogue (products, activities, content), recommendations and similar
items, feedback, intent, training runs, settings and online stats.

Money is decimal major units (`price`, `min_price`, `max_price`: 159.00 EUR) with an ISO 4217
`currency`; the gateway turns it into the service's integer minor units with the currency's exponent
(EUR 2, JPY 0, KWD 3), so a price with more decimals than its currency has is refused. Enums are
lower-case strings; times are RFC 3339 with an offset."""

from __future__ import annotations

from datetime import datetime
from decimal import Decimal
from typing import Annotated, Any, Literal

from pydantic import (
    AnyHttpUrl,
    AwareDatetime,
    BaseModel,
    BeforeValidator,
    ConfigDict,
    Field,
    StringConstraints,
    ValidationInfo,
    field_validator,
    model_validator,
)

from gateway.schemas.loyalty import CURRENCY_DESCRIPTION, Currency, JsonObject, Label, text

# ---- money ----------------------------------------------------------------------------------------

# ISO 4217 minor-unit exponents that are not 2 (every other currency has two decimals)
CURRENCY_EXPONENTS: dict[str, int] = {
    **dict.fromkeys(
        ("BIF", "CLP", "DJF", "GNF", "ISK", "JPY", "KMF", "KRW", "PYG", "RWF", "UGX", "UYI", "VND", "VUV", "XAF",
         "XOF", "XPF"),
        0,
    ),
    **dict.fromkeys(("BHD", "IQD", "JOD", "KWD", "LYD", "OMR", "TND"), 3),
    **dict.fromkeys(("CLF", "UYW"), 4),
}
DEFAULT_EXPONENT = 2
MAX_PRICE = Decimal(10) ** 12  # with up to 4 decimals, inside int64 minor units and exact as a JSON double


def exponent(currency: str) -> int:
    """Decimals of `currency`'s minor unit (ISO 4217; 2 when not listed)."""
    return CURRENCY_EXPONENTS.get(currency, DEFAULT_EXPONENT)


def _decimals(value: Decimal) -> int:
    exp = value.normalize().as_tuple().exponent
    return -exp if isinstance(exp, int) and exp < 0 else 0


def _check_price(value: Decimal | None, info: ValidationInfo) -> Decimal | None:
    if value is None:
        return None
    currency = info.data.get("currency")
    if not currency:
        raise ValueError("needs a currency")
    if _decimals(value) > exponent(currency):
        raise ValueError(f"has more decimals than {currency} has ({exponent(currency)})")
    return value


Price = Annotated[Decimal, Field(ge=0, le=MAX_PRICE, allow_inf_nan=False)]

# ---- shared field types ---------------------------------------------------------------------------

ItemId = Annotated[text(128, min_length=1), StringConstraints(pattern=r"^\S(?:.*\S)?$")]  # no edge spaces
ItemKind = Literal["product", "activity", "content"]
Scenario = Literal["home", "product_page", "cart", "email", "store_tablet"]
FeedbackKind = Literal["view", "add_to_cart", "remove_from_cart", "purchase", "click", "dismiss"]
TrainingStatus = Literal["queued", "running", "succeeded", "failed", "unspecified"]
ProfileRef = text(512, min_length=1)
AnonymousId = text(200, min_length=1)
PROFILE_DESCRIPTION = (
    "profile id (UUID), or type:value as the storefront knows the person (user_id:42, email:rachel@example.com)"
)


def _as_list(value: Any) -> Any:
    return [value] if isinstance(value, str) else value  # `"category": "running"` as well as a list


Labels = Annotated[list[Label], BeforeValidator(_as_list), Field(max_length=100)]
ItemIds = Annotated[list[ItemId], BeforeValidator(_as_list), Field(max_length=1000)]
Kinds = Annotated[list[ItemKind], BeforeValidator(_as_list), Field(max_length=3)]


# ---- catalogue ------------------------------------------------------------------------------------

ITEM_EXAMPLE = {
    "id": "pegasus-40",
    "kind": "product",
    "title": "Nike Pegasus 40",
    "categories": ["sports", "running", "running_shoes"],
    "brand": "Nike",
    "price": 159.00,
    "currency": "EUR",
    "in_stock": True,
    "tags": ["road", "neutral"],
    "image_url": "https://cdn.example.com/pegasus-40.png",
    "url": "https://shop.example.com/p/pegasus-40",
    "attributes": {"colour": "black", "sizes": [40, 41, 42]},
}
ACTIVITY_EXAMPLE = {
    "id": "city-marathon-2026",
    "kind": "activity",
    "title": "City Marathon 2026",
    "categories": ["events", "running"],
    "starts_at": "2026-11-29T07:00:00+08:00",
    "ends_at": "2026-11-29T14:00:00+08:00",
}


class ItemWrite(BaseModel):
    """One catalogue entry; an upsert replaces the whole item with the same id."""

    model_config = ConfigDict(extra="forbid", json_schema_extra={"examples": [ITEM_EXAMPLE, ACTIVITY_EXAMPLE]})

    id: ItemId = Field(description="the shop's SKU or product id (1-128 characters)", examples=["pegasus-40"])
    kind: ItemKind = Field("product", description="product, activity (an event, recommended by interest) or content")
    title: text(500) = ""
    categories: Labels = Field(
        default_factory=list, max_length=10, description="up to 10, most specific last, e.g. [sports, running, "
        "running_shoes]"
    )
    brand: text(200) = ""
    currency: Currency | None = Field(None, description=CURRENCY_DESCRIPTION + "; required with price")
    price: Price | None = Field(
        None, description="decimal major units of `currency` (159.00 EUR), at most the currency's decimals"
    )
    in_stock: bool = Field(True, description="out-of-stock items are left out when a request asks for in_stock")
    tags: Labels = Field(default_factory=list, description="free labels used for content similarity")
    image_url: AnyHttpUrl | None = Field(None, max_length=2000)
    url: AnyHttpUrl | None = Field(None, max_length=2000)
    replenish_after_days: int = Field(
        0, ge=0, le=3650, description="consumables: days after a purchase when it is due again (0: not a consumable)"
    )
    starts_at: AwareDatetime | None = Field(None, description="activities: when it takes place")
    ends_at: AwareDatetime | None = Field(None, description="activities: never recommended after this")
    attributes: JsonObject = Field(default_factory=dict, description="further attributes (size, colour, city...)")

    _price = field_validator("price")(_check_price)

    @model_validator(mode="after")
    def _consistent(self) -> ItemWrite:
        if self.currency is not None and self.price is None:
            raise ValueError("currency is only meaningful with a price")
        if self.starts_at and self.ends_at and self.ends_at <= self.starts_at:
            raise ValueError("ends_at must be after starts_at")
        return self


class ItemRead(BaseModel):
    id: str
    kind: ItemKind
    title: str
    categories: list[str]
    brand: str | None
    price: float | None = Field(description="decimal major units of currency; null when the item has no price")
    currency: str | None
    in_stock: bool
    tags: list[str]
    image_url: str | None
    url: str | None
    replenish_after_days: int
    starts_at: datetime | None
    ends_at: datetime | None
    attributes: dict[str, Any]
    updated_at: datetime | None


class ItemUpsert(BaseModel):
    model_config = ConfigDict(extra="forbid", json_schema_extra={"examples": [{"items": [ITEM_EXAMPLE]}]})

    items: list[ItemWrite] = Field(min_length=1, max_length=1000, description="1 to 1,000 items, each id once")

    @field_validator("items")
    @classmethod
    def _unique(cls, items: list[ItemWrite]) -> list[ItemWrite]:
        seen: set[str] = set()
        for item in items:
            if item.id in seen:
                raise ValueError(f"item {item.id!r} appears twice")
            seen.add(item.id)
        return items


class UpsertResult(BaseModel):
    upserted: int = Field(description="items stored")


class ItemPage(BaseModel):
    items: list[ItemRead] = Field(description="ordered by id")
    next_cursor: str | None = Field(None, description="pass as `cursor` for the next page; null at the end")


class ItemDelete(BaseModel):
    model_config = ConfigDict(extra="forbid", json_schema_extra={"examples": [{"item_ids": ["pegasus-39"]}]})

    item_ids: list[ItemId] = Field(min_length=1, max_length=1000, description="1 to 1,000 item ids")


class DeleteResult(BaseModel):
    deleted: int = Field(description="items that existed and are now gone")


# ---- recommendations ------------------------------------------------------------------------------

Recommender = Field(
    description="what produced it: item_to_item, personalized, popular, trending, cross_category, "
    "interest_activity or replenishment",
    examples=["item_to_item"],
)


class RecommendedItemRead(BaseModel):
    item_id: str
    score: float
    recommender: str = Recommender
    explanation: str = Field(description="why, for people", examples=["Because you viewed Nike Pegasus 40"])
    item: ItemRead | None = Field(None, description="the item itself, with include_items")


class SimilarItems(BaseModel):
    items: list[RecommendedItemRead] = Field(description="most similar first")


class RecommendationQuery(BaseModel):
    """Who the recommendations are for, where they are shown, and which items may appear. Filters that are
    left out do not filter."""

    scenario: Scenario = Field(
        "home", description="where they are shown: picks the strategy mix; product_page needs context_item"
    )
    profile: ProfileRef | None = Field(
        None, description=PROFILE_DESCRIPTION + "; an identifier nobody has is served as an unknown person"
    )
    anonymous_id: AnonymousId | None = Field(None, description="the storefront's anonymous visitor id")
    context_item: ItemId | None = Field(None, description="the product being looked at (product_page)")
    context_items: ItemIds = Field(default_factory=list, description="the cart's items (cart)")
    category: Labels = Field(default_factory=list, description="only items in any of these categories")
    exclude_category: Labels = Field(default_factory=list, description="no items in these categories")
    currency: Currency | None = Field(None, description="of min_price and max_price")
    min_price: Price | None = Field(None, description="decimal major units of currency")
    max_price: Price | None = Field(None, description="decimal major units of currency")
    in_stock: bool = Field(False, description="only items in stock")
    kind: Kinds = Field(default_factory=list, description="only these kinds (default: products and activities)")
    exclude: ItemIds = Field(default_factory=list, description="item ids never to return")
    count: int = Field(10, ge=1, le=100, description="items wanted")
    include_items: bool = Field(True, description="return each item's catalogue entry with it")

    _min = field_validator("min_price")(_check_price)
    _max = field_validator("max_price")(_check_price)

    @model_validator(mode="after")
    def _consistent(self) -> RecommendationQuery:
        if self.scenario == "product_page" and not self.context_item:
            raise ValueError("the product_page scenario needs context_item")
        if self.min_price is not None and self.max_price is not None and self.min_price > self.max_price:
            raise ValueError("min_price must not exceed max_price")
        return self


class RecommendationRequest(RecommendationQuery):
    model_config = ConfigDict(
        extra="forbid",
        json_schema_extra={
            "examples": [
                {"scenario": "home", "profile": "email:rachel@example.com", "count": 8},
                {
                    "scenario": "product_page",
                    "anonymous_id": "anon-7f3a",
                    "context_item": "pegasus-40",
                    "category": ["running"],
                    "max_price": 200,
                    "currency": "EUR",
                    "in_stock": True,
                },
            ]
        },
    )


class Recommendations(BaseModel):
    recommendation_id: str = Field(
        description="pass it back as `recommendation_id` in click feedback (click-through and conversion)"
    )
    items: list[RecommendedItemRead] = Field(description="best first")
    intent_locked: bool = Field(description="the person's intent is locked: cross-category complements lead")
    cold_start: bool = Field(description="nothing is known about the person: popular and trending items only")


# ---- feedback -------------------------------------------------------------------------------------


class FeedbackIn(BaseModel):
    """One interaction of a person with an item."""

    model_config = ConfigDict(extra="forbid")

    event_id: text(200, min_length=1) = Field(description="dedupe key: a repeated event_id is counted once")
    profile: ProfileRef | None = Field(None, description=PROFILE_DESCRIPTION)
    anonymous_id: AnonymousId | None = None
    item_id: ItemId
    kind: FeedbackKind
    weight: float | None = Field(
        None, ge=-1000, le=1000, allow_inf_nan=False,
        description="strength of the signal; null or 0: the tenant's weight for the kind",
    )
    occurred_at: AwareDatetime | None = Field(None, description="default: when the service receives it")
    recommendation_id: text(64) | None = Field(None, description="the recommendation the item was shown in")
    quantity: int | None = Field(None, ge=1, le=1_000_000, description="purchases and cart changes")

    @model_validator(mode="after")
    def _person(self) -> FeedbackIn:
        if not self.profile and not self.anonymous_id:
            raise ValueError("give profile or anonymous_id")
        return self


class FeedbackBatch(BaseModel):
    model_config = ConfigDict(
        extra="forbid",
        json_schema_extra={
            "examples": [
                {
                    "feedback": [
                        {"event_id": "ev-1", "profile": "email:rachel@example.com", "item_id": "pegasus-40",
                         "kind": "view", "occurred_at": "2026-11-11T10:00:00Z"},
                        {"event_id": "ev-2", "anonymous_id": "anon-7f3a", "item_id": "run-socks", "kind": "click",
                         "recommendation_id": "0193a0c2-8f00-7000-8000-000000000042"},
                    ]
                }
            ]
        },
    )

    feedback: list[FeedbackIn] = Field(min_length=1, max_length=1000, description="1 to 1,000 interactions")


class FeedbackResult(BaseModel):
    accepted: int = Field(description="interactions recorded now")
    duplicates: int = Field(description="interactions whose event_id was already recorded")


# ---- intent ---------------------------------------------------------------------------------------


class IntentRead(BaseModel):
    locked: bool
    item_id: str | None = Field(description="the item the intent is locked on")
    category: str | None
    score: float = Field(description="strength in [0, 1]")
    cross_categories: list[str] = Field(description="complementary categories recommended while locked")
    locked_at: datetime | None
    expires_at: datetime | None = Field(description="the lock lapses then without new signals, or on purchase")


# ---- training -------------------------------------------------------------------------------------


class RetrainRequest(BaseModel):
    model_config = ConfigDict(extra="forbid", json_schema_extra={"examples": [{"wait": False}]})

    wait: bool = Field(False, description="answer when the run has finished (bounded by the gateway's deadline)")


class TrainingRunRead(BaseModel):
    id: str
    status: TrainingStatus = Field(description="queued, running, succeeded (now serving) or failed")
    started_at: datetime | None
    finished_at: datetime | None
    item_count: int
    interaction_count: int
    metrics: dict[str, float] = Field(
        description="offline metrics on a held-out split", examples=[{"precision@10": 0.12, "ndcg@10": 0.18}]
    )
    error: str | None


# ---- settings -------------------------------------------------------------------------------------

Weight = Annotated[float, Field(ge=-100, le=100, allow_inf_nan=False)]


class FeedbackWeights(BaseModel):
    """Default weight per feedback kind; 0 means the service default."""

    model_config = ConfigDict(extra="forbid")

    view: Weight = Field(0, description="default 1")
    add_to_cart: Weight = Field(0, description="default 3")
    remove_from_cart: Weight = Field(0, description="default -1")
    purchase: Weight = Field(0, description="default 5")
    click: Weight = Field(0, description="default 2")
    dismiss: Weight = Field(0, description="default -5")


class RecommendSettingsWrite(BaseModel):
    """The tenant's knobs; the whole set is replaced, and a field left out (or 0) takes its default."""

    model_config = ConfigDict(
        extra="forbid",
        json_schema_extra={
            "examples": [
                {
                    "weights": {"purchase": 8},
                    "intent_min_views": 3,
                    "intent_cart_minutes": 10,
                    "complements": {"running_shoes": ["socks", "watches", "energy_gels"]},
                    "exclude_purchased_days": 180,
                }
            ]
        },
    )

    weights: FeedbackWeights = Field(default_factory=FeedbackWeights)
    intent_min_views: int = Field(0, ge=0, le=1000, description="views of one item that lock intent (default 3)")
    intent_window_hours: int = Field(0, ge=0, le=8760, description="within this many hours (default 168)")
    intent_cart_minutes: int = Field(
        0, ge=0, le=525_600, description="while the item has been in the cart this long (default 10)"
    )
    intent_ttl_hours: int = Field(0, ge=0, le=8760, description="a lock lapses after this long without signal (72)")
    complements: dict[Label, Labels] = Field(
        default_factory=dict,
        max_length=1000,
        description="category -> categories recommended next to it once intent is locked; without an entry they "
        "are learned from what people buy together",
    )
    exclude_purchased_days: int = Field(0, ge=0, le=3650, description="bought items stay hidden this long (180)")
    replenish_lead_days: int = Field(0, ge=0, le=365, description="consumables come back this early (default 3)")
    trending_half_life_hours: float = Field(
        0, ge=0, le=8760, allow_inf_nan=False, description="half-life of trending scores (default 24)"
    )
    dismiss_days: int = Field(0, ge=0, le=3650, description="a dismissed item stays hidden this long (default 30)")
    attribution_days: int = Field(
        0, ge=0, le=365, description="a purchase converts a click this many days before it (default 7)"
    )


class RecommendSettingsRead(BaseModel):
    """The effective settings, defaults filled in."""

    weights: dict[FeedbackKind, float]
    intent_min_views: int
    intent_window_hours: int
    intent_cart_minutes: int
    intent_ttl_hours: int
    complements: dict[str, list[str]]
    exclude_purchased_days: int
    replenish_lead_days: int
    trending_half_life_hours: float
    dismiss_days: int
    attribution_days: int
    updated_at: datetime | None


# ---- stats ----------------------------------------------------------------------------------------


class StatRead(BaseModel):
    scenario: str
    recommender: str = Field(description='a recommender, or "*" for the scenario\'s total')
    impressions: int = Field(description="items shown (one per item per response)")
    clicks: int
    conversions: int = Field(description="purchases of a clicked item within the attribution window")
    click_through_rate: float
    conversion_rate: float


class StatsRead(BaseModel):
    stats: list[StatRead]
