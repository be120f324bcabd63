"""Journey definitions: SaveJourneyDraft, ValidateJourney, PublishJourney, Pause/Resume/Archive,
GetJourney, ListJourneys."""

from __future__ import annotations

import orjson

from journey.domain import definition
from journey.grpc_api.base import Context, ServicerBase
from journey.repo import journeys as repo
from mcloud.journey.v1 import journey_pb2 as pb
from mcloud_common.errors import FailedPrecondition, InvalidArgument
from mcloud_common.grpc_server import tenant_id
from mcloud_common.idempotency import once


def issues(found) -> list[pb.ValidationIssue]:
    return [pb.ValidationIssue(code=i.code, message=i.message, step_id=i.step_id or "", path=i.path or "")
            for i in found]


class DefinitionsApi(ServicerBase):
    async def SaveJourneyDraft(self, request: pb.SaveJourneyDraftRequest, context: Context
                               ) -> pb.SaveJourneyDraftResponse:
        tenant = tenant_id(context)

        async def run() -> pb.SaveJourneyDraftResponse:
            async with conn.transaction():
                row = await repo.save_draft(conn, tenant, request, self._clock.now())
                journey = await repo.view(conn, tenant, row)
            return pb.SaveJourneyDraftResponse(journey=journey,
                                               errors=issues(definition.validate(request.definition_json).errors))

        async with self._pool.acquire() as conn:
            return await once(conn, tenant, "SaveJourneyDraft", request.idempotency_key,
                              pb.SaveJourneyDraftResponse, run)

    async def ValidateJourney(self, request: pb.ValidateJourneyRequest, context: Context
                              ) -> pb.ValidateJourneyResponse:
        tenant = tenant_id(context)
        source = request.WhichOneof("source")
        if source is None:
            raise InvalidArgument("journey_id or definition_json is required", code="missing_source",
                                  field="journey_id")
        if source == "journey_id":
            async with self._pool.acquire() as conn:
                text = (await repo.get(conn, tenant, repo.journey_id(request.journey_id)))["draft"]
        else:
            text = request.definition_json
        result = definition.validate(text)
        return pb.ValidateJourneyResponse(valid=not result.errors, errors=issues(result.errors),
                                          warnings=issues(result.warnings))

    async def PublishJourney(self, request: pb.PublishJourneyRequest, context: Context) -> pb.PublishJourneyResponse:
        tenant = tenant_id(context)
        jid = repo.journey_id(request.journey_id)

        async def run() -> pb.PublishJourneyResponse:
            async with conn.transaction():
                row = await repo.get(conn, tenant, jid, lock=True)
                result = definition.validate(row["draft"])
                if result.errors:
                    raise FailedPrecondition(
                        f"the draft has {len(result.errors)} error(s); see ValidateJourney", code="invalid_definition",
                        errors=orjson.dumps([{"code": i.code, "path": i.path, "step_id": i.step_id}
                                             for i in result.errors[:50]]).decode())
                entry = result.definition.entry
                row, number = await repo.publish(conn, tenant, jid, entry_type=entry.type,
                                                 entry_event=getattr(entry, "event", "") or "", now=self._clock.now())
                return pb.PublishJourneyResponse(version=number, journey=await repo.view(conn, tenant, row))

        async with self._pool.acquire() as conn:
            return await once(conn, tenant, "PublishJourney", request.idempotency_key, pb.PublishJourneyResponse, run)

    async def _transition(self, context: Context, journey_id: str, action: str) -> pb.Journey:
        tenant = tenant_id(context)
        jid = repo.journey_id(journey_id)
        async with self._pool.acquire() as conn, conn.transaction():
            row = await repo.transition(conn, tenant, jid, action, self._clock.now())
            return await repo.view(conn, tenant, row)

    async def PauseJourney(self, request: pb.PauseJourneyRequest, context: Context) -> pb.PauseJourneyResponse:
        return pb.PauseJourneyResponse(journey=await self._transition(context, request.journey_id, "pause"))

    async def ResumeJourney(self, request: pb.ResumeJourneyRequest, context: Context) -> pb.ResumeJourneyResponse:
        return pb.ResumeJourneyResponse(journey=await self._transition(context, request.journey_id, "resume"))

    async def ArchiveJourney(self, request: pb.ArchiveJourneyRequest, context: Context) -> pb.ArchiveJourneyResponse:
        return pb.ArchiveJourneyResponse(journey=await self._transition(context, request.journey_id, "archive"))

    async def GetJourney(self, request: pb.GetJourneyRequest, context: Context) -> pb.GetJourneyResponse:
        tenant = tenant_id(context)
        if request.version < 0:
            raise InvalidArgument("version must be >= 0", code="invalid_version", field="version")
        async with self._pool.acquire() as conn:
            row = await repo.get(conn, tenant, repo.journey_id(request.journey_id))
            return pb.GetJourneyResponse(journey=await repo.view(conn, tenant, row, request.version))

    async def ListJourneys(self, request: pb.ListJourneysRequest, context: Context) -> pb.ListJourneysResponse:
        tenant = tenant_id(context)
        statuses = [repo.STATUS_NAMES[s] for s in request.statuses if s in repo.STATUS_NAMES]
        async with self._pool.acquire() as conn:
            journeys, token = await repo.page(conn, tenant, statuses, request.page_size, request.page_token)
        return pb.ListJourneysResponse(journeys=journeys, next_page_token=token)
