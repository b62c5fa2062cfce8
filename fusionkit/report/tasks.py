"""One report section per task: key figures first, a compact table of the
headline metrics, everything else (other figures, per-repeat tables, all
summary values, parameters) collapsed and linked as CSV.

Built-in task kinds get a hand-made headline table; any other task gets the
numbers of its ``summary`` laid out generically (a task may also name its
headline keys with ``result["headline"] = ["key", ...]``).
"""

from __future__ import annotations

import csv
from pathlib import Path
from typing import Any, Mapping, Sequence

from .fmt import anchor, data_uri, esc, html_table, is_num, plain, read_csv_rows

CSV_EXCERPT_ROWS = 20


KEY_FIGURES = {
    "recognizer": ("mcc_by_k", "isolation_vs_composite", "robustness"),
    "classifier": ("confusion_cancer_type_dense", "mcc_grid_cancer_type_dense", "confusion_cancer_type",
                   "mcc_grid_cancer_type"),
    "gmm": ("ari_grid", "pca_k"),
    "similarity": ("distributions",),
    "survival": ("km_multimodal", "cindex_by_cancer", "cindex_grid"),
}


def _is_stat(x: Any) -> bool:
    return isinstance(x, Mapping) and {"mean", "ci_low", "ci_high"} <= set(x)


def _recognizer(s: Mapping[str, Any]) -> list[tuple[str, list[dict[str, Any]], list[str]]]:
    out = []
    for key, label, caption in (("mcc", "modality", "MCC per modality (mean over repeats), by sample count k"),
                                ("cancer_type", "metric", "Cancer type from the aggregate, by k")):
        rows, ks = [], []
        for model, modes in (s.get(key) or {}).items():
            for mode, per in (modes or {}).items():
                for what, by_k in (per or {}).items():
                    if not isinstance(by_k, Mapping):
                        continue
                    ks += [k for k in by_k if k not in ks]
                    rows.append({"model": model, "mode": mode, label: what,
                                 **{f"k={k}": v for k, v in by_k.items()}})
        if rows:
            ks = sorted(ks, key=lambda k: (0, int(k)) if str(k).lstrip("-").isdigit() else (1, 0))
            out.append((caption, rows, ["model", "mode", label] + [f"k={k}" for k in ks]))
    return out


def _classifier(s: Mapping[str, Any]) -> list[tuple[str, list[dict[str, Any]], list[str]]]:
    rows = []
    for target, entry in (s.get("targets") or {}).items():
        for model, m in (entry.get("models") or {}).items():
            rows.append({"target": target, "model": model, "k x r": f"{m.get('best_k')} x {m.get('best_repeats')}",
                         "accuracy": m.get("accuracy"), "macro F1": m.get("macro_f1"), "MCC": m.get("mcc"),
                         "late fusion macro F1": m.get("late_fusion_macro_f1"), "retention": m.get("retention"),
                         "availability only": entry.get("availability_only_accuracy"),
                         "majority class": entry.get("majority_rate")})
    cols = ["target", "model", "k x r", "accuracy", "macro F1", "MCC", "late fusion macro F1", "retention",
            "availability only", "majority class"]
    return [("Best grid point per target and model (retention: macro-F1 of the sums / that of the late-fusion "
             "reference on the same splits; accuracy of an availability-only model and the majority rate for "
             "reference)", rows, cols)] if rows else []


def _gmm(s: Mapping[str, Any]) -> list[tuple[str, list[dict[str, Any]], list[str]]]:
    rows = [{"k x r": g.replace(",", ", "), **{m: v for m, v in (vals or {}).items()}}
            for g, vals in (s.get("by_grid") or {}).items()]
    if not rows:
        return []
    best = s.get("best_separated_class")
    caption = "Agreement of GMM clusters with the labels, by grid point" + (
        f"; best separated class: {best}" if best else "")
    return [(caption, rows, ["k x r", "ari", "nmi", "silhouette"])]


def _similarity(s: Mapping[str, Any]) -> list[tuple[str, list[dict[str, Any]], list[str]]]:
    rows = [{"measure": m, **(vals or {})} for m, vals in (s.get("measures") or {}).items()]
    cols = ["measure", "intra_mean", "inter_mean", "cohens_d", "auc"]
    return [("Intra- vs inter-cancer pair similarity", rows, cols)] if rows else []


_SURVIVAL_COLS = {"c_stratified": "within-cancer c", "c_harrell": "Harrell c (pan-cancer)", "c_uno": "Uno c",
                  "auc_3y": "AUC 3 y", "ibs": "IBS"}


def _survival(s: Mapping[str, Any]) -> list[tuple[str, list[dict[str, Any]], list[str]]]:
    """c-index per feature set and model, per cancer, and the paired differences against age + stage."""
    if not s.get("table"):
        return []
    cohort = s.get("cohort") or {}
    head = (f"{s.get('endpoint')} at k={s.get('k')} r={s.get('repeats')}, {cohort.get('patients')} patients "
            f"({cohort.get('events')} events): mean [95% CI] over {s.get('n_repeats')} repeats; within-cancer c = "
            f"pairs of one cancer only (stratified by {s.get('stratify_by')})")
    rows = [{"features": r.get("features"), "model": r.get("model"),
             **{label: r.get(key) for key, label in _SURVIVAL_COLS.items()}} for r in s["table"]]
    out = [(head, rows, ["features", "model", *_SURVIVAL_COLS.values()])]
    per = s.get("per_cancer") or {}
    cols = [c for c in ("multimodal / coxnet", "clinical+multimodal / coxnet", "clinical / coxnet",
                        "multimodal / deep", "cancer / baseline") if any(c in e for e in per.values())]
    if per:
        out.append(("c-index within each cancer (test patients of that cancer)",
                    [{"cancer": c, **e} for c, e in per.items()], ["cancer", "patients", "events", *cols]))
    held = _survival_draws(s)
    if held:
        out.append(held)
    paired = [{"comparison": p.get("comparison"), "model": p.get("model"), "difference": p, "verdict": p.get("verdict")}
              for p in s.get("paired") or [] if p.get("scope") == "all"]
    if paired:
        out.append((f"Paired differences, same test patients: {s.get('statement', '')}", paired,
                    ["comparison", "model", "difference", "verdict"]))
    return out


def _grid_order(point: str) -> tuple[int, ...]:
    """``"10x5"`` -> (10, 5): grid points in numeric order."""
    return tuple(int(x) if x.isdigit() else 0 for x in point.split("x"))


def _survival_draws(s: Mapping[str, Any]) -> tuple[str, list[dict[str, Any]], list[str]] | None:
    """Per grid point: each modality's mean draws and share of a patient's items in its aggregate,
    the within-cancer c-index and the per-modality weights chosen (when searched)."""
    cov, chosen = s.get("coverage") or {}, s.get("weights_chosen") or {}
    if not cov:
        return None
    grid = (s.get("cindex_grid") or {}).get((s.get("models") or ["coxnet"])[0]) or {}
    mods = sorted({m for c in cov.values() for m in c})
    rows = []
    for point, c in sorted(cov.items(), key=lambda t: _grid_order(t[0])):
        row: dict[str, Any] = {"k x r": point, "c-index": grid.get(point)}
        for m in mods:
            e = c.get(m)
            row[m] = f"{e['draws']:.1f} draws, {e['share']:.0%} of items" if e else "-"
        if chosen:
            row["weights chosen"] = ", ".join(f"{w} ({n})" for w, n in sorted((chosen.get(point) or {}).items(),
                                                                          key=lambda t: -t[1])) or "-"
        rows.append(row)
    cols = ["k x r", "c-index", *mods] + (["weights chosen"] if chosen else [])
    return ("What a patient's aggregate holds (one plan per grid point; share = the patient's items drawn at "
            "least once) and the within-cancer c-index of the multimodal sums", rows, cols)


def _generic(s: Mapping[str, Any], keys: Sequence[str] | None = None) -> list[tuple[str, list[dict[str, Any]],
                                                                                   list[str]]]:
    """Stat leaves (mean/CI) and numbers of a summary: top-level ones in one row, nested ones per path."""
    top: dict[str, Any] = {}
    nested: list[dict[str, Any]] = []
    for key in keys or list(s):
        v = s.get(key)
        if _is_stat(v) or (is_num(v) and not isinstance(v, str)):
            top[key] = v
        elif isinstance(v, Mapping):
            nested += _leaf_rows(v, key)
    out = []
    if top:
        out.append(("Headline metrics", [top], list(top)))
    if nested:
        cols = ["where"] + list(dict.fromkeys(k for r in nested for k in r if k != "where"))
        out.append(("Metrics by group", nested, cols))
    return out


def _leaf_rows(d: Mapping[str, Any], path: str, depth: int = 0) -> list[dict[str, Any]]:
    """Rows of the nested mappings that hold a mean/CI or at least two numbers (settings hold fewer)."""
    leaves = {k: v for k, v in d.items() if _is_stat(v) or (is_num(v) and not isinstance(v, str))}
    keep = any(_is_stat(v) for v in leaves.values()) or len(leaves) >= 2
    rows = [{"where": path, **leaves}] if keep else []
    if depth < 3:
        for k, v in d.items():
            if isinstance(v, Mapping) and not _is_stat(v):
                rows += _leaf_rows(v, f"{path} / {k}", depth + 1)
    return rows


def _retrieval(s: Mapping[str, Any]) -> list[tuple[str, list[dict[str, Any]], list[str]]]:
    if not _is_stat(s.get("precision_at_k")):
        return []
    index = s.get("index") if isinstance(s.get("index"), Mapping) else {}
    k = s.get("top_k", "k")
    row = {"index": index.get("name", ""), f"precision@{k}": s.get("precision_at_k"),
           "majority vote": s.get("majority_accuracy"), "majority class": s.get("majority_rate"),
           f"recall@{k} vs exact": s.get("recall_at_k"), "search s": s.get("search_s"),
           f"late fusion precision@{k}": s.get("late_fusion_precision_at_k"), "retention": s.get("retention")}
    return [(f"Nearest patients by aggregate ({s.get('n_patients', '?')} patients, k={s.get('k')}, "
             f"r={s.get('repeats')})", [row], list(row))]


HEADLINES = {"recognizer": _recognizer, "classifier": _classifier, "gmm": _gmm, "similarity": _similarity,
             "survival": _survival, "retrieval": _retrieval}
#: task kinds whose headline tables `fusionkit results` prints as their own Markdown section
MARKDOWN_SECTIONS = ("survival",)


def headline_tables(kind: str, result: Mapping[str, Any]) -> list[tuple[str, list[dict[str, Any]], list[str]]]:
    summary = result.get("summary") if isinstance(result.get("summary"), Mapping) else {}
    keys = result.get("headline")
    if isinstance(keys, (list, tuple)):
        return _generic(summary, [str(k) for k in keys])
    fn = HEADLINES.get(kind)
    tables = fn(summary) if fn else []
    return tables or _generic(summary)


# ----------------------------------------------------------------------------- html

def _resolve(out_dir: Path, p: str | Path) -> Path:
    p = Path(p)
    return p if p.is_absolute() else out_dir / p


def rel(out_dir: Path, p: Path) -> str:
    try:
        return p.resolve().relative_to(out_dir.resolve()).as_posix()
    except ValueError:
        return p.as_posix()


def figure_id(task: str, path: str | Path) -> str:
    return anchor("fig", task, Path(path).stem)


def split_figures(kind: str, figures: Sequence[str]) -> tuple[list[str], list[str]]:
    """(key figures, the others): by the kind's name patterns, else the first two."""
    patterns = KEY_FIGURES.get(kind)
    figures = [str(f) for f in figures]
    if not patterns:
        return figures[:2], figures[2:]
    key: list[str] = []
    for pat in patterns:
        hits = [f for f in figures if pat in Path(f).name and f not in key]
        if hits and not any(pat in Path(k).name for k in key):
            key.append(hits[-1] if pat == "pca_k" else hits[0])
    return key, [f for f in figures if f not in key]


def figure_html(out_dir: Path, task: str, f: str, css: str = "") -> str:
    p = _resolve(out_dir, f)
    if not p.exists():
        return f'<p class="note">figure missing: {esc(f)}</p>'
    uri = data_uri(p)
    if uri is None:
        return f'<p class="note">figure {esc(p.name)} too large to embed; see {esc(rel(out_dir, p))}</p>'
    caption = p.stem.replace("_", " ")
    return (f"<figure id='{figure_id(task, f)}' class='{css}'><img alt='{esc(caption)}' src='{uri}'>"
            f"<figcaption>{esc(caption)}</figcaption></figure>")


def _csv_block(out_dir: Path, name: str, path: str) -> str:
    p = _resolve(out_dir, path)
    link = f"<a href='{esc(rel(out_dir, p))}'>{esc(rel(out_dir, p))}</a>"
    if not p.exists():
        return f"<details><summary>{esc(name)} table</summary><p class='note'>file missing: {link}</p></details>"
    try:
        rows, total = read_csv_rows(p, limit=CSV_EXCERPT_ROWS)
    except (OSError, csv.Error, UnicodeDecodeError) as err:
        return f"<details><summary>{esc(name)} table</summary><p class='note'>could not read: {esc(err)}</p></details>"
    shown = f"first {len(rows)} of {total} rows" if total > len(rows) else f"{total} rows"
    return (f"<details><summary>{esc(name)} table <span class='note'>({shown}; CSV: {link})</span></summary>"
            f"{html_table(rows, max_rows=CSV_EXCERPT_ROWS)}</details>")


def _kv_block(title: str, d: Mapping[str, Any]) -> str:
    rows = [{"key": k, "value": plain(v)} for k, v in _flatten(d)]
    if not rows:
        return ""
    return f"<details><summary>{esc(title)}</summary>{html_table(rows, max_rows=400, css='kv')}</details>"


def _flatten(d: Any, prefix: str = "", depth: int = 0) -> list[tuple[str, Any]]:
    if isinstance(d, Mapping) and not _is_stat(d) and depth < 3 and d:
        out: list[tuple[str, Any]] = []
        for k, v in d.items():
            out += _flatten(v, f"{prefix}.{k}" if prefix else str(k), depth + 1)
        return out
    return [(prefix, d)]


def task_section(out_dir: Path, tname: str, result: Mapping[str, Any], claims_html: str = "") -> str:
    """One task's section; ``claims_html`` lists the claims this task decided."""
    kind = str(result.get("task", ""))
    out = [f"<section class='task' id='{anchor('task', tname)}'><h2>Task: {esc(tname)} <small>{esc(kind)}</small></h2>",
           claims_html]
    if not any(result.get(k) for k in ("figures", "summary", "tables")):
        out.append("<p class='note'>This task recorded no results.</p>")
    key, rest = split_figures(kind, result.get("figures") or [])
    if key:
        out.append("<div class='figs'>" + "".join(figure_html(out_dir, tname, f) for f in key) + "</div>")
    for caption, rows, cols in headline_tables(kind, result):
        out.append(f"<p class='caption'>{esc(caption)}</p>")
        out.append(html_table(rows, columns=cols, css="headline", max_rows=40))
    if rest:
        out.append(f"<details><summary>{len(rest)} more figure(s)</summary><div class='figs small'>"
                   + "".join(figure_html(out_dir, tname, f) for f in rest) + "</div></details>")
    tables = result.get("tables") or {}
    if isinstance(tables, Mapping):
        out += [_csv_block(out_dir, str(name), str(path)) for name, path in tables.items()]
    if isinstance(result.get("summary"), Mapping):
        out.append(_kv_block("all summary values", result["summary"]))
    others = {k: v for k, v in result.items() if k not in
              ("task", "params", "summary", "tables", "figures", "paper_comparison", "headline")}
    if others:
        out.append(_kv_block("other results", others))
    if result.get("params"):
        out.append(_kv_block("parameters", result["params"]))
    out.append("</section>")
    return "".join(out)
