"""One self-contained ``report.html`` per run.

Sections: the run (recipe name, seed, timings), the paper comparison (every
task's ``paper_comparison`` rows side by side with the paper's headline
results, SPEC 2.4), the data (patients per cancer per modality, items,
embedding norms, labels), each task (summary, CSV tables truncated, figures
embedded as base64 PNG), and the resolved recipe (YAML). No external asset:
inline CSS, ``data:`` URIs only. Tasks missing from ``metrics`` are simply
absent; a task whose result lacks tables/figures still gets its section.
"""

from __future__ import annotations

import base64
import csv
import datetime as _dt
import html
import json
import math
from pathlib import Path
from typing import Any, Iterable, Mapping, Sequence

from .store import atomic_write_text

MAX_TABLE_ROWS = 60
MAX_TABLE_COLS = 24
MAX_FIGURE_BYTES = 4_000_000

CSS = """
body{font-family:-apple-system,Segoe UI,Helvetica,Arial,sans-serif;margin:0;color:#1d2330;background:#f6f7f9}
main{max-width:1200px;margin:0 auto;padding:24px}
h1{font-size:1.6em;margin:.2em 0}h2{border-bottom:2px solid #d8dde6;padding-bottom:4px;margin-top:2em}
h3{margin-top:1.4em;font-size:1.05em}
nav a{margin-right:12px;font-size:.9em}
table{border-collapse:collapse;margin:8px 0 16px;font-size:.82em;background:#fff}
th,td{border:1px solid #d8dde6;padding:3px 7px;text-align:left;vertical-align:top}
th{background:#eef1f6;position:sticky;top:0}
td.num{text-align:right;font-variant-numeric:tabular-nums}
tr:nth-child(even) td{background:#fafbfc}
.note{color:#5b6475;font-size:.85em}.meets{color:#13795b;font-weight:600}.below{color:#b3261e;font-weight:600}
.scroll{overflow-x:auto;max-width:100%}
figure{display:inline-block;margin:8px 12px 8px 0;background:#fff;padding:6px;border:1px solid #d8dde6}
figure img{max-width:100%;height:auto;display:block}figcaption{font-size:.78em;color:#5b6475}
pre{background:#fff;border:1px solid #d8dde6;padding:10px;overflow-x:auto;font-size:.8em}
details summary{cursor:pointer;font-weight:600}
.kv td:first-child{font-weight:600;white-space:nowrap}
"""


def _esc(x: Any) -> str:
    return html.escape(str(x), quote=True)


def _is_num(x: Any) -> bool:
    if isinstance(x, bool):
        return False
    if isinstance(x, (int, float)):
        return True
    if not isinstance(x, str) or not x.strip():
        return False
    try:
        float(x)
        return True
    except ValueError:
        return False


def _fmt(x: Any) -> str:
    if x is None:
        return ""
    if isinstance(x, bool):
        return str(x)
    if isinstance(x, float) or (isinstance(x, str) and _is_num(x) and any(c in x for c in ".eE")):
        try:
            v = float(x)
        except ValueError:
            return _esc(x)
        if math.isnan(v):
            return "nan"
        if v != 0 and (abs(v) >= 1e5 or abs(v) < 1e-3):
            return f"{v:.3g}"
        return f"{v:.3f}".rstrip("0").rstrip(".") if abs(v) < 1000 else f"{v:.1f}"
    if isinstance(x, (list, dict)):
        text = json.dumps(x, default=str)
        return _esc(text if len(text) <= 120 else text[:117] + "...")
    return _esc(x)


def html_table(rows: Sequence[Mapping[str, Any]], columns: Sequence[str] | None = None, *,
               max_rows: int = MAX_TABLE_ROWS, max_cols: int = MAX_TABLE_COLS, css: str = "") -> str:
    """Rows of dicts as an HTML table (first ``max_rows`` rows, first ``max_cols`` columns)."""
    rows = list(rows)
    if not rows:
        return '<p class="note">(empty)</p>'
    if columns is None:
        columns = []
        for row in rows:
            for k in row:
                if k not in columns:
                    columns.append(k)
    columns = list(columns)
    extra_cols = len(columns) - max_cols
    columns = columns[:max_cols]
    out = [f'<div class="scroll"><table class="{css}"><thead><tr>']
    out += [f"<th>{_esc(c)}</th>" for c in columns]
    out.append("</tr></thead><tbody>")
    for row in rows[:max_rows]:
        out.append("<tr>")
        for c in columns:
            v = row.get(c)
            cls = ' class="num"' if _is_num(v) and v not in ("",) else ""
            text = _fmt(v)
            if c == "note" and isinstance(v, str):
                if v.startswith("meets"):
                    text = f'<span class="meets">{text}</span>'
                elif v.startswith("below"):
                    text = f'<span class="below">{text}</span>'
            out.append(f"<td{cls}>{text}</td>")
        out.append("</tr>")
    out.append("</tbody></table></div>")
    notes = []
    if len(rows) > max_rows:
        notes.append(f"showing {max_rows} of {len(rows)} rows")
    if extra_cols > 0:
        notes.append(f"{extra_cols} more column(s) not shown")
    if notes:
        out.append(f'<p class="note">{_esc("; ".join(notes))} (full table in the CSV).</p>')
    return "".join(out)


def read_csv_rows(path: str | Path, limit: int | None = None) -> tuple[list[dict[str, Any]], int]:
    """(rows, total row count) of a CSV file; ``limit`` caps the rows kept."""
    rows: list[dict[str, Any]] = []
    total = 0
    with open(path, newline="") as fh:
        for row in csv.DictReader(fh):
            total += 1
            if limit is None or len(rows) < limit:
                rows.append(row)
    return rows, total


def _resolve(ctx: Any, p: str | Path) -> Path:
    p = Path(p)
    return p if p.is_absolute() else Path(ctx.out_dir) / p


def _img(path: Path) -> str:
    data = path.read_bytes()
    if len(data) > MAX_FIGURE_BYTES:
        return f'<p class="note">figure {_esc(path.name)} too large to embed ({len(data)} bytes)</p>'
    mime = {"png": "image/png", "jpg": "image/jpeg", "jpeg": "image/jpeg", "svg": "image/svg+xml",
            "gif": "image/gif"}.get(path.suffix.lower().lstrip("."), "application/octet-stream")
    b64 = base64.b64encode(data).decode("ascii")
    return (f'<figure><img alt="{_esc(path.name)}" src="data:{mime};base64,{b64}">'
            f"<figcaption>{_esc(path.name)}</figcaption></figure>")


def _flat(d: Any, prefix: str = "", depth: int = 0) -> list[tuple[str, Any]]:
    out: list[tuple[str, Any]] = []
    if isinstance(d, Mapping) and depth < 4:
        for k, v in d.items():
            out += _flat(v, f"{prefix}.{k}" if prefix else str(k), depth + 1)
    else:
        out.append((prefix, d))
    return out


def _summary_html(summary: Any, max_items: int = 80) -> str:
    items = _flat(summary)
    # collapse {mean, ci_low, ci_high, n} leaves into one line
    merged: list[tuple[str, Any]] = []
    i = 0
    while i < len(items):
        key, value = items[i]
        if key.endswith(".mean") and i + 2 < len(items) and items[i + 1][0].endswith(".ci_low") \
                and items[i + 2][0].endswith(".ci_high"):
            base = key[: -len(".mean")]
            lo, hi = items[i + 1][1], items[i + 2][1]
            text = f"{_fmt(value)} [{_fmt(lo)}, {_fmt(hi)}]"
            step = 3
            if i + 3 < len(items) and items[i + 3][0] == f"{base}.n":
                text += f" (n={items[i + 3][1]})"
                step = 4
            merged.append((base, ("__html__", text)))
            i += step
            continue
        merged.append((key, value))
        i += 1
    rows = []
    for key, value in merged[:max_items]:
        text = value[1] if isinstance(value, tuple) and value and value[0] == "__html__" else _fmt(value)
        rows.append(f"<tr><td>{_esc(key)}</td><td>{text}</td></tr>")
    more = f'<p class="note">{len(merged) - max_items} more entries in metrics.json</p>' \
        if len(merged) > max_items else ""
    return f'<div class="scroll"><table class="kv"><tbody>{"".join(rows)}</tbody></table></div>{more}'


def _data_section(summary: Mapping[str, Any]) -> str:
    out = ["<h2 id='data'>Data</h2>"]
    mods = (summary or {}).get("modalities") or {}
    if not mods:
        out.append('<p class="note">no data summary</p>')
        return "".join(out)
    rows = []
    for name, e in mods.items():
        rows.append({"modality": name, "items": e.get("items"), "patients": e.get("patients"), "dim": e.get("dim"),
                     "mean_norm": e.get("mean_norm"), "norm_of_mean": e.get("norm_of_mean"),
                     "mean_std": e.get("mean_std")})
    out.append("<h3>Modalities</h3>")
    out.append('<p class="note">Mean vector norm and norm of the mean vector per modality: a modality with '
               "a small mean offset is hard to recognise inside a sum (SPEC 2.5).</p>")
    out.append(html_table(rows))
    by = {}
    label_key = None
    for name, e in mods.items():
        for key, table in e.items():
            if key.startswith("patients_by_") and isinstance(table, Mapping):
                label_key = key[len("patients_by_"):]
                for cls, n in table.items():
                    by.setdefault(cls, {})[name] = n
    if by:
        out.append(f"<h3>Patients per {_esc(label_key)} per modality</h3>")
        out.append('<p class="note">Availability can leak the label: a modality present only for some '
                   "classes lets a model learn the class from presence alone (SPEC 2.5).</p>")
        rows = [{label_key: cls, **{m: counts.get(m, 0) for m in mods}} for cls, counts in sorted(by.items())]
        out.append(html_table(rows, max_rows=200))
    labels = summary.get("labels") or {}
    if labels:
        out.append("<h3>Labels</h3>")
        rows = [{"label": lname, "values": len(counts), "patients": sum(counts.values()),
                 "counts": ", ".join(f"{k}: {v}" for k, v in list(counts.items())[:12])
                 + (" ..." if len(counts) > 12 else "")} for lname, counts in labels.items()]
        out.append(html_table(rows))
    notes = summary.get("notes") or []
    if notes:
        out.append("<h3>Reader notes</h3><ul>" + "".join(f"<li>{_esc(n)}</li>" for n in notes[:50]) + "</ul>")
    return "".join(out)


PAPER_COLUMNS = ("task", "experiment", "metric", "modality", "k", "repeats", "ours", "ours_ci", "paper", "note")


def paper_rows(metrics: Mapping[str, Any]) -> list[dict[str, Any]]:
    """Every task's ``paper_comparison`` rows, with the task name and the CI formatted."""
    rows = []
    for tname, result in metrics.items():
        if not isinstance(result, Mapping):
            continue
        for row in result.get("paper_comparison") or []:
            if not isinstance(row, Mapping):
                continue
            lo, hi = row.get("ours_ci_low"), row.get("ours_ci_high")
            ci = f"[{_fmt(lo)}, {_fmt(hi)}]" if lo is not None and hi is not None else ""
            rows.append({"task": tname, **{k: v for k, v in row.items()
                                           if k not in ("ours_mean", "ours_ci_low", "ours_ci_high")},
                         "ours": row.get("ours_mean"), "ours_ci": ci})
    return rows


def _task_section(ctx: Any, tname: str, result: Mapping[str, Any]) -> str:
    anchor = "task-" + "".join(ch if ch.isalnum() else "-" for ch in tname)
    out = [f"<section id='{anchor}'><h2>Task: {_esc(tname)} "
           f"<span class='note'>({_esc(result.get('task', ''))})</span></h2>"]
    params = result.get("params")
    if params:
        out.append("<details><summary>parameters</summary>" + _summary_html(params) + "</details>")
    if result.get("summary") is not None:
        out.append("<h3>Summary</h3>" + _summary_html(result["summary"]))
    tables = result.get("tables") or {}
    if isinstance(tables, Mapping):
        for tab, path in tables.items():
            p = _resolve(ctx, path)
            out.append(f"<h3>{_esc(tab)} <span class='note'>({_esc(_rel(ctx, p))})</span></h3>")
            if not p.exists():
                out.append('<p class="note">file missing</p>')
                continue
            try:
                rows, total = read_csv_rows(p, limit=MAX_TABLE_ROWS)
            except (OSError, csv.Error, UnicodeDecodeError) as err:
                out.append(f'<p class="note">could not read: {_esc(err)}</p>')
                continue
            out.append(html_table(rows, max_rows=MAX_TABLE_ROWS))
            if total > MAX_TABLE_ROWS:
                out.append(f'<p class="note">showing {MAX_TABLE_ROWS} of {total} rows (full table in the CSV).</p>')
    figures = result.get("figures") or []
    if figures:
        out.append("<h3>Figures</h3><div>")
        for f in figures:
            p = _resolve(ctx, f)
            out.append(_img(p) if p.exists() else f'<p class="note">figure missing: {_esc(f)}</p>')
        out.append("</div>")
    others = {k: v for k, v in result.items()
              if k not in ("task", "params", "summary", "tables", "figures", "paper_comparison")}
    if others:
        out.append("<h3>Other results</h3>" + _summary_html(others))
    out.append("</section>")
    return "".join(out)


def _rel(ctx: Any, p: Path) -> str:
    try:
        return str(p.relative_to(Path(ctx.out_dir)))
    except ValueError:
        return str(p)


def _recipe_yaml(ctx: Any) -> str:
    p = Path(ctx.out_dir) / "resolved_recipe.yaml"
    if p.exists():
        return p.read_text()
    try:
        return ctx.recipe.to_yaml()
    except Exception:  # pragma: no cover - a recipe without to_yaml
        return "(recipe not available)"


def render_report(ctx: Any, metrics: Mapping[str, Any], summary: Mapping[str, Any]) -> str:
    recipe = getattr(ctx, "recipe", None)
    name = getattr(recipe, "name", "run")
    tasks = [t for t, r in (metrics or {}).items() if isinstance(r, Mapping)]
    nav = ["<a href='#paper'>paper comparison</a>", "<a href='#data'>data</a>"]
    nav += [f"<a href='#task-{''.join(ch if ch.isalnum() else '-' for ch in t)}'>{_esc(t)}</a>" for t in tasks]
    nav.append("<a href='#recipe'>recipe</a>")
    parts = [
        "<!DOCTYPE html><html lang='en'><head><meta charset='utf-8'>",
        f"<title>fusionkit report: {_esc(name)}</title><style>{CSS}</style></head><body><main>",
        f"<h1>fusionkit report: {_esc(name)}</h1>",
        f"<p class='note'>seed {_esc(getattr(ctx, 'seed', ''))}; output {_esc(getattr(ctx, 'out_dir', ''))}; "
        f"written {_esc(_dt.datetime.now(_dt.timezone.utc).strftime('%Y-%m-%d %H:%M UTC'))}</p>",
        "<nav>" + "".join(nav) + "</nav>",
    ]
    desc = getattr(recipe, "description", "")
    if desc:
        parts.append(f"<p>{_esc(desc)}</p>")
    timings = getattr(ctx, "timings", None) or {}
    if timings:
        parts.append("<details><summary>timings (s)</summary>"
                     + html_table([{"stage": k, "seconds": round(float(v), 3)} for k, v in timings.items()],
                                  max_rows=200) + "</details>")
    parts.append("<h2 id='paper'>Our numbers next to the paper's headline results</h2>")
    rows = paper_rows(metrics or {})
    if rows:
        parts.append('<p class="note">ours: mean over repeats with a 95% confidence interval; paper: the '
                     "headline result as stated in the paper (SPEC 2.4).</p>")
        parts.append(html_table(rows, columns=[c for c in PAPER_COLUMNS if any(c in r for r in rows)],
                                max_rows=300))
    else:
        parts.append('<p class="note">no task reported paper comparisons</p>')
    parts.append(_data_section(summary or {}))
    for tname in tasks:
        try:
            parts.append(_task_section(ctx, tname, metrics[tname]))
        except Exception as err:  # one broken task section never loses the report
            parts.append(f"<section><h2>Task: {_esc(tname)}</h2><p class='below'>could not render: "
                         f"{_esc(type(err).__name__)}: {_esc(err)}</p></section>")
    parts.append(f"<h2 id='recipe'>Resolved recipe</h2><pre>{_esc(_recipe_yaml(ctx))}</pre>")
    parts.append("</main></body></html>\n")
    return "".join(parts)


def write_report(ctx: Any, metrics: Mapping[str, Any], summary: Mapping[str, Any]) -> Path:
    """Render and write ``report.html`` atomically under ``ctx.out_dir``; returns its path."""
    path = Path(ctx.out_dir) / "report.html"
    atomic_write_text(path, render_report(ctx, metrics, summary))
    return path


__all__: Iterable[str] = ("write_report", "render_report", "html_table", "paper_rows", "read_csv_rows")
