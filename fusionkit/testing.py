"""Helpers for plugin authors (and fusionkit's own conformance test).

``check_component(info)`` runs the checks every registered component must
pass, without loading any model::

    from fusionkit import plugins
    from fusionkit.testing import check_component

    def test_my_encoder_conforms():
        system = plugins.load()
        check_component(system.info("encoder", "my-encoder"))

Each failed check raises ``AssertionError`` with a message that names the
component, what is wrong and how to fix it.
"""

from __future__ import annotations

import inspect
import re
from typing import Any, Callable

from .components import (BASES, INPUT_KINDS, KINDS, Aggregator, Component, Encoder, Perturbation, Reader)
from .registry import ComponentInfo, param_schema

_KEBAB = re.compile(r"^[a-z0-9][a-z0-9\-]*$")
#: the framework's own classes: a method they define is not the component's implementation
_FRAMEWORK = {object, Component, *BASES.values()}
#: kind -> methods a component of that kind must implement
_REQUIRED_METHODS = {
    "reader": ("read",), "encoder": ("encode",), "adapter": ("transform",), "sampler": ("plan",),
    "perturbation": ("apply",), "index": ("build", "search", "save", "load"), "task": ("run",),
}


def check_component(info: ComponentInfo) -> list[str]:
    """Assert that a registered component follows the conventions and its kind's contract.

    * kebab-case name, a one-line docstring summary (the ``list`` summary)
    * a subclass of its kind's base class (``fusionkit.Encoder`` for an encoder...)
      whose ``__init__`` takes keyword parameters with defaults (the recipe schema)
      and only stores them (``get_params`` gives them back unchanged)
    * the methods of its kind are implemented; declared attributes have valid
      values (``component_params`` name parameters and kinds, ``check_recipe``
      is a classmethod)
    * encoders: ``modality``, a known ``input_kind``, a model card with licence and
      weights source; ``fit`` only on encoders declared ``trainable``, and a
      trainable encoder implements ``save`` and ``load``
    * aggregators: ``linear`` ones implement ``weights``, the others ``reduce``

    Returns notes (e.g. parameters without defaults, which skip the round trip).
    """
    label = f"{info.kind} {info.name!r}"
    assert _KEBAB.match(info.name), f"{label}: name must be kebab-case"
    assert info.summary, f"{label}: needs a docstring whose first line summarises it"
    factory = info.factory
    base = BASES.get(info.kind, Component)
    assert inspect.isclass(factory) and issubclass(factory, base), \
        f"{label}: factory must subclass fusionkit.{base.__name__}"
    notes = _check_params(label, factory)
    _check_declarations(label, factory)
    for method in _REQUIRED_METHODS.get(info.kind, ()):
        assert _implements(factory, method), f"{label}: implement {method}() (the {info.kind} contract)"
    _KIND_CHECKS.get(info.kind, lambda *_: None)(label, info)
    return notes


def _defined_by(cls: type, name: str) -> type | None:
    for klass in cls.__mro__:
        if name in vars(klass):
            return klass
    return None


def _implements(cls: type, name: str) -> bool:
    """Whether ``cls`` (or a base of its own, not the framework's) defines ``name``."""
    owner = _defined_by(cls, name)
    return owner is not None and owner not in _FRAMEWORK


def _check_params(label: str, factory: type[Component]) -> list[str]:
    schema = param_schema(factory)
    assert not schema.var_positional, f"{label}: *args is not allowed in __init__ (parameters are keywords)"
    notes = [f"parameter {p.name!r} is required (no default)" for p in schema.params if p.required]
    if notes:
        return notes
    obj: Any = factory()
    params = obj.get_params()
    for key, value in schema.defaults().items():
        assert key in params, f"{label}: __init__ must store parameter {key!r} as self.{key}"
        assert params[key] == value or (params[key] is value), \
            f"{label}: __init__ changed parameter {key!r} ({value!r} -> {params[key]!r})"
    return notes


def _check_declarations(label: str, factory: type[Component]) -> None:
    names = param_schema(factory).names()
    for param, kind in factory.component_params.items():
        assert param in names, f"{label}: component_params names {param!r}, which is not an __init__ parameter"
        assert kind in KINDS, f"{label}: component_params[{param!r}] = {kind!r} is not a kind ({', '.join(KINDS)})"
    static = inspect.getattr_static(factory, "check_recipe")
    assert isinstance(static, (classmethod, staticmethod)), \
        f"{label}: check_recipe must be a classmethod (it runs at validation, before anything is built)"


def _check_encoder(label: str, info: ComponentInfo) -> None:
    enc: type[Encoder] = info.factory
    assert enc.modality, f"{label}: set class attribute modality"
    assert enc.input_kind in INPUT_KINDS + ("any",), f"{label}: input_kind must be one of {INPUT_KINDS} or 'any'"
    card = {**(enc.card or {}), **info.metadata}
    for key in ("licence", "weights_source"):
        assert key in card, f"{label}: model card lacks {key!r}"
    assert isinstance(enc.trainable, bool), f"{label}: trainable must be True or False"
    if _implements(enc, "fit") and not enc.trainable:
        raise AssertionError(
            f"{label}: {enc.__name__} defines fit() but is not declared trainable, so the engine never calls "
            "fit(); set `trainable = True` on the class (and implement save/load), or remove fit()")
    if enc.trainable:
        missing = [m for m in ("fit", "save", "load") if not _implements(enc, m)]
        assert not missing, (f"{label}: {enc.__name__} is trainable but does not implement "
                             f"{', '.join(m + '()' for m in missing)}: the engine fits once, saves the state "
                             "and loads it on resume and in remote workers")
    assert isinstance(enc.shard_size, int) and enc.shard_size > 0, f"{label}: shard_size must be a positive int"
    assert enc.wants_gpu in (None, True, False), f"{label}: wants_gpu must be None, True or False"


def _check_aggregator(label: str, info: ComponentInfo) -> None:
    agg: type[Aggregator] = info.factory
    needed = "weights" if agg.linear else "reduce"
    assert _implements(agg, needed), (f"{label}: {'linear' if agg.linear else 'non-linear'} aggregators "
                                      f"implement {needed}()")


def _check_reader(label: str, info: ComponentInfo) -> None:
    reader: type[Reader] = info.factory
    assert isinstance(reader.provides, (tuple, list)) and all(isinstance(m, str) for m in reader.provides), \
        f"{label}: provides must be a tuple of modality names"


def _check_perturbation(label: str, info: ComponentInfo) -> None:
    pert: type[Perturbation] = info.factory
    assert pert.apply_to in ("test", "train", "both"), f"{label}: apply_to must be test, train or both"


_KIND_CHECKS: dict[str, Callable[[str, ComponentInfo], None]] = {
    "encoder": _check_encoder, "aggregator": _check_aggregator, "reader": _check_reader,
    "perturbation": _check_perturbation,
}
