"""Name-keyed component registries with metadata that can be listed without
building anything (timm style)."""

from __future__ import annotations

import difflib
import inspect
import re
from dataclasses import dataclass, field
from typing import Any

from .components import KINDS
from .errors import ComponentError, PluginError

_NAME_RE = re.compile(r"^[a-z0-9][a-z0-9\-]*$")
METADATA_KEYS = ("summary", "modality", "dim", "licence", "gated", "weights_source", "params", "tags",
                 "input_kind")


@dataclass
class ComponentInfo:
    """One registered component and everything known about it without building it."""

    kind: str
    name: str
    factory: Any
    plugin: str
    dist: str | None = None
    version: str | None = None
    metadata: dict[str, Any] = field(default_factory=dict)
    builtin: bool = False

    @property
    def summary(self) -> str:
        if self.metadata.get("summary"):
            return str(self.metadata["summary"])
        doc = inspect.getdoc(self.factory) or ""
        return doc.strip().splitlines()[0] if doc.strip() else ""

    def as_dict(self) -> dict[str, Any]:
        card = dict(getattr(self.factory, "card", {}) or {})
        meta = {**card, **self.metadata}
        out: dict[str, Any] = {
            "kind": self.kind,
            "name": self.name,
            "provider": self.dist or self.plugin,
            "plugin": self.plugin,
            "version": self.version,
            "builtin": self.builtin,
            "summary": self.summary,
        }
        if self.kind == "encoder":
            out["modality"] = meta.get("modality", getattr(self.factory, "modality", None))
            out["input_kind"] = meta.get("input_kind", getattr(self.factory, "input_kind", None))
            out["dim"] = meta.get("dim")
        for key in ("licence", "gated", "weights_source", "params", "tags"):
            if key in meta:
                out[key] = meta[key]
        try:
            out["parameters"] = {k: _jsonable(v) for k, v in self.factory.default_params().items()}
        except Exception:  # pragma: no cover - exotic factories
            out["parameters"] = {}
        return out


def _jsonable(value: Any) -> Any:
    if isinstance(value, (str, int, float, bool)) or value is None:
        return value
    if isinstance(value, (list, tuple)):
        return [_jsonable(v) for v in value]
    if isinstance(value, dict):
        return {str(k): _jsonable(v) for k, v in value.items()}
    return repr(value)


class Registry:
    """All components, by kind then name."""

    def __init__(self) -> None:
        self._items: dict[str, dict[str, ComponentInfo]] = {kind: {} for kind in KINDS}
        #: plugin name -> list of (kind, name) it registered
        self.by_plugin: dict[str, list[tuple[str, str]]] = {}
        #: collisions found while registering: (kind, name, first plugin, second plugin)
        self.collisions: list[tuple[str, str, str, str]] = []

    def add(self, info: ComponentInfo, *, override: bool = False) -> None:
        if info.kind not in self._items:
            raise PluginError(f"unknown component kind {info.kind!r}", where=f"plugin {info.plugin}")
        if not _NAME_RE.match(info.name):
            raise PluginError(
                f"component name {info.name!r} is not kebab-case", where=f"plugin {info.plugin}",
                hint="use lowercase letters, digits and '-' (e.g. 'my-encoder')")
        existing = self._items[info.kind].get(info.name)
        if existing is not None and not override:
            self.collisions.append((info.kind, info.name, existing.plugin, info.plugin))
            raise PluginError(
                f"{info.kind} {info.name!r} is registered twice: by {existing.dist or existing.plugin} "
                f"and by {info.dist or info.plugin}",
                where=f"plugin {info.plugin}",
                hint="rename one of them, or pass override=True to register() to replace on purpose")
        self._items[info.kind][info.name] = info
        self.by_plugin.setdefault(info.plugin, []).append((info.kind, info.name))

    def remove_plugin(self, plugin: str) -> None:
        for kind, name in self.by_plugin.pop(plugin, []):
            info = self._items[kind].get(name)
            if info is not None and info.plugin == plugin:
                del self._items[kind][name]

    def kinds(self) -> tuple[str, ...]:
        return KINDS

    def names(self, kind: str) -> list[str]:
        return sorted(self._items[kind])

    def all(self, kind: str) -> list[ComponentInfo]:
        return [self._items[kind][n] for n in self.names(kind)]

    def has(self, kind: str, name: str) -> bool:
        return name in self._items.get(kind, {})

    def get(self, kind: str, name: str, *, where: str | None = None,
            broken: list[Any] | None = None) -> ComponentInfo:
        if kind not in self._items:
            raise ComponentError(f"unknown component kind {kind!r}", where=where,
                                 hint=f"one of: {', '.join(KINDS)}")
        try:
            return self._items[kind][name]
        except KeyError:
            pass
        hint = suggest(name, self.names(kind))
        hint = hint or f"registered {kind}s: {', '.join(self.names(kind)) or '(none)'}"
        message = f"unknown {kind} {name!r}"
        if broken:
            details = "; ".join(f"{b.label} failed to load: {b.error}" for b in broken)
            message += f" (it may come from a plugin that failed to load: {details})"
        raise ComponentError(message, where=where, hint=hint)


def suggest(name: str, candidates: list[str]) -> str | None:
    match = difflib.get_close_matches(str(name), candidates, n=1, cutoff=0.6)
    return f"did you mean {match[0]!r}?" if match else None
