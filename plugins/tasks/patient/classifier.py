"""The ``classifier`` task: cancer type, molecular subtype or TMB class from patient aggregates.

A dense network (256-128-softmax, torch) and a multinomial logistic baseline,
trained on the aggregates of a patient-disjoint 80/20 split, over a grid of
sample counts k x sampling repeats r, ``n_repeats`` splits per grid point
(shared plumbing in :mod:`fusionkit_plugins.tasks.patient.common`).
"""

from __future__ import annotations

import math
from typing import TYPE_CHECKING, Any

import numpy as np

from fusionkit import DataError, Range, Task, Unit, hookimpl
from fusionkit.metrics import multiclass_metrics, summarise_rows
from fusionkit_plugins.tasks.patient import figures, late_fusion
from fusionkit_plugins.tasks.patient.common import (AggregateBuilder, availability_only_baseline,
                                                    availability_rows, build_disjoint, build_disjoint_parts,
                                                    check_repeats_as, check_sampling, check_weights, combine_repeats,
                                                    drop_small, eligible_patients, extremes, fmt, grid_points,
                                                    labelled, output_name, pick, prepare, split_patients,
                                                    target_key, weight_candidates, weighted_sum, weights_text,
                                                    write_tables)
from fusionkit_plugins.tasks.patient.logistic import _fit_logistic, choose_weights

if TYPE_CHECKING:  # pragma: no cover
    from fusionkit import RunContext

MODELS = ("dense", "logistic")
METRICS = ("accuracy", "macro_f1", "mcc", "balanced_accuracy")


# ----------------------------------------------------------------------------- one repeat (a unit)

def _fit_dense(Xtr: np.ndarray, ytr: np.ndarray, ptr: np.ndarray, Xte: np.ndarray, n_classes: int,
               cfg: dict[str, Any], seed: int) -> tuple[np.ndarray, dict[str, Any]]:
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
    info = {"best_epoch": model_.best_epoch, "epochs": len(model_.history["train_loss"])}
    return model_.predict(Xte).astype(np.int64), info


def _fit_predict(model: str, Xtr: np.ndarray, ytr: np.ndarray, ptr: np.ndarray, Xte: np.ndarray,
                 n_classes: int, cfg: dict[str, Any], seed: int) -> tuple[np.ndarray, dict[str, Any]]:
    """Test predictions (class indices) of one model, and what its training reported."""
    if model == "logistic":
        return _fit_logistic(Xtr, ytr, Xte, cfg, ptr)
    if model == "dense":
        return _fit_dense(Xtr, ytr, ptr, Xte, n_classes, cfg, seed)
    raise DataError(f"unknown classifier model {model!r}", hint="use 'dense' and/or 'logistic'")


def classifier_unit(builder: AggregateBuilder, job: dict[str, Any]) -> dict[str, Any]:
    """One repeat at one grid point: build train/test aggregates separately, fit, predict."""
    classes = job["classes"]
    index = {c: i for i, c in enumerate(classes)}
    lab = job["labels"]
    k, r = job["k"], job["r"]
    how, cfg, chosen = job.get("repeats_as", "concat"), job["cfg"], {}
    args = (builder, job["train"], job["test"], k, r, (job["seed_train"], job["seed_test"]))
    leak = "a patient is in both the training and the test aggregates"
    weighted = bool(job.get("modality_weights"))
    if weighted:  # the same plans, kept per modality: every weight set is a sum of scaled draws
        parts_tr, ptr, parts_te, pte, mods = build_disjoint_parts(*args, draws=job["train_draws"], leak=leak)
    else:
        Xtr, ptr, Xte, pte = build_disjoint(*args, draws=job["train_draws"], leak=leak)
    ytr = np.array([index[lab[p]] for p in ptr], dtype=np.int64)
    yte = np.array([index[lab[p]] for p in pte], dtype=np.int64)
    if weighted:
        w, C, scores = choose_weights(parts_tr, mods, ytr, ptr, r, how,
                                      weight_candidates(job["modality_weights"], mods, job.get("weight_factors")), cfg)
        cfg = {**cfg, "C": C}  # chosen with the weights, on the training patients only
        chosen = {"weights": weights_text(w), "weight_scores": scores}
        Xtr, Xte = weighted_sum(parts_tr, mods, w), weighted_sum(parts_te, mods, w)
    Xtr, Xte = combine_repeats(Xtr, r, how), combine_repeats(Xte, r, how)
    out: dict[str, Any] = {"test_ids": pte, "y_test": yte, "n_train": int(len(np.unique(ptr))),
                           "n_test": int(len(pte)), "models": {}}
    for mi, model in enumerate(job["models"]):
        pred, info = _fit_predict(model, Xtr, ytr, ptr, Xte, len(classes), cfg, job["seed_model"] + mi)
        info.update(chosen)
        m = multiclass_metrics([classes[i] for i in yte], [classes[i] for i in pred], labels=classes)
        out["models"][model] = {"pred": pred.astype(np.int32), "metrics": m, **info}
    return out


def late_fusion_unit(pool: Any, job: dict[str, Any]) -> dict[str, Any]:
    """The late-fusion reference of one repeat's split (:mod:`.late_fusion`): the same model family
    on per-modality patient means and availability flags, each part's features from its own rows."""
    classes = job["classes"]
    index = {c: i for i, c in enumerate(classes)}
    ptr, pte = np.asarray(job["train"]).astype(str), np.asarray(job["test"]).astype(str)
    Xtr, Xte = late_fusion.split_features(pool, ptr, pte)
    ytr = np.array([index[job["labels"][p]] for p in ptr], dtype=np.int64)
    yte = np.array([index[job["labels"][p]] for p in pte], dtype=np.int64)
    out: dict[str, Any] = {"n_features": int(Xtr.shape[1]), "models": {}}
    for mi, model in enumerate(job["models"]):
        pred, info = _fit_predict(model, Xtr, ytr, ptr, Xte, len(classes), job["cfg"], job["seed_model"] + mi)
        m = multiclass_metrics([classes[i] for i in yte], [classes[i] for i in pred], labels=classes)
        out["models"][late_fusion.PREFIX + model] = {"metrics": m, **info}
    return out


# ----------------------------------------------------------------------------- the task


_COUNT = Range(1, integer=True)
#: declared parameter constraints (checked by ``fusionkit validate``)
_CONSTRAINTS = {"n_repeats": _COUNT, "test_fraction": Range(0, 1, lo_open=True, hi_open=True),
                "val_fraction": Range(0, 1, hi_open=True), "min_class_patients": _COUNT,
                "subtype_min_patients": _COUNT, "train_draws": _COUNT, "C": Range(0, lo_open=True), "C_folds": Range(2, integer=True),
                "max_iter": _COUNT, "tol": Range(0, lo_open=True), "max_epochs": _COUNT, "batch_size": _COUNT, "lr": Range(0, lo_open=True),
                "dropout": Range(0, 1, hi_open=True), "patience": Range(0, integer=True)}


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
    ``train_draws`` aggregates per training patient (fresh draws); the logistic
    baseline's ``C`` (a value, or a list chosen by inner cross-validation on the training
    patients, ``C_folds`` folds), ``max_iter`` and ``tol`` (Newton-CG; fitted in the span of the
    standardised training rows, see :func:`_fit_logistic`); ``repeats_as``: the r
    repeats of a patient side by side as r x dim features (``concat``, the paper's
    layout and the default) or averaged (``mean``: dim features, one sum of k x r draws);
    ``modality_weights``: scale each modality's draws by a factor before the sum, the factors
    chosen per split with C by inner cross-validation of the logistic model on the training
    patients (``search``: none, or one modality at each of ``weight_factors``, default x0.5
    and x2; or a list of weight sets); both models then use the chosen sums (``aggregator``
    must be ``sum``).
    """

    component_params = {"aggregator": "aggregator"}

    constraints = _CONSTRAINTS

    def __init__(self, sampling: str | None = None, aggregator: dict | None = None, targets: list | None = None,
                 models: list | None = None, grid: dict | None = None, n_repeats: int = 30,
                 test_fraction: float = 0.2, class_weight: bool = False, min_class_patients: int = 10,
                 subtype_min_patients: int = 100, subtype_scope: str = "per-cancer",
                 cancer_label: str = "cancer_type", train_draws: int = 1, hidden: list | None = None,
                 dropout: float = 0.2, lr: float = 1e-3, batch_size: int = 64, max_epochs: int = 100,
                 patience: int = 10, val_fraction: float = 0.2, C: float | list = 1.0, max_iter: int = 1000,
                 tol: float = 1e-4, repeats_as: str = "concat", C_folds: int = 3,
                 modality_weights: str | list | None = None, weight_factors: list | None = None):
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
        self.tol = tol
        self.repeats_as = repeats_as
        self.C_folds = C_folds
        self.modality_weights = modality_weights
        self.weight_factors = weight_factors

    @classmethod
    def check_recipe(cls, params: dict[str, Any], recipe: Any) -> list[tuple[str, str, str]]:
        issues = check_sampling(params, recipe)
        for m in params.get("models") or []:
            if m not in MODELS:
                issues.append(("params.models", f"unknown model {m!r}", "use 'dense' and/or 'logistic'"))
        if params.get("subtype_scope", "per-cancer") not in ("per-cancer", "joint"):
            issues.append(("params.subtype_scope", "subtype_scope must be 'per-cancer' or 'joint'", ""))
        if not 0 < float(params.get("test_fraction", 0.2)) < 1:
            issues.append(("params.test_fraction", "test_fraction must be between 0 and 1", ""))
        issues += check_repeats_as(params, "concat")
        issues += check_weights(params, recipe)
        return issues

    # ------------------------------------------------------------------ targets
    def _targets(self, pool: Any, patients: np.ndarray) -> tuple[list[dict[str, Any]], list[str]]:
        """Labelled patient groups to classify (one per target; subtypes per cancer), and notes."""
        out, notes = [], []
        for target in self.targets or ["cancer_type"]:
            try:
                pids, y = labelled(pool, patients, target)
            except DataError as err:
                notes.append(f"{target}: skipped ({err.message})")
                continue
            if target == "subtype":
                groups = self._subtype_groups(pool, pids, y, notes)
            else:
                groups = [(target, pids, y)]
            for name, gp, gy in groups:
                gp, gy, dropped = drop_small(gp, gy, self.min_class_patients)
                if dropped:
                    notes.append(f"{name}: classes with < {self.min_class_patients} patients left out: "
                                 + ", ".join(dropped))
                classes = sorted(set(gy.tolist()))
                if len(classes) < 2:
                    notes.append(f"{name}: skipped (fewer than 2 classes with enough patients)")
                    continue
                out.append({"name": name, "label": target, "pids": gp, "y": gy, "classes": classes})
        return out, notes

    def _subtype_groups(self, pool: Any, pids: np.ndarray, y: np.ndarray, notes: list[str]
                        ) -> list[tuple[str, np.ndarray, np.ndarray]]:
        cancer_of = dict(zip(*labelled(pool, pids, self.cancer_label)))
        cancers = np.array([cancer_of.get(p, "") for p in pids])
        vals, counts = np.unique(cancers, return_counts=True)
        keep = [c for c, n in zip(vals, counts) if c and n > int(self.subtype_min_patients)]
        for c, n in zip(vals, counts):
            if c not in keep:
                notes.append(f"subtype: {c or '(no cancer type)'} left out ({n} labelled patients "
                             f"<= {self.subtype_min_patients})")
        if self.subtype_scope == "joint":
            sel = np.isin(cancers, keep)
            return [("subtype", pids[sel], y[sel])] if keep else []
        return [(f"subtype:{c}", pids[cancers == c], y[cancers == c]) for c in keep]

    # ------------------------------------------------------------------ run
    def run(self, ctx: RunContext) -> dict[str, Any]:
        name = output_name(ctx, "classifier")
        sampler, sampling_name, builder = prepare(ctx, self.sampling, self.aggregator)
        grid = grid_points(self.grid, sampler)
        models = list(self.models or list(MODELS))
        for m in models:
            if m not in MODELS:
                raise DataError(f"unknown classifier model {m!r}", where=f"tasks.{name}.params.models",
                                hint="use 'dense' and/or 'logistic'")
        targets, notes = self._targets(ctx.pool, eligible_patients(builder))
        if not targets:
            raise DataError("classifier: no target has two classes with enough labelled patients",
                            where=f"tasks.{name}", hint="; ".join(notes) or "check the label readers")
        units, meta = self._units(ctx, name, builder, sampler, targets, grid, models)
        results = ctx.run_units(name, units)
        return self._report(ctx, name, sampling_name, targets, grid, models, results, meta, notes)

    def _config(self) -> dict[str, Any]:
        return {"hidden": list(self.hidden or [256, 128]), "dropout": self.dropout, "lr": self.lr,
                "batch_size": self.batch_size, "max_epochs": self.max_epochs, "patience": self.patience,
                "val_fraction": self.val_fraction, "C": self.C, "max_iter": self.max_iter, "tol": self.tol, "C_folds": self.C_folds,
                "class_weight": bool(self.class_weight)}

    def _units(self, ctx: RunContext, name: str, builder: AggregateBuilder, sampler: Any,
               targets: list[dict[str, Any]], grid: list[tuple[int, int]], models: list[str]
               ) -> tuple[list[Unit], dict[str, tuple]]:
        cfg = self._config()
        params_key = {**self.get_params(), "sampler": sampler.get_params()}
        units, meta = [], {}
        for t in targets:
            tkey = target_key(t["pids"], t["y"])
            labels = dict(zip(t["pids"].tolist(), t["y"].tolist()))
            for rep in range(int(self.n_repeats)):
                tr, te = split_patients(t["pids"], t["y"], self.test_fraction,
                                        ctx.seed_for(name, t["name"], "split", rep))
                key = ctx.unit_key(name, "late-fusion", params_key, t["name"], tkey, rep)
                lf_job = {"train": t["pids"][tr].tolist(), "test": t["pids"][te].tolist(), "labels": labels,
                          "classes": t["classes"], "models": models, "cfg": cfg,
                          "seed_model": ctx.seed_for(name, t["name"], "late-fusion", rep) % (2 ** 31)}
                units.append(Unit(key, late_fusion_unit, (builder.pool, lf_job),
                                  label=f"{t['name']} late fusion #{rep}"))
                meta[key] = (t["name"], None, None, rep)
                for k, r in grid:
                    key = ctx.unit_key(name, "classifier", params_key, t["name"], tkey, k, r, rep)
                    job = {"train": t["pids"][tr].tolist(), "test": t["pids"][te].tolist(), "labels": labels,
                           "classes": t["classes"], "k": k, "r": r, "models": models, "cfg": cfg,
                           "train_draws": int(self.train_draws), "repeats_as": str(self.repeats_as),
                           "modality_weights": self.modality_weights, "weight_factors": self.weight_factors,
                           "seed_train": ctx.seed_for(name, t["name"], "train", k, r, rep),
                           "seed_test": ctx.seed_for(name, t["name"], "test", k, r, rep),
                           "seed_model": ctx.seed_for(name, t["name"], "model", k, r, rep) % (2 ** 31)}
                    units.append(Unit(key, classifier_unit, (builder, job),
                                      label=f"{t['name']} k={k} r={r} #{rep}"))
                    meta[key] = (t["name"], k, r, rep)
        return units, meta

    # ------------------------------------------------------------------ outputs
    def _report(self, ctx: RunContext, name: str, sampling_name: str, targets: list[dict[str, Any]],
                grid: list[tuple[int, int]], models: list[str], results: dict[str, Any],
                meta: dict[str, tuple], notes: list[str]) -> dict[str, Any]:
        run_rows, metric_rows, class_rows, confusion = _collect(results, meta)
        summary_rows = summarise_rows(metric_rows, by=["target", "model", "k", "repeats", "metric"])
        per_class_rows = summarise_rows(class_rows, by=["target", "model", "k", "repeats", "class", "metric"])
        tables = write_tables(ctx, name, {"summary": summary_rows, "per_class": per_class_rows, "runs": run_rows})
        stat = {(row["target"], row["model"], row["k"], row["repeats"], row["metric"]): row for row in summary_rows}
        cstat = {(row["target"], row["model"], row["k"], row["repeats"], row["class"], row["metric"]): row
                 for row in per_class_rows}
        out_summary: dict[str, Any] = {"sampling": sampling_name, "grid": [list(g) for g in grid],
                                       "n_repeats": int(self.n_repeats), "models": models, "targets": {},
                                       "notes": notes}
        figs: list[str] = []
        avail_rows: list[dict[str, Any]] = []
        paper: list[dict[str, Any]] = []
        for t in targets:
            avail_rows += availability_rows(ctx.pool, t["pids"], t["y"], target=t["name"])
            base = availability_only_baseline(ctx.pool, t["pids"], t["y"], ctx.seed_for(name, t["name"], "avail"))
            entry: dict[str, Any] = {"classes": t["classes"], "n_patients": int(len(t["pids"])),
                                     "availability_only_accuracy": base["accuracy"],
                                     "majority_rate": base["majority_rate"], "models": {},
                                     "late_fusion": _late_summary(t["name"], models, grid, stat)}
            for model in models:
                best = self._best_model(ctx, name, t, model, grid, stat, cstat, confusion, figs, paper)
                if best is not None:
                    entry["models"][model] = best
            out_summary["targets"][t["name"]] = entry
        tables["availability"] = str(ctx.write_csv(f"{name}/availability.csv", avail_rows))
        return {"summary": out_summary, "tables": tables, "figures": figs, "paper_comparison": paper}

    def _best_model(self, ctx: RunContext, name: str, t: dict[str, Any], model: str, grid: list[tuple[int, int]],
                    stat: dict, cstat: dict, confusion: dict[tuple, np.ndarray], figs: list[str],
                    paper: list[dict[str, Any]]) -> dict[str, Any] | None:
        """One model's best grid point (by mean MCC): its metrics; writes its confusion and grid figures."""
        tname = t["name"]
        mcc_grid = {(k, r): stat[(tname, model, k, r, "mcc")]["mean"] for k, r in grid
                    if (tname, model, k, r, "mcc") in stat}
        if not mcc_grid:
            return None
        bk, br = max(mcc_grid, key=lambda g: (np.nan_to_num(mcc_grid[g], nan=-2), g[0] * g[1]))
        best = {metric: pick(stat.get((tname, model, bk, br, metric))) for metric in METRICS}
        best["late_fusion_macro_f1"] = pick(stat.get((tname, late_fusion.PREFIX + model, bk, br, "macro_f1")))
        best["retention"] = pick(stat.get((tname, model, bk, br, "retention")))
        C = confusion[(tname, model, bk, br)]
        safe = tname.replace(":", "_")
        ctx.write_csv(f"{name}/confusion_{safe}_{model}.csv",
                      [{"true": t["classes"][i], **{c: int(C[i, j]) for j, c in enumerate(t["classes"])}}
                       for i in range(len(t["classes"]))])
        figs.append(figures.confusion(
            ctx, f"{name}/confusion_{safe}_{model}.png", C, t["classes"],
            f"{tname} - {model} (k={bk}, r={br}; summed over {self.n_repeats} repeats)"))
        hm = figures.grid_heatmap(ctx, f"{name}/mcc_grid_{safe}_{model}.png", mcc_grid,
                                  f"{tname} - {model}: mean MCC over {self.n_repeats} repeats", "MCC")
        if hm:
            figs.append(hm)
        paper += _paper_rows(tname, model, bk, br, grid, stat, cstat, t["classes"], C)
        return {"best_k": bk, "best_repeats": br, **best, "top_confusions": _top_confusions(C, t["classes"])}


def _collect(results: dict[str, Any], meta: dict[str, tuple]
             ) -> tuple[list[dict], list[dict], list[dict], dict[tuple, np.ndarray]]:
    """Tidy rows of every unit: runs, metrics, per-class metrics; confusions summed over repeats."""
    run_rows, metric_rows, class_rows = [], [], []
    confusion: dict[tuple, np.ndarray] = {}
    late = {(tname, rep): results[key]["models"] for key, (tname, k, _, rep) in meta.items() if k is None}
    for key, (tname, k, r, rep) in meta.items():
        if k is None:
            continue
        res = results[key]
        for model, mres in res["models"].items():
            m = mres["metrics"]
            base = {"target": tname, "model": model, "k": k, "repeats": r}
            ref = late.get((tname, rep), {}).get(late_fusion.PREFIX + model)
            ref_f1 = ref["metrics"]["macro_f1"] if ref else float("nan")
            run_rows.append({**base, "repeat": rep, "accuracy": m["accuracy"], "macro_f1": m["macro_f1"],
                             "mcc": m["mcc"], "balanced_accuracy": m["balanced_accuracy"],
                             "n_train": res["n_train"], "n_test": res["n_test"],
                             "epochs": mres.get("epochs"), "iterations": mres.get("iterations"),
                             "converged": mres.get("converged"), "C": mres.get("C"),
                             "modality_weights": mres.get("weights"),
                             "late_fusion_C": ref.get("C") if ref else None, "late_fusion_macro_f1": ref_f1,
                             "retention": late_fusion.retention(m["macro_f1"], ref_f1)})
            for metric in METRICS:
                metric_rows.append({**base, "metric": metric, "value": m[metric]})
            metric_rows.append({**base, "metric": "retention",
                                "value": late_fusion.retention(m["macro_f1"], ref_f1)})
            for cls, pc in m["per_class"].items():
                for metric in ("f1", "precision", "recall"):
                    class_rows.append({**base, "class": cls, "metric": metric, "value": pc[metric]})
            ck = (tname, model, k, r)
            confusion[ck] = confusion.get(ck, 0) + np.asarray(m["confusion"])
        for lmodel, lres in late.get((tname, rep), {}).items():  # the reference, next to each grid point
            for metric in METRICS:
                metric_rows.append({"target": tname, "model": lmodel, "k": k, "repeats": r, "metric": metric,
                                    "value": lres["metrics"][metric]})
    return run_rows, metric_rows, class_rows, confusion


def _late_summary(tname: str, models: list[str], grid: list[tuple[int, int]], stat: dict) -> dict[str, Any]:
    """The late-fusion reference per model family (same splits at every grid point: the first one's rows)."""
    k, r = grid[0]
    return {late_fusion.PREFIX + m: {metric: pick(stat.get((tname, late_fusion.PREFIX + m, k, r, metric)))
                                     for metric in METRICS} for m in models}


# ----------------------------------------------------------------------------- paper comparison

def _paper_rows(tname: str, model: str, bk: int, br: int, grid: list[tuple[int, int]], stat: dict, cstat: dict,
                classes: list[str], C: np.ndarray) -> list[dict[str, Any]]:
    """Rows comparing the cancer-type classifier with the paper's claims (none for other targets)."""
    if tname != "cancer_type":
        return []
    exp = f"classifier cancer type ({model})"
    rows = []

    def row(metric: str, st: dict | None, paper: str, note: str, modality: str = "all",
            k: Any = bk) -> dict[str, Any]:
        p = pick(st)
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
    ref = pick(stat.get((tname, late_fusion.PREFIX + model, bk, br, "macro_f1")))
    rows.append(row("signal retention (macro-F1 sums / late fusion)", stat.get((tname, model, bk, br, "retention")),
                    "", f"late fusion ({late_fusion.PREFIX + model}) macro-F1 {fmt(ref['mean'])}"))
    if len(grid) > 1:
        rows.append(_trend_row(exp, tname, model, grid, stat))
    top = _top_confusions(C, classes, n=3)
    rows.append({"experiment": exp, "metric": "most frequent confusions", "modality": "all", "k": bk,
                 "repeats": br, "ours_mean": None, "ours_ci_low": None, "ours_ci_high": None,
                 "paper": "LUAD<->BLCA, COAD<->STAD",
                 "note": ", ".join(f"{a}<->{b} ({n})" for a, b, n in top) or "none"})
    return rows


def _trend_row(exp: str, tname: str, model: str, grid: list[tuple[int, int]], stat: dict) -> dict[str, Any]:
    lo, hi = extremes(grid)
    a = pick(stat.get((tname, model, lo[0], lo[1], "mcc")))["mean"]
    b = pick(stat.get((tname, model, hi[0], hi[1], "mcc")))["mean"]
    trend = "rises" if b > a else "does not rise"
    return {"experiment": exp, "metric": "MCC trend over k x r", "modality": "all",
            "k": f"{lo[0]}x{lo[1]} -> {hi[0]}x{hi[1]}", "repeats": None, "ours_mean": b - a,
            "ours_ci_low": None, "ours_ci_high": None, "paper": "more k and r help",
            "note": f"MCC {fmt(a)} -> {fmt(b)} ({trend})"}


def _meets(row: dict | None, threshold: float) -> str:
    m = pick(row)["mean"]
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


@hookimpl
def register_tasks(register):
    register("classifier", PatientClassifierTask, tags=["patient-level", "supervised"])
