"""Patient-level experiments (SPEC 2.3): classifier, GMM clustering, similarity, retrieval.

All four read patient-level aggregates (r repeats of k draws from one
patient's own embeddings, concatenated) built by a recipe sampling entry of
the ``patient-level`` sampler (param ``sampling``; when left out, the
recipe's only patient-level entry, else a default ``patient-level`` sampler).

Tasks
-----
``classifier``  cancer type / molecular subtype / TMB class from patient aggregates;
                dense network (256-128-softmax, torch) and a multinomial logistic
                baseline; patient-disjoint 80/20 split, grid over k x r, n repeats.
``gmm``         Gaussian mixture, one component per class; ARI, NMI, silhouette over the grid.
``similarity``  cosine / Euclidean / dot-product of intra- vs inter-cancer patient pairs.
``retrieval``   FAISS index of index patients' aggregates, queried by held-out patients.

Every task takes ``aggregator: {name, params}`` to override the recipe's
aggregator for its own aggregates, e.g. ``{name: sum, params: {center: true}}``
for distance-based experiments where the composition of each sum (how many
draws of each modality) would otherwise dominate the distances.

Patient-disjointness: every repeat first splits *patients*; the aggregates of
each part are then sampled from a pool restricted to that part's patients
(``EmbeddingPool.restrict``) with their own seeds, and every plan is checked
to draw only items of its own part's patients (:func:`check_plan_patients`).

Every repeat is a :class:`~fusionkit.executors.Unit` keyed by
``ctx.unit_key(task, params, target, k, r, repeat, labels)``, so an
interrupted run resumes and a parallel executor can map the repeats.
Per-modality availability per class is reported next to every result
(SPEC 2.5: which modalities a patient has can leak the label), together with
an "availability only" baseline: a logistic model fed only the patient's
modality-presence vector.
"""

from __future__ import annotations

import copy
import math
from dataclasses import dataclass
from typing import Any, Sequence

import numpy as np

from fusionkit import hookimpl
from fusionkit import Task
from fusionkit import DataError, FusionkitError
from fusionkit import Unit
from fusionkit.metrics import multiclass_metrics, summarise_rows

PATIENT_SAMPLER = "patient-level"


# ============================================================================ shared plumbing

def _resolve_sampler(ctx: Any, name: str | None) -> tuple[Any, str]:
    """(sampler component, label) for a recipe sampling entry, or the default patient-level sampler."""
    table = ctx.recipe.sampling
    if name:
        if name not in table:
            raise FusionkitError(f"no sampling entry named {name!r}", where="sampling",
                                 hint=f"entries: {', '.join(table) or '(none)'}")
        return ctx.build(table[name]), name
    entries = [k for k, s in table.items() if s.name == PATIENT_SAMPLER]
    if len(entries) == 1:
        return ctx.build(table[entries[0]]), entries[0]
    if len(entries) > 1:
        raise FusionkitError(f"several patient-level sampling entries ({', '.join(entries)}): name one",
                             hint="set the task's `sampling` parameter")
    return ctx.system.create("sampler", PATIENT_SAMPLER, {}, where="sampling"), PATIENT_SAMPLER


def _check_sampling(params: dict[str, Any], recipe: Any) -> list[tuple[str, str, str]]:
    issues = []
    name = params.get("sampling")
    if name:
        if name not in recipe.sampling:
            issues.append(("params.sampling", f"no sampling entry named {name!r}",
                           f"entries: {', '.join(recipe.sampling) or '(none)'}"))
        else:
            spec = recipe.sampling[name]
            if "repeats" not in spec.params or "k" not in spec.params:
                issues.append(("params.sampling", f"sampling entry {name!r} ({spec.name}) is not a "
                               "patient-level sampler (needs params k and repeats)",
                               "use an entry with `name: patient-level`"))
    else:
        entries = [k for k, s in recipe.sampling.items() if s.name == PATIENT_SAMPLER]
        if len(entries) > 1:
            issues.append(("params.sampling", f"several patient-level sampling entries ({', '.join(entries)})",
                           "name the one to use in the task's `sampling` parameter"))
    grid = params.get("grid")
    if grid is not None:
        if not isinstance(grid, dict) or set(grid) - {"k", "repeats"}:
            issues.append(("params.grid", "grid must be a mapping with keys k and/or repeats",
                           "e.g. grid: {k: [3, 5], repeats: [3, 5]}"))
        else:
            for key, vals in grid.items():
                vals = vals if isinstance(vals, list) else [vals]
                if not all(isinstance(v, int) and not isinstance(v, bool) and v >= 1 for v in vals):
                    issues.append((f"params.grid.{key}", f"grid values must be integers >= 1, got {vals!r}", ""))
    return issues


def _grid(grid: dict | None, sampler: Any) -> list[tuple[int, int]]:
    """[(k, r), ...] from ``{k: [...], repeats: [...]}``; missing axes take the sampler's value."""
    base_k = getattr(sampler, "k", 5)
    base_k = base_k[0] if isinstance(base_k, (list, tuple)) else base_k
    base_r = getattr(sampler, "repeats", 5)
    grid = grid or {}
    ks = grid.get("k", [base_k])
    rs = grid.get("repeats", [base_r])
    ks = ks if isinstance(ks, (list, tuple)) else [ks]
    rs = rs if isinstance(rs, (list, tuple)) else [rs]
    return [(int(k), int(r)) for k in ks for r in rs]


def _single_point(k: int | None, r: int | None, sampler: Any) -> tuple[int, int]:
    """One (k, r): the task's own values where given, else the sampler's."""
    grid = {}
    if k:
        grid["k"] = [int(k)]
    if r:
        grid["repeats"] = [int(r)]
    return _grid(grid, sampler)[0]


def check_plan_patients(plan: Any, pool: Any, allowed: Sequence[str]) -> None:
    """Raise if a plan draws any item of a patient outside ``allowed`` (patient-disjointness guard)."""
    allowed_set = np.asarray(sorted(set(map(str, allowed))))
    for mi, m in enumerate(plan.modalities):
        sel = (plan.mod == mi) & ~plan.noise
        if not sel.any():
            continue
        owners = pool.views[m].patient_ids[plan.item[sel]]
        bad = ~np.isin(owners, allowed_set)
        if bad.any():
            raise FusionkitError(f"patient leak: plan draws {int(bad.sum())} {m} item(s) of patients outside "
                                 f"its split (e.g. {owners[bad][0]})")
    if plan.patient_ids is not None:
        if not np.isin(np.asarray(plan.patient_ids).astype(str), allowed_set).all():
            raise FusionkitError("patient leak: plan holds aggregates of patients outside its split")


@dataclass
class AggregateBuilder:
    """Picklable recipe for patient aggregates of a subset of patients (used inside units)."""

    pool: Any
    sampler: Any
    aggregator: Any

    def plan(self, patients: Sequence[str], k: int, r: int, seed: int) -> tuple[Any, Any]:
        sub = self.pool.restrict(patients=patients)
        sampler = copy.copy(self.sampler)
        sampler.set_params(k=int(k), repeats=int(r))
        plan = sampler.plan(sub, np.random.default_rng(int(seed)))
        check_plan_patients(plan, self.pool, patients)
        return plan, sub

    def build(self, patients: Sequence[str], k: int, r: int, seed: int, draws: int = 1
              ) -> tuple[np.ndarray, np.ndarray]:
        """(X (n, dim*r), patient ids); ``draws`` > 1 stacks independent draws per patient."""
        from fusionkit import aggregate

        Xs, ps = [], []
        for d in range(max(1, int(draws))):
            s = int(seed) if d == 0 else int(seed) + 7919 * d
            plan, sub = self.plan(patients, k, r, s)
            agg = aggregate(plan, sub, self.aggregator, noise_seed=s)
            Xs.append(agg.X)
            ps.append(np.asarray(plan.patient_ids).astype(str))
        return np.concatenate(Xs), np.concatenate(ps)


def _builder(ctx: Any, sampler: Any, aggregator: dict | None = None) -> AggregateBuilder:
    """``aggregator`` (a task param, {name, params}) overrides the recipe's aggregator for this task."""
    if aggregator:
        agg = ctx.system.create("aggregator", aggregator.get("name", "sum"), aggregator.get("params") or {},
                                where=f"tasks.{ctx.task_name}.params.aggregator")
    else:
        agg = ctx.aggregator()
    return AggregateBuilder(pool=ctx.pool, sampler=sampler, aggregator=agg)


def _eligible_patients(builder: AggregateBuilder) -> np.ndarray:
    """Patients the sampler would use (min_modalities etc.): a cheap k=1, r=1 plan."""
    sampler = copy.copy(builder.sampler)
    sampler.set_params(k=1, repeats=1)
    plan = sampler.plan(builder.pool, np.random.default_rng(0))
    return np.asarray(plan.patient_ids).astype(str)


def _labelled(pool: Any, patients: np.ndarray, label: str) -> tuple[np.ndarray, np.ndarray]:
    y = pool.patient_label(label, patients)
    ok = np.array([v is not None and str(v) not in ("", "nan", "None") for v in y], dtype=bool)
    return patients[ok], np.array([str(v) for v in y[ok]])


def _drop_small(pids: np.ndarray, y: np.ndarray, min_n: int) -> tuple[np.ndarray, np.ndarray, list[str]]:
    vals, counts = np.unique(y, return_counts=True)
    keep_classes = vals[counts >= int(min_n)]
    dropped = [f"{v} ({c})" for v, c in zip(vals, counts) if c < int(min_n)]
    keep = np.isin(y, keep_classes)
    return pids[keep], y[keep], dropped


def _split(pids: np.ndarray, y: np.ndarray, test_fraction: float, seed: int) -> tuple[np.ndarray, np.ndarray]:
    """Stratified patient split (falls back on a plain shuffle where a class is too small)."""
    from sklearn.model_selection import train_test_split

    idx = np.arange(len(pids))
    try:
        a, b = train_test_split(idx, test_size=test_fraction, random_state=int(seed) % (2 ** 32), stratify=y)
    except ValueError:
        a, b = train_test_split(idx, test_size=test_fraction, random_state=int(seed) % (2 ** 32))
    return np.sort(a), np.sort(b)


def availability_rows(pool: Any, pids: np.ndarray, y: np.ndarray, **extra: Any) -> list[dict[str, Any]]:
    """Per class and modality: patients with the modality, and the fraction (SPEC 2.5)."""
    avail = pool.availability()
    rows = []
    for c in sorted(set(y.tolist())):
        members = pids[y == c]
        row: dict[str, Any] = {**extra, "class": c, "patients": int(len(members))}
        for m, have in avail.items():
            n = int(np.isin(members, have).sum())
            row[f"{m}_patients"] = n
            row[f"{m}_fraction"] = n / max(1, len(members))
        rows.append(row)
    return rows


def presence_matrix(pool: Any, pids: np.ndarray) -> np.ndarray:
    avail = pool.availability()
    return np.stack([np.isin(pids, have) for have in avail.values()], axis=1).astype(np.float32)


def availability_only_baseline(pool: Any, pids: np.ndarray, y: np.ndarray, seed: int) -> dict[str, float]:
    """Cross-validated accuracy of a logistic model that sees only which modalities a patient has.

    If this is well above the majority rate, the label leaks through availability.
    """
    from sklearn.linear_model import LogisticRegression
    from sklearn.model_selection import StratifiedKFold, cross_val_predict

    P = presence_matrix(pool, pids)
    vals, counts = np.unique(y, return_counts=True)
    majority = float(counts.max() / counts.sum())
    if len(vals) < 2 or P.std(axis=0).max() == 0 or counts.min() < 2:
        return {"accuracy": majority, "majority_rate": majority}
    folds = int(min(5, counts.min()))
    pred = cross_val_predict(LogisticRegression(max_iter=500), P, y,
                             cv=StratifiedKFold(folds, shuffle=True, random_state=int(seed) % (2 ** 32)))
    return {"accuracy": float((pred == y).mean()), "majority_rate": majority}


def _fmt(x: Any, nd: int = 3) -> str:
    try:
        return "nan" if x is None or not math.isfinite(float(x)) else f"{float(x):.{nd}f}"
    except (TypeError, ValueError):
        return str(x)


def _out(ctx: Any, default: str) -> str:
    return ctx.task_name or default


def _plt() -> Any:
    import matplotlib

    matplotlib.use("Agg", force=False)
    import matplotlib.pyplot as plt

    return plt


def _heatmap(ctx: Any, rel: str, values: dict[tuple[int, int], float], title: str, cbar: str) -> str | None:
    ks = sorted({k for k, _ in values})
    rs = sorted({r for _, r in values})
    if len(ks) * len(rs) < 2:
        return None
    plt = _plt()
    M = np.full((len(rs), len(ks)), np.nan)
    for (k, r), v in values.items():
        M[rs.index(r), ks.index(k)] = v
    fig, ax = plt.subplots(figsize=(1.2 + 0.9 * len(ks), 1.0 + 0.7 * len(rs)))
    im = ax.imshow(M, origin="lower", cmap="viridis", aspect="auto")
    ax.set_xticks(range(len(ks)), [str(k) for k in ks])
    ax.set_yticks(range(len(rs)), [str(r) for r in rs])
    ax.set_xlabel("sample count k")
    ax.set_ylabel("sampling repeats r")
    for i in range(len(rs)):
        for j in range(len(ks)):
            if np.isfinite(M[i, j]):
                ax.text(j, i, f"{M[i, j]:.2f}", ha="center", va="center",
                        color="white" if M[i, j] < np.nanmean(M) else "black", fontsize=8)
    fig.colorbar(im, ax=ax, label=cbar)
    ax.set_title(title, fontsize=9)
    return str(ctx.save_figure(fig, rel))


def _confusion_figure(ctx: Any, rel: str, C: np.ndarray, labels: list[str], title: str) -> str:
    plt = _plt()
    C = np.asarray(C, dtype=np.float64)
    norm = C / np.maximum(C.sum(axis=1, keepdims=True), 1)
    n = len(labels)
    fig, ax = plt.subplots(figsize=(1.6 + 0.55 * n, 1.2 + 0.5 * n))
    im = ax.imshow(norm, cmap="Blues", vmin=0, vmax=1)
    ax.set_xticks(range(n), labels, rotation=45, ha="right", fontsize=7)
    ax.set_yticks(range(n), labels, fontsize=7)
    ax.set_xlabel("predicted")
    ax.set_ylabel("true")
    if n <= 15:
        for i in range(n):
            for j in range(n):
                ax.text(j, i, f"{int(C[i, j])}", ha="center", va="center", fontsize=6,
                        color="white" if norm[i, j] > 0.5 else "black")
    fig.colorbar(im, ax=ax, label="fraction of true class")
    ax.set_title(title, fontsize=9)
    return str(ctx.save_figure(fig, rel))


def _target_key(pids: np.ndarray, y: np.ndarray) -> str:
    from fusionkit import stable_hash

    return stable_hash([pids.tolist(), y.tolist()], length=16)


# ============================================================================ classifier

def _fit_predict(model: str, Xtr: np.ndarray, ytr: np.ndarray, ptr: np.ndarray, Xte: np.ndarray,
                 n_classes: int, cfg: dict[str, Any], seed: int) -> tuple[np.ndarray, dict[str, Any]]:
    info: dict[str, Any] = {}
    if model == "logistic":
        from sklearn.linear_model import LogisticRegression
        from sklearn.pipeline import make_pipeline
        from sklearn.preprocessing import StandardScaler

        clf = make_pipeline(StandardScaler(), LogisticRegression(
            C=float(cfg["C"]), max_iter=int(cfg["max_iter"]),
            class_weight="balanced" if cfg["class_weight"] else None))
        clf.fit(Xtr, ytr)
        return clf.predict(Xte).astype(np.int64), info
    if model == "dense":
        from fusionkit.training import train_dense_classifier

        # validation split by patient (a patient's draws stay together)
        up = np.unique(ptr)
        rng = np.random.default_rng(seed)
        n_val = int(round(len(up) * float(cfg["val_fraction"])))
        val_p = rng.choice(up, size=n_val, replace=False) if 0 < n_val < len(up) else np.array([], dtype=str)
        is_val = np.isin(ptr, val_p)
        model_ = train_dense_classifier(
            Xtr[~is_val], ytr[~is_val], Xtr[is_val] if is_val.any() else None, ytr[is_val] if is_val.any() else None,
            n_classes, hidden=cfg["hidden"], dropout=cfg["dropout"], lr=cfg["lr"], batch_size=cfg["batch_size"],
            max_epochs=cfg["max_epochs"], patience=cfg["patience"],
            class_weight="balanced" if cfg["class_weight"] else None, seed=seed)
        info["best_epoch"] = model_.best_epoch
        info["epochs"] = len(model_.history["train_loss"])
        return model_.predict(Xte).astype(np.int64), info
    raise DataError(f"unknown classifier model {model!r}", hint="use 'dense' and/or 'logistic'")


def _classifier_unit(builder: AggregateBuilder, job: dict[str, Any]) -> dict[str, Any]:
    """One repeat at one grid point: build train/test aggregates separately, fit, predict."""
    classes = job["classes"]
    index = {c: i for i, c in enumerate(classes)}
    k, r = job["k"], job["r"]
    Xtr, ptr = builder.build(job["train"], k, r, job["seed_train"], draws=job["train_draws"])
    Xte, pte = builder.build(job["test"], k, r, job["seed_test"])
    if set(ptr.tolist()) & set(pte.tolist()):
        raise FusionkitError("patient leak: a patient is in both the training and the test aggregates")
    lab = job["labels"]
    ytr = np.array([index[lab[p]] for p in ptr], dtype=np.int64)
    yte = np.array([index[lab[p]] for p in pte], dtype=np.int64)
    out: dict[str, Any] = {"test_ids": pte, "y_test": yte, "n_train": int(len(np.unique(ptr))),
                           "n_test": int(len(pte)), "models": {}}
    for mi, model in enumerate(job["models"]):
        pred, info = _fit_predict(model, Xtr, ytr, ptr, Xte, len(classes), job["cfg"], job["seed_model"] + mi)
        m = multiclass_metrics([classes[i] for i in yte], [classes[i] for i in pred], labels=classes)
        out["models"][model] = {"pred": pred.astype(np.int32), "metrics": m, **info}
    return out


class PatientClassifierTask(Task):
    """Cancer type, subtype or TMB class from patient aggregates: dense net + logistic baseline.

    Parameters: ``targets`` (labels: ``cancer_type``, ``subtype``, ``tmb_class``
    or any patient label); ``models`` (``dense`` = 256-128-softmax in torch,
    ``logistic`` = multinomial logistic regression); ``grid`` ({k: [...],
    repeats: [...]}, default the sampling entry's k and repeats);
    ``n_repeats`` independent patient-disjoint 80/20 splits per grid point;
    ``class_weight`` (false | true = balanced); ``min_class_patients`` (classes
    with fewer eligible patients are left out); subtypes only for cancers
    with more than ``subtype_min_patients`` labelled patients, one model per
    cancer (``subtype_scope: per-cancer``) or one over them all (``joint``);
    ``train_draws`` aggregates per training patient (fresh draws).
    """

    component_params = {"aggregator": "aggregator"}

    def __init__(self, sampling: str | None = None, aggregator: dict | None = None, targets: list | None = None, models: list | None = None,
                 grid: dict | None = None, n_repeats: int = 30, test_fraction: float = 0.2,
                 class_weight: bool = False, min_class_patients: int = 10, subtype_min_patients: int = 100,
                 subtype_scope: str = "per-cancer", cancer_label: str = "cancer_type", train_draws: int = 1,
                 hidden: list | None = None, dropout: float = 0.2, lr: float = 1e-3, batch_size: int = 64,
                 max_epochs: int = 100, patience: int = 10, val_fraction: float = 0.2, C: float = 1.0,
                 max_iter: int = 1000):
        self.sampling = sampling
        self.aggregator = aggregator
        self.targets = targets
        self.models = models
        self.grid = grid
        self.n_repeats = n_repeats
        self.test_fraction = test_fraction
        self.class_weight = class_weight
        self.min_class_patients = min_class_patients
        self.subtype_min_patients = subtype_min_patients
        self.subtype_scope = subtype_scope
        self.cancer_label = cancer_label
        self.train_draws = train_draws
        self.hidden = hidden
        self.dropout = dropout
        self.lr = lr
        self.batch_size = batch_size
        self.max_epochs = max_epochs
        self.patience = patience
        self.val_fraction = val_fraction
        self.C = C
        self.max_iter = max_iter

    @classmethod
    def check_recipe(cls, params: dict[str, Any], recipe: Any) -> list[tuple[str, str, str]]:
        issues = _check_sampling(params, recipe)
        for m in params.get("models") or []:
            if m not in ("dense", "logistic"):
                issues.append(("params.models", f"unknown model {m!r}", "use 'dense' and/or 'logistic'"))
        if params.get("subtype_scope", "per-cancer") not in ("per-cancer", "joint"):
            issues.append(("params.subtype_scope", "subtype_scope must be 'per-cancer' or 'joint'", ""))
        if not 0 < float(params.get("test_fraction", 0.2)) < 1:
            issues.append(("params.test_fraction", "test_fraction must be between 0 and 1", ""))
        return issues

    # ------------------------------------------------------------------ targets
    def _targets(self, pool: Any, patients: np.ndarray) -> tuple[list[dict[str, Any]], list[str]]:
        out, notes = [], []
        for target in self.targets or ["cancer_type"]:
            try:
                pids, y = _labelled(pool, patients, target)
            except DataError as err:
                notes.append(f"{target}: skipped ({err.message})")
                continue
            groups: list[tuple[str, np.ndarray, np.ndarray]]
            if target == "subtype":
                cancer_of = dict(zip(*_labelled(pool, pids, self.cancer_label)))
                cancers = np.array([cancer_of.get(p, "") for p in pids])
                vals, counts = np.unique(cancers, return_counts=True)
                keep = [c for c, n in zip(vals, counts) if c and n > int(self.subtype_min_patients)]
                for c, n in zip(vals, counts):
                    if c not in keep:
                        notes.append(f"subtype: {c or '(no cancer type)'} left out ({n} labelled patients "
                                     f"<= {self.subtype_min_patients})")
                if self.subtype_scope == "joint":
                    sel = np.isin(cancers, keep)
                    groups = [("subtype", pids[sel], y[sel])] if keep else []
                else:
                    groups = [(f"subtype:{c}", pids[cancers == c], y[cancers == c]) for c in keep]
            else:
                groups = [(target, pids, y)]
            for name, gp, gy in groups:
                gp, gy, dropped = _drop_small(gp, gy, self.min_class_patients)
                if dropped:
                    notes.append(f"{name}: classes with < {self.min_class_patients} patients left out: "
                                 + ", ".join(dropped))
                classes = sorted(set(gy.tolist()))
                if len(classes) < 2:
                    notes.append(f"{name}: skipped (fewer than 2 classes with enough patients)")
                    continue
                out.append({"name": name, "label": target, "pids": gp, "y": gy, "classes": classes})
        return out, notes

    # ------------------------------------------------------------------ run
    def run(self, ctx: Any) -> dict[str, Any]:
        name = _out(ctx, "classifier")
        sampler, sampling_name = _resolve_sampler(ctx, self.sampling)
        builder = _builder(ctx, sampler, self.aggregator)
        grid = _grid(self.grid, sampler)
        models = list(self.models or ["dense", "logistic"])
        for m in models:
            if m not in ("dense", "logistic"):
                raise DataError(f"unknown classifier model {m!r}", where=f"tasks.{name}.params.models",
                                hint="use 'dense' and/or 'logistic'")
        eligible = _eligible_patients(builder)
        targets, notes = self._targets(ctx.pool, eligible)
        if not targets:
            raise DataError("classifier: no target has two classes with enough labelled patients",
                            where=f"tasks.{name}", hint="; ".join(notes) or "check the label readers")
        cfg = {"hidden": list(self.hidden or [256, 128]), "dropout": self.dropout, "lr": self.lr,
               "batch_size": self.batch_size, "max_epochs": self.max_epochs, "patience": self.patience,
               "val_fraction": self.val_fraction, "C": self.C, "max_iter": self.max_iter,
               "class_weight": bool(self.class_weight)}
        params_key = {**self.get_params(), "sampler": sampler.get_params()}
        units, meta = [], {}
        for t in targets:
            tkey = _target_key(t["pids"], t["y"])
            labels = dict(zip(t["pids"].tolist(), t["y"].tolist()))
            for rep in range(int(self.n_repeats)):
                tr, te = _split(t["pids"], t["y"], self.test_fraction, ctx.seed_for(name, t["name"], "split", rep))
                for k, r in grid:
                    key = ctx.unit_key(name, "classifier", params_key, t["name"], tkey, k, r, rep)
                    job = {"train": t["pids"][tr].tolist(), "test": t["pids"][te].tolist(), "labels": labels,
                           "classes": t["classes"], "k": k, "r": r, "models": models, "cfg": cfg,
                           "train_draws": int(self.train_draws),
                           "seed_train": ctx.seed_for(name, t["name"], "train", k, r, rep),
                           "seed_test": ctx.seed_for(name, t["name"], "test", k, r, rep),
                           "seed_model": ctx.seed_for(name, t["name"], "model", k, r, rep) % (2 ** 31)}
                    units.append(Unit(key, _classifier_unit, (builder, job), label=f"{t['name']} k={k} r={r} #{rep}"))
                    meta[key] = (t["name"], k, r, rep)
        results = ctx.run_units(name, units)
        return self._report(ctx, name, sampling_name, targets, grid, models, results, meta, notes)

    # ------------------------------------------------------------------ outputs
    def _report(self, ctx: Any, name: str, sampling_name: str, targets: list[dict[str, Any]],
                grid: list[tuple[int, int]], models: list[str], results: dict[str, Any],
                meta: dict[str, tuple], notes: list[str]) -> dict[str, Any]:
        run_rows, metric_rows, class_rows = [], [], []
        confusion: dict[tuple, np.ndarray] = {}
        for key, (tname, k, r, rep) in meta.items():
            res = results[key]
            for model, mres in res["models"].items():
                m = mres["metrics"]
                base = {"target": tname, "model": model, "k": k, "repeats": r}
                run_rows.append({**base, "repeat": rep, "accuracy": m["accuracy"], "macro_f1": m["macro_f1"],
                                 "mcc": m["mcc"], "balanced_accuracy": m["balanced_accuracy"],
                                 "n_train": res["n_train"], "n_test": res["n_test"],
                                 "epochs": mres.get("epochs")})
                for metric in ("accuracy", "macro_f1", "mcc", "balanced_accuracy"):
                    metric_rows.append({**base, "metric": metric, "value": m[metric]})
                for cls, pc in m["per_class"].items():
                    for metric in ("f1", "precision", "recall"):
                        class_rows.append({**base, "class": cls, "metric": metric, "value": pc[metric]})
                ck = (tname, model, k, r)
                C = np.asarray(m["confusion"])
                confusion[ck] = confusion.get(ck, 0) + C
        summary_rows = summarise_rows(metric_rows, by=["target", "model", "k", "repeats", "metric"])
        per_class_rows = summarise_rows(class_rows, by=["target", "model", "k", "repeats", "class", "metric"])
        tables = {
            "summary": str(ctx.write_csv(f"{name}/summary.csv", summary_rows)),
            "per_class": str(ctx.write_csv(f"{name}/per_class.csv", per_class_rows)),
            "runs": str(ctx.write_csv(f"{name}/runs.csv", run_rows)),
        }
        figures: list[str] = []
        avail_rows: list[dict[str, Any]] = []
        out_summary: dict[str, Any] = {"sampling": sampling_name, "grid": [list(g) for g in grid],
                                       "n_repeats": int(self.n_repeats), "models": models, "targets": {},
                                       "notes": notes}
        paper: list[dict[str, Any]] = []
        stat = {(row["target"], row["model"], row["k"], row["repeats"], row["metric"]): row for row in summary_rows}
        cstat = {(row["target"], row["model"], row["k"], row["repeats"], row["class"], row["metric"]): row
                 for row in per_class_rows}
        for t in targets:
            tname = t["name"]
            avail_rows += availability_rows(ctx.pool, t["pids"], t["y"], target=tname)
            base = availability_only_baseline(ctx.pool, t["pids"], t["y"], ctx.seed_for(name, tname, "avail"))
            entry: dict[str, Any] = {"classes": t["classes"], "n_patients": int(len(t["pids"])),
                                     "availability_only_accuracy": base["accuracy"],
                                     "majority_rate": base["majority_rate"], "models": {}}
            for model in models:
                mcc_grid = {(k, r): stat[(tname, model, k, r, "mcc")]["mean"] for k, r in grid
                            if (tname, model, k, r, "mcc") in stat}
                if not mcc_grid:
                    continue
                bk, br = max(mcc_grid, key=lambda g: (np.nan_to_num(mcc_grid[g], nan=-2), g[0] * g[1]))
                best = {metric: _pick(stat.get((tname, model, bk, br, metric)))
                        for metric in ("accuracy", "macro_f1", "mcc", "balanced_accuracy")}
                C = confusion[(tname, model, bk, br)]
                safe = tname.replace(":", "_")
                ctx.write_csv(f"{name}/confusion_{safe}_{model}.csv",
                              [{"true": t["classes"][i], **{c: int(C[i, j]) for j, c in enumerate(t["classes"])}}
                               for i in range(len(t["classes"]))])
                figures.append(_confusion_figure(
                    ctx, f"{name}/confusion_{safe}_{model}.png", C, t["classes"],
                    f"{tname} - {model} (k={bk}, r={br}; summed over {self.n_repeats} repeats)"))
                hm = _heatmap(ctx, f"{name}/mcc_grid_{safe}_{model}.png", mcc_grid,
                              f"{tname} - {model}: mean MCC over {self.n_repeats} repeats", "MCC")
                if hm:
                    figures.append(hm)
                entry["models"][model] = {"best_k": bk, "best_repeats": br, **best,
                                          "top_confusions": _top_confusions(C, t["classes"])}
                paper += self._paper_rows(tname, model, bk, br, grid, stat, cstat, t["classes"], C)
            out_summary["targets"][tname] = entry
        tables["availability"] = str(ctx.write_csv(f"{name}/availability.csv", avail_rows))
        return {"summary": out_summary, "tables": tables, "figures": figures, "paper_comparison": paper}

    def _paper_rows(self, tname: str, model: str, bk: int, br: int, grid: list[tuple[int, int]],
                    stat: dict, cstat: dict, classes: list[str], C: np.ndarray) -> list[dict[str, Any]]:
        if tname != "cancer_type":
            return []
        exp = f"classifier cancer type ({model})"
        rows = []

        def row(metric: str, st: dict | None, paper: str, note: str, modality: str = "all",
                k: Any = bk) -> dict[str, Any]:
            p = _pick(st)
            return {"experiment": exp, "metric": metric, "modality": modality, "k": k, "repeats": br,
                    "ours_mean": p["mean"], "ours_ci_low": p["ci_low"], "ours_ci_high": p["ci_high"],
                    "paper": paper, "note": note}

        for c in classes:
            f1 = cstat.get((tname, model, bk, br, c, "f1"))
            rec = cstat.get((tname, model, bk, br, c, "recall"))
            rows.append(row(f"F1 {c}", f1, ">= 0.8", _meets(f1, 0.8), modality=c))
            rows.append(row(f"accuracy (recall) {c}", rec, ">= 0.7", _meets(rec, 0.7), modality=c))
        rows.append(row("accuracy", stat.get((tname, model, bk, br, "accuracy")), ">= 0.7",
                        _meets(stat.get((tname, model, bk, br, "accuracy")), 0.7)))
        rows.append(row("MCC", stat.get((tname, model, bk, br, "mcc")), "", "best grid point"))
        if len(grid) > 1:
            lo, hi = min(grid, key=lambda g: (g[0] * g[1], g)), max(grid, key=lambda g: (g[0] * g[1], g))
            a = _pick(stat.get((tname, model, lo[0], lo[1], "mcc")))["mean"]
            b = _pick(stat.get((tname, model, hi[0], hi[1], "mcc")))["mean"]
            trend = "rises" if b > a else "does not rise"
            rows.append({"experiment": exp, "metric": "MCC trend over k x r", "modality": "all",
                         "k": f"{lo[0]}x{lo[1]} -> {hi[0]}x{hi[1]}", "repeats": None, "ours_mean": b - a,
                         "ours_ci_low": None, "ours_ci_high": None, "paper": "more k and r help",
                         "note": f"MCC {_fmt(a)} -> {_fmt(b)} ({trend})"})
        top = _top_confusions(C, classes, n=3)
        rows.append({"experiment": exp, "metric": "most frequent confusions", "modality": "all", "k": bk,
                     "repeats": br, "ours_mean": None, "ours_ci_low": None, "ours_ci_high": None,
                     "paper": "LUAD<->BLCA, COAD<->STAD",
                     "note": ", ".join(f"{a}<->{b} ({n})" for a, b, n in top) or "none"})
        return rows


def _pick(row: dict | None) -> dict[str, Any]:
    if not row:
        return {"mean": float("nan"), "ci_low": float("nan"), "ci_high": float("nan"), "n": 0}
    return {"mean": row["mean"], "ci_low": row["ci_low"], "ci_high": row["ci_high"], "n": row["n"]}


def _meets(row: dict | None, threshold: float) -> str:
    m = _pick(row)["mean"]
    if not math.isfinite(m):
        return "n/a"
    return "meets" if m >= threshold else "below"


def _top_confusions(C: np.ndarray, classes: list[str], n: int = 3) -> list[tuple[str, str, int]]:
    """Most frequent symmetric confusions (a<->b, count of both directions)."""
    C = np.asarray(C)
    pairs = []
    for i in range(len(classes)):
        for j in range(i + 1, len(classes)):
            cnt = int(C[i, j] + C[j, i])
            if cnt:
                pairs.append((classes[i], classes[j], cnt))
    return sorted(pairs, key=lambda p: -p[2])[:n]


# ============================================================================ GMM

def _gmm_unit(builder: AggregateBuilder, job: dict[str, Any]) -> dict[str, Any]:
    from scipy.optimize import linear_sum_assignment
    from sklearn.decomposition import PCA
    from sklearn.metrics import adjusted_rand_score, normalized_mutual_info_score, silhouette_samples
    from sklearn.mixture import GaussianMixture

    X, pids = builder.build(job["patients"], job["k"], job["r"], job["seed"])
    lab = job["labels"]
    classes = job["classes"]
    y = np.array([classes.index(lab[p]) for p in pids])
    Z = X.astype(np.float64)
    if job["standardize"]:
        sd = Z.std(axis=0)
        Z = (Z - Z.mean(axis=0)) / np.where(sd > 1e-9, sd, 1.0)
    if job["pca"]:
        nc = int(min(job["pca"], Z.shape[0] - 1, Z.shape[1]))
        Z = PCA(n_components=nc, random_state=job["seed"] % (2 ** 32)).fit_transform(Z)
    gmm = GaussianMixture(n_components=len(classes), covariance_type=job["covariance_type"],
                          n_init=int(job["n_init"]), max_iter=int(job["max_iter"]), reg_covar=1e-4,
                          random_state=job["seed"] % (2 ** 32))
    pred = gmm.fit_predict(Z)
    out: dict[str, Any] = {"ari": float(adjusted_rand_score(y, pred)),
                           "nmi": float(normalized_mutual_info_score(y, pred)), "n": int(len(y))}
    n_clusters = len(np.unique(pred))
    if 1 < n_clusters < len(y):
        out["silhouette"] = float(silhouette_samples(Z, pred).mean())
    else:
        out["silhouette"] = float("nan")
    st = silhouette_samples(Z, y)
    out["silhouette_truth"] = float(st.mean())
    # clusters matched to classes (Hungarian on the contingency table): per-class F1 of the match
    cont = np.zeros((len(classes), len(classes)))
    np.add.at(cont, (y, pred), 1)
    ri, ci = linear_sum_assignment(-cont)
    match = dict(zip(ci, ri))
    mapped = np.array([match.get(p, -1) for p in pred])
    per_class = {}
    for i, c in enumerate(classes):
        tp = float(((mapped == i) & (y == i)).sum())
        den = float((mapped == i).sum() + (y == i).sum())
        per_class[c] = {"silhouette_truth": float(st[y == i].mean()) if (y == i).any() else float("nan"),
                        "matched_f1": 2 * tp / den if den else float("nan")}
    out["per_class"] = per_class
    if job["keep_points"]:
        P2 = PCA(n_components=2, random_state=0).fit_transform(
            (X - X.mean(axis=0)) / np.where(X.std(axis=0) > 1e-9, X.std(axis=0), 1.0)) if job["standardize"] \
            else PCA(n_components=2, random_state=0).fit_transform(X)
        # clusters coloured by their matched class, so the two panels compare at a glance
        out["points"] = {"xy": P2.astype(np.float32), "y": y.astype(np.int16), "cluster": mapped.astype(np.int16)}
    return out


class GMMTask(Task):
    """Gaussian mixture (one component per class) on patient aggregates over a k x r grid.

    Reports ARI, NMI and silhouette (of the clusters; and of the true classes)
    with mean/CI over ``n_repeats`` draws, per-class separation (silhouette of
    the true class and F1 of the matched cluster), and 2-D PCA scatters
    coloured by truth and by cluster for the ``scatter`` grid points (default:
    the smallest and the largest). ``pca``: reduce to this many components
    before fitting (null = none); ``standardize`` features first.
    """

    component_params = {"aggregator": "aggregator"}

    def __init__(self, sampling: str | None = None, aggregator: dict | None = None, label: str = "cancer_type", grid: dict | None = None,
                 n_repeats: int = 10, pca: int | None = 10, standardize: bool = True,
                 covariance_type: str = "full", n_init: int = 3, max_iter: int = 300,
                 min_class_patients: int = 5, scatter: list | None = None):
        self.sampling = sampling
        self.aggregator = aggregator
        self.label = label
        self.grid = grid
        self.n_repeats = n_repeats
        self.pca = pca
        self.standardize = standardize
        self.covariance_type = covariance_type
        self.n_init = n_init
        self.max_iter = max_iter
        self.min_class_patients = min_class_patients
        self.scatter = scatter

    @classmethod
    def check_recipe(cls, params: dict[str, Any], recipe: Any) -> list[tuple[str, str, str]]:
        issues = _check_sampling(params, recipe)
        if params.get("covariance_type", "full") not in ("full", "tied", "diag", "spherical"):
            issues.append(("params.covariance_type", "covariance_type must be full, tied, diag or spherical", ""))
        return issues

    def run(self, ctx: Any) -> dict[str, Any]:
        name = _out(ctx, "gmm")
        sampler, sampling_name = _resolve_sampler(ctx, self.sampling)
        builder = _builder(ctx, sampler, self.aggregator)
        grid = _grid(self.grid, sampler)
        pids, y = _labelled(ctx.pool, _eligible_patients(builder), self.label)
        pids, y, dropped = _drop_small(pids, y, self.min_class_patients)
        classes = sorted(set(y.tolist()))
        if len(classes) < 2:
            raise DataError(f"gmm: fewer than 2 {self.label} classes with enough patients", where=f"tasks.{name}")
        scatter = [tuple(int(v) for v in p) for p in (self.scatter or [])] or \
            sorted({min(grid, key=lambda g: (g[0] * g[1], g)), max(grid, key=lambda g: (g[0] * g[1], g))})
        labels = dict(zip(pids.tolist(), y.tolist()))
        tkey = _target_key(pids, y)
        params_key = {**self.get_params(), "sampler": sampler.get_params()}
        units, meta = [], {}
        for k, r in grid:
            for rep in range(int(self.n_repeats)):
                key = ctx.unit_key(name, "gmm", params_key, tkey, k, r, rep)
                job = {"patients": pids.tolist(), "labels": labels, "classes": classes, "k": k, "r": r,
                       "seed": ctx.seed_for(name, "gmm", k, r, rep), "pca": self.pca,
                       "standardize": bool(self.standardize), "covariance_type": self.covariance_type,
                       "n_init": self.n_init, "max_iter": self.max_iter,
                       "keep_points": rep == 0 and (k, r) in scatter}
                units.append(Unit(key, _gmm_unit, (builder, job), label=f"gmm k={k} r={r} #{rep}"))
                meta[key] = (k, r, rep)
        results = ctx.run_units(name, units)
        run_rows, metric_rows, class_rows = [], [], []
        points = {}
        for key, (k, r, rep) in meta.items():
            res = results[key]
            run_rows.append({"k": k, "repeats": r, "repeat": rep, "ari": res["ari"], "nmi": res["nmi"],
                             "silhouette": res["silhouette"], "silhouette_truth": res["silhouette_truth"]})
            for metric in ("ari", "nmi", "silhouette", "silhouette_truth"):
                metric_rows.append({"k": k, "repeats": r, "metric": metric, "value": res[metric]})
            for c, pc in res["per_class"].items():
                for metric, v in pc.items():
                    class_rows.append({"k": k, "repeats": r, "class": c, "metric": metric, "value": v})
            if "points" in res:
                points[(k, r)] = res["points"]
        summary_rows = summarise_rows(metric_rows, by=["k", "repeats", "metric"])
        per_class_rows = summarise_rows(class_rows, by=["k", "repeats", "class", "metric"])
        tables = {"summary": str(ctx.write_csv(f"{name}/summary.csv", summary_rows)),
                  "per_class": str(ctx.write_csv(f"{name}/per_class.csv", per_class_rows)),
                  "runs": str(ctx.write_csv(f"{name}/runs.csv", run_rows)),
                  "availability": str(ctx.write_csv(f"{name}/availability.csv",
                                                    availability_rows(ctx.pool, pids, y, target=self.label)))}
        stat = {(row["k"], row["repeats"], row["metric"]): row for row in summary_rows}
        figures = []
        for (k, r), pts in sorted(points.items()):
            figures.append(self._scatter(ctx, f"{name}/pca_k{k}_r{r}.png", pts, classes, k, r,
                                         _pick(stat.get((k, r, "ari")))["mean"]))
        hm = _heatmap(ctx, f"{name}/ari_grid.png", {(k, r): _pick(stat.get((k, r, "ari")))["mean"] for k, r in grid},
                      f"GMM ARI ({self.label}), mean over {self.n_repeats} repeats", "ARI")
        if hm:
            figures.append(hm)
        lo, hi = min(grid, key=lambda g: (g[0] * g[1], g)), max(grid, key=lambda g: (g[0] * g[1], g))
        sep = {c: _pick(next((row for row in per_class_rows if row["k"] == hi[0] and row["repeats"] == hi[1]
                              and row["class"] == c and row["metric"] == "silhouette_truth"), None))["mean"]
               for c in classes}
        best_class = max(sep, key=lambda c: np.nan_to_num(sep[c], nan=-2))
        summary = {"sampling": sampling_name, "label": self.label, "classes": classes, "n_patients": int(len(pids)),
                   "grid": [list(g) for g in grid], "n_repeats": int(self.n_repeats), "pca": self.pca,
                   "dropped_classes": dropped,
                   "by_grid": {f"k={k},r={r}": {m: _pick(stat.get((k, r, m))) for m in ("ari", "nmi", "silhouette")}
                               for k, r in grid},
                   "best_separated_class": best_class, "class_silhouette_at_largest": sep}
        a, b = _pick(stat.get((lo[0], lo[1], "ari"))), _pick(stat.get((hi[0], hi[1], "ari")))
        paper = [
            {"experiment": "GMM clustering", "metric": "ARI", "modality": "all", "k": f"{lo[0]}x{lo[1]}",
             "repeats": lo[1], "ours_mean": a["mean"], "ours_ci_low": a["ci_low"], "ours_ci_high": a["ci_high"],
             "paper": "indistinct at k=3, r=3", "note": "smallest grid point"},
            {"experiment": "GMM clustering", "metric": "ARI", "modality": "all", "k": f"{hi[0]}x{hi[1]}",
             "repeats": hi[1], "ours_mean": b["mean"], "ours_ci_low": b["ci_low"], "ours_ci_high": b["ci_high"],
             "paper": "clusters sharpen as k and r grow (clearest at k=5, r=5)",
             "note": ("sharper" if b["mean"] > a["mean"] else "not sharper") + " than the smallest grid point"
             if len(grid) > 1 else "single grid point"},
            {"experiment": "GMM clustering", "metric": "best separated class (silhouette of true class)",
             "modality": "all", "k": f"{hi[0]}x{hi[1]}", "repeats": hi[1], "ours_mean": sep[best_class],
             "ours_ci_low": None, "ours_ci_high": None, "paper": "THCA",
             "note": f"ours: {best_class}" + ("" if "THCA" in classes else " (THCA not in this data)")},
        ]
        return {"summary": summary, "tables": tables, "figures": figures, "paper_comparison": paper}

    def _scatter(self, ctx: Any, rel: str, pts: dict, classes: list[str], k: int, r: int, ari: float) -> str:
        plt = _plt()
        xy, y, cl = pts["xy"], pts["y"], pts["cluster"]
        fig, axes = plt.subplots(1, 2, figsize=(10, 4.2), sharex=True, sharey=True)
        cmap = plt.get_cmap("tab10" if len(classes) <= 10 else "tab20")
        for i, c in enumerate(classes):
            sel = y == i
            axes[0].scatter(xy[sel, 0], xy[sel, 1], s=6, alpha=0.7, color=cmap(i % cmap.N), label=c)
        for i in range(len(classes)):
            sel = cl == i
            axes[1].scatter(xy[sel, 0], xy[sel, 1], s=6, alpha=0.7, color=cmap(i % cmap.N),
                            label=f"cluster ~ {classes[i]}")
        axes[0].set_title(f"truth ({self.label})", fontsize=9)
        axes[1].set_title(f"GMM clusters, matched to classes (ARI {_fmt(ari, 2)})", fontsize=9)
        for ax in axes:
            ax.set_xlabel("PC1")
            ax.legend(fontsize=6, markerscale=2, loc="best")
        axes[0].set_ylabel("PC2")
        fig.suptitle(f"patient aggregates, k={k}, r={r}", fontsize=10)
        return str(ctx.save_figure(fig, rel))


# ============================================================================ similarity

MEASURES = ("cosine", "euclidean", "dot")


def _pair_values(X: np.ndarray, i: np.ndarray, j: np.ndarray, measure: str) -> np.ndarray:
    a, b = X[i].astype(np.float64), X[j].astype(np.float64)
    if measure == "dot":
        return (a * b).sum(axis=1)
    if measure == "cosine":
        na, nb = np.linalg.norm(a, axis=1), np.linalg.norm(b, axis=1)
        return (a * b).sum(axis=1) / np.maximum(na * nb, 1e-12)
    if measure == "euclidean":
        return np.linalg.norm(a - b, axis=1)
    raise DataError(f"unknown similarity measure {measure!r}", hint=f"use {', '.join(MEASURES)}")


def sample_pairs(y: np.ndarray, n_pairs: int, rng: np.random.Generator) -> tuple[np.ndarray, np.ndarray]:
    """(intra (n, 2), inter (n, 2)) index pairs: same class / different class, no self-pairs."""
    classes, inv, counts = np.unique(y, return_inverse=True, return_counts=True)
    members = [np.where(inv == c)[0] for c in range(len(classes))]
    w = counts * (counts - 1.0)
    if w.sum() == 0:
        intra = np.zeros((0, 2), dtype=np.int64)
    else:
        cls = rng.choice(len(classes), size=n_pairs, p=w / w.sum())
        n_c = counts[cls]
        a = np.floor(rng.random(n_pairs) * n_c).astype(np.int64)
        b = np.floor(rng.random(n_pairs) * (n_c - 1)).astype(np.int64)
        b = b + (b >= a)
        starts = np.concatenate([[0], np.cumsum(counts)[:-1]])
        flat = np.concatenate(members)
        intra = np.stack([flat[starts[cls] + a], flat[starts[cls] + b]], axis=1)
    inter_parts, have = [], 0
    for _ in range(50):
        i = rng.integers(0, len(y), size=2 * n_pairs)
        j = rng.integers(0, len(y), size=2 * n_pairs)
        ok = inv[i] != inv[j]
        inter_parts.append(np.stack([i[ok], j[ok]], axis=1))
        have += int(ok.sum())
        if have >= n_pairs:
            break
    inter = np.concatenate(inter_parts)[:n_pairs] if inter_parts else np.zeros((0, 2), dtype=np.int64)
    return intra, inter


def separation(intra: np.ndarray, inter: np.ndarray, larger_is_closer: bool) -> dict[str, float]:
    """Cohen's d and AUC of "intra is closer than inter" (0.5 = no separation, 1 = perfect)."""
    from scipy.stats import rankdata

    if len(intra) == 0 or len(inter) == 0:
        return {"cohens_d": float("nan"), "auc": float("nan")}
    s_in = intra if larger_is_closer else -intra
    s_out = inter if larger_is_closer else -inter
    n1, n2 = len(s_in), len(s_out)
    pooled = math.sqrt(((n1 - 1) * s_in.var(ddof=1) + (n2 - 1) * s_out.var(ddof=1)) / max(n1 + n2 - 2, 1)) \
        if n1 > 1 and n2 > 1 else float("nan")
    d = float((s_in.mean() - s_out.mean()) / pooled) if pooled and math.isfinite(pooled) else float("nan")
    ranks = rankdata(np.concatenate([s_in, s_out]))
    auc = float((ranks[:n1].sum() - n1 * (n1 + 1) / 2) / (n1 * n2))
    return {"cohens_d": d, "auc": auc}


def _similarity_unit(builder: AggregateBuilder, job: dict[str, Any]) -> dict[str, Any]:
    X, pids = builder.build(job["patients"], job["k"], job["r"], job["seed"])
    lab = job["labels"]
    y = np.array([lab[p] for p in pids])
    rng = np.random.default_rng(job["seed"])
    intra, inter = sample_pairs(y, int(job["n_pairs"]), rng)
    out: dict[str, Any] = {"measures": {}, "per_class": {}, "n_intra": int(len(intra)), "n_inter": int(len(inter))}
    keep = int(job["keep_values"])
    for measure in job["measures"]:
        vi = _pair_values(X, intra[:, 0], intra[:, 1], measure)
        vo = _pair_values(X, inter[:, 0], inter[:, 1], measure)
        closer = measure != "euclidean"
        res = {"intra_mean": float(vi.mean()) if len(vi) else float("nan"),
               "inter_mean": float(vo.mean()) if len(vo) else float("nan"),
               "intra_std": float(vi.std()) if len(vi) else float("nan"),
               "inter_std": float(vo.std()) if len(vo) else float("nan"), **separation(vi, vo, closer)}
        if keep:
            res["values"] = {"intra": vi[:keep].astype(np.float32), "inter": vo[:keep].astype(np.float32)}
        out["measures"][measure] = res
        for c in sorted(set(y.tolist())):
            ci = y[intra[:, 0]] == c
            co = (y[inter[:, 0]] == c) | (y[inter[:, 1]] == c)
            out["per_class"].setdefault(c, {})[measure] = separation(vi[ci], vo[co], closer)
    return out


class SimilarityTask(Task):
    """Cosine, Euclidean and dot-product distributions of intra- vs inter-class patient pairs.

    ``n_pairs`` intra-class and as many inter-class pairs of patient
    aggregates are sampled per repeat; the separation is reported as Cohen's d
    (signed so that > 0 means same-class pairs are closer) and the AUC of
    "a same-class pair is closer than a different-class pair". ``k`` and
    ``repeats`` override the sampling entry's.
    """

    component_params = {"aggregator": "aggregator"}

    def __init__(self, sampling: str | None = None, aggregator: dict | None = None, label: str = "cancer_type", k: int | None = None,
                 repeats: int | None = None, n_pairs: int = 20000, n_repeats: int = 5,
                 measures: list | None = None, bins: int = 60, min_class_patients: int = 2):
        self.sampling = sampling
        self.aggregator = aggregator
        self.label = label
        self.k = k
        self.repeats = repeats
        self.n_pairs = n_pairs
        self.n_repeats = n_repeats
        self.measures = measures
        self.bins = bins
        self.min_class_patients = min_class_patients

    @classmethod
    def check_recipe(cls, params: dict[str, Any], recipe: Any) -> list[tuple[str, str, str]]:
        issues = _check_sampling(params, recipe)
        for m in params.get("measures") or []:
            if m not in MEASURES:
                issues.append(("params.measures", f"unknown measure {m!r}", f"use {', '.join(MEASURES)}"))
        return issues

    def run(self, ctx: Any) -> dict[str, Any]:
        name = _out(ctx, "similarity")
        sampler, sampling_name = _resolve_sampler(ctx, self.sampling)
        builder = _builder(ctx, sampler, self.aggregator)
        k, r = _single_point(self.k, self.repeats, sampler)
        measures = list(self.measures or MEASURES)
        pids, y = _labelled(ctx.pool, _eligible_patients(builder), self.label)
        pids, y, dropped = _drop_small(pids, y, self.min_class_patients)
        if len(set(y.tolist())) < 2:
            raise DataError(f"similarity: fewer than 2 {self.label} classes", where=f"tasks.{name}")
        labels = dict(zip(pids.tolist(), y.tolist()))
        params_key = {**self.get_params(), "sampler": sampler.get_params()}
        tkey = _target_key(pids, y)
        units, meta = [], {}
        for rep in range(int(self.n_repeats)):
            key = ctx.unit_key(name, "similarity", params_key, tkey, k, r, rep)
            job = {"patients": pids.tolist(), "labels": labels, "k": k, "r": r, "n_pairs": self.n_pairs,
                   "measures": measures, "seed": ctx.seed_for(name, "similarity", k, r, rep),
                   "keep_values": 5000 if rep == 0 else 0}
            units.append(Unit(key, _similarity_unit, (builder, job), label=f"similarity #{rep}"))
            meta[key] = rep
        results = ctx.run_units(name, units)
        metric_rows, class_rows = [], []
        for key, rep in meta.items():
            res = results[key]
            for measure, mres in res["measures"].items():
                for metric in ("intra_mean", "inter_mean", "intra_std", "inter_std", "cohens_d", "auc"):
                    metric_rows.append({"measure": measure, "metric": metric, "value": mres[metric]})
            for c, per in res["per_class"].items():
                for measure, sres in per.items():
                    for metric, v in sres.items():
                        class_rows.append({"class": c, "measure": measure, "metric": metric, "value": v})
        summary_rows = summarise_rows(metric_rows, by=["measure", "metric"])
        per_class_rows = summarise_rows(class_rows, by=["class", "measure", "metric"])
        tables = {"summary": str(ctx.write_csv(f"{name}/summary.csv", summary_rows)),
                  "per_class": str(ctx.write_csv(f"{name}/per_class.csv", per_class_rows)),
                  "availability": str(ctx.write_csv(f"{name}/availability.csv",
                                                    availability_rows(ctx.pool, pids, y, target=self.label)))}
        first = results[next(iter(meta))]
        figures = [self._histograms(ctx, f"{name}/distributions.png", first, measures, k, r)]
        stat = {(row["measure"], row["metric"]): row for row in summary_rows}
        summary = {"sampling": sampling_name, "label": self.label, "k": k, "repeats": r,
                   "n_patients": int(len(pids)), "n_pairs": int(self.n_pairs), "n_repeats": int(self.n_repeats),
                   "dropped_classes": dropped,
                   "measures": {m: {metric: _pick(stat.get((m, metric)))
                                    for metric in ("intra_mean", "inter_mean", "cohens_d", "auc")}
                                for m in measures}}
        paper = []
        for m in measures:
            auc = _pick(stat.get((m, "auc")))
            paper.append({"experiment": "similarity intra vs inter cancer", "metric": f"AUC ({m})", "modality": "all",
                          "k": k, "repeats": r, "ours_mean": auc["mean"], "ours_ci_low": auc["ci_low"],
                          "ours_ci_high": auc["ci_high"], "paper": "intra-cancer pairs more similar",
                          "note": ("intra closer" if auc["mean"] > 0.5 else "no separation")
                          + f"; Cohen's d {_fmt(_pick(stat.get((m, 'cohens_d')))['mean'], 2)}"})
        return {"summary": summary, "tables": tables, "figures": figures, "paper_comparison": paper}

    def _histograms(self, ctx: Any, rel: str, res: dict, measures: list[str], k: int, r: int) -> str:
        plt = _plt()
        fig, axes = plt.subplots(1, len(measures), figsize=(4.2 * len(measures), 3.4))
        axes = np.atleast_1d(axes)
        for ax, m in zip(axes, measures):
            mres = res["measures"][m]
            vals = mres.get("values") or {}
            vi, vo = vals.get("intra", np.array([])), vals.get("inter", np.array([]))
            both = np.concatenate([vi, vo]) if len(vi) + len(vo) else np.array([0.0])
            bins = np.linspace(float(np.min(both)), float(np.max(both)) + 1e-9, int(self.bins))
            ax.hist(vo, bins=bins, alpha=0.55, density=True, label="inter-cancer", color="tab:gray")
            ax.hist(vi, bins=bins, alpha=0.55, density=True, label="intra-cancer", color="tab:red")
            ax.set_title(f"{m}: AUC {_fmt(mres['auc'], 2)}, d {_fmt(mres['cohens_d'], 2)}", fontsize=9)
            ax.set_xlabel("distance" if m == "euclidean" else "similarity")
            ax.legend(fontsize=7)
        fig.suptitle(f"patient-aggregate pairs ({self.label}), k={k}, r={r}", fontsize=10)
        return str(ctx.save_figure(fig, rel))


# ============================================================================ retrieval

def _majority(labels: np.ndarray) -> str:
    """Most frequent label; ties go to the label of the nearest neighbour among the tied."""
    vals, first, counts = np.unique(labels, return_index=True, return_counts=True)
    best = counts.max()
    tied = first[counts == best]
    return str(labels[tied.min()])


def _retrieval_split(builder: AggregateBuilder, job: dict[str, Any]) -> dict[str, Any]:
    Xi, pi = builder.build(job["index_patients"], job["k"], job["r"], job["seed_index"])
    Xq, pq = builder.build(job["query_patients"], job["k"], job["r"], job["seed_query"])
    if set(pi.tolist()) & set(pq.tolist()):
        raise FusionkitError("patient leak: a patient is both indexed and a query")
    return {"Xi": Xi, "pi": pi, "Xq": Xq, "pq": pq}


def _retrieval_unit(builder: AggregateBuilder, job: dict[str, Any]) -> dict[str, Any]:
    import time

    from fusionkit_plugins.indexes.faiss import FaissFlatIndex, recall_at_k

    d = _retrieval_split(builder, job)
    lab = job["labels"]
    top = int(job["top_k"])
    index = copy.deepcopy(job["index"])
    t0 = time.perf_counter()
    index.build(d["Xi"], d["pi"])
    t_build = time.perf_counter() - t0
    t0 = time.perf_counter()
    _, ids = index.search(d["Xq"], top)
    t_search = time.perf_counter() - t0
    exact = FaissFlatIndex(metric=getattr(index, "metric", "l2")).build(d["Xi"], d["pi"])
    _, ids_exact = exact.search(d["Xq"], top)
    yq = np.array([lab[p] for p in d["pq"]])
    out: dict[str, Any] = {"n_index": int(len(d["pi"])), "n_query": int(len(d["pq"])),
                           "build_s": t_build, "search_s": t_search,
                           "recall_at_k": recall_at_k(ids, ids_exact, top)}
    for tag, found in (("", ids), ("exact_", ids_exact)):
        ny = np.array([[lab.get(str(x), "") for x in row] for row in found])
        valid = np.array([[x != "" for x in row] for row in found])
        prec = ((ny == yq[:, None]) & valid).sum(axis=1) / np.maximum(valid.sum(axis=1), 1)
        vote = np.array([_majority(row[v]) if v.any() else "" for row, v in zip(ny, valid)])
        out[f"{tag}precision_at_k"] = float(prec.mean())
        out[f"{tag}majority_accuracy"] = float((vote == yq).mean())
        if not tag:
            out["per_class"] = {c: {"precision_at_k": float(prec[yq == c].mean()),
                                    "majority_accuracy": float((vote[yq == c] == c).mean()),
                                    "queries": int((yq == c).sum())} for c in sorted(set(yq.tolist()))}
    return out


class RetrievalTask(Task):
    """Patient retrieval through a vector index, with patient-disjoint index and query sets.

    Each repeat splits patients (stratified by ``label``) into index patients
    and ``query_fraction`` query patients, builds their aggregates separately,
    indexes the first and queries with the second: precision@k (neighbours of
    the query's class), majority-vote accuracy, and recall@k of the index
    against exact search (faiss-flat, same metric) on the same data. ``index``:
    a name or {name, params} (default: the recipe's ``index``, else
    faiss-hnsw with cosine). The last repeat's index is saved under
    ``<task>/index/`` with its id table, ``lookup.npz`` (aggregates of the
    indexed and query patients, for ``fusionkit query --patient``) and
    ``labels.json``.
    """

    component_params = {"aggregator": "aggregator", "index": "index"}

    def __init__(self, sampling: str | None = None, aggregator: dict | None = None, label: str = "cancer_type", k: int | None = None,
                 repeats: int | None = None, index: Any = None, top_k: int = 10, query_fraction: float = 0.2,
                 n_repeats: int = 5, min_class_patients: int = 2, save_index: bool = True):
        self.sampling = sampling
        self.aggregator = aggregator
        self.label = label
        self.k = k
        self.repeats = repeats
        self.index = index
        self.top_k = top_k
        self.query_fraction = query_fraction
        self.n_repeats = n_repeats
        self.min_class_patients = min_class_patients
        self.save_index = save_index

    @classmethod
    def check_recipe(cls, params: dict[str, Any], recipe: Any) -> list[tuple[str, str, str]]:
        issues = _check_sampling(params, recipe)
        idx = params.get("index")
        if idx is not None and not isinstance(idx, (str, dict)):
            issues.append(("params.index", "index must be a name or {name, params}", "e.g. index: faiss-hnsw"))
        if not 0 < float(params.get("query_fraction", 0.2)) < 1:
            issues.append(("params.query_fraction", "query_fraction must be between 0 and 1", ""))
        return issues

    def _index(self, ctx: Any) -> Any:
        if self.index is not None:
            return ctx.index(self.index)
        if ctx.recipe.index is not None:
            return ctx.index()
        return ctx.index({"name": "faiss-hnsw", "params": {"metric": "cosine"}})

    def run(self, ctx: Any) -> dict[str, Any]:
        name = _out(ctx, "retrieval")
        sampler, sampling_name = _resolve_sampler(ctx, self.sampling)
        builder = _builder(ctx, sampler, self.aggregator)
        k, r = _single_point(self.k, self.repeats, sampler)
        index = self._index(ctx)
        index_desc = {"name": getattr(index, "index_name", type(index).__name__), "params": index.get_params()}
        pids, y = _labelled(ctx.pool, _eligible_patients(builder), self.label)
        pids, y, dropped = _drop_small(pids, y, self.min_class_patients)
        if len(pids) < 4:
            raise DataError(f"retrieval: only {len(pids)} labelled patients", where=f"tasks.{name}")
        labels = dict(zip(pids.tolist(), y.tolist()))
        params_key = {**self.get_params(), "sampler": sampler.get_params(), "index": index_desc}
        tkey = _target_key(pids, y)
        units, meta, jobs = [], {}, {}
        for rep in range(int(self.n_repeats)):
            ia, qa = _split(pids, y, self.query_fraction, ctx.seed_for(name, "split", rep))
            key = ctx.unit_key(name, "retrieval", params_key, tkey, k, r, rep)
            job = {"index_patients": pids[ia].tolist(), "query_patients": pids[qa].tolist(), "labels": labels,
                   "k": k, "r": r, "top_k": self.top_k, "index": index,
                   "seed_index": ctx.seed_for(name, "index", k, r, rep),
                   "seed_query": ctx.seed_for(name, "query", k, r, rep)}
            units.append(Unit(key, _retrieval_unit, (builder, job), label=f"retrieval #{rep}"))
            meta[key] = rep
            jobs[rep] = job
        results = ctx.run_units(name, units)
        metric_rows, class_rows, run_rows = [], [], []
        metrics = ("precision_at_k", "majority_accuracy", "recall_at_k", "exact_precision_at_k",
                   "exact_majority_accuracy", "build_s", "search_s")
        for key, rep in meta.items():
            res = results[key]
            run_rows.append({"repeat": rep, **{m: res[m] for m in metrics}, "n_index": res["n_index"],
                             "n_query": res["n_query"]})
            for m in metrics:
                metric_rows.append({"metric": m, "value": res[m]})
            for c, pc in res["per_class"].items():
                for m in ("precision_at_k", "majority_accuracy"):
                    class_rows.append({"class": c, "metric": m, "value": pc[m]})
        summary_rows = summarise_rows(metric_rows, by=["metric"])
        per_class_rows = summarise_rows(class_rows, by=["class", "metric"])
        tables = {"summary": str(ctx.write_csv(f"{name}/summary.csv", summary_rows)),
                  "per_class": str(ctx.write_csv(f"{name}/per_class.csv", per_class_rows)),
                  "runs": str(ctx.write_csv(f"{name}/runs.csv", run_rows)),
                  "availability": str(ctx.write_csv(f"{name}/availability.csv",
                                                    availability_rows(ctx.pool, pids, y, target=self.label)))}
        stat = {row["metric"]: row for row in summary_rows}
        saved = None
        if self.save_index:
            saved = self._save_last(ctx, name, builder, jobs[int(self.n_repeats) - 1], index, pids)
        chance = float(np.max(np.unique(y, return_counts=True)[1]) / len(y))
        summary = {"sampling": sampling_name, "label": self.label, "k": k, "repeats": r, "top_k": int(self.top_k),
                   "index": index_desc, "n_patients": int(len(pids)), "n_repeats": int(self.n_repeats),
                   "majority_rate": chance, "dropped_classes": dropped, "saved_index": saved,
                   **{m: _pick(stat.get(m)) for m in metrics}}
        paper = []
        for m, label in (("precision_at_k", f"precision@{self.top_k}"), ("majority_accuracy", "majority-vote accuracy"),
                         ("recall_at_k", f"recall@{self.top_k} vs exact")):
            p = _pick(stat.get(m))
            paper.append({"experiment": f"retrieval ({index_desc['name']})", "metric": label, "modality": "all",
                          "k": k, "repeats": r, "ours_mean": p["mean"], "ours_ci_low": p["ci_low"],
                          "ours_ci_high": p["ci_high"], "paper": "not in the paper (ours)",
                          "note": f"majority class rate {_fmt(chance)}" if m != "recall_at_k" else "ANN vs faiss-flat"})
        return {"summary": summary, "tables": tables, "figures": [], "paper_comparison": paper}

    def _save_last(self, ctx: Any, name: str, builder: AggregateBuilder, job: dict[str, Any], index: Any,
                   pids: np.ndarray) -> str:
        import io
        import json

        from fusionkit import atomic_write_bytes, atomic_write_text

        d = _retrieval_split(builder, job)
        built = copy.deepcopy(index).build(d["Xi"], d["pi"])
        folder = ctx.path(f"{name}/index/meta.json").parent
        built.save(str(folder))
        X = np.concatenate([d["Xi"], d["Xq"]]).astype(np.float32)
        ids = np.concatenate([d["pi"], d["pq"]]).astype(str)
        role = np.array(["index"] * len(d["pi"]) + ["query"] * len(d["pq"]))
        buf = io.BytesIO()
        np.savez(buf, X=X, ids=ids, role=role)
        atomic_write_bytes(folder / "lookup.npz", buf.getvalue())
        table: dict[str, dict[str, Any]] = {}
        for lname in ctx.pool.labels:
            vals = ctx.pool.patient_label(lname, ids)
            table[lname] = {p: (v if isinstance(v, (int, float, str, bool)) else str(v))
                            for p, v in zip(ids.tolist(), vals) if v is not None}
        if self.label not in table:
            table[self.label] = {p: job["labels"][p] for p in ids.tolist() if p in job["labels"]}
        atomic_write_text(folder / "labels.json", json.dumps(table, default=str))
        return str(folder)


@hookimpl
def register_tasks(register):
    register("classifier", PatientClassifierTask, tags=["patient-level", "supervised"])
    register("gmm", GMMTask, tags=["patient-level", "unsupervised"])
    register("similarity", SimilarityTask, tags=["patient-level", "unsupervised"])
    register("retrieval", RetrievalTask, tags=["patient-level", "index"])
