"""A quiet, informative console: one progress display (live line on a terminal,
a line per stage when piped), library warnings into run.log with counts, and a
run that prints no Python warning to the terminal."""

from __future__ import annotations

import io
import multiprocessing as mp
import re
import warnings

import pytest


class _Tty(io.StringIO):
    def isatty(self) -> bool:
        return True


def _warn_in_child(n: int) -> None:
    for _ in range(n):
        warnings.warn("lbfgs failed to converge (status=1):\nSTOP: TOTAL NO. of ITERATIONS REACHED LIMIT.",
                      RuntimeWarning)


def test_plain_console_prints_a_line_per_stage():
    from fusionkit.progress import Console

    out = io.StringIO()
    con = Console(out, mode="auto")  # not a terminal: plain
    assert con.mode == "plain"
    con.plan(2)
    con.begin("encode text")
    bar = con.bar(desc="encode text", total=4)
    for _ in range(4):
        bar.update(1)
    bar.close()
    con.begin("task recognizer")
    con.message("a note")
    con.close()
    lines = out.getvalue().splitlines()
    assert lines[0] == "[1/2] encode text ..."
    assert re.fullmatch(r"\[1/2\] encode text: done in \d+s, 4 units", lines[1])
    assert lines[2] == "[2/2] task recognizer ..." and lines[3] == "a note"
    assert re.fullmatch(r"\[2/2\] task recognizer: done in \d+s", lines[4]) and len(lines) == 5
    assert "\r" not in out.getvalue() and "\x1b" not in out.getvalue()


def test_terminal_console_keeps_one_live_line_with_units_elapsed_and_eta(monkeypatch):
    from fusionkit import progress
    from fusionkit.progress import Console

    clock = [100.0]
    monkeypatch.setattr(progress.time, "monotonic", lambda: clock[0])
    out = _Tty()
    con = Console(out, mode="auto", tick=3600)
    assert con.mode == "tty"
    con.plan(9)
    con.begin("task classifier")
    bar = con.bar(desc="classifier", total=10)
    clock[0] += 40
    for _ in range(4):
        bar.update(1)
    line = con.status_line()
    assert line.startswith("[1/9] task classifier · 4/10 units · ~1m00s left · 40s elapsed")
    text = out.getvalue()
    assert "\n" not in text and text.count("\r") >= 5  # redrawn in place, never scrolled
    con.close()
    assert out.getvalue().endswith("\r\x1b[K")  # the live line is cleared at the end


def test_run_log_captures_warnings_from_this_process_and_forked_workers(tmp_path):
    from fusionkit.progress import Console, RunLog, set_current

    con = Console(io.StringIO(), mode="plain")
    set_current(con)
    try:
        con.begin("classifier")
        with RunLog(tmp_path / "run.log") as log:
            warnings.warn("something odd", UserWarning)
            warnings.warn("something odd", UserWarning)  # every occurrence counts ("always")
            ctx = mp.get_context("fork")
            procs = [ctx.Process(target=_warn_in_child, args=(20,)) for _ in range(2)]
            for p in procs:
                p.start()
            for p in procs:
                p.join()
            summary = log.summary()
        counts = {(c.stage, c.category): c.count for c in log.counts()}
    finally:
        set_current(None)
    assert counts == {("classifier", "RuntimeWarning"): 40, ("classifier", "UserWarning"): 2}
    assert summary[0] == "classifier: 40 x RuntimeWarning: lbfgs failed to converge (status=1):"
    text = (tmp_path / "run.log").read_text()
    assert "STOP: TOTAL NO. of ITERATIONS" in text  # the full text once per process, indented
    assert text.count("STOP: TOTAL") == 2
    # outside the capture, warnings behave as before
    with warnings.catch_warnings(record=True) as seen:
        warnings.simplefilter("always")
        warnings.warn("after", UserWarning)
    assert len(seen) == 1


def test_console_filter_keeps_library_chatter_off_the_terminal():
    import logging

    from fusionkit.progress import ConsoleFilter

    f = ConsoleFilter(logging.WARNING)

    def rec(name: str, level: int) -> logging.LogRecord:
        return logging.LogRecord(name, level, __file__, 1, "m", None, None)

    assert f.filter(rec("fusionkit", logging.WARNING)) and f.filter(rec("fusionkit_plugins.x", logging.ERROR))
    assert not f.filter(rec("fusionkit", logging.INFO))
    assert not f.filter(rec("transformers.modeling", logging.WARNING))
    assert f.filter(rec("torch", logging.ERROR))


@pytest.mark.parametrize("seconds,text", [(5, "5s"), (65, "1m05s"), (3725, "1h02m")])
def test_durations(seconds, text):
    from fusionkit.progress import fmt_duration

    assert fmt_duration(seconds) == text


NOISY_PLUGIN = '''
"""A task whose repeats warn (in forked workers) and whose driver warns."""

import warnings

import numpy as np

from fusionkit import Task, Unit, hookimpl


def noisy_repeat(ctx, rep):
    for _ in range(3):
        warnings.warn("lbfgs failed to converge; increase max_iter", RuntimeWarning)
    agg = ctx.sample("simple", seed_keys=("noisy", rep))
    return {"repeat": rep, "mean": float(np.asarray(agg.X).mean())}


class NoisyTask(Task):
    """Warns a lot."""

    def __init__(self, n_repeats: int = 4):
        self.n_repeats = n_repeats

    def run(self, ctx):
        warnings.warn("driver-side oddity", UserWarning)
        units = [Unit(ctx.unit_key("noisy", rep), noisy_repeat, (ctx, rep), label=f"repeat {rep}")
                 for rep in range(self.n_repeats)]
        rows = list(ctx.run_units("noisy", units).values())
        return {"summary": {"repeats": len(rows)}}


@hookimpl
def register_tasks(register):
    register("noisy", NoisyTask)
'''


def test_a_run_prints_no_python_warning_and_logs_them_with_counts(tmp_path):
    """The acceptance test: a small recipe in a subprocess; stderr has no 'Warning'; run.log counts them."""
    import os
    import subprocess
    import sys

    from helpers import imported_recipe

    (tmp_path / "plug").mkdir()
    (tmp_path / "plug" / "noisy.py").write_text(NOISY_PLUGIN)
    extra = "tasks:\n  noisy: {name: noisy, params: {n_repeats: 4}}\nexecutor: {name: local, params: {workers: 2}}\n"
    recipe = imported_recipe(tmp_path, extra=extra)
    out = tmp_path / "out"
    env = dict(os.environ, HF_HUB_OFFLINE="1", PYTHONWARNINGS="default")
    cmd = [sys.executable, "-m", "fusionkit", "--plugins-dir", str(tmp_path / "plug"), "run", str(recipe),
           "--out", str(out)]
    res = subprocess.run(cmd, env=env, capture_output=True, text=True, timeout=300)
    assert res.returncode == 0, res.stdout + res.stderr
    assert "Warning" not in res.stderr, res.stderr
    # piped: plain lines, one when a stage starts and one when it ends
    assert re.search(r"^\[1/\d+\] read \.\.\.$", res.stderr, flags=re.M), res.stderr
    assert re.search(r"^\[\d+/\d+\] task noisy: done in \d+s, 4 units$", res.stderr, flags=re.M), res.stderr
    # run.log holds every warning, from the driver and from both worker processes, with its stage
    log = (out / "run.log").read_text()
    assert log.count("WARNING RuntimeWarning [task noisy]") == 12
    assert log.count("WARNING UserWarning [task noisy]") == 1
    # and the summary counts them once, on stdout
    assert "task noisy: 12 x RuntimeWarning: lbfgs failed to converge; increase max_iter" in res.stdout
    assert f"see {out / 'run.log'}" in res.stdout
