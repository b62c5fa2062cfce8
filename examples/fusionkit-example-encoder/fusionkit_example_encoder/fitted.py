"""fusionkit plugin: ``zscore-projection``, a fitted (trainable) encoder with save/load.

Written from docs/PLUGINS.md ("A fitted (trainable) encoder"), importing only
``fusionkit.__all__`` names.
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np

from fusionkit import ComponentError, DataError, Encoder, Range, hookimpl

_STATE = ("mean_", "std_", "projection_")


class ZscoreProjectionEncoder(Encoder):
    """Features standardised on the run's data, clipped, then a seeded Gaussian projection to ``dim``.

    ``dim``: output width; ``clip``: bound of the z-scores. Fitted once per
    run and modality (mean, standard deviation, projection drawn from the run
    seed); the state is saved as .npy files, never as a pickle.
    """

    modality = "any"
    input_kind = "matrix"
    trainable = True
    card = {"licence": "MIT", "gated": False, "weights_source": "fitted on your data", "params": None,
            "tags": ["trainable", "baseline"]}

    constraints = {"dim": Range(1, integer=True), "clip": Range(0, lo_open=True)}

    def __init__(self, dim: int = 768, clip: float = 5.0):
        self.dim = dim
        self.clip = clip

    def fit(self, data, ctx=None) -> "ZscoreProjectionEncoder":
        X = np.asarray(data.data, dtype=np.float64)
        if X.ndim != 2 or len(X) < 2:
            raise DataError(f"zscore-projection needs a matrix of at least 2 items, got shape {X.shape}",
                            where=f"encoder zscore-projection (modality {data.modality})")
        self.mean_ = X.mean(axis=0)
        self.std_ = np.maximum(X.std(axis=0), 1e-6)
        rng = ctx.rng("zscore-projection", data.modality) if ctx is not None else np.random.default_rng(0)
        self.projection_ = rng.standard_normal((X.shape[1], self.dim)) / np.sqrt(self.dim)
        return self

    def encode(self, data, ctx=None) -> np.ndarray:
        if not hasattr(self, "projection_"):
            raise ComponentError("encoder zscore-projection is not fitted", hint="call fit() or load() first")
        X = np.asarray(data.data, dtype=np.float64)
        if X.shape[1] != len(self.mean_):
            raise DataError(f"zscore-projection was fitted on {len(self.mean_)} features, got {X.shape[1]}",
                            where=f"encoder zscore-projection (modality {data.modality})")
        Z = np.clip((X - self.mean_) / self.std_, -self.clip, self.clip)
        return (Z @ self.projection_).astype(np.float32)

    def save(self, path: str) -> None:
        folder = Path(path)
        for name in _STATE:
            np.save(folder / f"{name}.npy", getattr(self, name))
        (folder / "params.json").write_text(json.dumps(self.get_params()))

    def load(self, path: str) -> "ZscoreProjectionEncoder":
        folder = Path(path)
        saved = json.loads((folder / "params.json").read_text())
        if saved != self.get_params():
            raise ComponentError(f"zscore-projection state in {folder} was fitted with {saved}, "
                                 f"not {self.get_params()}",
                                 hint="delete that folder or use the parameters it was fitted with")
        for name in _STATE:
            setattr(self, name, np.load(folder / f"{name}.npy"))
        return self


@hookimpl
def register_encoders(register):
    register("zscore-projection", ZscoreProjectionEncoder, modality="any", licence="MIT",
             tags=["trainable", "baseline"])
