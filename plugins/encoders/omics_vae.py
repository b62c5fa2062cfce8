"""Built-in omics encoders (SPEC 2.1): variational autoencoders for RNA
expression and for the patient x gene mutation one-hot matrix.

* ``rna-vae``: Gaussian reconstruction of robust min-max scaled expression (each gene's
  10th..90th percentile mapped to [0, 1], values beyond saturate; ``clip_quantile``) (variance
  calibrated to the MSE by default, plain summed MSE as an option);
  KL warm-up (beta starts at 0 and rises by ``kappa`` per epoch, so kappa=1
  gives one warm-up epoch); two phases: pre-training (warm-up, ``lr``) then
  fine-tuning (full beta, ``finetune_lr``). The min-max scaler is part of the
  saved state.
* ``mutation-vae``: Bernoulli (BCE) reconstruction of the binary one-hot
  matrix; batch 256, at most 50 epochs, early stopping (patience 10) on a
  validation split, best weights restored.

The embedding is the encoder mean (mu), latent width 768 by default.
Training is deterministic for a seed on CPU: weights, dropout, shuffling,
the validation split and the reparameterisation noise all come from that
seed, without touching torch's global random state.

torch is imported inside methods only (start-up stays light).
"""

from __future__ import annotations

import json
import logging
import math
from pathlib import Path
from typing import Any

import numpy as np

from fusionkit import hookimpl
from fusionkit import Encoder, ModalityData
from fusionkit import DataError, OneOf, Range

from fusionkit_plugins.encoders.features import align_features
from fusionkit_plugins.encoders.vae_networks import ARCHITECTURES, build_vae, paper_hidden

log = logging.getLogger(__name__)

__all__ = ["RnaVAE", "MutationVAE", "beta_schedule", "minmax_bounds"]

STATE_FILE = "vae_state.pt"
CONFIG_FILE = "vae_config.json"


def minmax_bounds(X: np.ndarray, clip_quantile: float = 0.0) -> tuple[np.ndarray, np.ndarray]:
    """Per-feature ``(min, range)`` of a min-max scaler, float32; a zero range becomes 1.

    With ``clip_quantile`` q > 0 the bounds are the q and 1 - q quantiles instead of the extremes
    (a robust min-max scaler): on real expression z-scores one outlier per gene (up to 3.7e4 in
    ../shared/data) otherwise squeezes every other patient's value into the bottom 0.1 % of [0, 1]
    and the VAE's reconstruction loss cannot see them (docs/RESULTS.md, Issue 15).
    """
    if clip_quantile > 0:
        lo, hi = np.quantile(X, [clip_quantile, 1.0 - clip_quantile], axis=0)
    else:
        lo, hi = X.min(axis=0), X.max(axis=0)
    rng_ = (hi - lo).astype(np.float32)
    return lo.astype(np.float32), np.where(rng_ > 0, rng_, 1.0).astype(np.float32)


def beta_schedule(n_epochs: int, kappa: float = 1.0, beta_max: float = 1.0, beta_start: float = 0.0) -> list[float]:
    """KL weight per epoch: ``min(beta_max, beta_start + kappa * epoch)``.

    With the paper's values (start 0, kappa 1) that is ``[0, 1, 1, ...]``: one
    warm-up epoch. ``kappa <= 0`` keeps beta at ``beta_start`` (no warm-up if
    ``beta_start == beta_max``).
    """
    return [float(min(beta_max, beta_start + kappa * e)) for e in range(int(n_epochs))]


class _OmicsVAE(Encoder):
    """Shared VAE machinery (not registered itself)."""

    input_kind = "matrix"
    trainable = True
    shard_size = 8192
    #: "mse" (Gaussian) or "bce" (Bernoulli)
    likelihood: str = "mse"
    #: min-max scale inputs to [0, 1] (kept in the state)
    scale_inputs: bool = True
    #: robust min-max bounds (q..1-q quantiles); 0 = plain min-max (rna-vae takes it as a parameter)
    clip_quantile: float = 0.0
    #: declared parameter constraints (checked by ``fusionkit validate``): an untrained VAE is never used
    constraints = {"latent_dim": Range(1, integer=True), "epochs": Range(1, integer=True),
                   "finetune_epochs": Range(0, integer=True), "batch_size": Range(1, integer=True),
                   "lr": Range(0, lo_open=True), "finetune_lr": Range(0, lo_open=True),
                   "patience": Range(0, integer=True), "val_fraction": Range(0, 1, hi_open=True),
                   "dropout": Range(0, 1, hi_open=True), "beta_max": Range(0), "kappa": Range(0),
                   "clip_quantile": Range(0, 0.5, hi_open=True), "val_criterion": OneOf("mean", "median")}

    # parameters every subclass shares (subclasses declare them in __init__)
    latent_dim: int
    hidden_dims: Any
    epochs: int
    finetune_epochs: int
    batch_size: int
    lr: float
    finetune_lr: float
    kappa: float
    beta_max: float
    patience: int
    min_delta: float
    val_fraction: float
    dropout: float
    seed: int | None
    device: str

    # ------------------------------------------------------------------ helpers
    @property
    def output_dim(self) -> int:
        return int(self.latent_dim)

    def _arch(self) -> str:
        arch = getattr(self, "architecture", "mlp") or "mlp"
        if arch not in ARCHITECTURES:
            raise DataError(f"{self._name()}: unknown architecture {arch!r}", where="architecture",
                            hint=f"one of: {', '.join(ARCHITECTURES)}")
        return arch

    def _hidden(self, in_dim: int | None = None) -> list[int]:
        h = self.hidden_dims
        if h is None or h == "auto":
            if self._arch() != "paper":
                raise DataError(f"{self._name()}: hidden_dims 'auto' is only defined for architecture: paper",
                                where="hidden_dims", hint="give a list of widths, e.g. [1024]")
            return paper_hidden(int(in_dim if in_dim is not None else self.in_dim_))
        if isinstance(h, (int, np.integer)):
            h = [int(h)]
        h = [int(x) for x in (h or [])]
        if any(x < 1 for x in h):
            raise DataError(f"hidden_dims must be positive integers, got {self.hidden_dims!r}")
        return h

    def _resolve_seed(self, ctx: Any) -> int:
        if self.seed is not None:
            return int(self.seed)
        if ctx is not None and getattr(ctx, "seed", None) is not None:
            return int(ctx.seed)
        return 0

    def _resolve_device(self, ctx: Any) -> str:
        import torch

        dev = (self.device or "auto").lower()
        if dev == "auto":
            dev = getattr(ctx, "device", None) or ("cuda" if torch.cuda.is_available() else "cpu")
        if dev.startswith("cuda") and not torch.cuda.is_available():
            raise DataError(f"device {self.device!r} requested but CUDA is not available",
                            hint="use device: auto or cpu")
        return dev

    def _matrix(self, data: ModalityData | np.ndarray) -> tuple[np.ndarray, list[str] | None]:
        if isinstance(data, ModalityData):
            if data.kind not in ("matrix", "embedding"):
                raise DataError(f"{self._name()} needs a matrix, got {data.kind!r} items of modality "
                                f"{data.modality!r}", hint="use a reader that yields a feature matrix")
            X, names = data.data, data.feature_names
        else:
            X, names = data, None
        X = np.asarray(X, dtype=np.float32)
        if X.ndim != 2:
            raise DataError(f"{self._name()} needs a 2-D matrix (items x features), got shape {X.shape}")
        if not np.isfinite(X).all():
            bad = int((~np.isfinite(X)).sum())
            raise DataError(f"{self._name()}: input has {bad} NaN/inf values",
                            hint="impute or drop missing values in the reader before encoding")
        return X, (list(names) if names is not None else None)

    def _name(self) -> str:
        return {"RnaVAE": "rna-vae", "MutationVAE": "mutation-vae"}.get(type(self).__name__, type(self).__name__)

    def _prepare(self, X: np.ndarray) -> np.ndarray:
        """Subclass hook: validate / binarise raw values before scaling."""
        return X

    def _align(self, X: np.ndarray, names: list[str] | None) -> np.ndarray:
        """Reorder columns to the fitted feature order; missing features take the fitted minimum."""
        fill = self.min_.astype(np.float32) if self.scale_inputs else np.zeros(self.in_dim_, dtype=np.float32)
        out, missing = align_features(X, names, self.feature_names_, self.in_dim_, fill, self._name())
        if missing:
            log.warning("%s: %d fitted features missing from input; filled with the fitted minimum",
                        self._name(), missing)
        return out

    def _scale(self, X: np.ndarray) -> np.ndarray:
        if not self.scale_inputs:
            return X
        Xs = ((X - self.min_[None, :]) / self.range_[None, :]).astype(np.float32)
        if self.clip_quantile > 0:
            np.clip(Xs, 0.0, 1.0, out=Xs)  # robust range: values beyond the fitted quantiles saturate
        return Xs

    # ------------------------------------------------------------------ training
    def _phases(self) -> list[dict[str, Any]]:
        phases = [{"name": "pretrain", "epochs": int(self.epochs), "lr": float(self.lr),
                   "betas": beta_schedule(self.epochs, self.kappa, self.beta_max)}]
        if int(self.finetune_epochs) > 0:
            phases.append({"name": "finetune", "epochs": int(self.finetune_epochs),
                           "lr": float(self.finetune_lr), "betas": [float(self.beta_max)] * int(self.finetune_epochs)})
        return phases

    def fit(self, data: ModalityData | np.ndarray, ctx: Any = None) -> "_OmicsVAE":
        import torch

        X, names = self._matrix(data)
        X = self._prepare(X)
        n, d = X.shape
        if n < 2:
            raise DataError(f"{self._name()} needs at least 2 items to fit, got {n}")
        self.in_dim_ = int(d)
        self.feature_names_ = names
        if self.scale_inputs:
            self.min_, self.range_ = minmax_bounds(X, float(self.clip_quantile))
        seed = self._resolve_seed(ctx)
        device = self._resolve_device(ctx)
        self.seed_used_ = seed
        Xs = self._scale(X)

        split = np.random.default_rng(seed).permutation(n)
        n_val = int(round(float(self.val_fraction) * n)) if self.val_fraction and n >= 10 else 0
        val_idx, tr_idx = np.sort(split[:n_val]), np.sort(split[n_val:])

        cuda_devices = [torch.device(device).index or 0] if device.startswith("cuda") else []
        with torch.random.fork_rng(devices=cuda_devices):
            torch.manual_seed(seed)
            gen = torch.Generator().manual_seed(seed)
            model = build_vae(self._arch(), d, self._hidden(d), int(self.latent_dim), float(self.dropout)).to(device)
            xt = torch.from_numpy(Xs[tr_idx]).to(device)
            xv = torch.from_numpy(Xs[val_idx]).to(device) if n_val else None
            self.history_ = []
            self.stopped_early_ = False
            for phase in self._phases():
                self._run_phase(model, phase, xt, xv, gen, device)
        self.model_ = model.cpu().eval()
        return self

    def _loss(self, recon, x, mu, logvar, beta: float):
        import torch
        import torch.nn.functional as F

        likelihood = getattr(self, "reconstruction", None) or self.likelihood
        if likelihood == "bce":
            rec = F.binary_cross_entropy_with_logits(recon, x, reduction="sum") / x.shape[0]
        elif likelihood == "gaussian":
            # Gaussian with the optimal (calibrated) shared variance sigma^2 = MSE (sigma-VAE):
            # -log p = D/2 * log(MSE) + const per item. Unlike unit-variance MSE on [0, 1]-scaled
            # inputs, the KL term cannot swamp the reconstruction and collapse the posterior.
            mse = F.mse_loss(recon, x, reduction="mean")
            rec = 0.5 * x.shape[1] * torch.log(mse + 1e-6)
        elif likelihood == "gaussian-feature":
            # a calibrated variance per feature (sigma_j^2 = that feature's MSE in the batch): the loss
            # no longer depends on each feature's scale, so min-max scaling by outlier-driven ranges
            # does not decide which genes the latent space spends its capacity on (issue 15)
            mse_j = ((recon - x) ** 2).mean(dim=0)
            rec = 0.5 * torch.log(mse_j + 1e-6).sum()
        elif likelihood == "mse":
            rec = F.mse_loss(recon, x, reduction="sum") / x.shape[0]
        else:
            raise DataError(f"{self._name()}: reconstruction must be gaussian, gaussian-feature, mse or bce, got {likelihood!r}")
        kl = -0.5 * (1 + logvar - mu.pow(2) - logvar.exp()).sum() / x.shape[0]
        return rec + float(getattr(self, "kl_weight", 1.0)) * beta * kl, rec, kl

    def _val_criterion(self) -> str:
        crit = getattr(self, "val_criterion", "mean") or "mean"
        if crit not in ("mean", "median"):
            raise DataError(f"{self._name()}: val_criterion must be mean or median, got {crit!r}",
                            where="val_criterion", hint="median: the median item's validation loss")
        return crit

    def _item_losses(self, recon, x, mu, logvar, beta: float):
        """Per-item validation loss (reconstruction + weighted KL of each item): bce and mse only;
        the calibrated-variance likelihoods are defined per batch, so their items share the mean."""
        import torch.nn.functional as F

        likelihood = getattr(self, "reconstruction", None) or self.likelihood
        if likelihood == "bce":
            rec = F.binary_cross_entropy_with_logits(recon, x, reduction="none").sum(dim=1)
        elif likelihood == "mse":
            rec = F.mse_loss(recon, x, reduction="none").sum(dim=1)
        else:
            raise DataError(f"{self._name()}: val_criterion: median needs the bce or mse likelihood, "
                            f"not {likelihood!r}", where="val_criterion", hint="use val_criterion: mean")
        kl = -0.5 * (1 + logvar - mu.pow(2) - logvar.exp()).sum(dim=1)
        return rec + float(getattr(self, "kl_weight", 1.0)) * beta * kl

    def _run_phase(self, model, phase: dict[str, Any], xt, xv, gen, device: str) -> None:
        import copy

        import torch

        if phase["epochs"] <= 0:
            return
        opt = torch.optim.Adam(model.parameters(), lr=phase["lr"])
        bs = max(1, int(self.batch_size))
        n = xt.shape[0]
        best, best_state, bad = math.inf, None, 0
        for epoch, beta in enumerate(phase["betas"]):
            model.train()
            perm = torch.randperm(n, generator=gen)
            tot = rec_sum = kl_sum = 0.0
            for start in range(0, n, bs):
                idx = perm[start:start + bs].to(device)
                xb = xt[idx]
                noise = torch.randn(xb.shape[0], int(self.latent_dim), generator=gen).to(device)
                recon, mu, logvar = model(xb, noise)
                loss, rec, kl = self._loss(recon, xb, mu, logvar, beta)
                opt.zero_grad(set_to_none=True)
                loss.backward()
                opt.step()
                tot += float(loss.detach()) * xb.shape[0]
                rec_sum += float(rec.detach()) * xb.shape[0]
                kl_sum += float(kl.detach()) * xb.shape[0]
            row = {"phase": phase["name"], "epoch": epoch, "beta": beta, "train_loss": tot / n,
                   "train_recon": rec_sum / n, "train_kl": kl_sum / n}
            if xv is not None and xv.shape[0]:
                model.eval()
                with torch.no_grad():
                    # monitored on the target objective (beta_max), so epochs compare across the warm-up
                    mu, logvar = model.encode(xv)
                    zero = torch.zeros_like(mu)
                    recon, mu, logvar = model(xv, zero)
                    val, vrec, vkl = self._loss(recon, xv, mu, logvar, float(self.beta_max))
                    if self._val_criterion() == "median":  # robust to a few items that dominate the mean
                        row["val_mean_loss"] = float(val)
                        val = self._item_losses(recon, xv, mu, logvar, float(self.beta_max)).median()
                row.update(val_loss=float(val), val_recon=float(vrec), val_kl=float(vkl))
                if float(val) < best - float(self.min_delta):
                    best, bad = float(val), 0
                    best_state = copy.deepcopy(model.state_dict())
                else:
                    bad += 1
                self.history_.append(row)
                if int(self.patience) > 0 and bad >= int(self.patience):
                    self.stopped_early_ = True
                    log.info("%s: early stop in %s at epoch %d (best val %.4f)", self._name(),
                             phase["name"], epoch, best)
                    break
            else:
                self.history_.append(row)
        if best_state is not None:
            model.load_state_dict(best_state)

    # ------------------------------------------------------------------ encode
    def encode(self, data: ModalityData | np.ndarray, ctx: Any = None) -> np.ndarray:
        import torch

        if not hasattr(self, "model_"):
            raise DataError(f"{self._name()} must be fitted (or loaded) before encode",
                            hint="call fit(data) or load(folder) first")
        X, names = self._matrix(data)
        X = self._prepare(X)
        X = self._scale(self._align(X, names))
        device = self._resolve_device(ctx)
        model = self.model_.to(device).eval()
        out = np.empty((X.shape[0], int(self.latent_dim)), dtype=np.float32)
        with torch.no_grad():
            for start in range(0, X.shape[0], 4096):
                xb = torch.from_numpy(X[start:start + 4096]).to(device)
                mu, _ = model.encode(xb)
                out[start:start + xb.shape[0]] = mu.float().cpu().numpy()
        self.model_ = model.cpu()
        return out

    # ------------------------------------------------------------------ state
    def save(self, path: str) -> None:
        import torch

        if not hasattr(self, "model_"):
            raise DataError(f"{self._name()}: nothing to save, the encoder is not fitted")
        folder = Path(path)
        folder.mkdir(parents=True, exist_ok=True)
        state = {
            "state_dict": self.model_.state_dict(),
            "in_dim": self.in_dim_,
            "feature_names": self.feature_names_,
            "config": {k: (list(v) if isinstance(v, tuple) else v) for k, v in self.get_params().items()},
            "hidden": self._hidden(),
            "seed_used": getattr(self, "seed_used_", None),
        }
        if self.scale_inputs:
            state["scaler_min"] = torch.from_numpy(self.min_)
            state["scaler_range"] = torch.from_numpy(self.range_)
        torch.save(state, folder / STATE_FILE)
        meta = {"encoder": self._name(), "in_dim": self.in_dim_, "config": state["config"],
                "history": getattr(self, "history_", []), "stopped_early": getattr(self, "stopped_early_", None)}
        (folder / CONFIG_FILE).write_text(json.dumps(meta, indent=1, default=str))

    def load(self, path: str) -> "_OmicsVAE":
        import torch

        file = Path(path) / STATE_FILE
        if not file.is_file():
            raise DataError(f"{self._name()}: no saved state at {file}", where=str(path),
                            hint="fit the encoder and save() it into this folder first")
        state = torch.load(file, map_location="cpu", weights_only=True)
        cfg = state["config"]
        for key in ("latent_dim", "hidden_dims", "dropout", "architecture", "clip_quantile"):
            if key in cfg:
                setattr(self, key, cfg[key])
        if self.scale_inputs and "clip_quantile" not in cfg:
            self.clip_quantile = 0.0  # a state saved before robust scaling existed: plain min-max
        self.in_dim_ = int(state["in_dim"])
        self.feature_names_ = state.get("feature_names")
        if self.scale_inputs:
            self.min_ = state["scaler_min"].numpy().astype(np.float32)
            self.range_ = state["scaler_range"].numpy().astype(np.float32)
        model = build_vae(self._arch(), self.in_dim_, list(state["hidden"]), int(self.latent_dim),
                          float(self.dropout))
        model.load_state_dict(state["state_dict"])
        self.model_ = model.eval()
        return self


class RnaVAE(_OmicsVAE):
    """RNA-seq VAE: min-max scaled input, Gaussian reconstruction, KL warm-up, pre-train + fine-tune.

    Parameters: ``latent_dim`` (768), ``hidden_dims`` (encoder hidden widths,
    mirrored by the decoder), ``epochs`` (pre-training epochs with the beta
    warm-up), ``finetune_epochs`` (epochs at full beta with ``finetune_lr``),
    ``batch_size``, ``lr``, ``kappa`` (beta increase per epoch; 1 = one
    warm-up epoch), ``beta_max``, ``patience`` (early stopping on the
    validation split, 0 = off), ``min_delta``, ``val_fraction``, ``dropout``,
    ``clip_quantile`` (robust min-max scaling: each gene's range is its q..1-q quantiles over the
    training items and values beyond saturate at 0 or 1; 0 = plain min-max; default 0.1, chosen by
    the linear probe on ../shared/data: docs/RESULTS.md, Issue 15),
    ``reconstruction`` (``gaussian``: Gaussian likelihood with a calibrated
    shared variance, the default; ``mse``: unit-variance Gaussian, i.e. plain
    summed MSE, which on [0, 1]-scaled inputs lets the KL term collapse most
    latent dimensions), ``seed`` (None = the run's seed), ``device`` (auto|cpu|cuda).
    """

    modality = "rna"
    likelihood = "mse"
    scale_inputs = True
    card = {"licence": "MIT", "gated": False, "weights_source": "trained on your data",
            "params": None, "dim": 768, "tags": ["vae", "rna", "trainable"]}

    def __init__(self, latent_dim: int = 768, hidden_dims: tuple = (1024,), epochs: int = 30,
                 finetune_epochs: int = 10, batch_size: int = 256, lr: float = 1e-3,
                 finetune_lr: float = 1e-4, kappa: float = 1.0, beta_max: float = 1.0,
                 patience: int = 10, min_delta: float = 0.0, val_fraction: float = 0.1,
                 dropout: float = 0.0, reconstruction: str = "gaussian", seed: int | None = None,
                 device: str = "auto", architecture: str = "mlp", kl_weight: float = 1.0,
                 clip_quantile: float = 0.1):
        self.latent_dim = latent_dim
        self.hidden_dims = hidden_dims
        self.epochs = epochs
        self.finetune_epochs = finetune_epochs
        self.batch_size = batch_size
        self.lr = lr
        self.finetune_lr = finetune_lr
        self.kappa = kappa
        self.beta_max = beta_max
        self.patience = patience
        self.min_delta = min_delta
        self.val_fraction = val_fraction
        self.dropout = dropout
        self.reconstruction = reconstruction
        self.seed = seed
        self.device = device
        self.architecture = architecture
        self.kl_weight = kl_weight
        self.clip_quantile = clip_quantile


class MutationVAE(_OmicsVAE):
    """Somatic-mutation VAE on the patient x gene one-hot matrix (Bernoulli/BCE reconstruction).

    Paper defaults: batch 256, at most 50 epochs, early stopping with patience
    10 on a validation split (best weights restored), latent 768. Inputs are
    binarised (``binarize``: value > 0 -> 1); with ``binarize: false`` they
    must already lie in [0, 1].

    The encoder and decoder are linear by default (``hidden_dims: []``: mu and
    log-variance are affine maps of the one-hot row; the decoder is one affine map
    to the gene logits). On ~2,000 real patients x ~5,700 genes a 1024-wide hidden
    layer memorises the training patients within two epochs (validation BCE 5x
    training), early stopping keeps a barely trained encoder, and its embeddings
    probe at 0.51 macro-F1 against 0.65 for PCA-256 of the same matrix; the linear
    VAE generalises (validation BCE 1.3x training) and probes at 0.66
    (docs/RESULTS.md, Issue 15). Give ``hidden_dims: [1024]`` for the old network.

    Early stopping watches the *median* patient's validation loss (``val_criterion:
    median``; ``mean`` for the old criterion). The mean validation BCE is dominated by a
    few hypermutated patients (thousands of mutated genes each), so with the mean the epoch
    kept depended on which of them the seed put in the validation split: on every real
    patient, seed 0 kept epoch 44 (probe 0.660), seed 7 stopped by epoch 29 (0.627, below
    PCA-256's 0.649). With the median both train to epoch 49 and probe at 0.656 / 0.673.
    """

    modality = "mutation"
    likelihood = "bce"
    scale_inputs = False
    card = {"licence": "MIT", "gated": False, "weights_source": "trained on your data",
            "params": None, "dim": 768, "tags": ["vae", "mutation", "trainable"]}

    def __init__(self, latent_dim: int = 768, hidden_dims: tuple = (), epochs: int = 50,
                 batch_size: int = 256, lr: float = 1e-3, kappa: float = 1.0, beta_max: float = 1.0,
                 patience: int = 10, min_delta: float = 0.0, val_fraction: float = 0.1,
                 dropout: float = 0.0, binarize: bool = True, seed: int | None = None,
                 device: str = "auto", architecture: str = "mlp", kl_weight: float = 1.0,
                 val_criterion: str = "median"):
        self.latent_dim = latent_dim
        self.hidden_dims = hidden_dims
        self.epochs = epochs
        self.batch_size = batch_size
        self.lr = lr
        self.kappa = kappa
        self.val_criterion = val_criterion
        self.beta_max = beta_max
        self.patience = patience
        self.min_delta = min_delta
        self.val_fraction = val_fraction
        self.dropout = dropout
        self.binarize = binarize
        self.seed = seed
        self.device = device
        self.architecture = architecture
        self.kl_weight = kl_weight

    finetune_epochs = 0
    finetune_lr = 0.0

    def _prepare(self, X: np.ndarray) -> np.ndarray:
        if self.binarize:
            return (X > 0).astype(np.float32)
        if X.size and (X.min() < 0 or X.max() > 1):
            raise DataError("mutation-vae: values must lie in [0, 1] for the Bernoulli likelihood "
                            f"(got {X.min():g}..{X.max():g})", hint="set binarize: true, or pass a one-hot matrix")
        return X


@hookimpl
def register_encoders(register):
    register("rna-vae", RnaVAE, modality="rna", dim=768, licence="MIT", gated=False,
             weights_source="trained on your data", input_kind="matrix",
             params="depends on input width (~4.7 M for 1,550 genes)",
             tags=["vae", "trainable"])
    register("mutation-vae", MutationVAE, modality="mutation", dim=768, licence="MIT", gated=False,
             weights_source="trained on your data", input_kind="matrix",
             params="depends on input width (~5.7 M for 2,000 genes)",
             tags=["vae", "trainable"])
