"""Missing-modality distillation (issue 6): losses, prototypes, the student's inputs, end to end."""

from __future__ import annotations

import json
import math

import numpy as np
import pytest

torch = pytest.importorskip("torch")
torch.set_num_threads(1)

from fusionkit.pool import EmbeddingPool  # noqa: E402
from fusionkit_plugins.tasks.distill import model as dm  # noqa: E402
from fusionkit_plugins.tasks.distill.task import DistillTask  # noqa: E402
from fusionkit_plugins.tasks.distill.data import (Bags, bag_prototypes, build_bags, coarser_scale, kmeans,  # noqa: E402
                                            stratified_split)

T = torch.tensor


# ----------------------------------------------------------------------------- losses

def test_disentangle_orthogonal_known_values():
    a = T([[1.0, 0.0], [1.0, 1.0], [2.0, 0.0]])
    b = T([[0.0, 3.0], [1.0, 0.0], [5.0, 0.0]])
    # cos^2: 0, 0.5, 1 -> mean 0.5
    assert float(dm.disentangle_loss(a, b, "orthogonal")) == pytest.approx(0.5, abs=1e-6)
    assert float(dm.disentangle_loss(a[:1], b[:1], "orthogonal")) == pytest.approx(0.0, abs=1e-7)
    valid = torch.tensor([False, False, True])
    assert float(dm.disentangle_loss(a, b, "orthogonal", valid=valid)) == pytest.approx(1.0, abs=1e-6)
    assert float(dm.disentangle_loss(a, b, "orthogonal", valid=torch.zeros(3, dtype=torch.bool))) == 0.0


def test_disentangle_decorrelation_known_values():
    x = T([[1.0], [-1.0], [1.0], [-1.0]])
    z = T([[1.0], [1.0], [-1.0], [-1.0]])  # uncorrelated with x
    assert float(dm.disentangle_loss(x, x, "decorrelation")) == pytest.approx(1.0, abs=1e-4)
    assert float(dm.disentangle_loss(x, -x, "decorrelation")) == pytest.approx(1.0, abs=1e-4)
    assert float(dm.disentangle_loss(x, z, "decorrelation")) == pytest.approx(0.0, abs=1e-6)
    with pytest.raises(ValueError):
        dm.disentangle_loss(x, z, "nope")


def test_kd_loss_with_temperature_known_value():
    s = T([[0.0, 0.0]])
    t = T([[2.0, 0.0]])
    # T = 2: teacher probs softmax([1, 0]) = (e/(e+1), 1/(e+1)); student uniform
    p = math.e / (math.e + 1)
    kl = p * math.log(p / 0.5) + (1 - p) * math.log((1 - p) / 0.5)
    assert float(dm.kd_loss(s, t, 2.0)) == pytest.approx(4 * kl, rel=1e-5)
    assert float(dm.kd_loss(t, t, 3.0)) == pytest.approx(0.0, abs=1e-5)
    # higher temperature -> softer targets -> smaller KL before the T^2 scaling
    assert float(dm.kd_loss(s, t, 4.0)) / 16 < float(dm.kd_loss(s, t, 1.0))
    # the teacher is frozen: no gradient flows into its logits
    tl = t.clone().requires_grad_(True)
    sl = s.clone().requires_grad_(True)
    dm.kd_loss(sl, tl, 2.0).backward()
    assert tl.grad is None and sl.grad is not None


def test_feature_loss_known_values():
    s = T([[1.0, 0.0], [0.0, 2.0]])
    t = T([[3.0, 0.0], [0.0, 2.0]])
    assert float(dm.feature_loss(s, t, "mse")) == pytest.approx(1.0)  # (4 + 0 + 0 + 0) / 4
    assert float(dm.feature_loss(s, t, "cosine")) == pytest.approx(0.0, abs=1e-6)
    assert float(dm.feature_loss(T([[1.0, 0.0]]), T([[0.0, 1.0]]), "cosine")) == pytest.approx(1.0)


def test_confidence_weights():
    w = dm.confidence_weights([0.5, 0.5])
    np.testing.assert_allclose(w, [1.0, 1.0])
    w = dm.confidence_weights([0.2, 0.9], tau=0.5)
    assert w.sum() == pytest.approx(2.0) and w[0] > w[1]
    expected = 2 * np.exp(-0.2 / 0.5) / (np.exp(-0.2 / 0.5) + np.exp(-0.9 / 0.5))
    assert w[0] == pytest.approx(expected)
    np.testing.assert_allclose(dm.confidence_weights([0.1, 0.9], tau=1e9), [1.0, 1.0])
    logits = T([[10.0, -10.0], [-10.0, 10.0]])
    assert dm.true_class_confidence(logits, torch.tensor([0, 0])) == pytest.approx(0.5, abs=1e-6)


def test_gradient_projection_keeps_the_less_confident_direction():
    g1, g2 = T([1.0, 0.0]), T([-1.0, 1.0])
    p1, p2 = dm.project_conflicting([g1, g2], [0.2, 0.9])  # subspace 1 lags
    np.testing.assert_allclose(p1.numpy(), [1.0, 0.0])
    np.testing.assert_allclose(p2.numpy(), [0.0, 1.0])
    p1, p2 = dm.project_conflicting([g1, g2], [0.9, 0.2])  # subspace 2 lags
    np.testing.assert_allclose(p2.numpy(), [-1.0, 1.0])
    np.testing.assert_allclose(p1.numpy(), [0.5, 0.5])
    q1, q2 = dm.project_conflicting([T([1.0, 1.0]), T([1.0, 0.0])], [0.1, 0.2])  # no conflict: unchanged
    np.testing.assert_allclose(q2.numpy(), [1.0, 0.0])


def test_consistency_loss():
    ref = [T([[1.0, 0.0]]), T([[0.0, 1.0]])]
    valid = torch.tensor([True])
    assert float(dm.consistency_loss(ref, ref, ref, valid)) == pytest.approx(0.0, abs=1e-6)
    ortho = [T([[0.0, 1.0]]), T([[1.0, 0.0]])]
    # fine aligned (0), coarse orthogonal (1): 0 + 1 + |0 - 1| = 2
    assert float(dm.consistency_loss(ref, ortho, ref, valid)) == pytest.approx(2.0, abs=1e-6)
    assert float(dm.consistency_loss(ref, ortho, ref, torch.tensor([False]))) == 0.0


# ----------------------------------------------------------------------------- prototypes

def _bags(rows: list[np.ndarray], patients=None) -> Bags:
    sizes = [len(r) for r in rows]
    offsets = np.concatenate([[0], np.cumsum(sizes)]).astype(np.int64)
    d = next(len(r[0]) for r in rows if len(r))
    X = np.concatenate([r for r in rows if len(r)]).astype(np.float32) if any(sizes) else np.zeros((0, d), np.float32)
    pats = np.array(patients or [f"P{i}" for i in range(len(rows))])
    return Bags("image", pats, X, offsets)


def test_prototypes_recover_cluster_means():
    rng = np.random.default_rng(0)
    centres = np.array([[10.0, 0, 0], [0, 10.0, 0], [0, 0, 10.0]])
    bag = np.concatenate([c + rng.normal(0, 0.1, (n, 3)) for c, n in zip(centres, (30, 20, 10))])
    bag = bag[rng.permutation(len(bag))]
    P, mask, share = bag_prototypes(_bags([bag, bag[:2], np.zeros((0, 3))]), k=3, seed=1)
    assert mask[0].all() and mask[1, :2].all() and not mask[1, 2] and not mask[2].any()
    for c in centres:
        assert np.min(np.linalg.norm(P[0] - c, axis=1)) < 0.1
    np.testing.assert_allclose(sorted(share[0]), [10 / 60, 20 / 60, 30 / 60], atol=1e-6)
    # fewer items than k: the items themselves
    np.testing.assert_allclose(P[1, :2], bag[:2], atol=1e-6)
    # deterministic per patient, whatever the cohort around it
    P2, _, _ = bag_prototypes(_bags([np.zeros((1, 3)), bag], patients=["X", "P0"]), k=3, seed=1)
    np.testing.assert_allclose(P2[1], P[0])


def test_kmeans_small():
    X = np.array([[0.0], [0.1], [5.0], [5.1]])
    c, a = kmeans(X, 2, np.random.default_rng(0))
    assert a[0] == a[1] and a[2] == a[3] and a[0] != a[2]
    np.testing.assert_allclose(sorted(c[:, 0]), [0.05, 5.05])


def test_informative_tokens_keep_top_scored_prototypes():
    ita = dm.nets().InformativeTokens(2, 2, 2, 0.0, keep=2)
    with torch.no_grad():
        ita.embed[0].weight.copy_(torch.eye(2))
        ita.embed[0].bias.zero_()
        ita.score[0].weight.copy_(torch.tensor([[1.0, 0.0], [0.0, 0.0]]))
        ita.score[0].bias.zero_()
        ita.score[2].weight.copy_(torch.tensor([[1.0, 0.0]]))
        ita.score[2].bias.zero_()
    ita.eval()
    # score = tanh(first coordinate): prototypes 1 and 3 score highest; 4 is masked although it would win
    x = T([[[0.1, 5.0], [2.0, 1.0], [0.0, 7.0], [3.0, 3.0], [9.0, 9.0]]])
    mask = torch.tensor([[True, True, True, True, False]])
    with torch.no_grad():
        out, w = ita(x, mask)
    assert set(torch.nonzero(w[0] > 0).flatten().tolist()) == {1, 3}
    assert float(w.sum()) == pytest.approx(1.0)
    expected = (w[0, 1] * T([2.0, 1.0]) + w[0, 3] * T([3.0, 3.0]))
    np.testing.assert_allclose(out[0].detach().numpy(), expected.detach().numpy(), atol=1e-6)


def test_selective_fusion_masks_absent_modalities():
    fusion = dm.nets().SelectiveFusion(2, 3)
    feats = torch.randn(2, 2, 3)
    present = torch.tensor([[True, False], [True, True]])
    with torch.no_grad():
        out, w = fusion(feats, present)
    assert float(w[0, 1]) == 0.0 and float(w[0, 0]) == pytest.approx(1.0)
    changed = feats.clone()
    changed[0, 1] = 1e6  # whatever an absent modality holds, it cannot move the fused feature
    with torch.no_grad():
        out2, _ = fusion(changed, present)
    np.testing.assert_allclose(out[0].detach().numpy(), out2[0].detach().numpy(), atol=1e-6)


def test_coarser_scale_and_split():
    b = _bags([np.arange(10, dtype=float).reshape(5, 2), np.zeros((0, 2)), np.ones((1, 2))])
    c = coarser_scale(b, 2)
    assert list(c.sizes) == [3, 0, 1]
    np.testing.assert_allclose(c.bag(0), [[1, 2], [5, 6], [8, 9]])
    y = np.array([0] * 10 + [1] * 5)
    keep, held = stratified_split(y, 0.2, np.random.default_rng(0))
    assert len(set(keep) & set(held)) == 0 and len(keep) + len(held) == 15
    assert (y[held] == 0).sum() == 2 and (y[held] == 1).sum() == 1


# ----------------------------------------------------------------------------- the student's inputs

def _pool(n=48, d=8, seed=0, tiles=6, nan_rna=False):
    """rna: strong signal (one vector); image: weak signal (bags of tiles); mutation: a third modality."""
    rng = np.random.default_rng(seed)
    pats = [f"TCGA-ZZ-{i:04d}" for i in range(n)]
    cancers = np.array(["BRCA", "LUAD", "THCA"])[np.arange(n) % 3]
    k = np.arange(n) % 3
    rna = rng.normal(0, 1, (n, d)).astype(np.float32)
    rna[np.arange(n), k] += 4.0
    if nan_rna:
        rna[:] = np.nan
    img_p = np.repeat(np.arange(n), tiles)
    img = rng.normal(0, 1, (n * tiles, d)).astype(np.float32)
    img[np.arange(n * tiles), 3 + k[img_p]] += 0.8
    mut = rng.normal(0, 1, (n, d)).astype(np.float32)
    labels = {"cancer_type": dict(zip(pats, cancers)),
              "subtype": {p: f"{c}.{'AB'[i % 2]}" for i, (p, c) in enumerate(zip(pats, cancers))}}
    return EmbeddingPool.from_arrays({"rna": (rna, pats), "image": (img, [pats[i] for i in img_p]),
                                      "mutation": (mut, pats)}, labels)


class _SpyViews(dict):
    def __init__(self, *a, **kw):
        super().__init__(*a, **kw)
        self.read: list[str] = []

    def __getitem__(self, key):
        self.read.append(key)
        return super().__getitem__(key)


def test_student_inputs_touch_only_allowed_views():
    pool = _pool()
    pool.views = _SpyViews(pool.views)
    task = DistillTask(teacher_modalities=["rna", "image"], student_modalities=["image"], prototypes=3)
    inputs, kinds = task.student_inputs(pool, pool.patients(), ["image"], seed=3)
    assert set(pool.views.read) == {"image"} and set(inputs) == {"image"} and kinds == {"image": "ita"}
    pool.views.read.clear()
    build_bags(pool, pool.patients(), ["mutation"])
    assert pool.views.read == ["mutation"]


def test_student_never_reads_missing_modalities():
    """Train a student; at inference the RNA is NaN (or absent): identical predictions."""
    from fusionkit_plugins.tasks.distill.model import TrainConfig, predict, train_student

    pool = _pool()
    task = DistillTask(student_modalities=["image"], prototypes=3)
    pats = pool.patients()
    y = np.arange(len(pats)) % 3
    inputs, kinds = task.student_inputs(pool, pats, ["image"], seed=5)
    cfg = TrainConfig(epochs=3, hidden=16, subspace=8, attention=8, keep=2, batch_size=16)
    net, _ = train_student(inputs, ["image"], kinds, y, np.arange(36), np.arange(36, 48), 3, cfg, 0)
    ref = predict(net, inputs, ["image"], np.arange(48))["logits"]
    for other in (_pool(nan_rna=True), _pool().restrict(modalities=["image"])):
        inputs2, _ = task.student_inputs(other, pats, ["image"], seed=5)
        np.testing.assert_array_equal(predict(net, inputs2, ["image"], np.arange(48))["logits"], ref)


# ----------------------------------------------------------------------------- training

def test_teacher_learns_and_drop_one_hurts():
    from fusionkit_plugins.tasks.distill.model import TrainConfig, predict, train_teacher

    pool = _pool(n=60)
    task = DistillTask(teacher_modalities=["rna", "image"], consistency_pool=2)
    pats = pool.patients()
    y = np.arange(len(pats)) % 3
    inputs, kinds, coarse, pair = task.teacher_inputs(pool, pats, ["rna", "image"], seed=0)
    assert kinds == {"rna": "vector", "image": "mil"} and pair == ("image", "rna") and coarse is not None
    tr, va, te = np.arange(36), np.arange(36, 45), np.arange(45, 60)
    for coordination in ("confidence", "gradient"):
        cfg = TrainConfig(epochs=25, patience=25, hidden=16, subspace=8, attention=8, lr=5e-3, batch_size=12,
                          coordination=coordination)
        net, info = train_teacher(inputs, ["rna", "image"], kinds, y, tr, va, 3, cfg, 0, coarse=coarse,
                                  consistency=pair)
        assert info["consistency"] and len(info["subspace_weights_mean"]) == 2
        acc = (predict(net, inputs, ["rna", "image"], te)["logits"].argmax(1) == y[te]).mean()
        assert acc >= 0.8, (coordination, acc)
    no_rna = (predict(net, inputs, ["rna", "image"], te, drop=("rna",))["logits"].argmax(1) == y[te]).mean()
    assert no_rna < acc


def _write_cohort(tmp_path, n=45, d=8, tiles=5, modalities=("rna", "image"), params=None):
    """Precomputed embeddings: rna strong signal (one vector), image weak (tiles), mutation weak
    (one vector), text weak (sentences); a recipe with one distill task."""
    import pandas as pd

    rng = np.random.default_rng(1)
    pats = [f"TCGA-ZZ-{i:04d}" for i in range(n)]
    cancers = np.array(["BRCA", "LUAD", "THCA"])[np.arange(n) % 3]
    k = np.arange(n) % 3
    layout = {"rna": (1, 4.0), "image": (tiles, 0.7), "mutation": (1, 0.7), "text": (4, 0.7)}
    for name in modalities:
        per, strength = layout[name]
        owner = np.repeat(np.arange(n), per)
        X = rng.normal(0, 1, (len(owner), d)).astype(np.float32)
        X[np.arange(len(owner)), (0 if per == 1 and name == "rna" else 3) + k[owner]] += strength
        np.save(tmp_path / f"{name}.npy", X)
        pd.DataFrame({"patient_id": [pats[i] for i in owner],
                      "cancer_type": cancers[owner]}).to_csv(tmp_path / f"{name}_ids.csv", index=False)
    inputs = ", ".join(f"{m}: {{path: {m}.npy, ids: {m}_ids.csv}}" for m in modalities)
    mods = "\n".join(f"  {m}: {{encoder: identity}}" for m in modalities)
    p = {"teacher_modalities": "[rna, image]", "student_modalities": "[image]", "targets": "[cancer_type, subtype]",
         "n_repeats": 2, "epochs": 12, "patience": 12, "hidden": 16, "subspace_dim": 8, "attention_dim": 8,
         "prototypes": 3, "keep_prototypes": 2, "consistency_pool": 2, "batch_size": 12, "lr": 0.005,
         "min_class_size": 5, "baseline_k": 3, "baseline_repeats": 2, "device": "cpu", "num_threads": 1,
         **(params or {})}
    plines = "\n".join(f"      {key}: {value}" for key, value in p.items())
    recipe = f"""schema: 1
name: distill-test
seed: 7
width: {d}
data:
  reader: {{name: precomputed, params: {{inputs: {{{inputs}}}}}}}
modalities:
{mods}
output: {{save_aggregates: false}}
tasks:
  distill:
    name: distill
    params:
{plines}
"""
    path = tmp_path / "recipe.yaml"
    path.write_text(recipe)
    return path


def test_end_to_end_run(plugin_system, tmp_path):
    from fusionkit import engine
    from fusionkit.recipe import load_recipe

    rec = load_recipe(_write_cohort(tmp_path), plugin_system)
    out = tmp_path / "out"
    engine.run(rec, plugin_system, out_dir=out, progress=False)
    metrics = json.loads((out / "metrics.json").read_text())["distill"]
    s = metrics["summary"]
    assert s["targets"] == ["cancer_type"] and any("subtype" in n for n in s["notes"])  # no subtype label
    res = s["results"]["cancer_type"]
    assert set(res) == {"teacher", "student", "unimodal", "sum-baseline"}
    for model in res.values():
        assert model["macro_f1"]["n"] == 2 and 0 <= model["macro_f1"]["mean"] <= 1
    assert res["teacher"]["macro_f1"]["mean"] >= 0.8  # the RNA carries the label
    assert set(s["teacher_drop_one_macro_f1"]["cancer_type"]) == {"rna", "image"}
    assert s["consistency"] == {"modality": "image", "reference": "rna", "pool": 2}
    for rel in metrics["tables"].values():
        assert (out / rel).exists()
    assert metrics["figures"] and (out / metrics["figures"][0]).exists()
    per = (out / metrics["tables"]["per_repeat"]).read_text().splitlines()
    assert len(per) == 1 + 2 * 4
    # a second run reuses every repeat from the unit cache
    engine.run(rec, plugin_system, out_dir=out, progress=False)
    again = json.loads((out / "metrics.json").read_text())["distill"]["summary"]
    assert again["units"]["reused"] == 2
    assert again["results"] == s["results"]


def test_generic_configuration_rna_mutation_text_to_mutation_text(plugin_system, tmp_path):
    """Teacher {rna, mutation, text} -> student {mutation, text}: no image, so no consistency term."""
    from fusionkit import engine
    from fusionkit.recipe import load_recipe

    path = _write_cohort(tmp_path, modalities=("rna", "mutation", "text"), params={
        "teacher_modalities": "[rna, mutation, text]", "student_modalities": "[mutation, text]",
        "targets": "[cancer_type]", "n_repeats": 1, "epochs": 6, "coordination": "gradient",
        "disentangle": "decorrelation", "feature_loss": "cosine"})
    out = tmp_path / "out"
    engine.run(load_recipe(path, plugin_system), plugin_system, out_dir=out, progress=False)
    s = json.loads((out / "metrics.json").read_text())["distill"]["summary"]
    assert s["consistency"] is None
    assert set(s["results"]["cancer_type"]) == {"teacher", "student", "unimodal", "sum-baseline"}
    assert set(s["teacher_drop_one_macro_f1"]["cancer_type"]) == {"rna", "mutation", "text"}
    kinds = {a["modality"]: (a["kind"], a["student_kind"]) for a in s["availability"]}
    assert kinds == {"rna": ("vector", ""), "mutation": ("vector", "vector"), "text": ("mil", "ita")}


def test_bad_params_are_reported():
    from fusionkit.errors import DataError

    pool = _pool()
    with pytest.raises(DataError, match="not teacher modalities"):
        DistillTask(teacher_modalities=["rna"], student_modalities=["image"])._check(pool)
    with pytest.raises(DataError, match="not in the pool"):
        DistillTask(teacher_modalities=["rna", "text"])._check(pool)
    with pytest.raises(DataError, match="coordination"):
        DistillTask(coordination="pcgradx")._check(pool)


def test_recipes_validate_without_torch():
    import subprocess
    import sys
    from pathlib import Path

    repo = Path(__file__).resolve().parents[1]
    recipes = [p for p in (repo / "recipes").glob("missing_modality*.yaml")]
    if not recipes:
        pytest.skip("no missing_modality recipes")
    code = ("import sys; from fusionkit import plugins; from fusionkit.recipe import load_recipe; "
            "system = plugins.load(env={}); "
            f"[load_recipe(p, system) for p in {[str(p) for p in recipes]!r}]; "
            "assert 'torch' not in sys.modules, 'torch imported'")
    subprocess.run([sys.executable, "-c", code], check=True, cwd=repo)
