"""Built-in choice parameters are Literal[...] annotations, checked at validation."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]


@pytest.mark.parametrize("setting, message", [
    ("index.params.metric=cosin", "must be one of 'l2', 'ip', 'cosine', got 'cosin' (did you mean 'cosine'?)"),
])
def test_builtin_choice_params_are_validated(setting, message):
    proc = subprocess.run([sys.executable, "-m", "fusionkit", "validate", str(ROOT / "recipes" / "tumor_origin.yaml"),
                           "--set", setting], capture_output=True, text=True, timeout=120)
    out = proc.stdout + proc.stderr
    assert proc.returncode == 1, out
    assert message in out
    assert setting.split("=")[0] in out  # names the recipe path
    assert "Traceback" not in out


def test_choice_annotations_list_the_allowed_values(plugin_system):
    from fusionkit.registry import param_schema

    info = plugin_system.registry.get("reader", "rna-table")
    schema = param_schema(info.factory)
    assert "per-source-scale" in str(schema.get("combine").annotation)
