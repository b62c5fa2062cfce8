"""The torch paths of linear aggregation (embedding_bag, slice by slice, over all stores mapped
into one index space, or over each store) give the CSR product's aggregates, for every option
and thread count."""

from __future__ import annotations

import numpy as np
import pytest

import fusionkit.gather as gather_mod
import fusionkit.pool as pool_mod
from fusionkit.pool import EmbeddingPool, aggregate


def _pool(tmp_path, memmap: bool) -> EmbeddingPool:
    rng = np.random.default_rng(3)
    arrays = {}
    for name, n, s in (("rna", 50, 1.0), ("mut", 40, 30.0), ("text", 150, 0.2)):
        X = (rng.normal(size=(n, 16)) * s + s).astype(np.float32)
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
    real = gather_mod.torch_for
    calls = []
    # slices of 8 rows: a 32-row chunk crosses several slices, and some slices hold only noise
    monkeypatch.setattr(gather_mod, "_SLICE_BYTES", 8 * 4 * 16)
    real_joint = gather_mod.joint_stores
    for name in ("sum", "mean"):
        for l2, center, scale in ((False, False, False), (True, True, False), (False, False, True),
                                  (False, True, True), (True, False, True)):
            agg = plugin_system.create("aggregator", name, {"l2_normalize": l2, "center": center, "scale": scale})
            for threads in (1, 2):
                monkeypatch.setattr(gather_mod, "torch_for", lambda embs: calls.append(1) or real(embs))
                fast = aggregate(plan, pool, agg, chunk=32, noise_seed=4, threads=threads).X
                monkeypatch.setattr(gather_mod, "joint_stores", lambda embs: None)  # torch, store by store
                per_store = aggregate(plan, pool, agg, chunk=32, noise_seed=4, threads=threads).X
                monkeypatch.setattr(gather_mod, "joint_stores", real_joint)
                monkeypatch.setattr(gather_mod, "torch_for", lambda embs: None)  # the CSR fallback
                csr = aggregate(plan, pool, agg, chunk=32, noise_seed=4, threads=threads).X
                tol = dict(rtol=1e-5, atol=1e-6 * np.abs(csr).max(), err_msg=f"{name} {l2} {center} {scale}")
                np.testing.assert_allclose(fast, csr, **tol)
                np.testing.assert_allclose(per_store, csr, **tol)
    monkeypatch.setattr(gather_mod, "torch_for", real)
    assert calls and real(pool_mod._ChunkReducer(plan, pool, agg, 32, 0).embs) is not None, "the torch path was not taken"
    assert (pool_mod._ChunkReducer(plan, pool, agg, 32, 0).joint is not None) == memmap, "one index space: memmaps only"
    assert real([np.zeros((3, 2), np.float64)]) is None  # not float32: the CSR product


def test_joint_index_space_reads_each_store(plugin_system, tmp_path):
    """table[row0[m] + i] is row i of store m, for stores of any length (headers and rows off the
    page grid), and the mapping is shared by calls on the same files (and pools restricted from them)."""
    pytest.importorskip("torch")
    pool = _pool(tmp_path, True)
    embs = [pool.views[m].embeddings for m in pool.modalities]
    joint = gather_mod.joint_stores(embs)
    assert joint is not None
    for e, r0 in zip(embs, joint.row0):
        np.testing.assert_array_equal(joint.table[r0:r0 + len(e)].numpy(), np.asarray(e))
    sub = pool.restrict(patients=["P001"])
    assert gather_mod.joint_stores([sub.views[m].embeddings for m in sub.modalities]) is joint
    assert gather_mod.joint_stores(embs[1:]) is not joint
    assert gather_mod.joint_stores([np.zeros((3, 16), np.float32)]) is None  # not a file: store by store
    mm = np.load(tmp_path / "text.npy", mmap_mode="r")
    part = gather_mod.joint_stores([mm[7:90], np.asarray(mm)[100:]])  # slices: their own first rows
    np.testing.assert_array_equal(part.table[part.row0[0] + 5].numpy(), mm[12])
    np.testing.assert_array_equal(part.table[part.row0[1]].numpy(), mm[100])


def test_torch_path_same_for_any_slice_and_chunk(plugin_system, tmp_path, monkeypatch):
    """Slices and chunks only cut the work: the same aggregates for any sizes (noise aside,
    whose seeds follow the chunks)."""
    pytest.importorskip("torch")
    pool = _pool(tmp_path, True)
    plan = plugin_system.create("sampler", "modality-level", {"k": "3..9", "n": 60}).plan(pool, np.random.default_rng(2))
    agg = plugin_system.create("aggregator", "sum", {"center": True, "scale": True})
    ref = aggregate(plan, pool, agg, chunk=4096).X
    for slice_rows, chunk in ((1, 7), (5, 100), (64, 33)):
        monkeypatch.setattr(gather_mod, "_SLICE_BYTES", slice_rows * 4 * 16)
        np.testing.assert_allclose(aggregate(plan, pool, agg, chunk=chunk, threads=2).X, ref, rtol=1e-5, atol=1e-4)


def test_torch_threads_restored(plugin_system, tmp_path):
    torch = pytest.importorskip("torch")
    pool = _pool(tmp_path, False)
    plan = plugin_system.create("sampler", "modality-level", {"k": "3..5", "n": 10}).plan(pool, np.random.default_rng(0))
    old = torch.get_num_threads()
    try:
        torch.set_num_threads(2)
        aggregate(plan, pool, plugin_system.create("aggregator", "sum", {}), chunk=8, threads=2)
        assert torch.get_num_threads() == 2
    finally:
        torch.set_num_threads(old)
