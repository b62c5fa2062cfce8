"""executors.blas_threads: BLAS capped inside the block (loaded and later-loaded libraries), restored after."""

from __future__ import annotations

import os

import pytest

from fusionkit.executors import blas_threads


def test_blas_threads_caps_and_restores(monkeypatch):
    threadpoolctl = pytest.importorskip("threadpoolctl")
    import numpy  # noqa: F401  (loads numpy's BLAS)

    monkeypatch.delenv("OPENBLAS_NUM_THREADS", raising=False)
    before = [i["num_threads"] for i in threadpoolctl.threadpool_info() if i["user_api"] == "blas"]
    with blas_threads(1):
        inside = [i["num_threads"] for i in threadpoolctl.threadpool_info() if i["user_api"] == "blas"]
        assert inside and all(n == 1 for n in inside)
        assert os.environ["OPENBLAS_NUM_THREADS"] == "1"  # for an OpenBLAS loaded inside the block
    after = [i["num_threads"] for i in threadpoolctl.threadpool_info() if i["user_api"] == "blas"][:len(before)]
    assert after == before
    assert "OPENBLAS_NUM_THREADS" not in os.environ
