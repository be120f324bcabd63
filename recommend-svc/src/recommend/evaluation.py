"""Offline evaluation of the recommenders (issue 6, point 5): hold out part of every person's interactions,
recommend K items each person has not interacted with in the training part, and score the lists against the
held-out items.

- Input: a CSV with a header holding `user_id` and `item_id`, optionally `rating` (the interaction's weight;
  1 when the column is absent or the cell empty) and `timestamp` (kept but not used: the split is random
  even when timestamps exist, so results do not depend on how a file's clock was recorded). Other columns
  are ignored.
- Split: per person, 25 % of their distinct items (rounded half up, at least one, never all) go to the test
  part, chosen at random with a fixed seed; people with fewer than 2 distinct items stay in training only.
  All rows of one (person, item) pair land on the same side. Or a given train file + test file.
- Candidates: every item of the training part that the person has not interacted with in training. Test
  items the person also has in training are not counted as relevant (they can never be recommended); test
  items absent from training stay relevant (no recommender can find them, recall shows it).
- Evaluated: every person with training interactions and at least one relevant test item; people of the
  test part without training interactions (cold start) are counted but not scored.
- Metrics, averaged over evaluated people, binary relevance: precision@K = hits / K; recall@K = hits /
  |relevant|; NDCG@K = DCG / ideal DCG with gains 1 / log2(rank + 1); MAP@K = mean of AP@K, where AP@K sums
  precision@i at every hit rank i <= K and divides by min(K, |relevant|) (so a perfect list scores 1).
- Recommenders: `popular` (distinct people per item), `item_to_item` (neighbour scores of the person's
  training items, weighted by their weights; items without a score are filled in popularity order),
  `personalized` (ALS; the person's trained user vector), `personalized+item_to_item` (reciprocal-rank
  fusion of the top 100 of both: score = sum of 1 / (60 + rank)). Deterministic for a seed.
"""

from __future__ import annotations

import csv
import math
import time
from collections import defaultdict
from collections.abc import Iterable, Sequence
from dataclasses import asdict, dataclass, field, fields
from pathlib import Path
from typing import NamedTuple

import numpy as np
import scipy.sparse

from recommend.domain import models

RECOMMENDERS = ("popular", "item_to_item", "personalized", "personalized+item_to_item")
REQUIRED_COLUMNS = ("user_id", "item_id")
OPTIONAL_COLUMNS = ("rating", "timestamp")
_BLEND_DEPTH = 100  # ranks each list contributes to the blend
_RRF_K = 60  # the usual reciprocal-rank-fusion constant
_BLOCK_CELLS = 4_000_000  # people x items scored at once


class EvaluationError(ValueError):
    """Bad input (file, columns, values, options), with a message meant for the person running it."""


class Interaction(NamedTuple):
    user_id: str
    item_id: str
    weight: float = 1.0
    timestamp: str | None = None


@dataclass(frozen=True)
class AlsParams:
    factors: int = 64
    regularization: float = 10.0
    alpha: float = 2.0
    iterations: int = 15


@dataclass(frozen=True)
class Result:
    """One recommender's metrics, averaged over the evaluated people; seconds include its training."""

    recommender: str
    precision: float
    recall: float
    ndcg: float
    map: float
    seconds: float


@dataclass(frozen=True)
class Report:
    k: int
    users: int  # evaluated people
    cold_start_users: int  # test people without training interactions (not scored)
    items: int  # items of the training part (the candidates)
    train_interactions: int
    test_interactions: int
    results: tuple[Result, ...]
    seconds: float
    # recommender -> [(user_id, [item_id, ... best first])], only when asked for
    recommendations: dict[str, list[tuple[str, list[str]]]] = field(default_factory=dict, repr=False)

    def as_dict(self) -> dict:
        """Everything but the recommendations, JSON-ready."""
        data = {f.name: getattr(self, f.name) for f in fields(self) if f.name != "recommendations"}
        data["results"] = [asdict(r) for r in self.results]
        return data


# -- input -------------------------------------------------------------------------------------------------


def read_interactions(path: str | Path) -> list[Interaction]:
    """The rows of a CSV file with a header (user_id, item_id, optional rating and timestamp, any other
    columns ignored); raises EvaluationError with the file and line on bad input."""
    path = Path(path)
    try:
        handle = path.open(newline="", encoding="utf-8-sig")
    except FileNotFoundError:
        raise EvaluationError(f"{path}: no such file") from None
    except IsADirectoryError:
        raise EvaluationError(f"{path} is a directory, not a CSV file") from None
    with handle:
        reader = csv.reader(handle)
        try:
            header = next(reader)
        except StopIteration:
            raise EvaluationError(f"{path} is empty: the first line must be a header with user_id,item_id "
                                  "(and optionally rating,timestamp)") from None
        except (UnicodeDecodeError, csv.Error) as exc:
            raise EvaluationError(f"{path} is not a UTF-8 CSV file: {exc}") from None
        columns = [c.strip().lower() for c in header]
        missing = [c for c in REQUIRED_COLUMNS if c not in columns]
        if missing:
            raise EvaluationError(f"{path}: the header has no {' and no '.join(missing)} column (found: "
                                  f"{','.join(header) or 'nothing'}); required: user_id,item_id; optional: "
                                  "rating,timestamp")
        user_at, item_at = columns.index("user_id"), columns.index("item_id")
        rating_at = columns.index("rating") if "rating" in columns else None
        time_at = columns.index("timestamp") if "timestamp" in columns else None
        rows: list[Interaction] = []
        try:
            for cells in reader:
                if not any(c.strip() for c in cells):
                    continue
                rows.append(_interaction(path, reader.line_num, cells, user_at, item_at, rating_at, time_at))
        except (UnicodeDecodeError, csv.Error) as exc:
            raise EvaluationError(f"{path}, line {reader.line_num + 1}: not a readable CSV line: {exc}") from None
    if not rows:
        raise EvaluationError(f"{path} has a header but no interactions")
    return rows


def _interaction(path: Path, line: int, cells: list[str], user_at: int, item_at: int, rating_at: int | None,
                 time_at: int | None) -> Interaction:
    def cell(at: int | None) -> str:
        return cells[at].strip() if at is not None and at < len(cells) else ""

    user_id, item_id, rating = cell(user_at), cell(item_at), cell(rating_at)
    if not user_id or not item_id:
        raise EvaluationError(f"{path}, line {line}: empty {'user_id' if not user_id else 'item_id'}")
    weight = 1.0
    if rating:
        try:
            weight = float(rating)
        except ValueError:
            raise EvaluationError(f"{path}, line {line}: rating {rating!r} is not a number") from None
        if not math.isfinite(weight):
            raise EvaluationError(f"{path}, line {line}: rating {rating!r} is not a finite number")
    return Interaction(user_id, item_id, weight, cell(time_at) or None)


def split(rows: Sequence[Interaction], *, seed: int = 42,
          test_fraction: float = 0.25) -> tuple[list[Interaction], list[Interaction]]:
    """(train, test): per person a random `test_fraction` of their distinct items to test (rounded half up,
    at least 1, never all); people with fewer than 2 distinct items stay in train. Rows keep file order.
    Depends only on the set of rows and the seed, not on their order."""
    if not 0 < test_fraction < 1:
        raise EvaluationError(f"test_fraction must be between 0 and 1 (got {test_fraction})")
    items_of: dict[str, set[str]] = defaultdict(set)
    for r in rows:
        items_of[r.user_id].add(r.item_id)
    rng = np.random.default_rng(seed)
    test_pairs: set[tuple[str, str]] = set()
    for user in sorted(items_of):
        items = sorted(items_of[user])
        if len(items) < 2:
            continue
        n_test = min(len(items) - 1, max(1, math.floor(len(items) * test_fraction + 0.5)))
        for i in rng.permutation(len(items))[:n_test]:
            test_pairs.add((user, items[i]))
    train = [r for r in rows if (r.user_id, r.item_id) not in test_pairs]
    test = [r for r in rows if (r.user_id, r.item_id) in test_pairs]
    return train, test


# -- metrics -----------------------------------------------------------------------------------------------


def precision_at_k(recommended: Sequence[str], relevant: set[str], k: int) -> float:
    return sum(1 for item in recommended[:k] if item in relevant) / k


def recall_at_k(recommended: Sequence[str], relevant: set[str], k: int) -> float:
    if not relevant:
        return 0.0
    return sum(1 for item in recommended[:k] if item in relevant) / len(relevant)


def ndcg_at_k(recommended: Sequence[str], relevant: set[str], k: int) -> float:
    dcg = sum(1.0 / math.log2(rank + 2) for rank, item in enumerate(recommended[:k]) if item in relevant)
    ideal = sum(1.0 / math.log2(rank + 2) for rank in range(min(k, len(relevant))))
    return dcg / ideal if ideal else 0.0


def average_precision_at_k(recommended: Sequence[str], relevant: set[str], k: int) -> float:
    """Sum of precision@i at each hit rank i <= k, divided by min(k, |relevant|)."""
    if not relevant:
        return 0.0
    hits, total = 0, 0.0
    for rank, item in enumerate(recommended[:k], start=1):
        if item in relevant:
            hits += 1
            total += hits / rank
    return total / min(k, len(relevant))


# -- evaluation --------------------------------------------------------------------------------------------


def evaluate(train_rows: Sequence[Interaction], test_rows: Sequence[Interaction], *, k: int = 10,
             recommenders: Iterable[str] = RECOMMENDERS, als: AlsParams = AlsParams(), neighbors: int = 50,
             shrink: float = 10.0, seed: int = 0, keep_recommendations: bool = False) -> Report:
    """Train every recommender on `train_rows`, recommend k unseen items to each test person, score against
    `test_rows` (weights: the rows' ratings). `seed` seeds ALS."""
    started = time.perf_counter()
    recommenders = tuple(recommenders)
    unknown = [r for r in recommenders if r not in RECOMMENDERS]
    if unknown:
        raise EvaluationError(f"unknown recommender {', '.join(unknown)} (known: {', '.join(RECOMMENDERS)})")
    if k < 1:
        raise EvaluationError(f"k must be at least 1 (got {k})")
    if not train_rows:
        raise EvaluationError("the training part has no interactions")
    matrix = models.Matrix.build([r.user_id for r in train_rows], [r.item_id for r in train_rows],
                                 [r.weight for r in train_rows])
    person_at = matrix.person_index()
    csr = matrix.csr
    seen = np.diff(csr.indptr) > 0

    relevant_of: dict[str, set[str]] = defaultdict(set)
    for r in test_rows:
        relevant_of[r.user_id].add(r.item_id)
    users: list[str] = []
    relevant: list[set[str]] = []
    cold = 0
    for user in sorted(relevant_of):
        row = person_at.get(user)
        if row is None or not seen[row]:
            cold += 1
            continue
        trained = {matrix.items[i] for i in csr.indices[csr.indptr[row]:csr.indptr[row + 1]]}
        items = relevant_of[user] - trained
        if items:
            users.append(user)
            relevant.append(items)
    rows = np.array([person_at[u] for u in users], dtype=np.int64)

    ranked = _Rankers(csr, k=k, als=als, neighbors=neighbors, shrink=shrink, seed=seed)
    results = []
    recommendations: dict[str, list[tuple[str, list[str]]]] = {}
    for name in recommenders:
        t0 = time.perf_counter()
        top = ranked.top(name, rows)
        seconds = time.perf_counter() - t0
        lists = [[matrix.items[i] for i in line if i >= 0] for line in top]
        n = max(len(users), 1)
        results.append(Result(
            recommender=name,
            precision=sum(precision_at_k(li, rel, k) for li, rel in zip(lists, relevant, strict=True)) / n,
            recall=sum(recall_at_k(li, rel, k) for li, rel in zip(lists, relevant, strict=True)) / n,
            ndcg=sum(ndcg_at_k(li, rel, k) for li, rel in zip(lists, relevant, strict=True)) / n,
            map=sum(average_precision_at_k(li, rel, k) for li, rel in zip(lists, relevant, strict=True)) / n,
            seconds=round(seconds, 3),
        ))
        if keep_recommendations:
            recommendations[name] = list(zip(users, lists, strict=True))
    return Report(k=k, users=len(users), cold_start_users=cold, items=csr.shape[1],
                  train_interactions=len(train_rows), test_interactions=len(test_rows), results=tuple(results),
                  seconds=round(time.perf_counter() - started, 3), recommendations=recommendations)


class _Rankers:
    """Trains each model once, on first use, and ranks items for blocks of people (excluding their
    training items)."""

    def __init__(self, csr: scipy.sparse.csr_matrix, *, k: int, als: AlsParams, neighbors: int, shrink: float,
                 seed: int) -> None:
        self.csr, self.k, self.als, self.neighbors, self.shrink, self.seed = csr, k, als, neighbors, shrink, seed
        self.n_items = csr.shape[1]
        self.popularity = models.popularity(csr).astype(np.float64)
        self._similar: scipy.sparse.csr_matrix | None = None
        self._factors: models.Factors | None = None

    def top(self, name: str, rows: np.ndarray, depth: int | None = None) -> np.ndarray:
        """int [len(rows), depth or k] item indices, best first, -1 padded."""
        depth = depth or self.k
        out = np.full((len(rows), depth), -1, dtype=np.int64)
        block = max(1, _BLOCK_CELLS // max(self.n_items, 1))
        for start in range(0, len(rows), block):
            chunk = rows[start:start + block]
            scores = self._scores(name, chunk)
            seen = self.csr[chunk]
            scores[np.repeat(np.arange(len(chunk)), np.diff(seen.indptr)), seen.indices] = -np.inf
            out[start:start + len(chunk)] = _top_rows(scores, depth)
        return out

    def _scores(self, name: str, rows: np.ndarray) -> np.ndarray:
        if name == "popular":
            return np.broadcast_to(self.popularity, (len(rows), self.n_items)).copy()
        if name == "item_to_item":
            near = (self.csr[rows] @ self.similar()).toarray().astype(np.float64)
            # positive neighbour scores first (>= 1), then the rest in popularity order (< 1)
            fill = self.popularity / (self.popularity.max(initial=0.0) + 1.0)
            return np.where(near > 0, 1.0 + near, fill[None, :])
        if name == "personalized":
            factors = self.factors()
            return (factors.user_factors[rows] @ factors.item_factors.T).astype(np.float64)
        if name == "personalized+item_to_item":
            fused = np.zeros((len(rows), self.n_items))
            for part in ("personalized", "item_to_item"):
                top = self.top(part, rows, depth=min(max(_BLEND_DEPTH, self.k), self.n_items))
                ranks = np.broadcast_to(np.arange(top.shape[1]), top.shape)
                valid = top >= 0
                np.add.at(fused, (np.nonzero(valid)[0], top[valid]), 1.0 / (_RRF_K + 1 + ranks[valid]))
            return fused
        raise EvaluationError(f"unknown recommender {name}")

    def similar(self) -> scipy.sparse.csr_matrix:
        if self._similar is None:
            nb = models.item_neighbors(self.csr, k=self.neighbors, shrink=self.shrink)
            valid = nb.indices >= 0
            self._similar = scipy.sparse.csr_matrix(
                (nb.scores[valid], (np.nonzero(valid)[0], nb.indices[valid])), shape=(self.n_items, self.n_items))
        return self._similar

    def factors(self) -> models.Factors:
        if self._factors is None:
            self._factors = models.train_als(self.csr, factors=self.als.factors, regularization=self.als.regularization,
                                             alpha=self.als.alpha, iterations=self.als.iterations, seed=self.seed)
        return self._factors


def _top_rows(scores: np.ndarray, k: int) -> np.ndarray:
    """Per row the indices of the k highest finite scores, best first, ties to the lower index (what
    models.top_k does for one row), -1 where a row has fewer than k finite scores."""
    n_rows, n = scores.shape
    depth = min(k, n)
    out = np.full((n_rows, k), -1, dtype=np.int64)
    if depth == 0 or n_rows == 0:
        return out
    threshold = -np.partition(-scores, depth - 1, axis=1)[:, depth - 1:depth]
    above = scores > threshold
    ties = scores == threshold
    room = depth - above.sum(axis=1, keepdims=True)
    chosen = above | (ties & (np.cumsum(ties, axis=1) <= room))  # ties: the lowest indices
    cols = np.nonzero(chosen)[1].reshape(n_rows, depth)  # exactly depth per row, ascending
    values = np.take_along_axis(scores, cols, axis=1)
    order = np.argsort(-values, axis=1, kind="stable")
    cols = np.take_along_axis(cols, order, axis=1)
    values = np.take_along_axis(values, order, axis=1)
    out[:, :depth] = np.where(np.isfinite(values), cols, -1)
    return out


def write_recommendations(report: Report, path: str | Path) -> int:
    """Write user_id,item_id,rank,recommender (rank from 1) for every kept list; returns the row count."""
    written = 0
    with Path(path).open("w", newline="", encoding="utf-8") as handle:
        writer = csv.writer(handle)
        writer.writerow(["user_id", "item_id", "rank", "recommender"])
        for name, lists in report.recommendations.items():
            for user, items in lists:
                writer.writerows((user, item, rank, name) for rank, item in enumerate(items, start=1))
                written += len(items)
    return written
