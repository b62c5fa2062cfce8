"""Real data through the whole engine: raw TCGA files -> readers -> encoders ->
stores with provenance, reused from the cache on a second run."""

from __future__ import annotations

import json

import numpy as np
import pytest

from fusionkit import engine, plugins
from fusionkit.recipe import load_recipe
from fusionkit.store import EmbeddingStore

pytestmark = [pytest.mark.realdata, pytest.mark.usefixtures("torch_one_thread")]

RECIPE = """schema: 1
name: realdata_pipeline
seed: 3
width: 768
vars: {{root: "{root}"}}
data:
  reader:
    name: tcga-folder
    params: {{root: "${{root}}", cancers: [THCA, BRCA, STAD], clinical: true, max_sentences_per_patient: 2,
              max_tiles_per_patient: 2}}
modalities:
  rna: {{encoder: {{name: rna-vae, params: {{epochs: 2, finetune_epochs: 1, hidden_dims: [128]}}}}}}
  mutation: {{encoder: {{name: mutation-vae, params: {{epochs: 2, hidden_dims: [128]}}}}}}
  report: {{input: text, encoder: sbert, adapter: random-projection}}
  clinical: {{input: clinical, encoder: sbert, adapter: random-projection}}
  image: {{encoder: {{name: efficientnet-lite0, params: {{input_size: 128}}}}, adapter: random-projection}}
sampling:
  patients: {{name: patient-level, params: {{k: 3, repeats: 2, modalities: [rna, mutation, clinical]}}}}
"""


def test_raw_tcga_files_to_cached_stores(shared_data, tmp_path, caplog):
    path = tmp_path / "r.yaml"
    path.write_text(RECIPE.format(root=shared_data))
    system = plugins.load(env={})
    rec = load_recipe(path, system)
    out = tmp_path / "out"
    engine.run(rec, system, out_dir=out, progress=False)
    stores = {EmbeddingStore(p).modality: EmbeddingStore(p) for p in (out / "cache" / "stores").iterdir()}
    assert set(stores) == {"rna", "mutation", "report", "clinical", "image"}
    rna = stores["rna"]
    cancers = set(rna.label("cancer_type"))
    assert {"THCA", "BRCA", "STAD"} <= cancers  # THCA RNA (its own tables) encoded with the others
    for modality, store in stores.items():
        assert store.dim == 768 and np.isfinite(np.asarray(store.embeddings)).all()
        prov = store.provenance
        assert prov["encoder"]["name"] and prov["encoder"]["version"] and prov["input_fingerprint"]
        assert all(len(p) == 12 and p.startswith("TCGA-") for p in store.patient_ids[:20])
    assert stores["report"].provenance["encoder"]["output_dim"] == 384  # MiniLM, projected to 768
    assert set(stores["report"].label("cancer_type")) == {"BRCA"}  # no report text for THCA/STAD
    assert "structured" in stores["clinical"].provenance["source"].lower()
    summary = json.loads((out / "data_summary.json").read_text())
    assert summary["modalities"]["clinical"]["patients_by_cancer_type"]["THCA"] > 300
    X = np.load(out / "aggregates" / "patients" / "X.npy")
    assert X.shape[1] == 2 * 768
    # second run: every store comes from the cache, nothing is encoded again
    caplog.set_level("INFO", logger="fusionkit")
    record = engine.run(rec, system, out_dir=out, progress=False)
    reused = [r for r in caplog.records if "reusing cached embeddings" in r.getMessage()]
    assert len(reused) == 5
    assert all(record["timings_s"][f"encode:{m}"] == 0.0 for m in stores)
