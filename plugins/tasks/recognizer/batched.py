"""Batched recognizer training: many same-shaped networks trained as one model (grouped weights).

A recognizer study trains hundreds of small networks of one shape (every
repeat, every sample count k, isolation and composite). Training them one at
a time leaves the CPU running many small matrix products and Python steps.
Here R networks are trained together: every layer holds per-network weights
``(R, out, in)`` and runs as one ``torch.bmm`` on feature-major activations
(R, C, B); each network has its own data, minibatch order, BatchNorm
statistics (one native ``batch_norm`` over R*C channels), linear shortcut and
early stopping. The loss is the sum of the networks' own losses and Adam is
elementwise, so every network gets exactly the gradient and update it would
get alone: only the random streams (initialisation, minibatch order, dropout
masks) and, with ``precision="bf16"``, the rounding of the matrix-product
operands differ from one-at-a-time training, and the results are
statistically equivalent (tested in ``tests/test_recognizer_batched.py``). A
network whose early stopping fires leaves the batch (its best weights are
kept).

:func:`fit_batched` trains a list of :class:`~.models.DeepRecognizer` with
their datasets and leaves each ready to ``predict`` as if fitted alone.
:class:`~.baseline.MultiLogistic` is the logistic baseline (its own module).
:func:`repeat_units` makes one cached unit per block of repeats
(the task's ``batch_repeats``).
"""

from __future__ import annotations

import logging
import math
from typing import Any

import numpy as np

from fusionkit_plugins.tasks.recognizer.baseline import MultiLogistic
from fusionkit_plugins.tasks.recognizer.models import DeepRecognizer, _standardiser, class_weights, set_lr

log = logging.getLogger(__name__)


# ----------------------------------------------------------------------------- grouped network

def _init_params(torch: Any, est: DeepRecognizer, d: int, seeds: list[int]) -> dict[str, Any]:
    """Per-network weights stacked on a leading axis, each initialised like ``nn.Linear`` from its seed.

    Weights are stored (R, out, in), as ``nn.Linear.weight``: activations run feature-major (R, C, B)
    so that each layer is one ``bmm`` and each BatchNorm one native ``batch_norm`` call (below). The
    trunk layers have no bias: a bias right before BatchNorm cancels exactly (BatchNorm subtracts the
    batch mean, so its gradient is zero and it never moves from its initial value)."""
    R, M, hh = len(seeds), est.M, est.head_hidden
    out = 2 if est.predict_counts else 1
    gens = [torch.Generator().manual_seed(int(s) % (2 ** 63)) for s in seeds]

    def uniform(shape: tuple[int, ...], fan_in: int) -> Any:
        bound = 1.0 / math.sqrt(fan_in)
        return torch.stack([(torch.rand(shape, generator=g) * 2 - 1) * bound for g in gens])

    P: dict[str, Any] = {}
    width = d
    for i, h in enumerate(est.hidden):
        P[f"trunk{i}.W"] = uniform((h, width), width)
        P[f"trunk{i}.gamma"] = torch.ones(R, h)
        P[f"trunk{i}.beta"] = torch.zeros(R, h)
        width = h
    if hh > 0:
        P["head1.W"], P["head1.b"] = uniform((M * hh, width), width), uniform((M * hh,), width)
        P["head2.W"], P["head2.b"] = uniform((M, hh, out), hh), uniform((M, out), hh)
    else:
        P["head.W"], P["head.b"] = uniform((M * out, width), width), uniform((M * out,), width)
    if est.n_classes > 1:
        P["cancer.W"], P["cancer.b"] = uniform((est.n_classes, width), width), uniform((est.n_classes,), width)
    return P


#: the grouped networks carry the deep recognizer's linear shortcut (``models.linear_shortcut``)
SUPPORTS_SHORTCUT = True


def _dropout(torch: Any, h: Any, p: float, rng: np.random.Generator | None) -> Any:
    """Inverted dropout. With ``rng`` the mask (0 or 1/(1-p), keep probability 1 - p to within
    2^-16) is built in numpy from PCG64 16-bit integers, directly in ``h``'s dtype (bf16 as its bit
    pattern): torch's CPU ``bernoulli_`` (mt19937) and bool-to-bf16 conversion took more of a
    training step than the matrix products."""
    if p <= 0:
        return h
    if rng is None:
        return torch.nn.functional.dropout(h, p, training=True)
    keep = rng.integers(-32768, 32768, h.numel(), dtype=np.int16) >= int(round(p * 65536)) - 32768
    scale = 1.0 / (1.0 - p)
    if h.dtype == torch.bfloat16:  # bf16 bits = the top 16 bits of the float32
        bits = np.int16(np.array(scale, dtype=np.float32).view(np.int32) >> 16)
        mask = torch.from_numpy(keep.view(np.uint8).astype(np.int16) * bits).view(torch.bfloat16)
    else:
        mask = torch.from_numpy(keep.astype(np.float32) * np.float32(scale)).to(h.dtype)
    return h * mask.view(h.shape)


def _forward(torch: Any, est: DeepRecognizer, P: dict[str, Any], buf: dict[str, Any], x: Any,
             train: bool, rng: np.random.Generator | None = None, offset: Any = None,
             coffset: Any = None) -> tuple[Any, Any, Any]:
    """(presence logits (R, B, M), counts or None, cancer logits or None) of R networks on x (R, B, d).

    Activations are feature-major (R, C, B): the per-network BatchNorm of a layer is then torch's
    native ``batch_norm`` over a (1, R*C, B) view (per-channel statistics over the batch = each
    network's own BatchNorm1d, running estimates included), fused forward and backward. With
    ``est.compute_dtype_`` bf16 the products take bf16 operands (fp32 accumulation) and the trunk's
    activations stay bf16; BatchNorm statistics, parameters, heads' outputs and losses are fp32.
    ``rng`` draws the dropout masks in training (torch's generator without it).

    The linear shortcut (``models.linear_shortcut``; ``buf["short.W"]`` (R, d, M*out) and
    ``short.b``, ``cshort.*`` for the cancer head) is added to the heads' outputs in fp32: either
    precomputed for the training and validation rows (``offset`` (R, B, M*out), ``coffset``), or
    from ``x``, which must then be fp32 (``predict``): its precision is the point of the shortcut.
    """
    import torch.nn.functional as F

    dt = getattr(est, "compute_dtype_", None) or torch.float32
    R, B = x.shape[0], x.shape[1]
    h = x.to(dt).transpose(1, 2)  # (R, d, B)
    for i, C in enumerate(est.hidden):
        h = torch.bmm(P[f"trunk{i}.W"].to(dt), h)  # (R, C, B)
        h = F.batch_norm(h.reshape(1, R * C, B), buf[f"trunk{i}.mean"].view(-1), buf[f"trunk{i}.var"].view(-1),
                         P[f"trunk{i}.gamma"].reshape(-1), P[f"trunk{i}.beta"].reshape(-1), training=train,
                         momentum=0.1, eps=1e-5).view(R, C, B)
        h = torch.relu(h)
        if train:
            h = _dropout(torch, h, est.dropout, rng)
    if est.head_hidden > 0:
        a = torch.relu(torch.baddbmm(P["head1.b"].to(dt).unsqueeze(-1), P["head1.W"].to(dt), h))  # (R, M*hh, B)
        a = a.view(R, est.M, est.head_hidden, B)
        outs = torch.einsum("rmhb,rmho->rbmo", a.float(), P["head2.W"]) + P["head2.b"].unsqueeze(1)
    else:
        outs = torch.baddbmm(P["head.b"].to(dt).unsqueeze(-1), P["head.W"].to(dt), h).float()
        outs = outs.view(R, est.M, -1, B).permute(0, 3, 1, 2)
    if offset is None and "short.W" in buf:
        offset = torch.baddbmm(buf["short.b"].unsqueeze(1), x.float(), buf["short.W"])
    if offset is not None:
        outs = outs + offset.view(outs.shape)
    count = outs[..., 1] if est.predict_counts else None
    cancer = None
    if "cancer.W" in P:
        cancer = torch.baddbmm(P["cancer.b"].to(dt).unsqueeze(-1), P["cancer.W"].to(dt), h).float().transpose(1, 2)
        if coffset is None and "cshort.W" in buf:
            coffset = torch.baddbmm(buf["cshort.b"].unsqueeze(1), x.float(), buf["cshort.W"])
        if coffset is not None:
            cancer = cancer + coffset
    return outs[..., 0], count, cancer


def _losses(torch: Any, est: DeepRecognizer, out: tuple, y: Any, c: Any, t: Any, wt: dict[str, Any]) -> Any:
    """Each network's loss (R,), the same formula as :meth:`DeepRecognizer._loss`; ``wt`` holds the
    head weights and each network's present/absent class weights (R, M)."""
    import torch.nn.functional as F

    logits, count, cancer = out
    if est.loss == "bce":
        per = F.binary_cross_entropy_with_logits(logits, y, reduction="none")
    else:
        prob = torch.sigmoid(logits)
        per = (prob - y) ** 2 if est.loss == "mse" else (prob - y).abs()
    if est.balance:
        per = per * (y * wt["pos"].unsqueeze(1) + (1 - y) * wt["neg"].unsqueeze(1))
    w = wt["head"]
    total = (per.mean(dim=1) * w).sum(dim=-1) / w.sum()
    if count is not None:
        diff = count - c / est.k_scale
        cl = diff.abs() if est.loss == "mae" else diff ** 2
        total = total + est.count_weight * (cl.mean(dim=1) * w).sum(dim=-1) / w.sum()
    if cancer is not None and t is not None:
        ce = F.cross_entropy(cancer.reshape(-1, cancer.shape[-1]), t.reshape(-1), reduction="none")
        total = total + est.cancer_weight * ce.view(t.shape).mean(dim=1) / math.log(max(est.n_classes, 2))
    return total


def _adam(torch: Any, P: dict[str, Any], est: DeepRecognizer, old: Any = None, keep: Any = None) -> Any:
    """torch.optim.Adam over the stacked parameters (elementwise, so each network gets exactly its own
    Adam update; L2 weight decay added to the gradient as in one-at-a-time training), fused into one
    pass per tensor where torch supports it. With ``old`` and ``keep``: a new optimizer for the
    networks left in the batch, carrying their moments and step count."""
    params = list(P.values())
    try:
        opt = torch.optim.Adam(params, lr=est.lr, weight_decay=est.weight_decay, fused=True)
    except (RuntimeError, TypeError, ValueError):  # an old torch without CPU fused Adam
        opt = torch.optim.Adam(params, lr=est.lr, weight_decay=est.weight_decay, foreach=True)
    if old is not None:
        for p_old, p_new in zip(old.param_groups[0]["params"], params):
            st = old.state.get(p_old)
            if st:
                opt.state[p_new] = {k: (v if k == "step" else v[keep].clone()) for k, v in st.items()}
    return opt


# ----------------------------------------------------------------------------- training loop

def _stack(torch: Any, arrays: list[np.ndarray | None], dtype: Any) -> Any:
    if any(a is None for a in arrays):
        return None
    return torch.from_numpy(np.stack([np.asarray(a) for a in arrays])).to(dtype)


def _tensors(torch: Any, ests: list[DeepRecognizer], data: list[dict[str, Any]], part: str, dtype: Any,
             buf: dict[str, Any]) -> dict[str, Any]:
    """Standardised inputs (R, n, d) in ``dtype`` and targets of every network, stacked (X, P, C, T),
    and, with the linear shortcut in ``buf``, its fixed outputs for every row (S, SC) computed in
    fp32 from the fp32 inputs. Built one network at a time (no fp32 copy of the whole stack)."""
    sfx = "" if part == "train" else "_v"
    n, d = np.asarray(data[0]["X" + sfx]).shape
    X = torch.empty((len(ests), n, d), dtype=dtype)
    S = torch.empty((len(ests), n, buf["short.W"].shape[-1])) if "short.W" in buf else None
    SC = torch.empty((len(ests), n, buf["cshort.W"].shape[-1])) if "cshort.W" in buf else None
    for i, (e, dd) in enumerate(zip(ests, data)):
        Z = torch.from_numpy(((np.asarray(dd["X" + sfx]) - e.mu_) / e.sd_).astype(np.float32))
        if S is not None:
            torch.addmm(buf["short.b"][i], Z, buf["short.W"][i], out=S[i])
        if SC is not None:
            torch.addmm(buf["cshort.b"][i], Z, buf["cshort.W"][i], out=SC[i])
        X[i].copy_(Z)
    T = [dd.get("classes" + sfx) for dd in data] if ests[0].n_classes > 1 else [None]
    out = {"X": X, "P": _stack(torch, [dd["presence" + sfx] for dd in data], torch.float32),
           "C": _stack(torch, [dd["counts" + sfx] for dd in data], torch.float32),
           "T": _stack(torch, T, torch.int64)}
    if S is not None:
        out["S"] = S
    if SC is not None:
        out["SC"] = SC
    return out


def _select(tensors: dict[str, Any], keep: Any) -> dict[str, Any]:
    return {k: (None if v is None else v[keep]) for k, v in tensors.items()}


def _val_losses(torch: Any, est: DeepRecognizer, P: dict, buf: dict, va: dict, w: dict, chunk: int = 4096) -> Any:
    n = va["X"].shape[1]
    tot = torch.zeros(va["X"].shape[0])
    with torch.no_grad():
        for s in range(0, n, chunk):
            sl = slice(s, s + chunk)
            part = _select_rows(va, sl)
            out = _forward(torch, est, P, buf, part["X"], train=False, offset=part.get("S"), coffset=part.get("SC"))
            tot += _losses(torch, est, out, part["P"], part["C"], part["T"], w) * min(chunk, n - s)
    return tot / n


def _select_rows(tensors: dict[str, Any], rows: Any) -> dict[str, Any]:
    return {k: (None if v is None else v[:, rows]) for k, v in tensors.items()}


def _epoch(torch: Any, est: DeepRecognizer, P: dict, buf: dict, opt: Any, tr: dict, w: dict, gen: Any,
           rng: np.random.Generator) -> Any:
    """One epoch of minibatch training of every active network; their mean training losses."""
    R, n = tr["X"].shape[0], tr["X"].shape[1]
    bs = max(2, min(est.batch_size, n))
    perm = torch.argsort(torch.rand(R, n, generator=gen), dim=1)
    # network i's row j is row i * n + j of the flattened stack: one index_select per tensor and
    # minibatch (the same rows as tensor[arange(R)[:, None], perm] gives, ~3x faster)
    flat = perm + torch.arange(R).unsqueeze(1) * n
    stacked = {k: (None if v is None else v.reshape(R * n, *v.shape[2:])) for k, v in tr.items()}
    tot = torch.zeros(R)
    for start in range(0, n, bs):
        idx = flat[:, start:start + bs]
        if idx.shape[1] < 2:  # BatchNorm needs two samples
            continue
        rows = idx.reshape(-1)
        batch = {k: (None if v is None else v.index_select(0, rows).view(R, idx.shape[1], *v.shape[1:]))
                 for k, v in stacked.items()}
        out = _forward(torch, est, P, buf, batch["X"], train=True, rng=rng, offset=batch.get("S"),
                       coffset=batch.get("SC"))
        losses = _losses(torch, est, out, batch["P"], batch["C"], batch["T"], w)
        opt.zero_grad(set_to_none=True)
        losses.sum().backward()
        opt.step()
        tot += losses.detach() * idx.shape[1]
    return tot / n


def _bf16_fast(torch: Any) -> bool:
    """Whether oneDNN runs bf16 products natively here (else they are emulated, slower than fp32)."""
    try:
        return bool(torch.ops.mkldnn._is_mkldnn_bf16_supported())
    except Exception:  # an old torch or a build without oneDNN
        return False


def fit_batched(ests: list[DeepRecognizer], data: list[dict[str, Any]], precision: str = "fp32"
                ) -> list[DeepRecognizer]:
    """Train same-shaped recognizers together; each keeps its own early-stopped best weights.

    ``data[i]`` holds ``X, presence, counts, X_v, presence_v, counts_v`` (and
    ``classes``/``classes_v`` with a cancer head) of ``ests[i]``; every
    network's sets must have the same sizes. ``precision`` "bf16" runs the
    matrix products (training, validation and ``predict``) with bfloat16
    operands and fp32 accumulation; weights, statistics and the optimizer stay
    fp32. Returns ``ests``, each fitted.
    """
    import torch

    if precision not in ("fp32", "bf16"):
        raise ValueError(f"precision must be fp32 or bf16, got {precision!r}")
    if precision == "bf16" and not _bf16_fast(torch):
        log.warning("precision bf16: this CPU has no fast bf16 matrix products (AMX / AVX512-BF16); "
                    "training in fp32")
        precision = "fp32"
    est0 = ests[0]
    for e, d in zip(ests, data):
        e.mu_, e.sd_ = _standardiser(d["X"]) if e.standardize else (
            np.zeros(d["X"].shape[1], np.float32), np.ones(d["X"].shape[1], np.float32))
        e.history_ = []
        e.compute_dtype_ = torch.bfloat16 if precision == "bf16" else None
    before = torch.get_num_threads()
    if est0.threads > 0:
        torch.set_num_threads(est0.threads)
    try:
        for e, d in zip(ests, data):  # the fixed linear path of each network, as one-at-a-time training
            e.shortcut_ = (e.fit_shortcut(d["X"], d["presence"], d["counts"], d.get("classes"))
                           if getattr(e, "shortcut", False) else None)
        with torch.random.fork_rng(devices=[]):
            torch.manual_seed(est0.seed)
            best = _train_group(torch, ests, data)
    finally:
        torch.set_num_threads(before)
    for e, (state, buffers, loss) in zip(ests, best):
        e.net_ = _single_net(torch, e, state, buffers)
        e.epochs_ = sum(1 for h in e.history_ if h["epoch"] > 0)
        e.best_val_loss_ = loss
    return ests


def _train_group(torch: Any, ests: list[DeepRecognizer], data: list[dict[str, Any]]) -> list[tuple]:  # size-exempt: one grouped training loop, split pending (issue 14)
    est = ests[0]
    d = np.asarray(data[0]["X"]).shape[1]
    P = _init_params(torch, est, d, [e.seed for e in ests])
    buf = {f"trunk{i}.{s}": (torch.zeros if s == "mean" else torch.ones)(len(ests), h)
           for i, h in enumerate(est.hidden) for s in ("mean", "var")}
    short = [getattr(e, "shortcut_", None) for e in ests]
    if short[0] is not None:
        buf["short.W"] = torch.from_numpy(np.stack([sc["W"] for sc in short]))
        buf["short.b"] = torch.from_numpy(np.stack([sc["b"] for sc in short]))
        if "cancer.W" in P:
            buf["cshort.W"] = torch.from_numpy(np.stack([sc["cW"] for sc in short]))
            buf["cshort.b"] = torch.from_numpy(np.stack([sc["cb"] for sc in short]))
        # the residual layers start at zero (as one-at-a-time training): the network starts as the path
        for name in ("head2", "head", "cancer"):
            for suffix in (".W", ".b"):
                if name + suffix in P:
                    P[name + suffix].zero_()
    # the inputs are only matrix-product operands (the shortcut's fixed outputs S are precomputed in fp32)
    dtype = est.compute_dtype_ or torch.float32
    tr, va = _tensors(torch, ests, data, "train", dtype, buf), _tensors(torch, ests, data, "val", dtype, buf)
    P = {k: v.requires_grad_() for k, v in P.items()}
    opt = _adam(torch, P, est)
    cw = [class_weights(d["presence"]) for d in data]
    w = {"head": torch.from_numpy(est.head_weights), "pos": torch.from_numpy(np.stack([c[0] for c in cw])),
         "neg": torch.from_numpy(np.stack([c[1] for c in cw]))}
    gen = torch.Generator().manual_seed(est.seed)
    rng = np.random.default_rng([est.seed % (2 ** 63), 0x5EED])  # dropout masks
    active = list(range(len(ests)))
    best: list[Any] = [(None, None, math.inf)] * len(ests)
    wait = [0] * len(ests)
    if short[0] is not None and va["X"].shape[1]:
        # epoch 0 competes in early stopping (as one-at-a-time training): a network keeps the solved
        # linear path when training never improves its validation loss
        val0 = _val_losses(torch, est, P, buf, va, w)
        for j in range(len(ests)):
            vl = float(val0[j])
            ests[j].history_.append({"epoch": 0, "train_loss": math.nan, "val_loss": vl})
            best[j] = ({k: v[j].detach().clone() for k, v in P.items()}, {k: v[j].clone() for k, v in buf.items()},
                       vl)
    for epoch in range(est.max_epochs):
        set_lr(opt, est, epoch)
        train_loss = _epoch(torch, est, P, buf, opt, tr, w, gen, rng)
        val_loss = _val_losses(torch, est, P, buf, va, w) if va["X"].shape[1] else train_loss
        done = []
        for j, i in enumerate(active):
            vl = float(val_loss[j])
            ests[i].history_.append({"epoch": epoch + 1, "train_loss": float(train_loss[j]), "val_loss": vl,
                                     "lr": opt.param_groups[0]["lr"]})
            if vl < best[i][2] - 1e-6:
                wait[i] = 0
                best[i] = ({k: v[j].detach().clone() for k, v in P.items()},
                           {k: v[j].clone() for k, v in buf.items()}, vl)
            else:
                wait[i] += 1
                done.append(wait[i] >= est.patience)
                continue
            done.append(False)
        if all(done):
            break
        if any(done):  # stopped networks leave the batch
            keep = torch.tensor([not x for x in done])
            active = [i for i, x in zip(active, done) if not x]
            P = {k: v.detach()[keep].clone().requires_grad_() for k, v in P.items()}
            buf = {k: v[keep] for k, v in buf.items()}
            opt = _adam(torch, P, est, opt, keep)
            tr, va = _select(tr, keep), _select(va, keep)
            w = {"head": w["head"], "pos": w["pos"][keep], "neg": w["neg"][keep]}
    return best


def _single_net(torch: Any, est: DeepRecognizer, state: dict[str, Any] | None, buffers: dict[str, Any] | None
                ) -> Any:
    """An ``nn.Module`` running one trained network (what :meth:`DeepRecognizer.predict` calls)."""
    from torch import nn

    class _One(nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.P = nn.ParameterDict({k.replace(".", "_"): nn.Parameter(v.unsqueeze(0), requires_grad=False)
                                       for k, v in (state or {}).items()})
            self.names = {k.replace(".", "_"): k for k in (state or {})}
            self.buf = {k: v.unsqueeze(0) for k, v in (buffers or {}).items()}

        def forward(self, x: Any) -> tuple[Any, Any, Any]:
            P = {self.names[k]: v for k, v in self.P.items()}
            logits, count, cancer = _forward(torch, est, P, self.buf, x.unsqueeze(0), train=False)
            return logits[0], None if count is None else count[0], None if cancer is None else cancer[0]

    if state is None:
        raise RuntimeError("batched recognizer: a network never produced a finite validation loss")
    return _One().eval()


# ----------------------------------------------------------------------------- one repeat as one unit

def repeat_units(task: Any, ctx: Any, models: list[str], sampling: str, ks: list[int], modes: list[str],
                 repeats: int, run_id: str, class_names: list[str], label: str | None,
                 unit_params: dict[str, Any]) -> list[Any]:
    """One cached unit per block of ``task.batch_repeats`` repeats (default one): each repeat's
    aggregates are built once and shared by every model of the repeat; the isolation networks of
    every k and repeat of the block train as one grouped model, and so do its composite networks."""
    from fusionkit import Unit

    size = max(1, int(getattr(task, "batch_repeats", 1) or 1))
    params = {**unit_params, "_batched": 2}
    blocks = [list(range(s, min(s + size, repeats))) for s in range(0, repeats, size)]
    return [Unit(ctx.unit_key(task.group, params, "batched", models, modes, *block), train_repeats,
                 (task, ctx, models, sampling, ks, modes, block, run_id, class_names, label),
                 label=(f"r{block[0]}" if len(block) == 1 else f"r{block[0]}-{block[-1]}")
                 + f" {'+'.join(models)} {'+'.join(modes)} (batched)")
            for block in blocks]


def _configs(model: str, ks: list[int], modes: list[str]) -> list[list[tuple[str, list[int]]]]:
    """Groups of (mode, training k) trained together: a deep network's isolation models of every k
    share one shape; the composite model and baseline fits stand alone."""
    iso = [("isolation", [int(k)]) for k in ks] if "isolation" in modes else []
    comp = [("composite", [int(k) for k in ks])] if "composite" in modes else []
    if model == "deep":
        return ([iso] if iso else []) + ([comp] if comp else [])
    return [[c] for c in iso + comp]


def train_repeats(task: Any, ctx: Any, models: list[str], sampling: str, ks: list[int], modes: list[str],
                  block: list[int], run_id: str, class_names: list[str], label: str | None) -> dict[str, Any]:
    """Every model of a block of repeats: {"rows": metric rows, "infos": one per model}, ordered by
    repeat. Deep networks of one shape train together across the block (isolation: every k of every
    repeat; composite: every repeat); baselines fit one by one. Then each repeat's test sets, clean
    and perturbed, are built one k at a time and shared by every model tested on that k."""
    import time

    from fusionkit_plugins.tasks.recognizer.data import RepeatData

    datas = {r: RepeatData(ctx, sampling, ks, task.n_per_k, r, task.test_fraction, task.val_fraction) for r in block}
    tests = {r: _TestSets(ctx, datas[r], task, class_names, label) for r in block}
    modalities = list(datas[block[0]].plans[ks[0]]["train"].modalities)
    fitted: list[tuple[Any, str, int, str, list[int], dict[str, Any]]] = []
    solved: dict[tuple[int, int], Any] = {}  # (repeat, k): its isolation baseline, a warm start for the next
    for model in models:
        for group in _configs(model, ks, modes):
            members = [(r, mode, tk) for r in block for mode, tk in group]
            batches = [members] if model == "deep" else [[m] for m in members]
            for batch in batches:
                t0 = time.perf_counter()
                ests = [_estimator(task, ctx, model, modalities, len(class_names),
                                   ctx.seed_for("recognizer-init", model, r, mode, *tk), float(max(ks)))
                        for r, mode, tk in batch]
                if model == "deep":
                    sets = [_deep_set(datas[r], tk, tests[r].classes) for r, _, tk in batch]
                    fit_batched(ests, sets, precision=getattr(task, "precision", "fp32"))
                    del sets
                else:
                    _fit_baselines(ests, batch, datas, tests, solved)
                t_train = (time.perf_counter() - t0) / len(batch)
                for est, (r, mode, tk) in zip(ests, batch):
                    data = datas[r]
                    info = ({"epochs": est.epochs_, "best_val_loss": est.best_val_loss_} if model == "deep" else
                            {"lbfgs_iter": est.n_iter_, "converged": est.converged_})
                    info.update({"run_id": run_id, "model": model, "repeat": r, "mode": mode, "k": tk,
                                 "n_train": int(sum(len(data.index[k]["train"]) for k in tk)),
                                 "n_val": int(sum(len(data.index[k]["val"]) for k in tk)),
                                 "n_test": int(sum(len(data.index[k]["test"]) for k in tk)),
                                 "train_s": round(t_train, 3), "total_s": t_train, "batched": len(batch)})
                    fitted.append((est, model, r, mode, tk, info))
    rows: list[dict[str, Any]] = []
    for r in block:  # the training aggregates are no longer needed: test sets one k at a time
        datas[r].drop_training()
        for k in ks:
            for est, model, rr, mode, tk, info in fitted:
                if rr == r and k in tk:
                    t1 = time.perf_counter()
                    rows += tests[r].rows(est, model, r, mode, [k])
                    info["total_s"] += time.perf_counter() - t1
            tests[r].forget(k)
    for *_, info in fitted:
        info["total_s"] = round(info["total_s"], 3)
    infos = [f[-1] for f in sorted(fitted, key=lambda f: f[2])]
    rows.sort(key=lambda row: row["repeat"])
    return {"rows": rows, "infos": infos}


def _fit_baselines(ests: list[Any], batch: list[tuple[int, str, list[int]]], datas: dict[int, Any],
                   tests: dict[int, Any], solved: dict[tuple[int, int], Any]) -> None:
    """Fit each baseline on its training + validation aggregates (it has no early stopping: the same
    80% the network learns from), warm-started where :func:`_warm` finds a fit; isolation fits are
    kept in ``solved`` for the next."""
    from fusionkit_plugins.tasks.recognizer.data import concat_aggregates

    for est, (r, mode, tk) in zip(ests, batch):
        data = datas[r]
        both = concat_aggregates([data.training(tk, "train"), data.training(tk, "val")])
        est.fit(both.X, both.presence, tests[r].classes(both), warm=_warm(solved, r, mode, tk))
        if mode == "isolation":
            solved[(r, tk[0])] = est
        del both


def _warm(solved: dict[tuple[int, int], Any], repeat: int, mode: str, ks: list[int]) -> Any:
    """The baseline fit that starts this one's L-BFGS (the optimum does not depend on it): for an
    isolation model the repeat's fit at the nearest smaller k, for the composite one the fit at the
    middle of its k range (measured on the paper-scale aggregates: 42% and 29% fewer evaluations)."""
    if mode == "isolation":
        below = [k for (r, k) in solved if r == repeat and k < ks[0]]
        return solved[(repeat, max(below))] if below else None
    return solved.get((repeat, sorted(ks)[(len(ks) - 1) // 2]))


def _estimator(task: Any, ctx: Any, model: str, modalities: list[str], n_classes: int, seed: int,
               k_scale: float) -> Any:
    """The task's network, or :class:`MultiLogistic` with the task's baseline C and max_iter."""
    if model == "deep":
        return task._model_factory(model, ctx, modalities, n_classes, seed, k_scale)
    C = getattr(task, "baseline_C", None) or getattr(task, "C", 1.0)
    return MultiLogistic(C=float(C), max_iter=int(getattr(task, "max_iter", 300)), n_classes=n_classes,
                         seed=seed % (2 ** 31))


def _deep_set(data: Any, train_ks: list[int], classes: Any) -> dict[str, Any]:
    tr, va = data.training(train_ks, "train"), data.training(train_ks, "val")
    return {"X": tr.X, "presence": tr.presence, "counts": tr.counts, "classes": classes(tr),
            "X_v": va.X, "presence_v": va.presence, "counts_v": va.counts, "classes_v": classes(va)}


class _TestSets:
    """Clean and perturbed test aggregates of one repeat, built once and shared by every model."""

    def __init__(self, ctx: Any, data: Any, task: Any, class_names: list[str], label: str | None):
        self.ctx, self.data, self.task = ctx, data, task
        self.class_names, self.label = class_names, label
        self.index = {c: i for i, c in enumerate(class_names)}
        self._noisy: dict[tuple, Any] = {}

    def classes(self, agg: Any) -> np.ndarray | None:
        if not self.class_names or self.label is None or self.label not in agg.group_labels:
            return None
        return np.asarray([self.index.get(str(v), -1) for v in agg.group_labels[self.label]], dtype=np.int64)

    def noisy(self, k: int, p: str) -> Any:
        if (k, p) not in self._noisy:
            self._noisy[(k, p)] = self.data.noisy_test(k, p)[1]
        return self._noisy[(k, p)]

    def forget(self, k: int) -> None:
        """Drop the test aggregates of ``k`` (every model tested on it has been)."""
        for key in [key for key in self._noisy if key[0] == k]:
            del self._noisy[key]
        self.data.drop(k, "test")

    def rows(self, est: Any, model: str, repeat: int, mode: str, train_ks: list[int]) -> list[dict[str, Any]]:
        from fusionkit_plugins.tasks.recognizer.data import evaluate

        t, out = self.task, []
        for k in train_ks:
            base = {"repeat": repeat, "model": model, "mode": mode, "k": int(k)}
            sets = [(self.data.clean(k, "test"), 0.0, "none")]
            sets += [(self.noisy(k, p), _noise_level(self.ctx.recipe, p), p) for p in t.perturbations or []]
            for agg, noise, pert in sets:
                out += evaluate(est.predict(agg.X), agg, threshold=t.threshold, drop_empty=t.drop_empty,
                                cancer_labels=self.classes(agg), class_names=self.class_names,
                                **base, noise=noise, perturbation=pert)
        return out


def _noise_level(recipe: Any, name: str) -> Any:
    """A perturbation's replaced fraction (the noise axis of the tables), else its name."""
    spec = recipe.perturbations.get(name)
    frac = spec.params.get("fraction") if spec is not None else None
    return float(frac) if isinstance(frac, (int, float)) and not isinstance(frac, bool) else name
