"""Outputs of the survival task: tidy tables, summaries with 95% CIs over repeats, paired
differences against the clinical baseline, Kaplan-Meier risk groups, figures, and the rows
``fusionkit results`` prints.

Kaplan-Meier risk groups use test predictions only: in each repeat a test patient's risk is
turned into its percentile among that repeat's test patients of the same cancer; a patient's
percentiles are averaged over the repeats in which it was a test patient, and the cancer's
patients are cut into tertiles of that average. Every patient counts once in the curves and in
the log-rank test.
"""

from __future__ import annotations

import math
from typing import TYPE_CHECKING, Any

import numpy as np

from fusionkit.metrics import summarise_rows
from fusionkit_plugins.tasks.patient.common import pick, write_tables
from fusionkit_plugins.tasks.survival import figures
from fusionkit_plugins.tasks.survival.metrics import Surv, logrank
from fusionkit_plugins.tasks.survival.summary import HEADLINE, headline, paper_rows
from fusionkit_plugins.tasks.survival.unit import CANCER_MODEL, LATE

if TYPE_CHECKING:  # pragma: no cover
    from fusionkit import RunContext

__all__ = ["report", "collect", "paired_rows", "run_rows", "COMPARISONS"]


def collect(results: dict[str, Any], meta: dict[str, tuple]) -> list[dict[str, Any]]:
    """Tidy rows ``features, model, k, repeats, repeat, scope, metric, value`` (scope: ``all`` or a cancer)."""
    rows = []
    for key, (k, r, rep) in meta.items():
        for fs, res in (results[key].get("features") or {}).items():
            for model, m in ((res or {}).get("models") or {}).items():
                base = {"features": fs, "model": model, "k": k, "repeats": r, "repeat": rep}
                for scope, block in [("all", m["overall"]), *m["per_cancer"].items()]:
                    for metric, value in block.items():
                        if metric not in ("n", "events"):
                            rows.append({**base, "scope": scope, "metric": metric, "value": float(value)})
    return rows


def run_rows(results: dict[str, Any], meta: dict[str, tuple]) -> list[dict[str, Any]]:
    """One row per repeat, feature set and model: test size, events, the fitted hyper-parameters."""
    rows = []
    for key, (k, r, rep) in meta.items():
        for fs, res in (results[key].get("features") or {}).items():
            for model, m in ((res or {}).get("models") or {}).items():
                o = m["overall"]
                rows.append({"features": fs, "model": model, "k": k, "repeats": r, "repeat": rep,
                             "n_train": res["n_train"], "n_test": o["n"], "events_test": o["events"],
                             "c_stratified": o["c_stratified"], "c_harrell": o["c_harrell"], "c_uno": o["c_uno"],
                             "ibs": o["ibs"], **{f"hp_{a}": b for a, b in (m.get("info") or {}).items()}})
    return rows


#: paired comparisons (features - reference), repeat by repeat on the same test patients
COMPARISONS = (("multimodal", "clinical"), ("clinical+multimodal", "clinical"), (LATE, "clinical"),
               ("clinical+" + LATE, "clinical"), ("multimodal", LATE))


def paired_rows(rows: list[dict[str, Any]], main: tuple[int, int],
                comparisons: tuple[tuple[str, str], ...] = COMPARISONS) -> list[dict[str, Any]]:
    """Per-repeat differences ``features - reference`` of the within-cancer c-index (same test patients),
    summarised: overall (``c_stratified``) and per cancer (``c_harrell`` of that cancer)."""
    val: dict[tuple, float] = {}
    for r in rows:
        if (r["k"], r["repeats"]) == main and ((r["scope"] == "all" and r["metric"] == HEADLINE)
                                               or (r["scope"] != "all" and r["metric"] == "c_harrell")):
            val[(r["features"], r["model"], r["scope"], r["repeat"])] = r["value"]
    diffs = []
    for (fs, model, scope, rep), v in val.items():
        for a, reference in comparisons:
            ref = val.get((reference, model, scope, rep))
            if fs == a and ref is not None and math.isfinite(v) and math.isfinite(ref):
                diffs.append({"comparison": f"{fs} - {reference}", "model": model, "scope": scope,
                              "value": v - ref})
    out = summarise_rows(diffs, by=["comparison", "model", "scope"])
    for row in out:
        lo, hi = row["ci_low"], row["ci_high"]
        row["verdict"] = ("adds" if lo > 0 else "worse" if hi < 0 else "no measurable difference") \
            if math.isfinite(lo) and math.isfinite(hi) else "n/a"
    return out


def chosen_weights(results: dict[str, Any], meta: dict[str, tuple]) -> dict[str, dict[str, int]]:
    """``{"<k>x<r>": {weights: repeats}}``: the per-modality weights chosen for the multimodal sums
    (``modality_weights``), counted over the repeats of each grid point; empty without weights."""
    out: dict[str, dict[str, int]] = {}
    for key, (k, r, _) in meta.items():
        res = (results[key].get("features") or {}).get("multimodal") or {}
        first = next(iter((res.get("models") or {}).values()), {})  # one choice per unit, shared by the models
        w = (first.get("info") or {}).get("weights")
        if w is not None:
            counts = out.setdefault(f"{k}x{r}", {})
            counts[w] = counts.get(w, 0) + 1
    return out


def _stat_table(summary_rows: list[dict[str, Any]], main: tuple[int, int]) -> dict[tuple, dict[str, Any]]:
    return {(r["features"], r["model"], r["scope"], r["metric"]): pick(r) for r in summary_rows
            if (r["k"], r["repeats"]) == main}


def _km_panels(results: dict[str, Any], meta: dict[str, tuple], main: tuple[int, int], fs: str, model: str,
               surv: dict[str, list], cancer: dict[str, str]) -> tuple[dict[str, Any], list[dict[str, Any]]]:
    """(panels per cancer for the figure, rows per cancer and risk group with the log-rank test)."""
    pct: dict[str, list[float]] = {}
    for key, (k, r, _) in meta.items():
        res = (results[key].get("features") or {}).get(fs)
        if (k, r) != main or not res or model not in res["models"]:
            continue
        ids = np.asarray(res["test_ids"]).astype(str)
        risk = np.asarray(res["models"][model]["risk"], dtype=np.float64)
        cs = np.array([cancer[p] for p in ids])
        for c in np.unique(cs):
            m = cs == c
            ranks = np.argsort(np.argsort(risk[m], kind="stable"), kind="stable") / max(1, m.sum() - 1)
            for p, q in zip(ids[m], ranks):
                pct.setdefault(p, []).append(float(q))
    pids = np.array(sorted(pct))
    if not len(pids):
        return {}, []
    avg = np.array([np.mean(pct[p]) for p in pids])
    cs = np.array([cancer[p] for p in pids])
    y = Surv([surv[p][0] for p in pids], [surv[p][1] for p in pids])
    panels, rows = {}, []
    for c in np.unique(cs):
        m = cs == c
        groups = figures.tertiles(avg[m])
        test = logrank(y.take(m), groups)
        panels[str(c)] = {"groups": figures.groups_of(y.take(m), groups), "p": test["p"]}
        for g, yg in panels[str(c)]["groups"].items():
            rows.append({"features": fs, "model": model, "cancer": str(c), "group": g, "patients": len(yg),
                         "events": int(yg.event.sum()), "logrank_chi2": test["chi2"], "logrank_p": test["p"]})
    return panels, rows


def _figures(ctx: RunContext, setup: dict[str, Any], cohort: dict[str, Any], results: dict[str, Any],
             meta: dict[str, tuple], summary_rows: list[dict[str, Any]], stat: dict[tuple, Any]
             ) -> tuple[list[str], list[dict[str, Any]]]:
    name, main, model = setup["name"], setup["main"], setup["models"][0]
    surv = {p: [e, t] for p, e, t in zip(cohort["pids"].tolist(), cohort["event"], cohort["time"])}
    cancer = dict(zip(cohort["pids"].tolist(), cohort["cancer"].tolist()))
    figs, km_rows = [], []
    for fs in [f for f in ("multimodal", "clinical") if f in setup["features"]]:
        panels, rows = _km_panels(results, meta, main, fs, model, surv, cancer)
        km_rows += rows
        where = "" if fs == "clinical" else f"k={main[0]} r={main[1]}, "
        f = figures.km_by_cancer(ctx, f"{name}/km_{fs}_{model}.png", panels,
                                 f"{setup['endpoint']}: test patients by predicted risk tertile ({fs}, {model}, "
                                 f"{where}{setup['n_repeats']} repeats)")
        figs += [f] if f else []
    for m in setup["models"]:
        grid = {(r["k"], r["repeats"]): r["mean"] for r in summary_rows if r["features"] == "multimodal"
                and r["model"] == m and r["scope"] == "all" and r["metric"] == HEADLINE}
        f = figures.grid_heatmap(ctx, f"{name}/cindex_grid_{m}.png", grid,
                                 f"{setup['endpoint']} within-cancer c-index, multimodal, {m}", "c-index")
        figs += [f] if f else []
    cancers = sorted(set(cohort["cancer"].tolist()))
    per = {fs: {c: stat.get((fs, model if fs != "cancer" else CANCER_MODEL, c, "c_harrell"), {}) for c in cancers}
           for fs in setup["features"] if fs in ("multimodal", "clinical+multimodal", "clinical", LATE, "clinical+" + LATE)}
    f = figures.cindex_by_cancer(ctx, f"{name}/cindex_by_cancer_{model}.png", per,
                                 f"{setup['endpoint']} c-index per cancer ({model}, k={main[0]} r={main[1]})")
    figs += [f] if f else []
    return figs, km_rows


def _cohort_rows(cohort: dict[str, Any]) -> list[dict[str, Any]]:
    rows = []
    for c in sorted(set(cohort["cancer"].tolist())):
        m = cohort["cancer"] == c
        rows.append({"cancer": c, "patients": int(m.sum()), "events": int(cohort["event"][m].sum()),
                     "median_time_days": float(np.median(cohort["time"][m]))})
    return rows


def report(ctx: RunContext, setup: dict[str, Any], cohort: dict[str, Any], results: dict[str, Any],
           meta: dict[str, tuple]) -> dict[str, Any]:
    """Write every table and figure; return the task's metrics.json entry."""
    rows = collect(results, meta)
    summary_rows = summarise_rows(rows, by=["features", "model", "k", "repeats", "scope", "metric"])
    paired = paired_rows(rows, setup["main"])
    stat = _stat_table(summary_rows, setup["main"])
    figs, km_rows = _figures(ctx, setup, cohort, results, meta, summary_rows, stat)
    tables = write_tables(ctx, setup["name"], {"summary": summary_rows, "paired": paired, "km_groups": km_rows,
                                               "runs": run_rows(results, meta), "cohort": _cohort_rows(cohort)})
    summary = headline(setup, cohort, summary_rows, stat, paired, km_rows)
    summary["coverage"] = setup.get("coverage") or {}
    summary["weights_chosen"] = chosen_weights(results, meta)
    return {"summary": summary, "tables": tables, "figures": figs, "paper_comparison": paper_rows(setup, stat, paired)}

