"""Evaluation metrics: binary, stratified per modality (the paper's recognizer
metric), multi-class, and mean / confidence interval over repeats.

Only numpy is imported here (scipy, when present, gives exact t quantiles).
Every function takes plain arrays and returns plain Python floats/dicts, so
results are JSON-able and picklable.

Conventions for undefined values
--------------------------------
A metric whose denominator is zero is *undefined* and reported as ``nan``
(never silently as 0 or 1), except where noted:

* ``precision`` = tp / (tp + fp): nan when nothing is predicted positive.
* ``recall`` (sensitivity) = tp / (tp + fn): nan when there is no true positive label.
* ``specificity`` = tn / (tn + fp): nan when there is no true negative label.
* ``f1`` = 2 tp / (2 tp + fp + fn): nan only when there is neither a positive
  label nor a positive prediction. (So a model that never predicts "present"
  on samples where the modality *is* present gets f1 = 0, not nan.)
* ``balanced_accuracy``: mean of recall and specificity over the classes
  present in ``y_true`` (as scikit-learn: in a single-class set it equals the
  recall of that class, i.e. the accuracy).
* ``mcc`` (Matthews correlation coefficient): **nan when ``y_true`` holds a
  single class** (a correlation with a constant is undefined; this is always
  the case inside the "absent" and "present" strata below). When ``y_true``
  holds both classes but the predictions are constant, MCC is 0.0 (the
  limiting value, as scikit-learn and Chicco & Jurman 2020): a constant
  predictor carries no information.

Stratified metrics (paper, "Metric calculation for recognizer network evaluation")
----------------------------------------------------------------------------------
For every modality the metrics are computed over all samples (stratum
``all``), over samples where the modality is absent (label 0, stratum
``absent``) and where it is present (label > 0, stratum ``present``). Within
``absent`` only specificity (= accuracy) carries information (false
positives); within ``present`` only recall (= accuracy) does (missed
modalities). A model that predicts "absent" everywhere thus scores
recall = accuracy = f1 = 0 on the present stratum and MCC 0 overall: it can
never look good, although its overall accuracy may be high.
"""

from __future__ import annotations

import math
from typing import Any, Iterable, Mapping, Sequence

import numpy as np

NAN = float("nan")

BINARY_METRICS = ("mcc", "balanced_accuracy", "f1", "precision", "recall", "specificity", "accuracy")
STRATA = ("all", "absent", "present")


# ----------------------------------------------------------------------------- helpers

def _div(num: float, den: float, zero_division: float = NAN) -> float:
    return float(num) / float(den) if den else float(zero_division)


def _as_binary(y: Any) -> np.ndarray:
    a = np.asarray(y)
    if a.dtype == bool:
        return a
    return a > 0.5 if np.issubdtype(a.dtype, np.floating) else a > 0


# ----------------------------------------------------------------------------- binary

def binary_confusion(y_true: Any, y_pred: Any) -> tuple[int, int, int, int]:
    """(tp, fp, tn, fn) of binary labels (anything > 0 counts as positive; floats at 0.5)."""
    t = _as_binary(y_true).ravel()
    p = _as_binary(y_pred).ravel()
    if t.shape != p.shape:
        raise ValueError(f"y_true and y_pred differ in length: {t.shape[0]} vs {p.shape[0]}")
    tp = int(np.count_nonzero(t & p))
    fp = int(np.count_nonzero(~t & p))
    fn = int(np.count_nonzero(t & ~p))
    tn = int(t.size - tp - fp - fn)
    return tp, fp, tn, fn


def mcc_from_confusion(tp: int, fp: int, tn: int, fn: int) -> float:
    """Binary MCC; nan when the truth has one class, 0.0 when the prediction is constant."""
    pos, neg = tp + fn, tn + fp
    if pos == 0 or neg == 0:
        return NAN
    pp, pn = tp + fp, tn + fn
    if pp == 0 or pn == 0:
        return 0.0
    # floats: products of large counts overflow int64 only beyond ~1e4.7 each, be safe anyway
    return float((tp * tn - fp * fn) / math.sqrt(float(pos) * float(neg) * float(pp) * float(pn)))


def metrics_from_confusion(tp: int, fp: int, tn: int, fn: int, zero_division: float = NAN) -> dict[str, Any]:
    """All binary metrics from a confusion (see the module docstring for undefined cases)."""
    n = tp + fp + tn + fn
    recall = _div(tp, tp + fn, zero_division)
    specificity = _div(tn, tn + fp, zero_division)
    defined = [v for v, m in ((recall, tp + fn), (specificity, tn + fp)) if m]
    return {
        "n": int(n), "n_pos": int(tp + fn), "n_neg": int(tn + fp),
        "tp": int(tp), "fp": int(fp), "tn": int(tn), "fn": int(fn),
        "accuracy": _div(tp + tn, n, zero_division),
        "precision": _div(tp, tp + fp, zero_division),
        "recall": recall,
        "specificity": specificity,
        "f1": _div(2 * tp, 2 * tp + fp + fn, zero_division),
        "balanced_accuracy": float(np.mean(defined)) if defined else float(zero_division),
        "mcc": mcc_from_confusion(tp, fp, tn, fn),
    }


def binary_metrics(y_true: Any, y_pred: Any, zero_division: float = NAN) -> dict[str, Any]:
    """Binary MCC, balanced accuracy, F1, precision, recall, specificity, accuracy (+ counts)."""
    return metrics_from_confusion(*binary_confusion(y_true, y_pred), zero_division=zero_division)


def binary_metrics_batch(Y_true: np.ndarray, Y_pred: np.ndarray, zero_division: float = NAN
                         ) -> list[dict[str, Any]]:
    """``binary_metrics`` for each column of (n, m) label/prediction matrices (vectorised counts)."""
    T = _as_binary(Y_true)
    P = _as_binary(Y_pred)
    if T.ndim == 1:
        T, P = T[:, None], P[:, None]
    if T.shape != P.shape:
        raise ValueError(f"label and prediction matrices differ in shape: {T.shape} vs {P.shape}")
    tp = np.count_nonzero(T & P, axis=0)
    fp = np.count_nonzero(~T & P, axis=0)
    fn = np.count_nonzero(T & ~P, axis=0)
    tn = T.shape[0] - tp - fp - fn
    return [metrics_from_confusion(int(a), int(b), int(c), int(d), zero_division)
            for a, b, c, d in zip(tp, fp, tn, fn)]


# ----------------------------------------------------------------------------- stratified

def stratified_metrics(Y_true: Any, Y_pred: Any, modalities: Sequence[str] | None = None, *,
                       drop_empty: bool = False) -> dict[str, dict[str, dict[str, Any]]]:
    """Per-modality metrics overall and within the absent / present strata (the paper's scheme).

    ``Y_true``: (n, m) labels per modality (presence 0/1 or counts; > 0 means
    present). ``Y_pred``: (n, m) predicted presence (0/1, bool, or
    probabilities thresholded at 0.5). ``drop_empty`` leaves out rows whose
    labels are all zero (e.g. every draw replaced by noise), as the paper did
    for noisy test sets. Returns ``{modality: {"all"|"absent"|"present":
    metrics}}``; each metrics dict holds ``n`` (samples in the stratum).
    """
    T = np.asarray(Y_true)
    P = np.asarray(Y_pred)
    if T.ndim == 1:
        T, P = T[:, None], P[:, None]
    if T.shape != P.shape:
        raise ValueError(f"label and prediction matrices differ in shape: {T.shape} vs {P.shape}")
    m = T.shape[1]
    names = list(modalities) if modalities is not None else [str(i) for i in range(m)]
    if len(names) != m:
        raise ValueError(f"{len(names)} modality names for {m} label columns")
    Tb = _as_binary(T)
    Pb = _as_binary(P)
    if drop_empty:
        keep = Tb.any(axis=1)
        Tb, Pb = Tb[keep], Pb[keep]
    out: dict[str, dict[str, dict[str, Any]]] = {}
    overall = binary_metrics_batch(Tb, Pb)
    for j, name in enumerate(names):
        t, p = Tb[:, j], Pb[:, j]
        out[name] = {
            "all": overall[j],
            "absent": binary_metrics(t[~t], p[~t]),
            "present": binary_metrics(t[t], p[t]),
        }
    return out


def stratified_rows(result: Mapping[str, Mapping[str, Mapping[str, Any]]],
                    metrics: Sequence[str] = BINARY_METRICS + ("n",), **extra: Any) -> list[dict[str, Any]]:
    """Flatten ``stratified_metrics`` into tidy rows {**extra, modality, stratum, metric, value}."""
    rows = []
    for modality, strata in result.items():
        for stratum, values in strata.items():
            for metric in metrics:
                if metric in values:
                    rows.append({**extra, "modality": modality, "stratum": stratum, "metric": metric,
                                 "value": float(values[metric])})
    return rows


# ----------------------------------------------------------------------------- multi-class

def confusion_matrix(y_true: Any, y_pred: Any, labels: Sequence[Any] | None = None
                     ) -> tuple[np.ndarray, list[Any]]:
    """(C, labels): C[i, j] = samples of true class labels[i] predicted as labels[j].

    ``labels`` fixes the order (default: sorted union of both). A value not in
    ``labels`` raises ValueError.
    """
    yt = np.asarray(y_true, dtype=object).ravel()
    yp = np.asarray(y_pred, dtype=object).ravel()
    if yt.shape != yp.shape:
        raise ValueError(f"y_true and y_pred differ in length: {yt.shape[0]} vs {yp.shape[0]}")
    if labels is None:
        labels = sorted(set(yt.tolist()) | set(yp.tolist()), key=lambda x: (str(type(x)), x))
    labels = list(labels)
    index = {lab: i for i, lab in enumerate(labels)}
    try:
        ti = np.fromiter((index[v] for v in yt.tolist()), dtype=np.int64, count=yt.size)
        pi = np.fromiter((index[v] for v in yp.tolist()), dtype=np.int64, count=yp.size)
    except KeyError as exc:
        raise ValueError(f"value {exc.args[0]!r} is not among labels {labels}") from exc
    L = len(labels)
    C = np.bincount(ti * L + pi, minlength=L * L).reshape(L, L)
    return C, labels


def gorodkin_mcc(C: np.ndarray) -> float:
    """Multi-class MCC (Gorodkin 2004, R_K) from a confusion matrix.

    nan when the truth has a single class; 0.0 when all predictions fall in one class.
    """
    C = np.asarray(C, dtype=np.float64)
    s = C.sum()
    t = C.sum(axis=1)
    p = C.sum(axis=0)
    c = np.trace(C)
    den_t = s * s - float(np.dot(t, t))
    den_p = s * s - float(np.dot(p, p))
    if den_t <= 0:
        return NAN
    if den_p <= 0:
        return 0.0
    return float((c * s - float(np.dot(t, p))) / math.sqrt(den_t * den_p))


def multiclass_metrics(y_true: Any, y_pred: Any, labels: Sequence[Any] | None = None,
                       zero_division: float = 0.0) -> dict[str, Any]:
    """Accuracy, macro/weighted F1, macro precision/recall, Gorodkin MCC, balanced accuracy,
    per-class {f1, precision, recall, support}, confusion matrix (rows true, columns predicted).

    Per-class precision/F1 with no prediction of that class (and recall of a
    class with no sample) are ``zero_division`` (default 0.0, as scikit-learn,
    so macro averages are comparable with it). ``balanced_accuracy`` averages
    recall over classes that occur in ``y_true``; macro averages run over all
    ``labels``.
    """
    C, labels = confusion_matrix(y_true, y_pred, labels)
    n = int(C.sum())
    tp = np.diag(C).astype(np.float64)
    support = C.sum(axis=1).astype(np.float64)
    predicted = C.sum(axis=0).astype(np.float64)
    with np.errstate(divide="ignore", invalid="ignore"):
        precision = np.where(predicted > 0, tp / np.where(predicted > 0, predicted, 1), zero_division)
        recall = np.where(support > 0, tp / np.where(support > 0, support, 1), zero_division)
        den = support + predicted
        f1 = np.where(den > 0, 2 * tp / np.where(den > 0, den, 1), zero_division)
    per_class = {str(lab) if not isinstance(lab, (int, str)) else lab: {
        "f1": float(f1[i]), "precision": float(precision[i]), "recall": float(recall[i]),
        "support": int(support[i])} for i, lab in enumerate(labels)}
    present = support > 0
    return {
        "n": n,
        "accuracy": _div(float(tp.sum()), n),
        "macro_f1": float(f1.mean()) if len(labels) else NAN,
        "weighted_f1": _div(float((f1 * support).sum()), float(support.sum())),
        "macro_precision": float(precision.mean()) if len(labels) else NAN,
        "macro_recall": float(recall.mean()) if len(labels) else NAN,
        "balanced_accuracy": float(recall[present].mean()) if present.any() else NAN,
        "mcc": gorodkin_mcc(C),
        "per_class": per_class,
        "confusion": C.astype(int).tolist(),
        "labels": [lab if isinstance(lab, (int, float, str, bool)) or lab is None else str(lab)
                   for lab in labels],
    }


# ----------------------------------------------------------------------------- repeats

def t_quantile(p: float, df: int) -> float:
    """Quantile of Student's t (scipy when available, else a Cornish-Fisher expansion)."""
    try:
        from scipy.stats import t as _t

        return float(_t.ppf(p, df))
    except ImportError:  # pragma: no cover - scipy ships with scikit-learn
        z = _normal_quantile(p)
        g1 = (z ** 3 + z) / 4
        g2 = (5 * z ** 5 + 16 * z ** 3 + 3 * z) / 96
        g3 = (3 * z ** 7 + 19 * z ** 5 + 17 * z ** 3 - 15 * z) / 384
        g4 = (79 * z ** 9 + 776 * z ** 7 + 1482 * z ** 5 - 1920 * z ** 3 - 945 * z) / 92160
        return float(z + g1 / df + g2 / df ** 2 + g3 / df ** 3 + g4 / df ** 4)


def _normal_quantile(p: float) -> float:  # pragma: no cover - fallback only
    # Acklam's rational approximation (|error| < 1.2e-9)
    a = [-3.969683028665376e+01, 2.209460984245205e+02, -2.759285104469687e+02, 1.383577518672690e+02,
         -3.066479806614716e+01, 2.506628277459239e+00]
    b = [-5.447609879822406e+01, 1.615858368580409e+02, -1.556989798598866e+02, 6.680131188771972e+01,
         -1.328068155288572e+01]
    c = [-7.784894002430293e-03, -3.223964580411365e-01, -2.400758277161838e+00, -2.549671010388245e+00,
         4.374664141464968e+00, 2.938163982698783e+00]
    d = [7.784695709041462e-03, 3.224671290700398e-01, 2.445134137142996e+00, 3.754408661907416e+00]
    lo = 0.02425
    if p < lo:
        q = math.sqrt(-2 * math.log(p))
        return (((((c[0] * q + c[1]) * q + c[2]) * q + c[3]) * q + c[4]) * q + c[5]) / \
            ((((d[0] * q + d[1]) * q + d[2]) * q + d[3]) * q + 1)
    if p > 1 - lo:
        return -_normal_quantile(1 - p)
    q = p - 0.5
    r = q * q
    return (((((a[0] * r + a[1]) * r + a[2]) * r + a[3]) * r + a[4]) * r + a[5]) * q / \
        (((((b[0] * r + b[1]) * r + b[2]) * r + b[3]) * r + b[4]) * r + 1)


#: metrics bounded to [-1, 1] or [0, 1]: their t-intervals are clipped to the bounds
_BOUNDS = {
    "mcc": (-1.0, 1.0), "silhouette": (-1.0, 1.0), "ari": (-1.0, 1.0),
    **{name: (0.0, 1.0) for name in (
        "accuracy", "balanced_accuracy", "f1", "macro_f1", "weighted_f1", "precision", "recall", "specificity",
        "macro_precision", "macro_recall", "nmi", "auc", "precision_at_k", "recall_at_k", "vote_accuracy",
        "majority_vote_accuracy", "npv", "c_index", "c_harrell", "c_stratified", "c_uno", "ibs")},
}


def metric_bounds(name: Any) -> tuple[float, float] | None:
    """Bounds of a metric by name (``mcc``, ``per_class.BRCA.f1``, ``silhouette_true``...), else None."""
    last = str(name).rsplit(".", 1)[-1].lower()
    if last in _BOUNDS:
        return _BOUNDS[last]
    for key, bounds in _BOUNDS.items():
        if last.startswith(key + "_") or last.endswith("_" + key):
            return bounds
    return None


def mean_ci(values: Iterable[Any], level: float = 0.95, bounds: tuple[float, float] | None = None
            ) -> dict[str, Any]:
    """Mean and two-sided t confidence interval of the mean over repeats.

    Non-finite values (an undefined metric in some repeat) are left out; ``n``
    counts the values used. ``n == 0``: everything nan; ``n == 1``: the mean
    with a nan interval. Returns ``{mean, ci_low, ci_high, n, std}`` (``std``
    is the sample standard deviation, ddof=1).
    """
    v = np.asarray([float(x) for x in values], dtype=np.float64) if not isinstance(values, np.ndarray) \
        else np.asarray(values, dtype=np.float64).ravel()
    v = v[np.isfinite(v)]
    n = int(v.size)
    if n == 0:
        return {"mean": NAN, "ci_low": NAN, "ci_high": NAN, "n": 0, "std": NAN}
    mean = float(v.mean())
    if n == 1:
        return {"mean": mean, "ci_low": NAN, "ci_high": NAN, "n": 1, "std": NAN}
    std = float(v.std(ddof=1))
    half = t_quantile(0.5 + level / 2, n - 1) * std / math.sqrt(n)
    lo, hi = mean - half, mean + half
    if bounds is not None:  # a bounded metric's interval never leaves its range
        lo, hi = max(lo, bounds[0]), min(hi, bounds[1])
    return {"mean": mean, "ci_low": lo, "ci_high": hi, "n": n, "std": std}


def _flatten(d: Mapping[str, Any], prefix: str = "") -> dict[str, Any]:
    out: dict[str, Any] = {}
    for key, value in d.items():
        name = f"{prefix}{key}"
        if isinstance(value, Mapping):
            out.update(_flatten(value, f"{name}."))
        else:
            out[name] = value
    return out


def summarise(results: Sequence[Mapping[str, Any]], level: float = 0.95) -> dict[str, dict[str, Any]]:
    """Mean/CI per numeric key over a list of per-repeat metric dicts.

    Nested dicts are flattened with dots (``per_class.BRCA.f1``); non-numeric
    values (lists such as a confusion matrix, strings) are skipped. Keys keep
    their first-seen order. Returns ``{key: mean_ci(...)}``.
    """
    collected: dict[str, list[float]] = {}
    for res in results:
        for key, value in _flatten(res).items():
            if isinstance(value, bool) or not isinstance(value, (int, float, np.integer, np.floating)):
                continue
            collected.setdefault(key, []).append(float(value))
    return {key: mean_ci(vals, level, metric_bounds(key)) for key, vals in collected.items()}


def summarise_rows(rows: Sequence[Mapping[str, Any]], by: Sequence[str], value: str = "value",
                   level: float = 0.95) -> list[dict[str, Any]]:
    """Group tidy rows by the ``by`` columns and give mean/CI/n of ``value`` per group (first-seen order)."""
    groups: dict[tuple, list[float]] = {}
    for row in rows:
        key = tuple(row.get(b) for b in by)
        groups.setdefault(key, []).append(float(row[value]))
    out = []
    for key, vals in groups.items():
        named = dict(zip(by, key))
        stats = mean_ci(vals, level, metric_bounds(named.get("metric", value)))
        out.append({**dict(zip(by, key)), "mean": stats["mean"], "ci_low": stats["ci_low"],
                    "ci_high": stats["ci_high"], "std": stats["std"], "n": stats["n"],
                    "n_repeats": len(vals)})
    return out
