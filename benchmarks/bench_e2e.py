"""Benchmark 5: end to end, ``fusionkit run recipes/tumor_origin.yaml``.

Run 1: fresh --out, fresh shared --cache (cold: encoders train/encode).
Run 2: another fresh --out, the same --cache (warm: stores and cached units reused).
Wall time and peak RSS (``ru_maxrss`` of the CLI process from ``wait4``).

By default ("small") the recipe runs with every repeat count at 1, 120 synthetic
patients and few epochs (``--set`` overrides derived from the recipe, listed in
the row note) so that the whole suite stays under 20 minutes on 2 cores;
``--size reduced`` keeps the cohort and only sets repeats to 1 (measured: > 15 min
cold on the shared 2-core machine); ``--full`` (or ``run_all.py --e2e-full``) runs
the recipe unchanged. Not run with ``--quick``.
"""

from __future__ import annotations

import json
import os
import shutil
import sys
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent))

from common import REPO, main_for, row, run_cmd_measured, skip, temp_dir  # noqa: E402

BENCH = "5 end to end"
RECIPE = REPO / "recipes" / "tumor_origin.yaml"

REPEAT_KEYS = ("repeats", "n_repeats")


def reduced_sets(quick: bool) -> list[str]:
    """--set overrides putting every task's repeat count to 1 (2 for survival; and, quick, smaller sizes),
    derived from the recipe itself so renamed parameters do not break the benchmark."""
    from fusionkit.recipe import load_yaml

    raw = load_yaml(RECIPE)
    sets = []
    for name, task in (raw.get("tasks") or {}).items():
        params = (task or {}).get("params") or {} if isinstance(task, dict) else {}
        # survival reports a CI over repeats and refuses fewer than two
        floor = 2 if isinstance(task, dict) and task.get("name") == "survival" else 1
        for key in REPEAT_KEYS:
            if isinstance(params.get(key), int) and params[key] > floor:
                sets.append(f"tasks.{name}.params.{key}={floor}")
        if quick:
            if isinstance(params.get("n_per_k"), int):
                sets.append(f"tasks.{name}.params.n_per_k={min(300, params['n_per_k'])}")
            if isinstance(params.get("max_epochs"), int):
                sets.append(f"tasks.{name}.params.max_epochs={min(5, params['max_epochs'])}")
    if quick:
        reader = ((raw.get("data") or {}).get("reader") or {})
        if isinstance(reader, dict) and "n_patients" in (reader.get("params") or {}):
            sets.append("data.reader.params.n_patients=120")
        for mod, spec in (raw.get("modalities") or {}).items():
            enc = (spec or {}).get("encoder") if isinstance(spec, dict) else None
            for key in ("epochs", "finetune_epochs"):
                if isinstance(enc, dict) and isinstance((enc.get("params") or {}).get(key), int):
                    sets.append(f"modalities.{mod}.encoder.params.{key}={min(2, enc['params'][key])}")
    return sets


def run(quick: bool = False, tmp: Path | None = None, full: bool = False, size: str = "small",
        timeout: float | None = None) -> list[dict[str, Any]]:
    """size: "small" (repeats 1, 120 patients, few epochs: fits the 20-minute suite),
    "reduced" (repeats 1 only) or "full" (the recipe unchanged; also ``full=True``)."""
    if quick and not full:
        return [skip(BENCH, "fusionkit run tumor_origin", "not run with --quick (a cold run takes minutes); "
                     "run `python benchmarks/bench_e2e.py` or run_all.py without --quick")]
    if full:
        size = "full"
    timeout = timeout or {"small": 480, "reduced": 1800, "full": 3600}[size]
    if not RECIPE.exists():
        return [skip(BENCH, "fusionkit run tumor_origin", f"{RECIPE} does not exist yet")]
    exe = shutil.which("fusionkit") or str(Path(sys.executable).parent / "fusionkit")
    if not Path(exe).exists():
        return [skip(BENCH, "fusionkit run tumor_origin", "the fusionkit CLI is not installed")]
    sets = [] if size == "full" else reduced_sets(size == "small")
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
                why = f"timed out after {timeout:.0f} s" if r["rc"] in (-9, 137) else f"rc {r['rc']}"
                rows.append(skip(BENCH, f"run {i}", f"{why} after {r['wall_s']:.0f} s: {' / '.join(tail)}"))
                return rows
    what = "unchanged" if size == "full" else f"size {size}: --set {' '.join(sets)}"
    cold, warm = results
    rows.append(row(BENCH, "tumor_origin.yaml wall time: cold vs warm cache", cold["wall_s"], warm["wall_s"],
                    unit="s", ratio=cold["wall_s"] / warm["wall_s"],
                    note=f"recipe {what}; ratio = cold / warm"))
    rows.append(row(BENCH, "tumor_origin.yaml peak RSS: cold vs warm", cold["peak_rss_bytes"] / 2 ** 30,
                    warm["peak_rss_bytes"] / 2 ** 30, unit="GiB", note="ru_maxrss of the CLI process tree (wait4, through a small launcher)"))
    return rows


if __name__ == "__main__":
    import argparse

    from common import table

    ap = argparse.ArgumentParser()
    ap.add_argument("--quick", action="store_true")
    ap.add_argument("--full", action="store_true", help="run the recipe unchanged")
    ap.add_argument("--size", choices=["small", "reduced", "full"], default="small")
    ap.add_argument("--json", action="store_true", help="print rows as JSON (for run_all.py --rows / --merge)")
    a = ap.parse_args()
    rows = run(quick=a.quick, full=a.full, size=a.size)
    print(json.dumps(rows, indent=1, default=str) if a.json else table(rows, markdown=False))
