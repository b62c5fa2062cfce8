"""Paired comparison of two recognizer runs of one recipe that differ in a training setting.

    python benchmarks/compare_recognizer_runs.py RUN_A RUN_B [--model deep] [--task recognizer]

Both runs must share the recipe's seed, so that repeat r trains and tests on the same aggregates
in both: the per-repeat MCC (over every k of the repeat) differs only by the setting. For every
(mode, modality, perturbation) prints A's and B's mean MCC and the mean paired difference B - A
with its 95% t-interval over the repeats both runs have. Rows where both means are 1.000 are
left out. Used for issue 14's right-sizing of the paper-scale trunk (benchmarks/RESULTS.md).
"""

from __future__ import annotations

import argparse
import csv
import math
from collections import defaultdict
from pathlib import Path

import numpy as np


def per_repeat_mcc(run: Path, task: str, model: str) -> dict[tuple[str, str, str], dict[int, float]]:
    """{(mode, modality, perturbation): {repeat: mean MCC over the repeat's k}} of one run."""
    path = run / task / "metrics_per_repeat.csv"
    if not path.exists():
        raise SystemExit(f"{path}: not found; pass a finished run folder with a '{task}' task")
    vals: dict[tuple[str, str, str], dict[int, list[float]]] = defaultdict(lambda: defaultdict(list))
    with open(path, newline="") as fh:
        for r in csv.DictReader(fh):
            if r["metric"] != "mcc" or r["stratum"] != "all" or r["model"] != model or r["modality"] in ("*", ""):
                continue
            v = float(r["value"]) if r["value"] not in ("", "nan") else math.nan
            vals[(r["mode"], r["modality"], r["perturbation"])][int(r["repeat"])].append(v)
    return {k: {rep: float(np.nanmean(v)) for rep, v in reps.items()} for k, reps in vals.items()}


def compare(a: Path, b: Path, task: str = "recognizer", model: str = "deep") -> list[dict]:
    from scipy import stats

    A, B = per_repeat_mcc(a, task, model), per_repeat_mcc(b, task, model)
    rows = []
    for key in sorted(set(A) & set(B)):
        reps = sorted(set(A[key]) & set(B[key]))
        x = np.array([A[key][r] for r in reps])
        y = np.array([B[key][r] for r in reps])
        d = y - x
        half = (float(stats.t.ppf(0.975, len(d) - 1) * d.std(ddof=1) / math.sqrt(len(d)))
                if len(d) > 1 else math.nan)
        rows.append({"mode": key[0], "modality": key[1], "perturbation": key[2], "a": float(x.mean()),
                     "b": float(y.mean()), "diff": float(d.mean()), "lo": float(d.mean()) - half,
                     "hi": float(d.mean()) + half, "n": len(d)})
    return rows


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("run_a", type=Path)
    ap.add_argument("run_b", type=Path)
    ap.add_argument("--task", default="recognizer", help="the task's name in the recipe (its output folder)")
    ap.add_argument("--model", default="deep", help="deep or baseline")
    args = ap.parse_args()
    rows = compare(args.run_a, args.run_b, args.task, args.model)
    print("| mode | modality | perturbation | A | B | B - A [95% CI] | repeats |\n|---|---|---|---|---|---|---|")
    for r in rows:
        if min(r["a"], r["b"]) >= 0.9995:
            continue
        print(f"| {r['mode']} | {r['modality']} | {r['perturbation']} | {r['a']:.4f} | {r['b']:.4f} | "
              f"{r['diff']:+.4f} [{r['lo']:+.4f}, {r['hi']:+.4f}] | {r['n']} |")
    covered = sum(r["lo"] <= 0 <= r["hi"] for r in rows if np.isfinite(r["lo"]))
    print(f"\n{covered} of {len(rows)} intervals contain 0")


if __name__ == "__main__":
    main()
