"""The deep Cox model: the negative partial log-likelihood in torch (Breslow ties, optional strata)
and a small trainer with the classifier's trunk conventions.

This is the one piece of survival statistics written by hand (issue 12: everything else comes
from scikit-survival). The loss of risk scores ``eta`` for times ``t`` and event flags ``d``::

    nll = -1/E * sum_{i: d_i = 1} ( eta_i - log sum_{j in R(t_i)} exp(eta_j) ),   R(t) = {j: t_j >= t}

with ``E`` the number of events. Tied event times share one risk set (Breslow's approximation:
every member of a tie sees everyone still at risk at that time, the other tied members
included). With ``strata`` the risk sets stay inside each stratum (a stratified Cox model:
one baseline hazard per stratum); the sum runs over all strata and is divided by all events.

The trunk follows :func:`fusionkit.training.train_dense_classifier`: inputs standardised with the
training mean/std, ``Linear -> ReLU -> Dropout`` blocks, Adam, early stopping on a validation
loss with the best epoch's weights kept, a numpy model that predicts without torch. The output
is one linear risk score (no bias: the partial likelihood does not see it). torch is imported
inside the functions.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Sequence

import numpy as np

from fusionkit.training import mlp_forward

__all__ = ["RiskSets", "risk_sets", "cox_nll", "DeepCox", "train_deep_cox"]


@dataclass
class RiskSets:
    """Precomputed ordering of a fixed set of samples for :func:`cox_nll` (times never change in training).

    ``order``: sample positions sorted by stratum, then time descending; ``segments``: (start, stop)
    of each stratum in that order; ``last``: for each sorted position, the last position of its
    tie group within its stratum (where the cumulative sum covers the whole risk set); ``event``:
    event flags in sorted order; ``n_events``.
    """

    order: np.ndarray
    segments: list[tuple[int, int]]
    last: np.ndarray
    event: np.ndarray
    n_events: int


def risk_sets(time: Any, event: Any, strata: Any = None) -> RiskSets:
    """The :class:`RiskSets` of samples with ``time``, ``event`` and optional ``strata`` labels."""
    time = np.asarray(time, dtype=np.float64)
    event = np.asarray(event).astype(bool)
    n = len(time)
    codes = np.zeros(n, dtype=np.int64) if strata is None else np.unique(np.asarray(strata).astype(str),
                                                                         return_inverse=True)[1]
    order = np.lexsort((-time, codes))
    t_sorted, c_sorted = time[order], codes[order]
    last = np.empty(n, dtype=np.int64)
    segments = []
    starts = np.r_[0, np.flatnonzero(np.diff(c_sorted)) + 1] if n else np.array([], dtype=np.int64)
    for s, e in zip(starts, np.r_[starts[1:], n]):
        seg = -t_sorted[s:e]  # ascending within the stratum
        last[s:e] = s + np.searchsorted(seg, seg, side="right") - 1
        segments.append((int(s), int(e)))
    ev = event[order]
    return RiskSets(order=order, segments=segments, last=last, event=ev, n_events=int(ev.sum()))


def cox_nll(eta: Any, sets: RiskSets) -> Any:
    """Mean negative partial log-likelihood (Breslow ties, per-stratum risk sets) of torch scores ``eta``.

    ``eta``: 1-d tensor of risk scores in the original sample order. Returns a 0-d tensor
    (0 when there is no event).
    """
    import torch

    if sets.n_events == 0:
        return eta.sum() * 0.0
    order = torch.as_tensor(sets.order, device=eta.device)
    e = eta.reshape(-1)[order]
    last = torch.as_tensor(sets.last, device=eta.device)
    log_risk = torch.empty_like(e)
    for s, stop in sets.segments:
        log_risk[s:stop] = torch.logcumsumexp(e[s:stop], dim=0)
    log_den = log_risk[last]
    ev = torch.as_tensor(sets.event, device=eta.device)
    return -(e[ev] - log_den[ev]).sum() / sets.n_events


@dataclass
class DeepCox:
    """A trained deep Cox network: numpy weights, torch only needed to build it."""

    mean: np.ndarray
    std: np.ndarray
    layers: list[tuple[np.ndarray, np.ndarray]]  # (W (in, out), b) per linear layer, ReLU between
    history: dict[str, list[float]] = field(default_factory=dict)
    best_epoch: int = 0

    def predict(self, X: np.ndarray) -> np.ndarray:
        """Risk scores (log hazard ratios up to a constant), float64 (n,)."""
        return mlp_forward(X, self.mean, self.std, self.layers)[:, 0].astype(np.float64)


def _network(width: int, hidden: Sequence[int], dropout: float) -> Any:
    from torch import nn

    layers: list[Any] = []
    for h in hidden:
        layers += [nn.Linear(width, int(h)), nn.ReLU(), nn.Dropout(float(dropout))]
        width = int(h)
    layers.append(nn.Linear(width, 1, bias=False))
    return nn.Sequential(*layers)


def train_deep_cox(X: np.ndarray, time: Any, event: Any, strata: Any = None, *, X_val: np.ndarray | None = None,
                   time_val: Any = None, event_val: Any = None, strata_val: Any = None,
                   hidden: Sequence[int] = (64,), dropout: float = 0.2, lr: float = 1e-3,
                   weight_decay: float = 1e-3, max_epochs: int = 200, patience: int = 20,
                   seed: int = 0) -> DeepCox:
    """Fit the network on the whole training set at once (the Cox loss needs the risk sets).

    Early stopping on the validation loss when a validation set with events is given, else
    ``max_epochs`` epochs. One torch thread (these problems are small).
    """
    import torch

    prev = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        torch.manual_seed(int(seed) % (2 ** 31))
        X = np.asarray(X, dtype=np.float32)
        mean = X.mean(axis=0)
        std = np.where(X.std(axis=0) > 1e-6, X.std(axis=0), 1.0).astype(np.float32)
        prep = lambda A: torch.from_numpy(((np.asarray(A, dtype=np.float32) - mean) / std).astype(np.float32))  # noqa: E731
        model = _network(X.shape[1], hidden, dropout)
        opt = torch.optim.Adam(model.parameters(), lr=float(lr), weight_decay=float(weight_decay))
        Xt, sets = prep(X), risk_sets(time, event, strata)
        val = None
        if X_val is not None and len(X_val) and np.asarray(event_val).astype(bool).any():
            val = (prep(X_val), risk_sets(time_val, event_val, strata_val))
        best, history = _fit(model, opt, Xt, sets, val, int(max_epochs), int(patience))
        model.eval()
        weights = [(m.weight.detach().numpy().T.copy(),
                    m.bias.detach().numpy().copy() if m.bias is not None else np.zeros(m.out_features, np.float32))
                   for m in model if isinstance(m, torch.nn.Linear)]
        return DeepCox(mean=mean.astype(np.float32), std=std, layers=weights, history=history, best_epoch=best)
    finally:
        torch.set_num_threads(prev)


def _fit(model: Any, opt: Any, Xt: Any, sets: RiskSets, val: tuple | None, max_epochs: int,
         patience: int) -> tuple[int, dict[str, list[float]]]:
    """The epoch loop; restores the best validation epoch's weights. Returns (best epoch, history)."""
    import torch

    history: dict[str, list[float]] = {"train_loss": [], "val_loss": []}
    best: tuple[float, int, Any] = (float("inf"), max_epochs - 1, None)
    for epoch in range(max_epochs):
        model.train()
        opt.zero_grad()
        loss = cox_nll(model(Xt)[:, 0], sets)
        loss.backward()
        opt.step()
        history["train_loss"].append(float(loss.detach()))
        if val is None:
            continue
        model.eval()
        with torch.no_grad():
            vloss = float(cox_nll(model(val[0])[:, 0], val[1]))
        history["val_loss"].append(vloss)
        if vloss < best[0] - 1e-6:
            best = (vloss, epoch, {k: v.detach().clone() for k, v in model.state_dict().items()})
        elif epoch - best[1] >= patience:
            break
    if best[2] is not None:
        model.load_state_dict(best[2])
    return int(best[1]), history
