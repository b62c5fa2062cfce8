"""Late-fusion reference of the patient-level tasks (issue 15, item 5: signal retention).

Summation fuses unaligned embeddings early. The reference fuses them late:
per patient, the mean of the stored embeddings of each modality (its own
rows only), concatenated over the pool's modalities (zeros where a modality
is absent) with one availability flag per modality. A task fits the same
model family on these features, on the same patients and patient-disjoint
splits as the sums, and reports ``retention = sums / late fusion``.

Features of one split part come only from that part's patients' items: the
pool is restricted to them, and :func:`patient_means` raises on any row of
another patient (the leak guard of :mod:`.common`, for the reference).
"""

from __future__ import annotations

from typing import Any, Sequence

import numpy as np

from fusionkit import FusionkitError

#: prefix of the late-fusion rows' model names (``late-fusion-logistic``...)
PREFIX = "late-fusion-"


def patient_means(pool: Any, patients: Sequence[str], block: int = 65536) -> np.ndarray:
    """(patients, modalities * d + modalities) float64: per-modality means of each patient's rows, then flags.

    Rows are taken from ``pool.restrict(patients=patients)`` only; a modality a
    patient lacks contributes zeros and a 0 flag. Row order follows ``patients``.
    """
    from scipy import sparse

    pids = np.asarray(list(map(str, patients)))
    order = {p: i for i, p in enumerate(pids.tolist())}
    sub = pool.restrict(patients=pids)
    d = int(pool.dim)
    parts, flags = [], []
    for m in pool.modalities:
        sums = np.zeros((len(pids), d), dtype=np.float64)
        counts = np.zeros(len(pids), dtype=np.float64)
        v = sub.views.get(m)
        rows = np.sort(v.rows) if v is not None else np.array([], dtype=np.int64)
        for s in range(0, len(rows), block):
            r = rows[s:s + block]
            owners = v.patient_ids[r].astype(str)
            idx = np.array([order.get(o, -1) for o in owners.tolist()], dtype=np.int64)
            if (idx < 0).any():
                raise FusionkitError(f"patient leak: late-fusion features of {m} use rows of patients "
                                     f"outside their split (e.g. {owners[idx < 0][0]})")
            S = sparse.csr_matrix((np.ones(len(r)), (idx, np.arange(len(r)))), shape=(len(pids), len(r)))
            sums += S @ np.asarray(v.embeddings[r], dtype=np.float64)
            counts += np.bincount(idx, minlength=len(pids))
        have = counts > 0
        sums[have] /= counts[have, None]
        parts.append(sums)
        flags.append(have.astype(np.float64))
    return np.concatenate(parts + [np.stack(flags, axis=1)], axis=1)


def split_features(pool: Any, train: Sequence[str], test: Sequence[str]) -> tuple[np.ndarray, np.ndarray]:
    """Late-fusion features of the training and the test patients, each from its own part's rows only."""
    if set(map(str, train)) & set(map(str, test)):
        raise FusionkitError("patient leak: a patient is in both late-fusion parts")
    return patient_means(pool, train), patient_means(pool, test)


def retention(sums: float, late: float) -> float:
    """sums / late fusion (nan where the reference is not positive or either is not finite)."""
    try:
        a, b = float(sums), float(late)
    except (TypeError, ValueError):
        return float("nan")
    return a / b if np.isfinite(a) and np.isfinite(b) and b > 0 else float("nan")
