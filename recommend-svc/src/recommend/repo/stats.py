"""Online figures per scenario and recommender: impressions (items shown), clicks on them, conversions
(a clicked item bought within the attribution window), click-through rate = clicks / impressions and
conversion rate = conversions / clicks; plus one total row per scenario (recommender "*")."""

from __future__ import annotations

from datetime import datetime

import asyncpg

from mcloud.recommend.v1 import recommend_pb2 as pb

_STATS = """
WITH imp AS (
    SELECT scenario, recommender, sum(impressions)::bigint AS impressions FROM impressions_daily
    WHERE tenant_id = $1 AND day >= $2::timestamptz::date AND day <= $3::timestamptz::date GROUP BY 1, 2),
clk AS (
    SELECT scenario, recommender, count(*) AS clicks, count(converted_at) AS conversions FROM clicks
    WHERE tenant_id = $1 AND clicked_at >= $2 AND clicked_at < $3 GROUP BY 1, 2)
SELECT scenario, recommender, coalesce(impressions, 0) AS impressions, coalesce(clicks, 0) AS clicks,
       coalesce(conversions, 0) AS conversions
FROM imp FULL JOIN clk USING (scenario, recommender)
ORDER BY scenario, recommender
"""


def _stat(scenario: str, recommender: str, impressions: int, clicks: int, conversions: int) -> pb.RecommendationStat:
    return pb.RecommendationStat(
        scenario=scenario, recommender=recommender, impressions=impressions, clicks=clicks, conversions=conversions,
        click_through_rate=round(clicks / impressions, 6) if impressions else 0.0,
        conversion_rate=round(conversions / clicks, 6) if clicks else 0.0)


async def stats(conn: asyncpg.Connection | asyncpg.Pool, tenant: str, since: datetime, until: datetime
                ) -> list[pb.RecommendationStat]:
    rows = await conn.fetch(_STATS, tenant, since, until)
    out, totals = [], {}
    for r in rows:
        out.append(_stat(r["scenario"], r["recommender"], r["impressions"], r["clicks"], r["conversions"]))
        t = totals.setdefault(r["scenario"], [0, 0, 0])
        t[0] += r["impressions"]
        t[1] += r["clicks"]
        t[2] += r["conversions"]
    out += [_stat(scenario, "*", *t) for scenario, t in sorted(totals.items())]
    return out
