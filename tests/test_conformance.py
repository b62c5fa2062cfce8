"""The registry is the test matrix: every registered component passes the same checks."""

from __future__ import annotations

import pytest

from fusionkit import plugins
from fusionkit.testing import check_component

_SYSTEM = plugins.load(env={})
ALL = [(kind, name) for kind in _SYSTEM.registry.kinds() for name in _SYSTEM.registry.names(kind)]


def test_builtins_all_load_cleanly():
    problems = [(r.name, r.status, r.error) for r in _SYSTEM.records if r.builtin and r.status != "ok"]
    assert problems == []


@pytest.mark.parametrize("kind,name", ALL, ids=[f"{k}:{n}" for k, n in ALL])
def test_component_conforms(kind, name):
    check_component(_SYSTEM.info(kind, name))


def test_hookspecs_are_documented():
    from fusionkit import hookspecs

    for hook in hookspecs.ALL_HOOKS:
        doc = getattr(hookspecs, hook).__doc__ or ""
        assert "Example" in doc, f"hook {hook} needs a documented example"
