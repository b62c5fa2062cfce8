"""Feature alignment shared by the fitted matrix encoders (``rna-vae``, ``mutation-vae``, ``pca``).

Registers nothing. An encoder fitted on named feature columns encodes new data
whose columns may come in another order or lack some features: the columns are
reordered to the fitted order, missing ones take a fill value, and input that
shares too few features with the fit is an error.
"""

from __future__ import annotations

import numpy as np

from fusionkit import DataError


def align_features(X: np.ndarray, names: list[str] | None, fitted_names: list[str] | None, in_dim: int,
                   fill: np.ndarray, who: str, min_present: float = 0.5) -> tuple[np.ndarray, int]:
    """``X`` with its columns in the fitted order and the number of fitted features it lacked.

    ``fill`` (one value per fitted feature; its dtype is the output's) stands in for missing features. Without names on
    both sides the widths must match; with names, at least ``min_present`` of the fitted
    features must be in the input.
    """
    if X.shape[1] == in_dim and (names is None or fitted_names is None or names == fitted_names):
        return X, 0
    if names is None or fitted_names is None:
        raise DataError(f"{who} was fitted on {in_dim} features but got {X.shape[1]}",
                        hint="encode the same feature columns the encoder was fitted on")
    pos = {n: i for i, n in enumerate(names)}
    idx = np.array([pos.get(n, -1) for n in fitted_names])
    present = idx >= 0
    if present.mean() < min_present:
        raise DataError(f"{who}: only {int(present.sum())} of {in_dim} fitted features are present in the input",
                        hint="encode data with the fitted feature set, or fit the encoder on this data")
    out = np.repeat(np.asarray(fill)[None, :], X.shape[0], axis=0)
    out[:, present] = X[:, idx[present]]
    return out, int((~present).sum())
