"""Per-group random caps shared by the image, slide and patch-feature readers."""

from __future__ import annotations

import numpy as np


def sample_capped(groups: np.ndarray, cap: int | None, rng: np.random.Generator) -> np.ndarray:
    """Indices keeping at most ``cap`` items per group, chosen uniformly at random (sorted)."""
    groups = np.asarray(groups)
    if cap is None or len(groups) == 0:
        return np.arange(len(groups))
    order = rng.permutation(len(groups))
    g = groups[order]
    # rank of each item within its group in the permuted order (vectorised)
    sort = np.argsort(g, kind="stable")
    gs = g[sort]
    starts = np.r_[0, np.flatnonzero(gs[1:] != gs[:-1]) + 1]
    run = np.repeat(starts, np.diff(np.r_[starts, len(gs)]))
    rank = np.empty(len(g), dtype=np.int64)
    rank[sort] = np.arange(len(gs)) - run
    return np.sort(order[rank < int(cap)])
