"""Survival models on patient features: penalised Cox (scikit-survival's Coxnet), the deep Cox
network (:mod:`.cox`), per-stratum Breslow baseline hazards, and the feature preparation they share.

Preparation (fitted on the training patients only): standardise, then PCA to ``n_components``
(aggregates are 768 wide, 768 x r with repeats_as: concat; a few hundred to a few thousand
patients), then, when the task stratifies, centre every component per stratum.

Stratification (``stratify_by: cancer_type``):

* **deep Cox** uses a truly stratified partial likelihood: risk sets never mix strata
  (:func:`.cox.cox_nll` with ``strata``).
* **Coxnet** has no strata. We (1) centre each feature per stratum on the training patients,
  so the features cannot carry the stratum's mean risk, and (2) add the stratum indicators
  (k - 1 columns) *unpenalised* (``penalty_factor`` 0), so each stratum gets its own baseline
  level (proportional baselines across strata). Its risk scores are then compared within a
  stratum only (stratified c-index), and survival curves use one Breslow baseline hazard per
  stratum (:class:`BaselineHazards`): per-cancer baseline hazards, one shared coefficient vector.

Hyper-parameters are chosen on the training patients only (never on test), each by a validation
partial log-likelihood (within strata when the task stratifies; smoother than a c-index on a small
validation part): Coxnet's ``alpha`` on its path by K-fold cross-validation over the training
patients (``folds``; one inner split of ~100 events picked the all-zero model in 2-5 of 10 repeats
where a signal exists), the deep model's weight decay (and its epoch, by early stopping) on the
inner validation split.
"""

from __future__ import annotations

import warnings
from dataclasses import dataclass, field
from typing import Any, Sequence

import numpy as np

from fusionkit_plugins.tasks.survival.metrics import Surv, harrell, harrell_stratified

__all__ = ["prepare_features", "fit_coxnet", "fit_deep", "BaselineHazards", "val_cindex"]


def prepare_features(Xtr: np.ndarray, Xte: np.ndarray, n_components: int | None, seed: int,
                     strata_tr: np.ndarray | None = None, strata_te: np.ndarray | None = None
                     ) -> tuple[np.ndarray, np.ndarray]:
    """Standardise + PCA (fitted on train), then per-stratum centring when strata are given."""
    from sklearn.decomposition import PCA

    Xtr = np.asarray(Xtr, dtype=np.float64)
    Xte = np.asarray(Xte, dtype=np.float64)
    mu, sd = Xtr.mean(axis=0), Xtr.std(axis=0)
    sd = np.where(sd > 1e-8, sd, 1.0)
    Ztr, Zte = (Xtr - mu) / sd, (Xte - mu) / sd
    if n_components and int(n_components) < min(Ztr.shape):
        pca = PCA(n_components=int(n_components), random_state=int(seed) % (2 ** 32), svd_solver="randomized")
        Ztr = pca.fit_transform(Ztr)
        Zte = pca.transform(Zte) if len(Zte) else np.zeros((0, Ztr.shape[1]))
        s = Ztr.std(axis=0)
        s = np.where(s > 1e-8, s, 1.0)
        Ztr, Zte = Ztr / s, Zte / s
    if strata_tr is not None:
        Ztr, Zte = _centre(Ztr, Zte, np.asarray(strata_tr).astype(str), np.asarray(strata_te).astype(str))
    return Ztr, Zte


def _centre(Ztr: np.ndarray, Zte: np.ndarray, s_tr: np.ndarray, s_te: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    Ztr, Zte = Ztr.copy(), Zte.copy()
    for s in np.unique(s_tr):
        mean = Ztr[s_tr == s].mean(axis=0)
        Ztr[s_tr == s] -= mean
        Zte[s_te == s] -= mean
    return Ztr, Zte


def strata_indicators(strata: np.ndarray, levels: Sequence[str]) -> np.ndarray:
    """(n, len(levels) - 1) 0/1 columns, the first level as reference."""
    strata = np.asarray(strata).astype(str)
    return np.stack([strata == lv for lv in levels[1:]], axis=1).astype(np.float64) if len(levels) > 1 \
        else np.zeros((len(strata), 0))


def val_cindex(y: Surv, risk: np.ndarray, strata: np.ndarray | None) -> float:
    """Harrell's c on validation patients, within strata when given (reported with the choice)."""
    return harrell(y, risk) if strata is None else harrell_stratified(y, risk, strata)


def val_loss(y: Surv, risk: np.ndarray, strata: np.ndarray | None) -> float:
    """The validation criterion: mean negative partial log-likelihood (:func:`.cox.cox_nll`, within strata
    when given). Smoother than a c-index on a small validation part; lower is better."""
    import torch

    from fusionkit_plugins.tasks.survival.cox import cox_nll, risk_sets

    if not y.event.any():
        return float("nan")
    eta = torch.from_numpy(np.clip(np.asarray(risk, dtype=np.float64), -30, 30))
    return float(cox_nll(eta, risk_sets(y.time, y.event, strata)))


# ----------------------------------------------------------------------------- Coxnet

def _coxnet_path(X: np.ndarray, y: Surv, penalty: np.ndarray, l1_ratio: float, alphas: Any = None) -> Any:
    """A fitted Coxnet path; falls back on a shorter path when the long one diverges; None on failure."""
    from sksurv.linear_model import CoxnetSurvivalAnalysis

    for ratio in (0.01, 0.05, 0.2):
        model = CoxnetSurvivalAnalysis(l1_ratio=float(l1_ratio), n_alphas=30, alpha_min_ratio=ratio,
                                       alphas=alphas, penalty_factor=penalty, max_iter=20000)
        try:
            with warnings.catch_warnings():
                warnings.simplefilter("ignore")
                return model.fit(X, y.structured())
        except (ArithmeticError, ValueError):
            if alphas is not None:
                break
    return None


def cv_folds(strata: np.ndarray, n_folds: int, seed: int) -> np.ndarray:
    """Fold number (0 .. n_folds - 1) of each training row, stratified by ``strata`` (e.g. cancer|event;
    a stratum with fewer rows than folds is spread as far as it goes), shuffled with ``seed``."""
    import warnings

    from sklearn.model_selection import KFold, StratifiedKFold

    strata = np.asarray(strata).astype(str)
    n = max(1, min(int(n_folds), len(strata)))
    folds = np.zeros(len(strata), dtype=np.int64)
    if n < 2:
        return folds
    rs = int(seed) % (2 ** 32)
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")  # "the least populated class has only ... members"
            split = list(StratifiedKFold(n, shuffle=True, random_state=rs).split(np.zeros(len(strata)), strata))
    except ValueError:  # every stratum smaller than the number of folds
        split = list(KFold(n, shuffle=True, random_state=rs).split(np.zeros(len(strata))))
    for f, (_, held) in enumerate(split):
        folds[held] = f
    return folds


def _cv_losses(X: np.ndarray, y: Surv, penalty: np.ndarray, l1_ratio: float, alphas: np.ndarray,
               folds: np.ndarray, strata: np.ndarray | None) -> np.ndarray:
    """Cross-validated partial log-likelihood (per event) of each alpha: each fold's path fitted on the
    other folds with the same alphas, its negative partial log-likelihood on the fold (within strata),
    summed over folds weighted by the fold's events. A fold whose path fails is left out."""
    total, events = np.zeros(len(alphas)), 0
    for f in np.unique(folds[folds >= 0]):
        held = folds == f
        yv = y.take(held)
        if not yv.event.any() or held.all():
            continue
        path = _coxnet_path(X[~held], y.take(~held), penalty, l1_ratio, alphas=alphas)
        if path is None or len(path.alphas_) != len(alphas):
            continue
        sv = None if strata is None else np.asarray(strata)[held]
        losses = [val_loss(yv, path.predict(X[held], alpha=a), sv) for a in alphas]
        total += np.nan_to_num(np.asarray(losses, dtype=np.float64), nan=np.inf) * int(yv.event.sum())
        events += int(yv.event.sum())
    return total / events if events else np.full(len(alphas), np.inf)


def fit_coxnet(Xtr: np.ndarray, ytr: Surv, Xte: np.ndarray, val: np.ndarray, *, strata_tr: np.ndarray | None,
               strata_te: np.ndarray | None, l1_ratio: float = 0.5, folds: np.ndarray | None = None
               ) -> tuple[np.ndarray, np.ndarray, dict[str, Any]]:
    """(train risk, test risk, info): the path on all training rows, its alpha chosen by the
    validation partial likelihood, never on test.

    ``folds`` (fold number per training row): K-fold cross-validation over the training rows (the
    cross-validated partial likelihood, as cv.glmnet for Cox); else the ``val`` rows alone are the
    validation part (the path refitted without them). With strata, stratum indicators join the
    features unpenalised (see the module docstring).
    """
    levels = sorted(set(np.asarray(strata_tr).astype(str))) if strata_tr is not None else []
    if levels:
        Xtr = np.hstack([Xtr, strata_indicators(strata_tr, levels)])
        Xte = np.hstack([Xte, strata_indicators(strata_te, levels)])
    penalty = np.r_[np.ones(Xtr.shape[1] - max(0, len(levels) - 1)), np.zeros(max(0, len(levels) - 1))]
    full = _coxnet_path(Xtr, ytr, penalty, l1_ratio)
    if full is None or (folds is None and not val.any()):
        return np.zeros(len(Xtr)), np.zeros(len(Xte)), {"alpha": None, "failed": True}
    alphas = np.asarray(full.alphas_)
    if folds is None:  # one held-out part: the val rows (fold 0); the others (-1) are never held out
        folds = np.where(val, 0, -1)
    losses = _cv_losses(Xtr, ytr, penalty, l1_ratio, alphas, np.asarray(folds), strata_tr)
    best = int(np.flatnonzero(losses <= losses.min() + 1e-12)[0])  # ties: the largest alpha (sparsest)
    coef = full.coef_[:, best]
    info = {"alpha": float(alphas[best]), "val_loss": float(losses[best]),
            "cv_folds": int(len(np.unique(folds[folds >= 0]))),
            "nonzero": int((coef[: int(penalty.sum())] != 0).sum())}
    return Xtr @ coef, Xte @ coef, info


# ----------------------------------------------------------------------------- deep Cox

def fit_deep(Xtr: np.ndarray, ytr: Surv, Xte: np.ndarray, val: np.ndarray, *, strata_tr: np.ndarray | None,
             cfg: dict[str, Any], seed: int) -> tuple[np.ndarray, np.ndarray, dict[str, Any]]:
    """(train risk, test risk, info): one network per weight decay on the inner training rows (early
    stopping on ``val``), the one with the lowest validation loss kept."""
    from fusionkit_plugins.tasks.survival.cox import train_deep_cox

    s = None if strata_tr is None else np.asarray(strata_tr).astype(str)
    best: tuple[float, Any, float] = (np.inf, None, 0.0)
    sv = None if s is None else s[val]
    for wd in cfg["weight_decay"]:
        model = train_deep_cox(
            Xtr[~val], ytr.time[~val], ytr.event[~val], None if s is None else s[~val],
            X_val=Xtr[val], time_val=ytr.time[val], event_val=ytr.event[val],
            strata_val=None if s is None else s[val], hidden=cfg["hidden"], dropout=cfg["dropout"],
            lr=cfg["lr"], weight_decay=float(wd), max_epochs=cfg["max_epochs"], patience=cfg["patience"],
            seed=seed)
        loss = val_loss(ytr.take(val), model.predict(Xtr[val]), sv)
        loss = np.inf if not np.isfinite(loss) else loss
        if best[1] is None or loss < best[0]:
            best = (loss, model, float(wd))
    model = best[1]
    info = {"weight_decay": best[2], "val_loss": float(best[0]), "best_epoch": int(model.best_epoch),
            "val_cindex": val_cindex(ytr.take(val), model.predict(Xtr[val]), sv)}
    return model.predict(Xtr), model.predict(Xte), info


# ----------------------------------------------------------------------------- baseline hazards

@dataclass
class BaselineHazards:
    """Breslow cumulative baseline hazard per stratum (scikit-survival's BreslowEstimator)."""

    steps: dict[str, tuple[np.ndarray, np.ndarray]] = field(default_factory=dict)

    @classmethod
    def fit(cls, risk: np.ndarray, y: Surv, strata: np.ndarray | None) -> "BaselineHazards":
        from sksurv.linear_model.coxph import BreslowEstimator

        strata = np.full(len(y), "all") if strata is None else np.asarray(strata).astype(str)
        out = cls()
        for s in [*np.unique(strata), None]:
            m = np.ones(len(y), dtype=bool) if s is None else strata == s
            key = "__pooled__" if s is None else str(s)
            if not y.event[m].any():
                out.steps[key] = (np.array([0.0]), np.array([0.0]))
                continue
            est = BreslowEstimator().fit(np.clip(risk[m], -30, 30), y.event[m], y.time[m])
            fn = est.cum_baseline_hazard_
            out.steps[key] = (np.asarray(fn.x, dtype=np.float64), np.asarray(fn.y, dtype=np.float64))
        return out

    def baseline(self, strata: np.ndarray | None, times: Sequence[float]) -> np.ndarray:
        """(n, len(times)) cumulative baseline hazard of each patient's stratum (right-continuous steps)."""
        n = 1 if strata is None else len(strata)
        strata = np.full(n, "all") if strata is None else np.asarray(strata).astype(str)
        times = np.asarray(times, dtype=np.float64)
        out = np.zeros((len(strata), len(times)))
        for s in np.unique(strata):
            x, h = self.steps.get(str(s), self.steps["__pooled__"])
            idx = np.searchsorted(x, times, side="right") - 1
            out[strata == s] = np.where(idx >= 0, h[np.clip(idx, 0, None)], 0.0)
        return out

    def cumhaz(self, risk: np.ndarray, strata: np.ndarray | None, times: Sequence[float]) -> np.ndarray:
        """(n, len(times)) cumulative hazard H0_s(t) exp(risk)."""
        strata = np.full(len(risk), "all") if strata is None else strata
        return self.baseline(strata, times) * np.exp(np.clip(risk, -30, 30))[:, None]
