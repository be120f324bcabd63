"""`mcloud recommend evaluate`: offline evaluation of the recommenders on an interaction file (no running
service needed): per-person 75/25 split with a fixed seed (or a given train and test file), K unseen items per
person, precision/recall/NDCG/MAP@K per recommender against the popularity baseline."""

from __future__ import annotations

import time
from dataclasses import asdict
from pathlib import Path
from typing import Annotated, NoReturn

import typer

from mcloud_cli import render

recommend_app = typer.Typer(help="The recommendation engine (recommend-svc): offline tools.", no_args_is_help=True)


@recommend_app.command("evaluate")
def evaluate_command(
    interactions: Annotated[Path | None, typer.Option("--interactions", exists=True, dir_okay=False, readable=True,
                                                      help="CSV with a header: user_id,item_id and optionally "
                                                      "rating (the weight, default 1),timestamp; split per person "
                                                      "75/25 at random with --seed.")] = None,
    train: Annotated[Path | None, typer.Option("--train", exists=True, dir_okay=False, readable=True,
                                               help="Training CSV (same columns), instead of --interactions.")
                     ] = None,
    test: Annotated[Path | None, typer.Option("--test", exists=True, dir_okay=False, readable=True,
                                              help="Test CSV (same columns), with --train.")] = None,
    k: Annotated[int, typer.Option("--k", min=1, max=1000, help="Items recommended per person.")] = 10,
    seed: Annotated[int, typer.Option("--seed", help="Seed of the split and of ALS.")] = 42,
    factors: Annotated[int, typer.Option("--factors", min=1, max=1024, help="ALS latent factors.")] = 64,
    regularization: Annotated[float, typer.Option("--regularization", min=0.0, help="ALS L2 regularization.")
                              ] = 10.0,
    alpha: Annotated[float, typer.Option("--alpha", min=0.0, help="ALS confidence: 1 + alpha * weight.")] = 2.0,
    iterations: Annotated[int, typer.Option("--iterations", min=1, max=200, help="ALS iterations.")] = 15,
    output: Annotated[Path | None, typer.Option("--output", dir_okay=False, help="Also write every list as CSV: "
                                                "user_id,item_id,rank,recommender.")] = None,
    json_output: Annotated[bool, typer.Option("--json", help="One JSON object on one line instead of a table.")
                           ] = False,
) -> None:
    """Evaluate popular, item_to_item, personalized (ALS) and their blend; exit 2 on bad options or input."""
    if interactions is not None and (train is not None or test is not None):
        _refuse("give either --interactions or --train and --test, not both")
    if interactions is None and (train is None or test is None):
        _refuse("give --interactions FILE.csv, or both --train A.csv and --test B.csv")

    from recommend.evaluation import (
        AlsParams,
        EvaluationError,
        evaluate,
        read_interactions,
        split,
        write_recommendations,
    )

    started = time.perf_counter()
    try:
        if interactions is not None:
            train_rows, test_rows = split(read_interactions(interactions), seed=seed)
            source = {"interactions": str(interactions), "seed": seed, "test_fraction": 0.25}
        else:
            train_rows, test_rows = read_interactions(train), read_interactions(test)
            source = {"train": str(train), "test": str(test)}
        als = AlsParams(factors=factors, regularization=regularization, alpha=alpha, iterations=iterations)
        report = evaluate(train_rows, test_rows, k=k, als=als, seed=seed, keep_recommendations=output is not None)
        written = write_recommendations(report, output) if output is not None else None
    except EvaluationError as exc:
        _refuse(str(exc))
    except OSError as exc:
        _refuse(f"{exc.filename or output}: {exc.strerror or exc}")
    total = round(time.perf_counter() - started, 3)

    if json_output:
        render.json_line({**source, **report.as_dict(), "als": asdict(als), "total_seconds": total,
                          **({"output": str(output), "recommendations_written": written} if output else {})})
        return
    render.out.print(_table(report))
    how = (f"split per person 75/25, seed {seed}" if interactions is not None
           else f"train {train.name} / test {test.name}")
    render.out.print(f"{report.users:,} people evaluated ({report.cold_start_users:,} cold-start test people "
                     f"skipped) · {report.items:,} items · {report.train_interactions:,} train + "
                     f"{report.test_interactions:,} test interactions · {how} · ALS f={factors} "
                     f"reg={regularization:g} alpha={alpha:g} it={iterations} · {total:.1f} s", soft_wrap=True)
    if output is not None:
        render.out.print(f"wrote {written:,} recommendations to {output}")


def _refuse(message: str) -> NoReturn:
    render.error(message)
    raise typer.Exit(2)


def _table(report):
    from rich.table import Table

    k = report.k
    table = Table(title=f"offline evaluation, top {k}", title_justify="left")
    table.add_column("recommender", style="bold")
    for name in (f"precision@{k}", f"recall@{k}", f"NDCG@{k}", f"MAP@{k}", "seconds"):
        table.add_column(name, justify="right")
    best = {m: max((getattr(r, m) for r in report.results), default=0.0)
            for m in ("precision", "recall", "ndcg", "map")}
    for r in report.results:
        cells = [f"[green]{getattr(r, m):.4f}[/]" if getattr(r, m) == best[m] and best[m] > 0
                 else f"{getattr(r, m):.4f}" for m in ("precision", "recall", "ndcg", "map")]
        table.add_row(r.recommender, *cells, f"{r.seconds:.2f}")
    return table
