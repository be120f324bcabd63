"""`python -m gateway serve` (uvicorn, uvloop, httptools; graceful stop on SIGTERM) and
`python -m gateway migrate` (create the gateway database if missing, then alembic upgrade head)."""

from __future__ import annotations

import asyncio
import signal
import sys
from types import FrameType

import uvicorn

from gateway.metrics import serve as serve_metrics
from gateway.repo import MIGRATIONS
from gateway.settings import GatewaySettings
from mcloud_common.db import ensure_database
from mcloud_common.logs import configure_logging
from mcloud_common.migrations import upgrade
from mcloud_common.service_main import load_settings
from mcloud_common.telemetry import configure_tracing


def migrate(settings: GatewaySettings) -> None:
    """Create the gateway's database if missing and migrate it to head (synchronous)."""
    asyncio.run(ensure_database(settings.database_url))
    upgrade(MIGRATIONS, settings.database_url)


class _Server(uvicorn.Server):
    """uvicorn stops gracefully on SIGTERM (stop accepting, finish in-flight requests, run the
    lifespan exit) and then re-raises the signal; exit 0 instead, as the gRPC services do."""

    def handle_exit(self, sig: int, frame: FrameType | None) -> None:
        super().handle_exit(sig, frame)
        captured = getattr(self, "_captured_signals", None)
        if sig == signal.SIGTERM and captured and captured[-1] == sig:
            captured.pop()


def serve(settings: GatewaySettings) -> None:
    from gateway.app import create_app

    configure_logging(settings.service_name, settings.log_level, settings.log_json)
    configure_tracing(settings.service_name, settings.otlp_endpoint)
    serve_metrics(settings)
    config = uvicorn.Config(
        create_app(settings),
        host=settings.http_host,
        port=settings.http_port,
        loop="uvloop",
        http="httptools",
        lifespan="on",
        access_log=False,
        log_config=None,
        timeout_graceful_shutdown=10,
        proxy_headers=False,
        server_header=False,
    )
    _Server(config).run()


def main(argv: list[str] | None = None) -> None:
    args = sys.argv[1:] if argv is None else argv
    command = args[0] if args else "serve"
    if command not in ("serve", "migrate"):
        raise SystemExit(f"unknown command {command!r}: use serve or migrate")
    settings = load_settings(GatewaySettings)
    if command == "migrate":
        migrate(settings)
        print("gateway: migrated")
        return
    serve(settings)


if __name__ == "__main__":
    main()
