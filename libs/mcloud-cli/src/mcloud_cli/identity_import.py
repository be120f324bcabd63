"""`mcloud identity import FILE.csv`: stream a CRM/POS customer file to the gateway's bulk import API in
chunks, with a progress bar; run it again with the same import id and it resumes after the last row the
server stored. The file is read line by line (never loaded whole), so a million rows take little memory."""

from __future__ import annotations

import codecs
import csv
import hashlib
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Annotated, Any

import typer

from mcloud_cli import render

identity_app = typer.Typer(help="The customer data platform (identity-svc) through the gateway.",
                           no_args_is_help=True)

MAX_CHUNK_BYTES = 768 * 1024  # the gateway refuses bodies over 1 MiB outside the tracking API
RETRIES = 6
_RETRY_STATUSES = {429, 502, 503, 504}


class ImportFailed(Exception):
    def __init__(self, message: str, detail: str = "") -> None:
        super().__init__(message)
        self.message = message
        self.detail = detail


def default_import_id(path: Path) -> str:
    """Stable for one file: a hash of its absolute path and size (the same file resumes)."""
    resolved = path.resolve()
    digest = hashlib.sha256(f"{resolved}\x1f{resolved.stat().st_size}".encode()).hexdigest()
    return f"file-{digest[:24]}"


class _Lines:
    """The file's lines, decoded, counting the bytes read (for the progress bar)."""

    def __init__(self, raw, encoding: str) -> None:
        self._raw = raw
        self._encoding = encoding
        self._decoder = codecs.getincrementaldecoder(encoding)()
        self.consumed = 0
        self.line = 0

    def __iter__(self) -> Iterator[str]:
        for chunk in self._raw:
            self.consumed += len(chunk)
            self.line += 1
            try:
                yield self._decoder.decode(chunk)
            except UnicodeDecodeError as exc:
                raise ImportFailed(f"line {self.line} is not valid {self._encoding}",
                                   f"{exc}; pass --encoding (e.g. gb18030 for files saved by Excel in China)") from None


def read_rows(path: Path, encoding: str) -> Iterator[tuple[int, int, list[str]]]:
    """(bytes read so far, row number, cells) per data row; the header is the first yield, number 0.
    Rows are numbered from 1 after the header; blank lines keep their number but are not yielded."""
    with path.open("rb") as raw:
        lines = _Lines(raw, encoding)
        for number, cells in enumerate(csv.reader(lines)):
            if number and not any(c.strip() for c in cells):
                continue
            yield lines.consumed, number, cells


class Gateway:
    """The few bulk-import calls, retried on the statuses that mean "later" (the API is idempotent:
    rows up to last_row are skipped and message ids dedupe)."""

    def __init__(self, url: str, key: str, timeout: float = 120.0) -> None:
        import httpx

        self._http = httpx.Client(base_url=url.rstrip("/"), timeout=timeout,
                                  headers={"Authorization": f"Bearer {key}", "Content-Type": "application/json"})
        self._transport_errors = (httpx.TransportError,)

    def close(self) -> None:
        self._http.close()

    def call(self, method: str, path: str, body: Any = None) -> dict:
        import orjson

        content = orjson.dumps(body) if body is not None else None
        for attempt in range(1, RETRIES + 1):
            try:
                response = self._http.request(method, path, content=content)
            except self._transport_errors as exc:
                if attempt == RETRIES:
                    raise ImportFailed(f"cannot reach the gateway: {type(exc).__name__}: {exc}") from None
                time.sleep(min(0.5 * 2 ** attempt, 10))
                continue
            if response.status_code in _RETRY_STATUSES and attempt < RETRIES:
                wait = response.headers.get("retry-after", "")
                time.sleep(float(wait) if wait.replace(".", "", 1).isdigit() else min(0.5 * 2 ** attempt, 10))
                continue
            if response.status_code >= 400:
                try:
                    problem = response.json()
                except ValueError:
                    problem = {}
                code = problem.get("code", str(response.status_code))
                raise ImportFailed(f"{method} {path}: {response.status_code} {code}", problem.get("detail", ""))
            return response.json()
        raise AssertionError("unreachable")


def run_import(path: Path, *, source: str, url: str, key: str, import_id: str, chunk: int, encoding: str,
               rejects: Path | None, progress: bool) -> dict:
    """Send the file; the final report (accepted, merged, rejected by code) with "seconds" added."""
    from rich.progress import BarColumn, DownloadColumn, Progress, TextColumn, TimeRemainingColumn

    size = path.stat().st_size
    rows = read_rows(path, encoding)
    try:
        _, _, header = next(rows)
    except StopIteration:
        raise ImportFailed(f"{path} is empty: the first line must be the header") from None
    gateway = Gateway(url, key)
    reject_file = rejects.open("a", newline="", encoding="utf-8") if rejects else None
    reject_writer = csv.writer(reject_file) if reject_file else None
    started = time.monotonic()
    bar = Progress(TextColumn("[bold]{task.description}"), BarColumn(), DownloadColumn(), TimeRemainingColumn(),
                   TextColumn("{task.fields[status]}"), console=render.err, disable=not progress, transient=False)
    try:
        report = gateway.call("POST", "/v1/imports", {"import_id": import_id, "name": path.name, "source": source,
                                                       "columns": header})
        resume_after = report["last_row"]
        with bar:
            task = bar.add_task(f"import {path.name}", total=size, status="")
            pending: list[dict] = []
            pending_bytes = 0

            def flush() -> None:
                nonlocal report, pending, pending_bytes
                if not pending:
                    return
                answer = gateway.call("POST", f"/v1/imports/{import_id}/rows", {"rows": pending})
                report = answer["report"]
                if reject_writer is not None:
                    reject_writer.writerows((r["number"], r["code"], r["detail"]) for r in answer["rejected"])
                pending, pending_bytes = [], 0

            for consumed, number, cells in rows:
                if number > resume_after:
                    pending.append({"number": number, "cells": cells})
                    pending_bytes += sum(len(c) for c in cells) + 8 * len(cells) + 24
                    if len(pending) >= chunk or pending_bytes >= MAX_CHUNK_BYTES:
                        flush()
                        bar.update(task, completed=consumed, status=_status(report))
                elif number % 10_000 == 0:
                    bar.update(task, completed=consumed, status=f"skipping rows stored before ({number:,})")
            flush()
            bar.update(task, completed=size, status=_status(report))
        final = gateway.call("GET", f"/v1/imports/{import_id}")
    finally:
        gateway.close()
        if reject_file is not None:
            reject_file.close()
    final["seconds"] = round(time.monotonic() - started, 3)
    final["resumed_after"] = resume_after
    return final


def _status(report: dict) -> str:
    return f"row {report['last_row']:,} · {report['accepted']:,} accepted · {report['rejected']:,} rejected"


def _report_table(report: dict):
    from rich.table import Table

    table = Table(title=f"import {report['import_id']} ({report['name']}, {report['source']})", title_justify="left",
                  show_header=False)
    table.add_column(style="bold")
    table.add_column(justify="right")
    sent = report["last_row"] - report["resumed_after"]
    rate = f"{sent / report['seconds']:,.0f} rows/s" if report["seconds"] > 0 and sent > 0 else "-"
    table.add_row("last row", f"{report['last_row']:,}")
    table.add_row("accepted", f"{report['accepted']:,}")
    table.add_row("  of which merged", f"{report['merged']:,}")
    table.add_row("rejected", f"{report['rejected']:,}")
    for code, n in sorted(report["rejected_by_code"].items(), key=lambda kv: -kv[1]):
        table.add_row(f"  {code}", f"{n:,}")
    table.add_row("this run", f"{sent:,} rows in {report['seconds']:.1f} s ({rate})")
    return table


@identity_app.command("import")
def import_command(
    file: Annotated[Path, typer.Argument(help="CSV file, header first (UTF-8 unless --encoding).", exists=True,
                                         dir_okay=False, readable=True)],
    key: Annotated[str, typer.Option("--key", envvar="MCLOUD_SECRET_KEY",
                                     help="Secret key with imports:write (or admin).")],
    source: Annotated[str, typer.Option("--source", help="crm or pos: the channel the rows are recorded under.")
                      ] = "crm",
    url: Annotated[str, typer.Option("--url", envvar="MCLOUD_URL", help="Gateway URL.")] = "http://localhost:8080",
    import_id: Annotated[str | None, typer.Option("--import-id", help="Resume this import (default: a hash of "
                                                  "the file's absolute path and size).")] = None,
    chunk: Annotated[int, typer.Option("--chunk", min=1, max=5000, help="Rows per request.")] = 1000,
    encoding: Annotated[str, typer.Option("--encoding", help="File encoding, e.g. gb18030.")] = "utf-8-sig",
    rejects: Annotated[Path | None, typer.Option("--rejects", dir_okay=False, help="Append rejected rows "
                                                 "(row, code, detail) to this CSV file.")] = None,
    json_output: Annotated[bool, typer.Option("--json", help="One JSON object (the final report) instead of "
                                              "a table; no progress bar.")] = False,
) -> None:
    """Bulk-import customers from a CRM/POS export: rows are cleaned and matched like identify calls;
    prints rows accepted, merged and rejected by reason. Run again to resume after an interruption."""
    try:
        codecs.lookup(encoding)
    except LookupError:
        render.error(f"unknown encoding {encoding!r}")
        raise typer.Exit(2) from None
    try:
        report = run_import(file, source=source, url=url, key=key, import_id=import_id or default_import_id(file),
                            chunk=chunk, encoding=encoding, rejects=rejects, progress=not json_output)
    except ImportFailed as exc:
        render.error(exc.message, exc.detail)
        render.err.print("run the same command again to resume after the last stored row", style="dim")
        raise typer.Exit(1) from None
    if json_output:
        render.json_line(report)
    else:
        render.out.print(_report_table(report))
