"""``scale``: each modality's draws divided by its store's RMS entry (of x - mean with ``center``)."""

from __future__ import annotations

import numpy as np
import pytest

from fusionkit.errors import RecipeError
from fusionkit.pool import EmbeddingPool, aggregate
from fusionkit.recipe import load_recipe
from helpers import imported_recipe

SCALES = {"rna": 1.0, "mut": 0.05, "img": 26.0}


def _arrays(factor: dict[str, float] | None = None) -> dict:
    rng = np.random.default_rng(7)
    out = {}
    for name, n in (("rna", 70), ("mut", 50), ("img", 120)):
        s = SCALES[name] * (factor or {}).get(name, 1.0)
        X = (rng.normal(size=(n, 12)) * s + rng.normal(size=12) * s).astype(np.float32)
        out[name] = (X, [f"P{i % 30:03d}" for i in range(n)])
    return out


def _plan(system, pool, noise: float = 0.0):
    plan = system.create("sampler", "modality-level", {"k": "3..8", "n": 40}).plan(pool, np.random.default_rng(3))
    if noise:
        plan = system.create("perturbation", "gaussian-replace", {"fraction": noise}).apply(
            plan, np.random.default_rng(4))
    return plan


def _expected(plan, arrays, *, center: bool, mean: bool = False) -> np.ndarray:
    """By hand: sum (or mean) over real draws of (x - mu) / rms, rms over the whole store, float64."""
    stats = {}
    for name, (X, _) in arrays.items():
        X = X.astype(np.float64)
        mu = X.mean(axis=0) if center else np.zeros(X.shape[1])
        stats[name] = (X, mu, np.sqrt(np.mean((X - mu) ** 2)))
    n, r, kmax = plan.mod.shape
    out = np.zeros((n, r, 12))
    for i in range(n):
        for j in range(r):
            used = [s for s in range(kmax) if plan.mod[i, j, s] >= 0]
            for s in used:
                if plan.noise[i, j, s]:
                    continue
                X, mu, rms = stats[plan.modalities[plan.mod[i, j, s]]]
                out[i, j] += (X[plan.item[i, j, s]] - mu) / rms / (len(used) if mean else 1)
    return out.reshape(n, r * 12)


@pytest.mark.parametrize("center", [False, True])
@pytest.mark.parametrize("name", ["sum", "mean"])
def test_scaled_aggregates_equal_the_hand_computed_sum(plugin_system, center, name):
    arrays = _arrays()
    pool = EmbeddingPool.from_arrays(arrays)
    plan = _plan(plugin_system, pool)
    agg = plugin_system.create("aggregator", name, {"center": center, "scale": True})
    got = aggregate(plan, pool, agg, chunk=16).X
    np.testing.assert_allclose(got, _expected(plan, arrays, center=center, mean=name == "mean"), rtol=1e-4, atol=1e-4)
    # every modality's draws now have a mean squared entry of 1
    for name_, v in pool.views.items():
        X = v.embeddings.astype(np.float64)
        mu = X.mean(axis=0) if center else 0.0
        assert np.mean(((X - mu) / v.rms(center=center)) ** 2) == pytest.approx(1.0, rel=1e-6)


@pytest.mark.parametrize("center", [False, True])
def test_a_modality_scaled_100x_gives_the_same_aggregates(plugin_system, center):
    """Whatever an encoder's scale, the scaled sum is the same, noise draws included."""
    for noise in (0.0, 0.3):
        pool = EmbeddingPool.from_arrays(_arrays())
        plan = _plan(plugin_system, pool, noise)
        agg = plugin_system.create("aggregator", "sum", {"center": center, "scale": True})
        ref = aggregate(plan, pool, agg, chunk=16, noise_seed=5).X
        big = EmbeddingPool.from_arrays(_arrays({"img": 100.0}))
        np.testing.assert_allclose(aggregate(plan, big, agg, chunk=16, noise_seed=5).X, ref, rtol=1e-4, atol=1e-4)
        plain = plugin_system.create("aggregator", "sum", {"center": center})
        assert not np.allclose(aggregate(plan, big, plain, chunk=16, noise_seed=5).X,
                               aggregate(plan, pool, plain, chunk=16, noise_seed=5).X, rtol=1e-2)


def test_noise_draws_are_not_scaled(plugin_system):
    """A noise draw adds the same N(0, std) vector with and without scale: only real draws change."""
    pool = EmbeddingPool.from_arrays(_arrays())
    plan = _plan(plugin_system, pool, 0.3)
    assert plan.noise.any()
    scaled = aggregate(plan, pool, plugin_system.create("aggregator", "sum", {"scale": True}), noise_seed=2).X
    clean = plan.take(np.arange(plan.n))
    clean.noise = np.zeros_like(plan.noise)
    clean.mod = np.where(plan.noise, -1, plan.mod).astype(plan.mod.dtype)  # the real draws alone
    real = aggregate(clean, pool, plugin_system.create("aggregator", "sum", {"scale": True})).X
    unscaled_noise = (aggregate(plan, pool, plugin_system.create("aggregator", "sum", {}), noise_seed=2).X
                      - aggregate(clean, pool, plugin_system.create("aggregator", "sum", {})).X)
    np.testing.assert_allclose(scaled - real, unscaled_noise, rtol=1e-4, atol=1e-3)


def test_scale_fast_path_equals_gathered_path(plugin_system):
    pool = EmbeddingPool.from_arrays(_arrays())
    plan = _plan(plugin_system, pool, 0.3)
    for name in ("sum", "mean"):
        for l2, center in ((False, False), (False, True), (True, True)):
            agg = plugin_system.create("aggregator", name, {"l2_normalize": l2, "center": center, "scale": True})
            fast = aggregate(plan, pool, agg, chunk=16, noise_seed=4).X
            agg.linear = False  # the general gathered-buffer path on this instance
            slow = aggregate(plan, pool, agg, chunk=16, noise_seed=4).X
            np.testing.assert_allclose(fast, slow, rtol=1e-5, atol=1e-4)


def test_scale_with_l2_normalize_changes_nothing(plugin_system):
    pool = EmbeddingPool.from_arrays(_arrays())
    plan = _plan(plugin_system, pool, 0.2)
    a = aggregate(plan, pool, plugin_system.create("aggregator", "sum", {"l2_normalize": True, "scale": True})).X
    b = aggregate(plan, pool, plugin_system.create("aggregator", "sum", {"l2_normalize": True})).X
    np.testing.assert_array_equal(a, b)


def test_rms_is_over_the_whole_store_and_survives_restrict():
    pool = EmbeddingPool.from_arrays(_arrays())
    v = pool.views["img"]
    X = v.embeddings.astype(np.float64)
    assert v.rms() == pytest.approx(np.sqrt(np.mean(X ** 2)), rel=1e-9)
    assert v.rms(center=True) == pytest.approx(np.sqrt(X.var(axis=0).mean()), rel=1e-9)
    np.testing.assert_allclose(v.mean(), X.mean(axis=0).astype(np.float32))
    sub = pool.restrict(patients=["P001", "P002"])
    assert sub.views["img"].n < v.n
    assert sub.views["img"].rms(center=True) == v.rms(center=True)  # the store's, not the rows in use
    assert sub.views["img"]._moments_cache is v._moments_cache  # not recomputed
    zero = EmbeddingPool.from_arrays({"z": (np.zeros((4, 3), np.float32), ["a", "b", "c", "d"])})
    assert zero.views["z"].rms() == 1.0


def test_recipe_accepts_scale_and_checks_its_type(plugin_system, tmp_path):
    task = "  sim: {{name: similarity, params: {{sampling: patients, aggregator: {{name: sum, params: {}}}}}}}\n"
    path = imported_recipe(tmp_path, extra="tasks:\n" + task.format("{center: true, scale: true}"))
    rec = load_recipe(path, plugin_system)
    assert rec.tasks["sim"].params["aggregator"]["params"]["scale"] is True
    path = imported_recipe(tmp_path, extra="tasks:\n" + task.format("{scale: often}"))
    with pytest.raises(RecipeError) as exc:
        load_recipe(path, plugin_system)
    assert "scale" in str(exc.value)
