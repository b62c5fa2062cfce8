"""Importing precomputed embeddings: .npy + ids, parquet, and the authors' HDF5 layout."""

from __future__ import annotations

import numpy as np
import pytest

from fusionkit import engine
from fusionkit.errors import DataError
from fusionkit.recipe import load_recipe
from fusionkit.store import EmbeddingStore


def test_authors_hdf5_layout_runs_end_to_end(tmp_path, plugin_system):
    h5py = pytest.importorskip("h5py")
    rng = np.random.default_rng(0)
    for cancer in ("BRCA", "LUAD"):
        with h5py.File(tmp_path / f"{cancer}.h5", "w") as f:
            for modality, n in (("rna", 10), ("annotations", 30)):
                g = f.create_group(modality)
                g["embeddings"] = rng.normal(size=(n, 8)).astype(np.float32)
                g["cancer"] = np.array([cancer.encode()] * n)
                g["submitter_id"] = np.array([f"TCGA-{cancer[:2]}-{i % 10:04d}-01A".encode() for i in range(n)])
    (tmp_path / "r.yaml").write_text("""
name: h5
width: 8
data: {reader: {name: precomputed, params: {h5_files: [BRCA.h5, LUAD.h5]}}}
modalities:
  rna: {encoder: identity}
  annotations: {encoder: identity}
sampling:
  patients: {name: patient-level, params: {k: 3, repeats: 2}}
""")
    rec = load_recipe(tmp_path / "r.yaml", plugin_system)
    engine.run(rec, plugin_system, out_dir=tmp_path / "out", progress=False)
    X = np.load(tmp_path / "out" / "aggregates" / "patients" / "X.npy")
    pids = np.load(tmp_path / "out" / "aggregates" / "patients" / "patient_ids.npy")
    cancers = np.load(tmp_path / "out" / "aggregates" / "patients" / "label_cancer_type.npy")
    assert X.shape == (20, 16)
    assert pids[0].startswith("TCGA-") and len(pids[0]) == 12  # barcodes cut to the patient id
    assert set(cancers) == {"BRCA", "LUAD"}
    store = EmbeddingStore(next((tmp_path / "out" / "cache" / "stores").glob("annotations-*")))
    assert store.n == 60 and store.label("cancer_type")[0] in ("BRCA", "LUAD")


def test_parquet_and_csv_tables(tmp_path, plugin_system):
    pd = pytest.importorskip("pandas")
    pytest.importorskip("pyarrow")
    rows = [{"patient_id": f"P{i}", "cancer_type": "BRCA", "embedding": list(np.full(4, i, dtype=float))}
            for i in range(6)]
    pd.DataFrame(rows).to_parquet(tmp_path / "e.parquet")
    wide = pd.DataFrame({"patient_id": [f"P{i}" for i in range(5)], **{f"f{j}": np.arange(5.0) + j for j in range(4)}})
    wide.to_csv(tmp_path / "w.csv", index=False)
    reader = plugin_system.create("reader", "precomputed", {"inputs": {"a": str(tmp_path / "e.parquet"),
                                                                      "b": str(tmp_path / "w.csv")}})
    ds = reader.read(None)
    assert ds.modalities["a"].data.shape == (6, 4) and float(ds.modalities["a"].data[3, 0]) == 3.0
    assert ds.modalities["b"].data.shape == (5, 4) and float(ds.modalities["b"].data[1, 2]) == 3.0
    assert ds.labels["cancer_type"]["P2"] == "BRCA"
    bad = plugin_system.create("reader", "precomputed", {"inputs": {"a": str(tmp_path / "nope.npy")}})
    with pytest.raises(DataError, match="nope.npy"):
        bad.read(None)
