"""People: SetPreferences, GetPreferences, Suppress, Unsubscribe, ListInbox, MarkInboxRead,
ConfigureChannel.

Errors callers can rely on (the `mcloud-error-code` trailer): INVALID_ARGUMENT invalid_profile_id,
invalid_channel, invalid_locale, invalid_timezone, invalid_minute, missing_target, invalid_reason,
invalid_token, invalid_json, invalid_provider, invalid_frequency_cap, invalid_rate_limit,
invalid_inbox_message_id, invalid_page_token. An opt-out (preferences, Unsubscribe, Suppress with
reason UNSUBSCRIBE) emits message.unsubscribed once.
"""

from __future__ import annotations

import asyncpg

from mcloud.events.v1 import messaging_events_pb2 as ev
from mcloud.messaging.v1 import messaging_pb2 as pb
from mcloud_common.errors import InvalidArgument
from mcloud_common.grpc_server import tenant_id
from mcloud_common.idempotency import once
from mcloud_common.ids import parse_uuid
from messaging.domain.names import CHANNEL_ENUM, CHANNELS, SUPPRESSION_REASON_OF
from messaging.domain.tracking import Links
from messaging.grpc_api.base import Context, ServicerBase, require_uuid
from messaging.repo import channels as channel_repo
from messaging.repo import contacts as contact_repo
from messaging.repo import inbox as inbox_repo
from messaging.repo import preferences as pref_repo
from messaging.repo import suppressions as suppression_repo
from messaging.repo.events import envelope, message_ref, publish

SOURCES = frozenset({"link", "one_click", "preferences", "api", "reply_stop"})


def unsubscribed_event(tenant: str, profile_id: str, channel: str, source: str, message_row=None):
    payload = ev.MessageUnsubscribed(profile_id=profile_id, channel=channel, source=source)
    if message_row is not None:
        payload.message.CopyFrom(message_ref(message_row))
    return envelope(tenant, "message.unsubscribed", profile_id, payload)


def _links(settings):
    return Links(settings.tracking_secret.get_secret_value().encode(), settings.public_url)


async def _message_row(conn: asyncpg.Connection, tenant: str, message_id: str):
    if parse_uuid(message_id) is None:
        return None
    return await conn.fetchrow("SELECT * FROM messages WHERE tenant_id = $1 AND id = $2", tenant, message_id)


class PeopleApi(ServicerBase):
    # ---------------------------------------------------------------------------------- preferences

    async def SetPreferences(self, request: pb.SetPreferencesRequest, context: Context):
        tenant = tenant_id(context)
        require_uuid(request.preferences.profile_id, "profile_id")
        pref_repo.check(request.preferences)
        async with self._pool.acquire() as conn:
            async def run() -> pb.SetPreferencesResponse:
                async with conn.transaction():
                    prefs, opted_out = await pref_repo.set_preferences(conn, tenant, request.preferences,
                                                                       self._clock.now())
                    pid = request.preferences.profile_id
                    await publish(conn, [unsubscribed_event(tenant, pid, ch, "preferences") for ch in opted_out],
                                  self._shards)
                return pb.SetPreferencesResponse(preferences=prefs)

            return await once(conn, tenant, "SetPreferences", request.idempotency_key, pb.SetPreferencesResponse, run)

    async def GetPreferences(self, request: pb.GetPreferencesRequest, context: Context):
        tenant = tenant_id(context)
        require_uuid(request.profile_id, "profile_id")
        async with self._pool.acquire() as conn:
            prefs = await pref_repo.get(conn, tenant, request.profile_id)
        return pb.GetPreferencesResponse(preferences=prefs)

    # ---------------------------------------------------------------------------------- suppressions

    async def Suppress(self, request: pb.SuppressRequest, context: Context):
        tenant = tenant_id(context)
        if request.channel == pb.CHANNEL_UNSPECIFIED:
            channel = "all"
        else:
            channel = pref_repo.check_channel(request.channel, "channel")
        if not request.address.strip() and not request.profile_id:
            raise InvalidArgument("address or profile_id is required", code="missing_target", field="address")
        if request.profile_id:
            require_uuid(request.profile_id, "profile_id")
        reason = SUPPRESSION_REASON_OF.get(request.reason, "manual") if request.reason else "manual"
        if request.reason and request.reason not in SUPPRESSION_REASON_OF:
            raise InvalidArgument("unknown suppression reason", code="invalid_reason", field="reason")
        async with self._pool.acquire() as conn:
            async def run() -> pb.SuppressResponse:
                async with conn.transaction():
                    row = await suppression_repo.add_suppression(
                        conn, tenant, channel=channel, address=request.address, profile_id=request.profile_id or None,
                        reason=reason, detail=request.detail, now=self._clock.now())
                    if row["created"] and reason == "unsubscribe":
                        pid = request.profile_id or await contact_repo.profile_of_address(
                            conn, tenant, channel, row["address"])
                        await publish(conn, [unsubscribed_event(tenant, pid, channel, "api")], self._shards)
                return pb.SuppressResponse(suppression=suppression_repo.message(row))

            return await once(conn, tenant, "Suppress", request.idempotency_key, pb.SuppressResponse, run)

    async def Unsubscribe(self, request: pb.UnsubscribeRequest, context: Context):
        tenant = tenant_id(context)
        message_id = ""
        if request.token:
            claims = _links(self._settings).verify(request.token)
            if claims.get("t") != tenant or claims.get("k") not in ("u", "p") or not claims.get("p"):
                raise InvalidArgument("the link is not valid", code="invalid_token", field="token")
            profile_id, message_id = str(claims["p"]), str(claims.get("m") or "")
            token_channel = str(claims.get("c") or "")
            default_source = "link"
        elif request.profile_id:
            profile_id, token_channel, default_source = request.profile_id, "", "api"
        else:
            raise InvalidArgument("token or profile_id is required", code="missing_target", field="token")
        require_uuid(profile_id, "profile_id")
        if request.all_channels:
            channel = "all"
        elif request.channel != pb.CHANNEL_UNSPECIFIED:
            channel = pref_repo.check_channel(request.channel, "channel")
        else:
            channel = token_channel if token_channel in CHANNELS else "all"
        source = request.source.strip() or default_source
        if source not in SOURCES:
            raise InvalidArgument(f"source must be one of {', '.join(sorted(SOURCES))}", code="invalid_source",
                                  field="source")
        now = self._clock.now()
        async with self._pool.acquire() as conn, conn.transaction():
            await pref_repo.set_channels(conn, tenant, profile_id,
                                         {c: False for c in (CHANNELS if channel == "all" else (channel,))}, now)
            row = await suppression_repo.add_suppression(conn, tenant, channel=channel, profile_id=profile_id,
                                                         reason="unsubscribe", detail=f"unsubscribed ({source})",
                                                         now=now)
            if row["created"]:
                message_row = await _message_row(conn, tenant, message_id)
                await publish(conn, [unsubscribed_event(tenant, profile_id, channel, source, message_row)],
                              self._shards)
        return pb.UnsubscribeResponse(profile_id=profile_id, channel=CHANNEL_ENUM.get(channel, pb.CHANNEL_UNSPECIFIED),
                                      already=not row["created"])

    # ---------------------------------------------------------------------------------- inbox

    async def ListInbox(self, request: pb.ListInboxRequest, context: Context):
        tenant = tenant_id(context)
        require_uuid(request.profile_id, "profile_id")
        async with self._pool.acquire() as conn:
            messages, unread, token = await inbox_repo.list_page(
                conn, tenant, request.profile_id, unread_only=request.unread_only, page_size=request.page_size,
                page_token=request.page_token, now=self._clock.now())
        return pb.ListInboxResponse(messages=messages, unread_count=unread, next_page_token=token)

    async def MarkInboxRead(self, request: pb.MarkInboxReadRequest, context: Context):
        tenant = tenant_id(context)
        require_uuid(request.profile_id, "profile_id")
        async with self._pool.acquire() as conn:
            done = await inbox_repo.mark_read(conn, tenant, request.profile_id, ids=list(request.inbox_message_ids),
                                              all_=request.all, now=self._clock.now(), shards=self._shards)
        return pb.MarkInboxReadResponse(marked=done.marked, unread_count=done.unread_count)

    # ---------------------------------------------------------------------------------- channels

    async def ConfigureChannel(self, request: pb.ConfigureChannelRequest, context: Context):
        tenant = tenant_id(context)
        pref_repo.check_channel(request.config.channel, "config.channel")
        async with self._pool.acquire() as conn:
            async def run() -> pb.ConfigureChannelResponse:
                config = await channel_repo.configure(conn, tenant, request.config, self._clock.now())
                return pb.ConfigureChannelResponse(config=config)

            return await once(conn, tenant, "ConfigureChannel", request.idempotency_key, pb.ConfigureChannelResponse,
                              run)

