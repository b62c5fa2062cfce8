"""One repeat of the survival task at one grid point (a cached unit): build each feature set's
aggregates per split, fit every model, evaluate on the test patients. Plain data in, plain data out.

Feature sets (names in ``job["features"]``):

``multimodal``           the patient aggregates of the task's sampling entry (every modality)
``<modality>``           aggregates of that modality alone (patients who have it)
``clinical``             clinical covariates (age, stage: the task's ``covariates`` labels)
``clinical+multimodal``  both, side by side (does the aggregate add to age + stage?)
``clinical+late-fusion`` age + stage beside the late-fusion reference (does anything in the embeddings add?)
``cancer``               the cancer type alone: each cancer's own baseline hazard, no covariate
``late-fusion``          the reference without sampling: per patient, the mean of each modality's stored
                         embeddings (the sampling entry's modalities), concatenated, with availability
                         flags (:mod:`fusionkit_plugins.tasks.patient.late_fusion`); what the sums lose

Aggregates of the training and the test patients are built separately, each from a pool
restricted to its own patients (:func:`fusionkit_plugins.tasks.patient.common.build_disjoint`,
whose leak guard raises when a plan draws an item of a patient outside its part). The inner
validation patients (hyper-parameters) are a part of the training patients.
"""

from __future__ import annotations

import copy
from typing import Any

import numpy as np

from fusionkit_plugins.tasks.patient import late_fusion
from fusionkit_plugins.tasks.patient.common import (AggregateBuilder, build_disjoint, build_disjoint_parts,
                                                    combine_repeats, weight_candidates, weighted_sum, weights_text)
from fusionkit_plugins.tasks.survival.evaluate import evaluate
from fusionkit_plugins.tasks.survival.metrics import Surv
from fusionkit_plugins.tasks.survival.models import cv_folds, fit_coxnet, fit_deep, prepare_features
from fusionkit_plugins.tasks.survival.weights import choose_weights

__all__ = ["survival_unit", "clinical_matrix", "CANCER_MODEL", "LATE", "CLINICAL_PLUS", "models_for"]

#: the model name of the cancer-only baseline (no covariate: per-cancer baseline hazards)
CANCER_MODEL = "baseline"
#: the feature set of per-modality patient means (no sampling): the reference the sums are measured against
LATE = "late-fusion"
#: the cache key of the chosen per-modality weights of the multimodal sums (``modality_weights``)
WEIGHTS = "__weights__"
#: prefix of a feature set with the clinical covariates beside it (clinical+multimodal, clinical+late-fusion)
CLINICAL_PLUS = "clinical+"


def models_for(features: str, models: list[str]) -> list[str]:
    return [CANCER_MODEL] if features == "cancer" else list(models)


def clinical_matrix(values: list[list[Any]], kinds: list[str], train: np.ndarray) -> np.ndarray:
    """Covariates as numbers, encoded from the ``train`` rows only.

    Numeric covariates: missing values take the training median, plus a 0/1 missing column when
    any value is missing; categorical ones: one column per training level plus ``unknown``.
    """
    cols: list[np.ndarray] = []
    for j, kind in enumerate(kinds):
        col = [row[j] for row in values]
        if kind == "numeric":
            x = np.array([np.nan if v is None else float(v) for v in col], dtype=np.float64)
            miss = ~np.isfinite(x)
            fill = np.nanmedian(x[train]) if np.isfinite(x[train]).any() else 0.0
            cols.append(np.where(miss, fill, x))
            if miss.any():
                cols.append(miss.astype(np.float64))
        else:
            s = np.array(["" if v is None else str(v) for v in col])
            levels = sorted(set(s[train].tolist()) - {""})
            cols += [(s == lv).astype(np.float64) for lv in levels]
            cols.append(~np.isin(s, levels) * 1.0)
    M = np.stack(cols, axis=1) if cols else np.zeros((len(values), 0))
    keep = M[train].std(axis=0) > 0  # constant on train: carries nothing
    return M[:, keep]


def _aggregates(builder: AggregateBuilder, job: dict[str, Any], features: str, cache: dict[str, Any]
                ) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray] | None:
    """(X_train, ids_train, X_test, ids_test) of ``multimodal`` or one modality; None without patients."""
    if features in cache:
        return cache[features]
    sub = builder
    train, test = job["train"], job["test"]
    if features != "multimodal":
        sampler = copy.copy(builder.sampler)
        sampler.set_params(modalities=[features], min_modalities=1)
        sub = AggregateBuilder(pool=builder.pool, sampler=sampler, aggregator=builder.aggregator)
        have = set(builder.pool.availability()[features].tolist())
        train = [p for p in train if p in have]
        test = [p for p in test if p in have]
    if len(train) < 10 or len(test) < 2:
        cache[features] = None
        return None
    seeds = (job["seed_train"], job["seed_test"])
    leak = "a patient is in both the training and the test aggregates"
    how = job.get("repeats_as", "mean")
    if features == "multimodal" and job.get("modality_weights"):
        Xtr, ptr, Xte, pte = _weighted(sub, job, train, test, seeds, leak, cache)
    else:
        Xtr, ptr, Xte, pte = build_disjoint(sub, train, test, job["k"], job["r"], seeds, draws=job["train_draws"],
                                            leak=leak)
    Xtr, Xte = combine_repeats(Xtr, job["r"], how), combine_repeats(Xte, job["r"], how)
    cache[features] = (Xtr, ptr, Xte, pte)
    return cache[features]


def _weighted(builder: AggregateBuilder, job: dict[str, Any], train: list[str], test: list[str],
              seeds: tuple[int, int], leak: str, cache: dict[str, Any]
              ) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """The multimodal sums with per-modality weights chosen on the training patients
    (:func:`.weights.choose_weights`; the same plans kept per modality); the choice is kept in
    ``cache[WEIGHTS]`` for the models' info."""
    Ptr, ptr, Pte, pte, mods = build_disjoint_parts(builder, train, test, job["k"], job["r"], seeds,
                                                    draws=job["train_draws"], leak=leak)
    strata = np.array([job["cancer"][p] for p in ptr]) if job["stratify"] else None
    cands = weight_candidates(job["modality_weights"], mods, job.get("weight_factors"))
    w, scores = choose_weights(Ptr, mods, _outcomes(job, ptr), strata, _folds(ptr, job), np.isin(ptr, job["val"]), job["r"],
                               job.get("repeats_as", "mean"), cands, job["cfg"], job["seed_model"])
    cache[WEIGHTS] = {"weights": weights_text(w), "weight_losses": scores}
    return weighted_sum(Ptr, mods, w), ptr, weighted_sum(Pte, mods, w), pte


def _outcomes(job: dict[str, Any], ids: Any) -> Surv:
    """(event, time) of each row's patient."""
    return Surv([job["surv"][p][0] for p in ids], [job["surv"][p][1] for p in ids])


def _late_blocks(Xtr: np.ndarray, Xte: np.ndarray, blocks: list[int], job: dict[str, Any],
                 s_tr: np.ndarray | None, s_te: np.ndarray | None) -> tuple[np.ndarray, np.ndarray]:
    """Late-fusion features prepared per modality: standardise + PCA (``n_components`` each) of every
    modality's block of means, fitted on training rows, then the availability flags; side by side.
    One PCA over the concatenation would keep the widest modality's directions (on the demo it kept
    0.52 of rna's 0.69)."""
    parts_tr, parts_te, start = [], [], 0
    for j, width in enumerate(blocks + [Xtr.shape[1] - sum(blocks)]):
        a, b = Xtr[:, start:start + width], Xte[:, start:start + width]
        start += width
        if not (a.std(axis=0) > 0).any():  # a modality no training patient has, or a constant flag
            continue
        nc = job["cfg"]["n_components"] if j < len(blocks) else None
        za, zb = prepare_features(a, b, nc, job["seed_model"] + j, s_tr, s_te)
        parts_tr.append(za)
        parts_te.append(zb)
    if not parts_tr:
        return np.zeros((len(Xtr), 0)), np.zeros((len(Xte), 0))
    return np.hstack(parts_tr), np.hstack(parts_te)


def _design(builder: AggregateBuilder, job: dict[str, Any], features: str, cache: dict[str, Any]
            ) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray] | None:
    """(Z_train, ids_train, Z_test, ids_test): prepared features of one feature set."""
    strat = job["stratify"]
    cancer = job["cancer"]
    base = features[len(CLINICAL_PLUS):] if features.startswith(CLINICAL_PLUS) else features
    if base in ("clinical", "cancer"):
        ptr, pte = np.asarray(job["train"]), np.asarray(job["test"])
        Xtr, Xte = np.zeros((len(ptr), 0)), np.zeros((len(pte), 0))
    elif base == LATE:
        ptr, pte = np.asarray(job["train"]), np.asarray(job["test"])
        if LATE not in cache:
            mods = list(getattr(builder.sampler, "modalities", None) or builder.pool.modalities)
            cache[LATE] = late_fusion.split_features(builder.pool.restrict(modalities=mods), ptr, pte)
        Xtr, Xte = cache[LATE]
        blocks = [int(builder.pool.dim)] * (Xtr.shape[1] // (int(builder.pool.dim) + 1))  # modalities, then flags
    else:
        agg = _aggregates(builder, job, base, cache)
        if agg is None:
            return None
        Xtr, ptr, Xte, pte = agg
    s_tr = np.array([cancer[p] for p in ptr]) if strat else None
    s_te = np.array([cancer[p] for p in pte]) if strat else None
    if base == LATE:  # each modality's means reduced on their own, then side by side (late fusion)
        Ztr, Zte = _late_blocks(Xtr, Xte, blocks, job, s_tr, s_te)
    else:
        Ztr, Zte = prepare_features(Xtr, Xte, job["cfg"]["n_components"], job["seed_model"], s_tr, s_te) \
            if Xtr.shape[1] else (Xtr, Xte)
    if features == "clinical" or features.startswith(CLINICAL_PLUS):
        rows = [job["covariates"][p] for p in ptr] + [job["covariates"][p] for p in pte]
        train = np.r_[np.ones(len(ptr), bool), np.zeros(len(pte), bool)]
        C = clinical_matrix(rows, job["covariate_kinds"], train)
        if C.shape[1]:
            Ctr, Cte = prepare_features(C[train], C[~train], None, 0, s_tr, s_te)
            Ztr, Zte = np.hstack([Ctr, Ztr]), np.hstack([Cte, Zte])
    return Ztr, np.asarray(ptr), Zte, np.asarray(pte)


def _folds(ptr: np.ndarray, job: dict[str, Any]) -> np.ndarray | None:
    """Coxnet's cross-validation folds of the training rows, by patient, stratified by cancer and
    event (None: ``cv_folds`` < 2, the inner validation patients alone choose alpha)."""
    n = int(job["cfg"].get("cv_folds", 1))
    if n < 2:
        return None
    pats = np.unique(ptr)
    strata = [f"{job['cancer'][p]}|{job['surv'][p][0]}" for p in pats]
    fold = dict(zip(pats.tolist(), cv_folds(np.array(strata), n, job["seed_model"]).tolist()))
    return np.array([fold[p] for p in ptr.tolist()], dtype=np.int64)


def _fit(model: str, Ztr: np.ndarray, ytr: Surv, Zte: np.ndarray, val: np.ndarray, strata: tuple | None,
         job: dict[str, Any], offset: int, folds: np.ndarray | None = None
         ) -> tuple[np.ndarray, np.ndarray, dict[str, Any]]:
    """(train risk, test risk, info) of one model; ``strata``: (train strata, test strata) or None."""
    if model == CANCER_MODEL or Ztr.shape[1] == 0:
        return np.zeros(len(Ztr)), np.zeros(len(Zte)), {}
    s_tr, s_te = strata if strata is not None else (None, None)
    if model == "coxnet":
        return fit_coxnet(Ztr, ytr, Zte, val, strata_tr=s_tr, strata_te=s_te, l1_ratio=job["cfg"]["l1_ratio"],
                          folds=folds)
    return fit_deep(Ztr, ytr, Zte, val, strata_tr=s_tr, cfg=job["cfg"], seed=job["seed_model"] + offset)


def _one_feature_set(builder: AggregateBuilder, job: dict[str, Any], features: str, cache: dict[str, Any]
                     ) -> dict[str, Any] | None:
    design = _design(builder, job, features, cache)
    if design is None:
        return None
    Ztr, ptr, Zte, pte = design
    cancer = job["cancer"]
    ytr, yte = _outcomes(job, ptr), _outcomes(job, pte)
    c_tr = np.array([cancer[p] for p in ptr])
    c_te = np.array([cancer[p] for p in pte])
    val = np.isin(ptr, job["val"])
    out: dict[str, Any] = {"test_ids": pte.astype(str), "n_train": int(len(set(ptr.tolist()))), "models": {}}
    for i, model in enumerate(models_for(features, job["models"])):
        stratified = job["stratify"] or model == CANCER_MODEL
        risk_tr, risk_te, info = _fit(model, Ztr, ytr, Zte, val, (c_tr, c_te) if stratified else None, job, 101 * i,
                                      _folds(ptr, job) if model == "coxnet" else None)
        ev = evaluate(ytr, yte, risk_tr, risk_te, strata_tr=c_tr if stratified else None,
                      strata_te=c_te if stratified else None,
                      cancer_tr=c_tr, cancer_te=c_te, horizons=job["horizons"],
                      reference_years=job["reference_years"], tau_years=job["tau_years"])
        if features.endswith("multimodal") and WEIGHTS in cache:
            info = {**info, **cache[WEIGHTS]}
        out["models"][model] = {**ev, "info": info, "risk": risk_te.astype(np.float32)}
    return out


def survival_unit(builder: AggregateBuilder, job: dict[str, Any]) -> dict[str, Any]:
    """Every feature set and model of one repeat at one grid point: ``{features: result or None}``."""
    cache: dict[str, Any] = {}
    return {"features": {fs: _one_feature_set(builder, job, fs, cache) for fs in job["features"]}}
