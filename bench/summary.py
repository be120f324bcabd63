"""The summary at the top of REPORT.md: each headline figure, its target, the raw ceiling of this
machine it is compared with (measured by bench.ceilings) and the ratio, read from results/*.json.

    python -m bench.summary

`make bench` runs it last. A figure measured before the ceilings run is marked as older: its ratio
then compares two different moments of a shared machine.
"""

from __future__ import annotations

import json
import math
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path

from bench.common import RESULTS, write_section

LATENCY_RATE = 500.0  # the rate the latency targets are set at


@dataclass
class Row:
    figure: str
    value: str
    target: str
    met: bool | None       # None: no target, or not measured
    ceiling: str
    ratio: str
    source: str            # results file name (without .json) the figure comes from


def load(results: Path = RESULTS) -> dict[str, dict]:
    """Every results/<name>.json, with `_measured` (a UTC datetime: its measured_at, else the file's mtime)."""
    out: dict[str, dict] = {}
    for path in sorted(results.glob("*.json")):
        try:
            data = json.loads(path.read_text())
        except (OSError, ValueError):
            continue
        if not isinstance(data, dict):
            continue
        when = _parse(data.get("measured_at")) or datetime.fromtimestamp(path.stat().st_mtime, UTC)
        out[path.stem] = {**data, "_measured": when}
    return out


def _parse(value: object) -> datetime | None:
    if not isinstance(value, str):
        return None
    try:
        t = datetime.fromisoformat(value.replace("Z", "+00:00"))
    except ValueError:
        return None
    return t if t.tzinfo else t.replace(tzinfo=UTC)


def _num(x: object) -> float | None:
    return float(x) if isinstance(x, int | float) and math.isfinite(x) else None


def _get(d: dict | None, *path: str) -> object:
    for key in path:
        if not isinstance(d, dict):
            return None
        d = d.get(key)
    return d


def _fmt(v: float | None, unit: str, digits: int = 0) -> str:
    if v is None:
        return "—"
    return f"{v:,.{digits}f} {unit}".strip()


def _ratio(value: float | None, ceiling: float | None, *, latency: bool = False) -> str:
    """Throughput: value / ceiling (share of the ceiling reached). Latency: value / ceiling (times the
    bare round trip)."""
    if value is None or not ceiling:
        return "—"
    r = value / ceiling
    return f"**{r:,.1f}x**" if latency else f"**{r:.2f}**"


def rows(res: dict[str, dict]) -> list[Row]:
    c = res.get("ceilings") or {}
    copy = _num(_get(c, "copy", "rows_per_s"))
    xadd = _num(_get(c, "redis", "xadd_per_s"))
    echo = _num(_get(c, "grpc_echo", "req_per_s"))
    fastapi = _num(_get(c, "fastapi", "req_per_s"))
    fastapi_p99 = _num(_get(c, "fastapi", "at_rate", "p99_ms"))
    chain = _num(_get(c, "chain", "req_per_s"))
    chain_p99 = _num(_get(c, "chain", "at_rate", "p99_ms"))
    crate = _num(_get(c, "params", "rate")) or LATENCY_RATE
    # the bare path a gateway read takes (FastAPI -> gRPC -> asyncpg), FastAPI alone when not measured
    path_p99, path_name = (chain_p99, "bare FastAPI→gRPC→asyncpg") if chain_p99 else (fastapi_p99, "bare FastAPI")
    path_rps = chain if chain else fastapi
    out: list[Row] = []

    def lat_ceiling() -> str:
        extra = f" (FastAPI alone {fastapi_p99:.1f} ms)" if chain_p99 and fastapi_p99 else ""
        return f"{path_name} p99 {_fmt(path_p99, 'ms', 1)} at {crate:.0f} req/s{extra}"

    def at_rate(rate: float | None) -> str:
        return f" at {rate:,.0f} req/s" if rate else ""

    # ingest
    ing = res.get("ingest")
    v = _num(_get(ing, "events_per_s"))
    out.append(Row("Batch ingest through the gateway (`POST /v1/batch`)", _fmt(v, "events/s"),
                   "≥ 10,000 events/s", None if v is None else v >= 10_000,
                   f"asyncpg COPY {_fmt(copy, 'rows/s')}", _ratio(v, copy), "ingest"))
    ident = res.get("identity")
    v = _num(_get(ident, "ingest", "events_per_s"))
    if v is not None:
        out.append(Row("Batch ingest with identity resolution (identity bench, aliases + identifies)",
                       _fmt(v, "events/s"), "≥ 10,000 events/s", v >= 10_000,
                       f"asyncpg COPY {_fmt(copy, 'rows/s')}", _ratio(v, copy), "identity"))
    tr = _get(ing, "track")
    v, rate = _num(_get(tr, "p99_ms")), _num(_get(tr, "rate"))
    ok = None if v is None else (v < 25 and (rate or 0) >= LATENCY_RATE and not _get(tr, "errors")
                                 and _sustained(tr, rate))
    out.append(Row("Single track `POST /v1/track` p99", _fmt(v, "ms", 1) + at_rate(rate) + _achieved(tr),
                   "< 25 ms at 500 req/s", ok, lat_ceiling(), _ratio(v, path_p99, latency=True), "ingest"))
    lk = _get(ident, "lookup")
    v, rate = _num(_get(lk, "p99_ms")), _num(_get(lk, "rate"))
    out.append(Row("Profile lookup `GET /v1/profiles/{id}` p99", _fmt(v, "ms", 1) + at_rate(rate) + _achieved(lk),
                   "—", None, lat_ceiling(), _ratio(v, path_p99, latency=True), "identity"))

    # recommend
    rec = res.get("recommend")
    rates = [x for x in (_get(rec, "serving", "rates") or []) if isinstance(x, dict) and x.get("gateway")]
    row = _pick(rates, LATENCY_RATE)
    gw = row.get("gateway") if row else None
    v, rate = _num(_get(gw, "p99_ms")), _num(_get(row, "rate"))
    ok = None if v is None else (v < 20 and (rate or 0) >= LATENCY_RATE and _sustained(gw, rate))
    out.append(Row("Recommendations through the gateway p99", _fmt(v, "ms", 1) + at_rate(rate) + _achieved(gw),
                   "< 20 ms at 500 req/s", ok, lat_ceiling(), _ratio(v, path_p99, latency=True), "recommend"))
    best = max((_num(x["gateway"].get("achieved_rps")) or 0 for x in rates), default=None)
    sat = _get(rec, "serving", "saturated_at", "gateway")
    note = f" (fell behind at {sat:,.0f} offered)" if _num(sat) else ""
    out.append(Row("Recommendations through the gateway, most answered", _fmt(best, "req/s") + note,
                   "≥ 500 req/s", None if best is None else best >= 0.95 * LATENCY_RATE,
                   f"{path_name} {_fmt(path_rps, 'req/s')}", _ratio(best, path_rps), "recommend"))

    # journey
    jr = res.get("journey")
    per_s, people = _num(_get(jr, "first_per_s")), _num(_get(jr, "people"))
    secs = _num(_get(jr, "first_step_s"))
    if per_s:
        million = 1_000_000 / per_s
        scale = "" if people == 1_000_000 else f", {_fmt(people, 'people')} in {secs:,.0f} s, extrapolated"
        value = f"{_fmt(per_s, 'steps/s')} (1,000,000 people in {million:,.0f} s{scale})"
    else:
        million, value = None, "—"
    own = _num(_get(jr, "copy_rows_per_s"))
    extra = f" (the journey bench's own PostgreSQL, fsync off: {_fmt(own, 'rows/s')})" if own else ""
    out.append(Row("Journey step for everyone (claim, SendMessages, timer armed)", value,
                   "1,000,000 people < 600 s", None if million is None else million < 600,
                   f"asyncpg COPY {_fmt(copy, 'rows/s')}{extra}", _ratio(per_s, copy), "journey"))
    v = _num(_get(jr, "paced_lag_p99_s"))
    out.append(Row("Journey timer lag p99 (timers falling due at the pace armed)", _fmt(v, "s", 2), "< 2 s",
                   None if v is None else v < 2, "— (the worker polls every 0.2 s when idle)", "—", "journey"))

    # messaging
    ms = res.get("messaging")
    smtp = _num(_get(ms, "raw_smtp_ceiling_per_s"))
    for key, label in (("plain", "Personalised emails/s into SMTP"), ("policies", "Emails/s with policies on")):
        v = _num(_get(ms, key, "emails_per_s"))
        if v is None and key == "policies":
            continue
        out.append(Row(label, _fmt(v, "emails/s"), "≥ 1,000 emails/s", None if v is None else v >= 1000,
                       f"raw SMTP (aiosmtplib, messaging bench) {_fmt(smtp, 'emails/s')}", _ratio(v, smtp),
                       "messaging"))

    # loyalty
    ly = res.get("loyalty")
    d = _get(ly, "drift") or {}
    zero = _zero_drift(d) if d else None
    v = _num(_get(ly, "earn", "per_s"))
    pg_txn = _num(_get(ly, "pg_txn_ceiling_per_s"))
    extra = f"; one-row PG transaction {_fmt(pg_txn, '/s')} (loyalty bench)" if pg_txn else ""
    out.append(Row("Loyalty earns/s (`EarnPoints` over gRPC)", _fmt(v, "earns/s"), "≥ 2,000 earns/s, zero drift",
                   None if v is None else (v >= 2000 and bool(zero)),
                   f"bare grpc.aio echo {_fmt(echo, 'req/s')}{extra}", _ratio(v, echo), "loyalty"))
    v = _num(_get(ly, "bus", "per_s"))
    if v is not None:
        out.append(Row("Loyalty earns/s from \"Order Completed\" on the bus", _fmt(v, "orders/s"),
                       "≥ 2,000 earns/s, zero drift", v >= 2000 and bool(zero),
                       f"Valkey pipelined XADD {_fmt(xadd, 'ops/s')}", _ratio(v, xadd), "loyalty"))
    if d:
        value = (f"{d.get('drifting', '?')} members drifting, {d.get('balance_mismatch', '?')} balances ≠ ledger, "
                 f"earned {'= ' if _same(d.get('earned'), d.get('expected_earned')) else '≠ '}expected")
        out.append(Row("Loyalty drift (ledger = lots - debt = reported balance; points as expected)", value,
                       "zero", zero, "—", "—", "loyalty"))
    return out


def _achieved(r: object) -> str:
    rps = _num(_get(r, "achieved_rps")) if isinstance(r, dict) else None
    return f" (answered {rps:,.0f}/s)" if rps else ""


def _sustained(r: dict | None, rate: float | None) -> bool:
    rps = _num(_get(r, "achieved_rps"))
    return bool(rps and rate and rps >= 0.95 * rate)


def _pick(rates: list[dict], want: float) -> dict | None:
    """The row at `want` req/s, else the highest rate below it, else the lowest."""
    if not rates:
        return None
    for x in rates:
        if x.get("rate") == want:
            return x
    below = [x for x in rates if (x.get("rate") or 0) < want]
    if below:
        return max(below, key=lambda x: x["rate"])
    return min(rates, key=lambda x: x.get("rate") or 0)


def _same(a: object, b: object) -> bool:
    """Equal as numbers (sums from PostgreSQL are numeric: stored as strings in the JSON)."""
    try:
        return a is not None and float(str(a)) == float(str(b))
    except ValueError:
        return False


def _zero_drift(d: dict) -> bool:
    return (_same(d.get("drifting"), 0) and _same(d.get("earned"), d.get("expected_earned"))
            and _same(d.get("balance_mismatch", 0), 0))


def _stamp(t: datetime | None) -> str:
    return t.strftime("%Y-%m-%d %H:%M UTC") if t else "—"


def render(res: dict[str, dict], command: str = "make bench") -> str:
    ceilings_at: datetime | None = (res.get("ceilings") or {}).get("_measured")
    met = {True: "yes", False: "**no**", None: "—"}
    lines = [
        "Each headline figure next to its target and to the raw ceiling of this machine it is bounded by "
        "(`bench.ceilings`, measured in the same run; see its section). Ratio: for throughput the share of "
        "the ceiling reached, for latency how many times the bare round trip it takes.",
        "",
        "| figure | value | target | met | ceiling (same run) | ratio | measured |",
        "|---|---|---|---|---|---|---|",
    ]
    older = False
    for r in rows(res):
        when: datetime | None = (res.get(r.source) or {}).get("_measured")
        mark = ""
        if when is None:
            stamp = f"not measured (`python -m bench.{r.source}`)"
        else:
            stamp = _stamp(when)
            if ceilings_at is not None and when < ceilings_at:
                mark, older = " ⚠ older than the ceilings", True
        lines.append(f"| {r.figure} | {r.value} | {r.target} | {met[r.met]} | {r.ceiling} | {r.ratio} "
                     f"| {stamp}{mark} |")
    lines.append("")
    if ceilings_at is None:
        lines.append("No ceilings measured yet: run `python -m bench.ceilings` (`make bench` runs it first).")
    else:
        lines.append(f"Ceilings measured {_stamp(ceilings_at)}.")
    if older:
        lines.append("Figures marked ⚠ come from an earlier run than the ceilings: their ratios compare two "
                     "moments of a shared machine; rerun `make bench` for one consistent set.")
    lines.append(f"\nWritten by `python -m bench.summary` from `bench/results/*.json` (`{command}`).")
    return "\n".join(lines)


def main() -> None:
    text = render(load())
    print(text)
    write_section("summary", text, {}, save=False)


if __name__ == "__main__":
    main()
