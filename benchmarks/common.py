"""Shared helpers for the fusionkit benchmarks (no fusionkit import here).

Every benchmark module exposes ``run(quick: bool = False, tmp: Path | None = None) -> list[dict]``
returning rows ``{benchmark, metric, fusionkit, baseline, ratio, target, met, unit, note}``
and can be run alone: ``python benchmarks/bench_sampling.py [--quick]``.
"""

from __future__ import annotations

import contextlib
import json
import os
import platform
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any, Callable, Iterator

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")

HERE = Path(__file__).resolve().parent
REPO = HERE.parent
DATA = Path(os.environ.get("FUSIONKIT_BENCH_DATA", REPO.parent / "shared" / "data")).resolve()
TCGA = DATA / "tcga"
if str(REPO) not in sys.path:
    sys.path.insert(0, str(REPO))


# ----------------------------------------------------------------------------- rows

def row(benchmark: str, metric: str, fusionkit: Any = None, baseline: Any = None, *, ratio: Any = None,
        target: str = "", met: bool | None = None, unit: str = "", note: str = "") -> dict[str, Any]:
    """One result row. ``ratio`` defaults to fusionkit / baseline when both are numbers."""
    if ratio is None and isinstance(fusionkit, (int, float)) and isinstance(baseline, (int, float)) and baseline:
        ratio = fusionkit / baseline
    return {"benchmark": benchmark, "metric": metric, "fusionkit": fusionkit, "baseline": baseline,
            "ratio": ratio, "target": target, "met": met, "unit": unit, "note": note}


def skip(benchmark: str, metric: str, reason: str) -> dict[str, Any]:
    return row(benchmark, metric, None, None, target="", met=None, note=f"SKIPPED: {reason}")


def fmt(v: Any) -> str:
    if v is None:
        return "–"
    if isinstance(v, bool):
        return "yes" if v else "no"
    if isinstance(v, float):
        a = abs(v)
        if a == 0:
            return "0"
        if a >= 1000:
            return f"{v:,.0f}"
        if a >= 10:
            return f"{v:.1f}"
        if a >= 0.01:
            return f"{v:.3g}"
        return f"{v:.2e}"
    if isinstance(v, int):
        return f"{v:,}"
    return str(v)


def table(rows: list[dict[str, Any]], markdown: bool = True) -> str:
    head = ["benchmark", "metric", "fusionkit", "baseline", "ratio", "target", "met", "note"]
    lines = []
    cells = [[r["benchmark"], r["metric"] + (f" [{r['unit']}]" if r.get("unit") else ""), fmt(r["fusionkit"]),
              fmt(r["baseline"]), fmt(r["ratio"]), r.get("target") or "",
              {True: "MET", False: "MISSED", None: ""}[r.get("met")], r.get("note") or ""] for r in rows]
    if markdown:
        lines.append("| " + " | ".join(head) + " |")
        lines.append("|" + "---|" * len(head))
        for c in cells:
            lines.append("| " + " | ".join(str(x).replace("|", "/") for x in c) + " |")
        return "\n".join(lines)
    widths = [max(len(h), *(len(str(c[i])) for c in cells)) if cells else len(h) for i, h in enumerate(head[:-1])]
    lines.append("  ".join(h.ljust(w) for h, w in zip(head[:-1], widths)))
    for c in cells:
        lines.append("  ".join(str(x).ljust(w) for x, w in zip(c[:-1], widths)) + (f"  {c[-1]}" if c[-1] else ""))
    return "\n".join(lines)


# ----------------------------------------------------------------------------- timing / memory

class Timer:
    def __enter__(self) -> "Timer":
        self.t0 = time.perf_counter()
        return self

    def __exit__(self, *exc: Any) -> None:
        self.s = time.perf_counter() - self.t0


def best_of(fn: Callable[[], Any], repeat: int = 3) -> float:
    best = float("inf")
    for _ in range(repeat):
        t0 = time.perf_counter()
        fn()
        best = min(best, time.perf_counter() - t0)
    return best


def proc_status() -> dict[str, int]:
    """Memory fields of /proc/self/status in bytes (Linux; empty elsewhere)."""
    out: dict[str, int] = {}
    try:
        with open("/proc/self/status") as fh:
            for line in fh:
                key, _, val = line.partition(":")
                if key in ("VmRSS", "VmHWM", "RssAnon", "RssFile", "RssShmem"):
                    out[key] = int(val.split()[0]) * 1024
    except OSError:
        pass
    return out


def run_child(code: str, args: dict[str, Any], timeout: float = 1200) -> dict[str, Any]:
    """Run ``code`` in a fresh Python; it reads ``ARGS`` (dict) and sets ``RESULT`` (dict).

    Returns RESULT plus ``ru_maxrss_bytes`` of that child (peak resident set,
    from ``resource.getrusage(RUSAGE_CHILDREN)`` differences) and its wall time.
    """
    import resource

    prog = ("import json, sys\nARGS = json.loads(sys.argv[1])\nRESULT = {}\n" + code +
            "\nprint('@@RESULT@@' + json.dumps(RESULT))\n")
    before = resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss
    t0 = time.perf_counter()
    env = dict(os.environ)
    env["PYTHONPATH"] = os.pathsep.join([str(HERE), str(REPO), env.get("PYTHONPATH", "")])
    proc = subprocess.run([sys.executable, "-c", prog, json.dumps(args)], capture_output=True, text=True,
                          timeout=timeout, env=env, cwd=str(REPO))
    wall = time.perf_counter() - t0
    after = resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss
    if proc.returncode != 0:
        raise RuntimeError(f"child failed (rc {proc.returncode}):\n{proc.stderr[-3000:]}")
    res: dict[str, Any] = {}
    for line in proc.stdout.splitlines():
        if line.startswith("@@RESULT@@"):
            res = json.loads(line[len("@@RESULT@@"):])
    # ru_maxrss of RUSAGE_CHILDREN is the max over all waited-for children; only
    # trust it when this child raised it (the child also reports its own VmHWM).
    res.setdefault("child_wall_s", wall)
    res["ru_maxrss_children_bytes"] = after * 1024 if after > before else None
    return res


# Started as ``python -c RSS_LAUNCHER RESULT_FILE CMD...``: a fresh, small process forks and
# execs CMD, waits for it and writes its ru_maxrss (KiB) to RESULT_FILE; exits with CMD's status.
RSS_LAUNCHER = """
import os, sys
out, cmd = sys.argv[1], sys.argv[2:]
pid = os.fork()
if pid == 0:
    try:
        os.execvp(cmd[0], cmd)
    finally:
        os._exit(127)
_, status, ru = os.wait4(pid, 0)
with open(out, "w") as fh:
    fh.write(str(ru.ru_maxrss))
code = os.waitstatus_to_exitcode(status)
sys.exit(code if code >= 0 else 128 - code)
"""


def run_cmd_measured(cmd: list[str], *, cwd: Path | None = None, env: dict[str, str] | None = None,
                     timeout: float = 1200) -> dict[str, Any]:
    """Run a command, return wall time, rc, tail of output and the peak RSS of the process tree.

    Peak RSS is ``wait4``'s ``ru_maxrss`` of the command (the largest of it and its reaped
    descendants, e.g. forked workers), taken by a small launcher process
    (:data:`RSS_LAUNCHER`) rather than by this process: Linux keeps the high-water RSS of
    the address space a process had *before* ``exec`` in its ``ru_maxrss``, so a command
    started straight from a benchmark process that has grown to 3 GiB reports >= 3 GiB
    whatever it used itself (measured: ``python -c pass`` from a 3 GiB parent 3.03 GiB,
    through the launcher 0.01 GiB).
    """
    t0 = time.perf_counter()
    rss_file = tempfile.NamedTemporaryFile(prefix="fk-rss-", suffix=".txt", delete=False)
    rss_file.close()
    p = subprocess.Popen([sys.executable, "-c", RSS_LAUNCHER, rss_file.name, *cmd], cwd=cwd, env=env,
                         stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=False, start_new_session=True)
    deadline = t0 + timeout
    chunks: list[bytes] = []
    import selectors

    sel = selectors.DefaultSelector()
    assert p.stdout is not None
    sel.register(p.stdout, selectors.EVENT_READ)
    while True:
        if time.perf_counter() > deadline:
            with contextlib.suppress(ProcessLookupError):
                os.killpg(p.pid, signal.SIGKILL)  # the launcher and the command
            break
        events = sel.select(timeout=1.0)
        done = False
        for key, _ in events:
            data = key.fileobj.read1(65536)  # type: ignore[union-attr]
            if not data:
                done = True
            chunks.append(data)
        if done:
            break
    _, status, _ = os.wait4(p.pid, 0)
    wall = time.perf_counter() - t0
    rc = os.waitstatus_to_exitcode(status)
    p.returncode = rc
    out = b"".join(chunks).decode("utf-8", "replace")
    try:
        peak = int(Path(rss_file.name).read_text().strip() or 0) * 1024
    except (OSError, ValueError):
        peak = 0
    finally:
        with contextlib.suppress(OSError):
            os.unlink(rss_file.name)
    return {"wall_s": wall, "rc": rc, "output_tail": out[-4000:], "peak_rss_bytes": peak}


# ----------------------------------------------------------------------------- temp space

@contextlib.contextmanager
def temp_dir(tmp: Path | None = None, name: str = "bench") -> Iterator[Path]:
    """A fresh folder under ``tmp`` (or the system temp), removed afterwards."""
    base = Path(tmp) if tmp else Path(os.environ.get("FUSIONKIT_BENCH_TMP", tempfile.gettempdir()))
    base.mkdir(parents=True, exist_ok=True)
    path = Path(tempfile.mkdtemp(prefix=f"fk-{name}-", dir=base))
    try:
        yield path
    finally:
        shutil.rmtree(path, ignore_errors=True)


# ----------------------------------------------------------------------------- machine

def _cpu_name() -> str:
    """The CPU's model name with its family/model and the widest matrix-product ISA: hosts named
    alike ("AMD EPYC") differed 2x in speed here (Zen 3 with AVX2 against Zen 4 with AVX512-BF16)."""
    fields: dict[str, str] = {}
    try:
        with open("/proc/cpuinfo") as fh:
            for line in fh:
                if not line.strip():
                    break  # the first processor's block is enough
                key, _, value = line.partition(":")
                fields[key.strip()] = value.strip()
    except OSError:
        return platform.processor() or ""
    flags = set(fields.get("flags", "").split())
    isa = next((name for flag, name in (("amx_bf16", "AMX-BF16"), ("avx512_bf16", "AVX512-BF16"),
                                         ("avx512f", "AVX-512"), ("avx2", "AVX2")) if flag in flags), "")
    family = f"family {fields['cpu family']} model {fields['model']}" if "cpu family" in fields else ""
    extra = ", ".join(x for x in (family, isa) if x)
    name = fields.get("model name") or platform.processor() or ""
    return f"{name} ({extra})" if extra else name


def machine() -> dict[str, Any]:
    info: dict[str, Any] = {"platform": platform.platform(), "python": platform.python_version()}
    info["cpu"] = _cpu_name()
    info["logical_cores"] = os.cpu_count()
    try:
        info["usable_cores"] = len(os.sched_getaffinity(0))
    except AttributeError:
        pass
    try:
        with open("/proc/meminfo") as fh:
            for line in fh:
                if line.startswith("MemTotal"):
                    info["ram_gib"] = round(int(line.split()[1]) / 1024 ** 2, 1)
    except OSError:
        pass
    try:
        info["load_avg"] = os.getloadavg()
    except OSError:
        pass
    for mod in ("numpy", "torch", "faiss", "sklearn", "sentence_transformers", "timm", "fusionkit"):
        try:
            m = __import__(mod)
            info[mod] = getattr(m, "__version__", "?")
        except Exception as exc:  # noqa: BLE001 - report, don't fail
            info[mod] = f"absent ({type(exc).__name__})"
    try:
        import torch

        info["torch_threads"] = torch.get_num_threads()
    except Exception:  # noqa: BLE001
        pass
    try:
        import numpy as np

        cfg = np.show_config(mode="dicts")  # numpy >= 1.25
        blas = cfg.get("Build Dependencies", {}).get("blas", {})
        info["numpy_blas"] = f"{blas.get('name', '?')} {blas.get('version', '')}".strip()
    except Exception:  # noqa: BLE001
        pass
    try:
        info["git_commit"] = subprocess.run(["git", "rev-parse", "--short", "HEAD"], cwd=REPO, capture_output=True,
                                            text=True, timeout=10).stdout.strip()
    except Exception:  # noqa: BLE001
        pass
    return info


def main_for(run: Callable[..., list[dict[str, Any]]]) -> None:
    """``python benchmarks/bench_x.py [--quick]``: run one benchmark and print its rows."""
    import argparse

    ap = argparse.ArgumentParser()
    ap.add_argument("--quick", action="store_true")
    ap.add_argument("--json", action="store_true", help="print rows as JSON")
    a = ap.parse_args()
    rows = run(quick=a.quick)
    print(json.dumps(rows, indent=1, default=str) if a.json else table(rows, markdown=False))
