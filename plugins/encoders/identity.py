"""Pass-through encoder; registers ``identity``: precomputed embeddings (reader ``precomputed``) pass
through unchanged."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np

from fusionkit import hookimpl
from fusionkit import Encoder, ModalityData
from fusionkit import DataError


class IdentityEncoder(Encoder):
    """Pass precomputed embeddings through unchanged (width read from the data)."""

    modality = "any"
    input_kind = "embedding"
    card = {"licence": "n/a", "gated": False, "weights_source": "none", "params": 0}
    shard_size = 65536

    def __init__(self, dim: int = 0):
        self.dim = dim

    @property
    def output_dim(self) -> int:
        if not self.dim:
            raise DataError("identity encoder: width unknown before seeing data")
        return int(self.dim)

    def fit(self, data: ModalityData, ctx: Any = None) -> "IdentityEncoder":
        self.dim = int(np.asarray(data.data).shape[1])
        return self

    def encode(self, data: ModalityData, ctx: Any = None) -> np.ndarray:
        X = np.asarray(data.data, dtype=np.float32)
        if self.dim and X.shape[1] != self.dim:
            raise DataError(f"identity encoder: got width {X.shape[1]}, expected {self.dim}")
        return X

    # trainable so that the engine calls fit (to learn the width) and caches it
    trainable = True

    def save(self, path: str) -> None:
        Path(path).mkdir(parents=True, exist_ok=True)
        (Path(path) / "dim.txt").write_text(str(self.dim))

    def load(self, path: str) -> "IdentityEncoder":
        self.dim = int((Path(path) / "dim.txt").read_text())
        return self


@hookimpl
def register_encoders(register):
    register("identity", IdentityEncoder, modality="any", input_kind="embedding")
