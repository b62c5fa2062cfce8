"""Figures of the patient-level tasks (drawing only: every number is computed by the tasks).

matplotlib is imported on first use, with the non-interactive Agg backend.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

import numpy as np

from fusionkit_plugins.tasks.patient.common import fmt

if TYPE_CHECKING:  # pragma: no cover
    from fusionkit import RunContext


def pyplot() -> Any:
    """matplotlib.pyplot on the Agg backend."""
    import matplotlib

    matplotlib.use("Agg", force=False)
    import matplotlib.pyplot as plt

    return plt


def grid_heatmap(ctx: RunContext, rel: str, values: dict[tuple[int, int], float], title: str,
                 cbar: str) -> str | None:
    """A k x r heatmap of one value per grid point; None when the grid has a single point."""
    ks = sorted({k for k, _ in values})
    rs = sorted({r for _, r in values})
    if len(ks) * len(rs) < 2:
        return None
    plt = pyplot()
    M = np.full((len(rs), len(ks)), np.nan)
    for (k, r), v in values.items():
        M[rs.index(r), ks.index(k)] = v
    fig, ax = plt.subplots(figsize=(1.2 + 0.9 * len(ks), 1.0 + 0.7 * len(rs)))
    im = ax.imshow(M, origin="lower", cmap="viridis", aspect="auto")
    ax.set_xticks(range(len(ks)), [str(k) for k in ks])
    ax.set_yticks(range(len(rs)), [str(r) for r in rs])
    ax.set_xlabel("sample count k")
    ax.set_ylabel("sampling repeats r")
    for i in range(len(rs)):
        for j in range(len(ks)):
            if np.isfinite(M[i, j]):
                ax.text(j, i, f"{M[i, j]:.2f}", ha="center", va="center",
                        color="white" if M[i, j] < np.nanmean(M) else "black", fontsize=8)
    fig.colorbar(im, ax=ax, label=cbar)
    ax.set_title(title, fontsize=9)
    return str(ctx.save_figure(fig, rel))


def confusion(ctx: RunContext, rel: str, C: np.ndarray, labels: list[str], title: str) -> str:
    """A confusion matrix, rows normalised to the true class, with the counts written in."""
    plt = pyplot()
    C = np.asarray(C, dtype=np.float64)
    norm = C / np.maximum(C.sum(axis=1, keepdims=True), 1)
    n = len(labels)
    fig, ax = plt.subplots(figsize=(1.6 + 0.55 * n, 1.2 + 0.5 * n))
    im = ax.imshow(norm, cmap="Blues", vmin=0, vmax=1)
    ax.set_xticks(range(n), labels, rotation=45, ha="right", fontsize=7)
    ax.set_yticks(range(n), labels, fontsize=7)
    ax.set_xlabel("predicted")
    ax.set_ylabel("true")
    if n <= 15:
        for i in range(n):
            for j in range(n):
                ax.text(j, i, f"{int(C[i, j])}", ha="center", va="center", fontsize=6,
                        color="white" if norm[i, j] > 0.5 else "black")
    fig.colorbar(im, ax=ax, label="fraction of true class")
    ax.set_title(title, fontsize=9)
    return str(ctx.save_figure(fig, rel))


def cluster_scatter(ctx: RunContext, rel: str, pts: dict, classes: list[str], label: str, k: int, r: int,
                    ari: float) -> str:
    """Two 2-D PCA panels of patient aggregates: coloured by true class and by matched GMM cluster."""
    plt = pyplot()
    xy, y, cl = pts["xy"], pts["y"], pts["cluster"]
    fig, axes = plt.subplots(1, 2, figsize=(10, 4.2), sharex=True, sharey=True)
    cmap = plt.get_cmap("tab10" if len(classes) <= 10 else "tab20")
    for i, c in enumerate(classes):
        sel = y == i
        axes[0].scatter(xy[sel, 0], xy[sel, 1], s=6, alpha=0.7, color=cmap(i % cmap.N), label=c)
    for i in range(len(classes)):
        sel = cl == i
        axes[1].scatter(xy[sel, 0], xy[sel, 1], s=6, alpha=0.7, color=cmap(i % cmap.N),
                        label=f"cluster ~ {classes[i]}")
    axes[0].set_title(f"truth ({label})", fontsize=9)
    axes[1].set_title(f"GMM clusters, matched to classes (ARI {fmt(ari, 2)})", fontsize=9)
    for ax in axes:
        ax.set_xlabel("PC1")
        ax.legend(fontsize=6, markerscale=2, loc="best")
    axes[0].set_ylabel("PC2")
    fig.suptitle(f"patient aggregates, k={k}, r={r}", fontsize=10)
    return str(ctx.save_figure(fig, rel))


def pair_histograms(ctx: RunContext, rel: str, res: dict, measures: list[str], label: str, bins: int,
                    k: int, r: int) -> str:
    """One panel per measure: distributions of intra- vs inter-class pair values."""
    plt = pyplot()
    fig, axes = plt.subplots(1, len(measures), figsize=(4.2 * len(measures), 3.4))
    axes = np.atleast_1d(axes)
    for ax, m in zip(axes, measures):
        mres = res["measures"][m]
        vals = mres.get("values") or {}
        vi, vo = vals.get("intra", np.array([])), vals.get("inter", np.array([]))
        both = np.concatenate([vi, vo]) if len(vi) + len(vo) else np.array([0.0])
        edges = np.linspace(float(np.min(both)), float(np.max(both)) + 1e-9, int(bins))
        ax.hist(vo, bins=edges, alpha=0.55, density=True, label="inter-cancer", color="tab:gray")
        ax.hist(vi, bins=edges, alpha=0.55, density=True, label="intra-cancer", color="tab:red")
        ax.set_title(f"{m}: AUC {fmt(mres['auc'], 2)}, d {fmt(mres['cohens_d'], 2)}", fontsize=9)
        ax.set_xlabel("distance" if m == "euclidean" else "similarity")
        ax.legend(fontsize=7)
    fig.suptitle(f"patient-aggregate pairs ({label}), k={k}, r={r}", fontsize=10)
    return str(ctx.save_figure(fig, rel))
