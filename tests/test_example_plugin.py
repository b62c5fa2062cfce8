"""Installing the example plugin package with pip makes its encoder appear and
work in a recipe, with no change to fusionkit."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from helpers import imported_recipe

EXAMPLE = Path(__file__).resolve().parents[1] / "examples" / "fusionkit-example-encoder"


@pytest.fixture(scope="module")
def installed_example(tmp_path_factory):
    target = tmp_path_factory.mktemp("site")
    cmd = [sys.executable, "-m", "pip", "install", "--quiet", "--no-deps", "--no-build-isolation",
           "--no-index", "--target", str(target), str(EXAMPLE)]
    out = subprocess.run(cmd, capture_output=True, text=True, timeout=300)
    if out.returncode != 0:
        pytest.fail(f"pip install of the example plugin failed:\n{out.stderr[-2000:]}")
    return target


def fusionkit(args, site, cwd):
    env = dict(os.environ, PYTHONPATH=str(site), HF_HUB_OFFLINE="1")
    return subprocess.run([sys.executable, "-m", "fusionkit", *args], capture_output=True, text=True,
                          env=env, cwd=cwd, timeout=300)


def test_pip_installed_plugin_is_discovered_listed_and_usable(installed_example, tmp_path):
    res = fusionkit(["list", "encoders", "--json"], installed_example, tmp_path)
    assert res.returncode == 0, res.stderr
    enc = {d["name"]: d for d in json.loads(res.stdout)}
    assert enc["hashing-text"]["provider"] == "fusionkit-example-encoder"
    assert enc["hashing-text"]["modality"] == "text" and enc["hashing-text"]["dim"] == 768
    res = fusionkit(["plugins", "--json"], installed_example, tmp_path)
    rec = {d["name"]: d for d in json.loads(res.stdout)}["example_encoder"]
    assert rec["status"] == "ok" and rec["version"] == "0.1.0"
    # used in a recipe: text sentences encoded by the third-party encoder
    recipe = imported_recipe(tmp_path, {"rna": (30, 0.0)}, dim=768)
    import pandas as pd

    pids = [f"TCGA-AA-{i % 30:04d}" for i in range(90)]
    pd.DataFrame({"patient_id": pids, "text": [f"sentence number {i} about tumour" for i in range(90)]}).to_csv(
        tmp_path / "sentences.csv", index=False)
    (tmp_path / "plugin_recipe.yaml").write_text(recipe.read_text().replace(
        "  rna: {encoder: identity}",
        "  rna: {encoder: identity}\n  text:\n    reader: {name: precomputed-text, params: {path: sentences.csv}}\n"
        "    encoder: hashing-text"))
    (tmp_path / "plugs").mkdir()
    (tmp_path / "plugs" / "textreader.py").write_text(
        "import pandas as pd\n"
        "from fusionkit import hookimpl\n"
        "from fusionkit.components import Reader, RawDataset, ModalityData\n"
        "class SentencesCsv(Reader):\n"
        "    '''Sentences from a CSV (test helper).'''\n"
        "    def __init__(self, path: str = ''):\n"
        "        self.path = path\n"
        "    def read(self, ctx):\n"
        "        t = pd.read_csv(self.path)\n"
        "        return RawDataset(modalities={'text': ModalityData('text', 'text', t.patient_id, t.index.astype(str),"
        " list(t.text))})\n"
        "@hookimpl\n"
        "def register_readers(register):\n"
        "    register('precomputed-text', SentencesCsv)\n")
    res = fusionkit(["run", "plugin_recipe.yaml", "--plugins-dir", "plugs", "--out", "out"], installed_example,
                    tmp_path)
    assert res.returncode == 0, res.stderr[-3000:]
    stores = list((tmp_path / "out" / "cache" / "stores").glob("text-hashing-text-*"))
    assert len(stores) == 1
    meta = json.loads((stores[0] / "meta.json").read_text())
    assert meta["provenance"]["encoder"]["provider"] == "fusionkit-example-encoder"
    assert meta["n"] == 90 and meta["dim"] == 768


def test_example_plugin_imports_only_the_public_api():
    import ast

    import fusionkit

    for path in sorted((EXAMPLE / "fusionkit_example_encoder").glob("*.py")):
        for node in ast.walk(ast.parse(path.read_text())):
            if isinstance(node, ast.ImportFrom) and (node.module or "").split(".")[0] == "fusionkit":
                assert node.module == "fusionkit", f"{path.name} imports {node.module}"
                assert {a.name for a in node.names} <= set(fusionkit.__all__), path.name
            elif isinstance(node, ast.Import):
                assert all(a.name.split(".")[0] != "fusionkit" for a in node.names), path.name


def _write_inputs(folder, n_patients=40, n_genes=30):
    import numpy as np
    import pandas as pd

    rng = np.random.default_rng(3)
    cancers = np.array(["BRCA", "LUAD"])[np.arange(n_patients) % 2]
    pids = [f"TCGA-EX-{i:04d}-01A" for i in range(n_patients)]  # sample barcodes: cut to the patient part
    genes = pd.DataFrame(rng.normal(size=(n_patients, n_genes)) * 3 + 10,
                         columns=[f"G{j}" for j in range(n_genes)])
    genes.insert(0, "cancer_type", cancers)
    genes.insert(0, "patient_id", pids)
    genes.to_csv(folder / "rna.tsv", sep="\t", index=False)
    rows = [(p, c, f"finding {j} of a {c.lower()} tumour in this specimen") for p, c in zip(pids, cancers)
            for j in range(2)]
    pd.DataFrame(rows, columns=["patient_id", "cancer_type", "text"]).to_csv(folder / "sentences.csv", index=False)


RECIPE = """schema: 1
name: example
seed: 5
width: 16
modalities:
  rna:
    reader: {name: item-table, params: {path: rna.tsv, modality: rna}}
    encoder: {name: zscore-projection, params: {dim: 16}}
  text:
    reader: {name: item-table, params: {path: sentences.csv, modality: text, text_column: text}}
    encoder: {name: hashing-text, params: {dim: 16}}
sampling:
  patients: {name: patient-level, params: {k: 2, repeats: 2}}
output: {dir: out}
"""


def test_example_reader_and_fitted_encoder_run_together_in_a_recipe(installed_example, tmp_path):
    import numpy as np

    res = fusionkit(["plugins", "--json"], installed_example, tmp_path)
    records = {d["name"]: d for d in json.loads(res.stdout)}
    for name in ("example_encoder", "example_reader", "example_fitted"):
        assert records[name]["status"] == "ok" and records[name]["dist"] == "fusionkit-example-encoder", records
    readers = {d["name"]: d for d in json.loads(fusionkit(["list", "readers", "--json"], installed_example,
                                                          tmp_path).stdout)}
    encoders = {d["name"]: d for d in json.loads(fusionkit(["list", "encoders", "--json"], installed_example,
                                                           tmp_path).stdout)}
    assert readers["item-table"]["provider"] == "fusionkit-example-encoder"
    assert encoders["zscore-projection"]["provider"] == "fusionkit-example-encoder"
    assert encoders["zscore-projection"]["parameters"] == {"dim": 768, "clip": 5.0}
    check = ("from fusionkit import check_component, plugins\n"
             "s = plugins.load(strict=True)\n"
             "for kind, name in [('reader', 'item-table'), ('encoder', 'zscore-projection'),"
             " ('encoder', 'hashing-text')]:\n"
             "    check_component(s.info(kind, name))\n")
    env = dict(os.environ, PYTHONPATH=str(installed_example), HF_HUB_OFFLINE="1")
    res = subprocess.run([sys.executable, "-c", check], capture_output=True, text=True, env=env, timeout=300)
    assert res.returncode == 0, res.stderr[-3000:]

    _write_inputs(tmp_path)
    (tmp_path / "recipe.yaml").write_text(RECIPE)
    res = fusionkit(["run", "recipe.yaml"], installed_example, tmp_path)
    assert res.returncode == 0, res.stderr[-3000:]
    cache = tmp_path / "out" / "cache"
    metas = {p.name.rsplit("-", 1)[0]: json.loads((p / "meta.json").read_text())
             for p in (cache / "stores").iterdir() if (p / "meta.json").exists()}
    assert set(metas) == {"rna-zscore-projection", "text-hashing-text"}
    assert metas["rna-zscore-projection"]["n"] == 40 and metas["text-hashing-text"]["n"] == 80
    for meta in metas.values():
        assert meta["provenance"]["encoder"]["provider"] == "fusionkit-example-encoder"
    state = list(cache.glob("work/rna-*/model"))
    assert len(state) == 1 and (state[0] / "DONE").exists()
    assert np.load(state[0] / "projection_.npy").shape == (30, 16)
    summary = json.loads((tmp_path / "out" / "data_summary.json").read_text())["modalities"]
    assert summary["rna"]["patients"] == summary["text"]["patients"] == 40  # barcodes cut to 12 characters
    agg = np.load(tmp_path / "out" / "aggregates" / "patients" / "X.npy")
    assert agg.shape == (40, 32) and np.isfinite(agg).all()
    # a second run loads the saved state and reuses the stores: no refit, same vectors
    before = (state[0] / "projection_.npy").stat().st_mtime_ns
    res = fusionkit(["run", "recipe.yaml"], installed_example, tmp_path)
    assert res.returncode == 0, res.stderr[-3000:]
    timings = json.loads((tmp_path / "out" / "run.json").read_text())["timings_s"]
    assert timings["encode:rna"] == 0.0 and timings["encode:text"] == 0.0
    assert (state[0] / "projection_.npy").stat().st_mtime_ns == before
    # without the store and shards, the encoder is rebuilt from its saved state (load, not fit)
    import shutil

    store = next((cache / "stores").glob("rna-zscore-projection-*"))
    first = np.array(np.load(next(store.glob("embeddings.*.npy"))))
    shutil.rmtree(store)
    for shard in state[0].parent.glob("shard-*.npy"):
        shard.unlink()
    res = fusionkit(["run", "recipe.yaml"], installed_example, tmp_path)
    assert res.returncode == 0, res.stderr[-3000:]
    assert (state[0] / "projection_.npy").stat().st_mtime_ns == before
    again = np.load(next(next((cache / "stores").glob("rna-zscore-projection-*")).glob("embeddings.*.npy")))
    np.testing.assert_array_equal(again, first)
