"""The ``pca`` linear baseline encoder: fit/encode, padding, alignment by name, npz/json state (no pickle)."""

from __future__ import annotations

import json

import numpy as np
import pytest

from fusionkit.components import ModalityData
from fusionkit.errors import DataError
from fusionkit_plugins.encoders.pca import CONFIG_FILE, STATE_FILE, PCAEncoder


def _data(n=80, d=30, seed=0):
    rng = np.random.default_rng(seed)
    groups = rng.integers(0, 3, n)
    X = (rng.normal(scale=4, size=(3, d))[groups] + rng.normal(size=(n, d)) + 5.0).astype(np.float32)
    ids = [f"P{i}" for i in range(n)]
    return ModalityData("rna", "matrix", ids, ids, X, feature_names=[f"G{j}" for j in range(d)]), groups


def test_pca_matches_numpy_svd_and_pads_to_dim():
    data, _ = _data()
    enc = PCAEncoder(dim=40).fit(data)
    Z = enc.encode(data)
    assert Z.shape == (80, 40) and Z.dtype == np.float32
    assert np.all(Z[:, 30:] == 0)  # only 30 components exist
    X = data.data.astype(np.float64)
    Xc = X - X.mean(0)
    _, S, _ = np.linalg.svd(Xc, full_matrices=False)
    np.testing.assert_allclose(Z[:, :30].var(0, ddof=1), S ** 2 / 79, rtol=1e-3)
    assert abs(Z[:, :30].mean(0)).max() < 1e-3  # centred
    assert enc.explained_ratio_ == pytest.approx(1.0)


def test_uncentred_keeps_the_mean_offset_and_whiten_gives_unit_variance():
    data, _ = _data()
    Z = PCAEncoder(dim=5, center=False).fit(data).encode(data)
    assert np.linalg.norm(Z.mean(0)) > 10  # the +5 offset survives
    W = PCAEncoder(dim=5, whiten=True).fit(data).encode(data)
    np.testing.assert_allclose(W.var(0, ddof=1), 1.0, rtol=1e-3)


def test_fit_on_train_items_encodes_new_items(tmp_path):
    data, _ = _data(n=100)
    train, test = data.subset(np.arange(70)), data.subset(np.arange(70, 100))
    enc = PCAEncoder(dim=8, standardize=True).fit(train)
    Zt = enc.encode(test)
    enc.save(str(tmp_path / "s"))
    assert sorted(p.name for p in (tmp_path / "s").iterdir()) == sorted([STATE_FILE, CONFIG_FILE])
    with np.load(tmp_path / "s" / STATE_FILE, allow_pickle=False) as z:  # plain arrays, no pickle
        assert z["components"].shape == (8, 30)
    assert json.loads((tmp_path / "s" / CONFIG_FILE).read_text())["config"]["standardize"] is True
    back = PCAEncoder().load(str(tmp_path / "s"))
    assert back.dim == 8 and back.standardize is True
    np.testing.assert_array_equal(back.encode(test), Zt)


def test_alignment_by_feature_name():
    data, _ = _data()
    enc = PCAEncoder(dim=4).fit(data)
    order = np.random.default_rng(1).permutation(30)
    shuffled = ModalityData("rna", "matrix", data.patient_ids, data.item_ids, data.data[:, order],
                            feature_names=[data.feature_names[j] for j in order])
    np.testing.assert_allclose(enc.encode(shuffled), enc.encode(data), atol=1e-5)


def test_pca_probe_separates_groups():
    data, groups = _data(n=150)
    Z = PCAEncoder(dim=2).fit(data).encode(data)
    means = np.stack([Z[groups == g].mean(0) for g in range(3)])
    spread = np.mean([Z[groups == g].std(0).mean() for g in range(3)])
    assert np.min([np.linalg.norm(means[a] - means[b]) for a in range(3) for b in range(a + 1, 3)]) > 3 * spread


def test_errors_are_data_errors(tmp_path):
    data, _ = _data()
    with pytest.raises(DataError, match="fitted"):
        PCAEncoder().encode(data)
    with pytest.raises(DataError, match="no saved state"):
        PCAEncoder().load(str(tmp_path))
    bad = data.data.copy()
    bad[0, 0] = np.nan
    with pytest.raises(DataError, match="NaN"):
        PCAEncoder().fit(bad)
    with pytest.raises(DataError, match="fitted on 30 features"):
        PCAEncoder(dim=3).fit(data).encode(np.zeros((2, 7), np.float32))


def test_pca_encoder_registered_beside_the_pca_adapter(plugin_system):
    reg = plugin_system.registry
    assert reg.get("encoder", "pca").factory is PCAEncoder
    assert reg.get("adapter", "pca").factory is not PCAEncoder
