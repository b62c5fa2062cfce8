"""Helpers for plugin authors (and fusionkit's own conformance test).

``check_component(info)`` runs the checks every registered component must
pass, without loading any model::

    from fusionkit import plugins
    from fusionkit.testing import check_component

    def test_my_encoder_conforms():
        system = plugins.load()
        check_component(system.info("encoder", "my-encoder"))
"""

from __future__ import annotations

import inspect
import re
from typing import Any

from .components import INPUT_KINDS, Component
from .registry import ComponentInfo

_KEBAB = re.compile(r"^[a-z0-9][a-z0-9\-]*$")


def check_component(info: ComponentInfo) -> list[str]:
    """Assert that a registered component follows the conventions; returns notes.

    * kebab-case name, a one-line docstring summary (the ``list`` summary)
    * a Component subclass whose ``__init__`` takes keyword parameters with
      defaults (the recipe schema) and only stores them (``get_params`` gives
      them back unchanged)
    * encoders declare ``modality``, a known ``input_kind`` and a model card
    """
    notes: list[str] = []
    assert _KEBAB.match(info.name), f"{info.kind} {info.name!r}: name must be kebab-case"
    assert info.summary, f"{info.kind} {info.name!r}: needs a docstring whose first line summarises it"
    factory = info.factory
    assert inspect.isclass(factory) and issubclass(factory, Component), \
        f"{info.kind} {info.name!r}: factory must subclass fusionkit.components.Component"
    sig = inspect.signature(factory.__init__)
    for p in list(sig.parameters.values())[1:]:
        if p.kind in (p.VAR_POSITIONAL,):
            raise AssertionError(f"{info.kind} {info.name!r}: *args is not allowed in __init__")
        if p.kind in (p.POSITIONAL_OR_KEYWORD, p.KEYWORD_ONLY) and p.default is p.empty:
            notes.append(f"parameter {p.name!r} is required (no default)")
    if not notes:
        obj: Any = factory()
        params = obj.get_params()
        defaults = factory.default_params()
        for key, value in defaults.items():
            assert key in params, f"{info.kind} {info.name!r}: __init__ must store parameter {key!r} as self.{key}"
            assert params[key] == value or (params[key] is value), \
                f"{info.kind} {info.name!r}: __init__ changed parameter {key!r} ({value!r} -> {params[key]!r})"
    if info.kind == "encoder":
        assert getattr(factory, "modality", None), f"encoder {info.name!r}: set class attribute modality"
        assert getattr(factory, "input_kind", None) in INPUT_KINDS + ("any",), \
            f"encoder {info.name!r}: input_kind must be one of {INPUT_KINDS}"
        card = {**(getattr(factory, "card", {}) or {}), **info.metadata}
        for key in ("licence", "weights_source"):
            assert key in card, f"encoder {info.name!r}: model card lacks {key!r}"
    return notes
