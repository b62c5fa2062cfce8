"""The report as text: ``fusionkit results`` (Markdown) and the claims table the
CLI prints at the end of a run. Same data and number formatting as the HTML
page, so the two agree number for number (a test compares them).
"""

from __future__ import annotations

from typing import Any, Mapping, Sequence

from .claims import COMPARISON_COLUMNS, comparison_table
from .fmt import plain
from .page import HEALTH_DIGITS, HEALTH_HEADERS, availability_rows, health_rows
from .study import RunView, study_sentences
from .tasks import MARKDOWN_SECTIONS, headline_tables


def _cell(x: Any, digits: int = 3) -> str:
    text = plain(x, digits) if not isinstance(x, str) else x
    return text.replace("|", "\\|").replace("\n", " ")


def md_table(rows: Sequence[Mapping[str, Any]], columns: Sequence[str],
             headers: Mapping[str, str] | None = None, digits: int = 3) -> list[str]:
    """A Markdown table; numbers formatted as in the HTML tables (:func:`~fusionkit.report.fmt.plain`)."""
    headers = headers or {}
    out = ["| " + " | ".join(_cell(headers.get(c, c)) for c in columns) + " |",
           "|" + "---|" * len(columns)]
    out += ["| " + " | ".join(_cell(r.get(c), digits) for c in columns) + " |" for r in rows]
    return out


def claim_rows(view: RunView) -> list[dict[str, str]]:
    return [{"claim": c.title, "paper": c.paper, "ours": c.ours, "verdict": c.verdict, "why": c.reason,
             "task": c.task or ""} for c in view.claims]


def results_markdown(view: RunView) -> str:
    """A finished run as Markdown: the study, the claims, embedding health, availability, every comparison."""
    lines = [f"# {view.name}", "", " ".join(study_sentences(view)), "", "## The paper's claims", ""]
    lines += md_table(claim_rows(view), ["claim", "paper", "ours", "verdict", "why", "task"])
    rows, cols = health_rows(view)
    if rows:
        lines += ["", "## Embedding health", ""] + md_table(rows, cols, HEALTH_HEADERS, HEALTH_DIGITS)
    arows, acols, label = availability_rows(view)
    if arows:
        lines += ["", f"## Patients per {label.replace('_', ' ')} per modality", ""] + md_table(arows, acols)
    shared, crow = comparison_table(view.ordered_metrics)
    if crow:
        lines += ["", "## Every comparison with the paper", ""]
        lines += [f"- {t}: {n}" for t, n in shared.items()] + ([""] if shared else [])
        lines += md_table(crow, COMPARISON_COLUMNS)
    for tname, result in view.metrics.items():  # tasks with a section of their own (e.g. survival)
        if isinstance(result, Mapping) and result.get("task") in MARKDOWN_SECTIONS:
            lines += ["", f"## {str(result['task']).capitalize()} ({tname})", ""]
            for caption, rows, cols in headline_tables(str(result["task"]), result):
                lines += [caption, ""] + md_table(rows, cols) + [""]
    return "\n".join(lines) + "\n"


def results_json(view: RunView) -> dict[str, Any]:
    shared, crow = comparison_table(view.ordered_metrics)
    return {"name": view.name, "study": study_sentences(view), "claims": [c.as_dict() for c in view.claims],
            "health": health_rows(view)[0], "availability": view.summary.get("modalities", {}),
            "paper_comparison": crow, "comparison_notes": shared}


def claims_summary(view: RunView, width: int = 100) -> list[str]:
    """Plain lines for the end of a run: one per claim, verdict first."""
    if not view.claims or all(c.verdict == "not comparable" and not c.task for c in view.claims):
        return []
    vw = max(len(c.verdict) for c in view.claims)
    tw = max(len(c.title) for c in view.claims)
    out = []
    for c in view.claims:
        line = f"  {c.verdict:<{vw}}  {c.title:<{tw}}  {c.ours}"
        out.append(line if len(line) <= width else line[: width - 3] + "...")
    return out
