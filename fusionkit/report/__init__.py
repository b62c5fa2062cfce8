"""One self-contained ``report.html`` per run, and the same results as text.

Summary first: the study in one paragraph, the paper's claims (SPEC 2.4) as
cards with a verdict, our number with its CI and the figure that shows it,
and embedding health per modality; then one section per task (key figures,
a compact headline table, the rest collapsed and linked as CSV); then the
details. ``fusionkit results RUN_DIR`` prints the same numbers as Markdown.

Modules: ``fmt`` (numbers, tables, images), ``claims`` (verdicts, pure data),
``study`` (the run view, cohort, modalities), ``tasks`` (task sections),
``page`` (the page), ``text`` (Markdown and console lines). Nothing here
imports a heavy library; Pillow (for thumbnails) is imported when used.
"""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING, Any, Mapping

from ..store import atomic_write_text
from .claims import VERDICTS, Claim, comparison_rows, comparison_table, evaluate_claims, paper_rows
from .fmt import html_table, read_csv_rows
from .page import render_view
from .study import RunView, load_run, view_from_context
from .text import claims_summary, results_json, results_markdown

if TYPE_CHECKING:  # type checkers only
    from ..context import RunContext


def render_report(ctx: "RunContext", metrics: Mapping[str, Any], summary: Mapping[str, Any]) -> str:
    """The report page of a run in progress (``ctx``: the engine's run context)."""
    return render_view(view_from_context(ctx, metrics, summary))


def write_report(ctx: "RunContext", metrics: Mapping[str, Any], summary: Mapping[str, Any]) -> Path:
    """Render and write ``report.html`` atomically under ``ctx.out_dir``; returns its path."""
    path = Path(ctx.out_dir) / "report.html"
    atomic_write_text(path, render_report(ctx, metrics, summary))
    return path


def write_report_for(run_dir: str | Path) -> Path:
    """Re-render ``report.html`` of a finished run folder from its files."""
    view = load_run(run_dir)
    path = Path(run_dir) / "report.html"
    atomic_write_text(path, render_view(view))
    return path


__all__ = ["write_report", "write_report_for", "render_report", "render_view", "load_run", "RunView",
           "view_from_context", "evaluate_claims", "Claim", "VERDICTS", "comparison_rows", "comparison_table",
           "results_markdown", "results_json", "claims_summary", "html_table", "read_csv_rows", "paper_rows"]
