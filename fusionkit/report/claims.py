"""The paper's claims (SPEC 2.4) checked against a run's ``paper_comparison`` rows.

Each claim reads the rows the tasks wrote (``metrics[task]["paper_comparison"]``)
and gives a verdict: ``holds``, ``partly``, ``does not hold`` or ``not
comparable``, with a one-line reason, our number with its 95% CI, and the
figure that shows it. The first task (in recipe order) that measures a claim
decides its verdict; other tasks that measure it are listed under ``also``.
Pure data, no HTML: the report, ``fusionkit results`` and the console
summary all read these results, so they agree number for number.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from typing import Any, Callable, Mapping, Sequence

from .fmt import as_float, ci, num

HOLDS, PARTLY, FAILS, NA = "holds", "partly", "does not hold", "not comparable"
VERDICTS = (HOLDS, PARTLY, FAILS, NA)
D = 2  # digits shown for claim numbers


@dataclass
class Claim:
    """One of the paper's claims and its verdict on this run."""

    id: str
    title: str
    paper: str
    verdict: str = NA
    ours: str = ""
    detail: str = ""
    reason: str = "no task in this recipe measures it"
    task: str | None = None
    figure: str | None = None
    #: the modality whose panel of a per-modality figure the thumbnail shows
    focus: str | None = None
    also: list[str] = field(default_factory=list)

    def as_dict(self) -> dict[str, Any]:
        return {"id": self.id, "claim": self.title, "paper": self.paper, "verdict": self.verdict,
                "ours": self.ours, "detail": self.detail, "reason": self.reason, "task": self.task,
                "figure": self.figure, "also": list(self.also)}


def comparison_rows(metrics: Mapping[str, Any]) -> list[dict[str, Any]]:
    """Every task's ``paper_comparison`` rows with the task name added (numbers untouched)."""
    rows = []
    for tname, result in (metrics or {}).items():
        if not isinstance(result, Mapping):
            continue
        for row in result.get("paper_comparison") or []:
            if isinstance(row, Mapping):
                rows.append({"task": tname, **row})
    return rows


_SYMBOLS = (("<->", "\u2194"), (">=", "\u2265"), ("<=", "\u2264"), ("->", "\u2192"), ("~", "\u2248"))


def pretty(text: str) -> str:
    """ASCII relations as symbols (``<->`` as a two-headed arrow, ``>=`` as a sign, ...)."""
    for a, b in _SYMBOLS:
        text = text.replace(a, b)
    return text


def _stat(row: Mapping[str, Any] | None) -> str:
    if not row:
        return ""
    text = num(as_float(row.get("ours_mean")), D)
    bounds = ci(row.get("ours_ci_low"), row.get("ours_ci_high"), D)
    return f"{text} {bounds}".strip()


def _mean(row: Mapping[str, Any] | None) -> float | None:
    return as_float(row.get("ours_mean")) if row else None


def _kind(modality: str) -> str:
    m = str(modality).lower()
    if any(s in m for s in ("mut", "maf", "snv")):
        return "mutation"
    if any(s in m for s in ("text", "report", "annot", "sentence", "clinical", "note")):
        return "annotation"
    return m


def _tally(good: int, total: int) -> str:
    if good == total:
        return HOLDS
    return PARTLY if good else FAILS


# ----------------------------------------------------------------------------- evaluators
# Each takes the rows of one task and that task's result; returns None when the
# task does not measure the claim, else a dict of Claim fields.


def _recognizer_deep(rows: Sequence[Mapping[str, Any]], _: Mapping[str, Any]) -> dict[str, Any] | None:
    iso = [r for r in rows if r.get("experiment") == "recognizer deep, isolation"]
    per = {str(r.get("modality")): r for r in reversed(iso) if ".." in str(r.get("k", ""))}
    top = {str(r.get("modality")): r for r in reversed(iso) if ".." not in str(r.get("k", ""))}
    per = per or top
    if not per:
        return None
    means = {m: _mean(r) for m, r in per.items()}
    at_top = {m: _mean(top.get(m)) if top.get(m) is not per[m] else None for m in per}
    k_top = next((r.get("k") for r in top.values()), None)

    def ok(m: str) -> bool:
        return (means[m] or 0) >= 0.85 and (at_top[m] is None or at_top[m] >= 0.8)

    worst = min(per, key=lambda m: means[m] if means[m] is not None else -9)
    low = [f"{m} {num(means[m], D)}" + (f" ({num(at_top[m], D)} at k={k_top})" if at_top[m] is not None else "")
           for m in per if not ok(m)]
    good = len(per) - len(low)
    reason = (f"all {len(per)} modalities reach MCC >= 0.85" + (f" (>= 0.8 at k={k_top})" if k_top else "")
              if not low else f"short: {', '.join(low)}; {good} of {len(per)} hold")
    return {"verdict": _tally(good, len(per)), "reason": reason,
            "ours": f"lowest {worst} {_stat(per[worst])}",
            "detail": "mean over k: " + " · ".join(f"{m} {num(v, D)}" for m, v in means.items()),
            "figure": "mcc_by_k", "focus": worst}


def _recognizer_baseline(rows: Sequence[Mapping[str, Any]], _: Mapping[str, Any]) -> dict[str, Any] | None:
    picked = [r for r in rows if str(r.get("experiment", "")).startswith("recognizer baseline")]
    if not picked:
        return None
    below, parts = 0, []
    for r in picked:
        m = re.search(r"<\s*([0-9.]+)", str(r.get("paper", "")))
        thr = float(m.group(1)) if m else None
        v = _mean(r)
        ok = thr is not None and v is not None and v < thr
        below += ok
        parts.append(f"{r.get('modality')} {num(v, D)} ({'<' if ok else '>='} {num(thr, 1)})")
    reason = ("the baseline stays below the paper's bound for every modality" if below == len(picked) else
              "the baseline stays at or above the paper's bound: " +
              ", ".join(p for p, r in zip(parts, picked) if "(>=" in p))
    return {"verdict": _tally(below, len(picked)), "reason": reason,
            "ours": " · ".join(f"{r.get('modality')} {_stat(r)}" for r in picked),
            "detail": f"logistic baseline, k={picked[0].get('k')}", "figure": "mcc_by_k",
            "focus": str(picked[0].get("modality"))}


def _composite_text(rows: Sequence[Mapping[str, Any]], _: Mapping[str, Any]) -> dict[str, Any] | None:
    comp = [r for r in rows if r.get("experiment") == "recognizer deep, composite"
            and _kind(str(r.get("modality"))) == "annotation"]
    if not comp:
        return None
    c = comp[0]
    iso = next((r for r in rows if r.get("experiment") == "recognizer deep, isolation"
                and r.get("modality") == c.get("modality") and r.get("k") == c.get("k")), None)
    cm, im = _mean(c), _mean(iso)
    ours = f"composite {_stat(c)} vs isolation {_stat(iso)}" if iso else f"composite {_stat(c)}"
    if cm is None or im is None:
        return {"verdict": NA, "reason": "no isolation result to compare with", "ours": ours, "figure": "composite"}
    clo, ihi = as_float(c.get("ours_ci_high")), as_float(iso.get("ours_ci_low")) if iso else None
    if clo is not None and ihi is not None and clo < ihi:
        verdict, reason = HOLDS, "composite is lower than isolation, CIs apart"
    elif cm < im:
        verdict, reason = PARTLY, f"composite lower by {num(im - cm, D)}, CIs overlap"
    else:
        verdict, reason = FAILS, "composite is not lower than isolation for text"
    return {"verdict": verdict, "reason": reason, "ours": ours, "detail": f"modality {c.get('modality')}",
            "figure": "isolation_vs_composite", "focus": str(c.get("modality"))}


def _noise_level(row: Mapping[str, Any]) -> float | None:
    m = re.search(r"noise ([0-9.]+)", str(row.get("experiment", "")))
    return float(m.group(1)) if m else None


def _noise(rows: Sequence[Mapping[str, Any]], _: Mapping[str, Any]) -> dict[str, Any] | None:
    picked = {_noise_level(r): r for r in rows if str(r.get("experiment", "")).startswith("robustness deep")}
    picked.pop(None, None)
    if not picked:
        return None
    lo = picked.get(min(picked, key=lambda x: abs(x - 0.1)))
    hi = picked.get(min(picked, key=lambda x: abs(x - 0.5)))
    lo = lo if abs(_noise_level(lo) - 0.1) < 0.06 else None
    hi = hi if abs(_noise_level(hi) - 0.5) < 0.06 else None
    ours = " · ".join(f"{int(round(_noise_level(r) * 100))}%: {_stat(r)}" for r in (lo, hi) if r)
    a, b = _mean(lo), _mean(hi)
    if a is not None and a <= 0.8:
        verdict, reason = FAILS, f"MCC {num(a, D)} at 10% noise, not above 0.8"
    elif a is None:
        verdict, reason = PARTLY if b is not None else NA, "no 10% noise level in this run"
    elif b is None:
        verdict, reason = PARTLY, "above 0.8 at 10% noise; no 50% level in this run"
    elif 0.45 <= b <= 0.75:
        verdict, reason = HOLDS, "above 0.8 at 10% and about 0.6 at 50% noise"
    elif b > 0.75:
        verdict, reason = PARTLY, f"more robust than the paper: {num(b, D)} at 50% noise (paper about 0.6)"
    else:
        verdict, reason = PARTLY, f"less robust than the paper: {num(b, D)} at 50% noise (paper about 0.6)"
    mod = (lo or hi).get("modality")
    return {"verdict": verdict, "reason": reason, "ours": ours, "detail": f"modality {mod}, trained clean",
            "figure": "robustness", "focus": str(mod)}


def _classifier_rows(rows: Sequence[Mapping[str, Any]]) -> tuple[str, list[Mapping[str, Any]]]:
    exps = list(dict.fromkeys(str(r.get("experiment")) for r in rows
                              if str(r.get("experiment", "")).startswith("classifier cancer type")))
    if not exps:
        return "", []
    exp = next((e for e in exps if "(dense)" in e), exps[0])
    model = exp[exp.find("(") + 1:exp.rfind(")")] if "(" in exp else ""
    return model, [r for r in rows if r.get("experiment") == exp]


def _classifier(rows: Sequence[Mapping[str, Any]], _: Mapping[str, Any]) -> dict[str, Any] | None:
    model, picked = _classifier_rows(rows)
    f1 = [r for r in picked if str(r.get("metric", "")).startswith("F1 ")]
    acc = next((r for r in picked if r.get("metric") == "accuracy"), None)
    if not f1 and not acc:
        return None
    vals = {str(r.get("modality")): _mean(r) for r in f1}
    good = [c for c, v in vals.items() if v is not None and v >= 0.8]
    acc_ok = acc is not None and (_mean(acc) or 0) >= 0.7
    worst = min(vals, key=lambda c: vals[c] if vals[c] is not None else -9) if vals else None
    if acc_ok and len(good) == len(vals):
        verdict, reason = HOLDS, f"accuracy >= 0.7 and F1 >= 0.8 for all {len(vals)} cancers"
    elif acc_ok or good:
        verdict = PARTLY
        reason = f"F1 >= 0.8 for {len(good)} of {len(vals)} cancers" + ("" if acc_ok else "; accuracy below 0.7")
    else:
        verdict, reason = FAILS, "accuracy below 0.7 and no cancer reaches F1 0.8"
    ours = f"accuracy {_stat(acc)}" + (f"; lowest F1 {worst} {num(vals[worst], D)}" if worst else "")
    k, r = (acc or f1[0]).get("k"), (acc or f1[0]).get("repeats")
    return {"verdict": verdict, "reason": reason, "ours": ours, "detail": f"{model} model, k={k}, r={r}",
            "figure": f"confusion_cancer_type_{model}"}


def _confusions(rows: Sequence[Mapping[str, Any]], _: Mapping[str, Any]) -> dict[str, Any] | None:
    model, picked = _classifier_rows(rows)
    row = next((r for r in picked if r.get("metric") == "most frequent confusions"), None)
    if row is None:
        return None
    classes = {str(r.get("modality")) for r in picked if str(r.get("metric", "")).startswith("F1 ")}
    note = str(row.get("note", ""))
    ours = {frozenset(p) for p in re.findall(r"([A-Za-z0-9_-]+)<->([A-Za-z0-9_-]+)", note)}
    paper = [frozenset(("LUAD", "BLCA")), frozenset(("COAD", "STAD"))]
    common = dict(ours=note or "none", detail=f"{model} model, top 3 pairs", figure=f"confusion_cancer_type_{model}")
    missing = sorted(c for p in paper for c in p if classes and c not in classes)
    if missing:
        return {"verdict": NA, "reason": f"{', '.join(missing)} not in this data", **common}
    if not ours:
        return {"verdict": NA, "reason": "no confusions at all: nothing to compare", **common}
    hits = [p for p in paper if p in ours]
    names = ", ".join("<->".join(sorted(p)) for p in hits)
    reason = ("both paper pairs among our top 3" if len(hits) == 2 else
              f"{names} among our top 3, the other pair is not" if hits else "neither paper pair among our top 3")
    return {"verdict": _tally(len(hits), 2), "reason": reason, **common}


def _more_k(rows: Sequence[Mapping[str, Any]], _: Mapping[str, Any]) -> dict[str, Any] | None:
    _, picked = _classifier_rows(rows)
    row = next((r for r in picked if r.get("metric") == "MCC trend over k x r"), None)
    if row is None:
        return None
    d = _mean(row)
    ours = f"{row.get('note', '')} (change {num(d, D)})" if d is not None else str(row.get("note", ""))
    if d is None:
        verdict, reason = NA, "the MCC is undefined at one end of the grid"
    elif d > 0.01:
        verdict, reason = HOLDS, f"MCC rises from k x r = {row.get('k')}"
    elif d >= -0.01:
        verdict, reason = PARTLY, "flat over the grid (change within 0.01)"
    else:
        verdict, reason = FAILS, "MCC falls as k and r grow"
    return {"verdict": verdict, "reason": reason, "ours": ours, "detail": "classifier, smallest vs largest k x r",
            "figure": "mcc_grid_cancer_type"}


def _gmm_sharpen(rows: Sequence[Mapping[str, Any]], _: Mapping[str, Any]) -> dict[str, Any] | None:
    ari = [r for r in rows if r.get("experiment") == "GMM clustering" and r.get("metric") == "ARI"]
    if len(ari) < 2:
        return None if not ari else {"verdict": NA, "reason": "a single grid point", "ours": _stat(ari[0]),
                                     "figure": "ari_grid"}
    a, b = ari[0], ari[-1]
    ours = f"ARI {num(_mean(a), D)} at {a.get('k')} -> {_stat(b)} at {b.get('k')}"
    lo_hi, hi_lo = as_float(a.get("ours_ci_high")), as_float(b.get("ours_ci_low"))
    if lo_hi is not None and hi_lo is not None and hi_lo > lo_hi:
        verdict, reason = HOLDS, "ARI higher at the largest k x r, CIs apart"
    elif (_mean(b) or 0) > (_mean(a) or 0):
        verdict, reason = PARTLY, "ARI higher at the largest k x r, CIs overlap"
    else:
        verdict, reason = FAILS, "ARI does not rise with k and r"
    return {"verdict": verdict, "reason": reason, "ours": ours, "detail": "GMM on patient aggregates",
            "figure": "ari_grid"}


def _gmm_thca(rows: Sequence[Mapping[str, Any]], result: Mapping[str, Any]) -> dict[str, Any] | None:
    row = next((r for r in rows if str(r.get("metric", "")).startswith("best separated class")), None)
    if row is None:
        return None
    m = re.search(r"ours: ([A-Za-z0-9_-]+)", str(row.get("note", "")))
    best = m.group(1) if m else "?"
    sil = (result.get("summary") or {}).get("class_silhouette_at_largest") or {}
    ranked = sorted((c for c in sil if as_float(sil[c]) is not None), key=lambda c: -float(sil[c]))
    ours = f"{best} (silhouette {num(_mean(row), D)})"
    if "THCA not in this data" in str(row.get("note", "")) or (sil and "THCA" not in sil):
        return {"verdict": NA, "reason": "THCA not in this data", "ours": ours, "figure": "pca_k"}
    if best == "THCA":
        verdict, reason = HOLDS, "THCA has the highest silhouette of its true class"
    elif ranked[:2].count("THCA"):
        verdict, reason = PARTLY, f"THCA second after {best}"
    else:
        verdict, reason = FAILS, f"{best} separates best" + (f"; THCA ranks {ranked.index('THCA') + 1}"
                                                               if "THCA" in ranked else "")
    return {"verdict": verdict, "reason": reason, "ours": ours, "detail": f"at k x r = {row.get('k')}",
            "figure": "pca_k"}


Evaluator = Callable[[Sequence[Mapping[str, Any]], Mapping[str, Any]], "dict[str, Any] | None"]

CLAIMS: tuple[tuple[str, str, str, Evaluator], ...] = (
    ("recognizer", "Every modality is recognised inside a sum",
     "deep recognizer MCC about 0.9 for every modality, k 3..10", _recognizer_deep),
    ("baseline", "A logistic baseline falls behind at high counts",
     "logistic MCC < 0.8 (mutation), < 0.6 (annotations) at high k", _recognizer_baseline),
    ("composite", "Composite models are weaker for text",
     "text MCC lower in composite than in isolation", _composite_text),
    ("noise", "Recognition survives noise",
     "mutation MCC > 0.8 at 10% noise, about 0.6 at 50%", _noise),
    ("classifier", "Tumour of origin from aggregates",
     "per-cancer F1 >= 0.8, accuracy >= 0.7", _classifier),
    ("confusions", "Typical confusions", "LUAD<->BLCA and COAD<->STAD", _confusions),
    ("more-k", "More k and r help the classifier", "MCC rises with k and r", _more_k),
    ("gmm", "Clusters sharpen as k and r grow", "GMM clusters clearest at k=5, r=5", _gmm_sharpen),
    ("thca", "THCA separates best", "THCA is the most distinct cluster", _gmm_thca),
)


def evaluate_claims(metrics: Mapping[str, Any]) -> list[Claim]:
    """One :class:`Claim` per paper claim (SPEC 2.4), in the paper's order."""
    rows = comparison_rows(metrics)
    by_task: dict[str, list[dict[str, Any]]] = {}
    for r in rows:
        by_task.setdefault(r["task"], []).append(r)
    out = []
    for cid, title, paper, fn in CLAIMS:
        claim = Claim(cid, title, paper)
        for tname, trows in by_task.items():
            try:
                got = fn(trows, metrics.get(tname) or {})
            except (KeyError, TypeError, ValueError, ZeroDivisionError):
                got = None  # a malformed row never loses the report
            if not got:
                continue
            if claim.task is None:
                claim.task = tname
                claim.verdict, claim.reason = got["verdict"], got["reason"]
                claim.ours, claim.detail = got.get("ours", ""), got.get("detail", "")
                claim.figure = _figure(metrics.get(tname) or {}, got.get("figure"))
                claim.focus = got.get("focus")
            else:
                claim.also.append(f"{tname}: {got['verdict']}, {got.get('ours', '')}")
        for attr in ("title", "paper", "ours", "detail", "reason"):
            setattr(claim, attr, pretty(getattr(claim, attr)))
        claim.also = [pretty(a) for a in claim.also]
        out.append(claim)
    return out


def _figure(result: Mapping[str, Any], pattern: str | None) -> str | None:
    """The task's figure whose file name contains ``pattern`` (the last one: largest grid point)."""
    figures = [str(f) for f in result.get("figures") or []]
    if not pattern or not figures:
        return None
    hits = [f for f in figures if pattern in f.rsplit("/", 1)[-1]]
    if not hits and "_" in pattern:
        hits = [f for f in figures if pattern.rsplit("_", 1)[0] in f.rsplit("/", 1)[-1]]
    return hits[-1] if pattern == "pca_k" and hits else (hits[0] if hits else None)


def verdict_counts(claims: Sequence[Claim]) -> dict[str, int]:
    return {v: sum(c.verdict == v for c in claims) for v in VERDICTS}


COMPARISON_COLUMNS = ("task", "experiment", "metric", "modality", "k", "ours", "95% CI", "paper", "note")


def comparison_table(metrics: Mapping[str, Any]) -> tuple[dict[str, str], list[dict[str, str]]]:
    """(note shared by every row of a task, rows as text): the full paper comparison.

    A note part (``;``-separated) repeated in every row of a task is given once
    per task instead of in each row.
    """
    rows = comparison_rows(metrics)
    parts: dict[str, list[list[str]]] = {}
    for r in rows:
        parts.setdefault(r["task"], []).append([p.strip() for p in str(r.get("note") or "").split(";") if p.strip()])
    shared = {t: [p for p in ps[0] if all(p in other for other in ps)] if len(ps) > 1 else []
              for t, ps in parts.items()}
    out = []
    for r in rows:
        note = [p.strip() for p in str(r.get("note") or "").split(";") if p.strip() and p.strip() not in shared[r["task"]]]
        out.append({"task": r["task"], "experiment": str(r.get("experiment", "")), "metric": str(r.get("metric", "")),
                    "modality": str(r.get("modality", "")), "k": "" if r.get("k") is None else str(r.get("k")),
                    "ours": num(as_float(r.get("ours_mean")), 3), "95% CI": ci(r.get("ours_ci_low"),
                                                                               r.get("ours_ci_high"), 3),
                    "paper": pretty(str(r.get("paper", ""))), "note": pretty("; ".join(note))})
    return {t: pretty("; ".join(p)) for t, p in shared.items() if p}, out


def paper_rows(metrics: Mapping[str, Any]) -> list[dict[str, Any]]:
    """Every task's ``paper_comparison`` rows with ``task``, ``ours`` (the mean) and ``ours_ci`` (text)."""
    out = []
    for r in comparison_rows(metrics):
        row = {k: v for k, v in r.items() if k not in ("ours_mean", "ours_ci_low", "ours_ci_high")}
        out.append({**row, "ours": r.get("ours_mean"), "ours_ci": ci(r.get("ours_ci_low"), r.get("ours_ci_high"))})
    return out
