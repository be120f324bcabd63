"""The embedded PostgreSQL and Valkey of one stack home: which are running, on which port, and
how to stop them without knowing the port (pg_ctl by data folder, Valkey by pid file)."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import psutil

from mcloud_cli.config import StackConfig
from mcloud_common.embedded import EmbeddedPostgres, EmbeddedValkey


@dataclass(frozen=True)
class RunningServer:
    pid: int
    port: int | None


def running_postgres(data_dir: Path) -> RunningServer | None:
    """The postmaster using `data_dir`, from its postmaster.pid (line 1 pid, line 4 port)."""
    try:
        lines = (data_dir / "postmaster.pid").read_text().splitlines()
        pid = int(lines[0])
        port = int(lines[3]) if len(lines) > 3 and lines[3].strip() else None
    except (OSError, ValueError, IndexError):
        return None
    if not _alive(pid, "postgres"):
        return None
    return RunningServer(pid, port)


def running_valkey(data_dir: Path) -> RunningServer | None:
    try:
        pid = int((data_dir / "valkey.pid").read_text().strip())
    except (OSError, ValueError):
        return None
    if not _alive(pid, "valkey"):
        return None
    port = None
    try:
        for conn in psutil.Process(pid).net_connections(kind="tcp"):
            if conn.status == psutil.CONN_LISTEN:
                port = conn.laddr.port
                break
    except psutil.Error:
        pass
    return RunningServer(pid, port)


def _alive(pid: int, name_part: str) -> bool:
    try:
        proc = psutil.Process(pid)
        return proc.status() != psutil.STATUS_ZOMBIE and name_part in proc.name()
    except psutil.Error:
        return False


def _wait_gone(pid: int, timeout: float = 10) -> None:
    try:
        psutil.Process(pid).wait(timeout)
    except psutil.TimeoutExpired:
        psutil.Process(pid).kill()
    except psutil.Error:
        pass


def embedded_servers(config: StackConfig) -> tuple[EmbeddedPostgres, EmbeddedValkey]:
    return (EmbeddedPostgres(config.postgres_dir, config.ports.pg),
            EmbeddedValkey(config.valkey_dir, config.ports.valkey))


def stop_embedded(home: Path) -> list[str]:
    """Stop whatever embedded server runs from `home` (any port); names of those stopped."""
    stopped = []
    pg_dir, valkey_dir = home / "postgres", home / "valkey"
    if running_postgres(pg_dir):
        EmbeddedPostgres(pg_dir, 0).stop()
        stopped.append("postgres")
    valkey = running_valkey(valkey_dir)
    if valkey:
        EmbeddedValkey(valkey_dir, valkey.port or 0).stop()
        _wait_gone(valkey.pid)
        stopped.append("valkey")
    return stopped
