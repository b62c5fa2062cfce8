"""Vector indexes: exactness, approximate recall, save/load round trips, the query command."""

from __future__ import annotations

import json

import numpy as np
import pytest


def clustered(n: int = 1500, dim: int = 32, centres: int = 20, seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    rng = np.random.default_rng(seed)
    C = rng.normal(0, 4, (centres, dim))
    X = (C[rng.integers(0, centres, n)] + rng.normal(0, 1, (n, dim))).astype(np.float32)
    Q = (C[rng.integers(0, centres, 100)] + rng.normal(0, 1, (100, dim))).astype(np.float32)
    return X, Q


@pytest.mark.parametrize("metric", ["l2", "ip", "cosine"])
def test_faiss_flat_equals_numpy_bruteforce(metric):
    from fusionkit_plugins.indexes.faiss import FaissFlatIndex
    from fusionkit_plugins.indexes.numpy_exact import NumpyExactIndex

    X, Q = clustered(600)
    ids = np.array([f"p{i}" for i in range(len(X))])
    d_ref, i_ref = NumpyExactIndex(metric=metric).build(X, ids).search(Q, 10)
    d, i = FaissFlatIndex(metric=metric).build(X, ids).search(Q, 10)
    assert (i == i_ref).mean() > 0.99  # ties in float32 may swap a pair
    np.testing.assert_allclose(d, d_ref, rtol=1e-4, atol=1e-3)
    if metric == "l2":
        assert (np.diff(d, axis=1) >= -1e-5).all()
    else:
        assert (np.diff(d, axis=1) <= 1e-5).all()


@pytest.mark.parametrize("name,params", [("faiss-hnsw", {"M": 16, "efSearch": 64}),
                                         ("faiss-ivf", {"nlist": 16, "nprobe": 4})])
@pytest.mark.parametrize("metric", ["l2", "cosine"])
def test_approximate_recall_on_easy_data(name, params, metric, plugin_system):
    from fusionkit_plugins.indexes.common import recall_at_k
    from fusionkit_plugins.indexes.faiss import FaissFlatIndex

    X, Q = clustered()
    ids = np.arange(len(X)).astype(str)
    index = plugin_system.create("index", name, {**params, "metric": metric})
    _, approx = index.build(X, ids).search(Q, 10)
    _, exact = FaissFlatIndex(metric=metric).build(X, ids).search(Q, 10)
    assert recall_at_k(approx, exact, 10) >= 0.9


@pytest.mark.parametrize("name", ["faiss-flat", "faiss-hnsw", "faiss-ivf", "numpy-exact"])
def test_save_load_round_trip(name, tmp_path, plugin_system):
    from fusionkit_plugins.indexes.query import load_index

    X, Q = clustered(800)
    ids = np.array([f"TCGA-AA-{i:04d}" for i in range(len(X))])
    index = plugin_system.create("index", name, {"metric": "cosine"}).build(X, ids)
    d0, i0 = index.search(Q, 10)
    folder = tmp_path / "idx"
    index.save(folder)
    index.save(folder)  # overwrite: old token files are removed, one live set remains
    assert len(list(folder.glob("index.*.bin"))) == 1 and len(list(folder.glob("ids.*.txt"))) == 1
    meta = json.loads((folder / "meta.json").read_text())
    assert meta["index"] == name and meta["n"] == len(X) and meta["metric"] == "cosine"
    loaded = load_index(folder)
    assert type(loaded) is type(index)
    d1, i1 = loaded.search(Q, 10)
    assert (i1 == i0).all()
    np.testing.assert_allclose(d1, d0, rtol=1e-5, atol=1e-5)
    assert (type(index).load(folder).search(Q, 10)[1] == i0).all()


def test_fewer_items_than_k_and_bad_input():
    from fusionkit.errors import DataError
    from fusionkit_plugins.indexes.faiss import FaissFlatIndex
    from fusionkit_plugins.indexes.numpy_exact import NumpyExactIndex

    X = np.eye(3, 4, dtype=np.float32)
    for cls in (FaissFlatIndex, NumpyExactIndex):
        d, i = cls().build(X, ["a", "b", "c"]).search(X[:1], 5)
        assert list(i[0][:3]) == ["a", "b", "c"] or i[0][0] == "a"
        assert list(i[0][3:]) == ["", ""] and np.isnan(d[0][3:]).all()
        with pytest.raises(DataError):
            cls().build(X, ["a", "b", "c"]).search(np.ones((1, 5), dtype=np.float32), 1)
    with pytest.raises(DataError):
        FaissFlatIndex(metric="manhattan")


def test_query_cli_by_patient_and_vector(tmp_path):
    from click.testing import CliRunner

    from fusionkit.cli import cli
    from fusionkit_plugins.indexes.faiss import FaissFlatIndex

    X, _ = clustered(200, dim=8)
    ids = np.array([f"P{i:03d}" for i in range(len(X))])
    folder = tmp_path / "index"
    FaissFlatIndex(metric="l2").build(X, ids).save(folder)
    np.savez(folder / "lookup.npz", X=X, ids=ids, role=np.array(["index"] * len(X)))
    (folder / "labels.json").write_text(json.dumps({"cancer_type": {p: "BRCA" for p in ids}}))
    runner = CliRunner()
    res = runner.invoke(cli, ["query", str(folder), "--patient", "P007", "-k", "4", "--json"])
    assert res.exit_code == 0, res.output
    answer = json.loads(res.output)
    assert [n["id"] for n in answer["neighbours"]][:1] != ["P007"] and len(answer["neighbours"]) == 4
    assert answer["neighbours"][0]["cancer_type"] == "BRCA"
    res = runner.invoke(cli, ["query", str(folder), "--patient", "P007", "-k", "4", "--include-self", "--json"])
    assert json.loads(res.output)["neighbours"][0]["id"] == "P007"
    np.save(tmp_path / "q.npy", X[11])
    res = runner.invoke(cli, ["query", str(folder), "--vector-file", str(tmp_path / "q.npy"), "-k", "2"])
    assert res.exit_code == 0 and "P011" in res.output
    res = runner.invoke(cli, ["query", str(folder), "--patient", "NOPE"])
    assert res.exit_code == 1 and "not in" in res.output
    res = runner.invoke(cli, ["query", str(folder)])
    assert res.exit_code != 0


def test_indexes_are_registered_and_light(plugin_system):
    import subprocess
    import sys

    for name in ("faiss-flat", "faiss-hnsw", "faiss-ivf", "numpy-exact"):
        assert plugin_system.info("index", name) is not None
    code = ("import sys, fusionkit_plugins.indexes.faiss, fusionkit_plugins.tasks.patient.retrieval, fusionkit.report;"
            "print(sorted(m for m in ('faiss','torch','sklearn','matplotlib') if m in sys.modules))")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout
    assert out.strip() == "[]"
