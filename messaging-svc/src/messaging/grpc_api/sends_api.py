"""Sending: SendMessage, SendMessages, GetMessage, ListMessages, SendCampaign, GetCampaign,
TestSendTemplate.

A send is accepted into the queue and answered QUEUED (or, on retry with the same key, the message as
it is now); policies are checked when it is sent, so a later unsubscribe is honoured. Errors callers can
rely on (the `mcloud-error-code` trailer): INVALID_ARGUMENT invalid_profile_id, invalid_template_id,
idempotency_key_required, invalid_variables_json, invalid_channel, too_many_messages; NOT_FOUND
template_not_found, template_version_not_found, message_not_found, campaign_not_found.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Mapping
from typing import Any

import asyncpg
import orjson

from mcloud.messaging.v1 import messaging_pb2 as pb
from mcloud_common.errors import DomainError, InvalidArgument, NotFound
from mcloud_common.grpc_server import tenant_id
from mcloud_common.idempotency import once
from mcloud_common.ids import new_id, parse_uuid
from mcloud_common.timestamps import from_timestamp, set_timestamp
from messaging.background.sender import NO_PROFILE
from messaging.domain.names import CHANNEL_ENUM, CHANNEL_OF, QUIET_OF
from messaging.domain.templates import TemplateVersion
from messaging.grpc_api.base import Context, ServicerBase, require_uuid
from messaging.repo import messages as message_repo
from messaging.repo import templates as template_repo
from messaging.repo.messages import NewMessage

MOST_PER_CALL = 1000

_CAMPAIGN_STATUS = {"scheduled": pb.CAMPAIGN_STATUS_SCHEDULED, "running": pb.CAMPAIGN_STATUS_RUNNING,
                    "completed": pb.CAMPAIGN_STATUS_COMPLETED, "cancelled": pb.CAMPAIGN_STATUS_CANCELLED,
                    "failed": pb.CAMPAIGN_STATUS_FAILED}


def variables_of(text: str, field: str = "variables_json") -> dict[str, Any]:
    """A JSON object from `text` ("" = {}), else INVALID_ARGUMENT naming `field`."""
    if not text.strip():
        return {}
    try:
        value = orjson.loads(text)
    except orjson.JSONDecodeError:
        value = None
    if not isinstance(value, dict):
        raise InvalidArgument(f"{field} must be a JSON object", code="invalid_variables_json", field=field)
    return value


def _channel(value: int, template_channel: str, field: str = "channel") -> str:
    if value == pb.CHANNEL_UNSPECIFIED:
        return template_channel
    name = CHANNEL_OF.get(value)
    if name is None:
        raise InvalidArgument(f"{field} is not a known channel", code="invalid_channel", field=field)
    return name


async def _new_message(conn: asyncpg.Connection, tenant: str, req: pb.SendMessageRequest, *, prefix: str = "",
                       campaign_id: str | None = None,
                       versions: dict[tuple[str, int], TemplateVersion] | None = None) -> NewMessage:
    """A queued message from a request, validated; `prefix` names the item in a batch, whose template
    versions are looked up once per call through `versions` (a batch mostly names one template)."""
    if parse_uuid(req.profile_id) is None:
        raise InvalidArgument(f"{prefix}profile_id must be a UUID", code="invalid_profile_id",
                              field=f"{prefix}profile_id")
    if parse_uuid(req.template_id) is None:
        raise InvalidArgument(f"{prefix}template_id must be a UUID", code="invalid_template_id",
                              field=f"{prefix}template_id")
    if not req.idempotency_key.strip():
        raise InvalidArgument(f"{prefix}idempotency_key is required: a retry must never send twice",
                              code="idempotency_key_required", field=f"{prefix}idempotency_key")
    variables = variables_of(req.variables_json, f"{prefix}variables_json")
    key = (req.template_id, req.template_version)
    version = versions.get(key) if versions is not None else None
    if version is None:
        version = await template_repo.get_version(conn, tenant, req.template_id, req.template_version)
        if versions is not None:
            versions[key] = version
    a = req.attribution
    return NewMessage(
        profile_id=req.profile_id, requested_channel=_channel(req.channel, version.channel, f"{prefix}channel"),
        template_id=req.template_id, template_version=version.version, idempotency_key=req.idempotency_key,
        locale=req.locale, variables=variables, transactional=req.transactional,
        quiet_hours_behavior=QUIET_OF.get(req.quiet_hours_behavior, "hold"),
        scheduled_at=from_timestamp(req.scheduled_at) if req.HasField("scheduled_at") else None,
        journey_id=a.journey_id, journey_version=a.journey_version, enrollment_id=a.enrollment_id,
        step_id=a.step_id, campaign_id=campaign_id or (a.campaign_id if parse_uuid(a.campaign_id) else None))


def campaign_pb(row: Mapping[str, Any], blocked: int = 0) -> pb.Campaign:
    c = pb.Campaign(id=str(row["id"]), name=row["name"], segment_id=str(row["segment_id"]),
                    channel=CHANNEL_ENUM.get(row["channel"], 0), template_id=str(row["template_id"]),
                    template_version=row["template_version"], status=_CAMPAIGN_STATUS[row["status"]],
                    audience_size=row["audience_size"], queued=row["queued"], blocked=blocked)
    for name in ("scheduled_at", "started_at", "completed_at"):
        if row[name] is not None:
            set_timestamp(getattr(c, name), row[name])
    return c


class SendsApi(ServicerBase):
    async def SendMessage(self, request: pb.SendMessageRequest, context: Context):
        tenant = tenant_id(context)
        async with self._pool.acquire() as conn:
            item = await _new_message(conn, tenant, request)
            [row] = await message_repo.enqueue(conn, tenant, [item], now=self._clock.now(), shards=self._shards)
        return pb.SendMessageResponse(message=message_repo.message_pb(row))

    async def SendMessages(self, request: pb.SendMessagesRequest, context: Context):
        tenant = tenant_id(context)
        if len(request.messages) > MOST_PER_CALL:
            raise InvalidArgument(f"at most {MOST_PER_CALL} messages per call", code="too_many_messages",
                                  field="messages")
        results = [pb.SendResult() for _ in request.messages]
        items: list[tuple[int, NewMessage]] = []
        versions: dict[tuple[str, int], TemplateVersion] = {}
        async with self._pool.acquire() as conn:
            for i, req in enumerate(request.messages):
                try:
                    items.append((i, await _new_message(conn, tenant, req, prefix=f"messages[{i}].",
                                                        versions=versions)))
                except DomainError as exc:
                    results[i].error_code, results[i].error_detail = exc.code, exc.detail
            rows = await message_repo.enqueue(conn, tenant, [m for _, m in items], now=self._clock.now(),
                                              shards=self._shards)
        for (i, _), row in zip(items, rows, strict=True):
            results[i].message.CopyFrom(message_repo.message_pb(row))
        return pb.SendMessagesResponse(results=results)

    async def GetMessage(self, request: pb.GetMessageRequest, context: Context):
        tenant = tenant_id(context)
        require_uuid(request.message_id, "message_id")
        async with self._pool.acquire() as conn:
            row = await message_repo.get(conn, tenant, request.message_id)
        return pb.GetMessageResponse(message=message_repo.message_pb(row))

    async def ListMessages(self, request: pb.ListMessagesRequest, context: Context):
        tenant = tenant_id(context)
        if not (request.profile_id or request.campaign_id or request.journey_id):
            raise InvalidArgument("name a profile_id, campaign_id or journey_id", code="filter_required",
                                  field="profile_id")
        for field in ("profile_id", "campaign_id"):
            if getattr(request, field):
                require_uuid(getattr(request, field), field)
        async with self._pool.acquire() as conn:
            rows, token = await message_repo.history(
                conn, tenant, profile_id=request.profile_id, campaign_id=request.campaign_id,
                journey_id=request.journey_id, size=request.page_size, token=request.page_token)
        return pb.ListMessagesResponse(messages=[message_repo.message_pb(r) for r in rows], next_page_token=token)

    async def TestSendTemplate(self, request: pb.TestSendTemplateRequest, context: Context):
        tenant = tenant_id(context)
        require_uuid(request.template_id, "template_id")
        if request.profile_id:
            require_uuid(request.profile_id, "profile_id")
        if not (request.to_address.strip() or request.profile_id):
            raise InvalidArgument("name a to_address or a profile_id", code="recipient_required", field="to_address")
        async with self._pool.acquire() as conn:
            send = pb.SendMessageRequest(
                profile_id=request.profile_id or NO_PROFILE, template_id=request.template_id,
                template_version=request.version, locale=request.locale, variables_json=request.variables_json,
                idempotency_key=f"test:{request.idempotency_key or new_id()}", transactional=True)
            item = await _new_message(conn, tenant, send)
            item = dataclasses.replace(item, to_override=request.to_address.strip(), test=True)
            [row] = await message_repo.enqueue(conn, tenant, [item], now=self._clock.now(), shards=self._shards)
        return pb.TestSendTemplateResponse(message=message_repo.message_pb(row))

    async def SendCampaign(self, request: pb.SendCampaignRequest, context: Context):
        tenant = tenant_id(context)
        require_uuid(request.segment_id, "segment_id")
        require_uuid(request.template_id, "template_id")
        if not request.name.strip():
            raise InvalidArgument("name is required", code="invalid_name", field="name")
        variables = variables_of(request.variables_json)
        if request.batch_size < 0 or request.batch_size > 10_000:
            raise InvalidArgument("batch_size must be 0..10000", code="invalid_batch_size", field="batch_size")
        now = self._clock.now()
        async with self._pool.acquire() as conn:
            version = await template_repo.get_version(conn, tenant, request.template_id, request.template_version)
            channel = _channel(request.channel, version.channel)

            async def run() -> pb.SendCampaignResponse:
                row = await conn.fetchrow("""
                    INSERT INTO campaigns (tenant_id, id, name, segment_id, channel, template_id, template_version,
                                           variables, batch_size, quiet_hours_behavior, status, scheduled_at,
                                           created_at)
                    VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, 'scheduled', $11, $12) RETURNING *""",
                    tenant, new_id(), request.name.strip(), request.segment_id, channel, request.template_id,
                    version.version, variables, request.batch_size or self._settings.campaign_batch,
                    QUIET_OF.get(request.quiet_hours_behavior, "hold"),
                    from_timestamp(request.scheduled_at) if request.HasField("scheduled_at") else now, now)
                return pb.SendCampaignResponse(campaign=campaign_pb(row))

            return await once(conn, tenant, "SendCampaign", request.idempotency_key, pb.SendCampaignResponse, run)

    async def GetCampaign(self, request: pb.GetCampaignRequest, context: Context):
        tenant = tenant_id(context)
        require_uuid(request.campaign_id, "campaign_id")
        async with self._pool.acquire() as conn:
            row = await conn.fetchrow("SELECT * FROM campaigns WHERE tenant_id = $1 AND id = $2", tenant,
                                      request.campaign_id)
            if row is None:
                raise NotFound(f"campaign {request.campaign_id} not found", code="campaign_not_found")
            blocked = await conn.fetchval("""
                SELECT count(*) FROM messages WHERE tenant_id = $1 AND campaign_id = $2
                  AND status IN ('suppressed', 'dropped')""", tenant, request.campaign_id)
        return pb.GetCampaignResponse(campaign=campaign_pb(row, blocked))
