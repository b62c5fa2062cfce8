"""Recognizer experiments (SPEC 2.3, paper "Identification of Component Embeddings"):
which modalities (and how many draws of each) make up an aggregate?

Tasks
-----
``recognizer``
    Deep recognizer: a shared trunk (dense + BatchNorm + ReLU + dropout)
    followed by one small dense branch per modality predicting presence
    (sigmoid) and optionally the count of draws; optionally a cancer-type
    head for cancer-specific sampling. Adam, MSE loss by default (the paper;
    ``mae`` as the authors' code, or ``bce``), per-head weights, early
    stopping on a validation split. ``baseline: true`` also runs the
    logistic baseline on the very same data and splits.
``recognizer-baseline``
    The paper's "MCRM" baseline: one binary logistic regression per modality
    on standardised inputs (multinomial for the cancer head), same splits and
    metrics.

Protocol (per repeat; each repeat is a new seed, so a new dataset, split and
initialisation)
  1. for every sample count k: a DrawPlan of ``n_per_k`` aggregates from the
     recipe sampling entry (``ctx.plan(sampling, seed_keys=(repeat, k))``);
  2. the *plan* (indices, not vectors) is split 80/20 into train/test, then
     the train part 80/20 into train/validation; each part is aggregated on
     its own, so no test aggregate is built from training information;
  3. ``isolation``: one model per k, trained and tested on that k;
     ``composite``: one model trained on the union of the training parts of
     every k, tested per k on the same test parts as the isolation models;
  4. robustness: every model (trained on clean data) is also tested on each
     recipe perturbation applied to the test *plan* (noise replaces draws and
     the labels exclude the replaced draws);
  5. metrics per modality, overall and stratified into absent/present samples
     (:func:`fusionkit.metrics.stratified_metrics`).

Each (model, repeat, mode, k) is one cached unit of work (``ctx.run_units``):
an interrupted run resumes and units may run in parallel processes.

Outputs under ``<task name>/``: ``metrics_per_repeat.csv`` (tidy: repeat,
model, mode, k, noise, perturbation, modality, stratum, metric, value),
``metrics_summary.csv`` (mean, t-CI, n per group), ``mcc_by_k.csv`` and the
figures ``mcc_by_k.png`` (deep vs baseline), ``isolation_vs_composite.png``,
``robustness.png`` (MCC vs noise fraction), ``strata.png`` (recall on the
present stratum, specificity on the absent stratum).
"""

from __future__ import annotations

import logging
import math
import time
import uuid
from typing import Any

import numpy as np

from fusionkit import hookimpl
from fusionkit import Aggregates, DrawPlan, Task
from fusionkit import DataError, FusionkitError
from fusionkit import Unit
from fusionkit.metrics import (BINARY_METRICS, mean_ci, multiclass_metrics, stratified_metrics,
                               stratified_rows, summarise_rows)

log = logging.getLogger(__name__)

RECOGNIZER_SAMPLERS = ("modality-level", "cancer-specific")
MODES = ("isolation", "composite")
LOSSES = ("mse", "mae", "bce")
ROW_COLUMNS = ("repeat", "model", "mode", "k", "noise", "perturbation", "modality", "stratum", "metric", "value")
GROUP_COLUMNS = ("model", "mode", "k", "noise", "perturbation", "modality", "stratum", "metric")
CANCER_MODALITY = "cancer_type"
#: parameters that shape the data, splits and evaluation (shared by every model)
DATA_PARAMS = ("sampling", "k", "n_per_k", "perturbations", "predict_cancer", "threshold", "drop_empty",
               "test_fraction", "val_fraction")


# ----------------------------------------------------------------------------- data

def split_indices(n: int, rng: np.random.Generator, test_fraction: float = 0.2,
                  val_fraction: float = 0.2) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Disjoint sorted (train, val, test) indices of ``n`` items: test first, then val from the rest."""
    if not (0 < test_fraction < 1 and 0 <= val_fraction < 1):
        raise DataError(f"fractions must be in (0, 1): test {test_fraction}, validation {val_fraction}")
    perm = rng.permutation(n)
    n_test = max(1, int(round(n * test_fraction)))
    rest = perm[n_test:]
    n_val = int(round(len(rest) * val_fraction))
    if val_fraction > 0:
        n_val = max(1, n_val)
    if len(rest) - n_val < 2:
        raise DataError(f"{n} aggregates are too few to split into train/validation/test",
                        hint="raise n_per_k")
    return np.sort(rest[n_val:]), np.sort(rest[:n_val]), np.sort(perm[:n_test])


def concat_aggregates(parts: list[Aggregates]) -> Aggregates:
    """Stack aggregates of the same modalities (e.g. several sample counts)."""
    if len(parts) == 1:
        return parts[0]
    labels = {key: np.concatenate([np.asarray(p.group_labels[key], dtype=object) for p in parts])
              for key in parts[0].group_labels if all(key in p.group_labels for p in parts)}
    return Aggregates(X=np.concatenate([p.X for p in parts]), modalities=list(parts[0].modalities),
                      counts=np.concatenate([p.counts for p in parts]), k=np.concatenate([p.k for p in parts]),
                      group_labels=labels, meta=dict(parts[0].meta))


class RepeatData:
    """Plans and aggregates of one repeat, built lazily from the run context.

    ``plans[k]`` holds the split DrawPlans of sample count ``k``
    (``train``/``val``/``test``) and ``index[k]`` the plan indices of each part.
    """

    def __init__(self, ctx: Any, sampling: str, ks: list[int], n_per_k: int | None, repeat: int,
                 test_fraction: float = 0.2, val_fraction: float = 0.2):
        self.ctx = ctx
        self.sampling = sampling
        self.repeat = repeat
        self.plans: dict[int, dict[str, DrawPlan]] = {}
        self.index: dict[int, dict[str, np.ndarray]] = {}
        self._aggs: dict[tuple, Aggregates] = {}
        for k in ks:
            overrides: dict[str, Any] = {"k": int(k)}
            if n_per_k:
                overrides["n"] = int(n_per_k)
            plan = ctx.plan(sampling, seed_keys=(repeat, int(k)), **overrides)
            tr, va, te = split_indices(plan.n, ctx.rng("recognizer-split", sampling, repeat, int(k)),
                                       test_fraction, val_fraction)
            self.index[k] = {"train": tr, "val": va, "test": te}
            self.plans[k] = {"train": plan.take(tr), "val": plan.take(va), "test": plan.take(te)}

    def clean(self, k: int, part: str) -> Aggregates:
        key = (k, part, None)
        if key not in self._aggs:
            self._aggs[key] = self.ctx.aggregate(self.plans[k][part],
                                                 seed_keys=("recognizer", self.sampling, self.repeat, k, part))
        return self._aggs[key]

    def noisy_test(self, k: int, perturbation: str) -> tuple[DrawPlan, Aggregates]:
        """The test plan of ``k`` with a recipe perturbation applied, and its aggregates."""
        pert = self.ctx.perturbation(perturbation)
        plan = pert.apply(self.plans[k]["test"],
                          self.ctx.rng("recognizer-perturb", perturbation, self.sampling, self.repeat, k))
        agg = self.ctx.aggregate(plan, seed_keys=("recognizer-noise", perturbation, self.sampling, self.repeat, k))
        return plan, agg

    def training(self, ks: list[int], part: str) -> Aggregates:
        return concat_aggregates([self.clean(k, part) for k in ks])


# ----------------------------------------------------------------------------- models

def _standardiser(X: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    mu = X.mean(axis=0, dtype=np.float64).astype(np.float32)
    sd = X.std(axis=0, dtype=np.float64).astype(np.float32)
    sd[sd < 1e-6] = 1.0
    return mu, sd


class DeepRecognizer:
    """The network and its training loop (torch imported on use)."""

    def __init__(self, n_modalities: int, *, hidden: list[int], head_hidden: int, dropout: float, loss: str,
                 head_weights: np.ndarray, predict_counts: bool, count_weight: float, n_classes: int,
                 cancer_weight: float, lr: float, batch_size: int, max_epochs: int, patience: int,
                 weight_decay: float, standardize: bool, device: str, seed: int, k_scale: float,
                 threads: int = 1):
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
        total = (per.mean(dim=0) * w).sum() / w.sum()
        if count is not None:
            diff = count - c / self.k_scale
            cl = diff.abs() if self.loss == "mae" else diff ** 2
            total = total + self.count_weight * (cl.mean(dim=0) * w).sum() / w.sum()
        if cancer is not None and t is not None:
            total = total + self.cancer_weight * F.cross_entropy(cancer, t)
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
                self.cancer_ = LogisticRegression(C=self.C, max_iter=self.max_iter,
                                                  random_state=self.seed).fit(Z, classes)
        return self

    def predict(self, X: np.ndarray) -> dict[str, np.ndarray | None]:
        Z = (X - self.mu_) / self.sd_
        proba = np.empty((X.shape[0], len(self.models_)), dtype=np.float32)
        for j, m in enumerate(self.models_):
            proba[:, j] = float(m) if isinstance(m, int) else m.predict_proba(Z)[:, 1]
        return {"proba": proba, "counts": None,
                "cancer": None if self.cancer_ is None else self.cancer_.predict(Z)}


# ----------------------------------------------------------------------------- evaluation

def evaluate(pred: dict[str, Any], agg: Aggregates, *, threshold: float = 0.5, drop_empty: bool = True,
             cancer_labels: np.ndarray | None = None, class_names: list[str] | None = None,
             **extra: Any) -> list[dict[str, Any]]:
    """Tidy metric rows of one test set: stratified presence metrics per modality,
    count metrics (when predicted) and cancer-type metrics (when predicted)."""
    truth = agg.counts
    keep = truth.sum(axis=1) > 0 if drop_empty else np.ones(len(truth), dtype=bool)
    yhat = (pred["proba"] >= threshold).astype(np.int8)
    res = stratified_metrics(truth[keep], yhat[keep], agg.modalities)
    rows = stratified_rows(res, BINARY_METRICS + ("n",), **extra)
    rows.append({**extra, "modality": "*", "stratum": "all", "metric": "n_dropped_empty",
                 "value": float((~keep).sum())})
    if pred.get("counts") is not None:
        pc = pred["counts"][keep]
        tc = truth[keep]
        for j, m in enumerate(agg.modalities):
            for stratum, sel in (("all", np.ones(len(tc), bool)), ("present", tc[:, j] > 0)):
                if sel.any():
                    err = np.abs(pc[sel, j] - tc[sel, j])
                    rows.append({**extra, "modality": m, "stratum": stratum, "metric": "count_mae",
                                 "value": float(err.mean())})
                    rows.append({**extra, "modality": m, "stratum": stratum, "metric": "count_accuracy",
                                 "value": float((err == 0).mean())})
    if pred.get("cancer") is not None and cancer_labels is not None and class_names:
        mc = multiclass_metrics(np.asarray(cancer_labels)[keep], pred["cancer"][keep],
                                labels=list(range(len(class_names))))
        for metric in ("accuracy", "mcc", "macro_f1", "balanced_accuracy"):
            rows.append({**extra, "modality": CANCER_MODALITY, "stratum": "all", "metric": metric,
                         "value": float(mc[metric])})
    return rows


def _noise_level(ctx: Any, name: str) -> Any:
    spec = ctx.recipe.perturbations.get(name)
    frac = spec.params.get("fraction") if spec is not None else None
    return float(frac) if isinstance(frac, (int, float)) and not isinstance(frac, bool) else name


# ----------------------------------------------------------------------------- the task

def _recipe_sampling_name(params: dict[str, Any], recipe: Any) -> tuple[str | None, str | None]:
    """(entry name, problem) of the sampling entry a recognizer uses."""
    name = params.get("sampling") or ""
    table = getattr(recipe, "sampling", {}) or {}
    if not name:
        usable = [key for key, spec in table.items() if spec.name in RECOGNIZER_SAMPLERS]
        if len(usable) == 1:
            return usable[0], None
        if not usable:
            return None, "no modality-level or cancer-specific sampling entry in the recipe"
        return None, f"several sampling entries could serve ({', '.join(usable)}): name one"
    if name not in table:
        return None, f"no sampling entry named {name!r}"
    spec = table[name]
    tags = (spec.info.metadata.get("tags") or []) if spec.info else []
    if spec.name not in RECOGNIZER_SAMPLERS and "recognizer" not in tags:
        return None, (f"sampling entry {name!r} uses sampler {spec.name!r}; the recognizer needs "
                      f"modality-level or cancer-specific sampling")
    return name, None


class _RecognizerBase(Task):
    """Shared protocol of the deep recognizer and the logistic baseline."""

    models: tuple[str, ...] = ()
    group = "recognizer"

    # ------------------------------------------------------------------ validation
    @classmethod
    def check_recipe(cls, params: dict[str, Any], recipe: Any) -> list[tuple[str, str, str]]:
        out: list[tuple[str, str, str]] = []
        params = {**cls.default_params(), **params}
        table = getattr(recipe, "sampling", {}) or {}
        name, problem = _recipe_sampling_name(params, recipe)
        if problem:
            out.append(("params.sampling", problem,
                        f"sampling entries: {', '.join(f'{k} ({s.name})' for k, s in table.items()) or '(none)'}; "
                        "add e.g. `sampling: {recognizer: {name: modality-level, params: {k: 3..10}}}`"))
        for i, p in enumerate(params.get("perturbations") or []):
            if p not in (getattr(recipe, "perturbations", {}) or {}):
                out.append((f"params.perturbations[{i}]", f"no perturbation entry named {p!r}",
                            f"entries: {', '.join(recipe.perturbations) or '(none)'}"))
        modes = params.get("modes")
        if isinstance(modes, str):
            modes = [modes]
        for m in modes or []:
            if m not in MODES:
                out.append(("params.modes", f"unknown mode {m!r}", "modes: isolation, composite"))
        if modes is not None and not modes:
            out.append(("params.modes", "no mode given", "modes: [isolation] and/or composite"))
        if params.get("k") is not None:
            from fusionkit_plugins.sampling.samplers import parse_k

            try:
                parse_k(params["k"])
            except FusionkitError as err:
                out.append(("params.k", err.message, "e.g. k: [3, 5, 10] or k: 3..10"))
        repeats = params.get("n_repeats", 1)
        if not isinstance(repeats, int) or repeats < 1:
            out.append(("params.n_repeats", f"n_repeats must be a positive integer, got {repeats!r}", ""))
        loss = params.get("loss", "mse")
        if loss not in LOSSES:
            out.append(("params.loss", f"unknown loss {loss!r}", "loss: mse (paper), mae or bce"))
        mods = set(getattr(recipe, "modalities", {}) or {})
        for key in (params.get("head_weights") or {}):
            if mods and key not in mods and key != CANCER_MODALITY:
                out.append(("params.head_weights", f"head weight for unknown modality {key!r}",
                            f"modalities: {', '.join(sorted(mods))}"))
        if params.get("predict_cancer") and name and table[name].name != "cancer-specific":
            out.append(("params.predict_cancer", "predict_cancer needs cancer-specific sampling",
                        f"sampling entry {name!r} uses {table[name].name!r}"))
        return out

    # ------------------------------------------------------------------ helpers
    def _modes(self) -> list[str]:
        if self.modes is None:
            modes = ["isolation"]
        else:
            modes = [self.modes] if isinstance(self.modes, str) else list(self.modes)
        bad = [m for m in modes if m not in MODES]
        if bad or not modes:
            raise DataError(f"unknown recognizer modes {bad or modes}", hint="modes: isolation, composite")
        return modes

    def _unit_params(self, ctx: Any, sampling: str) -> dict[str, Any]:
        params = {k: v for k, v in self.get_params().items() if k not in ("n_repeats", "modes", "baseline")}
        params["_sampling_spec"] = ctx.recipe.sampling[sampling].to_dict()
        params["_perturbations"] = {p: ctx.recipe.perturbations[p].to_dict() for p in self.perturbations or []}
        params["_version"] = 1
        return params

    def _model_factory(self, model: str, ctx: Any, modalities: list[str], n_classes: int, seed: int,
                       k_scale: float) -> Any:
        raise NotImplementedError

    @staticmethod
    def _unit_params_for(params: dict[str, Any], model: str) -> dict[str, Any]:
        """Parameters that change a unit's result (a baseline unit ignores the network's)."""
        if model == "deep":
            return {k: v for k, v in params.items() if k not in ("baseline_C",)}
        return {k: v for k, v in params.items() if k in DATA_PARAMS or k.startswith("_")
                or k in ("baseline_C", "C", "max_iter")}

    def _train_unit(self, ctx: Any, model: str, sampling: str, ks: list[int], repeat: int, mode: str,
                    train_ks: list[int], run_id: str, class_names: list[str], label: str | None) -> dict[str, Any]:
        t0 = time.perf_counter()
        data = RepeatData(ctx, sampling, train_ks, self.n_per_k, repeat, self.test_fraction, self.val_fraction)
        tr = data.training(train_ks, "train")
        va = data.training(train_ks, "val")
        cls_index = {c: i for i, c in enumerate(class_names)}

        def classes(agg: Aggregates) -> np.ndarray | None:
            if not class_names or label is None or label not in agg.group_labels:
                return None
            return np.asarray([cls_index.get(str(v), -1) for v in agg.group_labels[label]], dtype=np.int64)

        seed = ctx.seed_for("recognizer-init", model, repeat, mode, *train_ks)
        k_scale = float(max(ks))
        est = self._model_factory(model, ctx, list(tr.modalities), len(class_names), seed, k_scale)
        if model == "deep":
            est.fit(tr.X, tr.presence, tr.counts, va.X, va.presence, va.counts, classes(tr), classes(va))
            info = {"epochs": est.epochs_, "best_val_loss": est.best_val_loss_}
        else:  # the baseline has no early stopping: it learns from train + validation (the same 80%)
            both = concat_aggregates([tr, va])
            est.fit(both.X, both.presence, classes(both))
            info = {}
        t_train = time.perf_counter() - t0
        rows: list[dict[str, Any]] = []
        eval_ks = train_ks
        for k in eval_ks:
            base = {"repeat": repeat, "model": model, "mode": mode, "k": int(k)}
            test = data.clean(k, "test")
            rows += evaluate(est.predict(test.X), test, threshold=self.threshold, drop_empty=self.drop_empty,
                             cancer_labels=classes(test), class_names=class_names,
                             **base, noise=0.0, perturbation="none")
            for p in self.perturbations or []:
                _, noisy = data.noisy_test(k, p)
                rows += evaluate(est.predict(noisy.X), noisy, threshold=self.threshold, drop_empty=self.drop_empty,
                                 cancer_labels=classes(noisy), class_names=class_names,
                                 **base, noise=_noise_level(ctx, p), perturbation=p)
        info.update({"run_id": run_id, "model": model, "repeat": repeat, "mode": mode, "k": list(map(int, train_ks)),
                     "n_train": int(len(tr)), "n_val": int(len(va)),
                     "n_test": int(sum(len(data.index[k]["test"]) for k in eval_ks)),
                     "train_s": round(t_train, 3), "total_s": round(time.perf_counter() - t0, 3)})
        return {"rows": rows, "info": info}

    # ------------------------------------------------------------------ run
    def run(self, ctx: Any) -> dict[str, Any]:
        from fusionkit_plugins.sampling.samplers import parse_k

        sampling, problem = _recipe_sampling_name({"sampling": self.sampling}, ctx.recipe)
        if problem:
            raise DataError(problem, where=f"tasks.{ctx.task_name}.params.sampling")
        spec = ctx.recipe.sampling[sampling]
        ks = parse_k(self.k if self.k is not None else spec.params.get("k", 3))
        modes = self._modes()
        repeats = int(self.n_repeats)
        for p in self.perturbations or []:
            pspec = ctx.recipe.perturbations.get(p)
            if pspec is not None and pspec.params.get("apply_to", "test") != "test":
                log.warning("perturbation %s has apply_to=%s: the recognizer always trains on clean data and "
                            "tests on perturbed data (the paper's protocol)", p, pspec.params.get("apply_to"))
        label = spec.params.get("label", "cancer_type") if spec.name == "cancer-specific" else None
        class_names: list[str] = []
        if getattr(self, "predict_cancer", False):
            if label is None:
                raise DataError("predict_cancer needs cancer-specific sampling",
                                where=f"tasks.{ctx.task_name}.params.predict_cancer")
            probe = ctx.plan(sampling, seed_keys=("classes",), k=int(ks[0]), n=max(64, 8 * 16))
            class_names = sorted({str(c) for c in probe.meta.get("cancers") or probe.group_labels[label]})
        models = self._models()
        unit_params = self._unit_params(ctx, sampling)
        run_id = uuid.uuid4().hex
        units: list[Unit] = []
        for model in models:
            for repeat in range(repeats):
                for mode in modes:
                    groups = [[k] for k in ks] if mode == "isolation" else [list(ks)]
                    for train_ks in groups:
                        key = ctx.unit_key(self.group, self._unit_params_for(unit_params, model), model, repeat,
                                   mode, train_ks)
                        units.append(Unit(key, self._train_unit,
                                          (ctx, model, sampling, ks, repeat, mode, train_ks, run_id,
                                           class_names, label),
                                          label=f"{model} r{repeat} {mode} k={train_ks}"))
        t0 = time.perf_counter()
        results = ctx.run_units(ctx.task_name or self.group, units)
        wall = time.perf_counter() - t0
        ordered = [results[u.key] for u in units]
        rows = [row for res in ordered for row in res["rows"]]
        infos = [res["info"] for res in ordered]
        reused = sum(1 for i in infos if i.get("run_id") != run_id)
        return self._report(ctx, rows, infos, sampling, spec.name, ks, modes, models, repeats, reused, wall)

    def _models(self) -> list[str]:
        return list(self.models)

    # ------------------------------------------------------------------ outputs
    def _report(self, ctx: Any, rows: list[dict[str, Any]], infos: list[dict[str, Any]], sampling: str,
                sampler: str, ks: list[int], modes: list[str], models: list[str], repeats: int, reused: int,
                wall: float) -> dict[str, Any]:
        name = ctx.task_name or self.group
        rows = [{c: r.get(c) for c in ROW_COLUMNS} for r in rows]
        summary_rows = summarise_rows(rows, GROUP_COLUMNS)
        tables = {
            "per_repeat": f"{name}/metrics_per_repeat.csv",
            "summary": f"{name}/metrics_summary.csv",
            "mcc_by_k": f"{name}/mcc_by_k.csv",
            "units": f"{name}/units.csv",
        }
        ctx.write_csv(tables["per_repeat"], rows)
        ctx.write_csv(tables["summary"], summary_rows)
        mcc = [r for r in summary_rows if r["metric"] == "mcc" and r["stratum"] == "all"]
        ctx.write_csv(tables["mcc_by_k"], [{c: r[c] for c in ("model", "mode", "k", "noise", "perturbation",
                                                               "modality", "mean", "ci_low", "ci_high", "n")}
                                           for r in mcc])
        ctx.write_csv(tables["units"], infos)
        modalities = list(dict.fromkeys(r["modality"] for r in rows
                                        if r["modality"] not in ("*", CANCER_MODALITY)))
        figures = _figures(ctx, name, summary_rows, modalities, models, modes)
        stats = {}
        try:
            for m, entry in ctx.pool.summary().get("modalities", {}).items():
                stats[m] = {key: entry.get(key) for key in ("items", "mean_norm", "norm_of_mean", "mean_std")}
        except Exception as exc:  # pragma: no cover - never lose results to a summary problem
            log.warning("pool summary failed: %s", exc)
        mcc_table: dict[str, Any] = {}
        for r in mcc:
            if r["perturbation"] != "none":
                continue
            mcc_table.setdefault(r["model"], {}).setdefault(r["mode"], {}).setdefault(r["modality"], {})[
                str(r["k"])] = _clean(r["mean"])
        robustness: dict[str, Any] = {}
        for r in mcc:
            if r["perturbation"] == "none":
                continue
            robustness.setdefault(r["model"], {}).setdefault(r["mode"], {}).setdefault(r["modality"], {}) \
                .setdefault(str(r["noise"]), {})[str(r["k"])] = _clean(r["mean"])
        epochs = [i["epochs"] for i in infos if "epochs" in i]
        cancer: dict[str, Any] = {}
        for r in summary_rows:
            if r["modality"] == CANCER_MODALITY and r["perturbation"] == "none" and r["metric"] in ("accuracy", "mcc"):
                cancer.setdefault(r["model"], {}).setdefault(r["mode"], {}).setdefault(r["metric"], {})[
                    str(r["k"])] = _clean(r["mean"])
        summary = {
            "sampling": sampling, "sampler": sampler, "k": ks, "modes": modes, "models": models,
            "repeats": repeats, "n_per_k": self.n_per_k, "perturbations": list(self.perturbations or []),
            "modalities": modalities,
            "mcc": mcc_table,
            "mean_mcc": {f"{mo}/{md}/{m}": _clean(_nanmean([np.nan if x is None else x for x in v.values()]))
                         for mo, t in mcc_table.items() for md, t2 in t.items() for m, v in t2.items()},
            "robustness_mcc": robustness,
            "cancer_type": cancer,
            "embedding_stats": stats,
            "units": {"total": len(infos), "reused": reused, "computed": len(infos) - reused},
            "train_time_s": round(float(sum(i.get("train_s", 0.0) for i in infos if i.get("run_id"))), 2),
            "wall_s": round(wall, 2),
            "epochs_mean": _clean(float(np.mean(epochs))) if epochs else None,
            "note": ("MCC per modality over all test aggregates; strata 'absent'/'present' give specificity "
                     "and recall (MCC is undefined within a single-class stratum). Compare with the "
                     "per-modality mean norm / norm of the mean: centred embeddings hide presence (SPEC 2.5)."),
        }
        comparison = _paper_comparison(rows, modalities, ks, models, modes)
        return {"summary": summary, "tables": tables, "figures": figures, "paper_comparison": comparison}


def _clean(v: Any) -> Any:
    if isinstance(v, float) and not math.isfinite(v):
        return None
    return v


# ----------------------------------------------------------------------------- paper comparison

def _kind(modality: str) -> str:
    m = modality.lower()
    if "mut" in m or "maf" in m or "snv" in m:
        return "mutation"
    if any(s in m for s in ("text", "report", "annot", "sentence", "clinical", "note")):
        return "annotation"
    if "rna" in m or "expr" in m:
        return "rna"
    if any(s in m for s in ("wsi", "he", "image", "tile", "slide", "histo", "path")):
        return "image"
    return m


def _per_repeat_mean(rows: list[dict[str, Any]], **where: Any) -> dict[str, Any]:
    """mean/CI over repeats of the per-repeat average (over k) of the matching rows."""
    ks = where.pop("ks", None)
    per: dict[int, list[float]] = {}
    for r in rows:
        if all(r.get(key) == val for key, val in where.items()) and (ks is None or r["k"] in ks):
            if math.isfinite(r["value"]):
                per.setdefault(r["repeat"], []).append(r["value"])
    from fusionkit.metrics import metric_bounds

    return mean_ci([float(np.mean(v)) for v in per.values()], bounds=metric_bounds(where.get("metric", "")))


def _nanmean(values: list[float]) -> float:
    """Mean of the finite values; NaN (not a warning or an error) when there is none."""
    v = np.asarray(values, dtype=np.float64)
    v = v[np.isfinite(v)]
    return float(v.mean()) if v.size else float("nan")


def _paper_comparison(rows: list[dict[str, Any]], modalities: list[str], ks: list[int], models: list[str],
                      modes: list[str]) -> list[dict[str, Any]]:
    out: list[dict[str, Any]] = []
    base = dict(metric="mcc", stratum="all")
    note = ("paper: TCGA, 15,000 aggregates per k, n>=30 repeats; ours: this run's pool. Recognisability "
            "depends on each modality's mean offset/norm (SPEC 2.5), see summary.embedding_stats")
    kr = f"{min(ks)}..{max(ks)}" if len(ks) > 1 else str(ks[0])

    def add(experiment: str, modality: str, k: str, stats: dict[str, Any], paper: str, extra: str = "") -> None:
        if stats["n"] == 0:
            return
        out.append({"experiment": experiment, "metric": "MCC", "modality": modality, "k": k,
                    "ours_mean": _clean(stats["mean"]), "ours_ci_low": _clean(stats["ci_low"]),
                    "ours_ci_high": _clean(stats["ci_high"]), "paper": paper,
                    "note": (extra + "; " if extra else "") + note})

    if "deep" in models and "isolation" in modes:
        for m in modalities:
            add("recognizer deep, isolation", m, kr,
                _per_repeat_mean(rows, model="deep", mode="isolation", perturbation="none", modality=m, **base),
                "~0.9 (every modality, k 3..10)", "mean over k")
            add("recognizer deep, isolation", m, str(max(ks)),
                _per_repeat_mean(rows, model="deep", mode="isolation", perturbation="none", modality=m,
                                 k=max(ks), **base), "~0.9")
    if "deep" in models and "composite" in modes:
        for m in modalities:
            if _kind(m) == "annotation":
                add("recognizer deep, composite", m, kr,
                    _per_repeat_mean(rows, model="deep", mode="composite", perturbation="none", modality=m, **base),
                    "0.2-0.6 (composite weaker than isolation for text)", "mean over k")
    if "baseline" in models:
        mode = "isolation" if "isolation" in modes else modes[0]
        for m in modalities:
            paper = {"mutation": "< 0.8 at high k", "annotation": "< 0.6 at high k"}.get(_kind(m))
            if paper:
                add(f"recognizer baseline (logistic), {mode}", m, str(max(ks)),
                    _per_repeat_mean(rows, model="baseline", mode=mode, perturbation="none", modality=m,
                                     k=max(ks), **base), paper)
    if "deep" in models:
        mode = "isolation" if "isolation" in modes else modes[0]
        levels = sorted({r["noise"] for r in rows if isinstance(r["noise"], float) and r["perturbation"] != "none"})
        for m in modalities:
            if _kind(m) != "mutation":
                continue
            for target, paper in ((0.1, "> 0.8"), (0.5, "~0.6")):
                if not levels:
                    break
                level = min(levels, key=lambda x: abs(x - target))
                if abs(level - target) > 0.051:
                    continue
                add(f"robustness deep, {mode}, noise {level:g}", m, kr,
                    _per_repeat_mean(rows, model="deep", mode=mode, modality=m, noise=level, **base),
                    f"{paper} at {int(target * 100)}% noise", "trained clean, tested noisy; mean over k")
    return out


# ----------------------------------------------------------------------------- figures

def _figures(ctx: Any, name: str, summary_rows: list[dict[str, Any]], modalities: list[str], models: list[str],
             modes: list[str]) -> list[str]:
    try:
        import matplotlib

        matplotlib.use("Agg", force=False)
        import matplotlib.pyplot as plt
    except ImportError:  # pragma: no cover
        log.warning("matplotlib missing: no recognizer figures")
        return []
    figs: list[str] = []
    if not modalities:
        return figs
    by = {(r["model"], r["mode"], r["perturbation"], r["modality"], r["stratum"], r["metric"], r["k"]): r
          for r in summary_rows}
    ks = sorted({r["k"] for r in summary_rows})

    def series(model: str, mode: str, modality: str, pert: str = "none", stratum: str = "all",
               metric: str = "mcc") -> tuple[list[int], np.ndarray, np.ndarray, np.ndarray]:
        xs, ys, lo, hi = [], [], [], []
        for k in ks:
            r = by.get((model, mode, pert, modality, stratum, metric, k))
            if r is None or not math.isfinite(r["mean"]):
                continue
            xs.append(k)
            ys.append(r["mean"])
            lo.append(r["mean"] - r["ci_low"] if math.isfinite(r["ci_low"]) else 0.0)
            hi.append(r["ci_high"] - r["mean"] if math.isfinite(r["ci_high"]) else 0.0)
        return xs, np.asarray(ys), np.asarray(lo), np.asarray(hi)

    def grid(title: str) -> tuple[Any, list[Any]]:
        n = len(modalities)
        cols = min(4, n)
        rws = int(math.ceil(n / cols))
        fig, axes = plt.subplots(rws, cols, figsize=(3.4 * cols, 2.9 * rws), squeeze=False, sharey=True)
        flat = list(axes.ravel())
        for ax in flat[n:]:
            ax.axis("off")
        fig.suptitle(title, y=1.03)
        return fig, flat[:n]

    labels = {"deep": "DL", "baseline": "BL"}
    # 1. MCC vs k: deep vs baseline (each mode)
    fig, axes = grid("Recognizer MCC vs sample count (mean, 95% CI)")
    for ax, m in zip(axes, modalities):
        for model in models:
            for mode in modes:
                xs, ys, lo, hi = series(model, mode, m)
                if xs:
                    ax.errorbar(xs, ys, yerr=[lo, hi], marker="o", ms=3, capsize=2,
                                linestyle="-" if model == "deep" else "--",
                                label=f"{labels.get(model, model)} {mode}")
        ax.set_title(m)
        ax.set_xlabel("sample count k")
        ax.set_ylim(-0.05, 1.05)
        ax.grid(alpha=0.3)
    axes[0].set_ylabel("MCC")
    axes[0].legend(fontsize=7)
    figs.append(str(ctx.save_figure(fig, f"{name}/mcc_by_k.png").relative_to(ctx.out_dir)))
    # 2. isolation vs composite (each model)
    if len(modes) > 1:
        fig, axes = grid("Isolation vs composite models (MCC)")
        for ax, m in zip(axes, modalities):
            for model in models:
                for mode, style in (("isolation", "-"), ("composite", ":")):
                    xs, ys, lo, hi = series(model, mode, m)
                    if xs:
                        ax.errorbar(xs, ys, yerr=[lo, hi], marker="s" if mode == "composite" else "o", ms=3,
                                    capsize=2, linestyle=style, label=f"{labels.get(model, model)} {mode}")
            ax.set_title(m)
            ax.set_xlabel("sample count k")
            ax.set_ylim(-0.05, 1.05)
            ax.grid(alpha=0.3)
        axes[0].set_ylabel("MCC")
        axes[0].legend(fontsize=7)
        figs.append(str(ctx.save_figure(fig, f"{name}/isolation_vs_composite.png").relative_to(ctx.out_dir)))
    # 3. robustness: MCC vs noise fraction, one line per k (deep if present)
    noisy = [r for r in summary_rows if r["perturbation"] != "none" and isinstance(r["noise"], float)
             and r["metric"] == "mcc" and r["stratum"] == "all"]
    if noisy:
        model = "deep" if "deep" in models else models[0]
        fig, axes = grid(f"Robustness ({labels.get(model, model)}, trained clean, tested noisy): MCC vs noise")
        clean = {(r["mode"], r["modality"], r["k"]): r["mean"] for r in summary_rows
                 if r["model"] == model and r["perturbation"] == "none" and r["metric"] == "mcc"
                 and r["stratum"] == "all"}
        for ax, m in zip(axes, modalities):
            for mode in modes:
                for k in ks:
                    pts = sorted((r["noise"], r["mean"]) for r in noisy
                                 if r["model"] == model and r["mode"] == mode and r["modality"] == m and r["k"] == k)
                    if not pts:
                        continue
                    if (mode, m, k) in clean:
                        pts = [(0.0, clean[(mode, m, k)])] + pts
                    ax.plot([p[0] for p in pts], [p[1] for p in pts], marker="o", ms=3,
                            linestyle="-" if mode == "isolation" else ":", label=f"k={k} {mode}")
            ax.set_title(m)
            ax.set_xlabel("noise fraction")
            ax.set_ylim(-0.05, 1.05)
            ax.grid(alpha=0.3)
        axes[0].set_ylabel("MCC")
        axes[0].legend(fontsize=6, ncol=2)
        figs.append(str(ctx.save_figure(fig, f"{name}/robustness.png").relative_to(ctx.out_dir)))
    # 4. strata: recall on present samples, specificity on absent samples
    fig, axes = grid("Stratified: recall (present, solid) and specificity (absent, dashed)")
    for ax, m in zip(axes, modalities):
        for model in models:
            mode = modes[0]
            for stratum, metric, style in (("present", "recall", "-"), ("absent", "specificity", "--")):
                xs, ys, lo, hi = series(model, mode, m, stratum=stratum, metric=metric)
                if xs:
                    ax.errorbar(xs, ys, yerr=[lo, hi], marker="o", ms=3, capsize=2, linestyle=style,
                                label=f"{labels.get(model, model)} {metric}")
        ax.set_title(m)
        ax.set_xlabel("sample count k")
        ax.set_ylim(-0.05, 1.05)
        ax.grid(alpha=0.3)
    axes[0].legend(fontsize=7)
    figs.append(str(ctx.save_figure(fig, f"{name}/strata.png").relative_to(ctx.out_dir)))
    return figs


# ----------------------------------------------------------------------------- registered tasks

class RecognizerTask(_RecognizerBase):
    """Deep recognizer: which modalities (and how many draws) are inside an aggregate.

    Parameters: ``sampling`` recipe sampling entry (modality-level or
    cancer-specific; default: the only such entry); ``k`` sample counts
    (default: the sampler's); ``n_per_k`` aggregates per k (default: the
    sampler's ``n``); ``n_repeats`` (new data, split and initialisation each);
    ``modes`` isolation and/or composite; ``perturbations`` recipe
    perturbation names for the robustness test (train clean, test perturbed);
    ``baseline`` also run the logistic baseline on the same data; network:
    ``hidden`` trunk widths, ``head_hidden`` width of each modality branch (0:
    linear), ``dropout``, ``loss`` mse|mae|bce, ``head_weights`` {modality:
    weight}, ``predict_counts`` (+ ``count_weight``), ``predict_cancer`` (+
    ``cancer_weight``); training: ``lr``, ``batch_size``, ``max_epochs``,
    ``patience``, ``weight_decay``, ``standardize`` inputs, ``device``
    auto|cpu|cuda, ``threads`` torch threads while training (default 1: the
    fastest for these small nets; 0 leaves torch's setting); evaluation: ``threshold``, ``drop_empty`` (leave out test
    aggregates with no real draw left), ``test_fraction``, ``val_fraction``.
    """

    group = "recognizer"

    def __init__(self, sampling: str = "", k: Any = None, n_per_k: int | None = None, n_repeats: int = 30,
                 modes: list | tuple = ("isolation", "composite"), perturbations: list | tuple = (),
                 baseline: bool = False, hidden: list | tuple = (512, 256), head_hidden: int = 32, dropout: float = 0.2, loss: str = "mse",
                 head_weights: dict | None = None, predict_counts: bool = False, count_weight: float = 1.0,
                 predict_cancer: bool = False, cancer_weight: float = 1.0, lr: float = 1e-3,
                 batch_size: int = 256, max_epochs: int = 100, patience: int = 8, weight_decay: float = 0.0,
                 standardize: bool = True, device: str = "auto", threshold: float = 0.5, drop_empty: bool = True,
                 test_fraction: float = 0.2, val_fraction: float = 0.2, baseline_C: float = 1.0,
                 threads: int = 1):
        self.sampling = sampling
        self.k = k
        self.n_per_k = n_per_k
        self.n_repeats = n_repeats
        self.modes = modes
        self.perturbations = perturbations
        self.baseline = baseline
        self.hidden = hidden
        self.head_hidden = head_hidden
        self.dropout = dropout
        self.loss = loss
        self.head_weights = head_weights
        self.predict_counts = predict_counts
        self.count_weight = count_weight
        self.predict_cancer = predict_cancer
        self.cancer_weight = cancer_weight
        self.lr = lr
        self.batch_size = batch_size
        self.max_epochs = max_epochs
        self.patience = patience
        self.weight_decay = weight_decay
        self.standardize = standardize
        self.device = device
        self.threshold = threshold
        self.drop_empty = drop_empty
        self.test_fraction = test_fraction
        self.val_fraction = val_fraction
        self.baseline_C = baseline_C
        self.threads = threads

    def _models(self) -> list[str]:
        return ["deep", "baseline"] if self.baseline else ["deep"]

    def _device(self, ctx: Any) -> str:
        if self.device != "auto":
            return self.device
        workers = int(getattr(getattr(ctx, "executor", None), "workers", 1) or 1)
        return "cpu" if workers > 1 else ctx.device

    def _model_factory(self, model: str, ctx: Any, modalities: list[str], n_classes: int, seed: int,
                       k_scale: float) -> Any:
        if model == "baseline":
            return LogisticBaseline(C=self.baseline_C, n_classes=n_classes, seed=seed % (2 ** 31))
        hw = dict(self.head_weights or {})
        weights = np.asarray([float(hw.get(m, 1.0)) for m in modalities], dtype=np.float32)
        if (weights < 0).any() or weights.sum() <= 0:
            raise DataError(f"head_weights must be >= 0 and not all zero, got {hw}")
        n_mod = len(modalities)
        return DeepRecognizer(n_mod, hidden=list(self.hidden), head_hidden=self.head_hidden, dropout=self.dropout,
                              loss=self.loss, head_weights=weights, predict_counts=self.predict_counts,
                              count_weight=self.count_weight, n_classes=n_classes, cancer_weight=self.cancer_weight,
                              lr=self.lr, batch_size=self.batch_size, max_epochs=self.max_epochs,
                              patience=self.patience, weight_decay=self.weight_decay, standardize=self.standardize,
                              device=self._device(ctx), seed=seed, k_scale=k_scale, threads=self.threads)


class RecognizerBaselineTask(_RecognizerBase):
    """Logistic baseline recognizer ("MCRM"): one logistic regression per modality, same protocol.

    Parameters as ``recognizer`` (``sampling``, ``k``, ``n_per_k``, ``n_repeats``,
    ``modes``, ``perturbations``, ``predict_cancer``, ``threshold``,
    ``drop_empty``, ``test_fraction``, ``val_fraction``) plus ``C`` (inverse
    regularisation) and ``max_iter``. Inputs are standardised on the training
    part; the model learns from train + validation (it has no early stopping).
    """

    group = "recognizer"
    models = ("baseline",)

    def __init__(self, sampling: str = "", k: Any = None, n_per_k: int | None = None, n_repeats: int = 30,
                 modes: list | tuple = ("isolation",), perturbations: list | tuple = (), predict_cancer: bool = False,
                 C: float = 1.0, max_iter: int = 300, threshold: float = 0.5, drop_empty: bool = True,
                 test_fraction: float = 0.2, val_fraction: float = 0.2):
        self.sampling = sampling
        self.k = k
        self.n_per_k = n_per_k
        self.n_repeats = n_repeats
        self.modes = modes
        self.perturbations = perturbations
        self.predict_cancer = predict_cancer
        self.C = C
        self.max_iter = max_iter
        self.threshold = threshold
        self.drop_empty = drop_empty
        self.test_fraction = test_fraction
        self.val_fraction = val_fraction

    def _model_factory(self, model: str, ctx: Any, modalities: list[str], n_classes: int, seed: int,
                       k_scale: float) -> Any:
        return LogisticBaseline(C=self.C, max_iter=self.max_iter, n_classes=n_classes, seed=seed % (2 ** 31))


@hookimpl
def register_tasks(register):
    register("recognizer", RecognizerTask, tags=["recognizer"])
    register("recognizer-baseline", RecognizerBaselineTask, tags=["recognizer"])
