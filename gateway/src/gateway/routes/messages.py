"""Sending API: one message, a batch (up to 1,000), campaigns to a segment, test sends of a template,
and message status, timeline and history (per person, campaign or journey). Reads need
`messaging:read`, sends `messaging:write` (or `admin`). A send carries its own `idempotency_key` (the
same key never sends twice); a campaign honours `Idempotency-Key`."""

from __future__ import annotations

import uuid
from typing import Annotated

import orjson
from fastapi import APIRouter, Path, Query, status

from gateway.auth import MessagingReader, MessagingWriter
from gateway.loyalty import EnumNames
from gateway.profiles import resolve_profile_id, time_field
from gateway.resources import IdentityDep, MessagingDep
from gateway.routes.profile_admin import IdempotencyKey
from gateway.schemas.common import problem_responses
from gateway.schemas.loyalty import Cursor
from gateway.schemas.messages import (
    AttributionIO,
    BatchItemResult,
    BatchResult,
    MessageBatch,
    MessageCampaignRead,
    MessageCampaignWrite,
    MessagePage,
    MessageRead,
    MessageSend,
    TestSend,
)
from mcloud.messaging.v1 import messaging_pb2 as pb
from mcloud_common.grpc_client import tenant_metadata
from mcloud_common.timestamps import set_timestamp

router = APIRouter(tags=["messages"])
READ_ERRORS = problem_responses(400, 401, 403, 404, 429, 503, 504)
WRITE_ERRORS = problem_responses(400, 401, 403, 404, 409, 422, 429, 503, 504)

CHANNEL = EnumNames(pb.Channel, "CHANNEL_")
STATUS = EnumNames(pb.MessageStatus, "MESSAGE_STATUS_")
BLOCK = EnumNames(pb.BlockReason, "BLOCK_REASON_")
CAMPAIGN = EnumNames(pb.CampaignStatus, "CAMPAIGN_STATUS_")
QUIET = {"hold": pb.QUIET_HOURS_BEHAVIOR_HOLD, "drop": pb.QUIET_HOURS_BEHAVIOR_DROP}
MessageId = Annotated[uuid.UUID, Path(description="message id (UUID)")]


def message_read(m: pb.Message) -> MessageRead:
    a = m.attribution
    return MessageRead(
        id=m.id, profile_id=m.profile_id, channel=CHANNEL.name(m.channel), template_id=m.template_id,
        template_version=m.template_version, locale=m.locale, status=STATUS.name(m.status),
        block_reason=BLOCK.name(m.block_reason) if m.block_reason else None, block_detail=m.block_detail or None,
        transactional=m.transactional,
        attribution=AttributionIO(journey_id=a.journey_id, journey_version=a.journey_version,
                                  enrollment_id=a.enrollment_id, step_id=a.step_id, campaign_id=a.campaign_id),
        idempotency_key=m.idempotency_key, attempts=m.attempts, provider=m.provider or None,
        provider_message_id=m.provider_message_id or None, error=m.error or None,
        **{name: time_field(m, name) for name in ("scheduled_at", "queued_at", "sent_at", "delivered_at", "opened_at",
                                                  "clicked_at", "ended_at")})


def campaign_read(c: pb.Campaign) -> MessageCampaignRead:
    return MessageCampaignRead(
        id=c.id, name=c.name, segment_id=c.segment_id, channel=CHANNEL.name(c.channel), template_id=c.template_id,
        template_version=c.template_version, status=CAMPAIGN.name(c.status), audience_size=c.audience_size,
        queued=c.queued, blocked=c.blocked,
        **{name: time_field(c, name) for name in ("scheduled_at", "started_at", "completed_at")})


async def _send_pb(identity, body: MessageSend, metadata) -> pb.SendMessageRequest:
    req = pb.SendMessageRequest(
        profile_id=await resolve_profile_id(identity, body.profile, metadata), template_id=body.template_id,
        template_version=body.template_version, locale=body.locale,
        channel=CHANNEL.value(body.channel) if body.channel else pb.CHANNEL_UNSPECIFIED,
        variables_json=orjson.dumps(body.variables).decode() if body.variables else "",
        idempotency_key=body.idempotency_key, transactional=body.transactional,
        quiet_hours_behavior=QUIET[body.quiet_hours])
    if body.scheduled_at is not None:
        set_timestamp(req.scheduled_at, body.scheduled_at)
    if body.attribution is not None:
        req.attribution.CopyFrom(pb.Attribution(**body.attribution.model_dump()))
    return req


@router.post("/v1/messages", response_model=MessageRead, status_code=status.HTTP_202_ACCEPTED,
             responses=WRITE_ERRORS, summary="Send a message",
             description="Queues one templated message to one person (now or at `scheduled_at`). Consent, "
             "opt-outs, suppression, quiet hours and frequency caps are checked when it is sent; the message's "
             "`status` and `block_reason` say what happened. A retry with the same `idempotency_key` returns the "
             "same message and never sends twice.")
async def send_message(body: MessageSend, principal: MessagingWriter, messaging: MessagingDep,
                       identity: IdentityDep) -> MessageRead:
    metadata = tenant_metadata(principal.tenant_id)
    response = await messaging.SendMessage(await _send_pb(identity, body, metadata), metadata=metadata)
    return message_read(response.message)


@router.post("/v1/messages/batch", response_model=BatchResult, status_code=status.HTTP_202_ACCEPTED,
             responses=WRITE_ERRORS, summary="Send many messages",
             description="Up to 1,000 sends in one call; each item behaves as `POST /v1/messages` and a refused "
             "item is answered in its own result (`error.code`, `error.detail`) without failing the others.")
async def send_batch(body: MessageBatch, principal: MessagingWriter, messaging: MessagingDep,
                     identity: IdentityDep) -> BatchResult:
    metadata = tenant_metadata(principal.tenant_id)
    request = pb.SendMessagesRequest(messages=[await _send_pb(identity, m, metadata) for m in body.messages])
    response = await messaging.SendMessages(request, metadata=metadata)
    return BatchResult(results=[
        BatchItemResult(error={"code": r.error_code, "detail": r.error_detail}) if r.error_code
        else BatchItemResult(message=message_read(r.message)) for r in response.results])


@router.get("/v1/messages/{message_id}", response_model=MessageRead, responses=READ_ERRORS,
            summary="Read a message", description="Status, block reason, provider, attempts and the timeline.")
async def get_message(message_id: MessageId, principal: MessagingReader, messaging: MessagingDep) -> MessageRead:
    response = await messaging.GetMessage(pb.GetMessageRequest(message_id=str(message_id)),
                                          metadata=tenant_metadata(principal.tenant_id))
    return message_read(response.message)


@router.get("/v1/messages", response_model=MessagePage, responses=READ_ERRORS, summary="Message history",
            description="Newest first, for a person (`profile`: UUID or type:value), a campaign or a journey "
            "(at least one).")
async def list_messages(
    principal: MessagingReader, messaging: MessagingDep, identity: IdentityDep,
    profile: Annotated[str | None, Query(max_length=512)] = None,
    campaign_id: Annotated[uuid.UUID | None, Query()] = None,
    journey_id: Annotated[str | None, Query(max_length=64)] = None,
    limit: Annotated[int, Query(ge=1, le=500)] = 50,
    cursor: Annotated[Cursor | None, Query(description="next_cursor of the previous page")] = None,
) -> MessagePage:
    metadata = tenant_metadata(principal.tenant_id)
    profile_id = await resolve_profile_id(identity, profile, metadata) if profile else ""
    response = await messaging.ListMessages(pb.ListMessagesRequest(
        profile_id=profile_id, campaign_id=str(campaign_id) if campaign_id else "", journey_id=journey_id or "",
        page_size=limit, page_token=cursor or ""), metadata=metadata)
    return MessagePage(items=[message_read(m) for m in response.messages],
                       next_cursor=response.next_page_token or None)


@router.post("/v1/campaigns", response_model=MessageCampaignRead, status_code=status.HTTP_202_ACCEPTED,
             responses=WRITE_ERRORS, summary="Send a campaign to a segment",
             description="Sends one template to every current member of a segment, in batches, in the background. "
             "Each recipient's message is keyed by (campaign, person): a resumed campaign never sends twice. With "
             "`Idempotency-Key`, a retry returns the campaign the first call created.")
async def send_campaign(body: MessageCampaignWrite, principal: MessagingWriter, messaging: MessagingDep,
                        idempotency_key: IdempotencyKey = None) -> MessageCampaignRead:
    req = pb.SendCampaignRequest(
        name=body.name, segment_id=body.segment_id, template_id=body.template_id,
        template_version=body.template_version,
        channel=CHANNEL.value(body.channel) if body.channel else pb.CHANNEL_UNSPECIFIED,
        variables_json=orjson.dumps(body.variables).decode() if body.variables else "", batch_size=body.batch_size,
        quiet_hours_behavior=QUIET[body.quiet_hours], idempotency_key=idempotency_key or "")
    if body.scheduled_at is not None:
        set_timestamp(req.scheduled_at, body.scheduled_at)
    response = await messaging.SendCampaign(req, metadata=tenant_metadata(principal.tenant_id))
    return campaign_read(response.campaign)


@router.get("/v1/campaigns/{campaign_id}", response_model=MessageCampaignRead, responses=READ_ERRORS,
            summary="Read a campaign", description="Status, audience size, messages queued and blocked.")
async def get_campaign(campaign_id: Annotated[uuid.UUID, Path()], principal: MessagingReader,
                       messaging: MessagingDep) -> MessageCampaignRead:
    response = await messaging.GetCampaign(pb.GetCampaignRequest(campaign_id=str(campaign_id)),
                                           metadata=tenant_metadata(principal.tenant_id))
    return campaign_read(response.campaign)


@router.post("/v1/templates/{template_id}/test-send", response_model=MessageRead,
             status_code=status.HTTP_202_ACCEPTED, responses=WRITE_ERRORS, tags=["templates"],
             summary="Test-send a template",
             description="Renders the template and sends it at once to `to` (or to `profile`), subject prefixed "
             "\"[TEST]\", bypassing caps and quiet hours. With `Idempotency-Key`, a retry sends nothing more.")
async def test_send(template_id: Annotated[uuid.UUID, Path()], body: TestSend, principal: MessagingWriter,
                    messaging: MessagingDep, identity: IdentityDep,
                    idempotency_key: IdempotencyKey = None) -> MessageRead:
    metadata = tenant_metadata(principal.tenant_id)
    profile_id = await resolve_profile_id(identity, body.profile, metadata) if body.profile else ""
    response = await messaging.TestSendTemplate(pb.TestSendTemplateRequest(
        template_id=str(template_id), version=body.version, locale=body.locale,
        variables_json=orjson.dumps(body.variables).decode() if body.variables else "", profile_id=profile_id,
        to_address=body.to, idempotency_key=idempotency_key or ""), metadata=metadata)
    return message_read(response.message)

