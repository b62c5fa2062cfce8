"""Plugin loading: built-ins like third-party plugins; broken, duplicate and
misspelt plugins are reported with their distribution and never stop the tool."""

from __future__ import annotations

import json
import types

import pytest
from click.testing import CliRunner

from fusionkit import hookimpl, plugins
from fusionkit.cli import cli
from fusionkit.components import Encoder
from fusionkit.errors import ComponentError, PluginError


class FakeDist:
    def __init__(self, name, version):
        self.name = name
        self.version = version
        self.metadata = {"Name": name}


class FakeEP:
    """Stands in for importlib.metadata.EntryPoint (pytest's approach: no installs)."""

    def __init__(self, name, target, dist="fusionkit-thing", version="1.2.3"):
        self.name = name
        self._target = target
        self.dist = FakeDist(dist, version)

    def load(self):
        if isinstance(self._target, BaseException):
            raise self._target
        return self._target


class GoodEncoder(Encoder):
    """A good third-party encoder."""

    modality = "text"
    input_kind = "text"

    def __init__(self, dim: int = 4):
        self.dim = dim


def good_module():
    mod = types.ModuleType("fk_good")

    @hookimpl
    def register_encoders(register):
        register("good-encoder", GoodEncoder, modality="text", dim=4, licence="MIT")

    mod.register_encoders = register_encoders
    return mod


def misspelt_module():
    mod = types.ModuleType("fk_misspelt")

    @hookimpl
    def register_encoder(register):  # missing the final "s"
        register("never", GoodEncoder)

    mod.register_encoder = register_encoder
    return mod


def colliding_module():
    mod = types.ModuleType("fk_collide")

    @hookimpl
    def register_aggregators(register):
        from plugins_helpers_dummy import nothing  # noqa: F401  (never reached)

    @hookimpl
    def register_encoders(register):
        register("identity", GoodEncoder)  # collides with the built-in

    mod.register_encoders = register_encoders
    return mod


def record(system, name):
    return next(r for r in system.records if r.name == name)


def test_builtins_are_ordinary_plugins(plugin_system):
    builtin = [r for r in plugin_system.records if r.builtin]
    assert {"builtin.sampling.samplers", "builtin.sampling.aggregators", "builtin.readers.precomputed"} <= {r.name for r in builtin}
    assert all(r.status == "ok" for r in builtin if r.name in ("builtin.sampling.samplers", "builtin.readers.precomputed"))
    info = plugin_system.info("encoder", "identity")
    assert info.builtin and info.dist == "fusionkit"
    d = info.as_dict()
    assert d["provider"] == "fusionkit" and d["summary"].startswith("Pass precomputed")


def test_third_party_entry_point_is_listed_like_builtins():
    system = plugins.load(env={}, entry_points=[FakeEP("good", good_module(), dist="fusionkit-good")])
    r = record(system, "good")
    assert r.status == "ok" and r.dist == "fusionkit-good" and r.version == "1.2.3"
    assert r.hooks == ["register_encoders"] and r.components == ["encoder:good-encoder"]
    d = system.info("encoder", "good-encoder").as_dict()
    assert d["provider"] == "fusionkit-good" and d["modality"] == "text" and d["dim"] == 4
    assert system.create("encoder", "good-encoder", {"dim": 8}).dim == 8


def test_broken_entry_point_is_recorded_and_does_not_stop_loading():
    eps = [FakeEP("broken", ImportError("No module named 'missing_dep'"), dist="fusionkit-broken"),
           FakeEP("good", good_module(), dist="fusionkit-good")]
    system = plugins.load(env={}, entry_points=eps)
    r = record(system, "broken")
    assert r.status == "broken" and r.dist == "fusionkit-broken"
    assert "missing_dep" in r.error and "Traceback" in r.traceback
    assert system.registry.has("encoder", "good-encoder")  # others still load
    # a recipe needing a component of the broken plugin gets its original error
    with pytest.raises(ComponentError) as exc:
        system.info("encoder", "broken-encoder")
    assert "fusionkit-broken" in str(exc.value) and "missing_dep" in str(exc.value)
    with pytest.raises(PluginError, match="fusionkit-broken"):
        plugins.load(env={}, entry_points=eps, strict=True)
    with pytest.raises(PluginError):
        plugins.load(env={"FUSIONKIT_STRICT": "1"}, entry_points=eps)


def test_duplicate_entry_point_names_are_reported():
    eps = [FakeEP("thing", good_module(), dist="dist-one", version="1.0"),
           FakeEP("thing", good_module(), dist="dist-two", version="2.0")]
    system = plugins.load(env={}, entry_points=eps)
    dup = [r for r in system.records if r.status == "duplicate"]
    assert len(dup) == 1 and dup[0].dist == "dist-two"
    assert "dist-one" in dup[0].error and "dist-two" in dup[0].error


def test_duplicate_component_name_is_an_error_naming_both():
    system = plugins.load(env={}, entry_points=[FakeEP("collide", colliding_module(), dist="fusionkit-collide")])
    r = record(system, "collide")
    assert r.status == "duplicate"
    assert "fusionkit-collide" in r.error and "fusionkit" in r.error and "identity" in r.error
    assert system.info("encoder", "identity").builtin  # no silent override


def test_misspelt_hook_is_reported_with_suggestion():
    system = plugins.load(env={}, entry_points=[FakeEP("typo", misspelt_module(), dist="fusionkit-typo")])
    r = record(system, "typo")
    assert r.status == "unknown-hook" and r.dist == "fusionkit-typo"
    assert "register_encoder" in r.error and "register_encoders" in r.error
    with pytest.raises(PluginError, match="unknown hook"):
        plugins.load(env={}, entry_points=[FakeEP("typo", misspelt_module())], strict=True)


def test_allow_and_block_lists():
    eps = [FakeEP("good", good_module(), dist="fusionkit-good")]
    blocked = plugins.load(env={"FUSIONKIT_PLUGINS_BLOCK": "fusionkit-good"}, entry_points=eps)
    assert record(blocked, "good").status == "disabled"
    assert not blocked.registry.has("encoder", "good-encoder")
    allowed = plugins.load(env={"FUSIONKIT_PLUGINS_ALLOW": "something-else"}, entry_points=eps)
    assert record(allowed, "good").status == "disabled"
    no_builtin = plugins.load(env={"FUSIONKIT_PLUGINS_BLOCK": "builtin.aggregators"}, entry_points=[])
    assert record(no_builtin, "builtin.sampling.aggregators").status == "disabled"
    assert not no_builtin.registry.has("aggregator", "sum")


def test_plugins_dir_one_file_plugin(tmp_path):
    (tmp_path / "myplug.py").write_text(
        "from fusionkit import hookimpl\n"
        "from fusionkit.components import Aggregator\n"
        "class Max(Aggregator):\n"
        "    '''Element-wise maximum of the draws.'''\n"
        "    def reduce(self, g, mask):\n"
        "        return g.max(axis=1)\n"
        "@hookimpl\n"
        "def register_aggregators(register):\n"
        "    register('max', Max)\n")
    (tmp_path / "bad.py").write_text("raise RuntimeError('bad one-file plugin')\n")
    system = plugins.load(env={}, entry_points=[], plugins_dir=tmp_path)
    assert system.registry.has("aggregator", "max")
    assert record(system, "dir.bad").status == "broken"


def test_cli_plugins_and_list_survive_broken_plugins(monkeypatch, tmp_path):
    eps = [FakeEP("broken", ImportError("kaput"), dist="fusionkit-broken"),
           FakeEP("good", good_module(), dist="fusionkit-good")]
    monkeypatch.setattr(plugins.importlib_metadata, "entry_points", lambda group=None: eps)
    runner = CliRunner()
    res = runner.invoke(cli, ["plugins", "--json"])
    assert res.exit_code == 0, res.output
    data = json.loads(res.output)
    by = {d["name"]: d for d in data}
    assert by["broken"]["status"] == "broken" and "kaput" in by["broken"]["error"]
    assert by["broken"]["dist"] == "fusionkit-broken"
    assert {"name", "version", "status", "hooks", "error"} <= set(by["good"])
    assert not any(d["builtin"] for d in data)
    res_all = runner.invoke(cli, ["plugins", "--all", "--json"])
    assert any(d["builtin"] for d in json.loads(res_all.output))
    res = runner.invoke(cli, ["list", "encoders", "--json"])
    assert res.exit_code == 0
    names = {d["name"]: d for d in json.loads(res.output)}
    assert names["good-encoder"]["provider"] == "fusionkit-good"
    assert {"name", "provider", "summary", "modality", "dim"} <= set(names["identity"])
    res = runner.invoke(cli, ["--strict", "plugins"])
    assert res.exit_code == 1 and "kaput" in res.output
    # an unrelated run still works with the broken plugin installed
    from helpers import imported_recipe

    recipe = imported_recipe(tmp_path)
    res = runner.invoke(cli, ["run", str(recipe), "--out", str(tmp_path / "out")])
    assert res.exit_code == 0, res.output
    assert (tmp_path / "out" / "aggregates" / "simple" / "X.npy").exists()
