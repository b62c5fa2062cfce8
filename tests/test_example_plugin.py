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
