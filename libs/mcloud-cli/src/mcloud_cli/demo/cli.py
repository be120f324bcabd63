"""`mcloud demo` (a demo tenant and the Rachel story) and `mcloud demo generate` (behaviour for load and
dashboards), against the stack `mcloud up` runs."""

from __future__ import annotations

import asyncio
import json
import time
import uuid
from pathlib import Path
from typing import Annotated

import httpx
import typer
from rich.markup import escape
from rich.panel import Panel
from rich.table import Table

from mcloud_cli import render
from mcloud_cli.config import DEFAULT_HOME, StackConfig, StackPorts
from mcloud_cli.state import read_state

demo_app = typer.Typer(help="A demo tenant and the Rachel story; generated behaviour for load and dashboards.")

Home = Annotated[Path, typer.Option("--home", envvar="MCLOUD_HOME", help="Folder of the running stack's state.",
                                    file_okay=False)]
Url = Annotated[str | None, typer.Option("--url", envvar="MCLOUD_URL",
                                         help="Gateway URL (default: the stack running from --home).")]


def gateway_url(home: Path, url: str | None) -> str:
    if url:
        return url.rstrip("/")
    state = read_state(home / "state.json")
    urls = state.urls if state else StackConfig.from_env(home, StackPorts()).urls()
    return urls["gateway"]


def _check_up(url: str) -> None:
    try:
        r = httpx.get(f"{url}/readyz", timeout=5)
    except httpx.HTTPError as exc:
        render.error(f"no mcloud gateway answers at {url} ({type(exc).__name__})",
                     "start the stack first: `make up` (or `mcloud up`), then run the demo in another terminal")
        raise typer.Exit(1) from None
    if r.status_code != 200:
        render.error(f"the stack at {url} is not ready (/readyz answered {r.status_code})", r.text[:500])
        raise typer.Exit(1)


def _new_tenant(home: Path, prefix: str) -> dict[str, str]:
    from mcloud_cli.tenants import TenantError, create_tenant, gateway_database_url

    name = f"{prefix}-{time.strftime('%Y%m%d-%H%M%S')}-{uuid.uuid4().hex[:4]}"
    try:
        tenant = asyncio.run(create_tenant(gateway_database_url(home), name))
    except TenantError as exc:
        render.error(str(exc))
        raise typer.Exit(1) from None
    return {"name": name, **tenant}


@demo_app.callback(invoke_without_command=True)
def demo(
    ctx: typer.Context,
    home: Home = Path(DEFAULT_HOME),
    url: Url = None,
    clock_offset_file: Annotated[Path | None, typer.Option(envvar="MCLOUD_CLOCK_OFFSET_FILE", hidden=True,
                                                           help="Test hook: the stack's clock-offset file "
                                                           "(`mcloud up --clock-offset-file`); the story moves "
                                                           "time there instead of waiting for the real clock.")
                                 ] = None,
) -> None:
    """Create a demo tenant (a sports brand) and play the Rachel story of DOMAIN.md through the HTTP API,
    printing what each step changed. Needs a running stack (`make up`)."""
    if ctx.invoked_subcommand is not None:
        return
    base = gateway_url(home, url)
    _check_up(base)
    tenant = _new_tenant(home, "demo")
    from mcloud_cli.demo.api import DemoError

    try:
        asyncio.run(_play(base, tenant, _offset_advancer(clock_offset_file) if clock_offset_file else None))
    except DemoError as exc:
        render.error(f"step \"{exc.step}\" failed: {exc.message}",
                     f"logs of every service are in {home / 'logs'}")
        raise typer.Exit(1) from None


def _offset_advancer(path: Path):
    """Moves the clock of a stack started with `--clock-offset-file PATH` (every process reads the offset)."""

    def advance(by) -> None:
        current = float(path.read_text().strip() or 0) if path.exists() else 0.0
        path.write_text(str(current + by.total_seconds()))

    return advance


async def _play(base: str, tenant: dict[str, str], advance=None) -> None:
    from mcloud_cli.demo.api import Gateway
    from mcloud_cli.demo.push import PushSink
    from mcloud_cli.demo.setup import configure
    from mcloud_cli.demo.smtp import MailSink
    from mcloud_cli.demo.story import Story

    out = render.out
    began = time.monotonic()
    async with (MailSink() as mail, PushSink() as push,
                Gateway(base, tenant["write_key"], tenant["secret_key"]) as gw):
        setup = await configure(gw, mail.port, push_url=push.url)
        lines = [f"[bold]tenant[/]      {tenant['name']} ({tenant['tenant_id']})",
                 f"[bold]write key[/]   {tenant['write_key']}",
                 f"[bold]secret key[/]  {tenant['secret_key']}",
                 f"[bold]catalogue[/]   {setup.items} items (running shoes, apparel, socks, GPS watch, energy gels, "
                 "marathon events)",
                 "[bold]loyalty[/]     Stride Club: Normal / Silver at 1,000 / Gold at 6,000 qualifying points; "
                 "100 points per order + 1 per yuan; members enrolled on sign-up",
                 "[bold]recommend[/]   intent locks after 3 views + 1 min in the cart; running shoes -> socks, "
                 "watches, energy gels",
                 f"[bold]email[/]       SMTP sink on 127.0.0.1:{mail.port} (runs while the demo runs); "
                 "in-app channel on",
                 f"[bold]push[/]        generic JSON HTTP provider (http_json) posting to the demo's push sink "
                 f"{push.url}"]
        for key, notes in setup.notes.items():
            state = "saved as a draft" if key in setup.drafts else "published"
            lines.append(f"[bold]journey[/]     {escape(setup.names.get(key, key))} {state} ({setup.journeys[key]}); "
                         f"{'adapted for the demo: ' if key not in ('store_nearby', 'post_purchase') else ''}"
                         f"{escape('; '.join(notes))}")
            if key in setup.drafts:
                lines.append(f"              not published: {escape(setup.drafts[key])}")
        out.print(Panel("\n".join(lines), title="demo tenant", title_align="left"))
        story = Story(gw, setup, mail, push, advance=advance)
        async for step in story.play():
            out.print(Panel("\n".join(escape(line) for line in step.lines), title=f"[bold]{step.title}[/]",
                            title_align="left", border_style="green"))
        out.print(f"[bold green]Rachel's story played in {time.monotonic() - began:.0f} s.[/] She is "
                  f"{story.email} (profile {story.profile_id}); look her up with the secret key, e.g.")
        out.print(f"  curl -H 'Authorization: Bearer {tenant['secret_key']}' {base}/v1/clerk/email:{story.email}",
                  soft_wrap=True, markup=False)


@demo_app.command("generate")
def generate(
    customers: Annotated[int, typer.Option(min=1, max=1_000_000, help="Visitors to simulate.")] = 200,
    days: Annotated[int, typer.Option(min=1, max=365, help="Spread over the last D days.")] = 30,
    seed: Annotated[int, typer.Option(help="Same seed, same behaviour (and the same message ids).")] = 42,
    write_key: Annotated[str | None, typer.Option("--tenant-write-key", envvar="MCLOUD_WRITE_KEY",
                                                  help="Send to this tenant (default: a new demo tenant).")] = None,
    secret_key: Annotated[str | None, typer.Option("--secret-key", envvar="MCLOUD_SECRET_KEY",
                                                   help="The tenant's secret key (catalogue, engagement).")] = None,
    tenant_json: Annotated[Path | None, typer.Option("--json", help="A tenant file as `mcloud tenant create "
                                                     "--json` prints it.", dir_okay=False, exists=True)] = None,
    engagement: Annotated[bool, typer.Option(help="Send in-app messages to members and open some.")] = True,
    concurrency: Annotated[int, typer.Option(min=1, max=64, help="Batches in flight.")] = 4,
    home: Home = Path(DEFAULT_HOME),
    url: Url = None,
) -> None:
    """Realistic behaviour through /v1/batch: browsing sessions on web and app, carts, checkouts, orders,
    sign-ups, store visits and POS orders, then in-app messages opened. Prints a summary and the ingest rate."""
    base = gateway_url(home, url)
    _check_up(base)
    if tenant_json is not None:
        data = json.loads(tenant_json.read_text().strip().splitlines()[-1])
        write_key, secret_key = data["write_key"], data.get("secret_key")
    created = None
    if not write_key:
        created = _new_tenant(home, "demo-gen")
        write_key, secret_key = created["write_key"], created["secret_key"]
    try:
        asyncio.run(_generate(base, write_key, secret_key, created, customers, days, seed, engagement, concurrency))
    except (RuntimeError, httpx.HTTPError) as exc:
        render.error(f"generate failed: {exc}")
        raise typer.Exit(1) from None


async def _generate(base: str, write_key: str, secret_key: str | None, created: dict | None, customers: int,
                    days: int, seed: int, engagement: bool, concurrency: int) -> None:
    from mcloud_cli.demo import catalog
    from mcloud_cli.demo import generate as gen
    from mcloud_cli.demo.api import DemoError, Gateway
    from mcloud_cli.demo.setup import configure

    out = render.out
    products = catalog.PRODUCTS
    async with Gateway(base, write_key, secret_key or "") as gw:
        if created is not None:
            try:
                await configure(gw, None)
            except DemoError as exc:
                raise RuntimeError(exc.message) from None
            out.print(f"demo tenant {created['name']} ({created['tenant_id']}) with the demo catalogue, program and "
                      f"journeys\n  write key {created['write_key']}\n  secret key {created['secret_key']}",
                      soft_wrap=True)
        elif secret_key:
            r = await gw.api.get("/v1/catalog/items", params={"limit": 1000})
            items = [i for i in (r.json().get("items", []) if r.status_code == 200 else [])
                     if i.get("kind", "product") == "product" and i.get("price")]
            if items:
                products = [{"id": i["id"], "categories": i.get("categories") or ["other"], "price": i["price"]}
                            for i in items]
                out.print(f"using the tenant's catalogue: {len(products)} products")
            else:
                r = await gw.api.post("/v1/catalog/items", json={"items": catalog.CATALOGUE})
                out.print("the tenant had no catalogue: the demo catalogue was added"
                          if r.status_code == 200 else "the tenant has no catalogue: using the demo catalogue's ids")
        plan = gen.plan(customers, days, seed, products=products)
        out.print(f"sending {len(plan.events):,} events for {plan.people:,} people over {days} days ...")
        sent = await gen.send(gw.sdk, plan.events, concurrency=concurrency)
        opened = clicks = (0, 0)
        if engagement and secret_key and plan.known:
            t = await gw.api.post("/v1/templates", json={
                "name": f"demo-news-{seed}-{uuid.uuid4().hex[:4]}", "channel": "in_app", "default_locale": "en",
                "variants": [{"locale": "en", "title": "New: the marathon collection",
                              "body_text": "Shoes, socks and gels for race day."}]})
            if t.status_code == 201 or t.status_code == 200:
                last = plan.known[-1]
                try:
                    await gw.until(lambda: gw.maybe(f"/v1/profiles/user_id:{last}"), 120, "the last sign-up")
                    opened = await gen.engage(gw.api, plan.known, t.json()["id"], seed)
                    clicks = await gen.click_recommendations(gw.api, plan.known, seed)
                except DemoError as exc:
                    out.print(f"[yellow]engagement skipped: {escape(exc.message)}[/]")
    counts = plan.counts()
    table = Table(title=f"mcloud demo generate (seed {seed})", title_justify="left", show_header=False)
    table.add_column(style="bold")
    table.add_column(justify="right")
    for label, value in (
        ("people", f"{plan.people:,}"), ("signed up", f"{len(plan.known):,}"), ("sessions", f"{plan.sessions:,}"),
        ("events", f"{len(plan.events):,}"), ("  product views", f"{counts['Product Viewed']:,}"),
        ("  added to cart", f"{counts['Product Added']:,}"), ("  checkouts", f"{counts['Checkout Started']:,}"),
        ("store visits", f"{plan.store_visits:,}"),
        ("orders", f"{plan.orders:,} ({plan.orders - plan.pos_orders:,} web/app, {plan.pos_orders:,} POS)"),
        ("revenue", f"{plan.revenue:,.0f} {catalog.CURRENCY}"),
        ("rejected by the gateway", f"{sent.rejected:,}"),
        ("ingest", f"{sent.rate:,.0f} events/s ({sent.seconds:.1f} s)"),
        ("in-app messages sent / opened", f"{opened[0]:,} / {opened[1]:,}"),
        ("recommendation lists served / clicked", f"{clicks[0]:,} / {clicks[1]:,}"),
    ):
        table.add_row(label, value)
    out.print(table)
