"""Segments: UpsertSegment (validated rules, then a synchronous backfill), Get/List/Delete,
EstimateSegment (a draft's size, not saved), ListSegmentMembers (keyset pages), CheckMembership."""

from __future__ import annotations

import asyncio

from identity.domain.segments import parse_rules_json
from identity.grpc_api.base import Context, ServicerBase
from identity.repo import segments as segment_repo
from mcloud.identity.v1 import identity_pb2
from mcloud_common.errors import InvalidArgument
from mcloud_common.grpc_server import tenant_id
from mcloud_common.ids import new_id_str, parse_uuid
from mcloud_common.timestamps import to_timestamp

MAX_NAME = 200
MAX_DESCRIPTION = 2000
DEFAULT_PAGE = 100
MAX_PAGE = 1000
MAX_CHECKED = 1000
# UpsertSegment evaluates the new rules before answering when that takes at most this long (then the
# member count it answers is true); a longer backfill carries on in the background worker.
BACKFILL_BUDGET_SECONDS = 2.0


def _segment_id(value: str, field: str = "segment_id") -> str:
    parsed = parse_uuid(value)
    if parsed is None:
        raise InvalidArgument(f"{field} must be a UUID", code="invalid_segment_id")
    return str(parsed)


def _segment_pb(record: segment_repo.SegmentRecord) -> identity_pb2.Segment:
    return identity_pb2.Segment(
        id=record.id, name=record.name, description=record.description, rules_json=record.rules_json,
        member_count=record.member_count, created_at=to_timestamp(record.created_at),
        updated_at=to_timestamp(record.updated_at),
    )


class SegmentsApi(ServicerBase):
    async def UpsertSegment(self, request: identity_pb2.UpsertSegmentRequest, context: Context):
        tenant = tenant_id(context)
        segment = request.segment
        segment_id = _segment_id(segment.id, "segment.id") if segment.id else new_id_str()
        name = segment.name.strip()
        if not name:
            raise InvalidArgument("segment.name is required", code="missing_name")
        if len(name) > MAX_NAME:
            raise InvalidArgument(f"segment.name must be at most {MAX_NAME} characters", code="invalid_name")
        if len(segment.description) > MAX_DESCRIPTION:
            raise InvalidArgument(f"segment.description must be at most {MAX_DESCRIPTION} characters",
                                  code="invalid_description")
        rule = parse_rules_json(segment.rules_json)
        now = self._clock.now()
        async with self._pool.acquire() as conn:
            await segment_repo.save_segment(conn, tenant, segment_id, name=name, description=segment.description,
                                            rule=rule, rules_json=segment.rules_json, now=now)
            try:
                await asyncio.wait_for(self._backfill(tenant, segment_id), BACKFILL_BUDGET_SECONDS)
            except TimeoutError:
                pass  # still stale: the worker's backfill finishes it (chunks done so far are kept)
            record = await segment_repo.get_segment(conn, tenant, segment_id)
        return identity_pb2.UpsertSegmentResponse(segment=_segment_pb(record))

    async def _backfill(self, tenant: str, segment_id: str) -> None:
        async with self._pool.acquire() as conn:  # its own connection: it may be cancelled mid-query
            await segment_repo.evaluate_segment(conn, tenant, segment_id, self._clock.now(), shards=self._shards,
                                                only_if_stale=True)

    async def GetSegment(self, request: identity_pb2.GetSegmentRequest, context: Context):
        tenant = tenant_id(context)
        segment_id = _segment_id(request.segment_id)
        async with self._pool.acquire() as conn:
            record = await segment_repo.get_segment(conn, tenant, segment_id)
        return identity_pb2.GetSegmentResponse(segment=_segment_pb(record))

    async def ListSegments(self, request: identity_pb2.ListSegmentsRequest, context: Context):
        tenant = tenant_id(context)
        async with self._pool.acquire() as conn:
            records = await segment_repo.list_segments(conn, tenant)
        return identity_pb2.ListSegmentsResponse(segments=[_segment_pb(r) for r in records])

    async def DeleteSegment(self, request: identity_pb2.DeleteSegmentRequest, context: Context):
        tenant = tenant_id(context)
        segment_id = _segment_id(request.segment_id)
        async with self._pool.acquire() as conn:
            deleted = await segment_repo.delete_segment(conn, tenant, segment_id)
        return identity_pb2.DeleteSegmentResponse(deleted=deleted)

    async def EstimateSegment(self, request: identity_pb2.EstimateSegmentRequest, context: Context):
        tenant = tenant_id(context)
        rule = parse_rules_json(request.rules_json)
        async with self._pool.acquire() as conn:
            count, total = await segment_repo.estimate(conn, tenant, rule, self._clock.now())
        return identity_pb2.EstimateSegmentResponse(count=count, total=total)

    async def ListSegmentMembers(self, request: identity_pb2.ListSegmentMembersRequest, context: Context):
        tenant = tenant_id(context)
        segment_id = _segment_id(request.segment_id)
        size = request.page_size or DEFAULT_PAGE
        if not 0 < size <= MAX_PAGE:
            raise InvalidArgument(f"page_size must be between 1 and {MAX_PAGE}", code="invalid_page_size")
        after = None
        if request.page_token:
            after = segment_repo.read_page_token(segment_id, request.page_token)
            if after is None:
                raise InvalidArgument("page_token is not one this API returned for this segment",
                                      code="invalid_page_token")
        async with self._pool.acquire() as conn:
            await segment_repo.get_segment(conn, tenant, segment_id)  # NotFound for an unknown segment
            ids = await segment_repo.list_members(conn, tenant, segment_id, after=after, limit=size + 1)
        response = identity_pb2.ListSegmentMembersResponse(profile_ids=ids[:size])
        if len(ids) > size:
            response.next_page_token = segment_repo.page_token(segment_id, ids[size - 1])
        return response

    async def CheckMembership(self, request: identity_pb2.CheckMembershipRequest, context: Context):
        tenant = tenant_id(context)
        if len(request.segment_ids) > MAX_CHECKED:
            raise InvalidArgument(f"at most {MAX_CHECKED} segment_ids per call", code="too_many_segments")
        segment_ids = [_segment_id(s, "segment_ids") for s in request.segment_ids] or None
        async with self._pool.acquire() as conn:
            profile_id = await self.resolve_id(conn, tenant, request.profile_id)
            member_of = await segment_repo.memberships(conn, tenant, profile_id, segment_ids)
        return identity_pb2.CheckMembershipResponse(member_of=member_of)
