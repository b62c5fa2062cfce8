"""A run killed mid-way (SIGKILL) at any stage and started again finishes without
recomputing finished repeats or encoded stores, and its metrics equal an
uninterrupted run's bit for bit."""

from __future__ import annotations

import json
import os
import re
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from helpers import imported_recipe

TASKS = """sampling_extra: {}
tasks:
  rec:
    name: recognizer-baseline
    params: {sampling: simple, n_repeats: 8, k: [3, 5], n_per_k: 300}
  after:
    name: stall-task
"""

#: a one-file plugin whose components stall (sleep) at a chosen stage when FK_STALL names it,
#: after touching FK_STALL_MARKER; without FK_STALL they behave normally (and their cache keys
#: never depend on it)
STALL_PLUGIN = '''
import os, time
import numpy as np
from fusionkit import hookimpl, Encoder, Sampler, Task
from fusionkit_plugins.sampling.samplers import ModalityLevelSampler


def _stall(stage):
    if os.environ.get("FK_STALL") == stage:
        open(os.environ["FK_STALL_MARKER"], "w").close()
        time.sleep(600)


class StallIdentity(Encoder):
    """Identity encoder in shards of 16 that stalls at its third shard (tests)."""

    input_kind = "embedding"
    shard_size = 16

    def __init__(self, dim: int = 16):
        self.dim = dim
        self._calls = 0

    def encode(self, data, ctx=None):
        self._calls += 1
        if self._calls == 3:
            _stall("encode")
        return np.asarray(data.data, dtype=np.float32)


class StallSampler(Sampler):
    """Modality-level sampling that stalls while the run saves its aggregates (tests)."""

    def __init__(self, k: int = 3, n: int = 40):
        self.k, self.n = k, n

    def plan(self, pool, rng):
        _stall("aggregate")
        return ModalityLevelSampler(k=self.k, n=self.n).plan(pool, rng)


class StallTask(Task):
    """A task that stalls (between the recognizer and the report) (tests)."""

    def run(self, ctx):
        _stall("between")
        return {"summary": {"ok": 1}}


@hookimpl
def register_encoders(register):
    register("stall-identity", StallIdentity)


@hookimpl
def register_samplers(register):
    register("stall-sampler", StallSampler)


@hookimpl
def register_tasks(register):
    register("stall-task", StallTask)
'''

VOLATILE = re.compile(r"(^|_)s$|time|wall|reused|computed|run_id|started|finished|units")


def _stable(obj):
    """Metrics without timings and cache bookkeeping (what a resumed run legitimately changes)."""
    if isinstance(obj, dict):
        return {k: _stable(v) for k, v in obj.items() if not VOLATILE.search(str(k))}
    if isinstance(obj, list):
        return [_stable(v) for v in obj]
    return obj


def _setup(tmp_path: Path) -> tuple[Path, Path]:
    recipe = imported_recipe(tmp_path, extra=TASKS.replace("sampling_extra: {}\n", ""))
    text = recipe.read_text().replace("  mutation: {encoder: identity}", "  mutation: {encoder: stall-identity}")
    text = text.replace("sampling:\n", "sampling:\n  stalls: {name: stall-sampler, params: {k: 3, n: 40}}\n", 1)
    recipe.write_text(text)
    plugs = tmp_path / "plugs"
    plugs.mkdir()
    (plugs / "stall.py").write_text(STALL_PLUGIN)
    return recipe, plugs


def _cmd(recipe: Path, plugs: Path, out: Path) -> list[str]:
    return [sys.executable, "-m", "fusionkit", "-v", "--plugins-dir", str(plugs), "run", str(recipe),
            "--out", str(out), "--no-progress"]


def _env(**extra: str) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("FK_STALL")}
    return dict(env, HF_HUB_OFFLINE="1", PYTHONUNBUFFERED="1", **extra)


def _kill_when(cmd: list[str], env: dict[str, str], ready, timeout: float = 240) -> None:
    proc = subprocess.Popen(cmd, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
                            start_new_session=True)
    deadline = time.time() + timeout
    try:
        while time.time() < deadline and proc.poll() is None and not ready():
            time.sleep(0.05)
        assert proc.poll() is None, "the run finished or failed before it could be killed"
        assert ready(), "the run never reached the stage"
    finally:
        if proc.poll() is None:
            os.killpg(proc.pid, signal.SIGKILL)
        proc.wait()


@pytest.fixture(scope="module")
def reference(tmp_path_factory):
    """An uninterrupted run: the metrics every resumed run must reproduce."""
    tmp = tmp_path_factory.mktemp("reference")
    recipe, plugs = _setup(tmp)
    out = tmp / "out"
    done = subprocess.run(_cmd(recipe, plugs, out), env=_env(), capture_output=True, text=True, timeout=600)
    assert done.returncode == 0, done.stdout + done.stderr
    return {"metrics": json.loads((out / "metrics.json").read_text()),
            "table": (out / "rec" / "metrics_per_repeat.csv").read_text()}


def _resume_and_compare(cmd: list[str], out: Path, reference: dict) -> str:
    status = json.loads((out / "run.json").read_text())["status"]
    assert status == "running"  # killed: never "ok"
    again = subprocess.run(cmd, env=_env(), capture_output=True, text=True, timeout=600)
    assert again.returncode == 0, again.stdout + again.stderr
    assert json.loads((out / "run.json").read_text())["status"] == "ok"
    metrics = json.loads((out / "metrics.json").read_text())
    assert _stable(metrics) == _stable(reference["metrics"])
    assert (out / "rec" / "metrics_per_repeat.csv").read_text() == reference["table"]
    return again.stdout + again.stderr


@pytest.mark.parametrize("stage", ["encode", "aggregate", "between"])
def test_killed_at_any_stage_resumes_to_the_same_metrics(tmp_path, reference, stage):
    recipe, plugs = _setup(tmp_path)
    out = tmp_path / "out"
    marker = tmp_path / "stalled"
    cmd = _cmd(recipe, plugs, out)
    _kill_when(cmd, _env(FK_STALL=stage, FK_STALL_MARKER=str(marker)), marker.exists)
    if stage == "encode":  # two shards of the mutation modality were written before the kill
        assert len(list((out / "cache" / "work").rglob("shard-*.npy"))) >= 2
    log = _resume_and_compare(cmd, out, reference)
    if stage == "between":  # the recognizer's repeats all finished before the kill
        assert re.search(r"running \d+ unit\(s\)", log) is None, log


def test_killed_run_resumes_without_recomputing_finished_repeats(tmp_path, reference):
    recipe, plugs = _setup(tmp_path)
    out = tmp_path / "out"
    units = out / "cache" / "units"
    cmd = _cmd(recipe, plugs, out)

    def two_units_done() -> bool:
        return units.exists() and len(list(units.rglob("*.unit"))) >= 2

    _kill_when(cmd, _env(), two_units_done)
    total = len(list(units.rglob("*.unit")))
    assert not (out / "metrics.json").exists() or "rec" not in (out / "metrics.json").read_text()
    log = _resume_and_compare(cmd, out, reference)
    assert "reusing cached embeddings" in log  # stores were finished before the kill
    m = re.search(r"running (\d+) unit\(s\), (\d+) reused from cache", log)
    assert m, log
    ran, reused = int(m.group(1)), int(m.group(2))
    assert reused == total and reused >= 2
    assert ran + reused == 16  # 8 repeats x 2 sample counts, each unit exactly once
    assert not list(units.rglob("*.pkl"))  # caches hold data, never pickles
