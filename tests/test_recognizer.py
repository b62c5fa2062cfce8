"""Recognizer experiments on a small in-memory cohort run through the real engine."""

from __future__ import annotations

import csv
import json
from pathlib import Path

import numpy as np
import pytest
import yaml

pytest.importorskip("torch")
pytest.importorskip("sklearn")

MODS = ("rna", "mutation", "image", "text")
DIM = 24
CANCERS = ("BRCA", "LUAD", "THCA")


def _write_pool(root: Path, seed: int = 0, n_patients: int = 90, centred: tuple[str, ...] = (),
                cancer_shift: float = 2.0) -> dict:
    """Four modalities whose embeddings have distinct mean offsets (``centred`` ones: zero mean)."""
    rng = np.random.default_rng(seed)
    inputs = {}
    pids = [f"TCGA-AA-{i:04d}" for i in range(n_patients)]
    cancer = {p: CANCERS[i % len(CANCERS)] for i, p in enumerate(pids)}
    # orthonormal mean offsets: one per modality, one per cancer (the cancer signal of every item)
    directions = np.linalg.qr(rng.normal(size=(DIM, len(MODS) + len(CANCERS))))[0].T
    shift = np.stack([cancer_shift * directions[len(MODS) + CANCERS.index(cancer[p])] for p in pids])
    for j, m in enumerate(MODS):
        per = 3 if m in ("image", "text") else 1  # several tiles / sentences per patient
        ids = [p for p in pids for _ in range(per)]
        offset = 0.0 if m in centred else 6.0
        rows = np.repeat(np.arange(n_patients), per)
        X = rng.normal(size=(len(ids), DIM)) + offset * directions[j]
        if m not in centred:
            X = X + shift[rows]
        X = X.astype(np.float32)
        np.save(root / f"{m}.npy", X)
        with open(root / f"{m}_ids.csv", "w", newline="") as fh:
            w = csv.writer(fh)
            w.writerow(["patient_id", "cancer_type"])
            w.writerows([[p, cancer[p]] for p in ids])
        inputs[m] = {"path": f"{m}.npy", "ids": f"{m}_ids.csv"}
    return inputs


def _recipe(root: Path, tasks: dict, *, sampler: str = "modality-level", k=(3, 6), n: int = 600,
            perturbations: dict | None = None, centred: tuple[str, ...] = (), workers: int = 1,
            cancer_shift: float = 2.0) -> Path:
    inputs = _write_pool(root, centred=centred, cancer_shift=cancer_shift)
    raw = {
        "schema": 1, "name": "rec-test", "seed": 3, "width": DIM,
        "data": {"reader": {"name": "precomputed", "params": {"inputs": inputs}}},
        "modalities": {m: {"encoder": "identity"} for m in MODS},
        "sampling": {"rec": {"name": sampler, "params": {"k": list(k), "n": n}}},
        "perturbations": perturbations or {},
        "tasks": tasks,
        "output": {"dir": str(root / "out"), "save_aggregates": False},
        "executor": {"name": "local", "params": {"workers": workers}},
    }
    path = root / "recipe.yaml"
    path.write_text(yaml.safe_dump(raw))
    return path


def _run(path: Path, system, **kw):
    from fusionkit.engine import run
    from fusionkit.recipe import load_recipe

    recipe = load_recipe(path, system)
    return run(recipe, system, out_dir=path.parent / "out", cache_dir=path.parent / "cache", progress=False, **kw)


def _metrics(root: Path) -> dict:
    return json.loads((root / "out" / "metrics.json").read_text())


def _read_csv(path: Path) -> list[dict]:
    with open(path) as fh:
        return list(csv.DictReader(fh))


FAST = {"hidden": [64, 32], "head_hidden": 16, "max_epochs": 25, "patience": 4, "batch_size": 64}


def test_recognizer_end_to_end(tmp_path, plugin_system):
    tasks = {"rec": {"name": "recognizer", "params": {
        "sampling": "rec", "n_repeats": 2, "modes": ["isolation", "composite"], "baseline": True,
        "perturbations": ["noise10", "noise50"], **FAST}}}
    perts = {"noise10": {"name": "gaussian-replace", "params": {"fraction": 0.1}},
             "noise50": {"name": "gaussian-replace", "params": {"fraction": 0.5}}}
    path = _recipe(tmp_path, tasks, perturbations=perts)
    _run(path, plugin_system)
    res = _metrics(tmp_path)["rec"]
    out = tmp_path / "out"
    # outputs
    for rel in res["tables"].values():
        assert (out / rel).is_file()
    assert res["figures"] and all((out / f).is_file() and (out / f).suffix == ".png" for f in res["figures"])
    assert {"rec/mcc_by_k.png", "rec/isolation_vs_composite.png", "rec/robustness.png"} <= set(res["figures"])
    rows = _read_csv(out / res["tables"]["per_repeat"])
    assert set(rows[0]) >= {"repeat", "model", "mode", "k", "noise", "modality", "stratum", "metric", "value"}
    assert {r["model"] for r in rows} == {"deep", "baseline"}
    assert {r["mode"] for r in rows} == {"isolation", "composite"}
    assert {r["stratum"] for r in rows} >= {"all", "absent", "present"}
    summary = _read_csv(out / res["tables"]["summary"])
    assert {"mean", "ci_low", "ci_high", "n"} <= set(summary[0])
    # separable modalities are recognised well (clean data), by both models
    s = res["summary"]
    for model in ("deep", "baseline"):
        for m in MODS:
            for k in ("3", "6"):
                assert s["mcc"][model]["isolation"][m][k] > 0.6, (model, m, k, s["mcc"])
    for m in MODS:
        assert s["mcc"]["deep"]["composite"][m]["3"] > 0.6
    # robustness: more noise, lower MCC (on average over modalities)
    rob = s["robustness_mcc"]["deep"]["isolation"]
    mean10 = np.mean([rob[m]["0.1"]["6"] for m in MODS])
    mean50 = np.mean([rob[m]["0.5"]["6"] for m in MODS])
    assert mean50 < mean10
    # embedding statistics reported next to the results (SPEC 2.5)
    assert set(s["embedding_stats"]) == set(MODS) and s["embedding_stats"]["rna"]["mean_norm"] > 0
    # paper comparison rows have the agreed shape
    keys = {"experiment", "metric", "modality", "k", "ours_mean", "ours_ci_low", "ours_ci_high", "paper", "note"}
    assert res["paper_comparison"] and all(set(r) == keys for r in res["paper_comparison"])
    assert any(r["experiment"].startswith("robustness") and r["modality"] == "mutation"
               for r in res["paper_comparison"])
    assert s["units"]["reused"] == 0 and s["units"]["total"] == 2 * 2 * (2 + 1)

    # a second run reuses every unit (resume), and gives identical numbers
    before = (out / res["tables"]["per_repeat"]).read_text()
    _run(path, plugin_system)
    res2 = _metrics(tmp_path)["rec"]
    assert res2["summary"]["units"]["reused"] == res2["summary"]["units"]["total"] == 12
    assert (out / res2["tables"]["per_repeat"]).read_text() == before


def test_baseline_task_and_centred_modality(tmp_path, plugin_system):
    """recognizer-baseline runs alone; a zero-mean modality is much harder to recognise (SPEC 2.5)."""
    tasks = {"bl": {"name": "recognizer-baseline", "params": {"sampling": "rec", "n_repeats": 1, "k": [6]}}}
    path = _recipe(tmp_path, tasks, centred=("rna",), n=500, cancer_shift=0.0)
    _run(path, plugin_system)
    res = _metrics(tmp_path)["bl"]
    mcc = res["summary"]["mcc"]["baseline"]["isolation"]
    others = [mcc[m]["6"] for m in MODS if m != "rna"]
    assert min(others) > 0.7, mcc
    # the centred modality is the hardest; it is not at chance only because, at a fixed k, its count
    # is k minus the (visible) counts of the others
    assert mcc["rna"]["6"] < min(others) - 0.1 and mcc["rna"]["6"] < 0.7, mcc
    stats = res["summary"]["embedding_stats"]
    assert stats["rna"]["norm_of_mean"] < 0.5 * stats["mutation"]["norm_of_mean"]


def test_cancer_specific_with_counts_and_cancer_head(tmp_path, plugin_system):
    tasks = {"rec": {"name": "recognizer", "params": {
        "n_repeats": 1, "k": [4], "predict_counts": True, "predict_cancer": True, "loss": "mae",
        "head_weights": {"text": 2.0}, **FAST}}}
    path = _recipe(tmp_path, tasks, sampler="cancer-specific", n=300)
    _run(path, plugin_system)
    res = _metrics(tmp_path)["rec"]
    rows = _read_csv(tmp_path / "out" / res["tables"]["per_repeat"])
    metrics = {(r["modality"], r["metric"]) for r in rows}
    assert ("cancer_type", "accuracy") in metrics and ("cancer_type", "mcc") in metrics
    assert res["summary"]["cancer_type"]["deep"]["isolation"]["accuracy"]["4"] > 0.6  # chance: 1/3
    assert ("rna", "count_mae") in metrics and ("rna", "count_accuracy") in metrics
    count_acc = [float(r["value"]) for r in rows if r["metric"] == "count_accuracy" and r["stratum"] == "all"]
    assert np.mean(count_acc) > 0.5  # counts are learnable with distinct offsets


def test_noisy_test_labels_and_disjoint_splits(tmp_path, plugin_system):
    """Noise replaces draws in the test plan only and the labels leave the replaced draws out;
    no aggregate of the plan is in two parts."""
    from fusionkit.engine import RunContext, build_pool
    from fusionkit.recipe import load_recipe
    from fusionkit_plugins.tasks.recognizer.data import RepeatData

    perts = {"noise50": {"name": "gaussian-replace", "params": {"fraction": 0.5}}}
    path = _recipe(tmp_path, {}, perturbations=perts, k=(4,), n=200)
    recipe = load_recipe(path, plugin_system)
    ctx = RunContext(recipe, plugin_system, tmp_path / "out", tmp_path / "cache", progress=False)
    ctx.pool, _ = build_pool(recipe, ctx)
    data = RepeatData(ctx, "rec", [4], None, repeat=0)
    idx = data.index[4]
    parts = [set(idx[p].tolist()) for p in ("train", "val", "test")]
    assert not (parts[0] & parts[2]) and not (parts[1] & parts[2]) and not (parts[0] & parts[1])
    assert sum(map(len, parts)) == 200 and len(parts[2]) == 40 and len(parts[1]) == 32
    assert not data.plans[4]["train"].noise.any() and not data.plans[4]["test"].noise.any()
    plan, agg = data.noisy_test(4, "noise50")
    assert plan.noise.sum(axis=(1, 2)).tolist() == [2] * plan.n  # 50% of k=4 draws
    assert (agg.counts.sum(axis=1) == 2).all()  # the labels count only the real draws
    clean = data.clean(4, "test")
    assert (agg.counts <= clean.counts).all()
    # same data for another repeat differs, the same repeat is reproducible
    again = RepeatData(ctx, "rec", [4], None, repeat=0)
    assert np.array_equal(again.plans[4]["test"].item, data.plans[4]["test"].item)
    other = RepeatData(ctx, "rec", [4], None, repeat=1)
    assert not np.array_equal(other.plans[4]["test"].item, data.plans[4]["test"].item)


def test_split_indices_disjoint():
    from fusionkit_plugins.tasks.recognizer.data import split_indices

    tr, va, te = split_indices(1000, np.random.default_rng(0))
    assert len(te) == 200 and len(va) == 160 and len(tr) == 640
    assert len(np.unique(np.concatenate([tr, va, te]))) == 1000


def test_check_recipe_reports_bad_references(tmp_path, plugin_system):
    from fusionkit.errors import RecipeError
    from fusionkit.recipe import load_recipe

    tasks = {"rec": {"name": "recognizer", "params": {"sampling": "nope", "perturbations": ["missing"],
                                                        "modes": ["isolation", "sideways"], "loss": "hinge",
                                                        "shortcut": "diagonal"}}}
    path = _recipe(tmp_path, tasks)
    with pytest.raises(RecipeError) as info:
        load_recipe(path, plugin_system)
    text = str(info.value) + " ".join(str(i) for i in info.value.issues)
    for part in ("nope", "missing", "sideways", "hinge", "diagonal"):
        assert part in text
    # a patient-level entry cannot feed the recognizer
    raw = yaml.safe_load(path.read_text())
    raw["sampling"] = {"pl": {"name": "patient-level", "params": {"k": 3}}}
    raw["tasks"] = {"rec": {"name": "recognizer", "params": {"sampling": "pl"}}}
    path.write_text(yaml.safe_dump(raw))
    with pytest.raises(RecipeError) as info:
        load_recipe(path, plugin_system)
    assert "modality-level or cancer-specific" in str(info.value) + " ".join(str(i) for i in info.value.issues)
    # predict_cancer needs cancer-specific sampling
    raw["sampling"] = {"rec": {"name": "modality-level", "params": {"k": 3}}}
    raw["tasks"] = {"rec": {"name": "recognizer", "params": {"predict_cancer": True}}}
    path.write_text(yaml.safe_dump(raw))
    with pytest.raises(RecipeError):
        load_recipe(path, plugin_system)


def test_plugin_module_is_light():
    import subprocess
    import sys

    code = ("import sys, fusionkit.metrics, fusionkit_plugins.tasks.recognizer.task; "
            "print(any(m in sys.modules for m in ('torch', 'sklearn', 'matplotlib')))")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "False"
