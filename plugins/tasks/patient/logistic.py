"""The classifier's logistic model (:mod:`.classifier`): multinomial logistic regression on
standardised features, fitted in the training rows' span; its ``C`` and, for sums of
per-modality parts, per-modality weights chosen by inner cross-validation on the training
patients only (never on the test rows).
"""

from __future__ import annotations

import math
from typing import Any

import numpy as np

from fusionkit_plugins.tasks.patient.common import combine_repeats, weighted_sum, weights_text



def _fit_logistic(Xtr: np.ndarray, ytr: np.ndarray, Xte: np.ndarray, cfg: dict[str, Any],
                  ptr: np.ndarray | None = None) -> tuple[np.ndarray, dict[str, Any]]:
    """Multinomial logistic regression on standardised features, solved in the training rows' span.

    Patient aggregates have far fewer training rows than features (about 475
    x 3,840 in the demo). The L2-regularised optimum lies in the span of the
    (centred) training rows, so the model is fitted on their coordinates in
    that span (thin SVD: n instead of d weights per class) and the test rows
    are projected on the same basis: the same model, with n x classes
    unknowns. Those coordinates' scales spread over two orders of magnitude
    (the composition of a sum dominates it), which left lbfgs unconverged at
    ``max_iter``; Newton-CG is insensitive to that spread and converges in
    about ten iterations. BLAS runs on one thread (units run in parallel
    workers). Reports the iterations used and whether it converged.

    ``cfg["C"]`` a list: each value scored by inner cross-validation on the training rows
    (:func:`_choose_C`, folds by patient ``ptr``), the best one refitted on them all.
    """
    import warnings

    from sklearn.exceptions import ConvergenceWarning
    from sklearn.linear_model import LogisticRegression
    from threadpoolctl import threadpool_limits

    with threadpool_limits(1), warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always", ConvergenceWarning)
        Z, Zte = _span(Xtr, Xte)
        Cs = _Cs(cfg)
        C, scores = (Cs[0], {}) if len(Cs) == 1 else _choose_C(Z, ytr, ptr, Cs, cfg, LogisticRegression)
        clf = _logistic(LogisticRegression, C, cfg).fit(Z, ytr)
        pred = clf.predict(Zte).astype(np.int64)
    converged = not any(issubclass(w.category, ConvergenceWarning) for w in caught)
    info: dict[str, Any] = {"iterations": int(np.max(clf.n_iter_)), "converged": converged, "C": C}
    if scores:
        info["C_scores"] = scores
    return pred, info


def _Cs(cfg: dict[str, Any]) -> list[float]:
    return [float(c) for c in (cfg["C"] if isinstance(cfg["C"], (list, tuple)) else [cfg["C"]])]


def _span(Xtr: np.ndarray, Xte: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Standardised training and test rows, in the training rows' span when there are fewer
    rows than features (thin SVD; see :func:`_fit_logistic`)."""
    Z, Zte = _standardise(Xtr, Xte)
    if Z.shape[0] < Z.shape[1]:
        U, S, Vt = np.linalg.svd(Z, full_matrices=False)
        keep = S > S[0] * 1e-7 if S.size else S > 0
        Z, Zte = U[:, keep] * S[keep], Zte @ Vt[keep].T
    return Z, Zte


def choose_weights(parts: np.ndarray, mods: list[str], ytr: np.ndarray, ptr: np.ndarray, r: int, how: str,
                   cands: list[dict[str, float]], cfg: dict[str, Any]) -> tuple[dict[str, float], float, dict]:
    """The weight set and C with the best inner cross-validated macro-F1 of the logistic model on
    the training patients only (the folds of :func:`_choose_C`, by patient); ties keep the
    earlier set (the first is no weighting with ``search``). Returns (weights, C, scores)."""
    import warnings

    from sklearn.linear_model import LogisticRegression
    from threadpoolctl import threadpool_limits

    best: tuple[float, dict[str, float], float] | None = None
    scores: dict[str, float] = {}
    with threadpool_limits(1), warnings.catch_warnings():
        warnings.simplefilter("ignore")
        for w in cands:
            X = combine_repeats(weighted_sum(parts, mods, w), r, how)
            Z, _ = _span(X, X[:0])
            C, sc = _choose_C(Z, ytr, ptr, _Cs(cfg), cfg, LogisticRegression)
            top = max(sc.values()) if sc else -math.inf
            scores[weights_text(w)] = top
            if best is None or top > best[0] + 1e-12:
                best = (top, w, C)
    assert best is not None
    return best[1], best[2], scores


def _logistic(cls: Any, C: float, cfg: dict[str, Any]) -> Any:
    return cls(C=float(C), solver="newton-cg", max_iter=int(cfg["max_iter"]), tol=float(cfg["tol"]),
               class_weight="balanced" if cfg["class_weight"] else None)


def _choose_C(Z: np.ndarray, ytr: np.ndarray, ptr: np.ndarray | None, Cs: list[float], cfg: dict[str, Any],
              cls: Any) -> tuple[float, dict[str, float]]:
    """The C with the best inner cross-validated macro-F1 on the training rows only (folds by
    patient, ``C_folds``; ties: the smallest C, the strongest penalty). Never sees the test rows."""
    from sklearn.metrics import f1_score
    from sklearn.model_selection import StratifiedGroupKFold

    n_folds = max(2, int(cfg.get("C_folds", 3)))
    folds = StratifiedGroupKFold(n_folds, shuffle=True, random_state=0).split(Z, ytr, groups=np.arange(len(ytr)) if ptr is None else ptr)
    scores = {c: [] for c in Cs}
    for tr, va in folds:
        for c in Cs:
            pred = _logistic(cls, c, cfg).fit(Z[tr], ytr[tr]).predict(Z[va])
            scores[c].append(f1_score(ytr[va], pred, average="macro"))
    means = {c: float(np.mean(v)) for c, v in scores.items()}
    best = max(means.values())
    return min(c for c, m in means.items() if m >= best - 1e-12), {f"{c:g}": m for c, m in means.items()}


def _standardise(Xtr: np.ndarray, Xte: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Both parts standardised (float64) with the training part's mean and standard deviation."""
    Xtr = np.asarray(Xtr, dtype=np.float64)
    mu = Xtr.mean(axis=0)
    sd = Xtr.std(axis=0)
    sd[sd < 1e-12] = 1.0
    return (Xtr - mu) / sd, (np.asarray(Xte, dtype=np.float64) - mu) / sd
