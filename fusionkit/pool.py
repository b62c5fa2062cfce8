"""The embedding pool (all modality stores of a run, plus patient labels) and
the vectorised gather-and-reduce that turns a DrawPlan into aggregates.

Nothing here loops in Python per aggregate: plans are index arrays; gathering
runs chunk by chunk over memory-mapped stores (torch ``embedding_bag``, a
sparse product, or numpy fancy indexing; see ``aggregate``), so memory stays
bounded by ``chunk`` whatever the store size.
"""

from __future__ import annotations

import os
from dataclasses import dataclass, field
from typing import Any, Iterable, Mapping

import numpy as np

from .components import Aggregates, Aggregator, DrawPlan
from .errors import DataError
from . import gather


@dataclass
class ModalityView:
    """One modality of a pool: a store (or an array) and the rows in use."""

    name: str
    embeddings: np.ndarray  # (N, d) float32, usually a memmap
    patient_ids: np.ndarray  # (N,) str
    labels: dict[str, np.ndarray] = field(default_factory=dict)  # per item
    rows: np.ndarray | None = None  # allowed rows (None = all)

    def __post_init__(self) -> None:
        if self.rows is None:
            self.rows = np.arange(self.embeddings.shape[0], dtype=np.int64)

    @property
    def n(self) -> int:
        return int(len(self.rows))

    def mean(self, block: int = 65536) -> np.ndarray:
        """Mean vector of the whole store (all rows, label-free; cached), float32."""
        return self._moments(block)[0].astype(np.float32)

    def rms(self, center: bool = False, block: int = 65536) -> float:
        """Root mean square entry of the whole store (all rows, label-free; cached): of
        ``x - mean()`` when ``center`` (the root mean of its column variances), else of ``x``.
        1.0 for a store whose entries are all zero (or all equal, centred)."""
        mean, meansq = self._moments(block)
        ms = float(np.mean(meansq - mean * mean)) if center else float(np.mean(meansq))
        return float(np.sqrt(ms)) if ms > 0 else 1.0

    def _moments(self, block: int = 65536) -> tuple[np.ndarray, np.ndarray]:
        """Per-column mean and mean square over the whole store, float64, in one blockwise pass."""
        cached = getattr(self, "_moments_cache", None)
        if cached is None:
            n, d = self.embeddings.shape
            total, total_sq = np.zeros(d, dtype=np.float64), np.zeros(d, dtype=np.float64)
            for i in range(0, n, block):
                rows = np.asarray(self.embeddings[i:i + block], dtype=np.float64)
                total += rows.sum(axis=0)
                np.square(rows, out=rows)
                total_sq += rows.sum(axis=0)
            cached = (total / max(1, n), total_sq / max(1, n))
            self._moments_cache = cached
        return cached


class EmbeddingPool:
    """All modalities of a run, aligned on patient ids, plus patient-level labels."""

    #: travels to remote workers once per batch (see ray_executor)
    __fusionkit_shared__ = True

    def __init__(self, views: Mapping[str, ModalityView], labels: Mapping[str, Mapping[str, Any]] | None = None):
        self.views: dict[str, ModalityView] = dict(views)
        if not self.views:
            raise DataError("the embedding pool is empty: no modality has any embedding",
                            hint="check the recipe's modalities and that their readers found input")
        dims = {v.name: v.embeddings.shape[1] for v in self.views.values()}
        if len(set(dims.values())) > 1:
            raise DataError(f"modalities have different widths {dims}; aggregation needs one common width",
                            hint="add a width adapter (zero-pad, truncate, random-projection, pca) "
                                 "to the modalities whose width differs")
        for v in self.views.values():
            if v.n == 0:
                raise DataError(f"modality {v.name!r} has no embeddings in this pool",
                                hint="disable it in the recipe (enabled: false) or check its input")
        self.labels: dict[str, dict[str, Any]] = {k: dict(v) for k, v in (labels or {}).items()}
        #: identifies the content of the pool (cache keys of its stores); part of unit cache keys
        self.fingerprint: str = ""

    @classmethod
    def from_stores(cls, stores: Mapping[str, Any], labels: Mapping[str, Mapping[str, Any]] | None = None
                    ) -> "EmbeddingPool":
        views = {}
        for name, store in stores.items():
            item_labels = {k: v for k, v in store.items.items() if k not in ("patient_id", "item_id")}
            views[name] = ModalityView(name=name, embeddings=store.embeddings, patient_ids=store.patient_ids,
                                       labels=item_labels)
        pool = cls(views, labels)
        from .store import stable_hash

        pool.fingerprint = stable_hash({name: getattr(store, "provenance", {}).get("cache_key", str(store.path))
                                        for name, store in stores.items()})
        return pool

    @classmethod
    def from_arrays(cls, arrays: Mapping[str, tuple[np.ndarray, Iterable[str]]],
                    labels: Mapping[str, Mapping[str, Any]] | None = None,
                    item_labels: Mapping[str, Mapping[str, np.ndarray]] | None = None) -> "EmbeddingPool":
        """Build a pool from in-memory ``{modality: (X, patient_ids)}`` (tests, notebooks)."""
        views = {}
        for name, (X, pids) in arrays.items():
            views[name] = ModalityView(name=name, embeddings=np.asarray(X, dtype=np.float32),
                                       patient_ids=np.asarray(list(pids)).astype(str),
                                       labels=dict((item_labels or {}).get(name, {})))
        pool = cls(views, labels)
        from .store import stable_hash

        pool.fingerprint = stable_hash({name: [float(np.asarray(X, dtype=np.float64).sum()), len(X)]
                                        for name, (X, _) in arrays.items()})
        return pool

    # ------------------------------------------------------------------ properties
    @property
    def modalities(self) -> list[str]:
        return list(self.views)

    @property
    def dim(self) -> int:
        return int(next(iter(self.views.values())).embeddings.shape[1])

    def patients(self) -> np.ndarray:
        """Sorted unique patient ids over all modalities (in use)."""
        ids = [v.patient_ids[v.rows] for v in self.views.values()]
        return np.unique(np.concatenate(ids)) if ids else np.array([], dtype=str)

    def patient_label(self, name: str, patients: Iterable[str]) -> np.ndarray:
        """Patient-level label (object array, None where unknown)."""
        table = self.labels.get(name)
        if table is None:
            # fall back on an item label that is constant per patient
            for v in self.views.values():
                if name in v.labels:
                    table = dict(zip(v.patient_ids, v.labels[name]))
                    for v2 in self.views.values():
                        if name in v2.labels:
                            table.update(zip(v2.patient_ids, v2.labels[name]))
                    break
        if table is None:
            raise DataError(f"no label {name!r} in this run",
                            hint=f"labels: {', '.join(sorted(self.labels)) or '(none)'}; add a label reader")
        return np.array([table.get(p) for p in patients], dtype=object)

    def availability(self) -> dict[str, np.ndarray]:
        """modality -> sorted patients that have at least one item."""
        return {name: np.unique(v.patient_ids[v.rows]) for name, v in self.views.items()}

    def restrict(self, patients: Iterable[str] | None = None, modalities: Iterable[str] | None = None
                 ) -> "EmbeddingPool":
        """A view on a subset of patients and/or modalities (no data copied)."""
        keep = None if patients is None else np.asarray(sorted(set(map(str, patients))))
        views = {}
        for name, v in self.views.items():
            if modalities is not None and name not in set(modalities):
                continue
            rows = v.rows
            if keep is not None:
                rows = rows[np.isin(v.patient_ids[rows], keep)]
            views[name] = ModalityView(name=name, embeddings=v.embeddings, patient_ids=v.patient_ids,
                                       labels=v.labels, rows=rows)
            if hasattr(v, "_moments_cache"):  # whole-store statistics: the same store, so still valid
                views[name]._moments_cache = v._moments_cache
        pool = EmbeddingPool.__new__(EmbeddingPool)
        pool.views = views
        pool.labels = self.labels
        from .store import stable_hash

        pool.fingerprint = stable_hash([self.fingerprint, None if keep is None else keep.tolist(),
                                        None if modalities is None else sorted(modalities)])
        return pool

    def summary(self, label: str | None = None) -> dict[str, Any]:
        """Items and patients per modality (and per value of ``label``, when given and
        known: the recipe's ``labels.primary``), and embedding statistics.

        The per-modality mean vector norm and the norm of the mean vector are
        reported because a modality's recognisability inside a sum depends on
        them (SPEC 2.5: centred embeddings hide presence).
        """
        out: dict[str, Any] = {"modalities": {}}
        for name, v in self.views.items():
            rows = v.rows
            sample = rows if len(rows) <= 20000 else rows[np.linspace(0, len(rows) - 1, 20000).astype(np.int64)]
            X = np.asarray(v.embeddings[np.sort(sample)], dtype=np.float64)
            pids = v.patient_ids[rows]
            entry: dict[str, Any] = {
                "items": int(len(rows)),
                "patients": int(len(np.unique(pids))),
                "dim": int(v.embeddings.shape[1]),
                "mean_norm": float(np.linalg.norm(X, axis=1).mean()) if len(X) else 0.0,
                "norm_of_mean": float(np.linalg.norm(X.mean(axis=0))) if len(X) else 0.0,
                "mean_std": float(X.std(axis=0).mean()) if len(X) else 0.0,
            }
            if label is not None:
                entry.update(self._patients_by(label, pids))
            out["modalities"][name] = entry
        return out

    def _patients_by(self, label: str, pids: np.ndarray) -> dict[str, Any]:
        """``{"patients_by_<label>": {value: patients}}``, or nothing when the label is unknown."""
        try:
            lab = self.patient_label(label, np.unique(pids))
        except DataError:
            return {}
        vals, counts = np.unique(np.array([str(x) for x in lab]), return_counts=True)
        return {f"patients_by_{label}": {str(a): int(b) for a, b in zip(vals, counts)}}


# ----------------------------------------------------------------------------- aggregation

def aggregate(plan: DrawPlan, pool: EmbeddingPool, aggregator: Aggregator, *, chunk: int = 2048,
              noise_seed: int = 0, out: np.ndarray | None = None, progress: Any = None,
              threads: int | None = 1) -> Aggregates:
    """Gather the rows a plan names and reduce them, chunk by chunk.

    Linear aggregators (sum, mean) take a fast path that never makes a gathered
    copy: each draw's store row is read once and accumulated, with its weight
    (the aggregator's slot weight, the modality's ``scale`` factor and, with
    ``l2_normalize``, one over its norm), straight into the output: with torch
    and file-backed stores through one index space over all stores, one
    ``embedding_bag`` per slice of ~170 aggregates, each aggregate row gathered,
    summed and written once, about as fast as the machine gathers random rows
    (benchmarks/RESULTS.md); otherwise per store, or as sparse products without
    torch (``fusionkit.gather``). Other aggregators get a gathered
    ``(chunk*r, k_max, d)`` buffer. Either way memory beyond the output is
    bounded by ``chunk``. Noise draws get fresh N(0, plan.noise_std) vectors
    from a generator seeded by ``noise_seed`` and the chunk's start, so results
    do not depend on execution order.

    ``threads`` (None: all cores) linear chunks run at once, each on one thread
    (torch's own intra-op threads are held at one for the call: many small
    parallel regions, each a fork and a barrier, cost more than they give and
    collapse when the cores are shared with other jobs).
    """
    for m in plan.modalities:
        if m not in pool.views:
            raise DataError(f"plan uses modality {m!r} that is not in the pool ({', '.join(pool.modalities)})")
    n, r, kmax = plan.mod.shape
    reducer = _ChunkReducer(plan, pool, aggregator, max(1, int(chunk)), noise_seed)
    if out is None:
        out = np.empty((n, r * reducer.out_dim), dtype=np.float32)

    def one_chunk(start: int) -> None:
        stop = min(n, start + reducer.chunk)
        dst = out[start:stop].reshape((stop - start) * r, reducer.out_dim)  # a view of out: written in place
        inplace = reducer.linear and out.dtype == np.float32 and np.may_share_memory(dst, out)
        res = reducer(start, stop, dst if inplace else None)
        if res is not dst:
            out[start:stop] = res.reshape(stop - start, r * reducer.out_dim)

    starts = range(0, n, reducer.chunk)
    # linear chunks are independent (disjoint output rows, per-chunk noise seeds) and
    # torch / scipy release the GIL: run them on up to `threads` cores (None: all)
    workers = 1 if not reducer.linear else max(1, min(int(threads or os.cpu_count() or 1), len(starts)))
    with _one_torch_thread(gather.torch_for(reducer.embs) if reducer.linear else None):
        _run_chunks(one_chunk, starts, workers, progress)
    return Aggregates(X=out, modalities=list(plan.modalities), counts=plan.counts(), k=plan.k.copy(),
                      patient_ids=None if plan.patient_ids is None else plan.patient_ids.copy(),
                      group_labels={k: v.copy() for k, v in plan.group_labels.items()},
                      meta={**plan.meta, "repeats": r, "k_max": kmax, "dim": pool.dim})


class _ChunkReducer:
    """Reduces rows [start, stop) of a plan to ``(c * r, out_dim)``, as ``aggregate`` describes."""

    def __init__(self, plan: DrawPlan, pool: EmbeddingPool, aggregator: Aggregator, chunk: int, noise_seed: int):
        self.plan, self.aggregator, self.chunk, self.noise_seed = plan, aggregator, chunk, noise_seed
        self.d = pool.dim
        _, self.r, self.kmax = plan.mod.shape
        self.out_dim = int(aggregator.output_dim(self.d, self.kmax))
        views = [pool.views[m] for m in plan.modalities]
        self.embs = [v.embeddings for v in views]
        self.linear = bool(aggregator.linear)
        self.means = [v.mean() if aggregator.center else None for v in views]
        #: per-modality factor of every draw (``scale``: one over the store's RMS; 1.0 otherwise)
        self.scales = [modality_scale(v, aggregator) for v in views]
        self.norms: list[np.ndarray | None] = [None] * len(self.embs)
        if self.linear and aggregator.l2_normalize:
            self.norms = [_row_norms(e, mu) for e, mu in zip(self.embs, self.means)]
        self.buf = None if self.linear else np.empty((chunk * self.r, self.kmax, self.d), dtype=np.float32)
        #: all stores in one index space (file-backed stores, torch): one gather per aggregate row
        self.joint = gather.joint_stores(self.embs) if self.linear else None

    def __call__(self, start: int, stop: int, target: np.ndarray | None = None) -> np.ndarray:
        shape = ((stop - start) * self.r, self.kmax)
        mod = self.plan.mod[start:stop].reshape(shape)
        item = self.plan.item[start:stop].reshape(shape)
        noise = self.plan.noise[start:stop].reshape(shape)
        if self.linear:
            return self._linear(start, mod, item, noise, target)
        return self._gathered(start, mod, item, noise)

    def _linear(self, start: int, mod: np.ndarray, item: np.ndarray, noise: np.ndarray,
                target: np.ndarray | None = None) -> np.ndarray:
        mask = mod >= 0
        weights = self.aggregator.weights(mask)
        reduced = gather.linear_reduce(self.embs, self.norms, self.means, self.scales, mod, item, noise, weights,
                                        self.d, target, self.joint)
        if noise.any():  # noise draws are not store rows: no centring, no scale (see Aggregator.scale)
            w = weights[noise]
            vec = _noise(self.noise_seed, start, int(noise.sum()), self.d, self.plan.noise_std)
            if self.aggregator.l2_normalize:
                vec /= np.maximum(np.linalg.norm(vec, axis=1, keepdims=True), 1e-12)
            np.add.at(reduced, np.nonzero(noise)[0], vec * w[:, None])
        return reduced

    def _gathered(self, start: int, mod: np.ndarray, item: np.ndarray, noise: np.ndarray) -> np.ndarray:
        G = self.buf[: mod.shape[0]]
        G.fill(0.0)
        for mi, emb in enumerate(self.embs):
            sel = (mod == mi) & ~noise
            if sel.any():
                G[sel] = emb[item[sel]]
                if self.means[mi] is not None:
                    G[sel] -= self.means[mi]
                if self.scales[mi] != 1.0:
                    G[sel] *= np.float32(self.scales[mi])
        if noise.any():
            G[noise] = _noise(self.noise_seed, start, int(noise.sum()), self.d, self.plan.noise_std)
        return self.aggregator.reduce(G, mod >= 0)


def modality_scale(view: ModalityView, aggregator: Aggregator) -> float:
    """The factor ``aggregate`` gives every draw of ``view``: with ``aggregator.scale``, one
    over the store's RMS entry (of ``x - mean`` when ``center``), so that each modality's
    draws have a mean squared entry of 1; 1.0 without ``scale`` or with ``l2_normalize``
    (unit-norm draws already weigh the same whatever the modality)."""
    if not aggregator.scale or aggregator.l2_normalize:
        return 1.0
    return 1.0 / view.rms(center=bool(aggregator.center))


def _one_torch_thread(torch: Any) -> Any:
    """Hold ``torch`` (when given) at one intra-op thread for the block, restored after.

    OpenMP keeps the count per thread: worker threads started inside the block take one
    (see ``_worker_init``), the calling thread gets its own count back at the end."""
    import contextlib

    @contextlib.contextmanager
    def held() -> Any:
        old = 1 if torch is None else torch.get_num_threads()
        if old != 1:
            torch.set_num_threads(1)
        try:
            yield
        finally:
            if old != 1:
                torch.set_num_threads(old)
    return held()


def _run_chunks(one_chunk: Any, starts: range, workers: int, progress: Any) -> None:
    if workers == 1:
        for start in (progress(starts) if progress is not None else starts):
            one_chunk(start)
        return
    from concurrent.futures import ThreadPoolExecutor

    with ThreadPoolExecutor(max_workers=workers, initializer=_worker_init) as pool_:
        done = pool_.map(one_chunk, starts)
        for _ in (progress(done, total=len(starts)) if progress is not None else done):
            pass


def _worker_init() -> None:
    import sys

    torch = sys.modules.get("torch")
    if torch is not None:  # each worker one torch thread (see _one_torch_thread)
        torch.set_num_threads(1)


def _noise(seed: int, start: int, count: int, d: int, std: float) -> np.ndarray:
    rng = np.random.default_rng([seed, start])
    return rng.normal(0.0, std, size=(count, d)).astype(np.float32)


def _row_norms(emb: np.ndarray, mu: np.ndarray | None = None, block: int = 65536) -> np.ndarray:
    out = np.empty(emb.shape[0], dtype=np.float32)
    for i in range(0, emb.shape[0], block):
        rows = np.asarray(emb[i:i + block], dtype=np.float32)
        out[i:i + block] = np.linalg.norm(rows if mu is None else rows - mu, axis=1)
    out[out == 0] = 1.0
    return out


def save_aggregates(path: Any, agg: Aggregates) -> None:
    """Write aggregates as a folder of .npy files + labels.json (atomic per file)."""
    import json
    from pathlib import Path

    from .store import atomic_save_npy, atomic_write_json

    path = Path(path)
    path.mkdir(parents=True, exist_ok=True)
    atomic_save_npy(path / "X.npy", agg.X)
    atomic_save_npy(path / "counts.npy", agg.counts)
    atomic_save_npy(path / "presence.npy", agg.presence)
    atomic_save_npy(path / "k.npy", agg.k)
    if agg.patient_ids is not None:
        atomic_save_npy(path / "patient_ids.npy", np.asarray(agg.patient_ids).astype(str))
    for key, value in agg.group_labels.items():
        atomic_save_npy(path / f"label_{key}.npy", np.asarray([str(x) for x in value]))
    atomic_write_json(path / "meta.json", {"modalities": agg.modalities, "n": len(agg),
                                           "width": int(agg.X.shape[1]),
                                           "labels": sorted(agg.group_labels), **json.loads(
                                               json.dumps(agg.meta, default=str))})
