"""The gather-and-reduce kernels behind ``fusionkit.pool.aggregate`` for linear aggregators.

Three ways to compute ``sum_j w_ij * (store_m[item_ij] - mean_m)`` for every aggregate row i,
fastest first, each giving the same values to float32 rounding (tests/test_gather_fast_path.py):

* one index space (torch, file-backed stores): the stores' files mapped side by side into one
  address range (``JointStores``), so one ``embedding_bag`` gathers, sums and writes each
  aggregate row once, as fast as the machine gathers random rows;
* per store (torch, in-memory stores): one bag per store and slice of aggregates, added into
  the slice while it is in cache;
* CSR (no torch): one sparse (aggregates x rows) product per store, which reads each named
  row once and accumulates it into its aggregate.
"""

from __future__ import annotations

import os
import threading
from typing import Any

import numpy as np

__all__ = ["linear_reduce", "joint_stores", "torch_for", "JointStores"]


#: bytes of output in one slice of the torch path (170 rows at d = 768): the slice and one
#: modality's partial sum stay in a core's L2 cache (2 MiB here) while the modalities add into it
_SLICE_BYTES = 512 * 1024


def linear_reduce(embs: list[np.ndarray], norms: list[np.ndarray | None], means: list[np.ndarray | None],
                   scales: list[float], mod: np.ndarray, item: np.ndarray, noise: np.ndarray, weights: np.ndarray,
                   d: int, acc: np.ndarray | None = None, joint: "JointStores | None" = None) -> np.ndarray:
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
        _joint_into(joint, norms, scales, mod, item, noise, weights, acc, mu)
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
    torch = torch_for(embs)
    if torch is not None:
        import warnings

        with warnings.catch_warnings():
            warnings.simplefilter("ignore")  # a read-only memmap: torch warns, and it is only read
            tables = [torch.from_numpy(e) for e in embs]
        _bags_into(torch, [(tables[mi], cols, indptr, w) for mi, cols, indptr, w in parts], acc, wsum, mu)
    else:
        _csr_into(embs, parts, acc, wsum, mu)
    return acc


def _joint_into(joint: "JointStores", norms: list[np.ndarray | None], scales: list[float], mod: np.ndarray,
                item: np.ndarray, noise: np.ndarray, weights: np.ndarray, acc: np.ndarray,
                mu: np.ndarray | None) -> None:
    """``linear_reduce`` through one index space: every real draw is one row of ``joint.table``."""
    rows_n, n_mod = mod.shape[0], len(scales)
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
    wsum = (np.bincount(r_idx * n_mod + m, weights=w, minlength=rows_n * n_mod).reshape(rows_n, n_mod)
            if mu is not None else None)
    _bags_into(joint.torch, [(joint.table, joint.row0[m] + cols, indptr, w)], acc, wsum, mu)


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

class JointStores:
    """The file-backed stores of a plan mapped side by side into one reserved address range, so
    that one torch tensor (``table``) holds them all: modality m's row i is ``table[row0[m] + i]``.

    Each store file is mapped again, read-only and shared (the same page-cache pages as the
    store's own memmap: no copy, no extra memory), at an address whose distance from the
    table's first row is a whole number of rows; the gaps between stores stay unmapped and
    are never indexed. Linux and macOS (``mmap`` with ``MAP_FIXED`` through ctypes); elsewhere,
    or when anything does not fit, ``joint_stores`` returns None and the per-modality path runs.
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
_JOINT: dict[tuple, JointStores] = {}
_JOINT_KEEP = 4
_JOINT_LOCK = threading.Lock()
if hasattr(os, "register_at_fork"):  # a forked worker starts with a free lock (its own copy of the cache)
    os.register_at_fork(after_in_child=lambda: globals().__setitem__("_JOINT_LOCK", threading.Lock()))


def joint_stores(embs: list[np.ndarray]) -> JointStores | None:
    """One index space over ``embs`` (see ``JointStores``), cached by the stores' files; None
    without torch, off Linux/macOS, for stores that are not C-contiguous float32 views of
    memory-mapped files (``np.load(..., mmap_mode="r")``, ``np.memmap``) of one width, or when
    mapping fails."""
    import sys

    torch = torch_for(embs)
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
                joint = JointStores(torch, embs, files)
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


def torch_for(embs: list[np.ndarray]) -> Any:
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
