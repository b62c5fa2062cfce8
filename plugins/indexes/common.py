"""Shared plumbing of the vector indexes (registers nothing): metric checks, id mapping,
the atomic index-folder format and :func:`recall_at_k`.

Every index takes ``metric``: ``l2`` (squared Euclidean distance, smaller is
closer), ``ip`` (inner product, larger is closer) or ``cosine`` (vectors are
L2-normalised, then inner product). ``search(Q, k)`` returns ``(scores, ids)``
with the *original* ids (strings) ordered best first; slots without a
neighbour (fewer than ``k`` items, or an IVF probe that found too few) hold
``""`` with a score of ``nan``.

A saved index is a folder::

    meta.json               class, params, metric, dim, n, and the token of the live files
    index.<token>.bin       the serialised index (faiss) or vectors (numpy-exact, .npy)
    ids.<token>.txt         one original id per indexed row, in row order

Writes are atomic as a whole: files go under a fresh token, ``meta.json`` is
replaced last (``os.replace``), then old-token files are removed.
``BaseIndex.load`` (or :func:`fusionkit_plugins.indexes.query.load_index`,
which dispatches on ``meta.json``) reads it back.
"""

from __future__ import annotations

import json
import os
import uuid
from pathlib import Path
from typing import Any, ClassVar

import numpy as np

from fusionkit import Index
from fusionkit import DataError, FusionkitError

__all__ = ["METRICS", "INDEX_FORMAT", "INDEX_CLASSES", "BaseIndex", "check_metric", "as_matrix", "read_meta",
           "recall_at_k"]

METRICS = ("l2", "ip", "cosine")
INDEX_FORMAT = 1
#: registry name -> index class; filled as subclasses of :class:`BaseIndex` are defined
INDEX_CLASSES: dict[str, type["BaseIndex"]] = {}


def check_metric(metric: str) -> str:
    """``metric`` when it is one of :data:`METRICS`, else a DataError."""
    if metric not in METRICS:
        raise DataError(f"unknown index metric {metric!r}", where="index.params.metric",
                        hint=f"use one of: {', '.join(METRICS)}")
    return metric


def as_matrix(X: Any, dim: int | None = None) -> np.ndarray:
    """Finite float32 (n, dim) C-contiguous vectors (a 1-D vector becomes one row)."""
    X = np.ascontiguousarray(np.asarray(X, dtype=np.float32))
    if X.ndim == 1:
        X = X[None, :]
    if X.ndim != 2:
        raise DataError(f"vectors must be 2-D (n, dim), got shape {X.shape}")
    if dim is not None and X.shape[1] != dim:
        raise DataError(f"vectors have width {X.shape[1]} but the index holds width {dim}")
    if not np.isfinite(X).all():
        raise DataError("vectors contain NaN or inf")
    return X


def _normalise(X: np.ndarray) -> np.ndarray:
    norms = np.linalg.norm(X, axis=1, keepdims=True)
    return np.ascontiguousarray(X / np.where(norms > 0, norms, 1.0), dtype=np.float32)


class BaseIndex(Index):
    """Shared id handling, metric preparation and the atomic folder format.

    Every subclass with an ``index_name`` is recorded in :data:`INDEX_CLASSES`
    when it is defined, so ``load`` can dispatch on ``meta.json``.
    """

    #: registry name written into meta.json (load dispatches on it)
    index_name: ClassVar[str] = ""
    metric: str = "l2"

    def __init_subclass__(cls, **kwargs: Any) -> None:
        super().__init_subclass__(**kwargs)
        if cls.index_name:
            INDEX_CLASSES[cls.index_name] = cls

    # ---------------------------------------------------------------- helpers
    def _prep(self, X: np.ndarray) -> np.ndarray:
        return _normalise(X) if self.metric == "cosine" else X

    @property
    def larger_is_closer(self) -> bool:
        return self.metric in ("ip", "cosine")

    @property
    def ntotal(self) -> int:
        return 0 if getattr(self, "ids_", None) is None else int(len(self.ids_))

    def _check_built(self) -> None:
        if getattr(self, "ids_", None) is None:
            raise FusionkitError(f"{type(self).__name__}: build (or load) the index before searching")

    def _set_ids(self, ids: Any, n: int) -> None:
        ids = np.asarray([str(i) for i in (ids if ids is not None else range(n))])
        if len(ids) != n:
            raise DataError(f"{len(ids)} ids for {n} vectors")
        self.ids_ = ids

    def _map_ids(self, D: np.ndarray, I: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        I = np.asarray(I, dtype=np.int64)
        D = np.asarray(D, dtype=np.float32).copy()
        missing = I < 0
        if len(self.ids_):
            out = np.where(missing, "", self.ids_[np.clip(I, 0, len(self.ids_) - 1)])
        else:
            out = np.full(I.shape, "", dtype="<U1")
        D[missing] = np.nan
        return D, out

    # ---------------------------------------------------------------- persistence
    def _payload(self) -> bytes:  # pragma: no cover - interface
        raise NotImplementedError

    def _restore(self, payload: bytes) -> None:  # pragma: no cover - interface
        raise NotImplementedError

    def save(self, path: str | os.PathLike[str]) -> None:
        """Write the index folder atomically (see module docstring)."""
        from fusionkit import atomic_write_bytes, atomic_write_json, atomic_write_text

        self._check_built()
        folder = Path(path)
        folder.mkdir(parents=True, exist_ok=True)
        old = read_meta(folder) if (folder / "meta.json").exists() else None
        token = uuid.uuid4().hex[:12]
        atomic_write_bytes(folder / f"index.{token}.bin", self._payload())
        atomic_write_text(folder / f"ids.{token}.txt", "\n".join(self.ids_.tolist()) + "\n")
        meta = {"format": INDEX_FORMAT, "index": self.index_name, "class": type(self).__name__,
                "params": _plain(self.get_params()), "metric": self.metric, "dim": int(self.dim_),
                "n": self.ntotal, "token": token, "larger_is_closer": self.larger_is_closer,
                **self._extra_meta()}
        atomic_write_json(folder / "meta.json", meta)
        if old and old.get("token") and old["token"] != token:
            for stale in (folder / f"index.{old['token']}.bin", folder / f"ids.{old['token']}.txt"):
                try:
                    stale.unlink()
                except FileNotFoundError:
                    pass

    def _extra_meta(self) -> dict[str, Any]:
        return {}

    @classmethod
    def load(cls, path: str | os.PathLike[str]) -> "BaseIndex":
        folder = Path(path)
        meta = read_meta(folder)
        if cls.index_name and meta.get("index") != cls.index_name:
            target = INDEX_CLASSES.get(meta.get("index", ""))
            if target is None:
                raise DataError(f"{folder} holds an index of unknown type {meta.get('index')!r}")
            cls = target  # type: ignore[assignment]
        params = {k: v for k, v in (meta.get("params") or {}).items() if k in cls.param_names()}
        obj = cls(**params)
        try:  # faiss's own format + a text id table: nothing here can run code
            token = str(meta["token"])
            ids = (folder / f"ids.{token}.txt").read_text().split("\n")[: int(meta["n"])]
            obj.ids_ = np.asarray(ids)
            obj.dim_ = int(meta["dim"])
            obj._restore((folder / f"index.{token}.bin").read_bytes())
        except (KeyError, ValueError, TypeError, OSError, RuntimeError) as exc:
            raise DataError(f"damaged index folder ({type(exc).__name__}: {exc})", where=str(folder),
                            hint="run the retrieval task again to rewrite it") from None
        return obj


def _plain(obj: Any) -> Any:
    return json.loads(json.dumps(obj, default=str))


def read_meta(folder: Path) -> dict[str, Any]:
    """The ``meta.json`` of a saved index folder (DataError when missing or of another format)."""
    p = Path(folder) / "meta.json"
    if not p.exists():
        raise DataError(f"no saved index in {folder} (meta.json missing)",
                        hint="point at the index folder a retrieval task wrote (<task>/index)")
    try:
        meta = json.loads(p.read_text())
        if not isinstance(meta, dict):
            raise ValueError("not a JSON object")
    except (ValueError, OSError) as exc:
        raise DataError(f"unreadable meta.json of a saved index ({exc})", where=str(p),
                        hint="the index folder is damaged: run the retrieval task again") from None
    if meta.get("format") != INDEX_FORMAT:
        raise DataError(f"unsupported index format {meta.get('format')!r} in {folder}")
    return meta


def recall_at_k(approx_ids: np.ndarray, exact_ids: np.ndarray, k: int | None = None) -> float:
    """Mean fraction of the exact top-k ids that the approximate top-k contains."""
    approx_ids = np.asarray(approx_ids)
    exact_ids = np.asarray(exact_ids)
    k = int(k or exact_ids.shape[1])
    hits = []
    for a, e in zip(approx_ids[:, :k], exact_ids[:, :k]):
        e = [x for x in e if x != ""]
        if not e:
            continue
        hits.append(len(set(e) & set(a)) / len(e))
    return float(np.mean(hits)) if hits else float("nan")
