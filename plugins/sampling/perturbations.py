"""Perturbations; registers ``gaussian-replace``: a fraction of the draws replaced by Gaussian noise (SPEC 2.2)."""

from __future__ import annotations

import numpy as np

from fusionkit import hookimpl
from fusionkit import DrawPlan, Perturbation
from fusionkit import DataError, OneOf, Range


class GaussianReplace(Perturbation):
    """Replace a fraction of the draws by N(mean, std) noise, keeping the total count.

    Replaced draws do not count in the labels. ``mode: round`` replaces
    floor(f*k) draws plus one more with probability frac(f*k) per aggregate (so
    the expected fraction is exactly f, even for small k); ``mode: bernoulli``
    replaces each draw independently with probability f. ``apply_to``: test
    (train clean, test noisy; the paper), train, or both.
    """

    constraints = {"fraction": Range(0, 1), "std": Range(0), "mode": OneOf("round", "bernoulli"),
                   "apply_to": OneOf("test", "train", "both")}

    def __init__(self, fraction: float = 0.1, std: float = 0.1, mode: str = "round", apply_to: str = "test"):
        self.fraction = fraction
        self.std = std
        self.mode = mode
        self.apply_to = apply_to

    def apply(self, plan: DrawPlan, rng: np.random.Generator) -> DrawPlan:
        f = float(self.fraction)
        if not 0.0 <= f <= 1.0:
            raise DataError(f"noise fraction must be in [0, 1], got {f}")
        if self.mode not in ("round", "bernoulli"):
            raise DataError(f"mode must be 'round' or 'bernoulli', got {self.mode!r}")
        if self.apply_to not in ("test", "train", "both"):
            raise DataError(f"apply_to must be test, train or both, got {self.apply_to!r}")
        valid = plan.mod >= 0
        if self.mode == "bernoulli":
            noise = valid & (rng.random(plan.mod.shape) < f)
        else:
            kk = valid.sum(axis=2)  # (n, r)
            target = f * kk
            n_rep = np.floor(target).astype(np.int64)
            n_rep += rng.random(target.shape) < (target - n_rep)
            keys = rng.random(plan.mod.shape)
            keys[~valid] = np.inf
            rank = np.argsort(np.argsort(keys, axis=2), axis=2)
            noise = valid & (rank < n_rep[..., None])
        out = plan.take(np.arange(plan.n))
        out.noise = plan.noise | noise
        out.noise_std = float(self.std)
        out.meta = {**plan.meta, "noise_fraction": f, "noise_std": float(self.std), "noise_mode": self.mode}
        return out


@hookimpl
def register_perturbations(register):
    register("gaussian-replace", GaussianReplace)
