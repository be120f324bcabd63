"""Streams are trimmed only past what every consumer group has finished with, or by retention."""

from __future__ import annotations

import uuid

from mcloud_common.bus import trim_consumed

HOUR_MS = 3_600_000


async def _stream_with(redis, n: int) -> tuple[str, list[bytes]]:
    stream = f"events.trimtest-{uuid.uuid4().hex[:8]}.0"
    ids = [await redis.xadd(stream, {b"e": str(i).encode()}) for i in range(n)]
    return stream, ids


async def test_trim_keeps_everything_a_group_has_pending_or_not_yet_read(redis):
    stream, ids = await _stream_with(redis, 10)
    await redis.xgroup_create(stream, "slow", id="0")
    await redis.xgroup_create(stream, "fast", id="0")
    read = await redis.xreadgroup("slow", "c1", {stream: ">"}, count=6)
    await redis.xack(stream, "slow", *[entry_id for entry_id, _ in read[0][1][:4]])  # 5th and 6th stay pending
    read = await redis.xreadgroup("fast", "c2", {stream: ">"}, count=8)
    await redis.xack(stream, "fast", *[entry_id for entry_id, _ in read[0][1]])

    applied = await trim_consumed(redis, [stream], retention_ms=24 * HOUR_MS)
    assert applied[stream] == ids[4].decode()  # the oldest entry still pending in "slow"
    remaining = [entry_id for entry_id, _ in await redis.xrange(stream)]
    assert remaining == ids[4:]


async def test_retention_bounds_a_stream_even_with_a_stuck_group_or_no_group(redis):
    stuck, _ = await _stream_with(redis, 5)
    await redis.xgroup_create(stuck, "stuck", id="0")
    orphan, orphan_ids = await _stream_with(redis, 5)
    now = int(orphan_ids[-1].decode().split("-")[0])

    kept = await trim_consumed(redis, [stuck, orphan], retention_ms=HOUR_MS, now_ms=now)
    assert await redis.xlen(stuck) == 5 and await redis.xlen(orphan) == 5  # all within the hour
    assert set(kept) == {stuck, orphan}
    await trim_consumed(redis, [stuck, orphan], retention_ms=HOUR_MS, now_ms=now + 2 * HOUR_MS)
    assert await redis.xlen(stuck) == 0 and await redis.xlen(orphan) == 0
    assert await trim_consumed(redis, ["events.nope.0"], retention_ms=HOUR_MS) == {}
