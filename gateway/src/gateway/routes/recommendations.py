"""Recommendations API: what a person should see in a scenario, similar items, feedback that teaches the
models, the person's purchase intent, model training runs, the tenant's settings and online stats.
Reads need `recommend:read`, feedback, settings and retraining `recommend:write` (or `admin`).

A person is a `profile` (profile id or `type:value`, resolved through identity) and/or the storefront's
`anonymous_id`; recommend reads both.
"""

from __future__ import annotations

import uuid
from typing import Annotated

from fastapi import APIRouter, Body, Path, Query, Response, status
from pydantic import AwareDatetime

from gateway.auth import RecommendReader, RecommendWriter
from gateway.errors import ProblemError
from gateway.profiles import resolve_profile_id
from gateway.recommend import (
    feedback_pb,
    feedback_profiles,
    intent_read,
    profile_or_unknown,
    recommend_request,
    recommendations_body,
    recommended_read,
    run_read,
    set_time,
    settings_pb,
    settings_read,
    stat_read,
)
from gateway.resources import IdentityDep, RecommendDep, ResourcesDep
from gateway.routes.catalog import ItemIdPath
from gateway.routes.profile_admin import IdempotencyKey
from gateway.schemas.common import problem_responses
from gateway.schemas.loyalty import Label
from gateway.schemas.recommend import (
    AnonymousId,
    FeedbackBatch,
    FeedbackResult,
    IntentRead,
    ProfileRef,
    RecommendationQuery,
    RecommendationRequest,
    Recommendations,
    RecommendSettingsRead,
    RecommendSettingsWrite,
    RetrainRequest,
    SimilarItems,
    StatsRead,
    TrainingRunRead,
)
from mcloud.recommend.v1 import recommend_pb2 as pb
from mcloud_common.grpc_client import tenant_metadata

router = APIRouter(tags=["recommendations"])
READ_ERRORS = problem_responses(400, 401, 403, 404, 429, 503, 504)
WRITE_ERRORS = problem_responses(400, 401, 403, 404, 422, 429, 503, 504)
SERVE_ERRORS = problem_responses(400, 401, 403, 422, 429, 503, 504)
RETRAIN_WAIT_SECONDS = 60.0  # deadline of a retrain with wait; the run goes on if it is exceeded (504)
RunId = Annotated[uuid.UUID, Path(description="run id (as `POST /v1/recommendations/models/retrain` returned it)")]

_SERVE_DESCRIPTION = (
    "Ranked items for a person in a scenario: `home`, `product_page` (needs `context_item`), `cart` "
    "(`context_items`: the cart), `email`, `store_tablet`. Each item names the `recommender` that produced it "
    "and an `explanation`. Known people get personalised and item-to-item results, cross-category complements "
    "once their intent is locked, activities by interest and due replenishments, never what they just bought; "
    "unknown people (`cold_start`) get popular and trending items. A `profile` identifier nobody has is served "
    "as an unknown person, not refused, so that a storefront always has something to show. Prices in filters "
    "are decimal major units of `currency`. Pass `recommendation_id` back in click feedback."
)


async def _recommend(
    q: RecommendationQuery, principal, recommend: RecommendDep, identity: IdentityDep
) -> Response:
    metadata = tenant_metadata(principal.tenant_id)
    profile_id = await profile_or_unknown(identity, q.profile, metadata)
    result = await recommend.Recommend(recommend_request(q, profile_id), metadata=metadata)
    # the hot path: JSON straight from the reply (the response model documents the same shape)
    return Response(recommendations_body(result), media_type="application/json")


@router.get(
    "/v1/recommendations",
    response_model=Recommendations,
    responses=SERVE_ERRORS,
    summary="Recommendations for a person in a scenario",
    description=_SERVE_DESCRIPTION + " Repeat list parameters: `context_items=a&context_items=b`.",
)
async def recommendations(
    q: Annotated[RecommendationQuery, Query()],
    principal: RecommendReader,
    recommend: RecommendDep,
    identity: IdentityDep,
) -> Recommendations:
    return await _recommend(q, principal, recommend, identity)


@router.post(
    "/v1/recommendations",
    response_model=Recommendations,
    responses=SERVE_ERRORS,
    summary="Recommendations for a person in a scenario (the same fields as a JSON body)",
    description=_SERVE_DESCRIPTION,
)
async def recommendations_post(
    body: RecommendationRequest, principal: RecommendReader, recommend: RecommendDep, identity: IdentityDep
) -> Recommendations:
    return await _recommend(body, principal, recommend, identity)


@router.get(
    "/v1/catalog/items/{item_id}/similar",
    response_model=SimilarItems,
    responses=READ_ERRORS,
    summary="Items similar to one item (\"similar products\"), most similar first; not personalised",
    description="Items that people interact with together, and items with similar categories and tags. 404 when "
    "the item is not in the catalogue.",
)
async def similar_items(
    item_id: ItemIdPath,
    principal: RecommendReader,
    recommend: RecommendDep,
    count: Annotated[int, Query(ge=1, le=100, description="items wanted")] = 10,
    category: Annotated[list[Label], Query(max_length=100, description="only items in any of these categories")] = [],  # noqa: B006
    in_stock: Annotated[bool, Query(description="only items in stock")] = False,
    include_items: Annotated[bool, Query(description="return each item's catalogue entry with it")] = True,
) -> SimilarItems:
    result = await recommend.GetSimilarItems(
        pb.GetSimilarItemsRequest(
            item_id=item_id,
            filters=pb.Filters(categories=category, in_stock_only=in_stock),
            count=count,
            include_items=include_items,
        ),
        metadata=tenant_metadata(principal.tenant_id),
    )
    return SimilarItems(items=[recommended_read(r) for r in result.items])


@router.post(
    "/v1/recommendations/feedback",
    response_model=FeedbackResult,
    responses=WRITE_ERRORS,
    summary="Record interactions (1 to 1,000): views, cart changes, purchases, clicks, dismissals",
    description="Feedback teaches the models at once (what a person just bought is no longer recommended, a "
    "dismissed item is hidden). Each entry names the person by `profile` (id or `type:value`; 404 naming the "
    "entry when nobody has the identifier) and/or `anonymous_id`. A repeated `event_id` is counted once "
    "(`duplicates`), so a batch is safe to retry. A click with the `recommendation_id` counts towards the "
    "click-through rate.",
)
async def record_feedback(
    body: FeedbackBatch, principal: RecommendWriter, recommend: RecommendDep, identity: IdentityDep
) -> FeedbackResult:
    metadata = tenant_metadata(principal.tenant_id)
    profile_ids = await feedback_profiles(identity, body.feedback, metadata)
    result = await recommend.RecordFeedback(
        pb.RecordFeedbackRequest(feedback=[feedback_pb(f, p) for f, p in zip(body.feedback, profile_ids, strict=True)]),
        metadata=metadata,
    )
    return FeedbackResult(accepted=result.accepted, duplicates=result.duplicates)


@router.get(
    "/v1/recommendations/intent",
    response_model=IntentRead,
    responses=READ_ERRORS,
    summary="A person's purchase intent: whether it is locked on an item, and the complements recommended",
    description="Intent locks when the same item is viewed repeatedly and kept in the cart (see the settings); "
    "`locked: false` when there is none. Name the person by `profile` (404 when nobody has a type:value) and/or "
    "`anonymous_id`.",
)
async def get_intent(
    principal: RecommendReader,
    recommend: RecommendDep,
    identity: IdentityDep,
    profile: Annotated[ProfileRef | None, Query(description="profile id (UUID) or type:value")] = None,
    anonymous_id: Annotated[AnonymousId | None, Query(description="the storefront's anonymous id")] = None,
) -> IntentRead:
    if not profile and not anonymous_id:
        raise ProblemError("invalid_request", "Give profile or anonymous_id.", status=400)
    metadata = tenant_metadata(principal.tenant_id)
    profile_id = await resolve_profile_id(identity, profile, metadata) if profile else ""
    result = await recommend.GetIntent(
        pb.GetIntentRequest(profile_id=profile_id, anonymous_id=anonymous_id or ""), metadata=metadata
    )
    return intent_read(result.intent)


# ---- models ---------------------------------------------------------------------------------------


@router.post(
    "/v1/recommendations/models/retrain",
    response_model=TrainingRunRead,
    status_code=status.HTTP_202_ACCEPTED,
    responses={
        **WRITE_ERRORS,
        200: {"model": TrainingRunRead, "description": "With wait: the run has finished"},
    },
    summary="Retrain the models now (202 with the run; 200 when waited for and finished)",
    description="Starts a training run, or joins the one running. Serving never waits for training: the "
    "current models serve until the new ones succeed, and keep serving if the run fails. With `wait`, the "
    f"answer comes when the run has finished (at most {RETRAIN_WAIT_SECONDS:.0f} s, else 504: poll the run). "
    "Send `Idempotency-Key`: a retry returns the same run and starts nothing more.",
)
async def retrain(
    response: Response,
    principal: RecommendWriter,
    recommend: RecommendDep,
    resources: ResourcesDep,
    body: Annotated[RetrainRequest | None, Body()] = None,
    idempotency_key: IdempotencyKey = None,
) -> TrainingRunRead:
    wait = body is not None and body.wait
    timeout = max(RETRAIN_WAIT_SECONDS, resources.settings.grpc_timeout_seconds) if wait else None
    result = await recommend.RetrainModel(
        pb.RetrainModelRequest(wait=wait, idempotency_key=idempotency_key or ""),
        metadata=tenant_metadata(principal.tenant_id),
        timeout=timeout,
    )
    run = run_read(result.run)
    if wait and run.status in ("succeeded", "failed"):
        response.status_code = status.HTTP_200_OK
    return run


@router.get(
    "/v1/recommendations/models/runs/latest",
    response_model=TrainingRunRead,
    responses=READ_ERRORS,
    summary="The latest training run with its offline metrics (404 before the first)",
)
async def latest_run(principal: RecommendReader, recommend: RecommendDep) -> TrainingRunRead:
    result = await recommend.GetTrainingRun(pb.GetTrainingRunRequest(), metadata=tenant_metadata(principal.tenant_id))
    return run_read(result.run)


@router.get(
    "/v1/recommendations/models/runs/{run_id}",
    response_model=TrainingRunRead,
    responses=READ_ERRORS,
    summary="One training run: status, counts, offline metrics (precision@k, ndcg@k, coverage...)",
)
async def get_run(run_id: RunId, principal: RecommendReader, recommend: RecommendDep) -> TrainingRunRead:
    result = await recommend.GetTrainingRun(
        pb.GetTrainingRunRequest(run_id=str(run_id)), metadata=tenant_metadata(principal.tenant_id)
    )
    return run_read(result.run)


# ---- settings and stats ---------------------------------------------------------------------------


@router.get(
    "/v1/recommendations/settings",
    response_model=RecommendSettingsRead,
    responses=READ_ERRORS,
    summary="The tenant's recommendation settings, defaults filled in",
)
async def get_settings(principal: RecommendReader, recommend: RecommendDep) -> RecommendSettingsRead:
    result = await recommend.GetRecommendSettings(
        pb.GetRecommendSettingsRequest(), metadata=tenant_metadata(principal.tenant_id)
    )
    return settings_read(result.settings)


@router.put(
    "/v1/recommendations/settings",
    response_model=RecommendSettingsRead,
    responses=WRITE_ERRORS,
    summary="Replace the tenant's recommendation settings",
    description="Feedback weights per kind, when intent locks and lapses, category complements, how long bought "
    "and dismissed items stay hidden, replenishment lead, trending half-life, conversion attribution window. "
    "The whole set is replaced: a field left out (or 0) takes its default. Answers the effective settings.",
)
async def put_settings(
    body: RecommendSettingsWrite, principal: RecommendWriter, recommend: RecommendDep
) -> RecommendSettingsRead:
    result = await recommend.UpdateRecommendSettings(
        pb.UpdateRecommendSettingsRequest(settings=settings_pb(body)), metadata=tenant_metadata(principal.tenant_id)
    )
    return settings_read(result.settings)


@router.get(
    "/v1/recommendations/stats",
    response_model=StatsRead,
    responses=READ_ERRORS,
    summary="Online figures per scenario and recommender: impressions, clicks, conversions, CTR, CVR",
    description="One row per scenario and recommender, plus each scenario's total (recommender `*`), over "
    "[since, until) (default: the last 30 days).",
)
async def stats(
    principal: RecommendReader,
    recommend: RecommendDep,
    since: Annotated[AwareDatetime | None, Query(description="start (RFC 3339)")] = None,
    until: Annotated[AwareDatetime | None, Query(description="end, exclusive (RFC 3339)")] = None,
) -> StatsRead:
    if since is not None and until is not None and since >= until:
        raise ProblemError("invalid_request", "since must be before until.", status=400)
    request = pb.GetRecommendationStatsRequest()
    set_time(request, "since", since)
    set_time(request, "until", until)
    result = await recommend.GetRecommendationStats(request, metadata=tenant_metadata(principal.tenant_id))
    return StatsRead(stats=[stat_read(s) for s in result.stats])
