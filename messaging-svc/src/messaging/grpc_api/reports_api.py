"""GetChannelReport, GetAttributionSettings, SetAttributionSettings.

Errors (the `mcloud-error-code` trailer): INVALID_ARGUMENT invalid_window, window_too_long,
invalid_attribution_window, invalid_currency."""

from __future__ import annotations

from mcloud.messaging.v1 import messaging_pb2 as pb
from mcloud_common.grpc_server import tenant_id
from mcloud_common.timestamps import from_timestamp, set_timestamp
from messaging.domain.attribution import rate, report_window, roi
from messaging.domain.names import CHANNEL_ENUM, CHANNELS
from messaging.grpc_api.base import Context, ServicerBase
from messaging.repo import attribution as attribution_repo
from messaging.repo.attribution import ChannelRow, StoredRules


def _settings(stored: StoredRules) -> pb.AttributionSettings:
    r = stored.rules
    out = pb.AttributionSettings(window_hours=r.window_hours, count_opens=r.count_opens,
                                 default_currency=r.default_currency)
    if stored.updated_at is not None:
        set_timestamp(out.updated_at, stored.updated_at)
    return out


def _channel(c: ChannelRow) -> pb.ChannelReport:
    cost = c.sent * c.cost_per_message_minor
    out = pb.ChannelReport(
        channel=CHANNEL_ENUM.get(c.channel, pb.CHANNEL_UNSPECIFIED), sent=c.sent, delivered=c.delivered,
        opened=c.opened, clicked=c.clicked, bounced=c.bounced, unsubscribed=c.unsubscribed,
        revenue=[pb.AttributedRevenue(currency=cur, orders=n, revenue_minor=minor)
                 for cur, (n, minor) in sorted(c.revenue.items())],
        attributed_orders=sum(n for n, _ in c.revenue.values()), cost_minor=cost, cost_currency=c.cost_currency,
        open_rate=rate(c.opened, c.sent), click_rate=rate(c.clicked, c.sent))
    value = roi(c.revenue.get(c.cost_currency, [0, 0])[1], cost)
    if value is not None:
        out.roi = value
    return out


class ReportsApi(ServicerBase):
    async def GetChannelReport(self, request: pb.GetChannelReportRequest, context: Context):
        tenant = tenant_id(context)
        now = self._clock.now()
        since, until = report_window(from_timestamp(request.since) if request.HasField("since") else None,
                                     from_timestamp(request.until) if request.HasField("until") else None, now)
        async with self._pool.acquire() as conn:
            report = await attribution_repo.channel_report(conn, tenant, since, until)
        order = {name: i for i, name in enumerate(CHANNELS)}
        rows = sorted(report.channels.values(), key=lambda c: order.get(c.channel, len(order)))
        out = pb.GetChannelReportResponse(
            channels=[_channel(c) for c in rows],
            sources=[pb.AttributedSource(journey_id=s.journey_id, campaign_id=s.campaign_id,
                                         channel=CHANNEL_ENUM.get(s.channel, pb.CHANNEL_UNSPECIFIED),
                                         currency=s.currency, orders=s.orders, revenue_minor=s.revenue_minor)
                     for s in report.sources],
            attribution=_settings(report.rules), unsubscribed_all_channels=report.unsubscribed_all)
        set_timestamp(out.since, since)
        set_timestamp(out.until, until)
        set_timestamp(out.as_of, now)
        return out

    async def GetAttributionSettings(self, request: pb.GetAttributionSettingsRequest, context: Context):
        tenant = tenant_id(context)
        async with self._pool.acquire() as conn:
            stored = await attribution_repo.get_rules(conn, tenant)
        return pb.GetAttributionSettingsResponse(settings=_settings(stored))

    async def SetAttributionSettings(self, request: pb.SetAttributionSettingsRequest, context: Context):
        tenant = tenant_id(context)
        s = request.settings
        async with self._pool.acquire() as conn:
            stored = await attribution_repo.set_rules(conn, tenant, window_hours=s.window_hours,
                                                      count_opens=s.count_opens,
                                                      default_currency=s.default_currency, now=self._clock.now())
        return pb.SetAttributionSettingsResponse(settings=_settings(stored))
