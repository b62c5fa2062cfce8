"""Readers ``mudata`` and ``anndata``: embeddings held in scverse files.

* ``mudata``: an ``.h5mu``; each modality (an AnnData) becomes a fusionkit
  modality of kind ``embedding``. Files written by ``fusionkit export`` read
  back losslessly (items, patients, label columns, the run's patient label
  tables); aggregate datasets in them are skipped.
* ``anndata``: one ``.h5ad`` as one modality.

Any AnnData works: the vectors are ``X`` or an ``obsm`` entry (``obsm: X_uni``),
the patient id is an ``obs`` column (``patient_column``) or, failing that, the
TCGA barcode in the observation name; every other ``obs`` column becomes an
item label. Pair them with the ``identity`` encoder. Needs the ``scverse``
extra (``pip install "fusionkit[scverse]"``).
"""

from __future__ import annotations

import json
import os
from typing import Any

import numpy as np

from fusionkit import DataError, ModalityData, RawDataset, Reader, hookimpl

from fusionkit_plugins.readers.common import barcodes12, fingerprint, resolve_paths

SCVERSE_HINT = 'pip install "fusionkit[scverse]"   (mudata and anndata)'


def _import(name: str, path: str) -> Any:
    try:
        import anndata  # noqa: F401
        import mudata  # noqa: F401
    except ImportError as exc:
        raise DataError(f"reading {os.path.basename(path)} needs mudata and anndata ({exc})", where=path,
                        hint=SCVERSE_HINT) from exc
    import importlib

    return importlib.import_module(name)


def _uns(adata: Any) -> dict[str, Any]:
    value = adata.uns.get("fusionkit") if hasattr(adata, "uns") else None
    return dict(value) if isinstance(value, dict) else {}


def _matrix(adata: Any, obsm: str | None, where: str) -> np.ndarray:
    if obsm:
        if obsm not in adata.obsm:
            raise DataError(f"no obsm entry {obsm!r} (obsm: {', '.join(adata.obsm.keys()) or 'none'})", where=where,
                            hint="set obsm to the key that holds the embeddings, or leave it empty to use X")
        X = adata.obsm[obsm]
    else:
        X = adata.X
    if X is None:
        raise DataError("the AnnData has no X", where=where, hint="set obsm to the key that holds the embeddings")
    if hasattr(X, "toarray"):  # scipy sparse
        X = X.toarray()
    X = np.asarray(X, dtype=np.float32)
    if X.ndim != 2:
        raise DataError(f"embeddings must be 2-D, got shape {X.shape}", where=where)
    if not np.isfinite(X).all():
        bad = int((~np.isfinite(X)).any(axis=1).sum())
        raise DataError(f"{bad} embedding rows contain NaN or inf", where=where,
                        hint="drop or impute those observations before reading")
    return X


def modality_from_anndata(adata: Any, name: str, *, where: str, obsm: str | None = None,
                          patient_column: str = "patient_id", item_column: str = "item_id",
                          label_columns: list[str] | None = None) -> ModalityData:
    """One AnnData as a ModalityData of kind ``embedding`` (obs columns become item labels)."""
    X = _matrix(adata, obsm, where)
    obs = adata.obs
    names = np.asarray(obs.index).astype(str)
    if patient_column in obs.columns:
        pids = obs[patient_column].astype(str).to_numpy()
    else:
        pids = barcodes12(names)
    items = obs[item_column].astype(str).to_numpy() if item_column in obs.columns else names
    wanted = label_columns if label_columns is not None else [c for c in obs.columns
                                                                if c not in (patient_column, item_column)]
    missing = [c for c in wanted if c not in obs.columns]
    if missing:
        raise DataError(f"no obs column(s) {missing} (obs: {', '.join(map(str, obs.columns)) or 'none'})",
                        where=where, hint="fix label_columns")
    labels = {str(c): obs[c].astype(str).to_numpy() for c in wanted}
    uns = _uns(adata)
    source = f"{'mudata' if '::' in where else 'anndata'}: {where}"
    if uns.get("encoder"):
        source += f" (encoder {uns['encoder']})"
    return ModalityData(modality=name, kind="embedding", patient_ids=pids, item_ids=items, data=X, labels=labels,
                        source=source, extras={"fusionkit": uns} if uns else {})


def _patient_labels(mods: dict[str, ModalityData], stored: str | None) -> dict[str, dict[str, Any]]:
    """The exporting run's patient label tables when present, else first item value per patient."""
    if stored:
        try:
            tables = {k: dict(v) for k, v in json.loads(stored).items()}
            if tables:  # runs from before labels.json export "{}": fall back on the items
                return tables
        except (ValueError, AttributeError, TypeError):
            pass
    seen: dict[str, dict[str, set[str]]] = {}
    for data in mods.values():
        for lname, values in data.labels.items():
            table = seen.setdefault(lname, {})
            for pid, v in zip(data.patient_ids, values):
                if str(v) not in ("", "nan", "None"):
                    table.setdefault(str(pid), set()).add(str(v))
    # only columns with one value per patient are patient labels (x, y, slide_id... are not)
    return {lname: {pid: next(iter(vals)) for pid, vals in table.items()} for lname, table in seen.items()
            if table and all(len(vals) == 1 for vals in table.values())}


class MudataReader(Reader):
    """Embeddings from a MuData file (.h5mu): one modality per AnnData (e.g. from `fusionkit export`).

    Parameters
    ----------
    path: the ``.h5mu`` file.
    modalities: modalities to read (default: all except exported aggregate datasets).
    obsm: take vectors from this ``obsm`` key of each modality instead of ``X``.
    patient_column, item_column: ``obs`` columns with the patient and item ids (the patient
        falls back on the TCGA barcode in the observation name).
    label_columns: ``obs`` columns kept as item labels (default: all others).
    """

    provides = ()

    def __init__(self, path: str = "", modalities: list[str] | None = None, obsm: str | None = None,
                 patient_column: str = "patient_id", item_column: str = "item_id",
                 label_columns: list[str] | None = None):
        self.path = path
        self.modalities = modalities
        self.obsm = obsm
        self.patient_column = patient_column
        self.item_column = item_column
        self.label_columns = label_columns

    def fingerprint_inputs(self) -> list[str]:
        return resolve_paths(self.path, what="MuData file", param="path")[:1]

    def read(self, ctx: Any = None) -> RawDataset:
        path = self.fingerprint_inputs()[0]
        mudata = _import("mudata", path)
        try:
            with mudata.set_options(pull_on_update=False):
                mdata = mudata.read_h5mu(path)
        except (OSError, KeyError, ValueError) as exc:
            raise DataError(f"cannot read the MuData file ({type(exc).__name__}: {exc})", where=path,
                            hint="give an .h5mu written by mudata (e.g. `fusionkit export RUN --to h5mu`)") from exc
        names = [m for m in mdata.mod if _uns(mdata.mod[m]).get("kind") != "aggregates"]
        if self.modalities:
            unknown = [m for m in self.modalities if m not in mdata.mod]
            if unknown:
                raise DataError(f"no modality {unknown} in the file (modalities: {', '.join(mdata.mod)})",
                                where=path, hint="fix the reader's modalities list")
            names = list(self.modalities)
        fp = fingerprint([path], self.get_params())
        mods = {}
        for m in names:
            data = modality_from_anndata(mdata.mod[m], m, where=f"{path}::{m}", obsm=self.obsm,
                                         patient_column=self.patient_column, item_column=self.item_column,
                                         label_columns=self.label_columns)
            data.fingerprint = fp
            mods[m] = data
        stored = _uns(mdata).get("labels")
        return RawDataset(modalities=mods, labels=_patient_labels(mods, stored),
                          notes=[f"{m}: {len(d)} items, {len(set(d.patient_ids))} patients" for m, d in mods.items()])


class AnndataReader(Reader):
    """Embeddings of one modality from an AnnData file (.h5ad).

    Parameters
    ----------
    path: the ``.h5ad`` file.
    modality: modality name (default: the one recorded by ``fusionkit export``, else the file name).
    obsm, patient_column, item_column, label_columns: as for the ``mudata`` reader.
    """

    provides = ()

    def __init__(self, path: str = "", modality: str | None = None, obsm: str | None = None,
                 patient_column: str = "patient_id", item_column: str = "item_id",
                 label_columns: list[str] | None = None):
        self.path = path
        self.modality = modality
        self.obsm = obsm
        self.patient_column = patient_column
        self.item_column = item_column
        self.label_columns = label_columns

    def fingerprint_inputs(self) -> list[str]:
        return resolve_paths(self.path, what="AnnData file", param="path")[:1]

    def read(self, ctx: Any = None) -> RawDataset:
        path = self.fingerprint_inputs()[0]
        anndata = _import("anndata", path)
        try:
            adata = anndata.read_h5ad(path)
        except (OSError, KeyError, ValueError) as exc:
            raise DataError(f"cannot read the AnnData file ({type(exc).__name__}: {exc})", where=path,
                            hint="give an .h5ad written by anndata (e.g. `fusionkit export RUN --to h5ad`)") from exc
        name = self.modality or _uns(adata).get("modality") or os.path.splitext(os.path.basename(path))[0]
        data = modality_from_anndata(adata, str(name), where=path, obsm=self.obsm,
                                     patient_column=self.patient_column, item_column=self.item_column,
                                     label_columns=self.label_columns)
        data.fingerprint = fingerprint([path], self.get_params())
        mods = {str(name): data}
        return RawDataset(modalities=mods, labels=_patient_labels(mods, None),
                          notes=[f"{name}: {len(data)} items, {len(set(data.patient_ids))} patients"])


@hookimpl
def register_readers(register):
    register("mudata", MudataReader, tags=["scverse", "embedding", "h5mu"])
    register("anndata", AnndataReader, tags=["scverse", "embedding", "h5ad"])
