"""What runs inside `mcloud up`: preflight, servers, databases and migrations, the six child processes,
health waits, supervision with restarts, and the ordered shutdown on SIGINT/SIGTERM."""

from __future__ import annotations

import asyncio
import os
import signal
import subprocess
import threading
import time
from collections.abc import Callable
from dataclasses import asdict

from mcloud_cli.children import Child, stop_all
from mcloud_cli.config import GATEWAY, SERVICES, StackConfig, host_port, port_free
from mcloud_cli.probes import grpc_serving, http_ok, tcp_ok, wait_until
from mcloud_cli.servers import embedded_servers, running_postgres, running_valkey
from mcloud_cli.state import ProcessRecord, StackState, read_state, remove_state, write_state
from mcloud_common.db import ensure_database

MIGRATE_TIMEOUT = 300.0


class StackError(Exception):
    """`up` cannot go on; `detail` is the evidence (a log tail, the busy ports)."""

    def __init__(self, message: str, detail: str = "") -> None:
        super().__init__(message)
        self.message = message
        self.detail = detail


class Supervisor:
    """Runs one stack in the foreground until asked to stop. `say` receives progress lines."""

    def __init__(
        self,
        config: StackConfig,
        *,
        say: Callable[[str], None] = print,
        startup_timeout: float = 120.0,
    ) -> None:
        self.config = config
        self.say = say
        self.startup_timeout = startup_timeout
        self.stopping = threading.Event()
        self.pg, self.valkey = embedded_servers(config)
        self.services = [self._child(s, "serve") for s in SERVICES]
        self.gateway = self._child(GATEWAY, "serve")
        self._started_servers = False
        self._owns_state = False  # never remove the state file of another, live `up`
        self._phase = "starting"

    # lifecycle ---------------------------------------------------------------------------------

    def run(self, on_ready: Callable[[dict], None]) -> None:
        """Start everything, call `on_ready(urls)`, supervise until SIGINT/SIGTERM, stop everything.
        Raises StackError when the stack cannot start (after stopping what it had started)."""
        self.install_signal_handlers()
        try:
            self.start()
            if self.stopping.is_set():
                return
            on_ready(self.config.urls())
            self.supervise()
        finally:
            self.shutdown()

    def install_signal_handlers(self) -> None:
        def handler(signum: int, _frame: object) -> None:
            if not self.stopping.is_set():
                self.say(f"{signal.Signals(signum).name}: stopping")
            self.stopping.set()

        signal.signal(signal.SIGINT, handler)
        signal.signal(signal.SIGTERM, handler)

    def start(self) -> None:
        self.preflight()
        self._write_state()
        self.start_servers()
        self.prepare_databases()
        if self.stopping.is_set():
            return
        self._start_and_wait(self.services, "services", lambda c: grpc_serving(self._address(c)))
        if self.stopping.is_set():
            return
        readyz = f"{self.config.gateway_url}/readyz"
        self._start_and_wait([self.gateway], "gateway", lambda _: http_ok(readyz))
        self._phase = "up"
        self._write_state()

    # preflight ---------------------------------------------------------------------------------

    def preflight(self) -> None:
        """Refuse to start next to a live stack or on busy ports; clean up after a crashed one."""
        cfg = self.config
        state = read_state(cfg.state_file)
        if state and state.up.pid != os.getpid() and state.up.alive():
            raise StackError(f"mcloud is already running from {cfg.home} (pid {state.up.pid}); "
                             "use `mcloud down` first")
        if state:
            leftovers = [name for name, rec in state.children.items() if rec.alive()]
            for name in leftovers:
                state.children[name].terminate(grace=5)
            remove_state(cfg.state_file)
            self.say("cleaned up after an earlier `mcloud up` that did not stop"
                     + (f" (stopped {', '.join(leftovers)})" if leftovers else ""))
        ports = cfg.ports_to_check()
        if cfg.embedded_postgres and (pg := running_postgres(cfg.postgres_dir)):
            if pg.port != cfg.ports.pg:
                raise StackError(f"the embedded PostgreSQL of {cfg.home} is already running on port "
                                 f"{pg.port}, not {cfg.ports.pg}; use `mcloud down` or --pg-port {pg.port}")
            ports.pop("postgres")  # ours, left by a crash: reused as it is
        if cfg.embedded_valkey and (vk := running_valkey(cfg.valkey_dir)):
            if vk.port not in (None, cfg.ports.valkey):
                raise StackError(f"the embedded Valkey of {cfg.home} is already running on port {vk.port}, "
                                 f"not {cfg.ports.valkey}; use `mcloud down` or --valkey-port {vk.port}")
            ports.pop("valkey")
        busy = {name: port for name, port in ports.items() if not port_free(port)}
        if busy:
            lines = "\n".join(f"  {name}: 127.0.0.1:{port}" for name, port in busy.items())
            raise StackError("ports already in use (nothing was started); free them or choose others "
                             "with --http-port/--grpc-base-port/--pg-port/--valkey-port", lines)
        for what, url in (("DATABASE_URL", cfg.external_database_url), ("REDIS_URL", cfg.external_redis_url)):
            if url and not tcp_ok(*host_port(url), timeout=2):
                raise StackError(f"{what} points at {host_port(url)[0]}:{host_port(url)[1]}, "
                                 "which does not answer")

    # servers and databases ---------------------------------------------------------------------

    def start_servers(self) -> None:
        cfg = self.config
        self.config.logs_dir.mkdir(parents=True, exist_ok=True)
        try:
            if cfg.embedded_postgres:
                fresh = not (cfg.postgres_dir / "PG_VERSION").exists()
                self.say("initialising PostgreSQL (first run)" if fresh else "starting PostgreSQL")
                self._started_servers = True
                self.pg.start()
            if cfg.embedded_valkey:
                self.say("starting Valkey")
                self._started_servers = True
                self.valkey.start(persist=True)
        except subprocess.CalledProcessError as exc:
            out = (exc.stderr or b"") + (exc.stdout or b"")
            raise StackError(f"could not start {exc.cmd[0]}", out.decode(errors="replace")[-2000:]) from None
        except RuntimeError as exc:
            raise StackError(str(exc).splitlines()[0], "\n".join(str(exc).splitlines()[1:])) from None

    def prepare_databases(self) -> None:
        """Create the six databases one by one, then migrate them in parallel (each its own)."""
        names = [*SERVICES, GATEWAY]

        async def create_all() -> list[str]:
            return [n for n in names if await ensure_database(self.config.database_url(n))]

        try:
            created = asyncio.run(create_all())
        except Exception as exc:
            raise StackError("could not create the databases", f"{type(exc).__name__}: {exc}") from None
        if created:
            self.say(f"created databases: {', '.join('mcloud_' + n for n in created)}")
        self.say("migrating")
        migrations = [self._child(n, "migrate") for n in names]
        for m in migrations:
            m.start()
        wait_until(lambda: not any(m.running() for m in migrations), timeout=MIGRATE_TIMEOUT,
                   abort=self.stopping.is_set)
        stop_all([m for m in migrations if m.running()], grace=5)
        failed = [m for m in migrations if m.returncode() != 0]
        if failed and not self.stopping.is_set():
            m = failed[0]
            code = m.returncode()
            why = "timed out" if code is None or code < 0 else f"exited with code {code}"
            raise StackError(f"`python -m {m.name} migrate` {why} (log: {m.log})", m.log_tail())

    # children ----------------------------------------------------------------------------------

    def _child(self, name: str, command: str) -> Child:
        cfg = self.config
        return Child.python_module(name, name, command, cfg.child_env(name), cfg.log_file(name))

    def _address(self, child: Child) -> str:
        return self.config.grpc_address(child.name)

    def _start_and_wait(self, children: list[Child], what: str, healthy: Callable[[Child], bool]) -> None:
        self.say(f"starting {what}")
        for c in children:
            c.start()
        self._write_state()
        pending = list(children)
        deadline = time.monotonic() + self.startup_timeout
        while pending and not self.stopping.is_set():
            for c in list(pending):
                if not c.running():
                    raise StackError(f"{c.name} exited with code {c.returncode()} while starting "
                                     f"(log: {c.log})", c.log_tail())
                if healthy(c):
                    pending.remove(c)
            if pending and time.monotonic() > deadline:
                c = pending[0]
                raise StackError(f"{', '.join(p.name for p in pending)} not healthy after "
                                 f"{self.startup_timeout:.0f}s (log: {c.log})", c.log_tail())
            if pending:
                self.stopping.wait(0.1)

    def supervise(self, interval: float = 0.2) -> None:
        """Restart children that die on their own, with backoff; give up on one that keeps dying."""
        while not self.stopping.wait(interval):
            for c in [*self.services, self.gateway]:
                if c.gave_up:
                    continue
                if c.process is None:
                    if c.restart_at is not None and time.monotonic() >= c.restart_at:
                        c.start()
                        self.say(f"{c.name} restarted (pid {c.pid})")
                        self._write_state()
                    continue
                if c.running():
                    continue
                code = c.returncode()
                delay = c.schedule_restart()
                self._write_state()  # drop its dead pid from state.json
                if delay < 0:
                    self.say(f"{c.name} exited with code {code}; giving up after {c.quick_failures} quick "
                             f"failures in a row (log: {c.log})")
                else:
                    self.say(f"{c.name} exited with code {code}; restarting in {delay:.1f}s")

    def shutdown(self) -> None:
        """Gateway first, then the services, then Valkey and PostgreSQL; data stays."""
        self._phase = "stopping"
        if self.gateway.running() or any(s.running() for s in self.services):
            self._write_state()
            self.say("stopping gateway")
            stop_all([self.gateway])
            self.say("stopping services")
            stop_all(self.services)
        if self._started_servers:
            if self.config.embedded_valkey:
                self.say("stopping Valkey")
                self.valkey.stop()
            if self.config.embedded_postgres:
                self.say("stopping PostgreSQL")
                self.pg.stop()
        if self._owns_state:
            remove_state(self.config.state_file)

    # state -------------------------------------------------------------------------------------

    def _write_state(self) -> None:
        self._owns_state = True
        children = {c.name: rec for c in [*self.services, self.gateway]
                    if c.running() and (rec := c.record())}
        write_state(self.config.state_file, StackState(
            up=ProcessRecord.of(os.getpid()),
            phase=self._phase,
            ports=asdict(self.config.ports),
            urls=self.config.urls(),
            embedded_postgres=self.config.embedded_postgres,
            embedded_valkey=self.config.embedded_valkey,
            children=children,
        ))
