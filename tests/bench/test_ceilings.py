"""bench.ceilings' measurements run briefly on real PostgreSQL/Valkey and real child servers and
return sane numbers (tiny durations: this checks the plumbing, not the machine)."""

from __future__ import annotations

import asyncio
import math

from bench import ceilings


def sane(value: float, low: float) -> bool:
    return math.isfinite(value) and value > low


async def test_copy_and_redis_ceilings(make_database, redis_url: str, redis) -> None:
    url = await make_database("bench")
    copy = await ceilings.copy_ceiling(url, seconds=0.3, chunk=200, connections=2)
    assert copy["rows"] >= 200 and sane(copy["rows_per_s"], 100)
    r = await ceilings.redis_ceiling(redis_url, seconds=0.4, pipeline=20, clients=2)
    assert sane(r["ops_per_s"], 100) and sane(r["xadd_per_s"], 100)
    assert not [k async for k in redis.scan_iter("bench:ceiling:*")]  # cleaned up


async def test_grpc_and_http_ceilings(make_database) -> None:
    url = await make_database("bench")
    # all at once (their servers start in parallel): the figures only need to be sane here
    g, f, c = await asyncio.gather(ceilings.grpc_echo_ceiling(seconds=0.5, rate=100, concurrency=4),
                                   ceilings.fastapi_ceiling(seconds=0.5, rate=100, connections=4),
                                   ceilings.chain_ceiling(url, seconds=0.5, rate=100, connections=4))
    assert g["errors"] == 0 and g["at_rate"]["errors"] == 0
    assert sane(g["req_per_s"], 20) and 0 < g["at_rate"]["p50_ms"] <= g["at_rate"]["p99_ms"] < 5000
    assert f["statuses"] == {200: f["requests"]} and sane(f["req_per_s"], 20)
    assert f["at_rate"]["statuses"] == {200: 50} and 0 < f["at_rate"]["p99_ms"] < 5000
    assert set(c["statuses"]) == {200} and set(c["at_rate"]["statuses"]) == {200}
    assert sane(c["req_per_s"], 10)
