"""Aggregators; registers ``sum`` (the paper's), ``mean`` and ``concat``.

Options of each: ``l2_normalize`` divides every draw by its norm first;
``center`` subtracts each modality's mean vector (over its whole store,
label-free) from every draw first (before normalising). Centring removes the
composition signal (how many draws of each modality went in), which dominates
distances between patient aggregates when modalities have large mean offsets,
and keeps what varies within each modality. It also makes presence much harder
to recognise (SPEC 2.5): use it for patient-level experiments, not for the
recognizer.

``scale`` (``sum`` and ``mean``) divides each modality's draws by that
modality's RMS entry over its whole store (of ``x - mean`` with ``center``: the
root mean of its column variances): every modality then has a mean squared
entry of 1 and contributes equally, in expected squared norm, to the sum,
whatever its encoder's scale (on the demo cohort image features vary 26x more
per dimension than rna-vae embeddings, docs/DATA.md, and a plain sum is then
mostly image). One scalar per modality, so it costs nothing per draw; it does
not standardise dimensions within a modality. Noise draws are
not scaled: the noise ``std`` is then relative to a per-entry RMS of 1. With
``l2_normalize`` every draw has norm 1 already and ``scale`` changes nothing.
See ``fusionkit.Aggregator``.
"""

from __future__ import annotations

import numpy as np

from fusionkit import hookimpl
from fusionkit import Aggregator




def _normalise(gathered: np.ndarray, mask: np.ndarray) -> np.ndarray:
    norms = np.linalg.norm(gathered, axis=-1, keepdims=True)
    np.divide(gathered, norms, out=gathered, where=(norms > 0) & mask[..., None])
    return gathered


class SumAggregator(Aggregator):
    """Sum of the drawn embeddings (the paper's aggregation); options l2_normalize, center, scale
    (per-modality RMS scaling; see the module docstring)."""

    linear = True

    def weights(self, mask: np.ndarray) -> np.ndarray:
        return mask.astype(np.float32)

    def __init__(self, l2_normalize: bool = False, center: bool = False, scale: bool = False):
        self.l2_normalize = l2_normalize
        self.center = center
        self.scale = scale

    def reduce(self, gathered: np.ndarray, mask: np.ndarray) -> np.ndarray:
        if self.l2_normalize:
            gathered = _normalise(gathered, mask)
        return gathered.sum(axis=1)  # unused slots are zero


class MeanAggregator(Aggregator):
    """Mean of the drawn embeddings (sum divided by the number of draws); options l2_normalize, center, scale
    (per-modality RMS scaling; see the module docstring)."""

    linear = True

    def weights(self, mask: np.ndarray) -> np.ndarray:
        n = np.maximum(mask.sum(axis=1, keepdims=True), 1).astype(np.float32)
        return mask.astype(np.float32) / n

    def __init__(self, l2_normalize: bool = False, center: bool = False, scale: bool = False):
        self.l2_normalize = l2_normalize
        self.center = center
        self.scale = scale

    def reduce(self, gathered: np.ndarray, mask: np.ndarray) -> np.ndarray:
        if self.l2_normalize:
            gathered = _normalise(gathered, mask)
        n = np.maximum(mask.sum(axis=1, keepdims=True), 1).astype(np.float32)
        return gathered.sum(axis=1) / n


class ConcatAggregator(Aggregator):
    """Concatenation of the draws in slot order (width k_max x dim; empty slots are zeros)."""

    def __init__(self, l2_normalize: bool = False, center: bool = False):
        self.l2_normalize = l2_normalize
        self.center = center

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
