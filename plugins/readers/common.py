"""Helpers shared by the built-in readers (registers nothing): TCGA ids, paths, table
loading, input fingerprints, label tables and availability notes.

Each reader module registers its own components (``rna.py``: ``rna-table``,
``gdc-star-counts``; ``maf.py``: ``maf``; ``text.py``: ``report-text``; ...).
"""

from __future__ import annotations

import glob
import hashlib
import json
import os
import re
from typing import Any, Iterable, Sequence

import numpy as np

from fusionkit import DataError, file_fingerprint, normalise_id, patient_labels

#: a TCGA patient barcode anywhere in a string (``TCGA-XX-XXXX``; dots tolerated)
BARCODE_RE = re.compile(r"TCGA[-.]([A-Z0-9]{2})[-.]([A-Z0-9]{4})", re.IGNORECASE)
#: columns tried, in order, when a reader's ``id_column`` is ``"auto"``
ID_CANDIDATES = ("patient_id", "case_id", "case_submitter_id", "bcr_patient_barcode", "patient",
                 "submitter_id", "Tumor_Sample_Barcode", "sample_barcode", "sample", "sample_id", "id")
#: cancer types of the reference cohort (SPEC 2)
SIX_CANCERS = ("BRCA", "BLCA", "COAD", "STAD", "THCA", "LUAD")


# --------------------------------------------------------------------------- ids

def barcode12(value: Any) -> str:
    """The patient id of any raw id: fusionkit's one normalisation step
    (:func:`fusionkit.normalise_id`: strip, upper-case, ``_`` -> ``-``, a TCGA
    sample/aliquot barcode -> its 12-character patient barcode)."""
    return normalise_id(value)


def barcodes12(values: Iterable[Any]) -> np.ndarray:
    return np.array([barcode12(v) for v in values], dtype=object).astype(str)


def find_barcodes(text: str) -> list[str]:
    """Distinct patient barcodes mentioned in ``text`` (in order of appearance)."""
    seen: dict[str, None] = {}
    for m in BARCODE_RE.finditer(text or ""):
        seen.setdefault(f"TCGA-{m.group(1).upper()}-{m.group(2).upper()}", None)
    return list(seen)


# --------------------------------------------------------------------------- paths

def as_list(value: Any) -> list[Any]:
    if value is None:
        return []
    if isinstance(value, (str, os.PathLike)):
        return [value]
    return list(value)


def resolve_paths(spec: Any, *, root: str | None = None, what: str = "input", must_exist: bool = True,
                  param: str = "paths") -> list[str]:
    """Expand a path, a glob or a list of them into existing file paths (sorted per glob)."""
    items = as_list(spec)
    if not items:
        raise DataError(f"no {what} given", where=param, hint=f"set the reader parameter {param!r}")
    out: list[str] = []
    for item in items:
        text = os.path.expanduser(str(item))
        if root and not os.path.isabs(text):
            text = os.path.join(root, text)
        if any(ch in text for ch in "*?["):
            hits = sorted(glob.glob(text))
            if not hits and must_exist:
                raise DataError(f"no {what} matches {text!r}", where=param,
                                hint="check the pattern and the folder it points to")
            out.extend(hits)
        else:
            if must_exist and not os.path.exists(text):
                raise DataError(f"{what} not found: {text}", where=text,
                                hint=f"check the path in {param!r} (relative paths are taken from the "
                                     f"working directory{' or root' if root else ''})")
            out.append(text)
    return out


def fingerprint(paths: Sequence[str], params: dict[str, Any] | None = None) -> str:
    """sha256 over every byte of the input files (folders: every file in them) and the
    reader parameters: the cache key of what a reader produced. File hashes are
    cached by stat (:func:`fusionkit.file_fingerprint`), so re-runs stay fast."""
    h = hashlib.sha256()
    for path in sorted(str(p) for p in paths):
        h.update(os.path.basename(path).encode())
        if not os.path.exists(path):
            h.update(b"<missing>")
            continue
        h.update(file_fingerprint(path).encode())
    if params:
        h.update(json.dumps(params, sort_keys=True, default=str).encode())
    return h.hexdigest()[:16]


# --------------------------------------------------------------------------- tables

def read_table(path: str, *, usecols: Any = None, dtype: Any = None, sep: str | None = None) -> "Any":
    """Read CSV/TSV/TXT/parquet (optionally .gz/.bz2/.zip/.xz) into a DataFrame, with DataError on failure."""
    import pandas as pd

    low = path.lower()
    base = re.sub(r"\.(gz|bz2|zip|xz)$", "", low)
    try:
        if base.endswith((".parquet", ".pq")):
            return pd.read_parquet(path, columns=usecols if isinstance(usecols, list) else None)
        if sep is None:
            sep = "\t" if base.endswith((".tsv", ".tab", ".txt", ".maf")) else ","
        return pd.read_csv(path, sep=sep, usecols=usecols, dtype=dtype, comment=None, low_memory=False)
    except FileNotFoundError as exc:
        raise DataError(f"file not found: {path}", where=path, hint="check the path") from exc
    except ValueError as exc:
        raise DataError(f"cannot read table: {exc}", where=path,
                        hint="expected CSV/TSV (optionally gzipped) or parquet with a header row") from exc
    except Exception as exc:  # pandas raises many parser errors
        raise DataError(f"cannot read table ({type(exc).__name__}: {exc})", where=path,
                        hint="expected CSV/TSV (optionally gzipped) or parquet with a header row") from exc


def pick_column(columns: Sequence[str], wanted: str | None, *, path: str, role: str = "id",
                candidates: Sequence[str] = ID_CANDIDATES, required: bool = True,
                param: str | None = None) -> str | None:
    """The column to use for ``role``: ``wanted`` if given (must exist), else the first candidate present.

    ``param`` is the reader parameter that chooses the column (default ``<role>_column``);
    ``""`` when the reader has none, so the hint never names a parameter that does not exist.
    """
    cols = [str(c) for c in columns]
    param = f"{role}_column" if param is None else param
    named = wanted if wanted and wanted != "auto" else candidates[0]
    fix = (f"set the reader's {param} parameter" if param else
           f"name a column {named!r} (the table has no {role} column this reader knows)")
    if wanted and wanted != "auto":
        if wanted in cols:
            return wanted
        lower = {c.lower(): c for c in cols}
        if wanted.lower() in lower:
            return lower[wanted.lower()]
        if not required:
            return None
        raise DataError(f"{role} column {wanted!r} not found (columns: {_preview(cols)})", where=path,
                        hint=f"{fix} to one of the columns above" if param else fix)
    lower = {c.lower(): c for c in cols}
    for cand in candidates:
        if cand.lower() in lower:
            return lower[cand.lower()]
    if not required:
        return None
    raise DataError(f"no {role} column found (columns: {_preview(cols)}; looked for {', '.join(candidates[:6])}...)",
                    where=path, hint=fix)


def _preview(cols: Sequence[str], n: int = 12) -> str:
    cols = list(cols)
    text = ", ".join(cols[:n])
    return text + (f", ... ({len(cols)} in all)" if len(cols) > n else "")


def load_cancer_map(path: str | None) -> dict[str, str]:
    """patient_id -> cancer_type from a two-column table (``patients.csv``)."""
    if not path:
        return {}
    df = read_table(path)
    idc = pick_column(df.columns, "auto", path=path, param="")
    cc = pick_column(df.columns, "cancer_type", path=path, role="cancer", param="",
                     candidates=("cancer_type", "project", "cohort", "Tissue"))
    ids = barcodes12(df[idc])
    return dict(zip(ids, df[cc].astype(str)))


def rng_for(ctx: Any, seed: int, *keys: Any) -> np.random.Generator:
    """A generator from the run context when there is one, else from ``seed``."""
    if ctx is not None and hasattr(ctx, "rng"):
        return ctx.rng(*keys)
    material = [int(seed)] + [int(hashlib.sha256(str(k).encode()).hexdigest()[:8], 16) for k in keys]
    return np.random.default_rng(material)


def labels_from_items(patient_ids: np.ndarray, values: np.ndarray, *, label: str = "cancer_type",
                      source: str = "reader") -> dict[str, Any]:
    """One value per patient as a ``{patient_id: value}`` table; items of one patient
    with different values are an error naming the patients."""
    return patient_labels(patient_ids, values, label=label, source=source)


def availability_note(name: str, patient_ids: np.ndarray, cancer: dict[str, str], n_items: int | None = None) -> str:
    """``"rna: 2,041 patients (BLCA 271, ...)"`` for the notes of a RawDataset."""
    pids = np.unique(np.asarray(patient_ids).astype(str))
    counts: dict[str, int] = {}
    for p in pids:
        c = cancer.get(p, "?")
        counts[c] = counts.get(c, 0) + 1
    per = ", ".join(f"{c} {counts[c]}" for c in sorted(counts))
    items = f", {n_items:,} items" if n_items is not None and n_items != len(pids) else ""
    return f"{name}: {len(pids):,} patients{items} ({per})"
