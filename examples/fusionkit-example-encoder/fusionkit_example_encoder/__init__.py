"""fusionkit plugin: ``hashing-text``, a character n-gram hashing text encoder.

The package's other entry points: ``reader`` (reader ``item-table``) and ``fitted``
(trainable encoder ``zscore-projection``).
"""

from __future__ import annotations

import zlib

import numpy as np

from fusionkit import Encoder, hookimpl


class HashingTextEncoder(Encoder):
    """Character n-gram feature hashing of sentences (signed, L2-normalised); no model weights."""

    modality = "text"
    input_kind = "text"
    card = {"licence": "MIT", "gated": False, "weights_source": "none (feature hashing)", "params": 0}

    def __init__(self, dim: int = 768, ngram: int = 3, lowercase: bool = True):
        self.dim = dim
        self.ngram = ngram
        self.lowercase = lowercase

    def _vector(self, text: str) -> np.ndarray:
        text = text.lower() if self.lowercase else text
        padded = f" {text} "
        v = np.zeros(self.dim, dtype=np.float32)
        n = max(1, int(self.ngram))
        for i in range(max(1, len(padded) - n + 1)):
            h = zlib.crc32(padded[i:i + n].encode("utf-8"))
            v[h % self.dim] += 1.0 if (h >> 31) & 1 else -1.0
        norm = float(np.linalg.norm(v))
        return v / norm if norm > 0 else v

    def encode(self, data, ctx=None) -> np.ndarray:
        cache: dict[str, np.ndarray] = {}
        out = np.empty((len(data.data), self.dim), dtype=np.float32)
        for i, text in enumerate(data.data):
            if text not in cache:
                cache[text] = self._vector(str(text))
            out[i] = cache[text]
        return out


@hookimpl
def register_encoders(register):
    register("hashing-text", HashingTextEncoder, modality="text", dim=768, licence="MIT")
