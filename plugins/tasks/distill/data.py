"""Per-patient bags and prototypes for the distillation tasks (numpy only).

A *bag* is the set of embeddings one patient has in one modality: many tiles
or sentences, one RNA or mutation vector. Bags are stored CSR-style
(:class:`Bags`: the rows of every patient one after the other, plus offsets)
so that a cohort of thousands of patients with hundreds of tiles each never
needs a padded (patients x items x width) array; batches are padded on the fly.

:func:`build_bags` is the *only* place that reads embeddings, and it touches
``pool.views[m]`` for the modalities it is given and for no other. The student
and the uni-modal baseline receive bags built from ``student_modalities`` only,
which is what makes "the student never reads a modality it is not allowed at
inference" checkable (tests/test_distill.py).

:func:`bag_prototypes` is the clustering half of informative token
aggregation (ITA): a bag of tiles becomes ``k`` cluster means (k-means with a
k-means++ start, seeded per patient so the result does not depend on which
other patients are in the batch); the learned half (scoring prototypes and
keeping the top ones) lives in :mod:`fusionkit_plugins.tasks.distill.model`.
"""

from __future__ import annotations

import zlib
from dataclasses import dataclass
from typing import Any, Iterable, Sequence

import numpy as np


@dataclass
class Bags:
    """The bags of one modality for an ordered list of patients (CSR layout).

    ``X[offsets[i]:offsets[i+1]]`` are the rows of ``patients[i]``; an empty
    slice means the modality is missing for that patient.
    """

    modality: str
    patients: np.ndarray  # (P,) str
    X: np.ndarray  # (n_rows, d) float32
    offsets: np.ndarray  # (P + 1,) int64

    @property
    def sizes(self) -> np.ndarray:
        return np.diff(self.offsets)

    @property
    def present(self) -> np.ndarray:
        return self.sizes > 0

    @property
    def dim(self) -> int:
        return int(self.X.shape[1])

    @property
    def max_size(self) -> int:
        return int(self.sizes.max()) if len(self.sizes) else 0

    @property
    def is_bag(self) -> bool:
        """True when some patient has more than one item (tiles, sentences)."""
        return self.max_size > 1

    def bag(self, i: int) -> np.ndarray:
        return self.X[self.offsets[i]:self.offsets[i + 1]]

    def take(self, index: Sequence[int] | np.ndarray) -> "Bags":
        index = np.asarray(index, dtype=np.int64)
        sizes = self.sizes[index]
        offsets = np.zeros(len(index) + 1, dtype=np.int64)
        np.cumsum(sizes, out=offsets[1:])
        if len(index):
            rows = np.concatenate([np.arange(self.offsets[i], self.offsets[i + 1]) for i in index])
        else:
            rows = np.zeros(0, dtype=np.int64)
        return Bags(self.modality, self.patients[index], self.X[rows.astype(np.int64)], offsets)

    def padded(self, index: Sequence[int] | np.ndarray, max_len: int | None = None
               ) -> tuple[np.ndarray, np.ndarray]:
        """(B, L, d) float32 and a (B, L) bool mask (True = a real item) for patients ``index``."""
        index = np.asarray(index, dtype=np.int64)
        sizes = self.sizes[index]
        L = max(1, int(sizes.max()) if len(sizes) else 1)
        if max_len is not None:
            L = max(1, min(L, int(max_len)))
        out = np.zeros((len(index), L, self.dim), dtype=np.float32)
        mask = np.zeros((len(index), L), dtype=bool)
        for j, i in enumerate(index):
            b = self.bag(int(i))[:L]
            out[j, : len(b)] = b
            mask[j, : len(b)] = True
        return out, mask

    def row_stats(self, index: Sequence[int] | np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """Mean and std (floored) over the rows of patients ``index`` (input standardisation)."""
        sub = self.take(index).X
        if len(sub) == 0:
            return np.zeros(self.dim, np.float32), np.ones(self.dim, np.float32)
        mean = sub.mean(axis=0, dtype=np.float64)
        std = sub.std(axis=0, dtype=np.float64)
        return mean.astype(np.float32), np.where(std > 1e-6, std, 1.0).astype(np.float32)


def patient_seed(seed: int, patient: str) -> list[int]:
    """A seed for one patient that does not depend on the order of the cohort."""
    return [int(seed) & 0x7FFFFFFF, zlib.crc32(str(patient).encode())]


def build_bags(pool: Any, patients: Iterable[str], modalities: Sequence[str], *, max_items: int = 256,
               seed: int = 0) -> dict[str, Bags]:
    """Bags of ``patients`` for each of ``modalities`` (and only those) from an EmbeddingPool.

    A patient with more than ``max_items`` rows in a modality keeps a random
    subset of ``max_items`` (seeded per patient, kept in store order, so tile
    neighbourhoods survive for the second magnification). Rows are copied out
    of the memory-mapped store in sorted order, one modality at a time.
    """
    patients = np.asarray([str(p) for p in patients])
    out: dict[str, Bags] = {}
    for m in modalities:
        view = pool.views[m]  # the only access to embeddings in the distillation code
        rows = np.asarray(view.rows, dtype=np.int64)
        pids = view.patient_ids[rows].astype(str)
        order = np.argsort(pids, kind="stable")
        rows_s, pids_s = rows[order], pids[order]
        lo = np.searchsorted(pids_s, patients, side="left")
        hi = np.searchsorted(pids_s, patients, side="right")
        chosen: list[np.ndarray] = []
        sizes = np.zeros(len(patients), dtype=np.int64)
        for i, (a, b) in enumerate(zip(lo, hi)):
            r = np.sort(rows_s[a:b])
            if len(r) > max_items > 0:
                rng = np.random.default_rng(patient_seed(seed, patients[i]) + [len(m)])
                r = np.sort(rng.choice(r, size=int(max_items), replace=False))
            chosen.append(r)
            sizes[i] = len(r)
        offsets = np.zeros(len(patients) + 1, dtype=np.int64)
        np.cumsum(sizes, out=offsets[1:])
        flat = np.concatenate(chosen) if chosen else np.zeros(0, dtype=np.int64)
        d = int(view.embeddings.shape[1])
        X = np.empty((len(flat), d), dtype=np.float32)
        if len(flat):
            uniq, inv = np.unique(flat, return_inverse=True)
            block = 65536
            data = np.empty((len(uniq), d), dtype=np.float32)
            for s in range(0, len(uniq), block):
                data[s:s + block] = view.embeddings[uniq[s:s + block]]
            X[:] = data[inv]
        if not np.isfinite(X).all():
            raise ValueError(f"modality {m!r} holds non-finite embeddings for the requested patients")
        out[m] = Bags(m, patients, X, offsets)
    return out


def coarser_scale(bags: Bags, pool_size: int = 4) -> Bags:
    """A second "magnification": consecutive groups of ``pool_size`` tiles averaged (store order).

    Our tiles come at one magnification; neighbouring tiles in store order
    are spatial neighbours for tile readers that emit tiles row by row, so
    their mean approximates a lower-magnification field of view.
    """
    pool_size = max(1, int(pool_size))
    rows: list[np.ndarray] = []
    sizes = np.zeros(len(bags.patients), dtype=np.int64)
    for i in range(len(bags.patients)):
        b = bags.bag(i)
        if len(b) == 0:
            continue
        n = int(np.ceil(len(b) / pool_size))
        groups = np.array_split(b, n)
        rows.append(np.stack([g.mean(axis=0) for g in groups]).astype(np.float32))
        sizes[i] = n
    offsets = np.zeros(len(bags.patients) + 1, dtype=np.int64)
    np.cumsum(sizes, out=offsets[1:])
    X = np.concatenate(rows) if rows else np.zeros((0, bags.dim), dtype=np.float32)
    return Bags(bags.modality, bags.patients, X, offsets)


def kmeans(X: np.ndarray, k: int, rng: np.random.Generator, iters: int = 10) -> tuple[np.ndarray, np.ndarray]:
    """Lloyd's k-means with a k-means++ start; returns (centres (k, d), assignment (n,)).

    With ``n <= k`` every row is its own centre. Empty clusters keep their
    previous centre (they then have zero members).
    """
    X = np.asarray(X, dtype=np.float64)
    n = len(X)
    if n <= k:
        return X.copy(), np.arange(n)
    centres = np.empty((k, X.shape[1]))
    centres[0] = X[rng.integers(n)]
    d2 = ((X - centres[0]) ** 2).sum(axis=1)
    for j in range(1, k):
        total = d2.sum()
        idx = int(rng.choice(n, p=d2 / total)) if total > 0 else int(rng.integers(n))
        centres[j] = X[idx]
        d2 = np.minimum(d2, ((X - centres[j]) ** 2).sum(axis=1))
    assign = np.zeros(n, dtype=np.int64)
    for it in range(max(1, int(iters))):
        dist = (X ** 2).sum(1)[:, None] - 2 * X @ centres.T + (centres ** 2).sum(1)[None, :]
        new = dist.argmin(axis=1)
        if it > 0 and np.array_equal(new, assign):
            break
        assign = new
        for j in range(k):
            members = assign == j
            if members.any():
                centres[j] = X[members].mean(axis=0)
    return centres, assign


def bag_prototypes(bags: Bags, k: int = 8, *, iters: int = 10, seed: int = 0
                   ) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Cluster every patient's bag into at most ``k`` prototypes (cluster means).

    Returns ``P`` (patients, k, d) float32, ``mask`` (patients, k) bool (True =
    a non-empty prototype) and ``sizes`` (patients, k) float32 (the share of the
    bag in each cluster). A missing bag gives an all-False mask row.
    """
    n_pat = len(bags.patients)
    P = np.zeros((n_pat, k, bags.dim), dtype=np.float32)
    mask = np.zeros((n_pat, k), dtype=bool)
    share = np.zeros((n_pat, k), dtype=np.float32)
    for i in range(n_pat):
        b = bags.bag(i)
        if len(b) == 0:
            continue
        rng = np.random.default_rng(patient_seed(seed, bags.patients[i]))
        centres, assign = kmeans(b, k, rng, iters=iters)
        counts = np.bincount(assign, minlength=len(centres))[: len(centres)]
        keep = np.flatnonzero(counts > 0)
        P[i, : len(keep)] = centres[keep]
        mask[i, : len(keep)] = True
        share[i, : len(keep)] = counts[keep] / counts.sum()
    return P, mask, share


def stratified_split(labels: np.ndarray, fraction: float, rng: np.random.Generator
                     ) -> tuple[np.ndarray, np.ndarray]:
    """Indices (kept, held out): ``fraction`` of each class held out (at least one where a
    class has two or more members)."""
    labels = np.asarray(labels)
    keep, held = [], []
    for c in np.unique(labels):
        idx = np.flatnonzero(labels == c)
        idx = idx[rng.permutation(len(idx))]
        n_held = int(round(len(idx) * float(fraction)))
        if len(idx) >= 2:
            n_held = min(max(n_held, 1), len(idx) - 1)
        else:
            n_held = 0
        held.append(idx[:n_held])
        keep.append(idx[n_held:])
    return np.sort(np.concatenate(keep)), np.sort(np.concatenate(held))
