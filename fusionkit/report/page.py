"""The report page: summary first (the study in one paragraph, the paper's
claims as cards with verdicts and thumbnails, embedding health per modality),
then one section per task, then the details (every comparison with the paper,
availability per class, timings, the resolved recipe), collapsed.

One self-contained file: inline CSS, images as ``data:`` URIs, no script
needed to read it (a three-line inline script only opens the collapsed parts
before printing). Laid out for a laptop screen: the claims are on the first
screen at 1366x768; nothing is wider than the window (wide tables scroll in
their own box).
"""

from __future__ import annotations

import datetime as _dt
from pathlib import Path
from typing import Any, Mapping

from .claims import COMPARISON_COLUMNS, Claim, comparison_table
from .fmt import THUMB_WIDTH, anchor, data_uri, esc, html_table, num
from .study import RunView, modality_rows, study_sentences
from .tasks import figure_id, rel, task_section

CSS = """
*{box-sizing:border-box}
body{font:15px/1.45 -apple-system,"Segoe UI",Roboto,Helvetica,Arial,sans-serif;margin:0;color:#1d2330;background:#f5f6f8}
main{max-width:1400px;margin:0 auto;padding:12px 20px 40px}
header{display:flex;flex-wrap:wrap;align-items:baseline;gap:4px 16px}
h1{font-size:1.35em;margin:0}h1 small,h2 small{font-weight:400;color:#5b6475;font-size:.7em}
h2{font-size:1.15em;border-bottom:2px solid #d8dde6;padding-bottom:3px;margin:1.6em 0 .5em}
.meta{color:#5b6475;font-size:.8em}
nav{font-size:.82em;margin-left:auto}nav a{margin-left:10px;white-space:nowrap}
.study{margin:4px 0 10px;font-size:.93em}
.top{display:grid;grid-template-columns:minmax(0,1fr) 330px;gap:14px;align-items:start}
.panel h2{margin:0 0 6px;font-size:1.05em;border:0;padding:0}
.claims{display:grid;grid-template-columns:repeat(auto-fill,minmax(290px,1fr));gap:8px}
.claim{display:flex;gap:8px;background:#fff;border:1px solid #d8dde6;border-left:5px solid #8a93a3;border-radius:4px;
 padding:6px 8px;font-size:.8em;line-height:1.3;min-width:0;break-inside:avoid}
.claim h3{font-size:1.02em;margin:0 0 2px}
.claim p{margin:1px 0}.claim .src{color:#5b6475;font-size:.92em}
.thumb{flex:0 0 96px}.thumb img{width:96px;height:auto;max-height:110px;object-fit:contain;display:block;
 border:1px solid #e3e6ec;background:#fff}
.body{min-width:0;overflow-wrap:anywhere}
.badge{display:inline-block;padding:0 6px;border-radius:9px;color:#fff;font-weight:600;font-size:.92em;background:#6b7383}
.v-holds{border-left-color:#13795b}.v-holds .badge,.badge.b-holds{background:#13795b}
.v-partly{border-left-color:#a86400}.v-partly .badge,.badge.b-partly{background:#a86400}
.v-does-not-hold{border-left-color:#b3261e}.v-does-not-hold .badge,.badge.b-does-not-hold{background:#b3261e}
.decides{font-size:.85em;margin:0 0 6px}.decides a{color:inherit;text-decoration:none;margin-right:8px}
.health table{font-size:.78em;width:100%}
table{border-collapse:collapse;margin:4px 0 10px;font-size:.82em;background:#fff}
th,td{border:1px solid #d8dde6;padding:2px 6px;text-align:left;vertical-align:top}
th{background:#eef1f6}
td.num{text-align:right;font-variant-numeric:tabular-nums;white-space:nowrap}
.ci{color:#5b6475;font-size:.9em}
.note{color:#5b6475;font-size:.85em}.caption{margin:.6em 0 0;font-size:.88em;color:#3b4252}
.scroll{overflow-x:auto;max-width:100%}
.figs{display:grid;grid-template-columns:repeat(auto-fill,minmax(min(100%,420px),1fr));gap:10px;margin:6px 0}
.figs.small{grid-template-columns:repeat(auto-fill,minmax(min(100%,300px),1fr))}
figure{margin:0;background:#fff;padding:6px;border:1px solid #d8dde6;min-width:0}
figure img{max-width:100%;max-height:440px;width:auto;height:auto;display:block;margin:0 auto}figcaption{font-size:.78em;color:#5b6475}
pre{background:#fff;border:1px solid #d8dde6;padding:10px;overflow-x:auto;font-size:.78em}
details{margin:4px 0}details summary{cursor:pointer;font-size:.9em}
section{min-width:0}
@media (max-width:980px){.top{grid-template-columns:1fr}}
@media print{body{background:#fff;font-size:11pt}main{max-width:none;padding:0}nav{display:none}
 a{color:inherit;text-decoration:none}.top{grid-template-columns:1fr}.claims{grid-template-columns:1fr 1fr}
 section.task{break-before:page}figure,table,.claim{break-inside:avoid}.scroll{overflow:visible}
 .figs{grid-template-columns:1fr 1fr}figure img{max-height:9cm;width:auto}}
"""

PRINT_SCRIPT = ("<script>addEventListener('beforeprint',function(){"
                "document.querySelectorAll('details').forEach(function(d){d.open=true})});</script>")


def _claim_card(view: RunView, c: Claim) -> str:
    thumb = ""
    if c.figure and c.task:
        p = Path(c.figure)
        p = p if p.is_absolute() else view.out_dir / p
        mods = list(((view.metrics.get(c.task) or {}).get("summary") or {}).get("modalities") or [])
        focus = (mods.index(c.focus), len(mods)) if c.focus in mods else None
        uri = data_uri(p, THUMB_WIDTH, focus) if p.exists() else None
        if uri:
            thumb = (f"<a class='thumb' href='#{figure_id(c.task, c.figure)}'>"
                     f"<img alt='{esc(p.stem.replace('_', ' '))}' src='{uri}'></a>")
    src = f"{esc(c.task)}" + (f" · {esc(c.detail)}" if c.detail else "") if c.task else ""
    also = "".join(f"<p class='src'>also {esc(a)}</p>" for a in c.also[:2])
    return (f"<article class='claim {anchor('v', c.verdict)}' id='{anchor('claim', c.id)}'>{thumb}<div class='body'>"
            f"<h3>{esc(c.title)}</h3>"
            f"<p><span class='badge'>{esc(c.verdict)}</span> {esc(c.reason)}</p>"
            f"<p><b>paper</b> {esc(c.paper)}</p>"
            + (f"<p><b>ours</b> {esc(c.ours)}</p>" if c.ours else "")
            + (f"<p class='src'>{src}</p>" if src else "") + also + "</div></article>")


def _claims_panel(view: RunView) -> str:
    cards = "".join(_claim_card(view, c) for c in view.claims)
    return (f"<section class='panel' id='claims' aria-label='claims'><h2>The paper's claims on this run "
            f"<small>ours: mean over repeats [95% CI]</small></h2><div class='claims'>{cards}</div></section>")


HEALTH_DIGITS = 2
HEALTH_HEADERS = {"availability": "avail.", "mean_norm": "mean norm", "norm_of_mean": "norm of mean",
                  "probe_f1": "probe F1"}


def health_rows(view: RunView) -> tuple[list[dict[str, Any]], list[str]]:
    """Rows and columns of the embedding-health table (the same in ``results``)."""
    mods = modality_rows(view)
    rows = [{"modality": m["modality"], "patients": m["patients"], "availability": f"{num(100 * m['availability'], 0)}%",
             "mean_norm": m["mean_norm"], "norm_of_mean": m["norm_of_mean"],
             **({"health": m["health"]} if "health" in m else {}),
             **({"probe_f1": m["probe_f1"]} if m.get("probe_f1") is not None else {})} for m in mods]
    cols = ["modality", "patients", "availability", "mean_norm", "norm_of_mean"]
    if any(m.get("probe_f1") is not None for m in mods):
        cols.append("probe_f1")
    if any("health" in m for m in mods):
        cols.append("health")
    return rows, cols


def _health_panel(view: RunView) -> str:
    rows, cols = health_rows(view)
    if not rows:
        return "<aside class='panel health'><h2>Embedding health</h2><p class='note'>no data summary</p></aside>"
    mods = modality_rows(view)
    notes = "".join(f"<li><b>{esc(m['modality'])}</b>: {esc(m['health_note'])}</li>"
                    for m in mods if m.get("health_note"))
    low = [m["modality"] for m in mods if m.get("offset_ratio") is not None and m["offset_ratio"] < 0.1]
    hint = ("<p class='note'>A small norm of the mean relative to the mean norm (centred embeddings) makes a "
            "modality hard to recognise inside a sum; availability that differs between classes can leak the "
            "label (SPEC 2.5)."
            + (" Probe F1: macro-F1 of a linear probe of the label from the patient-averaged embeddings."
               if "probe_f1" in cols else "") + "</p>")
    if low:
        hint += f"<p class='note'>Nearly centred: {esc(', '.join(low))}.</p>"
    return (f"<aside class='panel health' id='health'><h2>Embedding health</h2>"
            f"{html_table(rows, cols, headers=HEALTH_HEADERS, digits=HEALTH_DIGITS)}"
            + (f"<ul class='note'>{notes}</ul>" if notes else "") + hint + "</aside>")


def availability_rows(view: RunView) -> tuple[list[dict[str, Any]], list[str], str]:
    """Patients per class per modality (rows, columns, label name); the same in ``results``."""
    mods = view.summary.get("modalities") or {}
    label, by = view.summary.get("primary_label"), {}
    for name, e in mods.items():
        for key, table in (e or {}).items():
            if key.startswith("patients_by_") and isinstance(table, Mapping):
                label = label or key[len("patients_by_"):]
                if key == f"patients_by_{label}":
                    for cls, n in table.items():
                        by.setdefault(str(cls), {})[name] = n
    if not label:
        return [], [], ""
    order = [m["modality"] for m in modality_rows(view)]  # recipe order
    rows = [{label: cls, **{m: str(counts.get(m, 0)) for m in order}} for cls, counts in sorted(by.items())]
    return rows, [label, *order], label


def _details_section(view: RunView) -> str:
    out = ["<h2 id='details'>Details</h2>"]
    desc = str(view.recipe.get("description") or "").strip()
    if desc:
        out.append(f"<details open><summary>about this study</summary><p>{esc(desc)}</p></details>")
    shared, rows = comparison_table(view.ordered_metrics)
    if rows:
        notes = "".join(f"<p class='note'>{esc(t)}: {esc(n)}</p>" for t, n in shared.items())
        out.append(f"<details><summary>every comparison with the paper ({len(rows)} rows)</summary>{notes}"
                   f"{html_table(rows, list(COMPARISON_COLUMNS), max_rows=500)}</details>")
    arows, acols, label = availability_rows(view)
    if arows:
        out.append(f"<details><summary>patients per {esc(label.replace('_', ' '))} per modality</summary>"
                   f"{html_table(arows, acols, max_rows=300)}</details>")
    notes = view.summary.get("notes") or []
    if notes:
        out.append(f"<details><summary>reader notes ({len(notes)})</summary><ul class='note'>"
                   + "".join(f"<li>{esc(n)}</li>" for n in notes[:100]) + "</ul></details>")
    timings = view.record.get("timings_s") or {}
    if timings:
        trows = [{"stage": k, "seconds": num(float(v), 1)} for k, v in timings.items()]
        out.append(f"<details><summary>timings</summary>{html_table(trows, max_rows=300)}</details>")
    if view.recipe_yaml:
        out.append(f"<details id='recipe'><summary>resolved recipe</summary><pre>{esc(view.recipe_yaml)}</pre>"
                   "</details>")
    return "".join(out)


def _header(view: RunView) -> str:
    seed = view.record.get("seed", view.recipe.get("seed"))
    wall = view.record.get("wall_s")
    when = _dt.datetime.now(_dt.timezone.utc).strftime("%Y-%m-%d %H:%M UTC")
    meta = f"seed {seed} · written {when}" + (f" · {num(float(wall) / 60, 1)} min" if wall else "")
    nav = ["<a href='#claims'>claims</a>", "<a href='#health'>health</a>"]
    nav += [f"<a href='#{anchor('task', t)}'>{esc(t)}</a>" for t in view.tasks]
    nav.append("<a href='#details'>details</a>")
    study = " ".join(study_sentences(view))
    return (f"<header><h1>fusionkit report: {esc(view.name)}</h1><span class='meta'>{esc(meta)}</span>"
            f"<nav>{''.join(nav)}</nav></header><p class='study'>{esc(study)}</p>")


def render_view(view: RunView) -> str:
    """The whole page of one run."""
    parts = ["<!DOCTYPE html><html lang='en'><head><meta charset='utf-8'>",
             "<meta name='viewport' content='width=device-width,initial-scale=1'>",
             f"<title>fusionkit report: {esc(view.name)}</title><style>{CSS}</style></head><body><main>",
             _header(view), "<div class='top'>", _claims_panel(view), _health_panel(view), "</div>"]
    for tname in view.tasks:
        decided = [c for c in view.claims if c.task == tname]
        links = "".join(f"<a href='#{anchor('claim', c.id)}'><span class='badge {anchor('b', c.verdict)}'>"
                          f"{esc(c.verdict)}</span> {esc(c.title)}</a>" for c in decided)
        line = f"<p class='decides'>The paper's claims measured here: {links}</p>" if decided else ""
        try:
            parts.append(task_section(view.out_dir, tname, view.metrics[tname], line))
        except Exception as err:  # noqa: BLE001 - one broken task section never loses the report
            parts.append(f"<section class='task' id='{anchor('task', tname)}'><h2>Task: {esc(tname)}</h2><p class='note'>"
                         f"could not render: {esc(type(err).__name__)}: {esc(err)}</p></section>")
    if not view.tasks:
        parts.append("<p class='note'>This run has no task results.</p>")
    parts.append(_details_section(view))
    parts.append(f"</main>{PRINT_SCRIPT}</body></html>\n")
    return "".join(parts)


__all__ = ["render_view", "health_rows", "availability_rows", "rel"]
