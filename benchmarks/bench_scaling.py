"""Benchmark 6: scaling with the number of stored embeddings (10^4, 10^5, 10^6).

For each store size N (4 modalities of N/4 rows, dim 768, memory-mapped) a
fresh child process (1) plans and aggregates a fixed 90,000 aggregates
(k = 3..10; 18,000 with --quick) with the modality-level sampler + sum and
(2) trains the task's ``DeepRecognizer`` for one epoch on N/10 aggregates
(k = 5). Reported: time and peak memory (VmHWM of the child; it includes the
memmap's file-backed pages) and the peak anonymous memory estimate. Writes
``benchmarks/scaling.png`` (log-log).
"""

from __future__ import annotations

import contextlib
import sys
import time
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent))

import numpy as np  # noqa: E402

from common import HERE, main_for, proc_status, row, run_child, skip, temp_dir  # noqa: E402

BENCH = "6 scaling"


def child(args: dict[str, Any]) -> dict[str, Any]:
    import fusionkit.plugins
    from fusionkit.pool import aggregate

    import bench_sampling as S
    import bench_training as T

    res: dict[str, Any] = {"status0": proc_status()}
    system = fusionkit.plugins.load(env={})
    pool = S.open_pool(args["paths"])
    agg = system.create("aggregator", "sum", {})
    sampler = system.create("sampler", "modality-level", {"k": "3..10", "n": args["n_per_k"]})
    t0 = time.perf_counter()
    plan = sampler.plan(pool, np.random.default_rng(0))
    out = aggregate(plan, pool, agg, chunk=2048)
    res["sampling_s"] = time.perf_counter() - t0
    res["n_aggregates"] = int(plan.n)
    res["status_sampling"] = proc_status()
    del out, plan
    n_train = args["n_train"]
    sampler = system.create("sampler", "modality-level", {"k": 5, "n": n_train})
    plan = sampler.plan(pool, np.random.default_rng(1))
    data = aggregate(plan, pool, agg, chunk=8192)
    P, C = data.presence.astype(np.float32), data.counts.astype(np.float32)
    model = T.deep_model(system, P.shape[1], 0, max_epochs=1)
    nv = max(2, n_train // 10)
    t0 = time.perf_counter()
    model.fit(data.X[nv:], P[nv:], C[nv:], data.X[:nv], P[:nv], C[:nv])
    res["epoch_s"] = time.perf_counter() - t0
    res["n_train"] = int(n_train - nv)
    res["status_end"] = proc_status()
    return res


def plot(results: list[dict[str, Any]], path: Path) -> Path | None:
    try:
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
    except Exception:  # noqa: BLE001
        return None
    N = [r["N"] for r in results]
    fig, axes = plt.subplots(1, 2, figsize=(10, 4))
    axes[0].loglog(N, [r["sampling_s"] for r in results], "o-", label="sampling+aggregation (fixed #aggregates)")
    axes[0].loglog(N, [r["epoch_s"] for r in results], "s-", label="recognizer epoch (N/10 aggregates)")
    axes[0].set_xlabel("stored embeddings N")
    axes[0].set_ylabel("seconds")
    axes[0].legend(fontsize=8)
    axes[1].loglog(N, [r["peak_sampling_mib"] for r in results], "o-", label="peak RSS after sampling (VmHWM)")
    axes[1].loglog(N, [r["peak_end_mib"] for r in results], "s-", label="peak RSS after recognizer epoch")
    axes[1].loglog(N, [r["anon_sampling_mib"] for r in results], "^--", label="anonymous RSS after sampling")
    axes[1].set_xlabel("stored embeddings N")
    axes[1].set_ylabel("MiB")
    axes[1].legend(fontsize=8)
    fig.suptitle("fusionkit scaling (dim 768, memory-mapped stores)")
    fig.tight_layout()
    fig.savefig(path, dpi=100)
    plt.close(fig)
    return path


def run(quick: bool = False, tmp: Path | None = None) -> list[dict[str, Any]]:
    try:
        import bench_sampling as S
        import bench_training as T  # noqa: F401

        import fusionkit.plugins  # noqa: F401
        from fusionkit_plugins.tasks.recognizer.models import DeepRecognizer  # noqa: F401
    except Exception as exc:  # noqa: BLE001
        return [skip(BENCH, "scaling", f"component missing ({exc})")]
    sizes = [10_000, 100_000] if quick else [10_000, 100_000, 1_000_000]
    n_per_k = 2_250 if quick else 11_250
    results = []
    with (contextlib.nullcontext(Path(tmp)) if tmp else temp_dir(None, "scaling")) as folder:
        for N in sizes:
            paths = S.make_stores(folder, N)
            r = run_child("import bench_scaling as B\nRESULT = B.child(ARGS)",
                          {"paths": {m: str(p) for m, p in paths.items()}, "n_per_k": n_per_k,
                           "n_train": max(1000, N // 10)})
            r["N"] = N
            r["peak_sampling_mib"] = r["status_sampling"].get("VmHWM", 0) / 2 ** 20
            r["anon_sampling_mib"] = r["status_sampling"].get("RssAnon", 0) / 2 ** 20
            r["peak_end_mib"] = r["status_end"].get("VmHWM", 0) / 2 ** 20
            results.append(r)
    png = plot(results, HERE / "scaling.png")
    rows = []
    for r in results:
        rows.append(row(BENCH, f"N={r['N']:,}: sampling+aggregation", r["sampling_s"], None, unit="s",
                        note=f"{r['n_aggregates']:,} aggregates k=3..10; peak RSS {r['peak_sampling_mib']:.0f} MiB "
                             f"(anon {r['anon_sampling_mib']:.0f} MiB, rest = memmap page cache)"))
        rows.append(row(BENCH, f"N={r['N']:,}: recognizer epoch", r["epoch_s"], None, unit="s",
                        note=f"{r['n_train']:,} training aggregates, 1 epoch + validation; "
                             f"{r['n_train'] / r['epoch_s']:,.0f} samples/s; peak RSS {r['peak_end_mib']:.0f} MiB"))
    if png:
        rows.append(row(BENCH, "plot", str(png.relative_to(HERE.parent)), None, note="log-log"))
    return rows


if __name__ == "__main__":
    main_for(run)
