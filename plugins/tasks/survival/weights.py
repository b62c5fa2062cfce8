"""Per-modality weights of the survival task's multimodal sums, chosen on the training patients.

A sum of draws adds every modality into the same dimensions. On the real cohort the prognostic
part of the multimodal sum (age and stage sentences of the annotations, ~8 of the 25 draws at
k=5, r=5) has little variance next to the rna and mutation draws, so PCA keeps their
directions and Coxnet finds little (docs/RESULTS.md, Survival). Scaling each modality's draws
by a factor before the sum (``sum_m w_m * part_m``: :meth:`AggregateBuilder.build_parts`) is
still a sum of draws; the factors are chosen like any hyper-parameter, by Coxnet's K-fold
cross-validated partial likelihood over the training patients only (the same folds that choose
its alpha), never on the test patients.
"""

from __future__ import annotations

import math
from typing import Any

import numpy as np

from fusionkit_plugins.tasks.patient.common import combine_repeats, weighted_sum, weights_text
from fusionkit_plugins.tasks.survival.metrics import Surv
from fusionkit_plugins.tasks.survival.models import fit_coxnet, prepare_features

__all__ = ["choose_weights"]


def choose_weights(parts: np.ndarray, mods: list[str], ytr: Surv, strata: np.ndarray | None,
                   folds: np.ndarray | None, val: np.ndarray, r: int, how: str,
                   cands: list[dict[str, float]], cfg: dict[str, Any], seed: int
                   ) -> tuple[dict[str, float], dict[str, float]]:
    """(weights, {weights text: cross-validated loss}) of the weight set whose sum gives the lowest
    cross-validated partial likelihood (per event) at Coxnet's best alpha; ties keep the earlier set
    (no weighting first with ``search``). ``parts``: (M, n, dim*r) training parts; ``strata``: the
    training patients' cancers when the task stratifies."""
    best: tuple[float, dict[str, float]] | None = None
    scores: dict[str, float] = {}
    for w in cands:
        X = combine_repeats(weighted_sum(parts, mods, w), r, how)
        Z, _ = prepare_features(X, X[:0], cfg["n_components"], seed, strata,
                                None if strata is None else strata[:0])
        _, _, info = fit_coxnet(Z, ytr, Z[:0], val, strata_tr=strata, strata_te=None if strata is None else strata[:0],
                                l1_ratio=cfg["l1_ratio"], folds=folds)
        loss = info.get("val_loss")
        loss = math.inf if loss is None or not math.isfinite(loss) else float(loss)
        scores[weights_text(w)] = loss
        if best is None or loss < best[0] - 1e-12:
            best = (loss, w)
    assert best is not None
    return best[1], scores
