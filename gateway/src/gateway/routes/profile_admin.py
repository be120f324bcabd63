"""Profile writes and audited identity operations: traits and tags, consent, explicit merge and split,
merge history, segment membership. Path identifiers are profile ids or type:value; the tenant comes
from the key. Merges and splits need `admin` and record the key as the actor."""

from __future__ import annotations

from typing import Annotated

import orjson
from fastapi import APIRouter, Header, Query

from gateway.auth import Admin, ProfilesReader, ProfilesWriter
from gateway.profiles import CONSENT_STATE, CONSENT_STATE_NAME, profile_read, resolve_profile_id, time_field
from gateway.resources import IdentityDep
from gateway.routes.profiles import IdentifierPath
from gateway.schemas.common import problem_responses
from gateway.schemas.profile_admin import (
    ConsentResult,
    ConsentUpdate,
    MergeHistory,
    MergeRead,
    MergeRequest,
    ProfileSegments,
    ProfileUpdate,
    SplitRequest,
    SplitResult,
)
from gateway.schemas.profiles import IdentifierRead, ProfileRead
from gateway.tenancy import Principal
from mcloud.identity.v1 import identity_pb2
from mcloud_common.grpc_client import tenant_metadata
from mcloud_common.timestamps import to_timestamp

router = APIRouter(prefix="/v1/profiles", tags=["profiles"])
_READ_ERRORS = problem_responses(400, 401, 403, 404, 429, 503, 504)
_WRITE_ERRORS = problem_responses(400, 401, 403, 404, 409, 422, 429, 503, 504)
IdempotencyKey = Annotated[
    str | None,
    Header(
        alias="Idempotency-Key",
        max_length=200,
        description="a retry with the same key returns the first result and changes nothing again",
    ),
]


def _actor(principal: Principal) -> str:
    return f"api_key:{principal.key_id}"


@router.patch(
    "/{identifier}",
    response_model=ProfileRead,
    responses=_WRITE_ERRORS,
    summary="Set traits and add or remove tags",
    description="Traits are set with `source` as their provenance: a value from a source ranked higher in "
    "the tenant's trait source priority is kept. Send `Idempotency-Key` to make retries safe.",
)
async def update_profile(
    identifier: IdentifierPath,
    body: ProfileUpdate,
    principal: ProfilesWriter,
    identity: IdentityDep,
    idempotency_key: IdempotencyKey = None,
) -> ProfileRead:
    metadata = tenant_metadata(principal.tenant_id)
    profile_id = await resolve_profile_id(identity, identifier, metadata)
    response = await identity.UpdateProfile(
        identity_pb2.UpdateProfileRequest(
            profile_id=profile_id,
            traits_json=orjson.dumps(body.traits).decode(),
            add_tags=body.add_tags,
            remove_tags=body.remove_tags,
            source=body.source,
            idempotency_key=idempotency_key or "",
        ),
        metadata=metadata,
    )
    return profile_read(response.profile)


@router.put(
    "/{identifier}/consent",
    response_model=ConsentResult,
    responses=_WRITE_ERRORS,
    summary="Record consent for one channel and purpose",
    description="Every change is logged. The latest decision (by `at`) is the one in force, so replaying an "
    "older one changes nothing; `state` in the answer is the state in force.",
)
async def set_consent(
    identifier: IdentifierPath, body: ConsentUpdate, principal: ProfilesWriter, identity: IdentityDep
) -> ConsentResult:
    metadata = tenant_metadata(principal.tenant_id)
    profile_id = await resolve_profile_id(identity, identifier, metadata)
    request = identity_pb2.SetConsentRequest(
        profile_id=profile_id,
        channel=body.channel,
        purpose=body.purpose,
        state=CONSENT_STATE[body.state],
        source=body.source,
    )
    if body.at is not None:
        request.at.CopyFrom(to_timestamp(body.at))
    response = await identity.SetConsent(request, metadata=metadata)
    return ConsentResult(
        profile_id=profile_id,
        channel=body.channel,
        purpose=body.purpose,
        state=CONSENT_STATE_NAME.get(response.state, body.state),
    )


@router.post(
    "/merge",
    response_model=ProfileRead,
    responses=_WRITE_ERRORS,
    summary="Merge two profiles (admin, audited)",
    description="`from` is merged into `into`: identifiers, traits (by source priority) and events move to the "
    "survivor, which is returned. Recorded in the merge history with the API key as actor; undo with split.",
)
async def merge_profiles(
    body: MergeRequest, principal: Admin, identity: IdentityDep, idempotency_key: IdempotencyKey = None
) -> ProfileRead:
    metadata = tenant_metadata(principal.tenant_id)
    from_id = await resolve_profile_id(identity, body.from_, metadata)
    into_id = await resolve_profile_id(identity, body.into, metadata)
    response = await identity.MergeProfiles(
        identity_pb2.MergeProfilesRequest(
            from_profile_id=from_id,
            into_profile_id=into_id,
            reason=body.reason,
            actor=_actor(principal),
            idempotency_key=idempotency_key or "",
        ),
        metadata=metadata,
    )
    return profile_read(response.profile)


@router.post(
    "/{identifier}/split",
    response_model=SplitResult,
    responses=_WRITE_ERRORS,
    summary="Undo a merge, or move identifiers to a new profile (admin, audited)",
)
async def split_profile(
    identifier: IdentifierPath,
    body: SplitRequest,
    principal: Admin,
    identity: IdentityDep,
    idempotency_key: IdempotencyKey = None,
) -> SplitResult:
    metadata = tenant_metadata(principal.tenant_id)
    profile_id = await resolve_profile_id(identity, identifier, metadata)
    response = await identity.SplitProfile(
        identity_pb2.SplitProfileRequest(
            profile_id=profile_id,
            merge_id=body.merge_id or "",
            identifiers=[identity_pb2.Identifier(type=i.type, value=i.value) for i in body.identifiers or ()],
            reason=body.reason,
            actor=_actor(principal),
            idempotency_key=idempotency_key or "",
        ),
        metadata=metadata,
    )
    return SplitResult(original=profile_read(response.original), split=profile_read(response.split))


@router.get(
    "/{identifier}/merges",
    response_model=MergeHistory,
    responses=_READ_ERRORS,
    summary="A profile's merge history (into it and out of it)",
)
async def list_merges(identifier: IdentifierPath, principal: ProfilesReader, identity: IdentityDep) -> MergeHistory:
    metadata = tenant_metadata(principal.tenant_id)
    profile_id = await resolve_profile_id(identity, identifier, metadata)
    response = await identity.ListMerges(identity_pb2.ListMergesRequest(profile_id=profile_id), metadata=metadata)
    return MergeHistory(
        profile_id=profile_id,
        merges=[
            MergeRead(
                id=m.id,
                from_profile_id=m.from_profile_id,
                into_profile_id=m.into_profile_id,
                reason=m.reason,
                actor=m.actor,
                merged_at=time_field(m, "merged_at"),
                undone_at=time_field(m, "undone_at"),
                moved_identifiers=[IdentifierRead(type=i.type, value=i.value) for i in m.moved_identifiers],
            )
            for m in response.merges
        ],
    )


@router.get(
    "/{identifier}/segments",
    response_model=ProfileSegments,
    responses=_READ_ERRORS,
    summary="The segments a profile is in now",
)
async def profile_segments(
    identifier: IdentifierPath,
    principal: ProfilesReader,
    identity: IdentityDep,
    segment_id: Annotated[
        list[str] | None,
        Query(max_length=100, description="only check these segments (repeat the parameter); default: all"),
    ] = None,
) -> ProfileSegments:
    metadata = tenant_metadata(principal.tenant_id)
    profile_id = await resolve_profile_id(identity, identifier, metadata)
    response = await identity.CheckMembership(
        identity_pb2.CheckMembershipRequest(profile_id=profile_id, segment_ids=segment_id or ()),
        metadata=metadata,
    )
    return ProfileSegments(profile_id=profile_id, segment_ids=list(response.member_of))
