"""Issue 15: the cancer-specific deep recognizer predicted a constant at k=10 (MCC exactly 0).

At k=10 of 4 modalities ~94% of aggregates hold every modality: with unweighted MSE on
probabilities "always present" is the network's easy optimum. The old setting (``balance=False``)
reproduces the constant predictions; class-balanced head losses fix them; the guard flags them.
"""

from __future__ import annotations

import numpy as np
import pytest

pytest.importorskip("torch")
pytest.importorskip("sklearn")

from fusionkit_plugins.tasks.recognizer.data import constant_rows  # noqa: E402
from fusionkit_plugins.tasks.recognizer.models import DeepRecognizer, LogisticBaseline, class_weights  # noqa: E402
from fusionkit_plugins.tasks.recognizer.task import _constant_predictions  # noqa: E402

pytestmark = pytest.mark.usefixtures("torch_one_thread")
D, M, C = 32, 4, 6


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


def _fit(balance: bool, parts):
    (X, P, Cn, T), (Xv, Pv, Cv, Tv) = parts
    net = DeepRecognizer(M, hidden=[128, 64], head_hidden=16, dropout=0.2, loss="mse", head_weights=np.ones(M),
                         predict_counts=False, count_weight=1.0, n_classes=C, cancer_weight=1.0, lr=1e-3,
                         batch_size=256, max_epochs=30, patience=8, weight_decay=0.0, standardize=True,
                         device="cpu", seed=0, k_scale=10.0, balance=balance)
    return net.fit(X, P, Cn, Xv, Pv, Cv, T, Tv)


def test_class_weights_make_each_class_weigh_half():
    P = np.array([[1, 1, 0], [1, 0, 0], [1, 1, 0], [0, 1, 0]], np.float32)
    pos, neg = class_weights(P)
    frac = P.mean(0)
    np.testing.assert_allclose((pos * frac)[:2], 0.5)
    np.testing.assert_allclose((neg * (1 - frac))[:2], 0.5)
    assert pos[2] == neg[2] == 1.0  # a column with one class only keeps weight 1


def test_old_setting_predicts_constant_at_k10_and_balance_fixes_it():
    world = _world()
    parts = [_sample(world, 800, 10), _sample(world, 200, 10)]
    Xte, Pte, _, Tte = _sample(world, 400, 10)
    assert Pte.mean() > 0.9  # the class balance that caused the failure

    old = (_fit(False, parts).predict(Xte)["proba"] >= 0.5).astype(int)
    old_rows = constant_rows(Pte > 0, old, ["rna", "mutation", "text", "image"], {})
    assert sum(r["value"] for r in old_rows) >= 2  # constant "present" for several modalities: MCC 0

    pred = _fit(True, parts).predict(Xte)
    new = (pred["proba"] >= 0.5).astype(int)
    assert all(r["value"] == 0.0 for r in constant_rows(Pte > 0, new, ["rna", "mutation", "text", "image"], {}))
    mccs = [_mcc(Pte[:, j], new[:, j]) for j in range(M)]
    assert min(mccs) > 0.3, mccs
    assert _mcc(Tte, pred["cancer"]) > 0.6

    base = LogisticBaseline(n_classes=C).fit(np.vstack([parts[0][0], parts[1][0]]),
                                             np.vstack([parts[0][1], parts[1][1]]))
    bmcc = [_mcc(Pte[:, j], (base.predict(Xte)["proba"][:, j] >= 0.5).astype(int)) for j in range(M)]
    print(f"\n[recognizer k=10] deep balanced MCC {np.round(mccs, 3)}, baseline {np.round(bmcc, 3)}")


def test_guard_flags_constant_models_in_the_summary():
    truth = np.array([[1, 1], [0, 1], [1, 0]])
    pred = np.array([[1, 1], [1, 0], [1, 1]])
    rows = constant_rows(truth, pred, ["rna", "text"], {"model": "deep", "mode": "isolation", "k": 10,
                                                         "perturbation": "none"})
    assert [(r["modality"], r["value"]) for r in rows] == [("rna", 1.0), ("text", 0.0)]
    # a column whose truth is constant cannot be judged: no row
    assert constant_rows(np.ones((3, 1)), np.ones((3, 1)), ["image"], {}) == []
    assert _constant_predictions(rows + rows) == ["deep/isolation/k=10/rna (2 repeats)"]
