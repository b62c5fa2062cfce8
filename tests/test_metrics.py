"""fusionkit.metrics: hand-computed cases, the stratified scheme, and agreement with scikit-learn."""

from __future__ import annotations

import math

import numpy as np
import pytest

from fusionkit import metrics as M


def approx(x, rel=1e-9):
    return pytest.approx(x, rel=rel, abs=1e-12)


# ----------------------------------------------------------------------------- binary, by hand

def test_binary_hand_computed():
    # truth 1 1 1 1 0 0 0 0 0 0
    # pred  1 1 1 0 1 0 0 0 0 0  -> tp 3, fn 1, fp 1, tn 5
    y_true = [1, 1, 1, 1, 0, 0, 0, 0, 0, 0]
    y_pred = [1, 1, 1, 0, 1, 0, 0, 0, 0, 0]
    r = M.binary_metrics(y_true, y_pred)
    assert (r["tp"], r["fp"], r["tn"], r["fn"]) == (3, 1, 5, 1)
    assert r["n"] == 10 and r["n_pos"] == 4 and r["n_neg"] == 6
    assert r["precision"] == approx(3 / 4)
    assert r["recall"] == approx(3 / 4)
    assert r["specificity"] == approx(5 / 6)
    assert r["accuracy"] == approx(0.8)
    assert r["f1"] == approx(0.75)  # 2*3 / (2*3 + 1 + 1)
    assert r["balanced_accuracy"] == approx((3 / 4 + 5 / 6) / 2)
    # MCC = (tp*tn - fp*fn) / sqrt((tp+fp)(tp+fn)(tn+fp)(tn+fn)) = (15 - 1) / sqrt(4*4*6*6) = 14/24
    assert r["mcc"] == approx(14 / 24)


def test_binary_inputs_counts_bools_and_probabilities():
    # counts > 0 are positive; probabilities are thresholded at 0.5
    a = M.binary_metrics([0, 2, 3, 0], [0.1, 0.9, 0.4, 0.6])
    b = M.binary_metrics([False, True, True, False], [0, 1, 0, 1])
    assert a == b
    assert (a["tp"], a["fp"], a["tn"], a["fn"]) == (1, 1, 1, 1)
    assert a["mcc"] == approx(0.0)
    with pytest.raises(ValueError):
        M.binary_metrics([0, 1], [0, 1, 1])


def test_mcc_degenerate_cases():
    # single class in the truth: undefined (nan), whatever the prediction
    assert math.isnan(M.binary_metrics([1, 1, 1], [1, 1, 1])["mcc"])
    assert math.isnan(M.binary_metrics([0, 0, 0], [0, 1, 0])["mcc"])
    # both classes in the truth, constant prediction: 0 (no information)
    assert M.binary_metrics([0, 1, 1, 0], [0, 0, 0, 0])["mcc"] == 0.0
    assert M.binary_metrics([0, 1, 1, 0], [1, 1, 1, 1])["mcc"] == 0.0
    # perfect and inverted
    assert M.binary_metrics([0, 1, 1, 0], [0, 1, 1, 0])["mcc"] == approx(1.0)
    assert M.binary_metrics([0, 1, 1, 0], [1, 0, 0, 1])["mcc"] == approx(-1.0)


def test_batch_matches_single():
    rng = np.random.default_rng(1)
    T = rng.integers(0, 3, size=(200, 4))
    P = rng.integers(0, 2, size=(200, 4))
    batch = M.binary_metrics_batch(T, P)
    for j in range(4):
        single = M.binary_metrics(T[:, j], P[:, j])
        assert batch[j].keys() == single.keys()
        for key in single:
            assert (math.isnan(single[key]) and math.isnan(batch[j][key])) or batch[j][key] == single[key]


def test_binary_against_sklearn():
    sk = pytest.importorskip("sklearn.metrics")
    rng = np.random.default_rng(0)
    for _ in range(20):
        n = int(rng.integers(20, 300))
        t = rng.random(n) < rng.uniform(0.1, 0.9)
        p = np.where(rng.random(n) < 0.7, t, rng.random(n) < 0.5)
        r = M.binary_metrics(t, p)
        assert r["mcc"] == pytest.approx(sk.matthews_corrcoef(t, p), abs=1e-12)
        assert r["f1"] == pytest.approx(sk.f1_score(t, p), abs=1e-12)
        assert r["precision"] == pytest.approx(sk.precision_score(t, p), abs=1e-12)
        assert r["recall"] == pytest.approx(sk.recall_score(t, p), abs=1e-12)
        assert r["accuracy"] == pytest.approx(sk.accuracy_score(t, p), abs=1e-12)
        assert r["balanced_accuracy"] == pytest.approx(sk.balanced_accuracy_score(t, p), abs=1e-12)


# ----------------------------------------------------------------------------- stratified

def test_stratified_split_by_hand():
    # counts of two modalities in 6 aggregates
    Y = np.array([[2, 0], [0, 1], [1, 1], [0, 0], [1, 0], [0, 3]])
    P = np.array([[1, 0], [1, 1], [1, 0], [0, 0], [0, 0], [0, 1]])
    res = M.stratified_metrics(Y, P, ["rna", "text"])
    rna = res["rna"]
    # rna: truth 1 0 1 0 1 0, pred 1 1 1 0 0 0 -> tp 2, fp 1, tn 2, fn 1
    assert (rna["all"]["tp"], rna["all"]["fp"], rna["all"]["tn"], rna["all"]["fn"]) == (2, 1, 2, 1)
    assert rna["all"]["mcc"] == approx((2 * 2 - 1 * 1) / 9)  # sqrt(3*3*3*3) = 9
    # absent stratum (rows 1, 3, 5): one false positive of three
    assert rna["absent"]["n"] == 3 and rna["absent"]["specificity"] == approx(2 / 3)
    assert rna["absent"]["accuracy"] == approx(2 / 3)
    assert math.isnan(rna["absent"]["mcc"]) and math.isnan(rna["absent"]["recall"])
    # present stratum (rows 0, 2, 4): two of three found
    assert rna["present"]["n"] == 3 and rna["present"]["recall"] == approx(2 / 3)
    assert rna["present"]["accuracy"] == approx(2 / 3)
    assert math.isnan(rna["present"]["mcc"]) and math.isnan(rna["present"]["specificity"])
    # text: truth 0 1 1 0 0 1, pred 0 1 0 0 0 1 -> present n 3 recall 2/3; absent n 3 specificity 1
    assert res["text"]["present"]["recall"] == approx(2 / 3)
    assert res["text"]["absent"]["specificity"] == approx(1.0)
    assert res["text"]["all"]["n"] == 6


def test_predicting_absent_everywhere_never_looks_good():
    rng = np.random.default_rng(3)
    # a rare modality: present in ~10% of aggregates
    Y = (rng.random((1000, 3)) < np.array([0.1, 0.3, 0.5])).astype(int)
    P = np.zeros_like(Y)
    res = M.stratified_metrics(Y, P, ["a", "b", "c"])
    assert res["a"]["all"]["accuracy"] > 0.85  # raw accuracy looks high...
    for m in "abc":
        assert res[m]["all"]["mcc"] == 0.0  # ...but MCC says no information
        assert res[m]["all"]["recall"] == 0.0 and res[m]["all"]["f1"] == 0.0
        present = res[m]["present"]
        assert present["recall"] == 0.0 and present["accuracy"] == 0.0 and present["f1"] == 0.0
        assert present["balanced_accuracy"] == 0.0
        assert math.isnan(present["mcc"])  # undefined within a single-class stratum, never 1
        assert res[m]["absent"]["specificity"] == 1.0
    # whereas a perfect recognizer is perfect in both strata
    good = M.stratified_metrics(Y, Y, ["a", "b", "c"])
    for m in "abc":
        assert good[m]["all"]["mcc"] == approx(1.0)
        assert good[m]["present"]["recall"] == 1.0 and good[m]["absent"]["specificity"] == 1.0


def test_stratified_drop_empty_and_rows():
    Y = np.array([[0, 0], [1, 0], [0, 1], [0, 0]])
    P = np.array([[1, 1], [1, 0], [0, 1], [0, 0]])
    kept = M.stratified_metrics(Y, P, ["x", "y"], drop_empty=True)
    assert kept["x"]["all"]["n"] == 2 and kept["x"]["all"]["mcc"] == approx(1.0)
    full = M.stratified_metrics(Y, P, ["x", "y"])
    assert full["x"]["all"]["n"] == 4 and full["x"]["all"]["fp"] == 1
    rows = M.stratified_rows(full, ("mcc", "n"), repeat=0, k=3)
    assert len(rows) == 2 * 3 * 2
    assert rows[0] == {"repeat": 0, "k": 3, "modality": "x", "stratum": "all", "metric": "mcc",
                       "value": full["x"]["all"]["mcc"]}
    with pytest.raises(ValueError):
        M.stratified_metrics(Y, P, ["only-one"])


# ----------------------------------------------------------------------------- multi-class

def test_multiclass_hand_computed():
    # true a a a b b c / pred a a b b c c
    # confusion (rows true a, b, c):  a [2 1 0] / b [0 1 1] / c [0 0 1]
    r = M.multiclass_metrics(list("aaabbc"), list("aabbcc"), labels=["a", "b", "c"])
    assert r["confusion"] == [[2, 1, 0], [0, 1, 1], [0, 0, 1]]
    assert r["labels"] == ["a", "b", "c"]
    assert r["accuracy"] == approx(4 / 6)
    pc = r["per_class"]
    assert pc["a"] == {"f1": approx(0.8), "precision": approx(1.0), "recall": approx(2 / 3), "support": 3}
    assert pc["b"]["f1"] == approx(0.5) and pc["b"]["precision"] == approx(0.5) and pc["b"]["support"] == 2
    assert pc["c"]["f1"] == approx(2 / 3) and pc["c"]["recall"] == approx(1.0)
    assert r["macro_f1"] == approx((0.8 + 0.5 + 2 / 3) / 3)
    assert r["balanced_accuracy"] == approx((2 / 3 + 1 / 2 + 1) / 3)
    # Gorodkin: s=6, c=4, t=(3,2,1), p=(2,2,2): (4*6 - 12) / sqrt((36 - 12) * (36 - 14))
    assert r["mcc"] == approx(12 / math.sqrt(24 * 22))
    # binary case reduces to the binary MCC
    b = M.multiclass_metrics([0, 1, 1, 0, 1], [0, 1, 0, 0, 1])
    assert b["mcc"] == approx(M.binary_metrics([0, 1, 1, 0, 1], [0, 1, 0, 0, 1])["mcc"])


def test_multiclass_degenerate_and_errors():
    r = M.multiclass_metrics(["a", "a"], ["a", "a"], labels=["a", "b"])
    assert math.isnan(r["mcc"]) and r["accuracy"] == 1.0
    assert r["per_class"]["b"] == {"f1": 0.0, "precision": 0.0, "recall": 0.0, "support": 0}
    assert r["balanced_accuracy"] == 1.0  # over classes present in the truth
    assert M.multiclass_metrics(["a", "b"], ["a", "a"])["mcc"] == 0.0
    with pytest.raises(ValueError, match="not among labels"):
        M.multiclass_metrics(["a", "z"], ["a", "a"], labels=["a", "b"])


def test_multiclass_against_sklearn():
    sk = pytest.importorskip("sklearn.metrics")
    rng = np.random.default_rng(2)
    labels = ["BRCA", "LUAD", "COAD", "STAD", "THCA", "BLCA"]
    for _ in range(10):
        t = rng.choice(labels, 300)
        p = np.where(rng.random(300) < 0.6, t, rng.choice(labels, 300))
        r = M.multiclass_metrics(t, p, labels=labels)
        assert r["mcc"] == pytest.approx(sk.matthews_corrcoef(t, p), abs=1e-12)
        assert r["macro_f1"] == pytest.approx(sk.f1_score(t, p, average="macro", labels=labels), abs=1e-12)
        assert r["weighted_f1"] == pytest.approx(sk.f1_score(t, p, average="weighted", labels=labels), abs=1e-12)
        assert r["balanced_accuracy"] == pytest.approx(sk.balanced_accuracy_score(t, p), abs=1e-12)
        assert r["accuracy"] == pytest.approx(sk.accuracy_score(t, p), abs=1e-12)
        assert r["confusion"] == sk.confusion_matrix(t, p, labels=labels).tolist()
        f1s = sk.f1_score(t, p, average=None, labels=labels)
        for lab, f in zip(labels, f1s):
            assert r["per_class"][lab]["f1"] == pytest.approx(f, abs=1e-12)


# ----------------------------------------------------------------------------- repeats

def test_mean_ci_known_values():
    r = M.mean_ci([1, 2, 3, 4, 5])
    # mean 3, sd sqrt(2.5), t_{0.975, 4} = 2.7764451 -> half width 2.7764451 * 1.5811388 / sqrt(5)
    assert r["mean"] == approx(3.0) and r["n"] == 5 and r["std"] == approx(math.sqrt(2.5))
    half = 2.7764451052 * math.sqrt(2.5) / math.sqrt(5)
    assert r["ci_low"] == pytest.approx(3 - half, abs=1e-6)
    assert r["ci_high"] == pytest.approx(3 + half, abs=1e-6)
    # 90% interval is narrower; constant values give a zero-width interval
    assert M.mean_ci([1, 2, 3, 4, 5], level=0.9)["ci_high"] < r["ci_high"]
    assert M.mean_ci([0.7, 0.7, 0.7])["ci_low"] == approx(0.7)
    one = M.mean_ci([0.4])
    assert one["mean"] == 0.4 and one["n"] == 1 and math.isnan(one["ci_low"]) and math.isnan(one["ci_high"])
    none = M.mean_ci([])
    assert none["n"] == 0 and math.isnan(none["mean"])
    # non-finite values (undefined metrics) are left out
    assert M.mean_ci([1.0, float("nan"), 3.0])["n"] == 2
    assert M.mean_ci(np.array([1.0, 3.0]))["mean"] == 2.0


def test_t_quantile():
    assert M.t_quantile(0.975, 4) == pytest.approx(2.7764451, abs=1e-6)
    assert M.t_quantile(0.975, 29) == pytest.approx(2.0452296, abs=1e-6)


def test_summarise_and_summarise_rows():
    reps = [{"accuracy": 0.8, "mcc": 0.6, "per_class": {"a": {"f1": 0.5}}, "confusion": [[1]], "labels": ["a"]},
            {"accuracy": 0.9, "mcc": float("nan"), "per_class": {"a": {"f1": 0.7}}, "confusion": [[2]],
             "labels": ["a"]}]
    s = M.summarise(reps)
    assert list(s) == ["accuracy", "mcc", "per_class.a.f1"]
    assert s["accuracy"]["mean"] == approx(0.85) and s["accuracy"]["n"] == 2
    assert s["mcc"]["n"] == 1 and s["mcc"]["mean"] == 0.6
    assert s["per_class.a.f1"]["mean"] == approx(0.6)
    rows = [{"model": "deep", "k": 3, "value": 0.9}, {"model": "deep", "k": 3, "value": 0.7},
            {"model": "bl", "k": 3, "value": 0.5}]
    out = M.summarise_rows(rows, ["model", "k"])
    assert [(r["model"], r["k"], r["n"]) for r in out] == [("deep", 3, 2), ("bl", 3, 1)]
    assert out[0]["mean"] == approx(0.8) and out[0]["ci_low"] < 0.8 < out[0]["ci_high"]


def test_bounded_metric_intervals_are_clipped():
    from fusionkit.metrics import mean_ci, metric_bounds, summarise, summarise_rows

    assert metric_bounds("mcc") == (-1.0, 1.0) and metric_bounds("per_class.BRCA.f1") == (0.0, 1.0)
    assert metric_bounds("cohens_d") is None
    raw = mean_ci([1.0, 1.0, 0.9])
    assert raw["ci_high"] > 1.0  # a t-interval can leave [0, 1] ...
    clipped = mean_ci([1.0, 1.0, 0.9], bounds=(0.0, 1.0))
    assert clipped["ci_high"] == 1.0 and clipped["ci_low"] == raw["ci_low"] and clipped["mean"] == raw["mean"]
    assert summarise([{"mcc": 1.0}, {"mcc": 1.0}, {"mcc": 0.9}])["mcc"]["ci_high"] == 1.0  # ... not once named
    rows = [{"metric": "f1", "value": v} for v in (1.0, 1.0, 0.9)] + [{"metric": "d", "value": v} for v in (1.0, 1.0, 0.9)]
    out = {r["metric"]: r for r in summarise_rows(rows, by=["metric"])}
    assert out["f1"]["ci_high"] == 1.0 and out["d"]["ci_high"] > 1.0
