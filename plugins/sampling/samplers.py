"""Samplers (SPEC 2.2); registers ``modality-level``, ``cancer-specific`` and ``patient-level``.

All three return a :class:`~fusionkit.components.DrawPlan` of indices built
with vectorised numpy; nothing loops over aggregates in Python.
"""

from __future__ import annotations

from typing import Any

import numpy as np

from fusionkit import hookimpl
from fusionkit import DrawPlan, Sampler
from fusionkit import Check, DataError, OneOf, Range

_K_FORMS = "an integer, a list of integers or 'lo..hi'"


def k_problem(k: Any) -> str | None:
    """What is wrong with a sample-count spec ``k``, or None (the declared constraint of ``k``)."""
    if isinstance(k, bool):
        return f"must be {_K_FORMS}, got {k!r}"
    if isinstance(k, (int, np.integer)):
        return None if k >= 1 else f"sample counts must be >= 1, got {k!r}"
    if isinstance(k, str) and ".." in k:
        lo, _, hi = k.partition("..")
        if not (lo.strip().lstrip("-").isdigit() and hi.strip().lstrip("-").isdigit()):
            return f"must be {_K_FORMS}, got {k!r}"
        if int(lo) > int(hi):
            return f"range {k!r} is reversed (lo > hi): write '{hi.strip()}..{lo.strip()}'"
        return None if int(lo) >= 1 else f"sample counts must be >= 1, got {k!r}"
    if isinstance(k, (list, tuple)) and k:
        if not all(isinstance(x, (int, np.integer)) and not isinstance(x, bool) for x in k):
            return f"must be {_K_FORMS}, got {k!r}"
        return None if min(k) >= 1 else f"sample counts must be >= 1, got {k!r}"
    return f"must be {_K_FORMS}, got {k!r}"


def parse_k(k: Any) -> list[int]:
    """Sample counts: ``5``, ``[3, 5, 8]`` or ``"3..10"`` (inclusive range)."""
    problem = k_problem(k)
    if problem:
        raise DataError(f"sample count k {problem}", hint=f"give k as {_K_FORMS}")
    if isinstance(k, (int, np.integer)):
        return [int(k)]
    if isinstance(k, str):
        lo, hi = (int(x) for x in k.split("..", 1))
        return list(range(lo, hi + 1))
    return [int(x) for x in k]


def probabilities_problem(p: Any) -> str | None:
    """Per-modality draw probabilities: a mapping of numbers in [0, 1], not all zero."""
    if not isinstance(p, dict):
        return f"must map modality names to probabilities, got {p!r}"
    bad = {m: v for m, v in p.items() if isinstance(v, bool) or not isinstance(v, (int, float)) or not 0 <= v <= 1}
    if bad:
        return f"must be numbers in [0, 1], got {bad}"
    return None if sum(p.values()) > 0 else "must not all be zero"


def _modalities_check(params: dict[str, Any], recipe: Any) -> list[tuple[str, str, str | None]]:
    """Modality names in ``probabilities`` / ``modalities`` must be recipe modalities."""
    known = list(getattr(recipe, "modalities", {}) or {})
    out = []
    for param in ("probabilities", "modalities", "restrict"):
        names = params.get(param) or []
        unknown = [m for m in names if m not in known] if isinstance(names, (dict, list, tuple)) else []
        if unknown:
            out.append((f"params.{param}", f"names modalities that are not in the recipe: {unknown}",
                        f"recipe modalities: {', '.join(known)}"))
    return out


_DRAW_CONSTRAINTS = {"k": Check(k_problem, _K_FORMS + " (each >= 1)"), "n": Range(1, integer=True),
                     "probabilities": Check(probabilities_problem, "a mapping of numbers in [0, 1]")}


def _probabilities(mods: list[str], probabilities: dict[str, float] | None) -> np.ndarray:
    if not probabilities:
        return np.full(len(mods), 1.0 / len(mods))
    unknown = set(probabilities) - set(mods)
    if unknown:
        raise DataError(f"probabilities name modalities not in the pool: {sorted(unknown)}",
                        hint=f"pool modalities: {', '.join(mods)}")
    p = np.array([float(probabilities.get(m, 0.0)) for m in mods])
    if (p < 0).any() or p.sum() <= 0:
        raise DataError(f"probabilities must be >= 0 and not all zero, got {probabilities}")
    return p / p.sum()


def _pool_modalities(pool: Any, modalities: list[str] | None) -> list[str]:
    mods = list(modalities) if modalities else list(pool.modalities)
    missing = [m for m in mods if m not in pool.views]
    if missing:
        raise DataError(f"sampler asks for modalities not in the pool: {missing}",
                        hint=f"pool modalities: {', '.join(pool.modalities)}")
    return mods


def _k_layout(ks: list[int], n_per_k: int) -> tuple[np.ndarray, int]:
    k = np.repeat(np.asarray(ks, dtype=np.int32), n_per_k)
    return k, int(max(ks))


def _fill_items(rng: np.random.Generator, mod: np.ndarray, sizes: list[int], rows: list[np.ndarray]) -> np.ndarray:
    """For every slot with modality m draw a uniform row of that modality."""
    item = np.full(mod.shape, -1, dtype=np.int64)
    for m, (size, r) in enumerate(zip(sizes, rows)):
        sel = mod == m
        cnt = int(sel.sum())
        if cnt:
            item[sel] = r[rng.integers(0, size, size=cnt)]
    return item


def item_labels(pool: Any, modality: str, label: str) -> np.ndarray:
    """Per-row label of a modality (item label, or the patient label mapped onto items)."""
    view = pool.views[modality]
    if label in view.labels:
        return np.asarray(view.labels[label])[view.rows].astype(str)
    pids = view.patient_ids[view.rows]
    return np.array([str(x) for x in pool.patient_label(label, pids)])


class ModalityLevelSampler(Sampler):
    """Modality-level ("simple") sampling: k draws from the pooled embeddings, modality chosen at random.

    Parameters: ``k`` sample count(s) (int, list or "lo..hi"); ``n`` aggregates
    per sample count; ``probabilities`` per modality (default uniform);
    ``modalities`` subset of the pool (default all). Labels: presence and
    counts of each modality.
    """

    constraints = _DRAW_CONSTRAINTS

    @classmethod
    def check_recipe(cls, params: dict[str, Any], recipe: Any) -> list[tuple[str, str, str | None]]:
        return _modalities_check(params, recipe)

    def __init__(self, k: Any = 3, n: int = 15000, probabilities: dict | None = None,
                 modalities: list | None = None):
        self.k = k
        self.n = n
        self.probabilities = probabilities
        self.modalities = modalities

    def plan(self, pool: Any, rng: np.random.Generator) -> DrawPlan:
        mods = _pool_modalities(pool, self.modalities)
        p = _probabilities(mods, self.probabilities)
        ks, = (parse_k(self.k),)
        k, kmax = _k_layout(ks, int(self.n))
        N = len(k)
        mod = rng.choice(len(mods), size=(N, kmax), p=p).astype(np.int8)
        mod[np.arange(kmax)[None, :] >= k[:, None]] = -1
        rows = [pool.views[m].rows for m in mods]
        item = _fill_items(rng, mod, [len(r) for r in rows], rows)
        return DrawPlan(modalities=mods, mod=mod[:, None, :], item=item[:, None, :], k=k,
                        meta={"sampler": "modality-level", "ks": ks, "probabilities": p.tolist()})


class CancerSpecificSampler(Sampler):
    """Cancer-specific sampling: every draw of an aggregate comes from one cancer type.

    ``restrict`` lists the modalities whose draws are restricted to the chosen
    cancer (default: all; the authors' code restricted only RNA). Aggregates
    are balanced over cancers; a modality with no item of a cancer is not
    drawn for that cancer. Labels: presence, counts and the cancer type.
    """

    constraints = _DRAW_CONSTRAINTS

    @classmethod
    def check_recipe(cls, params: dict[str, Any], recipe: Any) -> list[tuple[str, str, str | None]]:
        return _modalities_check(params, recipe)

    def __init__(self, k: Any = 3, n: int = 15000, label: str = "cancer_type",
                 restrict: list | None = None, cancers: list | None = None,
                 probabilities: dict | None = None, modalities: list | None = None):
        self.k = k
        self.n = n
        self.label = label
        self.restrict = restrict
        self.cancers = cancers
        self.probabilities = probabilities
        self.modalities = modalities

    def plan(self, pool: Any, rng: np.random.Generator) -> DrawPlan:
        mods = _pool_modalities(pool, self.modalities)
        base_p = _probabilities(mods, self.probabilities)
        restrict = set(self.restrict if self.restrict is not None else mods)
        unknown = restrict - set(mods)
        if unknown:
            raise DataError(f"restrict names modalities not sampled: {sorted(unknown)}")
        labels = {m: item_labels(pool, m, self.label) for m in mods}
        cancers = sorted(set(self.cancers) if self.cancers else
                         set().union(*[set(v) for v in labels.values()]) - {"None", "nan", ""})
        if not cancers:
            raise DataError(f"no {self.label!r} values found for cancer-specific sampling")
        ks = parse_k(self.k)
        k, kmax = _k_layout(ks, int(self.n))
        N = len(k)
        cancer_idx = np.resize(np.arange(len(cancers)), N)
        rng.shuffle(cancer_idx)
        # per cancer: modality probabilities (0 where a restricted modality has no item of it)
        P = np.tile(base_p, (len(cancers), 1))
        groups: dict[tuple[int, int], np.ndarray] = {}
        for mi, m in enumerate(mods):
            rows = pool.views[m].rows
            for ci, c in enumerate(cancers):
                if m in restrict:
                    g = rows[labels[m] == c]
                    groups[(mi, ci)] = g
                    if len(g) == 0:
                        P[ci, mi] = 0.0
                else:
                    groups[(mi, ci)] = rows
        if (P.sum(axis=1) == 0).any():
            bad = [cancers[i] for i in np.where(P.sum(axis=1) == 0)[0]]
            raise DataError(f"cancers {bad} have no item in any sampled modality")
        P = P / P.sum(axis=1, keepdims=True)
        cum = np.cumsum(P, axis=1)
        u = rng.random((N, kmax))
        mod = (u[..., None] > cum[cancer_idx][:, None, :]).sum(axis=2).astype(np.int8)
        mod = np.minimum(mod, len(mods) - 1)
        mod[np.arange(kmax)[None, :] >= k[:, None]] = -1
        item = np.full(mod.shape, -1, dtype=np.int64)
        cgrid = np.broadcast_to(cancer_idx[:, None], mod.shape)
        for (mi, ci), g in groups.items():
            sel = (mod == mi) & (cgrid == ci)
            cnt = int(sel.sum())
            if cnt:
                item[sel] = g[rng.integers(0, len(g), size=cnt)]
        return DrawPlan(modalities=mods, mod=mod[:, None, :], item=item[:, None, :], k=k,
                        group_labels={self.label: np.asarray(cancers, dtype=object)[cancer_idx]},
                        meta={"sampler": "cancer-specific", "ks": ks, "cancers": cancers,
                              "restrict": sorted(restrict)})


def _patient_rows(pool: Any, mods: list[str], patients: list | None
                  ) -> tuple[np.ndarray, np.ndarray, np.ndarray, list[np.ndarray]]:
    """Rows of each modality grouped by patient (CSR): (patients, start, count, rows sorted by patient).

    ``start[p, m]`` / ``count[p, m]`` locate patient ``p``'s items of modality
    ``m`` in ``rows[m]``; patients are every patient of ``mods`` (sorted),
    restricted to ``patients`` when given.
    """
    all_p = np.unique(np.concatenate([pool.views[m].patient_ids[pool.views[m].rows] for m in mods]))
    if patients is not None:
        all_p = np.intersect1d(all_p, np.asarray(list(patients)).astype(str))
    start = np.zeros((len(all_p), len(mods)), dtype=np.int64)
    count = np.zeros((len(all_p), len(mods)), dtype=np.int64)
    sorted_rows = []
    for mi, m in enumerate(mods):
        v = pool.views[m]
        rows = v.rows
        pid = v.patient_ids[rows]
        order = np.argsort(pid, kind="stable")
        rows_s, pid_s = rows[order], pid[order]
        sorted_rows.append(rows_s)
        lo = np.searchsorted(pid_s, all_p, side="left")
        hi = np.searchsorted(pid_s, all_p, side="right")
        start[:, mi], count[:, mi] = lo, hi - lo
    return all_p, start, count, sorted_rows


class PatientLevelSampler(Sampler):
    """Patient-level sampling: r repeats of k draws from one patient's own embeddings, concatenated.

    For each repeat a modality is drawn among the patient's available ones
    (``choice: modality``, default, uniform over modalities) or an item among
    all the patient's items (``choice: item``), then an item of that modality.
    Patients with fewer than ``min_modalities`` modalities are left out.
    Output width is dim x repeats.
    """

    constraints = {"k": Check(lambda k: k_problem(k) or (None if len(parse_k(k)) == 1 else
                                                          "must be one sample count (use a grid in the task)"),
                              "one integer >= 1"),
                   "repeats": Range(1, integer=True), "min_modalities": Range(1, integer=True),
                   "choice": OneOf("modality", "item")}

    @classmethod
    def check_recipe(cls, params: dict[str, Any], recipe: Any) -> list[tuple[str, str, str | None]]:
        return _modalities_check(params, recipe)

    def __init__(self, k: Any = 5, repeats: int = 5, min_modalities: int = 2, choice: str = "modality",
                 modalities: list | None = None, patients: list | None = None):
        self.k = k
        self.repeats = repeats
        self.min_modalities = min_modalities
        self.choice = choice
        self.modalities = modalities
        self.patients = patients

    def plan(self, pool: Any, rng: np.random.Generator) -> DrawPlan:
        if self.choice not in ("modality", "item"):
            raise DataError(f"choice must be 'modality' or 'item', got {self.choice!r}")
        mods = _pool_modalities(pool, self.modalities)
        ks = parse_k(self.k)
        if len(ks) != 1:
            raise DataError("patient-level sampling takes one sample count k; use a grid in the task for several")
        kk, r = ks[0], int(self.repeats)
        if r < 1:
            raise DataError(f"repeats must be >= 1, got {r}")
        all_p, start, count, sorted_rows = _patient_rows(pool, mods, self.patients)
        M = len(mods)
        avail = count > 0
        n_avail = avail.sum(axis=1)
        keep = n_avail >= int(self.min_modalities)
        if not keep.any():
            raise DataError(f"no patient has >= {self.min_modalities} modalities among {mods}",
                            hint="lower sampling min_modalities or add modalities")
        pats, start, count, avail, n_avail = all_p[keep], start[keep], count[keep], avail[keep], n_avail[keep]
        P = len(pats)
        shape = (P, r, kk)
        if self.choice == "modality":
            order = np.argsort(~avail, axis=1, kind="stable")  # available modalities first
            j = np.floor(rng.random(shape) * n_avail[:, None, None]).astype(np.int64)
            j = np.minimum(j, n_avail[:, None, None] - 1)
            mod = np.take_along_axis(order[:, None, :].repeat(r, axis=1), j, axis=2).astype(np.int8)
        else:
            cum = np.cumsum(count, axis=1)
            tot = cum[:, -1]
            u = np.floor(rng.random(shape) * tot[:, None, None]).astype(np.int64)
            mod = (u[..., None] >= cum[:, None, None, :]).sum(axis=3).astype(np.int8)
        pidx = np.broadcast_to(np.arange(P)[:, None, None], shape)
        st = start[pidx, mod]
        ct = count[pidx, mod]
        pos = st + np.minimum(np.floor(rng.random(shape) * ct).astype(np.int64), ct - 1)
        item = np.empty(shape, dtype=np.int64)
        for mi in range(M):
            sel = mod == mi
            if sel.any():
                item[sel] = sorted_rows[mi][pos[sel]]
        group = {}
        for name in pool.labels:
            group[name] = pool.patient_label(name, pats)
        return DrawPlan(modalities=mods, mod=mod, item=item, k=np.full(P, kk, dtype=np.int32),
                        patient_ids=pats, group_labels=group,
                        meta={"sampler": "patient-level", "k": kk, "repeats": r,
                              "min_modalities": int(self.min_modalities), "choice": self.choice})


@hookimpl
def register_samplers(register):
    register("modality-level", ModalityLevelSampler, tags=["recognizer"])
    register("cancer-specific", CancerSpecificSampler, tags=["recognizer"])
    register("patient-level", PatientLevelSampler, tags=["classifier"])
