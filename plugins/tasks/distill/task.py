"""Missing-modality learning: teacher-student distillation as a task (SPEC 3, issue 6).

A teacher trained on several modalities (stage I: disentangled tumour /
microenvironment subspaces, selective fusion, confidence-guided coordination,
optional inter-magnification consistency) is distilled (stage II: subspace
feature distillation + logit distillation + labels) into a student that reads
only ``student_modalities`` (default the slide), aggregating its bags into a
few informative prototypes. Works for any set of modalities: teacher
{rna, image} -> student {image} is the flagship; teacher {rna, mutation, text}
-> student {mutation, text} works the same way.

Evaluation, per target (cancer type, subtype) and over ``n_repeats`` patient-
disjoint 80/20 splits (+ validation split of the training part for early
stopping), mean and 95% CI of macro-F1 / accuracy / MCC for

* ``teacher``: all teacher modalities at test;
* ``student``: student modalities only, distilled from the teacher;
* ``unimodal``: the same student network trained on labels only (no teacher);
* ``sum-baseline``: patient-level sum aggregates of the student modalities
  (the paper's sampling, SPEC 2.2) + logistic regression (or a small MLP);
* ``teacher-drop-<m>``: the teacher with modality m removed at test (drop-one table).

The networks are in :mod:`fusionkit_plugins.tasks.distill.model` (torch imported on
first use), bags and prototypes in :mod:`fusionkit_plugins.tasks.distill.data`, the
figure in :mod:`fusionkit_plugins.tasks.distill.figures`.
"""

from __future__ import annotations

import logging
import math
import time
from typing import TYPE_CHECKING, Any

import numpy as np

from fusionkit import DataError, Range, Task, hookimpl
from fusionkit_plugins.tasks.distill.figures import macro_f1_figure

if TYPE_CHECKING:  # pragma: no cover
    from fusionkit import RunContext

log = logging.getLogger("fusionkit.distill")

MODELS = ("teacher", "student", "unimodal", "sum-baseline")
METRICS = ("macro_f1", "accuracy", "mcc", "balanced_accuracy")
#: parameters that do not change one (target, repeat) unit's result (left out of its cache key):
#: raising ``n_repeats`` or adding a target reuses the finished units
NON_RESULT_PARAMS = ("device", "num_threads", "n_repeats", "targets")


_COUNT = Range(1, integer=True)
#: declared parameter constraints (checked by ``fusionkit validate``)
_CONSTRAINTS = {"epochs": _COUNT, "student_epochs": _COUNT, "patience": Range(0, integer=True),
                "batch_size": _COUNT, "lr": Range(0, lo_open=True), "dropout": Range(0, 1, hi_open=True),
                "hidden": _COUNT, "subspace_dim": _COUNT, "attention_dim": _COUNT, "min_class_size": _COUNT,
                "weight_decay": Range(0)}


class DistillTask(Task):
    """Teacher-student distillation for missing modalities: a multi-modal teacher, a student on a subset.

    Parameters (all optional):
      teacher_modalities: modalities of the teacher (default ["rna", "image"]; null = every pool modality)
      student_modalities: modalities the student may read at inference (default ["image"])
      targets: labels to predict, each evaluated separately (cancer_type, subtype, ...)
      cohort: which patients are evaluated: ``student`` (all student modalities present, default),
        ``teacher`` (all teacher modalities present) or ``any`` (>= 1 student modality)
      min_class_size: classes with fewer labelled patients are left out (per target)
      hidden, subspace_dim, attention_dim, dropout: network sizes
      epochs, student_epochs (null = epochs), patience, batch_size, lr, weight_decay
      subspace_weight: weight of the two subspace heads' label losses
      disentangle: ``orthogonal`` (cos^2 per patient) or ``decorrelation`` (batch cross-correlation);
        disentangle_weight
      coordination: ``confidence`` (loss weights S*softmax(-confidence/tau)), ``gradient``
        (confidence-guided projection of conflicting subspace gradients) or ``none``; confidence_tau
      consistency: inter-magnification consistency on (consistency_modality, consistency_reference);
        off automatically when either is not a teacher modality or the image modality has no bags;
        consistency_pool: tiles averaged into one coarser "magnification" tile; consistency_weight
      prototypes, keep_prototypes, kmeans_iters: informative token aggregation of student bags
      temperature, kd_weight, feature_weight, feature_loss (``mse`` | ``cosine``), label_weight
      max_items: at most this many items (tiles, sentences) per patient and modality (seeded subset)
      n_repeats, test_fraction, val_fraction: patient-disjoint stratified splits
      baseline_sampling: a recipe sampling entry (patient-level) for the sum baseline, or null to use
        patient-level sampling with baseline_k draws and baseline_repeats repeats; baseline_model
        ``logistic`` | ``mlp``; baseline_C (logistic regularisation)
      drop_one: evaluate the teacher with each modality removed at test
      device: ``auto`` (cuda when available) | ``cpu`` | ``cuda``; num_threads: torch threads (0 = leave)
    """

    constraints = _CONSTRAINTS

    def __init__(self, teacher_modalities: list | None = ["rna", "image"],  # noqa: B006 (copied on bind)
                 student_modalities: list = ["image"],  # noqa: B006
                 targets: list = ["cancer_type", "subtype"],  # noqa: B006
                 cohort: str = "student", min_class_size: int = 10,
                 hidden: int = 128, subspace_dim: int = 64, attention_dim: int = 64, dropout: float = 0.25,
                 epochs: int = 30, student_epochs: int | None = None, patience: int = 8, batch_size: int = 32,
                 lr: float = 1e-3, weight_decay: float = 1e-4,
                 subspace_weight: float = 0.5, disentangle: str = "orthogonal", disentangle_weight: float = 0.1,
                 coordination: str = "confidence", confidence_tau: float = 0.5,
                 consistency: bool = True, consistency_modality: str = "image", consistency_reference: str = "rna",
                 consistency_pool: int = 4, consistency_weight: float = 0.1,
                 prototypes: int = 8, keep_prototypes: int = 4, kmeans_iters: int = 10,
                 temperature: float = 2.0, kd_weight: float = 1.0, feature_weight: float = 1.0,
                 feature_loss: str = "mse", label_weight: float = 1.0,
                 max_items: int = 256, n_repeats: int = 30, test_fraction: float = 0.2, val_fraction: float = 0.2,
                 baseline_sampling: str | None = None, baseline_k: int = 5, baseline_repeats: int = 3,
                 baseline_model: str = "logistic", baseline_C: float = 1.0,
                 drop_one: bool = True, device: str = "auto", num_threads: int = 0):
        self.teacher_modalities, self.student_modalities = teacher_modalities, student_modalities
        self.targets, self.cohort, self.min_class_size = targets, cohort, min_class_size
        self.hidden, self.subspace_dim, self.attention_dim, self.dropout = hidden, subspace_dim, attention_dim, dropout
        self.epochs, self.student_epochs, self.patience, self.batch_size = epochs, student_epochs, patience, batch_size
        self.lr, self.weight_decay = lr, weight_decay
        self.subspace_weight, self.disentangle = subspace_weight, disentangle
        self.disentangle_weight = disentangle_weight
        self.coordination, self.confidence_tau = coordination, confidence_tau
        self.consistency, self.consistency_modality = consistency, consistency_modality
        self.consistency_reference, self.consistency_pool = consistency_reference, consistency_pool
        self.consistency_weight = consistency_weight
        self.prototypes, self.keep_prototypes, self.kmeans_iters = prototypes, keep_prototypes, kmeans_iters
        self.temperature, self.kd_weight, self.feature_weight = temperature, kd_weight, feature_weight
        self.feature_loss, self.label_weight = feature_loss, label_weight
        self.max_items, self.n_repeats = max_items, n_repeats
        self.test_fraction, self.val_fraction = test_fraction, val_fraction
        self.baseline_sampling, self.baseline_k, self.baseline_repeats = baseline_sampling, baseline_k, baseline_repeats
        self.baseline_model, self.baseline_C = baseline_model, baseline_C
        self.drop_one, self.device, self.num_threads = drop_one, device, num_threads

    # ------------------------------------------------------------------ checks
    def _check(self, pool: Any) -> tuple[list[str], list[str]]:
        teacher = list(self.teacher_modalities) if self.teacher_modalities else list(pool.modalities)
        student = list(self.student_modalities or [])
        missing = [m for m in dict.fromkeys(teacher + student) if m not in pool.views]
        if missing:
            raise DataError(f"distill: modalities {missing} are not in the pool",
                            where="tasks.params", hint=f"pool modalities: {', '.join(pool.modalities)}")
        if not student:
            raise DataError("distill: student_modalities is empty", where="tasks.params",
                            hint="name the modalities available at inference, e.g. [image]")
        extra = [m for m in student if m not in teacher]
        if extra:
            raise DataError(f"distill: student modalities {extra} are not teacher modalities",
                            where="tasks.params.student_modalities",
                            hint="the teacher must see every modality the student reads")
        if set(student) == set(teacher):
            log.warning("distill: the student reads every teacher modality; nothing is missing at inference")
        for name, value, allowed in (("coordination", self.coordination, ("confidence", "gradient", "none")),
                                     ("disentangle", self.disentangle, ("orthogonal", "decorrelation")),
                                     ("feature_loss", self.feature_loss, ("mse", "cosine")),
                                     ("cohort", self.cohort, ("student", "teacher", "any")),
                                     ("baseline_model", self.baseline_model, ("logistic", "mlp"))):
            if value not in allowed:
                raise DataError(f"distill: {name} must be one of {allowed}, got {value!r}",
                                where=f"tasks.params.{name}")
        return teacher, student

    def config(self, device: str) -> Any:
        from fusionkit_plugins.tasks.distill.model import TrainConfig

        return TrainConfig(hidden=int(self.hidden), subspace=int(self.subspace_dim), attention=int(self.attention_dim),
                           dropout=float(self.dropout), keep=int(self.keep_prototypes), epochs=int(self.epochs),
                           patience=int(self.patience), batch_size=int(self.batch_size), lr=float(self.lr),
                           weight_decay=float(self.weight_decay), subspace_weight=float(self.subspace_weight),
                           disentangle=self.disentangle, disentangle_weight=float(self.disentangle_weight),
                           coordination=self.coordination, confidence_tau=float(self.confidence_tau),
                           consistency_weight=float(self.consistency_weight) if self.consistency else 0.0,
                           temperature=float(self.temperature), feature_weight=float(self.feature_weight),
                           feature_kind=self.feature_loss, kd_weight=float(self.kd_weight),
                           label_weight=float(self.label_weight), device=device)

    # ------------------------------------------------------------------ inputs
    def cohort_patients(self, pool: Any, teacher: list[str], student: list[str]) -> np.ndarray:
        avail = pool.availability()
        if self.cohort == "student":
            sets = [set(avail[m]) for m in student]
            pats = set.intersection(*sets)
        elif self.cohort == "teacher":
            pats = set.intersection(*[set(avail[m]) for m in teacher])
        else:
            pats = set().union(*[set(avail[m]) for m in student])
        return np.asarray(sorted(pats))

    def student_inputs(self, pool: Any, patients: np.ndarray, student: list[str], seed: int
                       ) -> tuple[dict[str, Any], dict[str, str]]:
        """What the student (and the uni-modal baseline) reads: built from ``student`` views only."""
        from fusionkit_plugins.tasks.distill.data import bag_prototypes, build_bags
        from fusionkit_plugins.tasks.distill.model import Dense

        bags = build_bags(pool, patients, student, max_items=int(self.max_items), seed=seed)
        inputs: dict[str, Any] = {}
        kinds: dict[str, str] = {}
        for m, b in bags.items():
            if b.is_bag:
                P, mask, _ = bag_prototypes(b, int(self.prototypes), iters=int(self.kmeans_iters), seed=seed)
                inputs[m], kinds[m] = Dense(P, mask), "ita"
            else:
                X, mask = b.padded(np.arange(len(patients)), max_len=1)
                inputs[m], kinds[m] = Dense(X, mask), "vector"
        return inputs, kinds

    def teacher_inputs(self, pool: Any, patients: np.ndarray, teacher: list[str], seed: int
                       ) -> tuple[dict[str, Any], dict[str, str], Any, tuple[str, str] | None]:
        from fusionkit_plugins.tasks.distill.data import build_bags, coarser_scale

        bags = build_bags(pool, patients, teacher, max_items=int(self.max_items), seed=seed)
        kinds = {m: ("mil" if b.is_bag else "vector") for m, b in bags.items()}
        coarse, pair = None, None
        img, ref = self.consistency_modality, self.consistency_reference
        if self.consistency and img in bags and ref in bags and img != ref and kinds[img] == "mil":
            coarse = coarser_scale(bags[img], int(self.consistency_pool))
            pair = (img, ref)
        return dict(bags), kinds, coarse, pair

    def baseline_features(self, ctx: RunContext, pool: Any, patients: np.ndarray, student: list[str], repeat: int
                          ) -> np.ndarray:
        """Patient-level sum aggregates of the student modalities, one row per cohort patient."""
        restricted = pool.restrict(patients=patients, modalities=student)
        overrides = {"modalities": list(student), "min_modalities": 1}
        if self.baseline_sampling:
            plan = ctx.plan(self.baseline_sampling, pool=restricted, seed_keys=("distill", repeat), **overrides)
        else:
            from fusionkit_plugins.sampling.samplers import PatientLevelSampler

            sampler = PatientLevelSampler(k=int(self.baseline_k), repeats=int(self.baseline_repeats), **overrides)
            plan = ctx.plan(sampler, pool=restricted, seed_keys=("distill", repeat))
        agg = ctx.aggregate(plan, pool=restricted, seed_keys=("distill", repeat))
        X = np.zeros((len(patients), agg.X.shape[1]), dtype=np.float32)
        pos = {p: i for i, p in enumerate(patients)}
        for row, p in enumerate(agg.patient_ids):
            if str(p) in pos:
                X[pos[str(p)]] = agg.X[row]
        return X

    # ------------------------------------------------------------------ run
    def run(self, ctx: RunContext) -> dict[str, Any]:
        from fusionkit import Unit

        t_start = time.perf_counter()
        pool = ctx.pool
        teacher, student = self._check(pool)
        device = _device(self.device, ctx)
        name = ctx.task_name or "distill"
        patients = self.cohort_patients(pool, teacher, student)
        if len(patients) < 10:
            raise DataError(f"distill: only {len(patients)} patients in the {self.cohort!r} cohort",
                            hint="use cohort: any, or check modality availability")
        seed = ctx.seed_for("distill", name, "bags")
        s_inputs, s_kinds = self.student_inputs(pool, patients, student, seed)
        t_inputs, t_kinds, coarse, pair = self.teacher_inputs(pool, patients, teacher, seed)
        availability = [{"modality": m, "role": ("teacher+student" if m in student else "teacher"),
                         "patients_in_cohort": int(t_inputs[m].present.sum()), "cohort": int(len(patients)),
                         "kind": t_kinds[m], "student_kind": s_kinds.get(m, "")} for m in teacher]
        params = {k: v for k, v in self.get_params().items() if k not in NON_RESULT_PARAMS}
        rows: list[dict[str, Any]] = []
        drop_rows: list[dict[str, Any]] = []
        infos: list[dict[str, Any]] = []
        notes: list[str] = []
        reused = 0
        targets_done: list[str] = []
        for target in self.targets or []:
            y_all, classes, keep = _labels(pool, target, patients, int(self.min_class_size))
            if classes is None:
                notes.append(f"{target}: skipped ({keep})")
                continue
            idx = np.flatnonzero(keep)
            # one copy per target, shared by reference by all its repeats (bags can be large)
            t_sub = {m: v.take(idx) for m, v in t_inputs.items()}
            c_sub = None if coarse is None else coarse.take(idx)
            s_sub = {m: v.take(idx) for m, v in s_inputs.items()}
            units = []
            for r in range(int(self.n_repeats)):
                key = ctx.unit_key("distill", name, params, target, r)
                Xb = self.baseline_features(ctx, pool, patients, student, r)[idx]
                units.append(Unit(key, _repeat_unit, kwargs=dict(
                    task=self, teacher=teacher, student=student,
                    t_inputs=t_sub, t_kinds=t_kinds, coarse=c_sub, pair=pair,
                    s_inputs=s_sub, s_kinds=s_kinds,
                    X_base=Xb, y=y_all[idx], classes=classes, target=target, repeat=r,
                    seed=ctx.seed_for("distill", name, target, r), device=device), label=f"{target}#{r}"))
            before = sum(1 for u in units if _cached(ctx, name, u.key))
            results = ctx.run_units(f"{name}-distill", units)
            reused += before
            for u in units:
                res = results[u.key]
                rows.extend(res["rows"])
                drop_rows.extend(res["drop"])
                infos.append(res["info"])
            targets_done.append(target)
        if not rows:
            raise DataError("distill: no target could be evaluated", hint="; ".join(notes) or "check targets")
        return self._report(ctx, name, teacher, student, patients, rows, drop_rows, infos, availability, notes,
                            targets_done, pair, reused, time.perf_counter() - t_start)

    # ------------------------------------------------------------------ outputs
    def _report(self, ctx: RunContext, name: str, teacher: list[str], student: list[str], patients: np.ndarray,
                rows: list[dict[str, Any]], drop_rows: list[dict[str, Any]], infos: list[dict[str, Any]],
                availability: list[dict[str, Any]], notes: list[str], targets: list[str],
                pair: tuple[str, str] | None, reused: int, wall: float) -> dict[str, Any]:
        from fusionkit.metrics import summarise_rows

        tidy = [{"target": r["target"], "model": r["model"], "repeat": r["repeat"], "metric": m, "value": r[m]}
                for r in rows for m in METRICS if m in r]
        summary_rows = summarise_rows(tidy, ("target", "model", "metric"))
        drop_tidy = [{"target": r["target"], "dropped": r["dropped"], "kept": r["kept"], "metric": m,
                      "value": r[m]} for r in drop_rows for m in METRICS if m in r]
        drop_summary = summarise_rows(drop_tidy, ("target", "dropped", "kept", "metric")) if drop_tidy else []
        tables = {"per_repeat": f"{name}/per_repeat.csv", "summary": f"{name}/summary.csv",
                  "drop_one_modality": f"{name}/drop_one_modality.csv", "availability": f"{name}/availability.csv",
                  "units": f"{name}/units.csv"}
        ctx.write_csv(tables["per_repeat"], rows)
        ctx.write_csv(tables["summary"], summary_rows)
        ctx.write_csv(tables["drop_one_modality"], drop_summary or [{"note": "drop_one disabled"}])
        ctx.write_csv(tables["availability"], availability)
        ctx.write_csv(tables["units"], infos)
        results: dict[str, Any] = {}
        for r in summary_rows:
            results.setdefault(r["target"], {}).setdefault(r["model"], {})[r["metric"]] = {
                "mean": _clean(r["mean"]), "ci_low": _clean(r["ci_low"]), "ci_high": _clean(r["ci_high"]),
                "n": r["n"]}
        verdict = {}
        for t, models in results.items():
            s = models.get("student", {}).get("macro_f1", {})
            u = models.get("unimodal", {}).get("macro_f1", {})
            if s and u and s.get("mean") is not None and u.get("mean") is not None:
                diffs = _paired_diff(rows, t, "student", "unimodal", "macro_f1")
                verdict[t] = {"student_minus_unimodal_macro_f1": diffs,
                              "student_beats_unimodal": bool(diffs["ci_low"] is not None and diffs["ci_low"] > 0)}
        drop_table: dict[str, Any] = {}
        for r in drop_summary:
            if r["metric"] == "macro_f1":
                drop_table.setdefault(r["target"], {})[r["dropped"]] = _clean(r["mean"])
        summary = {
            "teacher_modalities": teacher, "student_modalities": student, "targets": targets,
            "cohort": {"rule": self.cohort, "patients": int(len(patients))},
            "results": results, "student_vs_unimodal": verdict, "teacher_drop_one_macro_f1": drop_table,
            "availability": availability, "coordination": self.coordination, "disentangle": self.disentangle,
            "consistency": None if pair is None else {"modality": pair[0], "reference": pair[1],
                                                       "pool": int(self.consistency_pool)},
            "repeats": int(self.n_repeats), "units": {"total": len(infos), "reused": reused},
            "wall_s": round(wall, 2), "notes": notes,
            "note": ("macro-F1/accuracy over patient-disjoint test splits, mean and 95% t-interval over repeats. "
                     "student = student modalities only at inference, distilled from the teacher; unimodal = same "
                     "network trained on labels only; sum-baseline = patient-level sum aggregates of the student "
                     "modalities + " + self.baseline_model + "."),
        }
        figures = macro_f1_figure(ctx, name, summary_rows, targets)
        return {"summary": summary, "tables": tables, "figures": figures, "paper_comparison": []}


# ----------------------------------------------------------------------------- one repeat (a unit)

def _repeat_unit(*, task: DistillTask, teacher: list[str], student: list[str], t_inputs: dict[str, Any],
                 t_kinds: dict[str, str], coarse: Any, pair: tuple[str, str] | None, s_inputs: dict[str, Any],
                 s_kinds: dict[str, str], X_base: np.ndarray, y: np.ndarray, classes: list[str], target: str,
                 repeat: int, seed: int, device: str) -> dict[str, Any]:
    """Split, train teacher, student, uni-modal baseline and sum baseline; evaluate on the test split."""
    from fusionkit.metrics import multiclass_metrics

    from fusionkit_plugins.tasks.distill.data import stratified_split
    from fusionkit_plugins.tasks.distill.model import predict, train_student

    if task.num_threads:
        import torch

        torch.set_num_threads(int(task.num_threads))
    t0 = time.perf_counter()
    rng = np.random.default_rng(seed)
    rest, test = stratified_split(y, float(task.test_fraction), rng)
    tr_pos, va_pos = stratified_split(y[rest], float(task.val_fraction), rng)
    split = (rest[tr_pos], rest[va_pos], test)
    train, val = split[0], split[1]
    n_classes = len(classes)
    labels = list(range(n_classes))

    def score(model: str, pred: np.ndarray) -> dict[str, Any]:
        m = multiclass_metrics(y[test], pred, labels=labels)
        return {"target": target, "repeat": repeat, "model": model, "n_test": int(len(test)),
                **{k: m[k] for k in METRICS}}

    rows, drop = [], []
    t_info, t_pred, full = _teacher_stage(task, teacher, t_inputs, t_kinds, coarse, pair, y, split, n_classes,
                                          seed, device, score, rows, drop)
    s_cfg = task.config(device)
    if task.student_epochs:
        s_cfg.epochs = int(task.student_epochs)
    student_net, s_info = train_student(s_inputs, student, s_kinds, y, train, val, n_classes, s_cfg, seed + 1,
                                        teacher=full)
    s_pred = predict(student_net, s_inputs, student, test, device)["logits"].argmax(1)
    rows.append(score("student", s_pred))
    base_net, b_info = train_student(s_inputs, student, s_kinds, y, train, val, n_classes, s_cfg, seed + 1,
                                     teacher=None)
    rows.append(score("unimodal", predict(base_net, s_inputs, student, test, device)["logits"].argmax(1)))
    rows.append(score("sum-baseline", _sum_baseline(task, X_base, y, train, val, test, n_classes, seed, device)))
    agree = float((s_pred == t_pred).mean()) if len(test) else math.nan
    info = {"target": target, "repeat": repeat, "n_train": int(len(train)), "n_val": int(len(val)),
            "n_test": int(len(test)), "classes": n_classes, "teacher_epochs": t_info["epochs"],
            "student_epochs": s_info["epochs"], "unimodal_epochs": b_info["epochs"],
            "subspace_weights_mean": t_info["subspace_weights_mean"], "consistency": t_info["consistency"],
            "student_teacher_agreement": agree, "seconds": round(time.perf_counter() - t0, 2)}
    return {"rows": rows, "drop": drop, "info": info}


def _teacher_stage(task: DistillTask, teacher: list[str], t_inputs: dict[str, Any], t_kinds: dict[str, str],
                   coarse: Any, pair: tuple[str, str] | None, y: np.ndarray,
                   split: tuple[np.ndarray, np.ndarray, np.ndarray], n_classes: int, seed: int, device: str,
                   score: Any, rows: list[dict[str, Any]], drop: list[dict[str, Any]]
                   ) -> tuple[dict[str, Any], np.ndarray, dict[str, np.ndarray]]:
    """Train the teacher; score it on the test split (whole, and with each modality dropped).

    Returns its training info, its test predictions and its frozen outputs
    (logits, subspace features) for the training and validation patients.
    """
    from fusionkit_plugins.tasks.distill.model import predict, train_teacher

    train, val, test = split
    cfg = task.config(device)
    teacher_net, t_info = train_teacher(t_inputs, teacher, t_kinds, y, train, val, n_classes, cfg, seed,
                                        coarse=coarse, consistency=pair)
    t_pred = predict(teacher_net, t_inputs, teacher, test, device)["logits"].argmax(1)
    rows.append(score("teacher", t_pred))
    if task.drop_one and len(teacher) > 1:
        for m in teacher:
            p = predict(teacher_net, t_inputs, teacher, test, device, drop=(m,))["logits"].argmax(1)
            r = score("teacher", p)
            drop.append({**r, "dropped": m, "kept": "+".join(x for x in teacher if x != m)})
    # frozen teacher targets for the training (and validation) patients
    fit_idx = np.concatenate([train, val])
    t_fit = predict(teacher_net, t_inputs, teacher, fit_idx, device)
    full = {k: np.zeros((len(y),) + t_fit[k].shape[1:], np.float32) for k in ("logits", "f_tumour", "f_tme")}
    for k in full:
        full[k][fit_idx] = t_fit[k]
    return t_info, t_pred, full


def _sum_baseline(task: DistillTask, X: np.ndarray, y: np.ndarray, train: np.ndarray, val: np.ndarray,
                  test: np.ndarray, n_classes: int, seed: int, device: str) -> np.ndarray:
    if task.baseline_model == "mlp":
        from fusionkit.training import train_dense_classifier

        model = train_dense_classifier(X[train], y[train], X[val], y[val], n_classes, hidden=(256, 128),
                                       max_epochs=int(task.epochs) * 2, patience=int(task.patience), seed=seed,
                                       device=device)
        return model.predict(X[test])
    from sklearn.linear_model import LogisticRegression
    from sklearn.pipeline import make_pipeline
    from sklearn.preprocessing import StandardScaler

    fit = np.concatenate([train, val])
    clf = make_pipeline(StandardScaler(), LogisticRegression(C=float(task.baseline_C), max_iter=2000))
    clf.fit(X[fit], y[fit])
    return clf.predict(X[test])


# ----------------------------------------------------------------------------- helpers

def _device(device: str, ctx: RunContext) -> str:
    if device in (None, "", "auto"):
        return getattr(ctx, "device", "cpu") or "cpu"
    return str(device)


def _cached(ctx: RunContext, name: str, key: str) -> bool:
    return bool(ctx.unit_cached(f"{name}-distill", key))


def _labels(pool: Any, target: str, patients: np.ndarray, min_class_size: int
            ) -> tuple[np.ndarray, list[str] | None, Any]:
    """Integer labels over ``patients`` (-1 where unknown or in a too-small class)."""
    try:
        raw = pool.patient_label(target, patients)
    except DataError as exc:
        return np.zeros(0), None, f"no label {target!r}: {exc}"
    values = np.array(["" if v is None or (isinstance(v, float) and math.isnan(v)) else str(v) for v in raw])
    known = (values != "") & (values != "nan") & (values != "None")
    names, counts = np.unique(values[known], return_counts=True)
    classes = [str(c) for c, n in zip(names, counts) if n >= min_class_size]
    if len(classes) < 2:
        return np.zeros(0), None, f"fewer than 2 classes with >= {min_class_size} patients"
    index = {c: i for i, c in enumerate(classes)}
    y = np.array([index.get(v, -1) for v in values], dtype=np.int64)
    return y, classes, y >= 0


def _paired_diff(rows: list[dict[str, Any]], target: str, a: str, b: str, metric: str) -> dict[str, Any]:
    from fusionkit.metrics import mean_ci

    va = {r["repeat"]: r[metric] for r in rows if r["target"] == target and r["model"] == a}
    vb = {r["repeat"]: r[metric] for r in rows if r["target"] == target and r["model"] == b}
    d = [va[k] - vb[k] for k in va if k in vb]
    s = mean_ci(d)
    return {"mean": _clean(s["mean"]), "ci_low": _clean(s["ci_low"]), "ci_high": _clean(s["ci_high"]), "n": s["n"]}


def _clean(v: Any) -> Any:
    if v is None:
        return None
    v = float(v)
    return v if math.isfinite(v) else None


@hookimpl
def register_tasks(register):
    register("distill", DistillTask)
