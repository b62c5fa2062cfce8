"""Benchmark 7: the paper-scale recognizer study (recipes/paper_scale.yaml), batched vs one model at a time.

    python benchmarks/bench_paper_scale.py            # 2 repeats each way, full study extrapolated
    python benchmarks/bench_paper_scale.py --quick    # 2 repeats x 3,000 aggregates per k
    python benchmarks/bench_paper_scale.py --full     # the recipe unchanged (30 repeats, ~30 min)

``--full`` runs the recipe unchanged from a cold cache (``fusionkit run``: reading,
encoding, the recognizer study, the report): that wall time is the study time. The
same cache then serves two runs of the recognizer task alone on a subset of 2
repeats: one-at-a-time training (``batched: false``, fp32: one network or baseline
fit per unit, the path without this recipe's batching) and batched training on the
same repeats (``batch_repeats: 1`` so that both runs keep both workers busy). Units
are per repeat in both, so the one-at-a-time study time is its subset time x 15; the
ratio is that over the full batched study's task time, both measured in the same
benchmark run. Without ``--full`` (the ``run_all.py`` row) only the subset runs, and
both study times are extrapolated x 15.

Wall times are noted with the load average before and after (the machine is shared);
CPU seconds are ``ru_utime + ru_stime`` of the finished process tree (the CLI and its
forked workers), which other tenants' load inflates far less.
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import shutil
import sys
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent))

from common import REPO, row, run_cmd_measured, skip, table, temp_dir  # noqa: E402

BENCH = "7 paper-scale recognizer"
RECIPE = REPO / "recipes" / "paper_scale.yaml"
FULL_REPEATS = 30
SUBSET = 2
P = "tasks.recognizer.params."
ONE_AT_A_TIME = [f"{P}batched=false", f"{P}precision=fp32", f"{P}batch_repeats=1"]


def _cpu_children() -> float:
    ru = resource.getrusage(resource.RUSAGE_CHILDREN)
    return ru.ru_utime + ru.ru_stime


def _study(exe: str, out: Path, cache: Path, sets: list[str], timeout: float, task_only: bool = True
           ) -> dict[str, Any]:
    """One ``fusionkit run`` of the recipe: wall, CPU, peak RSS, load, the recognizer's summary."""
    args = [a for s in sets for a in ("--set", s)]
    cmd = [exe, "run", str(RECIPE), "--out", str(out), "--cache", str(cache), "--no-progress",
           *(["--task", "recognizer"] if task_only else []), *args]
    load0, cpu0 = os.getloadavg(), _cpu_children()
    res = run_cmd_measured(cmd, env=dict(os.environ, HF_HUB_OFFLINE="1"), timeout=timeout)
    cpu, load1 = _cpu_children() - cpu0, os.getloadavg()
    if res["rc"] != 0:
        raise RuntimeError(f"fusionkit run failed (rc {res['rc']}): {res['output_tail'][-800:]}")
    summary = json.loads((out / "metrics.json").read_text())["recognizer"]["summary"]
    run = json.loads((out / "run.json").read_text())
    return {"wall_s": res["wall_s"], "task_s": float(summary["wall_s"]), "cpu_s": cpu,
            "peak_rss": res["peak_rss_bytes"], "load": (load0, load1), "summary": summary,
            "timings": run.get("timings_s", {}), "repeats": int(summary["repeats"])}


def _components(out: Path) -> dict[str, float]:
    """Seconds per repeat of each part of the recognizer units (recognizer/units.csv): the deep
    networks' training (isolation group, composite; the linear shortcut's ridge solves included),
    the baseline's fits, and testing every model on the clean and perturbed test sets. A grouped
    fit's ``train_s`` is its time shared out over its members, so members add up to the group."""
    import csv

    parts: dict[str, float] = {}
    repeats: set[str] = set()
    with open(out / "recognizer" / "units.csv", newline="") as fh:
        for u in csv.DictReader(fh):
            repeats.add(u["repeat"])
            key = f"{u['model']} {u['mode']}"
            parts[key] = parts.get(key, 0.0) + float(u["train_s"])
            parts["testing"] = parts.get("testing", 0.0) + float(u["total_s"]) - float(u["train_s"])
    return {k: v / max(len(repeats), 1) for k, v in parts.items()}


def _load(s: dict[str, Any]) -> str:
    return f"load {s['load'][0][0]:.1f}->{s['load'][1][0]:.1f}"


def _mcc(s: dict[str, Any]) -> str:
    m = s["summary"].get("mean_mcc", {})
    keys = [k for k in ("deep/isolation/text", "deep/composite/text", "baseline/isolation/text",
                        "baseline/composite/text") if k in m]
    return ", ".join(f"{k} {m[k]:.3f}" for k in keys if m[k] is not None)


def run(quick: bool = False, tmp: Path | None = None, full: bool = False, timeout: float = 7200,
        keep: Path | None = None) -> list[dict[str, Any]]:
    exe = shutil.which("fusionkit") or str(Path(sys.executable).parent / "fusionkit")
    if not RECIPE.exists() or not Path(exe).exists():
        return [skip(BENCH, "study wall time", "recipes/paper_scale.yaml or the fusionkit CLI is missing")]
    subset = SUBSET  # two units in both runs: both workers busy
    sub = [f"{P}n_repeats={subset}", f"{P}batch_repeats=1"]
    if quick:
        sub += [f"{P}n_per_k=3000", "sampling.modality_level.params.n=3000"]
    rows: list[dict[str, Any]] = []
    with temp_dir(tmp, "paper-scale") as d:
        base = Path(keep) if keep else d
        cache = base / "cache"
        study = _study(exe, base / "study", cache, [], timeout, task_only=False) if full else None
        seq = _study(exe, base / "one-at-a-time", cache, sub + ONE_AT_A_TIME, timeout)
        bat = _study(exe, base / "batched-subset", cache, sub, timeout)
        parts = _components(base / "batched-subset")
    scale = FULL_REPEATS / subset
    size = f"{subset} repeat(s){' x 3,000 aggregates per k' if quick else ''}"
    if study is not None:
        t = study["timings"]
        enc = sum(v for k, v in t.items() if k.startswith("encode"))
        rows.append(row(BENCH, "paper-scale study, full recipe (30 repeats, cold cache)", study["wall_s"],
                        unit="s", target="<= 900 s", met=study["wall_s"] <= 900,
                        note=(f"fusionkit run recipes/paper_scale.yaml; recognizer task {study['task_s']:.0f} s, "
                              f"encoding {enc:.0f} s; CPU {study['cpu_s']:.0f} s on 2 cores; peak RSS "
                              f"{study['peak_rss'] / 2**30:.2f} GiB; {_load(study)}; {_mcc(study)}")))
        bat_full, how = study["task_s"], "measured (30 repeats, blocks of 3)"
        bat_cpu = study["cpu_s"]
    else:
        bat_full, how = bat["task_s"] * scale, f"extrapolated x{scale:g} from {size}"
        bat_cpu = bat["cpu_s"] * scale
    seq_full = seq["task_s"] * scale
    rows.append(row(BENCH, "recognizer study: one at a time / batched (speed-up)", bat_full, seq_full,
                    ratio=seq_full / bat_full if bat_full else None, unit="s",
                    target="measured (speed-up)",
                    note=(f"task wall times; batched {how}; one at a time (batched=false, fp32) measured on "
                          f"{size} x{scale:g}; CPU ratio {seq['cpu_s'] * scale / bat_cpu:.2f} "
                          f"(includes each run's start-up); same benchmark run, {_load(seq)}")))
    rows.append(row(BENCH, f"same {size}: one at a time / batched", bat["task_s"], seq["task_s"],
                    ratio=seq["task_s"] / bat["task_s"] if bat["task_s"] else None, unit="s",
                    target="measured (speed-up)",
                    note=(f"recognizer task only, encoders cached; CPU {seq['cpu_s']:.0f} s vs {bat['cpu_s']:.0f} s; "
                          f"batched {_load(bat)}; one at a time: {_mcc(seq)}; batched: {_mcc(bat)}")))
    per_repeat = sum(parts.values())
    rows.append(row(BENCH, f"batched, {size}: seconds per repeat on one worker, by part", round(per_repeat, 1),
                    unit="s", note=("; ".join(f"{k} {v:.1f}" for k, v in sorted(parts.items(), key=lambda kv: -kv[1]))
                                    + f"; x{FULL_REPEATS} repeats / 2 workers = {per_repeat * FULL_REPEATS / 2:,.0f} s "
                                    "(blocks of 1 repeat; the recipe's blocks of 3 group more networks per product)")))
    return rows


if __name__ == "__main__":
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--quick", action="store_true", help="2 repeats x 3,000 aggregates per k")
    ap.add_argument("--full", action="store_true", help="the recipe unchanged (30 repeats), cold cache")
    ap.add_argument("--keep", default=None, help="write the runs here and keep them (default: a temp folder)")
    ap.add_argument("--json", action="store_true", help="print rows as JSON")
    a = ap.parse_args()
    got = run(quick=a.quick, full=a.full, keep=Path(a.keep) if a.keep else None)
    print(json.dumps(got, indent=1, default=str) if a.json else table(got, markdown=False))
