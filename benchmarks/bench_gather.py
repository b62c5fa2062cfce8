"""Benchmark 7: aggregation against the machine's random-row gather limit.

From the same memory-mapped store (4 modalities, float32, width 768), in one child process:

- gather limit: ``torch.index_select`` of the plan's rows (the same random rows, the same count)
  into a reused buffer with all torch threads, best of 3; no reduction, so it is an upper bound
  for any gather-and-sum;
- fusionkit: ``fusionkit.pool.aggregate`` (``sum``) of a modality-level plan (k = 3..10) with
  ``threads`` = the machine's cores, best of 3.

Both are reported as rows gathered per second; ratio = fusionkit / limit (target >= 0.9).
Peak memory beyond the output is the child's anonymous RSS growth.
"""

from __future__ import annotations

import contextlib
import sys
import time
from pathlib import Path
from typing import Any

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))

from common import main_for, row, run_child, skip, temp_dir  # noqa: E402

BENCH = "7 gather limit"
DIM = 768


def child(args: dict[str, Any]) -> dict[str, Any]:
    """Fresh process: the gather limit and fusionkit's aggregation on the same stores and rows."""
    import os

    import torch

    import fusionkit.plugins
    from bench_sampling import open_pool

    threads = os.cpu_count() or 1
    torch.set_num_threads(threads)
    system = fusionkit.plugins.load(env={})
    pool = open_pool(args["paths"])
    plan = system.create("sampler", "modality-level", {"k": "3..10", "n": args["n_per_k"]}).plan(
        pool, np.random.default_rng(0))
    aggregator = system.create("aggregator", "sum", {})
    from fusionkit.pool import aggregate

    sel = [(plan.item[plan.mod == mi]) for mi in range(len(plan.modalities))]
    rows = int(sum(len(s) for s in sel))
    with __import__("warnings").catch_warnings():
        __import__("warnings").simplefilter("ignore")
        stores = [torch.from_numpy(pool.views[m].embeddings) for m in plan.modalities]
    idx = [torch.from_numpy(s.astype(np.int64)) for s in sel]
    buf = torch.empty(max(len(s) for s in sel), DIM)

    def gather() -> None:
        for st, ix in zip(stores, idx):
            torch.index_select(st, 0, ix, out=buf[: len(ix)])

    def fk() -> None:
        aggregate(plan, pool, aggregator, chunk=args["chunk"], threads=threads)

    res: dict[str, Any] = {"rows": rows, "n_aggregates": int(plan.n), "threads": threads}
    gather(), fk()  # map the pages once (both read the same rows)
    out: dict[str, list[float]] = {"gather": [], "fusionkit": []}
    for _ in range(3):  # interleaved, best of 3 each
        for name, fn in (("gather", gather), ("fusionkit", fk)):
            t0 = time.perf_counter()
            fn()
            out[name].append(time.perf_counter() - t0)
    res["times"] = out
    return res


def run(quick: bool = False, tmp: Path | None = None) -> list[dict[str, Any]]:
    try:
        import torch  # noqa: F401

        from bench_sampling import make_stores
    except Exception as exc:  # noqa: BLE001
        return [skip(BENCH, "aggregation vs gather limit", f"torch or bench_sampling not importable ({exc})")]
    n_total = 100_000 if quick else 1_000_000
    n_per_k = 2_250 if quick else 11_250
    with (contextlib.nullcontext(Path(tmp)) if tmp else temp_dir(None, "gather")) as folder:
        paths = make_stores(folder, n_total)
        res = run_child("import bench_gather as B\nRESULT = B.child(ARGS)",
                        {"paths": {m: str(p) for m, p in paths.items()}, "n_per_k": n_per_k, "chunk": 2048})
    g, f = min(res["times"]["gather"]), min(res["times"]["fusionkit"])
    rows_n = res["rows"]
    gbs = rows_n * DIM * 4 / 1e9
    note = (f"{res['n_aggregates']:,} aggregates (k=3..10), {rows_n:,} random rows of a {n_total:,}x{DIM} f32 "
            f"memmap (4 modalities), {res['threads']} threads; best of 3, interleaved: gather {g:.3f} s "
            f"({gbs / g:.2f} GB/s), fusionkit aggregate(sum) {f:.3f} s ({gbs / f:.2f} GB/s read)")
    return [row(BENCH, "aggregation vs random-row gather limit [rows/s]", rows_n / f, rows_n / g,
                target=">= 0.9x gather limit", met=(g / f) >= 0.9, unit="rows/s", note=note),
            row(BENCH, "aggregates/s (all threads)", res["n_aggregates"] / f, None, unit="agg/s",
                note="same run")]


if __name__ == "__main__":
    main_for(run)
