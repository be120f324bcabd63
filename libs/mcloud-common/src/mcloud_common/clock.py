"""A clock that production reads from the system and tests move by hand."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Protocol


class Clock(Protocol):
    def now(self) -> datetime: ...


class SystemClock:
    """Wall-clock time in UTC."""

    def now(self) -> datetime:
        return datetime.now(UTC)


class ManualClock:
    """A clock that only moves when told to: `advance()` or `set()`."""

    def __init__(self, start: datetime | None = None) -> None:
        self._now = start or datetime(2026, 1, 1, tzinfo=UTC)
        if self._now.tzinfo is None:
            raise ValueError("ManualClock needs an aware datetime")

    def now(self) -> datetime:
        return self._now

    def advance(self, delta: timedelta | None = None, **kwargs: float) -> datetime:
        self._now += delta if delta is not None else timedelta(**kwargs)
        return self._now

    def set(self, when: datetime) -> None:
        self._now = when


class OffsetClock:
    """System time shifted by an offset read from a file: lets e2e tests move the clock of a running
    process (`MCLOUD_CLOCK_OFFSET_FILE`) without restarting it."""

    def __init__(self, offset_file: str) -> None:
        self._file = offset_file

    def now(self) -> datetime:
        try:
            with open(self._file) as f:
                seconds = float(f.read().strip() or 0)
        except (OSError, ValueError):
            seconds = 0.0
        return datetime.now(UTC) + timedelta(seconds=seconds)


def clock_from_env(offset_file: str | None) -> Clock:
    return OffsetClock(offset_file) if offset_file else SystemClock()
