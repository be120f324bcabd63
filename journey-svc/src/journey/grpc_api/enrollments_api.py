"""Enrollments: EnrollProfile (the API entry), GetEnrollment, ListEnrollments, GetJourneyStats."""

from __future__ import annotations

import orjson

from journey.grpc_api.base import Context, ServicerBase
from journey.repo import enrollments as repo
from journey.repo import journeys as journey_repo
from mcloud.journey.v1 import journey_pb2 as pb
from mcloud_common.errors import InvalidArgument
from mcloud_common.grpc_server import tenant_id
from mcloud_common.timestamps import from_timestamp


def _context(text: str) -> dict:
    if not text:
        return {}
    try:
        value = orjson.loads(text)
    except orjson.JSONDecodeError:
        raise InvalidArgument("context_json is not valid JSON", code="invalid_context", field="context_json") from None
    if not isinstance(value, dict):
        raise InvalidArgument("context_json must be a JSON object", code="invalid_context", field="context_json")
    return value


class EnrollmentsApi(ServicerBase):
    async def EnrollProfile(self, request: pb.EnrollProfileRequest, context: Context) -> pb.EnrollProfileResponse:
        tenant = tenant_id(context)
        jid = journey_repo.journey_id(request.journey_id)
        entry = repo.Entry(request.profile_id, request.entry_key, _context(request.context_json),
                           request.idempotency_key, "api")
        async with self._pool.acquire() as conn, conn.transaction():
            journey = await journey_repo.get(conn, tenant, jid)
            version = await journey_repo.version(conn, tenant, jid, journey["published_version"])
            definition = orjson.loads(version["definition"]) if version else {}
            outcome, row = await repo.enroll(conn, tenant, journey, definition, entry, self._clock.now(),
                                             self._shards)
        return pb.EnrollProfileResponse(outcome=outcome, enrollment=repo.message(row) if row else None)

    async def GetEnrollment(self, request: pb.GetEnrollmentRequest, context: Context) -> pb.GetEnrollmentResponse:
        tenant = tenant_id(context)
        async with self._pool.acquire() as conn:
            row = await repo.get(conn, tenant, request.enrollment_id)
            trace = await repo.trace(conn, tenant, row["id"])
        return pb.GetEnrollmentResponse(enrollment=repo.message(row), trace=trace)

    async def ListEnrollments(self, request: pb.ListEnrollmentsRequest, context: Context
                              ) -> pb.ListEnrollmentsResponse:
        tenant = tenant_id(context)
        async with self._pool.acquire() as conn:
            enrollments, token = await repo.page(conn, tenant, request)
        return pb.ListEnrollmentsResponse(enrollments=enrollments, next_page_token=token)

    async def GetJourneyStats(self, request: pb.GetJourneyStatsRequest, context: Context
                              ) -> pb.GetJourneyStatsResponse:
        tenant = tenant_id(context)
        jid = journey_repo.journey_id(request.journey_id)
        start = from_timestamp(request.entered_from) if request.HasField("entered_from") else None
        end = from_timestamp(request.entered_to) if request.HasField("entered_to") else None
        async with self._pool.acquire() as conn:
            journey = await journey_repo.get(conn, tenant, jid)
            return await repo.stats(conn, tenant, journey, request.version, start, end)
