"""Offline evaluation: metrics on hand-computed cases, the per-person split, CSV reading and a tiny data set
where the answer is known."""

from __future__ import annotations

import csv
import math
import random
from collections import Counter
from pathlib import Path

import numpy as np
import pytest

from recommend import evaluation as ev
from recommend.domain import models

I = ev.Interaction  # noqa: E741


# -- metrics -----------------------------------------------------------------------------------------------


def test_metrics_on_a_hand_computed_list() -> None:
    recommended, relevant = ["a", "b", "c", "d"], {"b", "d", "e"}
    assert ev.precision_at_k(recommended, relevant, 4) == 0.5
    assert ev.recall_at_k(recommended, relevant, 4) == pytest.approx(2 / 3)
    dcg = 1 / math.log2(3) + 1 / math.log2(5)
    ideal = 1 + 1 / math.log2(3) + 1 / math.log2(4)
    assert ev.ndcg_at_k(recommended, relevant, 4) == pytest.approx(dcg / ideal)
    assert ev.average_precision_at_k(recommended, relevant, 4) == pytest.approx((1 / 2 + 2 / 4) / 3)


def test_metrics_only_look_at_the_first_k_and_normalise_map_by_min_k_relevant() -> None:
    recommended, relevant = ["x", "a", "b"], {"a", "b", "c", "d"}
    assert ev.precision_at_k(recommended, relevant, 2) == 0.5
    assert ev.recall_at_k(recommended, relevant, 2) == 0.25
    assert ev.average_precision_at_k(recommended, relevant, 2) == pytest.approx((1 / 2) / 2)
    # a short perfect list: precision counts the empty slots, recall, NDCG and MAP are 1
    assert ev.precision_at_k(["a"], {"a"}, 3) == pytest.approx(1 / 3)
    assert ev.recall_at_k(["a"], {"a"}, 3) == 1.0
    assert ev.ndcg_at_k(["a"], {"a"}, 3) == pytest.approx(1.0)
    assert ev.average_precision_at_k(["a"], {"a"}, 3) == 1.0
    assert ev.ndcg_at_k(["x", "y"], {"a"}, 2) == 0.0


# -- split -------------------------------------------------------------------------------------------------


def _rows(counts: dict[str, int]) -> list[ev.Interaction]:
    return [I(user, f"{user}-item{n}") for user, n_items in counts.items() for n in range(n_items)]


def test_split_holds_out_a_quarter_of_each_persons_items() -> None:
    rows = _rows({"eight": 8, "four": 4, "three": 3, "two": 2, "one": 1, "twenty": 20})
    train, test = ev.split(rows, seed=42)
    held_out = Counter(r.user_id for r in test)
    assert held_out == {"eight": 2, "four": 1, "three": 1, "two": 1, "twenty": 5}
    assert Counter(r.user_id for r in train) == {"eight": 6, "four": 3, "three": 2, "two": 1, "one": 1, "twenty": 15}
    assert sorted(train + test) == sorted(rows)


def test_split_is_deterministic_and_independent_of_row_order() -> None:
    rows = _rows({f"u{n}": 4 + n % 7 for n in range(50)})
    shuffled = rows[:]
    random.Random(1).shuffle(shuffled)
    first, second = ev.split(rows, seed=42)[1], ev.split(shuffled, seed=42)[1]
    assert set(first) == set(second)
    assert set(ev.split(rows, seed=42)[1]) == set(first)
    assert set(ev.split(rows, seed=43)[1]) != set(first)


def test_split_keeps_every_row_of_a_person_item_pair_on_one_side() -> None:
    rows = [I("ann", "x", 1.0), I("ann", "y", 1.0), I("ann", "x", 2.0), I("ann", "z"), I("ann", "y", 3.0)]
    for seed in range(10):
        train, test = ev.split(rows, seed=seed)
        assert not {r.item_id for r in train} & {r.item_id for r in test}
        assert {r.item_id for r in test} and len({r.item_id for r in test}) == 1


def test_split_refuses_a_fraction_outside_0_1() -> None:
    with pytest.raises(ev.EvaluationError, match="between 0 and 1"):
        ev.split(_rows({"a": 4}), test_fraction=1.0)


# -- reading -----------------------------------------------------------------------------------------------


def _write(tmp_path: Path, text: str, name: str = "interactions.csv") -> Path:
    path = tmp_path / name
    path.write_text(text, encoding="utf-8")
    return path


def test_read_interactions_takes_ratings_as_weights_and_tolerates_extra_columns(tmp_path: Path) -> None:
    path = _write(tmp_path, "\ufeffsource,Item_ID, user_id ,rating,timestamp\n"
                            "web,sku-1,ann,4.5,2024-01-01\n\nshop,sku-2,bob,,\n")
    assert ev.read_interactions(path) == [I("ann", "sku-1", 4.5, "2024-01-01"), I("bob", "sku-2", 1.0, None)]
    assert ev.read_interactions(_write(tmp_path, "user_id,item_id\nann,x\n", "plain.csv")) == [I("ann", "x")]


@pytest.mark.parametrize(("text", "message"), [
    ("", "is empty: the first line must be a header with user_id,item_id"),
    ("user_id,rating\nann,2\n", "the header has no item_id column (found: user_id,rating)"),
    ("customer,sku\nann,x\n", "no user_id and no item_id column"),
    ("user_id,item_id\n", "has a header but no interactions"),
    ("user_id,item_id,rating\nann,x,1\nbob,y,lots\n", "line 3: rating 'lots' is not a number"),
    ("user_id,item_id,rating\nann,x,nan\n", "line 2: rating 'nan' is not a finite number"),
    ("user_id,item_id\nann,x\n,y\n", "line 3: empty user_id"),
])
def test_read_interactions_explains_bad_files(tmp_path: Path, text: str, message: str) -> None:
    with pytest.raises(ev.EvaluationError, match=message.replace("(", r"\(").replace(")", r"\)")):
        ev.read_interactions(_write(tmp_path, text))


def test_read_interactions_of_a_missing_file(tmp_path: Path) -> None:
    with pytest.raises(ev.EvaluationError, match="no such file"):
        ev.read_interactions(tmp_path / "nope.csv")


# -- evaluate ----------------------------------------------------------------------------------------------


def _pairs_dataset() -> tuple[list[ev.Interaction], list[ev.Interaction]]:
    """Items x<i> and y<i> are bought together; f0..f2 are bought by many fans. Test people have x<i> and
    should get y<i>: item_to_item finds it, popularity offers the fans' items."""
    train, test = [], []
    for n in range(20):
        train += [I(f"fan{n}", f) for f in ("f0", "f1", "f2")]
    for i in range(5):
        for n in range(3):
            train += [I(f"pair{i}-{n}", f"x{i}"), I(f"pair{i}-{n}", f"y{i}")]
        train.append(I(f"buyer{i}", f"x{i}"))
        test.append(I(f"buyer{i}", f"y{i}"))
    return train, test


def test_item_to_item_beats_popular_when_items_are_bought_together() -> None:
    train, test = _pairs_dataset()
    report = ev.evaluate(train, test, k=3, recommenders=["popular", "item_to_item"])
    results = {r.recommender: r for r in report.results}
    assert report.users == 5 and report.items == 13
    assert results["item_to_item"].recall == 1.0 and results["item_to_item"].ndcg == 1.0
    assert results["item_to_item"].map == 1.0 and results["item_to_item"].precision == pytest.approx(1 / 3)
    assert results["popular"].recall == 0.0


def test_lists_skip_training_items_and_relevance_skips_them_too() -> None:
    train = [I("ann", "a"), I("ann", "b"), I("bob", "a"), I("bob", "c"), I("cid", "a"), I("cid", "b")]
    test = [I("ann", "c"), I("ann", "a"), I("bob", "b"), I("dan", "a"), I("cid", "a")]
    report = ev.evaluate(train, test, k=2, keep_recommendations=True)
    assert report.users == 2  # ann, bob; cid's only test item is a training item
    assert report.cold_start_users == 1  # dan
    assert (report.train_interactions, report.test_interactions) == (6, 5)
    for name in ev.RECOMMENDERS:
        lists = dict(report.recommendations[name])
        assert lists == {"ann": ["c"], "bob": ["b"]}
    assert all(r.precision == 0.5 and r.recall == 1.0 for r in report.results)  # ann: {c}, not a


def test_evaluation_is_deterministic() -> None:
    rng = np.random.default_rng(0)
    rows = [I(f"u{u}", f"i{i}", float(rng.integers(1, 5))) for u in range(60)
            for i in rng.choice(40, size=int(rng.integers(2, 12)), replace=False)]
    train, test = ev.split(rows, seed=1)
    als = ev.AlsParams(factors=4, iterations=3)
    first = ev.evaluate(train, test, k=5, als=als, keep_recommendations=True)
    second = ev.evaluate(train, test, k=5, als=als, keep_recommendations=True)
    assert first.recommendations == second.recommendations
    assert [(r.precision, r.ndcg, r.map) for r in first.results] == [(r.precision, r.ndcg, r.map)
                                                                      for r in second.results]
    assert set(first.as_dict()) == {"k", "users", "cold_start_users", "items", "train_interactions",
                                    "test_interactions", "results", "seconds"}


def test_evaluate_refuses_bad_options() -> None:
    train, test = _pairs_dataset()
    with pytest.raises(ev.EvaluationError, match="unknown recommender magic"):
        ev.evaluate(train, test, recommenders=["popular", "magic"])
    with pytest.raises(ev.EvaluationError, match="k must be at least 1"):
        ev.evaluate(train, test, k=0)
    with pytest.raises(ev.EvaluationError, match="no interactions"):
        ev.evaluate([], test)


def test_write_recommendations_writes_one_ranked_row_per_item(tmp_path: Path) -> None:
    train, test = _pairs_dataset()
    report = ev.evaluate(train, test, k=2, recommenders=["item_to_item"], keep_recommendations=True)
    path = tmp_path / "recs.csv"
    assert ev.write_recommendations(report, path) == 10
    with path.open(newline="") as handle:
        rows = list(csv.reader(handle))
    assert rows[0] == ["user_id", "item_id", "rank", "recommender"]
    assert rows[1:3] == [["buyer0", "y0", "1", "item_to_item"], ["buyer0", "f0", "2", "item_to_item"]]


def test_batched_top_k_agrees_with_models_top_k() -> None:
    rng = np.random.default_rng(5)
    scores = rng.integers(0, 4, size=(30, 12)).astype(np.float64)  # many ties
    scores[rng.random(scores.shape) < 0.3] = -np.inf
    got = ev._top_rows(scores, 5)
    for row, line in zip(scores, got, strict=True):
        expected = models.top_k(row, 5).tolist()
        assert line.tolist() == expected + [-1] * (5 - len(expected))
