"""The one entry point every service shares: `python -m <service> [serve|migrate]`.

serve   : configure logging/tracing, build the service (its `build(settings)`), serve until SIGTERM.
migrate : create the service's database if missing and run its Alembic migrations to head.
"""

from __future__ import annotations

import asyncio
import sys
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import TypeVar

from pydantic import ValidationError

from mcloud_common.db import ensure_database
from mcloud_common.grpc_server import GrpcService
from mcloud_common.heap import freeze_long_lived
from mcloud_common.logs import configure_logging
from mcloud_common.metrics import serve_metrics
from mcloud_common.migrations import upgrade
from mcloud_common.settings import ProcessSettings
from mcloud_common.telemetry import configure_tracing

S = TypeVar("S", bound=ProcessSettings)


def load_settings(settings_cls: type[S]) -> S:
    """Build settings from the environment, or exit with a readable message (fail fast)."""
    try:
        return settings_cls()
    except ValidationError as exc:
        prefix = settings_cls.model_config.get("env_prefix", "")
        lines = [f"  {prefix}{'.'.join(map(str, e['loc'])).upper()}: {e['msg']}" for e in exc.errors()]
        raise SystemExit(f"invalid configuration for {settings_cls.__name__}:\n" + "\n".join(lines)) from None


async def serve_until_stopped(service: GrpcService) -> None:
    await service.start()
    service.install_signal_handlers()
    await service.wait()


def main(
    *,
    settings_cls: type[S],
    build: Callable[[S], Awaitable[GrpcService]],
    migrations: Path,
    argv: list[str] | None = None,
) -> None:
    args = sys.argv[1:] if argv is None else argv
    command = args[0] if args else "serve"
    settings = load_settings(settings_cls)
    if command == "migrate":
        asyncio.run(ensure_database(settings.database_url))
        upgrade(migrations, settings.database_url)
        print(f"{settings.service_name}: migrated")
        return
    if command != "serve":
        raise SystemExit(f"unknown command {command!r}: use serve or migrate")
    configure_logging(settings.service_name, settings.log_level, settings.log_json)
    configure_tracing(settings.service_name, settings.otlp_endpoint)
    try:
        import uvloop

        uvloop.install()
    except ImportError:
        pass

    metrics_port = getattr(settings, "metrics_port", 0)
    if metrics_port:
        serve_metrics(metrics_port, getattr(settings, "metrics_host", "127.0.0.1"))

    async def run() -> None:
        service = await build(settings)
        freeze_long_lived(collect=True)  # before serving: the pause is harmless here
        await serve_until_stopped(service)

    asyncio.run(run())
