"""rna-vae / mutation-vae on small synthetic matrices: shapes, determinism, save/load, warm-up, early stopping."""

from __future__ import annotations

import json

import numpy as np
import pytest

torch = pytest.importorskip("torch")

from fusionkit.components import ModalityData  # noqa: E402
from fusionkit.errors import DataError  # noqa: E402
from fusionkit_plugins.encoders.omics_vae import MutationVAE, RnaVAE, beta_schedule  # noqa: E402


pytestmark = pytest.mark.usefixtures("torch_one_thread")


def _rna(n=120, d=40, seed=0):
    rng = np.random.default_rng(seed)
    groups = rng.integers(0, 3, n)
    centers = rng.normal(scale=3, size=(3, d))
    X = (centers[groups] + rng.normal(size=(n, d))).astype(np.float32)
    return ModalityData("rna", "matrix", [f"P{i}" for i in range(n)], [f"P{i}" for i in range(n)], X,
                        feature_names=[f"G{j}" for j in range(d)]), groups


def _mut(n=150, d=60, seed=1):
    rng = np.random.default_rng(seed)
    return (rng.random((n, d)) < 0.1).astype(np.float32)


SMALL = dict(latent_dim=8, hidden_dims=(32,), batch_size=32)


def test_beta_schedule_paper_values():
    assert beta_schedule(4) == [0.0, 1.0, 1.0, 1.0]  # beta from 0, kappa 1: one warm-up epoch
    assert beta_schedule(5, kappa=0.25) == [0.0, 0.25, 0.5, 0.75, 1.0]
    assert beta_schedule(3, kappa=0.5, beta_max=0.6) == [0.0, 0.5, 0.6]


def test_rna_vae_fit_encode_shapes_and_history():
    data, _ = _rna()
    enc = RnaVAE(epochs=3, finetune_epochs=2, seed=0, **SMALL).fit(data)
    Z = enc.encode(data)
    assert Z.shape == (120, 8) and Z.dtype == np.float32 and np.isfinite(Z).all()
    assert enc.output_dim == 8
    phases = [(h["phase"], h["beta"]) for h in enc.history_]
    assert phases == [("pretrain", 0.0), ("pretrain", 1.0), ("pretrain", 1.0), ("finetune", 1.0), ("finetune", 1.0)]
    assert enc.history_[0]["train_kl"] > 0 and "val_loss" in enc.history_[0]
    # the (robust, 10..90 % quantile) min-max scaler is part of the state
    lo, hi = np.quantile(data.data, [0.1, 0.9], axis=0)
    np.testing.assert_allclose(enc.min_, lo, rtol=1e-5)
    np.testing.assert_allclose(enc.range_, hi - lo, rtol=1e-5)


def test_rna_vae_deterministic_for_seed():
    data, _ = _rna()
    a = RnaVAE(epochs=3, finetune_epochs=1, seed=5, **SMALL).fit(data).encode(data)
    b = RnaVAE(epochs=3, finetune_epochs=1, seed=5, **SMALL).fit(data).encode(data)
    c = RnaVAE(epochs=3, finetune_epochs=1, seed=6, **SMALL).fit(data).encode(data)
    np.testing.assert_array_equal(a, b)
    assert not np.allclose(a, c)


def test_seed_comes_from_ctx_when_unset():
    class Ctx:
        seed, device = 11, "cpu"

    data, _ = _rna()
    a = RnaVAE(epochs=2, finetune_epochs=0, **SMALL).fit(data, Ctx()).encode(data)
    b = RnaVAE(epochs=2, finetune_epochs=0, seed=11, **SMALL).fit(data).encode(data)
    np.testing.assert_array_equal(a, b)


def test_rna_vae_save_load_round_trip(tmp_path):
    data, _ = _rna()
    enc = RnaVAE(epochs=2, finetune_epochs=1, seed=0, **SMALL).fit(data)
    Z = enc.encode(data)
    enc.save(str(tmp_path / "state"))
    assert (tmp_path / "state" / "vae_state.pt").is_file()
    meta = json.loads((tmp_path / "state" / "vae_config.json").read_text())
    assert meta["encoder"] == "rna-vae" and meta["in_dim"] == 40 and len(meta["history"]) == 3
    fresh = RnaVAE().load(str(tmp_path / "state"))  # defaults differ: architecture comes from the state
    assert fresh.latent_dim == 8
    np.testing.assert_array_equal(fresh.encode(data), Z)


def test_feature_alignment_by_name():
    data, _ = _rna()
    enc = RnaVAE(epochs=1, finetune_epochs=0, seed=0, **SMALL).fit(data)
    order = np.random.default_rng(0).permutation(40)
    shuffled = ModalityData("rna", "matrix", data.patient_ids, data.item_ids, data.data[:, order],
                            feature_names=[data.feature_names[j] for j in order])
    np.testing.assert_allclose(enc.encode(shuffled), enc.encode(data), rtol=1e-5, atol=1e-6)
    few = ModalityData("rna", "matrix", data.patient_ids, data.item_ids, data.data[:, :10],
                       feature_names=data.feature_names[:10])
    with pytest.raises(DataError, match="fitted features"):
        enc.encode(few)


def test_errors_nan_and_unfitted():
    data, _ = _rna()
    bad = data.data.copy()
    bad[0, 0] = np.nan
    with pytest.raises(DataError, match="NaN"):
        RnaVAE(**SMALL).fit(bad)
    with pytest.raises(DataError, match="fitted"):
        RnaVAE(**SMALL).encode(data)
    with pytest.raises(DataError, match="no saved state"):
        RnaVAE().load("/nonexistent/folder")


def test_mutation_vae_bce_binarise_and_shapes():
    M = _mut()
    enc = MutationVAE(epochs=3, seed=0, **SMALL).fit(M * 3)  # counts are binarised
    Z = enc.encode(M)
    assert Z.shape == (150, 8) and Z.dtype == np.float32
    np.testing.assert_array_equal(Z, enc.encode(M * 5))
    assert [h["beta"] for h in enc.history_] == [0.0, 1.0, 1.0]
    with pytest.raises(DataError, match=r"\[0, 1\]"):
        MutationVAE(binarize=False, **SMALL).fit(M * 3)


def test_mutation_vae_defaults_follow_paper():
    p = MutationVAE.default_params()
    assert (p["batch_size"], p["epochs"], p["patience"], p["latent_dim"]) == (256, 50, 10, 768)
    assert RnaVAE.default_params()["kappa"] == 1.0 and RnaVAE().output_dim == 768


def test_mutation_vae_early_stopping_stops_and_restores_best(tmp_path):
    M = _mut()
    # min_delta so large that no epoch after the first counts as an improvement
    enc = MutationVAE(epochs=50, patience=3, min_delta=1e9, seed=0, **SMALL).fit(M)
    assert enc.stopped_early_ and len(enc.history_) == 4  # epoch 0 best, then 3 without improvement
    # normal run: stops before 50 or runs out, and the restored weights reproduce the best val loss
    enc = MutationVAE(epochs=12, patience=2, seed=0, **SMALL).fit(M)
    vals = [h["val_loss"] for h in enc.history_]
    assert len(vals) <= 12
    enc.save(str(tmp_path))
    again = MutationVAE().load(str(tmp_path))
    np.testing.assert_array_equal(again.encode(M), enc.encode(M))


def test_mutation_vae_validation_criterion_is_the_median_patient():
    """A few hypermutated validation patients dominate the mean BCE; the median ignores them.
    The recorded val_loss is the median item's loss, the mean is kept beside it."""
    import torch

    M = _mut()
    M[:5] = 1.0  # five hypermutated patients
    enc = MutationVAE(epochs=3, patience=0, seed=0, val_fraction=0.2, **SMALL).fit(M)
    assert enc.val_criterion == "median"
    row = enc.history_[-1]
    assert row["val_loss"] < row["val_mean_loss"]
    x = torch.from_numpy(M[:10])
    mu = torch.zeros(10, 8)
    per_item = enc._item_losses(torch.zeros(10, 60), x, mu, torch.zeros(10, 8), 1.0)
    assert per_item.shape == (10,) and float(per_item[0]) == pytest.approx(60 * np.log(2), rel=1e-5)
    old = MutationVAE(epochs=3, patience=0, seed=0, val_fraction=0.2, val_criterion="mean", **SMALL).fit(M)
    assert "val_mean_loss" not in old.history_[-1]
    with pytest.raises(DataError, match="val_criterion"):
        MutationVAE(epochs=1, val_criterion="mode", **SMALL).fit(M)


def test_vaes_registered(plugin_system):
    info = plugin_system.registry.get("encoder", "rna-vae")
    assert info.metadata["dim"] == 768 and info.factory is RnaVAE and RnaVAE.trainable
    enc = plugin_system.create("encoder", "mutation-vae", {"epochs": 5, "hidden_dims": [64]})
    assert isinstance(enc, MutationVAE) and enc.epochs == 5 and enc.modality == "mutation"


def test_paper_architecture_variant(tmp_path):
    """The authors' network: Dense(F/2) -> Dense(F/3), BatchNorm+ReLU heads (non-negative mean),
    a single-layer decoder; F*BCE + kl_weight*beta*KL; restored from its state."""
    from fusionkit_plugins.encoders.vae_networks import n_params, paper_hidden

    data, _ = _rna(d=42)
    enc = RnaVAE(architecture="paper", hidden_dims="auto", reconstruction="bce", kl_weight=5.0, latent_dim=8,
                 epochs=3, finetune_epochs=1, batch_size=32, seed=0).fit(data)
    assert paper_hidden(42) == [21, 14] and enc._hidden() == [21, 14]
    assert type(enc.model_.mu[1]).__name__ == "BatchNorm1d"
    assert sum(p.numel() for p in enc.model_.parameters()) == n_params("paper", 42, [21, 14], 8)
    Z = enc.encode(data)
    assert Z.shape == (120, 8) and (Z >= 0).all()  # ReLU on the mean, as the authors'
    enc.save(str(tmp_path))
    back = RnaVAE().load(str(tmp_path))
    assert back.architecture == "paper"
    np.testing.assert_array_equal(back.encode(data), Z)
    with pytest.raises(DataError, match="architecture"):
        RnaVAE(architecture="resnet", **SMALL).fit(data)
    with pytest.raises(DataError, match="only defined for architecture: paper"):
        RnaVAE(hidden_dims="auto", latent_dim=8).fit(data)


def test_mlp_parameter_count_matches_the_network():
    from fusionkit_plugins.encoders.vae_networks import n_params

    data, _ = _rna()
    enc = RnaVAE(epochs=1, finetune_epochs=0, seed=0, **SMALL).fit(data)
    assert sum(p.numel() for p in enc.model_.parameters()) == n_params("mlp", 40, [32], 8)


def test_kl_weight_scales_the_kl_term():
    import torch

    enc = RnaVAE(kl_weight=5.0, **SMALL)
    x = torch.rand(4, 6)
    mu, logvar = torch.ones(4, 3), torch.zeros(4, 3)
    total, rec, kl = enc._loss(x.clone(), x, mu, logvar, beta=0.5)
    assert float(kl) == pytest.approx(1.5)  # 0.5 * sum(mu^2) per item
    assert float(total) == pytest.approx(float(rec) + 5.0 * 0.5 * 1.5, rel=1e-5)


def test_gaussian_feature_loss_is_invariant_to_feature_scale():
    import torch

    enc = RnaVAE(reconstruction="gaussian-feature", **SMALL)
    g = torch.Generator().manual_seed(0)
    x, recon = torch.rand(64, 5, generator=g), torch.rand(64, 5, generator=g)
    mu = logvar = torch.zeros(64, 2)
    scale = torch.tensor([1.0, 10.0, 0.1, 3.0, 1.0])
    _, a, _ = enc._loss(recon, x, mu, logvar, 0.0)
    _, b, _ = enc._loss(recon * scale, x * scale, mu, logvar, 0.0)
    assert float(b - a) == pytest.approx(float(torch.log(scale).sum()), rel=1e-3)  # a constant shift (up to eps)


def test_rna_vae_robust_range_ignores_outliers_and_survives_save_load(tmp_path):
    """One extreme value per gene (real z-scores reach 3.7e4) must not squeeze everyone else into
    the bottom of [0, 1]: with clip_quantile the scaler's range is the 10..90 % quantiles and the
    scaled training data spread over [0, 1] (issue 15)."""
    data, _ = _rna()
    X = data.data.copy()
    X[0, :] = 3.7e4
    spiked = ModalityData("rna", "matrix", data.patient_ids, data.item_ids, X, feature_names=data.feature_names)
    plain = RnaVAE(epochs=1, finetune_epochs=0, seed=0, clip_quantile=0.0, **SMALL).fit(spiked)
    robust = RnaVAE(epochs=1, finetune_epochs=0, seed=0, **SMALL).fit(spiked)
    assert robust.clip_quantile == 0.1
    lo, hi = np.quantile(X, [0.1, 0.9], axis=0)
    np.testing.assert_allclose(robust.min_, lo, rtol=1e-5)
    np.testing.assert_allclose(robust.range_, hi - lo, rtol=1e-5)
    Xs_plain, Xs_robust = plain._scale(X), robust._scale(X)
    assert np.median(Xs_plain[1:]) < 1e-3  # the outlier squeezes plain min-max
    assert Xs_robust.min() == 0.0 and Xs_robust.max() == 1.0 and 0.3 < np.median(Xs_robust) < 0.7
    robust.save(str(tmp_path / "s"))
    fresh = RnaVAE(clip_quantile=0.0).load(str(tmp_path / "s"))
    assert fresh.clip_quantile == 0.1
    np.testing.assert_array_equal(fresh.encode(spiked), robust.encode(spiked))
