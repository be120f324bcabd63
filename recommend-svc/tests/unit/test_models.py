"""The recommendation models on small matrices whose answers are known by hand."""

from __future__ import annotations

import numpy as np
import pytest
import scipy.sparse

from recommend.domain import models


def _csr(rows: list[list[float]]) -> scipy.sparse.csr_matrix:
    return scipy.sparse.csr_matrix(np.array(rows, dtype=np.float32))


def _random_csr(seed: int, people: int, items: int, density: float) -> scipy.sparse.csr_matrix:
    rng = np.random.default_rng(seed)
    dense = np.where(rng.random((people, items)) < density, rng.integers(1, 5, (people, items)), 0)
    return scipy.sparse.csr_matrix(dense.astype(np.float32))


# -- Matrix, popularity ------------------------------------------------------------------------------------


def test_build_sums_duplicates_and_drops_cells_whose_total_is_not_positive() -> None:
    m = models.Matrix.build(["ann", "ann", "bob", "bob", "bob"], ["x", "x", "x", "y", "y"], [1, 2, 5, 1, -1])
    assert m.people == ["ann", "bob"]
    assert m.items == ["x", "y"]
    assert m.csr.dtype == np.float32
    assert m.csr.toarray().tolist() == [[3, 0], [5, 0]]
    assert m.csr.nnz == 2


def test_build_with_item_ids_fixes_the_column_order_and_drops_unknown_items() -> None:
    m = models.Matrix.build(["ann", "ann", "bob"], ["x", "ghost", "y"], [1, 1, 2], item_ids=["y", "z", "x"])
    assert m.items == ["y", "z", "x"]
    assert m.csr.toarray().tolist() == [[0, 0, 1], [2, 0, 0]]
    assert m.item_index() == {"y": 0, "z": 1, "x": 2}
    assert m.person_index() == {"ann": 0, "bob": 1}


def test_build_refuses_mismatched_lengths() -> None:
    with pytest.raises(ValueError):
        models.Matrix.build(["ann"], ["x", "y"], [1.0])


def test_popularity_counts_distinct_people_not_weights() -> None:
    csr = _csr([[9, 1, 0], [0, 1, 0], [0, 1, 1]])
    assert models.popularity(csr).tolist() == [1, 3, 1]
    assert models.popularity(csr).dtype == np.float32


# -- item-to-item ------------------------------------------------------------------------------------------


def test_neighbours_of_items_bought_together_come_first() -> None:
    # items 0 and 1 are bought together by three people, 2 and 3 by two others; item 4 once with 0
    csr = _csr([[1, 1, 0, 0, 0], [1, 1, 0, 0, 0], [1, 1, 0, 0, 1], [0, 0, 1, 1, 0], [0, 0, 1, 1, 0]])
    nb = models.item_neighbors(csr, k=3, shrink=0.0)
    assert nb.indices.shape == (5, 3) and nb.indices.dtype == np.int32 and nb.scores.dtype == np.float32
    assert nb.indices[0].tolist() == [1, 4, -1]
    assert nb.indices[2].tolist() == [3, -1, -1]
    assert nb.scores[2, 0] == pytest.approx(1.0)  # identical columns: cosine 1
    assert nb.scores[0, 2] == 0.0
    assert all(i not in row for i, row in enumerate(nb.indices.tolist()))  # no self-neighbours
    assert np.all(np.diff(nb.scores, axis=1) <= 0)


def test_shrink_lowers_similarities_supported_by_few_people() -> None:
    csr = _csr([[1, 1, 0, 0], [0, 0, 1, 1], [0, 0, 1, 1], [0, 0, 1, 1]])
    plain = models.item_neighbors(csr, k=1, shrink=0.0)
    shrunk = models.item_neighbors(csr, k=1, shrink=3.0)
    assert plain.scores[0, 0] == pytest.approx(1.0) and plain.scores[2, 0] == pytest.approx(1.0)
    assert shrunk.scores[0, 0] == pytest.approx(1 / 4)  # one shared person: 1 / (1 + 3)
    assert shrunk.scores[2, 0] == pytest.approx(3 / 6)  # three shared people: 3 / (3 + 3)


def test_item_neighbors_in_blocks_matches_a_dense_computation(monkeypatch: pytest.MonkeyPatch) -> None:
    csr = _random_csr(3, people=120, items=40, density=0.12)
    monkeypatch.setattr(models, "_BLOCK_CELLS", 40 * 7)  # six blocks on two threads
    nb = models.item_neighbors(csr, k=6, shrink=5.0, workers=2)
    w = csr.toarray()
    x, b = np.log1p(w), (w > 0).astype(float)
    dots, shared, norms = x.T @ x, b.T @ b, np.sqrt((x * x).sum(axis=0))
    sim = dots / np.maximum(np.outer(norms, norms), 1e-12) * shared / (shared + 5.0)
    np.fill_diagonal(sim, 0.0)
    for item in range(40):
        expected = models.top_k(np.where(sim[item] > 0, sim[item], -np.inf), 6)
        got = nb.indices[item][nb.indices[item] >= 0]
        assert got.tolist() == expected.tolist()
        np.testing.assert_allclose(nb.scores[item][: got.size], sim[item][expected], rtol=1e-5)


def test_neighbor_scores_sum_weight_times_similarity_over_the_seeds() -> None:
    nb = models.Neighbors(indices=np.array([[1, 2], [0, -1], [0, 1]], dtype=np.int32),
                          scores=np.array([[0.5, 0.25], [0.5, 0.0], [0.25, 0.1]], dtype=np.float32))
    scores = models.neighbor_scores(nb, np.array([0, 2]), np.array([2.0, 1.0]), 3)
    np.testing.assert_allclose(scores, [0.25, 2 * 0.5 + 0.1, 2 * 0.25])
    assert scores.dtype == np.float32
    assert models.neighbor_scores(nb, np.array([], dtype=int), np.array([]), 3).tolist() == [0, 0, 0]


# -- ALS ---------------------------------------------------------------------------------------------------


def test_fold_in_of_a_training_row_reproduces_the_trained_user_vector() -> None:
    csr = _random_csr(1, people=80, items=30, density=0.15)
    factors = models.train_als(csr, factors=6, iterations=8, seed=0)
    assert factors.item_factors.shape == (30, 6) and factors.item_factors.dtype == np.float32
    np.testing.assert_allclose(factors.yty, factors.item_factors.T.astype(float) @ factors.item_factors, rtol=1e-5)
    for user in range(80):
        row = csr[user]
        vector = factors.fold_in(row.indices, row.data)
        np.testing.assert_allclose(vector, factors.user_factors[user], rtol=1e-3, atol=1e-5)


def test_fold_in_sums_repeated_items_and_ignores_non_positive_weights() -> None:
    factors = models.train_als(_random_csr(2, people=40, items=12, density=0.3), factors=4, iterations=4)
    once = factors.fold_in(np.array([3, 5]), np.array([3.0, 1.0]))
    repeated = factors.fold_in(np.array([3, 5, 3, 7]), np.array([1.0, 1.0, 2.0, -1.0]))
    np.testing.assert_allclose(once, repeated, rtol=1e-5)
    assert factors.fold_in(np.array([], dtype=int), np.array([])).tolist() == [0.0] * 4


def test_als_ranks_the_missing_item_of_a_group_above_other_groups() -> None:
    # two taste groups of items {0,1,2} and {3,4,5}; a newcomer with 0 and 1 should want 2 next
    group_a, group_b = [1, 1, 1, 0, 0, 0], [0, 0, 0, 1, 1, 1]
    factors = models.train_als(_csr([group_a] * 10 + [group_b] * 12), factors=4, regularization=0.1, iterations=10)
    scores = factors.scores(factors.fold_in(np.array([0, 1]), np.array([1.0, 1.0])))
    assert scores.shape == (6,) and scores.dtype == np.float32
    assert models.top_k(scores, 1, exclude=np.array([0, 1])).tolist() == [2]


def test_training_is_deterministic_for_a_seed() -> None:
    csr = _random_csr(4, people=50, items=20, density=0.2)
    first = models.train_als(csr, factors=5, iterations=5, seed=7)
    second = models.train_als(csr, factors=5, iterations=5, seed=7)
    np.testing.assert_array_equal(first.item_factors, second.item_factors)


def test_training_an_empty_matrix_gives_zero_factors() -> None:
    factors = models.train_als(scipy.sparse.csr_matrix((3, 4), dtype=np.float32), factors=2)
    assert factors.item_factors.shape == (4, 2) and not factors.item_factors.any()


# -- top_k, serialisation ----------------------------------------------------------------------------------


def test_top_k_orders_best_first_with_ties_to_the_lower_index_and_skips_excluded() -> None:
    scores = np.array([0.1, 0.9, 0.5, 0.9, 0.0, 0.5], dtype=np.float32)
    assert models.top_k(scores, 3).tolist() == [1, 3, 2]
    assert models.top_k(scores, 3, exclude=np.array([1, 2])).tolist() == [3, 5, 0]
    assert models.top_k(scores, 10, exclude=np.array([0, 1, 2, 3])).tolist() == [5, 4]
    assert models.top_k(np.array([np.nan, 1.0, -np.inf, 0.0]), 4).tolist() == [1, 3]
    assert models.top_k(np.zeros(1000), 3).tolist() == [0, 1, 2]
    assert models.top_k(scores, 0).tolist() == []


def test_dumps_and_loads_round_trip() -> None:
    csr = _random_csr(5, people=30, items=8, density=0.3)
    items = ["sku-1", "sku-2", "café", "x" * 128, "5", "6", "7", "8"]
    nb = models.item_neighbors(csr, k=3)
    factors = models.train_als(csr, factors=3, regularization=0.2, alpha=4.0, iterations=3)
    loaded_items, loaded_nb, loaded_factors = models.loads(models.dumps(items, nb, factors))
    assert loaded_items == items
    np.testing.assert_array_equal(loaded_nb.indices, nb.indices)
    np.testing.assert_array_equal(loaded_nb.scores, nb.scores)
    np.testing.assert_array_equal(loaded_factors.item_factors, factors.item_factors)
    np.testing.assert_array_equal(loaded_factors.yty, factors.yty)
    assert (loaded_factors.regularization, loaded_factors.alpha) == (0.2, 4.0)
    np.testing.assert_allclose(loaded_factors.fold_in(np.array([1, 2]), np.array([1.0, 2.0])),
                               factors.fold_in(np.array([1, 2]), np.array([1.0, 2.0])))
    assert models.loads(models.dumps([], None, None)) == ([], None, None)
