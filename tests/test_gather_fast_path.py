"""pool._bag_sum (torch embedding_bag over the store) gives the CSR product's aggregates."""

from __future__ import annotations

import numpy as np
import pytest

import fusionkit.pool as pool_mod
from fusionkit.pool import EmbeddingPool, aggregate


def _pool(tmp_path, memmap: bool) -> EmbeddingPool:
    rng = np.random.default_rng(3)
    arrays = {}
    for name, n in (("rna", 50), ("mut", 40), ("text", 150)):
        X = rng.normal(size=(n, 16)).astype(np.float32)
        if memmap:
            np.save(tmp_path / f"{name}.npy", X)
            X = np.load(tmp_path / f"{name}.npy", mmap_mode="r")
        arrays[name] = (X, [f"P{i % 40:03d}" for i in range(n)])
    return EmbeddingPool.from_arrays(arrays)


@pytest.mark.parametrize("memmap", [False, True])
def test_bag_fast_path_equals_csr_path(plugin_system, tmp_path, monkeypatch, memmap):
    pytest.importorskip("torch")
    pool = _pool(tmp_path, memmap)
    plan = plugin_system.create("sampler", "modality-level", {"k": "3..9", "n": 40}).plan(pool, np.random.default_rng(5))
    plan = plugin_system.create("perturbation", "gaussian-replace", {"fraction": 0.3}).apply(
        plan, np.random.default_rng(1))
    calls = []
    real = pool_mod._bag_sum
    monkeypatch.setattr(pool_mod, "_bag_sum", lambda *a: calls.append(1) or real(*a))
    for name in ("sum", "mean"):
        for l2, center in ((False, False), (True, True)):
            agg = plugin_system.create("aggregator", name, {"l2_normalize": l2, "center": center})
            for threads in (1, 2):
                monkeypatch.setattr(pool_mod, "_bag_sum", lambda *a: calls.append(1) or real(*a))
                fast = aggregate(plan, pool, agg, chunk=32, noise_seed=4, threads=threads).X
                monkeypatch.setattr(pool_mod, "_bag_sum", lambda *a: None)  # the CSR fallback
                csr = aggregate(plan, pool, agg, chunk=32, noise_seed=4, threads=threads).X
                np.testing.assert_allclose(fast, csr, rtol=1e-6, atol=1e-6)
    assert calls, "the torch path was not taken"
    assert real(np.zeros((3, 2), np.float64), np.zeros(1, np.int64), np.array([0, 1]), np.ones(1, np.float32)) is None
