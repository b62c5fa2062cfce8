"""Orchestration: runs a recipe stage by stage: read -> encode (cached) -> pool ->
sample/perturb/aggregate -> tasks -> report.

Everything a run decides is written next to its outputs: the resolved recipe,
plugin versions, the seed and input fingerprints (``run.json``).
"""

from __future__ import annotations

import datetime as _dt
import json
import logging
import os
import platform
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from . import __version__, fingerprint
from . import health as _health
from . import progress as _progress
from .components import ModalityData, RawDataset
from .context import RunContext, derive_seed, safe_name  # noqa: F401 (derive_seed re-exported)
from .encode import encode_modality
from .errors import DataError, FusionkitError
from .executors import blas_threads, make_executor
from .ids import cross_modality_report, merge_label_tables, normalise_id, normalise_ids
from .pool import EmbeddingPool, save_aggregates
from .recipe import Recipe, Spec
from .runstate import checkpoint, run_transaction
from .store import atomic_write_json, atomic_write_text, stable_hash

if TYPE_CHECKING:  # type checkers only
    from .plugins import PluginSystem

log = logging.getLogger("fusionkit")

# ----------------------------------------------------------------------------- stages


@dataclass
class Inputs:
    """What the readers of a run produced: modalities, merged patient labels and more."""

    modalities: dict[str, ModalityData] = field(default_factory=dict)
    labels: dict[str, dict[str, Any]] = field(default_factory=dict)
    #: labels that are measurements, not classes (declared by readers or the recipe, or all floats)
    continuous: set[str] = field(default_factory=set)
    notes: list[str] = field(default_factory=list)
    #: per reader entry: its fingerprint and the fingerprints of its input files
    fingerprints: dict[str, Any] = field(default_factory=dict)
    #: per modality: what id normalisation changed, duplicates, patients in no other modality
    ids: dict[str, Any] = field(default_factory=dict)


class _Readers:
    """Runs every distinct reader spec once per run, recording fingerprints and notes."""

    def __init__(self, ctx: RunContext, inputs: Inputs):
        self.ctx, self.inputs = ctx, inputs
        self._done: dict[str, tuple[RawDataset, str]] = {}

    def read(self, spec: Spec) -> tuple[RawDataset, str]:
        key = stable_hash(spec.key())
        if key not in self._done:
            self._done[key] = self._read(spec)
        return self._done[key]

    def _read(self, spec: Spec) -> tuple[RawDataset, str]:
        reader = self.ctx.build(spec)
        files = {}
        for p in reader.fingerprint_inputs() or []:
            try:
                files[str(p)] = fingerprint.file_fingerprint(p)
            except FusionkitError as err:
                raise DataError(f"input file missing: {p}", where=f"{spec.where}.params",
                                hint="check the path (relative paths resolve against the recipe file)") from err
        t0 = time.perf_counter()
        try:
            ds = reader.read(self.ctx)
        except (FusionkitError, MemoryError, OSError):
            raise
        except Exception as exc:  # a reader's bug or an unreadable file it did not expect
            raise DataError(f"reader {spec.name!r} failed: {type(exc).__name__}: {exc}", where=spec.where,
                            hint="check the reader's input files; run with -vv for the traceback") from exc
        if not isinstance(ds, RawDataset):
            raise DataError(f"reader {spec.name!r} returned {type(ds).__name__}, expected RawDataset",
                            where=spec.where)
        self.ctx.timings[f"read:{spec.name}"] = time.perf_counter() - t0
        fp = stable_hash({"spec": spec.key(), "files": files})
        self.inputs.fingerprints[f"{spec.where} ({spec.name})"] = {"fingerprint": fp, "files": files}
        self.inputs.notes.extend(f"{spec.name}: {n}" for n in ds.notes)
        self.inputs.continuous.update(ds.continuous_labels)
        return ds, fp


def read_inputs(recipe: Recipe, ctx: RunContext) -> Inputs:
    """Run every distinct reader once; return modalities, merged labels, notes, fingerprints."""
    inputs = Inputs(continuous=set(recipe.continuous_labels))
    readers = _Readers(ctx, inputs)
    for name, mspec in recipe.modalities.items():
        ds, fp = readers.read(mspec.reader)
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
        inputs.ids[name] = _normalise_modality_ids(data, f"{mspec.reader.where} ({mspec.reader.name})")
        inputs.modalities[name] = data
        _merge_labels(inputs.labels, ds.labels, f"{mspec.reader.where} ({mspec.reader.name})")
    for spec in recipe.labels:
        _merge_labels(inputs.labels, readers.read(spec)[0].labels, f"{spec.where} ({spec.name})")
    for name, entry in cross_modality_report({m: d.patient_ids for m, d in inputs.modalities.items()}).items():
        inputs.ids[name].update(unmatched=entry["unmatched"], unmatched_examples=entry["unmatched_examples"])
    # item labels (e.g. a class per item) also count as patient labels where missing
    for data in inputs.modalities.values():
        for lname, values in data.labels.items():
            table = inputs.labels.setdefault(lname, {})
            for pid, v in zip(data.patient_ids, values):
                table.setdefault(str(pid), v)
    inputs.continuous.update(name for name, table in inputs.labels.items() if _all_floats(table))
    return inputs


def _normalise_modality_ids(data: ModalityData, source: str) -> dict[str, Any]:
    """fusionkit's one id normalisation applied to a modality's patient ids (idempotent for
    readers that already applied it); the reader's own report is kept when it made one."""
    ids, report = normalise_ids(data.patient_ids, source=source)
    data.patient_ids = ids
    own = data.extras.get("id_report")
    return dict(own) if isinstance(own, dict) else report.as_dict()


def _merge_labels(into: dict[str, dict[str, Any]], new: dict[str, dict[str, Any]], source: str) -> None:
    """Patient label tables of one reader merged in; a patient with two values is an error."""
    merge_label_tables(into, {lname: {normalise_id(pid): v for pid, v in table.items()}
                              for lname, table in new.items()}, source=source)


def _all_floats(table: dict[str, Any]) -> bool:
    """Whether every known value of a label is a float (a measurement, not a class)."""
    values = [v for v in table.values() if v is not None]
    return bool(values) and all(isinstance(v, (float, np.floating)) for v in values)


def plugin_versions(system: "PluginSystem") -> list[dict[str, Any]]:
    return [r.as_dict() for r in system.records]


def build_pool(recipe: Recipe, ctx: RunContext) -> tuple[EmbeddingPool, dict[str, Any]]:
    """Read and encode every modality: the run's embedding pool, and what went into it."""
    _begin("read", "read")
    inputs = read_inputs(recipe, ctx)
    stores = {}
    for name, data in inputs.modalities.items():
        _begin(f"encode {name}", f"encode:{name}")
        stores[name] = encode_modality(name, data, recipe, ctx)
    pool = EmbeddingPool.from_stores(stores, inputs.labels)
    info = {"notes": inputs.notes, "fingerprints": inputs.fingerprints, "continuous": sorted(inputs.continuous),
            "ids": inputs.ids,
            "stores": {name: str(s.path) for name, s in stores.items()}}
    return pool, info


# ----------------------------------------------------------------------------- memory per stage

_MIB = 2.0 ** 20


def _proc_rss(pid: int | str = "self") -> int:
    """Resident bytes of a process from /proc (0 when it is gone or /proc is absent)."""
    try:
        with open(f"/proc/{pid}/statm") as f:
            return int(f.read().split()[1]) * os.sysconf("SC_PAGE_SIZE")
    except (OSError, ValueError, IndexError):
        return 0


def _proc_hwm() -> int:
    """This process's resident high-water mark (VmHWM) in bytes (0 without /proc)."""
    try:
        with open("/proc/self/status") as f:
            for line in f:
                if line.startswith("VmHWM:"):
                    return int(line.split()[1]) * 1024
    except (OSError, ValueError, IndexError):
        pass
    return 0


def _descendants() -> list[int]:
    """Pids of this process's descendants (executor workers; a local Ray cluster's processes)."""
    out: list[int] = []
    todo = [str(os.getpid())]
    while todo:
        pid = todo.pop()
        try:
            tasks = os.listdir(f"/proc/{pid}/task")
        except OSError:
            continue
        for tid in tasks:
            try:
                with open(f"/proc/{pid}/task/{tid}/children") as f:
                    kids = f.read().split()
            except OSError:
                continue
            out.extend(int(k) for k in kids)
            todo.extend(kids)
    return out


def _children_maxrss() -> int:
    """The largest resident set of any finished, waited-for child process, in bytes (ru_maxrss)."""
    try:
        import resource

        return int(resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss) * 1024
    except (ImportError, OSError):
        return 0


class MemoryMonitor:
    """Peak resident memory per stage, of the driver (this process) and of its worker processes.

    A daemon thread samples ``/proc`` every ``interval`` seconds: this process's RSS, and each
    descendant's (the local executor's forked workers). The driver's peak of a stage is exact
    whenever the stage raised the process's high-water mark (VmHWM), sampled otherwise; a
    worker's likewise with ``RUSAGE_CHILDREN`` (the largest waited-for child, updated when a
    pool's workers are reaped). Workers are separate processes: their RSS counts pages shared
    copy-on-write with the driver at the fork, so driver + workers over-counts the machine's use.
    Without ``/proc`` (not Linux) only the whole-run peaks from ``getrusage`` are reported.
    """

    def __init__(self, interval: float = 0.2):
        self.interval = float(interval)
        self.available = os.path.exists("/proc/self/statm")
        self.stages: dict[str, dict[str, float]] = {}
        self._stage: str | None = None
        self._marks = (0, 0)
        import threading

        self._lock = threading.Lock()
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None

    def start(self) -> "MemoryMonitor":
        if self.available and self._thread is None:
            import threading

            self._thread = threading.Thread(target=self._loop, name="fusionkit-memory", daemon=True)
            self._thread.start()
        return self

    def stage(self, name: str | None) -> None:
        """``name`` starts now (the previous stage ends); None ends the current one."""
        with self._lock:
            self._close()
            self._stage = name
            if name is not None:
                self.stages.setdefault(name, {"rss_mib": 0.0, "workers_rss_mib": 0.0, "workers_total_mib": 0.0,
                                              "workers": 0})
                self._marks = (_proc_hwm(), _children_maxrss())
        self._sample()

    def stop(self) -> dict[str, Any]:
        """Stop sampling; the ``memory`` block of run.json."""
        self.stage(None)
        self._stop.set()
        if self._thread is not None:
            self._thread.join(timeout=2)
        try:
            import resource

            own = int(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss) * 1024
        except (ImportError, OSError):
            own = 0
        return {"peak_rss_mib": round(own / _MIB, 1), "workers_peak_rss_mib": round(_children_maxrss() / _MIB, 1),
                "stages": {k: {m: (round(v, 1) if isinstance(v, float) else v) for m, v in d.items()}
                           for k, d in self.stages.items()},
                "method": ("ru_maxrss of the driver and of its largest child; per stage: /proc sampled every "
                           f"{self.interval:g} s, exact where the stage raised the high-water mark")
                if self.available else "ru_maxrss only (no /proc here)"}

    def _close(self) -> None:
        """Fold the high-water marks into the stage that is ending (exact where it raised them)."""
        if self._stage is None:
            return
        d = self.stages[self._stage]
        hwm, kids = _proc_hwm(), _children_maxrss()
        if hwm > self._marks[0]:
            d["rss_mib"] = max(d["rss_mib"], hwm / _MIB)
        if kids > self._marks[1]:
            d["workers_rss_mib"] = max(d["workers_rss_mib"], kids / _MIB)

    def _sample(self) -> None:
        if not self.available:
            return
        own = _proc_rss()
        kids = [_proc_rss(pid) for pid in _descendants()]
        kids = [k for k in kids if k]
        with self._lock:
            if self._stage is None:
                return
            d = self.stages[self._stage]
            d["rss_mib"] = max(d["rss_mib"], own / _MIB)
            if kids:
                d["workers_rss_mib"] = max(d["workers_rss_mib"], max(kids) / _MIB)
                d["workers_total_mib"] = max(d["workers_total_mib"], sum(kids) / _MIB)
                d["workers"] = max(int(d["workers"]), len(kids))

    def _loop(self) -> None:
        while not self._stop.wait(self.interval):
            try:
                self._sample()
            except Exception:  # a diagnostic never ends a run
                return


#: the monitor of the run in progress (stages announce themselves through :func:`_begin`)
_MONITOR: MemoryMonitor | None = None


def _begin(stage: str, key: str) -> None:
    """A stage starts: announced on the console (``stage``) and to the memory monitor (``key``)."""
    _progress.current().begin(stage)
    if _MONITOR is not None:
        _MONITOR.stage(key)

# ----------------------------------------------------------------------------- the run

def run(recipe: Recipe, system: "PluginSystem", *, out_dir: str | os.PathLike[str] | None = None,
        cache_dir: str | os.PathLike[str] | None = None, progress: bool | None = None,
        tasks: list[str] | None = None, refresh: list[str] | None = None) -> dict[str, Any]:
    """Run a validated recipe; returns the run record (also written to run.json).

    ``refresh``: stages recomputed instead of reused from the cache (``encode``, ``tasks``,
    a task's recipe name, ``all``). Stages are announced to :func:`fusionkit.progress.current`.
    """
    t_start = time.perf_counter()
    out = _run_folder(out_dir or recipe.output["dir"])
    cache = Path(cache_dir or recipe.output.get("cache") or os.environ.get("FUSIONKIT_CACHE") or out / "cache")
    record: dict[str, Any] = {
        "fusionkit": __version__, "recipe": str(recipe.path) if recipe.path else None, "name": recipe.name,
        "seed": recipe.seed, "started": _dt.datetime.now(_dt.timezone.utc).isoformat(),
        "python": sys.version.split()[0], "platform": platform.platform(), "plugins": plugin_versions(system),
    }
    # one run at a time in this folder; run.json says "running" until it ends "ok" or "failed"
    # BLAS on one thread for the run (units run in parallel workers; see executors.blas_threads)
    global _MONITOR
    monitor = _MONITOR = MemoryMonitor().start()  # peak RSS per stage, driver and workers (run.json memory)
    try:
        with run_transaction(out, record, recipe=record["recipe"]), blas_threads(1):
            _run_stages(recipe, system, out, cache, progress, record, tasks, refresh, t_start, monitor)
    finally:
        _MONITOR = None
        monitor.stop()
    return record


def _run_stages(recipe: Recipe, system: "PluginSystem", out: Path, cache: Path, progress: bool | None,
                record: dict[str, Any], tasks: list[str] | None, refresh: list[str] | None, t_start: float,
                monitor: MemoryMonitor) -> None:
    """The stages of :func:`run`, inside its run transaction; fills ``record``."""
    ctx = _context(recipe, system, out, cache, progress, record)
    ctx.refresh = set(refresh or ())
    n_tasks = len([t for t in recipe.tasks if tasks is None or t in tasks])
    _progress.current().plan(1 + len(recipe.modalities) + bool(recipe.output.get("save_aggregates", True))
                             + n_tasks + bool(recipe.tasks))
    atomic_write_text(out / "resolved_recipe.yaml", recipe.to_yaml())
    ctx.pool, info = build_pool(recipe, ctx)
    fingerprint.default().save()
    record.update(inputs=info["fingerprints"], stores=info["stores"])
    checkpoint(out, record)
    monitor.stage("summary")  # data summary and embedding health (no console stage of their own)
    summary = data_summary(ctx.pool, recipe, info)
    ctx.write_json("data_summary.json", summary)
    ctx.write_json("labels.json", ctx.pool.labels)  # patient label tables: `fusionkit export` carries them
    _health.check_health(summary.get("health") or {}, {m: s.encoder.name for m, s in recipe.modalities.items()},
                         bool(getattr(system, "strict", False)), log)
    if recipe.output.get("save_aggregates", True):
        _save_sampling(ctx, out)
    metrics = _run_tasks(ctx, out / "metrics.json", tasks)
    if recipe.tasks:
        _begin("report", "report")
        _write_report(ctx, metrics, summary)
    _progress.current().end()
    record.update({"timings_s": {k: round(v, 3) for k, v in ctx.timings.items()},
                   "wall_s": round(time.perf_counter() - t_start, 3), "memory": monitor.stop()})


def _run_folder(path: str | os.PathLike[str]) -> Path:
    """The run's output folder, created; a path that cannot be a folder is one message."""
    out = Path(path).resolve()
    try:
        out.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise FusionkitError(f"cannot create the run folder: {exc.strerror or exc}", where=str(out),
                             hint="choose another --out (or output.dir in the recipe)") from None
    return out


def _context(recipe: Recipe, system: "PluginSystem", out: Path, cache: Path, progress: bool | None,
             record: dict[str, Any]) -> RunContext:
    """The run context: executor (workers capped at the cores), cache folder, fingerprint cache."""
    cache = cache.resolve()
    try:
        cache.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise FusionkitError(f"cannot use the cache folder: {exc.strerror or exc}", where=str(cache),
                             hint="choose another --cache (or output.cache in the recipe)") from None
    fingerprint.configure(cache / "fingerprints.json")
    executor = make_executor(recipe.executor["name"], **recipe.executor.get("params", {}))
    record.update(cache=str(cache), workers=getattr(executor, "workers", None))
    return RunContext(recipe, system, out, cache, progress=progress, executor=executor)


def data_summary(pool: EmbeddingPool, recipe: Recipe, info: dict[str, Any]) -> dict[str, Any]:
    """The run's ``data_summary.json``: availability per modality by the recipe's primary
    label (``labels.primary``), embedding statistics, value counts of the class labels and
    the range of the continuous ones, reader notes."""
    continuous = set(info.get("continuous", ()))
    summary = pool.summary(recipe.primary_label)
    summary["primary_label"] = recipe.primary_label
    summary["notes"] = info["notes"]
    summary["ids"] = info.get("ids", {})
    summary["labels"] = {name: _value_counts(table) for name, table in pool.labels.items()
                         if name not in continuous}
    ranges = {name: _value_range(pool.labels[name]) for name in sorted(continuous) if name in pool.labels}
    if ranges:
        summary["continuous_labels"] = ranges
    try:  # embedding health (issue 15): spread, effective rank, a probe of the primary label
        summary["health"] = _health.pool_health(pool, [recipe.primary_label] if recipe.primary_label in pool.labels
                                                else [])
    except Exception as exc:  # never lose a run to a diagnostic; say so loudly
        log.warning("embedding health could not be computed: %s", exc)
        summary["health"] = {"error": str(exc)}
    return summary


def _save_sampling(ctx: RunContext, out: Path) -> None:
    """Every recipe sampling entry, aggregated, under ``aggregates/<name>/``."""
    _begin("aggregate", "aggregate")
    for name in ctx.recipe.sampling:
        t0 = time.perf_counter()
        agg = ctx.sample(name, seed_keys=("dataset", name))
        save_aggregates(out / "aggregates" / safe_name(name), agg)
        ctx.timings[f"aggregate:{name}"] = time.perf_counter() - t0


def _run_tasks(ctx: RunContext, metrics_path: Path, only: list[str] | None) -> dict[str, Any]:
    """Run the recipe's tasks (or ``only`` these); metrics.json is rewritten after each one."""
    metrics: dict[str, Any] = {}
    if only is None:  # a whole run: no number of an earlier run may survive it
        metrics_path.unlink(missing_ok=True)
    elif metrics_path.exists():  # --task: the other tasks' numbers stay
        try:
            metrics = json.loads(metrics_path.read_text())
        except json.JSONDecodeError:
            metrics = {}
    for tname, spec in ctx.recipe.tasks.items():
        if only is not None and tname not in only:
            continue
        t0 = time.perf_counter()
        _begin(f"task {tname}", f"task:{tname}")
        ctx.task_name = tname
        log.info("task %s (%s)", tname, spec.name)
        result = _run_task(ctx, spec, tname)
        metrics[tname] = {"task": spec.name, "params": spec.to_dict()["params"], **(result or {})}
        atomic_write_json(metrics_path, metrics)  # after each task: nothing finished is lost
        ctx.timings[f"task:{tname}"] = time.perf_counter() - t0
    ctx.task_name = None
    return metrics


def _run_task(ctx: RunContext, spec: Spec, tname: str) -> Any:
    """Build and run one task; an unexpected exception (a bug in its plugin) becomes one
    message naming the task and plugin (the traceback stays available with -vv)."""
    try:
        return ctx.build(spec).run(ctx)
    except (FusionkitError, MemoryError, OSError):
        raise
    except Exception as exc:
        plugin = f" (plugin {spec.info.plugin})" if spec.info else ""
        raise FusionkitError(f"task {spec.name!r}{plugin} failed: {type(exc).__name__}: {exc}",
                             where=f"tasks.{tname}",
                             hint="this looks like a bug in the task; run with -vv for the traceback") from exc


def _value_counts(table: dict[str, Any]) -> dict[str, int]:
    counts: dict[str, int] = {}
    for v in table.values():
        counts[str(v)] = counts.get(str(v), 0) + 1
    return dict(sorted(counts.items(), key=lambda kv: -kv[1])[:50])


def _value_range(table: dict[str, Any]) -> dict[str, Any]:
    """Patients with a numeric value, and min/median/max (values that are not numbers are skipped)."""
    numbers = []
    for v in table.values():
        try:
            numbers.append(float(v))
        except (TypeError, ValueError):
            continue
    values = np.asarray(numbers, dtype=np.float64)
    values = values[np.isfinite(values)]
    if not len(values):
        return {"patients": 0}
    return {"patients": int(len(values)), "min": float(values.min()), "median": float(np.median(values)),
            "max": float(values.max())}


def _write_report(ctx: RunContext, metrics: dict[str, Any], summary: dict[str, Any]) -> None:
    try:
        from .report import write_report
    except ImportError:
        return
    write_report(ctx, metrics, summary)
