"""Figures of the recognizer tasks (drawing only: every number comes from the summary rows).

``mcc_by_k.png`` (deep vs baseline), ``isolation_vs_composite.png``,
``robustness.png`` (MCC vs noise fraction) and ``strata.png`` (recall on the
present stratum, specificity on the absent stratum); one panel per modality.
matplotlib is imported on first use, with the non-interactive Agg backend.
"""

from __future__ import annotations

import logging
import math
from typing import TYPE_CHECKING, Any

import numpy as np

if TYPE_CHECKING:  # pragma: no cover
    from fusionkit import RunContext

log = logging.getLogger(__name__)

#: short legend names of the models
LABELS = {"deep": "DL", "baseline": "BL"}


class _Summary:
    """Summary rows looked up by (model, mode, perturbation, modality, stratum, metric, k)."""

    def __init__(self, summary_rows: list[dict[str, Any]]):
        self.rows = summary_rows
        self.by = {(r["model"], r["mode"], r["perturbation"], r["modality"], r["stratum"], r["metric"], r["k"]): r
                   for r in summary_rows}
        self.ks = sorted({r["k"] for r in summary_rows})

    def series(self, model: str, mode: str, modality: str, pert: str = "none", stratum: str = "all",
               metric: str = "mcc") -> tuple[list[int], np.ndarray, np.ndarray, np.ndarray]:
        """(k, mean, lower error, upper error) over the sample counts with a finite mean."""
        xs, ys, lo, hi = [], [], [], []
        for k in self.ks:
            r = self.by.get((model, mode, pert, modality, stratum, metric, k))
            if r is None or not math.isfinite(r["mean"]):
                continue
            xs.append(k)
            ys.append(r["mean"])
            lo.append(r["mean"] - r["ci_low"] if math.isfinite(r["ci_low"]) else 0.0)
            hi.append(r["ci_high"] - r["mean"] if math.isfinite(r["ci_high"]) else 0.0)
        return xs, np.asarray(ys), np.asarray(lo), np.asarray(hi)


def _pyplot() -> Any:
    try:
        import matplotlib

        matplotlib.use("Agg", force=False)
        import matplotlib.pyplot as plt
    except ImportError:  # pragma: no cover
        log.warning("matplotlib missing: no recognizer figures")
        return None
    return plt


def _grid(plt: Any, modalities: list[str], title: str) -> tuple[Any, list[Any]]:
    """A figure with one panel per modality (at most 4 per row)."""
    n = len(modalities)
    cols = min(4, n)
    rws = int(math.ceil(n / cols))
    fig, axes = plt.subplots(rws, cols, figsize=(3.4 * cols, 2.9 * rws), squeeze=False, sharey=True)
    flat = list(axes.ravel())
    for ax in flat[n:]:
        ax.axis("off")
    fig.suptitle(title, y=1.03)
    return fig, flat[:n]


def _panel(ax: Any, modality: str, xlabel: str = "sample count k") -> None:
    ax.set_title(modality)
    ax.set_xlabel(xlabel)
    ax.set_ylim(-0.05, 1.05)
    ax.grid(alpha=0.3)


def _save(ctx: RunContext, fig: Any, rel: str) -> str:
    return str(ctx.save_figure(fig, rel).relative_to(ctx.out_dir))


def recognizer_figures(ctx: RunContext, name: str, summary_rows: list[dict[str, Any]], modalities: list[str],
                       models: list[str], modes: list[str]) -> list[str]:
    """Draw the recognizer figures under ``<name>/``; their paths relative to the output folder."""
    plt = _pyplot()
    if plt is None:  # pragma: no cover
        return []
    figs: list[str] = []
    if not modalities:
        return figs
    data = _Summary(summary_rows)
    figs.append(_mcc_by_k(plt, ctx, name, data, modalities, models, modes))
    if len(modes) > 1:
        figs.append(_isolation_vs_composite(plt, ctx, name, data, modalities, models))
    noisy = [r for r in summary_rows if r["perturbation"] != "none" and isinstance(r["noise"], float)
             and r["metric"] == "mcc" and r["stratum"] == "all"]
    if noisy:
        figs.append(_robustness(plt, ctx, name, data, noisy, modalities, models, modes))
    figs.append(_strata(plt, ctx, name, data, modalities, models, modes))
    return figs


def _mcc_by_k(plt: Any, ctx: RunContext, name: str, data: _Summary, modalities: list[str], models: list[str],
              modes: list[str]) -> str:
    """MCC vs k: deep vs baseline (each mode)."""
    fig, axes = _grid(plt, modalities, "Recognizer MCC vs sample count (mean, 95% CI)")
    for ax, m in zip(axes, modalities):
        for model in models:
            for mode in modes:
                xs, ys, lo, hi = data.series(model, mode, m)
                if xs:
                    ax.errorbar(xs, ys, yerr=[lo, hi], marker="o", ms=3, capsize=2,
                                linestyle="-" if model == "deep" else "--",
                                label=f"{LABELS.get(model, model)} {mode}")
        _panel(ax, m)
    axes[0].set_ylabel("MCC")
    axes[0].legend(fontsize=7)
    return _save(ctx, fig, f"{name}/mcc_by_k.png")


def _isolation_vs_composite(plt: Any, ctx: RunContext, name: str, data: _Summary, modalities: list[str],
                            models: list[str]) -> str:
    """Isolation vs composite models (each model)."""
    fig, axes = _grid(plt, modalities, "Isolation vs composite models (MCC)")
    for ax, m in zip(axes, modalities):
        for model in models:
            for mode, style in (("isolation", "-"), ("composite", ":")):
                xs, ys, lo, hi = data.series(model, mode, m)
                if xs:
                    ax.errorbar(xs, ys, yerr=[lo, hi], marker="s" if mode == "composite" else "o", ms=3,
                                capsize=2, linestyle=style, label=f"{LABELS.get(model, model)} {mode}")
        _panel(ax, m)
    axes[0].set_ylabel("MCC")
    axes[0].legend(fontsize=7)
    return _save(ctx, fig, f"{name}/isolation_vs_composite.png")


def _robustness(plt: Any, ctx: RunContext, name: str, data: _Summary, noisy: list[dict[str, Any]],
                modalities: list[str], models: list[str], modes: list[str]) -> str:
    """MCC vs noise fraction, one line per k (the deep model when there is one)."""
    model = "deep" if "deep" in models else models[0]
    fig, axes = _grid(plt, modalities,
                      f"Robustness ({LABELS.get(model, model)}, trained clean, tested noisy): MCC vs noise")
    clean = {(r["mode"], r["modality"], r["k"]): r["mean"] for r in data.rows
             if r["model"] == model and r["perturbation"] == "none" and r["metric"] == "mcc"
             and r["stratum"] == "all"}
    for ax, m in zip(axes, modalities):
        for mode in modes:
            for k in data.ks:
                pts = sorted((r["noise"], r["mean"]) for r in noisy
                             if r["model"] == model and r["mode"] == mode and r["modality"] == m and r["k"] == k)
                if not pts:
                    continue
                if (mode, m, k) in clean:
                    pts = [(0.0, clean[(mode, m, k)])] + pts
                ax.plot([p[0] for p in pts], [p[1] for p in pts], marker="o", ms=3,
                        linestyle="-" if mode == "isolation" else ":", label=f"k={k} {mode}")
        _panel(ax, m, xlabel="noise fraction")
    axes[0].set_ylabel("MCC")
    axes[0].legend(fontsize=6, ncol=2)
    return _save(ctx, fig, f"{name}/robustness.png")


def _strata(plt: Any, ctx: RunContext, name: str, data: _Summary, modalities: list[str], models: list[str],
            modes: list[str]) -> str:
    """Recall on present samples (solid), specificity on absent samples (dashed)."""
    fig, axes = _grid(plt, modalities, "Stratified: recall (present, solid) and specificity (absent, dashed)")
    for ax, m in zip(axes, modalities):
        for model in models:
            mode = modes[0]
            for stratum, metric, style in (("present", "recall", "-"), ("absent", "specificity", "--")):
                xs, ys, lo, hi = data.series(model, mode, m, stratum=stratum, metric=metric)
                if xs:
                    ax.errorbar(xs, ys, yerr=[lo, hi], marker="o", ms=3, capsize=2, linestyle=style,
                                label=f"{LABELS.get(model, model)} {metric}")
        _panel(ax, m)
    axes[0].legend(fontsize=7)
    return _save(ctx, fig, f"{name}/strata.png")
