"""Samplers, perturbation and aggregation: labels are exactly the draws."""

from __future__ import annotations

import numpy as np
import pytest

from fusionkit.errors import DataError
from fusionkit.pool import EmbeddingPool, aggregate


def make_pool(seed: int = 0) -> EmbeddingPool:
    rng = np.random.default_rng(seed)
    cancers = {f"P{i:03d}": ("A", "B", "C")[i % 3] for i in range(40)}
    arrays = {
        "rna": (rng.normal(size=(40, 6)), [f"P{i:03d}" for i in range(40)]),
        "mut": (rng.normal(size=(30, 6)) + 1, [f"P{i:03d}" for i in range(30)]),
        "text": (rng.normal(size=(120, 6)) - 1, [f"P{i % 35:03d}" for i in range(120)]),
    }
    return EmbeddingPool.from_arrays(arrays, labels={"cancer_type": cancers})


def build(system, kind, name, **params):
    return system.create(kind, name, params)


def reference_sum(plan, pool):
    """Slow, obvious reference: loop over every aggregate and draw."""
    n, r, kmax = plan.mod.shape
    d = pool.dim
    out = np.zeros((n, r * d), dtype=np.float64)
    for i in range(n):
        for j in range(r):
            for s in range(kmax):
                m = plan.mod[i, j, s]
                if m < 0 or plan.noise[i, j, s]:
                    continue
                out[i, j * d:(j + 1) * d] += pool.views[plan.modalities[m]].embeddings[plan.item[i, j, s]]
    return out


def test_modality_level_labels_count_the_draws(plugin_system):
    pool = make_pool()
    sampler = build(plugin_system, "sampler", "modality-level", k="3..6", n=25)
    plan = sampler.plan(pool, np.random.default_rng(1))
    assert plan.mod.shape == (100, 1, 6)
    assert sorted(set(plan.k.tolist())) == [3, 4, 5, 6]
    # unused slots exactly where slot >= k
    used = (plan.mod[:, 0, :] >= 0).sum(axis=1)
    assert np.array_equal(used, plan.k)
    counts = plan.counts()
    for i in range(plan.n):
        for m in range(3):
            assert counts[i, m] == int((plan.mod[i, 0] == m).sum())
    assert np.array_equal(counts.sum(axis=1), plan.k)
    agg = aggregate(plan, pool, build(plugin_system, "aggregator", "sum"), chunk=7)
    np.testing.assert_allclose(agg.X, reference_sum(plan, pool), rtol=1e-5, atol=1e-5)
    assert np.array_equal(agg.presence, (counts > 0).astype(np.int8))
    # items are real rows of the chosen modality
    for m, name in enumerate(plan.modalities):
        sel = plan.mod == m
        assert plan.item[sel].max() < pool.views[name].embeddings.shape[0]


def test_sampling_is_deterministic_per_seed(plugin_system):
    pool = make_pool()
    sampler = build(plugin_system, "sampler", "modality-level", k=4, n=50)
    a = sampler.plan(pool, np.random.default_rng(5))
    b = sampler.plan(pool, np.random.default_rng(5))
    c = sampler.plan(pool, np.random.default_rng(6))
    assert np.array_equal(a.mod, b.mod) and np.array_equal(a.item, b.item)
    assert not np.array_equal(a.item, c.item)


def test_modality_probabilities_are_respected(plugin_system):
    pool = make_pool()
    sampler = build(plugin_system, "sampler", "modality-level", k=10, n=2000,
                    probabilities={"rna": 0.6, "mut": 0.2, "text": 0.2})
    plan = sampler.plan(pool, np.random.default_rng(0))
    frac = plan.counts().sum(axis=0) / plan.counts().sum()
    np.testing.assert_allclose(frac, [0.6, 0.2, 0.2], atol=0.02)
    with pytest.raises(DataError):
        build(plugin_system, "sampler", "modality-level", probabilities={"nope": 1.0}).plan(
            pool, np.random.default_rng(0))


def test_patient_level_draws_only_the_patients_own_items(plugin_system):
    pool = make_pool()
    sampler = build(plugin_system, "sampler", "patient-level", k=4, repeats=3, min_modalities=2)
    plan = sampler.plan(pool, np.random.default_rng(2))
    assert plan.mod.shape[1:] == (3, 4)
    for i, pid in enumerate(plan.patient_ids):
        for m, name in enumerate(plan.modalities):
            rows = plan.item[i][plan.mod[i] == m]
            assert (pool.views[name].patient_ids[rows] == pid).all()
    # min_modalities: patients 35..39 have only rna -> excluded
    assert not set(plan.patient_ids) & {"P035", "P036", "P037", "P038", "P039"}
    assert len(plan.patient_ids) == 35
    assert list(plan.group_labels["cancer_type"][:3]) == ["A", "B", "C"]
    agg = aggregate(plan, pool, build(plugin_system, "aggregator", "sum"))
    assert agg.X.shape == (35, 3 * 6)
    np.testing.assert_allclose(agg.X, reference_sum(plan, pool), rtol=1e-5, atol=1e-5)
    three = build(plugin_system, "sampler", "patient-level", k=2, repeats=1, min_modalities=3).plan(
        pool, np.random.default_rng(2))
    assert len(three.patient_ids) == 30


def test_patient_level_uniform_over_available_modalities(plugin_system):
    pool = make_pool()
    plan = build(plugin_system, "sampler", "patient-level", k=10, repeats=50).plan(pool, np.random.default_rng(3))
    first = plan.mod[list(plan.patient_ids).index("P000")]
    frac = np.bincount(first.ravel(), minlength=3) / first.size
    np.testing.assert_allclose(frac, [1 / 3] * 3, atol=0.06)


def test_cancer_specific_restriction(plugin_system):
    pool = make_pool()
    restricted = build(plugin_system, "sampler", "cancer-specific", k=5, n=60, restrict=["rna"])
    plan = restricted.plan(pool, np.random.default_rng(4))
    cancers = plan.group_labels["cancer_type"]
    assert set(cancers) == {"A", "B", "C"}
    assert max(np.bincount(np.unique(cancers, return_inverse=True)[1])) == 20  # balanced
    lab = pool.labels["cancer_type"]
    rna = plan.modalities.index("rna")
    crossed_text = 0
    for i in range(plan.n):
        rows = plan.item[i, 0][plan.mod[i, 0] == rna]
        assert all(lab[p] == cancers[i] for p in pool.views["rna"].patient_ids[rows])
        t = plan.item[i, 0][plan.mod[i, 0] == plan.modalities.index("text")]
        crossed_text += sum(lab[p] != cancers[i] for p in pool.views["text"].patient_ids[t])
    assert crossed_text > 0  # unrestricted modality draws across cancers
    full = build(plugin_system, "sampler", "cancer-specific", k=5, n=30).plan(pool, np.random.default_rng(4))
    for i in range(full.n):
        for m, name in enumerate(full.modalities):
            rows = full.item[i, 0][full.mod[i, 0] == m]
            assert all(lab[p] == full.group_labels["cancer_type"][i] for p in pool.views[name].patient_ids[rows])


def test_noise_keeps_totals_and_excludes_replaced_draws(plugin_system):
    pool = make_pool()
    plan = build(plugin_system, "sampler", "modality-level", k=10, n=300).plan(pool, np.random.default_rng(0))
    noisy = build(plugin_system, "perturbation", "gaussian-replace", fraction=0.3, std=0.1).apply(
        plan, np.random.default_rng(1))
    assert np.array_equal(noisy.mod, plan.mod) and np.array_equal(noisy.k, plan.k)  # totals kept
    assert (noisy.noise.sum(axis=(1, 2)) == 3).all()  # round(0.3 * 10)
    assert np.array_equal(noisy.counts().sum(axis=1), plan.k - 3)
    for i in range(noisy.n):
        for m in range(3):
            assert noisy.counts()[i, m] == int(((noisy.mod[i, 0] == m) & ~noisy.noise[i, 0]).sum())
    agg = aggregate(noisy, pool, build(plugin_system, "aggregator", "sum"), noise_seed=3)
    clean_part = reference_sum(noisy, pool)
    resid = agg.X - clean_part  # the sum of 3 N(0, 0.1) vectors per aggregate
    assert abs(resid.std() - 0.1 * np.sqrt(3)) < 0.02
    # small k: expected fraction is exact with stochastic rounding
    small = build(plugin_system, "sampler", "modality-level", k=3, n=4000).plan(pool, np.random.default_rng(0))
    noisy3 = build(plugin_system, "perturbation", "gaussian-replace", fraction=0.1).apply(
        small, np.random.default_rng(2))
    assert abs(noisy3.noise.sum() / (3 * 4000) - 0.1) < 0.01


def test_aggregators(plugin_system):
    pool = make_pool()
    plan = build(plugin_system, "sampler", "modality-level", k=3, n=10).plan(pool, np.random.default_rng(0))
    s = aggregate(plan, pool, build(plugin_system, "aggregator", "sum")).X
    m = aggregate(plan, pool, build(plugin_system, "aggregator", "mean")).X
    np.testing.assert_allclose(m * 3, s, rtol=1e-5)
    c = aggregate(plan, pool, build(plugin_system, "aggregator", "concat")).X
    assert c.shape == (10, 18)
    np.testing.assert_allclose(c.reshape(10, 3, 6).sum(axis=1), s, rtol=1e-5)
    n = aggregate(plan, pool, build(plugin_system, "aggregator", "concat", l2_normalize=True)).X
    np.testing.assert_allclose(np.linalg.norm(n.reshape(10, 3, 6), axis=2), 1.0, rtol=1e-5)


def test_restricted_pool_only_draws_allowed_patients(plugin_system):
    pool = make_pool()
    sub = pool.restrict(patients=[f"P{i:03d}" for i in range(10)])
    plan = build(plugin_system, "sampler", "modality-level", k=5, n=200).plan(sub, np.random.default_rng(0))
    for m, name in enumerate(plan.modalities):
        rows = plan.item[plan.mod == m]
        assert set(pool.views[name].patient_ids[rows]) <= {f"P{i:03d}" for i in range(10)}
    assert sub.fingerprint != pool.fingerprint


def test_pool_rejects_mismatched_widths_and_empty_modalities():
    with pytest.raises(DataError, match="adapter"):
        EmbeddingPool.from_arrays({"a": (np.zeros((3, 4)), ["x"] * 3), "b": (np.zeros((3, 5)), ["x"] * 3)})
    with pytest.raises(DataError, match="no embeddings"):
        EmbeddingPool.from_arrays({"a": (np.zeros((0, 4)), [])})


def test_linear_fast_path_equals_general_path(plugin_system):
    """sum/mean use a sparse product; it must equal the gathered-buffer path exactly."""
    pool = make_pool()
    plan = build(plugin_system, "sampler", "modality-level", k="3..7", n=30).plan(pool, np.random.default_rng(9))
    plan = build(plugin_system, "perturbation", "gaussian-replace", fraction=0.3).apply(plan, np.random.default_rng(1))
    for name in ("sum", "mean"):
        for l2, center in ((False, False), (True, False), (False, True), (True, True)):
            agg = build(plugin_system, "aggregator", name, l2_normalize=l2, center=center)
            fast = aggregate(plan, pool, agg, chunk=16, noise_seed=4).X
            agg.linear = False  # force the general gathered path on this instance
            slow = aggregate(plan, pool, agg, chunk=16, noise_seed=4).X
            np.testing.assert_allclose(fast, slow, rtol=1e-5, atol=1e-5)


def test_center_subtracts_each_modality_mean(plugin_system):
    pool = make_pool()
    plan = build(plugin_system, "sampler", "modality-level", k=4, n=50).plan(pool, np.random.default_rng(2))
    plain = aggregate(plan, pool, build(plugin_system, "aggregator", "sum")).X
    centred = aggregate(plan, pool, build(plugin_system, "aggregator", "sum", center=True)).X
    expected = plain.astype(np.float64).copy()
    for m, name in enumerate(plan.modalities):
        mu = np.asarray(pool.views[name].embeddings, dtype=np.float64).mean(axis=0)
        expected -= plan.counts()[:, [m]] * mu
    np.testing.assert_allclose(centred, expected, rtol=1e-4, atol=1e-4)
