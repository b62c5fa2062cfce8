"""Every metric of one fitted model on one test set, pan-cancer and per cancer (a plain dict).

Risk scores of a stratified model are comparable within a stratum only, so pan-cancer
rankings use each patient's predicted log cumulative hazard at a reference time,
``log(H0_s(t_ref) + eps) + risk`` (per-stratum Breslow baseline ``H0_s``), which orders
patients by risk inside a stratum and by baseline hazard across strata; for an
unstratified Cox model it is a monotone function of the risk score, so nothing changes.

Keys (``overall`` and each ``per_cancer[c]``): ``c_harrell``, ``c_uno`` (IPCW, up to
``tau``), ``auc_<h>y`` (cumulative/dynamic AUC at horizon h years), ``ibs`` (integrated
Brier score, lower is better), ``n``, ``events``; ``overall`` also has ``c_stratified``
(Harrell's c over within-cancer pairs only: the headline when the task stratifies).
"""

from __future__ import annotations

from typing import Any, Sequence

import numpy as np

from fusionkit_plugins.tasks.survival.metrics import (DAYS_PER_YEAR, Surv, harrell, harrell_stratified, ibs,
                                                      ibs_grid, td_auc, uno)
from fusionkit_plugins.tasks.survival.models import BaselineHazards

EPS = 1e-6

__all__ = ["evaluate", "horizon_key", "METRICS"]

#: metric keys of one evaluation (besides auc_<h>y, one per horizon)
METRICS = ("c_stratified", "c_harrell", "c_uno", "ibs")


def horizon_key(years: float) -> str:
    """``auc_3y`` for 3 years (``auc_1.5y`` for 1.5)."""
    return f"auc_{float(years):g}y"


def _block(ytr: Surv, yte: Surv, risk_te: np.ndarray, pan_ref: np.ndarray, pan_h: np.ndarray,
           base: BaselineHazards, strata_te: np.ndarray | None, horizons: Sequence[float], tau: float
           ) -> dict[str, Any]:
    """The metrics of one group of test patients (everyone, or one cancer)."""
    days = [h * DAYS_PER_YEAR for h in horizons]
    grid = ibs_grid(ytr, yte)
    out: dict[str, Any] = {"n": int(len(yte)), "events": int(yte.event.sum())}
    out["c_harrell"] = harrell(yte, pan_ref)
    out["c_uno"] = uno(ytr, yte, pan_ref, tau=tau)
    for h, a in zip(horizons, td_auc(ytr, yte, pan_h, days)):
        out[horizon_key(h)] = a
    if len(grid):
        S = np.exp(-base.cumhaz(risk_te, strata_te, grid))
        out["ibs"] = ibs(ytr, yte, S, grid)
    else:
        out["ibs"] = float("nan")
    return out


def evaluate(ytr: Surv, yte: Surv, risk_tr: np.ndarray, risk_te: np.ndarray, *, strata_tr: np.ndarray | None,
             strata_te: np.ndarray | None, cancer_tr: np.ndarray, cancer_te: np.ndarray,
             horizons: Sequence[float], reference_years: float, tau_years: float) -> dict[str, Any]:
    """``{"overall": {...}, "per_cancer": {cancer: {...}}}`` of test risks ``risk_te``.

    ``strata_*``: the model's strata (None: one baseline hazard); ``cancer_*``: the cancer of
    each patient (per-cancer blocks and the within-cancer c-index); times in days, horizons in years.
    """
    risk_tr = np.asarray(risk_tr, dtype=np.float64)
    risk_te = np.asarray(risk_te, dtype=np.float64)
    cancer_tr, cancer_te = np.asarray(cancer_tr).astype(str), np.asarray(cancer_te).astype(str)
    base = BaselineHazards.fit(risk_tr, ytr, strata_tr)
    days = [h * DAYS_PER_YEAR for h in horizons]
    pan_h = np.log(base.baseline(strata_te if strata_te is not None else np.full(len(yte), "all"), days) + EPS) \
        + risk_te[:, None]
    ref = np.log(base.baseline(strata_te if strata_te is not None else np.full(len(yte), "all"),
                               [reference_years * DAYS_PER_YEAR])[:, 0] + EPS) + risk_te
    tau = tau_years * DAYS_PER_YEAR
    overall = _block(ytr, yte, risk_te, ref, pan_h, base, strata_te, horizons, tau)
    overall["c_stratified"] = harrell_stratified(yte, risk_te, cancer_te)
    per: dict[str, Any] = {}
    for c in np.unique(cancer_te):
        m, mt = cancer_te == c, cancer_tr == c
        if not mt.any():
            continue
        # within one cancer the risk score itself ranks (no baseline term can differ)
        per[str(c)] = _block(ytr.take(mt), yte.take(m), risk_te[m], risk_te[m], pan_h[m], base,
                             None if strata_te is None else strata_te[m], horizons, tau)
    return {"overall": overall, "per_cancer": per}
