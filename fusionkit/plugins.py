"""Plugin loading: built-ins, entry points (group ``fusionkit``) and one-file
plugins from a folder, each loaded on its own so one broken plugin never stops
the tool.

Environment variables:
  ``FUSIONKIT_STRICT=1``           any plugin problem is an error (as ``--strict``)
  ``FUSIONKIT_PLUGINS_ALLOW=a,b``  load only these third-party distributions / entry points
  ``FUSIONKIT_PLUGINS_BLOCK=a,b``  never load these (built-ins too, by their short name,
                                   e.g. ``builtin.readers.text``; the 0.1 names such as
                                   ``builtin.readers`` still work)
  ``FUSIONKIT_PLUGINS_DIR=DIR``    like ``--plugins-dir``
"""

from __future__ import annotations

import importlib
import importlib.metadata as importlib_metadata
import importlib.util
import inspect
import logging
import os
import sys
import traceback
from dataclasses import dataclass, field
from pathlib import Path
from types import ModuleType
from typing import Any, Iterable

import pluggy

from . import hookspecs
from .components import BASES
from .errors import PluginError
from .registry import ComponentInfo, Registry, suggest

log = logging.getLogger(__name__)

ENTRY_POINT_GROUP = "fusionkit"

#: built-in plugin modules, registered through the same hooks as third-party ones
BUILTIN_PLUGINS = (
    "fusionkit_plugins.sampling.samplers",
    "fusionkit_plugins.sampling.aggregators",
    "fusionkit_plugins.sampling.perturbations",
    "fusionkit_plugins.encoders.adapters",
    "fusionkit_plugins.encoders.identity",
    "fusionkit_plugins.encoders.omics_vae",
    "fusionkit_plugins.encoders.pca",
    "fusionkit_plugins.encoders.text",
    "fusionkit_plugins.encoders.tiles",
    "fusionkit_plugins.readers.precomputed",
    "fusionkit_plugins.readers.rna",
    "fusionkit_plugins.readers.maf",
    "fusionkit_plugins.readers.text",
    "fusionkit_plugins.readers.clinical",
    "fusionkit_plugins.readers.image",
    "fusionkit_plugins.readers.patch_features",
    "fusionkit_plugins.readers.scverse",
    "fusionkit_plugins.readers.slides",
    "fusionkit_plugins.readers.tcga",
    "fusionkit_plugins.readers.synthetic",
    "fusionkit_plugins.indexes.faiss",
    "fusionkit_plugins.indexes.numpy_exact",
    "fusionkit_plugins.indexes.query",
    "fusionkit_plugins.tasks.recognizer.task",
    "fusionkit_plugins.tasks.patient.classifier",
    "fusionkit_plugins.tasks.patient.gmm",
    "fusionkit_plugins.tasks.patient.similarity",
    "fusionkit_plugins.tasks.patient.retrieval",
    "fusionkit_plugins.tasks.survival.task",
    "fusionkit_plugins.tasks.distill.task",
)

#: short names of the 0.1 flat layout, still accepted by FUSIONKIT_PLUGINS_BLOCK
LEGACY_BUILTIN_NAMES = {
    "builtin.samplers": ("builtin.sampling.samplers",),
    "builtin.aggregators": ("builtin.sampling.aggregators",),
    "builtin.perturbations": ("builtin.sampling.perturbations",),
    "builtin.adapters": ("builtin.encoders.adapters",),
    "builtin.precomputed": ("builtin.readers.precomputed", "builtin.encoders.identity"),
    "builtin.readers": ("builtin.readers.rna", "builtin.readers.maf", "builtin.readers.text",
                        "builtin.readers.clinical", "builtin.readers.image", "builtin.readers.tcga"),
    "builtin.synthetic": ("builtin.readers.synthetic",),
    "builtin.omics_vae": ("builtin.encoders.omics_vae",),
    "builtin.text_encoders": ("builtin.encoders.text",),
    "builtin.tile_encoders": ("builtin.encoders.tiles",),
    "builtin.indexes": ("builtin.indexes.faiss", "builtin.indexes.numpy_exact", "builtin.indexes.query"),
    "builtin.tasks_recognizer": ("builtin.tasks.recognizer.task",),
    "builtin.tasks_patient": ("builtin.tasks.patient.classifier", "builtin.tasks.patient.gmm",
                              "builtin.tasks.patient.similarity", "builtin.tasks.patient.retrieval"),
    "builtin.distill": ("builtin.tasks.distill.task",),
}


def builtin_short_name(modname: str) -> str:
    """``fusionkit_plugins.readers.rna`` -> ``builtin.readers.rna`` (the name shown and blocked)."""
    return "builtin." + modname.split(".", 1)[1]


def expand_block(block: set[str]) -> set[str]:
    """Block names with the 0.1 short names expanded to the modules that replaced them."""
    out = set(block)
    for name in block:
        out.update(LEGACY_BUILTIN_NAMES.get(name, ()))
    return out


@dataclass
class PluginRecord:
    """What happened when one plugin was loaded."""

    name: str
    source: str  # "builtin" | "entrypoint" | "dir"
    dist: str | None = None
    version: str | None = None
    #: ok | broken | disabled | duplicate | unknown-hook
    status: str = "ok"
    hooks: list[str] = field(default_factory=list)
    error: str | None = None
    traceback: str | None = None
    components: list[str] = field(default_factory=list)

    @property
    def builtin(self) -> bool:
        return self.source == "builtin"

    @property
    def label(self) -> str:
        if self.dist:
            return f"plugin {self.name!r} (distribution {self.dist} {self.version or ''})".replace(" )", ")")
        return f"plugin {self.name!r}"

    def as_dict(self) -> dict[str, Any]:
        return {
            "name": self.name, "source": self.source, "dist": self.dist, "version": self.version,
            "status": self.status, "hooks": self.hooks, "error": self.error,
            "components": self.components, "builtin": self.builtin,
        }


def _split_env(value: str | None) -> set[str]:
    return {v.strip() for v in (value or "").split(",") if v.strip()}


class PluginSystem:
    """A plugin manager plus the registry it filled. Build one with :func:`load`.

    Core code talks to this typed facade, never to ``pm.hook`` directly.
    """

    #: travels to remote workers once per batch, as its registry (see ray_executor)
    __fusionkit_shared__ = True

    def __fusionkit_reduce__(self) -> tuple[Any, tuple]:
        """How a plugin system travels: its registry (factories) and records, no plugin manager."""
        return _rebuild_system, (self.registry, self.records, self.strict)

    def __init__(self, *, strict: bool = False) -> None:
        self.pm = pluggy.PluginManager("fusionkit")
        self.pm.add_hookspecs(hookspecs)
        self.registry = Registry()
        self.records: list[PluginRecord] = []
        self.strict = strict
        self._modules: dict[str, Any] = {}

    # ------------------------------------------------------------ loading
    def _register_module(self, module: Any, record: PluginRecord) -> None:
        hooks, unknown = _module_hooks(module)
        record.hooks = hooks
        if record.name in self._modules or self.pm.has_plugin(record.name):
            record.status = "duplicate"
            record.error = f"a plugin named {record.name!r} is already loaded"
            self.records.append(record)
            return
        try:
            self.pm.register(module, name=record.name)
        except Exception as exc:  # e.g. hook signature mismatch
            record.status = "broken"
            record.error = f"{type(exc).__name__}: {exc}"
            record.traceback = traceback.format_exc()
            self.records.append(record)
            return
        self._modules[record.name] = module
        if unknown:
            record.status = "unknown-hook"
            record.error = "; ".join(
                f"unknown hook {name!r}" + (f" ({s})" if (s := suggest(name, list(hookspecs.ALL_HOOKS))) else "")
                for name in unknown)
        self.records.append(record)

    def load_builtins(self, block: set[str]) -> None:
        block = expand_block(block)
        for modname in BUILTIN_PLUGINS:
            short = builtin_short_name(modname)
            record = PluginRecord(name=short, source="builtin", dist="fusionkit", version=_fusionkit_version())
            if short in block or modname in block:
                record.status = "disabled"
                self.records.append(record)
                continue
            try:
                module = importlib.import_module(modname)
            except (Exception, SystemExit) as exc:  # a missing built-in module is broken, never skipped quietly
                record.status, record.error = "broken", f"{type(exc).__name__}: {exc}"
                record.traceback = traceback.format_exc()
                self.records.append(record)
                continue
            self._register_module(module, record)

    def load_entrypoints(self, allow: set[str], block: set[str],
                         entry_points: Iterable[Any] | None = None) -> None:
        if entry_points is None:
            entry_points = importlib_metadata.entry_points(group=ENTRY_POINT_GROUP)
        seen: dict[str, PluginRecord] = {}
        for ep in entry_points:
            dist = getattr(ep, "dist", None)
            dist_name = getattr(dist, "name", None) or getattr(dist, "metadata", {}).get("Name") if dist else None
            version = getattr(dist, "version", None) if dist else None
            record = PluginRecord(name=ep.name, source="entrypoint", dist=dist_name, version=version)
            if (allow and not ({ep.name, dist_name} & allow)) or ({ep.name, dist_name} & block):
                record.status = "disabled"
                self.records.append(record)
                continue
            if ep.name in seen:
                first = seen[ep.name]
                record.status = "duplicate"
                record.error = (f"entry point {ep.name!r} is provided by both {first.dist} {first.version} "
                                f"and {dist_name} {version}; only the first was loaded")
                self.records.append(record)
                continue
            seen[ep.name] = record
            try:
                module = ep.load()
            except (Exception, SystemExit) as exc:  # SystemExit: a plugin calling sys.exit() at import
                record.status = "broken"
                record.error = f"{type(exc).__name__}: {exc}"
                record.traceback = traceback.format_exc()
                self.records.append(record)
                continue
            self._register_module(module, record)

    def load_dir(self, directory: str | os.PathLike[str]) -> None:
        directory = Path(directory)
        if not directory.is_dir():
            raise PluginError(f"plugins folder {str(directory)!r} does not exist", where="--plugins-dir",
                              hint="pass an existing folder of one-file plugins (*.py)")
        for path in sorted(directory.glob("*.py")):
            name = f"dir.{path.stem}"
            record = PluginRecord(name=name, source="dir", dist=str(path))
            modname = f"fusionkit_dir_plugin_{path.stem}"
            try:
                spec = importlib.util.spec_from_file_location(modname, path)
                assert spec and spec.loader
                module = importlib.util.module_from_spec(spec)
                sys.modules[modname] = module
                spec.loader.exec_module(module)
            except (Exception, SystemExit) as exc:
                sys.modules.pop(modname, None)
                record.status, record.error = "broken", f"{type(exc).__name__}: {exc}"
                record.traceback = traceback.format_exc()
                self.records.append(record)
                continue
            self._register_module(module, record)

    def register_plugin_object(self, obj: Any, name: str, *, dist: str | None = None) -> None:
        """Register an in-memory plugin (module or object); for tests and embedding."""
        self._register_module(obj, PluginRecord(name=name, source="entrypoint", dist=dist))

    # ------------------------------------------------------------ components
    def collect_components(self) -> None:
        records = {r.name: r for r in self.records}
        for hook_name, kind in hookspecs.COMPONENT_HOOKS.items():
            hook = getattr(self.pm.hook, hook_name)
            for impl in hook.get_hookimpls():
                record = records.get(impl.plugin_name)
                if record is None or record.status == "broken":
                    continue
                register = self._make_register(kind, record)
                collisions = len(self.registry.collisions)
                try:
                    impl.function(register=register)
                except (Exception, SystemExit) as exc:
                    record.status = "duplicate" if len(self.registry.collisions) > collisions else "broken"
                    record.error = f"{type(exc).__name__}: {exc}" if record.status == "broken" else str(exc)
                    record.traceback = traceback.format_exc()
                    if record.status == "broken":
                        self.registry.remove_plugin(record.name)

    def _make_register(self, kind: str, record: PluginRecord):
        base = BASES[kind]

        def register(name: str, factory: Any, *, override: bool = False, **metadata: Any) -> None:
            if not (inspect.isclass(factory) and issubclass(factory, base)):
                raise PluginError(f"{kind} {name!r}: the factory must be a subclass of fusionkit.{base.__name__}, "
                                  f"got {factory!r}", where=record.label,
                                  hint=f"define `class MyComponent({base.__name__})` (it declares what the "
                                       "core reads, with defaults) and register the class")
            info = ComponentInfo(kind=kind, name=name, factory=factory, plugin=record.name,
                                 dist=record.dist, version=record.version, metadata=metadata,
                                 builtin=record.builtin)
            self.registry.add(info, override=override)
            record.components.append(f"{kind}:{name}")
        return register

    def add_commands(self, cli: Any) -> None:
        records = {r.name: r for r in self.records}
        for impl in self.pm.hook.register_commands.get_hookimpls():
            record = records.get(impl.plugin_name)
            try:
                impl.function(cli=cli)
            except (Exception, SystemExit) as exc:
                if record is not None:
                    record.status, record.error = "broken", f"{type(exc).__name__}: {exc}"
                    record.traceback = traceback.format_exc()

    # ------------------------------------------------------------ reporting
    def problems(self) -> list[PluginRecord]:
        return [r for r in self.records if r.status not in ("ok", "disabled")]

    def broken(self) -> list[PluginRecord]:
        return [r for r in self.records if r.status == "broken"]

    def check_strict(self) -> None:
        problems = self.problems()
        if problems:
            lines = [f"{r.label}: {r.status}: {r.error}" for r in problems]
            raise PluginError("plugin problems (strict mode): " + "; ".join(lines),
                              hint="fix or uninstall the plugin, block it with FUSIONKIT_PLUGINS_BLOCK, "
                                   "or run without --strict")

    # ------------------------------------------------------------ building
    def info(self, kind: str, name: str, *, where: str | None = None) -> ComponentInfo:
        return self.registry.get(kind, name, where=where, broken=self.broken())

    def create(self, kind: str, name: str, params: dict[str, Any] | None = None, *,
               where: str | None = None) -> Any:
        """Bind ``params`` (defaults filled, checked) and build the component.

        A recipe's components are built from their already bound ``Spec``
        (``RunContext.build``); this is for parameters that were never bound.
        """
        info = self.info(kind, name, where=where)
        return info.build(info.bind(params or {}, where=where))


def _module_hooks(module: Any) -> tuple[list[str], list[str]]:
    """(known hooks, unknown hook-like names) implemented by a plugin module."""
    known, unknown = [], []
    for attr in dir(module):
        obj = getattr(module, attr, None)
        if not callable(obj):
            continue
        marked = hasattr(obj, "fusionkit_impl")
        if attr in hookspecs.ALL_HOOKS and marked:
            known.append(attr)
        elif marked:
            unknown.append(attr)
        elif attr.startswith("register_") and attr not in hookspecs.ALL_HOOKS and isinstance(module, ModuleType) \
                and getattr(obj, "__module__", None) == module.__name__:
            unknown.append(attr)
    return sorted(known), sorted(unknown)


def _fusionkit_version() -> str:
    from . import __version__

    return __version__


def load(*, plugins_dir: str | os.PathLike[str] | None = None, strict: bool | None = None,
         env: dict[str, str] | None = None, entry_points: Iterable[Any] | None = None,
         extra: Iterable[tuple[str, Any]] = ()) -> PluginSystem:
    """Build a fresh :class:`PluginSystem` (never a global one).

    ``entry_points`` replaces ``importlib.metadata`` discovery (tests fake it);
    ``extra`` registers in-memory plugins as ``(name, module_or_object)``.
    """
    env = dict(os.environ if env is None else env)
    if strict is None:
        strict = env.get("FUSIONKIT_STRICT", "").lower() in ("1", "true", "yes")
    system = PluginSystem(strict=strict)
    allow = _split_env(env.get("FUSIONKIT_PLUGINS_ALLOW"))
    block = _split_env(env.get("FUSIONKIT_PLUGINS_BLOCK"))
    system.load_builtins(block)
    system.load_entrypoints(allow, block, entry_points)
    plugins_dir = plugins_dir or env.get("FUSIONKIT_PLUGINS_DIR")
    if plugins_dir:
        system.load_dir(plugins_dir)
    for name, obj in extra:
        system.register_plugin_object(obj, name)
    system.collect_components()
    if strict:
        system.check_strict()
    return system


def _rebuild_system(registry: Registry, records: list[PluginRecord], strict: bool) -> PluginSystem:
    system = PluginSystem(strict=strict)
    system.registry = registry
    system.records = records
    return system
