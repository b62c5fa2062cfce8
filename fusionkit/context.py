"""The run context: everything a plugin may touch of a run.

Readers, encoders and tasks receive a :class:`RunContext`. It carries the seed
(and derives per-purpose seeds and generators from it), builds the recipe's
components, plans/perturbs/aggregates draws from the embedding pool, runs
independent units of work through the run's executor with a per-unit cache,
and writes outputs under the run folder.

A context travels to other processes (Ray workers) through
:meth:`RunContext.__fusionkit_reduce__`: recipe, plugin system, folders, pool
and current task; the executor there is a local one.
"""

from __future__ import annotations

import copy
import hashlib
import json
import logging
import os
import shutil
import sys
from pathlib import Path
from typing import TYPE_CHECKING, Any, Callable, Iterable

import numpy as np

from .components import Aggregates, Aggregator, DrawPlan, Index, Perturbation, Sampler
from .errors import FusionkitError
from .executors import Executor, LocalExecutor, Unit, UnitCache, run_units
from .pool import EmbeddingPool, aggregate
from .recipe import Recipe, Spec
from .registry import suggest
from .safety import ensure_inside, safe_component
from .store import atomic_write_bytes, atomic_write_json, atomic_write_text, stable_hash

if TYPE_CHECKING:  # type checkers only
    from .plugins import PluginSystem

log = logging.getLogger("fusionkit")

__all__ = ["RunContext", "derive_seed", "safe_name", "Unit"]


def derive_seed(*parts: Any) -> int:
    """A stable 63-bit seed from any JSON-able parts (recipe seed, stage names...)."""
    digest = hashlib.sha256(json.dumps([str(p) for p in parts]).encode()).digest()
    return int.from_bytes(digest[:8], "little") & ((1 << 63) - 1)


def _progress_factory(enabled: bool | None) -> Callable[..., Any] | None:
    from .progress import current

    console = current()  # the CLI's one display for the whole run, when there is one
    if console.mode != "off" and enabled is not False:
        return console.bar
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
    """What readers, encoders and tasks see of a run: everything a plugin may touch.

    Attributes (read them; the engine sets them):

    * ``recipe``: the validated :class:`~fusionkit.recipe.Recipe` (``recipe.tasks``,
      ``recipe.sampling``, ``recipe.primary_label``...)
    * ``system``: the :class:`~fusionkit.plugins.PluginSystem` (``system.create``
      builds any registered component from unbound parameters)
    * ``seed``: the recipe seed; ``out_dir``: the run folder; ``cache_dir``: the cache
    * ``pool``: the :class:`~fusionkit.pool.EmbeddingPool` (None while reading/encoding)
    * ``executor``: runs units (``local`` or ``ray``); ``task_name``: the recipe name of
      the task being run (None outside tasks); ``timings``: seconds per stage
      (plugins may add entries); ``log``: the ``fusionkit`` logger; ``device``: cuda/cpu

    Methods:

    * seeds: ``seed_for(*keys)``, ``rng(*keys)`` (stable per purpose; never global state)
    * components: ``build(spec)``, ``sampler(name)``, ``perturbation(name)``,
      ``aggregator()``, ``index(spec)``
    * sampling: ``plan``, ``aggregate``, ``sample`` (plan + perturb + aggregate)
    * repeats: ``unit_key``, ``unit_cache``, ``unit_cached``, ``run_units`` (cached per
      key, so an interrupted run resumes); ``progress(iterable)``
    * outputs under ``out_dir``: ``path``, ``write_json``, ``write_csv``, ``save_figure``
    """

    #: objects of this class travel to remote workers once per batch (see ray_executor)
    __fusionkit_shared__ = True

    def __init__(self, recipe: Recipe, system: "PluginSystem", out_dir: Path, cache_dir: Path, *,
                 progress: bool | None = None, executor: Executor | None = None):
        self.recipe = recipe
        self.system = system
        self.out_dir = Path(out_dir)
        self.cache_dir = Path(cache_dir)
        self.seed = int(recipe.seed)
        self.pool: EmbeddingPool | None = None
        self.log = log
        self._progress = _progress_factory(progress)
        self.executor: Executor = executor if executor is not None else LocalExecutor(workers=1)
        self.timings: dict[str, float] = {}
        self.task_name: str | None = None
        #: stages to recompute instead of reusing the cache (``run --refresh``): encode, tasks,
        #: a task's recipe name, or all
        self.refresh: set[str] = set()
        self._refreshed: set[str] = set()
        self._task_code: dict[str, str] = {}

    def refreshes(self, stage: str) -> bool:
        """Whether ``stage`` is to be recomputed in this run (``run --refresh STAGE|all``)."""
        return bool(self.refresh & {stage, "all"})

    def __fusionkit_reduce__(self) -> tuple[Any, tuple]:
        """How a context travels to another process: rebuilt there with a local executor."""
        return _rebuild_context, (self.recipe, self.system, self.out_dir, self.cache_dir, self.pool, self.task_name)

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
        """Build a recipe component from its spec: its parameters were bound at
        validation and are not bound again (a copy, so the recipe stays as resolved)."""
        if spec.info is None:
            return self.system.create(spec.kind, spec.name, spec.params, where=spec.where)
        return spec.info.build(copy.deepcopy(spec.params))

    def sampler(self, name: str) -> Sampler:
        return self.build(self._named(self.recipe.sampling, name, "sampling"))

    def perturbation(self, name: str) -> Perturbation:
        return self.build(self._named(self.recipe.perturbations, name, "perturbations"))

    def aggregator(self) -> Aggregator:
        return self.build(self.recipe.aggregator)

    def index(self, spec: Spec | dict | str | None = None) -> Index:
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
            raise FusionkitError(f"no {section} entry named {name!r}", where=section,
                                 hint=suggest(name, list(table)) or f"entries: {', '.join(table) or '(none)'}")
        return table[name]

    # ---------------------------------------------------------------- sampling
    def plan(self, sampling: str | Sampler, *, pool: EmbeddingPool | None = None, seed_keys: tuple = (),
             **overrides: Any) -> DrawPlan:
        """A DrawPlan from a recipe sampling entry (or a Sampler), params overridable."""
        pool = pool or self.pool
        if pool is None:
            raise FusionkitError("the embedding pool is not built yet")
        if isinstance(sampling, str):
            spec = self._named(self.recipe.sampling, sampling, "sampling")
            # overridden parameters are new values: they are checked (bound) like the recipe's
            sampler = (self.system.create("sampler", spec.name, {**spec.params, **overrides}, where=spec.where)
                       if overrides else self.build(spec))
            key = sampling
        else:
            sampler = sampling.set_params(**overrides) if overrides else sampling
            key = type(sampling).__name__
        return sampler.plan(pool, self.rng("sample", key, *seed_keys))

    def aggregate(self, plan: DrawPlan, *, pool: EmbeddingPool | None = None, seed_keys: tuple = (),
                  aggregator: Aggregator | None = None, chunk: int = 2048) -> Aggregates:
        pool = pool or self.pool
        return aggregate(plan, pool, aggregator or self.aggregator(), chunk=chunk,
                         noise_seed=self.seed_for("noise", *seed_keys))

    def sample(self, sampling: str | Sampler, *, pool: EmbeddingPool | None = None, seed_keys: tuple = (),
               perturbation: str | Perturbation | None = None, aggregator: Aggregator | None = None,
               **overrides: Any) -> Aggregates:
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
                            "aggregator": self.recipe.aggregator.key(), "parts": list(parts),
                            "code": self._code_of_task()}, length=20)

    def _code_of_task(self) -> str:
        """Fingerprint of the code the running task's units run (:func:`fusionkit.cachekeys.closure_fingerprint`:
        the task's module, the plugin modules it imports and their packages): edited code, new keys."""
        spec = self.recipe.tasks.get(self.task_name) if self.task_name else None
        if spec is None or spec.info is None:
            return ""
        if self.task_name not in self._task_code:
            from .cachekeys import closure_fingerprint

            self._task_code[self.task_name] = closure_fingerprint(spec.info.factory)
        return self._task_code[self.task_name]

    def unit_cache(self, group: str) -> UnitCache:
        """The cache of finished units of one group (a task's repeats, say); emptied once per run
        when the task is refreshed (``run --refresh tasks|<task>|all``)."""
        cache = UnitCache(self.cache_dir / "units" / safe_name(self.recipe.name) / safe_name(group))
        if group not in self._refreshed and (self.refreshes("tasks") or self.refresh & {group, self.task_name}):
            self._refreshed.add(group)
            shutil.rmtree(cache.folder, ignore_errors=True)
        return cache

    def unit_cached(self, group: str, key: str) -> bool:
        """Whether the unit ``key`` of ``group`` finished in an earlier run (it will be reused)."""
        return self.unit_cache(group).has(key)

    def run_units(self, group: str, units: list[Unit]) -> dict[str, Any]:
        """Run independent units (e.g. repeats); finished ones are reused after an interruption."""
        return run_units(units, self.unit_cache(group), self.executor, progress=self._bar(desc=group))

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
        """``out_dir / rel`` with its folder created; a path that would leave the run folder
        (``..``, absolute, through a symlink) is refused naming the running task."""
        where = f"tasks.{self.task_name}" if self.task_name else "output"
        real = ensure_inside(self.out_dir, rel, where=where)
        p = self.out_dir / real.relative_to(os.path.realpath(self.out_dir))
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


def safe_name(name: str) -> str:
    """A name made safe for one path component (see :func:`fusionkit.safety.safe_component`)."""
    return safe_component(name)


def _rebuild_context(recipe: Recipe, system: "PluginSystem", out_dir: Path, cache_dir: Path,
                     pool: EmbeddingPool | None, task_name: str | None) -> RunContext:
    ctx = RunContext(recipe, system, out_dir, cache_dir, progress=False, executor=LocalExecutor(1))
    ctx.pool = pool
    ctx.task_name = task_name
    return ctx
