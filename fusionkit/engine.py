"""Orchestration: runs a recipe stage by stage: read -> encode (cached) -> pool ->
sample/perturb/aggregate -> tasks -> report.

Everything a run decides is written next to its outputs: the resolved recipe,
plugin versions, the seed and input fingerprints (``run.json``).
"""

from __future__ import annotations

import datetime as _dt
import hashlib
import json
import logging
import os
import platform
import sys
import time
from pathlib import Path
from typing import Any, Callable, Iterable

import numpy as np

from . import __version__
from .components import ModalityData, RawDataset
from .context import RunContext, derive_seed, safe_name  # noqa: F401 (derive_seed re-exported)
from .encode import encode_modality
from .errors import DataError, FusionkitError
from .executors import make_executor
from .pool import EmbeddingPool, save_aggregates
from .recipe import Recipe, Spec
from .store import atomic_write_json, atomic_write_text, file_fingerprint, stable_hash

log = logging.getLogger("fusionkit")

# ----------------------------------------------------------------------------- stages

def read_inputs(recipe: Recipe, ctx: RunContext) -> tuple[dict[str, ModalityData], dict[str, dict[str, Any]],
                                                            list[str], dict[str, Any]]:
    """Run every distinct reader once; return modalities, merged labels, notes, fingerprints."""
    cache: dict[str, tuple[RawDataset, str]] = {}
    fingerprints: dict[str, Any] = {}
    notes: list[str] = []

    def read(spec: Spec) -> tuple[RawDataset, str]:
        key = stable_hash(spec.key())
        if key not in cache:
            reader = ctx.build(spec)
            files = {}
            for p in reader.fingerprint_inputs() or []:
                try:
                    files[str(p)] = file_fingerprint(p)
                except FusionkitError as err:
                    raise DataError(f"input file missing: {p}", where=f"{spec.where}.params",
                                    hint="check the path (relative paths resolve against the recipe file)") from err
            t0 = time.perf_counter()
            ds = reader.read(ctx)
            if not isinstance(ds, RawDataset):
                raise DataError(f"reader {spec.name!r} returned {type(ds).__name__}, expected RawDataset",
                                where=spec.where)
            ctx.timings[f"read:{spec.name}"] = time.perf_counter() - t0
            fp = stable_hash({"spec": spec.key(), "files": files})
            fingerprints[f"{spec.where} ({spec.name})"] = {"fingerprint": fp, "files": files}
            notes.extend(f"{spec.name}: {n}" for n in ds.notes)
            cache[key] = (ds, fp)
        return cache[key]

    modalities: dict[str, ModalityData] = {}
    labels: dict[str, dict[str, Any]] = {}
    for name, mspec in recipe.modalities.items():
        ds, fp = read(mspec.reader)
        if mspec.input not in ds.modalities:
            raise DataError(f"reader {mspec.reader.name!r} produced no modality {mspec.input!r}",
                            where=f"modalities.{name}.input",
                            hint=f"it produced: {', '.join(ds.modalities) or '(none)'}")
        data = ds.modalities[mspec.input]
        if len(data) == 0:
            raise DataError(f"modality {name!r} is empty: reader {mspec.reader.name!r} found no item",
                            where=f"modalities.{name}", hint="check the reader's paths and filters, "
                                                              "or disable the modality (enabled: false)")
        data.fingerprint = stable_hash([fp, mspec.input, data.fingerprint])
        modalities[name] = data
        _merge_labels(labels, ds.labels)
    for spec in recipe.labels:
        ds, _ = read(spec)
        _merge_labels(labels, ds.labels)
    # item labels (e.g. cancer_type per item) also count as patient labels where missing
    for data in modalities.values():
        for lname, values in data.labels.items():
            table = labels.setdefault(lname, {})
            for pid, v in zip(data.patient_ids, values):
                table.setdefault(str(pid), v)
    return modalities, labels, notes, fingerprints


def _merge_labels(into: dict[str, dict[str, Any]], new: dict[str, dict[str, Any]]) -> None:
    for lname, table in new.items():
        target = into.setdefault(lname, {})
        for pid, value in table.items():
            target.setdefault(str(pid), value)


def plugin_versions(system: Any) -> list[dict[str, Any]]:
    return [r.as_dict() for r in system.records]


def build_pool(recipe: Recipe, ctx: RunContext) -> tuple[EmbeddingPool, dict[str, Any]]:
    modalities, labels, notes, fingerprints = read_inputs(recipe, ctx)
    stores = {name: encode_modality(name, data, recipe, ctx) for name, data in modalities.items()}
    pool = EmbeddingPool.from_stores(stores, labels)
    info = {"notes": notes, "fingerprints": fingerprints,
            "stores": {name: str(s.path) for name, s in stores.items()}}
    return pool, info


def run(recipe: Recipe, system: Any, *, out_dir: str | os.PathLike[str] | None = None,
        cache_dir: str | os.PathLike[str] | None = None, progress: bool | None = None,
        tasks: list[str] | None = None) -> dict[str, Any]:
    """Run a validated recipe; returns the run record (also written to run.json)."""
    t_start = time.perf_counter()
    out = Path(out_dir or recipe.output["dir"]).resolve()
    cache = Path(cache_dir or recipe.output.get("cache") or os.environ.get("FUSIONKIT_CACHE") or out / "cache")
    out.mkdir(parents=True, exist_ok=True)
    executor = make_executor(recipe.executor["name"], **recipe.executor.get("params", {}))
    ctx = RunContext(recipe, system, out, cache.resolve(), progress=progress, executor=executor)
    atomic_write_text(out / "resolved_recipe.yaml", recipe.to_yaml())
    record: dict[str, Any] = {
        "fusionkit": __version__, "recipe": str(recipe.path) if recipe.path else None, "name": recipe.name,
        "seed": recipe.seed, "started": _dt.datetime.now(_dt.timezone.utc).isoformat(),
        "python": sys.version.split()[0], "platform": platform.platform(), "cache": str(ctx.cache_dir),
        "plugins": plugin_versions(system), "status": "running",
    }
    atomic_write_json(out / "run.json", record)
    pool, info = build_pool(recipe, ctx)
    ctx.pool = pool
    record["inputs"] = info["fingerprints"]
    record["stores"] = info["stores"]
    summary = pool.summary()
    summary["notes"] = info["notes"]
    summary["labels"] = {name: _value_counts(table) for name, table in pool.labels.items()
                         if name not in ("tmb",)}
    ctx.write_json("data_summary.json", summary)
    ctx.write_json("labels.json", pool.labels)  # patient label tables: `fusionkit export` carries them
    if recipe.output.get("save_aggregates", True):
        for name in recipe.sampling:
            t0 = time.perf_counter()
            agg = ctx.sample(name, seed_keys=("dataset", name))
            save_aggregates(out / "aggregates" / safe_name(name), agg)
            ctx.timings[f"aggregate:{name}"] = time.perf_counter() - t0
    metrics: dict[str, Any] = {}
    metrics_path = out / "metrics.json"
    if metrics_path.exists():
        try:
            metrics = json.loads(metrics_path.read_text())
        except json.JSONDecodeError:
            metrics = {}
    for tname, spec in recipe.tasks.items():
        if tasks is not None and tname not in tasks:
            continue
        t0 = time.perf_counter()
        task = ctx.build(spec)
        ctx.task_name = tname
        log.info("task %s (%s)", tname, spec.name)
        result = task.run(ctx)
        metrics[tname] = {"task": spec.name, "params": spec.to_dict()["params"], **(result or {})}
        atomic_write_json(metrics_path, metrics)  # after each task: nothing finished is lost
        ctx.timings[f"task:{tname}"] = time.perf_counter() - t0
    ctx.task_name = None
    if recipe.tasks:
        _write_report(ctx, metrics, summary)
    record.update({"status": "finished", "finished": _dt.datetime.now(_dt.timezone.utc).isoformat(),
                   "timings_s": {k: round(v, 3) for k, v in ctx.timings.items()},
                   "wall_s": round(time.perf_counter() - t_start, 3)})
    atomic_write_json(out / "run.json", record)
    return record


def _value_counts(table: dict[str, Any]) -> dict[str, int]:
    counts: dict[str, int] = {}
    for v in table.values():
        counts[str(v)] = counts.get(str(v), 0) + 1
    return dict(sorted(counts.items(), key=lambda kv: -kv[1])[:50])


def _write_report(ctx: RunContext, metrics: dict[str, Any], summary: dict[str, Any]) -> None:
    try:
        from .report import write_report
    except ImportError:
        return
    write_report(ctx, metrics, summary)
