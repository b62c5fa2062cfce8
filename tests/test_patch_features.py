"""`patch-features` reader: TRIDENT / CLAM per-slide HDF5 files, through a recipe, and its errors."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

from fusionkit import engine
from fusionkit.errors import DataError
from fusionkit.recipe import load_recipe
from fusionkit.store import EmbeddingStore

h5py = pytest.importorskip("h5py")

DIM = 12


def write_trident(path: Path, features: np.ndarray, coords: np.ndarray, *, coords_attrs: dict | None = None,
                  with_coords: bool = True) -> None:
    """One slide in TRIDENT's layout: resizable datasets chunked by row, attributes on each dataset."""
    attrs = {"features": {"name": path.stem, "savetodir": str(path.parent)},
             "coords": coords_attrs if coords_attrs is not None else {
                 "patch_size": 256, "patch_size_level0": 512, "level0_magnification": 40,
                 "target_magnification": 20, "overlap": 0, "name": path.stem, "savetodir": str(path.parent),
                 "level0_width": 4096, "level0_height": 3072}}
    assets = {"features": features, "coords": coords} if with_coords else {"features": features}
    with h5py.File(path, "w") as f:
        for key, val in assets.items():
            ds = f.create_dataset(key, shape=val.shape, maxshape=(None,) + val.shape[1:],
                                  chunks=(1,) + val.shape[1:], dtype=val.dtype)
            ds[:] = val
            for k, v in attrs[key].items():
                ds.attrs[k] = v


def grid_coords(n: int, step: int = 512) -> np.ndarray:
    return np.array([[(i % 8) * step, (i // 8) * step] for i in range(n)], dtype=np.int64)


@pytest.fixture
def trident_folder(tmp_path):
    """features_uni_v1/: patient TCGA-AA-0001 has two slides, TCGA-BB-0002 and TCGA-CC-0003 one each."""
    folder = tmp_path / "trident_processed" / "20x_256px_0px_overlap" / "features_uni_v1"
    folder.mkdir(parents=True)
    rng = np.random.default_rng(0)
    slides = {"TCGA-AA-0001-01Z-00-DX1": 7, "TCGA-AA-0001-01Z-00-DX2": 5, "TCGA-BB-0002-01Z-00-DX1": 9,
              "TCGA-CC-0003-01Z-00-DX1": 6}
    written = {}
    for i, (slide, n) in enumerate(slides.items()):
        X = rng.normal(i, 1.0, (n, DIM)).astype(np.float32)
        C = grid_coords(n)
        write_trident(folder / f"{slide}.h5", X, C)
        written[slide] = (X, C)
    pd = pytest.importorskip("pandas")
    pd.DataFrame({"patient_id": ["TCGA-AA-0001", "TCGA-BB-0002", "TCGA-CC-0003"],
                  "cancer_type": ["LUAD", "BRCA", "LUAD"]}).to_csv(tmp_path / "patients.csv", index=False)
    return folder, written


def test_reader_keeps_slides_patients_and_coordinates(trident_folder, tmp_path):
    from fusionkit_plugins.readers.patch_features import PatchFeaturesReader

    folder, written = trident_folder
    ds = PatchFeaturesReader(paths=str(folder), labels_file=str(tmp_path / "patients.csv")).read(None)
    md = ds.modalities["image"]
    assert md.kind == "embedding" and md.data.shape == (27, DIM) and md.data.dtype == np.float32
    assert (md.patient_ids == "TCGA-AA-0001").sum() == 12  # two slides of one patient
    assert set(md.labels["slide_id"][md.patient_ids == "TCGA-AA-0001"]) == {"TCGA-AA-0001-01Z-00-DX1",
                                                                            "TCGA-AA-0001-01Z-00-DX2"}
    X, C = written["TCGA-BB-0002-01Z-00-DX1"]
    rows = md.labels["slide_id"] == "TCGA-BB-0002-01Z-00-DX1"
    np.testing.assert_array_equal(md.data[rows], X)
    assert md.labels["x"][rows].astype(int).tolist() == C[:, 0].tolist()
    assert md.labels["y"][rows].astype(int).tolist() == C[:, 1].tolist()
    assert md.item_ids[rows][1] == f"TCGA-BB-0002-01Z-00-DX1_x{C[1, 0]}_y{C[1, 1]}"
    assert md.extras["encoder"] == "uni_v1"  # TRIDENT keeps the encoder in the folder name
    assert md.extras["slide_attrs"]["TCGA-BB-0002-01Z-00-DX1"]["target_magnification"] == 20
    assert ds.labels["cancer_type"] == {"TCGA-AA-0001": "LUAD", "TCGA-BB-0002": "BRCA", "TCGA-CC-0003": "LUAD"}
    assert any("4 slides, 3 patients, 27 items (20x, patch 256)" in n for n in ds.notes)
    capped = PatchFeaturesReader(paths=str(folder), max_patches_per_slide=3, seed=1).read(None).modalities["image"]
    assert len(capped) == 12
    again = PatchFeaturesReader(paths=str(folder), max_patches_per_slide=3, seed=1).read(None).modalities["image"]
    assert list(again.item_ids) == list(capped.item_ids)
    pooled = PatchFeaturesReader(paths=str(folder), pool="mean").read(None).modalities["image"]
    assert len(pooled) == 4 and list(pooled.item_ids) == sorted(written)
    np.testing.assert_allclose(pooled.data[0], written["TCGA-AA-0001-01Z-00-DX1"][0].mean(axis=0), rtol=1e-6)


def test_recipe_runs_and_store_carries_coordinates(plugin_system, trident_folder, tmp_path):
    folder, written = trident_folder
    recipe = tmp_path / "recipe.yaml"
    recipe.write_text(f"""schema: 1
name: trident
seed: 3
width: {DIM}
data:
  reader: {{name: patch-features, params: {{paths: {folder}, labels_file: patients.csv}}}}
modalities:
  image: {{encoder: identity}}
sampling:
  patches: {{name: modality-level, params: {{k: "2..3", n: 20}}}}
aggregator: sum
""")
    rec = load_recipe(recipe, plugin_system)
    out = tmp_path / "run"
    engine.run(rec, plugin_system, out_dir=out, progress=False)
    store = EmbeddingStore(json.loads((out / "run.json").read_text())["stores"]["image"])
    assert store.n == 27 and store.dim == DIM
    assert {"slide_id", "x", "y", "cancer_type"} <= set(store.items)
    X, C = written["TCGA-CC-0003-01Z-00-DX1"]
    rows = store.label("slide_id") == "TCGA-CC-0003-01Z-00-DX1"
    np.testing.assert_array_equal(np.asarray(store.embeddings[rows]), X)
    assert np.stack([store.label("x")[rows], store.label("y")[rows]], 1).astype(int).tolist() == C.tolist()
    assert np.load(out / "aggregates" / "patches" / "X.npy").shape == (40, DIM)  # n per sample count k


def test_layout_errors_name_the_file(tmp_path):
    from fusionkit_plugins.readers.patch_features import PatchFeaturesReader

    folder = tmp_path / "feats"
    folder.mkdir()
    bad = folder / "TCGA-AA-0001-01Z-00-DX1.h5"
    write_trident(bad, np.ones((4, DIM), np.float32), grid_coords(4), with_coords=False)
    with pytest.raises(DataError) as err:
        PatchFeaturesReader(paths=str(folder)).read(None)
    assert "no 'coords' dataset" in err.value.message and err.value.where == str(bad)
    assert "coords" in err.value.hint
    write_trident(bad, np.ones((4, DIM), np.float32), grid_coords(3))
    with pytest.raises(DataError) as err:
        PatchFeaturesReader(paths=str(folder)).read(None)
    assert "4 feature rows but 3 coordinates" in err.value.message and err.value.where == str(bad)
    write_trident(bad, np.ones((4, DIM), np.float32), grid_coords(4))
    write_trident(folder / "TCGA-AA-0002-01Z-00-DX1.h5", np.ones((4, DIM + 1), np.float32), grid_coords(4))
    with pytest.raises(DataError, match="different feature widths"):
        PatchFeaturesReader(paths=str(folder)).read(None)
    (folder / "TCGA-AA-0002-01Z-00-DX1.h5").write_bytes(b"not hdf5")
    with pytest.raises(DataError, match="not a readable HDF5 file"):
        PatchFeaturesReader(paths=str(folder)).read(None)
    (folder / "TCGA-AA-0002-01Z-00-DX1.h5").unlink()
    write_trident(folder / "slide_without_barcode.h5", np.ones((4, DIM), np.float32), grid_coords(4))
    with pytest.raises(DataError, match="cannot parse a patient id"):
        PatchFeaturesReader(paths=str(folder)).read(None)


def test_clam_layout_and_slide_vectors(tmp_path):
    """CLAM writes coords attrs patch_level/patch_size; TRIDENT slide encoders write one (D,) vector."""
    from fusionkit_plugins.readers.patch_features import PatchFeaturesReader

    folder = tmp_path / "h5_files"
    folder.mkdir()
    write_trident(folder / "TCGA-AA-0001-01Z-00-DX1.h5", np.full((3, DIM), 2.0, np.float32), grid_coords(3),
                  coords_attrs={"patch_level": 0, "patch_size": 256})
    with h5py.File(folder / "TCGA-AA-0002-01Z-00-DX1.h5", "w") as f:
        f.create_dataset("features", data=np.arange(DIM, dtype=np.float32))
        f.create_dataset("coords", data=grid_coords(5))
    md = PatchFeaturesReader(paths=str(folder / "*.h5"), encoder_name="resnet50_trunc").read(None).modalities["image"]
    assert len(md) == 4 and md.extras["encoder"] == "resnet50_trunc"
    assert md.item_ids[-1] == "TCGA-AA-0002-01Z-00-DX1"
    np.testing.assert_array_equal(md.data[-1], np.arange(DIM, dtype=np.float32))
    assert md.extras["slide_attrs"]["TCGA-AA-0001-01Z-00-DX1"] == {"patch_level": 0, "patch_size": 256}
