"""Networks and baselines of the recognizer tasks, with their training loops (torch/sklearn inside methods).

:class:`DeepRecognizer` is the paper's recognizer: a shared trunk (dense +
BatchNorm + ReLU + dropout), one small dense branch per modality predicting
presence (and optionally the count of draws), optionally a cancer-type head;
by default plus a fixed linear shortcut from the input to every output
(:func:`linear_shortcut`, see there why). :class:`LogisticBaseline` is the
paper's "MCRM" baseline: one binary logistic regression per modality on
standardised inputs.
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


# ----------------------------------------------------------------------------- the linear shortcut

def ridge_loo(Z: np.ndarray, Y: np.ndarray, rel_alphas: tuple[float, ...] = (1e-5, 1e-4, 1e-3, 1e-2, 1e-1, 1.0),
              chunk: int = 8192, origin: np.ndarray | None = None
              ) -> tuple[np.ndarray, np.ndarray, np.ndarray, float]:
    """Ridge regression of ``Y`` (n, m) on ``Z`` (n, d) with an unpenalised intercept, the penalty
    chosen from ``n * rel_alphas`` by exact leave-one-out error; (W (d, m), b (m,), leave-one-out
    predictions (n, m), alpha). One eigendecomposition of the d x d Gram matrix serves every alpha.
    With ``origin`` (a point of Z-space) the fit has no free intercept: ``Y = (Z - origin) W``, so
    ``b = -origin @ W``.

    float64 throughout, a block of ``chunk`` rows at a time (no n x d centred copy): the Gram
    matrix as a symmetric rank-k update (half a general product's arithmetic), the projections on
    the eigenvectors once, then the leverages and fits of every alpha as two products."""
    from scipy.linalg.blas import dsyrk

    Y = np.asarray(Y, dtype=np.float64)
    n, d = Z.shape
    if origin is None:
        zm, ym = np.asarray(Z).mean(axis=0, dtype=np.float64), Y.mean(axis=0)
    else:
        zm, ym = np.asarray(origin, dtype=np.float64), np.zeros(Y.shape[1])

    def centred(s: int) -> np.ndarray:
        return np.asarray(Z[s:s + chunk], dtype=np.float64) - zm

    G = np.zeros((d, d), order="F")
    for s in range(0, n, chunk):  # upper triangle of sum (Z_b - zm)^T (Z_b - zm)
        G = dsyrk(1.0, centred(s).T, beta=1.0, c=G, overwrite_c=1)
    lam, V = np.linalg.eigh(G, UPLO="U")
    lam = np.clip(lam, 0.0, None)
    ZV = np.empty((n, d))
    for s in range(0, n, chunk):
        ZV[s:s + chunk] = centred(s) @ V
    ZtY = ZV.T @ (Y - ym)  # (d, m) in the eigenbasis
    alphas = np.asarray(rel_alphas, dtype=np.float64) * n
    F = 1.0 / (lam[:, None] + alphas[None, :])  # (d, a): the spectral filter of every alpha
    m, a = Y.shape[1], len(alphas)
    coef = (F[:, :, None] * ZtY[:, None, :]).reshape(d, a * m)  # alpha-major, then output
    fits = np.empty((n, a * m))
    lev = np.empty((n, a))
    for s in range(0, n, chunk):
        block = ZV[s:s + chunk]
        fits[s:s + chunk] = block @ coef
        lev[s:s + chunk] = (block * block) @ F
    if origin is None:
        lev += 1.0 / n  # the intercept's leverage
    best: tuple | None = None
    for j, alpha in enumerate(alphas):
        fit = fits[:, j * m:(j + 1) * m] + ym
        loo = Y - (Y - fit) / np.clip(1.0 - lev[:, j], 1e-6, None)[:, None]
        err = float(((loo - Y) ** 2).mean())
        if best is None or err < best[0]:
            best = (err, float(alpha), F[:, j], loo)
    _, alpha, f, loo = best
    W = V @ (f[:, None] * ZtY)
    return W, ym - zm @ W, loo, alpha


def _calibrate(x: np.ndarray, y: np.ndarray, w: np.ndarray, iters: int = 50) -> tuple[float, float]:
    """(s, t) of the weighted logistic regression y ~ sigmoid(s * (x - 0.5) + t) (Newton, a small
    ridge on s so that a separable column keeps a finite, steep slope)."""
    u = np.asarray(x, dtype=np.float64) - 0.5
    y = np.asarray(y, dtype=np.float64)
    w = np.asarray(w, dtype=np.float64) / np.mean(w)
    theta = np.array([4.0, 0.0])
    ridge = np.array([1e-3 * len(u), 0.0])
    A = np.stack([u, np.ones_like(u)], axis=1)
    for _ in range(iters):
        p = 1.0 / (1.0 + np.exp(-np.clip(A @ theta, -30, 30)))
        g = A.T @ (w * (p - y)) + ridge * theta
        H = (A * (w * p * (1 - p))[:, None]).T @ A + np.diag(ridge + 1e-9)
        step = np.linalg.solve(H, g)
        theta -= step
        if np.abs(step).max() < 1e-8:
            break
    return float(theta[0]), float(theta[1])


def _multinomial(Z: np.ndarray, t: np.ndarray, n_classes: int, C: float = 1.0, max_iter: int = 200
                 ) -> tuple[np.ndarray, np.ndarray]:
    """Multinomial logistic regression (scikit-learn's objective: C * sum of cross-entropies +
    ||W||^2 / 2, unpenalised intercept) by full-batch L-BFGS; (W (d, C), b (C,))."""
    import torch

    keep = np.asarray(t) >= 0
    Zt = torch.from_numpy(np.ascontiguousarray(Z[keep], dtype=np.float32))
    tt = torch.from_numpy(np.asarray(t)[keep].astype(np.int64))
    n, d = Zt.shape
    W = torch.zeros(d + 1, n_classes, dtype=torch.float32, requires_grad=True)
    opt = torch.optim.LBFGS([W], lr=1, max_iter=max_iter, tolerance_grad=1e-6, tolerance_change=1e-10,
                            history_size=10, line_search_fn="strong_wolfe")

    def closure() -> Any:
        opt.zero_grad()
        loss = torch.nn.functional.cross_entropy(Zt @ W[:-1] + W[-1], tt, reduction="sum") / n
        loss = loss + 0.5 / (C * n) * (W[:-1] ** 2).sum()
        loss.backward()
        return loss

    with torch.enable_grad():
        opt.step(closure)
    Wn = W.detach().numpy()
    return Wn[:-1].copy(), Wn[-1].copy()


def linear_shortcut(Z: np.ndarray, presence: np.ndarray, counts: np.ndarray, classes: np.ndarray | None, *,
                    n_classes: int, predict_counts: bool, k_scale: float, balance: bool,
                    origin: np.ndarray | None = None) -> dict[str, Any]:
    """The deep recognizer's fixed linear path from the standardised input ``Z`` to every output,
    solved to convergence before the network trains (the network then learns the residual).

    Why (issue 15, measured on the demo at k=10): an aggregate is a sum of draws, so each
    modality's count is (nearly) a linear function of it and presence is "count >= 1". The
    inputs are badly conditioned (covariance eigenvalues from 300 down to 3e-4 after per-feature
    standardisation: the high-norm modalities' counts dominate) and the low-norm modalities'
    presence lives in the small directions. A few hundred minibatch Adam steps never reach that
    precision: the network without hidden layers (a linear model) reached MCC 0.33 for rna where
    the L-BFGS logistic baseline has 1.00, and the full network 0.58 / 0.55 / 0.44 (rna /
    mutation / text) against 1.00 / 0.89 / 0.71. Solving the linear part exactly removes the gap.

    The presence logits come from a ridge regression of the *counts* (dense labels: every
    aggregate says how many draws of each modality it holds, where a presence label only
    separates the few aggregates without the modality), penalty chosen by exact leave-one-out
    error, then each modality's logit ``s * (count - 0.5) + t`` calibrated on the leave-one-out
    counts (weighted as the presence loss: ``balance``). The count outputs (``predict_counts``)
    are the ridge counts / ``k_scale``; the cancer logits a multinomial logistic regression.

    The count regression is affine by default: at a fixed k its intercept uses "the counts add
    up to k", which is right on clean data (demo k=10, text: MCC 0.94 against 0.52 without it) and
    wrong when draws are replaced by noise (mutation at k=10, 50% noise: 0.24; the baseline 0.80).
    With ``origin`` (the point of Z-space where the aggregate is zero) it is homogeneous, counts =
    (Z - origin) W, k-free: robust to replaced draws (0.90 there) but weaker on clean data at high k.

    Returns ``W`` (d, M * out) and ``b`` (M * out,), outputs ordered as the heads' (per modality:
    presence logit, then the scaled count when ``predict_counts``), and ``cW`` (d, C), ``cb`` (C,)
    (None without a cancer head), float32.
    """
    P = np.asarray(presence, dtype=np.float64)
    n, M = P.shape
    d = Z.shape[1]
    out = 2 if predict_counts else 1
    Wc, bc, loo, _ = ridge_loo(Z, counts, origin=origin)
    pos, neg = class_weights(P) if balance else (np.ones(M), np.ones(M))
    W = np.zeros((d, M * out))
    b = np.zeros(M * out)
    for j in range(M):
        y = P[:, j]
        if y.min() == y.max():  # one class in training: a constant, confident logit
            b[j * out] = 6.0 if y[0] > 0 else -6.0
        else:
            s, t = _calibrate(loo[:, j], y, np.where(y > 0, pos[j], neg[j]))
            W[:, j * out] = s * Wc[:, j]
            b[j * out] = s * (bc[j] - 0.5) + t
        if predict_counts:
            W[:, j * out + 1] = Wc[:, j] / k_scale
            b[j * out + 1] = bc[j] / k_scale
    res: dict[str, Any] = {"W": W.astype(np.float32), "b": b.astype(np.float32), "cW": None, "cb": None}
    if n_classes > 1 and classes is not None and len(np.unique(np.asarray(classes)[np.asarray(classes) >= 0])) > 1:
        cW, cb = _multinomial(np.asarray(Z), np.asarray(classes), n_classes)
        res["cW"], res["cb"] = cW.astype(np.float32), cb.astype(np.float32)
    elif n_classes > 1:
        res["cW"], res["cb"] = np.zeros((d, n_classes), np.float32), np.zeros(n_classes, np.float32)
    return res


SHORTCUTS = ("affine", "homogeneous", "none")


def shortcut_kind(value: Any) -> str:
    """The shortcut setting as one of :data:`SHORTCUTS` (true: ``affine``; false/None: ``none``)."""
    if value is True:
        return "affine"
    if value is False or value is None:
        return "none"
    if value in SHORTCUTS:
        return str(value)
    raise ValueError(f"shortcut must be true/false or one of {', '.join(SHORTCUTS)}, got {value!r}")


LR_SCHEDULES = ("constant", "cosine")


def lr_schedule_kind(value: str) -> str:
    if value in LR_SCHEDULES:
        return str(value)
    raise ValueError(f"lr_schedule must be one of {', '.join(LR_SCHEDULES)}, got {value!r}")


def epoch_lr(est: "DeepRecognizer", epoch: int) -> float:
    """The learning rate of ``epoch`` (0-based): ``lr`` throughout (``constant``), or ``cosine``:
    from ``lr`` at the first epoch down a half cosine over ``max_epochs`` (about
    ``lr * 2.5 / max_epochs^2`` at the last), so that the late epochs average out minibatch noise.
    On the paper-scale composite networks it did not let fewer epochs reach the constant rate's
    30-epoch result (benchmarks/RESULTS.md, issue 14): the default stays ``constant``."""
    if est.lr_schedule == "constant":
        return est.lr
    return est.lr * 0.5 * (1.0 + math.cos(math.pi * epoch / est.max_epochs))


def set_lr(opt: Any, est: "DeepRecognizer", epoch: int) -> None:
    """Set every parameter group of ``opt`` to :func:`epoch_lr` (one-at-a-time and grouped training alike)."""
    lr = epoch_lr(est, epoch)
    for group in opt.param_groups:
        group["lr"] = lr


class DeepRecognizer:
    """The network and its training loop (torch imported on use)."""

    def __init__(self, n_modalities: int, *, hidden: list[int], head_hidden: int, dropout: float, loss: str,
                 head_weights: np.ndarray, predict_counts: bool, count_weight: float, n_classes: int,
                 cancer_weight: float, lr: float, batch_size: int, max_epochs: int, patience: int,
                 weight_decay: float, standardize: bool, device: str, seed: int, k_scale: float,
                 threads: int = 1, balance: bool = False, shortcut: bool | str = True,
                 lr_schedule: str = "constant"):
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
        self.lr_schedule = lr_schedule_kind(lr_schedule)
        self.batch_size = int(batch_size)
        self.max_epochs = int(max_epochs)
        self.patience = int(patience)
        self.weight_decay = float(weight_decay)
        self.standardize = bool(standardize)
        self.device = device
        self.seed = int(seed)
        self.k_scale = float(k_scale)
        self.balance = bool(balance)
        self.shortcut_kind = shortcut_kind(shortcut)
        self.shortcut = self.shortcut_kind != "none"  # whether the network has the fixed linear path
        self.history_: list[dict[str, float]] = []

    def _build(self, d: int, shortcut: dict[str, Any] | None = None) -> Any:
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
                self.has_shortcut = shortcut is not None
                if shortcut is not None:  # fixed (buffers, not trained); the residual layers start at zero
                    self.register_buffer("sW", torch.from_numpy(shortcut["W"]))
                    self.register_buffer("sb", torch.from_numpy(shortcut["b"]))
                    if self.cancer is not None:
                        self.register_buffer("cW", torch.from_numpy(shortcut["cW"]))
                        self.register_buffer("cb", torch.from_numpy(shortcut["cb"]))
                    with torch.no_grad():
                        for layer in [h[-1] if isinstance(h, nn.Sequential) else h for h in self.heads] + (
                                [self.cancer] if self.cancer is not None else []):
                            layer.weight.zero_()
                            layer.bias.zero_()

            def forward(self, x: Any) -> tuple[Any, Any, Any]:
                z = self.trunk(x)
                outs = torch.stack([h(z) for h in self.heads], dim=1)  # (n, M, out)
                if self.has_shortcut:
                    outs = outs + torch.addmm(self.sb, x, self.sW).view(outs.shape)
                presence = outs[..., 0]
                count = outs[..., 1] if counts else None
                cancer = self.cancer(z) if self.cancer is not None else None
                if cancer is not None and self.has_shortcut:
                    cancer = cancer + torch.addmm(self.cb, x, self.cW)
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
            self.shortcut_ = self.fit_shortcut(X, presence, counts, classes) if self.shortcut else None
            self._train(torch, dev, X, Xt, Pt, Ct, Tt, Xv_, Pv, Cv, Tv, w)
        finally:
            torch.set_num_threads(threads_before)
        return self

    def fit_shortcut(self, X: np.ndarray, presence: np.ndarray, counts: np.ndarray,
                     classes: np.ndarray | None) -> dict[str, Any]:
        """:func:`linear_shortcut` on the training inputs standardised as the network sees them
        (``mu_``/``sd_`` set): the fixed linear path (what ``batched.py`` calls per network).
        ``shortcut_kind`` ``affine`` (default) or ``homogeneous`` (counts with no free intercept)."""
        Z = (np.asarray(X, dtype=np.float32) - self.mu_) / self.sd_
        return linear_shortcut(Z, presence, counts, classes if self.n_classes > 1 else None,
                               n_classes=self.n_classes, predict_counts=self.predict_counts,
                               k_scale=self.k_scale, balance=self.balance,
                               origin=(-self.mu_ / self.sd_) if self.shortcut_kind == "homogeneous" else None)

    def _train(self, torch: Any, dev: Any, X: np.ndarray, Xt: Any, Pt: Any, Ct: Any, Tt: Any, Xv_: Any, Pv: Any,
               Cv: Any, Tv: Any, w: Any) -> None:
        with torch.random.fork_rng(devices=[]):
            torch.manual_seed(self.seed)
            gen = torch.Generator().manual_seed(self.seed)
            net = self._build(X.shape[1], getattr(self, "shortcut_", None)).to(dev)
            opt = torch.optim.Adam(net.parameters(), lr=self.lr, weight_decay=self.weight_decay, foreach=True)
            n = Xt.shape[0]
            bs = max(2, min(self.batch_size, n))
            best, best_state, wait = math.inf, None, 0
            if getattr(self, "shortcut_", None) is not None and len(Xv_):
                # epoch 0 competes in early stopping: the network starts as the solved linear path, and
                # keeps it when training does not improve the validation loss
                net.eval()
                with torch.no_grad():
                    best = float(self._loss(self._forward(net, Xv_), Pv, Cv, Tv, w))
                best_state = {key: v.detach().clone() for key, v in net.state_dict().items()}
                self.history_.append({"epoch": 0, "train_loss": math.nan, "val_loss": best})
            for epoch in range(self.max_epochs):
                set_lr(opt, self, epoch)
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
                self.history_.append({"epoch": epoch + 1, "train_loss": tot / n, "val_loss": vl,
                                      "lr": opt.param_groups[0]["lr"]})
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
        self.epochs_ = sum(1 for h in self.history_ if h["epoch"] > 0)
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


