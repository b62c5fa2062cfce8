"""`fusionkit export` (h5mu / h5ad / parquet) and the `mudata` / `anndata` readers: a lossless round trip."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import yaml
from click.testing import CliRunner

from fusionkit import engine
from fusionkit.cli import cli
from fusionkit.export import export_run
from fusionkit.recipe import load_recipe
from fusionkit.store import EmbeddingStore
from helpers import imported_recipe

mudata = pytest.importorskip("mudata", reason="the scverse extra (mudata, anndata) is not installed")
anndata = pytest.importorskip("anndata")

TASKS = """tasks:
  sim: {name: similarity, params: {n_pairs: 400, n_repeats: 2}}
"""


def _stores(out: Path) -> dict[str, EmbeddingStore]:
    return {m: EmbeddingStore(p) for m, p in json.loads((out / "run.json").read_text())["stores"].items()}


@pytest.fixture
def finished_run(plugin_system, tmp_path):
    path = imported_recipe(tmp_path / "inputs", extra=TASKS, name="roundtrip")
    out = tmp_path / "run1"
    engine.run(load_recipe(path, plugin_system), plugin_system, out_dir=out, progress=False)
    return path, out


def test_h5mu_round_trip_gives_identical_stores_and_metrics(plugin_system, finished_run, tmp_path):
    path, out = finished_run
    res = CliRunner().invoke(cli, ["export", str(out), "--to", "h5mu"])
    assert res.exit_code == 0, res.output
    h5mu = Path(res.output.strip())
    assert h5mu == out / "export" / "roundtrip.h5mu" and h5mu.is_file()
    raw = yaml.safe_load(path.read_text())
    raw["data"] = {"reader": {"name": "mudata", "params": {"path": str(h5mu)}}}
    second = tmp_path / "from_h5mu" / "recipe.yaml"
    second.parent.mkdir()
    second.write_text(yaml.safe_dump(raw, sort_keys=False))
    out2 = tmp_path / "run2"
    engine.run(load_recipe(second, plugin_system), plugin_system, out_dir=out2, progress=False)
    first, again = _stores(out), _stores(out2)
    assert set(first) == set(again) == {"rna", "mutation", "text"}
    for m in first:
        np.testing.assert_array_equal(np.asarray(first[m].embeddings), np.asarray(again[m].embeddings))
        assert sorted(first[m].items) == sorted(again[m].items)
        for col in first[m].items:
            np.testing.assert_array_equal(first[m].items[col], again[m].items[col])
    assert json.loads((out / "labels.json").read_text()) == json.loads((out2 / "labels.json").read_text())
    m1, m2 = ((o / "metrics.json").read_text() for o in (out, out2))
    assert json.loads(m1.replace(str(out), "RUN")) == json.loads(m2.replace(str(out2), "RUN"))  # figure paths aside
    assert json.loads(m1)["sim"]["summary"]["measures"]["cosine"]["auc"]["n"] == 2
    for name in ("simple", "patients"):
        np.testing.assert_array_equal(np.load(out / "aggregates" / name / "X.npy"),
                                      np.load(out2 / "aggregates" / name / "X.npy"))


def test_h5mu_content_provenance_and_presence(finished_run):
    _, out = finished_run
    [h5mu] = export_run(out, "h5mu", out=out / "elsewhere.h5mu")
    with mudata.set_options(pull_on_update=False):
        mdata = mudata.read_h5mu(h5mu)
    assert set(mdata.mod) == {"rna", "mutation", "text", "aggregates_simple", "aggregates_patients"}
    stores = _stores(out)
    rna = mdata.mod["rna"]
    np.testing.assert_array_equal(rna.X, np.asarray(stores["rna"].embeddings))
    assert list(rna.obs["patient_id"]) == list(stores["rna"].patient_ids)
    assert list(rna.obs["cancer_type"]) == list(stores["rna"].label("cancer_type"))
    prov = rna.uns["fusionkit"]
    assert prov["kind"] == "store" and prov["encoder"] == "identity" and prov["width"] == "16"
    assert prov["input_fingerprint"] == stores["rna"].provenance["input_fingerprint"]
    assert json.loads(prov["provenance"])["cache_key"] == stores["rna"].provenance["cache_key"]
    assert prov["plugin_version"]  # the encoder's plugin version
    agg = mdata.mod["aggregates_simple"]
    assert agg.shape == (120, 16) and list(agg.uns["fusionkit"]["modalities"]) == ["rna", "mutation", "text"]
    np.testing.assert_array_equal(agg.obsm["counts"], np.load(out / "aggregates" / "simple" / "counts.npy"))
    np.testing.assert_array_equal(agg.obsm["presence"], np.load(out / "aggregates" / "simple" / "presence.npy"))
    assert set(agg.obs["k"]) == {3, 4, 5}
    # MuData's own per-modality presence mask over items, and ours over patients
    assert mdata.obsm["rna"].sum() == 60 and mdata.obsm["text"].sum() == 240
    uns = mdata.uns["fusionkit"]
    patients, mask = np.asarray(uns["patients"]).astype(str), np.asarray(uns["presence"])
    assert mask.shape == (len(patients), 3) and list(uns["stores"]) == ["rna", "mutation", "text"]
    assert mask[:, 1].sum() == len(set(stores["mutation"].patient_ids))
    assert json.loads(uns["labels"])["cancer_type"]["TCGA-AA-0001"] in ("BRCA", "LUAD", "THCA")


def test_h5ad_and_parquet(plugin_system, finished_run, tmp_path):
    from fusionkit_plugins.readers.scverse import AnndataReader

    _, out = finished_run
    files = export_run(out, "h5ad", out=tmp_path / "h5ad")
    assert sorted(p.name for p in files) == ["aggregates_patients.h5ad", "aggregates_simple.h5ad",
                                             "mutation.h5ad", "rna.h5ad", "text.h5ad"]
    stores = _stores(out)
    md = AnndataReader(path=str(tmp_path / "h5ad" / "text.h5ad")).read(None).modalities["text"]
    np.testing.assert_array_equal(md.data, np.asarray(stores["text"].embeddings))
    assert list(md.item_ids) == list(stores["text"].item_ids) and md.kind == "embedding"
    pq = pytest.importorskip("pyarrow.parquet")
    files = export_run(out, "parquet", out=tmp_path / "pq")
    table = pq.read_table(tmp_path / "pq" / "mutation.parquet")
    assert table.column_names[:2] == ["item_id", "patient_id"] and "embedding" in table.column_names
    np.testing.assert_array_equal(np.stack(table.column("embedding").to_pylist()),
                                  np.asarray(stores["mutation"].embeddings))
    assert json.loads(table.schema.metadata[b"fusionkit"])["encoder"] == "identity"
    agg = pq.read_table(tmp_path / "pq" / "aggregates_simple.parquet").to_pandas()
    assert {"k", "count_rna", "present_text"} <= set(agg.columns) and len(agg) == 120
    # the precomputed reader reads a store's parquet back
    from fusionkit_plugins.readers.precomputed import PrecomputedReader

    back = PrecomputedReader(inputs={"mutation": str(tmp_path / "pq" / "mutation.parquet")}).read(None)
    np.testing.assert_array_equal(back.modalities["mutation"].data, np.asarray(stores["mutation"].embeddings))


def test_reader_options_and_errors(tmp_path, finished_run):
    from fusionkit.errors import DataError, FusionkitError
    from fusionkit_plugins.readers.scverse import AnndataReader, MudataReader

    _, out = finished_run
    res = CliRunner().invoke(cli, ["export", str(tmp_path)])
    assert res.exit_code == 1 and "run.json missing" in res.output and "Traceback" not in res.output
    with pytest.raises(FusionkitError, match="unknown export format"):
        export_run(out, "loom")
    [h5mu] = export_run(out, "h5mu")
    only = MudataReader(path=str(h5mu), modalities=["text"], label_columns=[]).read(None)
    assert list(only.modalities) == ["text"] and only.modalities["text"].labels == {}
    with pytest.raises(DataError, match="no modality"):
        MudataReader(path=str(h5mu), modalities=["image"]).read(None)
    with pytest.raises(DataError, match="no obsm entry 'X_uni'"):
        MudataReader(path=str(h5mu), obsm="X_uni").read(None)
    # a plain scverse AnnData: vectors in obsm, patient from the TCGA barcode in the obs names
    import pandas as pd

    obs = pd.DataFrame({"tissue": ["a", "b", "c"]},
                       index=["TCGA-AA-0001-01A-11R", "TCGA-AA-0002-01A-11R", "TCGA-AA-0001-06A-11R"])
    adata = anndata.AnnData(X=np.zeros((3, 2), np.float32), obs=obs)
    adata.obsm["X_uni"] = np.arange(12, dtype=np.float32).reshape(3, 4)
    adata.write_h5ad(tmp_path / "plain.h5ad")
    ds = AnndataReader(path=str(tmp_path / "plain.h5ad"), obsm="X_uni").read(None)
    md = ds.modalities["plain"]
    assert "tissue" not in ds.labels  # differs between one patient's items: an item label only
    assert md.data.shape == (3, 4) and list(md.patient_ids) == ["TCGA-AA-0001", "TCGA-AA-0002", "TCGA-AA-0001"]
    assert list(md.labels["tissue"]) == ["a", "b", "c"]
    # a run folder from before labels.json: patient labels come back from the items
    labels = json.loads((out / "labels.json").read_text())
    (out / "labels.json").unlink()
    [old] = export_run(out, "h5mu", out=tmp_path / "old.h5mu")
    assert MudataReader(path=str(old)).read(None).labels["cancer_type"] == labels["cancer_type"]
    (tmp_path / "broken.h5mu").write_bytes(b"nope")
    with pytest.raises(DataError, match="cannot read the MuData file"):
        MudataReader(path=str(tmp_path / "broken.h5mu")).read(None)
