"""Executors run independent, idempotent units of work (encoding shards,
experiment repeats). Each unit has a cache key; a finished unit's result is
stored atomically under that key, so an interrupted run resumes without
recomputing finished units, whichever executor runs it.

``local`` (default) runs units in this process (workers=1) or in a fork-based
process pool; ``ray`` (optional extra) maps the same units over a Ray cluster.
"""

from __future__ import annotations

import contextlib
import logging
import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable, Iterable, Iterator, Protocol

from .errors import FusionkitError
from .progress import set_unit
from .safety import safe_component
from .store import atomic_write_bytes
from .unitcodec import CorruptUnitError, UnitCodecError, decode_unit, encode_unit

log = logging.getLogger(__name__)


@dataclass
class Unit:
    """One independent piece of work: ``fn(*args, **kwargs)`` with a cache key.

    ``label`` names it in progress bars and errors; ``gpu`` asks executors that
    place work (Ray) for a GPU to run it on, when the cluster has one.
    """

    key: str
    fn: Callable[..., Any]
    args: tuple = ()
    kwargs: dict = field(default_factory=dict)
    label: str = ""
    gpu: bool = False


class Executor(Protocol):
    """What the core asks of an executor (``local``, ``ray``): a name and ``map``."""

    #: "local" runs encoding in the driver process; other executors ship the units
    name: str

    def map(self, units: list[Unit]) -> Iterator[tuple[Unit, Any]]:
        """Run units, yielding ``(unit, result)`` as each finishes (any order)."""
        ...


class UnitCache:
    """Results of finished units, one ``<key>.unit`` file each (written atomically).

    The files hold data, never code (:mod:`fusionkit.unitcodec`: JSON + npz with
    a checksum, no pickle). An entry that is truncated, corrupt or foreign is
    reported with its path, discarded and recomputed.
    """

    SUFFIX = ".unit"

    def __init__(self, folder: str | os.PathLike[str]):
        self.folder = Path(folder)

    def path(self, key: str) -> Path:
        return self.folder / f"{safe_component(key)}{self.SUFFIX}"

    def has(self, key: str) -> bool:
        return self.path(key).exists()

    def get(self, key: str) -> Any:
        """The cached result; :class:`CorruptUnitError` (the entry removed) when it cannot be trusted."""
        path = self.path(key)
        try:
            data = path.read_bytes()
            return decode_unit(data, key=key, where=str(path))
        except (CorruptUnitError, OSError) as err:
            path.unlink(missing_ok=True)
            if isinstance(err, CorruptUnitError):
                raise
            raise CorruptUnitError(f"unreadable cache entry ({err})", where=str(path)) from None

    def lookup(self, key: str) -> tuple[bool, Any]:
        """``(True, result)`` for a trustworthy entry, else ``(False, None)`` (a bad one is logged, removed)."""
        if not self.has(key):
            return False, None
        try:
            return True, self.get(key)
        except CorruptUnitError as err:
            log.warning("discarded %s; the unit is recomputed", err.message + f": {err.where}")
            return False, None

    def put(self, key: str, value: Any, *, label: str = "") -> None:
        try:
            data = encode_unit(key, value)
        except UnitCodecError as err:
            raise UnitCodecError(err.message, where=f"unit {label or key}", hint=err.hint) from None
        atomic_write_bytes(self.path(key), data)


_FORK_UNITS: list[Unit] = []

# OpenBLAS reads these when it loads (scipy loads its own copy later than numpy does)
_BLAS_ENV = ("OPENBLAS_NUM_THREADS", "MKL_NUM_THREADS", "BLIS_NUM_THREADS")


@contextlib.contextmanager
def blas_threads(n: int = 1) -> Iterator[None]:
    """Cap BLAS threads at ``n`` in this process: the libraries loaded now (threadpoolctl, when
    installed) and those loaded inside the block (environment, read when OpenBLAS loads).

    Why one: units run in parallel workers, and OpenBLAS threads spin-wait on each other; with
    more threads than free cores a 1280 x 768 QR took 30 s on 2 threads against 0.28 s on one
    (2-core machine under load), sklearn's lbfgs and GMM likewise. torch's threads are separate.
    """
    old = {k: os.environ.get(k) for k in _BLAS_ENV}
    os.environ.update({k: str(int(n)) for k in _BLAS_ENV})
    limiter = None
    try:
        from threadpoolctl import threadpool_limits

        limiter = threadpool_limits(int(n), user_api="blas")
    except Exception:  # threadpoolctl is optional (it comes with scikit-learn)
        pass
    try:
        yield
    finally:
        if limiter is not None:
            limiter.restore_original_limits()
        for k, v in old.items():
            if v is None:
                os.environ.pop(k, None)
            else:
                os.environ[k] = v


def _run_forked(i: int) -> Any:
    unit = _FORK_UNITS[i]
    set_unit(unit.label or unit.key)  # warnings in run.log name their unit
    try:
        import torch  # noqa: F401  # keep each worker single-threaded: 2 cores, many workers

        torch.set_num_threads(1)
    except Exception:
        pass
    with blas_threads(1):  # and single-threaded BLAS (see blas_threads)
        return unit.fn(*unit.args, **unit.kwargs)


class LocalExecutor:
    """Runs units in-process (workers=1) or in a fork-based process pool."""

    name = "local"

    def __init__(self, workers: int = 1):
        wanted = max(1, int(workers or 1))
        from .preflight import cpu_cores

        cores = cpu_cores()
        if wanted > cores:  # more processes than cores only thrash (and a typo must not fork 100000)
            log.warning("executor.params.workers=%d exceeds the %d core(s) of this machine; using %d",
                        wanted, cores, cores)
        self.workers = min(wanted, cores)

    def map(self, units: list[Unit]) -> Iterator[tuple[Unit, Any]]:
        if self.workers == 1 or len(units) <= 1:
            for unit in units:
                set_unit(unit.label or unit.key)
                yield unit, unit.fn(*unit.args, **unit.kwargs)
            set_unit("")
            return
        import multiprocessing as mp
        from concurrent.futures import ProcessPoolExecutor, as_completed

        global _FORK_UNITS
        _FORK_UNITS = list(units)
        try:
            ctx = mp.get_context("fork")
            with ProcessPoolExecutor(max_workers=self.workers, mp_context=ctx) as pool:
                futures = {pool.submit(_run_forked, i): units[i] for i in range(len(units))}
                for fut in as_completed(futures):
                    unit = futures[fut]
                    try:
                        value = fut.result()
                    except Exception as exc:
                        log.error("unit %s failed: %s: %s", unit.label or unit.key, type(exc).__name__, exc)
                        raise
                    yield unit, value
        finally:
            _FORK_UNITS = []


def make_executor(name: str = "local", **params: Any) -> Executor:
    if name == "local":
        return LocalExecutor(workers=params.get("workers", 1))
    if name == "ray":
        try:
            from .ray_executor import RayExecutor
        except ImportError as exc:
            raise FusionkitError("the ray executor needs the optional extra: pip install 'fusionkit[ray]'",
                                 where="executor.name", hint="or use executor: local") from exc
        return RayExecutor(**params)
    raise FusionkitError(f"unknown executor {name!r}", where="executor.name", hint="use 'local' or 'ray'")


def run_units(units: Iterable[Unit], cache: UnitCache, executor: Executor, *, progress: Any = None) -> dict[str, Any]:
    """Run every unit whose key is not cached yet; return {key: result} for all units."""
    units = list(units)
    keys = [u.key for u in units]
    if len(set(keys)) != len(keys):
        raise FusionkitError("duplicate unit keys in one batch of work")
    results: dict[str, Any] = {}
    todo = []
    for unit in units:
        found, value = cache.lookup(unit.key)
        if found:
            results[unit.key] = value
        else:
            todo.append(unit)
    if todo:
        log.info("running %d unit(s), %d reused from cache", len(todo), len(units) - len(todo))
    bar = progress(total=len(todo)) if (progress is not None and todo) else None
    try:
        for unit, value in executor.map(todo):
            cache.put(unit.key, value, label=unit.label)  # as soon as it finishes: an interruption never loses it
            results[unit.key] = value
            log.debug("unit %s finished", unit.label or unit.key)
            if bar is not None:
                if unit.label and hasattr(bar, "set_postfix_str"):
                    bar.set_postfix_str(unit.label, refresh=False)
                bar.update(1)
    finally:
        if bar is not None:
            bar.close()
    return results
