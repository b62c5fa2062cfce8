"""Figures of the distillation task (drawing only; matplotlib imported on first use)."""

from __future__ import annotations

import math
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:  # pragma: no cover
    from fusionkit import RunContext


def macro_f1_figure(ctx: RunContext, name: str, summary_rows: list[dict[str, Any]], targets: list[str]) -> list[str]:
    """Macro-F1 (95% CI) of every model, one panel per target; the figure's path relative to the outputs."""
    try:
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
    except ImportError:  # pragma: no cover
        return []
    rows = [r for r in summary_rows if r["metric"] == "macro_f1"]
    if not rows:
        return []
    fig, axes = plt.subplots(1, len(targets), figsize=(4.2 * len(targets), 3.4), squeeze=False)
    for ax, target in zip(axes[0], targets):
        sub = [r for r in rows if r["target"] == target]
        means = [r["mean"] for r in sub]
        err = [[r["mean"] - r["ci_low"] if math.isfinite(r["ci_low"]) else 0 for r in sub],
               [r["ci_high"] - r["mean"] if math.isfinite(r["ci_high"]) else 0 for r in sub]]
        ax.bar(range(len(sub)), means, yerr=err, capsize=3,
               color=["#4c72b0", "#dd8452", "#8c8c8c", "#55a868"][: len(sub)])
        ax.set_xticks(range(len(sub)))
        ax.set_xticklabels([r["model"] for r in sub], rotation=20)
        ax.set_ylim(0, 1)
        ax.set_title(f"{target}: macro-F1 (95% CI)")
    rel = f"{name}/macro_f1.png"
    ctx.save_figure(fig, rel)
    return [rel]
