"""Figures of the survival task (drawing only: every number comes from the task).

* :func:`km_by_cancer`: Kaplan-Meier curves of predicted risk tertiles of test patients, one
  panel per cancer, with the log-rank p in each title;
* :func:`cindex_by_cancer`: c-index per cancer and feature set, mean with its 95% CI;
* the c-index over the k x r grid reuses the patient tasks' heatmap
  (:func:`fusionkit_plugins.tasks.patient.figures.grid_heatmap`).

matplotlib is imported on first use (Agg backend).
"""

from __future__ import annotations

import math
from typing import TYPE_CHECKING, Any

import numpy as np

from fusionkit_plugins.tasks.patient.figures import grid_heatmap, pyplot
from fusionkit_plugins.tasks.survival.metrics import DAYS_PER_YEAR, Surv, km_curve

if TYPE_CHECKING:  # pragma: no cover
    from fusionkit import RunContext

__all__ = ["km_by_cancer", "cindex_by_cancer", "grid_heatmap"]

GROUP_COLOURS = {"low": "#1b9e77", "mid": "#7570b3", "high": "#d95f02"}


def _p_text(p: float) -> str:
    if not math.isfinite(p):
        return "p n/a"
    return f"p={p:.2g}" if p >= 1e-4 else "p<1e-4"


def km_by_cancer(ctx: RunContext, rel: str, panels: dict[str, dict[str, Any]], title: str) -> str | None:
    """``panels``: cancer -> {"groups": {group: Surv}, "p": log-rank p}; one panel per cancer."""
    if not panels:
        return None
    plt = pyplot()
    n = len(panels)
    cols = min(3, n)
    rows = int(math.ceil(n / cols))
    fig, axes = plt.subplots(rows, cols, figsize=(3.6 * cols, 2.9 * rows), squeeze=False)
    for ax, (cancer, panel) in zip(axes.ravel(), panels.items()):
        for group, y in panel["groups"].items():
            t, s = km_curve(y)
            if len(t):
                ax.step(np.r_[0.0, t] / DAYS_PER_YEAR, np.r_[1.0, s], where="post",
                        color=GROUP_COLOURS.get(group), label=f"{group} risk (n={len(y)}, {int(y.event.sum())} ev)")
        ax.set_ylim(0, 1.02)
        ax.set_title(f"{cancer}: log-rank {_p_text(panel['p'])}", fontsize=9)
        ax.set_xlabel("years", fontsize=8)
        ax.set_ylabel("survival", fontsize=8)
        ax.legend(fontsize=6, loc="lower left")
    for ax in axes.ravel()[n:]:
        ax.axis("off")
    fig.suptitle(title, fontsize=9)
    fig.tight_layout()
    return str(ctx.save_figure(fig, rel))


def cindex_by_cancer(ctx: RunContext, rel: str, stats: dict[str, dict[str, dict[str, float]]],
                     title: str) -> str | None:
    """``stats``: feature set -> cancer -> {mean, ci_low, ci_high}; grouped bars with CI whiskers."""
    feats = list(stats)
    cancers = sorted({c for per in stats.values() for c in per})
    if not feats or not cancers:
        return None
    plt = pyplot()
    width = 0.8 / len(feats)
    fig, ax = plt.subplots(figsize=(1.4 + 1.1 * len(cancers), 3.2))
    x = np.arange(len(cancers))
    for i, f in enumerate(feats):
        m = np.array([stats[f].get(c, {}).get("mean", np.nan) for c in cancers], dtype=float)
        lo = np.array([stats[f].get(c, {}).get("ci_low", np.nan) for c in cancers], dtype=float)
        hi = np.array([stats[f].get(c, {}).get("ci_high", np.nan) for c in cancers], dtype=float)
        err = np.nan_to_num(np.vstack([m - lo, hi - m]), nan=0.0)
        ax.bar(x + (i - (len(feats) - 1) / 2) * width, m, width, yerr=err, capsize=2, label=f)
    ax.axhline(0.5, color="grey", lw=0.8, ls="--")
    ax.set_xticks(x, cancers)
    ax.set_ylim(0.3, 1.0)
    ax.set_ylabel("c-index (within cancer)")
    ax.legend(fontsize=7, ncol=2)
    ax.set_title(title, fontsize=9)
    fig.tight_layout()
    return str(ctx.save_figure(fig, rel))


def tertiles(score: np.ndarray) -> np.ndarray:
    """``low`` / ``mid`` / ``high`` by the score's tertiles (ties broken by order)."""
    ranks = np.argsort(np.argsort(score, kind="stable"), kind="stable")
    third = np.floor(3 * ranks / max(1, len(score))).astype(int)
    return np.array(["low", "mid", "high"])[np.clip(third, 0, 2)]


def groups_of(y: Surv, labels: np.ndarray) -> dict[str, Surv]:
    return {g: y.take(labels == g) for g in ("low", "mid", "high") if (labels == g).any()}
