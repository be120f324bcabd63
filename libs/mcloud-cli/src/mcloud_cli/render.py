"""Human output (rich) and machine output (one JSON line) of the CLI commands."""

from __future__ import annotations

import json
import sys

from rich.console import Console, Group
from rich.panel import Panel
from rich.table import Table
from rich.text import Text

from mcloud_cli.config import SERVICES
from mcloud_cli.stack import ComponentStatus

out = Console(highlight=False)
err = Console(stderr=True, highlight=False)


def json_line(data: object) -> None:
    """Exactly one line on stdout, flushed at once (a parent may be waiting for it)."""
    sys.stdout.write(json.dumps(data) + "\n")
    sys.stdout.flush()


def error(message: str, detail: str = "") -> None:
    err.print(f"[bold red]error:[/] {message}", soft_wrap=True)
    if detail:
        err.print(detail, style="dim", markup=False, soft_wrap=True)


def urls_table(urls: dict) -> Table:
    table = Table(title="mcloud", show_header=False, title_justify="left")
    table.add_column(style="bold")
    table.add_column()
    table.add_row("gateway", urls["gateway"])
    table.add_row("API docs", urls["docs"])
    for s in SERVICES:
        table.add_row(f"{s} (gRPC)", urls["grpc"][s])
    for c, url in urls.get("metrics", {}).items():
        table.add_row(f"{c} (metrics)", url)
    table.add_row("PostgreSQL", urls["postgres"])
    table.add_row("Valkey", urls["valkey"])
    table.add_row("logs", urls["logs"])
    return table


def status_table(components: list[ComponentStatus]) -> Table:
    table = Table(title="mcloud status", title_justify="left")
    table.add_column("component", style="bold")
    table.add_column("address")
    table.add_column("state")
    for c in components:
        table.add_row(c.name, c.address, "[green]up[/]" if c.up else "[red]down[/]")
    return table


def tenant_panel(name: str, tenant: dict[str, str]) -> Group:
    body = (f"[bold]tenant id[/]   {tenant['tenant_id']}\n"
            f"[bold]write key[/]   {tenant['write_key']}\n"
            f"[bold]secret key[/]  {tenant['secret_key']}")
    hint = Text("write key: events only, safe in browsers · secret key: server side, shown only once",
                style="dim")
    return Group(Panel(body, title=f"tenant {name}", title_align="left", expand=False), hint)
