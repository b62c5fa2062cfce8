"""A run killed mid-way (SIGKILL) and started again finishes without recomputing
finished repeats or encoded stores."""

from __future__ import annotations

import os
import re
import signal
import subprocess
import sys
import time

from helpers import imported_recipe


def test_killed_run_resumes_without_recomputing_finished_repeats(tmp_path):
    extra = """tasks:
  rec:
    name: recognizer-baseline
    params: {sampling: simple, n_repeats: 8, k: [3, 5], n_per_k: 300}
"""
    recipe = imported_recipe(tmp_path, extra=extra)
    out = tmp_path / "out"
    env = dict(os.environ, HF_HUB_OFFLINE="1", PYTHONUNBUFFERED="1")
    cmd = [sys.executable, "-m", "fusionkit", "-v", "run", str(recipe), "--out", str(out), "--no-progress"]
    proc = subprocess.Popen(cmd, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, start_new_session=True)
    units = out / "cache" / "units"
    deadline = time.time() + 240
    done_before = 0
    try:
        while time.time() < deadline and proc.poll() is None:
            done_before = len(list(units.rglob("*.pkl"))) if units.exists() else 0
            if done_before >= 2:
                os.killpg(proc.pid, signal.SIGKILL)
                break
            time.sleep(0.05)
    finally:
        if proc.poll() is None:
            os.killpg(proc.pid, signal.SIGKILL)
        proc.wait()
    assert done_before >= 2, "the run finished or stalled before it could be killed"
    total = len(list((out / "cache" / "units").rglob("*.pkl")))
    assert not (out / "metrics.json").exists() or "rec" not in (out / "metrics.json").read_text()
    again = subprocess.run(cmd, env=env, capture_output=True, text=True, timeout=300)
    assert again.returncode == 0, again.stdout + again.stderr
    log = again.stdout + again.stderr
    assert "reusing cached embeddings" in log  # stores were finished before the kill
    m = re.search(r"running (\d+) unit\(s\), (\d+) reused from cache", log)
    assert m, log
    ran, reused = int(m.group(1)), int(m.group(2))
    assert reused == total and reused >= 2
    assert ran + reused == 16  # 8 repeats x 2 sample counts, each unit exactly once
    assert "rec" in (out / "metrics.json").read_text()
