"""MergeProfiles, SplitProfile, ListMerges."""

from __future__ import annotations

from identity.domain.normalise import InvalidIdentifier, normalise
from identity.grpc_api.base import Context, ServicerBase
from identity.grpc_api.profile_view import profile_message
from identity.repo import merges as merge_repo
from mcloud.identity.v1 import identity_pb2
from mcloud_common.errors import InvalidArgument
from mcloud_common.grpc_server import tenant_id
from mcloud_common.idempotency import once
from mcloud_common.timestamps import to_timestamp


class MergesApi(ServicerBase):
    async def MergeProfiles(self, request: identity_pb2.MergeProfilesRequest, context: Context):
        tenant = tenant_id(context)
        async with self._pool.acquire() as conn:
            settings = await self.tenant_settings(conn, tenant)
            source = await self.resolve_id(conn, tenant, request.from_profile_id, "from_profile_id")
            target = await self.resolve_id(conn, tenant, request.into_profile_id, "into_profile_id")

            async def run() -> identity_pb2.MergeProfilesResponse:
                survivor = await merge_repo.merge(conn, tenant, source, target, reason=request.reason,
                                                  actor=request.actor, settings=settings, now=self._clock.now(),
                                                  shards=self._shards)
                return identity_pb2.MergeProfilesResponse(profile=await profile_message(conn, tenant, survivor))

            return await once(conn, tenant, "MergeProfiles", request.idempotency_key,
                              identity_pb2.MergeProfilesResponse, run)

    async def SplitProfile(self, request: identity_pb2.SplitProfileRequest, context: Context):
        tenant = tenant_id(context)
        if bool(request.merge_id) == bool(request.identifiers):
            raise InvalidArgument("give either merge_id (undo a merge) or identifiers (move them to a new profile)",
                                  code="invalid_split")
        async with self._pool.acquire() as conn:
            settings = await self.tenant_settings(conn, tenant)
            keys = []
            for ident in request.identifiers:
                try:
                    keys.append((ident.type, normalise(settings, ident.type, ident.value)))
                except InvalidIdentifier as exc:
                    raise InvalidArgument(exc.detail, code=exc.code) from exc
            if not request.merge_id:
                await self.resolve_id(conn, tenant, request.profile_id)

            async def run() -> identity_pb2.SplitProfileResponse:
                if request.merge_id:
                    source, created, _ = await merge_repo.undo_merge(conn, tenant, request.merge_id,
                                                                     actor=request.actor, shards=self._shards)
                else:
                    source, created = await merge_repo.split_identifiers(
                        conn, tenant, request.profile_id, keys, reason=request.reason, actor=request.actor,
                        shards=self._shards)
                return identity_pb2.SplitProfileResponse(original=await profile_message(conn, tenant, source),
                                                         split=await profile_message(conn, tenant, created))

            return await once(conn, tenant, "SplitProfile", request.idempotency_key,
                              identity_pb2.SplitProfileResponse, run)

    async def ListMerges(self, request: identity_pb2.ListMergesRequest, context: Context):
        tenant = tenant_id(context)
        async with self._pool.acquire() as conn:
            profile = await self.resolve_id(conn, tenant, request.profile_id)
            rows = await merge_repo.history(conn, tenant, profile)
        response = identity_pb2.ListMergesResponse()
        for r in rows:
            rec = response.merges.add(id=r.id, from_profile_id=r.from_profile, into_profile_id=r.into_profile,
                                      reason=r.reason, actor=r.actor, merged_at=to_timestamp(r.merged_at),
                                      moved_identifiers=[identity_pb2.Identifier(type=t, value=v) for t, v in r.moved])
            if r.undone_at is not None:
                rec.undone_at.CopyFrom(to_timestamp(r.undone_at))
        return response
