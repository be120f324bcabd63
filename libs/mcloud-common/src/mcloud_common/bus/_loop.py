"""Small pieces the relay and the consumer loops share: waiting and backing off."""

from __future__ import annotations

import asyncio
import contextlib


async def wait_any(events: list[asyncio.Event], seconds: float) -> None:
    """Return when any of `events` is set or `seconds` have passed."""
    if any(e.is_set() for e in events):
        return
    waiters = [asyncio.ensure_future(e.wait()) for e in events]
    try:
        await asyncio.wait(waiters, timeout=seconds, return_when=asyncio.FIRST_COMPLETED)
    finally:
        for w in waiters:
            w.cancel()
        for w in waiters:
            with contextlib.suppress(asyncio.CancelledError):
                await w


class Backoff:
    """Capped exponential back-off: initial, 2×, 4×, ... up to maximum; reset after a success."""

    def __init__(self, initial: float, maximum: float) -> None:
        self.initial = initial
        self.maximum = maximum
        self._next = initial

    def next_delay(self) -> float:
        delay = self._next
        self._next = min(self._next * 2, self.maximum)
        return delay

    def reset(self) -> None:
        self._next = self.initial


async def stop_task(task: asyncio.Task | None, stop: asyncio.Event | None, grace: float) -> None:
    """Ask a loop to stop, give it `grace` seconds to finish its cycle, then cancel it."""
    if stop is not None:
        stop.set()
    if task is None or task.done():
        return
    try:
        await asyncio.wait_for(asyncio.shield(task), grace)
    except TimeoutError:
        task.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await task
