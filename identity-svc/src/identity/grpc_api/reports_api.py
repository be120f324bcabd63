"""GetAudienceReport."""

from __future__ import annotations

from identity.domain.reports import LIFECYCLE_STAGES, ratio, report_window
from identity.grpc_api.base import Context, ServicerBase
from identity.repo.reports import Period, audience_report
from mcloud.identity.v1 import identity_pb2
from mcloud_common.grpc_server import tenant_id
from mcloud_common.timestamps import from_timestamp, set_timestamp


def _period(p: Period) -> identity_pb2.AudiencePeriod:
    out = identity_pb2.AudiencePeriod(known_gained=p.known_gained, erased=p.erased, active=p.active,
                                      active_members=p.active_members, churned=p.churned, buyers=p.buyers,
                                      orders=p.orders)
    set_timestamp(out.start, p.start)
    return out


class ReportsApi(ServicerBase):
    async def GetAudienceReport(self, request: identity_pb2.GetAudienceReportRequest, context: Context):
        tenant = tenant_id(context)
        now = self._clock.now()
        window = report_window(from_timestamp(request.since) if request.HasField("since") else None,
                               from_timestamp(request.until) if request.HasField("until") else None,
                               request.granularity, now)
        async with self._pool.acquire() as conn:
            settings = await self.tenant_settings(conn, tenant)
            strong = [name for name, rule in settings.identifiers.items() if rule.strong]
            report = await audience_report(conn, tenant, window, strong_types=strong,
                                           order_names=settings.computed_events.order)
        t = report.totals
        churned_now = report.lifecycle.get("churned", 0)
        out = identity_pb2.GetAudienceReportResponse(
            granularity=window.granularity, known_gained=t.known_gained, erased=t.erased, active=t.active,
            active_members=t.active_members, churned=t.churned, profiles=report.profiles,
            known_profiles=report.known_profiles,
            lifecycle=[identity_pb2.LifecycleCount(stage=s, profiles=report.lifecycle[s]) for s in LIFECYCLE_STAGES],
            customers=report.customers, repeat_customers=report.repeat_customers,
            repurchase_rate=ratio(report.repeat_customers, report.customers),
            window_buyers=t.buyers, window_repeat_buyers=report.window_repeat_buyers,
            window_repurchase_rate=ratio(report.window_repeat_buyers, t.buyers),
            churn_rate=ratio(churned_now, report.customers),
            periods=[_period(p) for p in report.periods])
        set_timestamp(out.since, window.since)
        set_timestamp(out.until, window.until)
        set_timestamp(out.as_of, now)
        return out
