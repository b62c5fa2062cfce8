"""Start-up stays light: listing and validating never import the heavy libraries."""

from __future__ import annotations

import json
import subprocess
import sys
import textwrap

from helpers import imported_recipe

HEAVY = ("torch", "timm", "sentence_transformers", "transformers", "faiss", "sklearn", "matplotlib")


def run_and_list_heavy(args_list):
    code = textwrap.dedent(f"""
        import json, sys
        from fusionkit.cli import cli
        codes = []
        for args in {args_list!r}:
            try:
                cli.main(args=args, prog_name="fusionkit", standalone_mode=False)
                codes.append(0)
            except SystemExit as e:
                codes.append(e.code)
        heavy = sorted(m for m in {HEAVY!r} if m in sys.modules)
        sys.stderr.write("HEAVY=" + json.dumps(heavy) + " CODES=" + json.dumps(codes) + "\\n")
    """)
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=180,
                         env={"HF_HUB_OFFLINE": "1", "PATH": "/usr/bin:/bin"})
    line = [ln for ln in out.stderr.splitlines() if ln.startswith("HEAVY=")]
    assert line, out.stderr[-3000:]
    heavy_part, codes_part = line[0][6:].split(" CODES=")
    return json.loads(heavy_part), json.loads(codes_part), out.stdout


def test_help_plugins_list_describe_validate_do_not_import_heavy_libraries(tmp_path):
    recipe = imported_recipe(tmp_path)
    heavy, codes, stdout = run_and_list_heavy([
        ["--help"], ["plugins", "--all"], ["list", "encoders"], ["list", "tasks", "--json"],
        ["list", "indexes"], ["describe", "sampler", "patient-level"], ["validate", str(recipe)],
    ])
    assert heavy == [], f"start-up imported {heavy}"
    assert all(c in (0, None) for c in codes), codes
    assert "patient-level" in stdout


def test_repo_recipes_validate_without_heavy_imports():
    from pathlib import Path

    recipes = sorted(str(p) for p in (Path(__file__).resolve().parents[1] / "recipes").glob("*.yaml"))
    if not recipes:
        return
    heavy, codes, stdout = run_and_list_heavy([["validate", r] for r in recipes])
    assert heavy == [], f"validate imported {heavy}"
    assert all(c in (0, None) for c in codes), (codes, stdout)


def test_python_dash_m_works():
    out = subprocess.run([sys.executable, "-m", "fusionkit", "--help"], capture_output=True, text=True, timeout=60)
    assert out.returncode == 0 and "fusionkit" in out.stdout
