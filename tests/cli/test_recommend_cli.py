"""`mcloud recommend evaluate` through the typer app (in process, no services)."""

from __future__ import annotations

import csv
import json
import re
from pathlib import Path

import pytest
from typer.testing import CliRunner

import recommend.evaluation  # noqa: F401  (imported once at collection: numpy, scipy and implicit are slow to load)
from mcloud_cli.main import app

ENV = {"COLUMNS": "200", "NO_COLOR": "1"}


def _interactions(path: Path) -> Path:
    """Pairs x<i>/y<i> bought together, fans buying f0..f2, buyers with x<i> (and sometimes y<i>)."""
    with path.open("w", newline="") as handle:
        writer = csv.writer(handle)
        writer.writerow(["user_id", "item_id", "rating", "channel"])
        for n in range(12):
            writer.writerows([f"fan{n}", f, 1, "web"] for f in ("f0", "f1", "f2"))
        for i in range(4):
            for n in range(4):
                writer.writerows([[f"pair{i}-{n}", f"x{i}", 2, "shop"], [f"pair{i}-{n}", f"y{i}", 1, "shop"]])
    return path


def _run(*args: str):
    return CliRunner().invoke(app, ["recommend", "evaluate", *args], env=ENV)


@pytest.fixture
def data(tmp_path: Path) -> Path:
    return _interactions(tmp_path / "interactions.csv")


def test_evaluate_prints_a_table_of_every_recommender(data: Path) -> None:
    result = _run("--interactions", str(data), "--k", "3", "--factors", "4", "--iterations", "3")
    assert result.exit_code == 0, result.output
    for text in ("precision@3", "recall@3", "NDCG@3", "MAP@3", "popular", "item_to_item", "personalized",
                 "personalized+item_to_item", "28 people evaluated", "test interactions", "seed 42"):
        assert text in result.stdout
    assert re.search(r"· 1[01] items ·", result.stdout)  # items of the training part


def test_evaluate_json_is_one_line_with_the_metrics(data: Path) -> None:
    result = _run("--interactions", str(data), "--json", "--k", "2", "--seed", "7", "--factors", "4")
    assert result.exit_code == 0, result.output
    lines = result.stdout.splitlines()
    assert len(lines) == 1
    report = json.loads(lines[0])
    assert report["k"] == 2 and report["seed"] == 7 and report["users"] == 28 and report["items"] <= 11
    assert report["train_interactions"] + report["test_interactions"] == 68
    assert [r["recommender"] for r in report["results"]] == ["popular", "item_to_item", "personalized",
                                                            "personalized+item_to_item"]
    assert set(report["results"][0]) == {"recommender", "precision", "recall", "ndcg", "map", "seconds"}
    assert report["als"]["factors"] == 4


def test_evaluate_writes_the_lists_to_output(data: Path, tmp_path: Path) -> None:
    output = tmp_path / "recs.csv"
    result = _run("--interactions", str(data), "--json", "--k", "2", "--output", str(output), "--factors", "4")
    assert result.exit_code == 0, result.output
    assert json.loads(result.stdout)["recommendations_written"] == 4 * 28 * 2
    with output.open(newline="") as handle:
        rows = list(csv.DictReader(handle))
    assert len(rows) == 4 * 28 * 2
    assert {r["recommender"] for r in rows} == {"popular", "item_to_item", "personalized", "personalized+item_to_item"}
    assert {r["rank"] for r in rows} == {"1", "2"}
    first = rows[0]
    assert set(first) == {"user_id", "item_id", "rank", "recommender"} and first["rank"] == "1"


def test_evaluate_with_a_given_train_and_test_file(tmp_path: Path) -> None:
    train = tmp_path / "train.csv"
    test = tmp_path / "test.csv"
    train.write_text("user_id,item_id\nann,a\nann,b\nbob,a\nbob,c\ncid,a\n")
    test.write_text("user_id,item_id\nann,c\ncid,b\ndan,a\n")
    result = _run("--train", str(train), "--test", str(test), "--json", "--k", "1", "--factors", "2")
    assert result.exit_code == 0, result.output
    report = json.loads(result.stdout)
    assert (report["users"], report["cold_start_users"], report["items"]) == (2, 1, 3)
    assert report["train"] == str(train) and "seed" not in report
    assert all(r["precision"] == 1.0 for r in report["results"])  # one candidate each, and it is right


@pytest.mark.parametrize(("args", "message"), [
    (["--k", "0"], "Invalid value for '--k'"),
    (["--k", "ten"], "Invalid value for '--k'"),
    (["--train", "{data}", "--test", "{data}"], "either --interactions or --train and --test, not both"),
])
def test_evaluate_refuses_bad_options_with_exit_code_2(data: Path, args: list[str], message: str) -> None:
    result = _run("--interactions", str(data), *[a.format(data=data) for a in args])
    assert result.exit_code == 2
    assert message in result.output
    assert "Traceback" not in result.output


@pytest.mark.parametrize(("files", "message"), [
    ({"missing": None}, "does not exist"),
    ({"empty": ""}, "is empty: the first line must be a header"),
    ({"columns": "user,item_id\nann,x\n"}, "the header has no user_id column"),
])
def test_evaluate_explains_unusable_files_with_exit_code_2(tmp_path: Path, files: dict, message: str) -> None:
    (name, text), = files.items()
    path = tmp_path / f"{name}.csv"
    if text is not None:
        path.write_text(text)
    result = _run("--interactions", str(path))
    assert result.exit_code == 2
    assert message in " ".join(result.output.split())
    assert "Traceback" not in result.output


def test_evaluate_needs_both_train_and_test(tmp_path: Path) -> None:
    path = _interactions(tmp_path / "train.csv")
    for args in (["--train", str(path)], []):
        result = _run(*args)
        assert result.exit_code == 2
        assert "give --interactions FILE.csv, or both --train A.csv and --test B.csv" in result.output
