"""Shared plumbing of the patient-level tasks: sampler resolution, patient-disjoint splits,
the leak guard, per-split aggregates, label handling and availability reports.

Every patient-level task (``classifier``, ``gmm``, ``similarity``,
``retrieval``, and any task added next to them) works the same way:

1. :func:`prepare` resolves the task's ``sampling`` entry (a recipe entry of
   the ``patient-level`` sampler; when left out, the recipe's only such entry,
   else a default ``patient-level`` sampler) and its ``aggregator`` override
   into an :class:`AggregateBuilder`;
2. :func:`labelled_cohort` picks the patients the sampler would use that carry
   the task's label, leaving out classes with too few patients;
3. each repeat splits *patients* with :func:`split_patients` (stratified,
   seeded), then builds the aggregates of each part separately with
   :meth:`AggregateBuilder.build` — from a pool restricted to that part's
   patients, with the part's own seed — or both parts at once with
   :func:`build_disjoint`, which also asserts that no patient is in both;
4. :func:`check_plan_patients` (called by every :meth:`AggregateBuilder.plan`)
   raises when a plan draws an item of a patient outside its part;
5. the repeats run as cached :class:`fusionkit.Unit` s keyed by
   ``ctx.unit_key(task, params, target_key(...), k, r, repeat)``, so an
   interrupted run resumes;
6. :func:`availability_rows` and :func:`availability_only_baseline` report,
   next to every result, which modalities each class has (SPEC 2.5: the
   availability pattern alone can leak the label).

Nothing here imports scikit-learn, torch or matplotlib at module level.
"""

from __future__ import annotations

import copy
import math
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, Sequence

import numpy as np

from fusionkit import FusionkitError

if TYPE_CHECKING:  # pragma: no cover
    from fusionkit import RunContext

#: the sampler every patient-level task draws its aggregates with
PATIENT_SAMPLER = "patient-level"

#: check_recipe issue: (recipe path below the task, message, hint)
Issue = tuple[str, str, str]


# ----------------------------------------------------------------------------- sampler and grid

def resolve_sampler(ctx: RunContext, name: str | None) -> tuple[Any, str]:
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


def check_sampling(params: dict[str, Any], recipe: Any) -> list[Issue]:
    """Recipe-time checks of the ``sampling`` and ``grid`` parameters every patient-level task takes."""
    issues = _check_sampling_entry(params.get("sampling"), recipe)
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


def _check_sampling_entry(name: str | None, recipe: Any) -> list[Issue]:
    issues: list[Issue] = []
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
    return issues


def grid_points(grid: dict | None, sampler: Any) -> list[tuple[int, int]]:
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


def single_point(k: int | None, r: int | None, sampler: Any) -> tuple[int, int]:
    """One (k, r): the task's own values where given, else the sampler's."""
    grid = {}
    if k:
        grid["k"] = [int(k)]
    if r:
        grid["repeats"] = [int(r)]
    return grid_points(grid, sampler)[0]


def extremes(grid: list[tuple[int, int]]) -> tuple[tuple[int, int], tuple[int, int]]:
    """The smallest and the largest grid point by k x r (ties: the smaller (k, r))."""
    return min(grid, key=lambda g: (g[0] * g[1], g)), max(grid, key=lambda g: (g[0] * g[1], g))


# ----------------------------------------------------------------------------- per-split aggregates

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
        """(plan, restricted pool): r repeats of k draws per patient of ``patients`` only (leak-checked)."""
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
        for plan, sub, s in self._draws(patients, k, r, seed, draws):
            Xs.append(aggregate(plan, sub, self.aggregator, noise_seed=s).X)
            ps.append(np.asarray(plan.patient_ids).astype(str))
        return np.concatenate(Xs), np.concatenate(ps)

    def _draws(self, patients: Sequence[str], k: int, r: int, seed: int, draws: int) -> Any:
        """(plan, restricted pool, seed) of each independent draw: the first with ``seed``, the
        d-th with ``seed + 7919 d`` (shared by :meth:`build` and :meth:`build_parts`)."""
        for d in range(max(1, int(draws))):
            s = int(seed) if d == 0 else int(seed) + 7919 * d
            plan, sub = self.plan(patients, k, r, s)
            yield plan, sub, s

    def build_parts(self, patients: Sequence[str], k: int, r: int, seed: int, draws: int = 1
                    ) -> tuple[np.ndarray, np.ndarray, list[str]]:
        """The aggregates :meth:`build` makes with the same arguments, split by modality:
        (parts (M, n, dim*r), patient ids, modalities); ``parts.sum(0)`` is ``build``'s X.

        Part m is the aggregate of the same plan with every other modality's draws masked, so
        any per-modality weighting ``sum_m w_m * parts[m]`` is the aggregate of draws scaled by
        ``w_m`` (a "scaling before the sum"). Exact for aggregators whose draw weights do not
        depend on the other draws of an aggregate (``sum``; not ``mean``, whose weights are
        one over the number of draws): anything else raises.
        """
        from fusionkit import aggregate

        probe = np.array([[True, True, False]])
        if not getattr(self.aggregator, "linear", False) or not np.array_equal(
                np.asarray(self.aggregator.weights(probe), dtype=np.float32), probe.astype(np.float32)):
            raise FusionkitError("per-modality weights need an aggregator that adds its draws unweighted "
                                 f"(sum), not {type(self.aggregator).__name__}")
        parts, ps, mods = [], [], []
        for plan, sub, s in self._draws(patients, k, r, seed, draws):
            mods = list(plan.modalities)
            one = []
            for mi in range(len(mods)):
                masked = copy.copy(plan)
                masked.mod = np.where(plan.mod == mi, plan.mod, np.int8(-1)).astype(plan.mod.dtype)
                one.append(aggregate(masked, sub, self.aggregator, noise_seed=s).X)
            parts.append(np.stack(one))
            ps.append(np.asarray(plan.patient_ids).astype(str))
        return np.concatenate(parts, axis=1), np.concatenate(ps), mods


def weighted_sum(parts: np.ndarray, mods: list[str], weights: dict[str, float] | None) -> np.ndarray:
    """``sum_m w_m * parts[m]`` (float32); modalities not named in ``weights`` weigh 1."""
    w = weights or {}
    out = np.zeros(parts.shape[1:], dtype=np.float32)
    for mi, m in enumerate(mods):
        out += np.float32(w.get(m, 1.0)) * parts[mi]
    return out


#: the factors ``modality_weights: search`` tries for each modality, one modality at a time
WEIGHT_FACTORS = (0.5, 2.0)


def weight_candidates(spec: Any, mods: list[str], factors: Any = None) -> list[dict[str, float]]:
    """Per-modality weight sets to choose from: ``search`` = no weighting, and each modality
    alone at each of ``factors`` (default :data:`WEIGHT_FACTORS`, x0.5 and x2: 1 + 2M sets); a
    list = those sets (modalities left out weigh 1)."""
    if not spec:
        return []
    if spec == "search":
        return [{}] + [{m: float(f)} for m in mods for f in (factors or WEIGHT_FACTORS)]
    return [{str(m): float(w) for m, w in (c or {}).items()} for c in spec]


def weights_text(w: dict[str, float]) -> str:
    return ",".join(f"{m}={v:g}" for m, v in sorted(w.items()) if v != 1.0) or "none"


def _positive(x: Any) -> bool:
    return isinstance(x, (int, float)) and not isinstance(x, bool) and x > 0


def check_weights(params: dict[str, Any], recipe: Any) -> list[tuple[str, str, str]]:
    """Recipe issues of ``modality_weights`` and ``weight_factors`` (classifier, survival)."""
    spec = params.get("modality_weights")
    hint = ("modality_weights: search (with weight_factors, e.g. [0.5, 2]), or a list of weight sets such as "
            "[{}, {rna: 2}, {mutation: 0.5}]; the aggregator must be sum")
    factors = params.get("weight_factors")
    if factors is not None and (not isinstance(factors, list) or not factors or not all(map(_positive, factors))):
        return [("params.weight_factors", f"must be a non-empty list of numbers > 0, got {factors!r}", hint)]
    if spec in (None, False):
        return []
    if spec == "search":
        return _check_weights_aggregator(params, recipe, hint)
    if not isinstance(spec, list) or not spec or not all(isinstance(c, dict) or c is None for c in spec):
        return [("params.modality_weights", f"must be 'search' or a non-empty list of weight sets, got {spec!r}", hint)]
    for c in spec:
        for m, w in (c or {}).items():
            if not _positive(w):
                return [("params.modality_weights", f"weight of {m!r} must be a number > 0, got {w!r}", hint)]
    return _check_weights_aggregator(params, recipe, hint)


def _check_weights_aggregator(params: dict[str, Any], recipe: Any, hint: str) -> list[tuple[str, str, str]]:
    agg = params.get("aggregator")
    name = (agg.get("name") if isinstance(agg, dict) else agg) or getattr(getattr(recipe, "aggregator", None),
                                                                           "name", "sum")
    if name != "sum":
        return [("params.modality_weights", f"per-modality weights need the sum aggregator, not {name!r}", hint)]
    return []


def build_disjoint(builder: AggregateBuilder, first: Sequence[str], second: Sequence[str], k: int, r: int,
                   seeds: tuple[int, int], *, draws: int = 1, leak: str = "a patient is in both parts"
                   ) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """Aggregates of two patient parts built separately: (X1, ids1, X2, ids2).

    ``draws`` applies to the first part (e.g. fresh training draws); raises
    ``patient leak: <leak>`` when a patient has aggregates in both parts.
    """
    X1, p1 = builder.build(first, k, r, seeds[0], draws=draws)
    X2, p2 = builder.build(second, k, r, seeds[1])
    _check_disjoint(p1, p2, leak)
    return X1, p1, X2, p2


def build_disjoint_parts(builder: AggregateBuilder, first: Sequence[str], second: Sequence[str], k: int, r: int,
                         seeds: tuple[int, int], *, draws: int = 1, leak: str = "a patient is in both parts"
                         ) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray, list[str]]:
    """:func:`build_disjoint` kept per modality (:meth:`AggregateBuilder.build_parts`), the same
    plans and the same leak check: (parts1, ids1, parts2, ids2, modalities)."""
    P1, p1, mods = builder.build_parts(first, k, r, seeds[0], draws=draws)
    P2, p2, _ = builder.build_parts(second, k, r, seeds[1])
    _check_disjoint(p1, p2, leak)
    return P1, p1, P2, p2, mods


def _check_disjoint(p1: np.ndarray, p2: np.ndarray, leak: str) -> None:
    if set(p1.tolist()) & set(p2.tolist()):
        raise FusionkitError(f"patient leak: {leak}")


#: how the r repeats of a patient's aggregate become features (classifier, survival)
REPEATS_AS = ("concat", "mean")


def combine_repeats(X: np.ndarray, r: int, how: str) -> np.ndarray:
    """Rows of r repeated aggregates side by side (n, dim*r) as features: kept side by side
    (``concat``, the paper's layout) or averaged (``mean``: the r exchangeable repeats as one sum of
    k x r draws, dim features; the composition of the sum varies less and the model has r x fewer
    weights to fit)."""
    if how not in REPEATS_AS:
        raise FusionkitError(f"repeats_as must be one of {', '.join(REPEATS_AS)}, got {how!r}")
    if how == "mean" and r > 1:
        return X.reshape(len(X), int(r), -1).mean(axis=1)
    return X


def check_repeats_as(params: dict[str, Any], default: str) -> list[Issue]:
    """The recipe check of a task's ``repeats_as`` parameter (classifier, survival)."""
    if params.get("repeats_as", default) in REPEATS_AS:
        return []
    return [("params.repeats_as", f"repeats_as must be one of {', '.join(REPEATS_AS)}",
             "concat keeps the r repeats side by side (the paper's layout); mean averages them")]


def make_builder(ctx: RunContext, sampler: Any, aggregator: dict | None = None) -> AggregateBuilder:
    """``aggregator`` (a task param, {name, params}) overrides the recipe's aggregator for this task."""
    if aggregator:
        agg = ctx.system.create("aggregator", aggregator.get("name", "sum"), aggregator.get("params") or {},
                                where=f"tasks.{ctx.task_name}.params.aggregator")
    else:
        agg = ctx.aggregator()
    return AggregateBuilder(pool=ctx.pool, sampler=sampler, aggregator=agg)


def prepare(ctx: RunContext, sampling: str | None, aggregator: dict | None) -> tuple[Any, str, AggregateBuilder]:
    """(sampler, sampling entry name, builder) of a patient-level task's ``sampling``/``aggregator`` params."""
    sampler, sampling_name = resolve_sampler(ctx, sampling)
    return sampler, sampling_name, make_builder(ctx, sampler, aggregator)


def eligible_patients(builder: AggregateBuilder) -> np.ndarray:
    """Patients the sampler would use (min_modalities etc.): a cheap k=1, r=1 plan."""
    sampler = copy.copy(builder.sampler)
    sampler.set_params(k=1, repeats=1)
    plan = sampler.plan(builder.pool, np.random.default_rng(0))
    return np.asarray(plan.patient_ids).astype(str)


def draw_coverage(builder: AggregateBuilder, patients: Sequence[str], k: int, r: int, seed: int = 0
                  ) -> dict[str, dict[str, float]]:
    """What a patient's k x r aggregate holds of each modality: ``{modality: {"draws": mean draws,
    "share": mean share of the patient's items drawn at least once, "patients": n}}`` over the
    patients who have the modality (one plan, ``seed``). A modality of many items per patient
    (sentences, tiles) reaches its aggregate only in part: at share 0.5 a given sentence, say the
    tumour stage, is missing from half the patients' aggregates."""
    plan, sub = builder.plan(patients, k, r, seed)
    pp = np.asarray(plan.patient_ids).astype(str)
    out: dict[str, dict[str, float]] = {}
    for mi, m in enumerate(plan.modalities):
        view = sub.views[m]
        owners = np.asarray(view.patient_ids)[view.rows].astype(str)
        items = dict(zip(*np.unique(owners, return_counts=True)))
        mask = (plan.mod == mi) & ~plan.noise
        draws, share = [], []
        for i, p in enumerate(pp):
            if items.get(p):
                draws.append(int(mask[i].sum()))
                share.append(len(set(plan.item[i][mask[i]].tolist())) / int(items[p]))
        if draws:
            out[m] = {"draws": float(np.mean(draws)), "share": float(np.mean(share)), "patients": len(draws)}
    return out


# ----------------------------------------------------------------------------- labels and splits

def labelled(pool: Any, patients: np.ndarray, label: str) -> tuple[np.ndarray, np.ndarray]:
    """(patients, labels as str) of the ``patients`` that carry ``label`` (missing/nan left out)."""
    y = pool.patient_label(label, patients)
    ok = np.array([v is not None and str(v) not in ("", "nan", "None") for v in y], dtype=bool)
    return patients[ok], np.array([str(v) for v in y[ok]])


def drop_small(pids: np.ndarray, y: np.ndarray, min_n: int) -> tuple[np.ndarray, np.ndarray, list[str]]:
    """Leave out classes with fewer than ``min_n`` patients: (pids, y, ["CLASS (n)", ...] dropped)."""
    vals, counts = np.unique(y, return_counts=True)
    keep_classes = vals[counts >= int(min_n)]
    dropped = [f"{v} ({c})" for v, c in zip(vals, counts) if c < int(min_n)]
    keep = np.isin(y, keep_classes)
    return pids[keep], y[keep], dropped


def labelled_cohort(ctx: RunContext, builder: AggregateBuilder, label: str, min_class_patients: int
                    ) -> tuple[np.ndarray, np.ndarray, list[str]]:
    """(pids, y, dropped classes): eligible patients with ``label``, too-small classes left out."""
    pids, y = labelled(ctx.pool, eligible_patients(builder), label)
    return drop_small(pids, y, min_class_patients)


def split_patients(pids: np.ndarray, y: np.ndarray, test_fraction: float, seed: int
                   ) -> tuple[np.ndarray, np.ndarray]:
    """Stratified patient split: sorted (rest, held-out) positions into ``pids``.

    Falls back on a plain shuffle where a class is too small to stratify.
    """
    from sklearn.model_selection import train_test_split

    idx = np.arange(len(pids))
    try:
        a, b = train_test_split(idx, test_size=test_fraction, random_state=int(seed) % (2 ** 32), stratify=y)
    except ValueError:
        a, b = train_test_split(idx, test_size=test_fraction, random_state=int(seed) % (2 ** 32))
    return np.sort(a), np.sort(b)


def target_key(pids: np.ndarray, y: np.ndarray) -> str:
    """Cache-key part naming a labelled cohort (patients and their labels)."""
    from fusionkit import stable_hash

    return stable_hash([pids.tolist(), y.tolist()], length=16)


# ----------------------------------------------------------------------------- availability (SPEC 2.5)

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
    """(patients, modalities) 0/1: which modalities each patient has."""
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


# ----------------------------------------------------------------------------- outputs

def output_name(ctx: RunContext, default: str) -> str:
    """The folder of a task's outputs: its recipe name, else ``default``."""
    return ctx.task_name or default


def write_tables(ctx: RunContext, name: str, tables: dict[str, list[dict[str, Any]]]) -> dict[str, str]:
    """Write ``{table: rows}`` as ``<name>/<table>.csv``; returns ``{table: path}``."""
    return {key: str(ctx.write_csv(f"{name}/{key}.csv", rows)) for key, rows in tables.items()}


def pick(row: dict | None) -> dict[str, Any]:
    """mean / ci_low / ci_high / n of a summary row (NaN and 0 when there is none)."""
    if not row:
        return {"mean": float("nan"), "ci_low": float("nan"), "ci_high": float("nan"), "n": 0}
    return {"mean": row["mean"], "ci_low": row["ci_low"], "ci_high": row["ci_high"], "n": row["n"]}


def fmt(x: Any, nd: int = 3) -> str:
    """A number with ``nd`` decimals ("nan" for missing or non-finite)."""
    try:
        return "nan" if x is None or not math.isfinite(float(x)) else f"{float(x):.{nd}f}"
    except (TypeError, ValueError):
        return str(x)
