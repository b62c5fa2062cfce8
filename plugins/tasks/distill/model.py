"""Teacher and student networks, their losses and their training loops (torch inside functions).

Nothing here imports torch at module level: the network classes are built on
first use by :func:`nets` (cached), the losses import torch when called. The
pieces, in the words of the seed article (SPEC 3):

* **bag encoders**: gated attention-MIL pooling (Ilse et al. 2018) for bags of
  tiles / sentences; a linear layer for one-vector modalities (RNA, mutation);
  for the student, *informative token aggregation* over prototypes.
* **disentangled subspaces**: every modality is projected into a tumour (T)
  and a microenvironment (M) subspace; :func:`disentangle_loss` keeps T and M
  apart (squared cosine = orthogonality per patient, or batch cross-correlation
  = decorrelation).
* **selective fusion**: within each subspace, a per-modality feature gate
  (sigmoid) and a modality score, softmax over the modalities the patient has
  (absent ones masked), so the fused feature never depends on a missing input.
* **confidence-guided coordination** of the two subspace losses, either by
  loss weights (:func:`confidence_weights`: the less confident subspace gets the
  larger weight, so neither subspace dominates the shared encoders) or by
  gradient projection (:func:`project_conflicting`: when the two subspace
  gradients on the shared parameters conflict (negative dot product), the
  gradient of the *more* confident subspace is projected onto the normal plane
  of the less confident one's, whose direction is kept intact).
* **inter-magnification consistency** (:func:`consistency_loss`): a tile bag at
  a second, coarser scale is encoded by the same image encoder; in both
  subspaces the alignment of each scale with the reference (RNA) features
  should be high and equal across scales.
* **distillation**: :func:`kd_loss` (KL at temperature T, scaled by T^2) and
  :func:`feature_loss` (MSE or cosine to the frozen teacher's subspace features).
"""

from __future__ import annotations

import copy
import functools
import math
from dataclasses import dataclass, field
from types import SimpleNamespace
from typing import Any, Mapping, Sequence

import numpy as np

# ----------------------------------------------------------------------------- losses


def disentangle_loss(a: Any, b: Any, kind: str = "orthogonal", valid: Any = None) -> Any:
    """How much two subspace features overlap (0 = fully disentangled).

    ``orthogonal``: mean over samples of cos(a_i, b_i)^2 (1 for parallel, 0 for
    orthogonal vectors). ``decorrelation``: mean squared cross-correlation
    between the batch-standardised columns of ``a`` and ``b`` (0 when every
    feature of a is uncorrelated with every feature of b; 1 when a == b has
    one column). ``valid`` (bool per sample) restricts the samples.
    """
    import torch
    import torch.nn.functional as F

    if valid is not None:
        a, b = a[valid], b[valid]
    if a.shape[0] == 0:
        return a.sum() * 0.0
    if kind == "orthogonal":
        cos = F.cosine_similarity(a, b, dim=-1, eps=1e-8)
        return (cos ** 2).mean()
    if kind == "decorrelation":
        if a.shape[0] < 2:
            return a.sum() * 0.0
        za = (a - a.mean(0)) / (a.std(0, unbiased=False) + 1e-6)
        zb = (b - b.mean(0)) / (b.std(0, unbiased=False) + 1e-6)
        c = za.T @ zb / a.shape[0]
        return (c ** 2).mean()
    raise ValueError(f"disentangle must be 'orthogonal' or 'decorrelation', got {kind!r}")


def kd_loss(student_logits: Any, teacher_logits: Any, temperature: float = 2.0) -> Any:
    """Logit distillation: KL(softmax(t/T) || softmax(s/T)) * T^2, averaged over the batch."""
    import torch.nn.functional as F

    T = float(temperature)
    return F.kl_div(F.log_softmax(student_logits / T, dim=-1), F.softmax(teacher_logits.detach() / T, dim=-1),
                    reduction="batchmean") * (T * T)


def feature_loss(student: Any, teacher: Any, kind: str = "mse") -> Any:
    """Subspace feature distillation to the (detached) teacher: mean squared error or 1 - cosine."""
    import torch.nn.functional as F

    teacher = teacher.detach()
    if kind == "mse":
        return F.mse_loss(student, teacher)
    if kind == "cosine":
        return (1.0 - F.cosine_similarity(student, teacher, dim=-1, eps=1e-8)).mean()
    raise ValueError(f"feature_loss must be 'mse' or 'cosine', got {kind!r}")


def true_class_confidence(logits: Any, y: Any) -> float:
    """Mean predicted probability of the true class (a subspace head's confidence)."""
    import torch

    with torch.no_grad():
        p = torch.softmax(logits, dim=-1).gather(1, y[:, None]).squeeze(1)
    return float(p.mean())


def confidence_weights(confidences: Sequence[float], tau: float = 0.5) -> np.ndarray:
    """Loss weights of the subspaces from their confidences: ``S * softmax(-c / tau)``.

    They sum to the number of subspaces S; equal confidences give weight 1
    each; the less confident subspace gets more weight (tau -> inf: all 1).
    """
    c = np.asarray(confidences, dtype=np.float64)
    z = -c / max(float(tau), 1e-8)
    z = np.exp(z - z.max())
    return len(c) * z / z.sum()


def project_conflicting(grads: Sequence[Any], confidences: Sequence[float]) -> list[Any]:
    """Confidence-guided gradient projection (flattened gradients, torch or numpy).

    For each pair whose gradients conflict (negative dot product), the
    gradient of the more confident subspace loses its component along the
    less confident one's. The least confident gradient is never changed.
    """
    order = np.argsort(np.asarray(confidences, dtype=np.float64), kind="stable")  # least confident first
    out = [g.clone() if hasattr(g, "clone") else np.array(g, dtype=np.float64) for g in grads]
    for pos, i in enumerate(order):
        for j in order[:pos]:  # every less confident subspace
            gj = grads[j]
            dot = float((out[i] * gj).sum())
            nn2 = float((gj * gj).sum())
            if dot < 0 and nn2 > 0:
                out[i] = out[i] - (dot / nn2) * gj
    return out


def consistency_loss(fine: Sequence[Any], coarse: Sequence[Any], reference: Sequence[Any], valid: Any) -> Any:
    """Inter-magnification consistency over subspaces (lists of (B, s) features).

    ``align(x) = mean_s (1 - cos(x_s, ref_s))``; loss = align(fine) + align(coarse)
    + |align(fine) - align(coarse)|, per patient, averaged over ``valid`` ones.
    The reference features are detached (the image is aligned to the genes).
    """
    import torch.nn.functional as F

    if int(valid.sum()) == 0:
        return fine[0].sum() * 0.0
    a1 = sum(1 - F.cosine_similarity(f[valid], r[valid].detach(), dim=-1) for f, r in zip(fine, reference))
    a2 = sum(1 - F.cosine_similarity(c[valid], r[valid].detach(), dim=-1) for c, r in zip(coarse, reference))
    a1, a2 = a1 / len(fine), a2 / len(fine)
    return (a1 + a2 + (a1 - a2).abs()).mean()


# ----------------------------------------------------------------------------- networks

@functools.lru_cache(maxsize=None)
def nets() -> SimpleNamespace:
    """The torch modules (built on first use so importing this module never imports torch)."""
    parts = {**_bag_pooling(), **_token_modules()}
    return SimpleNamespace(**parts, SubspaceNet=_subspace_net(SimpleNamespace(**parts)))


def _bag_pooling() -> dict[str, type]:
    """AttentionMIL (bags) and VectorEncoder (one item per patient)."""
    import torch
    from torch import nn

    class AttentionMIL(nn.Module):
        """Gated attention-MIL pooling of a bag (B, L, d) with a mask (B, L) -> (B, hidden)."""

        def __init__(self, d_in: int, hidden: int, attention: int, dropout: float):
            super().__init__()
            self.embed = nn.Sequential(nn.Linear(d_in, hidden), nn.ReLU(), nn.Dropout(dropout))
            self.V = nn.Linear(hidden, attention)
            self.U = nn.Linear(hidden, attention)
            self.w = nn.Linear(attention, 1)

        def forward(self, x: Any, mask: Any) -> tuple[Any, Any]:
            h = self.embed(x)
            a = self.w(torch.tanh(self.V(h)) * torch.sigmoid(self.U(h))).squeeze(-1)
            a = a.masked_fill(~mask, float("-inf"))
            w = torch.softmax(a, dim=1)
            w = torch.nan_to_num(w, nan=0.0)  # empty bags: all -inf -> nan -> 0
            return (w.unsqueeze(-1) * h).sum(1), w

    class VectorEncoder(nn.Module):
        """One vector per patient: a linear layer (+ReLU, dropout) on the first item."""

        def __init__(self, d_in: int, hidden: int, dropout: float):
            super().__init__()
            self.embed = nn.Sequential(nn.Linear(d_in, hidden), nn.ReLU(), nn.Dropout(dropout))

        def forward(self, x: Any, mask: Any) -> tuple[Any, Any]:
            h = self.embed(x[:, 0]) * mask[:, :1].to(x.dtype)
            return h, mask[:, :1].to(x.dtype)

    return {"AttentionMIL": AttentionMIL, "VectorEncoder": VectorEncoder}


def _token_modules() -> dict[str, type]:
    """InformativeTokens (student prototypes) and SelectiveFusion (gated fusion over present modalities)."""
    import torch
    from torch import nn

    class InformativeTokens(nn.Module):
        """Informative token aggregation over prototypes (B, K, d): score, keep top ``keep``, pool."""

        def __init__(self, d_in: int, hidden: int, attention: int, dropout: float, keep: int):
            super().__init__()
            self.embed = nn.Sequential(nn.Linear(d_in, hidden), nn.ReLU(), nn.Dropout(dropout))
            self.score = nn.Sequential(nn.Linear(hidden, attention), nn.Tanh(), nn.Linear(attention, 1))
            self.keep = int(keep)

        def forward(self, x: Any, mask: Any) -> tuple[Any, Any]:
            h = self.embed(x)
            s = self.score(h).squeeze(-1).masked_fill(~mask, float("-inf"))
            k = max(1, min(self.keep, s.shape[1]))
            top = torch.topk(s, k, dim=1).indices
            kept = torch.zeros_like(mask).scatter(1, top, True) & mask
            w = torch.softmax(s.masked_fill(~kept, float("-inf")), dim=1)
            w = torch.nan_to_num(w, nan=0.0)
            return (w.unsqueeze(-1) * h).sum(1), w

    class SelectiveFusion(nn.Module):
        """Gated fusion of per-modality features (B, M, s) over the modalities present (B, M)."""

        def __init__(self, n_modalities: int, dim: int):
            super().__init__()
            self.gates = nn.ModuleList([nn.Linear(dim, dim) for _ in range(n_modalities)])
            self.score = nn.Linear(dim, 1)

        def forward(self, feats: Any, present: Any) -> tuple[Any, Any]:
            gated = torch.stack([torch.sigmoid(g(feats[:, i])) * feats[:, i] for i, g in enumerate(self.gates)], 1)
            s = self.score(gated).squeeze(-1).masked_fill(~present, float("-inf"))
            w = torch.nan_to_num(torch.softmax(s, dim=1), nan=0.0)
            return (w.unsqueeze(-1) * gated).sum(1), w

    return {"InformativeTokens": InformativeTokens, "SelectiveFusion": SelectiveFusion}


def _encoder(parts: SimpleNamespace, kind: str, d_in: int, hidden: int, attention: int, dropout: float,
             keep: int) -> Any:
    """The encoder of one modality: ``mil`` (bag), ``ita`` (prototypes) or else one vector."""
    if kind == "mil":
        return parts.AttentionMIL(d_in, hidden, attention, dropout)
    if kind == "ita":
        return parts.InformativeTokens(d_in, hidden, attention, dropout, keep)
    return parts.VectorEncoder(d_in, hidden, dropout)


def _subspace_net(parts: SimpleNamespace) -> type:
    """The SubspaceNet class over the pooling and fusion modules of ``parts``."""
    import torch
    from torch import nn

    class SubspaceNet(nn.Module):
        """Per-modality encoders -> tumour / microenvironment projections -> selective fusion -> heads.

        ``kinds[m]`` is ``mil`` (bag), ``vector`` (one item) or ``ita`` (prototypes).
        ``stats[m]`` = (mean, std) standardises the inputs of modality m.
        """

        def __init__(self, modalities: Sequence[str], kinds: Mapping[str, str], d_in: int, n_classes: int,
                     stats: Mapping[str, tuple[np.ndarray, np.ndarray]], hidden: int = 128, subspace: int = 64,
                     attention: int = 64, dropout: float = 0.25, keep: int = 4):
            super().__init__()
            self.modalities = list(modalities)
            self.kinds = dict(kinds)
            self.encoders = nn.ModuleDict({m: _encoder(parts, self.kinds[m], d_in, hidden, attention, dropout, keep)
                                           for m in self.modalities})
            self.to_tumour = nn.ModuleDict({m: nn.Linear(hidden, subspace) for m in self.modalities})
            self.to_tme = nn.ModuleDict({m: nn.Linear(hidden, subspace) for m in self.modalities})
            self.fuse_tumour = parts.SelectiveFusion(len(self.modalities), subspace)
            self.fuse_tme = parts.SelectiveFusion(len(self.modalities), subspace)
            self.head_tumour = nn.Linear(subspace, n_classes)
            self.head_tme = nn.Linear(subspace, n_classes)
            self.head = nn.Sequential(nn.Dropout(dropout), nn.Linear(2 * subspace, n_classes))
            for m in self.modalities:
                mean, std = stats[m]
                self.register_buffer(f"mean_{m}", torch.as_tensor(np.asarray(mean, np.float32)))
                self.register_buffer(f"std_{m}", torch.as_tensor(np.asarray(std, np.float32)))

        def shared_parameters(self) -> list[Any]:
            """Parameters both subspace losses reach (encoders), for gradient coordination."""
            return [p for p in self.encoders.parameters() if p.requires_grad]

        def encode(self, m: str, x: Any, mask: Any) -> tuple[Any, Any, Any]:
            x = (x - getattr(self, f"mean_{m}")) / getattr(self, f"std_{m}")
            x = x * mask.unsqueeze(-1).to(x.dtype)
            h, attn = self.encoders[m](x, mask)
            return self.to_tumour[m](h), self.to_tme[m](h), attn

        def forward(self, inputs: Mapping[str, tuple[Any, Any]], present: Any) -> dict[str, Any]:
            ts, ms, attn = [], [], {}
            for m in self.modalities:
                t, u, a = self.encode(m, *inputs[m])
                ts.append(t)
                ms.append(u)
                attn[m] = a
            T, M = torch.stack(ts, 1), torch.stack(ms, 1)
            fT, gT = self.fuse_tumour(T, present)
            fM, gM = self.fuse_tme(M, present)
            return {"tumour": T, "tme": M, "f_tumour": fT, "f_tme": fM, "gates_tumour": gT, "gates_tme": gM,
                    "logits_tumour": self.head_tumour(fT), "logits_tme": self.head_tme(fM),
                    "logits": self.head(torch.cat([fT, fM], 1)), "attention": attn}

    return SubspaceNet


# ----------------------------------------------------------------------------- inputs

@dataclass
class Dense:
    """Fixed-size inputs of one modality: (P, L, d) with a (P, L) mask (prototypes, single vectors)."""

    X: np.ndarray
    mask: np.ndarray

    @property
    def present(self) -> np.ndarray:
        return self.mask.any(axis=1)

    @property
    def dim(self) -> int:
        return int(self.X.shape[2])

    def padded(self, index: Any, max_len: int | None = None) -> tuple[np.ndarray, np.ndarray]:
        index = np.asarray(index, dtype=np.int64)
        return self.X[index], self.mask[index]

    def row_stats(self, index: Any) -> tuple[np.ndarray, np.ndarray]:
        index = np.asarray(index, dtype=np.int64)
        rows = self.X[index][self.mask[index]]
        if len(rows) == 0:
            return np.zeros(self.dim, np.float32), np.ones(self.dim, np.float32)
        std = rows.std(axis=0, dtype=np.float64)
        return rows.mean(axis=0, dtype=np.float64).astype(np.float32), np.where(std > 1e-6, std, 1.0).astype(np.float32)

    def take(self, index: Any) -> "Dense":
        index = np.asarray(index, dtype=np.int64)
        return Dense(self.X[index], self.mask[index])


@dataclass
class TrainConfig:
    """Hyper-parameters shared by teacher and student training."""

    hidden: int = 128
    subspace: int = 64
    attention: int = 64
    dropout: float = 0.25
    keep: int = 4
    epochs: int = 30
    patience: int = 8
    batch_size: int = 32
    lr: float = 1e-3
    weight_decay: float = 1e-4
    subspace_weight: float = 0.5
    disentangle: str = "orthogonal"
    disentangle_weight: float = 0.1
    coordination: str = "confidence"
    confidence_tau: float = 0.5
    consistency_weight: float = 0.1
    temperature: float = 2.0
    feature_weight: float = 1.0
    feature_kind: str = "mse"
    kd_weight: float = 1.0
    label_weight: float = 1.0
    device: str = "cpu"
    extra: dict = field(default_factory=dict)


def _batch(inputs: Mapping[str, Any], modalities: Sequence[str], index: np.ndarray, device: str,
           drop: Sequence[str] = ()) -> tuple[dict[str, tuple[Any, Any]], Any]:
    import torch

    out, present = {}, []
    for m in modalities:
        x, mask = inputs[m].padded(index)
        if m in drop:
            x, mask = np.zeros_like(x), np.zeros_like(mask)
        out[m] = (torch.from_numpy(np.ascontiguousarray(x)).to(device), torch.from_numpy(mask).to(device))
        present.append(mask.any(axis=1))
    return out, torch.from_numpy(np.stack(present, 1)).to(device)


def build_net(inputs: Mapping[str, Any], modalities: Sequence[str], kinds: Mapping[str, str], train_idx: np.ndarray,
              n_classes: int, cfg: TrainConfig, seed: int) -> Any:
    import torch

    torch.manual_seed(int(seed) % (2 ** 31))
    stats = {m: inputs[m].row_stats(train_idx) for m in modalities}
    d_in = int(next(iter(inputs[m] for m in modalities)).dim)
    return nets().SubspaceNet(modalities, kinds, d_in, n_classes, stats, hidden=cfg.hidden, subspace=cfg.subspace,
                              attention=cfg.attention, dropout=cfg.dropout, keep=cfg.keep).to(cfg.device)


def _subspace_terms(out: Mapping[str, Any], present: Any, cfg: TrainConfig) -> Any:
    """Disentanglement between T and M: fused features and every present modality's projections."""
    terms = [disentangle_loss(out["f_tumour"], out["f_tme"], cfg.disentangle)]
    for i in range(out["tumour"].shape[1]):
        terms.append(disentangle_loss(out["tumour"][:, i], out["tme"][:, i], cfg.disentangle, valid=present[:, i]))
    return sum(terms) / len(terms)


def _fit(net: Any, step: Any, val_loss: Any, n_train: int, cfg: TrainConfig, seed: int) -> dict[str, Any]:
    """Epoch loop with early stopping on the validation loss (best weights kept)."""
    import torch

    params = [p for p in net.parameters() if p.requires_grad]
    opt = torch.optim.Adam(params, lr=float(cfg.lr), weight_decay=float(cfg.weight_decay))
    rng = np.random.default_rng(seed)
    bs = max(2, min(int(cfg.batch_size), n_train))
    best = (math.inf, -1, None)
    history: list[float] = []
    epochs_run = 0
    for epoch in range(int(cfg.epochs)):
        net.train()
        perm = rng.permutation(n_train)
        for s in range(0, n_train, bs):
            pos = perm[s:s + bs]
            if len(pos) < 2:
                continue
            opt.zero_grad()
            step(pos)
            opt.step()
        epochs_run = epoch + 1
        net.eval()
        with torch.no_grad():
            v = float(val_loss())
        history.append(v)
        if v < best[0] - 1e-5:
            best = (v, epoch, copy.deepcopy(net.state_dict()))
        elif epoch - best[1] >= int(cfg.patience):
            break
    if best[2] is not None:
        net.load_state_dict(best[2])
    net.eval()
    return {"epochs": epochs_run, "best_epoch": int(best[1]), "val_loss": history}


def _coordinated_backward(net: Any, rest: Any, ce_t: Any, ce_m: Any, conf: Sequence[float],
                          cfg: TrainConfig) -> list[float]:
    """Backward pass of the teacher loss with the two subspace losses coordinated; their weights.

    ``gradient``: the subspace gradients on the shared parameters are
    projected (:func:`project_conflicting`); ``confidence``: loss weights from
    :func:`confidence_weights`; ``none``: weight 1 each.
    """
    import torch

    sw = float(cfg.subspace_weight)
    if cfg.coordination == "gradient":
        shared = net.shared_parameters()
        g_t = torch.autograd.grad(ce_t, shared, retain_graph=True, allow_unused=True)
        g_m = torch.autograd.grad(ce_m, shared, retain_graph=True, allow_unused=True)
        flat_t = torch.cat([(g if g is not None else torch.zeros_like(p)).reshape(-1) for g, p in zip(g_t, shared)])
        flat_m = torch.cat([(g if g is not None else torch.zeros_like(p)).reshape(-1) for g, p in zip(g_m, shared)])
        pt, pm = project_conflicting([flat_t, flat_m], conf)
        (rest + sw * (ce_t + ce_m)).backward()
        delta = sw * ((pt + pm) - (flat_t + flat_m))
        o = 0
        for p in shared:
            n = p.numel()
            if p.grad is not None:
                p.grad.add_(delta[o:o + n].view_as(p))
            o += n
        return [sw, sw]
    w = confidence_weights(conf, cfg.confidence_tau) if cfg.coordination == "confidence" else np.ones(2)
    (rest + sw * (float(w[0]) * ce_t + float(w[1]) * ce_m)).backward()
    return [float(w[0]), float(w[1])]


def train_teacher(inputs: Mapping[str, Any], modalities: Sequence[str], kinds: Mapping[str, str], y: np.ndarray,
                  train_idx: np.ndarray, val_idx: np.ndarray, n_classes: int, cfg: TrainConfig, seed: int, *,
                  coarse: Any = None, consistency: tuple[str, str] | None = None) -> tuple[Any, dict[str, Any]]:
    """Stage I: the multi-modal teacher (all teacher modalities, absent ones masked)."""
    import torch
    import torch.nn.functional as F

    net = build_net(inputs, modalities, kinds, train_idx, n_classes, cfg, seed)
    yt = torch.from_numpy(np.asarray(y, dtype=np.int64)).to(cfg.device)
    weights_log: list[list[float]] = []
    use_cons = coarse is not None and consistency is not None and cfg.consistency_weight > 0
    if use_cons:
        img, ref = consistency
        i_img, i_ref = modalities.index(img), modalities.index(ref)

    def losses(idx: np.ndarray) -> tuple[Any, Any, Any, Any, Any]:
        batch, present = _batch(inputs, modalities, idx, cfg.device)
        out = net(batch, present)
        yb = yt[idx]
        rest = cfg.label_weight * F.cross_entropy(out["logits"], yb) \
            + cfg.disentangle_weight * _subspace_terms(out, present, cfg)
        if use_cons:
            xc, mc = coarse.padded(idx)
            xc = torch.from_numpy(xc).to(cfg.device)
            mc = torch.from_numpy(mc).to(cfg.device)
            t2, m2, _ = net.encode(img, xc, mc)
            valid = present[:, i_img] & present[:, i_ref] & mc.any(1)
            rest = rest + cfg.consistency_weight * consistency_loss(
                [out["tumour"][:, i_img], out["tme"][:, i_img]], [t2, m2],
                [out["tumour"][:, i_ref], out["tme"][:, i_ref]], valid)
        ce_t = F.cross_entropy(out["logits_tumour"], yb)
        ce_m = F.cross_entropy(out["logits_tme"], yb)
        conf = [true_class_confidence(out["logits_tumour"], yb), true_class_confidence(out["logits_tme"], yb)]
        return rest, ce_t, ce_m, conf, out

    def step(pos: np.ndarray) -> None:
        rest, ce_t, ce_m, conf, _ = losses(train_idx[pos])
        weights_log.append(_coordinated_backward(net, rest, ce_t, ce_m, conf, cfg))

    def val_loss() -> Any:
        batch, present = _batch(inputs, modalities, val_idx, cfg.device)
        return F.cross_entropy(net(batch, present)["logits"], yt[val_idx])

    info = _fit(net, step, val_loss, len(train_idx), cfg, seed)
    wl = np.asarray(weights_log) if weights_log else np.ones((1, 2))
    info["subspace_weights_mean"] = [float(x) for x in wl.mean(axis=0)]
    info["consistency"] = bool(use_cons)
    return net, info


def predict(net: Any, inputs: Mapping[str, Any], modalities: Sequence[str], index: np.ndarray, device: str = "cpu",
            drop: Sequence[str] = (), batch_size: int = 256) -> dict[str, np.ndarray]:
    """Logits and fused subspace features (numpy) for patients ``index``; ``drop`` masks modalities."""
    import torch

    net.eval()
    parts: dict[str, list[np.ndarray]] = {"logits": [], "f_tumour": [], "f_tme": [], "gates_tumour": []}
    index = np.asarray(index, dtype=np.int64)
    with torch.no_grad():
        for s in range(0, len(index), batch_size):
            batch, present = _batch(inputs, modalities, index[s:s + batch_size], device, drop=drop)
            out = net(batch, present)
            for k in parts:
                parts[k].append(out[k].detach().cpu().numpy())
    return {k: (np.concatenate(v) if v else np.zeros((0, 0), np.float32)) for k, v in parts.items()}


def train_student(inputs: Mapping[str, Any], modalities: Sequence[str], kinds: Mapping[str, str], y: np.ndarray,
                  train_idx: np.ndarray, val_idx: np.ndarray, n_classes: int, cfg: TrainConfig, seed: int, *,
                  teacher: Mapping[str, np.ndarray] | None = None) -> tuple[Any, dict[str, Any]]:
    """Stage II: the student on ``modalities`` only; ``teacher`` = frozen teacher outputs per patient
    (``logits``, ``f_tumour``, ``f_tme`` aligned with ``y``); None trains the uni-modal baseline."""
    import torch
    import torch.nn.functional as F

    net = build_net(inputs, modalities, kinds, train_idx, n_classes, cfg, seed)
    yt = torch.from_numpy(np.asarray(y, dtype=np.int64)).to(cfg.device)
    tt = None if teacher is None else {k: torch.from_numpy(np.asarray(teacher[k], np.float32)).to(cfg.device)
                                       for k in ("logits", "f_tumour", "f_tme")}

    def step(pos: np.ndarray) -> None:
        idx = train_idx[pos]
        batch, present = _batch(inputs, modalities, idx, cfg.device)
        out = net(batch, present)
        yb = yt[idx]
        loss = cfg.label_weight * F.cross_entropy(out["logits"], yb) \
            + cfg.subspace_weight * (F.cross_entropy(out["logits_tumour"], yb) + F.cross_entropy(out["logits_tme"], yb)) \
            + cfg.disentangle_weight * _subspace_terms(out, present, cfg)
        if tt is not None:
            loss = loss + cfg.feature_weight * 0.5 * (feature_loss(out["f_tumour"], tt["f_tumour"][idx], cfg.feature_kind)
                                                      + feature_loss(out["f_tme"], tt["f_tme"][idx], cfg.feature_kind)) \
                + cfg.kd_weight * kd_loss(out["logits"], tt["logits"][idx], cfg.temperature)
        loss.backward()

    def val_loss() -> Any:
        batch, present = _batch(inputs, modalities, val_idx, cfg.device)
        return F.cross_entropy(net(batch, present)["logits"], yt[val_idx])

    info = _fit(net, step, val_loss, len(train_idx), cfg, seed)
    return net, info
