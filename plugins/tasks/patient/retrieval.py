"""The ``retrieval`` task: a vector index of index patients' aggregates, queried by held-out patients.

Shared plumbing in :mod:`fusionkit_plugins.tasks.patient.common`.
"""

from __future__ import annotations

import copy
from typing import TYPE_CHECKING, Any

import numpy as np

from fusionkit import DataError, Range, Task, Unit, hookimpl
from fusionkit.metrics import summarise_rows
from fusionkit_plugins.tasks.patient import late_fusion
from fusionkit_plugins.tasks.patient.common import (AggregateBuilder, availability_rows, build_disjoint,
                                                    check_repeats_as, check_sampling, combine_repeats, fmt,
                                                    labelled_cohort, output_name, pick, prepare, single_point, split_patients, target_key,
                                                    write_tables)

if TYPE_CHECKING:  # pragma: no cover
    from fusionkit import RunContext

METRICS = ("precision_at_k", "majority_accuracy", "recall_at_k", "exact_precision_at_k",
           "exact_majority_accuracy", "build_s", "search_s", "late_fusion_precision_at_k", "retention")


# ----------------------------------------------------------------------------- one repeat (a unit)

def _majority(labels: np.ndarray) -> str:
    """Most frequent label; ties go to the label of the nearest neighbour among the tied."""
    vals, first, counts = np.unique(labels, return_index=True, return_counts=True)
    best = counts.max()
    tied = first[counts == best]
    return str(labels[tied.min()])


def _retrieval_split(builder: AggregateBuilder, job: dict[str, Any]) -> dict[str, Any]:
    Xi, pi, Xq, pq = build_disjoint(builder, job["index_patients"], job["query_patients"], job["k"], job["r"],
                                    (job["seed_index"], job["seed_query"]),
                                    leak="a patient is both indexed and a query")
    how = job.get("repeats_as", "concat")
    return {"Xi": combine_repeats(Xi, job["r"], how), "pi": pi, "Xq": combine_repeats(Xq, job["r"], how), "pq": pq}


def _neighbour_scores(found: np.ndarray, yq: np.ndarray, lab: dict[str, str]
                      ) -> tuple[np.ndarray, np.ndarray]:
    """Per query: precision@k (neighbours of its class) and the majority-vote label."""
    ny = np.array([[lab.get(str(x), "") for x in row] for row in found])
    valid = np.array([[x != "" for x in row] for row in found])
    prec = ((ny == yq[:, None]) & valid).sum(axis=1) / np.maximum(valid.sum(axis=1), 1)
    vote = np.array([_majority(row[v]) if v.any() else "" for row, v in zip(ny, valid)])
    return prec, vote


def retrieval_unit(builder: AggregateBuilder, job: dict[str, Any]) -> dict[str, Any]:
    """One repeat: index the index patients, query with the query patients, score against exact search."""
    import time

    from fusionkit_plugins.indexes.common import recall_at_k
    from fusionkit_plugins.indexes.faiss import FaissFlatIndex

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
        prec, vote = _neighbour_scores(found, yq, lab)
        out[f"{tag}precision_at_k"] = float(prec.mean())
        out[f"{tag}majority_accuracy"] = float((vote == yq).mean())
        if not tag:
            out["per_class"] = {c: {"precision_at_k": float(prec[yq == c].mean()),
                                    "majority_accuracy": float((vote[yq == c] == c).mean()),
                                    "queries": int((yq == c).sum())} for c in sorted(set(yq.tolist()))}
    out["late_fusion_precision_at_k"] = _late_fusion_precision(builder.pool, job, yq, top)
    out["retention"] = late_fusion.retention(out["precision_at_k"], out["late_fusion_precision_at_k"])
    return out


def _late_fusion_precision(pool: Any, job: dict[str, Any], yq: np.ndarray, top: int) -> float:
    """precision@top of exact cosine search on the late-fusion features (:mod:`.late_fusion`) of the
    same index and query patients, each part's features from its own rows only."""
    pi = np.asarray(job["index_patients"]).astype(str)
    Fi, Fq = late_fusion.split_features(pool, pi, job["query_patients"])
    Fi /= np.maximum(np.linalg.norm(Fi, axis=1, keepdims=True), 1e-12)
    Fq /= np.maximum(np.linalg.norm(Fq, axis=1, keepdims=True), 1e-12)
    order = np.argsort(-(Fq @ Fi.T), axis=1, kind="stable")[:, :top]
    prec, _ = _neighbour_scores(pi[order], yq, job["labels"])
    return float(prec.mean())


# ----------------------------------------------------------------------------- the task


_COUNT = Range(1, integer=True)
#: declared parameter constraints (checked by ``fusionkit validate``)
_CONSTRAINTS = {"top_k": _COUNT, "query_fraction": Range(0, 1, lo_open=True, hi_open=True), "n_repeats": _COUNT,
                "k": _COUNT, "repeats": _COUNT, "min_class_patients": _COUNT}


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

    ``repeats_as``: a patient's r repeated aggregates side by side (``concat``: cosine over
    the concatenation, the mean of the per-repeat cosines up to norms) or averaged (``mean``:
    one sum of k x r draws per patient; its composition varies less between patients).
    """

    component_params = {"aggregator": "aggregator", "index": "index"}

    constraints = _CONSTRAINTS

    def __init__(self, sampling: str | None = None, aggregator: dict | None = None, label: str = "cancer_type",
                 k: int | None = None, repeats: int | None = None, index: Any = None, top_k: int = 10,
                 query_fraction: float = 0.2, n_repeats: int = 5, min_class_patients: int = 2,
                 save_index: bool = True, repeats_as: str = "concat"):
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
        self.repeats_as = repeats_as

    @classmethod
    def check_recipe(cls, params: dict[str, Any], recipe: Any) -> list[tuple[str, str, str]]:
        issues = check_sampling(params, recipe) + check_repeats_as(params, "concat")
        idx = params.get("index")
        if idx is not None and not isinstance(idx, (str, dict)):
            issues.append(("params.index", "index must be a name or {name, params}", "e.g. index: faiss-hnsw"))
        if not 0 < float(params.get("query_fraction", 0.2)) < 1:
            issues.append(("params.query_fraction", "query_fraction must be between 0 and 1", ""))
        return issues

    def _index(self, ctx: RunContext) -> Any:
        if self.index is not None:
            return ctx.index(self.index)
        if ctx.recipe.index is not None:
            return ctx.index()
        return ctx.index({"name": "faiss-hnsw", "params": {"metric": "cosine"}})

    def run(self, ctx: RunContext) -> dict[str, Any]:
        name = output_name(ctx, "retrieval")
        sampler, sampling_name, builder = prepare(ctx, self.sampling, self.aggregator)
        k, r = single_point(self.k, self.repeats, sampler)
        index = self._index(ctx)
        index_desc = {"name": getattr(index, "index_name", type(index).__name__), "params": index.get_params()}
        pids, y, dropped = labelled_cohort(ctx, builder, self.label, self.min_class_patients)
        if len(pids) < 4:
            raise DataError(f"retrieval: only {len(pids)} labelled patients", where=f"tasks.{name}")
        params_key = {**self.get_params(), "sampler": sampler.get_params(), "index": index_desc}
        tkey = target_key(pids, y)
        jobs = self._jobs(ctx, name, pids, y, k, r, index)
        units = [Unit(ctx.unit_key(name, "retrieval", params_key, tkey, k, r, rep), retrieval_unit, (builder, job),
                      label=f"retrieval #{rep}") for rep, job in enumerate(jobs)]
        results = ctx.run_units(name, units)
        run_rows, summary_rows, per_class_rows = _summarise([results[u.key] for u in units])
        tables = write_tables(ctx, name, {"summary": summary_rows, "per_class": per_class_rows, "runs": run_rows,
                                          "availability": availability_rows(ctx.pool, pids, y, target=self.label)})
        stat = {row["metric"]: row for row in summary_rows}
        saved = self._save_last(ctx, name, builder, jobs[-1], index, pids) if self.save_index else None
        chance = float(np.max(np.unique(y, return_counts=True)[1]) / len(y))
        summary = {"sampling": sampling_name, "label": self.label, "k": k, "repeats": r, "top_k": int(self.top_k),
                   "index": index_desc, "n_patients": int(len(pids)), "n_repeats": int(self.n_repeats),
                   "majority_rate": chance, "dropped_classes": dropped, "saved_index": saved,
                   **{m: pick(stat.get(m)) for m in METRICS}}
        paper = self._paper_rows(stat, index_desc["name"], k, r, chance)
        return {"summary": summary, "tables": tables, "figures": [], "paper_comparison": paper}

    def _jobs(self, ctx: RunContext, name: str, pids: np.ndarray, y: np.ndarray, k: int, r: int,
              index: Any) -> list[dict[str, Any]]:
        """One job per repeat: a patient-disjoint index/query split and its seeds."""
        labels = dict(zip(pids.tolist(), y.tolist()))
        jobs = []
        for rep in range(int(self.n_repeats)):
            ia, qa = split_patients(pids, y, self.query_fraction, ctx.seed_for(name, "split", rep))
            jobs.append({"index_patients": pids[ia].tolist(), "query_patients": pids[qa].tolist(),
                         "labels": labels, "k": k, "r": r, "top_k": self.top_k, "index": index,
                         "repeats_as": self.repeats_as,
                         "seed_index": ctx.seed_for(name, "index", k, r, rep),
                         "seed_query": ctx.seed_for(name, "query", k, r, rep)})
        return jobs

    def _paper_rows(self, stat: dict, index_name: str, k: int, r: int, chance: float) -> list[dict[str, Any]]:
        paper = []
        for m, label in (("precision_at_k", f"precision@{self.top_k}"), ("majority_accuracy", "majority-vote accuracy"),
                         ("recall_at_k", f"recall@{self.top_k} vs exact")):
            p = pick(stat.get(m))
            paper.append({"experiment": f"retrieval ({index_name})", "metric": label, "modality": "all",
                          "k": k, "repeats": r, "ours_mean": p["mean"], "ours_ci_low": p["ci_low"],
                          "ours_ci_high": p["ci_high"], "paper": "not in the paper (ours)",
                          "note": f"majority class rate {fmt(chance)}" if m != "recall_at_k" else "ANN vs faiss-flat"})
        p, late = pick(stat.get("retention")), pick(stat.get("late_fusion_precision_at_k"))
        paper.append({"experiment": f"retrieval ({index_name})", "metric": f"signal retention (precision@{self.top_k} "
                      "sums / late fusion)", "modality": "all", "k": k, "repeats": r, "ours_mean": p["mean"],
                      "ours_ci_low": p["ci_low"], "ours_ci_high": p["ci_high"], "paper": "",
                      "note": f"late-fusion cosine precision@{self.top_k} {fmt(late['mean'])}"})
        return paper

    def _save_last(self, ctx: RunContext, name: str, builder: AggregateBuilder, job: dict[str, Any], index: Any,
                   pids: np.ndarray) -> str:
        """Save one repeat's index, its aggregates (``lookup.npz``) and ``labels.json`` for ``fusionkit query``."""
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


def _summarise(results: list[dict[str, Any]]) -> tuple[list[dict], list[dict], list[dict]]:
    """Per-repeat rows, mean/CI per metric, and mean/CI per (class, metric)."""
    metric_rows, class_rows, run_rows = [], [], []
    for rep, res in enumerate(results):
        run_rows.append({"repeat": rep, **{m: res[m] for m in METRICS}, "n_index": res["n_index"],
                         "n_query": res["n_query"]})
        for m in METRICS:
            metric_rows.append({"metric": m, "value": res[m]})
        for c, pc in res["per_class"].items():
            for m in ("precision_at_k", "majority_accuracy"):
                class_rows.append({"class": c, "metric": m, "value": pc[m]})
    return run_rows, summarise_rows(metric_rows, by=["metric"]), summarise_rows(class_rows, by=["class", "metric"])


@hookimpl
def register_tasks(register):
    register("retrieval", RetrievalTask, tags=["patient-level", "index"])
