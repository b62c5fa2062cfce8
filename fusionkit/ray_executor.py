"""Ray executor: maps fusionkit units (encoding shards, experiment repeats) over a
Ray cluster (optional extra: ``pip install 'fusionkit[ray]'``).

Recipe::

    executor: {name: ray, params: {address: "ray://head:10001", workers: 8}}

or ``fusionkit run recipe.yaml --executor ray --address auto``.

How a unit travels
------------------
The heavy objects units share (the run context with its recipe, plugin system
and embedding pool, the modality data of an encoding job) are pickled **once**
per batch into a "shared" blob that is put in the object store once; each unit
is pickled separately and refers to them by persistent id, so a unit's payload
is a few hundred bytes. Memory-mapped arrays (the stores) travel as
``(file, dtype, offset, shape)`` and are re-opened memory-mapped in the worker:
nothing big is copied (workers must see the same file system, e.g. a shared
cache folder on a cluster). The plugin system travels as its registry
(component factories), so plugins registered in-process (tests, notebooks,
``--plugins-dir``) work in the workers too. Workers rebuild a shared blob once
per process and keep only the latest one.

Results are small (paths of atomically written shards, metric rows): the
driver writes each unit's result to the :class:`~fusionkit.executors.UnitCache`
as soon as it arrives, so a worker killed mid-run never loses finished units;
Ray retries a crashed unit (``max_retries``), and a resumed run skips every unit
whose key is cached.
"""

from __future__ import annotations

import io
import logging
import mmap
import os
import pickle
import time
import uuid
from typing import Any, Iterator

import numpy as np
import ray
from ray import cloudpickle

from .errors import FusionkitError

log = logging.getLogger(__name__)

DEFAULT_OBJECT_STORE = 256 * 1024 * 1024  # bytes; units exchange paths and small dicts only


# ----------------------------------------------------------------------------- pickling

def _is_shared(obj: Any) -> bool:
    """Objects whose class declares ``__fusionkit_shared__`` travel once per batch."""
    return bool(getattr(type(obj), "__fusionkit_shared__", False))


def _open_memmap(filename: str, dtype: str, offset: int, shape: tuple, order: str) -> np.ndarray:
    return np.memmap(filename, dtype=np.dtype(dtype), mode="r", offset=offset, shape=shape, order=order)


class _Pickler(cloudpickle.Pickler):
    """cloudpickle + memmaps by file reference + light plugin systems / run contexts;
    with ``shared`` set, objects of the shared types are replaced by persistent ids."""

    def __init__(self, file: Any, shared: list[Any] | None = None):
        super().__init__(file, protocol=pickle.HIGHEST_PROTOCOL)
        self._shared = shared
        self._ids: dict[int, int] = {}

    def persistent_id(self, obj: Any) -> Any:  # noqa: D401
        if self._shared is None or not _is_shared(obj):
            return None
        i = self._ids.get(id(obj))
        if i is None:
            i = self._ids[id(obj)] = len(self._shared)
            self._shared.append(obj)
        return ("fusionkit-shared", i)

    def reducer_override(self, obj: Any) -> Any:
        if isinstance(obj, np.memmap) and isinstance(obj.base, mmap.mmap) and obj.filename:
            order = "F" if (obj.flags.f_contiguous and not obj.flags.c_contiguous) else "C"
            return _open_memmap, (str(obj.filename), obj.dtype.str, int(obj.offset), tuple(obj.shape), order)
        reduce = getattr(type(obj), "__fusionkit_reduce__", None)
        if reduce is not None and not isinstance(obj, type):
            return reduce(obj)  # the object says how it travels (run context, plugin system)
        return super().reducer_override(obj)


def dumps_units(units: list[Any]) -> tuple[bytes, list[bytes]]:
    """(shared blob, one small payload per unit)."""
    shared: list[Any] = []
    payloads = []
    for unit in units:
        buf = io.BytesIO()
        _Pickler(buf, shared).dump((unit.fn, unit.args, unit.kwargs))
        payloads.append(buf.getvalue())
    buf = io.BytesIO()
    _Pickler(buf).dump(shared)
    return buf.getvalue(), payloads


class _Unpickler(pickle.Unpickler):
    def __init__(self, file: Any, shared: list[Any]):
        super().__init__(file)
        self._shared = shared

    def persistent_load(self, pid: Any) -> Any:
        return self._shared[pid[1]]


def loads_unit(payload: bytes, shared: list[Any]) -> tuple[Any, tuple, dict]:
    return _Unpickler(io.BytesIO(payload), shared).load()


_WORKER_SHARED: dict[str, list[Any]] = {}


def _shared_for(token: str, blob: bytes) -> list[Any]:
    shared = _WORKER_SHARED.get(token)
    if shared is None:
        _WORKER_SHARED.clear()  # keep one batch's shared objects per worker (memory bound)
        shared = _WORKER_SHARED[token] = pickle.loads(blob)
    return shared


def _execute(token: str, blob: bytes, payload: bytes) -> Any:
    fn, args, kwargs = loads_unit(payload, _shared_for(token, blob))
    return fn(*args, **kwargs)


_remote_execute = None


def _remote() -> Any:
    global _remote_execute
    if _remote_execute is None:
        _remote_execute = ray.remote(_execute)
    return _remote_execute


# ----------------------------------------------------------------------------- executor

class UnitFailed(FusionkitError):
    """One or more units failed on Ray workers (after Ray's retries)."""


class RayExecutor:
    """Runs units as Ray tasks, at most ``workers`` in flight.

    * ``address``: an existing cluster (``auto``, ``ray://host:10001``); none
      starts a local Ray instance with ``num_cpus`` (default ``workers``) CPUs
    * ``num_gpus``: GPUs per GPU-wanting unit (tile/image encoders); default 1
      when the cluster has GPUs, else 0
    * ``max_retries``: Ray retries of a unit whose worker died (default 3)
    * ``object_store_memory``: bytes for a local instance's object store (256 MiB)
    """

    name = "ray"

    def __init__(self, workers: int | None = None, address: str | None = None, num_cpus: int | None = None,
                 num_gpus: float | None = None, max_retries: int = 3, object_store_memory: int | None = None,
                 **init_kwargs: Any):
        self.workers = int(workers) if workers else None
        self.address = address
        self.num_cpus = num_cpus
        self.num_gpus = num_gpus
        self.max_retries = int(max_retries)
        self.object_store_memory = object_store_memory
        self.init_kwargs = init_kwargs
        #: per-unit timings of the last map: (label, seconds from submit to result)
        self.last_timings: list[tuple[str, float]] = []

    # ---------------------------------------------------------------- cluster
    def ensure_started(self) -> None:
        if ray.is_initialized():
            return
        kw: dict[str, Any] = {"include_dashboard": False, "log_to_driver": False, "ignore_reinit_error": True,
                              "configure_logging": False}
        if self.address:
            kw["address"] = self.address
        else:
            kw["num_cpus"] = int(self.num_cpus or self.workers or os.cpu_count() or 1)
            kw["object_store_memory"] = int(self.object_store_memory or DEFAULT_OBJECT_STORE)
            if self.num_gpus is not None:
                kw["num_gpus"] = int(np.ceil(self.num_gpus))
        kw.update(self.init_kwargs)
        try:
            ray.init(**kw)
        except Exception as exc:  # pragma: no cover - depends on the cluster
            raise FusionkitError(f"cannot start or reach Ray ({type(exc).__name__}: {exc})", where="executor.params",
                                 hint="check executor.params.address (`ray status` on the head node), "
                                      "or use executor: local") from exc

    def _window(self) -> int:
        if self.workers:
            return self.workers
        return max(1, int(ray.cluster_resources().get("CPU", 1)))

    def _gpu_per_unit(self) -> float:
        if self.num_gpus is not None:
            return float(self.num_gpus)
        return 1.0 if ray.cluster_resources().get("GPU", 0) > 0 else 0.0

    # ---------------------------------------------------------------- map
    def map(self, units: list[Any]) -> Iterator[tuple[Any, Any]]:
        """Yield (unit, result) as units finish; raise :class:`UnitFailed` at the end
        naming every unit that failed (the others' results are yielded first)."""
        units = list(units)
        self.last_timings = []
        if not units:
            return
        self.ensure_started()
        blob, payloads = dumps_units(units)
        token = uuid.uuid4().hex
        blob_ref = ray.put(blob)
        del blob
        remote = _remote()
        gpu = self._gpu_per_unit()
        window = self._window()
        pending: dict[Any, tuple[int, float]] = {}
        failures: list[tuple[Any, BaseException]] = []
        nxt = 0
        try:
            while nxt < len(units) or pending:
                while nxt < len(units) and len(pending) < window:
                    unit = units[nxt]
                    opts: dict[str, Any] = {"num_cpus": 1, "max_retries": self.max_retries,
                                            "retry_exceptions": False, "name": (unit.label or unit.key)[:100]}
                    if gpu and unit.gpu:
                        opts["num_gpus"] = gpu
                        opts["max_calls"] = 0  # keep the worker (and its loaded model) between units
                    ref = remote.options(**opts).remote(token, blob_ref, payloads[nxt])
                    pending[ref] = (nxt, time.perf_counter())
                    payloads[nxt] = b""
                    nxt += 1
                done, _ = ray.wait(list(pending), num_returns=1)
                for ref in done:
                    i, t0 = pending.pop(ref)
                    unit = units[i]
                    try:
                        value = ray.get(ref)
                    except KeyboardInterrupt:
                        raise
                    except Exception as exc:
                        cause = getattr(exc, "cause", None) or exc
                        log.error("unit %s failed on a Ray worker: %s: %s", unit.label or unit.key,
                                  type(cause).__name__, cause)
                        failures.append((unit, cause))
                        continue
                    self.last_timings.append((unit.label or unit.key, time.perf_counter() - t0))
                    yield unit, value
        except BaseException:
            for ref in pending:
                ray.cancel(ref, force=False)
            raise
        if failures:
            if len(failures) == 1 and isinstance(failures[0][1], FusionkitError):
                raise failures[0][1]
            lines = [f"{u.label or u.key}: {type(e).__name__}: {str(e).splitlines()[0] if str(e) else ''}"
                     for u, e in failures]
            raise UnitFailed(f"{len(failures)} of {len(units)} unit(s) failed on Ray workers: " + "; ".join(lines),
                             where="executor ray",
                             hint="finished units are cached: fix the cause and run again to resume") \
                from failures[0][1]

    def close(self) -> None:
        if ray.is_initialized():
            ray.shutdown()
