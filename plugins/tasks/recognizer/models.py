"""Networks and baselines of the recognizer tasks, with their training loops (torch/sklearn inside methods).

:class:`DeepRecognizer` is the paper's recognizer: a shared trunk (dense +
BatchNorm + ReLU + dropout), one small dense branch per modality predicting
presence (and optionally the count of draws), optionally a cancer-type head.
:class:`LogisticBaseline` is the paper's "MCRM" baseline: one binary logistic
regression per modality on standardised inputs.
"""

from __future__ import annotations

import math
from typing import Any

import numpy as np


def _standardiser(X: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    mu = X.mean(axis=0, dtype=np.float64).astype(np.float32)
    sd = X.std(axis=0, dtype=np.float64).astype(np.float32)
    sd[sd < 1e-6] = 1.0
    return mu, sd


def class_weights(presence: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Per-modality loss weights of present / absent aggregates so that each class weighs half.

    At high k nearly every aggregate holds every modality (k=10 of 4 modalities: 94% present); with
    unweighted MSE on probabilities the network's easiest optimum is "always present" and the rare
    absent aggregates barely move it: constant predictions, MCC 0 (issue 15). Balanced weights make
    a constant prediction as costly as a coin flip. A class never seen in training gets weight 1.
    """
    p = np.asarray(presence, dtype=np.float64).mean(axis=0)
    pos = np.where((p > 0) & (p < 1), 0.5 / np.clip(p, 1e-6, 1), 1.0)
    neg = np.where((p > 0) & (p < 1), 0.5 / np.clip(1 - p, 1e-6, 1), 1.0)
    return pos.astype(np.float32), neg.astype(np.float32)


class DeepRecognizer:
    """The network and its training loop (torch imported on use)."""

    def __init__(self, n_modalities: int, *, hidden: list[int], head_hidden: int, dropout: float, loss: str,
                 head_weights: np.ndarray, predict_counts: bool, count_weight: float, n_classes: int,
                 cancer_weight: float, lr: float, batch_size: int, max_epochs: int, patience: int,
                 weight_decay: float, standardize: bool, device: str, seed: int, k_scale: float,
                 threads: int = 1, balance: bool = True):
        self.M = n_modalities
        self.threads = int(threads)
        self.hidden = [int(h) for h in hidden]
        self.head_hidden = int(head_hidden)
        self.dropout = float(dropout)
        self.loss = loss
        self.head_weights = np.asarray(head_weights, dtype=np.float32)
        self.predict_counts = bool(predict_counts)
        self.count_weight = float(count_weight)
        self.n_classes = int(n_classes)
        self.cancer_weight = float(cancer_weight)
        self.lr = float(lr)
        self.batch_size = int(batch_size)
        self.max_epochs = int(max_epochs)
        self.patience = int(patience)
        self.weight_decay = float(weight_decay)
        self.standardize = bool(standardize)
        self.device = device
        self.seed = int(seed)
        self.k_scale = float(k_scale)
        self.balance = bool(balance)
        self.history_: list[dict[str, float]] = []

    def _build(self, d: int) -> Any:
        import torch
        from torch import nn

        M, counts, C = self.M, self.predict_counts, self.n_classes
        hidden, head_hidden, p = self.hidden, self.head_hidden, self.dropout

        class Net(nn.Module):
            def __init__(self) -> None:
                super().__init__()
                layers: list[nn.Module] = []
                width = d
                for h in hidden:
                    layers += [nn.Linear(width, h), nn.BatchNorm1d(h), nn.ReLU(), nn.Dropout(p)]
                    width = h
                self.trunk = nn.Sequential(*layers)
                out = 2 if counts else 1

                def head(n_out: int) -> nn.Module:
                    if head_hidden > 0:
                        return nn.Sequential(nn.Linear(width, head_hidden), nn.ReLU(), nn.Linear(head_hidden, n_out))
                    return nn.Linear(width, n_out)

                self.heads = nn.ModuleList([head(out) for _ in range(M)])
                self.cancer = nn.Linear(width, C) if C > 1 else None

            def forward(self, x: Any) -> tuple[Any, Any, Any]:
                z = self.trunk(x)
                outs = torch.stack([h(z) for h in self.heads], dim=1)  # (n, M, out)
                presence = outs[..., 0]
                count = outs[..., 1] if counts else None
                cancer = self.cancer(z) if self.cancer is not None else None
                return presence, count, cancer

        return Net()

    def _loss(self, out: tuple, y: Any, c: Any, t: Any, w: Any) -> Any:
        import torch
        import torch.nn.functional as F

        logits, count, cancer = out
        if self.loss == "bce":
            per = F.binary_cross_entropy_with_logits(logits, y, reduction="none")
        else:
            prob = torch.sigmoid(logits)
            per = (prob - y) ** 2 if self.loss == "mse" else (prob - y).abs()
        if self.balance:  # each head's present and absent aggregates weigh half (see class_weights)
            per = per * (y * self.pos_w_ + (1 - y) * self.neg_w_)
        total = (per.mean(dim=0) * w).sum() / w.sum()
        if count is not None:
            diff = count - c / self.k_scale
            cl = diff.abs() if self.loss == "mae" else diff ** 2
            total = total + self.count_weight * (cl.mean(dim=0) * w).sum() / w.sum()
        if cancer is not None and t is not None:
            # divided by log(C), the loss of a uniform guess, so that a 6-way cross-entropy (~1.8) does not
            # swamp the presence heads (~0.05) and decide early stopping on its own (issue 15)
            total = total + self.cancer_weight * F.cross_entropy(cancer, t) / math.log(max(self.n_classes, 2))
        return total

    def fit(self, X: np.ndarray, presence: np.ndarray, counts: np.ndarray, Xv: np.ndarray, presence_v: np.ndarray,
            counts_v: np.ndarray, classes: np.ndarray | None = None, classes_v: np.ndarray | None = None
            ) -> "DeepRecognizer":
        import torch

        dev = torch.device(self.device)
        if self.standardize:
            self.mu_, self.sd_ = _standardiser(X)
        else:
            self.mu_, self.sd_ = np.zeros(X.shape[1], np.float32), np.ones(X.shape[1], np.float32)

        def tensors(A: np.ndarray, P: np.ndarray, Cn: np.ndarray, T: np.ndarray | None) -> tuple:
            return (torch.from_numpy(((A - self.mu_) / self.sd_).astype(np.float32)).to(dev),
                    torch.from_numpy(P.astype(np.float32)).to(dev),
                    torch.from_numpy(Cn.astype(np.float32)).to(dev),
                    None if T is None else torch.from_numpy(T.astype(np.int64)).to(dev))

        Xt, Pt, Ct, Tt = tensors(X, presence, counts, classes if self.n_classes > 1 else None)
        Xv_, Pv, Cv, Tv = tensors(Xv, presence_v, counts_v, classes_v if self.n_classes > 1 else None)
        w = torch.from_numpy(self.head_weights).to(dev)
        pos, neg = class_weights(presence)
        self.pos_w_, self.neg_w_ = torch.from_numpy(pos).to(dev), torch.from_numpy(neg).to(dev)
        threads_before = torch.get_num_threads()
        if self.threads > 0:
            # small dense nets are fastest single-threaded (and 2 busy cores oversubscribe badly)
            torch.set_num_threads(self.threads)
        try:
            self._train(torch, dev, X, Xt, Pt, Ct, Tt, Xv_, Pv, Cv, Tv, w)
        finally:
            torch.set_num_threads(threads_before)
        return self

    def _train(self, torch: Any, dev: Any, X: np.ndarray, Xt: Any, Pt: Any, Ct: Any, Tt: Any, Xv_: Any, Pv: Any,
               Cv: Any, Tv: Any, w: Any) -> None:
        with torch.random.fork_rng(devices=[]):
            torch.manual_seed(self.seed)
            gen = torch.Generator().manual_seed(self.seed)
            net = self._build(X.shape[1]).to(dev)
            opt = torch.optim.Adam(net.parameters(), lr=self.lr, weight_decay=self.weight_decay, foreach=True)
            n = Xt.shape[0]
            bs = max(2, min(self.batch_size, n))
            best, best_state, wait = math.inf, None, 0
            for epoch in range(self.max_epochs):
                net.train()
                perm = torch.randperm(n, generator=gen).to(dev)
                tot = 0.0
                for start in range(0, n, bs):
                    idx = perm[start:start + bs]
                    if len(idx) < 2:  # BatchNorm needs two samples
                        continue
                    opt.zero_grad(set_to_none=True)
                    loss = self._loss(net(Xt[idx]), Pt[idx], Ct[idx], None if Tt is None else Tt[idx], w)
                    loss.backward()
                    opt.step()
                    tot += float(loss.detach()) * len(idx)
                net.eval()
                with torch.no_grad():
                    vl = float(self._loss(self._forward(net, Xv_), Pv, Cv, Tv, w)) if len(Xv_) else tot / n
                self.history_.append({"epoch": epoch + 1, "train_loss": tot / n, "val_loss": vl})
                if vl < best - 1e-6:
                    best, wait = vl, 0
                    best_state = {key: v.detach().clone() for key, v in net.state_dict().items()}
                else:
                    wait += 1
                    if wait >= self.patience:
                        break
            if best_state is not None:
                net.load_state_dict(best_state)
        net.eval()
        self.net_ = net
        self.epochs_ = len(self.history_)
        self.best_val_loss_ = best

    @staticmethod
    def _forward(net: Any, X: Any, chunk: int = 8192) -> tuple:
        import torch

        parts = [net(X[s:s + chunk]) for s in range(0, X.shape[0], chunk)]
        return tuple(None if parts[0][i] is None else torch.cat([p[i] for p in parts]) for i in range(3))

    def predict(self, X: np.ndarray) -> dict[str, np.ndarray | None]:
        import torch

        dev = next(self.net_.parameters()).device
        with torch.no_grad():
            Xt = torch.from_numpy(((X - self.mu_) / self.sd_).astype(np.float32)).to(dev)
            logits, count, cancer = self._forward(self.net_, Xt)
        out: dict[str, np.ndarray | None] = {"proba": torch.sigmoid(logits).cpu().numpy(), "counts": None,
                                             "cancer": None}
        if count is not None:
            out["counts"] = np.clip(np.rint(count.cpu().numpy() * self.k_scale), 0, None).astype(np.int64)
        if cancer is not None:
            out["cancer"] = cancer.argmax(dim=1).cpu().numpy()
        return out


class LogisticBaseline:
    """One binary logistic regression per modality on standardised inputs (the paper's MCRM)."""

    def __init__(self, C: float = 1.0, max_iter: int = 300, n_classes: int = 0, seed: int = 0):
        self.C = C
        self.max_iter = max_iter
        self.n_classes = n_classes
        self.seed = seed

    def fit(self, X: np.ndarray, presence: np.ndarray, classes: np.ndarray | None = None) -> "LogisticBaseline":
        import warnings

        from sklearn.exceptions import ConvergenceWarning
        from sklearn.linear_model import LogisticRegression

        self.mu_, self.sd_ = _standardiser(X)
        Z = (X - self.mu_) / self.sd_
        self.models_: list[Any] = []
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", ConvergenceWarning)
            for j in range(presence.shape[1]):
                y = presence[:, j].astype(int)
                if y.min() == y.max():  # a single class in training: constant prediction
                    self.models_.append(int(y[0]))
                    continue
                self.models_.append(LogisticRegression(C=self.C, max_iter=self.max_iter,
                                                       random_state=self.seed).fit(Z, y))
            self.cancer_ = None
            if self.n_classes > 1 and classes is not None and len(np.unique(classes)) > 1:
                self.cancer_ = LogisticRegression(C=self.C, max_iter=self.max_iter, solver="newton-cg",
                                                  random_state=self.seed).fit(Z, classes)  # as batched.py
        return self

    def predict(self, X: np.ndarray) -> dict[str, np.ndarray | None]:
        Z = (X - self.mu_) / self.sd_
        proba = np.empty((X.shape[0], len(self.models_)), dtype=np.float32)
        for j, m in enumerate(self.models_):
            proba[:, j] = float(m) if isinstance(m, int) else m.predict_proba(Z)[:, 1]
        return {"proba": proba, "counts": None,
                "cancer": None if self.cancer_ is None else self.cancer_.predict(Z)}


