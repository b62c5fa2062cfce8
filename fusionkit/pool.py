"""The embedding pool (all modality stores of a run, plus patient labels) and
the vectorised gather-and-reduce that turns a DrawPlan into aggregates.

Nothing here loops in Python per aggregate: plans are index arrays; gathering
runs chunk by chunk over memory-mapped stores (torch ``embedding_bag``, a
sparse product, or numpy fancy indexing; see ``aggregate``), so memory stays
bounded by ``chunk`` whatever the store size.
"""

from __future__ import annotations

import os
import threading
from dataclasses import dataclass, field
from typing import Any, Iterable, Mapping

import numpy as np

from .components import Aggregates, Aggregator, DrawPlan
from .errors import DataError


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
    ``l2_normalize``, one over its norm), straight into the output. With torch
    and file-backed stores, the stores are mapped side by side into one index
    space (``_JointStores``) and one ``embedding_bag`` per slice of ~170
    aggregates gathers, sums and writes each aggregate row once: at or above the
    machine's random-row gather rate (benchmarks/bench_gather.py). With torch
    and in-memory stores, one bag per store and slice, added into the slice
    while it is in cache; without torch, one sparse (aggregates x rows) product
    per chunk and modality. Other aggregators get a gathered
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
    with _one_torch_thread(_torch_for(reducer.embs) if reducer.linear else None):
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
        self.joint = _joint_stores(self.embs) if self.linear else None

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
        reduced = _linear_reduce(self.embs, self.norms, self.means, self.scales, mod, item, noise, weights, self.d,
                                 target, self.joint)
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


#: bytes of output in one slice of the torch path (170 rows at d = 768): the slice and one
#: modality's partial sum stay in a core's L2 cache (2 MiB here) while the modalities add into it
_SLICE_BYTES = 512 * 1024


def _linear_reduce(embs: list[np.ndarray], norms: list[np.ndarray | None], means: list[np.ndarray | None],
                   scales: list[float], mod: np.ndarray, item: np.ndarray, noise: np.ndarray, weights: np.ndarray,
                   d: int, acc: np.ndarray | None = None, joint: "_JointStores | None" = None) -> np.ndarray:
    """``sum_j w_ij * scale_m * (emb_m[item_ij] - mean_m)`` for every aggregate row i over its
    real draws (into ``acc`` when given; noise slots are left to the caller).

    With ``joint`` (all stores in one index space) every draw is one row of one table and each
    aggregate row is gathered, summed and written once. Otherwise each modality's draws become a
    CSR list (rows, weights) summed per modality and added up. The centring term is the weight
    sum times the mean, subtracted at the end (float64 product, the same in every way)."""
    rows_n = mod.shape[0]
    acc = np.empty((rows_n, d), dtype=np.float32) if acc is None else acc
    centred = any(m is not None for m in means)
    mu = (np.stack([np.zeros(d) if m is None else np.asarray(m, dtype=np.float64) for m in means])
          if centred else None)
    if joint is not None:
        r_idx, s_idx = np.nonzero((mod >= 0) & ~noise)  # row-major: CSR order
        m = mod[r_idx, s_idx].astype(np.intp)
        cols = item[r_idx, s_idx]
        w = weights[r_idx, s_idx].astype(np.float32)
        if any(f != 1.0 for f in scales):
            w *= np.asarray(scales, dtype=np.float32)[m]
        for mi, nm in enumerate(norms):
            if nm is not None:
                here = m == mi
                w[here] /= nm[cols[here]]
        indptr = np.zeros(rows_n + 1, dtype=np.int64)
        np.cumsum(np.bincount(r_idx, minlength=rows_n), out=indptr[1:])
        wsum = (np.bincount(r_idx * len(embs) + m, weights=w, minlength=rows_n * len(embs)).reshape(rows_n, -1)
                if centred else None)
        _bags_into(joint.torch, [(joint.table, joint.row0[m] + cols, indptr, w)], acc, wsum, mu)
        return acc
    parts = []  # (modality, cols, indptr, w)
    wsum = np.zeros((rows_n, len(embs)), dtype=np.float64) if centred else None
    for mi in range(len(embs)):
        sel = (mod == mi) & ~noise
        if not sel.any():
            continue
        r_idx, s_idx = np.nonzero(sel)  # row-major: the CSR arrays are built directly (no COO sort)
        cols = item[r_idx, s_idx]
        w = weights[r_idx, s_idx].astype(np.float32)
        if scales[mi] != 1.0:
            w *= np.float32(scales[mi])
        if norms[mi] is not None:
            w = w / norms[mi][cols]
        indptr = np.zeros(rows_n + 1, dtype=np.int64)
        np.cumsum(np.bincount(r_idx, minlength=rows_n), out=indptr[1:])
        parts.append((mi, cols, indptr, w))
        if wsum is not None and means[mi] is not None:
            wsum[:, mi] = np.bincount(r_idx, weights=w, minlength=rows_n)
    torch = _torch_for(embs)
    if torch is not None:
        import warnings

        with warnings.catch_warnings():
            warnings.simplefilter("ignore")  # a read-only memmap: torch warns, and it is only read
            tables = [torch.from_numpy(e) for e in embs]
        _bags_into(torch, [(tables[mi], cols, indptr, w) for mi, cols, indptr, w in parts], acc, wsum, mu)
    else:
        _csr_into(embs, parts, acc, wsum, mu)
    return acc


def _center_term(wsum: np.ndarray, mu: np.ndarray) -> np.ndarray:
    """``sum_m wsum[:, m] * mu[m]`` as float32: what centring subtracts from each row."""
    return (wsum @ mu).astype(np.float32)


def _csr_into(embs: list[np.ndarray], parts: list, acc: np.ndarray, wsum: np.ndarray | None,
              mu: np.ndarray | None) -> None:
    """The no-torch way: per modality one CSR (rows x store) product with the store, which
    reads each named row once and accumulates it into its aggregate."""
    import scipy.sparse as sp

    rows_n = acc.shape[0]
    filled = False
    for mi, cols, indptr, w in parts:
        part = sp.csr_matrix((w, cols, indptr), shape=(rows_n, embs[mi].shape[0])) @ embs[mi]
        if filled:
            acc += part
        else:
            np.copyto(acc, part)
            filled = True
    if not filled:  # every draw of the chunk is noise
        acc.fill(0.0)
    if wsum is not None:
        acc -= _center_term(wsum, mu)


def _bags_into(torch: Any, parts: list, acc: np.ndarray, wsum: np.ndarray | None, mu: np.ndarray | None) -> None:
    """``embedding_bag(mode="sum", per_sample_weights=w)`` over zero-copy tables (``parts``:
    ``(table, cols, indptr, w)``, one per table), one slice of aggregate rows at a time: the
    first table's sums are copied into the output slice, the others' added while it is in cache."""
    rows_n, d = acc.shape
    step = max(8, _SLICE_BYTES // (4 * d))
    first_of_slice = (np.arange(rows_n) // step) * step
    # each aggregate's first draw counted from the first draw of its slice (a slice's offsets: a view)
    tparts = [(table, torch.from_numpy(np.ascontiguousarray(cols, dtype=np.int64)), indptr,
               torch.from_numpy(indptr[:-1] - indptr[first_of_slice]), torch.from_numpy(w))
              for table, cols, indptr, w in parts]
    out = torch.from_numpy(acc)
    bag = torch.embedding_bag  # (weight, indices, offsets, scale_grad, mode 0 = sum, sparse, weights, ...)
    for s in range(0, rows_n, step):
        e = min(rows_n, s + step)
        dst = out[s:e]
        filled = False
        for table, cols, indptr, offsets, w in tparts:
            lo, hi = int(indptr[s]), int(indptr[e])
            if lo == hi:
                continue
            part = bag(table, cols[lo:hi], offsets[s:e], False, 0, False, w[lo:hi], False, None)[0]
            if filled:
                dst.add_(part)
            else:
                dst.copy_(part)
                filled = True
        if not filled:
            dst.zero_()
        if wsum is not None:
            dst.sub_(torch.from_numpy(_center_term(wsum[s:e], mu)))


# ------------------------------------------------------------- one index space over the stores

class _JointStores:
    """The file-backed stores of a plan mapped side by side into one reserved address range, so
    that one torch tensor (``table``) holds them all: modality m's row i is ``table[row0[m] + i]``.

    Each store file is mapped again, read-only and shared (the same page-cache pages as the
    store's own memmap: no copy, no extra memory), at an address whose distance from the
    table's first row is a whole number of rows; the gaps between stores stay unmapped and
    are never indexed. Linux and macOS (``mmap`` with ``MAP_FIXED`` through ctypes); elsewhere,
    or when anything does not fit, ``_joint_stores`` returns None and the per-modality path runs.
    Unmapped when the last reference goes (the cache below holds the few most recent)."""

    def __init__(self, torch: Any, embs: list[np.ndarray], files: list[tuple[str, int]]):
        import ctypes
        import mmap
        import warnings

        self.torch, self._base, self._size = torch, None, 0
        libc = ctypes.CDLL(None, use_errno=True)
        libc.mmap.restype = ctypes.c_void_p
        libc.mmap.argtypes = [ctypes.c_void_p, ctypes.c_size_t, ctypes.c_int, ctypes.c_int, ctypes.c_int,
                              ctypes.c_long]
        libc.munmap.argtypes = [ctypes.c_void_p, ctypes.c_size_t]
        self._munmap = libc.munmap
        page, d = mmap.PAGESIZE, embs[0].shape[1]
        row = 4 * d
        lengths = [offset + e.shape[0] * row for e, (_, offset) in zip(embs, files)]
        self._size = sum(-(-n // page) * page + row * page for n in lengths) + 2 * page
        # reserve the whole range, inaccessible (PROT_NONE = 0); the stores are mapped over parts of it
        base = libc.mmap(None, self._size, 0, mmap.MAP_PRIVATE | mmap.MAP_ANONYMOUS, -1, 0)
        if base in (None, ctypes.c_void_p(-1).value):
            raise OSError(ctypes.get_errno(), "could not reserve address space")
        self._base = base
        origin = -(-base // page) * page + files[0][1]  # the table's first row: store 0's first row
        addr, row0 = origin - files[0][1], []
        for e, length, (filename, offset) in zip(embs, lengths, files):
            a = addr
            for _ in range(row):  # a page-aligned address that puts the store's first row on the row grid
                if (a + offset - origin) % row == 0:
                    break
                a += page
            else:
                raise OSError("the stores' headers do not fit one row grid")
            fd = os.open(filename, os.O_RDONLY)
            try:
                if os.fstat(fd).st_size < length:
                    raise OSError(f"{filename} is shorter than its array")
                got = libc.mmap(a, length, mmap.PROT_READ, mmap.MAP_SHARED | _MAP_FIXED, fd, 0)
            finally:
                os.close(fd)
            if got != a:
                raise OSError(ctypes.get_errno(), "could not map a store at its place")
            row0.append((a + offset - origin) // row)
            addr = -(-(a + length) // page) * page
        n_rows = (addr - origin) // row
        assert addr <= base + self._size
        flat = np.frombuffer((ctypes.c_float * (n_rows * d)).from_address(origin), dtype=np.float32)
        flat.flags.writeable = False
        self.row0 = np.asarray(row0, dtype=np.int64)
        arr = flat.reshape(n_rows, d)
        for e, r0, (filename, _) in zip(embs, self.row0, files):  # the same bytes as the store's own view (first, middle, last row)
            for i in {0, e.shape[0] // 2, e.shape[0] - 1}:
                if not np.array_equal(arr[r0 + i], e[i]):
                    raise OSError(f"{filename}: the second mapping differs from the store")
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")  # read-only memory: torch warns, and it is only read
            self.table = torch.from_numpy(arr)

    def __del__(self) -> None:
        if self._base is not None:
            base, self._base = self._base, None
            try:
                self._munmap(base, self._size)
            except Exception:  # noqa: BLE001  (interpreter shutdown: the process unmaps it anyway)
                pass


#: MAP_FIXED (same value on Linux and macOS; Python's mmap module does not export it)
_MAP_FIXED = 0x10
#: most recent last. A few are kept because a new mapping starts with no page-table entries: the
#: first call through it takes a minor fault per page touched (+0.2 s CPU for 585,000 rows of
#: 3 KiB). A kept mapping holds its files open until evicted or the process ends.
_JOINT: dict[tuple, _JointStores] = {}
_JOINT_KEEP = 4
_JOINT_LOCK = threading.Lock()
if hasattr(os, "register_at_fork"):  # a forked worker starts with a free lock (its own copy of the cache)
    os.register_at_fork(after_in_child=lambda: globals().__setitem__("_JOINT_LOCK", threading.Lock()))


def _joint_stores(embs: list[np.ndarray]) -> _JointStores | None:
    """One index space over ``embs`` (see ``_JointStores``), cached by the stores' files; None
    without torch, off Linux/macOS, for stores that are not C-contiguous float32 views of
    memory-mapped files (``np.load(..., mmap_mode="r")``, ``np.memmap``) of one width, or when
    mapping fails."""
    import sys

    torch = _torch_for(embs)
    if torch is None or not (sys.platform.startswith("linux") or sys.platform == "darwin"):
        return None
    files = [_file_extent(e) for e in embs]
    if any(f is None for f in files) or len({e.shape[1] for e in embs}) != 1:
        return None
    try:
        key = tuple((name, offset, e.shape, os.stat(name).st_ino, os.stat(name).st_mtime_ns)
                    for e, (name, offset) in zip(embs, files))
    except OSError:
        return None
    with _JOINT_LOCK:
        joint = _JOINT.pop(key, None)
        if joint is None:
            try:
                joint = _JointStores(torch, embs, files)
            except Exception:  # noqa: BLE001  (any failure: the per-modality path is always right)
                return None
        _JOINT[key] = joint
        while len(_JOINT) > _JOINT_KEEP:
            _JOINT.pop(next(iter(_JOINT)))
    return joint


def _file_extent(e: np.ndarray) -> tuple[str, int] | None:
    """(file, byte offset of ``e``'s first row) when ``e`` is a C-contiguous 2-D view into a
    memory-mapped file (the memmap itself, or ``np.asarray`` of it); else None."""
    if not (isinstance(e, np.ndarray) and e.ndim == 2 and e.shape[0] > 0 and e.flags.c_contiguous):
        return None
    import mmap

    mm = e  # up to the memmap that owns the mapping (slices of a memmap are memmaps too, with its offset)
    while isinstance(mm, np.ndarray) and not (isinstance(mm, np.memmap) and isinstance(mm.base, mmap.mmap)):
        mm = mm.base
    if not (isinstance(mm, np.memmap) and getattr(mm, "filename", None)):
        return None
    delta = e.__array_interface__["data"][0] - mm.__array_interface__["data"][0]
    if delta < 0 or delta + e.nbytes > mm.nbytes:
        return None
    return str(mm.filename), int(mm.offset) + int(delta)


_TORCH: list[Any] = []  # [torch module or None], resolved on first use


def _torch_for(embs: list[np.ndarray]) -> Any:
    """torch, when it is installed and every store is a float32 2-D ndarray (memmaps included);
    else None (the CSR product is used)."""
    if not _TORCH:
        try:
            import torch
        except Exception:  # noqa: BLE001  (optional: numpy/scipy-only installs)
            torch = None
        _TORCH.append(torch)
    torch = _TORCH[0]
    if torch is None or not all(isinstance(e, np.ndarray) and e.dtype == np.float32 and e.ndim == 2 for e in embs):
        return None
    return torch


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
