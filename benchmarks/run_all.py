"""Run every fusionkit benchmark, print the ratio table, write benchmarks/RESULTS.md.

    python benchmarks/run_all.py            # full pass (< 20 min on 2 cores)
    python benchmarks/run_all.py --quick    # small pass (~2-3 min)
    python benchmarks/run_all.py --only sampling,retrieval
    python benchmarks/run_all.py --only gather,main_job --rows benchmarks/measured/paper_scale_full.json
    python benchmarks/run_all.py --merge --rows benchmarks/measured/main_job.json   # re-render only

Each benchmark is its own module (``bench_*.py``, runnable alone) returning rows
``{benchmark, metric, fusionkit, baseline, ratio, target, met}``; a benchmark
whose component is missing returns a SKIPPED row instead of failing the suite.
Generated data goes to a temporary folder (``$FUSIONKIT_BENCH_TMP`` or the
system temp) that is deleted at the end. The hand-written "## Analysis" section
of an existing RESULTS.md is kept. ``--rows FILE`` adds rows a benchmark printed
on its own (``bench_paper_scale.py --full --json``: a 50-minute study is not rerun
for every table); their note says where and when they were measured. ``--merge`` runs
nothing: it re-renders the existing RESULTS.md with the benchmarks of the ``--rows``
files replaced by those rows (a re-measured benchmark without a 20-minute full pass);
the header then names what was merged and when.
"""

from __future__ import annotations

import argparse
import importlib
import json
import os
import sys
import time
import traceback
from pathlib import Path

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))
os.environ.setdefault("HF_HUB_OFFLINE", "1")

from common import machine, skip, table, temp_dir  # noqa: E402

ORDER = ["sampling", "encoders", "retrieval", "training", "scaling", "e2e", "paper_scale", "gather", "main_job", "roof"]


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--quick", action="store_true", help="small sizes (~2-3 min)")
    ap.add_argument("--only", default="", help=f"comma-separated subset of {','.join(ORDER)}")
    ap.add_argument("--e2e-full", action="store_true", help="run tumor_origin.yaml unchanged (slow)")
    ap.add_argument("--results", default=str(HERE / "RESULTS.md"), help="markdown file to write")
    ap.add_argument("--no-write", action="store_true", help="print only")
    ap.add_argument("--rows", action="append", default=[],
                    help="JSON file of rows measured separately by one benchmark's own --json run (repeatable)")
    ap.add_argument("--merge", action="store_true",
                    help="run nothing: replace the --rows files' benchmarks in the existing RESULTS.md")
    a = ap.parse_args(argv)
    if a.merge:
        return merge_results(Path(a.results), a.rows)
    names = [n for n in (a.only.split(",") if a.only else ORDER) if n]
    info = machine()
    t_start = time.perf_counter()
    load_before = info.get("load_avg")
    rows, durations = [], {}
    with temp_dir(None, "run-all") as tmp:
        for name in names:
            t0 = time.perf_counter()
            print(f"== {name} ...", flush=True)
            try:
                mod = importlib.import_module(f"bench_{name}")
                kwargs = {"quick": a.quick, "tmp": tmp}
                if name == "e2e":
                    kwargs["full"] = a.e2e_full
                got = mod.run(**kwargs)
            except Exception as exc:  # noqa: BLE001 - one benchmark failing skips its rows only
                traceback.print_exc()
                got = [skip(name, "all", f"{type(exc).__name__}: {exc}")]
            durations[name] = time.perf_counter() - t0
            rows += got
            print(table(got, markdown=False), flush=True)
    for f in a.rows:
        rows += _stamped_rows(f, "measured separately: {f}, {when}")
    total = time.perf_counter() - t_start
    load_after = os.getloadavg()
    print("\n" + table(rows, markdown=False))
    print(f"\ntotal {total / 60:.1f} min; load average before {load_before}, after {load_after}")
    if not a.no_write:
        write_results(Path(a.results), rows, info, durations, total, a.quick, load_before, load_after)
        print(f"wrote {a.results}")
    return 0


def _stamped_rows(f: str, stamp: str) -> list[dict]:
    """The rows of a benchmark's ``--json`` file, each note prefixed with ``[stamp]`` (``{f}``:
    the file, ``{when}``: its modification time)."""
    when = time.strftime("%Y-%m-%d %H:%M UTC", time.gmtime(Path(f).stat().st_mtime))
    tag = stamp.format(f=f, when=when)
    return [{**r, "note": f"[{tag}] {r.get('note', '')}"} for r in json.loads(Path(f).read_text())]


def _analysis(old: str) -> str:
    """The hand-written "## Analysis" section of an existing RESULTS.md (kept on every rewrite)."""
    return old[old.index("\n## Analysis") + 1:] if "\n## Analysis" in old else ""


def _render(path: Path, head: list[str], rows: list[dict], durations_line: str, analysis: str) -> None:
    """Write RESULTS.md: ``head`` (title, machine), the results table, the per-benchmark times,
    the raw rows, the scaling plot and the kept analysis."""
    lines = head + [
        "## Results",
        "",
        "`ratio` = fusionkit / baseline (for times: as stated in the note). `met` is empty where no target applies.",
        "",
        table(rows, markdown=True),
        "",
        durations_line,
        "",
        "Raw rows (JSON):",
        "",
        "<details><summary>rows</summary>",
        "",
        "```json",
        json.dumps(rows, indent=1, default=str),
        "```",
        "",
        "</details>",
        "",
    ]
    if (HERE / "scaling.png").exists():
        lines += ["![scaling](scaling.png)", ""]
    path.write_text("\n".join(lines) + ("\n" + analysis if analysis else ""))


def merge_results(path: Path, files: list[str]) -> int:
    """Re-render ``path`` with the rows of ``files`` in place of their benchmarks' old rows."""
    if not path.exists() or not files:
        print(f"--merge needs an existing {path} and at least one --rows file", file=sys.stderr)
        return 2
    old = path.read_text()
    start = old.index("```json\n") + len("```json\n")
    rows = json.loads(old[start:old.index("\n```", start)])
    new = [r for f in files for r in _stamped_rows(f, "re-measured {when}: {f}")]
    replaced = {r["benchmark"] for r in new}
    rows = [r for r in rows if r["benchmark"] not in replaced] + new
    info = machine()
    head = [old.partition("\n## Results\n")[0].rstrip("\n"), "",
            f"Rows of {', '.join(sorted(replaced))} re-measured and merged on "
            f"{time.strftime('%Y-%m-%d %H:%M %Z')} (git {info.get('git_commit', '?')}, "
            f"`run_all.py --merge`) on {info.get('cpu')}, {info.get('usable_cores')} usable cores; load average "
            f"now {tuple(round(x, 2) for x in os.getloadavg())}.", ""]
    durations_line = old[old.index("\nTime per benchmark:"):old.index("\nRaw rows (JSON):")].strip("\n")
    _render(path, head, rows, durations_line, _analysis(old))
    print(f"merged {len(new)} row(s) of {sorted(replaced)} into {path}")
    return 0


def write_results(path: Path, rows, info, durations, total, quick, load_before, load_after) -> None:
    m = info
    head = [
        "# fusionkit benchmarks: results",
        "",
        f"Generated by `python benchmarks/run_all.py{' --quick' if quick else ''}` on "
        f"{time.strftime('%Y-%m-%d %H:%M %Z')} (git {m.get('git_commit', '?')}), total {total / 60:.1f} min.",
        "",
        "## Machine",
        "",
        f"- CPU: {m.get('cpu')}, {m.get('logical_cores')} logical cores ({m.get('usable_cores')} usable), "
        f"RAM {m.get('ram_gib')} GiB",
        f"- {m.get('platform')}; Python {m.get('python')}",
        f"- numpy {m.get('numpy')} ({m.get('numpy_blas', '?')}), torch {m.get('torch')} "
        f"({m.get('torch_threads')} threads), faiss {m.get('faiss')}, scikit-learn {m.get('sklearn')}, "
        f"sentence-transformers {m.get('sentence_transformers')}, timm {m.get('timm')}, fusionkit {m.get('fusionkit')}",
        f"- load average before the run {tuple(round(x, 2) for x in (load_before or ()))}, after "
        f"{tuple(round(x, 2) for x in load_after)}: "
        + ("**the machine was shared with other jobs (load > cores), so timings are noisy and pessimistic**"
           if max(list(load_before or (0,)) + list(load_after)) > (m.get("logical_cores") or 1) else "quiet"),
        "",
    ]
    durations_line = "Time per benchmark: " + ", ".join(f"{k} {v:.0f} s" for k, v in durations.items())
    _render(path, head, rows, durations_line, _analysis(path.read_text()) if path.exists() else "")


if __name__ == "__main__":
    sys.exit(main())
