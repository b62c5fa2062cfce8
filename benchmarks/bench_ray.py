"""Benchmark: scale-out on Ray (issue 7).

(a) Encoding + experiment repeats of one recipe run three ways with the same
    seed: ``local`` (in-process), ``ray`` with 1 worker and ``ray`` with 2
    workers (a local Ray instance, ``num_cpus=2``). Reports the speed-up
    1 -> 2 workers, whether stores and metrics are identical to the local run,
    and Ray's overhead per unit (no-op units, Ray vs in-process).
(b) Paper-scale dry run in a fresh process: 1 M synthetic tile embeddings
    (x 768, float32, memory-mapped store) plus RNA and text modalities, through
    sampling (modality-level, k = 3..10) and one recognizer-baseline repeat;
    peak RSS (VmHWM) and peak anonymous memory (RssAnon, polled) against a
    stated budget.

Run alone: ``python benchmarks/bench_ray.py [--quick] [--json]``.
"""

from __future__ import annotations

import json
import os
import sys
import time
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent))

import numpy as np  # noqa: E402

from common import main_for, row, run_child, skip, temp_dir  # noqa: E402

BENCH = "7 ray scale-out"
GiB = 2 ** 30
DRY_BUDGET_ANON = 2.0 * GiB  # peak anonymous memory of the 1 M-tile dry run
CANCERS = ("BRCA", "LUAD", "THCA", "KIRC")


# ----------------------------------------------------------------------------- workload (a)

def _busy_encoder_cls() -> type:
    from fusionkit.components import Encoder

    class BusyProjection(Encoder):
        """A CPU-bound stand-in for a model: ``rounds`` dense projections per shard."""

        modality = "any"
        input_kind = "embedding"
        shard_size = 400

        def __init__(self, dim: int = 64, rounds: int = 40):
            self.dim = dim
            self.rounds = rounds

        def encode(self, data: Any, ctx: Any = None) -> np.ndarray:
            X = np.asarray(data.data, dtype=np.float32)
            W = np.random.default_rng(3).normal(0, 1 / np.sqrt(X.shape[1]), (X.shape[1], 512)).astype(np.float32)
            V = np.random.default_rng(4).normal(0, 1 / np.sqrt(512), (512, self.dim)).astype(np.float32)
            Y = X
            for _ in range(self.rounds):
                Y = np.tanh(X @ W) @ V + Y[:, : self.dim] * 0.5 if Y.shape[1] == self.dim else np.tanh(X @ W) @ V
            return Y.astype(np.float32)

    return BusyProjection


def _system() -> Any:
    from fusionkit import hookimpl, plugins

    cls = _busy_encoder_cls()
    mod = type("BenchPlugin", (), {})()

    @hookimpl
    def register_encoders(register: Any) -> None:
        register("busy-projection", cls)

    mod.register_encoders = register_encoders
    return plugins.load(env={}, entry_points=[], extra=[("bench-ray", mod)])


def _write_inputs(folder: Path, sizes: dict[str, int], dim: int, n_patients: int) -> Path:
    import pandas as pd

    rng = np.random.default_rng(0)
    inputs = []
    for mi, (m, n) in enumerate(sizes.items()):
        pid = np.arange(n) % n_patients
        X = rng.normal(0, 1, (n, dim)).astype(np.float32)
        X[:, mi] += 3
        X[np.arange(n), 5 + pid % len(CANCERS)] += 2
        np.save(folder / f"{m}.npy", X)
        pd.DataFrame({"patient_id": [f"TCGA-BB-{p:05d}" for p in pid],
                      "cancer_type": [CANCERS[p % len(CANCERS)] for p in pid]}).to_csv(folder / f"{m}_ids.csv",
                                                                                       index=False)
        inputs.append(f"{m}: {{path: {m}.npy, ids: {m}_ids.csv}}")
    mods = "\n".join(f"  {m}: {{encoder: {{name: busy-projection, params: {{dim: {dim}}}}}}}" for m in sizes)
    text = f"""schema: 1
name: bench-ray
seed: 7
width: {dim}
data:
  reader: {{name: precomputed, params: {{inputs: {{{', '.join(inputs)}}}}}}}
modalities:
{mods}
sampling:
  mix: {{name: modality-level, params: {{k: "3..6", n: 2000}}}}
aggregator: sum
output: {{save_aggregates: false}}
tasks:
  rec: {{name: recognizer-baseline, params: {{sampling: mix, k: [3, 6], n_per_k: 600, repeats: REPEATS,
         max_iter: 200}}}}
"""
    path = folder / "recipe.yaml"
    path.write_text(text)
    return path


def _stores_digest(out: Path) -> dict[str, str]:
    import hashlib

    from fusionkit.store import EmbeddingStore

    res = {}
    for d in sorted((out / "cache" / "stores").iterdir()):
        s = EmbeddingStore(d)
        h = hashlib.sha256(np.ascontiguousarray(s.embeddings).tobytes())
        for k in sorted(s.items):
            h.update(k.encode())
            h.update("\n".join(map(str, s.items[k])).encode())
        res[s.modality] = h.hexdigest()[:16]
    return res


def _metrics(out: Path) -> Any:
    def strip(x: Any) -> Any:  # timings and reuse counts legitimately differ between runs
        if isinstance(x, dict):
            return {k: strip(v) for k, v in x.items()
                    if not (k in ("reused", "timings", "run_id") or k.endswith(("wall_s", "time_s")))}
        if isinstance(x, list):
            return [strip(v) for v in x]
        return x

    return strip(json.loads((out / "metrics.json").read_text()))


def _noop(i: int) -> dict[str, int]:
    return {"i": i}


def run_scaleout(folder: Path, quick: bool) -> dict[str, Any]:
    import ray

    from fusionkit import engine
    from fusionkit.executors import LocalExecutor, Unit, UnitCache, run_units
    from fusionkit.ray_executor import RayExecutor
    from fusionkit.recipe import load_recipe

    ray.cloudpickle.register_pickle_by_value(sys.modules[__name__])
    sizes = {"rna": 1600, "text": 3200, "tiles": 3200} if quick else {"rna": 3200, "text": 6400, "tiles": 6400}
    repeats = 2 if quick else 4
    path = _write_inputs(folder, sizes, 64, 400)
    path.write_text(path.read_text().replace("REPEATS", str(repeats)))
    system = _system()
    started = time.perf_counter()
    ray.init(num_cpus=2, include_dashboard=False, ignore_reinit_error=True, log_to_driver=False,
             object_store_memory=128 * 2 ** 20)
    init_s = time.perf_counter() - started
    res: dict[str, Any] = {"init_s": init_s, "repeats": repeats, "items": sum(sizes.values()),
                           "shards": sum(-(-n // 400) for n in sizes.values())}
    try:
        # warm the worker processes (imports) so the comparison is about the work
        list(RayExecutor(workers=2).map([Unit(f"w{i}", _noop, (i,)) for i in range(4)]))
        for label, overrides in (("local", []),
                                 ("ray1", ["executor.name=ray", "executor.params.workers=1"]),
                                 ("ray2", ["executor.name=ray", "executor.params.workers=2"])):
            rec = load_recipe(path, system, overrides)
            out = folder / label
            t0 = time.perf_counter()
            record = engine.run(rec, system, out_dir=out, progress=False)
            res[label] = {"wall_s": time.perf_counter() - t0, "timings": record["timings_s"],
                          "stores": _stores_digest(out), "metrics": _metrics(out)}
        n = 40 if quick else 100
        units = [Unit(f"n{i}", _noop, (i,)) for i in range(n)]
        t0 = time.perf_counter()
        run_units(units, UnitCache(folder / "noop-local"), LocalExecutor(1))
        res["noop_local_s"] = time.perf_counter() - t0
        ex = RayExecutor(workers=1)  # serial, so the difference is overhead, not parallelism
        t0 = time.perf_counter()
        run_units(units, UnitCache(folder / "noop-ray"), ex)
        res["noop_ray_s"] = time.perf_counter() - t0
        res["noop_n"] = n
        res["noop_latency_ms"] = float(np.median([s for _, s in ex.last_timings]) * 1000)
    finally:
        ray.shutdown()
    return res


# ----------------------------------------------------------------------------- dry run (b)

def child_make_stores(args: dict[str, Any]) -> dict[str, Any]:
    """Write the dry run's stores chunk by chunk (StoreWriter memmap)."""
    from fusionkit.store import StoreWriter

    rng = np.random.default_rng(1)
    out = {}
    n_pat = args["patients"]
    for m, n in args["sizes"].items():
        w = StoreWriter(Path(args["folder"]) / m, n, args["dim"])
        step = 65536
        for s in range(0, n, step):
            e = min(n, s + step)
            X = rng.standard_normal((e - s, args["dim"]), dtype=np.float32)
            pid = np.arange(s, e) % n_pat
            X[np.arange(e - s), pid % 16] += 2.0
            w.embeddings[s:e] = X
        pid = np.arange(n) % n_pat
        w.commit({"patient_id": np.char.add("TCGA-CC-", np.char.zfill(pid.astype(str), 5)),
                  "item_id": np.char.add(f"{m}:", np.arange(n).astype(str)),
                  "cancer_type": np.asarray(CANCERS)[pid % len(CANCERS)]},
                 modality=m, provenance={"cache_key": f"dry-{m}-{n}"})
        out[m] = str(Path(args["folder"]) / m)
    return out


def child_dry_run(args: dict[str, Any]) -> dict[str, Any]:
    """Sampling + one recognizer-baseline repeat over memory-mapped stores; polls RssAnon."""
    import threading

    from common import proc_status

    peak = {"anon": 0}
    stop = threading.Event()

    def poll() -> None:
        while not stop.is_set():
            peak["anon"] = max(peak["anon"], proc_status().get("RssAnon", 0))
            time.sleep(0.02)

    threading.Thread(target=poll, daemon=True).start()
    from fusionkit import engine, plugins
    from fusionkit.pool import EmbeddingPool
    from fusionkit.recipe import load_recipe
    from fusionkit.store import EmbeddingStore

    before = proc_status()
    system = plugins.load(env={})
    rec = load_recipe(args["recipe"], system)
    stores = {m: EmbeddingStore(p) for m, p in args["stores"].items()}
    pool = EmbeddingPool.from_stores(stores, {})
    ctx = engine.RunContext(rec, system, Path(args["out"]), Path(args["out"]) / "cache", progress=False)
    ctx.pool = pool
    t0 = time.perf_counter()
    agg = ctx.sample("mix", seed_keys=("dry",))
    sample_s = time.perf_counter() - t0
    n_agg = int(len(agg.X))
    del agg
    t0 = time.perf_counter()
    ctx.task_name = "rec"
    result = ctx.build(rec.tasks["rec"]).run(ctx)
    task_s = time.perf_counter() - t0
    stop.set()
    after = proc_status()
    return {"before": before, "after": after, "peak_anon": max(peak["anon"], after.get("RssAnon", 0)),
            "sample_s": sample_s, "task_s": task_s, "n_aggregates": n_agg,
            "result_keys": sorted(result or {})}


def run_dry(folder: Path, quick: bool) -> dict[str, Any]:
    n_tiles = 200_000 if quick else 1_000_000
    sizes = {"tiles": n_tiles, "rna": 10_000, "text": 200_000 if not quick else 40_000}
    t0 = time.perf_counter()
    stores = run_child("import bench_ray as B\nRESULT = B.child_make_stores(ARGS)",
                       {"folder": str(folder / "stores"), "sizes": sizes, "dim": 768, "patients": 10_000})
    stores.pop("child_wall_s", None)
    stores.pop("ru_maxrss_children_bytes", None)
    gen_s = time.perf_counter() - t0
    recipe = folder / "dry.yaml"
    recipe.write_text(f"""schema: 1
name: dry-run
seed: 3
width: 768
data:
  reader: {{name: precomputed, params: {{inputs: {{tiles: {{path: unused.npy}}}}}}}}
modalities:
  tiles: {{encoder: identity}}
sampling:
  mix: {{name: modality-level, params: {{k: "3..10", n: {8000 if quick else 30000}}}}}
aggregator: sum
tasks:
  rec: {{name: recognizer-baseline, params: {{sampling: mix, k: [3, 10], n_per_k: {1000 if quick else 4000},
         repeats: 1, max_iter: 100}}}}
""")
    res = run_child("import bench_ray as B\nRESULT = B.child_dry_run(ARGS)",
                    {"recipe": str(recipe), "stores": stores, "out": str(folder / "dry-out")})
    res["gen_s"] = gen_s
    res["sizes"] = sizes
    res["store_bytes"] = sum(n * 768 * 4 for n in sizes.values())
    return res


# ----------------------------------------------------------------------------- rows

def run(quick: bool = False, tmp: Path | None = None) -> list[dict[str, Any]]:
    try:
        import ray  # noqa: F401

        import fusionkit.ray_executor  # noqa: F401
    except Exception as exc:  # noqa: BLE001
        return [skip(BENCH, "speed-up 1 -> 2 workers", f"ray not installed ({exc}); pip install 'fusionkit[ray]'")]
    rows: list[dict[str, Any]] = []
    with temp_dir(tmp, "ray") as folder:
        try:
            # BLAS / OpenMP single-threaded in the driver too (Ray workers are): same arithmetic, and a
            # fair 1-core baseline on a shared host
            threads = {k: "1" for k in ("OMP_NUM_THREADS", "OPENBLAS_NUM_THREADS", "MKL_NUM_THREADS")}
            saved = {k: os.environ.get(k) for k in threads}
            os.environ.update(threads)
            try:
                s = run_child("import bench_ray as B\nfrom pathlib import Path\n"
                              "RESULT = B.run_scaleout(Path(ARGS['folder']), ARGS['quick'])",
                              {"folder": str(folder), "quick": quick})
            finally:
                for k, v in saved.items():
                    if v is None:
                        os.environ.pop(k, None)
                    else:
                        os.environ[k] = v
        except Exception as exc:  # noqa: BLE001
            rows.append(skip(BENCH, "speed-up 1 -> 2 workers", f"{type(exc).__name__}: {str(exc)[-300:]}"))
        else:
            r1, r2, lo = s["ray1"]["wall_s"], s["ray2"]["wall_s"], s["local"]["wall_s"]
            cores = os.cpu_count()
            where = (f"{s['items']:,} items in {s['shards']} encoding shards + {s['repeats']} recognizer-baseline "
                     f"repeats (x2 k) per run; local Ray num_cpus=2 on a {cores}-core host shared with other jobs")
            rows.append(row(BENCH, "speed-up 1 -> 2 workers (encode + repeats)", r1 / r2, None, ratio=r1 / r2,
                            target=">= 1.5x", met=r1 / r2 >= 1.5, unit="x",
                            note=f"{where}; wall 1 worker {r1:.2f} s, 2 workers {r2:.2f} s, local in-process "
                                 f"{lo:.2f} s; encode {s['ray1']['timings'].get('encode:tiles', 0):.2f} -> "
                                 f"{s['ray2']['timings'].get('encode:tiles', 0):.2f} s (tiles)"))
            rows.append(row(BENCH, "Ray 2 workers wall vs local in-process", r2, lo, target="", unit="s",
                            note="baseline = executor local, workers=1"))
            same = all(s[k]["stores"] == s["local"]["stores"] for k in ("ray1", "ray2"))
            same_m = all(s[k]["metrics"] == s["local"]["metrics"] for k in ("ray1", "ray2"))
            if not (same and same_m):
                diff = [k for k in ("ray1", "ray2") if s[k]["stores"] != s["local"]["stores"]
                        or s[k]["metrics"] != s["local"]["metrics"]]
                ray_same = s["ray1"]["stores"] == s["ray2"]["stores"] and s["ray1"]["metrics"] == s["ray2"]["metrics"]
                rows.append(row(BENCH, "differences", ", ".join(diff), None,
                                note=f"ray1 vs ray2 {'identical' if ray_same else 'differ'}"))
            rows.append(row(BENCH, "stores and metrics identical to local (same seed)", same and same_m, True,
                            target="identical", met=same and same_m,
                            note=f"stores {'identical' if same else 'DIFFER'}, metrics "
                                 f"{'identical' if same_m else 'DIFFER'} (sha256 of embeddings+items; "
                                 f"metrics.json without wall times)"))
            per_unit = (s["noop_ray_s"] - s["noop_local_s"]) / s["noop_n"] * 1000
            rows.append(row(BENCH, "Ray overhead per unit", per_unit, None, target="<= 50 ms", met=per_unit <= 50,
                            unit="ms", note=f"{s['noop_n']} no-op units through run_units (pickle, submit, wait, "
                                            f"cache write), 1 worker (serial), minus in-process; median submit->result "
                                            f"latency {s['noop_latency_ms']:.1f} ms; ray.init {s['init_s']:.1f} s "
                                            f"once per run"))
        try:
            d = run_dry(folder, quick)
        except Exception as exc:  # noqa: BLE001
            rows.append(skip(BENCH, "dry run peak RSS", f"{type(exc).__name__}: {str(exc)[-300:]}"))
        else:
            n_tiles = d["sizes"]["tiles"]
            hwm = d["after"].get("VmHWM", 0)
            anon = d["peak_anon"]
            rows.append(row(BENCH, f"dry run {n_tiles:,} tiles: peak anonymous memory", anon / GiB,
                            DRY_BUDGET_ANON / GiB, target=f"<= {DRY_BUDGET_ANON / GiB:.1f} GiB",
                            met=anon <= DRY_BUDGET_ANON, unit="GiB",
                            note=f"stores {d['store_bytes'] / GiB:.2f} GiB on disk (tiles {n_tiles:,}, text "
                                 f"{d['sizes']['text']:,}, rna {d['sizes']['rna']:,} x 768 f32, memory-mapped); "
                                 f"peak RSS (VmHWM, includes page-cache pages of the memmaps) {hwm / GiB:.2f} GiB; "
                                 f"sampling {d['n_aggregates']:,} aggregates {d['sample_s']:.1f} s, one "
                                 f"recognizer-baseline repeat {d['task_s']:.1f} s; store generation {d['gen_s']:.0f} s"))
            rows.append(row(BENCH, f"dry run {n_tiles:,} tiles: peak RSS (VmHWM)", hwm / GiB,
                            d["store_bytes"] / GiB, unit="GiB", target="", met=None,
                            note="report only: VmHWM counts the page-cache pages of the memory-mapped stores "
                                 "that sampling touched (reclaimable); baseline = size of the stores"))
    return rows


if __name__ == "__main__":
    main_for(run)
