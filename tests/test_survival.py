"""Survival (issue 12): the Cox loss, c-indices, KM/log-rank against libraries, endpoint labels that never
leak into annotation text, the planted synthetic signal, the leak guard, and the task through the engine."""

from __future__ import annotations

import json
import math
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

pytest.importorskip("sksurv")
torch = pytest.importorskip("torch")

from fusionkit import DataError, FusionkitError  # noqa: E402
from fusionkit_plugins.tasks.survival.cox import cox_nll, risk_sets, train_deep_cox  # noqa: E402
from fusionkit_plugins.tasks.survival.metrics import (Surv, harrell, harrell_stratified, ibs, km_curve,  # noqa: E402
                                                      logrank, td_auc, uno)

pytestmark = pytest.mark.usefixtures("torch_one_thread")


# ----------------------------------------------------------------------------- the deep Cox loss

def test_cox_loss_by_hand_with_tied_and_censored_times():
    # t=1 event (risk set: all four, sum exp = 1+2+1+3 = 7); t=2 two tied events, each sees {1,2,3}
    # (Breslow: sum 2+1+3 = 6); t=3 censored: no term
    t, e = np.array([1.0, 2.0, 2.0, 3.0]), np.array([1, 1, 1, 0])
    eta = torch.tensor([0.0, math.log(2), 0.0, math.log(3)], dtype=torch.float64)
    expected = (math.log(7) - math.log(2) + 2 * math.log(6)) / 3
    assert float(cox_nll(eta, risk_sets(t, e))) == pytest.approx(expected, abs=1e-12)
    # order of the samples does not matter
    perm = np.array([2, 0, 3, 1])
    assert float(cox_nll(eta[perm], risk_sets(t[perm], e[perm]))) == pytest.approx(expected, abs=1e-12)
    # no event: zero loss
    assert float(cox_nll(eta, risk_sets(t, np.zeros(4)))) == 0.0


def test_cox_loss_strata_keep_risk_sets_apart():
    t = np.array([1.0, 2.0, 1.0, 3.0])
    e = np.array([1, 0, 1, 0])
    eta = torch.tensor([0.5, 0.0, 0.0, 1.0], dtype=torch.float64)
    strata = np.array(["a", "a", "b", "b"])
    # stratum a: event at t=1 sees {0, 1}; stratum b: event at t=1 sees {2, 3}
    la = 0.5 - math.log(math.exp(0.5) + 1)
    lb = 0.0 - math.log(1 + math.exp(1.0))
    assert float(cox_nll(eta, risk_sets(t, e, strata))) == pytest.approx(-(la + lb) / 2, abs=1e-12)
    pooled = float(cox_nll(eta, risk_sets(t, e)))
    assert pooled != pytest.approx(-(la + lb) / 2)


def test_linear_cox_on_our_loss_matches_scikit_survival_breslow():
    from sksurv.linear_model import CoxPHSurvivalAnalysis

    rng = np.random.default_rng(0)
    n = 200
    X = rng.normal(size=(n, 3))
    T = np.round(rng.exponential(1 / np.exp(X @ np.array([0.8, -0.5, 0.0]))) * 10) + 1  # many tied times
    C = rng.integers(1, 30, size=n)
    E, T = T <= C, np.minimum(T, C).astype(float)
    ref = CoxPHSurvivalAnalysis(ties="breslow").fit(X, Surv(E, T).structured()).coef_
    w = torch.zeros(3, dtype=torch.float64, requires_grad=True)
    Xt, sets = torch.tensor(X), risk_sets(T, E)
    opt = torch.optim.LBFGS([w], max_iter=200, tolerance_grad=1e-10, tolerance_change=1e-14,
                            line_search_fn="strong_wolfe")

    def closure():
        opt.zero_grad()
        loss = cox_nll(Xt @ w, sets)
        loss.backward()
        return loss

    opt.step(closure)
    assert np.allclose(w.detach().numpy(), ref, atol=1e-4)


def _planted(n=400, seed=0, strata=False):
    rng = np.random.default_rng(seed)
    X = rng.normal(size=(n, 6))
    s = np.where(rng.random(n) < 0.5, "a", "b")
    base = np.where(s == "a", 0.05, 0.5) if strata else 0.2
    T = rng.exponential(1 / (base * np.exp(1.2 * X[:, 0] - 0.8 * X[:, 1])))
    C = rng.uniform(0, 15, n)
    return X, Surv(T <= C, np.minimum(T, C)), s


def test_deep_cox_learns_a_planted_risk_stratified_or_not():
    X, y, s = _planted(strata=True)
    tr, te = np.arange(300), np.arange(300, 400)
    for strata in (None, s):
        model = train_deep_cox(X[tr[:240]], y.time[tr[:240]], y.event[tr[:240]],
                               None if strata is None else strata[tr[:240]], X_val=X[tr[240:]],
                               time_val=y.time[tr[240:]], event_val=y.event[tr[240:]],
                               strata_val=None if strata is None else strata[tr[240:]],
                               hidden=[16], max_epochs=300, patience=30, lr=1e-2, seed=1)
        assert harrell_stratified(y.take(te), model.predict(X[te]), s[te]) > 0.72
        assert model.history["val_loss"] and model.best_epoch < len(model.history["train_loss"])


def test_coxnet_with_strata_and_breslow_baselines():
    from fusionkit_plugins.tasks.survival.models import BaselineHazards, cv_folds, fit_coxnet, prepare_features
    from sksurv.nonparametric import nelson_aalen_estimator

    X, y, s = _planted(strata=True, seed=2)
    tr, te = np.arange(300), np.arange(300, 400)
    Ztr, Zte = prepare_features(X[tr], X[te], None, 0, s[tr], s[te])
    val = np.zeros(300, bool)
    val[240:] = True
    r_tr, r_te, info = fit_coxnet(Ztr, y.take(tr), Zte, val, strata_tr=s[tr], strata_te=s[te])
    assert info["alpha"] > 0 and info["nonzero"] >= 2 and not info.get("failed")
    assert harrell_stratified(y.take(te), r_te, s[te]) > 0.72
    # alpha by 5-fold cross-validation over the training rows (folds stratified by stratum): the same signal
    folds = cv_folds(np.char.add(s[tr].astype(str), y.event[tr].astype(str)), 5, seed=0)
    assert sorted(np.bincount(folds).tolist()) == [60] * 5
    for st in np.unique(s[tr]):  # every fold holds about a fifth of each stratum
        assert np.ptp(np.bincount(folds[s[tr] == st], minlength=5)) <= 2
    rare = cv_folds(np.array(["a"] * 20 + ["b"] * 3), 5, seed=1)  # a stratum smaller than the folds
    assert sorted(np.bincount(rare).tolist()) == [4, 4, 5, 5, 5] and len(set(rare[20:])) == 3
    assert sorted(cv_folds(np.array(["a", "b", "c"]), 5, seed=1).tolist()) == [0, 1, 2]  # fewer rows than folds
    r_tr5, r_te5, info5 = fit_coxnet(Ztr, y.take(tr), Zte, val, strata_tr=s[tr], strata_te=s[te], folds=folds)
    assert info5["cv_folds"] == 5 and info5["nonzero"] >= 2 and info["cv_folds"] == 1
    assert harrell_stratified(y.take(te), r_te5, s[te]) > 0.72
    # zero risk: the Breslow baseline of a stratum is its Nelson-Aalen cumulative hazard
    base = BaselineHazards.fit(np.zeros(300), y.take(tr), s[tr])
    m = s[tr] == "a"
    t_na, h_na = nelson_aalen_estimator(y.event[tr][m], y.time[tr][m])
    got = base.baseline(np.array(["a"]), t_na)[0]
    assert np.allclose(got, h_na)


# ----------------------------------------------------------------------------- metrics

def test_harrell_by_hand_with_censoring_and_tied_risks():
    y = Surv([1, 0, 1, 1, 0], [1, 2, 3, 4, 5])
    # comparable pairs: (0,1..4) 4 concordant; (2,3) tied risk 0.5, (2,4) concordant; (3,4) concordant
    assert harrell(y, [5, 4, 3, 3, 1]) == pytest.approx(6.5 / 7)
    assert harrell(y, [1, 2, 3, 4, 5]) == pytest.approx(0.0)
    assert math.isnan(harrell(Surv([0, 0], [1, 2]), [1, 2]))  # no event: undefined


def test_stratified_harrell_only_compares_within_strata():
    y = Surv([1, 1, 0, 1, 1, 0], [1, 2, 3, 10, 20, 30])
    risk = np.array([3, 2, 1, 30, 20, 10])  # perfect inside each stratum, reversed across
    strata = np.array(["a"] * 3 + ["b"] * 3)
    assert harrell_stratified(y, risk, strata) == pytest.approx(1.0)
    assert harrell(y, risk) < 0.7


def _censoring_km(y_train, t):
    """Kaplan-Meier of the censoring distribution, G(t) (right-continuous)."""
    times = np.unique(y_train.time)
    G, out = 1.0, {}
    for u in times:
        at_risk = (y_train.time >= u).sum()
        cens = ((y_train.time == u) & ~y_train.event).sum()
        G *= 1 - cens / at_risk
        out[u] = G
    keys = np.array(sorted(out))
    return np.array([out[keys[np.searchsorted(keys, x, side="right") - 1]] for x in np.atleast_1d(t)])


def test_uno_against_the_library_and_a_hand_formula():
    from sksurv.metrics import concordance_index_ipcw

    rng = np.random.default_rng(3)
    n = 120
    risk_true = rng.normal(size=n)
    T = rng.exponential(np.exp(-risk_true))
    C = rng.exponential(1.5, n)
    y = Surv(T <= C, np.minimum(T, C))
    tr, te = np.arange(80), np.arange(80, 120)
    ytr, yte = y.take(tr), y.take(te)
    est = risk_true[te] + rng.normal(0, 0.5, 40)
    tau = float(np.quantile(yte.time, 0.8))
    ours = uno(ytr, yte, est, tau=tau)
    assert ours == pytest.approx(concordance_index_ipcw(ytr.structured(), yte.structured(), est, tau=tau)[0])
    # hand formula: sum_ij d_i G(T_i)^-2 [T_i < T_j, T_i < tau] [est_i > est_j] / same without the risk term
    G = _censoring_km(ytr, yte.time)
    w = np.where(yte.event & (yte.time < tau) & (G > 0), 1.0 / np.maximum(G, 1e-12) ** 2, 0.0)
    num = den = 0.0
    for i in range(40):
        later = yte.time > yte.time[i]
        den += w[i] * later.sum()
        num += w[i] * ((est[i] > est[later]).sum() + 0.5 * (est[i] == est[later]).sum())
    assert ours == pytest.approx(num / den, abs=1e-9)


def test_km_and_logrank_against_lifelines():
    lifelines = pytest.importorskip("lifelines")
    from lifelines.statistics import multivariate_logrank_test

    rng = np.random.default_rng(4)
    g = np.repeat(["low", "mid", "high"], 40)
    T = rng.exponential(np.where(g == "high", 1.0, np.where(g == "mid", 2.0, 3.0)))
    C = rng.uniform(0, 5, len(g))
    y = Surv(T <= C, np.round(np.minimum(T, C), 1) + 0.1)  # rounded: tied times
    t, s = km_curve(y)
    kmf = lifelines.KaplanMeierFitter().fit(y.time, y.event)
    assert np.allclose(s, kmf.survival_function_at_times(t).to_numpy())
    ours = logrank(y, g)
    ref = multivariate_logrank_test(y.time, g, y.event)
    assert ours["p"] == pytest.approx(ref.p_value, rel=1e-6) and ours["chi2"] == pytest.approx(ref.test_statistic)
    assert ours["df"] == 2 and ours["p"] < 0.01
    assert math.isnan(logrank(y, np.full(len(g), "one"))["p"])


def test_time_dependent_auc_and_brier_against_the_library():
    from sksurv.metrics import cumulative_dynamic_auc, integrated_brier_score

    rng = np.random.default_rng(5)
    risk = rng.normal(size=300)
    T = rng.exponential(np.exp(-risk))
    C = rng.exponential(2.0, 300)
    y = Surv(T <= C, np.minimum(T, C))
    ytr, yte = y.take(np.arange(200)), y.take(np.arange(200, 300))
    hs = [0.3, 1.0, 1e6]  # the last horizon lies beyond the follow-up: nan, not an error
    got = td_auc(ytr, yte, np.tile(risk[200:, None], (1, 3)), hs)
    ref, _ = cumulative_dynamic_auc(ytr.structured(), yte.structured(), risk[200:], hs[:2])
    assert np.allclose(got[:2], ref) and math.isnan(got[2]) and got[0] > 0.6
    times = np.linspace(0.2, 1.0, 10)
    S = np.exp(-np.outer(np.exp(risk[200:]), times))  # the true survival functions
    assert ibs(ytr, yte, S, times) == pytest.approx(
        integrated_brier_score(ytr.structured(), yte.structured(), S, times))
    flat = np.tile(np.linspace(0.9, 0.5, 10), (100, 1))
    assert ibs(ytr, yte, S, times) < ibs(ytr, yte, flat, times)


# ----------------------------------------------------------------------------- readers

def _clinical_table(path: Path) -> None:
    pd.DataFrame({
        "patient_id": ["TCGA-AA-0001", "TCGA-AA-0002", "TCGA-AA-0003", "TCGA-BB-0001", "TCGA-BB-0002"],
        "cancer_type": ["BRCA", "BRCA", "BRCA", "THCA", "THCA"],
        "gender": ["FEMALE", "FEMALE", "FEMALE", "MALE", "FEMALE"],
        "age_at_diagnosis": [50.0, 61.0, None, 33.0, 45.0],
        "ajcc_pathologic_tumor_stage_cdr": ["Stage IIA", "Stage IV", "Stage X", "Stage I", None],
        "vital_status_cdr": ["Dead", "Alive", "Alive", "Alive", "Dead"],
        "tumor_status_cdr": ["WITH TUMOR", "TUMOR FREE", None, "TUMOR FREE", "WITH TUMOR"],
        "OS": [1, 0, 0, None, 1], "OS_time_days": [734.0, 2000.0, 0.0, 300.0, None],
        "PFI": [1, 0, 0, 0, 1], "PFI_time_days": [400.0, 2000.0, 15.0, 300.0, 90.0],
    }).to_csv(path, index=False)


def test_clinical_endpoints_are_labels_and_never_annotation_text(tmp_path):
    from fusionkit_plugins.readers.clinical import ClinicalSentencesReader, coarse_stage, is_outcome_field

    path = tmp_path / "clin.csv"
    _clinical_table(path)
    ds = ClinicalSentencesReader(path=str(path), shared_fields_only=False).read(None)
    assert ds.labels["OS"] == {"TCGA-AA-0001": 1, "TCGA-AA-0002": 0}
    assert ds.labels["OS_time"] == {"TCGA-AA-0001": 734.0, "TCGA-AA-0002": 2000.0}
    assert len(ds.labels["PFI"]) == 5 and "DSS" not in ds.labels  # no DSS columns in this table
    assert {"OS_time", "PFI_time", "age_at_diagnosis"} <= ds.continuous_labels
    note = next(n for n in ds.notes if "endpoint OS" in n)
    assert "kept for 2" in note and "dropped 2 with a missing" in note and "1 with a time <= 0" in note
    assert ds.labels["stage"] == {"TCGA-AA-0001": "II", "TCGA-AA-0002": "IV", "TCGA-BB-0001": "I"}
    assert ds.labels["age_at_diagnosis"]["TCGA-BB-0001"] == 33.0 and "TCGA-AA-0003" not in ds.labels["age_at_diagnosis"]
    md = ds.modalities["clinical"]
    fields = set(md.labels["field"])
    assert not fields & {"OS", "OS_time_days", "PFI", "PFI_time_days", "vital_status_cdr", "tumor_status_cdr"}
    text = " ".join(md.data).lower()
    for word in ("survival", "vital", "dead", "alive", "tumor free", "with tumor", "734", "progression"):
        assert word not in text, word
    assert "Age at diagnosis: 50 years." in md.data
    with pytest.raises(DataError, match="outcome fields"):
        ClinicalSentencesReader(path=str(path), fields=["gender", "vital_status_cdr"]).read(None)
    with pytest.raises(DataError, match="unknown survival endpoints"):
        ClinicalSentencesReader(path=str(path), endpoints=["EFS"]).read(None)
    with pytest.raises(DataError, match="endpoint DSS needs"):
        ClinicalSentencesReader(path=str(path), endpoints=["DSS"]).read(None)
    assert ClinicalSentencesReader(path=str(path), endpoints=[], covariates=False).read(None).labels.keys() == \
        {"cancer_type"}
    assert [coarse_stage(v) for v in ("Stage IIIC", "stage iv", "Stage X", None, "Stage I")] == \
        ["III", "IV", None, None, "I"]
    assert all(is_outcome_field(f) for f in ("OS", "DSS_time_days", "days_to_death", "vital_status"))
    assert not any(is_outcome_field(f) for f in ("gender", "age_at_diagnosis", "pathologic_stage", "prior_dx"))


@pytest.mark.realdata
def test_real_clinical_endpoints(shared_data):
    from fusionkit_plugins.readers.clinical import ClinicalSentencesReader, is_outcome_field

    ds = ClinicalSentencesReader(path=str(shared_data / "clinical" / "clinical_annotations.csv.gz"),
                                 cancers=["BRCA", "BLCA", "COAD", "STAD", "THCA", "LUAD"]).read(None)
    assert 2400 < len(ds.labels["OS"]) < 2596 and 500 < sum(ds.labels["OS"].values()) < 700
    assert min(ds.labels["OS_time"].values()) > 0
    assert not any(is_outcome_field(f) for f in set(ds.modalities["clinical"].labels["field"]))
    text = " ".join(ds.modalities["clinical"].data).lower()
    assert "survival" not in text and "vital status" not in text and "tumor status" not in text


def test_synthetic_cohort_plants_survival():
    from fusionkit_plugins.readers.synthetic import SyntheticTcgaReader

    r = SyntheticTcgaReader(n_patients=600, n_genes=200, n_mutation_genes=60, max_tiles=2, tile_size=32, seed=7)
    ds = r.read()
    pids = list(ds.labels["OS"])
    y = Surv([ds.labels["OS"][p] for p in pids], [ds.labels["OS_time"][p] for p in pids])
    cancer = np.array([ds.labels["cancer_type"][p] for p in pids])
    stage = np.array(["I II III IV".split().index(ds.labels["stage"][p]) for p in pids])
    age = np.array([ds.labels["age_at_diagnosis"][p] for p in pids])
    assert 0.2 < y.event.mean() < 0.6 and y.time.min() >= 1 and {"OS_time", "age_at_diagnosis"} <= ds.continuous_labels
    _, cancer_arr, subtype, cancers = r._cohort()
    _, _, Z = r._rna(cancer_arr, subtype, cancers)
    clinical = harrell_stratified(y, 0.45 * stage + 0.035 * age, cancer)
    assert clinical > 0.62 and harrell_stratified(y, Z[:, 0], cancer) > 0.6
    assert harrell_stratified(y, 0.45 * stage + 0.035 * age + 0.7 * Z[:, 0], cancer) > clinical + 0.02
    # per-cancer baselines differ: THCA has the fewest events, BLCA/STAD the most
    rate = {c: y.event[cancer == c].mean() for c in set(cancer)}
    assert rate["THCA"] < rate["BRCA"] < min(rate["BLCA"], rate["STAD"])
    flat = SyntheticTcgaReader(n_patients=600, n_genes=200, n_mutation_genes=60, max_tiles=2, tile_size=32, seed=7,
                               survival_strength=0.0).read()
    y0 = Surv([flat.labels["OS"][p] for p in pids], [flat.labels["OS_time"][p] for p in pids])
    assert harrell_stratified(y0, Z[:, 0], cancer) < harrell_stratified(y, Z[:, 0], cancer) - 0.05


# ----------------------------------------------------------------------------- the unit and its leak guard

def _pool(n=200, seed=0):
    from fusionkit.pool import EmbeddingPool

    rng = np.random.default_rng(seed)
    pids = [f"TCGA-SV-{i:04d}" for i in range(n)]
    cancer = {p: ("BRCA", "LUAD")[i % 2] for i, p in enumerate(pids)}
    a = rng.normal(size=n)
    arrays = {}
    for mi, mod in enumerate(("rna", "mutation")):
        X = rng.normal(size=(2 * n, 8)).astype(np.float32)
        X[:, mi] += 3 * np.repeat(a, 2)  # each item carries its patient's risk factor
        arrays[mod] = (X, [p for p in pids for _ in range(2)])
    T = rng.exponential(1 / (0.3 * np.exp(a)))
    C = rng.uniform(0, 8, n)
    labels = {"cancer_type": cancer, "OS": dict(zip(pids, (T <= C).astype(int).tolist())),
              "OS_time": dict(zip(pids, (365.25 * np.minimum(T, C) + 1).tolist())),
              "age_at_diagnosis": {p: float(50 + i % 30) for i, p in enumerate(pids)},
              "stage": {p: ("I", "II", "III")[i % 3] for i, p in enumerate(pids)}}
    return EmbeddingPool.from_arrays(arrays, labels=labels), pids, labels


def _job(pids, labels, train, test, features):
    return {"surv": {p: [labels["OS"][p], labels["OS_time"][p]] for p in pids},
            "cancer": labels["cancer_type"], "covariates": {p: [labels["age_at_diagnosis"][p], labels["stage"][p]]
                                                             for p in pids},
            "covariate_kinds": ["numeric", "categorical"], "models": ["coxnet", "deep"],
            "cfg": {"n_components": 4, "l1_ratio": 0.5, "hidden": [8], "dropout": 0.1, "lr": 1e-2,
                    "weight_decay": [1e-3], "max_epochs": 60, "patience": 10},
            "stratify": True, "horizons": [1.0, 3.0], "reference_years": 3.0, "tau_years": 3.0, "train_draws": 1,
            "train": train, "test": test, "val": train[: len(train) // 5], "k": 2, "r": 2, "features": features,
            "seed_train": 1, "seed_test": 2, "seed_model": 3}


def test_unit_builds_each_split_from_its_own_patients(monkeypatch):
    from fusionkit_plugins.sampling.aggregators import SumAggregator
    from fusionkit_plugins.sampling.samplers import PatientLevelSampler
    from fusionkit_plugins.tasks.patient import common
    from fusionkit_plugins.tasks.survival.unit import survival_unit

    pool, pids, labels = _pool()
    builder = common.AggregateBuilder(pool=pool, sampler=PatientLevelSampler(k=2, repeats=2, min_modalities=1),
                                      aggregator=SumAggregator())
    train, test = pids[:150], pids[150:]
    seen = []
    original = common.AggregateBuilder.plan

    def spy(self, patients, k, r, seed):
        plan, sub = original(self, patients, k, r, seed)
        owners = {m: set(pool.views[m].patient_ids[plan.item[(plan.mod == i) & ~plan.noise]])
                  for i, m in enumerate(plan.modalities)}
        seen.append((set(patients), owners))
        return plan, sub

    monkeypatch.setattr(common.AggregateBuilder, "plan", spy)
    out = survival_unit(builder, _job(pids, labels, train, test, ["multimodal", "rna", "clinical", "cancer",
                                                                  "late-fusion", "clinical+late-fusion"]))
    train_plans = [o for p, o in seen if p <= set(train)]
    assert len(train_plans) == 2 and len(seen) == 4  # multimodal and rna, each: one train and one test plan
    for patients, owners in seen:
        for who in owners.values():
            assert who <= patients  # every draw of a split's aggregate belongs to that split
    for owners in train_plans:
        assert not any(o & set(test) for o in owners.values())  # no test patient's draw in a training aggregate
    res = out["features"]
    assert set(res["multimodal"]["models"]) == {"coxnet", "deep"} and set(res["cancer"]["models"]) == {"baseline"}
    assert sorted(res["multimodal"]["test_ids"]) == sorted(test)
    assert res["cancer"]["models"]["baseline"]["overall"]["c_stratified"] == 0.5
    assert res["multimodal"]["models"]["coxnet"]["overall"]["c_stratified"] > 0.6  # the planted factor
    assert sorted(res["late-fusion"]["test_ids"]) == sorted(test) and res["late-fusion"]["n_train"] == 150
    assert res["late-fusion"]["models"]["coxnet"]["overall"]["c_stratified"] > 0.6  # means keep it too
    assert sorted(res["clinical+late-fusion"]["test_ids"]) == sorted(test)
    from fusionkit.unitcodec import decode_unit, encode_unit

    assert decode_unit(encode_unit("k", out), key="k")["features"]["rna"]["n_train"] == 150  # plain data


def test_unit_raises_on_a_patient_in_both_splits():
    from fusionkit_plugins.sampling.aggregators import SumAggregator
    from fusionkit_plugins.sampling.samplers import PatientLevelSampler
    from fusionkit_plugins.tasks.patient.common import AggregateBuilder
    from fusionkit_plugins.tasks.survival.unit import survival_unit

    pool, pids, labels = _pool()
    builder = AggregateBuilder(pool=pool, sampler=PatientLevelSampler(k=2, repeats=2), aggregator=SumAggregator())
    with pytest.raises(FusionkitError, match="patient leak"):
        survival_unit(builder, _job(pids, labels, pids[:150], pids[145:], ["multimodal"]))


def test_late_fusion_features_are_reduced_per_modality():
    """Each modality's block of means gets its own PCA (fitted on training rows), then the flags; a block
    no training patient has and constant flags are left out."""
    from fusionkit_plugins.tasks.survival.unit import _late_blocks

    rng = np.random.default_rng(0)
    X = rng.normal(size=(100, 3 * 10 + 3))
    X[:, 20:30] = 0  # a third modality nobody has
    X[:, 30], X[:, 31], X[:, 32] = 1, np.arange(100) < 50, 0
    X[50:, 10:20] = 0  # the second modality: half the patients
    job = {"cfg": {"n_components": 4}, "seed_model": 1}
    Ztr, Zte = _late_blocks(X[:80], X[80:], [10, 10, 10], job, None, None)
    assert Ztr.shape == (80, 4 + 4 + 3) and Zte.shape == (20, 11)
    assert np.allclose(Ztr[:, :4].mean(axis=0), 0) and np.allclose(Ztr[:, :4].std(axis=0), 1)
    # the first block alone: the same as preparing it on its own
    from fusionkit_plugins.tasks.survival.models import prepare_features

    a, b = prepare_features(X[:80, :10], X[80:, :10], 4, 1, None, None)
    assert np.allclose(Ztr[:, :4], a) and np.allclose(Zte[:, :4], b)


def test_unit_keys_change_with_the_unit_code(tmp_path, monkeypatch):
    """The run's code key (RunContext.unit_key -> cachekeys.closure_fingerprint) covers the sources the
    survival units run (unit, models, metrics...), not only the task class's module, so an edit there is
    not answered from the cache."""
    from pathlib import Path

    from fusionkit.cachekeys import closure_fingerprint
    from fusionkit_plugins.tasks.survival.task import SurvivalTask

    def unit_code():
        return closure_fingerprint(SurvivalTask)

    before = unit_code()
    assert before == unit_code()
    real = Path.read_bytes

    def edited(self):
        data = real(self)
        return data + b"# edited" if self.name == "models.py" else data

    monkeypatch.setattr(Path, "read_bytes", edited)
    assert unit_code() != before


def test_clinical_matrix_is_encoded_from_training_rows_only():
    from fusionkit_plugins.tasks.survival.unit import clinical_matrix

    rows = [[50.0, "I"], [None, "II"], [70.0, None], [90.0, "IV"]]
    train = np.array([True, True, True, False])
    M = clinical_matrix(rows, ["numeric", "categorical"], train)
    # age (median fill 60), age missing, stage I, stage II, stage unknown (IV unseen in training -> unknown)
    assert M.tolist() == [[50, 0, 1, 0, 0], [60, 1, 0, 1, 0], [70, 0, 0, 0, 1], [90, 0, 0, 0, 1]]


# ----------------------------------------------------------------------------- the task through the engine

RECIPE = """schema: 1
name: sv
seed: 3
width: 16
data:
  reader: {{name: synthetic-tcga, params: {{n_patients: 360, n_genes: 200, n_mutation_genes: 60, seed: 3,
            cancers: [BRCA, LUAD, STAD]}}}}
modalities:
  rna: {{encoder: {{name: pca, params: {{dim: 16}}}}}}
  mutation: {{encoder: {{name: pca, params: {{dim: 16}}}}}}
sampling:
  patients: {{name: patient-level, params: {{k: 3, repeats: 2, min_modalities: 1}}}}
aggregator: sum
output: {{save_aggregates: false}}
tasks:
  survival:
    name: survival
    params: {{n_repeats: {n}, grid: {{k: [1, 3], repeats: [2]}}, max_epochs: 80, patience: 15, n_components: 8,
             weight_decay: [0.001], hidden: [16], modality_weights: search}}
"""


def test_survival_task_through_the_engine(tmp_path):
    from fusionkit import engine, plugins
    from fusionkit.recipe import load_recipe

    path = tmp_path / "r.yaml"
    path.write_text(RECIPE.format(n=3))
    system = plugins.load(env={})
    out = tmp_path / "out"
    engine.run(load_recipe(path, system), system, out_dir=out, progress=False)
    res = json.loads((out / "metrics.json").read_text())["survival"]
    s = res["summary"]
    assert s["endpoint"] == "OS" and s["stratify_by"] == "cancer_type" and (s["k"], s["repeats"]) == (3, 2)
    assert s["features"] == ["multimodal", "clinical+multimodal", "clinical", "cancer", "late-fusion",
                             "clinical+late-fusion", "rna", "mutation"]
    table = {(r["features"], r["model"]): r for r in s["table"]}
    assert table[("cancer", "baseline")]["c_stratified"]["mean"] == 0.5
    for key in (("multimodal", "coxnet"), ("clinical", "deep"), ("rna", "coxnet")):
        stat = table[key]["c_stratified"]
        assert stat["n"] == 3 and stat["ci_low"] <= stat["mean"] <= stat["ci_high"]
        assert {"c_harrell", "c_uno", "auc_1y", "auc_3y", "auc_5y", "ibs"} <= set(table[key])
    assert table[("clinical", "coxnet")]["c_stratified"]["mean"] > 0.6  # planted age + stage effect
    assert set(s["per_cancer"]) == {"BRCA", "LUAD", "STAD"} and s["per_cancer"]["BRCA"]["events"] > 0
    comparisons = {(p["comparison"], p["model"], p["scope"]) for p in s["paired"]}
    assert ("clinical+multimodal - clinical", "coxnet", "all") in comparisons
    assert {("late-fusion - clinical", "coxnet", "all"), ("multimodal - late-fusion", "deep", "all"),
            ("clinical+late-fusion - clinical", "coxnet", "all")} <= comparisons
    assert "age + stage" in s["statement"] and s["target"]["threshold"] == 0.65
    assert set(s["cindex_grid"]["coxnet"]) == {"1x2", "3x2"}
    names = {Path(f).name for f in res["figures"]}
    assert {"km_multimodal_coxnet.png", "km_clinical_coxnet.png", "cindex_grid_coxnet.png",
            "cindex_by_cancer_coxnet.png"} <= names
    assert all(Path(f).exists() for f in res["figures"])
    runs = pd.read_csv(out / "survival" / "runs.csv")
    assert len(runs) == 3 * (2 * 7 + 1) + 3 * 2  # main point: 7 feature sets x 2 models + baseline; other: 2
    main = runs[runs["k"] == 3]
    paired = main[main["features"].isin(["multimodal", "clinical+multimodal", "clinical", "cancer", "late-fusion",
                                         "clinical+late-fusion"])]
    assert (paired.groupby("repeat")["n_test"].nunique() == 1).all()  # the same test patients, repeat by repeat
    n_all = paired.groupby("repeat")["n_test"].first()
    for fs in ("rna", "mutation"):  # single modalities: the test patients who have it
        n_single = main[main["features"] == fs].groupby("repeat")["n_test"].first()
        assert (n_single <= n_all).all() and (n_single > 0.7 * n_all).all()
    km = pd.read_csv(out / "survival" / "km_groups.csv")
    assert set(km["group"]) == {"low", "mid", "high"} and km["logrank_p"].between(0, 1).all()
    assert any(r["metric"].startswith("c-index within cancer, multimodal") for r in res["paper_comparison"])
    html = (out / "report.html").read_text()
    assert "Task: survival" in html and "km multimodal coxnet" in html and "within-cancer c" in html
    assert set(s["coverage"]) == {"1x2", "3x2"} and set(s["coverage"]["3x2"]) == {"rna", "mutation"}
    assert s["coverage"]["3x2"]["rna"]["share"] > 0.95  # one item per patient: missing only with no rna draw
    assert sum(sum(c.values()) for c in s["weights_chosen"].values()) == 2 * 3  # one choice per unit
    allowed = {"none"} | {f"{m}={f:g}" for m in ("rna", "mutation") for f in (0.5, 2)}
    assert set().union(*s["weights_chosen"].values()) <= allowed
    assert set(runs[runs["features"] == "multimodal"]["hp_weights"]) <= allowed
    from fusionkit.report import load_run, results_markdown  # what `fusionkit results` prints

    md = results_markdown(load_run(out))
    section = md[md.index("## Survival (survival)"):]
    assert "What a patient's aggregate holds" in section and "weights chosen" in section
    assert "| multimodal | coxnet |" in section and "| clinical | deep |" in section and "| BRCA |" in section
    assert "clinical+multimodal - clinical" in section and "age + stage" in section


def test_survival_recipe_errors_name_the_parameter(tmp_path):
    from fusionkit import plugins
    from fusionkit.errors import RecipeError
    from fusionkit.recipe import load_recipe

    bad = RECIPE.format(n=1).replace("n_components: 8", "n_components: 8, models: [cox], features: [genes], "
                                                         "test_fraction: 1.5, horizons: [-1], stratify_by: stage, "
                                                         "repeats_as: sideways")
    path = tmp_path / "r.yaml"
    path.write_text(bad)
    with pytest.raises(RecipeError) as err:
        load_recipe(path, plugins.load(env={}))
    text = str(err.value)
    for fragment in ("unknown survival model 'cox'", "unknown feature set 'genes'", "test_fraction",
                     "n_repeats must be >= 2", "horizons must be positive", "stratify_by must be null or",
                     "repeats_as must be one of concat, mean"):
        assert fragment in text, fragment


def test_survival_task_without_endpoint_labels_says_how_to_fix(tmp_path):
    from fusionkit_plugins.tasks.survival.task import _endpoint_values

    pool, pids, _ = _pool(n=20)
    with pytest.raises(DataError, match="no DSS / DSS_time labels") as err:
        _endpoint_values(pool, np.array(pids), "DSS")
    assert "clinical-sentences" in err.value.hint


# ----------------------------------------------------------------------------- real data

REAL = """schema: 1
name: sv_real
seed: 7
width: 64
vars: {{root: "{root}"}}
data:
  reader: {{name: tcga-folder, params: {{root: "${{root}}", modalities: [rna, mutation], clinical: true}}}}
modalities:
  rna: {{encoder: {{name: pca, params: {{dim: 64}}}}}}
  mutation: {{encoder: {{name: pca, params: {{dim: 64}}}}}}
sampling:
  patients: {{name: patient-level, params: {{k: 5, repeats: 5, min_modalities: 1}}}}
aggregator: sum
output: {{save_aggregates: false}}
tasks:
  survival:
    name: survival
    params: {{endpoint: OS, stratify_by: cancer_type, n_repeats: 10, models: [coxnet],
             features: [multimodal, clinical+multimodal, clinical, cancer]}}
"""


@pytest.mark.realdata
def test_real_os_survival_with_clinical_baselines(shared_data, tmp_path):
    """OS on ../shared/data (PCA stand-ins for the encoders, to fit a test): 10 repeats with CIs, per cancer,
    next to age + stage and the cancer alone; the full recipe's numbers are in docs/RESULTS.md."""
    from fusionkit import engine, plugins
    from fusionkit.recipe import load_recipe

    path = tmp_path / "r.yaml"
    path.write_text(REAL.format(root=shared_data))
    system = plugins.load(env={})
    out = tmp_path / "out"
    engine.run(load_recipe(path, system), system, out_dir=out, progress=False)
    s = json.loads((out / "metrics.json").read_text())["survival"]["summary"]
    assert 2000 < s["cohort"]["patients"] <= 2541 and 450 < s["cohort"]["events"] <= 599
    table = {(r["features"], r["model"]): r for r in s["table"]}
    for key in (("multimodal", "coxnet"), ("clinical", "coxnet"), ("clinical+multimodal", "coxnet")):
        stat = table[key]["c_stratified"]
        assert stat["n"] == 10 and 0.5 < stat["mean"] < 0.9 and stat["ci_high"] - stat["ci_low"] < 0.1, (key, stat)
    assert table[("clinical", "coxnet")]["c_stratified"]["mean"] > 0.62  # age + stage predict OS in TCGA
    cancer = table[("cancer", "baseline")]
    assert cancer["c_stratified"]["mean"] == 0.5 and cancer["c_harrell"]["mean"] > 0.6  # cancer ranks across
    assert set(s["per_cancer"]) == {"BLCA", "BRCA", "COAD", "LUAD", "STAD", "THCA"}
    assert s["per_cancer"]["BRCA"]["multimodal / coxnet"]["n"] == 10
    added = next(p for p in s["paired"] if p["comparison"] == "clinical+multimodal - clinical" and p["scope"] == "all")
    assert added["n"] == 10 and added["verdict"] in ("adds", "worse", "no measurable difference")


def test_modality_weights_are_chosen_by_cross_validated_partial_likelihood():
    """A modality of loud noise in the same dimensions as the prognostic one: the search scales
    it down (or the prognostic one up), by Coxnet's cross-validated partial likelihood on the
    training rows only; its losses rank the weight sets accordingly."""
    from fusionkit_plugins.tasks.patient.common import weight_candidates
    from fusionkit_plugins.tasks.survival.models import cv_folds
    from fusionkit_plugins.tasks.survival.weights import choose_weights

    rng = np.random.default_rng(0)
    n, d = 400, 12
    risk = rng.normal(size=n)
    a = rng.normal(0, 1, (n, d)) + risk[:, None] * rng.choice([-1.0, 1.0], d)  # prognostic, one direction
    b = rng.normal(0, 8, (n, d))  # loud, no signal, in the same dimensions
    y = Surv(*_events(risk, rng))
    parts = np.stack([a, b]).astype(np.float32)
    cands = weight_candidates("search", ["a", "b"], [0.25, 4])
    assert cands == [{}, {"a": 0.25}, {"a": 4.0}, {"b": 0.25}, {"b": 4.0}]
    strata = np.array(["X", "Y"])[np.arange(n) % 2]
    folds = cv_folds(np.char.add(strata, y.event.astype(str)), 5, 0)
    cfg = {"n_components": 4, "l1_ratio": 0.5}
    w, losses = choose_weights(parts, ["a", "b"], y, strata, folds, np.zeros(n, bool), 1, "mean", cands, cfg, 0)
    assert w in ({"a": 4.0}, {"b": 0.25}), losses
    assert set(losses) == {"none", "a=0.25", "a=4", "b=0.25", "b=4"}
    assert losses["b=4"] > losses["none"] > losses["b=0.25"]  # lower is better (per-event partial likelihood)


def _events(risk, rng):
    T = rng.exponential(1 / (0.3 * np.exp(risk)))
    C = rng.uniform(0, 6, len(risk))
    return (T <= C).astype(int), 365.25 * np.minimum(T, C) + 1


def test_unit_with_modality_weights_keeps_the_leak_guard_and_reports_the_choice(monkeypatch):
    from fusionkit_plugins.sampling.aggregators import SumAggregator
    from fusionkit_plugins.sampling.samplers import PatientLevelSampler
    from fusionkit_plugins.tasks.patient import common
    from fusionkit_plugins.tasks.survival.unit import survival_unit

    pool, pids, labels = _pool()
    builder = common.AggregateBuilder(pool=pool, sampler=PatientLevelSampler(k=2, repeats=2, min_modalities=1),
                                      aggregator=SumAggregator())
    train, test = pids[:150], pids[150:]
    job = {**_job(pids, labels, train, test, ["multimodal", "clinical+multimodal", "rna"]),
           "modality_weights": "search", "weight_factors": [0.25, 4], "cfg": {**_job(pids, labels, train, test, [])["cfg"],
                                                                                "cv_folds": 3}}
    out = survival_unit(builder, job)["features"]
    allowed = {"none"} | {f"{m}={f:g}" for m in ("rna", "mutation") for f in (0.25, 4)}
    for fs in ("multimodal", "clinical+multimodal"):
        info = out[fs]["models"]["coxnet"]["info"]
        assert info["weights"] in allowed and len(info["weight_losses"]) == 5
        assert out[fs]["models"]["deep"]["info"]["weights"] == info["weights"]  # one choice for both models
    assert "weights" not in out["rna"]["models"]["coxnet"]["info"]  # a single modality is not weighted
    assert out["multimodal"]["models"]["coxnet"]["overall"]["c_stratified"] > 0.6
    monkeypatch.setattr(common, "_check_disjoint", lambda *a: (_ for _ in ()).throw(FusionkitError("patient leak: x")))
    with pytest.raises(FusionkitError, match="patient leak"):  # the weighted path goes through the leak check
        survival_unit(builder, job)


def test_weight_recipe_checks_name_the_parameter():
    from fusionkit_plugins.tasks.patient.common import check_weights

    bad = check_weights({"modality_weights": "search", "weight_factors": [0, 2]}, None)
    assert bad and bad[0][0] == "params.weight_factors" and "> 0" in bad[0][1]
    bad = check_weights({"modality_weights": "search", "weight_factors": "big"}, None)
    assert bad and bad[0][0] == "params.weight_factors"
    assert check_weights({"modality_weights": "search", "weight_factors": [0.25, 4]}, None) == []
