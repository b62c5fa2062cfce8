"""Cache keys that never lie: what a cached result was computed *with*.

A component's parameters and version are not enough to name its output:

* **code** — a plugin edited without bumping its version computes something
  else. :func:`source_fingerprint` hashes the source file of the component's
  class and of every class it inherits from outside the fusionkit core (for
  a factory function: its module file). Editing a plugin module invalidates
  the caches of the components defined in it.
* **weights** — new weights saved into the same local model folder or
  checkpoint file. :func:`weights_fingerprint` finds the parameters that
  name weights (those listed in the component's ``weights_params``, else
  those whose name says model/checkpoint/weights/pretrained/...) whose value
  is an existing local file or folder, and hashes its whole content (:mod:`fusionkit.fingerprint`: every byte, cached
  by stat, so an unchanged 400 MB folder costs a ``stat`` per file).

:func:`component_key` puts both into the cache key of a component spec; the
encode stage uses it for embedding stores, the task stage for repeat units.
"""

from __future__ import annotations

import hashlib
import inspect
import os
import re
import sys
from pathlib import Path
from typing import Any, Iterable

__all__ = ["source_files", "source_fingerprint", "code_closure", "closure_fingerprint", "local_paths",
           "weights_fingerprint", "component_key"]

#: parameter strings longer than this are never paths
_MAX_PATH = 4096


def _is_core(module: str) -> bool:
    return module in ("builtins", "fusionkit") or module.startswith("fusionkit.")


def source_files(factory: Any) -> list[Path]:
    """Source files that define ``factory``: its class and non-core bases, or a function's module."""
    objs: Iterable[Any] = inspect.getmro(factory) if inspect.isclass(factory) else (factory,)
    files: list[Path] = []
    for obj in objs:
        module = getattr(obj, "__module__", None) or ""
        if _is_core(module):
            continue
        mod = sys.modules.get(module)
        path = getattr(mod, "__file__", None) if mod is not None else None
        if not path:
            try:
                path = inspect.getsourcefile(obj)
            except (TypeError, OSError):
                path = None
        if path and path.endswith(".py") and os.path.isfile(path):
            p = Path(path).resolve()
            if p not in files:
                files.append(p)
    return files


def source_fingerprint(factory: Any, length: int = 16) -> str:
    """sha256 of the source files of ``factory`` (see :func:`source_files`); '' when it has none."""
    return _hash_files(source_files(factory), length, lambda f: f.name)


def _hash_files(files: list[Path], length: int, label: Any) -> str:
    """sha256 of each file's ``label(path)`` and content, in order; '' for no files. Small files,
    read every time: a stat-based memo can miss a same-size edit."""
    if not files:
        return ""
    h = hashlib.sha256()
    for f in files:
        h.update(label(f).encode())
        h.update(hashlib.sha256(f.read_bytes()).digest())
    return h.hexdigest()[:length]


def _module_file(name: str) -> Path | None:
    mod = sys.modules.get(name)
    path = getattr(mod, "__file__", None) if mod is not None else None
    if path and path.endswith(".py") and os.path.isfile(path):
        return Path(path).resolve()
    return None


def code_closure(factory: Any) -> list[Path]:
    """Source files a component's work runs: :func:`source_files`, every module of the
    same plugin distribution imported from them (transitively, as a module or by name,
    e.g. ``from ..patient.common import x``), and all modules of each plugin package met
    (``fusionkit_plugins.tasks.survival``: imports inside functions are covered too).
    Room-level packages (``fusionkit_plugins``, ``fusionkit_plugins.tasks``) are not
    expanded, so an edit of one plugin never re-keys another; the fusionkit core is left
    out (its version is keyed elsewhere). A task whose units live in helper modules is
    re-keyed when any of them is edited, not only when the task class's module is."""
    seeds = [getattr(o, "__module__", "") or "" for o in
             (inspect.getmro(factory) if inspect.isclass(factory) else (factory,))]
    seeds = list(dict.fromkeys(m for m in seeds if m and not _is_core(m)))
    roots = {m.split(".")[0] for m in seeds}

    def room(name: str) -> bool:  # a namespace of many plugins, not one plugin's package
        return name.count(".") < 2 and hasattr(sys.modules.get(name), "__path__")

    todo, seen = list(seeds), set()
    while todo:
        name = todo.pop()
        if name in seen or (room(name) and name not in seeds):
            continue
        seen.add(name)
        mod = sys.modules.get(name)
        if mod is None:
            continue
        pkg = name if hasattr(mod, "__path__") else name.rpartition(".")[0]
        if pkg and not room(pkg):
            todo += [m for m in list(sys.modules) if m == pkg or m.rpartition(".")[0] == pkg]
        for value in list(vars(mod).values()):
            ref = value.__name__ if inspect.ismodule(value) else getattr(value, "__module__", None)
            if isinstance(ref, str) and ref.split(".")[0] in roots and not _is_core(ref):
                todo.append(ref)
    files = set(source_files(factory)) | {f for f in (_module_file(n) for n in seen) if f is not None}
    for n in seen:  # modules of a plugin package not imported yet (imported inside functions)
        pkg = n if hasattr(sys.modules.get(n), "__path__") else n.rpartition(".")[0]
        f = _module_file(pkg) if pkg and not room(pkg) else None
        if f is not None:
            files.update(x.resolve() for x in f.parent.glob("*.py"))
    return sorted(files)


def closure_fingerprint(factory: Any, length: int = 16) -> str:
    """sha256 of :func:`code_closure` (file names relative to their package and contents)."""
    return _hash_files(code_closure(factory), length, lambda f: f"{f.parent.name}/{f.name}")


#: parameter names taken as weights by default (a component may list its own in ``weights_params``)
WEIGHTS_NAME = re.compile(r"model|checkpoint|ckpt|weight|pretrained|state_dict|tokenizer", re.I)


def local_paths(params: Any, names: Iterable[str] | None = None) -> list[str]:
    """Strings that name an existing local file or folder, in the parameters ``names``
    (default: those whose name matches :data:`WEIGHTS_NAME`), nested values included."""
    found: list[str] = []
    wanted = set(names) if names is not None else None

    def walk(v: Any) -> None:
        if isinstance(v, dict):
            for x in v.values():
                walk(x)
        elif isinstance(v, (list, tuple)):
            for x in v:
                walk(x)
        elif isinstance(v, (str, os.PathLike)):
            s = os.fspath(v)
            if 0 < len(s) <= _MAX_PATH and "\n" not in s:
                p = os.path.expanduser(s)
                if os.path.exists(p):
                    real = os.path.realpath(p)
                    if real not in found:
                        found.append(real)

    for key, value in (params or {}).items():
        if (key in wanted) if wanted is not None else bool(WEIGHTS_NAME.search(str(key))):
            walk(value)
    return found


def weights_fingerprint(params: Any, names: Iterable[str] | None = None) -> dict[str, str]:
    """{local path: content fingerprint} of every local weights file or folder named in ``params``."""
    from .fingerprint import file_fingerprint

    out = {}
    for p in local_paths(params, names):
        try:
            out[p] = file_fingerprint(p)
        except Exception as exc:  # noqa: BLE001 - an unreadable path still changes the key
            out[p] = f"unreadable:{type(exc).__name__}"
    return out


def component_key(spec: Any) -> dict[str, Any]:
    """What a component spec computes with beyond its parameters: ``{"code": ..., "weights": {...}}``.

    ``spec`` is a recipe :class:`~fusionkit.recipe.Spec` (its ``info.factory``
    and ``params`` are read); None gives an empty key.
    """
    if spec is None:
        return {}
    info = getattr(spec, "info", None)
    factory = getattr(info, "factory", None)
    names = getattr(factory, "weights_params", None)
    return {"code": source_fingerprint(factory) if factory is not None else "",
            "weights": weights_fingerprint(getattr(spec, "params", {}) or {}, names)}
