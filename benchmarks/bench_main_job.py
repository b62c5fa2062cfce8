"""Benchmark 8: the main job, ``fusionkit run recipes/tumor_origin.yaml``, cold then warm.

Run 1 (cold): a fresh cache folder and output folder. Run 2 (warm): a fresh output folder,
the same cache (every unit reused). Each run is a subprocess; per-stage times come from its
``run.json`` (``timings_s``), peak RSS from ``wait4``'s ``ru_maxrss`` of the run, taken by
``common.run_cmd_measured``'s launcher (the largest single process, driver or worker; not
inflated by this benchmark process's own size), and per stage from
``run.json``'s ``memory`` block (peak RSS of the driver and of its largest worker process in each
stage; engine.MemoryMonitor). ``--quick`` (and run_all --quick) applies bench_e2e's small
``--set`` overrides; otherwise the recipe runs unchanged (the issue's "main job").
"""

from __future__ import annotations

import json
import os
import sys
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent))

from common import REPO, main_for, row, run_cmd_measured, skip, temp_dir  # noqa: E402

BENCH = "8 main job"
RECIPE = REPO / "recipes" / "tumor_origin.yaml"


def _one(folder: Path, tag: str, cache: Path, sets: list[str]) -> dict[str, Any]:
    out = folder / f"out-{tag}"
    cmd = [sys.executable, "-m", "fusionkit", "run", str(RECIPE), "--out", str(out), "--cache", str(cache),
           "--no-progress"] + [a for s in sets for a in ("--set", s)]
    env = {**os.environ, "HF_HUB_OFFLINE": "1"}
    res = run_cmd_measured(cmd, cwd=REPO, env=env, timeout=3600)
    run_json = out / "run.json"
    rec = json.loads(run_json.read_text()) if run_json.exists() else {}
    res["timings"] = rec.get("timings_s") or {}
    res["memory"] = rec.get("memory") or {}
    res["run_wall_s"] = rec.get("wall_s")
    return res


def _quick_sets() -> list[str]:
    """bench_e2e's small overrides (survival keeps the two repeats its CI needs)."""
    from bench_e2e import reduced_sets

    return reduced_sets(True)


def _gib(mib: Any) -> float | None:
    return None if mib is None else float(mib) / 1024


def run(quick: bool = False, tmp: Path | None = None) -> list[dict[str, Any]]:
    try:
        import fusionkit  # noqa: F401
    except Exception as exc:  # noqa: BLE001
        return [skip(BENCH, "main job", f"fusionkit not importable ({exc})")]
    sets = _quick_sets() if quick else []
    load = os.getloadavg()
    with temp_dir(tmp, "main-job") as folder:
        cold = _one(folder, "cold", folder / "cache", sets)
        load_end = os.getloadavg()
        warm = _one(folder, "warm", folder / "cache", sets) if cold["rc"] == 0 else None
    if cold["rc"] != 0:
        return [skip(BENCH, "main job", f"cold run failed (rc {cold['rc']}): {cold['output_tail'][-400:]}")]
    size = "small (bench_e2e --set overrides)" if quick else "unchanged recipe"
    note = (f"recipes/tumor_origin.yaml, {size}; load average at start {tuple(round(x, 1) for x in load)}, "
            f"at the end of the cold run {tuple(round(x, 1) for x in load_end)}")
    w_wall = warm["wall_s"] if warm and warm["rc"] == 0 else None
    rows = [row(BENCH, "wall time cold [s]", cold["wall_s"], None, target="<= 300 s", met=cold["wall_s"] <= 300,
                unit="s", note=note),
            row(BENCH, "wall time warm [s]", w_wall, None, target="<= 30 s",
                met=None if w_wall is None else w_wall <= 30, unit="s",
                note="same cache, fresh output folder" + ("" if warm is None or warm["rc"] == 0 else
                                                           f"; FAILED rc {warm['rc']}: {warm['output_tail'][-300:]}")),
            row(BENCH, "peak RSS cold / warm [GiB]", cold["peak_rss_bytes"] / 2 ** 30,
                None if warm is None else warm["peak_rss_bytes"] / 2 ** 30, target="<= 2 GiB",
                met=cold["peak_rss_bytes"] <= 2 * 2 ** 30, unit="GiB",
                note="ru_maxrss (wait4, through a small launcher) of the CLI process and its forked workers: "
                     "the largest single process")]
    mem = cold["memory"]
    if mem:
        stages = mem.get("stages") or {}
        top = max(stages, key=lambda k: max(stages[k].get("rss_mib", 0), stages[k].get("workers_rss_mib", 0)),
                  default=None)
        rows.append(row(BENCH, "peak RSS cold: driver / largest worker", _gib(mem.get("peak_rss_mib")),
                        _gib(mem.get("workers_peak_rss_mib")), ratio="", unit="GiB",
                        note=f"run.json memory; highest stage: {top}"))
        for stage, d in sorted(stages.items(), key=lambda kv: -max(kv[1].get("rss_mib", 0),
                                                                     kv[1].get("workers_rss_mib", 0))):
            rows.append(row(BENCH, f"stage {stage} peak RSS cold: driver / worker", d.get("rss_mib"),
                            d.get("workers_rss_mib") or None, ratio="", unit="MiB",
                            note=f"{d.get('workers', 0)} worker(s), together {d.get('workers_total_mib', 0):.0f} MiB "
                                 "(pages shared with the driver counted in each)" if d.get("workers") else
                            "driver only"))
    for stage, sec in sorted(cold["timings"].items(), key=lambda kv: -kv[1]):
        rows.append(row(BENCH, f"stage {stage} cold / warm [s]", sec,
                        None if warm is None else warm["timings"].get(stage), unit="s", note="run.json timings_s"))
    return rows


if __name__ == "__main__":
    main_for(run)
