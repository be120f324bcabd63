"""bench.summary renders the headline table from sample results files (no stack)."""

from __future__ import annotations

import json
from pathlib import Path

from bench import summary

CEILINGS = {
    "measured_at": "2026-12-07T10:00:00Z",
    "params": {"seconds": 3, "rate": 500, "concurrency": 32},
    "copy": {"rows_per_s": 100_000.0, "chunk": 1000, "connections": 4},
    "redis": {"ops_per_s": 50_000.0, "xadd_per_s": 40_000.0, "pipeline": 100, "clients": 4},
    "grpc_echo": {"req_per_s": 4_000.0, "p99_ms": 20.0, "concurrency": 32,
                  "at_rate": {"rate": 500, "p50_ms": 1.0, "p99_ms": 4.0}},
    "fastapi": {"req_per_s": 6_000.0, "connections": 32, "at_rate": {"rate": 500, "p50_ms": 1.0, "p99_ms": 2.0}},
    "chain": {"req_per_s": 1_700.0, "connections": 32, "at_rate": {"rate": 500, "p50_ms": 2.0, "p99_ms": 5.0}},
}
LATER = "2026-12-07T10:05:00Z"
SAMPLES = {
    "ceilings": CEILINGS,
    "ingest": {"measured_at": LATER, "events_per_s": 12_000.0, "copy_rows_per_s": 50_000.0,
               "track": {"rate": 500.0, "achieved_rps": 499.0, "p50_ms": 4.0, "p99_ms": 20.0, "errors": 0,
                         "statuses": {"200": 10_000}}},
    "identity": {"measured_at": LATER, "ingest": {"events_per_s": 5_000.0},
                 "lookup": {"rate": 500.0, "achieved_rps": 497.0, "p99_ms": 30.0, "errors": 0}},
    "recommend": {"measured_at": LATER, "serving": {"saturated_at": {"gateway": 1000.0}, "rates": [
        {"rate": 250.0, "gateway": {"achieved_rps": 250.0, "p99_ms": 12.0}},
        {"rate": 500.0, "gateway": {"achieved_rps": 498.0, "p99_ms": 15.0}},
        {"rate": 1000.0, "gateway": {"achieved_rps": 700.0, "p99_ms": 900.0}}]}},
    # measured before the ceilings run: marked as older
    "journey": {"measured_at": "2026-12-01T08:00:00Z", "people": 1_000_000, "first_step_s": 436.0,
                "first_per_s": 2293.4, "paced_lag_p99_s": 1.09},
    "messaging": {"measured_at": LATER, "raw_smtp_ceiling_per_s": 3450.9,
                  "plain": {"emails_per_s": 1094.4}, "policies": {"emails_per_s": 900.0}},
    "loyalty": {"measured_at": LATER, "earn": {"per_s": 954.0}, "bus": {"per_s": 2243.0},
                "pg_txn_ceiling_per_s": 3000.0,
                "drift": {"drifting": 0, "members": 2000, "earned": "10", "expected_earned": 10,  # numeric sum: text
                          "balance_mismatch": 0}},
}


def write(folder: Path, results: dict[str, dict]) -> None:
    folder.mkdir(parents=True, exist_ok=True)
    for name, data in results.items():
        (folder / f"{name}.json").write_text(json.dumps(data))


def line(text: str, start: str) -> str:
    found = [x for x in text.splitlines() if x.startswith(f"| {start}")]
    assert len(found) == 1, (start, text)
    return found[0]


def test_renders_every_headline_with_target_ceiling_and_ratio(tmp_path: Path) -> None:
    write(tmp_path, SAMPLES)
    text = summary.render(summary.load(tmp_path))
    ingest = line(text, "Batch ingest through the gateway")
    assert "12,000 events/s" in ingest and "≥ 10,000" in ingest and "| yes |" in ingest
    assert "asyncpg COPY 100,000 rows/s" in ingest and "**0.12**" in ingest
    track = line(text, "Single track")
    assert "20.0 ms at 500 req/s" in track and "| yes |" in track and "**4.0x**" in track  # 20 / chain p99 5
    lookup = line(text, "Profile lookup")
    assert "30.0 ms at 500 req/s" in lookup and "**6.0x**" in lookup
    rec = line(text, "Recommendations through the gateway p99")
    assert "15.0 ms at 500 req/s" in rec and "| yes |" in rec and "**3.0x**" in rec
    most = line(text, "Recommendations through the gateway, most")
    assert "700 req/s" in most and "fell behind at 1,000" in most and "**0.41**" in most  # 700 / 1,700
    journey = line(text, "Journey step")
    assert "2,293 steps/s" in journey and "436 s" in journey and "| yes |" in journey
    assert "⚠ older than the ceilings" in journey and "⚠ older" not in ingest
    assert "| yes |" in line(text, "Journey timer lag")
    emails = line(text, "Personalised emails/s")
    assert "1,094 emails/s" in emails and "**0.32**" in emails and "| yes |" in emails
    assert "| **no** |" in line(text, "Emails/s with policies")
    earns = line(text, "Loyalty earns/s (`EarnPoints`")
    assert "954 earns/s" in earns and "| **no** |" in earns and "echo 4,000 req/s" in earns and "**0.24**" in earns
    assert "| yes |" in line(text, "Loyalty earns/s from")
    assert "| yes |" in line(text, "Loyalty drift") and "earned = expected" in line(text, "Loyalty drift")
    assert "Figures marked ⚠" in text


def test_missing_results_and_drift(tmp_path: Path) -> None:
    only = {"ceilings": CEILINGS, "loyalty": {**SAMPLES["loyalty"], "earn": {"per_s": 2500.0},
                                             "drift": {**SAMPLES["loyalty"]["drift"], "balance_mismatch": 3}}}
    write(tmp_path, only)
    text = summary.render(summary.load(tmp_path))
    assert "not measured (`python -m bench.ingest`)" in line(text, "Batch ingest through the gateway")
    assert "not measured (`python -m bench.recommend`)" in line(text, "Recommendations through the gateway p99")
    assert "| **no** |" in line(text, "Loyalty earns/s (`EarnPoints`")  # fast, but drifting
    assert "3 balances ≠ ledger" in line(text, "Loyalty drift")
    empty = summary.render(summary.load(tmp_path / "nothing"))
    assert "No ceilings measured yet" in empty


def test_summary_goes_first_in_the_report(tmp_path: Path, monkeypatch) -> None:
    from bench import common

    report = tmp_path / "REPORT.md"
    monkeypatch.setattr(common, "REPORT", report)
    monkeypatch.setattr(common, "RESULTS", tmp_path / "results")
    common.write_section("ingest", "ingest table", {"events_per_s": 1.0})
    common.write_section("ceilings", "ceilings table", {})
    common.write_section("summary", "summary table", {}, save=False)
    common.write_section("recommend", "recommend table", {})
    text = report.read_text()
    order = [text.index(f"<!-- {n}:begin -->") for n in ("summary", "ceilings", "ingest", "recommend")]
    assert order == sorted(order)
    stored = json.loads((tmp_path / "results" / "ingest.json").read_text())
    assert stored["events_per_s"] == 1.0 and stored["measured_at"].endswith("Z")
    assert not (tmp_path / "results" / "summary.json").exists()
