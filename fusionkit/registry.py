"""Name-keyed component registries with metadata that can be listed without
building anything (timm style), and the one place that reads a component's
constructor signature (its parameter schema) and binds parameters to it.

A recipe's parameters are bound once, at validation (:func:`bind_params`); the
bound dict is kept in the recipe's ``Spec`` and the component is built from it
with :meth:`ComponentInfo.build`, without binding again.
"""

from __future__ import annotations

import copy
import difflib
import inspect
import re
from dataclasses import dataclass, field
from typing import Any

from .errors import ComponentError, FusionkitError, PluginError, RecipeError

#: component kinds, in pipeline order (the registry keys; one hook each)
KINDS = ("reader", "encoder", "adapter", "sampler", "perturbation", "aggregator", "index", "task")
#: input kinds a reader may produce and an encoder may consume
INPUT_KINDS = ("matrix", "text", "image", "embedding")

_NAME_RE = re.compile(r"^[a-z0-9][a-z0-9\-]*$")


# ----------------------------------------------------------------------------- parameter schema

#: marks a parameter without a default (required)
REQUIRED = inspect.Parameter.empty


@dataclass(frozen=True)
class Parameter:
    """One constructor parameter: name, default (``REQUIRED`` if none) and annotation."""

    name: str
    default: Any = REQUIRED
    annotation: Any = REQUIRED

    @property
    def required(self) -> bool:
        return self.default is REQUIRED


@dataclass(frozen=True)
class ParamSchema:
    """A component's parameter schema, read from its constructor signature."""

    params: tuple[Parameter, ...] = ()
    #: ``**kwargs`` in the signature: any further keyword is accepted
    var_keyword: bool = False
    #: ``*args`` in the signature (not allowed for components; see check_component)
    var_positional: bool = False

    def names(self) -> list[str]:
        return [p.name for p in self.params]

    def defaults(self) -> dict[str, Any]:
        return {p.name: p.default for p in self.params if not p.required}

    def get(self, name: str) -> Parameter | None:
        return next((p for p in self.params if p.name == name), None)


def param_schema(factory: Any) -> ParamSchema:
    """The parameter schema of a component class (or factory callable).

    This is the only place in fusionkit that reads a constructor signature:
    recipes validate against it, ``Component.get_params`` lists it, the
    conformance check inspects it and ``describe`` prints it.
    """
    if inspect.isclass(factory) and factory.__init__ is object.__init__:
        return ParamSchema()
    try:
        sig = inspect.signature(factory.__init__ if inspect.isclass(factory) else factory)
    except (TypeError, ValueError):  # pragma: no cover - builtins without a signature
        return ParamSchema(var_keyword=True)
    values = list(sig.parameters.values())
    if inspect.isclass(factory) and values:
        values = values[1:]  # self
    named = tuple(Parameter(p.name, p.default, p.annotation) for p in values
                  if p.kind in (p.KEYWORD_ONLY, p.POSITIONAL_OR_KEYWORD))
    return ParamSchema(named, var_keyword=any(p.kind is p.VAR_KEYWORD for p in values),
                       var_positional=any(p.kind is p.VAR_POSITIONAL for p in values))


def bind_params(info: "ComponentInfo", params: dict[str, Any], *, where: str | None = None) -> dict[str, Any]:
    """Check ``params`` against the component's schema; return every parameter, defaults filled.

    Every problem (unknown name, wrong type, missing required value) is
    reported at once with its recipe path and a did-you-mean.
    """
    if not isinstance(params, dict):
        raise ComponentError(f"params of {info.kind} {info.name!r} must be a mapping, got {type(params).__name__}",
                             where=where)
    schema = param_schema(info.factory)
    issues = _unknown_params(info, schema, params, where)
    out: dict[str, Any] = {}
    for p in schema.params:
        at = f"{where}.params.{p.name}" if where else None
        if p.name in params:
            problem = _type_problem(params[p.name], p.default, p.annotation)
            if problem:
                issues.append(ComponentError(f"parameter {p.name!r} of {info.kind} {info.name!r} {problem}",
                                             where=at))
            out[p.name] = params[p.name]
        elif p.required:
            issues.append(ComponentError(f"missing required parameter {p.name!r} for {info.kind} {info.name!r}",
                                         where=f"{where}.params" if where else None))
        else:
            out[p.name] = copy.deepcopy(p.default)
    if schema.var_keyword:
        for key, value in params.items():
            out.setdefault(key, value)
    if not issues:  # declared value constraints (``constraints = {...}`` on the class), once types are right
        from .constraints import check_constraints

        issues += check_constraints(info.factory, out, kind=info.kind, name=info.name, where=where)
    if len(issues) == 1:
        raise issues[0]
    if issues:
        raise RecipeError(f"{len(issues)} parameter problems", where=where, issues=issues)
    return out


def _unknown_params(info: "ComponentInfo", schema: ParamSchema, params: dict[str, Any],
                    where: str | None) -> list[FusionkitError]:
    if schema.var_keyword:
        return []
    names = schema.names()
    return [ComponentError(f"unknown parameter {key!r} for {info.kind} {info.name!r}",
                           where=f"{where}.params.{key}" if where else None,
                           hint=suggest(key, names) or f"accepted: {', '.join(names) or '(none)'}")
            for key in params if key not in names]


_SIMPLE_ANNOTATIONS = {"int": 0, "float": 0.0, "bool": False, "str": ""}


def _literal_choices(annotation: Any) -> tuple[Any, ...] | None:
    """The allowed values of a ``Literal[...]`` annotation (also ``Literal[...] | None``, or as a
    string under ``from __future__ import annotations``); None for any other annotation."""
    import ast
    import typing

    if isinstance(annotation, str):
        m = re.fullmatch(r"\s*(?:typing\.)?Literal\[(.*)\]\s*(\|\s*None\s*)?", annotation)
        if not m:
            return None
        try:
            values = ast.literal_eval(f"({m.group(1)},)")
        except (ValueError, SyntaxError):
            return None
        return tuple(values) + ((None,) if m.group(2) else ())
    if typing.get_origin(annotation) is typing.Literal:
        return typing.get_args(annotation)
    return None


def _type_problem(value: Any, default: Any, annotation: Any = REQUIRED) -> str | None:
    """Light type check: a ``Literal[...]`` annotation's choices; a simple annotation
    (int/float/bool/str); else the default's type. ``Any``, other unions and containers
    are not checked."""
    choices = _literal_choices(annotation)
    if choices is not None:
        if value in choices and not (isinstance(value, bool) and not any(isinstance(c, bool) for c in choices)):
            return None
        near = suggest(str(value), [str(c) for c in choices]) if isinstance(value, str) else None
        return f"must be one of {', '.join(repr(c) for c in choices)}, got {value!r}" + (f" ({near})" if near else "")
    if annotation is not REQUIRED:
        name = annotation if isinstance(annotation, str) else getattr(annotation, "__name__", "")
        if name not in _SIMPLE_ANNOTATIONS:
            return None
        default = _SIMPLE_ANNOTATIONS[name]
    if default is REQUIRED or default is None or value is None:
        return None
    if isinstance(default, bool):
        return None if isinstance(value, bool) else f"must be true or false, got {value!r}"
    if isinstance(default, int):
        if isinstance(value, bool) or not isinstance(value, (int, list, tuple)):
            return f"must be an integer, got {value!r}"
        return None
    if isinstance(default, float):
        if isinstance(value, bool) or not isinstance(value, (int, float, list, tuple)):
            return f"must be a number, got {value!r}"
        return None
    if isinstance(default, str):
        return None if isinstance(value, (str, list, dict)) else f"must be a string, got {value!r}"
    return None


# ----------------------------------------------------------------------------- registry

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
        card = dict(self.factory.card or {}) if self.kind == "encoder" else {}
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
            out["modality"] = meta.get("modality", self.factory.modality)
            out["input_kind"] = meta.get("input_kind", self.factory.input_kind)
            out["dim"] = meta.get("dim")
        if self.kind == "reader":
            out["modalities"] = list(meta.get("modalities", self.factory.provides))
            out["labels"] = list(meta.get("labels", self.factory.yields_labels))
        for key in ("licence", "gated", "weights_source", "params", "tags"):
            if key in meta:
                out[key] = meta[key]
        out["parameters"] = {k: _jsonable(v) for k, v in param_schema(self.factory).defaults().items()}
        return out

    def bind(self, params: dict[str, Any], *, where: str | None = None) -> dict[str, Any]:
        """Check ``params`` against this component's schema; all parameters, defaults filled."""
        return bind_params(self, params, where=where)

    def build(self, bound: dict[str, Any]) -> Any:
        """Build the component from parameters that :meth:`bind` returned (no second binding)."""
        return self.factory(**bound)


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
