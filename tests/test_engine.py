"""End-to-end runs on imported embeddings: outputs, run record, cache reuse, resume, errors."""

from __future__ import annotations

import json

import numpy as np
import pytest
import yaml

from fusionkit import engine, hookimpl, plugins
from fusionkit.components import Encoder
from fusionkit.errors import DataError, FusionkitError
from fusionkit.recipe import load_recipe
from helpers import imported_recipe


def test_run_writes_aggregates_and_resolved_recipe(plugin_system, tmp_path):
    path = imported_recipe(tmp_path)
    rec = load_recipe(path, plugin_system)
    out = tmp_path / "out"
    record = engine.run(rec, plugin_system, out_dir=out, progress=False)
    assert record["status"] == "ok"
    resolved = yaml.safe_load((out / "resolved_recipe.yaml").read_text())
    assert resolved["sampling"]["patients"]["params"]["min_modalities"] == 2
    run = json.loads((out / "run.json").read_text())
    assert run["seed"] == 11 and run["status"] == "ok"
    assert any(p["name"] == "builtin.sampling.samplers" and p["version"] for p in run["plugins"])
    files = next(iter(run["inputs"].values()))["files"]
    assert str(tmp_path / "rna.npy") in files
    X = np.load(out / "aggregates" / "simple" / "X.npy")
    counts = np.load(out / "aggregates" / "simple" / "counts.npy")
    assert X.shape == (120, 16) and counts.shape == (120, 3)
    assert set(np.load(out / "aggregates" / "simple" / "k.npy")) == {3, 4, 5}
    P = np.load(out / "aggregates" / "patients" / "X.npy")
    assert P.shape[1] == 32
    summary = json.loads((out / "data_summary.json").read_text())
    assert summary["modalities"]["text"]["items"] == 240
    assert "mean_norm" in summary["modalities"]["rna"]
    # same seed, same aggregates
    engine.run(rec, plugin_system, out_dir=tmp_path / "out2", progress=False)
    np.testing.assert_array_equal(X, np.load(tmp_path / "out2" / "aggregates" / "simple" / "X.npy"))


class CountingEncoder(Encoder):
    """Doubles its input; counts calls (class-level) to prove caching and resume."""

    modality = "any"
    input_kind = "embedding"
    shard_size = 10
    calls: list[int] = []
    fail_after: int | None = None

    def __init__(self, dim: int = 16, width: int = 16):
        self.dim = dim
        self.width = width

    def encode(self, data, ctx=None):
        if CountingEncoder.fail_after is not None and len(CountingEncoder.calls) >= CountingEncoder.fail_after:
            raise KeyboardInterrupt("killed")
        CountingEncoder.calls.append(len(data))
        X = np.asarray(data.data, dtype=np.float32) * 2
        return X[:, : self.width] if self.width <= X.shape[1] else np.pad(X, ((0, 0), (0, self.width - X.shape[1])))


def counting_system():
    mod = type("M", (), {})()

    @hookimpl
    def register_encoders(register):
        register("counting", CountingEncoder)

    mod.register_encoders = register_encoders
    return plugins.load(env={}, entry_points=[], extra=[("counting-plugin", mod)])


def test_cache_reuse_and_resume_after_interruption(tmp_path):
    system = counting_system()
    path = imported_recipe(tmp_path, {"rna": (35, 0.0), "text": (45, 1.0)})
    path.write_text(path.read_text().replace("encoder: identity", "encoder: counting"))
    rec = load_recipe(path, system)
    CountingEncoder.calls.clear()
    CountingEncoder.fail_after = 5  # rna: 4 shards of 10, text: dies on its 2nd shard
    with pytest.raises(KeyboardInterrupt):
        engine.run(rec, system, out_dir=tmp_path / "out", progress=False)
    assert len(CountingEncoder.calls) == 5
    CountingEncoder.fail_after = None
    CountingEncoder.calls.clear()
    engine.run(rec, system, out_dir=tmp_path / "out", progress=False)
    assert CountingEncoder.calls == [10, 10, 10, 5]  # only text's remaining shards
    CountingEncoder.calls.clear()
    engine.run(rec, system, out_dir=tmp_path / "out", progress=False)
    assert CountingEncoder.calls == []  # second run reuses the stores
    stores = list((tmp_path / "out" / "cache" / "stores").iterdir())
    assert len(stores) == 2
    meta = json.loads((stores[0] / "meta.json").read_text())
    assert meta["provenance"]["encoder"]["name"] == "counting"
    assert meta["provenance"]["encoder"]["params"] == {"dim": 16, "width": 16}
    assert meta["provenance"]["input_fingerprint"]
    # a parameter change is a new cache key
    rec2 = load_recipe(path, system, ["modalities.rna.encoder.params.width=16", "modalities.rna.encoder.params.dim=16",
                                      "seed=12"])
    engine.run(rec2, system, out_dir=tmp_path / "out", progress=False)
    assert CountingEncoder.calls  # re-encoded under the new seed


def test_wrong_width_nan_and_missing_file_errors(tmp_path):
    system = counting_system()
    path = imported_recipe(tmp_path, {"rna": (20, 0.0), "text": (20, 1.0)})
    path.write_text(path.read_text().replace("encoder: identity", "encoder: {name: counting, params: {width: 8}}"))
    with pytest.raises(DataError, match="returned width 8 but declares 16"):
        engine.run(load_recipe(path, system), system, out_dir=tmp_path / "o1", progress=False)
    # identity at width 16 with recipe width 32 -> needs an adapter
    path2 = imported_recipe(tmp_path / "b", {"rna": (20, 0.0)})
    path2.write_text(path2.read_text().replace("width: 16", "width: 32"))
    with pytest.raises(DataError, match="add an adapter"):
        engine.run(load_recipe(path2, system), system, out_dir=tmp_path / "o2", progress=False)
    # NaN in the input
    X = np.load(tmp_path / "b" / "rna.npy")
    X[3, 2] = np.nan
    np.save(tmp_path / "b" / "rna.npy", X)
    path2.write_text(path2.read_text().replace("width: 32", "width: 16"))
    with pytest.raises(DataError, match="NaN"):
        engine.run(load_recipe(path2, system), system, out_dir=tmp_path / "o3", progress=False)
    (tmp_path / "b" / "rna.npy").unlink()
    with pytest.raises(FusionkitError, match="rna.npy"):
        engine.run(load_recipe(path2, system), system, out_dir=tmp_path / "o4", progress=False)


def test_ids_table_with_wrong_column(tmp_path, plugin_system):
    path = imported_recipe(tmp_path, {"rna": (20, 0.0)})
    (tmp_path / "rna_ids.csv").write_text("pid,cancer_type\n" + "\n".join(f"TCGA-AA-{i:04d},BRCA" for i in range(20)))
    with pytest.raises(DataError) as exc:
        engine.run(load_recipe(path, plugin_system), plugin_system, out_dir=tmp_path / "o", progress=False)
    assert "patient_id" in str(exc.value) and "rna_ids.csv" in str(exc.value) and "pid" in str(exc.value)


def test_results_command_prints_markdown(tmp_path):
    from click.testing import CliRunner

    from fusionkit.cli import cli

    (tmp_path / "metrics.json").write_text(json.dumps({"rec": {"paper_comparison": [
        {"experiment": "recognizer (deep)", "metric": "MCC", "modality": "rna", "k": 3, "ours_mean": 0.91,
         "ours_ci_low": 0.88, "ours_ci_high": 0.94, "paper": "~0.9"}]}}))
    (tmp_path / "data_summary.json").write_text(json.dumps({"modalities": {"rna": {
        "items": 10, "patients": 10, "mean_norm": 2.0, "norm_of_mean": 1.5,
        "patients_by_cancer_type": {"BRCA": 6, "LUAD": 4}}}}))
    (tmp_path / "run.json").write_text(json.dumps({"status": "ok"}))  # results reads finished runs only
    res = CliRunner().invoke(cli, ["results", str(tmp_path)])
    assert res.exit_code == 0, res.output
    assert "| rna | 10 | 100% | 2.00 | 1.50 |" in res.output  # embedding health; availability per class below
    assert "| BRCA | 6 |" in res.output and "| LUAD | 4 |" in res.output
    assert "| rec | recognizer (deep) | MCC | rna | 3 | 0.910 | [0.880, 0.940] | ≈0.9 |  |" in res.output
    missing = CliRunner().invoke(cli, ["results", str(tmp_path / "nope")])
    assert missing.exit_code == 2
