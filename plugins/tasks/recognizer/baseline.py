"""The recognizer's logistic baseline ("MCRM" in the paper): one binary logistic regression per
modality with scikit-learn's objective, every modality fitted at once by preconditioned L-BFGS,
one pass over the data per evaluation, optionally warm-started from another fit of the same
study (the optimum is unique: the objective is strictly convex). Used by the batched study
(:mod:`.batched`); tested against scikit-learn in ``tests/test_recognizer_batched.py``.
"""

from __future__ import annotations

from typing import Any

import numpy as np

from fusionkit_plugins.tasks.recognizer.models import _standardiser


class MultiLogistic:
    """One binary logistic regression per modality (scikit-learn's objective: C * sum of losses +
    ||w||^2 / 2, unpenalised intercept) on standardised inputs, all modalities fitted at once by
    L-BFGS: each evaluation is one pass over the data for every modality. A cancer head, when
    asked, is scikit-learn's multinomial logistic regression.

    Preconditioned: the weights are written ``w = L^-T v`` with ``L L^T`` the Cholesky factor of
    ``H0 = Z^T Z / (4 n) + lambda I`` (the objective's Hessian at w = 0, from a subsample of rows).
    That is a change of variables only: the objective and its optimum are unchanged, but L-BFGS
    sees a problem whose curvature is near the identity. Aggregates of embeddings have strongly
    correlated features, and unpreconditioned L-BFGS took hundreds of iterations (often hitting
    ``max_iter``) on the paper-scale sets. Converged means ``max |grad_v| <= tol``. Near the
    optimum of a nearly separable modality the curvature is far below the preconditioner's (the
    fitted probabilities are near 0 or 1), so that is a loose bound on the objective: on the
    paper-scale aggregates a cold and a warm-started fit, both converged, end about 1% apart in
    the objective and within +-0.006 in test MCC (benchmarks/RESULTS.md, issue 14).
    """

    def __init__(self, C: float = 1.0, max_iter: int = 300, n_classes: int = 0, seed: int = 0,
                 tol: float = 1e-4, precondition: bool = True, precondition_rows: int = 4096):
        self.C = C
        self.max_iter = max_iter
        self.n_classes = n_classes
        self.seed = seed
        self.tol = tol
        self.precondition = precondition
        self.precondition_rows = precondition_rows

    def _preconditioner(self, torch: Any, Z: Any, lam: float) -> Any:
        """``L^-T`` (d, d) for ``L L^T = Z_s^T Z_s / (4 n_s) + lam I`` on up to ``precondition_rows`` rows
        (fp32 Gram matrix; any symmetric positive definite matrix gives the same optimum)."""
        n, d = Z.shape
        if n > self.precondition_rows:
            rows = np.random.default_rng(self.seed).choice(n, self.precondition_rows, replace=False)
            Zs = Z[torch.from_numpy(np.sort(rows))]
        else:
            Zs = Z
        H = (Zs.T @ Zs).double() / (4.0 * Zs.shape[0]) + lam * torch.eye(d, dtype=torch.float64)
        L = torch.linalg.cholesky(H)
        inv_lt = torch.linalg.solve_triangular(L.T, torch.eye(d, dtype=torch.float64), upper=True)
        return inv_lt.float()

    def _start(self, torch: Any, warm: "MultiLogistic | None", d: int, M: int, P: Any) -> tuple[Any, Any]:
        """L-BFGS's starting point (V, b): zero, or ``warm``'s fitted model rewritten for this fit's
        standardisation (the same logits on every input) and preconditioner. The objective is
        strictly convex, so the optimum does not depend on the start; a near one can save iterations."""
        if warm is None or getattr(warm, "W_", None) is None or warm.W_.shape != (d + 1, M):
            return torch.zeros(d, M, dtype=torch.float32), torch.zeros(M, dtype=torch.float32)
        W1, b1 = warm.W_[:-1].astype(np.float64), warm.W_[-1].astype(np.float64)
        # logits = ((x - mu1) / sd1) W1 + b1 = ((x - mu) / sd) (W1 * sd / sd1) + b1 + ((mu - mu1) / sd1) W1
        W = torch.from_numpy(W1 * (self.sd_ / warm.sd_)[:, None])
        b = torch.from_numpy(b1 + ((self.mu_ - warm.mu_) / warm.sd_) @ W1)
        V = W if P is None else torch.linalg.solve_triangular(P.double(), W, upper=True)  # W = P V
        return V.float().contiguous(), b.float()

    def fit(self, X: np.ndarray, presence: np.ndarray, classes: np.ndarray | None = None,
            warm: "MultiLogistic | None" = None) -> "MultiLogistic":
        """Fit on ``X`` (n, d) and binary ``presence`` (n, M); ``warm``: a fitted model on the same
        features and outputs (another k of the same repeat) whose solution starts L-BFGS."""
        import torch

        self.mu_, self.sd_ = _standardiser(X)
        Z = torch.from_numpy(((X - self.mu_) / self.sd_).astype(np.float32))
        Y = torch.from_numpy((np.asarray(presence) > 0).astype(np.float32))
        n, d, M = Z.shape[0], Z.shape[1], Y.shape[1]
        scale = 1.0 / (self.C * n)  # the objective divided by C * n: same optimum, O(1) gradients
        P = self._preconditioner(torch, Z, scale) if self.precondition else None
        V, b = self._start(torch, warm, d, M, P)
        opt = torch.optim.LBFGS([V, b], lr=1, max_iter=int(self.max_iter), tolerance_grad=self.tol,
                                tolerance_change=1e-9, history_size=10, line_search_fn="strong_wolfe")
        calls = [0]
        chunk = 2048  # rows per block: each block is read from memory once for the loss and the gradient

        def closure() -> Any:  # the objective and its gradient, by hand (no autograd graph over the data)
            with torch.no_grad():
                W = V if P is None else P @ V
                # the skinny products run in the orientation oneDNN/MKL do fastest on one thread (~3x
                # faster than Z @ W and Z^T r, measured: benchmarks/RESULTS.md, issue 14): the weights
                # as a transposed view of a contiguous (M, d) and the gradient accumulated as (M, d)
                Wt = W.T.contiguous()
                gWt, gb, loss = torch.zeros(M, d), torch.zeros(M), torch.zeros((), dtype=torch.float64)
                for s in range(0, n, chunk):
                    zc, yc = Z[s:s + chunk], Y[s:s + chunk]
                    logits = torch.addmm(b, zc, Wt.T)
                    loss += float(torch.nn.functional.binary_cross_entropy_with_logits(logits, yc, reduction="sum"))
                    r = torch.sigmoid(logits).sub_(yc)
                    gWt.addmm_(r.T, zc)
                    gb += r.sum(dim=0)
                gW = gWt.T.div_(n).add_(W, alpha=scale)
                V.grad = gW if P is None else P.T @ gW
                b.grad = gb / n
                calls[0] += 1
                return (loss / n + 0.5 * scale * (W.double() ** 2).sum()).float()

        opt.step(closure)
        self.n_iter_ = int(opt.state[opt._params[0]]["n_iter"])
        self.n_evals_ = calls[0]
        self.loss_ = float(closure())  # the gradient at the returned point (the line search may end elsewhere)
        self.converged_ = bool(max(float(V.grad.abs().max()), float(b.grad.abs().max())) <= self.tol)
        W = V if P is None else P @ V
        self.W_ = torch.cat([W, b.unsqueeze(0)]).numpy().copy()
        self.cancer_ = None
        if self.n_classes > 1 and classes is not None and len(np.unique(classes)) > 1:
            from sklearn.linear_model import LogisticRegression

            # newton-cg: the same optimum; lbfgs left 4 of 9 main-job heads unconverged at 300 iterations
            self.cancer_ = LogisticRegression(C=self.C, max_iter=self.max_iter, solver="newton-cg",
                                              random_state=self.seed).fit(Z.numpy(), classes)
        return self

    def predict(self, X: np.ndarray) -> dict[str, np.ndarray | None]:
        Z = ((X - self.mu_) / self.sd_).astype(np.float32)
        proba = 1.0 / (1.0 + np.exp(-(Z @ self.W_[:-1] + self.W_[-1])))
        return {"proba": proba.astype(np.float32), "counts": None,
                "cancer": None if self.cancer_ is None else self.cancer_.predict(Z)}
