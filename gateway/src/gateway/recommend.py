"""Recommend API <-> recommend proto: request models to messages, messages to read models, decimal
money to minor units and back, and the person behind a `profile` identifier.

Enums travel as lower-case strings ("product_page", "add_to_cart"); unset strings and times become null.
"""

from __future__ import annotations

import asyncio
from collections.abc import Sequence
from datetime import datetime
from decimal import Decimal

import grpc
import orjson

from gateway.errors import ProblemError
from gateway.loyalty import EnumNames, json_text
from gateway.profiles import resolve_profile_id, time_field
from gateway.schemas.recommend import (
    FeedbackIn,
    IntentRead,
    ItemRead,
    ItemWrite,
    RecommendationQuery,
    RecommendedItemRead,
    RecommendSettingsRead,
    RecommendSettingsWrite,
    StatRead,
    TrainingRunRead,
    exponent,
)
from mcloud.identity.v1 import identity_pb2_grpc
from mcloud.recommend.v1 import recommend_pb2 as pb
from mcloud_common.ids import parse_uuid
from mcloud_common.timestamps import set_timestamp

ITEM_KIND = EnumNames(pb.ItemKind, "ITEM_KIND_", unspecified="product")
FEEDBACK_KIND = EnumNames(pb.FeedbackKind, "FEEDBACK_KIND_")
SCENARIO = EnumNames(pb.Scenario, "SCENARIO_")
TRAINING_STATUS = EnumNames(pb.TrainingStatus, "TRAINING_STATUS_")
RESOLVE_CONCURRENCY = 16  # identity lookups in flight for one feedback batch

Metadata = tuple[tuple[str, str], ...]


# ---- money ----------------------------------------------------------------------------------------


def to_minor(amount: Decimal, currency: str) -> int:
    """Decimal major units as integer minor units of `currency` (159.00 EUR -> 15900, 1500 JPY -> 1500).
    The schemas have already refused amounts with more decimals than the currency has."""
    return int(amount.scaleb(exponent(currency)).to_integral_value())


def to_major(minor: int, currency: str) -> float:
    """Integer minor units as a decimal amount for JSON (15900 EUR -> 159.0)."""
    return float(Decimal(minor).scaleb(-exponent(currency)))


# ---- people ---------------------------------------------------------------------------------------


async def profile_or_unknown(
    identity: identity_pb2_grpc.IdentityServiceStub, profile: str | None, metadata: Metadata
) -> str:
    """The profile id for `profile` (UUID as given, type:value through identity); "" when absent or when
    nobody has the identifier, so that the person is served as unknown rather than refused."""
    if not profile:
        return ""
    try:
        return await resolve_profile_id(identity, profile, metadata)
    except grpc.aio.AioRpcError as exc:
        if exc.code() == grpc.StatusCode.NOT_FOUND:
            return ""
        raise


async def feedback_profiles(
    identity: identity_pb2_grpc.IdentityServiceStub, entries: Sequence[FeedbackIn], metadata: Metadata
) -> list[str]:
    """The profile id of each entry ("" for anonymous ones), each distinct identifier looked up once; 404
    naming the first entry whose type:value nobody has."""
    lookups = {e.profile for e in entries if e.profile and parse_uuid(e.profile) is None}
    found: dict[str, str | None] = {}
    gate = asyncio.Semaphore(RESOLVE_CONCURRENCY)

    async def resolve(identifier: str) -> None:
        async with gate:
            try:
                found[identifier] = await resolve_profile_id(identity, identifier, metadata)
            except grpc.aio.AioRpcError as exc:
                if exc.code() != grpc.StatusCode.NOT_FOUND:
                    raise
                found[identifier] = None

    await asyncio.gather(*(resolve(i) for i in sorted(lookups)))
    ids: list[str] = []
    for index, entry in enumerate(entries):
        profile_id = found.get(entry.profile, entry.profile) if entry.profile else ""
        if profile_id is None:
            raise ProblemError(
                "profile_not_found",
                f"feedback[{index}].profile: nobody has this identifier; send anonymous_id alone for people "
                "identity does not know yet.",
                status=404,
                errors=[{"pointer": f"#/feedback/{index}/profile", "detail": "unknown identifier",
                         "code": "profile_not_found"}],
            )
        ids.append(profile_id)
    return ids


# ---- requests -------------------------------------------------------------------------------------


def set_time(message, name: str, value: datetime | None) -> None:
    """Write `value` into timestamp field `name` of `message`, unless it is None."""
    if value is not None:
        set_timestamp(getattr(message, name), value)


def item_pb(item: ItemWrite) -> pb.Item:
    message = pb.Item(
        id=item.id,
        kind=ITEM_KIND.value(item.kind),
        title=item.title,
        categories=item.categories,
        brand=item.brand,
        price_minor=to_minor(item.price, item.currency) if item.price is not None and item.currency else 0,
        currency=item.currency or "",
        in_stock=item.in_stock,
        tags=item.tags,
        image_url=str(item.image_url) if item.image_url else "",
        url=str(item.url) if item.url else "",
        replenish_after_days=item.replenish_after_days,
        attributes_json=json_text(item.attributes),
    )
    set_time(message, "starts_at", item.starts_at)
    set_time(message, "ends_at", item.ends_at)
    return message


def filters_pb(q: RecommendationQuery) -> pb.Filters:
    currency = q.currency or ""
    return pb.Filters(
        categories=q.category,
        exclude_categories=q.exclude_category,
        min_price_minor=to_minor(q.min_price, currency) if q.min_price is not None else 0,
        max_price_minor=to_minor(q.max_price, currency) if q.max_price is not None else 0,
        currency=currency,
        in_stock_only=q.in_stock,
        kinds=[ITEM_KIND.value(k) for k in q.kind],
        exclude_item_ids=q.exclude,
    )


def recommend_request(q: RecommendationQuery, profile_id: str) -> pb.RecommendRequest:
    return pb.RecommendRequest(
        scenario=SCENARIO.value(q.scenario),
        profile_id=profile_id,
        anonymous_id=q.anonymous_id or "",
        context_item_id=q.context_item or "",
        context_item_ids=q.context_items,
        filters=filters_pb(q),
        count=q.count,
        include_items=q.include_items,
    )


def feedback_pb(f: FeedbackIn, profile_id: str) -> pb.Feedback:
    message = pb.Feedback(
        event_id=f.event_id,
        profile_id=profile_id,
        anonymous_id=f.anonymous_id or "",
        item_id=f.item_id,
        kind=FEEDBACK_KIND.value(f.kind),
        weight=f.weight or 0.0,
        recommendation_id=f.recommendation_id or "",
        quantity=f.quantity or 0,
    )
    set_time(message, "occurred_at", f.occurred_at)
    return message


def settings_pb(s: RecommendSettingsWrite) -> pb.RecommendSettings:
    w = s.weights
    return pb.RecommendSettings(
        weights=pb.FeedbackWeights(
            view=w.view,
            add_to_cart=w.add_to_cart,
            remove_from_cart=w.remove_from_cart,
            purchase=w.purchase,
            click=w.click,
            dismiss=w.dismiss,
        ),
        intent_min_views=s.intent_min_views,
        intent_window_hours=s.intent_window_hours,
        intent_cart_minutes=s.intent_cart_minutes,
        intent_ttl_hours=s.intent_ttl_hours,
        complements=[pb.CategoryComplements(category=c, complements=cs) for c, cs in s.complements.items()],
        exclude_purchased_days=s.exclude_purchased_days,
        replenish_lead_days=s.replenish_lead_days,
        trending_half_life_hours=s.trending_half_life_hours,
        dismiss_days=s.dismiss_days,
        attribution_days=s.attribution_days,
    )


# ---- responses ------------------------------------------------------------------------------------


def _or_none(value: str) -> str | None:
    return value or None


def _attributes(text: str) -> dict:
    if not text:
        return {}
    try:
        value = orjson.loads(text)
    except orjson.JSONDecodeError:
        return {}
    return value if isinstance(value, dict) else {}


def item_read(i: pb.Item) -> ItemRead:
    return ItemRead(
        id=i.id,
        kind=ITEM_KIND.name(i.kind),
        title=i.title,
        categories=list(i.categories),
        brand=_or_none(i.brand),
        price=to_major(i.price_minor, i.currency) if i.currency else None,
        currency=_or_none(i.currency),
        in_stock=i.in_stock,
        tags=list(i.tags),
        image_url=_or_none(i.image_url),
        url=_or_none(i.url),
        replenish_after_days=i.replenish_after_days,
        starts_at=time_field(i, "starts_at"),
        ends_at=time_field(i, "ends_at"),
        attributes=_attributes(i.attributes_json),
        updated_at=time_field(i, "updated_at"),
    )


def item_json(i: pb.Item) -> dict:
    """`item_read` as a plain dict (the serving hot path skips model validation; same shape)."""
    return {
        "id": i.id, "kind": ITEM_KIND.name(i.kind), "title": i.title, "categories": list(i.categories),
        "brand": i.brand or None, "price": to_major(i.price_minor, i.currency) if i.currency else None,
        "currency": i.currency or None, "in_stock": i.in_stock, "tags": list(i.tags),
        "image_url": i.image_url or None, "url": i.url or None, "replenish_after_days": i.replenish_after_days,
        "starts_at": time_field(i, "starts_at"), "ends_at": time_field(i, "ends_at"),
        "attributes": _attributes(i.attributes_json), "updated_at": time_field(i, "updated_at"),
    }


def recommendations_body(result: pb.RecommendResponse) -> bytes:
    """The JSON of a `Recommendations` answer, serialised straight from the reply."""
    return orjson.dumps({
        "recommendation_id": result.recommendation_id,
        "items": [{"item_id": r.item_id, "score": r.score, "recommender": r.recommender, "explanation": r.explanation,
                   "item": item_json(r.item) if r.HasField("item") and r.item.id else None} for r in result.items],
        "intent_locked": result.intent_locked,
        "cold_start": result.cold_start,
    }, option=orjson.OPT_UTC_Z)


def recommended_read(r: pb.RecommendedItem) -> RecommendedItemRead:
    return RecommendedItemRead(
        item_id=r.item_id,
        score=r.score,
        recommender=r.recommender,
        explanation=r.explanation,
        item=item_read(r.item) if r.HasField("item") and r.item.id else None,
    )


def intent_read(i: pb.Intent) -> IntentRead:
    return IntentRead(
        locked=i.locked,
        item_id=_or_none(i.item_id),
        category=_or_none(i.category),
        score=i.score,
        cross_categories=list(i.cross_categories),
        locked_at=time_field(i, "locked_at"),
        expires_at=time_field(i, "expires_at"),
    )


def run_read(r: pb.TrainingRun) -> TrainingRunRead:
    return TrainingRunRead(
        id=r.id,
        status=TRAINING_STATUS.name(r.status),
        started_at=time_field(r, "started_at"),
        finished_at=time_field(r, "finished_at"),
        item_count=r.item_count,
        interaction_count=r.interaction_count,
        metrics={m.name: m.value for m in r.metrics},
        error=_or_none(r.error),
    )


def settings_read(s: pb.RecommendSettings) -> RecommendSettingsRead:
    w = s.weights
    return RecommendSettingsRead(
        weights={
            "view": w.view,
            "add_to_cart": w.add_to_cart,
            "remove_from_cart": w.remove_from_cart,
            "purchase": w.purchase,
            "click": w.click,
            "dismiss": w.dismiss,
        },
        intent_min_views=s.intent_min_views,
        intent_window_hours=s.intent_window_hours,
        intent_cart_minutes=s.intent_cart_minutes,
        intent_ttl_hours=s.intent_ttl_hours,
        complements={c.category: list(c.complements) for c in s.complements},
        exclude_purchased_days=s.exclude_purchased_days,
        replenish_lead_days=s.replenish_lead_days,
        trending_half_life_hours=s.trending_half_life_hours,
        dismiss_days=s.dismiss_days,
        attribution_days=s.attribution_days,
        updated_at=time_field(s, "updated_at"),
    )


def stat_read(s: pb.RecommendationStat) -> StatRead:
    return StatRead(
        scenario=s.scenario,
        recommender=s.recommender,
        impressions=s.impressions,
        clicks=s.clicks,
        conversions=s.conversions,
        click_through_rate=s.click_through_rate,
        conversion_rate=s.conversion_rate,
    )
