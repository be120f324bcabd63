"""Child processes of `mcloud up`: started with their own log file and process group, stopped with
SIGTERM then SIGKILL, restarted with backoff when they die on their own."""

from __future__ import annotations

import ctypes
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path

from mcloud_cli.state import ProcessRecord

STOP_GRACE = 10.0  # seconds between SIGTERM and SIGKILL
QUICK_FAILURE = 10.0  # a child that dies sooner than this after its start failed "quickly"
MAX_QUICK_FAILURES = 5  # ... this many times in a row: give up on it
MAX_BACKOFF = 8.0


def _die_with_parent() -> None:
    # Linux: the child gets SIGTERM when its parent dies, even by SIGKILL, so a crash leaves no orphans.
    try:
        ctypes.CDLL("libc.so.6", use_errno=True).prctl(1, signal.SIGTERM)  # PR_SET_PDEATHSIG
    except (OSError, AttributeError):
        pass


def die_with_parent_hook() -> Callable[[], None] | None:
    """preexec_fn tying a child's life to ours. Only from the main thread: the kernel signals the
    child when the *thread* that forked it ends, and a worker thread may end long before we do."""
    return _die_with_parent if threading.current_thread() is threading.main_thread() else None


def tail(path: Path, lines: int = 30) -> str:
    try:
        text = path.read_text(errors="replace")
    except OSError:
        return ""
    return "\n".join(text.splitlines()[-lines:])


@dataclass
class Child:
    """One supervised process: `python -m <module> <command>` with its output appended to `log`."""

    name: str
    argv: list[str]
    env: dict[str, str]
    log: Path
    process: subprocess.Popen | None = None
    started_at: float = 0.0
    quick_failures: int = 0
    restart_at: float | None = None  # monotonic time of a scheduled restart
    gave_up: bool = False
    exit_codes: list[int] = field(default_factory=list)

    @classmethod
    def python_module(cls, name: str, module: str, command: str, env: dict[str, str], log: Path) -> Child:
        return cls(name=name, argv=[sys.executable, "-m", module, command], env=env, log=log)

    def start(self) -> None:
        self.log.parent.mkdir(parents=True, exist_ok=True)
        with self.log.open("ab") as out:
            stamp = datetime.now(UTC).isoformat(timespec="seconds")
            out.write(f"\n--- mcloud: {' '.join(self.argv[1:])} started {stamp} ---\n".encode())
            out.flush()
            # own session: Ctrl-C in the terminal reaches only `mcloud up`, which stops us in order
            self.process = subprocess.Popen(
                self.argv, env=self.env, stdin=subprocess.DEVNULL, stdout=out, stderr=subprocess.STDOUT,
                start_new_session=True, preexec_fn=die_with_parent_hook(),
            )
        self.started_at = time.monotonic()
        self.restart_at = None

    @property
    def pid(self) -> int | None:
        return self.process.pid if self.process else None

    def record(self) -> ProcessRecord | None:
        return ProcessRecord.of(self.process.pid) if self.process else None

    def running(self) -> bool:
        return self.process is not None and self.process.poll() is None

    def returncode(self) -> int | None:
        return self.process.poll() if self.process else None

    def send(self, sig: int) -> None:
        if self.running():
            try:
                self.process.send_signal(sig)
            except ProcessLookupError:
                pass

    def wait(self, timeout: float) -> bool:
        if self.process is None:
            return True
        try:
            self.process.wait(timeout)
            return True
        except subprocess.TimeoutExpired:
            return False

    def kill(self) -> None:
        self.send(signal.SIGKILL)
        self.wait(5)

    def log_tail(self, lines: int = 30) -> str:
        return tail(self.log, lines)

    def schedule_restart(self) -> float:
        """Note an unexpected exit and plan the restart; returns the delay (or -1 when giving up)."""
        self.exit_codes.append(self.returncode() or 0)
        quick = time.monotonic() - self.started_at < QUICK_FAILURE
        self.quick_failures = self.quick_failures + 1 if quick else 0
        if self.quick_failures >= MAX_QUICK_FAILURES:
            self.gave_up = True
            self.process = None
            return -1
        delay = min(0.5 * 2 ** max(self.quick_failures - 1, 0), MAX_BACKOFF)
        self.restart_at = time.monotonic() + delay
        self.process = None
        return delay


def stop_all(children: list[Child], grace: float = STOP_GRACE) -> None:
    """SIGTERM all of them at once, wait up to `grace`, SIGKILL the rest."""
    for c in children:
        c.send(signal.SIGTERM)
    deadline = time.monotonic() + grace
    for c in children:
        if not c.wait(max(deadline - time.monotonic(), 0)):
            c.kill()
