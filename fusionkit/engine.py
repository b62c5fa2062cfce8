"""Runs a recipe stage by stage: read -> encode (cached) -> pool ->
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
from .components import Aggregates, DrawPlan, ModalityData, RawDataset
from .errors import DataError, FusionkitError
from .executors import LocalExecutor, Unit, UnitCache, make_executor, run_units
from .pool import EmbeddingPool, aggregate, save_aggregates
from .recipe import Recipe, Spec
from .store import (EmbeddingStore, StoreWriter, atomic_save_npy, atomic_write_json, atomic_write_text,
                    file_fingerprint, stable_hash, store_exists)

log = logging.getLogger("fusionkit")

CACHE_FORMAT = 1


def derive_seed(*parts: Any) -> int:
    """A stable 63-bit seed from any JSON-able parts (recipe seed, stage names...)."""
    digest = hashlib.sha256(json.dumps([str(p) for p in parts]).encode()).digest()
    return int.from_bytes(digest[:8], "little") & ((1 << 63) - 1)


def _progress_factory(enabled: bool | None) -> Callable[..., Any] | None:
    if enabled is None:
        enabled = sys.stderr.isatty()
    if not enabled:
        return None
    try:
        from tqdm.auto import tqdm
    except ImportError:  # pragma: no cover
        return None

    def make(iterable: Iterable[Any] | None = None, **kw: Any) -> Any:
        kw.setdefault("leave", False)
        kw.setdefault("dynamic_ncols", True)
        return tqdm(iterable, **kw) if iterable is not None else tqdm(**kw)

    return make


class RunContext:
    """What readers, encoders and tasks see of a run.

    * ``seed``, ``rng(*keys)``, ``seed_for(*keys)``: seeds flow from the recipe
    * ``pool``: the :class:`~fusionkit.pool.EmbeddingPool` (after encoding)
    * ``sample(name, ...)``: plan + perturb + aggregate a recipe sampling entry
    * ``run_units(group, units)``: independent repeats, cached per key (resume)
    * ``write_json/write_csv/save_figure/path``: outputs under ``out_dir``
    """

    def __init__(self, recipe: Recipe, system: Any, out_dir: Path, cache_dir: Path, *,
                 progress: bool | None = None, executor: Any = None):
        self.recipe = recipe
        self.system = system
        self.out_dir = Path(out_dir)
        self.cache_dir = Path(cache_dir)
        self.seed = int(recipe.seed)
        self.pool: EmbeddingPool | None = None
        self.log = log
        self._progress = _progress_factory(progress)
        self.executor = executor or make_executor(recipe.executor["name"], **recipe.executor.get("params", {}))
        self.timings: dict[str, float] = {}
        self.task_name: str | None = None

    # ---------------------------------------------------------------- seeds
    def seed_for(self, *keys: Any) -> int:
        return derive_seed(self.seed, *keys)

    def rng(self, *keys: Any) -> np.random.Generator:
        return np.random.default_rng(self.seed_for(*keys))

    @property
    def device(self) -> str:
        try:
            import torch

            return "cuda" if torch.cuda.is_available() else "cpu"
        except ImportError:
            return "cpu"

    # ---------------------------------------------------------------- components
    def build(self, spec: Spec) -> Any:
        return self.system.create(spec.kind, spec.name, spec.params, where=spec.where)

    def sampler(self, name: str) -> Any:
        return self.build(self._named(self.recipe.sampling, name, "sampling"))

    def perturbation(self, name: str) -> Any:
        return self.build(self._named(self.recipe.perturbations, name, "perturbations"))

    def aggregator(self) -> Any:
        return self.build(self.recipe.aggregator)

    def index(self, spec: Spec | dict | str | None = None) -> Any:
        if spec is None:
            spec = self.recipe.index
            if spec is None:
                raise FusionkitError("this recipe has no index", where="index", hint="add `index: faiss-flat`")
        if isinstance(spec, str):
            return self.system.create("index", spec, {}, where="index")
        if isinstance(spec, dict):
            return self.system.create("index", spec["name"], spec.get("params") or {}, where="index")
        return self.build(spec)

    @staticmethod
    def _named(table: dict[str, Spec], name: str, section: str) -> Spec:
        if name not in table:
            from .registry import suggest

            raise FusionkitError(f"no {section} entry named {name!r}", where=section,
                                 hint=suggest(name, list(table)) or f"entries: {', '.join(table) or '(none)'}")
        return table[name]

    # ---------------------------------------------------------------- sampling
    def plan(self, sampling: str | Any, *, pool: EmbeddingPool | None = None, seed_keys: tuple = (),
             **overrides: Any) -> DrawPlan:
        """A DrawPlan from a recipe sampling entry (or a Sampler), params overridable."""
        pool = pool or self.pool
        if pool is None:
            raise FusionkitError("the embedding pool is not built yet")
        if isinstance(sampling, str):
            spec = self._named(self.recipe.sampling, sampling, "sampling")
            params = {**spec.params, **overrides}
            sampler = self.system.create("sampler", spec.name, params, where=spec.where)
            key = sampling
        else:
            sampler = sampling.set_params(**overrides) if overrides else sampling
            key = type(sampling).__name__
        return sampler.plan(pool, self.rng("sample", key, *seed_keys))

    def aggregate(self, plan: DrawPlan, *, pool: EmbeddingPool | None = None, seed_keys: tuple = (),
                  aggregator: Any = None, chunk: int = 2048) -> Aggregates:
        pool = pool or self.pool
        return aggregate(plan, pool, aggregator or self.aggregator(), chunk=chunk,
                         noise_seed=self.seed_for("noise", *seed_keys))

    def sample(self, sampling: str | Any, *, pool: EmbeddingPool | None = None, seed_keys: tuple = (),
               perturbation: str | Any | None = None, aggregator: Any = None, **overrides: Any) -> Aggregates:
        """Plan, optionally perturb, and aggregate in one call."""
        plan = self.plan(sampling, pool=pool, seed_keys=seed_keys, **overrides)
        if perturbation is not None:
            pert = self.perturbation(perturbation) if isinstance(perturbation, str) else perturbation
            plan = pert.apply(plan, self.rng("perturb", *seed_keys))
        return self.aggregate(plan, pool=pool, seed_keys=seed_keys, aggregator=aggregator)

    # ---------------------------------------------------------------- repeats
    def unit_key(self, *parts: Any) -> str:
        """Cache key of a unit of work: the recipe seed, the pool's content, the
        aggregator and whatever else the caller names (task params, repeat...)."""
        return stable_hash({"seed": self.seed, "pool": self.pool.fingerprint if self.pool else None,
                            "aggregator": self.recipe.aggregator.key(), "parts": list(parts)}, length=20)

    def run_units(self, group: str, units: list[Unit]) -> dict[str, Any]:
        """Run independent units (e.g. repeats); finished ones are reused after an interruption."""
        cache = UnitCache(self.cache_dir / "units" / _safe(self.recipe.name) / _safe(group))
        return run_units(units, cache, self.executor, progress=self._bar(desc=group))

    def _bar(self, desc: str) -> Callable[..., Any] | None:
        if self._progress is None:
            return None
        make = self._progress
        return lambda **kw: make(desc=desc, **kw)

    def progress(self, iterable: Iterable[Any], desc: str = "", total: int | None = None) -> Iterable[Any]:
        if self._progress is None:
            return iterable
        return self._progress(iterable, desc=desc, total=total)

    # ---------------------------------------------------------------- outputs
    def path(self, rel: str) -> Path:
        p = self.out_dir / rel
        p.parent.mkdir(parents=True, exist_ok=True)
        return p

    def write_json(self, rel: str, obj: Any) -> Path:
        p = self.path(rel)
        atomic_write_json(p, obj)
        return p

    def write_csv(self, rel: str, rows: list[dict[str, Any]]) -> Path:
        import csv
        import io

        p = self.path(rel)
        cols: list[str] = []
        for row in rows:
            for k in row:
                if k not in cols:
                    cols.append(k)
        buf = io.StringIO()
        w = csv.DictWriter(buf, fieldnames=cols)
        w.writeheader()
        for row in rows:
            w.writerow({k: _csv_value(row.get(k)) for k in cols})
        atomic_write_text(p, buf.getvalue())
        return p

    def save_figure(self, fig: Any, rel: str, dpi: int = 120) -> Path:
        import io

        p = self.path(rel)
        buf = io.BytesIO()
        fig.savefig(buf, format=p.suffix.lstrip(".") or "png", dpi=dpi, bbox_inches="tight")
        from .store import atomic_write_bytes

        atomic_write_bytes(p, buf.getvalue())
        try:
            import matplotlib.pyplot as plt

            plt.close(fig)
        except ImportError:  # pragma: no cover
            pass
        return p


def _csv_value(v: Any) -> Any:
    if isinstance(v, float):
        return f"{v:.6g}"
    if isinstance(v, (list, dict)):
        return json.dumps(v)
    return v


def _safe(name: str) -> str:
    return "".join(ch if ch.isalnum() or ch in "-_." else "_" for ch in str(name))


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


def encode_modality(name: str, data: ModalityData, recipe: Recipe, ctx: RunContext) -> EmbeddingStore:
    """Encode one modality into a store, reusing the cache; resumable shard by shard."""
    mspec = recipe.modalities[name]
    enc_spec, ad_spec = mspec.encoder, mspec.adapter
    key = stable_hash({
        "format": CACHE_FORMAT, "modality": name, "input": data.fingerprint,
        "encoder": enc_spec.key(), "adapter": ad_spec.key() if ad_spec else None,
        "width": recipe.width, "seed": ctx.seed_for("encode", name),
    })
    store_dir = ctx.cache_dir / "stores" / f"{_safe(name)}-{_safe(enc_spec.name)}-{key}"
    if store_exists(store_dir):
        log.info("%s: reusing cached embeddings %s", name, store_dir)
        ctx.timings[f"encode:{name}"] = 0.0
        return EmbeddingStore(store_dir)
    t0 = time.perf_counter()
    work = ctx.cache_dir / "work" / f"{_safe(name)}-{key}"
    work.mkdir(parents=True, exist_ok=True)
    encoder = ctx.build(enc_spec)
    expected_kind = getattr(encoder, "input_kind", None)
    if expected_kind and expected_kind != data.kind and expected_kind != "any":
        raise DataError(f"encoder {enc_spec.name!r} takes {expected_kind} input but modality {name!r} "
                        f"is {data.kind}", where=f"modalities.{name}.encoder",
                        hint="choose an encoder for this modality (`fusionkit list encoders`)")
    if getattr(encoder, "trainable", False):
        state = work / "model"
        if (state / "DONE").exists():
            encoder.load(str(state))
        else:
            log.info("%s: fitting %s on %d items", name, enc_spec.name, len(data))
            encoder.fit(data, ctx)
            state.mkdir(parents=True, exist_ok=True)
            encoder.save(str(state))
            atomic_write_text(state / "DONE", "ok\n")
    dim = int(encoder.output_dim)
    n = len(data)
    shard = max(1, int(getattr(encoder, "shard_size", 4096)))
    starts = list(range(0, n, shard))
    state_dir = str(work / "model") if getattr(encoder, "trainable", False) else None
    job = ShardJob(encoder, enc_spec.kind, enc_spec.name, enc_spec.params, state_dir, name, data,
                   dim, gpu=_wants_gpu(encoder))
    units = [Unit(f"{name}-{key}-{start:010d}", job, (start, min(n, start + shard), str(work / _shard_name(start))),
                  {"ctx": ctx}, label=f"encode {name} [{start}:{min(n, start + shard)}]")
             for start in starts if not (work / _shard_name(start)).exists()]
    if units:
        for _unit, _res in _map_units(ctx, units, desc=f"encode {name}"):
            pass
    # adapter
    adapter = None
    width = recipe.width
    if ad_spec is not None:
        adapter = ctx.build(ad_spec)
        sample = _load_shards(work, starts, limit=50000)
        adapter.fit(sample, width, ctx.rng("adapter", name))
    elif dim != width:
        raise DataError(f"encoder {enc_spec.name!r} outputs {dim}-d vectors but the recipe width is {width}",
                        where=f"modalities.{name}",
                        hint="add an adapter (zero-pad, truncate, random-projection, pca) to this modality, "
                             "or set the encoder's output width to the recipe width")
    writer = StoreWriter(store_dir, n, width)
    try:
        for start in starts:
            X = np.load(work / _shard_name(start))
            if adapter is not None:
                X = np.asarray(adapter.transform(X), dtype=np.float32)
                if X.shape[1] != width:
                    raise DataError(f"adapter {ad_spec.name!r} produced width {X.shape[1]}, expected {width}",
                                    where=f"modalities.{name}.adapter")
            writer.embeddings[start:start + X.shape[0]] = X
    except BaseException:
        writer.abort()
        raise
    items: dict[str, Any] = {"patient_id": data.patient_ids, "item_id": data.item_ids}
    for lname, values in data.labels.items():
        if len(values) == n:
            items[lname] = np.asarray([str(v) for v in values])
    info = enc_spec.info
    provenance = {
        "modality": name, "source": data.source, "input_fingerprint": data.fingerprint,
        "encoder": {"name": enc_spec.name, "params": enc_spec.to_dict()["params"],
                    "provider": info.dist if info else None, "version": info.version if info else None,
                    "output_dim": dim},
        "adapter": ad_spec.to_dict() if ad_spec else None, "width": width,
        "created": _dt.datetime.now(_dt.timezone.utc).isoformat(), "fusionkit": __version__,
        "cache_key": key,
    }
    store = writer.commit(items, modality=name, provenance=provenance)
    ctx.timings[f"encode:{name}"] = time.perf_counter() - t0
    return store


def _shard_name(start: int) -> str:
    return f"shard-{start:010d}.npy"


def _wants_gpu(encoder: Any) -> bool:
    """Tile/image encoders ask for a GPU on executors that place work (Ray) when one exists."""
    return bool(getattr(encoder, "wants_gpu", getattr(encoder, "input_kind", None) == "image"))


_IN_PROCESS = LocalExecutor(workers=1)


def _map_units(ctx: RunContext, units: list[Unit], desc: str) -> Iterable[tuple[Unit, Any]]:
    """Run units through the run's executor with a per-unit progress bar (no result cache:
    the units write their own files atomically and are skipped once those exist)."""
    executor = ctx.executor
    if getattr(executor, "name", "local") == "local":
        # local encoding stays in this process (models are not forked): the pool is for repeats
        executor = _IN_PROCESS
    bar = ctx._bar(desc)
    bar = bar(total=len(units)) if bar is not None else None
    try:
        for unit, res in executor.map(units):
            if bar is not None:
                bar.update(1)
            yield unit, res
    finally:
        if bar is not None:
            bar.close()


#: encoders re-created in this (worker) process, by spec: a worker loads a model once
_WORKER_ENCODERS: dict[str, Any] = {}


class ShardJob:
    """Encodes rows [start, stop) of one modality into an atomically written .npy shard.

    In-process (and in forked workers) it uses the driver's live encoder. When
    pickled for a remote worker (Ray) the encoder is dropped and re-created there
    from its spec (``system.create(kind, name, params)``), loading the fitted
    state of a trainable encoder from the cached model folder; fitting happens
    once, on the driver. A shard whose file exists is not recomputed.
    """

    def __init__(self, encoder: Any, kind: str, enc_name: str, params: dict[str, Any], state_dir: str | None,
                 modality: str, data: ModalityData, dim: int, *, gpu: bool = False):
        self.encoder = encoder
        self.kind, self.enc_name, self.params = kind, enc_name, dict(params)
        self.state_dir, self.modality, self.data, self.dim = state_dir, modality, data, int(dim)
        self.gpu = gpu
        self.system: Any = None  # set by executors that ship the job elsewhere

    def __getstate__(self) -> dict[str, Any]:
        state = dict(self.__dict__)
        state["encoder"] = None
        return state

    def _encoder(self, ctx: Any) -> Any:
        if self.encoder is not None:
            return self.encoder
        cache_key = stable_hash([self.kind, self.enc_name, self.params, self.state_dir])
        enc = _WORKER_ENCODERS.get(cache_key)
        if enc is None:
            system = self.system or getattr(ctx, "system", None)
            if system is None:
                from . import plugins

                system = plugins.load()
            enc = system.create(self.kind, self.enc_name, self.params)
            if self.state_dir is not None:
                enc.load(self.state_dir)
            _WORKER_ENCODERS.clear()  # one model per worker at a time (memory bound)
            _WORKER_ENCODERS[cache_key] = enc
        self.encoder = enc
        return enc

    def __call__(self, start: int, stop: int, path: str, ctx: Any = None) -> dict[str, Any]:
        if os.path.exists(path):
            return {"path": path, "rows": stop - start, "reused": True}
        encoder = self._encoder(ctx)
        X = np.asarray(encoder.encode(self.data.subset(np.arange(start, stop)), ctx))
        name, enc_name, dim = self.modality, self.enc_name, self.dim
        if X.ndim != 2 or X.shape[0] != stop - start:
            raise DataError(f"encoder {enc_name!r} returned shape {X.shape} for {stop - start} items",
                            where=f"modalities.{name}.encoder")
        if X.shape[1] != dim:
            raise DataError(f"encoder {enc_name!r} returned width {X.shape[1]} but declares {dim}",
                            where=f"modalities.{name}.encoder",
                            hint="the model's output width differs from its card/params: fix the params "
                                 "(e.g. dim) or the model path")
        if not np.isfinite(X).all():
            raise DataError(f"encoder {enc_name!r} produced NaN/inf for modality {name!r}",
                            where=f"modalities.{name}.encoder",
                            hint="check the input for missing values (readers have explicit fill options)")
        atomic_save_npy(path, X.astype(np.float32, copy=False))
        return {"path": path, "rows": stop - start, "reused": False}


def _load_shards(work: Path, starts: list[int], limit: int) -> np.ndarray:
    parts, total = [], 0
    for start in starts:
        X = np.load(work / _shard_name(start))
        parts.append(X)
        total += len(X)
        if total >= limit:
            break
    return np.concatenate(parts)[:limit]


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
    ctx = RunContext(recipe, system, out, cache.resolve(), progress=progress)
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
    if recipe.output.get("save_aggregates", True):
        for name in recipe.sampling:
            t0 = time.perf_counter()
            agg = ctx.sample(name, seed_keys=("dataset", name))
            save_aggregates(out / "aggregates" / _safe(name), agg)
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
