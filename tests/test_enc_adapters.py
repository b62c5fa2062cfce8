"""Width adapters: zero-pad, truncate, random-projection, pca (values, seeds, errors)."""

from __future__ import annotations

import numpy as np
import pytest

from fusionkit.errors import DataError
from fusionkit_plugins.encoders.adapters import PCAAdapter, RandomProjection, Truncate, ZeroPad


@pytest.fixture
def X():
    return np.random.default_rng(0).normal(size=(50, 12)).astype(np.float32)


def test_zero_pad_appends_zeros(X):
    Y = ZeroPad().fit(X, 20).transform(X)
    assert Y.shape == (50, 20) and Y.dtype == np.float32
    np.testing.assert_array_equal(Y[:, :12], X)
    assert not Y[:, 12:].any()
    Y2 = ZeroPad(side="start").fit(X, 20).transform(X)
    np.testing.assert_array_equal(Y2[:, 8:], X)
    assert not Y2[:, :8].any()


def test_zero_pad_refuses_to_shrink(X):
    with pytest.raises(DataError) as err:
        ZeroPad().fit(X, 8)
    assert "truncate" in str(err.value) and "hint" in str(err.value)


@pytest.mark.parametrize("keep,sl", [("first", slice(0, 5)), ("last", slice(7, 12))])
def test_truncate_slices(X, keep, sl):
    Y = Truncate(keep=keep).fit(X, 5).transform(X)
    np.testing.assert_array_equal(Y, X[:, sl])


def test_truncate_refuses_to_grow_and_bad_keep(X):
    with pytest.raises(DataError, match="zero-pad"):
        Truncate().fit(X, 13)
    with pytest.raises(DataError, match="keep"):
        Truncate(keep="middle").fit(X, 5)


def test_transform_checks_width_and_fit(X):
    with pytest.raises(DataError, match="before fit"):
        ZeroPad().transform(X)
    a = ZeroPad().fit(X, 20)
    with pytest.raises(DataError, match="width"):
        a.transform(X[:, :6])


def test_random_projection_orthogonal_and_seeded(X):
    down = RandomProjection(seed=3).fit(X, 5)
    P = down.components_.astype(np.float64)
    np.testing.assert_allclose(P.T @ P, np.eye(5), atol=1e-5)  # orthonormal columns
    np.testing.assert_array_equal(RandomProjection(seed=3).fit(X, 5).components_, P.astype(np.float32))
    assert not np.allclose(RandomProjection(seed=4).fit(X, 5).components_, P)
    up = RandomProjection(seed=3).fit(X, 30)
    Y = up.transform(X)
    assert Y.shape == (50, 30)
    np.testing.assert_allclose(np.linalg.norm(Y, axis=1), np.linalg.norm(X, axis=1), rtol=1e-4)  # isometry
    np.testing.assert_allclose(Y @ Y.T, X @ X.T, rtol=1e-3, atol=1e-3)
    # no seed: the engine's generator decides, reproducibly
    a = RandomProjection().fit(X, 5, np.random.default_rng(9)).transform(X)
    b = RandomProjection().fit(X, 5, np.random.default_rng(9)).transform(X)
    np.testing.assert_array_equal(a, b)
    with pytest.raises(DataError, match="seed"):
        RandomProjection().fit(X, 5)


def test_pca_values(X):
    a = PCAAdapter().fit(X, 4)
    Y = a.transform(X)
    assert Y.shape == (50, 4)
    Xc = X.astype(np.float64) - X.mean(axis=0)
    var = np.linalg.svd(Xc, compute_uv=False)[:4] ** 2 / 49
    np.testing.assert_allclose(Y.var(axis=0, ddof=1), var, rtol=1e-4)  # component variances
    np.testing.assert_allclose(np.corrcoef(Y.T), np.eye(4), atol=1e-5)  # uncorrelated
    W = PCAAdapter(whiten=True).fit(X, 4).transform(X)
    np.testing.assert_allclose(W.var(axis=0, ddof=1), 1.0, rtol=1e-4)
    with pytest.raises(DataError, match="at most"):
        PCAAdapter().fit(X, 13)


def test_adapters_registered(plugin_system):
    names = plugin_system.registry.names("adapter")
    assert {"zero-pad", "truncate", "random-projection", "pca"} <= set(names)
    made = plugin_system.create("adapter", "truncate", {"keep": "last"})
    assert isinstance(made, Truncate) and made.keep == "last"
