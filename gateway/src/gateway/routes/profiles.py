"""Profile API (secret key, scope profiles:read). The tenant always comes from the key, so another
tenant's profile is simply not found."""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Path, Query

from gateway.auth import ProfilesReader
from gateway.profiles import event_read, lookup_request, profile_read
from gateway.resources import IdentityDep
from gateway.schemas.common import problem_responses
from gateway.schemas.profiles import ProfileEventsPage, ProfileRead
from mcloud.identity.v1 import identity_pb2
from mcloud_common.grpc_client import tenant_metadata
from mcloud_common.ids import parse_uuid

router = APIRouter(prefix="/v1/profiles", tags=["profiles"])
_ERRORS = problem_responses(400, 401, 403, 404, 429, 503, 504)
IdentifierPath = Annotated[
    str,
    Path(
        description="profile id (UUID) or type:value, e.g. user_id:42, anonymous_id:abc, "
        "email:rachel@example.com",
        examples=["user_id:42"],
    ),
]


@router.get("/{identifier}", response_model=ProfileRead, responses=_ERRORS, summary="Read a profile")
async def get_profile(
    identifier: IdentifierPath, principal: ProfilesReader, identity: IdentityDep
) -> ProfileRead:
    response = await identity.GetProfile(
        lookup_request(identifier), metadata=tenant_metadata(principal.tenant_id)
    )
    return profile_read(response.profile)


@router.get(
    "/{identifier}/events",
    response_model=ProfileEventsPage,
    responses=_ERRORS,
    summary="List a profile's events, newest first",
)
async def list_profile_events(
    identifier: IdentifierPath,
    principal: ProfilesReader,
    identity: IdentityDep,
    limit: Annotated[int, Query(ge=1, le=200, description="events per page")] = 50,
    cursor: Annotated[
        str | None, Query(max_length=1024, description="next_cursor of the previous page")
    ] = None,
) -> ProfileEventsPage:
    metadata = tenant_metadata(principal.tenant_id)
    profile_id = identifier if parse_uuid(identifier) is not None else None
    if profile_id is None:
        found = await identity.GetProfile(lookup_request(identifier), metadata=metadata)
        profile_id = found.profile.id
    response = await identity.ListProfileEvents(
        identity_pb2.ListProfileEventsRequest(
            profile_id=profile_id, page_size=limit, page_token=cursor or ""
        ),
        metadata=metadata,
    )
    return ProfileEventsPage(
        profile_id=profile_id,
        events=[event_read(e) for e in response.events],
        next_cursor=response.next_page_token or None,
    )
