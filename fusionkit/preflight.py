"""Semantic checks of a recipe, run by ``validate`` before anything heavy loads.

Names and parameter types are checked while a recipe binds
(:mod:`fusionkit.recipe`); this module checks what they *mean*:

* names that become paths (recipe name, modality/sampling/perturbation/task
  keys) cannot leave the run folder (:func:`fusionkit.safety.check_name`);
* every reader's input files and roots exist (the reader lists them through
  ``fingerprint_inputs``, as a run would);
* widths: encoder -> adapter -> recipe ``width``;
* the planned aggregates fit in the memory this machine has available;
* executor worker counts are whole numbers >= 1 (a local executor is capped
  at the machine's cores when it starts).

Each check returns ``(where, message, hint)`` triples; nothing here imports
torch or builds a model.
"""

from __future__ import annotations

import logging
import os
import re
from typing import Any, Iterator

from .errors import FusionkitError
from .registry import param_schema
from .safety import name_problem

__all__ = ["semantic_issues", "available_memory", "estimate_aggregate_bytes", "cpu_cores"]

log = logging.getLogger("fusionkit")
Issue = tuple[str, str, "str | None"]
_MODEL_PARAMS = ("model", "model_name", "checkpoint", "checkpoint_path", "weights", "hub_id")


def cpu_cores() -> int:
    """Cores this process may use."""
    try:
        return max(1, len(os.sched_getaffinity(0)))
    except (AttributeError, OSError):  # pragma: no cover - not Linux
        return max(1, os.cpu_count() or 1)


def available_memory() -> int | None:
    """Bytes of memory available now (``FUSIONKIT_MEMORY_LIMIT`` overrides), or None if unknown."""
    override = os.environ.get("FUSIONKIT_MEMORY_LIMIT")
    if override:
        try:
            return int(float(override))
        except ValueError:
            log.warning("ignoring FUSIONKIT_MEMORY_LIMIT=%r (not a number of bytes)", override)
    try:
        with open("/proc/meminfo") as fh:
            for line in fh:
                if line.startswith("MemAvailable:"):
                    return int(line.split()[1]) * 1024
    except OSError:
        pass
    try:
        return int(os.sysconf("SC_AVPHYS_PAGES") * os.sysconf("SC_PAGE_SIZE"))
    except (ValueError, OSError, AttributeError):  # pragma: no cover
        return None


def _k_max(k: Any) -> int | None:
    if isinstance(k, bool):
        return None
    if isinstance(k, int):
        return k
    if isinstance(k, (list, tuple)):
        vals = [_k_max(v) for v in k]
        return max((v for v in vals if v is not None), default=None)
    if isinstance(k, str):
        nums = [int(x) for x in re.findall(r"\d+", k)]
        return max(nums) if nums else None
    return None


def estimate_aggregate_bytes(spec: Any, recipe: Any, system: Any) -> int | None:
    """Memory of one sampling entry's aggregates (vectors, counts, presence), or None if unknown
    (the sampler's ``estimate_aggregates`` says how many it plans)."""
    n = spec.info.factory.estimate_aggregates(spec.params, recipe) if spec.info else spec.params.get("n")
    if isinstance(n, bool) or not isinstance(n, int) or n <= 0:
        return None
    width = int(recipe.width)
    k_max = _k_max(spec.params.get("k")) or 1
    try:
        agg = system.create("aggregator", recipe.aggregator.name, recipe.aggregator.params, where="aggregator")
        width = int(agg.output_dim(width, k_max))
    except Exception:  # an aggregator that cannot say keeps the recipe width
        pass
    n_mod = max(1, len(recipe.modalities))
    return n * (width * 4 + n_mod * 5 + 8)


def _names(recipe: Any) -> Iterator[Issue]:
    candidates = [("name", recipe.name)]
    for section in ("modalities", "sampling", "perturbations", "tasks"):
        candidates += [(f"{section}.{key}", key) for key in getattr(recipe, section)]
    for where, name in candidates:
        problem = name_problem(name)
        if problem:
            yield (where, f"name {problem}: it becomes a folder inside the run folder",
                   "use letters, digits, '-', '_' and '.' only")


def _inputs(recipe: Any, system: Any) -> Iterator[Issue]:
    seen: set[str] = set()
    readers = [m.reader for m in recipe.modalities.values()] + list(recipe.labels)
    for spec in readers:
        if spec.where in seen:
            continue
        seen.add(spec.where)
        try:
            reader = system.create("reader", spec.name, spec.params, where=spec.where)
            files = list(reader.fingerprint_inputs() or [])
        except FusionkitError as err:
            yield (f"{spec.where}.params", f"{err.where + ': ' if err.where else ''}{err.message}",
                   err.hint or "check the reader's paths (relative paths resolve against the recipe file)")
            continue
        except Exception as exc:  # a reader that cannot list its inputs is reported, not a traceback
            yield (spec.where, f"reader {spec.name!r} could not list its inputs ({type(exc).__name__}: {exc})",
                   "check the reader's parameters")
            continue
        for path in files:
            if not os.path.exists(str(path)):
                yield (f"{spec.where}.params", f"input not found: {path}",
                       "check the path (relative paths resolve against the recipe file)")


def _declared_width(spec: Any) -> int | None:
    """An encoder's output width known without building it, or None."""
    params = spec.params
    for key in ("dim", "latent_dim", "output_dim"):
        value = params.get(key)
        if isinstance(value, int) and not isinstance(value, bool) and value > 0:  # 0: "from the data"
            return value
    card_dim = (spec.info.metadata or {}).get("dim") if spec.info else None
    if isinstance(card_dim, bool) or not isinstance(card_dim, int) or card_dim <= 0:
        return None
    schema = param_schema(spec.info.factory)  # the card's width holds only for the default model
    for key in _MODEL_PARAMS:
        p = schema.get(key)
        if p is not None and key in params and params[key] != p.default:
            return None
    return card_dim


def _widths(recipe: Any) -> Iterator[Issue]:
    width = int(recipe.width)
    for name, m in recipe.modalities.items():
        dim = _declared_width(m.encoder)
        if dim is None:
            continue
        where = f"modalities.{name}"
        if m.adapter is None:
            if dim != width:
                yield (f"{where}.encoder", f"encoder {m.encoder.name!r} outputs {dim}-d vectors but the recipe "
                       f"width is {width}", f"add an adapter (e.g. `adapter: random-projection`) to {where}, "
                       "or set the width")
            continue
        rule = m.adapter.info.factory.width_rule if m.adapter.info else "any"
        if rule == "grow" and dim > width:
            yield (f"{where}.adapter", f"adapter {m.adapter.name!r} cannot shrink {dim}-d vectors to width {width}",
                   "use truncate, pca or random-projection to reduce the width")
        elif rule == "shrink" and dim < width:
            yield (f"{where}.adapter", f"adapter {m.adapter.name!r} cannot grow {dim}-d vectors to width {width}",
                   "use zero-pad or random-projection to increase the width")


def _memory(recipe: Any, system: Any) -> Iterator[Issue]:
    avail = available_memory()
    if not avail or not recipe.output.get("save_aggregates", True) and not recipe.tasks:
        return
    for name, spec in recipe.sampling.items():
        need = estimate_aggregate_bytes(spec, recipe, system)
        if need is not None and need > avail:
            yield (f"sampling.{name}.params", f"the planned aggregates need about {_size(need)} of memory but "
                   f"{_size(avail)} is available", "lower n (or k, or the width), or run on a larger machine")


def _size(n: float) -> str:
    for unit in ("B", "KiB", "MiB", "GiB", "TiB", "PiB"):
        if n < 1024 or unit == "PiB":
            return f"{n:.0f} {unit}" if unit == "B" else f"{n:.1f} {unit}"
        n /= 1024
    return f"{n:.1f} PiB"  # pragma: no cover


def _workers(recipe: Any) -> Iterator[Issue]:
    workers = (recipe.executor.get("params") or {}).get("workers", 1)
    if workers is None:
        return
    if isinstance(workers, bool) or not isinstance(workers, int) or workers < 1:
        yield ("executor.params.workers", f"workers must be a whole number >= 1, got {workers!r}",
               f"this machine has {cpu_cores()} cores")


def semantic_issues(recipe: Any, system: Any, *, structural_ok: bool = True) -> list[Issue]:
    """Every semantic problem of a bound recipe as ``(where, message, hint)``.

    Names, workers and widths are always checked; inputs and the memory
    estimate only once the recipe is otherwise valid (``structural_ok``).
    """
    issues: list[Issue] = []
    issues += _names(recipe)
    issues += _workers(recipe)
    issues += _widths(recipe)
    if structural_ok and not issues:
        issues += _inputs(recipe, system)
    if structural_ok and not issues:  # the estimate reads params that the checks above vouched for
        issues += _memory(recipe, system)
    return issues
