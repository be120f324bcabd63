"""`mcloud`: run the whole marketing cloud on this machine (up, status, down) and create tenants."""

from __future__ import annotations

import asyncio
from pathlib import Path
from typing import Annotated

import typer

from mcloud_cli import render
from mcloud_cli.config import (
    DEFAULT_GRPC_BASE_PORT,
    DEFAULT_HOME,
    DEFAULT_HTTP_PORT,
    DEFAULT_PG_PORT,
    DEFAULT_VALKEY_PORT,
    StackConfig,
    StackPorts,
)
from mcloud_cli.demo.cli import demo_app
from mcloud_cli.identity_import import identity_app
from mcloud_cli.recommend_cli import recommend_app
from mcloud_cli.stack import probe_stack, stop_stack
from mcloud_cli.state import read_state

app = typer.Typer(help=__doc__, no_args_is_help=True, add_completion=False, pretty_exceptions_enable=False)
tenant_app = typer.Typer(help="Tenants and their API keys.", no_args_is_help=True)
app.add_typer(tenant_app, name="tenant")
app.add_typer(identity_app, name="identity")
app.add_typer(recommend_app, name="recommend")
app.add_typer(demo_app, name="demo")

Home = Annotated[Path, typer.Option("--home", envvar="MCLOUD_HOME", help="Folder of the stack's data, logs "
                                    "and state.", file_okay=False)]
Json = Annotated[bool, typer.Option("--json", help="One JSON object on one line instead of tables.")]
DEFAULT_HOME_PATH = Path(DEFAULT_HOME)


@app.command()
def up(
    home: Home = DEFAULT_HOME_PATH,
    http_port: Annotated[int, typer.Option(help="Gateway HTTP port.")] = DEFAULT_HTTP_PORT,
    grpc_base_port: Annotated[int, typer.Option(help="identity's gRPC port; loyalty, journey, recommend "
                                                "and messaging take the next four.")
                              ] = DEFAULT_GRPC_BASE_PORT,
    pg_port: Annotated[int, typer.Option(help="Embedded PostgreSQL port.")] = DEFAULT_PG_PORT,
    valkey_port: Annotated[int, typer.Option(help="Embedded Valkey port.")] = DEFAULT_VALKEY_PORT,
    timeout: Annotated[float, typer.Option(help="Seconds each group of processes may take to become "
                                           "healthy.")] = 120.0,
    clock_offset_file: Annotated[str | None, typer.Option(envvar="MCLOUD_CLOCK_OFFSET_FILE",
                                                          help="Test hook passed to every process as "
                                                          "<NAME>_CLOCK_OFFSET_FILE.")] = None,
    json_output: Json = False,
) -> None:
    """Start PostgreSQL, Valkey, the five services and the gateway; supervise them until Ctrl-C.

    DATABASE_URL / REDIS_URL, when set, replace the embedded PostgreSQL / Valkey.
    """
    from mcloud_cli.supervisor import StackError, Supervisor

    config = StackConfig.from_env(home, StackPorts(http_port, grpc_base_port, pg_port, valkey_port),
                                  clock_offset_file)
    progress = render.err if json_output else render.out

    def ready(urls: dict) -> None:
        if json_output:
            render.json_line(urls)
        else:
            render.out.print(render.urls_table(urls))
            render.out.print(f"[dim]Ctrl-C stops it; data stays in {config.home}[/]")
            render.out.print("[bold green]mcloud is up[/]")

    supervisor = Supervisor(config, say=lambda m: progress.print(f"[dim]·[/] {m}", soft_wrap=True),
                            startup_timeout=timeout)
    try:
        supervisor.run(on_ready=ready)
    except StackError as exc:
        render.error(exc.message, exc.detail)
        raise typer.Exit(1) from None
    progress.print("mcloud stopped")


@app.command()
def down(home: Home = DEFAULT_HOME_PATH) -> None:
    """Stop the stack running from HOME (exit 0 when nothing runs)."""
    stopped = stop_stack(home)
    render.out.print(f"stopped: {', '.join(stopped)}" if stopped else "nothing was running")


@app.command()
def status(home: Home = DEFAULT_HOME_PATH, json_output: Json = False) -> None:
    """Probe every component; exit 1 when any is down."""
    state = read_state(home / "state.json")
    urls = state.urls if state else StackConfig.from_env(home, StackPorts()).urls()
    components = probe_stack(urls)
    ok = all(c.up for c in components)
    if json_output:
        render.json_line({"up": ok, "components": {c.name: {"address": c.address, "up": c.up}
                                                   for c in components}})
    else:
        render.out.print(render.status_table(components))
    if not ok:
        raise typer.Exit(1)


@tenant_app.command("create")
def tenant_create(
    name: Annotated[str, typer.Argument(help="Tenant name (unique).")],
    home: Home = DEFAULT_HOME_PATH,
    json_output: Json = False,
) -> None:
    """Create a tenant; prints its id, a publishable write key and a secret key."""
    from mcloud_cli.tenants import TenantError, create_tenant, gateway_database_url

    try:
        tenant = asyncio.run(create_tenant(gateway_database_url(home), name))
    except TenantError as exc:
        render.error(str(exc))
        raise typer.Exit(1) from None
    if json_output:
        render.json_line(tenant)
    else:
        render.out.print(render.tenant_panel(name, tenant))
