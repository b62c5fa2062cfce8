"""similarity.pair_values works block by block (bounded memory) and gives the dense formula's values."""

import numpy as np
import pytest

from fusionkit_plugins.tasks.patient.similarity import pair_values


def _dense(X, i, j, measure):
    a, b = X[i].astype(np.float64), X[j].astype(np.float64)
    if measure == "dot":
        return (a * b).sum(axis=1)
    if measure == "cosine":
        return (a * b).sum(axis=1) / np.maximum(np.linalg.norm(a, axis=1) * np.linalg.norm(b, axis=1), 1e-12)
    return np.linalg.norm(a - b, axis=1)


@pytest.mark.parametrize("measure", ["dot", "cosine", "euclidean"])
def test_blocks_give_the_dense_values_exactly(measure):
    rng = np.random.default_rng(3)
    X = (rng.standard_normal((60, 96)) * rng.uniform(0.01, 30, 96)).astype(np.float32)
    i, j = rng.integers(0, 60, 2500), rng.integers(0, 60, 2500)
    want = _dense(X, i, j, measure)
    for block in (1, 7, 1024, 10_000):
        np.testing.assert_array_equal(pair_values(X, i, j, measure, block=block), want)


def test_unknown_measure_is_refused():
    from fusionkit import DataError

    with pytest.raises(DataError):
        pair_values(np.zeros((2, 3), np.float32), np.array([0]), np.array([1]), "manhattan")
