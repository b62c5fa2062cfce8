"""The recognizer's data protocol: per-repeat plans split into train/validation/test, their
aggregates (clean and perturbed), and the tidy metric rows of one test set.

Splits are made on the *plan* (indices, not vectors) and each part is
aggregated on its own, so no test aggregate is built from training
information; perturbations apply to the test plan only.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

import numpy as np

from fusionkit import Aggregates, DataError, DrawPlan
from fusionkit.metrics import BINARY_METRICS, multiclass_metrics, stratified_metrics, stratified_rows

if TYPE_CHECKING:  # pragma: no cover
    from fusionkit import RunContext

#: the pseudo-modality of the cancer-type head in metric rows
CANCER_MODALITY = "cancer_type"


def split_indices(n: int, rng: np.random.Generator, test_fraction: float = 0.2,
                  val_fraction: float = 0.2) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Disjoint sorted (train, val, test) indices of ``n`` items: test first, then val from the rest."""
    if not (0 < test_fraction < 1 and 0 <= val_fraction < 1):
        raise DataError(f"fractions must be in (0, 1): test {test_fraction}, validation {val_fraction}")
    perm = rng.permutation(n)
    n_test = max(1, int(round(n * test_fraction)))
    rest = perm[n_test:]
    n_val = int(round(len(rest) * val_fraction))
    if val_fraction > 0:
        n_val = max(1, n_val)
    if len(rest) - n_val < 2:
        raise DataError(f"{n} aggregates are too few to split into train/validation/test",
                        hint="raise n_per_k")
    return np.sort(rest[n_val:]), np.sort(rest[:n_val]), np.sort(perm[:n_test])


def concat_aggregates(parts: list[Aggregates]) -> Aggregates:
    """Stack aggregates of the same modalities (e.g. several sample counts)."""
    if len(parts) == 1:
        return parts[0]
    labels = {key: np.concatenate([np.asarray(p.group_labels[key], dtype=object) for p in parts])
              for key in parts[0].group_labels if all(key in p.group_labels for p in parts)}
    return Aggregates(X=np.concatenate([p.X for p in parts]), modalities=list(parts[0].modalities),
                      counts=np.concatenate([p.counts for p in parts]), k=np.concatenate([p.k for p in parts]),
                      group_labels=labels, meta=dict(parts[0].meta))


class RepeatData:
    """Plans and aggregates of one repeat, built lazily from the run context.

    ``plans[k]`` holds the split DrawPlans of sample count ``k``
    (``train``/``val``/``test``) and ``index[k]`` the plan indices of each part.
    """

    def __init__(self, ctx: RunContext, sampling: str, ks: list[int], n_per_k: int | None, repeat: int,
                 test_fraction: float = 0.2, val_fraction: float = 0.2):
        self.ctx = ctx
        self.sampling = sampling
        self.repeat = repeat
        self.plans: dict[int, dict[str, DrawPlan]] = {}
        self.index: dict[int, dict[str, np.ndarray]] = {}
        self._aggs: dict[tuple, Aggregates] = {}
        for k in ks:
            overrides: dict[str, Any] = {"k": int(k)}
            if n_per_k:
                overrides["n"] = int(n_per_k)
            plan = ctx.plan(sampling, seed_keys=(repeat, int(k)), **overrides)
            tr, va, te = split_indices(plan.n, ctx.rng("recognizer-split", sampling, repeat, int(k)),
                                       test_fraction, val_fraction)
            self.index[k] = {"train": tr, "val": va, "test": te}
            self.plans[k] = {"train": plan.take(tr), "val": plan.take(va), "test": plan.take(te)}

    def clean(self, k: int, part: str) -> Aggregates:
        key = (k, part, None)
        if key not in self._aggs:
            self._aggs[key] = self.ctx.aggregate(self.plans[k][part],
                                                 seed_keys=("recognizer", self.sampling, self.repeat, k, part))
        return self._aggs[key]

    def noisy_test(self, k: int, perturbation: str) -> tuple[DrawPlan, Aggregates]:
        """The test plan of ``k`` with a recipe perturbation applied, and its aggregates."""
        pert = self.ctx.perturbation(perturbation)
        plan = pert.apply(self.plans[k]["test"],
                          self.ctx.rng("recognizer-perturb", perturbation, self.sampling, self.repeat, k))
        agg = self.ctx.aggregate(plan, seed_keys=("recognizer-noise", perturbation, self.sampling, self.repeat, k))
        return plan, agg

    def training(self, ks: list[int], part: str) -> Aggregates:
        return concat_aggregates([self.clean(k, part) for k in ks])

    def drop(self, k: int, part: str) -> None:
        """Forget the clean aggregates of one part (rebuilt on demand): bounds memory."""
        self._aggs.pop((k, part, None), None)

    def drop_training(self) -> None:
        """Forget every training and validation aggregate (once every model is fitted)."""
        for k in list(self.plans):
            self.drop(k, "train")
            self.drop(k, "val")


# ----------------------------------------------------------------------------- evaluation

def evaluate(pred: dict[str, Any], agg: Aggregates, *, threshold: float = 0.5, drop_empty: bool = True,
             cancer_labels: np.ndarray | None = None, class_names: list[str] | None = None,
             **extra: Any) -> list[dict[str, Any]]:
    """Tidy metric rows of one test set: stratified presence metrics per modality,
    count metrics (when predicted) and cancer-type metrics (when predicted)."""
    truth = agg.counts
    keep = truth.sum(axis=1) > 0 if drop_empty else np.ones(len(truth), dtype=bool)
    yhat = (pred["proba"] >= threshold).astype(np.int8)
    res = stratified_metrics(truth[keep], yhat[keep], agg.modalities)
    rows = stratified_rows(res, BINARY_METRICS + ("n",), **extra)
    rows.append({**extra, "modality": "*", "stratum": "all", "metric": "n_dropped_empty",
                 "value": float((~keep).sum())})
    rows += constant_rows(truth[keep] > 0, yhat[keep], agg.modalities, extra)
    if pred.get("counts") is not None:
        pc = pred["counts"][keep]
        tc = truth[keep]
        for j, m in enumerate(agg.modalities):
            for stratum, sel in (("all", np.ones(len(tc), bool)), ("present", tc[:, j] > 0)):
                if sel.any():
                    err = np.abs(pc[sel, j] - tc[sel, j])
                    rows.append({**extra, "modality": m, "stratum": stratum, "metric": "count_mae",
                                 "value": float(err.mean())})
                    rows.append({**extra, "modality": m, "stratum": stratum, "metric": "count_accuracy",
                                 "value": float((err == 0).mean())})
    if pred.get("cancer") is not None and cancer_labels is not None and class_names:
        rows += constant_rows(np.asarray(cancer_labels)[keep, None], pred["cancer"][keep, None],
                              [CANCER_MODALITY], extra)
        mc = multiclass_metrics(np.asarray(cancer_labels)[keep], pred["cancer"][keep],
                                labels=list(range(len(class_names))))
        for metric in ("accuracy", "mcc", "macro_f1", "balanced_accuracy"):
            rows.append({**extra, "modality": CANCER_MODALITY, "stratum": "all", "metric": metric,
                         "value": float(mc[metric])})
    return rows


def constant_rows(truth: np.ndarray, pred: np.ndarray, names: list[str], extra: dict[str, Any]) -> list[dict[str, Any]]:
    """The guard against collapsed models (issue 15): a ``constant_prediction`` row (1.0 = the model
    predicted one value for every test aggregate although the truth varies) per output column."""
    rows = []
    for j, name in enumerate(names):
        t, p = np.asarray(truth)[:, j], np.asarray(pred)[:, j]
        if len(t) and len(np.unique(t)) > 1:
            rows.append({**extra, "modality": name, "stratum": "all", "metric": "constant_prediction",
                         "value": float(len(np.unique(p)) == 1)})
    return rows
