"""Survival metrics, all from scikit-survival (imported inside the functions): Harrell's c-index
(pan-cancer and stratified), Uno's IPCW c-index, time-dependent (cumulative/dynamic) AUC at
horizons, integrated Brier score, Kaplan-Meier curves and the log-rank test.

Every function returns ``nan`` (never raises) when a metric is undefined on the data at hand: no
comparable pair, no event before a horizon, a horizon outside the test follow-up. ``mean_ci``
leaves such values out and counts the ones it used, so every summary says on how many repeats
it rests.

IPCW metrics (Uno's c, AUC, Brier) weigh test patients by the censoring distribution estimated
on the *training* patients; a test time beyond the last training time cannot be weighed, so such
test patients are censored at the last training time first (:func:`clip_to_train`), which
changes nothing at the horizons evaluated (they lie before it).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Sequence

import numpy as np

NAN = float("nan")
DAYS_PER_YEAR = 365.25

__all__ = ["Surv", "surv", "harrell", "harrell_stratified", "uno", "td_auc", "ibs", "km_curve", "logrank",
           "clip_to_train", "NAN", "DAYS_PER_YEAR"]


@dataclass
class Surv:
    """Event flags and times (days) of a set of patients."""

    event: np.ndarray
    time: np.ndarray

    def __post_init__(self) -> None:
        self.event = np.asarray(self.event).astype(bool)
        self.time = np.asarray(self.time, dtype=np.float64)

    def __len__(self) -> int:
        return int(len(self.time))

    def take(self, mask: Any) -> "Surv":
        return Surv(self.event[mask], self.time[mask])

    def structured(self) -> np.ndarray:
        """The scikit-survival structured array (fields event, time)."""
        from sksurv.util import Surv as SkSurv

        return SkSurv.from_arrays(event=self.event, time=self.time)


def surv(event: Any, time: Any) -> Surv:
    return Surv(event, time)


def _counts(y: Surv, risk: np.ndarray) -> tuple[float, float, float]:
    """(concordant, discordant, tied-risk) pairs of Harrell's c-index (scikit-survival)."""
    from sksurv.metrics import concordance_index_censored

    if len(y) < 2 or not y.event.any():
        return 0.0, 0.0, 0.0
    try:
        _, conc, disc, tied_risk, _ = concordance_index_censored(y.event, y.time, np.asarray(risk, np.float64))
    except Exception:  # sksurv raises when no pair is comparable
        return 0.0, 0.0, 0.0
    return float(conc), float(disc), float(tied_risk)


def harrell(y: Surv, risk: Any) -> float:
    """Harrell's c-index of ``risk`` (higher = earlier event); nan without a comparable pair."""
    conc, disc, tied = _counts(y, np.asarray(risk))
    total = conc + disc + tied
    return (conc + 0.5 * tied) / total if total else NAN


def harrell_stratified(y: Surv, risk: Any, strata: Any) -> float:
    """Harrell's c-index over pairs *within* a stratum only, pooled over strata.

    ``(concordant + tied/2) / comparable`` summed over strata: a stratified Cox model's risk
    scores are only comparable inside a stratum (each has its own baseline hazard).
    """
    risk = np.asarray(risk, dtype=np.float64)
    strata = np.asarray(strata).astype(str)
    conc = disc = tied = 0.0
    for s in np.unique(strata):
        m = strata == s
        a, b, c = _counts(y.take(m), risk[m])
        conc, disc, tied = conc + a, disc + b, tied + c
    total = conc + disc + tied
    return (conc + 0.5 * tied) / total if total else NAN


def clip_to_train(train: Surv, test: Surv) -> Surv:
    """Test survival with times beyond the last training time censored at (just before) it."""
    cap = float(train.time.max())
    late = test.time >= cap
    if not late.any():
        return test
    time = test.time.copy()
    event = test.event.copy()
    time[late] = np.nextafter(cap, -np.inf)
    event[late] = False
    return Surv(event, time)


def uno(train: Surv, test: Surv, risk: Any, tau: float | None = None) -> float:
    """Uno's IPCW c-index up to ``tau`` days (censoring weights from ``train``); nan when undefined."""
    from sksurv.metrics import concordance_index_ipcw

    test = clip_to_train(train, test)
    if len(test) < 2 or not test.event.any() or not train.event.any() or train.event.all() and len(train) < 2:
        return NAN
    try:
        return float(concordance_index_ipcw(train.structured(), test.structured(),
                                            np.asarray(risk, np.float64), tau=tau)[0])
    except Exception:
        return NAN


def _valid_horizons(test: Surv, horizons: Sequence[float]) -> list[float]:
    """Horizons inside the test follow-up with at least one event before and one patient after."""
    if len(test) < 2:
        return []
    lo, hi = float(test.time.min()), float(test.time.max())
    return [h for h in horizons if lo <= h < hi and (test.event & (test.time <= h)).any()]


def td_auc(train: Surv, test: Surv, risk_at: np.ndarray, horizons: Sequence[float]) -> list[float]:
    """Cumulative/dynamic AUC at each horizon (days); ``risk_at`` (n, len(horizons)) risk per horizon."""
    from sksurv.metrics import cumulative_dynamic_auc

    test = clip_to_train(train, test)
    risk_at = np.asarray(risk_at, dtype=np.float64).reshape(len(test), len(horizons))
    out = []
    ok = set(_valid_horizons(test, horizons))
    for j, h in enumerate(horizons):
        if h not in ok or np.ptp(risk_at[:, j]) == 0:
            out.append(NAN)
            continue
        try:
            auc, _ = cumulative_dynamic_auc(train.structured(), test.structured(), risk_at[:, j], [h])
            out.append(float(np.asarray(auc).ravel()[0]))
        except Exception:
            out.append(NAN)
    return out


def ibs_grid(train: Surv, test: Surv, n: int = 40) -> np.ndarray:
    """Times (days) for the integrated Brier score: the 10th to 90th percentile of the test times,
    below the last test and training times (empty when the test set is too small)."""
    test = clip_to_train(train, test)
    if len(test) < 5 or not test.event.any():
        return np.array([])
    lo, hi = np.percentile(test.time, [10, 90])
    hi = min(hi, np.nextafter(test.time.max(), -np.inf))
    if not hi > lo:
        return np.array([])
    return np.linspace(lo, hi, n)


def ibs(train: Surv, test: Surv, surv_at: np.ndarray, times: np.ndarray) -> float:
    """Integrated Brier score of survival probabilities ``surv_at`` (n, len(times)); lower is better."""
    from sksurv.metrics import integrated_brier_score

    test = clip_to_train(train, test)
    if len(times) < 2:
        return NAN
    try:
        return float(integrated_brier_score(train.structured(), test.structured(),
                                            np.asarray(surv_at, np.float64), np.asarray(times)))
    except Exception:
        return NAN


def km_curve(y: Surv) -> tuple[np.ndarray, np.ndarray]:
    """Kaplan-Meier estimate (scikit-survival): (times, survival probabilities)."""
    from sksurv.nonparametric import kaplan_meier_estimator

    if len(y) == 0:
        return np.array([]), np.array([])
    t, s = kaplan_meier_estimator(y.event, y.time)
    return np.asarray(t, dtype=np.float64), np.asarray(s, dtype=np.float64)


def logrank(y: Surv, groups: Any) -> dict[str, float]:
    """Log-rank test of equal survival across ``groups`` (scikit-survival): {chi2, p, df}; nan if undefined."""
    from sksurv.compare import compare_survival

    groups = np.asarray(groups).astype(str)
    if len(np.unique(groups)) < 2 or not y.event.any():
        return {"chi2": NAN, "p": NAN, "df": NAN}
    try:
        chi2, p = compare_survival(y.structured(), groups)
    except Exception:
        return {"chi2": NAN, "p": NAN, "df": NAN}
    return {"chi2": float(chi2), "p": float(p), "df": float(len(np.unique(groups)) - 1)}
