"""``fusionkit export``: a finished run's embeddings in the formats other tools open.

* ``h5mu`` (MuData, scverse): one AnnData per modality store and one per
  aggregate dataset, gathered in one ``.h5mu``. MuData keeps a per-modality
  presence mask over the union of items (``mdata.obsm[<modality>]``); a
  patient x modality presence matrix and the run's patient label tables are
  in ``mdata.uns["fusionkit"]``.
* ``h5ad`` (AnnData): the same AnnData objects, one ``.h5ad`` file each.
* ``parquet``: one table per store / aggregate dataset with an ``embedding``
  list column (the ``precomputed`` reader reads these back).

A store's AnnData: ``X`` = the embeddings (float32), ``obs`` indexed by item
with ``item_id``, ``patient_id`` and the label columns of the store,
``uns["fusionkit"]`` = provenance (encoder, its parameters, plugin version,
input fingerprint, the store's cache key). An aggregate dataset's AnnData:
``X`` = the aggregates, ``obs`` = ``k``, ``patient_id`` and group labels,
``obsm["counts"]`` / ``obsm["presence"]`` per modality (columns in
``uns["fusionkit"]["modalities"]``). The ``mudata`` and ``anndata`` readers
read stores back, losslessly: a recipe can start from an ``.h5mu``.
"""

from __future__ import annotations

import json
import os
import tempfile
from pathlib import Path
from typing import Any, Callable

import numpy as np

from . import __version__
from .errors import FusionkitError, StoreError
from .store import EmbeddingStore

FORMATS = ("h5mu", "h5ad", "parquet")
#: prefix of the MuData modality (and file) names of aggregate datasets
AGGREGATE_PREFIX = "aggregates_"
SCVERSE_HINT = 'pip install "fusionkit[scverse]"   (mudata and anndata)'


class RunFolder:
    """What ``export`` reads of a run folder: record, stores, aggregates, labels."""

    def __init__(self, path: str | os.PathLike[str]):
        self.path = Path(path)
        record = self.path / "run.json"
        if not record.is_file():
            raise FusionkitError("not a run folder (run.json missing)", where=str(self.path),
                                 hint="give the output folder of `fusionkit run` (its --out)")
        self.record: dict[str, Any] = json.loads(record.read_text())
        if not self.record.get("stores"):
            raise FusionkitError(f"run {self.record.get('name')!r} has no embedding stores "
                                 f"(status: {self.record.get('status')})", where=str(record),
                                 hint="export a run that got past encoding; re-run it with `fusionkit run`")
        labels = self.path / "labels.json"
        self.labels: dict[str, dict[str, Any]] = json.loads(labels.read_text()) if labels.is_file() else {}

    @property
    def name(self) -> str:
        return str(self.record.get("name") or self.path.name)

    def modality_order(self) -> list[str]:
        """The recipe's modality order (run.json sorts its keys)."""
        stores = list(self.record["stores"])
        recipe = self.path / "resolved_recipe.yaml"
        try:
            import yaml

            declared = list((yaml.safe_load(recipe.read_text()) or {}).get("modalities") or {})
        except (OSError, ValueError, AttributeError, ImportError):
            declared = []
        return [m for m in declared if m in stores] + [m for m in stores if m not in declared]

    def stores(self) -> dict[str, EmbeddingStore]:
        out = {}
        for name in self.modality_order():
            path = self.record["stores"][name]
            try:
                out[name] = EmbeddingStore(path)
            except StoreError as err:
                raise FusionkitError(f"the {name!r} store of this run is gone ({err.message})", where=str(path),
                                     hint="the cache folder was moved or cleared: re-run the recipe "
                                          "(`fusionkit run`) to rebuild it, then export") from err
        return out

    def aggregates(self) -> dict[str, Path]:
        root = self.path / "aggregates"
        if not root.is_dir():
            return {}
        return {p.name: p for p in sorted(root.iterdir()) if (p / "meta.json").is_file() and (p / "X.npy").is_file()}


def _scverse() -> tuple[Any, Any, Any]:
    try:
        import anndata
        import mudata
        import pandas as pd
    except ImportError as exc:
        raise FusionkitError(f"exporting to h5mu/h5ad needs mudata and anndata ({exc})", where="fusionkit export",
                             hint=SCVERSE_HINT) from exc
    return anndata, mudata, pd


def _unique_index(ids: np.ndarray) -> list[str]:
    """``ids`` as unique strings: repeats get ``#1``, ``#2``... (the original stays in a column)."""
    seen: dict[str, int] = {}
    out = []
    for value in map(str, ids):
        n = seen.get(value, 0)
        seen[value] = n + 1
        out.append(value if n == 0 else f"{value}#{n}")
    return out


def store_table(name: str, store: EmbeddingStore) -> tuple[np.ndarray, dict[str, np.ndarray], dict[str, str]]:
    """(X, obs columns, flat provenance) of one store: what every format writes."""
    X = np.asarray(store.embeddings, dtype=np.float32)
    cols = {"item_id": store.item_ids.astype(str), "patient_id": store.patient_ids.astype(str)}
    cols.update({k: np.asarray(v).astype(str) for k, v in sorted(store.items.items()) if k not in cols})
    prov = store.provenance
    enc = prov.get("encoder") or {}
    flat = {"kind": "store", "modality": name, "encoder": str(enc.get("name", "")),
            "encoder_params": json.dumps(enc.get("params", {}), sort_keys=True, default=str),
            "plugin": str(enc.get("provider") or ""), "plugin_version": str(enc.get("version") or ""),
            "input_fingerprint": str(prov.get("input_fingerprint", "")), "cache_key": str(prov.get("cache_key", "")),
            "width": str(store.dim), "fusionkit": __version__,
            "provenance": json.dumps(prov, sort_keys=True, default=str)}
    return X, cols, flat


def aggregate_table(name: str, folder: Path) -> tuple[np.ndarray, dict[str, np.ndarray], dict[str, Any]]:
    """(X, obs columns, meta) of one saved aggregate dataset; counts/presence in meta."""
    meta = json.loads((folder / "meta.json").read_text())
    X = np.load(folder / "X.npy")
    cols: dict[str, np.ndarray] = {"aggregate_id": np.array([f"{name}:{i}" for i in range(len(X))]),
                                   "k": np.load(folder / "k.npy").astype(np.int64)}
    if (folder / "patient_ids.npy").is_file():
        cols["patient_id"] = np.load(folder / "patient_ids.npy").astype(str)
    for label in meta.get("labels", []):
        path = folder / f"label_{label}.npy"
        if path.is_file():
            cols[label] = np.load(path).astype(str)
    info = {"kind": "aggregates", "sampling": name, "modalities": list(meta.get("modalities", [])),
            "counts": np.load(folder / "counts.npy").astype(np.int32),
            "presence": np.load(folder / "presence.npy").astype(np.int8),
            "meta": json.dumps(meta, sort_keys=True, default=str)}
    return X, cols, info


def store_anndata(name: str, store: EmbeddingStore) -> Any:
    """One store as an AnnData (X = embeddings, obs by item, provenance in uns)."""
    anndata, _, pd = _scverse()
    X, cols, flat = store_table(name, store)
    obs = pd.DataFrame(cols, index=pd.Index(_unique_index(cols["item_id"]), name="obs_name"))
    var = pd.DataFrame(index=[f"{name}_{j}" for j in range(X.shape[1])])
    adata = anndata.AnnData(X=X, obs=obs, var=var)
    adata.uns["fusionkit"] = flat
    return adata


def aggregates_anndata(name: str, folder: Path) -> Any:
    """One aggregate dataset as an AnnData (counts / presence per modality in obsm)."""
    anndata, _, pd = _scverse()
    X, cols, info = aggregate_table(name, folder)
    obs = pd.DataFrame({k: v for k, v in cols.items() if k != "aggregate_id"},
                       index=pd.Index(cols["aggregate_id"], name="obs_name"))
    var = pd.DataFrame(index=[f"{AGGREGATE_PREFIX}{name}_{j}" for j in range(X.shape[1])])
    adata = anndata.AnnData(X=X.astype(np.float32, copy=False), obs=obs, var=var)
    adata.obsm["counts"], adata.obsm["presence"] = info.pop("counts"), info.pop("presence")
    adata.uns["fusionkit"] = {**info, "modalities": np.array(info["modalities"], dtype=object),
                              "fusionkit": __version__}
    return adata


def patient_presence(stores: dict[str, EmbeddingStore]) -> tuple[np.ndarray, np.ndarray]:
    """(sorted patient ids, int8 patients x modalities): 1 where the patient has an item of that modality."""
    per = {m: np.unique(s.patient_ids.astype(str)) for m, s in stores.items()}
    patients = np.unique(np.concatenate(list(per.values()))) if per else np.array([], dtype=str)
    mask = np.stack([np.isin(patients, ids) for ids in per.values()], axis=1).astype(np.int8)
    return patients, mask


def run_mudata(run: RunFolder) -> Any:
    """The whole run (stores + aggregate datasets) as one MuData."""
    _, mudata, _ = _scverse()
    stores = run.stores()
    mods = {name: store_anndata(name, store) for name, store in stores.items()}
    for name, folder in run.aggregates().items():
        key = AGGREGATE_PREFIX + name
        if key in mods:
            raise FusionkitError(f"a modality is named {key!r}, which export uses for aggregates", where=str(run.path),
                                 hint="rename the modality in the recipe")
        mods[key] = aggregates_anndata(name, folder)
    with mudata.set_options(pull_on_update=False):
        mdata = mudata.MuData(mods)
    patients, mask = patient_presence(stores)
    recipe = run.path / "resolved_recipe.yaml"
    mdata.uns["fusionkit"] = {
        "run": run.name, "seed": str(run.record.get("seed", "")), "fusionkit": __version__,
        "stores": np.array(list(stores), dtype=object), "patients": patients.astype(object),
        "presence": mask, "labels": json.dumps(run.labels, sort_keys=True, default=str),
        "resolved_recipe": recipe.read_text() if recipe.is_file() else ""}
    return mdata


def _atomic(path: Path, write: Callable[[str], None]) -> Path:
    """Call ``write(tmp)`` on a temp name in ``path``'s folder, then rename it over ``path``."""
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=path.suffix, dir=path.parent)
    os.close(fd)
    try:
        write(tmp)
        os.replace(tmp, path)
    except BaseException:
        if os.path.exists(tmp):
            os.unlink(tmp)
        raise
    return path


def _parquet(path: Path, X: np.ndarray, cols: dict[str, np.ndarray], meta: dict[str, Any]) -> Path:
    try:
        import pyarrow as pa
        import pyarrow.parquet as pq
    except ImportError as exc:
        raise FusionkitError("exporting to parquet needs pyarrow", where="fusionkit export",
                             hint="pip install pyarrow") from exc
    arrays = {k: pa.array(v.tolist()) for k, v in cols.items()}
    flat = pa.array(np.ascontiguousarray(X, dtype=np.float32).reshape(-1))
    arrays["embedding"] = pa.FixedSizeListArray.from_arrays(flat, X.shape[1]) if X.shape[1] else pa.array([[]] * len(X))
    table = pa.table(arrays).replace_schema_metadata({"fusionkit": json.dumps(meta, default=str)})
    return _atomic(path, lambda tmp: pq.write_table(table, tmp))


def _export_parquet(run: RunFolder, out: Path) -> list[Path]:
    paths = []
    for name, store in run.stores().items():
        X, cols, flat = store_table(name, store)
        paths.append(_parquet(out / f"{name}.parquet", X, cols, flat))
    for name, folder in run.aggregates().items():
        X, cols, info = aggregate_table(name, folder)
        counts, presence = info.pop("counts"), info.pop("presence")
        for j, m in enumerate(info["modalities"]):
            cols[f"count_{m}"], cols[f"present_{m}"] = counts[:, j], presence[:, j]
        paths.append(_parquet(out / f"{AGGREGATE_PREFIX}{name}.parquet", X, cols, info))
    return paths


def export_run(run_dir: str | os.PathLike[str], to: str = "h5mu", out: str | os.PathLike[str] | None = None
               ) -> list[Path]:
    """Export a run folder; returns the files written.

    ``out`` is the ``.h5mu`` file (h5mu) or a folder (h5ad, parquet); by
    default ``RUN_DIR/export/<run name>.h5mu`` or ``RUN_DIR/export/<format>/``.
    """
    if to not in FORMATS:
        raise FusionkitError(f"unknown export format {to!r}", where="--to", hint=f"one of: {', '.join(FORMATS)}")
    run = RunFolder(run_dir)
    if to == "h5mu":
        target = Path(out) if out else run.path / "export" / f"{run.name}.h5mu"
        mdata = run_mudata(run)
        _, mudata, _ = _scverse()
        with mudata.set_options(pull_on_update=False):
            return [_atomic(target, lambda tmp: mdata.write(tmp))]
    folder = Path(out) if out else run.path / "export" / to
    if to == "parquet":
        return _export_parquet(run, folder)
    paths = []
    for name, store in run.stores().items():
        adata = store_anndata(name, store)
        paths.append(_atomic(folder / f"{name}.h5ad", lambda tmp, a=adata: a.write_h5ad(tmp)))
    for name, agg in run.aggregates().items():
        adata = aggregates_anndata(name, agg)
        paths.append(_atomic(folder / f"{AGGREGATE_PREFIX}{name}.h5ad", lambda tmp, a=adata: a.write_h5ad(tmp)))
    return paths
