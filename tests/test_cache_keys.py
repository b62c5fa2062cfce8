"""A cache that never lies: cache keys follow the component's code and its local
weights; `run --refresh` recomputes; `cache ls|prune` show and clean entries."""

from __future__ import annotations

import importlib.util
import json
import os
import subprocess
import sys
from pathlib import Path
from types import SimpleNamespace

import numpy as np
import pytest


def _load_module(path: Path, name: str):
    spec = importlib.util.spec_from_file_location(name, path)
    mod = importlib.util.module_from_spec(spec)
    sys.modules[name] = mod
    spec.loader.exec_module(mod)
    return mod


def test_source_fingerprint_follows_the_plugin_file_not_the_core(tmp_path):
    from fusionkit.cachekeys import source_files, source_fingerprint
    from fusionkit.components import Encoder

    path = tmp_path / "fk_cachekey_plugin.py"
    path.write_text("from fusionkit.components import Encoder\n\nclass Enc(Encoder):\n    SCALE = 1\n")
    mod = _load_module(path, "fk_cachekey_plugin")
    try:
        assert source_files(mod.Enc) == [path.resolve()]  # the core's Encoder/Component are not part of it
        assert source_fingerprint(Encoder) == ""
        first = source_fingerprint(mod.Enc)
        assert len(first) == 16 and source_fingerprint(mod.Enc) == first  # stable
        path.write_text(path.read_text().replace("SCALE = 1", "SCALE = 2"))
        assert source_fingerprint(mod.Enc) != first  # edited, same version: a new key
        # a base class from another plugin module counts too
        base = tmp_path / "fk_cachekey_base.py"
        base.write_text("class Base:\n    pass\n")
        _load_module(base, "fk_cachekey_base")
        sub = tmp_path / "fk_cachekey_sub.py"
        sub.write_text("from fk_cachekey_base import Base\nclass Sub(Base):\n    pass\ndef make():\n    return Sub()\n")
        sub_mod = _load_module(sub, "fk_cachekey_sub")
        assert source_files(sub_mod.Sub) == [sub.resolve(), base.resolve()]
        # a factory function: its module file
        assert source_files(sub_mod.make) == [sub.resolve()]
    finally:
        for name in ("fk_cachekey_plugin", "fk_cachekey_base", "fk_cachekey_sub"):
            sys.modules.pop(name, None)


def test_weights_fingerprint_hashes_local_model_files_and_folders(tmp_path):
    from fusionkit.cachekeys import local_paths, weights_fingerprint

    model = tmp_path / "model"
    (model / "sub").mkdir(parents=True)
    (model / "config.json").write_text("{}")
    np.save(model / "sub" / "weights.npy", np.ones(4))
    ckpt = tmp_path / "ckpt.pth"
    ckpt.write_bytes(b"abc")
    calls = tmp_path / "calls"
    calls.mkdir()
    params = {"model": str(model), "checkpoint_path": str(ckpt), "calls_dir": str(calls), "name": "x",
              "model_name": "all-MiniLM-L6-v2", "nested": {"weights": [str(ckpt)]}}
    assert local_paths(params) == [str(model.resolve()), str(ckpt.resolve())]  # calls_dir is not weights
    first = weights_fingerprint(params)
    assert set(first) == {str(model.resolve()), str(ckpt.resolve())}
    np.save(model / "sub" / "weights.npy", np.full(4, 2.0))  # new weights, same folder and file names
    second = weights_fingerprint(params)
    assert second[str(model.resolve())] != first[str(model.resolve())]
    assert second[str(ckpt.resolve())] == first[str(ckpt.resolve())]
    # a component may name its weights parameters itself
    assert local_paths(params, ["calls_dir"]) == [str(calls.resolve())]


def test_component_key_of_a_spec(tmp_path):
    from fusionkit.cachekeys import component_key

    ckpt = tmp_path / "w.bin"
    ckpt.write_bytes(b"1")
    path = tmp_path / "fk_cachekey_spec.py"
    path.write_text("class Enc:\n    weights_params = ('source',)\n")
    mod = _load_module(path, "fk_cachekey_spec")
    try:
        spec = SimpleNamespace(info=SimpleNamespace(factory=mod.Enc), params={"source": str(ckpt), "model": "x"})
        key = component_key(spec)
        assert key["code"] and list(key["weights"]) == [str(ckpt.resolve())]
        assert component_key(None) == {}
    finally:
        sys.modules.pop("fk_cachekey_spec", None)


SCALED_PLUGIN = '''
"""Multiplies precomputed embeddings by a scale read from a local weights folder."""

import os

import numpy as np

from fusionkit import Encoder, hookimpl

CODE_FACTOR = 1.0


class ScaledEncoder(Encoder):
    """Scaled pass-through (weights: scale.npy in weights_dir)."""

    modality = "any"
    input_kind = "embedding"
    card = {"licence": "n/a", "gated": False, "weights_source": "local folder"}

    def __init__(self, weights_dir: str = "", dim: int = 16):
        self.weights_dir = weights_dir
        self.dim = dim

    def encode(self, data, ctx=None):
        with open(os.environ["FK_CALLS"], "a") as fh:
            fh.write("encode\\n")
        scale = float(np.load(os.path.join(self.weights_dir, "scale.npy")))
        return np.asarray(data.data, dtype=np.float32) * scale * CODE_FACTOR


@hookimpl
def register_encoders(register):
    register("scaled", ScaledEncoder)
'''


def _run(tmp_path: Path, *args: str) -> subprocess.CompletedProcess[str]:
    env = dict(os.environ, HF_HUB_OFFLINE="1", FK_CALLS=str(tmp_path / "calls.txt"))
    cmd = [sys.executable, "-m", "fusionkit", "--plugins-dir", str(tmp_path / "plug"), *args]
    res = subprocess.run(cmd, env=env, capture_output=True, text=True, timeout=300)
    assert res.returncode == 0, res.stdout + res.stderr
    return res


def _norm_and_calls(tmp_path: Path, out: Path) -> tuple[float, int]:
    norm = json.loads((out / "data_summary.json").read_text())["modalities"]["rna"]["mean_norm"]
    calls = (tmp_path / "calls.txt").read_text().count("encode") if (tmp_path / "calls.txt").exists() else 0
    return round(float(norm), 4), calls


def test_cache_follows_weights_and_code_refresh_recomputes_and_ls_lists(tmp_path):
    from helpers import imported_recipe

    weights = tmp_path / "model"
    weights.mkdir()
    np.save(weights / "scale.npy", np.float32(1.0))
    (tmp_path / "plug").mkdir()
    plugin = tmp_path / "plug" / "scaled.py"
    plugin.write_text(SCALED_PLUGIN)
    recipe = imported_recipe(tmp_path, {"rna": (40, 0.5), "text": (80, 0.0)})
    recipe.write_text(recipe.read_text().replace("rna: {encoder: identity}",
                                                 f"rna: {{encoder: {{name: scaled, params: {{weights_dir: {weights}}}}}}}"))
    out, cache = tmp_path / "out", tmp_path / "cache"
    run = ("run", str(recipe), "--out", str(out), "--cache", str(cache))
    _run(tmp_path, *run)
    n1, c1 = _norm_and_calls(tmp_path, out)
    assert c1 == 1
    _run(tmp_path, *run)
    assert _norm_and_calls(tmp_path, out) == (n1, 1)  # reused
    np.save(weights / "scale.npy", np.float32(2.0))  # new weights in the same folder
    _run(tmp_path, *run)
    n2, c2 = _norm_and_calls(tmp_path, out)
    assert c2 == 2 and n2 == pytest.approx(2 * n1, rel=1e-3)
    plugin.write_text(SCALED_PLUGIN.replace("CODE_FACTOR = 1.0", "CODE_FACTOR = 3.0"))  # same version, new code
    _run(tmp_path, *run)
    n3, c3 = _norm_and_calls(tmp_path, out)
    assert c3 == 3 and n3 == pytest.approx(6 * n1, rel=1e-3)
    _run(tmp_path, *run, "--refresh", "encode")  # forced
    assert _norm_and_calls(tmp_path, out) == (n3, 4)
    _run(tmp_path, *run)
    assert _norm_and_calls(tmp_path, out) == (n3, 4)  # and reused again afterwards
    # cache ls --json: every store with its provenance; the ones made by old weights/code are stale
    listing = json.loads(_run(tmp_path, "cache", "ls", str(cache), "--json").stdout)
    stores = [e for e in listing["entries"] if e["kind"] == "store" and e["provenance"]["modality"] == "rna"]
    assert len(stores) == 3 and all(e["size_bytes"] > 0 for e in stores)
    enc = [e["provenance"]["encoder"] for e in stores]
    assert all(x["name"] == "scaled" and x["code"] and list(x["weights"]) == [str(weights.resolve())] for x in enc)
    status = sorted(e["status"].split(":")[0] for e in stores)
    assert status == ["ok", "stale", "stale"], [e["status"] for e in stores]
    assert any(e["kind"] == "units" or e["kind"] == "work" for e in listing["entries"])
    # prune removes the stale stores and finished work; the current store stays and is reused
    pruned = json.loads(_run(tmp_path, "cache", "prune", str(cache), "--json").stdout)
    assert sum(e["kind"] == "store" for e in pruned["removed"]) == 2
    _run(tmp_path, *run)
    assert _norm_and_calls(tmp_path, out) == (n3, 4)


COUNTING_TASK = '''
"""Counts its repeats' runs in a file."""

import os

from fusionkit import Task, Unit, hookimpl

VERSION_OF_THE_CODE = 1


def counted_repeat(ctx, rep, log):
    with open(log, "a") as fh:
        fh.write(f"{rep}\\n")
    return {"repeat": rep}


class CountingTask(Task):
    """Three counted repeats."""

    def __init__(self, log: str = ""):
        self.log = log

    def run(self, ctx):
        units = [Unit(ctx.unit_key("counting", rep), counted_repeat, (ctx, rep, self.log)) for rep in range(3)]
        return {"summary": {"repeats": len(ctx.run_units(ctx.task_name, units))}}


@hookimpl
def register_tasks(register):
    register("counting", CountingTask)
'''


def test_refresh_tasks_and_changed_task_code_recompute_repeats(tmp_path):
    from click.testing import CliRunner
    from helpers import imported_recipe

    from fusionkit import engine, plugins
    from fusionkit.cli import cli
    from fusionkit.recipe import load_recipe

    (tmp_path / "plug").mkdir()
    task_file = tmp_path / "plug" / "counting.py"
    task_file.write_text(COUNTING_TASK)
    log = tmp_path / "runs.log"
    recipe = imported_recipe(tmp_path, extra=f"tasks:\n  count: {{name: counting, params: {{log: {log}}}}}\n")

    def run(**kw):
        system = plugins.load(env={}, plugins_dir=tmp_path / "plug")
        engine.run(load_recipe(recipe, system), system, out_dir=tmp_path / "out", progress=False, **kw)
        return len(log.read_text().split())

    assert run() == 3
    assert run() == 3  # reused
    assert run(refresh=["count"]) == 6  # that task's repeats, recomputed
    assert run(refresh=["encode"]) == 6  # another stage: repeats reused
    assert run(refresh=["tasks"]) == 9
    task_file.write_text(COUNTING_TASK.replace("VERSION_OF_THE_CODE = 1", "VERSION_OF_THE_CODE = 2"))
    assert run() == 12  # edited task code: new unit keys
    bad = CliRunner().invoke(cli, ["--plugins-dir", str(tmp_path / "plug"), "run", str(recipe), "--out",
                                   str(tmp_path / "o2"), "--refresh", "encod"])
    assert bad.exit_code == 2 and "did you mean 'encode'?" in bad.output


def test_task_code_key_follows_the_helper_modules_of_its_plugin_package(tmp_path, monkeypatch):
    """A task whose units live in another module of its package (or a sibling package of
    the same distribution) is re-keyed when that module is edited; another plugin's
    edit leaves it alone."""
    from fusionkit.cachekeys import closure_fingerprint, code_closure

    root = tmp_path / "fkclos"
    for d in ("", "tasks", "tasks/alpha", "tasks/common", "tasks/other"):
        (root / d).mkdir(exist_ok=True)
        (root / d / "__init__.py").write_text("")
    (root / "tasks/common/plumbing.py").write_text("def split():\n    return 1\n")
    (root / "tasks/alpha/unit.py").write_text("from ..common.plumbing import split\n\ndef fit():\n    return split()\n")
    (root / "tasks/alpha/lazy.py").write_text("X = 1\n")  # imported inside a function only
    (root / "tasks/alpha/task.py").write_text("from . import unit\n\nclass Task:\n    def run(self):\n"
                                              "        from . import lazy\n        return unit.fit()\n")
    (root / "tasks/other/task.py").write_text("class Other:\n    pass\n")
    monkeypatch.syspath_prepend(str(tmp_path))
    import importlib

    for name in [m for m in sys.modules if m.startswith("fkclos")]:
        del sys.modules[name]
    task = importlib.import_module("fkclos.tasks.alpha.task").Task
    importlib.import_module("fkclos.tasks.other.task")
    names = {f"{f.parent.name}/{f.name}" for f in code_closure(task)}
    assert {"alpha/task.py", "alpha/unit.py", "alpha/lazy.py", "common/plumbing.py"} <= names
    assert "other/task.py" not in names and "tasks/__init__.py" not in names  # rooms are not expanded
    first = closure_fingerprint(task)
    (root / "tasks/other/task.py").write_text("class Other:\n    Y = 2\n")
    assert closure_fingerprint(task) == first  # another plugin's edit: same key
    for rel in ("tasks/common/plumbing.py", "tasks/alpha/lazy.py"):
        before = closure_fingerprint(task)
        (root / rel).write_text((root / rel).read_text() + "# edited\n")
        assert closure_fingerprint(task) != before, rel  # a helper's edit: a new key


def _fake_cache(root: Path) -> None:
    store = root / "stores" / "rna-identity-abc123"
    store.mkdir(parents=True)
    (store / "embeddings.t.npy").write_bytes(b"x" * 1000)
    (store / "meta.json").write_text(json.dumps({"modality": "rna", "n": 10, "dim": 4, "provenance": {
        "modality": "rna", "cache_key": "abc123", "created": "2026-01-01T00:00:00+00:00",
        "encoder": {"name": "identity", "version": "1", "params": {}}}}))
    (root / "stores" / "text-sbert-dead00").mkdir()  # never committed (no meta.json)
    (root / "work" / "rna-abc123").mkdir(parents=True)  # its store exists: finished work
    np.save(root / "work" / "rna-abc123" / "shard-0000000000.npy", np.zeros(3))
    (root / "work" / "text-dead00").mkdir()  # an encoding still to resume
    (root / "units" / "demo" / "clf").mkdir(parents=True)
    (root / "units" / "demo" / "clf" / "k1.pkl").write_bytes(b"p")


def test_cache_ls_and_prune_on_a_cache_folder(tmp_path, monkeypatch):
    from click.testing import CliRunner

    from fusionkit.cli import cli

    cache = tmp_path / "run" / "cache"
    _fake_cache(cache)
    runner = CliRunner()
    listing = json.loads(runner.invoke(cli, ["cache", "ls", str(tmp_path / "run"), "--json"]).output)  # a run folder
    by_path = {e["path"]: e for e in listing["entries"]}
    assert by_path["stores/rna-identity-abc123"]["provenance"]["encoder"]["name"] == "identity"
    assert by_path["stores/rna-identity-abc123"]["size_bytes"] >= 1000
    assert by_path["stores/text-sbert-dead00"]["status"] == "incomplete"
    assert by_path["work/rna-abc123"]["status"] == "done" and by_path["work/text-dead00"]["status"] == "ok"
    assert by_path["units/demo/clf"]["provenance"] == {"recipe": "demo", "group": "clf", "units": 1}
    text = runner.invoke(cli, ["cache", "ls", str(cache)]).output
    assert "rna: identity 1; 10 x 4; created 2026-01-01T00:00:00" in text and "[incomplete]" in text
    dry = json.loads(runner.invoke(cli, ["cache", "prune", str(cache), "--dry-run", "--json"]).output)
    assert sorted(e["path"] for e in dry["removed"]) == ["stores/text-sbert-dead00", "work/rna-abc123"]
    assert (cache / "work" / "rna-abc123").exists()  # a dry run removes nothing
    runner.invoke(cli, ["cache", "prune", str(cache)])
    assert not (cache / "work" / "rna-abc123").exists() and (cache / "work" / "text-dead00").exists()
    assert (cache / "stores" / "rna-identity-abc123").exists()  # identity is built in; its store is current
    old = json.loads(runner.invoke(cli, ["cache", "prune", str(cache), "--older-than", "0", "--json"]).output)
    assert {e["kind"] for e in old["removed"]} == {"store", "work", "units"}
    (cache / "fingerprints.json").write_text("{}")
    runner.invoke(cli, ["cache", "prune", str(cache), "--all"])
    assert json.loads(runner.invoke(cli, ["cache", "ls", str(cache), "--json"]).output)["entries"] == []
    monkeypatch.delenv("FUSIONKIT_CACHE", raising=False)
    missing = runner.invoke(cli, ["cache", "ls"])
    assert missing.exit_code == 1 and "FUSIONKIT_CACHE" in missing.output
