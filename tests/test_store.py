"""Embedding store: round trip, memory mapping, atomic writes."""

from __future__ import annotations

import numpy as np
import pytest

from fusionkit import store as store_mod
from fusionkit.errors import StoreError
from fusionkit.store import EmbeddingStore, StoreWriter, write_store


def items(n, prefix="P"):
    return {"patient_id": [f"{prefix}{i}" for i in range(n)], "item_id": [f"i{i}" for i in range(n)],
            "cancer_type": ["BRCA"] * n}


def test_round_trip_and_memmap(tmp_path):
    X = np.random.default_rng(0).normal(size=(50, 8)).astype(np.float32)
    s = write_store(tmp_path / "s", X, items(50), modality="rna", provenance={"encoder": {"name": "x"}})
    again = EmbeddingStore(tmp_path / "s")
    assert isinstance(again.embeddings, np.memmap)
    np.testing.assert_array_equal(np.asarray(again.embeddings), X)
    assert again.n == 50 and again.dim == 8 and again.modality == "rna"
    assert list(again.patient_ids[:2]) == ["P0", "P1"]
    assert again.label("cancer_type")[0] == "BRCA"
    assert again.provenance["encoder"]["name"] == "x"
    assert s.meta["token"] == again.meta["token"]
    with pytest.raises(StoreError, match="no item column"):
        again.label("subtype")


def test_crash_before_commit_leaves_previous_store(tmp_path, monkeypatch):
    old = np.ones((10, 4), dtype=np.float32)
    write_store(tmp_path / "s", old, items(10), modality="rna")

    def boom(*a, **k):
        raise KeyboardInterrupt("killed mid-write")

    monkeypatch.setattr(store_mod, "atomic_write_json", boom)  # the commit point
    with pytest.raises(KeyboardInterrupt):
        write_store(tmp_path / "s", np.zeros((20, 4), dtype=np.float32), items(20), modality="rna")
    monkeypatch.undo()
    s = EmbeddingStore(tmp_path / "s")
    assert s.n == 10
    np.testing.assert_array_equal(np.asarray(s.embeddings), old)


def test_crash_while_filling_leaves_previous_store(tmp_path):
    write_store(tmp_path / "s", np.ones((10, 4), dtype=np.float32), items(10), modality="rna")
    w = StoreWriter(tmp_path / "s", 1000, 4)
    w.embeddings[:500] = 7.0
    del w  # process dies: nothing committed
    s = EmbeddingStore(tmp_path / "s")
    assert s.n == 10 and float(s.embeddings[0, 0]) == 1.0
    # a later successful write replaces it and cleans leftovers
    write_store(tmp_path / "s", np.full((3, 4), 2.0, dtype=np.float32), items(3), modality="rna")
    s = EmbeddingStore(tmp_path / "s")
    assert s.n == 3
    leftovers = [p.name for p in (tmp_path / "s").iterdir() if p.name.endswith(".tmp")]
    assert leftovers == []
    assert len([p for p in (tmp_path / "s").iterdir() if p.name.startswith("embeddings.")]) == 1


def test_nan_and_bad_items_are_refused(tmp_path):
    X = np.ones((3, 2), dtype=np.float32)
    X[1, 0] = np.nan
    with pytest.raises(StoreError, match="NaN"):
        write_store(tmp_path / "n", X, items(3), modality="rna")
    with pytest.raises(StoreError, match="rows"):
        write_store(tmp_path / "m", np.ones((3, 2)), items(2), modality="rna")
    with pytest.raises(StoreError, match="meta.json missing"):
        EmbeddingStore(tmp_path / "nothing")


def test_atomic_json_never_leaves_partial_file(tmp_path, monkeypatch):
    target = tmp_path / "m.json"
    store_mod.atomic_write_json(target, {"a": 1})

    def fail(*a, **k):
        raise OSError("disk full")

    monkeypatch.setattr(store_mod.os, "replace", fail)
    with pytest.raises(store_mod.StoreError, match="m.json: cannot write file: disk full"):
        store_mod.atomic_write_json(target, {"a": 2})
    assert target.read_text().strip().startswith("{") and '"a": 1' in target.read_text()
    assert [p.name for p in tmp_path.iterdir()] == ["m.json"]
