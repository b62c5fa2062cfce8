"""The linear baseline encoder ``pca`` for any matrix modality (issue 15; SPEC 2.5 "our own encoder
can be the cause": compare every learned encoder with a linear one on the same input).

Fitted on the items the engine gives ``fit`` and cached like the VAEs; the state is two plain files,
``pca_state.npz`` (arrays, loaded with ``allow_pickle=False``) and ``pca_config.json``; no pickle.
This is an *encoder* (raw matrix -> embedding); the ``pca`` *adapter* in ``adapters.py`` is a
different component that reduces another encoder's output width.
"""

from __future__ import annotations

import json
import logging
from pathlib import Path
from typing import Any

import numpy as np

from fusionkit import DataError, Encoder, ModalityData, hookimpl
from fusionkit_plugins.encoders.features import align_features

log = logging.getLogger(__name__)

__all__ = ["PCAEncoder"]

STATE_FILE = "pca_state.npz"
CONFIG_FILE = "pca_config.json"


class PCAEncoder(Encoder):
    """Principal components of a feature matrix (numpy SVD, deterministic signs).

    Parameters: ``dim`` (output width, 768; when the data has fewer than ``dim`` components
    the remaining columns are zeros, said in the log), ``center`` (subtract the fitted feature
    means; ``false`` projects uncentred data and so keeps the mean offset that makes a modality
    recognisable inside a sum, SPEC 2.5), ``standardize`` (divide every feature by its fitted
    standard deviation first), ``whiten`` (unit-variance components).
    Missing input features (matched by name) take the fitted mean.
    """

    modality = "any"
    input_kind = "matrix"
    trainable = True
    shard_size = 65536
    card = {"licence": "n/a", "gated": False, "weights_source": "fitted on your data", "params": None,
            "dim": 768, "tags": ["linear", "baseline", "trainable"]}

    def __init__(self, dim: int = 768, center: bool = True, standardize: bool = False, whiten: bool = False):
        self.dim = dim
        self.center = center
        self.standardize = standardize
        self.whiten = whiten

    @property
    def output_dim(self) -> int:
        return int(self.dim)

    @staticmethod
    def _matrix(data: ModalityData | np.ndarray) -> tuple[np.ndarray, list[str] | None]:
        if isinstance(data, ModalityData):
            if data.kind not in ("matrix", "embedding"):
                raise DataError(f"pca encoder needs a matrix, got {data.kind!r} items of modality {data.modality!r}",
                                hint="use a reader that yields a feature matrix")
            X, names = data.data, data.feature_names
        else:
            X, names = data, None
        X = np.asarray(X, dtype=np.float64)
        if X.ndim != 2:
            raise DataError(f"pca encoder needs a 2-D matrix (items x features), got shape {X.shape}")
        if not np.isfinite(X).all():
            raise DataError(f"pca encoder: input has {int((~np.isfinite(X)).sum())} NaN/inf values",
                            hint="impute or drop missing values in the reader before encoding")
        return X, (list(names) if names is not None else None)

    def fit(self, data: ModalityData | np.ndarray, ctx: Any = None) -> "PCAEncoder":
        if int(self.dim) < 1:
            raise DataError(f"pca encoder: dim must be >= 1, got {self.dim!r}", where="dim")
        X, names = self._matrix(data)
        n, d = X.shape
        if n < 2:
            raise DataError(f"pca encoder needs at least 2 items to fit, got {n}")
        self.mean_ = X.mean(axis=0) if self.center else np.zeros(d)
        sd = X.std(axis=0) if self.standardize else np.ones(d)
        self.scale_ = np.where(sd > 1e-12, sd, 1.0)
        _, S, Vt = np.linalg.svd((X - self.mean_) / self.scale_, full_matrices=False)
        signs = np.sign(Vt[np.arange(Vt.shape[0]), np.argmax(np.abs(Vt), axis=1)])
        signs[signs == 0] = 1
        k = min(int(self.dim), Vt.shape[0])
        self.components_ = (Vt[:k] * signs[:k, None]).astype(np.float32)
        self.explained_variance_ = (S[:k] ** 2 / max(n - 1, 1)).astype(np.float64)
        total = float((S ** 2).sum())
        self.explained_ratio_ = float(self.explained_variance_.sum() * max(n - 1, 1) / total) if total > 0 else 0.0
        self.in_dim_, self.feature_names_ = d, names
        if k < int(self.dim):
            log.info("pca encoder: %d items x %d features give %d components; the last %d of %d columns are zeros",
                     n, d, k, int(self.dim) - k, int(self.dim))
        return self

    def _align(self, X: np.ndarray, names: list[str] | None) -> np.ndarray:
        """Reorder columns to the fitted feature order; missing features take the fitted mean."""
        return align_features(X, names, self.feature_names_, self.in_dim_, self.mean_, "pca encoder")[0]

    def encode(self, data: ModalityData | np.ndarray, ctx: Any = None) -> np.ndarray:
        if not hasattr(self, "components_"):
            raise DataError("pca encoder must be fitted (or loaded) before encode",
                            hint="call fit(data) or load(folder) first")
        X, names = self._matrix(data)
        X = (self._align(X, names) - self.mean_) / self.scale_
        Z = X.astype(np.float32) @ self.components_.T
        if self.whiten:
            Z = Z / np.sqrt(np.maximum(self.explained_variance_, 1e-12)).astype(np.float32)[None, :]
        out = np.zeros((X.shape[0], int(self.dim)), dtype=np.float32)
        out[:, :Z.shape[1]] = Z
        return out

    def save(self, path: str) -> None:
        if not hasattr(self, "components_"):
            raise DataError("pca encoder: nothing to save, the encoder is not fitted")
        folder = Path(path)
        folder.mkdir(parents=True, exist_ok=True)
        np.savez(folder / STATE_FILE, mean=self.mean_, scale=self.scale_, components=self.components_,
                 explained_variance=self.explained_variance_)
        meta = {"encoder": "pca", "in_dim": self.in_dim_, "feature_names": self.feature_names_,
                "config": self.get_params(), "explained_ratio": self.explained_ratio_}
        (folder / CONFIG_FILE).write_text(json.dumps(meta, indent=1))

    def load(self, path: str) -> "PCAEncoder":
        folder = Path(path)
        if not (folder / STATE_FILE).is_file() or not (folder / CONFIG_FILE).is_file():
            raise DataError(f"pca encoder: no saved state in {folder}", where=str(path),
                            hint="fit the encoder and save() it into this folder first")
        meta = json.loads((folder / CONFIG_FILE).read_text())
        for key, value in meta.get("config", {}).items():
            setattr(self, key, value)
        with np.load(folder / STATE_FILE, allow_pickle=False) as z:
            self.mean_, self.scale_ = z["mean"], z["scale"]
            self.components_, self.explained_variance_ = z["components"], z["explained_variance"]
        self.in_dim_, self.feature_names_ = int(meta["in_dim"]), meta.get("feature_names")
        self.explained_ratio_ = float(meta.get("explained_ratio", 0.0))
        return self


@hookimpl
def register_encoders(register):
    register("pca", PCAEncoder, modality="any", dim=768, licence="n/a", gated=False,
             weights_source="fitted on your data", input_kind="matrix", params="dim x input width",
             tags=["linear", "baseline", "trainable"])
