"""The recognizer's comparison with the paper: which of our numbers stand next to which claim.

Rows have the agreed shape (experiment, metric, modality, k, ours_mean,
ours_ci_low, ours_ci_high, paper, note); the report renders them as a table.
"""

from __future__ import annotations

import math
from typing import Any

import numpy as np

from fusionkit.metrics import mean_ci, metric_bounds


def clean(v: Any) -> Any:
    """A non-finite float becomes None (JSON-safe); anything else is returned as is."""
    if isinstance(v, float) and not math.isfinite(v):
        return None
    return v


def _kind(modality: str) -> str:
    m = modality.lower()
    if "mut" in m or "maf" in m or "snv" in m:
        return "mutation"
    if any(s in m for s in ("text", "report", "annot", "sentence", "clinical", "note")):
        return "annotation"
    if "rna" in m or "expr" in m:
        return "rna"
    if any(s in m for s in ("wsi", "he", "image", "tile", "slide", "histo", "path")):
        return "image"
    return m


def _per_repeat_mean(rows: list[dict[str, Any]], **where: Any) -> dict[str, Any]:
    """mean/CI over repeats of the per-repeat average (over k) of the matching rows."""
    ks = where.pop("ks", None)
    per: dict[int, list[float]] = {}
    for r in rows:
        if all(r.get(key) == val for key, val in where.items()) and (ks is None or r["k"] in ks):
            if math.isfinite(r["value"]):
                per.setdefault(r["repeat"], []).append(r["value"])
    return mean_ci([float(np.mean(v)) for v in per.values()], bounds=metric_bounds(where.get("metric", "")))


def paper_comparison(rows: list[dict[str, Any]], modalities: list[str], ks: list[int], models: list[str],
                     modes: list[str]) -> list[dict[str, Any]]:
    """Rows setting this run's MCCs next to the paper's claims (deep/baseline, isolation/composite, noise)."""
    out: list[dict[str, Any]] = []
    base = dict(metric="mcc", stratum="all")
    note = ("paper: TCGA, 15,000 aggregates per k, n>=30 repeats; ours: this run's pool. Recognisability "
            "depends on each modality's mean offset/norm (SPEC 2.5), see summary.embedding_stats")
    kr = f"{min(ks)}..{max(ks)}" if len(ks) > 1 else str(ks[0])

    def add(experiment: str, modality: str, k: str, stats: dict[str, Any], paper: str, extra: str = "") -> None:
        if stats["n"] == 0:
            return
        out.append({"experiment": experiment, "metric": "MCC", "modality": modality, "k": k,
                    "ours_mean": clean(stats["mean"]), "ours_ci_low": clean(stats["ci_low"]),
                    "ours_ci_high": clean(stats["ci_high"]), "paper": paper,
                    "note": (extra + "; " if extra else "") + note})

    if "deep" in models and "isolation" in modes:
        for m in modalities:
            add("recognizer deep, isolation", m, kr,
                _per_repeat_mean(rows, model="deep", mode="isolation", perturbation="none", modality=m, **base),
                "~0.9 (every modality, k 3..10)", "mean over k")
            add("recognizer deep, isolation", m, str(max(ks)),
                _per_repeat_mean(rows, model="deep", mode="isolation", perturbation="none", modality=m,
                                 k=max(ks), **base), "~0.9")
    if "deep" in models and "composite" in modes:
        for m in modalities:
            if _kind(m) == "annotation":
                add("recognizer deep, composite", m, kr,
                    _per_repeat_mean(rows, model="deep", mode="composite", perturbation="none", modality=m, **base),
                    "0.2-0.6 (composite weaker than isolation for text)", "mean over k")
    if "baseline" in models:
        mode = "isolation" if "isolation" in modes else modes[0]
        for m in modalities:
            paper = {"mutation": "< 0.8 at high k", "annotation": "< 0.6 at high k"}.get(_kind(m))
            if paper:
                add(f"recognizer baseline (logistic), {mode}", m, str(max(ks)),
                    _per_repeat_mean(rows, model="baseline", mode=mode, perturbation="none", modality=m,
                                     k=max(ks), **base), paper)
    if "deep" in models:
        mode = "isolation" if "isolation" in modes else modes[0]
        levels = sorted({r["noise"] for r in rows if isinstance(r["noise"], float) and r["perturbation"] != "none"})
        for m in modalities:
            if _kind(m) != "mutation":
                continue
            for target, paper in ((0.1, "> 0.8"), (0.5, "~0.6")):
                if not levels:
                    break
                level = min(levels, key=lambda x: abs(x - target))
                if abs(level - target) > 0.051:
                    continue
                add(f"robustness deep, {mode}, noise {level:g}", m, kr,
                    _per_repeat_mean(rows, model="deep", mode=mode, modality=m, noise=level, **base),
                    f"{paper} at {int(target * 100)}% noise", "trained clean, tested noisy; mean over k")
    return out
