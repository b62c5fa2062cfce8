"""Patient-level tasks: classifier, gmm, similarity, retrieval (synthetic, separable data)."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

CANCERS = ("BRCA", "LUAD", "THCA")


def make_arrays(n_patients: int = 90, dim: int = 16, signal: float = 3.0, seed: int = 0,
                cancers: tuple[str, ...] = CANCERS) -> tuple[dict, dict]:
    """Three modalities; every item carries its patient's cancer signal (separable when signal is large)."""
    rng = np.random.default_rng(seed)
    pids = [f"TCGA-ZZ-{i:04d}" for i in range(n_patients)]
    cancer = {p: cancers[i % len(cancers)] for i, p in enumerate(pids)}
    centres = rng.normal(0, 1, (len(cancers), dim)).astype(np.float32)
    centres *= signal / np.linalg.norm(centres, axis=1, keepdims=True)
    arrays = {}
    for mi, (mod, per) in enumerate((("rna", 1), ("mutation", 1), ("text", 3))):
        item_p = [p for p in pids for _ in range(per)]
        offset = np.zeros(dim, dtype=np.float32)
        offset[mi] = 2.0
        X = rng.normal(0, 1, (len(item_p), dim)).astype(np.float32) + offset
        X += centres[[cancers.index(cancer[p]) for p in item_p]]
        arrays[mod] = (X, item_p)
    return arrays, cancer


def write_inputs(folder: Path, arrays: dict, cancer: dict) -> None:
    folder.mkdir(parents=True, exist_ok=True)
    for mod, (X, pids) in arrays.items():
        np.save(folder / f"{mod}.npy", X)
        lines = ["patient_id,cancer_type"] + [f"{p},{cancer[p]}" for p in pids]
        (folder / f"{mod}_ids.csv").write_text("\n".join(lines) + "\n")


def recipe_text(tasks: str, *, dim: int = 16, index: str = "") -> str:
    inputs = ", ".join(f"{m}: {{path: {m}.npy, ids: {m}_ids.csv}}" for m in ("rna", "mutation", "text"))
    return f"""schema: 1
name: patient_tasks
seed: 3
width: {dim}
data:
  reader: {{name: precomputed, params: {{inputs: {{{inputs}}}}}}}
modalities:
  rna: {{encoder: identity}}
  mutation: {{encoder: identity}}
  text: {{encoder: identity}}
sampling:
  patients: {{name: patient-level, params: {{k: 3, repeats: 2}}}}
aggregator: sum
{index}
output: {{save_aggregates: false}}
tasks:
{tasks}
"""


def run_recipe(tmp_path: Path, tasks: str, *, signal: float = 3.0, index: str = "", n_patients: int = 90):
    from fusionkit import engine, plugins
    from fusionkit.recipe import load_recipe

    arrays, cancer = make_arrays(n_patients=n_patients, signal=signal)
    write_inputs(tmp_path / "in", arrays, cancer)
    path = tmp_path / "in" / "recipe.yaml"
    path.write_text(recipe_text(tasks, index=index))
    system = plugins.load(env={})
    recipe = load_recipe(path, system)
    out = tmp_path / "out"
    engine.run(recipe, system, out_dir=out, progress=False)
    return out, json.loads((out / "metrics.json").read_text())


# ----------------------------------------------------------------------------- unit-level checks

def test_builder_splits_are_patient_disjoint():
    from fusionkit.pool import EmbeddingPool
    from fusionkit_plugins.sampling.aggregators import SumAggregator
    from fusionkit_plugins.sampling.samplers import PatientLevelSampler
    from fusionkit_plugins.tasks.patient.common import AggregateBuilder, check_plan_patients
    from fusionkit_plugins.tasks.patient.common import split_patients as _split

    arrays, cancer = make_arrays(n_patients=60)
    pool = EmbeddingPool.from_arrays(arrays, labels={"cancer_type": cancer})
    builder = AggregateBuilder(pool=pool, sampler=PatientLevelSampler(k=4, repeats=3), aggregator=SumAggregator())
    pids = np.array(sorted(cancer))
    y = np.array([cancer[p] for p in pids])
    tr, te = _split(pids, y, 0.2, seed=1)
    train, test = pids[tr], pids[te]
    assert not set(train) & set(test) and len(train) + len(test) == len(pids)
    for part, seed in ((train, 1), (test, 2)):
        plan, _ = builder.plan(part, 4, 3, seed)
        assert set(plan.patient_ids) == set(part)
        for mi, m in enumerate(plan.modalities):  # every drawn item belongs to a patient of this part
            owners = pool.views[m].patient_ids[plan.item[plan.mod == mi]]
            assert set(owners) <= set(part)
        X, ids = builder.build(part, 4, 3, seed)
        assert X.shape == (len(part), 16 * 3)
    plan, _ = builder.plan(test, 4, 3, 5)
    with pytest.raises(Exception, match="patient leak"):
        check_plan_patients(plan, pool, train)


def test_similarity_helpers_intra_beats_inter():
    from fusionkit_plugins.tasks.patient.similarity import pair_values as _pair_values, sample_pairs, separation

    rng = np.random.default_rng(0)
    y = np.repeat(np.array(["a", "b", "c"]), 30)
    X = rng.normal(0, 1, (90, 8)) + np.repeat(np.eye(3, 8) * 6, 30, axis=0)
    intra, inter = sample_pairs(y, 2000, rng)
    assert (y[intra[:, 0]] == y[intra[:, 1]]).all() and (intra[:, 0] != intra[:, 1]).all()
    assert (y[inter[:, 0]] != y[inter[:, 1]]).all() and len(inter) == 2000
    for measure, closer in (("cosine", True), ("dot", True), ("euclidean", False)):
        s = separation(_pair_values(X, *intra.T, measure), _pair_values(X, *inter.T, measure), closer)
        assert s["auc"] > 0.9 and s["cohens_d"] > 1


# ----------------------------------------------------------------------------- through the engine

def test_classifier_separable_and_disjoint(tmp_path):
    tasks = """  clf:
    name: classifier
    params: {targets: [cancer_type], n_repeats: 2, grid: {k: [2, 4], repeats: [2]},
             max_epochs: 30, patience: 5, hidden: [32, 16], class_weight: true}"""
    out, metrics = run_recipe(tmp_path, tasks, signal=3.0)
    res = metrics["clf"]
    best = res["summary"]["targets"]["cancer_type"]["models"]
    for model in ("dense", "logistic"):
        assert best[model]["accuracy"]["mean"] > 0.8, best[model]  # chance is 1/3
    runs = (out / "clf" / "runs.csv").read_text().splitlines()
    assert len(runs) == 1 + 2 * 2 * 2  # models x grid x repeats
    header = runs[0].split(",")
    row = dict(zip(header, runs[1].split(",")))
    assert int(row["n_train"]) + int(row["n_test"]) == 90 and int(row["n_test"]) == 18
    for f in res["figures"]:
        assert Path(f).exists()
    assert any("mcc_grid" in f for f in res["figures"]) and any("confusion" in f for f in res["figures"])
    avail = (out / "clf" / "availability.csv").read_text()
    assert "rna_fraction" in avail
    assert res["summary"]["targets"]["cancer_type"]["availability_only_accuracy"] <= 0.5  # every patient has all
    rows = res["paper_comparison"]
    assert any(r["metric"] == "F1 THCA" and r["paper"] == ">= 0.8" for r in rows)
    assert (out / "report.html").exists()


def test_gmm_similarity_retrieval_and_query(tmp_path):
    from click.testing import CliRunner

    from fusionkit.cli import cli

    tasks = """  gmm:
    name: gmm
    params: {n_repeats: 2, grid: {k: [2, 4], repeats: [1, 2]}, pca: 4, n_init: 2}
  sim:
    name: similarity
    params: {n_pairs: 2000, n_repeats: 2}
  ret:
    name: retrieval
    params: {n_repeats: 2, top_k: 5}"""
    out, metrics = run_recipe(tmp_path, tasks, signal=6.0, index="index: {name: faiss-hnsw, params: {metric: cosine}}")
    g = metrics["gmm"]["summary"]
    assert g["by_grid"]["k=4,r=2"]["ari"]["mean"] > 0.8
    assert any("pca_k" in f for f in metrics["gmm"]["figures"])
    s = metrics["sim"]["summary"]["measures"]
    assert s["cosine"]["intra_mean"]["mean"] > s["cosine"]["inter_mean"]["mean"]
    assert s["euclidean"]["intra_mean"]["mean"] < s["euclidean"]["inter_mean"]["mean"]
    assert s["cosine"]["auc"]["mean"] > 0.9
    r = metrics["ret"]["summary"]
    assert r["index"]["name"] == "faiss-hnsw"
    assert r["precision_at_k"]["mean"] > 0.9 and r["majority_accuracy"]["mean"] > 0.9
    assert r["recall_at_k"]["mean"] >= 0.9
    folder = out / "ret" / "index"
    assert (folder / "meta.json").exists() and (folder / "lookup.npz").exists()
    with np.load(folder / "lookup.npz") as z:
        ids, role = z["ids"].astype(str), z["role"].astype(str)
    indexed, queries = set(ids[role == "index"]), set(ids[role == "query"])
    assert indexed and queries and not indexed & queries
    q = sorted(queries)[0]
    runner = CliRunner()
    res = runner.invoke(cli, ["query", str(folder), "--patient", q, "-k", "5", "--json"])
    assert res.exit_code == 0, res.output
    answer = json.loads(res.output)
    assert len(answer["neighbours"]) == 5 and answer["query_role"] == "query"
    assert all(n["id"] in indexed for n in answer["neighbours"])
    assert sum(n["cancer_type"] == answer["query_labels"]["cancer_type"] for n in answer["neighbours"]) >= 4
    res = runner.invoke(cli, ["query", str(folder), "--patient", sorted(indexed)[0], "-k", "3"])
    assert res.exit_code == 0 and sorted(indexed)[0] not in res.output.split("\n", 2)[-1]
    html = (out / "report.html").read_text()
    for name in ("gmm", "sim", "ret"):
        assert f"Task: {name}" in html


def test_subtype_target_per_cancer(tmp_path):
    from fusionkit.pool import EmbeddingPool
    from fusionkit_plugins.tasks.patient.classifier import PatientClassifierTask

    arrays, cancer = make_arrays(n_patients=90)
    sub = {p: f"{c}.{'AB'[i % 2]}" for i, (p, c) in enumerate(sorted(cancer.items())) if c != "LUAD"}
    sub.update({p: "LUAD.X" for p in sorted(p for p, c in cancer.items() if c == "LUAD")[:5]})  # too few
    pool = EmbeddingPool.from_arrays(arrays, labels={"cancer_type": cancer, "subtype": sub})
    task = PatientClassifierTask(targets=["subtype"], subtype_min_patients=20, min_class_patients=5)
    targets, notes = task._targets(pool, pool.patients())
    assert sorted(t["name"] for t in targets) == ["subtype:BRCA", "subtype:THCA"]
    assert all(len(t["classes"]) == 2 for t in targets)
    assert any("LUAD" in n for n in notes)
    task = PatientClassifierTask(targets=["subtype"], subtype_min_patients=20, subtype_scope="joint")
    targets, _ = task._targets(pool, pool.patients())
    assert [t["name"] for t in targets] == ["subtype"] and len(targets[0]["classes"]) == 4


def test_recipe_check_names_unknown_sampling(tmp_path):
    from fusionkit import plugins
    from fusionkit.errors import RecipeError
    from fusionkit.recipe import validate

    import yaml

    raw = yaml.safe_load(recipe_text("  clf: {name: classifier, params: {sampling: nope}}"))
    with pytest.raises(RecipeError) as err:
        validate(raw, plugins.load(env={}), path=tmp_path / "r.yaml")
    assert "nope" in str(err.value) or any("nope" in str(i) for i in err.value.issues)


def test_each_patient_task_has_its_own_module_and_the_old_short_name_blocks_them():
    from fusionkit import plugins

    names = ("classifier", "gmm", "similarity", "retrieval")
    system = plugins.load(env={})
    for name in names:
        info = system.info("task", name)
        assert info.factory.__module__ == f"fusionkit_plugins.tasks.patient.{name}"
        assert info.plugin == f"builtin.tasks.patient.{name}"
    blocked = plugins.load(env={"FUSIONKIT_PLUGINS_BLOCK": "builtin.tasks_patient"})
    left = set(blocked.registry.names("task"))
    assert not set(names) & left and {"recognizer", "distill"} <= left
    one = plugins.load(env={"FUSIONKIT_PLUGINS_BLOCK": "builtin.tasks.patient.gmm"})
    assert set(one.registry.names("task")) & set(names) == {"classifier", "similarity", "retrieval"}


def test_combine_repeats_mean_and_concat_and_bad_value():
    import numpy as np
    import pytest as _pytest

    from fusionkit import FusionkitError
    from fusionkit_plugins.tasks.patient.common import combine_repeats

    X = np.arange(12, dtype=float).reshape(2, 6)  # 2 patients, r=3 repeats of width 2
    assert np.array_equal(combine_repeats(X, 3, "concat"), X)
    assert np.allclose(combine_repeats(X, 3, "mean"), [[2.0, 3.0], [8.0, 9.0]])
    with _pytest.raises(FusionkitError, match="repeats_as"):
        combine_repeats(X, 3, "median")


def test_logistic_C_list_is_chosen_on_training_rows_only():
    """A list of C values is scored by inner cross-validation (macro-F1) on the training rows; the
    best one is refitted; the test rows are never read (garbage test rows leave the choice alone)."""
    from fusionkit_plugins.tasks.patient.classifier import _fit_logistic

    rng = np.random.default_rng(0)
    n, d = 120, 200
    y = np.arange(n) % 3
    X = rng.normal(0, 1, (n, d))
    X[:, 0] += 3.0 * y  # one informative feature among 200 noise features
    cfg = {"C": [1e-3, 1e3], "max_iter": 500, "tol": 1e-4, "class_weight": False, "C_folds": 3}
    ptr = np.array([f"p{i:03d}" for i in range(n)])
    pred, info = _fit_logistic(X, y, X[:10], cfg, ptr)
    scores = info["C_scores"]
    assert set(scores) == {"0.001", "1000"} and all(0 <= v <= 1 for v in scores.values())
    assert scores[f"{info['C']:g}"] == max(scores.values()) and scores["0.001"] != scores["1000"]
    _, info2 = _fit_logistic(X, y, rng.normal(0, 100, (10, d)), cfg, ptr)
    assert info2["C"] == info["C"] and info2["C_scores"] == scores
    _, tied = _fit_logistic(X, y, X[:10], {**cfg, "C": [2.0, 2.0 + 1e-12]}, ptr)
    assert tied["C"] == 2.0  # a tie goes to the smaller C (the stronger penalty)
    _, single = _fit_logistic(X, y, X[:10], {**cfg, "C": 0.5})
    assert single["C"] == 0.5 and "C_scores" not in single


def test_retrieval_repeats_as_mean_indexes_one_vector_per_patient(tmp_path):
    tasks = """  ret:
    name: retrieval
    params: {n_repeats: 2, top_k: 5, repeats_as: mean}"""
    out, metrics = run_recipe(tmp_path, tasks, signal=6.0, index="index: {name: faiss-flat, params: {metric: cosine}}")
    r = metrics["ret"]["summary"]
    assert r["precision_at_k"]["mean"] > 0.9 and r["repeats"] == 2
    with np.load(out / "ret" / "index" / "lookup.npz") as z:
        assert z["X"].shape == (90, 16)  # one mean of 2 repeats per patient, not 2 x 16 side by side


def test_build_parts_add_up_to_the_aggregates_and_need_a_plain_sum():
    """Per-modality parts of the same plan sum to ``build``'s aggregates; a weighted sum of parts
    is the aggregate of scaled draws; ``mean`` (weights depend on the draw count) is refused."""
    from fusionkit import FusionkitError
    from fusionkit.pool import EmbeddingPool
    from fusionkit_plugins.sampling.aggregators import MeanAggregator, SumAggregator
    from fusionkit_plugins.sampling.samplers import PatientLevelSampler
    from fusionkit_plugins.tasks.patient.common import AggregateBuilder, weighted_sum

    arrays, cancer = make_arrays(n_patients=30)
    pool = EmbeddingPool.from_arrays(arrays, labels={"cancer_type": cancer})
    pids = sorted(cancer)[:20]
    for agg in (SumAggregator(), SumAggregator(center=True, scale=True)):
        builder = AggregateBuilder(pool=pool, sampler=PatientLevelSampler(k=4, repeats=3), aggregator=agg)
        X, ids = builder.build(pids, 4, 3, seed=11)
        parts, pids2, mods = builder.build_parts(pids, 4, 3, seed=11)
        assert parts.shape == (3, len(pids), 16 * 3) and list(pids2) == list(ids) and set(mods) == {"rna", "mutation", "text"}
        assert np.allclose(parts.sum(axis=0), X, atol=1e-4)
        assert np.allclose(weighted_sum(parts, mods, {}), X, atol=1e-4)
        w = weighted_sum(parts, mods, {"text": 2.0})
        assert np.allclose(w, X + parts[mods.index("text")], atol=1e-4)
    with pytest.raises(FusionkitError, match="per-modality weights"):
        AggregateBuilder(pool=pool, sampler=PatientLevelSampler(k=4, repeats=3),
                         aggregator=MeanAggregator()).build_parts(pids, 4, 3, seed=1)
    from fusionkit_plugins.tasks.patient.common import build_disjoint, build_disjoint_parts

    X1, p1, X2, p2 = build_disjoint(builder, pids[:12], pids[12:], 4, 3, (5, 6))
    P1, q1, P2, q2, _ = build_disjoint_parts(builder, pids[:12], pids[12:], 4, 3, (5, 6))
    assert list(p1) == list(q1) and list(p2) == list(q2)
    assert np.allclose(P1.sum(0), X1, atol=1e-4) and np.allclose(P2.sum(0), X2, atol=1e-4)
    with pytest.raises(FusionkitError, match="patient leak"):
        build_disjoint_parts(builder, pids[:12], pids[10:], 4, 3, (5, 6))


def test_modality_weights_are_chosen_by_inner_cv_on_training_rows():
    """A modality of loud noise: the search down-weights it (or, the same after standardising,
    up-weights the informative one), by inner cross-validation on the training rows only."""
    from fusionkit_plugins.tasks.patient.classifier import choose_weights, weight_candidates

    rng = np.random.default_rng(0)
    n, d = 150, 20
    y = np.arange(n) % 3
    a = rng.normal(0, 1, (n, d))
    a[:, :3] += 2.0 * np.eye(3)[y]  # the signal, in modality a
    b = rng.normal(0, 6, (n, d))  # modality b: noise 6x louder, no signal
    parts = np.stack([a, b]).astype(np.float32)
    cands = weight_candidates("search", ["a", "b"])
    assert cands == [{}, {"a": 0.5}, {"a": 2.0}, {"b": 0.5}, {"b": 2.0}]
    assert weight_candidates([{"a": 3}, None], ["a", "b"]) == [{"a": 3.0}, {}]
    cfg = {"C": [0.1, 1.0], "max_iter": 500, "tol": 1e-4, "class_weight": False, "C_folds": 3}
    ptr = np.array([f"p{i:03d}" for i in range(n)])
    w, C, scores = choose_weights(parts, ["a", "b"], y, ptr, 1, "concat", cands, cfg)
    assert w in ({"a": 2.0}, {"b": 0.5}) and C in (0.1, 1.0)
    assert set(scores) == {"none", "a=0.5", "a=2", "b=0.5", "b=2"}
    assert scores["a=2"] > scores["none"] > scores["b=2"]


def test_classifier_modality_weights_search_through_the_engine(tmp_path):
    from fusionkit_plugins.tasks.patient.common import check_weights as _check_weights

    tasks = """  clf:
    name: classifier
    params: {targets: [cancer_type], n_repeats: 2, grid: {k: [3], repeats: [2]}, models: [logistic],
             repeats_as: mean, C: [0.1, 1.0], modality_weights: search}"""
    out, metrics = run_recipe(tmp_path, tasks, signal=3.0)
    best = metrics["clf"]["summary"]["targets"]["cancer_type"]["models"]["logistic"]
    assert best["accuracy"]["mean"] > 0.8
    import csv
    rows = list(csv.DictReader((out / "clf" / "runs.csv").open()))
    assert len(rows) == 2 and all(r["modality_weights"] for r in rows)
    allowed = {"none"} | {f"{m}={f:g}" for m in ("rna", "mutation", "text") for f in (0.5, 2.0)}
    assert {r["modality_weights"] for r in rows} <= allowed
    bad = _check_weights({"modality_weights": [{"rna": -1}]}, None)
    assert any(where == "params.modality_weights" and "> 0" in msg for where, msg, _ in bad)
    bad = _check_weights({"modality_weights": "auto"}, None)
    assert any(where == "params.modality_weights" for where, _, _ in bad)
    bad = _check_weights({"modality_weights": "search", "aggregator": {"name": "mean"}}, None)
    assert any("sum aggregator" in msg for _, msg, _ in bad)
    assert _check_weights({"modality_weights": "search", "aggregator": {"name": "sum", "params": {"scale": True}}}, None) == []


def test_draw_coverage_counts_draws_and_the_share_of_each_patients_items():
    from fusionkit.pool import EmbeddingPool
    from fusionkit_plugins.sampling.aggregators import SumAggregator
    from fusionkit_plugins.sampling.samplers import PatientLevelSampler
    from fusionkit_plugins.tasks.patient.common import AggregateBuilder, draw_coverage

    pids = [f"P{i}" for i in range(30)]
    rng = np.random.default_rng(0)
    arrays = {"one": (rng.normal(size=(30, 4)).astype(np.float32), pids),  # one item per patient
              "many": (rng.normal(size=(300, 4)).astype(np.float32), [p for p in pids for _ in range(10)])}
    builder = AggregateBuilder(pool=EmbeddingPool.from_arrays(arrays), sampler=PatientLevelSampler(min_modalities=2),
                               aggregator=SumAggregator())
    cov = draw_coverage(builder, pids, 4, 5, seed=1)
    assert set(cov) == {"one", "many"} and cov["many"]["patients"] == 30
    assert cov["one"]["draws"] + cov["many"]["draws"] == pytest.approx(20)  # k x r draws, split between the two
    assert 8 < cov["many"]["draws"] < 12  # modalities drawn with equal probability
    assert cov["one"]["share"] == 1.0  # its one item is drawn whenever the modality is
    expected = 1 - (1 - 1 / 10) ** cov["many"]["draws"]  # draws with replacement among 10 items
    assert abs(cov["many"]["share"] - expected) < 0.08
    big = draw_coverage(builder, pids, 50, 4, seed=1)["many"]["share"]
    assert big > 0.99 > cov["many"]["share"]
