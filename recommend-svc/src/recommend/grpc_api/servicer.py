"""The RecommendService over gRPC: catalogue, feedback, serving, intent, training, settings and stats."""

from __future__ import annotations

import asyncio
from datetime import timedelta

import asyncpg
import grpc

from mcloud.recommend.v1 import recommend_pb2 as pb
from mcloud.recommend.v1 import recommend_pb2_grpc
from mcloud_common.clock import Clock
from mcloud_common.errors import InvalidArgument
from mcloud_common.grpc_server import tenant_id
from mcloud_common.ids import parse_uuid
from mcloud_common.timestamps import from_timestamp
from recommend.domain.config import Config
from recommend.repo import items as item_repo
from recommend.repo import settings as settings_repo
from recommend.repo import stats as stats_repo
from recommend.serving import Serving
from recommend.training import Trainer

Context = grpc.aio.ServicerContext


class RecommendServicer(recommend_pb2_grpc.RecommendServiceServicer):
    def __init__(self, *, pool: asyncpg.Pool, clock: Clock, serving: Serving, trainer: Trainer) -> None:
        self._pool = pool
        self._clock = clock
        self._serving = serving
        self._trainer = trainer

    # --- catalogue ------------------------------------------------------------------------------------

    async def UpsertItems(self, request: pb.UpsertItemsRequest, context: Context) -> pb.UpsertItemsResponse:
        tenant = tenant_id(context)
        async with self._pool.acquire() as conn, conn.transaction():
            n = await item_repo.upsert(conn, tenant, request.items, self._clock.now())
        await self._serving.states.reload(tenant)
        return pb.UpsertItemsResponse(upserted=n)

    async def DeleteItems(self, request: pb.DeleteItemsRequest, context: Context) -> pb.DeleteItemsResponse:
        tenant = tenant_id(context)
        async with self._pool.acquire() as conn, conn.transaction():
            n = await item_repo.delete(conn, tenant, list(request.item_ids))
        await self._serving.states.reload(tenant)
        return pb.DeleteItemsResponse(deleted=n)

    async def GetItem(self, request: pb.GetItemRequest, context: Context) -> pb.GetItemResponse:
        return pb.GetItemResponse(item=await item_repo.get(self._pool, tenant_id(context), request.item_id))

    async def ListItems(self, request: pb.ListItemsRequest, context: Context) -> pb.ListItemsResponse:
        items, token = await item_repo.page(self._pool, tenant_id(context), request)
        return pb.ListItemsResponse(items=items, next_page_token=token)

    # --- feedback and serving ---------------------------------------------------------------------------

    async def RecordFeedback(self, request: pb.RecordFeedbackRequest, context: Context) -> pb.RecordFeedbackResponse:
        tenant = tenant_id(context)
        st = await self._serving.states.get(tenant)
        rows = self._serving.rows(tenant, request.feedback, st.config)
        async with self._pool.acquire() as conn, conn.transaction():
            new = await self._serving.record(conn, tenant, rows)
        return pb.RecordFeedbackResponse(accepted=len(new), duplicates=len(rows) - len(new))

    async def Recommend(self, request: pb.RecommendRequest, context: Context) -> pb.RecommendResponse:
        return await self._serving.recommend(tenant_id(context), request)

    async def GetSimilarItems(self, request: pb.GetSimilarItemsRequest, context: Context
                              ) -> pb.GetSimilarItemsResponse:
        return await self._serving.similar(tenant_id(context), request)

    async def GetIntent(self, request: pb.GetIntentRequest, context: Context) -> pb.GetIntentResponse:
        return pb.GetIntentResponse(
            intent=await self._serving.intent(tenant_id(context), request.profile_id, request.anonymous_id))

    # --- training ----------------------------------------------------------------------------------------

    async def RetrainModel(self, request: pb.RetrainModelRequest, context: Context) -> pb.RetrainModelResponse:
        tenant = tenant_id(context)
        if len(request.idempotency_key) > 200:
            raise InvalidArgument("idempotency_key is at most 200 characters", code="invalid_idempotency_key",
                                  field="idempotency_key")
        run, task = await self._trainer.start(tenant, request.idempotency_key)
        if request.wait and task is not None:
            remaining = context.time_remaining()
            try:
                await asyncio.wait_for(asyncio.shield(task), timeout=None if remaining is None else
                                       max(remaining - 0.5, 0.1))
            except TimeoutError:
                pass
            run = await self._trainer.get(tenant, run.id)
        return pb.RetrainModelResponse(run=run)

    async def GetTrainingRun(self, request: pb.GetTrainingRunRequest, context: Context) -> pb.GetTrainingRunResponse:
        tenant = tenant_id(context)
        if request.run_id and parse_uuid(request.run_id) is None:  # empty: the latest run
            raise InvalidArgument("run_id must be a UUID (or empty for the latest run)", code="invalid_run_id",
                                  field="run_id")
        return pb.GetTrainingRunResponse(run=await self._trainer.get(tenant, request.run_id))

    # --- settings and stats ------------------------------------------------------------------------------

    async def GetRecommendSettings(self, request: pb.GetRecommendSettingsRequest, context: Context
                                   ) -> pb.GetRecommendSettingsResponse:
        return pb.GetRecommendSettingsResponse(settings=await settings_repo.get_pb(self._pool, tenant_id(context)))

    async def UpdateRecommendSettings(self, request: pb.UpdateRecommendSettingsRequest, context: Context
                                      ) -> pb.UpdateRecommendSettingsResponse:
        tenant = tenant_id(context)
        config = Config.from_pb(request.settings)
        out = await settings_repo.put(self._pool, tenant, config, self._clock.now())
        await self._serving.states.reload(tenant)
        return pb.UpdateRecommendSettingsResponse(settings=out)

    async def GetRecommendationStats(self, request: pb.GetRecommendationStatsRequest, context: Context
                                     ) -> pb.GetRecommendationStatsResponse:
        tenant = tenant_id(context)
        now = self._clock.now()
        until = from_timestamp(request.until) if request.HasField("until") else now + timedelta(seconds=1)
        since = from_timestamp(request.since) if request.HasField("since") else until - timedelta(days=30)
        if since >= until:
            raise InvalidArgument("since must be before until", code="invalid_period", field="since")
        await self._serving.flush_served()  # what was served a moment ago counts
        return pb.GetRecommendationStatsResponse(stats=await stats_repo.stats(self._pool, tenant, since, until))
