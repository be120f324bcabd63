"""Where the local stack lives and which ports it uses: one `StackConfig`, derived from the CLI flags
and the environment, from which every address, URL, path and child-process environment follows."""

from __future__ import annotations

import os
import random
import socket
from dataclasses import dataclass, field
from pathlib import Path
from urllib.parse import urlsplit

from mcloud_common.db import with_database

SERVICES: tuple[str, ...] = ("identity", "loyalty", "journey", "recommend", "messaging")
GATEWAY = "gateway"
COMPONENTS: tuple[str, ...] = ("postgres", "valkey", *SERVICES, GATEWAY)

DEFAULT_HOME = ".mcloud"
DEFAULT_HTTP_PORT = 8080
DEFAULT_GRPC_BASE_PORT = 50051
DEFAULT_PG_PORT = 55432
DEFAULT_VALKEY_PORT = 56379
HOST = "127.0.0.1"


def database_name(component: str) -> str:
    return f"mcloud_{component}"


METRICS_OFFSET = 1000  # a process's Prometheus /metrics port is this far above the stack's gRPC ports


@dataclass(frozen=True)
class StackPorts:
    """The TCP ports of one stack; service i listens on grpc_base + i (in SERVICES order). Metrics
    (Prometheus /metrics) follow the gRPC ports: service i on grpc_base + 1000 + i, the gateway on
    grpc_base + 1000 + 5 (51051..51056 by default)."""

    http: int = DEFAULT_HTTP_PORT
    grpc_base: int = DEFAULT_GRPC_BASE_PORT
    pg: int = DEFAULT_PG_PORT
    valkey: int = DEFAULT_VALKEY_PORT

    def grpc(self, service: str) -> int:
        return self.grpc_base + SERVICES.index(service)

    def metrics(self, component: str) -> int:
        """The /metrics port of a service or the gateway."""
        index = len(SERVICES) if component == GATEWAY else SERVICES.index(component)
        return self.grpc_base + METRICS_OFFSET + index

    @classmethod
    def free(cls) -> StackPorts:
        """Ports nobody listens on right now (for tests that run a stack beside others)."""
        n = len(SERVICES)
        while True:
            ports = cls(http=_free_port(), grpc_base=_free_port_range(n, also_at=((METRICS_OFFSET, n + 1),)),
                        pg=_free_port(), valkey=_free_port())
            taken = [ports.http, ports.pg, ports.valkey, *(ports.grpc(s) for s in SERVICES),
                     *(ports.metrics(c) for c in (*SERVICES, GATEWAY))]
            if len(set(taken)) == len(taken):  # nothing picked twice
                return ports


@dataclass(frozen=True)
class StackConfig:
    home: Path
    ports: StackPorts = field(default_factory=StackPorts)
    # Servers named by DATABASE_URL / REDIS_URL replace the embedded ones when set.
    external_database_url: str | None = None
    external_redis_url: str | None = None
    clock_offset_file: str | None = None

    @classmethod
    def from_env(cls, home: Path, ports: StackPorts, clock_offset_file: str | None = None) -> StackConfig:
        return cls(
            home=home.resolve(),
            ports=ports,
            external_database_url=os.environ.get("DATABASE_URL") or None,
            external_redis_url=os.environ.get("REDIS_URL") or None,
            clock_offset_file=clock_offset_file,
        )

    # paths
    @property
    def state_file(self) -> Path:
        return self.home / "state.json"

    @property
    def logs_dir(self) -> Path:
        return self.home / "logs"

    @property
    def postgres_dir(self) -> Path:
        return self.home / "postgres"

    @property
    def valkey_dir(self) -> Path:
        return self.home / "valkey"

    def log_file(self, name: str) -> Path:
        return self.logs_dir / f"{name}.log"

    # servers
    @property
    def embedded_postgres(self) -> bool:
        return self.external_database_url is None

    @property
    def embedded_valkey(self) -> bool:
        return self.external_redis_url is None

    @property
    def postgres_url(self) -> str:
        if self.external_database_url:
            return with_database(self.external_database_url, "postgres")
        return f"postgresql://postgres@{HOST}:{self.ports.pg}/postgres"

    @property
    def redis_url(self) -> str:
        return self.external_redis_url or f"redis://{HOST}:{self.ports.valkey}/0"

    def database_url(self, component: str) -> str:
        return with_database(self.postgres_url, database_name(component))

    # addresses
    def grpc_address(self, service: str) -> str:
        return f"{HOST}:{self.ports.grpc(service)}"

    @property
    def gateway_url(self) -> str:
        return f"http://{HOST}:{self.ports.http}"

    def metrics_port(self, component: str) -> int:
        """The /metrics port of a component: from the stack's ports, unless <NAME>_METRICS_PORT is set in
        our environment (0 turns it off)."""
        given = os.environ.get(f"{component.upper()}_METRICS_PORT", "").strip()
        return int(given) if given.isdigit() else self.ports.metrics(component)

    def metrics_urls(self) -> dict[str, str]:
        return {c: f"http://{HOST}:{port}/metrics" for c in (*SERVICES, GATEWAY) if (port := self.metrics_port(c))}

    def ports_to_check(self) -> dict[str, int]:
        """Ports that must be free before `up` starts its own processes on them."""
        ports = {GATEWAY: self.ports.http, **{s: self.ports.grpc(s) for s in SERVICES}}
        ports.update({f"{c} metrics": port for c in (*SERVICES, GATEWAY) if (port := self.metrics_port(c))})
        if self.embedded_postgres:
            ports["postgres"] = self.ports.pg
        if self.embedded_valkey:
            ports["valkey"] = self.ports.valkey
        return ports

    def urls(self) -> dict:
        """Everything a user (or an e2e test) needs to reach the stack."""
        return {
            "gateway": self.gateway_url,
            "docs": f"{self.gateway_url}/docs",
            "grpc": {s: self.grpc_address(s) for s in SERVICES},
            "metrics": self.metrics_urls(),
            "postgres": self.postgres_url,
            "valkey": self.redis_url,
            "databases": {c: self.database_url(c) for c in (*SERVICES, GATEWAY)},
            "logs": str(self.logs_dir),
            "home": str(self.home),
        }

    def child_env(self, component: str) -> dict[str, str]:
        """Environment of `python -m <component> ...` (inherits ours, adds its own settings)."""
        env = dict(os.environ)
        env["PYTHONUNBUFFERED"] = "1"
        prefix = component.upper()
        env[f"{prefix}_DATABASE_URL"] = self.database_url(component)
        env[f"{prefix}_REDIS_URL"] = self.redis_url
        env[f"{prefix}_METRICS_HOST"] = HOST
        env[f"{prefix}_METRICS_PORT"] = str(self.metrics_port(component))
        if self.clock_offset_file:
            env[f"{prefix}_CLOCK_OFFSET_FILE"] = self.clock_offset_file
        if component == GATEWAY:
            env["GATEWAY_HTTP_HOST"] = HOST
            env["GATEWAY_HTTP_PORT"] = str(self.ports.http)
            for s in SERVICES:
                env[f"GATEWAY_{s.upper()}_TARGET"] = self.grpc_address(s)
        else:
            env[f"{prefix}_GRPC_HOST"] = HOST
            env[f"{prefix}_GRPC_PORT"] = str(self.ports.grpc(component))
            for s in SERVICES:  # where the other services answer (journey calls loyalty, identity, messaging)
                if s != component:
                    env[f"{prefix}_{s.upper()}_TARGET"] = self.grpc_address(s)
            if component == "messaging":  # links in messages (tracking, unsubscribe) point at the gateway
                env.setdefault("MESSAGING_PUBLIC_URL", f"http://{HOST}:{self.ports.http}")
        return env


def host_port(url: str) -> tuple[str, int]:
    """(host, port) of a postgresql:// or redis:// URL, with the protocol's default port."""
    parts = urlsplit(url)
    default = 6379 if parts.scheme.startswith("redis") else 5432
    return parts.hostname or HOST, parts.port or default


def _ephemeral_range() -> tuple[int, int]:
    try:
        low, high = Path("/proc/sys/net/ipv4/ip_local_port_range").read_text().split()
        return int(low), int(high)
    except (OSError, ValueError):
        return 32768, 60999


def _free_port() -> int:
    """A port nothing listens on, below the kernel's ephemeral range: a port the kernel hands out (bind to
    port 0) can be taken by any outgoing connection before the service listening on it has started."""
    low, _ = _ephemeral_range()
    rng = random.SystemRandom()
    for _ in range(200):
        port = rng.randrange(10_000, max(low, 10_001))
        if port_free(port):
            return port
    with socket.socket() as s:
        s.bind((HOST, 0))
        return s.getsockname()[1]


def _free_port_range(n: int, also_at: tuple[tuple[int, int], ...] = ()) -> int:
    """A base port b such that b .. b+n-1 are all bindable right now, and so are the ranges
    b+offset .. b+offset+count-1 for each (offset, count) in `also_at`."""
    ranges = [(0, n), *also_at]
    for _ in range(200):
        base = _free_port()
        if any(base + offset + count > 65535 for offset, count in ranges):
            continue
        if all(port_free(base + offset + i) for offset, count in ranges for i in range(count)):
            return base
    raise RuntimeError(f"no {n} consecutive free ports found")


def port_free(port: int, host: str = HOST) -> bool:
    """True when nothing listens on host:port (a bind succeeds and a connect is refused)."""
    with socket.socket() as s:
        s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)  # TIME_WAIT leftovers are not "busy"
        try:
            s.bind((host, port))
        except OSError:
            return False
    with socket.socket() as s:
        s.settimeout(0.2)
        return s.connect_ex((host, port)) != 0
