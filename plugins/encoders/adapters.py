"""Width adapters (SPEC 2.1); registers ``zero-pad``, ``truncate``,
``random-projection`` and ``pca``: map an encoder's output width onto the
recipe's common width (768 by default).

Nothing is silently reshaped: an adapter that cannot reach the requested width
(zero-padding to a smaller width, truncating to a larger one, PCA to more
components than the data has) raises :class:`~fusionkit.errors.DataError` with
a hint naming the adapter that would work.

All adapters are plain numpy (no sklearn import), deterministic for a seed,
and keep float32.
"""

from __future__ import annotations

import numpy as np

from fusionkit import hookimpl
from fusionkit import Adapter
from fusionkit import DataError

__all__ = ["ZeroPad", "Truncate", "RandomProjection", "PCAAdapter", "orthonormal_projection"]


def _as_matrix(X: np.ndarray, who: str) -> np.ndarray:
    X = np.asarray(X)
    if X.ndim != 2:
        raise DataError(f"{who}: expected a 2-D array (n_items, width), got shape {X.shape}")
    return X


def _check_dim(dim: int, who: str) -> int:
    if isinstance(dim, bool) or int(dim) != dim or int(dim) < 1:
        raise DataError(f"{who}: target width must be a positive integer, got {dim!r}")
    return int(dim)


class _FittedWidth(Adapter):
    """Shared bookkeeping: remembers the input width seen at ``fit``."""

    in_dim_: int
    dim_: int

    def _check_fitted(self, X: np.ndarray) -> np.ndarray:
        who = type(self).__name__
        if not hasattr(self, "dim_"):
            raise DataError(f"{who}: transform called before fit",
                            hint="call fit(X, dim) first (the engine does this for you)")
        X = _as_matrix(X, who)
        if X.shape[1] != self.in_dim_:
            raise DataError(f"{who}: fitted on width {self.in_dim_} but got width {X.shape[1]}",
                            hint="fit the adapter again on embeddings of the same encoder")
        return X


class ZeroPad(_FittedWidth):
    """Pad embeddings with zeros up to the common width (never shrinks).

    Parameters: ``side`` ``"end"`` (default) appends zeros after the values,
    ``"start"`` puts them before.
    """

    width_rule = "grow"

    def __init__(self, side: str = "end"):
        self.side = side

    def fit(self, X: np.ndarray, dim: int, rng: np.random.Generator | None = None) -> "ZeroPad":
        X = _as_matrix(X, "zero-pad")
        dim = _check_dim(dim, "zero-pad")
        if self.side not in ("end", "start"):
            raise DataError(f"zero-pad: side must be 'end' or 'start', got {self.side!r}")
        if X.shape[1] > dim:
            raise DataError(
                f"zero-pad cannot shrink width {X.shape[1]} to {dim}",
                hint="use adapter 'truncate' (keep: first|last), 'pca' or 'random-projection' to reduce width")
        self.in_dim_, self.dim_ = int(X.shape[1]), dim
        return self

    def transform(self, X: np.ndarray) -> np.ndarray:
        X = self._check_fitted(X)
        out = np.zeros((X.shape[0], self.dim_), dtype=np.float32)
        if self.side == "end":
            out[:, : self.in_dim_] = X
        else:
            out[:, self.dim_ - self.in_dim_:] = X
        return out


class Truncate(_FittedWidth):
    """Keep the first or the last ``dim`` values of each embedding (never grows).

    Parameters: ``keep`` ``"first"`` (default) or ``"last"`` (the paper keeps
    the last 768 of Prov-GigaPath's 1536 values).
    """

    width_rule = "shrink"

    def __init__(self, keep: str = "first"):
        self.keep = keep

    def fit(self, X: np.ndarray, dim: int, rng: np.random.Generator | None = None) -> "Truncate":
        X = _as_matrix(X, "truncate")
        dim = _check_dim(dim, "truncate")
        if self.keep not in ("first", "last"):
            raise DataError(f"truncate: keep must be 'first' or 'last', got {self.keep!r}")
        if X.shape[1] < dim:
            raise DataError(f"truncate cannot grow width {X.shape[1]} to {dim}",
                            hint="use adapter 'zero-pad' or 'random-projection' to increase width")
        self.in_dim_, self.dim_ = int(X.shape[1]), dim
        return self

    def transform(self, X: np.ndarray) -> np.ndarray:
        X = self._check_fitted(X)
        out = X[:, : self.dim_] if self.keep == "first" else X[:, X.shape[1] - self.dim_:]
        return np.ascontiguousarray(out, dtype=np.float32)


def orthonormal_projection(d_in: int, dim: int, rng: np.random.Generator) -> np.ndarray:
    """A (d_in, dim) random matrix with orthonormal columns (dim <= d_in) or
    orthonormal rows (dim > d_in), Haar-distributed (QR of a Gaussian, signs fixed)."""
    big, small = max(d_in, dim), min(d_in, dim)
    G = rng.standard_normal((big, small))
    Q, R = np.linalg.qr(G)
    Q = Q * np.sign(np.diag(R))[None, :]  # unique, uniformly distributed
    return Q if dim <= d_in else Q.T  # (d_in, dim)


class RandomProjection(_FittedWidth):
    """Seeded random orthogonal projection to the common width.

    Reducing: orthonormal columns (a random rotation followed by keeping
    ``dim`` axes). Growing: orthonormal rows, so norms and dot products are
    preserved exactly. ``seed`` fixes the matrix; when it is ``None`` the
    engine's generator (``rng`` in ``fit``) is used.
    """

    def __init__(self, seed: int | None = None):
        self.seed = seed

    def fit(self, X: np.ndarray, dim: int, rng: np.random.Generator | None = None) -> "RandomProjection":
        X = _as_matrix(X, "random-projection")
        dim = _check_dim(dim, "random-projection")
        if self.seed is not None:
            rng = np.random.default_rng(int(self.seed))
        elif rng is None:
            raise DataError("random-projection needs a seed",
                            hint="set params.seed in the recipe, or pass rng to fit()")
        self.in_dim_, self.dim_ = int(X.shape[1]), dim
        self.components_ = orthonormal_projection(self.in_dim_, dim, rng).astype(np.float32)
        return self

    def transform(self, X: np.ndarray) -> np.ndarray:
        X = self._check_fitted(X)
        return (X.astype(np.float32, copy=False) @ self.components_).astype(np.float32, copy=False)


class PCAAdapter(_FittedWidth):
    """Principal components of the fitted embeddings (numpy SVD).

    Parameters: ``center`` subtracts the fitted mean (default; note the SPEC
    2.5 pitfall: centred embeddings hide a modality's presence inside a sum,
    so ``center: false`` keeps the mean offset by projecting uncentred data);
    ``whiten`` scales components to unit variance.
    """

    def __init__(self, center: bool = True, whiten: bool = False):
        self.center = center
        self.whiten = whiten

    def fit(self, X: np.ndarray, dim: int, rng: np.random.Generator | None = None) -> "PCAAdapter":
        X = _as_matrix(X, "pca").astype(np.float64)
        dim = _check_dim(dim, "pca")
        n, d = X.shape
        if dim > min(n, d):
            raise DataError(
                f"pca cannot produce {dim} components from {n} items of width {d} (at most {min(n, d)})",
                hint="use 'zero-pad' or 'random-projection' to grow the width, or fit on more items")
        self.mean_ = X.mean(axis=0) if self.center else np.zeros(d)
        _, S, Vt = np.linalg.svd(X - self.mean_, full_matrices=False)
        # deterministic signs: largest absolute loading of each component positive
        signs = np.sign(Vt[np.arange(Vt.shape[0]), np.argmax(np.abs(Vt), axis=1)])
        signs[signs == 0] = 1
        Vt = Vt * signs[:, None]
        self.components_ = Vt[:dim].astype(np.float32)  # (dim, d)
        self.explained_variance_ = (S[:dim] ** 2 / max(n - 1, 1)).astype(np.float32)
        self.in_dim_, self.dim_ = d, dim
        return self

    def transform(self, X: np.ndarray) -> np.ndarray:
        X = self._check_fitted(X)
        Z = (X.astype(np.float32) - self.mean_.astype(np.float32)) @ self.components_.T
        if self.whiten:
            Z = Z / np.sqrt(np.maximum(self.explained_variance_, 1e-12))[None, :]
        return Z.astype(np.float32, copy=False)


@hookimpl
def register_adapters(register):
    register("zero-pad", ZeroPad, summary="Pad with zeros up to the common width (never shrinks)")
    register("truncate", Truncate, summary="Keep the first or last `dim` values (never grows)")
    register("random-projection", RandomProjection,
             summary="Seeded random orthogonal projection to the common width")
    register("pca", PCAAdapter, summary="Principal components of the fitted embeddings")
