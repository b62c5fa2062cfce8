"""The embedded demo cohort ``synthetic-tcga``: deterministic, fast, and carrying the planted structure."""

from __future__ import annotations

import time

import numpy as np
import pytest

from fusionkit.errors import DataError
from fusionkit_plugins.readers.synthetic import CANCERS, SyntheticTcgaReader


@pytest.fixture(scope="module")
def demo():
    t0 = time.perf_counter()
    ds = SyntheticTcgaReader(seed=7).read(None)
    return ds, time.perf_counter() - t0


def test_registered(plugin_system):
    reader = plugin_system.create("reader", "synthetic-tcga", {"n_patients": 60, "seed": 1})
    ds = reader.read(None)
    assert set(ds.modalities) == {"rna", "mutation", "text", "image"}


def test_shapes_kinds_and_speed(demo):
    ds, seconds = demo
    assert seconds < 20  # < 10 s on an idle machine; margin for shared CI cores
    rna, mut, text, img = (ds.modalities[m] for m in ("rna", "mutation", "text", "image"))
    assert rna.kind == "matrix" and rna.data.dtype == np.float32 and rna.data.shape[1] == 1000
    assert mut.kind == "matrix" and set(np.unique(mut.data)) <= {0.0, 1.0}
    assert text.kind == "text" and all(isinstance(s, str) and s for s in text.data)
    assert img.kind == "image" and img.data[0].dtype == np.uint8 and img.data[0].shape == (64, 64, 3)
    for md in ds.modalities.values():
        assert len(md.patient_ids) == len(md) == len(md.labels["cancer_type"])
        assert all(len(p) == 12 and p.startswith("TCGA-") for p in md.patient_ids[:20])
    per_patient = np.unique(text.patient_ids, return_counts=True)[1]
    assert per_patient.min() >= 4 and per_patient.max() <= 10
    tiles = np.unique(img.patient_ids, return_counts=True)[1]
    assert tiles.min() >= 2 and tiles.max() <= 4
    assert set(ds.labels) == {"cancer_type", "subtype", "tmb", "tmb_class",  # + planted survival (issue 12)
                              "OS", "OS_time", "age_at_diagnosis", "stage"}
    assert set(ds.labels["cancer_type"].values()) == set(CANCERS)
    assert all(v.split(".")[0] == ds.labels["cancer_type"][p] for p, v in ds.labels["subtype"].items())
    assert set(ds.labels["tmb_class"].values()) == {"high", "low", "none"}


def test_deterministic_and_seed_dependent(demo):
    ds, _ = demo
    again = SyntheticTcgaReader(seed=7).read(None)
    other = SyntheticTcgaReader(seed=8).read(None)
    assert np.array_equal(ds.modalities["rna"].data, again.modalities["rna"].data)
    assert ds.modalities["text"].data == again.modalities["text"].data
    assert np.array_equal(ds.modalities["image"].data[5], again.modalities["image"].data[5])
    assert ds.modalities["rna"].fingerprint == again.modalities["rna"].fingerprint
    assert not np.array_equal(ds.modalities["rna"].data[:10], other.modalities["rna"].data[:10])
    assert ds.modalities["rna"].fingerprint != other.modalities["rna"].fingerprint


def test_missingness_does_not_depend_on_cancer():
    ds = SyntheticTcgaReader(n_patients=2400, missing_rates={"text": 0.3}, seed=3, min_tiles=1, max_tiles=1,
                             tile_size=32, min_sentences=1, max_sentences=2, n_genes=100,
                             n_mutation_genes=60).read(None)
    ct = ds.labels["cancer_type"]
    patients = np.array(list(ct))
    text_p = set(ds.modalities["text"].patient_ids)
    rates = {c: np.mean([p not in text_p for p in patients if ct[p] == c]) for c in CANCERS}
    assert all(0.2 < r < 0.4 for r in rates.values()), rates
    rna_p = set(ds.modalities["rna"].patient_ids)
    assert 0.05 < 1 - len(rna_p) / len(patients) < 0.15
    with pytest.raises(DataError, match="unknown modality"):
        SyntheticTcgaReader(missing_rates={"dna": 0.1}).read(None)


def test_planted_structure(demo):
    ds, _ = demo
    rna = ds.modalities["rna"]
    ct = rna.labels["cancer_type"]
    # marker genes are up in their own cancer
    for cancer, gene in (("BRCA", "ESR1"), ("THCA", "TG"), ("LUAD", "NKX2-1"), ("COAD", "CDX2")):
        j = rna.feature_names.index(gene)
        assert rna.data[ct == cancer, j].mean() > rna.data[ct != cancer, j].mean() + 2.0
    # cancer is recoverable from RNA by nearest centroid well above chance
    cents = np.stack([rna.data[ct == c].mean(axis=0) for c in CANCERS])
    pred = np.array(CANCERS)[np.argmin(((rna.data[:, None, :] - cents[None]) ** 2).sum(-1), axis=1)]
    assert (pred == ct).mean() > 0.9
    # mutation frequencies follow the cancers
    mut = ds.modalities["mutation"]
    mct = mut.labels["cancer_type"]
    freq = lambda g, c: mut.data[mct == c, mut.feature_names.index(g)].mean()  # noqa: E731
    assert freq("APC", "COAD") > 0.5 and freq("APC", "BRCA") < 0.1
    assert freq("BRAF", "THCA") > 0.4 and freq("TP53", "THCA") < 0.1
    assert freq("KRAS", "LUAD") > 0.15 and freq("GATA3", "BRCA") > 0.05
    tmb = ds.labels["tmb"]
    by = {c: np.median([v for p, v in tmb.items() if ds.labels["cancer_type"][p] == c]) for c in CANCERS}
    assert by["THCA"] < by["LUAD"]
    # text: cancer-specific vocabulary present, generic boilerplate shared
    text = ds.modalities["text"]
    tct = text.labels["cancer_type"]
    thyroid = np.array(["thyroid" in s.lower() for s in text.data])
    assert thyroid[tct == "THCA"].mean() > 0.1 and thyroid[tct != "THCA"].mean() == 0
    generic = "The surgical margins are free of tumor."
    assert {c for s, c in zip(text.data, tct) if s == generic} == set(CANCERS)
    # tiles: H&E-like (pink-purple, red and blue above green) and differ mildly by cancer
    img = ds.modalities["image"]
    arr = np.stack(img.data).astype(np.float32)
    mean_rgb = arr.mean(axis=(0, 1, 2))
    assert mean_rgb[0] > mean_rgb[1] and mean_rgb[2] > mean_rgb[1]
    ict = img.labels["cancer_type"]
    dark = (arr.mean(axis=-1) < 140).mean(axis=(1, 2))  # nuclei fraction per tile
    nuc = {c: dark[ict == c].mean() for c in CANCERS}
    assert nuc["COAD"] > nuc["THCA"]


def test_bad_params():
    with pytest.raises(DataError):
        SyntheticTcgaReader(cancers=["XXXX"]).read(None)
    with pytest.raises(DataError):
        SyntheticTcgaReader(min_tiles=5, max_tiles=2).read(None)
    small = SyntheticTcgaReader(n_patients=30, cancers=["BRCA", "THCA"], seed=2).read(None)
    assert set(small.labels["cancer_type"].values()) == {"BRCA", "THCA"}
