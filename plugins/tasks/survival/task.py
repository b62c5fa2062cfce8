"""The ``survival`` task: a survival endpoint (OS, DSS, PFI...) from patient aggregates, with
penalised Cox (Coxnet) and deep Cox models, next to clinical and cancer-only baselines.

Each of ``n_repeats`` repeats splits the cohort's *patients* (stratified by cancer and event)
into training and test parts and an inner validation part of the training patients (for
hyper-parameters); every feature set and model runs on the same split, so differences between
them are paired. Units are cached per (repeat, k, r); the multimodal aggregate runs at every
grid point, the baselines at the main point (the sampling entry's k and r).
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

import numpy as np

from fusionkit import DataError, Task, Unit, hookimpl
from fusionkit_plugins.tasks.patient.common import (AggregateBuilder, check_repeats_as, check_sampling,
                                                    check_weights, draw_coverage, eligible_patients, grid_points,
                                                    output_name, prepare, single_point, split_patients, target_key)
from fusionkit_plugins.tasks.survival.report import report
from fusionkit_plugins.tasks.survival.unit import LATE, survival_unit

if TYPE_CHECKING:  # pragma: no cover
    from fusionkit import RunContext

MODELS = ("coxnet", "deep")
BASE_FEATURES = ("multimodal", "clinical+multimodal", "clinical", "cancer", LATE, "clinical+" + LATE)
#: a feature-set name that stands for each modality of the sampling entry on its own
SINGLE = "single"
#: a modality alone runs only when at least this many cohort patients have it
MIN_MODALITY_PATIENTS = 50


def _endpoint_values(pool: Any, pids: np.ndarray, endpoint: str) -> tuple[np.ndarray, np.ndarray]:
    """(event, time) arrays (nan where missing or invalid) of ``endpoint`` for ``pids``."""
    try:
        ev = pool.patient_label(endpoint, pids)
        tm = pool.patient_label(f"{endpoint}_time", pids)
    except DataError as err:
        raise DataError(f"survival: no {endpoint} / {endpoint}_time labels in this run", where="tasks",
                        hint="read a table with the endpoint (clinical-sentences, tcga-folder with clinical: "
                             "true, synthetic-tcga) or set the task's endpoint") from err

    def num(v: Any) -> float:
        try:
            return float(v)
        except (TypeError, ValueError):
            return float("nan")

    event = np.array([num(v) for v in ev])
    time = np.array([num(v) for v in tm])
    bad = ~np.isin(event, (0.0, 1.0)) | ~np.isfinite(time) | ~(time > 0)
    event[bad] = np.nan
    time[bad] = np.nan
    return event, time


class SurvivalTask(Task):
    """Survival from patient aggregates: Coxnet + deep Cox, against clinical and cancer-only baselines.

    Parameters: ``endpoint`` (label pair ``<EP>`` event / ``<EP>_time`` days: OS, DSS, PFI);
    ``stratify_by`` (``cancer_type``, i.e. the ``cancer_label``: stratified Cox, per-cancer
    baseline hazards; null: one baseline hazard); ``cancer_label`` (the label of per-cancer
    results); ``models`` (``coxnet``, ``deep``); ``features`` (``multimodal``,
    ``clinical+multimodal``, ``clinical``, ``cancer``, ``late-fusion`` = per-modality patient means
    without sampling, ``clinical+late-fusion``, ``single`` = each modality's aggregates alone, or a modality name);
    ``covariates`` (patient labels of the clinical baseline); ``grid`` ({k, repeats});
    ``n_repeats`` patient-disjoint splits (>= 10 for the CIs); ``test_fraction``; ``val_fraction``
    (inner validation part of the training patients, for hyper-parameters); ``horizons`` (years, for
    the time-dependent AUC; the middle one ranks patients across strata, the largest bounds Uno's c);
    ``n_components`` (PCA of the aggregates, fitted on training patients); ``l1_ratio`` (Coxnet);
    ``cv_folds`` (Coxnet's alpha by K-fold cross-validated partial likelihood over the training
    patients; 1: the inner validation patients alone);
    ``hidden``, ``dropout``, ``lr``, ``weight_decay`` (list: chosen on validation), ``max_epochs``,
    ``patience`` (deep Cox); ``min_cancer_patients``; ``train_draws`` aggregates per training patient;
    ``repeats_as``: ``mean`` (default: the mean of the r repeats, one sum of k x r draws per patient
    divided by r; the repeats are exchangeable, so a linear model loses nothing and PCA keeps the
    between-patient directions instead of draw-to-draw noise) or ``concat`` (the sampler's layout:
    the r repeats side by side, dim x r); ``modality_weights`` (multimodal sums only): scale each
    modality's draws by a factor before the sum, chosen per split by Coxnet's cross-validated partial
    likelihood on the training patients (``search``: none, or one modality at each of
    ``weight_factors``, default x0.5 and x2; or a list of weight sets; :mod:`.weights`); both models
    and ``clinical+multimodal`` use the chosen sums (``aggregator`` must be ``sum``).
    """

    component_params = {"aggregator": "aggregator"}

    def __init__(self, sampling: str | None = None, aggregator: dict | None = None, endpoint: str = "OS",
                 stratify_by: str | None = "cancer_type", cancer_label: str = "cancer_type",
                 models: list | None = None, features: list | None = None, covariates: list | None = None,
                 grid: dict | None = None, n_repeats: int = 10, test_fraction: float = 0.2,
                 val_fraction: float = 0.2, horizons: list | None = None, n_components: int | None = 32,
                 l1_ratio: float = 0.5, cv_folds: int = 5, hidden: list | None = None, dropout: float = 0.2,
                 lr: float = 1e-3,
                 weight_decay: list | None = None, max_epochs: int = 300, patience: int = 30,
                 min_cancer_patients: int = 20, train_draws: int = 1, repeats_as: str = "mean",
                 modality_weights: str | list | None = None, weight_factors: list | None = None):
        self.sampling = sampling
        self.aggregator = aggregator
        self.endpoint = endpoint
        self.stratify_by = stratify_by
        self.cancer_label = cancer_label
        self.models = models
        self.features = features
        self.covariates = covariates
        self.grid = grid
        self.n_repeats = n_repeats
        self.test_fraction = test_fraction
        self.val_fraction = val_fraction
        self.horizons = horizons
        self.n_components = n_components
        self.l1_ratio = l1_ratio
        self.cv_folds = cv_folds
        self.hidden = hidden
        self.dropout = dropout
        self.lr = lr
        self.weight_decay = weight_decay
        self.max_epochs = max_epochs
        self.patience = patience
        self.min_cancer_patients = min_cancer_patients
        self.train_draws = train_draws
        self.repeats_as = repeats_as
        self.modality_weights = modality_weights
        self.weight_factors = weight_factors

    @classmethod
    def check_recipe(cls, params: dict[str, Any], recipe: Any) -> list[tuple[str, str, str]]:
        issues = check_sampling(params, recipe)
        for m in params.get("models") or []:
            if m not in MODELS:
                issues.append(("params.models", f"unknown survival model {m!r}", "use 'coxnet' and/or 'deep'"))
        known = set(BASE_FEATURES) | {SINGLE} | set(recipe.modalities)
        for f in params.get("features") or []:
            if f not in known:
                issues.append(("params.features", f"unknown feature set {f!r}",
                               f"choose among {', '.join(sorted(known))}"))
        issues += check_repeats_as(params, "mean")
        issues += check_weights(params, recipe)
        for key in ("test_fraction", "val_fraction"):
            if not 0 < float(params.get(key, 0.2)) < 1:
                issues.append((f"params.{key}", f"{key} must be between 0 and 1", "e.g. 0.2"))
        if int(params.get("n_repeats", 10)) < 2:
            issues.append(("params.n_repeats", "n_repeats must be >= 2 for a confidence interval",
                           "use >= 10 repeats for the CIs the report quotes"))
        strat, cancer = params.get("stratify_by", "cancer_type"), params.get("cancer_label", "cancer_type")
        if strat not in (None, cancer):
            issues.append(("params.stratify_by", f"stratify_by must be null or the cancer label ({cancer!r}), "
                           f"got {strat!r}", "strata are the cancers (per-cancer baseline hazards); "
                           "set cancer_label to stratify by another patient label"))
        horizons = params.get("horizons") or [1, 3, 5]
        if not all(isinstance(h, (int, float)) and not isinstance(h, bool) and h > 0 for h in horizons):
            issues.append(("params.horizons", "horizons must be positive numbers of years", "e.g. [1, 3, 5]"))
        return issues

    # ------------------------------------------------------------------ cohort
    def _cohort(self, ctx: RunContext, builder: AggregateBuilder) -> dict[str, Any]:
        """Eligible patients with a valid endpoint and a cancer type, in cancers with enough patients."""
        pool = ctx.pool
        pids = eligible_patients(builder)
        event, time = _endpoint_values(pool, pids, self.endpoint)
        cancer = np.array(["" if v is None else str(v) for v in pool.patient_label(self.cancer_label, pids)])
        ok = np.isfinite(event) & (cancer != "") & ~np.isin(cancer, ("nan", "None"))
        notes = [f"{self.endpoint}: {int((~np.isfinite(event)).sum())} of {len(pids)} eligible patients without a "
                 "valid (event, time > 0) left out"]
        vals, counts = np.unique(cancer[ok], return_counts=True)
        small = [f"{v} ({n})" for v, n in zip(vals, counts) if n < int(self.min_cancer_patients)]
        if small:
            ok &= ~np.isin(cancer, [s.split(" ")[0] for s in small])
            notes.append(f"cancers with < {self.min_cancer_patients} patients left out: {', '.join(small)}")
        if ok.sum() < 20 or not event[ok].any():
            raise DataError(f"survival: only {int(ok.sum())} patients with {self.endpoint} "
                            f"({int(np.nansum(event[ok]))} events)", where=f"tasks.{ctx.task_name}",
                            hint="check the endpoint labels and the sampling entry's min_modalities")
        pids, event, time, cancer = pids[ok], event[ok].astype(int), time[ok], cancer[ok]
        cov, kinds, cov_notes = self._covariates(pool, pids)
        return {"pids": pids, "event": event, "time": time, "cancer": cancer, "covariates": cov,
                "covariate_kinds": kinds, "notes": notes + cov_notes}

    def _covariates(self, pool: Any, pids: np.ndarray) -> tuple[dict[str, list], list[str], list[str]]:
        """{pid: [values]}, kind per covariate (numeric / categorical), notes (missing labels)."""
        names = list(self.covariates if self.covariates is not None else ["age_at_diagnosis", "stage"])
        cols, kinds, notes = [], [], []
        for name in names:
            try:
                vals = pool.patient_label(name, pids)
            except DataError:
                notes.append(f"covariate {name!r}: no such label, left out of the clinical baseline")
                continue
            known = [v for v in vals if v is not None and str(v) not in ("", "nan", "None")]
            numeric = bool(known) and all(isinstance(v, (int, float, np.integer, np.floating))
                                          and not isinstance(v, bool) for v in known)
            kinds.append("numeric" if numeric else "categorical")
            cols.append([None if v is None or str(v) in ("", "nan", "None") else (float(v) if numeric else str(v))
                         for v in vals])
            notes.append(f"covariate {name!r} ({kinds[-1]}): known for {len(known)} of {len(pids)} patients")
        table = {p: [c[i] for c in cols] for i, p in enumerate(pids.tolist())}
        return table, kinds, notes

    def _features(self, sampler: Any, pool: Any, cohort: dict[str, Any]) -> list[str]:
        """The feature sets to run; single modalities with too few cohort patients are left out (noted)."""
        wanted = list(self.features or [*BASE_FEATURES, SINGLE])
        mods = list(getattr(sampler, "modalities", None) or pool.modalities)
        avail = pool.availability()
        out: list[str] = []
        for f in wanted:
            for name in (mods if f == SINGLE else [f]):
                if name.startswith("clinical") and not cohort["covariate_kinds"]:
                    continue
                if name in avail:
                    n = int(np.isin(cohort["pids"], avail[name]).sum())
                    if n < MIN_MODALITY_PATIENTS:
                        cohort["notes"].append(f"{name} alone: left out ({n} cohort patients have it, "
                                               f"< {MIN_MODALITY_PATIENTS})")
                        continue
                if name not in out:
                    out.append(name)
        return out

    # ------------------------------------------------------------------ run
    def run(self, ctx: RunContext) -> dict[str, Any]:
        name = output_name(ctx, "survival")
        sampler, sampling_name, builder = prepare(ctx, self.sampling, self.aggregator)
        grid = grid_points(self.grid, sampler)
        main = single_point(None, None, sampler)
        if main not in grid:
            grid = [main, *grid]
        models = list(self.models or MODELS)
        cohort = self._cohort(ctx, builder)
        features = self._features(sampler, ctx.pool, cohort)
        units, meta = self._units(ctx, name, builder, sampler, cohort, features, models, grid, main)
        results = ctx.run_units(name, units)
        setup = {"name": name, "sampling": sampling_name, "endpoint": self.endpoint, "stratify_by": self.stratify_by,
                 "grid": grid, "main": main, "models": models, "features": features,
                 "n_repeats": int(self.n_repeats), "horizons": self._horizons(),
                 "coverage": {f"{k}x{r}": draw_coverage(builder, cohort["pids"].tolist(), k, r,
                                                        ctx.seed_for(name, "coverage", k, r)) for k, r in grid}}
        return report(ctx, setup, cohort, results, meta)

    def _horizons(self) -> list[float]:
        return [float(h) for h in (self.horizons or [1, 3, 5])]

    def _config(self) -> dict[str, Any]:
        return {"n_components": self.n_components, "l1_ratio": float(self.l1_ratio),
                "cv_folds": int(self.cv_folds),
                "hidden": list(self.hidden or [64]), "dropout": float(self.dropout), "lr": float(self.lr),
                "weight_decay": [float(w) for w in (self.weight_decay or [1e-4, 1e-2])],
                "max_epochs": int(self.max_epochs), "patience": int(self.patience)}

    def _job(self, cohort: dict[str, Any], models: list[str]) -> dict[str, Any]:
        """The part of every unit's job that does not depend on the repeat or the grid point."""
        horizons = self._horizons()
        pids = cohort["pids"].tolist()
        return {"surv": {p: [int(e), float(t)] for p, e, t in zip(pids, cohort["event"], cohort["time"])},
                "cancer": dict(zip(pids, cohort["cancer"].tolist())), "covariates": cohort["covariates"],
                "covariate_kinds": cohort["covariate_kinds"], "models": models, "cfg": self._config(),
                "stratify": bool(self.stratify_by), "horizons": horizons,
                "reference_years": float(sorted(horizons)[len(horizons) // 2]), "tau_years": float(max(horizons)),
                "train_draws": int(self.train_draws), "repeats_as": str(self.repeats_as),
                "modality_weights": self.modality_weights, "weight_factors": self.weight_factors}

    def _units(self, ctx: RunContext, name: str, builder: AggregateBuilder, sampler: Any, cohort: dict[str, Any],
               features: list[str], models: list[str], grid: list[tuple[int, int]], main: tuple[int, int]
               ) -> tuple[list[Unit], dict[str, tuple]]:
        pids = cohort["pids"]
        strat = np.char.add(np.char.add(cohort["cancer"].astype(str), "|"), cohort["event"].astype(str))
        base = self._job(cohort, models)
        params_key = {**self.get_params(), "sampler": sampler.get_params(), "features": features}
        tkey = target_key(pids, strat)
        units, meta = [], {}
        for rep in range(int(self.n_repeats)):
            tr, te = split_patients(pids, strat, self.test_fraction, ctx.seed_for(name, "split", rep))
            fit, val = split_patients(pids[tr], strat[tr], self.val_fraction, ctx.seed_for(name, "val", rep))
            for k, r in grid:
                fs = features if (k, r) == main else [f for f in features if f == "multimodal"]
                key = ctx.unit_key(name, "survival", params_key, tkey, k, r, rep)
                job = {**base, "train": pids[tr].tolist(), "test": pids[te].tolist(), "val": pids[tr][val].tolist(),
                       "k": k, "r": r, "features": fs,
                       "seed_train": ctx.seed_for(name, "train", k, r, rep),
                       "seed_test": ctx.seed_for(name, "test", k, r, rep),
                       "seed_model": ctx.seed_for(name, "model", k, r, rep) % (2 ** 31)}
                units.append(Unit(key, survival_unit, (builder, job), label=f"{self.endpoint} k={k} r={r} #{rep}"))
                meta[key] = (k, r, rep)
        return units, meta


@hookimpl
def register_tasks(register):
    register("survival", SurvivalTask, tags=["patient-level", "supervised", "survival"])
