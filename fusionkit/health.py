"""Embedding health (issue 15; SPEC 2.5 "our own encoder can be the cause").

Pure functions over one modality's embeddings (items x width), their patient ids and patient labels:

``spread``
    ``sqrt(mean ||z - mean||^2) / sqrt(mean ||z||^2)``: item-to-item variation relative to the
    vectors' size, in [0, 1] whatever the width (1 for centred data, 0 when every item gets the same
    vector).
``std_over_norm``
    mean per-dimension standard deviation across items / mean L2 norm (the number issue 15 quoted:
    0.0017 for the collapsed ``rna-vae``; it shrinks like 1/sqrt(width) even for healthy data, so the
    verdict uses ``spread``).
``effective_rank``
    ``exp(entropy)`` of the normalised singular values of the centred matrix (Roy & Vetterli 2007).
``probe``
    the stated protocol (:data:`PROBE_PROTOCOL`): items averaged per patient; classes with fewer than
    ``n_folds`` patients dropped; stratified ``n_folds``-fold split (shuffled, seeded); per fold a
    standardised multinomial logistic regression (L2, C=1) fitted on the training patients;
    macro-F1 averaged over folds, next to a majority-class baseline on the same folds.

Verdict: ``collapsed`` when ``spread < COLLAPSE_SPREAD`` (the vectors barely differ between items);
``uninformative`` when a probe exists and its macro-F1 does not beat chance (1 / classes) by
``UNINFORMATIVE_MARGIN``; else ``ok``. sklearn is imported inside the probe only.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np

__all__ = ["COLLAPSE_SPREAD", "UNINFORMATIVE_MARGIN", "PROBE_PROTOCOL", "spread", "std_over_norm",
           "effective_rank", "patient_means", "linear_probe", "raw_pca_probe", "modality_health",
           "collapsed_modalities", "health_lines", "pool_health", "check_health", "probe_run"]

#: below this ``spread`` the items' vectors are (nearly) one vector: the encoder collapsed
COLLAPSE_SPREAD = 0.05
#: a probe whose macro-F1 is within this of chance (1 / classes, the expected macro-F1 of
#: guessing with the class frequencies) is flagged uninformative
UNINFORMATIVE_MARGIN = 0.05
PROBE_PROTOCOL = ("per-patient mean embedding; stratified 5-fold (shuffled, seed 0); per fold "
                  "StandardScaler + multinomial LogisticRegression(C=1, L2) fitted on the training patients; "
                  "macro-F1 averaged over folds; baselines: majority class of the training fold, and chance "
                  "(1 / classes, the expected macro-F1 of guessing with the class frequencies)")


def _matrix(Z: Any) -> np.ndarray:
    Z = np.asarray(Z, dtype=np.float64)
    if Z.ndim != 2:
        raise ValueError(f"embeddings must be 2-D (items x width), got shape {Z.shape}")
    return Z


def spread(Z: Any) -> float:
    """Root total variance over root mean squared norm, in [0, 1]; 0 = every item the same vector."""
    Z = _matrix(Z)
    if len(Z) < 2:
        return float("nan")
    total = float((Z ** 2).sum(axis=1).mean())
    if total <= 0:
        return 0.0
    var = float(((Z - Z.mean(axis=0)) ** 2).sum(axis=1).mean())
    return float(np.sqrt(max(var, 0.0) / total))


def std_over_norm(Z: Any) -> float:
    """Mean per-dimension standard deviation across items / mean L2 norm of the items."""
    Z = _matrix(Z)
    norm = float(np.linalg.norm(Z, axis=1).mean()) if len(Z) else 0.0
    return float(Z.std(axis=0).mean() / norm) if norm > 0 else 0.0


def effective_rank(Z: Any, max_items: int = 5000, seed: int = 0) -> float:
    """``exp(H(p))`` with ``p`` the singular values of the centred matrix normalised to sum 1 (1..width)."""
    Z = _matrix(Z)
    if len(Z) > max_items:
        Z = Z[np.sort(np.random.default_rng(seed).choice(len(Z), max_items, replace=False))]
    if len(Z) < 2:
        return float("nan")
    s = np.linalg.svd(Z - Z.mean(axis=0), compute_uv=False)
    if s.sum() <= 0:
        return 0.0
    p = s / s.sum()
    p = p[p > 0]
    return float(np.exp(-(p * np.log(p)).sum()))


def patient_means(Z: Any, patient_ids: Sequence[Any]) -> tuple[np.ndarray, np.ndarray]:
    """(sorted unique patient ids, the mean embedding of each patient's items)."""
    Z = _matrix(Z)
    pids = np.asarray(patient_ids).astype(str)
    uniq, inv = np.unique(pids, return_inverse=True)
    sums = np.zeros((len(uniq), Z.shape[1]))
    np.add.at(sums, inv, Z)
    return uniq, sums / np.bincount(inv, minlength=len(uniq))[:, None]


def linear_probe(X: Any, y: Sequence[Any], n_folds: int = 5, seed: int = 0, C: float = 1.0,
                 max_iter: int = 1000) -> dict[str, Any]:
    """The :data:`PROBE_PROTOCOL` on one row per patient; ``None``-free labels; see the module doc."""
    from sklearn.linear_model import LogisticRegression
    from sklearn.metrics import accuracy_score, f1_score
    from sklearn.model_selection import StratifiedKFold
    from sklearn.preprocessing import StandardScaler

    X, y = _matrix(X), np.asarray(y).astype(str)
    classes, counts = np.unique(y, return_counts=True)
    keep_cls = classes[counts >= n_folds]
    keep = np.isin(y, keep_cls)
    out: dict[str, Any] = {"protocol": PROBE_PROTOCOL, "patients": int(keep.sum()), "classes": len(keep_cls),
                           "dropped_classes": sorted(classes[counts < n_folds].tolist())}
    if len(keep_cls) < 2:
        return {**out, "macro_f1": None, "reason": f"fewer than 2 classes with >= {n_folds} patients"}
    X, y = X[keep], y[keep]
    f1, acc, base_f1, base_acc = [], [], [], []
    for tr, te in StratifiedKFold(n_folds, shuffle=True, random_state=seed).split(X, y):
        scaler = StandardScaler().fit(X[tr])
        clf = LogisticRegression(C=C, max_iter=max_iter).fit(scaler.transform(X[tr]), y[tr])
        pred = clf.predict(scaler.transform(X[te]))
        f1.append(f1_score(y[te], pred, average="macro"))
        acc.append(accuracy_score(y[te], pred))
        vals, cnt = np.unique(y[tr], return_counts=True)
        const = np.full(len(te), vals[np.argmax(cnt)])
        base_f1.append(f1_score(y[te], const, average="macro"))
        base_acc.append(accuracy_score(y[te], const))
    return {**out, "macro_f1": float(np.mean(f1)), "macro_f1_folds": [round(float(v), 4) for v in f1],
            "accuracy": float(np.mean(acc)), "majority_macro_f1": float(np.mean(base_f1)),
            "majority_accuracy": float(np.mean(base_acc)), "chance_macro_f1": 1.0 / len(keep_cls)}


def raw_pca_probe(X: Any, y: Sequence[Any], dim: int = 256, **probe_kw: Any) -> dict[str, Any]:
    """The same probe on the first ``dim`` principal components of a raw input matrix (one row per
    patient): the linear reference an encoder of that input should at least match. At most a
    quarter of the patients' worth of components are kept: with as many standardised components as
    training patients the probe fits the noise components (106 synthetic patients: 0.10 vs 0.9)."""
    X = _matrix(X)
    Xc = X - X.mean(axis=0)
    _, _, Vt = np.linalg.svd(Xc, full_matrices=False)
    k = min(int(dim), Vt.shape[0], max(2, len(X) // 4))
    res = linear_probe(Xc @ Vt[:k].T, y, **probe_kw)
    res["pca_dim"] = k
    return res


def _labels_for(pids: np.ndarray, table: Mapping[str, Any]) -> tuple[np.ndarray, np.ndarray]:
    """Rows of ``pids`` with a usable label in ``table`` and those labels."""
    bad = (None, "", "nan", "None", "NA")
    rows = [i for i, p in enumerate(pids) if table.get(str(p)) not in bad]
    return np.asarray(rows, dtype=np.int64), np.asarray([str(table[str(pids[i])]) for i in rows])


def modality_health(Z: Any, patient_ids: Sequence[Any], labels: Mapping[str, Mapping[str, Any]] | None = None,
                    probe_labels: Sequence[str] | None = None, min_patients: int = 20,
                    max_patients: int = 4000, seed: int = 0) -> dict[str, Any]:
    """Health of one modality store: spread, std/norm, effective rank, norms, per-label probes, verdict.

    ``labels``: label name -> {patient id -> value}; ``probe_labels``: which to probe (default all);
    a label is probed with at least ``min_patients`` labelled patients (at most ``max_patients``,
    a seeded random subset, to bound the cost).
    """
    Z = _matrix(Z)
    out: dict[str, Any] = {"items": int(len(Z)), "dim": int(Z.shape[1]) if Z.ndim == 2 else 0,
                           "spread": round(spread(Z), 6), "std_over_norm": round(std_over_norm(Z), 6),
                           "effective_rank": round(effective_rank(Z, seed=seed), 3),
                           "mean_norm": round(float(np.linalg.norm(Z, axis=1).mean()), 6) if len(Z) else 0.0,
                           "collapse_threshold": COLLAPSE_SPREAD, "probes": {}}
    flags: list[str] = []
    if not np.isfinite(out["spread"]) or out["spread"] < COLLAPSE_SPREAD:
        flags.append(f"collapsed: spread {out['spread']:.4g} < {COLLAPSE_SPREAD} (items get nearly the same vector)")
    if labels:
        pids, means = patient_means(Z, patient_ids)
        for name in (probe_labels if probe_labels is not None else sorted(labels)):
            if name not in labels:
                continue
            rows, y = _labels_for(pids, labels[name])
            if len(rows) < min_patients:
                continue
            if len(rows) > max_patients:
                rows = np.sort(np.random.default_rng(seed).choice(rows, max_patients, replace=False))
                _, y = _labels_for(pids[rows], labels[name])
            res = linear_probe(means[rows], y, seed=seed)
            out["probes"][name] = res
            if res.get("macro_f1") is not None and res["macro_f1"] < res["chance_macro_f1"] + UNINFORMATIVE_MARGIN:
                flags.append(f"uninformative for {name}: probe macro-F1 {res['macro_f1']:.3f} vs chance "
                             f"{res['chance_macro_f1']:.3f} (majority class {res['majority_macro_f1']:.3f})")
    out["status"] = "collapsed" if flags and flags[0].startswith("collapsed") else (
        "uninformative" if flags else "ok")
    out["flags"] = flags
    return out


def collapsed_modalities(health: Mapping[str, Mapping[str, Any]]) -> list[str]:
    """Modalities whose health verdict is ``collapsed``."""
    return [m for m, h in health.items() if isinstance(h, Mapping) and h.get("status") == "collapsed"]


def health_lines(health: Mapping[str, Mapping[str, Any]]) -> list[str]:
    """One plain line per modality (and per probed label), for logs and the ``probe`` command."""
    lines = []
    for mod, h in health.items():
        if not isinstance(h, Mapping):
            continue
        lines.append(f"{mod}: {h.get('status')} - spread {h.get('spread', float('nan')):.4f}, std/norm "
                     f"{h.get('std_over_norm', float('nan')):.5f}, effective rank {h.get('effective_rank', 0):.1f}, "
                     f"{h.get('items')} items x {h.get('dim')}")
        for label, p in (h.get("probes") or {}).items():
            if p.get("macro_f1") is None:
                lines.append(f"  probe {label}: skipped ({p.get('reason')})")
                continue
            lines.append(f"  probe {label}: macro-F1 {p['macro_f1']:.3f} (majority {p['majority_macro_f1']:.3f}), "
                         f"accuracy {p['accuracy']:.3f}, {p['patients']} patients, {p['classes']} classes")
        for flag in h.get("flags") or []:
            lines.append(f"  WARNING {flag}")
    return lines


# ----------------------------------------------------------------------------- runs

def pool_health(pool: Any, probe_labels: Sequence[str] | None = None, max_patients: int = 2000,
                seed: int = 0) -> dict[str, dict[str, Any]]:
    """:func:`modality_health` of every modality of an :class:`~fusionkit.pool.EmbeddingPool`
    (its rows in use), probing ``probe_labels`` (default: none) from the pool's patient labels."""
    out: dict[str, dict[str, Any]] = {}
    labels = {n: t for n, t in (pool.labels or {}).items() if probe_labels is not None and n in probe_labels}
    for name, view in pool.views.items():
        Z = np.asarray(view.embeddings[view.rows], dtype=np.float32)
        out[name] = modality_health(Z, view.patient_ids[view.rows], labels, probe_labels,
                                    max_patients=max_patients, seed=seed)
    return out


def check_health(health: Mapping[str, Mapping[str, Any]], encoders: Mapping[str, str], strict: bool,
                 logger: Any) -> None:
    """Log a loud warning per flagged modality; under ``strict`` a collapsed encoder is an error."""
    from .errors import DataError

    for mod, h in health.items():
        for flag in (h.get("flags") or []) if isinstance(h, Mapping) else []:
            logger.warning("EMBEDDING HEALTH: modality %s (encoder %s): %s - see data_summary.json 'health' and "
                           "`fusionkit probe`", mod, encoders.get(mod, "?"), flag)
    bad = collapsed_modalities(health)
    if strict and bad:
        raise DataError(f"collapsed encoder output for {', '.join(bad)} (spread < {COLLAPSE_SPREAD}: every item "
                        "gets nearly the same vector)", where=", ".join(f"modalities.{m}.encoder" for m in bad),
                        hint="compare with the linear baseline (encoder: pca) on the same input, fix the encoder's "
                             "settings, or run without --strict to keep going")


def probe_run(run_dir: Any, labels: Sequence[str] | None = None, raw_pca: bool = False,
              max_patients: int = 4000, pca_dim: int = 256, read_inputs: Any = None) -> dict[str, Any]:
    """Health and probes of a finished run folder (its stores and ``labels.json``); ``raw_pca`` also
    probes ``pca_dim`` principal components of each matrix modality's raw input (read again with the
    run's recipe with ``read_inputs``, :func:`fusionkit.engine.read_inputs`) on the same patients and folds."""
    import json

    from .errors import FusionkitError
    from .pool import EmbeddingPool
    from .store import EmbeddingStore

    run = Path(run_dir)
    try:
        record = json.loads((run / "run.json").read_text())
        table = json.loads((run / "labels.json").read_text()) if (run / "labels.json").is_file() else {}
    except (OSError, json.JSONDecodeError) as exc:
        raise FusionkitError(f"not a finished run folder: {exc}", where=str(run),
                             hint="pass the output folder of `fusionkit run` (it holds run.json)") from None
    if not record.get("stores"):
        raise FusionkitError("the run records no embedding stores", where=str(run / "run.json"),
                             hint="run the recipe to the end first")
    pool = EmbeddingPool.from_stores({m: EmbeddingStore(p) for m, p in record["stores"].items()}, table)
    wanted = list(labels) if labels else [n for n in ("cancer_type",) if n in table] or sorted(table)[:1]
    missing = [n for n in wanted if n not in table]
    if missing:
        raise FusionkitError(f"no label {', '.join(missing)} in this run", where=str(run / "labels.json"),
                             hint=f"labels available: {', '.join(sorted(table)) or 'none'}")
    out = {"run": str(run), "labels": wanted, "protocol": PROBE_PROTOCOL,
           "health": pool_health(pool, wanted, max_patients=max_patients)}
    if raw_pca:
        out["raw_pca"] = _raw_pca_probes(run, record, table, wanted, max_patients, pca_dim, read_inputs)
    return out


def _raw_pca_probes(run: Any, record: Mapping[str, Any], table: Mapping[str, Mapping[str, Any]],
                    wanted: Sequence[str], max_patients: int, dim: int, read_inputs: Any) -> dict[str, Any]:
    """PCA-``dim`` probes of every matrix modality's raw input, on the same patients and folds as
    :func:`pool_health` (patients sorted, the same seeded subset)."""
    from . import plugins
    from .context import RunContext
    from .executors import make_executor
    from .recipe import load_recipe

    system = plugins.load()
    recipe = load_recipe(run / "resolved_recipe.yaml", system)
    ctx = RunContext(recipe, system, run, Path(record.get("cache") or run / "cache"), progress=False,
                     executor=make_executor("local"))
    out: dict[str, Any] = {}
    for name, data in read_inputs(recipe, ctx).modalities.items():
        if data.kind != "matrix":
            continue
        pids, X = patient_means(np.asarray(data.data, dtype=np.float32), data.patient_ids)
        out[name] = {}
        for label in wanted:
            rows, _ = _labels_for(pids, table[label])
            if len(rows) > max_patients:
                rows = np.sort(np.random.default_rng(0).choice(rows, max_patients, replace=False))
            _, y = _labels_for(pids[rows], table[label])
            out[name][label] = raw_pca_probe(X[rows], y, dim=dim)
    return out
