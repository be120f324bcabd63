"""HOME/state.json: how `down`, `status` and `tenant create` find the stack that `up` started.

Processes are recorded with their start time, so a pid reused by an unrelated process after a
crash is never mistaken for ours.
"""

from __future__ import annotations

import json
import os
import signal
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path

import psutil


@dataclass
class ProcessRecord:
    pid: int
    create_time: float

    @classmethod
    def of(cls, pid: int) -> ProcessRecord:
        try:
            return cls(pid, psutil.Process(pid).create_time())
        except psutil.Error:
            return cls(pid, 0.0)

    def alive(self) -> bool:
        """True while the very process we recorded runs (not a zombie, not a pid reused since)."""
        try:
            proc = psutil.Process(self.pid)
            if proc.status() == psutil.STATUS_ZOMBIE:
                return False
            return abs(proc.create_time() - self.create_time) < 1.0
        except psutil.Error:
            return False

    def signal(self, sig: int) -> bool:
        if not self.alive():
            return False
        try:
            os.kill(self.pid, sig)
            return True
        except ProcessLookupError:
            return False

    def wait_gone(self, timeout: float) -> bool:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if not self.alive():
                return True
            time.sleep(0.05)
        return not self.alive()

    def terminate(self, grace: float) -> None:
        """SIGTERM, then SIGKILL when still running after `grace` seconds."""
        if self.signal(signal.SIGTERM) and not self.wait_gone(grace):
            self.signal(signal.SIGKILL)
            self.wait_gone(5)


@dataclass
class StackState:
    """What a running (or crashed) `mcloud up` left behind."""

    up: ProcessRecord
    phase: str  # "starting" | "up" | "stopping"
    ports: dict[str, int]
    urls: dict
    embedded_postgres: bool
    embedded_valkey: bool
    children: dict[str, ProcessRecord] = field(default_factory=dict)

    def to_json(self) -> dict:
        return asdict(self)

    @classmethod
    def from_json(cls, data: dict) -> StackState:
        return cls(
            up=ProcessRecord(**data["up"]),
            phase=data["phase"],
            ports=data["ports"],
            urls=data["urls"],
            embedded_postgres=data["embedded_postgres"],
            embedded_valkey=data["embedded_valkey"],
            children={k: ProcessRecord(**v) for k, v in data.get("children", {}).items()},
        )


def read_state(path: Path) -> StackState | None:
    """The recorded state, or None when there is none or it is unreadable (treated as stale)."""
    try:
        return StackState.from_json(json.loads(path.read_text()))
    except (OSError, ValueError, KeyError, TypeError):
        return None


def write_state(path: Path, state: StackState) -> None:
    """Atomic replace, so a reader never sees half a file."""
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    tmp.write_text(json.dumps(state.to_json(), indent=2) + "\n")
    os.replace(tmp, path)


def remove_state(path: Path) -> None:
    path.unlink(missing_ok=True)
