"""FAISS indexes for patient retrieval (SPEC 2.3 "Retrieval"); registers:

============== ===============================================================
``faiss-flat``  exact search (``IndexFlatL2`` / ``IndexFlatIP``)
``faiss-hnsw``  approximate, graph based (``IndexHNSWFlat``: M, efConstruction, efSearch)
``faiss-ivf``   approximate, inverted lists (``IndexIVFFlat``: nlist, nprobe; trained on the data)
============== ===============================================================

Metrics, id mapping and the saved-folder format are shared with
``numpy-exact`` in ``indexes/common.py``. faiss is imported inside methods
only (start-up stays light).
"""

from __future__ import annotations

from typing import Any, Literal

import numpy as np

from fusionkit import hookimpl

from fusionkit_plugins.indexes.common import BaseIndex, as_matrix, check_metric

__all__ = ["FaissFlatIndex", "FaissHNSWIndex", "FaissIVFIndex"]


class _FaissIndex(BaseIndex):
    """Common faiss plumbing: metric constants, add/search, (de)serialisation."""

    def _faiss_metric(self) -> int:
        import faiss

        return faiss.METRIC_L2 if self.metric == "l2" else faiss.METRIC_INNER_PRODUCT

    def _make(self, d: int, X: np.ndarray) -> Any:  # pragma: no cover - interface
        raise NotImplementedError

    def _before_search(self) -> None:
        pass

    def build(self, X: np.ndarray, ids: Any = None) -> "_FaissIndex":
        X = self._prep(as_matrix(X))
        self._set_ids(ids, len(X))
        self.dim_ = X.shape[1]
        self.index_ = self._make(self.dim_, X)
        self.index_.add(X)
        return self

    def search(self, Q: np.ndarray, k: int) -> tuple[np.ndarray, np.ndarray]:
        self._check_built()
        Q = self._prep(as_matrix(Q, self.dim_))
        self._before_search()
        D, I = self.index_.search(Q, int(k))
        return self._map_ids(D, I)

    def _payload(self) -> bytes:
        import faiss

        return faiss.serialize_index(self.index_).tobytes()

    def _restore(self, payload: bytes) -> None:
        import faiss

        self.index_ = faiss.deserialize_index(np.frombuffer(payload, dtype=np.uint8).copy())


class FaissFlatIndex(_FaissIndex):
    """Exact FAISS search (IndexFlatL2 / IndexFlatIP); metric l2, ip or cosine."""

    index_name = "faiss-flat"

    def __init__(self, metric: Literal["l2", "ip", "cosine"] = "l2"):
        self.metric = check_metric(metric)

    def _make(self, d: int, X: np.ndarray) -> Any:
        import faiss

        return faiss.IndexFlatL2(d) if self.metric == "l2" else faiss.IndexFlatIP(d)


class FaissHNSWIndex(_FaissIndex):
    """Approximate FAISS search on an HNSW graph (M links, efConstruction, efSearch)."""

    index_name = "faiss-hnsw"

    def __init__(self, metric: Literal["l2", "ip", "cosine"] = "l2", M: int = 32, efConstruction: int = 200, efSearch: int = 128):
        self.metric = check_metric(metric)
        self.M = M
        self.efConstruction = efConstruction
        self.efSearch = efSearch

    def _make(self, d: int, X: np.ndarray) -> Any:
        import faiss

        index = faiss.IndexHNSWFlat(d, int(self.M), self._faiss_metric())
        index.hnsw.efConstruction = int(self.efConstruction)
        return index

    def _before_search(self) -> None:
        self.index_.hnsw.efSearch = int(self.efSearch)


class FaissIVFIndex(_FaissIndex):
    """Approximate FAISS search on inverted lists (IndexIVFFlat: nlist cells, nprobe visited).

    ``nlist`` defaults to about 4 sqrt(N) cells. The coarse quantizer is trained
    on the indexed vectors; ``nlist`` is capped
    at n/39 (faiss' minimum of training points per cell) and the value used is
    recorded as ``nlist_`` / in ``meta.json``.
    """

    index_name = "faiss-ivf"

    def __init__(self, metric: Literal["l2", "ip", "cosine"] = "l2", nlist: int | None = None, nprobe: int = 8):
        self.metric = check_metric(metric)
        self.nlist = nlist
        self.nprobe = nprobe

    def _make(self, d: int, X: np.ndarray) -> Any:
        import faiss

        # default: ~4 sqrt(N) cells (FAISS's rule of thumb), so a query scans ~nprobe/(4 sqrt N) of the data
        wanted = int(self.nlist) if self.nlist else int(round(4 * np.sqrt(len(X))))
        nlist = int(max(1, min(wanted, len(X) // 39 or 1)))
        self.nlist_ = nlist
        quantizer = faiss.IndexFlatL2(d) if self.metric == "l2" else faiss.IndexFlatIP(d)
        index = faiss.IndexIVFFlat(quantizer, d, nlist, self._faiss_metric())
        index.train(X)
        self._quantizer = quantizer  # keep alive alongside the index
        return index

    def _before_search(self) -> None:
        self.index_.nprobe = int(max(1, min(int(self.nprobe), self.index_.nlist)))

    def _extra_meta(self) -> dict[str, Any]:
        return {"nlist_effective": int(self.index_.nlist)}

    def _restore(self, payload: bytes) -> None:
        super()._restore(payload)
        self.nlist_ = int(self.index_.nlist)


@hookimpl
def register_indexes(register):
    register("faiss-flat", FaissFlatIndex, tags=["exact", "faiss"])
    register("faiss-hnsw", FaissHNSWIndex, tags=["approximate", "faiss"])
    register("faiss-ivf", FaissIVFIndex, tags=["approximate", "faiss"])
