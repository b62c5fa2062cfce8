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

Rooms: this module holds the two registered tasks and their protocol;
:mod:`~fusionkit_plugins.tasks.recognizer.checks` the parameters' constraints
and recipe checks; :mod:`~fusionkit_plugins.tasks.recognizer.data` the splits,
per-repeat data and test metrics; :mod:`~fusionkit_plugins.tasks.recognizer.models`
the network; :mod:`~fusionkit_plugins.tasks.recognizer.baseline` and
:mod:`~fusionkit_plugins.tasks.recognizer.batched` the all-modality logistic
fit and grouped training; :mod:`~fusionkit_plugins.tasks.recognizer.paper`
the comparison with the paper; :mod:`~fusionkit_plugins.tasks.recognizer.figures`
the drawing.
"""

from __future__ import annotations

import logging
import time
import uuid
from typing import TYPE_CHECKING, Any

import numpy as np

from fusionkit import Aggregates, DataError, Task, Unit, hookimpl
from fusionkit.metrics import summarise_rows
from fusionkit_plugins.tasks.recognizer.checks import (CONSTRAINTS, DATA_PARAMS, MODES, check_params,
                                                       recipe_sampling_name)
from fusionkit_plugins.tasks.recognizer.data import (CANCER_MODALITY, RepeatData, concat_aggregates, evaluate,
                                                     split_indices)
from fusionkit_plugins.tasks.recognizer.figures import recognizer_figures
from fusionkit_plugins.tasks.recognizer.models import DeepRecognizer, LogisticBaseline
from fusionkit_plugins.tasks.recognizer.paper import clean, paper_comparison

if TYPE_CHECKING:  # pragma: no cover
    from fusionkit import RunContext

__all__ = ["RecognizerTask", "RecognizerBaselineTask", "RepeatData", "split_indices", "evaluate",
           "DeepRecognizer", "LogisticBaseline"]

log = logging.getLogger(__name__)

ROW_COLUMNS = ("repeat", "model", "mode", "k", "noise", "perturbation", "modality", "stratum", "metric", "value")
GROUP_COLUMNS = ("model", "mode", "k", "noise", "perturbation", "modality", "stratum", "metric")
def _noise_level(ctx: RunContext, name: str) -> Any:
    spec = ctx.recipe.perturbations.get(name)
    frac = spec.params.get("fraction") if spec is not None else None
    return float(frac) if isinstance(frac, (int, float)) and not isinstance(frac, bool) else name


# ----------------------------------------------------------------------------- the task


class _RecognizerBase(Task):
    """Shared protocol of the deep recognizer and the logistic baseline."""

    models: tuple[str, ...] = ()
    group = "recognizer"

    # ------------------------------------------------------------------ validation
    @classmethod
    def check_recipe(cls, params: dict[str, Any], recipe: Any) -> list[tuple[str, str, str]]:
        return check_params({**cls.default_params(), **params}, recipe)

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

    def _unit_params(self, ctx: RunContext, sampling: str) -> dict[str, Any]:
        params = {k: v for k, v in self.get_params().items() if k not in ("n_repeats", "modes", "baseline")}
        for key, default in (("precision", "fp32"), ("batch_repeats", 1), ("lr_schedule", "constant")):
            if params.get(key) == default:  # the default: unit keys (and caches) as before the parameter
                params.pop(key)
        params["_sampling_spec"] = ctx.recipe.sampling[sampling].to_dict()
        params["_perturbations"] = {p: ctx.recipe.perturbations[p].to_dict() for p in self.perturbations or []}
        params["_version"] = 1
        return params

    def _model_factory(self, model: str, ctx: RunContext, modalities: list[str], n_classes: int, seed: int,
                       k_scale: float) -> Any:
        raise NotImplementedError

    @staticmethod
    def _unit_params_for(params: dict[str, Any], model: str) -> dict[str, Any]:
        """Parameters that change a unit's result (a baseline unit ignores the network's)."""
        if model == "deep":
            return {k: v for k, v in params.items() if k not in ("baseline_C",)}
        return {k: v for k, v in params.items() if k in DATA_PARAMS or k.startswith("_")
                or k in ("baseline_C", "C", "max_iter")}

    def _train_unit(self, ctx: RunContext, model: str, sampling: str, ks: list[int], repeat: int, mode: str,
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
    def run(self, ctx: RunContext) -> dict[str, Any]:
        from fusionkit_plugins.sampling.samplers import parse_k

        sampling, problem = recipe_sampling_name({"sampling": self.sampling}, ctx.recipe)
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
        if getattr(self, "batched", False) and _batched_supports(self):
            # one unit per repeat, shared aggregates, batched networks
            from fusionkit_plugins.tasks.recognizer.batched import repeat_units

            units = repeat_units(self, ctx, models, sampling, ks, modes, repeats, run_id, class_names, label,
                                 unit_params)
        t0 = time.perf_counter()
        results = ctx.run_units(ctx.task_name or self.group, units)
        wall = time.perf_counter() - t0
        ordered = [results[u.key] for u in units]
        rows = [row for res in ordered for row in res["rows"]]
        infos = [i for res in ordered for i in (res["infos"] if "infos" in res else [res["info"]])]
        reused = sum(1 for i in infos if i.get("run_id") != run_id)
        return self._report(ctx, rows, infos, sampling, spec.name, ks, modes, models, repeats, reused, wall)

    def _models(self) -> list[str]:
        return list(self.models)

    # ------------------------------------------------------------------ outputs
    def _report(self, ctx: RunContext, rows: list[dict[str, Any]], infos: list[dict[str, Any]], sampling: str,
                sampler: str, ks: list[int], modes: list[str], models: list[str], repeats: int, reused: int,
                wall: float) -> dict[str, Any]:
        name = ctx.task_name or self.group
        rows = [{c: r.get(c) for c in ROW_COLUMNS} for r in rows]
        summary_rows = summarise_rows(rows, GROUP_COLUMNS)
        mcc = [r for r in summary_rows if r["metric"] == "mcc" and r["stratum"] == "all"]
        tables = _write_tables(ctx, name, rows, summary_rows, mcc, infos)
        modalities = list(dict.fromkeys(r["modality"] for r in rows
                                        if r["modality"] not in ("*", CANCER_MODALITY)))
        figures = recognizer_figures(ctx, name, summary_rows, modalities, models, modes)
        mcc_table, robustness = _mcc_tables(mcc)
        epochs = [i["epochs"] for i in infos if "epochs" in i]
        summary = {
            "sampling": sampling, "sampler": sampler, "k": ks, "modes": modes, "models": models,
            "repeats": repeats, "n_per_k": self.n_per_k, "perturbations": list(self.perturbations or []),
            "modalities": modalities,
            "mcc": mcc_table,
            "mean_mcc": {f"{mo}/{md}/{m}": clean(_nanmean([np.nan if x is None else x for x in v.values()]))
                         for mo, t in mcc_table.items() for md, t2 in t.items() for m, v in t2.items()},
            "robustness_mcc": robustness,
            "cancer_type": _cancer_table(summary_rows),
            "embedding_stats": _embedding_stats(ctx),
            "units": {"total": len(infos), "reused": reused, "computed": len(infos) - reused},
            "train_time_s": round(float(sum(i.get("train_s", 0.0) for i in infos if i.get("run_id"))), 2),
            "wall_s": round(wall, 2),
            "epochs_mean": clean(float(np.mean(epochs))) if epochs else None,
            "constant_predictions": _constant_predictions(rows),
            "note": ("MCC per modality over all test aggregates; strata 'absent'/'present' give specificity "
                     "and recall (MCC is undefined within a single-class stratum). Compare with the "
                     "per-modality mean norm / norm of the mean: centred embeddings hide presence (SPEC 2.5)."),
        }
        comparison = paper_comparison(rows, modalities, ks, models, modes)
        return {"summary": summary, "tables": tables, "figures": figures, "paper_comparison": comparison}


def _batched_supports(task: Any) -> bool:
    """Whether ``batched.py`` trains the network this task asks for. The linear shortcut
    (``models.linear_shortcut``) must be built into the grouped networks too; until
    ``batched.SUPPORTS_SHORTCUT`` says so, a task with the shortcut trains one network per unit
    (same results, slower) rather than silently training the network without it."""
    from fusionkit_plugins.tasks.recognizer.models import shortcut_kind

    if shortcut_kind(getattr(task, "shortcut", False)) == "none":
        return True
    from fusionkit_plugins.tasks.recognizer import batched

    if getattr(batched, "SUPPORTS_SHORTCUT", False):
        return True
    log.warning("batched recognizer training has no linear shortcut yet: training one network per unit")
    return False


def _constant_predictions(rows: list[dict[str, Any]]) -> list[str]:
    """``model/mode/k=K/output`` of every model that predicted a constant on clean test data (with
    the number of repeats affected), logged as a warning: MCC 0 from a collapsed model, not a result."""
    hits: dict[str, int] = {}
    for r in rows:
        if r["metric"] == "constant_prediction" and r["value"] and r["perturbation"] == "none":
            key = f"{r['model']}/{r['mode']}/k={r['k']}/{r['modality']}"
            hits[key] = hits.get(key, 0) + 1
    out = [f"{key} ({n} repeat{'s' if n != 1 else ''})" for key, n in sorted(hits.items())]
    if out:
        log.warning("constant predictions (a collapsed model, its MCC is 0 by construction): %s", "; ".join(out))
    return out


def _write_tables(ctx: RunContext, name: str, rows: list[dict[str, Any]], summary_rows: list[dict[str, Any]],
                  mcc: list[dict[str, Any]], infos: list[dict[str, Any]]) -> dict[str, str]:
    """metrics_per_repeat.csv, metrics_summary.csv, mcc_by_k.csv and units.csv; their relative paths."""
    tables = {
        "per_repeat": f"{name}/metrics_per_repeat.csv",
        "summary": f"{name}/metrics_summary.csv",
        "mcc_by_k": f"{name}/mcc_by_k.csv",
        "units": f"{name}/units.csv",
    }
    ctx.write_csv(tables["per_repeat"], rows)
    ctx.write_csv(tables["summary"], summary_rows)
    ctx.write_csv(tables["mcc_by_k"], [{c: r[c] for c in ("model", "mode", "k", "noise", "perturbation",
                                                           "modality", "mean", "ci_low", "ci_high", "n")}
                                       for r in mcc])
    ctx.write_csv(tables["units"], infos)
    return tables


def _embedding_stats(ctx: RunContext) -> dict[str, Any]:
    """Per modality: items, mean norm, norm of the mean, mean std (SPEC 2.5: offsets make presence visible)."""
    stats = {}
    try:
        for m, entry in ctx.pool.summary().get("modalities", {}).items():
            stats[m] = {key: entry.get(key) for key in ("items", "mean_norm", "norm_of_mean", "mean_std")}
    except Exception as exc:  # pragma: no cover - never lose results to a summary problem
        log.warning("pool summary failed: %s", exc)
    return stats


def _mcc_tables(mcc: list[dict[str, Any]]) -> tuple[dict[str, Any], dict[str, Any]]:
    """Mean MCC: {model: {mode: {modality: {k}}}} on clean data, and the same per noise level."""
    mcc_table: dict[str, Any] = {}
    for r in mcc:
        if r["perturbation"] != "none":
            continue
        mcc_table.setdefault(r["model"], {}).setdefault(r["mode"], {}).setdefault(r["modality"], {})[
            str(r["k"])] = clean(r["mean"])
    robustness: dict[str, Any] = {}
    for r in mcc:
        if r["perturbation"] == "none":
            continue
        robustness.setdefault(r["model"], {}).setdefault(r["mode"], {}).setdefault(r["modality"], {}) \
            .setdefault(str(r["noise"]), {})[str(r["k"])] = clean(r["mean"])
    return mcc_table, robustness


def _cancer_table(summary_rows: list[dict[str, Any]]) -> dict[str, Any]:
    """Cancer-head accuracy and MCC on clean data: {model: {mode: {metric: {k}}}}."""
    cancer: dict[str, Any] = {}
    for r in summary_rows:
        if r["modality"] == CANCER_MODALITY and r["perturbation"] == "none" and r["metric"] in ("accuracy", "mcc"):
            cancer.setdefault(r["model"], {}).setdefault(r["mode"], {}).setdefault(r["metric"], {})[
                str(r["k"])] = clean(r["mean"])
    return cancer


def _nanmean(values: list[float]) -> float:
    """Mean of the finite values; NaN (not a warning or an error) when there is none."""
    v = np.asarray(values, dtype=np.float64)
    v = v[np.isfinite(v)]
    return float(v.mean()) if v.size else float("nan")



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
    ``cancer_weight``); training: ``lr``, ``lr_schedule`` (``constant``, or ``cosine``: annealed
    from ``lr`` over ``max_epochs``), ``batch_size``, ``max_epochs``, ``patience``, ``weight_decay``, ``standardize`` inputs, ``device``
    auto|cpu|cuda, ``shortcut`` (default true = ``affine``: a fixed linear path from the input
    to every output, solved to convergence before training: ridge-regressed counts calibrated
    into presence logits, a multinomial logistic cancer head; the network learns the residual
    and its untrained state competes in early stopping. Without it (false) the network alone
    fell far below the logistic baseline at k=10, issue 15. ``homogeneous``: counts with no
    free intercept, so the model cannot use "the counts add up to k": more robust when draws
    are replaced by noise, weaker on clean data at high k; see ``models.linear_shortcut``),
    ``balance`` (present and absent aggregates weigh half each in every head's loss and in
    early stopping; default false: with the shortcut it only moves the threshold towards
    "absent" and costs MCC; without the shortcut it stops the net predicting "present"
    everywhere at high k), ``threads`` torch threads while training (default 1: the
    fastest for these small nets; 0 leaves torch's setting), ``batched`` (one unit per repeat: its
    aggregates built once for every model, the isolation networks of all k trained as one grouped
    model, the baseline fitted for all modalities at once; see ``batched.py``), ``precision`` fp32 |
    bf16 (batched training only: matrix products with bfloat16 operands and fp32 accumulation,
    about 4x faster on CPUs with AMX/AVX512-BF16; weights and optimizer stay fp32),
    ``batch_repeats`` (batched training only: repeats per unit, whose same-shaped networks train
    as one grouped model; default 1; memory grows with it); evaluation: ``threshold``, ``drop_empty`` (leave out test
    aggregates with no real draw left), ``test_fraction``, ``val_fraction``.
    """

    group = "recognizer"

    constraints = CONSTRAINTS

    def __init__(self, sampling: str = "", k: Any = None, n_per_k: int | None = None, n_repeats: int = 30,
                 modes: list | tuple = ("isolation", "composite"), perturbations: list | tuple = (),
                 baseline: bool = False, hidden: list | tuple = (512, 256), head_hidden: int = 32, dropout: float = 0.2, loss: str = "mse",
                 head_weights: dict | None = None, predict_counts: bool = False, count_weight: float = 1.0,
                 predict_cancer: bool = False, cancer_weight: float = 1.0, lr: float = 1e-3,
                 batch_size: int = 256, max_epochs: int = 100, patience: int = 8, weight_decay: float = 0.0,
                 standardize: bool = True, device: str = "auto", threshold: float = 0.5, drop_empty: bool = True,
                 test_fraction: float = 0.2, val_fraction: float = 0.2, baseline_C: float = 1.0,
                 threads: int = 1, balance: bool = False, batched: bool = False, precision: str = "fp32",
                 batch_repeats: int = 1, shortcut: bool | str = True, lr_schedule: str = "constant"):
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
        self.balance = balance
        self.batched = batched
        self.precision = precision
        self.batch_repeats = batch_repeats
        self.shortcut = shortcut
        self.lr_schedule = lr_schedule

    def _models(self) -> list[str]:
        return ["deep", "baseline"] if self.baseline else ["deep"]

    def _device(self, ctx: RunContext) -> str:
        if self.device != "auto":
            return self.device
        workers = int(getattr(getattr(ctx, "executor", None), "workers", 1) or 1)
        return "cpu" if workers > 1 else ctx.device

    def _model_factory(self, model: str, ctx: RunContext, modalities: list[str], n_classes: int, seed: int,
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
                              device=self._device(ctx), seed=seed, k_scale=k_scale, threads=self.threads,
                              balance=self.balance, shortcut=self.shortcut, lr_schedule=self.lr_schedule)


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

    constraints = CONSTRAINTS

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

    def _model_factory(self, model: str, ctx: RunContext, modalities: list[str], n_classes: int, seed: int,
                       k_scale: float) -> Any:
        return LogisticBaseline(C=self.C, max_iter=self.max_iter, n_classes=n_classes, seed=seed % (2 ** 31))


@hookimpl
def register_tasks(register):
    register("recognizer", RecognizerTask, tags=["recognizer"])
    register("recognizer-baseline", RecognizerBaselineTask, tags=["recognizer"])
