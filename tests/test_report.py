"""report.html: summary first (study, claims with verdicts, embedding health), one
section per task (key figures, headline table, the rest collapsed and linked as
CSV), self-contained, no raw JSON; verdict rules; `results` agrees with it."""

from __future__ import annotations

import html as htmllib
import json
import re
from pathlib import Path
from types import SimpleNamespace

import numpy as np
import pytest
from report_fixture import make_run


def _text(page: str) -> str:
    """The visible text of a page (tags, styles and scripts removed, entities decoded)."""
    page = re.sub(r"<(style|script)[^>]*>.*?</\1>", " ", page, flags=re.S)
    return " ".join(htmllib.unescape(re.sub(r"<[^>]+>", " ", page)).split())


def _card(page: str, cid: str) -> str:
    m = re.search(rf"<article class='claim ([a-z-]+)' id='claim-{cid}'>(.*?)</article>", page, flags=re.S)
    assert m, f"no card for claim {cid}"
    return m.group(0)


@pytest.fixture
def run_dir(tmp_path: Path) -> Path:
    return make_run(tmp_path / "run")


def test_summary_first_with_a_card_per_claim(run_dir):
    from fusionkit.report import VERDICTS, write_report_for

    page = write_report_for(run_dir).read_text()
    # order: study paragraph, claims panel, health, then the task sections, then the details
    idx = [page.index(s) for s in ("class='study'", "id='claims'", "id='health'", "id='task-recognizer'",
                                   "id='task-classifier'", "id='details'")]
    assert idx == sorted(idx)
    study = _text(page[idx[0]:idx[1]])
    assert "600 patients of 6 cancer types" in study and "rna-vae" in study and "90%" in study
    assert "sbert → random-projection" in study and "synthetic" in study
    expected = {"recognizer": "holds", "baseline": "partly", "composite": "holds", "noise": "partly",
                "classifier": "partly", "confusions": "holds", "more-k": "holds", "gmm": "holds", "thca": "partly"}
    for cid, verdict in expected.items():
        card = _card(page, cid)
        assert f"<span class='badge'>{verdict}</span>" in card, (cid, _text(card))
        assert verdict in VERDICTS
    noise = _text(_card(page, "noise"))
    assert "10%: 0.88 [0.86, 0.90]" in noise and "50%: 0.83 [0.80, 0.86]" in noise
    assert "more robust than the paper" in noise and "about 0.6 at 50%" in noise
    assert "F1 ≥ 0.8 for 5 of 6 cancers" in _text(_card(page, "classifier"))
    assert "also gmm_centred: holds" in _text(_card(page, "gmm"))
    # every claim card that has a figure shows it as an embedded thumbnail linking to the figure in its section
    for cid in expected:
        card = _card(page, cid)
        m = re.search(r"<a class='thumb' href='#(fig-[a-z0-9-]+)'><img alt='[^']*' src='data:image/png;base64,", card)
        assert m, cid
        assert f"id='{m.group(1)}'" in page


def test_page_is_self_contained_readable_and_printable(run_dir):
    from fusionkit.report import write_report_for

    page = write_report_for(run_dir).read_text()
    assert not re.search(r"(src|href)=['\"]?(https?:|//)", page)
    assert "<link" not in page and "<script src" not in page and "@import" not in page
    assert "@media print" in page and "break-inside:avoid" in page
    body = _text(page)
    assert '{"' not in body and "': " not in body and '": ' not in body  # no raw JSON or dicts
    assert "{'" not in body and "[{" not in body
    assert not list(run_dir.glob(".report.html*"))  # atomic write left no temp file
    # readable without script: the only script opens collapsed parts before printing
    scripts = re.findall(r"<script>(.*?)</script>", page, flags=re.S)
    assert len(scripts) == 1 and "beforeprint" in scripts[0]


def test_task_sections_key_figures_first_rest_collapsed(run_dir):
    from fusionkit.report import write_report_for

    page = write_report_for(run_dir).read_text()
    sec = page[page.index("id='task-recognizer'"):page.index("id='task-classifier'")]
    assert "Task: recognizer" in sec
    first_fig, first_table, first_details = sec.index("<figure"), sec.index("<table"), sec.index("<details")
    assert first_fig < first_table < first_details
    head = sec[:first_details]
    assert head.count("<figure") == 3 and "mcc by k" in head
    assert "k=3" in _text(head) and "0.961" in _text(head)  # headline table: MCC by modality and k
    # per-repeat tables: collapsed, excerpted, linked as CSV (relative link); a missing CSV is said so
    assert "<summary>summary table <span class='note'>(first 20 of 100 rows; CSV: " \
           "<a href='recognizer/summary.csv'>" in sec
    assert "file missing" in sec and "recognizer/nope.csv" in sec
    # other figures collapsed: classifier keeps two key figures, three more collapsed
    csec = page[page.index("id='task-classifier'"):page.index("id='task-gmm'")]
    key = csec[:csec.index("<details")]
    assert key.count("<figure") == 2 and "confusion cancer type dense" in key
    assert "<summary>3 more figure(s)</summary>" in csec
    assert "0.880 [0.860, 0.900]" in _text(key)  # accuracy with its CI in the headline table
    # gmm: the ARI grid and the largest grid point's scatter are the key figures
    gsec = page[page.index("id='task-gmm'"):page.index("id='task-gmm-centred'")]
    gkey = gsec[:gsec.index("<details")]
    assert "ari grid" in gkey and "pca k5 r5" in gkey and "pca k3 r3" not in gkey
    # a task without results still has its section, and says so
    assert "Task: bare" in page and "This task recorded no results." in page
    # a task section lists the claims it decided, linked to their cards
    assert "<a href='#claim-gmm'>" in gsec


def test_health_panel_with_and_without_a_health_entry(tmp_path):
    from fusionkit.report import write_report_for

    plain = write_report_for(make_run(tmp_path / "a")).read_text()
    panel = plain[plain.index("id='health'"):plain.index("</aside>")]
    assert "<th>health</th>" not in panel
    assert "Nearly centred: mutation" in _text(panel)  # norm of mean 0.4 vs mean norm 11
    for cell in ("rna", "600", "100%", "10.00", "6.00", "image", "420", "70%"):
        assert f">{cell}<" in panel
    # the health entry as fusionkit.health writes it: status, flags, probes per label
    health = {"rna": {"status": "ok", "flags": [], "spread": 0.4,
                      "probes": {"subtype": {"macro_f1": 0.31}, "cancer_type": {"macro_f1": 0.8712}}},
              "mutation": {"status": "collapsed", "flags": ["collapsed: spread 0.001 < 0.05"], "spread": 0.001},
              "text": True}
    run = make_run(tmp_path / "b", health=health)
    summary = json.loads((run / "data_summary.json").read_text())
    (run / "data_summary.json").write_text(json.dumps({**summary, "primary_label": "cancer_type"}))
    page = write_report_for(run).read_text()
    panel = page[page.index("id='health'"):page.index("</aside>")]
    assert "<th>health</th>" in panel and ">collapsed<" in panel and ">ok<" in panel
    assert "<th>probe F1</th>" in panel and ">0.87<" in panel  # the primary label's probe
    assert "collapsed: spread 0.001 < 0.05" in _text(panel)


def _claims(rows, **result):
    from fusionkit.report import evaluate_claims

    return {c.id: c for c in evaluate_claims({"t": {"task": "x", "paper_comparison": rows, **result}})}


def _r(exp, metric, modality, k, mean, lo=None, hi=None, paper="", note=""):
    return {"experiment": exp, "metric": metric, "modality": modality, "k": k, "ours_mean": mean,
            "ours_ci_low": lo, "ours_ci_high": hi, "paper": paper, "note": note}


def test_verdict_rules():
    c = _claims([_r("recognizer deep, isolation", "MCC", "rna", "3..10", 0.95, 0.94, 0.96),
                 _r("recognizer deep, isolation", "MCC", "mutation", "3..10", 0.41, 0.3, 0.5),
                 _r("recognizer deep, composite", "MCC", "text", "3..10", 0.9, 0.85, 0.95),
                 _r("recognizer deep, isolation", "MCC", "text", "3..10", 0.92, 0.9, 0.94),
                 _r("robustness deep, isolation, noise 0.1", "MCC", "mutation", "3..10", 0.7, 0.6, 0.8),
                 _r("GMM clustering", "ARI", "all", "3x3", 0.5, 0.4, 0.6),
                 _r("GMM clustering", "ARI", "all", "5x5", 0.45, 0.4, 0.5),
                 _r("GMM clustering", "best separated class (silhouette of true class)", "all", "5x5", 0.2,
                    note="ours: BRCA (THCA not in this data)")])
    assert c["recognizer"].verdict == "partly" and "short: mutation 0.41;" in c["recognizer"].reason
    assert c["recognizer"].ours == "lowest mutation 0.41 [0.30, 0.50]"
    assert c["composite"].verdict == "partly"  # lower, but the CIs overlap
    assert c["noise"].verdict == "does not hold" and "0.70 at 10% noise" in c["noise"].reason
    assert c["gmm"].verdict == "does not hold"
    assert c["thca"].verdict == "not comparable" and "THCA not in this data" in c["thca"].reason
    for cid in ("baseline", "classifier", "confusions", "more-k"):  # nothing measured them
        assert c[cid].verdict == "not comparable" and c[cid].task is None and not c[cid].ours
    exp = "classifier cancer type (dense)"
    c = _claims([_r(exp, "F1 BRCA", "BRCA", 5, 0.5), _r(exp, "F1 LUAD", "LUAD", 5, 0.6),
                 _r(exp, "accuracy", "all", 5, 0.55, 0.5, 0.6),
                 _r(exp, "MCC trend over k x r", "all", "3x3 -> 5x5", -0.05, note="MCC 0.6 -> 0.55"),
                 _r(exp, "most frequent confusions", "all", 5, None, note="BRCA<->LUAD (4)")])
    assert c["classifier"].verdict == "does not hold"
    assert c["more-k"].verdict == "does not hold"
    assert c["confusions"].verdict == "not comparable" and "BLCA" in c["confusions"].reason
    c = _claims([_r(exp, f"F1 {x}", x, 5, 0.9) for x in ("LUAD", "BLCA", "COAD", "STAD")]
                + [_r(exp, "accuracy", "all", 5, 0.9, 0.88, 0.92),
                   _r(exp, "most frequent confusions", "all", 5, None, note="COAD<->STAD (3), BLCA<->COAD (1)")])
    assert c["classifier"].verdict == "holds"
    assert c["confusions"].verdict == "partly" and "COAD↔STAD" in c["confusions"].reason


def test_malformed_rows_and_results_never_lose_the_report(tmp_path):
    from fusionkit.report import evaluate_claims, write_report

    metrics = {"bad": {"task": "recognizer", "summary": "oops", "figures": ["nope.png"], "tables": {"t": "x.csv"},
                       "paper_comparison": [{"experiment": "recognizer deep, isolation", "ours_mean": "n/a"},
                                            "not a row"]},
               "odd": {"task": "gmm", "summary": {"by_grid": {"k=3,r=3": None}}},
               "notadict": 3}
    assert len(evaluate_claims(metrics)) == 9
    ctx = SimpleNamespace(out_dir=tmp_path, recipe=SimpleNamespace(name="demo", to_yaml=lambda: "name: demo\n"),
                          seed=1, timings={})
    page = write_report(ctx, metrics, {}).read_text()
    assert "Task: bad" in page and "figure missing: nope.png" in page and "Task: odd" in page
    assert "name: demo" in page and "no data summary" in page and "</html>" in page


def test_report_with_no_tasks_and_no_summary(tmp_path):
    from fusionkit.report import write_report

    ctx = SimpleNamespace(out_dir=tmp_path, recipe=SimpleNamespace(name="empty"), seed=1, timings={})
    page = write_report(ctx, {}, {}).read_text()
    assert "This run has no task results." in page and "</html>" in page
    assert page.count("<span class='badge'>not comparable</span>") == 9


def _numbers(text: str) -> list[str]:
    return re.findall(r"(?<![\w.])-?\d+\.\d+(?![\w.])|\d+%", text)


def test_results_and_report_agree_number_for_number(run_dir):
    from fusionkit.report import load_run, results_json, results_markdown, write_report_for

    page = write_report_for(run_dir).read_text()
    text = _text(page)
    md = results_markdown(load_run(run_dir))
    nums = _numbers(md)
    assert len(nums) > 100
    missing = sorted({n for n in nums if n not in text})
    assert not missing, missing
    # claim by claim: the same 'ours' text and verdict on the card and in the Markdown row
    data = results_json(load_run(run_dir))
    assert len(data["claims"]) == 9
    for c in data["claims"]:
        card = _text(_card(page, c["id"]))
        assert c["verdict"] in card and c["ours"] in card
        assert f"| {c['ours'].replace('|', chr(92) + '|')} | {c['verdict']} |" in md
    # every comparison row: the same mean and CI in both
    for row in data["paper_comparison"]:
        assert row["ours"] in text and row["95% CI"] in text
    json.dumps(data)  # plain data


def test_html_table_escapes_and_truncates():
    from fusionkit.report import html_table

    out = html_table([{"a": "<b>", "b": float("nan"), "c": np.float64(0.123456), "d": {"x": 1}}] * 5, max_rows=2)
    assert "&lt;b&gt;" in out and "<b>" not in out.replace("&lt;b&gt;", "")
    assert "n/a" in out and "0.123" in out and "showing 2 of 5 rows" in out and "x: 1" in out
