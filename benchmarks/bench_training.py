"""Benchmark 4: training.

One isolation recognizer (one sample count, k = 5) on 15,000 aggregates drawn
with fusionkit's modality-level sampler + sum aggregator from synthetic
4-modality stores (dim 768, modality-specific means): split 80/20 train/test,
then 80/20 train/validation, as the recognizer task does. The deep model is the
task's ``DeepRecognizer`` built by the registered ``recognizer`` task with its
default hyper-parameters (``_model_factory``), trained with early stopping; the
baseline is the task's ``LogisticBaseline`` (one sklearn logistic regression per
modality) on the same train + validation data.
"""

from __future__ import annotations

import sys
import time
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent))

import numpy as np  # noqa: E402

from common import main_for, row, skip  # noqa: E402

BENCH = "4 training"
DIM = 768
MODS = ("rna", "mutation", "tiles", "text")


def synthetic_pool(n_per_mod: int, dim: int = DIM, seed: int = 0):
    from fusionkit.pool import EmbeddingPool

    rng = np.random.default_rng(seed)
    arrays = {}
    for m in MODS:
        mean = rng.normal(0, 0.3, dim).astype(np.float32)
        X = rng.standard_normal((n_per_mod, dim), dtype=np.float32) + mean
        arrays[m] = (X, [f"TCGA-SY-{i % 500:04d}" for i in range(n_per_mod)])
    return EmbeddingPool.from_arrays(arrays)


def make_aggregates(pool, n: int, k: Any = 5, seed: int = 0):
    import fusionkit.plugins
    from fusionkit.pool import aggregate

    system = fusionkit.plugins.load(env={})
    sampler = system.create("sampler", "modality-level", {"k": k, "n": n})
    plan = sampler.plan(pool, np.random.default_rng(seed))
    return aggregate(plan, pool, system.create("aggregator", "sum", {}), chunk=8192), system


def deep_model(system, n_mod: int, seed: int = 0, max_epochs: int | None = None):
    params: dict[str, Any] = {"device": "cpu"}
    if max_epochs is not None:
        params["max_epochs"] = max_epochs
    task = system.create("task", "recognizer", params)
    return task._model_factory("deep", None, list(MODS[:n_mod]), 0, seed, 10.0)


def split(n: int, seed: int = 0) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    rng = np.random.default_rng(seed)
    perm = rng.permutation(n)
    n_test = int(round(0.2 * n))
    test, rest = perm[:n_test], perm[n_test:]
    n_val = int(round(0.2 * len(rest)))
    return rest[n_val:], rest[:n_val], test


def train_deep(agg, system, max_epochs: int | None = None, seed: int = 0) -> dict[str, Any]:
    tr, va, _ = split(len(agg.X), seed)
    P, C = agg.presence.astype(np.float32), agg.counts.astype(np.float32)
    model = deep_model(system, P.shape[1], seed, max_epochs)
    t0 = time.perf_counter()
    model.fit(agg.X[tr], P[tr], C[tr], agg.X[va], P[va], C[va])
    sec = time.perf_counter() - t0
    return {"seconds": sec, "epochs": int(model.epochs_), "n_train": int(len(tr)),
            "samples_per_s": len(tr) * model.epochs_ / sec, "epoch_s": sec / model.epochs_,
            "hidden": list(model.hidden), "batch_size": model.batch_size, "max_epochs": model.max_epochs}


def run(quick: bool = False, tmp: Path | None = None) -> list[dict[str, Any]]:
    try:
        import fusionkit.plugins  # noqa: F401
        from fusionkit_plugins.tasks.recognizer.models import LogisticBaseline  # noqa: F401
    except Exception as exc:  # noqa: BLE001
        return [skip(BENCH, "recognizer", f"plugins/tasks/recognizer/models.py not importable ({exc})")]
    n = 3_000 if quick else 15_000
    pool = synthetic_pool(20_000 if quick else 50_000)
    try:
        agg, system = make_aggregates(pool, n)
        system.info("task", "recognizer")
    except Exception as exc:  # noqa: BLE001
        return [skip(BENCH, "recognizer", f"recognizer task unavailable ({type(exc).__name__}: {exc})")]
    deep = train_deep(agg, system, max_epochs=5 if quick else None)
    tr, va, _ = split(n)
    trva = np.concatenate([tr, va])
    base = LogisticBaseline(seed=0)
    t0 = time.perf_counter()
    base.fit(agg.X[trva], agg.presence[trva])
    base_s = time.perf_counter() - t0
    where = (f"{n:,} aggregates (k=5, dim {DIM}), train {deep['n_train']:,}; task defaults hidden={deep['hidden']}, "
             f"batch {deep['batch_size']}, max_epochs {deep['max_epochs']}, early stopping")
    return [
        row(BENCH, "recognizer samples/s per epoch", deep["samples_per_s"], None, unit="samples/s",
            note=f"{where}; {deep['epoch_s']:.2f} s/epoch (incl. validation pass)"),
        row(BENCH, "train one isolation model (deep vs logistic)", deep["seconds"], base_s, unit="s",
            note=f"deep: {deep['epochs']} epochs until early stop; logistic baseline: 4 sklearn "
                 f"LogisticRegression (lbfgs) on {len(trva):,} rows; ratio = deep / logistic time"),
    ]


if __name__ == "__main__":
    main_for(run)
