"""Benchmark 5: end to end, ``fusionkit run recipes/tumor_origin.yaml``.

Run 1: fresh --out, fresh shared --cache (cold: encoders train/encode).
Run 2: another fresh --out, the same --cache (warm: stores and cached units reused).
Wall time and peak RSS (``ru_maxrss`` of the CLI process from ``wait4``).

By default the recipe runs with its repeats reduced to 1 (``--set`` overrides
listed in the row notes) so that the whole benchmark suite stays under 20
minutes on 2 cores; ``python benchmarks/bench_e2e.py --full`` (or
``run_all.py --e2e-full``) runs the recipe unchanged. ``--quick`` also shrinks the
synthetic cohort.
"""

from __future__ import annotations

import os
import shutil
import sys
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent))

from common import REPO, main_for, row, run_cmd_measured, skip, temp_dir  # noqa: E402

BENCH = "5 end to end"
RECIPE = REPO / "recipes" / "tumor_origin.yaml"

REDUCED = ["tasks.recognizer.params.repeats=1", "tasks.recognizer_cancer.params.repeats=1",
           "tasks.classifier.params.n_repeats=1", "tasks.gmm.params.n_repeats=1",
           "tasks.similarity.params.n_repeats=1", "tasks.retrieval.params.n_repeats=1"]
QUICK = REDUCED + ["data.reader.params.n_patients=120", "tasks.recognizer.params.n_per_k=300",
                   "tasks.recognizer_cancer.params.n_per_k=300", "tasks.recognizer.params.max_epochs=5",
                   "tasks.recognizer_cancer.params.max_epochs=5", "tasks.classifier.params.max_epochs=10",
                   "modalities.rna.encoder.params.epochs=3", "modalities.rna.encoder.params.finetune_epochs=1",
                   "modalities.mutation.encoder.params.epochs=3"]


def run(quick: bool = False, tmp: Path | None = None, full: bool = False,
        timeout: float = 900) -> list[dict[str, Any]]:
    if not RECIPE.exists():
        return [skip(BENCH, "fusionkit run tumor_origin", f"{RECIPE} does not exist yet")]
    exe = shutil.which("fusionkit") or str(Path(sys.executable).parent / "fusionkit")
    if not Path(exe).exists():
        return [skip(BENCH, "fusionkit run tumor_origin", "the fusionkit CLI is not installed")]
    sets = [] if full else (QUICK if quick else REDUCED)
    args = [a for s in sets for a in ("--set", s)]
    env = dict(os.environ, HF_HUB_OFFLINE="1")
    rows = []
    with temp_dir(tmp, "e2e") as folder:
        results = []
        for i in (1, 2):
            cmd = [exe, "run", str(RECIPE), "--out", str(folder / f"out{i}"), "--cache", str(folder / "cache"),
                   "--no-progress", *args]
            r = run_cmd_measured(cmd, cwd=REPO, env=env, timeout=timeout)
            results.append(r)
            if r["rc"] != 0:
                lines = r["output_tail"].strip().splitlines()
                tail = [ln.strip() for ln in lines if ln.strip().startswith("File ")][-2:] + lines[-1:]
                rows.append(skip(BENCH, f"run {i}", f"rc {r['rc']} after {r['wall_s']:.0f} s: {' / '.join(tail)}"))
                return rows
    what = "unchanged" if full else f"with --set {' '.join(sets)}"
    cold, warm = results
    rows.append(row(BENCH, "tumor_origin.yaml wall time: cold vs warm cache", cold["wall_s"], warm["wall_s"],
                    unit="s", ratio=cold["wall_s"] / warm["wall_s"],
                    note=f"recipe {what}; ratio = cold / warm"))
    rows.append(row(BENCH, "tumor_origin.yaml peak RSS: cold vs warm", cold["peak_rss_bytes"] / 2 ** 30,
                    warm["peak_rss_bytes"] / 2 ** 30, unit="GiB", note="ru_maxrss of the CLI process"))
    return rows


if __name__ == "__main__":
    import argparse

    from common import table

    ap = argparse.ArgumentParser()
    ap.add_argument("--quick", action="store_true")
    ap.add_argument("--full", action="store_true", help="run the recipe unchanged")
    a = ap.parse_args()
    print(table(run(quick=a.quick, full=a.full), markdown=False))
