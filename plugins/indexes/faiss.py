"""Vector indexes for patient retrieval (SPEC 2.3 "Retrieval").

Components (kind ``index``):

============== ===============================================================
``faiss-flat``  exact search (``IndexFlatL2`` / ``IndexFlatIP``)
``faiss-hnsw``  approximate, graph based (``IndexHNSWFlat``: M, efConstruction, efSearch)
``faiss-ivf``   approximate, inverted lists (``IndexIVFFlat``: nlist, nprobe; trained on the data)
``numpy-exact`` brute force in numpy: the reference for tests and benchmarks
============== ===============================================================

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
replaced last (``os.replace``), then old-token files are removed. ``load``
(or :func:`load_index`, which dispatches on ``meta.json``) reads it back.

The retrieval task may add ``lookup.npz`` (aggregate vectors of indexed and
held-out query patients) and ``labels.json`` beside these files so that
``fusionkit query INDEX_DIR --patient ID`` can answer by patient id.

faiss is imported inside methods only (start-up stays light).
"""

from __future__ import annotations

import json
import os
import uuid
from pathlib import Path
from typing import Any, ClassVar

import numpy as np

from fusionkit import hookimpl
from fusionkit import Index
from fusionkit import DataError, FusionkitError

METRICS = ("l2", "ip", "cosine")
INDEX_FORMAT = 1


def _check_metric(metric: str) -> str:
    if metric not in METRICS:
        raise DataError(f"unknown index metric {metric!r}", where="index.params.metric",
                        hint=f"use one of: {', '.join(METRICS)}")
    return metric


def _as_matrix(X: Any, dim: int | None = None) -> np.ndarray:
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


class _BaseIndex(Index):
    """Shared id handling, metric preparation and the atomic folder format."""

    #: registry name written into meta.json (load dispatches on it)
    index_name: ClassVar[str] = ""
    metric: str = "l2"

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
        old = _read_meta(folder) if (folder / "meta.json").exists() else None
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
    def load(cls, path: str | os.PathLike[str]) -> "_BaseIndex":
        folder = Path(path)
        meta = _read_meta(folder)
        if cls.index_name and meta.get("index") != cls.index_name:
            target = INDEX_CLASSES.get(meta.get("index", ""))
            if target is None:
                raise DataError(f"{folder} holds an index of unknown type {meta.get('index')!r}")
            cls = target  # type: ignore[assignment]
        params = {k: v for k, v in (meta.get("params") or {}).items() if k in cls.param_names()}
        obj = cls(**params)
        token = meta["token"]
        ids_text = (folder / f"ids.{token}.txt").read_text()
        ids = ids_text.split("\n")[: int(meta["n"])]
        obj.ids_ = np.asarray(ids)
        obj.dim_ = int(meta["dim"])
        obj._restore((folder / f"index.{token}.bin").read_bytes())
        return obj


def _plain(obj: Any) -> Any:
    return json.loads(json.dumps(obj, default=str))


def _read_meta(folder: Path) -> dict[str, Any]:
    p = Path(folder) / "meta.json"
    if not p.exists():
        raise DataError(f"no saved index in {folder} (meta.json missing)",
                        hint="point at the index folder a retrieval task wrote (<task>/index)")
    meta = json.loads(p.read_text())
    if meta.get("format") != INDEX_FORMAT:
        raise DataError(f"unsupported index format {meta.get('format')!r} in {folder}")
    return meta


class NumpyExactIndex(_BaseIndex):
    """Brute-force exact search in numpy (reference for tests and benchmarks)."""

    index_name = "numpy-exact"

    def __init__(self, metric: str = "l2", batch: int = 1024):
        self.metric = _check_metric(metric)
        self.batch = batch

    def build(self, X: np.ndarray, ids: Any = None) -> "NumpyExactIndex":
        X = _as_matrix(X)
        self._set_ids(ids, len(X))
        self.dim_ = X.shape[1]
        self.X_ = self._prep(X)
        return self

    def search(self, Q: np.ndarray, k: int) -> tuple[np.ndarray, np.ndarray]:
        self._check_built()
        Q = self._prep(_as_matrix(Q, self.dim_))
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


class _FaissIndex(_BaseIndex):
    """Common faiss plumbing: metric constants, add/search, (de)serialisation."""

    def _faiss_metric(self) -> int:
        import faiss

        return faiss.METRIC_L2 if self.metric == "l2" else faiss.METRIC_INNER_PRODUCT

    def _make(self, d: int, X: np.ndarray) -> Any:  # pragma: no cover - interface
        raise NotImplementedError

    def _before_search(self) -> None:
        pass

    def build(self, X: np.ndarray, ids: Any = None) -> "_FaissIndex":
        X = self._prep(_as_matrix(X))
        self._set_ids(ids, len(X))
        self.dim_ = X.shape[1]
        self.index_ = self._make(self.dim_, X)
        self.index_.add(X)
        return self

    def search(self, Q: np.ndarray, k: int) -> tuple[np.ndarray, np.ndarray]:
        self._check_built()
        Q = self._prep(_as_matrix(Q, self.dim_))
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

    def __init__(self, metric: str = "l2"):
        self.metric = _check_metric(metric)

    def _make(self, d: int, X: np.ndarray) -> Any:
        import faiss

        return faiss.IndexFlatL2(d) if self.metric == "l2" else faiss.IndexFlatIP(d)


class FaissHNSWIndex(_FaissIndex):
    """Approximate FAISS search on an HNSW graph (M links, efConstruction, efSearch)."""

    index_name = "faiss-hnsw"

    def __init__(self, metric: str = "l2", M: int = 32, efConstruction: int = 200, efSearch: int = 128):
        self.metric = _check_metric(metric)
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

    def __init__(self, metric: str = "l2", nlist: int | None = None, nprobe: int = 8):
        self.metric = _check_metric(metric)
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


INDEX_CLASSES: dict[str, type[_BaseIndex]] = {
    cls.index_name: cls for cls in (FaissFlatIndex, FaissHNSWIndex, FaissIVFIndex, NumpyExactIndex)}


def load_index(path: str | os.PathLike[str]) -> _BaseIndex:
    """Load any index folder written by ``save`` (dispatches on ``meta.json``)."""
    meta = _read_meta(Path(path))
    cls = INDEX_CLASSES.get(meta.get("index", ""))
    if cls is None:
        raise DataError(f"{path} holds an index of unknown type {meta.get('index')!r}",
                        hint=f"known: {', '.join(INDEX_CLASSES)}")
    return cls.load(path)


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


# ----------------------------------------------------------------------------- query command

def query_index(folder: str | os.PathLike[str], *, patient: str | None = None, vector: np.ndarray | None = None,
                k: int = 10, include_self: bool = False) -> dict[str, Any]:
    """Answer one query from a saved index folder.

    By patient: the patient's aggregate is looked up in ``lookup.npz`` (written by
    the retrieval task next to the index: the aggregates of the indexed patients
    and of the held-out query patients). When the patient is itself indexed it
    is left out of its own neighbours unless ``include_self``. By vector: any
    vector of the index width.
    """
    folder = Path(folder)
    index = load_index(folder)
    labels: dict[str, Any] = {}
    if (folder / "labels.json").exists():
        labels = json.loads((folder / "labels.json").read_text())
    role = None
    if vector is None:
        if patient is None:
            raise DataError("give a patient id or a vector")
        lookup_path = folder / "lookup.npz"
        if not lookup_path.exists():
            raise DataError(f"{folder} has no lookup.npz, so it cannot query by patient",
                            hint="pass the query vector with --vector-file (a .npy of the index width)")
        with np.load(lookup_path, allow_pickle=False) as z:
            ids = z["ids"].astype(str)
            hit = np.where(ids == str(patient))[0]
            if not len(hit):
                raise DataError(f"patient {patient!r} is not in {lookup_path.name}",
                                hint="it holds the indexed and held-out query patients of the last repeat; "
                                     "or pass --vector-file")
            vector = np.asarray(z["X"][hit[0]], dtype=np.float32)
            role = str(z["role"][hit[0]]) if "role" in z else None
    Q = _as_matrix(vector)
    extra = 0 if include_self or patient is None else 1
    scores, ids = index.search(Q, int(k) + extra)
    neighbours = []
    for s, i in zip(scores[0], ids[0]):
        if i == "" or (not include_self and patient is not None and i == str(patient)):
            continue
        row: dict[str, Any] = {"id": str(i), "score": None if np.isnan(s) else float(s)}
        for lname, table in labels.items():
            if isinstance(table, dict) and str(i) in table:
                row[lname] = table[str(i)]
        neighbours.append(row)
        if len(neighbours) == int(k):
            break
    out: dict[str, Any] = {"index": str(folder), "type": index.index_name, "metric": index.metric,
                           "larger_is_closer": index.larger_is_closer, "k": int(k), "query": patient,
                           "query_role": role, "neighbours": neighbours}
    if patient is not None:
        for lname, table in labels.items():
            if isinstance(table, dict) and str(patient) in table:
                out.setdefault("query_labels", {})[lname] = table[str(patient)]
    return out


@hookimpl
def register_indexes(register):
    register("faiss-flat", FaissFlatIndex, tags=["exact", "faiss"])
    register("faiss-hnsw", FaissHNSWIndex, tags=["approximate", "faiss"])
    register("faiss-ivf", FaissIVFIndex, tags=["approximate", "faiss"])
    register("numpy-exact", NumpyExactIndex, tags=["exact", "reference"])


@hookimpl
def register_commands(cli):
    import click

    @cli.command("query")
    @click.argument("index_dir", type=click.Path(exists=True, file_okay=False))
    @click.option("--patient", default=None, help="Query by patient id (its aggregate is read from lookup.npz).")
    @click.option("--vector-file", type=click.Path(exists=True, dir_okay=False), default=None,
                  help="Query by a vector: .npy of shape (dim,) or (1, dim).")
    @click.option("-k", "k", type=int, default=10, show_default=True, help="Neighbours to return.")
    @click.option("--include-self", is_flag=True, default=False,
                  help="Keep the query patient among its own neighbours when it is indexed.")
    @click.option("--json", "as_json", is_flag=True, default=False, help="Print JSON.")
    def query(index_dir: str, patient: str | None, vector_file: str | None, k: int, include_self: bool,
              as_json: bool) -> None:
        """Nearest patients from a saved index (a retrieval task's <task>/index folder).

        \b
        fusionkit query runs/x/retrieval/index --patient TCGA-AA-0001 -k 10
        fusionkit query runs/x/retrieval/index --vector-file q.npy --json
        """
        if (patient is None) == (vector_file is None):
            raise click.UsageError("give exactly one of --patient or --vector-file")
        try:
            vector = np.load(vector_file) if vector_file else None
            answer = query_index(index_dir, patient=patient, vector=vector, k=k, include_self=include_self)
        except FusionkitError as err:
            click.echo(f"error: {err}", err=True)
            raise SystemExit(1)
        if as_json:
            click.echo(json.dumps(answer, indent=2))
            return
        head = f"{answer['type']} ({answer['metric']}, {'higher' if answer['larger_is_closer'] else 'lower'} is closer)"
        who = f"patient {patient}" + (f" [{answer['query_role']}]" if answer.get("query_role") else "") \
            if patient else vector_file
        click.echo(f"{who} -> {len(answer['neighbours'])} neighbours from {head}")
        if answer.get("query_labels"):
            click.echo("query labels: " + ", ".join(f"{k}={v}" for k, v in answer["query_labels"].items()))
        for rank, row in enumerate(answer["neighbours"], 1):
            extra = "  ".join(f"{k}={v}" for k, v in row.items() if k not in ("id", "score"))
            score = "nan" if row["score"] is None else f"{row['score']:.4f}"
            click.echo(f"{rank:3d}  {row['id']:<20s} {score:>10s}  {extra}")
