"""Tracking: RecordMessageEvent, HandleProviderWebhook, VerifyLinkToken, GetBestSendTime.

Errors callers can rely on (the `mcloud-error-code` trailer): INVALID_ARGUMENT invalid_token (a forged,
altered or wrong-kind link token), invalid_kind, invalid_provider_event_id, invalid_message_id,
invalid_provider, invalid_webhook_body; NOT_FOUND message_not_found (not for tracking tokens: a genuine
token of a message that no longer exists answers without a message, with the click's redirect_url);
PERMISSION_DENIED invalid_signature / webhook_not_configured (provider webhooks).
"""

from __future__ import annotations

import hashlib

from mcloud.messaging.v1 import messaging_pb2 as pb
from mcloud_common.errors import InvalidArgument, NotFound
from mcloud_common.grpc_server import tenant_id
from mcloud_common.timestamps import from_timestamp, set_timestamp
from messaging.domain import best_time, webhooks
from messaging.domain.names import CHANNEL_ENUM, CHANNEL_OF, EVENT_KIND_OF
from messaging.domain.tracking import Links
from messaging.grpc_api.base import Context, ServicerBase, require_uuid
from messaging.repo import tracking as tracking_repo

_TOKEN_KINDS = {"o": "opened", "c": "clicked"}


class TrackingApi(ServicerBase):
    @property
    def _tracking_links(self) -> Links:
        links = getattr(self, "_tracking_links_cache", None)
        if links is None:
            links = self._tracking_links_cache = Links(self._settings.tracking_secret.get_secret_value().encode(),
                                              self._settings.public_url)
        return links

    def _verified(self, token: str, tenant: str, kinds: str) -> dict[str, str]:
        claims = self._tracking_links.verify(token)
        if claims["k"] not in kinds or claims["t"] != tenant:
            raise InvalidArgument("the link token is invalid", code="invalid_token", field="token")
        return claims

    async def RecordMessageEvent(self, request: pb.RecordMessageEventRequest, context: Context):
        tenant = tenant_id(context)
        now = self._clock.now()
        occurred = from_timestamp(request.occurred_at) if request.HasField("occurred_at") else now
        redirect = ""
        if request.tracking_token:
            claims = self._verified(request.tracking_token, tenant, "oc")
            kind = _TOKEN_KINDS[claims["k"]]
            message_id, provider_message_id, url = claims["m"], "", claims["u"]
            if kind == "opened":  # pixels are reloaded: one open per message per minute
                event_id = f"open:{message_id}:{int(occurred.timestamp()) // 60}"
            else:
                redirect = url
                url_hash = hashlib.sha1(url.encode(), usedforsecurity=False).hexdigest()
                event_id = f"click:{message_id}:{url_hash}:{int(occurred.timestamp())}"
        else:
            kind = EVENT_KIND_OF.get(request.kind)
            if kind is None:
                raise InvalidArgument("kind is required", code="invalid_kind", field="kind")
            if not request.provider_event_id.strip():
                raise InvalidArgument("provider_event_id is required", code="invalid_provider_event_id",
                                      field="provider_event_id")
            message_id, provider_message_id, url = request.message_id, request.provider_message_id, request.url
            event_id = request.provider_event_id.strip()
            if message_id:
                require_uuid(message_id, "message_id")
            elif not provider_message_id:
                raise InvalidArgument("message_id or provider_message_id is required", code="invalid_message_id",
                                      field="message_id")
        if not message_id and not provider_message_id:
            raise InvalidArgument("the link token names no message", code="invalid_token", field="tracking_token")
        async with self._pool.acquire() as conn:
            row, duplicate = await tracking_repo.record(
                conn, tenant, message_id=message_id, provider_message_id=provider_message_id, kind=kind,
                provider_event_id=event_id, occurred_at=occurred, url=url, hard_bounce=request.hard_bounce,
                detail=request.detail, user_agent=request.user_agent, shards=self._shards)
        if row is None:
            if request.tracking_token:  # a genuine link whose message is gone (erased): still redirect
                return pb.RecordMessageEventResponse(redirect_url=redirect)
            raise NotFound("no such message", code="message_not_found", field="message_id")
        return pb.RecordMessageEventResponse(message=tracking_repo.message_pb(row), duplicate=duplicate,
                                             redirect_url=redirect)

    async def HandleProviderWebhook(self, request: pb.HandleProviderWebhookRequest, context: Context):
        tenant = tenant_id(context)
        provider = request.provider.strip().lower()
        if provider not in webhooks.PROVIDERS:
            raise InvalidArgument(f"unknown provider {request.provider!r} (sendgrid, mailgun or postmark)",
                                  code="invalid_provider", field="provider")
        now = self._clock.now()
        out = pb.HandleProviderWebhookResponse()
        async with self._pool.acquire() as conn:
            secrets = await tracking_repo.email_secrets(conn, tenant)
            facts = webhooks.parse(provider, dict(request.headers), request.body, secrets, now=now)
            for fact in facts:
                row, duplicate = await tracking_repo.record(
                    conn, tenant, message_id=fact.message_id, provider_message_id=fact.provider_message_id,
                    kind=fact.kind, provider_event_id=fact.provider_event_id, occurred_at=fact.occurred_at,
                    url=fact.url, hard_bounce=fact.hard_bounce, detail=fact.detail, user_agent=fact.user_agent,
                    shards=self._shards)
                if row is None:
                    out.unknown += 1
                elif duplicate:
                    out.duplicates += 1
                else:
                    out.recorded += 1
        return out

    async def VerifyLinkToken(self, request: pb.VerifyLinkTokenRequest, context: Context):
        tenant = tenant_id(context)
        claims = self._verified(request.token, tenant, "up")
        if not claims["p"]:
            raise InvalidArgument("the link token names no profile", code="invalid_token", field="token")
        return pb.VerifyLinkTokenResponse(profile_id=claims["p"], message_id=claims["m"],
                                          channel=CHANNEL_ENUM.get(claims["c"], 0))

    async def GetBestSendTime(self, request: pb.GetBestSendTimeRequest, context: Context):
        tenant = tenant_id(context)
        require_uuid(request.profile_id, "profile_id")
        channel = None
        if request.channel:
            channel = CHANNEL_OF.get(request.channel)
            if channel is None:
                raise InvalidArgument("unknown channel", code="invalid_channel", field="channel")
            if channel == "best":
                channel = None
        async with self._pool.acquire() as conn:
            by_hour, by_channel = await tracking_repo.engagement(conn, tenant, request.profile_id, channel)
            zone_name, preferred = await tracking_repo.person_settings(conn, tenant, request.profile_id)
            tenant_hours = None
            if sum(o + c for o, c in by_hour.values()) < best_time.MIN_EVENTS:
                tenant_hours = await tracking_repo.tenant_engagement(conn, tenant, channel)
        best = best_time.best_hour(by_hour, tenant_hours)
        chosen = channel or best_time.best_channel(by_channel, preferred)
        zone = best_time.zone_named(zone_name)
        out = pb.GetBestSendTimeResponse(
            best_hour_of_week=best.hour_of_week, best_channel=CHANNEL_ENUM.get(chosen, pb.CHANNEL_EMAIL),
            timezone=zone.key, confidence=best.confidence, sample_size=best.sample_size, is_default=best.is_default)
        set_timestamp(out.next_send_at, best_time.next_occurrence(best.hour_of_week, zone, self._clock.now()))
        return out
