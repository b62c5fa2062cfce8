"""Built-in aggregators: sum (the paper's), mean, concat; optional L2 normalisation."""

from __future__ import annotations

import numpy as np

from fusionkit import hookimpl
from fusionkit.components import Aggregator


def _normalise(gathered: np.ndarray, mask: np.ndarray) -> np.ndarray:
    norms = np.linalg.norm(gathered, axis=-1, keepdims=True)
    np.divide(gathered, norms, out=gathered, where=(norms > 0) & mask[..., None])
    return gathered


class SumAggregator(Aggregator):
    """Sum of the drawn embeddings (the paper's aggregation)."""

    linear = True

    def weights(self, mask: np.ndarray) -> np.ndarray:
        return mask.astype(np.float32)

    def __init__(self, l2_normalize: bool = False):
        self.l2_normalize = l2_normalize

    def reduce(self, gathered: np.ndarray, mask: np.ndarray) -> np.ndarray:
        if self.l2_normalize:
            gathered = _normalise(gathered, mask)
        return gathered.sum(axis=1)  # unused slots are zero


class MeanAggregator(Aggregator):
    """Mean of the drawn embeddings (sum divided by the number of draws)."""

    linear = True

    def weights(self, mask: np.ndarray) -> np.ndarray:
        n = np.maximum(mask.sum(axis=1, keepdims=True), 1).astype(np.float32)
        return mask.astype(np.float32) / n

    def __init__(self, l2_normalize: bool = False):
        self.l2_normalize = l2_normalize

    def reduce(self, gathered: np.ndarray, mask: np.ndarray) -> np.ndarray:
        if self.l2_normalize:
            gathered = _normalise(gathered, mask)
        n = np.maximum(mask.sum(axis=1, keepdims=True), 1).astype(np.float32)
        return gathered.sum(axis=1) / n


class ConcatAggregator(Aggregator):
    """Concatenation of the draws in slot order (width k_max x dim; empty slots are zeros)."""

    def __init__(self, l2_normalize: bool = False):
        self.l2_normalize = l2_normalize

    def output_dim(self, dim: int, k_max: int) -> int:
        return dim * k_max

    def reduce(self, gathered: np.ndarray, mask: np.ndarray) -> np.ndarray:
        if self.l2_normalize:
            gathered = _normalise(gathered, mask)
        return gathered.reshape(gathered.shape[0], -1).copy()


@hookimpl
def register_aggregators(register):
    register("sum", SumAggregator)
    register("mean", MeanAggregator)
    register("concat", ConcatAggregator)
