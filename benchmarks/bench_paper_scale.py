"""Benchmark 7: the paper-scale recognizer study (recipes/paper_scale.yaml), batched vs one model at a time.

Both runs share one encoder cache and differ only in the recognizer's ``batched``
parameter; the row compares the task's own wall time (``summary.wall_s`` in
metrics.json, encoding excluded) in the same benchmark run. By default the study
runs with ``n_repeats`` = 2 (``--quick``: 1 repeat, 3,000 aggregates per k) and the
full study's time is extrapolated linearly in repeats (units are per repeat);
``run(full=True)`` runs the recipe unchanged (30 repeats).
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

BENCH = "7 paper-scale recognizer"
RECIPE = REPO / "recipes" / "paper_scale.yaml"
FULL_REPEATS = 30


def _study(exe: str, out: Path, cache: Path, sets: list[str], batched: bool, timeout: float) -> dict[str, Any]:
    args = [a for s in sets + [f"tasks.recognizer.params.batched={str(batched).lower()}"] for a in ("--set", s)]
    res = run_cmd_measured([exe, "run", str(RECIPE), "--out", str(out), "--cache", str(cache), "--no-progress",
                            "--task", "recognizer", *args], env=dict(os.environ, HF_HUB_OFFLINE="1"),
                           timeout=timeout)
    if res["rc"] != 0:
        raise RuntimeError(f"fusionkit run failed (rc {res['rc']}): {res['output_tail'][-800:]}")
    summary = json.loads((out / "metrics.json").read_text())["recognizer"]["summary"]
    return {"wall_s": float(summary["wall_s"]), "peak_rss": res["peak_rss_bytes"], "mcc": summary["mean_mcc"]}


def run(quick: bool = False, tmp: Path | None = None, full: bool = False, timeout: float = 3600
        ) -> list[dict[str, Any]]:
    exe = shutil.which("fusionkit") or str(Path(sys.executable).parent / "fusionkit")
    if not RECIPE.exists() or not Path(exe).exists():
        return [skip(BENCH, "study wall time", "recipes/paper_scale.yaml or the fusionkit CLI is missing")]
    repeats = FULL_REPEATS if full else (1 if quick else 2)
    sets = [f"tasks.recognizer.params.n_repeats={repeats}"]
    if quick:
        sets += ["tasks.recognizer.params.n_per_k=3000", "sampling.modality_level.params.n=3000"]
    with temp_dir(tmp, "paper-scale") as d:
        cache = d / "cache"
        bat = _study(exe, d / "batched", cache, sets, True, timeout)
        seq = _study(exe, d / "sequential", cache, sets, False, timeout)
    scale = FULL_REPEATS / repeats
    note = (f"{repeats} repeat(s){' x 3,000 aggregates per k' if quick else ''}; task wall time, encoders "
            f"cached; load {os.getloadavg()[0]:.1f}")
    est = bat["wall_s"] * scale
    return [
        row(BENCH, "study wall time, batched vs one at a time", bat["wall_s"], seq["wall_s"], unit="s",
            ratio=seq["wall_s"] / bat["wall_s"] if bat["wall_s"] else None, target="measured (speed-up)",
            note=note),
        row(BENCH, "full study (30 repeats), batched", est, seq["wall_s"] * scale, unit="s",
            target="<= 900 s", met=(est <= 900) if not quick else None,
            note=("measured" if full else f"extrapolated x{scale:g} from {repeats} repeat(s)")
            + f"; peak RSS {bat['peak_rss'] / 2**30:.2f} GiB"),
    ]


if __name__ == "__main__":
    main_for(run)
