"""Templates API: versioned, localised message templates and previews. Reads and previews (which send
nothing) need `messaging:read`, changes `messaging:write` (or `admin`). Creating and replacing honour
`Idempotency-Key`. Changed content makes a new immutable version; identical content keeps the current
one. A template that does not validate is a 400 whose `code` says why (template_syntax_error,
subject_required, invalid_locale, ...) and whose `detail` names the field (`variants[1].subject: ...`)."""

from __future__ import annotations

import uuid
from typing import Annotated, Any

import orjson
from fastapi import APIRouter, Path, Query, Response, status

from gateway.auth import MessagingReader, MessagingWriter, Principal
from gateway.loyalty import EnumNames
from gateway.profiles import resolve_profile_id, time_field
from gateway.resources import IdentityDep, MessagingDep
from gateway.routes.profile_admin import IdempotencyKey
from gateway.schemas.common import problem_responses
from gateway.schemas.loyalty import INT32_MAX, Cursor
from gateway.schemas.templates import (
    TemplateChannel,
    TemplatePage,
    TemplatePreviewRead,
    TemplatePreviewRequest,
    TemplateRead,
    TemplateVariantRead,
    TemplateWrite,
)
from mcloud.messaging.v1 import messaging_pb2 as pb
from mcloud_common.grpc_client import tenant_metadata

router = APIRouter(tags=["templates"])
READ_ERRORS = problem_responses(400, 401, 403, 404, 429, 503, 504)
WRITE_ERRORS = problem_responses(400, 401, 403, 404, 409, 422, 429, 503, 504)

CHANNEL = EnumNames(pb.Channel, "CHANNEL_")
TemplateId = Annotated[uuid.UUID, Path(description="template id (UUID)")]
Limit = Annotated[int, Query(ge=1, le=500, description="items per page")]
CursorQuery = Annotated[Cursor | None, Query(description="next_cursor of the previous page")]
VersionQuery = Annotated[int | None, Query(ge=1, le=INT32_MAX, description="a version; default: the latest")]


def _md(principal: Principal) -> tuple[tuple[str, str], ...]:
    return tenant_metadata(principal.tenant_id)


def _data(text: str) -> dict[str, Any] | None:
    if not text:
        return None
    try:
        value = orjson.loads(text)
    except orjson.JSONDecodeError:
        return None
    return value if isinstance(value, dict) else None


def template_pb(template_id: str, body: TemplateWrite) -> pb.Template:
    t = pb.Template(id=template_id, name=body.name, description=body.description, channel=CHANNEL.value(body.channel),
                    default_locale=body.default_locale)
    for v in body.variants:
        t.variants.add(locale=v.locale, subject=v.subject, body_text=v.body_text, body_html=v.body_html,
                       title=v.title, data_json=orjson.dumps(v.data).decode() if v.data is not None else "")
    return t


def template_read(t: pb.Template) -> TemplateRead:
    return TemplateRead(
        id=t.id, name=t.name, description=t.description, channel=CHANNEL.name(t.channel),
        default_locale=t.default_locale, version=t.version, latest_version=t.latest_version,
        variants=[TemplateVariantRead(locale=v.locale, subject=v.subject, body_text=v.body_text, body_html=v.body_html,
                              title=v.title, data=_data(v.data_json)) for v in t.variants],
        created_at=time_field(t, "created_at"), updated_at=time_field(t, "updated_at"),
    )


@router.post(
    "/v1/templates",
    response_model=TemplateRead,
    status_code=status.HTTP_201_CREATED,
    responses=WRITE_ERRORS,
    summary="Create a template (version 1)",
    description="One channel, one variant per locale. With `Idempotency-Key`, a retry returns the template the "
    "first call created.",
)
async def create_template(
    body: TemplateWrite,
    response: Response,
    principal: MessagingWriter,
    messaging: MessagingDep,
    idempotency_key: IdempotencyKey = None,
) -> TemplateRead:
    result = await messaging.UpsertTemplate(
        pb.UpsertTemplateRequest(template=template_pb("", body), idempotency_key=idempotency_key or ""),
        metadata=_md(principal),
    )
    response.headers["Location"] = f"/v1/templates/{result.template.id}"
    return template_read(result.template)


@router.put(
    "/v1/templates/{template_id}",
    response_model=TemplateRead,
    responses=WRITE_ERRORS,
    summary="Replace a template: changed content becomes the next version",
    description="Identical content keeps the current version (a name or description change alone makes no new "
    "version). Sends already queued keep the version they were made with. The channel cannot change (409 "
    "`channel_immutable`).",
)
async def replace_template(
    template_id: TemplateId,
    body: TemplateWrite,
    principal: MessagingWriter,
    messaging: MessagingDep,
    idempotency_key: IdempotencyKey = None,
) -> TemplateRead:
    result = await messaging.UpsertTemplate(
        pb.UpsertTemplateRequest(template=template_pb(str(template_id), body), idempotency_key=idempotency_key or ""),
        metadata=_md(principal),
    )
    return template_read(result.template)


@router.get(
    "/v1/templates",
    response_model=TemplatePage,
    responses=READ_ERRORS,
    summary="List templates at their latest version, most recently updated first",
)
async def list_templates(
    principal: MessagingReader,
    messaging: MessagingDep,
    channel: Annotated[TemplateChannel | None, Query(description="only templates of this channel")] = None,
    limit: Limit = 50,
    cursor: CursorQuery = None,
) -> TemplatePage:
    result = await messaging.ListTemplates(
        pb.ListTemplatesRequest(channel=CHANNEL.value(channel) if channel else pb.CHANNEL_UNSPECIFIED,
                                page_size=limit, page_token=cursor or ""),
        metadata=_md(principal),
    )
    return TemplatePage(templates=[template_read(t) for t in result.templates],
                        next_cursor=result.next_page_token or None)


@router.get(
    "/v1/templates/{template_id}",
    response_model=TemplateRead,
    responses=READ_ERRORS,
    summary="Read a template at a version (default: the latest)",
)
async def get_template(
    template_id: TemplateId, principal: MessagingReader, messaging: MessagingDep, version: VersionQuery = None
) -> TemplateRead:
    result = await messaging.GetTemplate(
        pb.GetTemplateRequest(template_id=str(template_id), version=version or 0), metadata=_md(principal)
    )
    return template_read(result.template)


@router.post(
    "/v1/templates/{template_id}/preview",
    response_model=TemplatePreviewRead,
    responses=problem_responses(400, 401, 403, 404, 422, 429, 503, 504),
    summary="Render a template without sending it",
    description="With `variables` and, optionally, a person's data (`profile_id`: their traits, email and phone "
    "under `profile`). The locale is `locale`, else the person's, else the template's default; the variant "
    "chosen is the exact locale, then its language, then the default. `missing_variables` lists placeholders "
    "left without a value (they render empty). 400 `template_error` when it fails to render.",
)
async def preview_template(
    template_id: TemplateId,
    body: TemplatePreviewRequest,
    identity: IdentityDep,
    principal: MessagingReader,
    messaging: MessagingDep,
) -> TemplatePreviewRead:
    profile_id = await resolve_profile_id(identity, body.profile_id, _md(principal)) if body.profile_id else ""
    result = await messaging.PreviewTemplate(
        pb.PreviewTemplateRequest(
            template_id=str(template_id),
            version=body.version or 0,
            locale=body.locale or "",
            variables_json=orjson.dumps(body.variables).decode() if body.variables else "",
            profile_id=profile_id,
        ),
        metadata=_md(principal),
    )
    return TemplatePreviewRead(locale=result.locale, subject=result.subject, body_text=result.body_text,
                       body_html=result.body_html, title=result.title, data=_data(result.data_json),
                       missing_variables=list(result.missing_variables))
