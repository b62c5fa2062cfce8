"""Builders for tests/test_bad_inputs.py: a small imported-embeddings study, a CLI
runner that turns any escaped exception into visible traceback text, and a
one-file test plugin (tasks that fail, sleep, write, or return odd unit results)."""

from __future__ import annotations

import copy
import os
import subprocess
import sys
import traceback
from pathlib import Path
from typing import Any

import yaml
from click.testing import CliRunner

from helpers import write_embeddings

MODS = {"rna": (60, 0.5), "mutation": (55, -0.5), "text": (120, 0.0)}

PLUGIN = '''
import os, time
import numpy as np
from fusionkit import hookimpl, Task, Unit, DataError


def _unit(i, kind):
    if kind == "object":
        return {"value": object()}
    rng = np.random.default_rng(i)
    return {"value": float(rng.normal()), "vec": rng.normal(size=4).astype(np.float32), "pair": (i, "x")}


class Probe(Task):
    """Test task: sleeps, fails, writes where told, runs cached units."""

    def __init__(self, fail: bool = False, sleep: float = 0.0, write: str = "", units: int = 3,
                 kind: str = "data", marker: str = ""):
        self.fail, self.sleep, self.write, self.units = fail, sleep, write, units
        self.kind, self.marker = kind, marker

    def run(self, ctx):
        if self.marker:
            open(self.marker, "w").close()
        if self.sleep:
            time.sleep(self.sleep)
        if self.write:
            ctx.write_json(self.write, {"x": 1})
        if self.fail:
            raise DataError("probe task failed on purpose", where=f"tasks.{ctx.task_name}")
        units = [Unit(ctx.unit_key("probe", i), _unit, (i, self.kind), label=f"probe #{i}") for i in range(self.units)]
        res = ctx.run_units(ctx.task_name, units)
        values = [res[u.key]["value"] for u in units]
        ctx.write_json(f"{ctx.task_name}/values.json", values)
        return {"summary": {"values": values, "n": len(values)}}


class Broken(Task):
    """Test task whose constructor fails."""

    def __init__(self):
        raise RuntimeError("constructor of the broken test task")

    def run(self, ctx):  # pragma: no cover
        return {}


class Buggy(Task):
    """Test task with a real bug (KeyError)."""

    def run(self, ctx):
        return {}["missing"]


@hookimpl
def register_tasks(register):
    register("probe", Probe)
    register("broken-task", Broken)
    register("buggy-task", Buggy)
'''


def plugin_dir(tmp: Path) -> Path:
    folder = tmp / "plugs"
    folder.mkdir(exist_ok=True)
    (folder / "fk_probe.py").write_text(PLUGIN)
    return folder


def base_recipe(tmp: Path, *, name: str = "bad", dim: int = 16, mods: dict | None = None) -> dict[str, Any]:
    """A valid recipe over imported embeddings in tmp/data (written here)."""
    mods = mods or MODS
    write_embeddings(tmp / "data", mods, dim=dim)
    inputs = {m: {"path": f"data/{m}.npy", "ids": f"data/{m}_ids.csv"} for m in mods}
    return {
        "schema": 1, "name": name, "seed": 3, "width": dim,
        "data": {"reader": {"name": "precomputed", "params": {"inputs": inputs}}},
        "modalities": {m: {"encoder": "identity"} for m in mods},
        "sampling": {"simple": {"name": "modality-level", "params": {"k": "3..5", "n": 40}},
                     "patients": {"name": "patient-level", "params": {"k": 3, "repeats": 2}}},
        "aggregator": "sum",
    }


def write_recipe(tmp: Path, recipe: dict[str, Any], name: str = "recipe.yaml") -> Path:
    path = tmp / name
    path.write_text(yaml.safe_dump(copy.deepcopy(recipe), sort_keys=False))
    return path


def fk(*args: str, env: dict[str, str] | None = None) -> tuple[int, str]:
    """Run the CLI in-process; returns (exit code, stdout+stderr). An exception that
    escaped the CLI is appended as traceback text, so "no Traceback" checks see it."""
    runner = CliRunner()
    from fusionkit.cli import cli

    res = runner.invoke(cli, list(args), env=env, catch_exceptions=True)
    out = res.output
    if res.exception is not None and not isinstance(res.exception, SystemExit):
        out += "\n" + "".join(traceback.format_exception(res.exception))
    return res.exit_code, out


def fk_proc(*args: str, cwd: Path | None = None, timeout: float = 300, **popen: Any) -> Any:
    """The CLI in a subprocess (``python -m fusionkit``)."""
    env = dict(os.environ, HF_HUB_OFFLINE="1", PYTHONUNBUFFERED="1")
    cmd = [sys.executable, "-m", "fusionkit", *args]
    if popen.pop("background", False):
        return subprocess.Popen(cmd, env=env, cwd=cwd, stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
                                text=True, start_new_session=True)
    return subprocess.run(cmd, env=env, cwd=cwd, capture_output=True, text=True, timeout=timeout)


def assert_clean(code: int, out: str, expect: int, *needles: str) -> None:
    """Exit code, no traceback, and every needle (file/field/key) named in the message."""
    assert "Traceback" not in out, out
    assert code == expect, f"exit {code} != {expect}\n{out}"
    for needle in needles:
        assert needle in out, f"{needle!r} not in:\n{out}"


def files_under(root: Path) -> set[str]:
    return {str(p.relative_to(root)) for p in root.rglob("*")} if root.exists() else set()
