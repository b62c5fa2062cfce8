"""Ray executor: identical stores and metrics to a local run, retries and resume
after a worker is killed, failures named per unit. Starts a local Ray instance
(2 CPUs) once for the module; skipped without the ``ray`` extra."""

from __future__ import annotations

import json
import os
import sys
from pathlib import Path

import numpy as np
import pytest

ray = pytest.importorskip("ray")

from fusionkit import engine, hookimpl, plugins  # noqa: E402
from fusionkit.components import Encoder, Task  # noqa: E402
from fusionkit.executors import LocalExecutor, Unit, UnitCache, run_units  # noqa: E402
from fusionkit.recipe import load_recipe  # noqa: E402
from fusionkit.store import EmbeddingStore  # noqa: E402
from helpers import imported_recipe  # noqa: E402


@pytest.fixture(scope="module")
def ray_session():
    # test classes below are not importable in Ray workers: ship them by value
    ray.cloudpickle.register_pickle_by_value(sys.modules[__name__])
    ray.init(num_cpus=2, include_dashboard=False, ignore_reinit_error=True, log_to_driver=False,
             object_store_memory=80 * 1024 * 1024)
    yield
    ray.shutdown()
    ray.cloudpickle.unregister_pickle_by_value(sys.modules[__name__])


class CentredProjection(Encoder):
    """Trainable (fit = column means) projection; writes one marker file per call."""

    modality = "any"
    input_kind = "embedding"
    trainable = True
    shard_size = 16

    def __init__(self, dim: int = 16, calls_dir: str = "", kill_at: int = -1):
        self.dim = dim
        self.calls_dir = calls_dir
        self.kill_at = kill_at
        self.mu = None
        self.W = np.random.default_rng(5).normal(size=(16, dim)).astype(np.float32)

    def fit(self, data, ctx=None):
        self.mu = np.asarray(data.data, dtype=np.float32).mean(axis=0)
        return self

    def save(self, folder):
        np.save(Path(folder) / "mu.npy", self.mu)

    def load(self, folder):
        self.mu = np.load(Path(folder) / "mu.npy")
        return self

    def encode(self, data, ctx=None):
        first = str(data.item_ids[0])
        if self.calls_dir:
            calls = Path(self.calls_dir)
            marker = calls / f"killed-{first}"
            if self.kill_at >= 0 and first.endswith(f":rna:{self.kill_at}") and not marker.exists():
                marker.write_text("x")
                os._exit(1)  # the worker dies mid-shard
            with open(calls / f"calls-{first}", "a") as fh:
                fh.write(f"{os.getpid()}\n")
        X = np.asarray(data.data, dtype=np.float32) - self.mu
        return X @ self.W


class RepeatStats(Task):
    """Independent repeats through ctx.run_units: sample, aggregate, summarise."""

    def __init__(self, repeats: int = 4):
        self.repeats = repeats

    def _one(self, ctx, r):
        agg = ctx.sample("simple", seed_keys=("repeat", r))
        return {"repeat": r, "pid": os.getpid(), "sum": float(np.asarray(agg.X, dtype=np.float64).sum()),
                "norm": float(np.linalg.norm(agg.X)), "n": int(len(agg.X))}

    def run(self, ctx):
        units = [Unit(ctx.unit_key("repeat-stats", r), self._one, (ctx, r), label=f"repeat {r}")
                 for r in range(self.repeats)]
        res = ctx.run_units("repeat-stats", units)
        rows = [{k: v for k, v in res[u.key].items() if k != "pid"} for u in units]
        return {"rows": rows, "pids": sorted({res[u.key]["pid"] for u in units})}


def _system():
    mod = type("M", (), {})()

    @hookimpl
    def register_encoders(register):
        register("centred-projection", CentredProjection)

    @hookimpl
    def register_tasks(register):
        register("repeat-stats", RepeatStats)

    mod.register_encoders = register_encoders
    mod.register_tasks = register_tasks
    return plugins.load(env={}, entry_points=[], extra=[("ray-test-plugin", mod)])


def _recipe(tmp_path: Path, calls: Path, kill_at: int = -1) -> Path:
    path = imported_recipe(tmp_path, {"rna": (70, 0.5), "text": (90, 0.0)},
                           extra="tasks:\n  stats: {name: repeat-stats, params: {repeats: 4}}\n")
    enc = f"{{name: centred-projection, params: {{calls_dir: '{calls}', kill_at: {kill_at}}}}}"
    path.write_text(path.read_text().replace("encoder: identity", f"encoder: {enc}"))
    return path


def _stores(out: Path) -> dict[str, tuple[np.ndarray, dict]]:
    res = {}
    for folder in sorted((out / "cache" / "stores").iterdir()):
        s = EmbeddingStore(folder)
        res[s.modality] = (np.asarray(s.embeddings), {k: list(v) for k, v in s.items.items()})
    return res


def test_local_and_ray_runs_are_identical(ray_session, tmp_path):
    system = _system()
    calls = tmp_path / "calls"
    calls.mkdir()
    path = _recipe(tmp_path, calls)
    local = load_recipe(path, system)
    engine.run(local, system, out_dir=tmp_path / "local", progress=False)
    on_ray = load_recipe(path, system, ["executor.name=ray", "executor.params.workers=2"])
    engine.run(on_ray, system, out_dir=tmp_path / "ray", progress=False)

    a, b = _stores(tmp_path / "local"), _stores(tmp_path / "ray")
    assert set(a) == set(b) == {"rna", "text"}
    for m in a:
        assert a[m][0].tobytes() == b[m][0].tobytes()
        assert a[m][1] == b[m][1]
    ma = json.loads((tmp_path / "local" / "metrics.json").read_text())
    mb = json.loads((tmp_path / "ray" / "metrics.json").read_text())
    assert ma["stats"]["rows"] == mb["stats"]["rows"]
    assert os.getpid() not in mb["stats"]["pids"]  # repeats really ran in Ray workers
    assert ma["stats"]["pids"] == [os.getpid()]
    np.testing.assert_array_equal(np.load(tmp_path / "local" / "aggregates" / "simple" / "X.npy"),
                                  np.load(tmp_path / "ray" / "aggregates" / "simple" / "X.npy"))
    # encoding ran in Ray workers: each shard exactly twice in all (once local, once on Ray)
    counts = {p.name: p.read_text().split() for p in calls.glob("calls-*")}
    assert counts and all(len(v) == 2 for v in counts.values())
    assert any(pid != str(os.getpid()) for v in counts.values() for pid in v)


def test_killed_encoding_worker_is_retried_without_recomputing(ray_session, tmp_path):
    system = _system()
    calls = tmp_path / "calls"
    calls.mkdir()
    path = _recipe(tmp_path, calls, kill_at=32)  # rna shard [32:48] kills its worker once
    rec = load_recipe(path, system, ["executor.name=ray", "executor.params.workers=2"])
    engine.run(rec, system, out_dir=tmp_path / "out", progress=False)
    assert (calls / "killed-TCGA-AA-0032:rna:32").exists()
    counts = {p.name: len(p.read_text().split()) for p in calls.glob("calls-*")}
    assert counts and all(c == 1 for c in counts.values()), counts  # the killed shard ran once to the end
    ref = load_recipe(path, system)
    engine.run(ref, system, out_dir=tmp_path / "ref", progress=False)  # local, same seed
    a, b = _stores(tmp_path / "out"), _stores(tmp_path / "ref")
    for m in a:
        assert a[m][0].tobytes() == b[m][0].tobytes()


def _flaky(key: str, folder: str, kill: str) -> dict:
    root = Path(folder)
    with open(root / f"count-{key}", "a") as fh:
        fh.write("1\n")
    if key == kill and not (root / f"killed-{key}").exists():
        (root / f"killed-{key}").write_text("x")
        os._exit(1)
    return {"key": key, "value": int(key[1:]) ** 2}


def test_killed_repeat_fails_by_label_then_resumes(ray_session, tmp_path):
    from fusionkit.ray_executor import RayExecutor, UnitFailed

    work = tmp_path / "work"
    work.mkdir()
    cache = UnitCache(tmp_path / "cache")
    units = [Unit(f"u{i}", _flaky, (f"u{i}", str(work), "u3"), label=f"repeat {i}") for i in range(6)]
    with pytest.raises(UnitFailed, match="repeat 3"):
        run_units(units, cache, RayExecutor(workers=2, max_retries=0))
    finished = {u.key: cache.path(u.key).stat() for u in units if cache.has(u.key)}
    assert set(finished) == {"u0", "u1", "u2", "u4", "u5"}  # the others were not lost
    seen = []
    res = run_units(units, cache, RayExecutor(workers=2, max_retries=0),
                    progress=lambda total: _Bar(seen, total))
    assert seen == [1]  # only the failed unit ran again
    assert {k: v["value"] for k, v in res.items()} == {f"u{i}": i * i for i in range(6)}
    for key, st in finished.items():
        now = cache.path(key).stat()
        assert (now.st_ino, now.st_mtime_ns) == (st.st_ino, st.st_mtime_ns)
        assert (work / f"count-{key}").read_text().count("1") == 1
    assert (work / "count-u3").read_text().count("1") == 2
    # with retries, Ray reruns a killed unit within the same run
    (work / "killed-u2").unlink(missing_ok=True)
    cache2 = UnitCache(tmp_path / "cache2")
    res2 = run_units([Unit("u2", _flaky, ("u2", str(work), "u2"))], cache2, RayExecutor(workers=2, max_retries=2))
    assert res2["u2"]["value"] == 4 and (work / "killed-u2").exists()
    # the same units locally give the same results
    cache3 = UnitCache(tmp_path / "cache3")
    assert run_units(units, cache3, LocalExecutor(1)) == res


class _Bar:
    def __init__(self, seen, total):
        self.seen, self.total = seen, total

    def update(self, n):
        self.seen.append(n)

    def close(self):
        pass
