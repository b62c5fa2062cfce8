"""The survival task's ``summary`` (metrics.json) and its rows for ``fusionkit results``: the
headline table (feature set x model), c-index per cancer, paired differences against the
clinical baseline, the issue's target, and one measured sentence on whether the aggregates
add to age + stage.
"""

from __future__ import annotations

import math
from typing import Any

from fusionkit_plugins.tasks.patient.common import fmt, pick
from fusionkit_plugins.tasks.survival.evaluate import horizon_key
from fusionkit_plugins.tasks.survival.unit import CANCER_MODEL, LATE, models_for

__all__ = ["headline", "paper_rows", "statement", "describe", "TARGET", "HEADLINE", "PUBLISHED"]

#: issue 12: overall stratified c-index target for OS on the real cohort
TARGET = 0.65
#: the headline metric: Harrell's c over within-cancer pairs
HEADLINE = "c_stratified"
PUBLISHED = "WSI+RNA models: 0.58-0.78 per TCGA cohort (mean ~0.67)"


def _metrics(setup: dict[str, Any]) -> list[str]:
    return [HEADLINE, "c_harrell", "c_uno", *[horizon_key(h) for h in setup["horizons"]], "ibs"]


def _table(setup: dict[str, Any], stat: dict[tuple, Any]) -> list[dict[str, Any]]:
    rows = []
    for fs in setup["features"]:
        for model in models_for(fs, setup["models"]):
            row: dict[str, Any] = {"features": fs, "model": model}
            for metric in _metrics(setup):
                row[metric] = stat.get((fs, model, "all", metric), pick(None))
            rows.append(row)
    return rows


def _per_cancer(setup: dict[str, Any], cohort: dict[str, Any], stat: dict[tuple, Any]) -> dict[str, Any]:
    out: dict[str, Any] = {}
    for c in sorted(set(cohort["cancer"].tolist())):
        m = cohort["cancer"] == c
        entry: dict[str, Any] = {"patients": int(m.sum()), "events": int(cohort["event"][m].sum())}
        for fs in setup["features"]:
            for model in models_for(fs, setup["models"]):
                entry[f"{fs} / {model}"] = stat.get((fs, model, c, "c_harrell"), pick(None))
        out[c] = entry
    return out


def statement(paired: list[dict[str, Any]], model: str, main: tuple[int, int], n_repeats: int) -> str:
    """One measured sentence: does the aggregate add to age + stage, and how does it compare alone."""
    by = {(r["comparison"], r["model"], r["scope"]): r for r in paired}
    added = by.get(("clinical+multimodal - clinical", model, "all"))
    alone = by.get(("multimodal - clinical", model, "all"))
    if not added and not alone:
        return "no clinical baseline: whether the aggregates add to age + stage was not measured"
    parts = []
    if added:
        parts.append(f"adding the k={main[0]} r={main[1]} multimodal aggregate to age + stage changes the "
                     f"within-cancer c-index by {_signed(added)} ({model}, {n_repeats} repeats): "
                     f"{added['verdict']}")
    if alone:
        parts.append(f"the aggregate alone vs age + stage: {_signed(alone)}: {alone['verdict']}")
    late = by.get((f"clinical+{LATE} - clinical", model, "all"))
    if late:
        parts.append(f"per-modality patient means (late fusion, no sampling) added to age + stage: "
                     f"{_signed(late)}: {late['verdict']}")
    return "; ".join(parts) + "."


def _signed(row: dict[str, Any]) -> str:
    m, lo, hi = row["mean"], row["ci_low"], row["ci_high"]
    if not math.isfinite(m):
        return "n/a"
    return f"{m:+.3f} [{lo:+.3f}, {hi:+.3f}]"


def headline(setup: dict[str, Any], cohort: dict[str, Any], summary_rows: list[dict[str, Any]],
             stat: dict[tuple, Any], paired: list[dict[str, Any]], km_rows: list[dict[str, Any]]) -> dict[str, Any]:
    """The task's summary for metrics.json."""
    main, model = setup["main"], setup["models"][0]
    mm = stat.get(("multimodal", model, "all", HEADLINE), pick(None))
    grid = {m: {f"{r['k']}x{r['repeats']}": r["mean"] for r in summary_rows if r["features"] == "multimodal"
                and r["model"] == m and r["scope"] == "all" and r["metric"] == HEADLINE} for m in setup["models"]}
    km = {r["cancer"]: r["logrank_p"] for r in km_rows if r["features"] == "multimodal" and r["model"] == model}
    return {
        "endpoint": setup["endpoint"], "stratify_by": setup["stratify_by"], "sampling": setup["sampling"],
        "k": main[0], "repeats": main[1], "n_repeats": setup["n_repeats"], "grid": [list(g) for g in setup["grid"]],
        "models": setup["models"], "features": setup["features"], "horizons_years": setup["horizons"],
        "cohort": {"patients": int(len(cohort["pids"])), "events": int(cohort["event"].sum()),
                   "notes": cohort["notes"]},
        "table": _table(setup, stat),
        "per_cancer": _per_cancer(setup, cohort, stat),
        "paired": [{k: r[k] for k in ("comparison", "model", "scope", "mean", "ci_low", "ci_high", "n", "verdict")}
                   for r in paired],
        "target": {"metric": "within-cancer (stratified) c-index, multimodal", "model": model,
                   "threshold": TARGET, **mm, "meets": bool(math.isfinite(mm["mean"]) and mm["mean"] >= TARGET)},
        "cindex_grid": grid,
        "km_logrank_p": km,
        "statement": statement(paired, model, main, setup["n_repeats"]),
    }


def _row(setup: dict[str, Any], metric: str, s: dict[str, Any] | None, paper: str, note: str,
         modality: str = "all") -> dict[str, Any]:
    p = pick(s)
    return {"experiment": f"survival {setup['endpoint']}" + (f" (stratified by {setup['stratify_by']})"
                                                            if setup["stratify_by"] else ""),
            "metric": metric, "modality": modality, "k": setup["main"][0], "repeats": setup["main"][1],
            "ours_mean": p["mean"], "ours_ci_low": p["ci_low"], "ours_ci_high": p["ci_high"], "paper": paper,
            "note": note}


def paper_rows(setup: dict[str, Any], stat: dict[tuple, Any], paired: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """Rows for the run's comparison table (``fusionkit results``, report.html)."""
    rows = []
    for fs in setup["features"]:
        for model in models_for(fs, setup["models"]):
            s = stat.get((fs, model, "all", HEADLINE))
            if fs == "multimodal":
                m = pick(s)["mean"]
                note = f"target >= {TARGET}: " + ("n/a" if not math.isfinite(m) else "meets" if m >= TARGET else "below")
                rows.append(_row(setup, f"c-index within cancer, {fs} ({model})", s, PUBLISHED, note))
            elif fs in ("clinical", "clinical+multimodal", "cancer", LATE, "clinical+" + LATE):
                note = {"cancer": "0.5 by construction: the cancer alone ranks no one within a cancer",
                        LATE: "per-modality patient means, no sampling: what the sums could keep",
                        "clinical+" + LATE: "age + stage + per-modality patient means",
                        "clinical": "age + stage"}.get(fs, "age + stage + aggregate")
                rows.append(_row(setup, f"c-index within cancer, {fs} ({model})", s, "", note))
    cancer_all = stat.get(("cancer", CANCER_MODEL, "all", "c_harrell"))
    if cancer_all:
        rows.append(_row(setup, "Harrell's c pan-cancer, cancer type alone", cancer_all, "",
                         "how much of a pan-cancer c-index the cancer type alone explains"))
    model = setup["models"][0]
    for key, s in sorted(stat.items()):
        fs, m, scope, metric = key
        if fs == "multimodal" and m == model and scope != "all" and metric == "c_harrell" and s.get("n"):
            rows.append(_row(setup, f"c-index, multimodal ({model})", s, PUBLISHED, f"n={s['n']} repeats", scope))
    for r in paired:
        if r["scope"] == "all":
            rows.append(_row(setup, f"paired difference {r['comparison']} ({r['model']})", r, "",
                             f"{r['verdict']}; within-cancer c-index, same test patients"))
    return rows


def describe(summary: dict[str, Any]) -> str:
    """The headline as one line (for logs)."""
    t = summary["target"]
    return (f"{summary['endpoint']} within-cancer c-index {fmt(t['mean'])} "
            f"[{fmt(t['ci_low'])}, {fmt(t['ci_high'])}] vs target {t['threshold']}; {summary['statement']}")

