"""Issue 15: the cancer-specific deep recognizer at k=10 first predicted a constant (MCC exactly 0),
then, with class-balanced losses, stayed far below the logistic baseline.

At k=10 of 4 modalities ~94% of aggregates hold every modality: with unweighted MSE on
probabilities "always present" is the plain network's easy optimum (``balance=False,
shortcut=False`` reproduces the constant predictions). Balanced losses stop the collapse but the
network alone still misses the precise linear boundary the task needs (an aggregate is a sum, each
modality's count is linear in it; the inputs are badly conditioned and a few hundred Adam steps do
not get there). The fixed linear shortcut (``models.linear_shortcut``: ridge-regressed counts
calibrated into presence logits, solved before training) closes the gap; the guard flags any
model that still predicts a constant.
"""

from __future__ import annotations

import numpy as np
import pytest

pytest.importorskip("torch")
pytest.importorskip("sklearn")

from fusionkit_plugins.tasks.recognizer.data import constant_rows  # noqa: E402
from fusionkit_plugins.tasks.recognizer.models import (DeepRecognizer, LogisticBaseline, _calibrate,  # noqa: E402
                                                       class_weights, linear_shortcut, ridge_loo)
from fusionkit_plugins.tasks.recognizer.task import _constant_predictions  # noqa: E402

pytestmark = pytest.mark.usefixtures("torch_one_thread")
D, M, C = 32, 4, 6
NAMES = ["rna", "mutation", "text", "image"]


def _world(seed=0):
    """Per-modality offsets with demo-like norms (rna 7, mutation 2, text 0.45, image 17), small spread."""
    rng = np.random.default_rng(seed)
    offs = [rng.normal(size=D) / np.sqrt(D) * s for s in (7, 2, 0.45, 17)]
    stds = (0.036, 0.04, 0.032, 0.4)
    effects = [[rng.normal(size=D) * s * 0.5 for _ in range(C)] for s in stds]
    return rng, offs, stds, effects


def _sample(world, n, k):
    rng, offs, stds, effects = world
    X = np.zeros((n, D), np.float32)
    counts = np.zeros((n, M), np.int64)
    cls = rng.integers(0, C, n)
    for i in range(n):
        for m in rng.integers(0, M, k):
            counts[i, m] += 1
            X[i] += offs[m] + effects[m][cls[i]] + rng.normal(size=D) * stds[m]
    return X, (counts > 0).astype(np.float32), counts, cls


def _mcc(t, p):
    from sklearn.metrics import matthews_corrcoef

    return matthews_corrcoef(t, p)


def _fit(parts, *, balance: bool, shortcut: bool, seed: int = 0):
    (X, P, Cn, T), (Xv, Pv, Cv, Tv) = parts
    net = DeepRecognizer(M, hidden=[128, 64], head_hidden=16, dropout=0.2, loss="mse", head_weights=np.ones(M),
                         predict_counts=False, count_weight=1.0, n_classes=C, cancer_weight=1.0, lr=1e-3,
                         batch_size=256, max_epochs=30, patience=8, weight_decay=0.0, standardize=True,
                         device="cpu", seed=seed, k_scale=10.0, balance=balance, shortcut=shortcut)
    return net.fit(X, P, Cn, Xv, Pv, Cv, T, Tv)


def _presence_mcc(pred, P):
    yhat = (pred["proba"] >= 0.5).astype(int)
    return np.array([_mcc(P[:, j], yhat[:, j]) for j in range(M)]), yhat


def test_class_weights_make_each_class_weigh_half():
    P = np.array([[1, 1, 0], [1, 0, 0], [1, 1, 0], [0, 1, 0]], np.float32)
    pos, neg = class_weights(P)
    frac = P.mean(0)
    np.testing.assert_allclose((pos * frac)[:2], 0.5)
    np.testing.assert_allclose((neg * (1 - frac))[:2], 0.5)
    assert pos[2] == neg[2] == 1.0  # a column with one class only keeps weight 1


def test_ridge_loo_predictions_are_exact_refits():
    rng = np.random.default_rng(1)
    Z = rng.normal(size=(40, 6))
    Y = Z @ rng.normal(size=(6, 2)) + rng.normal(size=(40, 2)) * 0.3 + 3.0
    W, b, loo, alpha = ridge_loo(Z, Y, rel_alphas=(0.05,))
    assert alpha == pytest.approx(0.05 * 40)
    for i in (0, 17, 39):  # refit without row i (penalised slope, free intercept)
        m = np.ones(40, bool)
        m[i] = False
        zm, ym = Z[m].mean(0), Y[m].mean(0)
        Wi = np.linalg.solve((Z[m] - zm).T @ (Z[m] - zm) + alpha * np.eye(6), (Z[m] - zm).T @ (Y[m] - ym))
        np.testing.assert_allclose(loo[i], (Z[i] - zm) @ Wi + ym, rtol=1e-8, atol=1e-8)
    zm, ym = Z.mean(0), Y.mean(0)
    np.testing.assert_allclose(W, np.linalg.solve((Z - zm).T @ (Z - zm) + alpha * np.eye(6), (Z - zm).T @ (Y - ym)))
    np.testing.assert_allclose(b, ym - zm @ W)
    # homogeneous (no free intercept): Y = (Z - origin) W
    o = rng.normal(size=6)
    W0, b0, loo0, _ = ridge_loo(Z, Y, rel_alphas=(0.05,), origin=o)
    np.testing.assert_allclose(W0, np.linalg.solve((Z - o).T @ (Z - o) + alpha * np.eye(6), (Z - o).T @ Y))
    np.testing.assert_allclose(b0, -o @ W0)
    m = np.arange(40) != 5
    W5 = np.linalg.solve((Z[m] - o).T @ (Z[m] - o) + alpha * np.eye(6), (Z[m] - o).T @ Y[m])
    np.testing.assert_allclose(loo0[5], (Z[5] - o) @ W5, rtol=1e-8, atol=1e-8)


def test_calibration_puts_the_boundary_between_zero_and_one_draw():
    rng = np.random.default_rng(2)
    counts = rng.integers(0, 4, 500)
    x = counts + rng.normal(size=500) * 0.2
    s, t = _calibrate(x, (counts > 0).astype(float), np.ones(500))
    assert s > 3 and abs(t / s) < 0.15  # the boundary sits near count 0.5
    sc = linear_shortcut(np.c_[x, rng.normal(size=500)].astype(np.float32), (counts > 0)[:, None].astype(float),
                         counts[:, None], None, n_classes=0, predict_counts=True, k_scale=3.0, balance=False)
    assert sc["W"].shape == (2, 2) and sc["cW"] is None
    logit = np.c_[x, np.zeros(500)] @ sc["W"][:, 0] + sc["b"][0]
    assert ((logit > 0) == (counts > 0)).mean() > 0.97


def test_deep_recognizer_at_k10_no_constant_and_within_005_of_logistic():
    """The old failure reproduced (constant predictions; then far below the baseline) and the fix."""
    world = _world()
    parts = [_sample(world, 800, 10), _sample(world, 200, 10)]
    Xte, Pte, _, Tte = _sample(world, 600, 10)
    assert Pte.mean() > 0.9  # the class balance that caused the failure

    base = LogisticBaseline(n_classes=C).fit(np.vstack([parts[0][0], parts[1][0]]),
                                             np.vstack([parts[0][1], parts[1][1]]),
                                             np.concatenate([parts[0][3], parts[1][3]]))
    bpred = base.predict(Xte)
    bmcc, _ = _presence_mcc(bpred, Pte)

    # 1. the first failure: the plain network, unweighted, predicts "present" everywhere
    _, old = _presence_mcc(_fit(parts, balance=False, shortcut=False).predict(Xte), Pte)
    assert sum(r["value"] for r in constant_rows(Pte > 0, old, NAMES, {})) >= 2

    # 2. the second: balanced losses stop the collapse, but the network alone stays far below the baseline
    mid, _ = _presence_mcc(_fit(parts, balance=True, shortcut=False).predict(Xte), Pte)
    assert (mid < bmcc - 0.1).any(), (mid, bmcc)

    # 3. the fix (the task's defaults): no constant output, every modality within 0.05 of the baseline
    pred = _fit(parts, balance=False, shortcut=True).predict(Xte)
    new, yhat = _presence_mcc(pred, Pte)
    assert all(r["value"] == 0.0 for r in constant_rows(Pte > 0, yhat, NAMES, {}))
    print(f"\n[recognizer k=10] plain balanced {np.round(mid, 3)}, shortcut {np.round(new, 3)}, "
          f"baseline {np.round(bmcc, 3)}; cancer {_mcc(Tte, pred['cancer']):.3f} vs {_mcc(Tte, bpred['cancer']):.3f}")
    assert (new >= bmcc - 0.05).all(), (new, bmcc)
    assert _mcc(Tte, pred["cancer"]) >= _mcc(Tte, bpred["cancer"]) - 0.05


def test_shortcut_network_starts_as_the_linear_path():
    """Residual layers start at zero and epoch 0 competes in early stopping: with nothing to learn
    (lr ~ 0) the network predicts exactly what the solved linear path predicts."""
    world = _world(3)
    parts = [_sample(world, 300, 6), _sample(world, 80, 6)]
    (X, P, Cn, T), (Xv, Pv, Cv, Tv) = parts
    net = DeepRecognizer(M, hidden=[32], head_hidden=8, dropout=0.2, loss="mse", head_weights=np.ones(M),
                         predict_counts=True, count_weight=1.0, n_classes=C, cancer_weight=1.0, lr=1e-12,
                         batch_size=64, max_epochs=2, patience=1, weight_decay=0.0, standardize=True,
                         device="cpu", seed=0, k_scale=6.0).fit(X, P, Cn, Xv, Pv, Cv, T, Tv)
    Z = (Xv - net.mu_) / net.sd_
    sc = net.shortcut_
    lin = Z @ sc["W"] + sc["b"]
    pred = net.predict(Xv)
    np.testing.assert_allclose(pred["proba"], 1 / (1 + np.exp(-lin[:, 0::2])), atol=1e-4)
    np.testing.assert_array_equal(pred["cancer"], (Z @ sc["cW"] + sc["cb"]).argmax(1))
    assert net.history_[0]["epoch"] == 0 and net.epochs_ == len(net.history_) - 1


def test_homogeneous_shortcut_ignores_the_fixed_count_total():
    """At a fixed k the affine count model may use "the counts add up to k"; the homogeneous one
    cannot: scaling an aggregate towards zero scales its counts."""
    world = _world(4)
    (X, P, Cn, T), (Xv, Pv, Cv, Tv) = _sample(world, 300, 6), _sample(world, 60, 6)
    kw = dict(hidden=[16], head_hidden=4, dropout=0.0, loss="mse", head_weights=np.ones(M), predict_counts=True,
              count_weight=1.0, n_classes=0, cancer_weight=1.0, lr=1e-12, batch_size=64, max_epochs=1,
              patience=1, weight_decay=0.0, standardize=True, device="cpu", seed=0, k_scale=6.0)
    with pytest.raises(ValueError):
        DeepRecognizer(M, **kw, shortcut="sideways")
    for kind in ("affine", "homogeneous"):
        net = DeepRecognizer(M, **kw, shortcut=kind).fit(X, P, Cn, Xv, Pv, Cv)
        sc = net.shortcut_
        zero = (np.zeros(D, np.float32) - net.mu_) / net.sd_  # the empty aggregate
        counts_at_zero = (zero @ sc["W"] + sc["b"])[1::2] * 6.0
        if kind == "homogeneous":
            np.testing.assert_allclose(counts_at_zero, 0.0, atol=1e-3)
        else:
            assert np.abs(counts_at_zero).max() > 0.5  # the intercept carries part of k


def test_guard_flags_constant_models_in_the_summary():
    truth = np.array([[1, 1], [0, 1], [1, 0]])
    pred = np.array([[1, 1], [1, 0], [1, 1]])
    rows = constant_rows(truth, pred, ["rna", "text"], {"model": "deep", "mode": "isolation", "k": 10,
                                                         "perturbation": "none"})
    assert [(r["modality"], r["value"]) for r in rows] == [("rna", 1.0), ("text", 0.0)]
    # a column whose truth is constant cannot be judged: no row
    assert constant_rows(np.ones((3, 1)), np.ones((3, 1)), ["image"], {}) == []
    assert _constant_predictions(rows + rows) == ["deep/isolation/k=10/rna (2 repeats)"]
