"""Revenue attribution and the channel report (GetChannelReport).

`attribute_order` credits one order to the person's last touch (domain/attribution.py) with ONE
`INSERT ... SELECT ... ON CONFLICT (tenant, order_id) DO NOTHING`: a replayed event or a resent order
attributes once. The report reads messages, suppressions and attributions set-based, one statement
each, in one repeatable-read snapshot."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

import asyncpg

from messaging.domain.attribution import AttributionRules, check_rules, order_value

_RULES = "SELECT window_hours, count_opens, default_currency, updated_at FROM attribution_settings WHERE tenant_id = $1"

# The person's latest click (else, when opens count, latest open) at most window_hours before the
# order, on a marketing message that was not a test; ties to the latest touch.
_ATTRIBUTE = """
    WITH touch AS (
        SELECT m.id, m.channel, m.journey_id, m.campaign_id, t.kind, t.at
        FROM messages m
        CROSS JOIN LATERAL (
            SELECT e.kind, max(e.occurred_at) AS at
            FROM message_events e
            WHERE e.tenant_id = m.tenant_id AND e.message_id = m.id
              AND (e.kind = 'clicked' OR (e.kind = 'opened' AND $5))
              AND e.occurred_at > $3::timestamptz - make_interval(hours => $4) AND e.occurred_at <= $3::timestamptz
            GROUP BY e.kind
        ) t
        WHERE m.tenant_id = $1 AND m.profile_id = $2 AND NOT m.test AND NOT m.transactional
          AND m.channel IS NOT NULL AND m.queued_at <= $3::timestamptz
        ORDER BY (t.kind = 'clicked') DESC, t.at DESC
        LIMIT 1
    )
    INSERT INTO attributions (tenant_id, order_id, event_id, profile_id, message_id, channel, journey_id, campaign_id,
                              touch, touched_at, ordered_at, revenue_minor, currency, created_at)
    SELECT $1, $6, $7, $2, id, channel, journey_id, campaign_id, kind, at, $3, $8, $9, $10 FROM touch
    ON CONFLICT (tenant_id, order_id) DO NOTHING
    RETURNING message_id::text
"""

_FUNNEL = """
    SELECT channel,
           count(*) FILTER (WHERE sent_at >= $2 AND sent_at < $3) AS sent,
           count(*) FILTER (WHERE delivered_at >= $2 AND delivered_at < $3) AS delivered,
           count(*) FILTER (WHERE opened_at >= $2 AND opened_at < $3) AS opened,
           count(*) FILTER (WHERE clicked_at >= $2 AND clicked_at < $3) AS clicked,
           count(*) FILTER (WHERE status = 'bounced' AND ended_at >= $2 AND ended_at < $3) AS bounced
    FROM messages
    WHERE tenant_id = $1 AND NOT test AND channel IS NOT NULL AND queued_at < $3
    GROUP BY channel
"""
_OPT_OUTS = """
    SELECT channel, count(*) AS n FROM suppressions
    WHERE tenant_id = $1 AND reason IN ('unsubscribe', 'complaint') AND created_at >= $2 AND created_at < $3
    GROUP BY channel
"""
_REVENUE = """
    SELECT channel, journey_id, campaign_id::text AS campaign_id, currency, count(*) AS orders,
           sum(revenue_minor)::bigint AS revenue_minor
    FROM attributions
    WHERE tenant_id = $1 AND ordered_at >= $2 AND ordered_at < $3
    GROUP BY channel, journey_id, campaign_id, currency
    ORDER BY channel, journey_id, campaign_id, currency
"""
_COSTS = "SELECT channel, cost_per_message_minor, cost_currency FROM channel_configs WHERE tenant_id = $1"


@dataclass
class StoredRules:
    rules: AttributionRules
    updated_at: datetime | None = None


async def get_rules(conn: asyncpg.Connection, tenant: str) -> StoredRules:
    """The tenant's attribution rules, the defaults when never set."""
    row = await conn.fetchrow(_RULES, tenant)
    if row is None:
        return StoredRules(AttributionRules())
    return StoredRules(AttributionRules(row["window_hours"], row["count_opens"], row["default_currency"]),
                       row["updated_at"])


async def set_rules(conn: asyncpg.Connection, tenant: str, *, window_hours: int, count_opens: bool,
                    default_currency: str, now: datetime) -> StoredRules:
    rules = check_rules(window_hours, count_opens, default_currency)
    await conn.execute(
        """
        INSERT INTO attribution_settings (tenant_id, window_hours, count_opens, default_currency, updated_at)
        VALUES ($1, $2, $3, $4, $5)
        ON CONFLICT (tenant_id) DO UPDATE SET window_hours = excluded.window_hours,
            count_opens = excluded.count_opens, default_currency = excluded.default_currency,
            updated_at = excluded.updated_at
        """, tenant, rules.window_hours, rules.count_opens, rules.default_currency, now)
    return StoredRules(rules, now)


async def attribute_order(conn: asyncpg.Connection, tenant: str, profile_id: str, *, event_id: str,
                          ordered_at: datetime, properties: Mapping[str, Any], now: datetime) -> str | None:
    """Credit the order to the person's last touch; the message id credited, None when no message
    was touched in the window or the order was attributed before."""
    rules = (await get_rules(conn, tenant)).rules
    order = order_value(properties, event_id, rules.default_currency)
    return await conn.fetchval(_ATTRIBUTE, tenant, profile_id, ordered_at, rules.window_hours, rules.count_opens,
                               order.order_id, event_id, order.revenue_minor, order.currency, now)


@dataclass
class ChannelRow:
    channel: str
    sent: int = 0
    delivered: int = 0
    opened: int = 0
    clicked: int = 0
    bounced: int = 0
    unsubscribed: int = 0
    # currency -> [orders, revenue_minor]
    revenue: dict[str, list[int]] = field(default_factory=dict)
    cost_per_message_minor: int = 0
    cost_currency: str = ""


@dataclass
class SourceRow:
    journey_id: str
    campaign_id: str
    channel: str
    currency: str
    orders: int
    revenue_minor: int


@dataclass
class ChannelReport:
    channels: dict[str, ChannelRow]
    sources: list[SourceRow]
    unsubscribed_all: int
    rules: StoredRules


async def channel_report(conn: asyncpg.Connection, tenant: str, since: datetime, until: datetime) -> ChannelReport:
    """Every channel that sent in the window or has a configuration, with its funnel, opt-outs,
    attributed revenue and configured cost."""
    channels: dict[str, ChannelRow] = {}

    def row_of(channel: str) -> ChannelRow:
        return channels.setdefault(channel, ChannelRow(channel))

    sources: list[SourceRow] = []
    unsubscribed_all = 0
    async with conn.transaction(isolation="repeatable_read", readonly=True):
        for r in await conn.fetch(_COSTS, tenant):
            c = row_of(r["channel"])
            c.cost_per_message_minor, c.cost_currency = r["cost_per_message_minor"], r["cost_currency"]
        for r in await conn.fetch(_FUNNEL, tenant, since, until):
            c = row_of(r["channel"])
            c.sent, c.delivered, c.opened, c.clicked, c.bounced = (r["sent"], r["delivered"], r["opened"],
                                                                   r["clicked"], r["bounced"])
        for r in await conn.fetch(_OPT_OUTS, tenant, since, until):
            if r["channel"] == "all":
                unsubscribed_all = r["n"]
            else:
                row_of(r["channel"]).unsubscribed = r["n"]
        for r in await conn.fetch(_REVENUE, tenant, since, until):
            totals = row_of(r["channel"]).revenue.setdefault(r["currency"], [0, 0])
            totals[0] += r["orders"]
            totals[1] += r["revenue_minor"]
            sources.append(SourceRow(r["journey_id"], r["campaign_id"] or "", r["channel"], r["currency"],
                                     r["orders"], r["revenue_minor"]))
        rules = await get_rules(conn, tenant)
    return ChannelReport(channels, sources, unsubscribed_all, rules)
