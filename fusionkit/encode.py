"""The encode stage: one modality's items -> a cached, memory-mapped embedding store.

An encoder (fitted once when trainable, its state saved in the work folder)
encodes shards of items as executor units; each shard is written atomically
and skipped once it exists, so an interrupted encoding resumes. A width
adapter then maps the encoder's width to the recipe's, and the store is
committed atomically under a key made of the input fingerprint, encoder and
adapter specs, their source code and local weights (:mod:`fusionkit.cachekeys`),
recipe width and seed. ``run --refresh encode`` recomputes instead of reusing.
"""

from __future__ import annotations

import datetime as _dt
import logging
import os
import shutil
import time
from pathlib import Path
from typing import TYPE_CHECKING, Any, Iterable, Iterator

import numpy as np

from . import __version__
from .cachekeys import component_key
from .components import Adapter, Encoder, ModalityData
from .context import RunContext, safe_name
from .errors import DataError, StoreError
from .executors import LocalExecutor, Unit
from .recipe import ModalitySpec, Recipe, Spec
from .store import EmbeddingStore, StoreWriter, atomic_save_npy, atomic_write_text, stable_hash

if TYPE_CHECKING:  # type checkers only
    from .plugins import PluginSystem

log = logging.getLogger("fusionkit")

CACHE_FORMAT = 1


def encode_modality(name: str, data: ModalityData, recipe: Recipe, ctx: RunContext) -> EmbeddingStore:
    """Encode one modality into a store, reusing the cache; resumable shard by shard."""
    mspec = recipe.modalities[name]
    # what the components compute with beyond their params: source code and local weights (cachekeys)
    made_with = {"encoder": component_key(mspec.encoder), "adapter": component_key(mspec.adapter)}
    key = stable_hash({
        "format": CACHE_FORMAT, "modality": name, "input": data.fingerprint,
        "encoder": mspec.encoder.key(), "adapter": mspec.adapter.key() if mspec.adapter else None,
        "width": recipe.width, "seed": ctx.seed_for("encode", name), "made_with": made_with,
    })
    store_dir = ctx.cache_dir / "stores" / f"{safe_name(name)}-{safe_name(mspec.encoder.name)}-{key}"
    if ctx.refreshes("encode"):  # `run --refresh encode|all`: recompute, do not resume
        for folder in (store_dir, ctx.cache_dir / "work" / f"{safe_name(name)}-{key}"):
            shutil.rmtree(folder, ignore_errors=True)
    if (store_dir / "meta.json").exists():
        try:
            store = EmbeddingStore(store_dir)
            log.info("%s: reusing cached embeddings %s", name, store_dir)
            ctx.timings[f"encode:{name}"] = 0.0
            return store
        except StoreError as err:  # a cache is data to check, never to trust blindly
            log.warning("discarding a corrupt cached store (%s); it is rebuilt", err.message)
            shutil.rmtree(store_dir, ignore_errors=True)
    t0 = time.perf_counter()
    work = ctx.cache_dir / "work" / f"{safe_name(name)}-{key}"
    work.mkdir(parents=True, exist_ok=True)
    encoder = _ready_encoder(name, data, mspec.encoder, work, ctx)
    starts = _encode_shards(name, data, encoder, mspec.encoder, f"{name}-{key}", work, ctx)
    adapter = _fit_adapter(name, mspec, encoder.output_dim, recipe.width, work, starts, ctx)
    store = _commit_store(store_dir, name, data, mspec, key, recipe.width, encoder.output_dim,
                          _adapted_shards(work, starts, adapter, mspec, recipe.width), made_with)
    del encoder, adapter
    release_memory()  # the model is not used again: its memory goes back before the next stage
    ctx.timings[f"encode:{name}"] = time.perf_counter() - t0
    return store


def release_memory() -> None:
    """Collect garbage cycles (models hold some) and hand freed heap pages back to the system.

    Without it the driver kept about 180 MB of freed model and activation memory after the encode
    stage (0.74 GiB resident against 0.56), and every worker forked later inherited it (glibc keeps
    freed small-block heap pages; ``malloc_trim`` returns them). A no-op beyond ``gc`` off glibc.
    """
    import gc

    gc.collect()
    try:
        import ctypes

        ctypes.CDLL("libc.so.6").malloc_trim(0)
    except (OSError, AttributeError):  # not glibc (macOS, musl): nothing to trim
        pass


def _ready_encoder(name: str, data: ModalityData, spec: Spec, work: Path, ctx: RunContext) -> Encoder:
    """Build the encoder, check it takes this data, and fit it once (or load its saved state)."""
    encoder: Encoder = ctx.build(spec)
    expected_kind = encoder.input_kind
    if expected_kind != data.kind and expected_kind != "any":
        raise DataError(f"encoder {spec.name!r} takes {expected_kind} input but modality {name!r} "
                        f"is {data.kind}", where=f"modalities.{name}.encoder",
                        hint="choose an encoder for this modality (`fusionkit list encoders`)")
    if encoder.trainable:
        state = work / "model"
        if (state / "DONE").exists() and _loads(encoder, state):
            return encoder
        log.info("%s: fitting %s on %d items", name, spec.name, len(data))
        encoder.fit(data, ctx)
        state.mkdir(parents=True, exist_ok=True)
        encoder.save(str(state))
        atomic_write_text(state / "DONE", "ok\n")
    return encoder


def _loads(encoder: Encoder, state: Path) -> bool:
    """Load a fitted encoder's saved state; a corrupt state is discarded (the encoder is fitted again)."""
    try:
        encoder.load(str(state))
        return True
    except Exception as exc:  # any failure to read cached weights means: refit, never crash
        log.warning("discarding the unreadable fitted state %s (%s: %s); fitting again", state,
                    type(exc).__name__, exc)
        shutil.rmtree(state, ignore_errors=True)
        return False


def _encode_shards(name: str, data: ModalityData, encoder: Encoder, spec: Spec, prefix: str, work: Path,
                   ctx: RunContext) -> list[int]:
    """Encode every shard that has no file yet (as executor units); return all shard starts."""
    n, dim = len(data), int(encoder.output_dim)
    shard = max(1, int(encoder.shard_size))
    starts = list(range(0, n, shard))
    state_dir = str(work / "model") if encoder.trainable else None
    job = ShardJob(encoder, spec.kind, spec.name, spec.params, state_dir, name, data, dim, gpu=encoder.gpu_wanted())
    for start in starts:  # a shard left truncated or corrupt is discarded and encoded again
        path = work / _shard_name(start)
        if path.exists() and not _shard_ok(path, min(n, start + shard) - start, dim):
            log.warning("discarding corrupt cached shard %s; it is encoded again", path)
            path.unlink(missing_ok=True)
    units = [Unit(f"{prefix}-{start:010d}", job, (start, min(n, start + shard), str(work / _shard_name(start))),
                  {"ctx": ctx}, label=f"encode {name} [{start}:{min(n, start + shard)}]", gpu=job.gpu)
             for start in starts if not (work / _shard_name(start)).exists()]
    if units:
        for _unit, _res in _map_units(ctx, units, desc=f"encode {name}"):
            pass
    return starts


def _fit_adapter(name: str, mspec: ModalitySpec, dim: int, width: int, work: Path, starts: list[int],
                 ctx: RunContext) -> Adapter | None:
    """The modality's width adapter fitted on its first 50,000 vectors (None when it has none)."""
    if mspec.adapter is None:
        if dim != width:
            raise DataError(f"encoder {mspec.encoder.name!r} outputs {dim}-d vectors but the recipe width is "
                            f"{width}", where=f"modalities.{name}",
                            hint="add an adapter (zero-pad, truncate, random-projection, pca) to this modality, "
                                 "or set the encoder's output width to the recipe width")
        return None
    adapter: Adapter = ctx.build(mspec.adapter)
    adapter.fit(_load_shards(work, starts, limit=50000), width, ctx.rng("adapter", name))
    return adapter


def _adapted_shards(work: Path, starts: list[int], adapter: Adapter | None, mspec: ModalitySpec,
                    width: int) -> Iterator[tuple[int, np.ndarray]]:
    """(start, vectors at the recipe width) per shard, read back from the work folder."""
    for start in starts:
        X = np.load(work / _shard_name(start))
        if adapter is not None:
            X = np.asarray(adapter.transform(X), dtype=np.float32)
            if X.shape[1] != width:
                raise DataError(f"adapter {mspec.adapter.name!r} produced width {X.shape[1]}, expected {width}",
                                where=f"modalities.{mspec.name}.adapter")
        yield start, X


def _commit_store(store_dir: Path, name: str, data: ModalityData, mspec: ModalitySpec, key: str, width: int,
                  dim: int, shards: Iterable[tuple[int, np.ndarray]],
                  made_with: dict[str, Any] | None = None) -> EmbeddingStore:
    """Fill a new store from the shards and commit it atomically with its provenance."""
    n = len(data)
    writer = StoreWriter(store_dir, n, width)
    try:
        for start, X in shards:
            writer.embeddings[start:start + X.shape[0]] = X
    except BaseException:
        writer.abort()
        raise
    items: dict[str, Any] = {"patient_id": data.patient_ids, "item_id": data.item_ids}
    for lname, values in data.labels.items():
        if len(values) == n:
            items[lname] = np.asarray([str(v) for v in values])
    enc_spec, info = mspec.encoder, mspec.encoder.info
    provenance = {
        "modality": name, "source": data.source, "input_fingerprint": data.fingerprint,
        "encoder": {"name": enc_spec.name, "params": enc_spec.to_dict()["params"],
                    "provider": info.dist if info else None, "version": info.version if info else None,
                    "output_dim": dim, **(made_with or {}).get("encoder", {})},
        "adapter": {**mspec.adapter.to_dict(), **(made_with or {}).get("adapter", {})} if mspec.adapter else None,
        "width": width,
        "created": _dt.datetime.now(_dt.timezone.utc).isoformat(), "fusionkit": __version__,
        "cache_key": key,
    }
    return writer.commit(items, modality=name, provenance=provenance)


def _shard_name(start: int) -> str:
    return f"shard-{start:010d}.npy"


_IN_PROCESS = LocalExecutor(workers=1)


def _map_units(ctx: RunContext, units: list[Unit], desc: str) -> Iterable[tuple[Unit, Any]]:
    """Run units through the run's executor with a per-unit progress bar (no result cache:
    the units write their own files atomically and are skipped once those exist)."""
    executor = ctx.executor
    if executor.name == "local":
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

    #: travels to remote workers once per batch (see ray_executor)
    __fusionkit_shared__ = True

    def __init__(self, encoder: Encoder | None, kind: str, enc_name: str, params: dict[str, Any], state_dir: str | None,
                 modality: str, data: ModalityData, dim: int, *, gpu: bool = False):
        self.encoder = encoder
        self.kind, self.enc_name, self.params = kind, enc_name, dict(params)
        self.state_dir, self.modality, self.data, self.dim = state_dir, modality, data, int(dim)
        self.gpu = gpu
        self.system: PluginSystem | None = None  # set by executors that ship the job elsewhere

    def __getstate__(self) -> dict[str, Any]:
        state = dict(self.__dict__)
        state["encoder"] = None
        return state

    def _encoder(self, ctx: RunContext | None) -> Encoder:
        if self.encoder is not None:
            return self.encoder
        cache_key = stable_hash([self.kind, self.enc_name, self.params, self.state_dir])
        enc = _WORKER_ENCODERS.get(cache_key)
        if enc is None:
            system = self.system or (ctx.system if ctx is not None else None)
            if system is None:
                from . import plugins

                system = plugins.load()
            enc = system.info(self.kind, self.enc_name).build(dict(self.params))  # bound at validation
            if self.state_dir is not None:
                enc.load(self.state_dir)
            _WORKER_ENCODERS.clear()  # one model per worker at a time (memory bound)
            _WORKER_ENCODERS[cache_key] = enc
        self.encoder = enc
        return enc

    def __call__(self, start: int, stop: int, path: str, ctx: RunContext | None = None) -> dict[str, Any]:
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


def _shard_ok(path: Path, rows: int, dim: int) -> bool:
    """Whether a cached shard file is a float32 array of the expected shape (read as data only)."""
    try:
        X = np.load(path, mmap_mode="r", allow_pickle=False)
        return X.shape == (rows, dim) and X.dtype == np.float32
    except (ValueError, OSError, EOFError):
        return False


def _load_shards(work: Path, starts: list[int], limit: int) -> np.ndarray:
    parts, total = [], 0
    for start in starts:
        X = np.load(work / _shard_name(start))
        parts.append(X)
        total += len(X)
        if total >= limit:
            break
    return np.concatenate(parts)[:limit]
