"""A small shared training helper for dense classifiers (torch imported inside).

``train_dense_classifier`` fits the paper's classifier head (dense layers
256-128 by default, then softmax) with Adam and cross-entropy, early stopping
on a validation split (the best epoch's weights are kept). Inputs are
standardised with the training mean/std (part of the returned model's
state). Class weighting is opt-in (``class_weight="balanced"`` or a mapping).

The returned :class:`DenseClassifier` is a plain object with ``predict`` and
``predict_proba`` on numpy arrays; its ``state`` (numpy arrays) pickles
without torch.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Mapping, Sequence

import numpy as np


def class_weights(y: np.ndarray, n_classes: int, class_weight: Any) -> np.ndarray | None:
    """Per-class loss weights: None (unweighted), "balanced" (n / (C * count)) or {class_index: w}."""
    if class_weight in (None, False, "none"):
        return None
    if class_weight in ("balanced", True):
        counts = np.bincount(np.asarray(y, dtype=np.int64), minlength=n_classes).astype(np.float64)
        w = np.where(counts > 0, len(y) / (n_classes * np.maximum(counts, 1)), 0.0)
        return w.astype(np.float32)
    if isinstance(class_weight, Mapping):
        w = np.ones(n_classes, dtype=np.float32)
        for k, v in class_weight.items():
            w[int(k)] = float(v)
        return w
    raise ValueError(f"class_weight must be null, 'balanced' or a mapping, got {class_weight!r}")


def mlp_forward(X: np.ndarray, mean: np.ndarray, std: np.ndarray,
                layers: list[tuple[np.ndarray, np.ndarray]]) -> np.ndarray:
    """Forward pass of a standardised ReLU MLP held as numpy ``(W (in, out), b)`` layers (float32)."""
    h = (np.asarray(X, dtype=np.float32) - mean) / std
    for i, (W, b) in enumerate(layers):
        h = h @ W + b
        if i < len(layers) - 1:
            np.maximum(h, 0, out=h)
    return h


@dataclass
class DenseClassifier:
    """A trained dense classifier: numpy weights, torch only needed to build it."""

    mean: np.ndarray
    std: np.ndarray
    layers: list[tuple[np.ndarray, np.ndarray]]  # (W (in, out), b) per linear layer, ReLU between
    history: dict[str, list[float]] = field(default_factory=dict)
    best_epoch: int = 0

    def logits(self, X: np.ndarray) -> np.ndarray:
        return mlp_forward(X, self.mean, self.std, self.layers)

    def predict_proba(self, X: np.ndarray) -> np.ndarray:
        z = self.logits(X)
        z = z - z.max(axis=1, keepdims=True)
        e = np.exp(z)
        return e / e.sum(axis=1, keepdims=True)

    def predict(self, X: np.ndarray) -> np.ndarray:
        return self.logits(X).argmax(axis=1)


def train_dense_classifier(X: np.ndarray, y: np.ndarray, X_val: np.ndarray | None, y_val: np.ndarray | None,
                           n_classes: int, *, hidden: Sequence[int] = (256, 128), dropout: float = 0.2,
                           lr: float = 1e-3, weight_decay: float = 0.0, batch_size: int = 64,
                           max_epochs: int = 100, patience: int = 10, class_weight: Any = None,
                           seed: int = 0, device: str = "cpu", num_threads: int | None = None) -> DenseClassifier:
    """Train the dense network; early stopping on validation loss when a validation set is given.

    ``num_threads``: torch CPU threads while training (default: 1 for small
    problems, where thread hand-offs cost more than they save; else torch's).
    """
    import torch

    prev = torch.get_num_threads()
    if num_threads is None:
        num_threads = 1 if np.asarray(X).size <= 4_000_000 else prev
    torch.set_num_threads(max(1, int(num_threads)))
    try:
        return _train(X, y, X_val, y_val, n_classes, hidden=hidden, dropout=dropout, lr=lr,
                      weight_decay=weight_decay, batch_size=batch_size, max_epochs=max_epochs, patience=patience,
                      class_weight=class_weight, seed=seed, device=device)
    finally:
        torch.set_num_threads(prev)


def _train(X: np.ndarray, y: np.ndarray, X_val: np.ndarray | None, y_val: np.ndarray | None, n_classes: int, *,
           hidden: Sequence[int], dropout: float, lr: float, weight_decay: float, batch_size: int,
           max_epochs: int, patience: int, class_weight: Any, seed: int, device: str) -> DenseClassifier:
    import torch
    from torch import nn

    torch.manual_seed(int(seed) % (2 ** 31))
    X = np.asarray(X, dtype=np.float32)
    y = np.asarray(y, dtype=np.int64)
    mean = X.mean(axis=0)
    std = X.std(axis=0)
    std = np.where(std > 1e-6, std, 1.0).astype(np.float32)

    def prep(A: np.ndarray) -> Any:
        return torch.from_numpy(((np.asarray(A, dtype=np.float32) - mean) / std).astype(np.float32)).to(device)

    model = _dense_net(X.shape[1], hidden, dropout, n_classes).to(device)
    w = class_weights(y, n_classes, class_weight)
    loss_fn = nn.CrossEntropyLoss(weight=None if w is None else torch.from_numpy(w).to(device))
    opt = torch.optim.Adam(model.parameters(), lr=float(lr), weight_decay=float(weight_decay))
    Xt, yt = prep(X), torch.from_numpy(y).to(device)
    val = None
    if X_val is not None and y_val is not None and len(y_val) > 0:
        val = prep(X_val), torch.from_numpy(np.asarray(y_val, dtype=np.int64)).to(device)
    gen = torch.Generator().manual_seed(int(seed) % (2 ** 31))
    history, best_epoch = _fit_epochs(model, opt, loss_fn, Xt, yt, val, gen, batch_size=batch_size,
                                      max_epochs=max_epochs, patience=patience, device=device)
    model.eval()
    weights = [(m.weight.detach().cpu().numpy().T.copy(), m.bias.detach().cpu().numpy().copy())
               for m in model if isinstance(m, nn.Linear)]
    return DenseClassifier(mean=mean.astype(np.float32), std=std, layers=weights, history=history,
                           best_epoch=int(best_epoch))


def _dense_net(width: int, hidden: Sequence[int], dropout: float, n_classes: int) -> Any:
    """Linear-ReLU-Dropout per hidden width, then a linear layer to the classes."""
    from torch import nn

    layers: list[Any] = []
    for h in hidden:
        layers += [nn.Linear(width, int(h)), nn.ReLU(), nn.Dropout(float(dropout))]
        width = int(h)
    layers.append(nn.Linear(width, int(n_classes)))
    return nn.Sequential(*layers)


def _fit_epochs(model: Any, opt: Any, loss_fn: Any, Xt: Any, yt: Any, val: tuple[Any, Any] | None, gen: Any, *,
                batch_size: int, max_epochs: int, patience: int, device: str) -> tuple[dict[str, list[float]], int]:
    """Epochs of minibatch training; with ``val``, early stopping that restores the best
    epoch's weights. Returns (loss history, best epoch)."""
    import torch

    best: tuple[float, int, Any] = (float("inf"), 0, None)
    history: dict[str, list[float]] = {"train_loss": [], "val_loss": []}
    n = len(yt)
    bs = max(1, min(int(batch_size), n))
    for epoch in range(int(max_epochs)):
        model.train()
        perm = torch.randperm(n, generator=gen).to(device)
        total = 0.0
        for s in range(0, n, bs):
            idx = perm[s:s + bs]
            if len(idx) < 2 and n >= 2:
                continue
            opt.zero_grad()
            loss = loss_fn(model(Xt[idx]), yt[idx])
            loss.backward()
            opt.step()
            total += float(loss.detach()) * len(idx)
        history["train_loss"].append(total / n)
        if val is None:
            continue
        model.eval()
        with torch.no_grad():
            vloss = float(loss_fn(model(val[0]), val[1]))
        history["val_loss"].append(vloss)
        if vloss < best[0] - 1e-6:
            best = (vloss, epoch, {k: v.detach().clone() for k, v in model.state_dict().items()})
        elif epoch - best[1] >= int(patience):
            break
    if val is not None and best[2] is not None:
        model.load_state_dict(best[2])
        return history, best[1]
    return history, len(history["train_loss"]) - 1
