"""Batched recognizer training (grouped weights across blocks of repeats, bf16 products, the
all-modality L-BFGS baseline) against one-at-a-time training: the same protocol and outputs,
statistically equivalent metrics on a small configuration."""

from __future__ import annotations

import math
from collections import defaultdict

import numpy as np
import pytest

pytest.importorskip("torch")
pytest.importorskip("sklearn")

from test_recognizer import MODS, _metrics, _read_csv, _recipe, _run  # noqa: E402

NET = {"hidden": [64, 32], "head_hidden": 16, "max_epochs": 20, "patience": 3, "batch_size": 64}
REPEATS = 8


def _clean_mcc(rows: list[dict]) -> dict[tuple, list[float]]:
    out: dict[tuple, list[float]] = defaultdict(list)
    for r in rows:
        if r["metric"] == "mcc" and r["stratum"] == "all" and r["perturbation"] == "none" and r["modality"] in MODS:
            out[(r["model"], r["mode"], r["k"], r["modality"])].append(float(r["value"]))
    return out


def test_batched_training_is_statistically_equivalent(tmp_path, plugin_system, torch_one_thread):
    common = {"sampling": "rec", "n_repeats": REPEATS, "modes": ["isolation", "composite"], "baseline": True,
              "perturbations": ["noise30"], **NET}
    # the batched side as recipes/paper_scale.yaml runs it: grouped weights across a block of
    # repeats, bf16 products
    tasks = {"seq": {"name": "recognizer", "params": {**common}},
             "bat": {"name": "recognizer", "params": {**common, "batched": True, "precision": "bf16",
                                                      "batch_repeats": 2}}}
    perts = {"noise30": {"name": "gaussian-replace", "params": {"fraction": 0.3, "std": 0.5}}}
    # k up to 10 draws of 4 modalities, modest offsets: MCC well below 1, so the comparison can fail
    path = _recipe(tmp_path, tasks, k=(4, 10), n=400, perturbations=perts, cancer_shift=4.0)
    _run(path, plugin_system)
    res = _metrics(tmp_path)
    out = tmp_path / "out"
    seq = _clean_mcc(_read_csv(out / res["seq"]["tables"]["per_repeat"]))
    bat = _clean_mcc(_read_csv(out / res["bat"]["tables"]["per_repeat"]))
    assert set(seq) == set(bat) and len(seq) == 2 * 4 * len(MODS)  # (model, mode, k)
    below_one = 0
    for key in seq:
        a, b = np.asarray(seq[key]), np.asarray(bat[key])
        assert len(a) == len(b) == REPEATS
        a, b = a[np.isfinite(a)], b[np.isfinite(b)]  # MCC is undefined on a single-class test set
        assert len(a) >= REPEATS - 2 and len(b) >= REPEATS - 2
        se = math.sqrt(a.var(ddof=1) / len(a) + b.var(ddof=1) / len(b))
        # same mean within the combined 95% CI (plus a little slack for a near-constant metric)
        assert abs(a.mean() - b.mean()) <= 2.6 * se + 0.02, (key, a.mean(), b.mean(), se)
        below_one += a.mean() < 0.97
    assert below_one >= 4  # the configuration is not trivially separable
    # one unit per repeat; every model is reported as in one-at-a-time training
    s = res["bat"]["summary"]
    assert s["units"]["total"] == REPEATS * 2 * 3 and res["seq"]["summary"]["units"]["total"] == REPEATS * 2 * 3
    units = _read_csv(out / res["bat"]["tables"]["units"])
    # 2 sample counts x 2 repeats per grouped isolation model, 2 repeats per composite one
    assert {u["batched"] for u in units if u["model"] == "deep" and u["mode"] == "isolation"} == {"4"}
    assert {u["batched"] for u in units if u["model"] == "deep" and u["mode"] == "composite"} == {"2"}
    assert sorted({int(u["repeat"]) for u in units}) == list(range(REPEATS))
    seq_loss = np.mean([float(u["best_val_loss"]) for u in _read_csv(out / res["seq"]["tables"]["units"])
                        if u["model"] == "deep"])
    bat_loss = np.mean([float(u["best_val_loss"]) for u in units if u["model"] == "deep"])
    assert abs(seq_loss - bat_loss) <= 0.15 * seq_loss


def test_early_stopping_is_per_network(torch_one_thread):
    from fusionkit_plugins.tasks.recognizer.batched import fit_batched
    from fusionkit_plugins.tasks.recognizer.models import DeepRecognizer

    rng = np.random.default_rng(1)
    n, nv, d, M = 400, 100, 16, 3

    def dataset(learnable: bool) -> dict:
        P = rng.integers(0, 2, (n + nv, M)).astype(np.float32)
        X = rng.normal(size=(n + nv, d)).astype(np.float32)
        if learnable:
            X[:, :M] += 3 * P
        return {"X": X[:n], "presence": P[:n], "counts": P[:n], "X_v": X[n:], "presence_v": P[n:],
                "counts_v": P[n:], "classes": None, "classes_v": None}

    def net(seed: int) -> DeepRecognizer:
        return DeepRecognizer(M, hidden=[64], head_hidden=8, dropout=0.0, loss="mse",
                              head_weights=np.ones(M, np.float32), predict_counts=False, count_weight=1.0,
                              n_classes=0, cancer_weight=1.0, lr=1e-2, batch_size=32, max_epochs=60, patience=2,
                              weight_decay=0.0, standardize=True, device="cpu", seed=seed, k_scale=1.0)

    data = [dataset(False), dataset(True)]
    noise, signal = fit_batched([net(0), net(1)], data)
    assert noise.epochs_ < signal.epochs_  # the network on noise stopped early and left the batch
    proba = signal.predict(data[1]["X_v"])["proba"]
    assert ((proba >= 0.5) == (data[1]["presence_v"] > 0)).mean() > 0.9
    assert noise.predict(data[0]["X_v"])["proba"].shape == (nv, M)


def test_multilogistic_matches_scikit_learn():
    from sklearn.linear_model import LogisticRegression

    from fusionkit_plugins.tasks.recognizer.baseline import MultiLogistic

    rng = np.random.default_rng(0)
    X = rng.normal(size=(600, 20)) * rng.uniform(0.5, 5, 20) + 3
    Y = (X[:, :3] @ rng.normal(size=(3, 3)) + rng.normal(size=(600, 3)) > 0).astype(int)
    m = MultiLogistic(C=0.5, max_iter=500).fit(X, Y)
    Z = (X - m.mu_) / m.sd_
    for j in range(3):
        ref = LogisticRegression(C=0.5, tol=1e-8, max_iter=2000).fit(Z, Y[:, j])
        np.testing.assert_allclose(m.W_[:-1, j], ref.coef_[0], rtol=2e-3, atol=2e-3)
        np.testing.assert_allclose(m.predict(X)["proba"][:, j], ref.predict_proba(Z)[:, 1], atol=2e-3)


def test_multilogistic_warm_start_reaches_the_same_optimum():
    """A fit started from another k's solution (other scale and standardisation: sums of more draws)
    ends at the cold fit's optimum; the start is mapped exactly (same logits before any step). How
    many evaluations it saves depends on the data (29-42% on the paper-scale aggregates, none on
    these): a benchmark measures that, not this test."""
    from fusionkit_plugins.tasks.recognizer.baseline import MultiLogistic

    rng = np.random.default_rng(3)
    E = rng.normal(size=(300, 24)) * rng.uniform(0.3, 3, 24)
    offsets = rng.normal(size=(4, 24)) * 3.0

    def aggregates(k: int, n: int = 3000) -> tuple[np.ndarray, np.ndarray]:
        counts = rng.multinomial(k, [0.25] * 4, size=n)
        X = E[rng.integers(0, 300, (n, k))].sum(axis=1) + counts @ offsets
        return X, (counts > 0).astype(int)

    Xa, Ya = aggregates(4)
    Xb, Yb = aggregates(6)
    prev = MultiLogistic(C=1.0, max_iter=500, tol=1e-5).fit(Xa, Ya)
    cold = MultiLogistic(C=1.0, max_iter=500, tol=1e-5).fit(Xb, Yb)
    warm = MultiLogistic(C=1.0, max_iter=500, tol=1e-5).fit(Xb, Yb, warm=prev)
    assert cold.converged_ and warm.converged_
    assert warm.loss_ == pytest.approx(cold.loss_, rel=1e-5)
    np.testing.assert_allclose(warm.predict(Xb)["proba"], cold.predict(Xb)["proba"], atol=2e-3)
    # the mapped start gives exactly the warm model's logits on the new standardisation
    import torch

    probe = MultiLogistic(C=1.0, precondition=False)
    probe.mu_, probe.sd_ = Xb.mean(0), Xb.std(0)
    V, b = probe._start(torch, prev, Xb.shape[1], Yb.shape[1], None)
    Zb = (Xb - probe.mu_) / probe.sd_
    logits_prev = ((Xb - prev.mu_) / prev.sd_) @ prev.W_[:-1] + prev.W_[-1]
    np.testing.assert_allclose(Zb @ V.numpy() + b.numpy(), logits_prev, rtol=1e-4, atol=1e-3)


def _net(M: int, **kw):
    from fusionkit_plugins.tasks.recognizer.models import DeepRecognizer

    args = dict(hidden=[32], head_hidden=8, dropout=0.1, loss="mse", head_weights=np.ones(M, np.float32),
                predict_counts=False, count_weight=1.0, n_classes=0, cancer_weight=1.0, lr=1e-2, batch_size=32,
                max_epochs=3, patience=2, weight_decay=0.0, standardize=True, device="cpu", seed=0, k_scale=4.0)
    return DeepRecognizer(M, **{**args, **kw})


@pytest.mark.parametrize("precision", ["fp32", "bf16"])
def test_batched_network_carries_the_linear_shortcut(torch_one_thread, precision):
    """With lr = 0 training cannot improve on epoch 0, so every network keeps its solved linear path:
    batched and one-at-a-time predictions are then the same shortcut outputs (fp32 even with bf16
    products: the shortcut is computed from the fp32 inputs)."""
    from fusionkit_plugins.tasks.recognizer.batched import fit_batched

    rng = np.random.default_rng(2)
    n, nv, d, M = 300, 100, 12, 3
    C = rng.integers(0, 3, (n + nv, M)).astype(np.float32)
    X = (C @ rng.normal(size=(M, d)) * 3 + rng.normal(size=(n + nv, d)) + 5).astype(np.float32)
    P = (C > 0).astype(np.float32)
    sets = {"X": X[:n], "presence": P[:n], "counts": C[:n], "X_v": X[n:], "presence_v": P[n:], "counts_v": C[n:],
            "classes": None, "classes_v": None}
    one = _net(M, lr=0.0).fit(X[:n], P[:n], C[:n], X[n:], P[n:], C[n:])
    two = _net(M, lr=0.0, seed=5)
    [bat] = fit_batched([two], [sets], precision=precision)
    assert one.shortcut_ is not None and bat.shortcut_ is not None
    assert bat.epochs_ == one.epochs_ == 2  # patience 2: epochs 1, 2 do not improve (epoch 0 is not counted)
    np.testing.assert_allclose(bat.best_val_loss_, one.best_val_loss_, rtol=1e-5)
    np.testing.assert_allclose(bat.predict(X[n:])["proba"], one.predict(X[n:])["proba"], atol=1e-5)


def test_cosine_schedule_in_both_training_loops(torch_one_thread):
    """``lr_schedule: cosine`` anneals the rate from ``lr`` over ``max_epochs`` in one-at-a-time and
    grouped training alike (the rate each epoch ran at is in the history); ``constant`` keeps ``lr``;
    an unknown schedule is refused."""
    from fusionkit_plugins.tasks.recognizer.batched import fit_batched

    rng = np.random.default_rng(4)
    n, nv, d, M = 200, 60, 10, 3
    P = rng.integers(0, 2, (n + nv, M)).astype(np.float32)
    X = (P @ rng.normal(size=(M, d)) * 2 + rng.normal(size=(n + nv, d))).astype(np.float32)
    sets = {"X": X[:n], "presence": P[:n], "counts": P[:n], "X_v": X[n:], "presence_v": P[n:], "counts_v": P[n:],
            "classes": None, "classes_v": None}
    expected = [1e-2 * 0.5 * (1 + math.cos(math.pi * e / 5)) for e in range(5)]
    one = _net(M, max_epochs=5, patience=99, lr_schedule="cosine").fit(X[:n], P[:n], P[:n], X[n:], P[n:], P[n:])
    [bat] = fit_batched([_net(M, max_epochs=5, patience=99, lr_schedule="cosine")], [sets])
    for est in (one, bat):
        lrs = [h["lr"] for h in est.history_ if h["epoch"] > 0]
        np.testing.assert_allclose(lrs, expected, rtol=1e-12)
        assert lrs[0] == 1e-2 and lrs[-1] < 1e-3
    flat = _net(M, max_epochs=3, patience=99).fit(X[:n], P[:n], P[:n], X[n:], P[n:], P[n:])
    assert [h["lr"] for h in flat.history_ if h["epoch"] > 0] == [1e-2] * 3
    with pytest.raises(ValueError, match="lr_schedule"):
        _net(M, lr_schedule="step")
