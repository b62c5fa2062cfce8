"""report.html: self-contained, every task section, paper comparison, robust to missing parts."""

from __future__ import annotations

import re
from pathlib import Path
from types import SimpleNamespace

import numpy as np


def fake_ctx(tmp_path: Path):
    recipe = SimpleNamespace(name="demo", description="a demo run", to_yaml=lambda: "name: demo\nseed: 1\n")
    return SimpleNamespace(out_dir=tmp_path, recipe=recipe, seed=1, timings={"task:clf": 1.5})


def test_report_is_self_contained_with_every_section(tmp_path):
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    from fusionkit.report import write_report

    ctx = fake_ctx(tmp_path)
    (tmp_path / "clf").mkdir()
    fig, ax = plt.subplots()
    ax.plot([0, 1], [0, 1])
    fig.savefig(tmp_path / "clf" / "fig.png")
    plt.close(fig)
    rows = "\n".join(f"cancer_type,dense,{i},0.9{i % 10},0.8,0.95" for i in range(100))
    (tmp_path / "clf" / "summary.csv").write_text("target,model,k,mean,ci_low,ci_high\n" + rows + "\n")
    metrics = {
        "clf": {"task": "classifier", "params": {"n_repeats": 3},
                "summary": {"accuracy": {"mean": 0.91, "ci_low": 0.88, "ci_high": 0.94, "n": 3}},
                "tables": {"summary": str(tmp_path / "clf" / "summary.csv"), "missing": "clf/nope.csv"},
                "figures": [str(tmp_path / "clf" / "fig.png")],
                "paper_comparison": [{"experiment": "classifier", "metric": "F1 BRCA", "modality": "BRCA", "k": 5,
                                      "ours_mean": 0.9, "ours_ci_low": 0.85, "ours_ci_high": 0.95,
                                      "paper": ">= 0.8", "note": "meets"}]},
        "rec": {"task": "recognizer", "summary": {"mcc": 0.93},
                "paper_comparison": [{"experiment": "recognizer", "metric": "MCC", "modality": "rna", "k": 3,
                                      "ours_mean": 0.93, "ours_ci_low": None, "ours_ci_high": None,
                                      "paper": "about 0.9", "note": ""}]},
        "bare": {"task": "other"},
    }
    summary = {"modalities": {"rna": {"items": 10, "patients": 10, "dim": 8, "mean_norm": 2.5, "norm_of_mean": 1.0,
                                      "mean_std": 0.5, "patients_by_cancer_type": {"BRCA": 6, "THCA": 4}},
                              "text": {"items": 40, "patients": 6, "dim": 8, "mean_norm": 1.0, "norm_of_mean": 0.2,
                                       "mean_std": 0.3, "patients_by_cancer_type": {"BRCA": 6}}},
               "labels": {"cancer_type": {"BRCA": 6, "THCA": 4}}, "notes": ["dedup: 2 reports"]}
    path = write_report(ctx, metrics, summary)
    html = path.read_text()
    assert path == tmp_path / "report.html"
    for section in ("Task: clf", "Task: rec", "Task: bare", "Resolved recipe", "paper's headline results"):
        assert section in html
    assert "data:image/png;base64," in html
    assert not re.search(r"(src|href)=['\"]?(https?:)?//", html)
    assert "<link" not in html and "<script src" not in html
    assert "F1 BRCA" in html and "about 0.9" in html and "[0.85, 0.95]" in html
    assert "showing 60 of 100 rows" in html and "file missing" in html
    assert "patients per cancer_type per modality".lower() in html.lower()
    assert "name: demo" in html
    assert not list(tmp_path.glob(".report.html*"))  # atomic write left no temp file


def test_report_with_no_tasks_and_no_summary(tmp_path):
    from fusionkit.report import write_report

    html = write_report(fake_ctx(tmp_path), {}, {}).read_text()
    assert "no task reported paper comparisons" in html and "</html>" in html


def test_html_table_escapes_and_truncates():
    from fusionkit.report import html_table

    out = html_table([{"a": "<b>", "b": float("nan"), "c": np.float64(0.123456)}] * 5, max_rows=2)
    assert "&lt;b&gt;" in out and "<b>" not in out.replace("&lt;b&gt;", "")
    assert "nan" in out and "0.123" in out and "showing 2 of 5 rows" in out
