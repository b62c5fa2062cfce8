"""Brute-force index; registers ``numpy-exact``: exact search in numpy, the reference
for tests and benchmarks (metrics and folder format: ``indexes/common.py``)."""

from __future__ import annotations

from typing import Any, Literal

import numpy as np

from fusionkit import hookimpl

from fusionkit_plugins.indexes.common import BaseIndex, as_matrix, check_metric

__all__ = ["NumpyExactIndex"]


class NumpyExactIndex(BaseIndex):
    """Brute-force exact search in numpy (reference for tests and benchmarks)."""

    index_name = "numpy-exact"

    def __init__(self, metric: Literal["l2", "ip", "cosine"] = "l2", batch: int = 1024):
        self.metric = check_metric(metric)
        self.batch = batch

    def build(self, X: np.ndarray, ids: Any = None) -> "NumpyExactIndex":
        X = as_matrix(X)
        self._set_ids(ids, len(X))
        self.dim_ = X.shape[1]
        self.X_ = self._prep(X)
        return self

    def search(self, Q: np.ndarray, k: int) -> tuple[np.ndarray, np.ndarray]:
        self._check_built()
        Q = self._prep(as_matrix(Q, self.dim_))
        n = len(self.X_)
        kk = min(int(k), n)
        D = np.full((len(Q), int(k)), np.nan, dtype=np.float32)
        I = np.full((len(Q), int(k)), -1, dtype=np.int64)
        sq = (self.X_.astype(np.float64) ** 2).sum(axis=1)
        for s in range(0, len(Q), max(1, int(self.batch))):
            q = Q[s:s + self.batch].astype(np.float64)
            dots = q @ self.X_.T.astype(np.float64)
            if self.metric == "l2":
                score = (q ** 2).sum(axis=1)[:, None] + sq[None, :] - 2.0 * dots
                order = np.argsort(score, axis=1, kind="stable")[:, :kk]
            else:
                score = dots
                order = np.argsort(-score, axis=1, kind="stable")[:, :kk]
            I[s:s + len(q), :kk] = order
            D[s:s + len(q), :kk] = np.take_along_axis(score, order, axis=1)
        return self._map_ids(D, I)

    def _payload(self) -> bytes:
        import io

        buf = io.BytesIO()
        np.save(buf, self.X_, allow_pickle=False)
        return buf.getvalue()

    def _restore(self, payload: bytes) -> None:
        import io

        self.X_ = np.load(io.BytesIO(payload), allow_pickle=False)


@hookimpl
def register_indexes(register):
    register("numpy-exact", NumpyExactIndex, tags=["exact", "reference"])
