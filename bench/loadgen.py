"""A lean open-loop HTTP/1.1 load generator for the benches.

httpx costs ~1-2 ms of CPU per request and its pool slows down with thousands of queued waiters;
on a 2-core machine that shares its cores with the system under test, the generator would be the
bottleneck. This keeps N keep-alive connections on raw asyncio streams and sends prebuilt requests.
Latency is measured from each request's scheduled start (no coordinated omission).
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Sequence
from urllib.parse import urlsplit

from bench.common import percentile


async def _read_response(reader: asyncio.StreamReader) -> int:
    head = await reader.readuntil(b"\r\n\r\n")
    lines = head.split(b"\r\n")
    status = int(lines[0].split(b" ", 2)[1])
    length = 0
    chunked = False
    for line in lines[1:]:
        name, _, value = line.partition(b":")
        name = name.strip().lower()
        if name == b"content-length":
            length = int(value)
        elif name == b"transfer-encoding" and b"chunked" in value.lower():
            chunked = True
    if chunked:
        while True:
            size = int((await reader.readuntil(b"\r\n")).strip(), 16)
            await reader.readexactly(size + 2)
            if size == 0:
                break
    elif length:
        await reader.readexactly(length)
    return status


async def open_loop(url: str, paths: Sequence[str], *, rate: float, headers: dict[str, str],
                    connections: int = 32, bodies: Sequence[bytes] | None = None) -> dict:
    """GET each of `paths` at `rate` per second over `connections` keep-alive connections (with
    `bodies`, one JSON body per path: POST them instead)."""
    parts = urlsplit(url)
    host, port = parts.hostname or "127.0.0.1", parts.port or 80
    extra = "".join(f"{k}: {v}\r\n" for k, v in headers.items())
    if bodies is None:
        requests = [f"GET {p} HTTP/1.1\r\nHost: {host}:{port}\r\n{extra}\r\n".encode() for p in paths]
    else:
        requests = [f"POST {p} HTTP/1.1\r\nHost: {host}:{port}\r\n{extra}content-type: application/json\r\n"
                    f"content-length: {len(b)}\r\n\r\n".encode() + b for p, b in zip(paths, bodies, strict=True)]
    queue: asyncio.Queue[tuple[float, bytes] | None] = asyncio.Queue()
    latencies: list[float] = []
    statuses: dict[int, int] = {}

    async def connection() -> None:
        reader, writer = await asyncio.open_connection(host, port)
        try:
            while (item := await queue.get()) is not None:
                due, raw = item
                writer.write(raw)
                status = await _read_response(reader)
                latencies.append(time.perf_counter() - due)
                statuses[status] = statuses.get(status, 0) + 1
        finally:
            writer.close()

    workers = [asyncio.create_task(connection()) for _ in range(connections)]
    start = time.perf_counter() + 0.05
    for i, raw in enumerate(requests):
        due = start + i / rate
        delay = due - time.perf_counter()
        if delay > 0:
            await asyncio.sleep(delay)
        queue.put_nowait((due, raw))
    for _ in workers:
        queue.put_nowait(None)
    await asyncio.gather(*workers)
    elapsed = time.perf_counter() - start
    return {"requests": len(requests), "rate": rate, "achieved_rps": len(requests) / elapsed,
            "statuses": statuses, "p50_ms": percentile(latencies, 50) * 1000,
            "p99_ms": percentile(latencies, 99) * 1000, "max_ms": max(latencies) * 1000}
