"""Messaging people API: a person's preferences, in-app inbox, unsubscribe and best send time;
suppressions; channel configuration (secrets write-only). Reads need `messaging:read`, changes
`messaging:write` (or `admin`). A profile in the path is a UUID or `type:value` (resolved by identity)."""

from __future__ import annotations

from typing import Annotated, Any

import orjson
from fastapi import APIRouter, Path, Query

from gateway.auth import MessagingReader, MessagingWriter, Principal
from gateway.profiles import resolve_profile_id, time_field
from gateway.resources import IdentityDep, MessagingDep
from gateway.routes.profile_admin import IdempotencyKey
from gateway.schemas.common import problem_responses
from gateway.schemas.loyalty import Cursor
from gateway.schemas.messaging_people import (
    BestSendTimeRead,
    Channel,
    ChannelConfigRead,
    ChannelConfigWrite,
    ChannelPreferenceRead,
    FrequencyCapIO,
    InboxMessageRead,
    InboxPage,
    InboxReadResult,
    InboxReadWrite,
    PreferencesRead,
    PreferencesWrite,
    ProviderRead,
    QuietHoursIO,
    SuppressionRead,
    SuppressionWrite,
    UnsubscribeRead,
    UnsubscribeWrite,
)
from mcloud.messaging.v1 import messaging_pb2 as pb
from mcloud_common.grpc_client import tenant_metadata

router = APIRouter(prefix="/v1/messaging", tags=["messaging preferences"])
READ_ERRORS = problem_responses(400, 401, 403, 404, 429, 503, 504)
WRITE_ERRORS = problem_responses(400, 401, 403, 404, 409, 422, 429, 503, 504)

CHANNEL_ENUM = {"email": pb.CHANNEL_EMAIL, "sms": pb.CHANNEL_SMS, "push": pb.CHANNEL_PUSH,
                "in_app": pb.CHANNEL_IN_APP, "webhook": pb.CHANNEL_WEBHOOK}
CHANNEL_NAME = {v: k for k, v in CHANNEL_ENUM.items()}
REASON_ENUM = {"unsubscribe": pb.SUPPRESSION_REASON_UNSUBSCRIBE, "hard_bounce": pb.SUPPRESSION_REASON_HARD_BOUNCE,
               "complaint": pb.SUPPRESSION_REASON_COMPLAINT, "invalid_address": pb.SUPPRESSION_REASON_INVALID_ADDRESS,
               "manual": pb.SUPPRESSION_REASON_MANUAL}
REASON_NAME = {v: k for k, v in REASON_ENUM.items()}

ProfileRef = Annotated[
    str,
    Path(description="profile id (UUID), or type:value (user_id:42, email:rachel@example.com)",
         examples=["user_id:42"], max_length=512),
]
ChannelPath = Annotated[Channel, Path(description="the channel to configure")]


async def _profile(identity: IdentityDep, ref: str, principal: Principal) -> str:
    return await resolve_profile_id(identity, ref, tenant_metadata(principal.tenant_id))


def _object(text: str) -> dict[str, Any]:
    try:
        value = orjson.loads(text or "{}")
    except orjson.JSONDecodeError:
        return {}
    return value if isinstance(value, dict) else {}


# ---- mapping --------------------------------------------------------------------------------------


def preferences_read(p: pb.Preferences) -> PreferencesRead:
    return PreferencesRead(
        profile_id=p.profile_id,
        channels=[ChannelPreferenceRead(channel=CHANNEL_NAME[c.channel], opted_in=c.opted_in,
                                        updated_at=time_field(c, "updated_at"))
                  for c in p.channels if c.channel in CHANNEL_NAME],
        locale=p.locale, timezone=p.timezone,
        quiet_hours=QuietHoursIO(enabled=p.quiet_hours.enabled, start_minute=p.quiet_hours.start_minute,
                                 end_minute=p.quiet_hours.end_minute),
        preferred_channel=CHANNEL_NAME.get(p.preferred_channel), updated_at=time_field(p, "updated_at"),
    )


def preferences_pb(profile_id: str, body: PreferencesWrite) -> pb.Preferences:
    p = pb.Preferences(profile_id=profile_id, locale=body.locale or "", timezone=body.timezone or "")
    for name, opted_in in body.channels.items():
        p.channels.add(channel=CHANNEL_ENUM[name], opted_in=opted_in)
    if body.quiet_hours is not None:
        p.quiet_hours.CopyFrom(pb.QuietHours(enabled=body.quiet_hours.enabled,
                                             start_minute=body.quiet_hours.start_minute,
                                             end_minute=body.quiet_hours.end_minute))
    if body.preferred_channel == "auto":
        p.preferred_channel = pb.CHANNEL_BEST
    elif body.preferred_channel is not None:
        p.preferred_channel = CHANNEL_ENUM[body.preferred_channel]
    return p


def inbox_read(m: pb.InboxMessage) -> InboxMessageRead:
    return InboxMessageRead(id=m.id, message_id=m.message_id, title=m.title, body=m.body, image_url=m.image_url,
                            link_url=m.link_url, data=_object(m.data_json), read=m.read,
                            created_at=time_field(m, "created_at"), read_at=time_field(m, "read_at"),
                            expires_at=time_field(m, "expires_at"))


def suppression_read(s: pb.Suppression) -> SuppressionRead:
    return SuppressionRead(id=s.id, channel=CHANNEL_NAME.get(s.channel, "all"), address=s.address,
                           profile_id=s.profile_id, reason=REASON_NAME.get(s.reason, "manual"), detail=s.detail,
                           created_at=time_field(s, "created_at"))


def channel_config_read(c: pb.ChannelConfig) -> ChannelConfigRead:
    return ChannelConfigRead(
        channel=CHANNEL_NAME[c.channel], provider=c.provider, enabled=c.enabled, settings=_object(c.settings_json),
        rate_limit_per_second=c.rate_limit_per_second,
        frequency_caps=[FrequencyCapIO(max_messages=f.max_messages, window_hours=f.window_hours)
                        for f in c.frequency_caps],
        fallbacks=[ProviderRead(provider=f.provider, settings=_object(f.settings_json),
                                rate_limit_per_second=f.rate_limit_per_second) for f in c.fallbacks],
        updated_at=time_field(c, "updated_at"),
        cost_per_message_minor=c.cost_per_message_minor, cost_currency=c.cost_currency or None,
    )


def _secrets(value: dict[str, Any] | None) -> str:
    return "" if value is None else orjson.dumps(value).decode()


# ---- preferences ----------------------------------------------------------------------------------


@router.get("/profiles/{profile}/preferences", response_model=PreferencesRead, responses=READ_ERRORS,
            summary="A person's messaging preferences (defaults when none were set)")
async def get_preferences(profile: ProfileRef, principal: MessagingReader, messaging: MessagingDep,
                          identity: IdentityDep) -> PreferencesRead:
    pid = await _profile(identity, profile, principal)
    result = await messaging.GetPreferences(pb.GetPreferencesRequest(profile_id=pid),
                                            metadata=tenant_metadata(principal.tenant_id))
    return preferences_read(result.preferences)


@router.patch("/profiles/{profile}/preferences", response_model=PreferencesRead, responses=WRITE_ERRORS,
              summary="Update a person's messaging preferences",
              description="Listed channels are replaced, the others kept; fields left out are unchanged. An "
              "opt-out emits `message.unsubscribed` (source `preferences`).")
async def patch_preferences(profile: ProfileRef, body: PreferencesWrite, principal: MessagingWriter,
                            messaging: MessagingDep, identity: IdentityDep,
                            idempotency_key: IdempotencyKey = None) -> PreferencesRead:
    pid = await _profile(identity, profile, principal)
    result = await messaging.SetPreferences(
        pb.SetPreferencesRequest(preferences=preferences_pb(pid, body), idempotency_key=idempotency_key or ""),
        metadata=tenant_metadata(principal.tenant_id))
    return preferences_read(result.preferences)


# ---- inbox ----------------------------------------------------------------------------------------


@router.get("/profiles/{profile}/inbox", response_model=InboxPage, responses=READ_ERRORS,
            summary="A person's in-app inbox, newest first, with the unread count")
async def list_inbox(
    profile: ProfileRef,
    principal: MessagingReader,
    messaging: MessagingDep,
    identity: IdentityDep,
    unread_only: Annotated[bool, Query(description="only unread messages")] = False,
    limit: Annotated[int, Query(ge=1, le=500, description="items per page")] = 50,
    cursor: Annotated[Cursor | None, Query(description="next_cursor of the previous page")] = None,
) -> InboxPage:
    pid = await _profile(identity, profile, principal)
    result = await messaging.ListInbox(
        pb.ListInboxRequest(profile_id=pid, unread_only=unread_only, page_size=limit, page_token=cursor or ""),
        metadata=tenant_metadata(principal.tenant_id))
    return InboxPage(messages=[inbox_read(m) for m in result.messages], unread_count=result.unread_count,
                     next_cursor=result.next_page_token or None)


@router.post("/profiles/{profile}/inbox/read", response_model=InboxReadResult, responses=WRITE_ERRORS,
             summary="Mark inbox messages read (the first read counts as an open)")
async def mark_inbox_read(profile: ProfileRef, body: InboxReadWrite, principal: MessagingWriter,
                          messaging: MessagingDep, identity: IdentityDep) -> InboxReadResult:
    pid = await _profile(identity, profile, principal)
    result = await messaging.MarkInboxRead(
        pb.MarkInboxReadRequest(profile_id=pid, inbox_message_ids=[] if body.all else body.ids, all=body.all),
        metadata=tenant_metadata(principal.tenant_id))
    return InboxReadResult(marked=result.marked, unread_count=result.unread_count)


# ---- unsubscribe, suppressions --------------------------------------------------------------------


@router.post("/profiles/{profile}/unsubscribe", response_model=UnsubscribeRead, responses=WRITE_ERRORS,
             summary="Unsubscribe a person from a channel (every channel by default)",
             description="Opts the person out, suppresses them and emits `message.unsubscribed` once; a repeat "
             "answers `already: true`.")
async def unsubscribe(profile: ProfileRef, principal: MessagingWriter, messaging: MessagingDep,
                      identity: IdentityDep, body: UnsubscribeWrite | None = None) -> UnsubscribeRead:
    body = body or UnsubscribeWrite()
    pid = await _profile(identity, profile, principal)
    result = await messaging.Unsubscribe(
        pb.UnsubscribeRequest(profile_id=pid, channel=CHANNEL_ENUM.get(body.channel or "", pb.CHANNEL_UNSPECIFIED),
                              source=body.source, all_channels=body.channel is None),
        metadata=tenant_metadata(principal.tenant_id))
    return UnsubscribeRead(profile_id=result.profile_id, channel=CHANNEL_NAME.get(result.channel, "all"),
                           already=result.already)


@router.post("/suppressions", response_model=SuppressionRead, responses=WRITE_ERRORS,
             summary="Suppress an address or a profile on a channel",
             description="Idempotent by content: suppressing the same address (case-insensitively) or profile "
             "again returns the existing suppression. Reason `unsubscribe` emits `message.unsubscribed`.")
async def suppress(body: SuppressionWrite, principal: MessagingWriter, messaging: MessagingDep,
                   identity: IdentityDep, idempotency_key: IdempotencyKey = None) -> SuppressionRead:
    pid = await _profile(identity, body.profile.strip(), principal) if body.profile.strip() else ""
    result = await messaging.Suppress(
        pb.SuppressRequest(channel=CHANNEL_ENUM.get(body.channel, pb.CHANNEL_UNSPECIFIED), address=body.address,
                           profile_id=pid, reason=REASON_ENUM[body.reason], detail=body.detail,
                           idempotency_key=idempotency_key or ""),
        metadata=tenant_metadata(principal.tenant_id))
    return suppression_read(result.suppression)


# ---- channels -------------------------------------------------------------------------------------


@router.put("/channels/{channel}", response_model=ChannelConfigRead, responses=WRITE_ERRORS,
            summary="Configure a channel's provider, rate limit, frequency caps and fallbacks",
            description="Replaces the channel's configuration. Secrets are write-only: never returned, and kept "
            "when left out.")
async def configure_channel(channel: ChannelPath, body: ChannelConfigWrite, principal: MessagingWriter,
                            messaging: MessagingDep, idempotency_key: IdempotencyKey = None) -> ChannelConfigRead:
    config = pb.ChannelConfig(
        channel=CHANNEL_ENUM[channel], provider=body.provider, enabled=body.enabled,
        settings_json=orjson.dumps(body.settings).decode(), secrets_json=_secrets(body.secrets),
        rate_limit_per_second=body.rate_limit_per_second,
        frequency_caps=[pb.FrequencyCap(max_messages=c.max_messages, window_hours=c.window_hours)
                        for c in body.frequency_caps],
        fallbacks=[pb.ProviderConfig(provider=f.provider, settings_json=orjson.dumps(f.settings).decode(),
                                     secrets_json=_secrets(f.secrets), rate_limit_per_second=f.rate_limit_per_second)
                   for f in body.fallbacks],
        cost_per_message_minor=body.cost_per_message_minor, cost_currency=body.cost_currency or "")
    result = await messaging.ConfigureChannel(
        pb.ConfigureChannelRequest(config=config, idempotency_key=idempotency_key or ""),
        metadata=tenant_metadata(principal.tenant_id))
    return channel_config_read(result.config)


# ---- best send time -------------------------------------------------------------------------------


@router.get("/profiles/{profile}/best-send-time", response_model=BestSendTimeRead, responses=READ_ERRORS,
            summary="The hour of the week and the channel a person most likely engages with")
async def best_send_time(
    profile: ProfileRef,
    principal: MessagingReader,
    messaging: MessagingDep,
    identity: IdentityDep,
    channel: Annotated[Channel | None, Query(description="only this channel's engagement")] = None,
) -> BestSendTimeRead:
    pid = await _profile(identity, profile, principal)
    result = await messaging.GetBestSendTime(
        pb.GetBestSendTimeRequest(profile_id=pid, channel=CHANNEL_ENUM.get(channel or "", pb.CHANNEL_UNSPECIFIED)),
        metadata=tenant_metadata(principal.tenant_id))
    return BestSendTimeRead(best_hour_of_week=result.best_hour_of_week,
                            best_channel=CHANNEL_NAME.get(result.best_channel), timezone=result.timezone,
                            next_send_at=time_field(result, "next_send_at"), confidence=result.confidence,
                            sample_size=result.sample_size, is_default=result.is_default)
