"""The local stack from Python: start one the way `mcloud up` does, probe it, stop it.

    from mcloud_cli.stack import start_stack
    with start_stack(tmp_path / "mcloud") as stack:          # free ports, waits until healthy
        httpx.get(f"{stack.gateway_url}/readyz")
        stack.urls["databases"]["gateway"], stack.urls["valkey"], stack.grpc_address("identity")
        old = stack.kill("identity")                          # SIGKILL it; `up` restarts it
        stack.wait_healthy("identity", not_pid=old)
        stack.stop_valkey(); ...; stack.start_valkey()        # an outage of the embedded Valkey (same for postgres)
"""

from __future__ import annotations

import json
import os
import selectors
import signal
import subprocess
import sys
import time
from collections.abc import Mapping, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path

from mcloud_cli.children import die_with_parent_hook, tail
from mcloud_cli.config import GATEWAY, SERVICES, StackConfig, StackPorts, host_port
from mcloud_cli.probes import grpc_serving, http_ok, tcp_ok, wait_until
from mcloud_cli.servers import embedded_servers, stop_embedded
from mcloud_cli.state import read_state, remove_state
from mcloud_common.embedded import EmbeddedPostgres, EmbeddedValkey


def create_tenant(home: Path, name: str) -> dict:
    """`mcloud tenant create NAME --json --home HOME` in a subprocess: {"tenant_id", "write_key", "secret_key"}."""
    out = subprocess.run(
        [sys.executable, "-m", "mcloud_cli", "tenant", "create", name, "--json", "--home", str(home)],
        check=True, capture_output=True, text=True,
    ).stdout
    return json.loads(out.strip().splitlines()[-1])


# starting ---------------------------------------------------------------------------------------


class OffsetClock:
    """A stack's clock for tests: real time shifted by the seconds in a file every process reads
    (`mcloud up --clock-offset-file PATH`)."""

    def __init__(self, path: Path) -> None:
        self.path = path
        path.write_text("0")

    def set(self, when: datetime) -> None:
        self.path.write_text(str((when - datetime.now(UTC)).total_seconds()))

    def advance(self, by: timedelta) -> None:
        self.path.write_text(str(float(self.path.read_text() or 0) + by.total_seconds()))


class StackStartError(RuntimeError):
    pass


@dataclass
class StackHandle:
    """A `python -m mcloud_cli up --json` subprocess and the URLs it printed."""

    home: Path
    ports: StackPorts
    process: subprocess.Popen
    urls: dict
    output: Path  # the up process's stderr (progress, restarts)

    @property
    def gateway_url(self) -> str:
        return self.urls["gateway"]

    def create_tenant(self, name: str) -> dict:
        """`mcloud tenant create NAME --json` on this stack, as an operator runs it: tenant_id and keys."""
        return create_tenant(self.home, name)

    def database_url(self, component: str) -> str:
        return self.urls["databases"][component]

    def grpc_address(self, service: str) -> str:
        return self.urls["grpc"][service]

    def pid(self, name: str) -> int | None:
        """Current pid of a child (a service or "gateway"), from state.json."""
        state = read_state(self.home / "state.json")
        rec = state.children.get(name) if state else None
        return rec.pid if rec and rec.alive() else None

    def kill(self, name: str, sig: int = signal.SIGKILL) -> int:
        """Signal a child behind the supervisor's back (it counts as a crash and is restarted)."""
        pid = self.pid(name)
        if pid is None:
            raise LookupError(f"{name} is not running")
        os.kill(pid, sig)
        return pid

    def healthy(self, name: str) -> bool:
        if name == GATEWAY:
            return http_ok(f"{self.gateway_url}/readyz")
        return grpc_serving(self.grpc_address(name))

    def wait_healthy(self, name: str, *, not_pid: int | None = None, timeout: float = 60) -> None:
        """Until `name` is healthy again (and, with `not_pid`, runs as a new process)."""
        def ready() -> bool:
            pid = self.pid(name)
            return pid is not None and pid != not_pid and self.healthy(name)

        if not wait_until(ready, timeout=timeout, interval=0.1):
            log = self.home / "logs" / f"{name}.log"
            raise TimeoutError(f"{name} not healthy within {timeout}s\n{tail(log)}")

    # outages of the embedded servers: same port and data folder, so every client reconnects to the
    # server it knew; `up` does not supervise them, so they stay down until started again
    def _servers(self) -> tuple[EmbeddedPostgres, EmbeddedValkey]:
        config = StackConfig(home=self.home, ports=self.ports)
        if self.urls["postgres"] != config.postgres_url or self.urls["valkey"] != config.redis_url:
            raise RuntimeError("this stack uses external servers (DATABASE_URL / REDIS_URL), not embedded ones")
        return embedded_servers(config)

    def stop_postgres(self) -> None:
        """Stop the embedded PostgreSQL (fast shutdown: open sessions are cut); its data stays."""
        self._servers()[0].stop()

    def start_postgres(self) -> None:
        self._servers()[0].start()

    def stop_valkey(self) -> None:
        """Stop the embedded Valkey (SIGTERM: it writes its AOF and exits); its data stays."""
        self._servers()[1].stop()

    def start_valkey(self) -> None:
        self._servers()[1].start(persist=True)

    def stop(self, timeout: float = 90) -> int:
        """SIGINT (as Ctrl-C does) and wait for the ordered shutdown; SIGKILL after `timeout`."""
        if self.process.poll() is None:
            self.process.send_signal(signal.SIGINT)
            try:
                self.process.wait(timeout)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait()
                stop_stack(self.home)
        if self.process.stdout:
            self.process.stdout.close()
        return self.process.returncode

    def __enter__(self) -> StackHandle:
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop()


def start_stack(
    home: Path,
    ports: StackPorts | None = None,
    *,
    timeout: float = 300,
    env: Mapping[str, str] | None = None,
    extra_args: Sequence[str] = (),
) -> StackHandle:
    """Launch `mcloud up --json` for `home` (free ports unless given) and wait for its URLs.

    Raises StackStartError with the tail of its output when it exits or times out first.
    """
    home = Path(home).resolve()
    ports = ports or StackPorts.free()
    (home / "logs").mkdir(parents=True, exist_ok=True)
    output = home / "logs" / "mcloud-up.log"
    argv = [
        sys.executable, "-m", "mcloud_cli", "up", "--json", "--home", str(home),
        "--http-port", str(ports.http), "--grpc-base-port", str(ports.grpc_base),
        "--pg-port", str(ports.pg), "--valkey-port", str(ports.valkey), *extra_args,
    ]
    with output.open("ab") as err:
        process = subprocess.Popen(
            argv, stdout=subprocess.PIPE, stderr=err, stdin=subprocess.DEVNULL,
            env={**os.environ, **(env or {})}, preexec_fn=die_with_parent_hook(),
        )
    line = _read_line(process, timeout)
    if line is None:
        if process.poll() is None:
            process.send_signal(signal.SIGINT)
            try:
                process.wait(60)
            except subprocess.TimeoutExpired:
                process.kill()
        process.wait()
        raise StackStartError(
            f"mcloud up did not become ready (exit {process.returncode}):\n{tail(output, 40)}")
    return StackHandle(home=home, ports=ports, process=process, urls=json.loads(line), output=output)


def _read_line(process: subprocess.Popen, timeout: float) -> str | None:
    """The first non-empty stdout line, or None on exit / deadline (never blocks past it)."""
    assert process.stdout is not None
    fd = process.stdout.fileno()
    buf = b""
    deadline = time.monotonic() + timeout
    with selectors.DefaultSelector() as sel:
        sel.register(fd, selectors.EVENT_READ)
        while time.monotonic() < deadline:
            if not sel.select(timeout=min(0.5, max(deadline - time.monotonic(), 0))):
                if process.poll() is not None:
                    return None
                continue
            chunk = os.read(fd, 65536)
            if not chunk:
                return None
            buf += chunk
            while b"\n" in buf:
                line, buf = buf.split(b"\n", 1)
                if line.strip():
                    return line.decode()
    return None


# stopping ---------------------------------------------------------------------------------------


def stop_stack(home: Path, *, timeout: float = 90) -> list[str]:
    """Stop whatever runs from `home`: ask the `up` process (it stops everything in order); if it
    is gone or does not finish, stop the recorded children and the embedded servers directly.
    Returns what was stopped ([] when nothing ran)."""
    home = Path(home).resolve()
    state_file = home / "state.json"
    state = read_state(state_file)
    stopped: list[str] = []
    if state and state.up.alive():
        state.up.signal(signal.SIGTERM)
        if state.up.wait_gone(timeout):
            return ["mcloud up", *state.children]
        state.up.signal(signal.SIGKILL)
        state.up.wait_gone(5)
        stopped.append("mcloud up")
    if state:
        for name, rec in [(GATEWAY, state.children.get(GATEWAY)),
                          *((s, state.children.get(s)) for s in SERVICES)]:
            if rec and rec.alive():
                rec.terminate(grace=10)
                stopped.append(name)
    stopped += stop_embedded(home)
    remove_state(state_file)
    return stopped


# probing ----------------------------------------------------------------------------------------


@dataclass(frozen=True)
class ComponentStatus:
    name: str
    address: str
    up: bool


def probe_stack(urls: dict) -> list[ComponentStatus]:
    """Probe every component named in `urls` (the shape of StackConfig.urls()), in parallel."""
    pg_host, pg_port = host_port(urls["postgres"])
    vk_host, vk_port = host_port(urls["valkey"])
    checks = [
        ("postgres", f"{pg_host}:{pg_port}", lambda: tcp_ok(pg_host, pg_port)),
        ("valkey", f"{vk_host}:{vk_port}", lambda: tcp_ok(vk_host, vk_port)),
        *((s, urls["grpc"][s], lambda a=urls["grpc"][s]: grpc_serving(a)) for s in SERVICES),
        (GATEWAY, urls["gateway"], lambda: http_ok(f"{urls['gateway']}/healthz")),
    ]
    with ThreadPoolExecutor(len(checks)) as pool:
        results = list(pool.map(lambda c: c[2](), checks))
    return [ComponentStatus(name, address, ok)
            for (name, address, _), ok in zip(checks, results, strict=True)]
