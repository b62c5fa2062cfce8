"""One id-normalisation step shared by every reader.

Patient ids link modalities, so every reader passes its ids through
:func:`normalise_ids`: strip, upper-case, ``_`` and ``.`` inside a TCGA
barcode become ``-``, and a TCGA sample/aliquot barcode becomes its
12-character patient barcode (``tcga_ab_1234-01a`` -> ``TCGA-AB-1234``).
Each call returns an :class:`IdReport` (ids changed, empty, duplicated) that
the run records; :func:`cross_modality_report` adds the ids of one modality
found in no other. Two rows of one patient with different labels are an
error naming the ids (:func:`patient_labels`); so is a vector count that
differs from the id count (:func:`check_lengths`).
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from typing import Any, Iterable, Mapping

import numpy as np

from .errors import DataError

__all__ = ["normalise_id", "normalise_ids", "IdReport", "check_lengths", "patient_labels", "merge_label_tables",
           "cross_modality_report", "PATIENT_LEN"]

PATIENT_LEN = 12
_TCGA = re.compile(r"^TCGA[-_.]([A-Z0-9]{2})[-_.]([A-Z0-9]{4})(?:[-_.].*)?$")
_MISSING = ("", "NAN", "NONE", "NULL", "NA", "<NA>")
_EXAMPLES = 5


def normalise_id(value: Any) -> str:
    """The canonical patient id of one raw id ('' when the id is missing)."""
    if isinstance(value, bytes):
        value = value.decode("utf-8", "replace")
    if value is None or (isinstance(value, float) and value != value):
        return ""
    text = str(value).strip().upper()
    if text in _MISSING:
        return ""
    m = _TCGA.match(text)
    if m:
        return f"TCGA-{m.group(1)}-{m.group(2)}"
    return text.replace("_", "-")


@dataclass
class IdReport:
    """What normalisation did to one reader's ids (recorded in data_summary.json)."""

    source: str
    n: int = 0
    changed: int = 0
    missing: int = 0
    duplicated: int = 0
    examples: list[tuple[str, str]] = field(default_factory=list)
    duplicate_examples: list[str] = field(default_factory=list)
    unmatched: int | None = None
    unmatched_examples: list[str] = field(default_factory=list)

    def as_dict(self) -> dict[str, Any]:
        out = {"source": self.source, "ids": self.n, "changed": self.changed, "missing": self.missing,
               "duplicated": self.duplicated, "changed_examples": [f"{a} -> {b}" for a, b in self.examples],
               "duplicate_examples": list(self.duplicate_examples)}
        if self.unmatched is not None:
            out.update(unmatched=self.unmatched, unmatched_examples=list(self.unmatched_examples))
        return out

    def note(self) -> str:
        parts = [f"{self.n} ids"]
        if self.changed:
            parts.append(f"{self.changed} normalised (e.g. {', '.join(f'{a!r} -> {b}' for a, b in self.examples[:2])})")
        if self.duplicated:
            parts.append(f"{self.duplicated} patients on several rows")
        if self.unmatched:
            parts.append(f"{self.unmatched} patients in no other modality")
        return f"{self.source}: " + "; ".join(parts)


def normalise_ids(values: Iterable[Any], *, source: str, allow_missing: bool = False) -> tuple[np.ndarray, IdReport]:
    """Normalise every id; return (ids as a str array, report).

    A missing id (empty, NaN, ``None``) is an error naming its row unless
    ``allow_missing`` (then it stays ``''`` and is counted).
    """
    raw = list(values)
    report = IdReport(source=source, n=len(raw))
    out = np.empty(len(raw), dtype=object)
    for i, value in enumerate(raw):
        norm = normalise_id(value)
        out[i] = norm
        if not norm:
            if not allow_missing:
                raise DataError(f"row {i} has no patient id ({value!r})", where=source,
                                hint="drop the rows without an id, or fill the id column")
            report.missing += 1
            continue
        text = value.decode("utf-8", "replace") if isinstance(value, bytes) else str(value)
        if norm != text:
            report.changed += 1
            if len(report.examples) < _EXAMPLES:
                report.examples.append((text, norm))
    ids = out.astype(str) if len(raw) else np.array([], dtype=str)
    uniq, counts = np.unique(ids[ids != ""], return_counts=True)
    dup = uniq[counts > 1]
    report.duplicated = int(len(dup))
    report.duplicate_examples = [str(d) for d in dup[:_EXAMPLES]]
    return ids, report


def check_lengths(n_vectors: int, n_ids: int, *, source: str, what: str = "embeddings") -> None:
    """A vector count that differs from the id count is an error (never a silent cut)."""
    if int(n_vectors) != int(n_ids):
        raise DataError(f"{n_vectors} {what} but {n_ids} ids", where=source,
                        hint=f"every row of {what} needs exactly one id; fix the file so both have the same length")


def _blank(value: Any) -> bool:
    return value is None or (isinstance(value, float) and value != value) or str(value).strip().upper() in _MISSING


def patient_labels(patient_ids: Iterable[Any], values: Iterable[Any], *, label: str, source: str) -> dict[str, Any]:
    """``{patient_id: value}`` from per-row values; blanks are skipped.

    Rows of one patient must agree: different values are an error naming the
    patients and their values.
    """
    out: dict[str, Any] = {}
    conflicts: dict[str, set[str]] = {}
    for pid, value in zip(patient_ids, values):
        if _blank(value):
            continue
        pid = str(pid)
        if pid not in out:
            out[pid] = value
        elif str(out[pid]) != str(value):
            conflicts.setdefault(pid, {str(out[pid])}).add(str(value))
    if conflicts:
        _raise_conflicts(conflicts, label, source)
    return out


def merge_label_tables(into: dict[str, dict[str, Any]], new: Mapping[str, Mapping[str, Any]], *,
                       source: str) -> None:
    """Merge ``{label: {patient: value}}`` tables; a patient with two different values is an error."""
    for lname, table in new.items():
        target = into.setdefault(lname, {})
        conflicts: dict[str, set[str]] = {}
        for pid, value in table.items():
            if _blank(value):
                continue
            pid = str(pid)
            if pid not in target or _blank(target[pid]):
                target[pid] = value
            elif str(target[pid]) != str(value):
                conflicts.setdefault(pid, {str(target[pid])}).add(str(value))
        if conflicts:
            _raise_conflicts(conflicts, lname, source)


def _raise_conflicts(conflicts: dict[str, set[str]], label: str, source: str) -> None:
    shown = "; ".join(f"{pid}: {' vs '.join(sorted(vals))}" for pid, vals in sorted(conflicts.items())[:_EXAMPLES])
    more = f" (and {len(conflicts) - _EXAMPLES} more)" if len(conflicts) > _EXAMPLES else ""
    raise DataError(f"conflicting {label!r} labels for {len(conflicts)} patient(s): {shown}{more}", where=source,
                    hint="each patient needs one value; fix or drop the duplicated rows")


def cross_modality_report(patient_ids: Mapping[str, Iterable[Any]]) -> dict[str, dict[str, Any]]:
    """Per modality: patients found in no other modality (a sign of ids that do not link).

    With a single modality nothing can be unmatched.
    """
    sets = {name: set(map(str, ids)) for name, ids in patient_ids.items()}
    out: dict[str, dict[str, Any]] = {}
    for name, own in sets.items():
        others = set().union(*(s for n, s in sets.items() if n != name)) if len(sets) > 1 else own
        lonely = sorted(own - others)
        out[name] = {"patients": len(own), "unmatched": len(lonely), "unmatched_examples": lonely[:_EXAMPLES]}
    return out
