"""Precomputed-embedding reader; registers ``precomputed``: import embeddings a user
already has, so a study can start from them.

It reads, per modality:
  * ``.npy`` (float (n, d)) plus an id table (CSV/TSV with ``patient_id`` and
    optional ``item_id`` and label columns such as ``cancer_type``);
  * ``.parquet``/``.csv`` with a ``patient_id`` column and either an
    ``embedding`` list column or numeric columns (``prefix`` selects them);
  * HDF5 in the layout of the paper authors' published data: one file per
    cancer set, a group per modality holding ``embeddings`` (float32),
    ``cancer`` and ``submitter_id``.
The ``identity`` encoder (``encoders/identity.py``) passes such vectors
through unchanged (its width is read from the data).
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np

from fusionkit import hookimpl
from fusionkit import ModalityData, RawDataset, Reader
from fusionkit import DataError, check_lengths, normalise_ids, patient_labels

from fusionkit_plugins.readers.common import read_table


def _load_npy(path: Path) -> np.ndarray:
    """A numeric .npy, memory-mapped; never unpickles (object arrays are refused)."""
    try:
        X = np.load(path, mmap_mode="r", allow_pickle=False)
    except (ValueError, OSError, EOFError) as exc:
        raise DataError(f"cannot read embeddings: not a numeric .npy array or truncated ({exc})", where=str(path),
                        hint="save the embeddings with numpy.save as a float array (no pickled objects)") from None
    if not isinstance(X, np.ndarray) or X.dtype.kind not in "fiu":
        raise DataError(f"embeddings must be a numeric array, got {getattr(X, 'dtype', type(X).__name__)}",
                        where=str(path), hint="save a float32 (n, dim) array with numpy.save")
    return X


def _from_npy(modality: str, path: Path, ids: Path | None, id_column: str) -> ModalityData:
    X = _load_npy(path)
    if X.ndim != 2:
        raise DataError(f"embeddings must be 2-D (n, dim), got shape {X.shape}", where=str(path))
    if ids is None:
        raise DataError("a .npy file needs an id table (ids: file with a patient_id column)", where=str(path),
                        hint="give inputs.<modality>.ids: path/to/ids.csv with one row per embedding")
    table = read_table(str(ids))
    if id_column not in table.columns:
        raise DataError(f"id table has no column {id_column!r} (columns: {', '.join(map(str, table.columns))})",
                        where=str(ids), hint="set id_column to the column holding patient ids")
    if len(table) != X.shape[0]:
        raise DataError(f"id table has {len(table)} rows but {path.name} has {X.shape[0]} embeddings",
                        where=str(ids), hint="the id table needs exactly one row per embedding, in the same order")
    return _make(modality, np.asarray(X, dtype=np.float32), table, id_column, str(path), id_source=str(ids))


def _from_table(modality: str, path: Path, id_column: str, prefix: str | None) -> ModalityData:
    table = read_table(str(path))
    if id_column not in table.columns:
        raise DataError(f"no column {id_column!r} (columns: {', '.join(map(str, table.columns[:20]))})",
                        where=str(path), hint="set id_column")
    if "embedding" in table.columns:
        X = np.stack([np.asarray(v, dtype=np.float32) for v in table["embedding"]])
    else:
        cols = [c for c in table.columns if (prefix and str(c).startswith(prefix)) or
                (not prefix and c != id_column and np.issubdtype(table[c].dtype, np.number))]
        if not cols:
            raise DataError("no embedding columns found", where=str(path),
                            hint="give an 'embedding' list column, numeric columns, or prefix")
        X = table[cols].to_numpy(dtype=np.float32)
    return _make(modality, X, table, id_column, str(path))


def _make(modality: str, X: np.ndarray, table: Any, id_column: str, source: str, *,
          id_source: str | None = None) -> ModalityData:
    pids, report = normalise_ids(table[id_column], source=f"{id_source or source} ({id_column})")
    if "item_id" in table.columns:
        item_ids = table["item_id"].astype(str).to_numpy()
    else:
        item_ids = np.array([f"{p}:{modality}:{i}" for i, p in enumerate(pids)])
    labels = {}
    for col in ("cancer_type", "cancer", "label"):
        if col in table.columns:
            labels["cancer_type" if col == "cancer" else col] = table[col].astype(str).to_numpy()
    if not np.isfinite(X).all():
        raise DataError("embeddings contain NaN or inf", where=source,
                        hint="drop or impute those rows before importing")
    return ModalityData(modality=modality, kind="embedding", patient_ids=pids, item_ids=item_ids, data=X,
                        labels=labels, source=f"precomputed:{source}", extras={"id_report": report.as_dict()})


def read_h5(paths: list[Path], modalities: list[str] | None) -> dict[str, ModalityData]:
    """Authors' layout: per file, a group per modality with embeddings/cancer/submitter_id."""
    try:
        import h5py
    except ImportError as exc:
        raise DataError("reading HDF5 needs h5py", hint="pip install h5py") from exc
    parts: dict[str, list[tuple[np.ndarray, np.ndarray, np.ndarray]]] = {}
    for path in paths:
        try:
            with h5py.File(path, "r") as f:
                for group in f.keys():
                    if not modalities or group in modalities:
                        parts.setdefault(group, []).append(_h5_group(f[group], f"{path}:{group}"))
        except OSError as exc:
            raise DataError(f"cannot read HDF5 file ({exc})", where=str(path),
                            hint="the file is truncated or not HDF5; expected the authors' layout") from None
    out = {}
    for group, chunks in parts.items():
        X = np.concatenate([c[0] for c in chunks])
        pids = np.concatenate([c[1] for c in chunks])
        cancer = np.concatenate([c[2] for c in chunks])
        ids, report = normalise_ids(pids, source=f"{','.join(map(str, paths))}:{group}/submitter_id")
        out[group] = ModalityData(
            modality=group, kind="embedding", patient_ids=ids,
            item_ids=np.array([f"{p}:{group}:{i}" for i, p in enumerate(ids)]), data=X,
            labels={"cancer_type": cancer}, source=f"precomputed-h5:{','.join(map(str, paths))}",
            extras={"id_report": report.as_dict()})
    return out


def _h5_group(g: Any, where: str) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """(embeddings, raw ids, cancers) of one modality group; every length must agree."""
    if not hasattr(g, "keys"):
        raise DataError("expected a group per modality", where=where)
    missing = [k for k in ("embeddings", "submitter_id") if k not in g]
    if missing:
        raise DataError(f"group lacks {missing}", where=where,
                        hint="expected datasets embeddings, cancer, submitter_id per modality group")
    X = np.asarray(g["embeddings"], dtype=np.float32)
    if X.ndim != 2:
        raise DataError(f"embeddings must be 2-D (n, dim), got shape {X.shape}", where=f"{where}/embeddings")
    pids = np.array([x.decode() if isinstance(x, bytes) else str(x) for x in np.ravel(g["submitter_id"][()])])
    check_lengths(len(X), len(pids), source=f"{where} (embeddings vs submitter_id)")
    if "cancer" in g:
        cancer = np.array([x.decode() if isinstance(x, bytes) else str(x) for x in np.ravel(g["cancer"][()])])
        check_lengths(len(X), len(cancer), source=f"{where} (embeddings vs cancer)", what="embeddings")
    else:
        cancer = np.full(len(pids), "")
    return X, pids, cancer


class PrecomputedReader(Reader):
    """Embeddings you already have: .npy + id table, parquet/CSV, or the authors' HDF5 layout.

    ``inputs`` maps modality -> {path, ids?} (npy/parquet/csv); ``h5_files``
    lists HDF5 files of the authors' layout (``h5_modalities`` filters groups).
    """

    provides = ()

    def __init__(self, inputs: dict | None = None, h5_files: list | None = None, h5_modalities: list | None = None,
                 id_column: str = "patient_id", prefix: str | None = None):
        self.inputs = inputs
        self.h5_files = h5_files
        self.h5_modalities = h5_modalities
        self.id_column = id_column
        self.prefix = prefix

    def _paths(self) -> list[tuple[str, Path, Path | None]]:
        out = []
        for modality, spec in (self.inputs or {}).items():
            if isinstance(spec, str):
                spec = {"path": spec}
            if not isinstance(spec, dict) or "path" not in spec:
                raise DataError(f"inputs.{modality} must be a path or {{path, ids}}", where="precomputed.inputs")
            out.append((modality, Path(spec["path"]), Path(spec["ids"]) if spec.get("ids") else None))
        return out

    def fingerprint_inputs(self) -> list[str]:
        files = []
        for _, path, ids in self._paths():
            files.append(str(path))
            if ids:
                files.append(str(ids))
        files.extend(str(p) for p in (self.h5_files or []))
        return files

    def read(self, ctx: Any) -> RawDataset:
        mods: dict[str, ModalityData] = {}
        for modality, path, ids in self._paths():
            if not path.exists():
                raise DataError(f"file not found: {path}", where=f"precomputed.inputs.{modality}.path")
            if ids is not None and not ids.exists():
                raise DataError(f"file not found: {ids}", where=f"precomputed.inputs.{modality}.ids")
            if path.suffix == ".npy":
                mods[modality] = _from_npy(modality, path, ids, self.id_column)
            else:
                mods[modality] = _from_table(modality, path, self.id_column, self.prefix)
        if self.h5_files:
            paths = [Path(p) for p in self.h5_files]
            for p in paths:
                if not p.exists():
                    raise DataError(f"file not found: {p}", where="precomputed.h5_files")
            for name, data in read_h5(paths, self.h5_modalities).items():
                mods[name] = data
        if not mods:
            raise DataError("precomputed reader has no input", where="precomputed",
                            hint="give inputs: {modality: {path, ids}} or h5_files: [...]")
        labels: dict[str, dict[str, Any]] = {}
        for name, data in mods.items():  # rows of one patient must agree on its labels
            for lname, values in data.labels.items():
                table = patient_labels(data.patient_ids, values, label=lname, source=data.source or name)
                for pid, v in table.items():
                    if labels.setdefault(lname, {}).setdefault(pid, v) != v:
                        raise DataError(f"conflicting {lname!r} labels for patient {pid}: "
                                        f"{labels[lname][pid]} vs {v}", where=f"precomputed.inputs.{name}",
                                        hint="each patient needs one value across modalities")
        return RawDataset(modalities=mods, labels=labels)


@hookimpl
def register_readers(register):
    register("precomputed", PrecomputedReader)
