"""The recommendation models as plain numpy/scipy: the person x item matrix, popularity, item-to-item
neighbours (cosine over co-occurrence) and implicit-feedback ALS (Hu, Koren & Volinsky 2008) through
`implicit`, plus top-k selection and a compact serialised form. No I/O: the service and the offline
evaluation both build on these functions.

Confidence convention: a cell of summed feedback weight w > 0 has confidence c = 1 + alpha * w and
preference 1; cells absent from the matrix have confidence 1 and preference 0. `train_als` hands implicit
the matrix of confidences c with implicit's own alpha left at 1.0 (implicit multiplies the values by its
alpha and treats the result as c), and `Factors.fold_in` solves the same equation.
"""

from __future__ import annotations

import io
import os
from collections.abc import Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field

import numpy as np
import scipy.linalg
import scipy.sparse

FORMAT_VERSION = 1
# item_neighbors works on blocks of items whose co-occurrence rows span at most this many cells
_BLOCK_CELLS = 8_000_000


@dataclass(frozen=True)
class Matrix:
    """person x item matrix of summed feedback weights (float32 CSR) + row/col ids."""

    csr: scipy.sparse.csr_matrix
    people: list[str]
    items: list[str]

    @classmethod
    def build(cls, people: Sequence[str], items: Sequence[str], weights: Sequence[float], *,
              item_ids: Sequence[str] | None = None) -> Matrix:
        """One cell per (person, item) with the weights summed; cells whose total is <= 0 are dropped.
        Rows and columns are in order of first appearance, unless `item_ids` fixes the columns (e.g. the
        catalogue), in which case feedback on items not in `item_ids` is dropped."""
        if not len(people) == len(items) == len(weights):
            raise ValueError("people, items and weights must have the same length")
        person_index: dict[str, int] = {}
        rows = np.fromiter((person_index.setdefault(p, len(person_index)) for p in people), dtype=np.int64,
                           count=len(people))
        if item_ids is None:
            item_index: dict[str, int] = {}
            cols = np.fromiter((item_index.setdefault(i, len(item_index)) for i in items), dtype=np.int64,
                               count=len(items))
        else:
            item_index = {item: n for n, item in enumerate(item_ids)}
            if len(item_index) != len(item_ids):
                raise ValueError("item_ids has duplicates")
            cols = np.fromiter((item_index.get(i, -1) for i in items), dtype=np.int64, count=len(items))
        data = np.asarray(weights, dtype=np.float64)
        known = cols >= 0
        coo = scipy.sparse.coo_matrix((data[known], (rows[known], cols[known])),
                                      shape=(len(person_index), len(item_index)))
        csr = coo.tocsr()  # sums duplicates (in float64, before the cast)
        csr.data[csr.data <= 0] = 0
        csr.eliminate_zeros()
        csr = csr.astype(np.float32)
        csr.sort_indices()
        return cls(csr=csr, people=list(person_index), items=list(item_index))

    def person_index(self) -> dict[str, int]:
        return {p: n for n, p in enumerate(self.people)}

    def item_index(self) -> dict[str, int]:
        return {i: n for n, i in enumerate(self.items)}


def popularity(csr: scipy.sparse.csr_matrix) -> np.ndarray:
    """float32 per item: the number of distinct people with a positive cell."""
    csr = scipy.sparse.csr_matrix(csr)
    return np.bincount(csr.indices[csr.data > 0], minlength=csr.shape[1]).astype(np.float32)


@dataclass(frozen=True)
class Neighbors:
    """Item-to-item similarities: for each item its k most similar items, -1 padded."""

    indices: np.ndarray  # int32 [n_items, k], most similar first
    scores: np.ndarray  # float32 [n_items, k], 0 where indices is -1


def item_neighbors(csr: scipy.sparse.csr_matrix, k: int = 50, shrink: float = 10.0, *,
                   workers: int | None = None) -> Neighbors:
    """Cosine similarity between item columns (people as dimensions, weights log1p-damped) times
    n / (n + shrink), n the number of people the two items share; only positive similarities, no item is
    its own neighbour. Computed as sparse products over blocks of items on `workers` threads (default: the
    CPU count, at most 4), so memory stays bounded by the matrix, its transpose and a few blocks."""
    if k < 1:
        raise ValueError("k must be >= 1")
    x = scipy.sparse.csr_matrix(csr, dtype=np.float32, copy=True)
    x.data = np.log1p(np.maximum(x.data, 0), dtype=np.float32)
    x.eliminate_zeros()
    binary = x.copy()
    binary.data = np.ones_like(binary.data)
    xt = x.T.tocsr()  # item x person
    bt = binary.T.tocsr()
    n_items = x.shape[1]
    norms = np.sqrt(np.asarray(xt.multiply(xt).sum(axis=1), dtype=np.float64).ravel())
    inv_norms = np.divide(1.0, norms, out=np.zeros_like(norms), where=norms > 0)

    indices = np.full((n_items, k), -1, dtype=np.int32)
    scores = np.zeros((n_items, k), dtype=np.float32)

    def fill(start: int, stop: int) -> None:
        dots = (xt[start:stop] @ x).tocsr()
        if shrink > 0:
            counts = (bt[start:stop] @ binary).tocsr()
            counts.data = counts.data / (counts.data + np.float32(shrink))
            sim = dots.multiply(counts).tocsr()
        else:
            sim = dots
        rows = np.repeat(np.arange(start, stop), np.diff(sim.indptr))
        data = sim.data.astype(np.float64) * inv_norms[rows] * inv_norms[sim.indices]
        data[sim.indices == rows] = 0.0  # no self-neighbours
        _top_per_row(sim.indptr, sim.indices, data, k, indices[start:stop], scores[start:stop])

    # a block's co-occurrences span at most block * n_items cells (in practice a small fraction of that);
    # scipy's sparse products release the GIL, so blocks run on a few threads
    block = max(1, _BLOCK_CELLS // max(n_items, 1))
    starts = range(0, n_items, block)
    workers = max(1, min(workers or os.cpu_count() or 1, 4, len(starts)))
    with ThreadPoolExecutor(workers) as pool:
        for done in [pool.submit(fill, start, min(start + block, n_items)) for start in starts]:
            done.result()
    return Neighbors(indices, scores)


def _top_per_row(indptr: np.ndarray, cols: np.ndarray, data: np.ndarray, k: int, out_indices: np.ndarray,
                 out_scores: np.ndarray) -> None:
    """Fill out_* row by row with the k largest positive entries of a CSR block, best first, ties to the
    lower column."""
    for r in range(len(indptr) - 1):
        lo, hi = indptr[r], indptr[r + 1]
        if lo == hi:
            continue
        values, columns = data[lo:hi], cols[lo:hi]
        positive = values > 0
        values, columns = values[positive], columns[positive]
        if values.size > k:
            keep = _k_largest(values, k, columns)
            values, columns = values[keep], columns[keep]
        order = np.lexsort((columns, -values))[:k]
        out_indices[r, : order.size] = columns[order]
        out_scores[r, : order.size] = values[order]


def neighbor_scores(nb: Neighbors, seeds: np.ndarray, seed_weights: np.ndarray, n_items: int) -> np.ndarray:
    """float32 [n_items]: for every item, the sum over the seed items of seed weight * similarity."""
    seeds = np.asarray(seeds, dtype=np.int64)
    seed_weights = np.asarray(seed_weights, dtype=np.float64)
    if seeds.size == 0:
        return np.zeros(n_items, dtype=np.float32)
    idx = nb.indices[seeds]
    contrib = nb.scores[seeds].astype(np.float64) * seed_weights[:, None]
    mask = idx >= 0
    return np.bincount(idx[mask], weights=contrib[mask], minlength=n_items)[:n_items].astype(np.float32)


@dataclass(frozen=True)
class Factors:
    """Trained ALS item factors and what is needed to fold a person in.

    `user_factors` (rows of the training matrix) is set by `train_als` for offline use only; it is not
    serialised, people are served through `fold_in`."""

    item_factors: np.ndarray  # float32 [n_items, f]
    yty: np.ndarray  # float64 [f, f] = item_factors.T @ item_factors
    regularization: float
    alpha: float
    user_factors: np.ndarray | None = field(default=None, repr=False, compare=False)

    def fold_in(self, item_idx: np.ndarray, weights: np.ndarray) -> np.ndarray:
        """The exact ALS user solve for these interactions, float32 [f]: what the model would have learned
        for this person. Repeated items are summed; items with a total weight <= 0 are ignored."""
        f = self.item_factors.shape[1]
        item_idx = np.asarray(item_idx, dtype=np.int64)
        weights = np.asarray(weights, dtype=np.float64)
        if item_idx.size:
            item_idx, inverse = np.unique(item_idx, return_inverse=True)
            weights = np.bincount(inverse, weights=weights)
            positive = weights > 0
            item_idx, weights = item_idx[positive], weights[positive]
        if item_idx.size == 0:
            return np.zeros(f, dtype=np.float32)
        y = self.item_factors[item_idx].astype(np.float64)
        confidence = 1.0 + self.alpha * weights
        # (YtY + reg I + Yt (C - I) Y) x = Yt C p, p = 1 on the interacted items
        a = self.yty + self.regularization * np.eye(f) + (y.T * (confidence - 1.0)) @ y
        b = y.T @ confidence
        return scipy.linalg.solve(a, b, assume_a="pos", check_finite=False).astype(np.float32)

    def scores(self, user_vec: np.ndarray) -> np.ndarray:
        """float32 [n_items]: predicted preference of every item for this user vector."""
        return self.item_factors @ np.asarray(user_vec, dtype=np.float32)


def train_als(csr: scipy.sparse.csr_matrix, *, factors: int = 64, regularization: float = 0.05,
              alpha: float = 2.0, iterations: int = 15, seed: int = 0) -> Factors:
    """Fit implicit-feedback ALS on a person x item weight matrix (confidence 1 + alpha * w), BLAS limited
    to one thread (implicit parallelises itself). Deterministic for a seed. Ends with an exact user solve
    against the final item factors, so `user_factors[u]` equals `fold_in` of row u."""
    from implicit.cpu.als import AlternatingLeastSquares
    from threadpoolctl import threadpool_limits

    confidence = scipy.sparse.csr_matrix(csr, dtype=np.float32, copy=True)
    confidence.data[confidence.data < 0] = 0  # implicit would read a stored cell as a positive preference
    confidence.eliminate_zeros()
    confidence.data = 1.0 + alpha * confidence.data
    n_people, n_items = confidence.shape
    with threadpool_limits(1, "blas"):
        model = AlternatingLeastSquares(factors=factors, regularization=regularization, alpha=1.0,
                                        iterations=iterations, random_state=seed, dtype=np.float32)
        if n_people and n_items and confidence.nnz:
            model.fit(confidence, show_progress=False)
            item_factors = np.ascontiguousarray(model.item_factors, dtype=np.float32)
            yty = item_factors.T.astype(np.float64) @ item_factors.astype(np.float64)
            user_factors = _solve_users(confidence, item_factors, yty, regularization)
        else:
            item_factors = np.zeros((n_items, factors), dtype=np.float32)
            yty = np.zeros((factors, factors))
            user_factors = np.zeros((n_people, factors), dtype=np.float32)
    return Factors(item_factors=item_factors, yty=yty, regularization=float(regularization), alpha=float(alpha),
                   user_factors=user_factors)


def _solve_users(confidence: scipy.sparse.csr_matrix, item_factors: np.ndarray, yty: np.ndarray,
                 regularization: float) -> np.ndarray:
    """Exact (Cholesky) user solves of every row against fixed item factors, in implicit's native code."""
    from implicit.cpu import _als

    users = np.zeros((confidence.shape[0], item_factors.shape[1]), dtype=np.float32)
    _als._least_squares(yty.astype(np.float32), confidence.indptr, confidence.indices,
                        confidence.data.astype(np.float32), users, item_factors, regularization, num_threads=0)
    return users


def top_k(scores: np.ndarray, k: int, exclude: np.ndarray | None = None) -> np.ndarray:
    """Indices of the k highest scores, best first, ties to the lower index; `exclude`d indices and
    non-finite scores never appear (so fewer than k may come back)."""
    scores = np.asarray(scores, dtype=np.float64)
    valid = np.isfinite(scores)
    if exclude is not None and len(exclude):
        valid[np.asarray(exclude, dtype=np.int64)] = False
    candidates = np.flatnonzero(valid)
    if k <= 0 or candidates.size == 0:
        return np.zeros(0, dtype=np.int64)
    values = scores[candidates]
    if candidates.size > k:
        keep = _k_largest(values, k)
        candidates, values = candidates[keep], values[keep]
    order = np.lexsort((candidates, -values))
    return candidates[order]


def _k_largest(values: np.ndarray, k: int, ids: np.ndarray | None = None) -> np.ndarray:
    """Mask of exactly k entries: every value above the k-th largest, then ties with it by lowest id
    (by position when ids is None)."""
    # partitioning the negated values at k - 1 stays fast when most values are equal (e.g. zeros)
    threshold = -np.partition(-values, k - 1)[k - 1]
    keep = values > threshold
    ties = np.flatnonzero(values == threshold)
    if ids is not None:
        ties = ties[np.argsort(ids[ties], kind="stable")]
    keep[ties[: k - int(keep.sum())]] = True
    return keep


def dumps(items: list[str], nb: Neighbors | None, factors: Factors | None) -> bytes:
    """The item ids, neighbours and factors as one npz blob (no pickle; user factors are left out)."""
    arrays: dict[str, np.ndarray] = {"version": np.array(FORMAT_VERSION), "items": np.array(items, dtype=np.str_)}
    if nb is not None:
        arrays["nb_indices"] = nb.indices.astype(np.int32)
        arrays["nb_scores"] = nb.scores.astype(np.float32)
    if factors is not None:
        arrays["item_factors"] = factors.item_factors.astype(np.float32)
        arrays["yty"] = factors.yty.astype(np.float64)
        arrays["regularization"] = np.array(factors.regularization)
        arrays["alpha"] = np.array(factors.alpha)
    buffer = io.BytesIO()
    np.savez_compressed(buffer, **arrays)
    return buffer.getvalue()


def loads(blob: bytes) -> tuple[list[str], Neighbors | None, Factors | None]:
    """Inverse of `dumps`."""
    with np.load(io.BytesIO(blob), allow_pickle=False) as npz:
        version = int(npz["version"])
        if version != FORMAT_VERSION:
            raise ValueError(f"unsupported model format version {version}")
        items = [str(i) for i in npz["items"]] if npz["items"].size else []
        nb = Neighbors(npz["nb_indices"], npz["nb_scores"]) if "nb_indices" in npz.files else None
        factors = None
        if "item_factors" in npz.files:
            factors = Factors(item_factors=npz["item_factors"], yty=npz["yty"],
                              regularization=float(npz["regularization"]), alpha=float(npz["alpha"]))
    return items, nb, factors
