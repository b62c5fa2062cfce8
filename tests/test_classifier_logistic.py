"""The classifier's logistic baseline: fitted in the span of the training rows, it is the same
model as the full-feature fit, and it converges (it used to stop at max_iter)."""

from __future__ import annotations

import numpy as np
import pytest

pytest.importorskip("sklearn")

from fusionkit_plugins.tasks.patient.classifier import _fit_logistic  # noqa: E402

CFG = {"C": 0.05, "max_iter": 300, "tol": 1e-6, "class_weight": False}


def _data(n: int, d: int, seed: int = 0) -> tuple[np.ndarray, ...]:
    rng = np.random.default_rng(seed)
    centres = rng.normal(size=(4, d)) * 0.4
    offset = rng.normal(size=d) * 20  # a large shared offset, as in sums of embeddings
    ytr, yte = rng.integers(0, 4, n), rng.integers(0, 4, 200)
    Xtr = centres[ytr] + rng.normal(size=(n, d)) * rng.uniform(0.1, 10, d) + offset
    Xte = centres[yte] + rng.normal(size=(200, d)) * rng.uniform(0.1, 10, d) + offset
    return Xtr, ytr, Xte


def test_row_span_fit_is_the_full_feature_model_and_converges():
    from sklearn.linear_model import LogisticRegression

    Xtr, ytr, Xte = _data(80, 600)
    pred, info = _fit_logistic(Xtr, ytr, Xte, CFG)
    assert info["converged"] is True
    assert info["iterations"] < CFG["max_iter"]
    mu, sd = Xtr.mean(0), Xtr.std(0)
    full = LogisticRegression(C=CFG["C"], solver="newton-cg", tol=1e-10, max_iter=2000)
    full.fit((Xtr - mu) / sd, ytr)
    assert (full.predict((Xte - mu) / sd) == pred).mean() >= 0.99


def test_more_rows_than_features_fits_without_reduction():
    Xtr, ytr, Xte = _data(400, 50, seed=1)
    pred, info = _fit_logistic(Xtr, ytr, Xte, CFG)
    assert info["converged"] is True
    assert pred.shape == (200,) and set(pred.tolist()) <= {0, 1, 2, 3}
