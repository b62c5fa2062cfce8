"""A cache that never lies: cache keys follow the component's code and its local
weights; `run --refresh` recomputes; `cache ls|prune` show and clean entries."""

from __future__ import annotations

import importlib.util
import json
import sys
import textwrap
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
