"""fusionkit.health: spread, std/norm, effective rank, the per-patient probe and the collapse verdict."""

from __future__ import annotations

import numpy as np
import pytest

from fusionkit import health

pytest.importorskip("sklearn")


def _clusters(n=240, d=32, k=4, sep=3.0, seed=0):
    rng = np.random.default_rng(seed)
    y = np.repeat(np.arange(k), n // k)
    Z = rng.normal(scale=sep, size=(k, d))[y] + rng.normal(size=(n, d))
    return Z.astype(np.float32), np.array([f"C{v}" for v in y])


def test_spread_bounds_and_scale_invariance():
    Z, _ = _clusters()
    Zc = Z - Z.mean(0)
    assert health.spread(Zc) == pytest.approx(1.0)
    assert health.spread(np.tile(Z[:1], (50, 1))) == pytest.approx(0.0, abs=1e-6)
    assert health.spread(Z * 1000) == pytest.approx(health.spread(Z), rel=1e-5)
    # a big shared offset with small item-to-item variation is near 0
    assert health.spread(Zc * 1e-3 + 10.0) < 0.01


def test_std_over_norm_matches_definition():
    Z, _ = _clusters()
    expect = Z.std(0).mean() / np.linalg.norm(Z, axis=1).mean()
    assert health.std_over_norm(Z) == pytest.approx(expect, rel=1e-5)


def test_effective_rank_counts_directions():
    rng = np.random.default_rng(0)
    iso = rng.normal(size=(2000, 8))
    assert 7.0 < health.effective_rank(iso) <= 8.0
    line = np.outer(rng.normal(size=500), rng.normal(size=16))
    assert health.effective_rank(line) == pytest.approx(1.0, abs=1e-3)


def test_patient_means_average_items():
    Z = np.array([[1, 0], [3, 0], [0, 5]], np.float32)
    pids, M = health.patient_means(Z, ["b", "b", "a"])
    assert list(pids) == ["a", "b"]
    np.testing.assert_allclose(M, [[0, 5], [2, 0]])


def test_probe_separates_clusters_and_reports_majority_baseline():
    Z, y = _clusters()
    res = health.linear_probe(Z, y)
    assert res["macro_f1"] > 0.95 and res["patients"] == 240 and res["classes"] == 4
    assert res["majority_macro_f1"] == pytest.approx(0.25 / 2 * 4 / 4, abs=0.05)  # constant class: F1 0.4 on 1 of 4
    assert len(res["macro_f1_folds"]) == 5 and "StandardScaler" in res["protocol"]
    rng = np.random.default_rng(1)
    noise = health.linear_probe(rng.normal(size=Z.shape), y)
    assert noise["macro_f1"] < 0.45


def test_probe_drops_rare_classes():
    Z, y = _clusters()
    y = y.astype(object)
    y[:3] = "rare"
    res = health.linear_probe(Z, y)
    assert res["dropped_classes"] == ["rare"] and res["patients"] == 237


def test_raw_pca_probe_finds_the_signal():
    Z, y = _clusters(d=64)
    res = health.raw_pca_probe(Z, y, dim=10)
    assert res["pca_dim"] == 10 and res["macro_f1"] > 0.95
    # never more components than a quarter of the patients (the probe would fit noise components)
    assert health.raw_pca_probe(Z[:60], y[:60], dim=256)["pca_dim"] == 15


def test_collapsed_encoder_output_is_flagged():
    """A deliberately collapsed encoder: one shared vector plus float noise, as the old rna-vae gave."""
    Z, y = _clusters(n=200)
    rng = np.random.default_rng(2)
    collapsed = np.tile(rng.normal(size=(1, Z.shape[1])) * 3, (len(Z), 1)) + 1e-4 * rng.normal(size=Z.shape)
    pids = [f"P{i}" for i in range(len(Z))]
    labels = {"cancer_type": dict(zip(pids, y))}
    bad = health.modality_health(collapsed, pids, labels)
    assert bad["status"] == "collapsed" and bad["spread"] < health.COLLAPSE_SPREAD
    assert any("collapsed" in f for f in bad["flags"])
    good = health.modality_health(Z, pids, labels)
    assert good["status"] == "ok" and good["flags"] == []
    assert good["probes"]["cancer_type"]["macro_f1"] > 0.9
    assert health.collapsed_modalities({"rna": bad, "mutation": good}) == ["rna"]
    text = "\n".join(health.health_lines({"rna": bad, "mutation": good}))
    assert "WARNING collapsed" in text and "probe cancer_type: macro-F1" in text


def test_uninformative_but_spread_embedding():
    Z, y = _clusters(n=200)
    rng = np.random.default_rng(3)
    pids = [f"P{i}" for i in range(len(Z))]
    h = health.modality_health(rng.normal(size=Z.shape), pids, {"cancer_type": dict(zip(pids, y))})
    assert h["status"] == "uninformative" and "uninformative for cancer_type" in h["flags"][0]
    assert h["probes"]["cancer_type"]["chance_macro_f1"] == pytest.approx(0.25)


def test_probe_uses_patient_means_and_skips_small_labels():
    Z, y = _clusters(n=120)
    pids = [f"P{i // 2}" for i in range(120)]  # two items per patient, same cluster
    labels = {"cancer_type": {f"P{i // 2}": y[i] for i in range(120)}, "tiny": {"P0": "a", "P1": "b"}}
    h = health.modality_health(Z, pids, labels)
    assert h["probes"]["cancer_type"]["patients"] == 60
    assert "tiny" not in h["probes"]


# ----------------------------------------------------------------------------- runs

def _collapsed_run(tmp_path):
    from helpers import imported_recipe

    recipe = imported_recipe(tmp_path / "in")
    X = np.load(tmp_path / "in" / "rna.npy")
    rng = np.random.default_rng(0)
    np.save(tmp_path / "in" / "rna.npy", (np.tile(X[:1] + 5.0, (len(X), 1))
                                          + 1e-5 * rng.normal(size=X.shape)).astype(np.float32))
    return recipe


def test_run_writes_health_and_warns_on_a_collapsed_encoder(tmp_path, caplog):
    import json
    import logging

    from click.testing import CliRunner

    from fusionkit.cli import cli

    recipe = _collapsed_run(tmp_path)
    with caplog.at_level(logging.WARNING):
        res = CliRunner().invoke(cli, ["run", str(recipe), "--out", str(tmp_path / "run"), "--no-progress"])
    assert res.exit_code == 0, res.output
    summary = json.loads((tmp_path / "run" / "data_summary.json").read_text())
    assert summary["health"]["rna"]["status"] == "collapsed"
    assert summary["health"]["mutation"]["status"] in ("ok", "uninformative")
    assert "cancer_type" in summary["health"]["mutation"]["probes"]
    log_text = caplog.text + (tmp_path / "run" / "run.log").read_text() if (tmp_path / "run" / "run.log").exists() \
        else caplog.text
    assert "EMBEDDING HEALTH: modality rna" in log_text

    out = CliRunner().invoke(cli, ["probe", str(tmp_path / "run"), "--json"])
    assert out.exit_code == 0, out.output
    probed = json.loads(out.output)
    assert probed["health"]["rna"]["status"] == "collapsed" and probed["labels"] == ["cancer_type"]
    text = CliRunner().invoke(cli, ["probe", str(tmp_path / "run")]).output
    assert "WARNING collapsed" in text and "probe cancer_type: macro-F1" in text
    bad = CliRunner().invoke(cli, ["probe", str(tmp_path / "run"), "--label", "nope"])
    assert bad.exit_code != 0 and "no label nope" in bad.output and "Traceback" not in bad.output


def test_strict_run_fails_on_a_collapsed_encoder(tmp_path):
    from click.testing import CliRunner

    from fusionkit.cli import cli

    recipe = _collapsed_run(tmp_path)
    res = CliRunner().invoke(cli, ["run", str(recipe), "--out", str(tmp_path / "run"), "--no-progress", "--strict"])
    assert res.exit_code != 0
    assert "collapsed encoder output for rna" in res.output and "modalities.rna.encoder" in res.output
    assert "Traceback" not in res.output
