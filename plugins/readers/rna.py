"""RNA readers: patients x genes tables (``rna-table``) and GDC STAR count folders (``gdc-star-counts``).

Several tables with different gene sets are only combined through an explicit
``combine`` strategy (SPEC 2.1 / data README "THCA RNA"):

``shared``
    keep the genes present in every table (intersection);
``union``
    keep every gene; a patient's genes missing from its table are filled per
    ``fill`` (``0``, ``"mean"`` = the gene's mean over the patients that have it);
``per-source-scale``
    z-score every gene within each source first (so sources on different
    scales become comparable), then join with ``join`` (``union`` or
    ``shared``); missing values are then filled with ``fill`` (default 0, the
    per-source mean after scaling).

A *source* is one entry of ``paths``; an entry that is itself a list names
tables of the **same patients with different genes** that are joined
column-wise (inner join on the patient) into one source, e.g. the two THCA
tables of ../shared/data.
"""

from __future__ import annotations

import fnmatch
import os
import re
from typing import Any, Literal

import numpy as np

from fusionkit import hookimpl
from fusionkit import ModalityData, RawDataset, Reader
from fusionkit import DataError

from fusionkit_plugins.readers.common import (as_list, availability_note, barcodes12, fingerprint, labels_from_items,
                             load_cancer_map, pick_column, read_table, resolve_paths)

#: non-gene columns dropped from expression tables when present (besides the id/cancer columns)
META_COLUMNS = ("source_rowname", "duplicate_patient", "sample_type", "sample_barcode", "oncotree_code",
                "slide_id", "case_id", "age", "site", "survival_months", "censorship", "is_female", "train",
                "cancer_type", "project", "cohort", "sample", "sample_id")
COMBINE = ("shared", "union", "per-source-scale")
NAN_POLICIES = ("error", "zero", "mean", "drop-gene", "drop-patient")


def _zscore(X: np.ndarray) -> np.ndarray:
    mu = np.nanmean(X, axis=0, keepdims=True)
    sd = np.nanstd(X, axis=0, keepdims=True)
    sd[~np.isfinite(sd) | (sd < 1e-8)] = 1.0
    return ((X - mu) / sd).astype(np.float32)


class _Source:
    """One source: patient ids, genes, values (float32), optional cancer per patient."""

    def __init__(self, name: str, ids: np.ndarray, genes: list[str], X: np.ndarray, cancer: np.ndarray | None):
        self.name, self.ids, self.genes, self.X, self.cancer = name, ids, genes, X, cancer


class RnaTableReader(Reader):
    """Patients x genes expression tables (CSV/TSV/parquet, gz ok) combined by an explicit strategy.

    Parameters
    ----------
    paths: file, glob or list; an entry that is a list = tables of the same patients joined column-wise.
    id_column: patient id column (``auto`` tries patient_id, case_id, ...); ids cut to 12-char barcodes.
    cancer_column: optional column holding the cancer type of each row.
    source_cancer: optional ``{file-name substring: cancer}`` (e.g. ``{"thca": "THCA"}``).
    labels_file: optional patient -> cancer_type table (``patients.csv``), used when no column says it.
    column_suffix: keep only columns ending with it and strip it (PORPOISE ``_rnaseq``).
    drop_columns: extra non-gene columns to drop (numeric meta columns are otherwise taken as genes).
    combine: ``shared`` | ``union`` | ``per-source-scale``; required when the tables' genes differ.
    join: gene join used by ``per-source-scale``: ``union`` or ``shared``.
    keep_scale: file-name globs of sources ``per-source-scale`` leaves as they are (tables already
    on a shared scale, e.g. PORPOISE z-scores: z-scoring a one-cancer table per gene removes the
    differences between cancers, issue 15).
    fill: value for genes a source lacks: a number or ``"mean"``; required for ``union``.
    log1p: apply log(1+x) per source first (raw counts/TPM); zscore: z-score each gene at the end.
    nan: NaNs inside a table: ``error`` | ``zero`` | ``mean`` | ``drop-gene`` | ``drop-patient``.
    patients: optional list of patient ids to keep.
    """

    provides = ("rna",)

    def __init__(self, paths: Any = None, id_column: str = "auto", cancer_column: str | None = None,
                 source_cancer: dict | None = None, labels_file: str | None = None,
                 column_suffix: str | None = None, drop_columns: list | None = None,
                 combine: Literal["shared", "union", "per-source-scale"] | None = None,
                 join: Literal["shared", "union"] = "union", fill: Any = None,
                 log1p: bool = False, zscore: bool = False, nan: str = "error",
                 patients: list | None = None, modality: str = "rna", keep_scale: list | None = None):
        self.paths = paths
        self.id_column = id_column
        self.cancer_column = cancer_column
        self.source_cancer = source_cancer
        self.labels_file = labels_file
        self.column_suffix = column_suffix
        self.drop_columns = drop_columns
        self.combine = combine
        self.join = join
        self.fill = fill
        self.log1p = log1p
        self.zscore = zscore
        self.nan = nan
        self.patients = patients
        self.modality = modality
        self.keep_scale = keep_scale

    # ------------------------------------------------------------------ helpers
    def _groups(self) -> list[list[str]]:
        groups: list[list[str]] = []
        for entry in as_list(self.paths):
            if isinstance(entry, (list, tuple)):
                groups.append(resolve_paths(list(entry), what="RNA table", param="paths"))
            else:
                groups.extend([p] for p in resolve_paths(entry, what="RNA table", param="paths"))
        if not groups:
            raise DataError("rna-table needs at least one table", where="paths",
                            hint="set paths: [file.csv.gz, ...]")
        return groups

    def fingerprint_inputs(self) -> list[str]:
        return [p for g in self._groups() for p in g] + ([self.labels_file] if self.labels_file else [])

    def _read_one(self, path: str, notes: list[str]) -> _Source:
        import pandas as pd

        df = read_table(path)
        if df.shape[0] == 0:
            raise DataError("table has no rows", where=path, hint="check the file")
        idc = pick_column(df.columns, self.id_column, path=path)
        ids = barcodes12(df[idc])
        cancer = None
        if self.cancer_column:
            cc = pick_column(df.columns, self.cancer_column, path=path, role="cancer")
            cancer = df[cc].astype(str).to_numpy()
        elif self.source_cancer:
            base = os.path.basename(path).lower()
            for key, value in self.source_cancer.items():
                if str(key).lower() in base:
                    cancer = np.full(len(ids), str(value), dtype=object)
                    break
        drop = {idc, self.cancer_column or ""} | set(META_COLUMNS) | set(as_list(self.drop_columns))
        cols = [c for c in df.columns if c not in drop]
        if self.column_suffix:
            cols = [c for c in cols if str(c).endswith(self.column_suffix)]
        num = df[cols].apply(pd.to_numeric, errors="coerce") if cols else df[cols]
        # columns that are not numeric at all are metadata, not genes
        bad = [c for c in cols if num[c].isna().all() and df[c].notna().any()]
        if bad:
            notes.append(f"{os.path.basename(path)}: dropped non-numeric columns {bad[:5]}"
                         + (f" (+{len(bad) - 5})" if len(bad) > 5 else ""))
            num = num.drop(columns=bad)
        genes = [str(c) for c in num.columns]
        if self.column_suffix:
            genes = [g[: -len(self.column_suffix)] for g in genes]
        if not genes:
            raise DataError(f"no gene columns found (columns: {list(df.columns)[:10]})", where=path,
                            hint="check id_column / column_suffix / drop_columns")
        X = num.to_numpy(dtype=np.float32)
        if len(set(genes)) != len(genes):
            _, first = np.unique(genes, return_index=True)
            keep = np.sort(first)
            notes.append(f"{os.path.basename(path)}: {len(genes) - len(keep)} duplicated gene columns, kept first")
            genes = [genes[i] for i in keep]
            X = X[:, keep]
        X = self._handle_nan(X, genes, path, notes)
        if self.log1p:
            if np.nanmin(X) <= -1:
                raise DataError("log1p asked for but the table has values <= -1 (already log/z-scored?)",
                                where=path, hint="set log1p: false for transformed tables")
            X = np.log1p(X).astype(np.float32)
        return _Source(os.path.basename(path), ids, genes, X, cancer)

    def _handle_nan(self, X: np.ndarray, genes: list[str], path: str, notes: list[str]) -> np.ndarray:
        mask = ~np.isfinite(X)
        if not mask.any():
            return X
        n = int(mask.sum())
        if self.nan not in NAN_POLICIES:
            raise DataError(f"unknown nan policy {self.nan!r}", where="nan", hint=f"one of {NAN_POLICIES}")
        if self.nan == "error":
            col = genes[int(np.where(mask.any(axis=0))[0][0])]
            raise DataError(f"{n} missing/non-finite values (first in column {col!r})", where=path,
                            hint="choose how to handle them with nan: zero | mean | drop-gene | drop-patient")
        if self.nan == "zero":
            X = np.where(mask, 0.0, X)
        elif self.nan == "mean":
            mu = np.nanmean(np.where(mask, np.nan, X), axis=0)
            mu = np.where(np.isfinite(mu), mu, 0.0)
            X = np.where(mask, mu[None, :], X)
        elif self.nan == "drop-gene":
            keep = ~mask.any(axis=0)
            genes[:] = [g for g, k in zip(genes, keep) if k]
            X = X[:, keep]
        notes.append(f"{os.path.basename(path)}: {n} missing values handled with nan={self.nan}")
        return X.astype(np.float32)

    def _source(self, group: list[str], notes: list[str]) -> _Source:
        parts = [self._read_one(p, notes) for p in group]
        if self.nan == "drop-patient":
            for part in parts:
                ok = np.isfinite(part.X).all(axis=1)
                part.ids, part.X = part.ids[ok], part.X[ok]
                part.cancer = None if part.cancer is None else part.cancer[ok]
        parts = [self._dedup(p, notes) for p in parts]
        if len(parts) == 1:
            return parts[0]
        # same patients, different genes: inner join on the patient id
        common = set(parts[0].ids)
        for p in parts[1:]:
            common &= set(p.ids)
        ids = np.array([i for i in parts[0].ids if i in common])
        genes: list[str] = []
        blocks = []
        cancer = None
        for p in parts:
            pos = {pid: i for i, pid in enumerate(p.ids)}
            rows = np.array([pos[i] for i in ids], dtype=np.int64)
            new = [j for j, g in enumerate(p.genes) if g not in set(genes)]
            genes += [p.genes[j] for j in new]
            blocks.append(p.X[rows][:, new])
            if cancer is None and p.cancer is not None:
                cancer = p.cancer[rows]
        lost = sum(len(p.ids) for p in parts) - len(parts) * len(ids)
        notes.append(f"joined {len(parts)} tables column-wise ({' + '.join(p.name for p in parts)}): "
                     f"{len(ids)} patients in all of them, {len(genes)} genes"
                     + (f"; {lost} rows without a partner dropped" if lost else ""))
        return _Source("+".join(p.name for p in parts), ids, genes, np.hstack(blocks), cancer)

    @staticmethod
    def _dedup(src: _Source, notes: list[str]) -> _Source:
        _, first = np.unique(src.ids, return_index=True)
        if len(first) == len(src.ids):
            return src
        keep = np.sort(first)
        notes.append(f"{src.name}: {len(src.ids) - len(keep)} duplicate patient rows, kept the first")
        return _Source(src.name, src.ids[keep], src.genes, src.X[keep],
                       None if src.cancer is None else src.cancer[keep])

    # ------------------------------------------------------------------ read
    def read(self, ctx: Any = None) -> RawDataset:
        notes: list[str] = []
        sources = [self._source(g, notes) for g in self._groups()]
        strategy, join, same = self._strategy(sources)
        if strategy == "per-source-scale":
            for s in sources:
                if not any(fnmatch.fnmatch(n, g) for n in s.name.split("+") for g in as_list(self.keep_scale)):
                    s.X = _zscore(s.X)
        genes = _joined_genes(sources, join)
        fill = self._fill_value(strategy, join, same)
        X, pid, cancer, srcs = _stack(sources, genes)
        if np.isnan(X).any():
            X = _fill_missing(X, fill, f"{strategy}: {len(genes)} genes", notes)
        elif len(sources) > 1:
            notes.append(f"{strategy}: {len(genes)} genes across {len(sources)} tables")
        X, pid, cancer, srcs = self._select_rows(X, pid, cancer, srcs, notes)
        cmap = load_cancer_map(self.labels_file)
        if cmap:
            cancer = np.array([c if c not in (None, "None", "nan") else cmap.get(p) for p, c in zip(pid, cancer)],
                              dtype=object)
        if self.zscore:
            X = _zscore(X)
        source = f"rna-table: {', '.join(s.name for s in sources)} (combine={strategy})"
        return self._dataset(X, pid, cancer, srcs, genes, source, notes)

    def _strategy(self, sources: list[_Source]) -> tuple[str, str, bool]:
        """(combine strategy, gene join, whether every source has the same genes); raises on a bad choice."""
        if self.combine is not None and self.combine not in COMBINE:
            raise DataError(f"unknown combine strategy {self.combine!r}", where="combine",
                            hint=f"one of: {', '.join(COMBINE)}")
        gene_sets = [set(s.genes) for s in sources]
        same = all(g == gene_sets[0] for g in gene_sets)
        strategy = self.combine
        if strategy is None:
            if not same:
                shared = gene_sets[0].intersection(*gene_sets[1:])
                sizes = ", ".join(f"{s.name}: {len(s.genes)}" for s in sources)
                raise DataError(f"RNA tables have different gene sets ({sizes}; {len(shared)} shared)",
                                where="combine",
                                hint="choose combine: shared (intersection) | union (with fill) | "
                                     "per-source-scale (z-score per source, then join)")
            strategy = "shared"
        join = self.join if strategy == "per-source-scale" else strategy
        if join not in ("shared", "union"):
            raise DataError(f"join must be 'union' or 'shared', got {self.join!r}", where="join")
        return strategy, join, same

    def _fill_value(self, strategy: str, join: str, same: bool) -> Any:
        """The fill for genes a source lacks; ``union`` of different gene sets needs one."""
        if not same and join == "union" and self.fill is None:
            if strategy == "per-source-scale":
                return 0.0
            raise DataError("combine: union needs an explicit fill for genes a table lacks", where="fill",
                            hint="set fill: 0 or fill: mean (or use combine: per-source-scale)")
        return self.fill

    def _select_rows(self, X: np.ndarray, pid: np.ndarray, cancer: np.ndarray, srcs: np.ndarray,
                     notes: list[str]) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
        """The first row of a patient found in several sources, then only the wanted ``patients``."""
        _, first = np.unique(pid, return_index=True)
        if len(first) != len(pid):
            keep = np.sort(first)
            notes.append(f"{len(pid) - len(keep)} patients appear in more than one table; kept their first row "
                         "(list same-patient tables as one nested entry of paths to join them instead)")
            X, pid, cancer, srcs = X[keep], pid[keep], cancer[keep], srcs[keep]
        if self.patients is not None:
            wanted = set(str(p) for p in self.patients)
            keep = np.array([p in wanted for p in pid], dtype=bool)
            X, pid, cancer, srcs = X[keep], pid[keep], cancer[keep], srcs[keep]
        return X, pid, cancer, srcs

    def _dataset(self, X: np.ndarray, pid: np.ndarray, cancer: np.ndarray, srcs: np.ndarray, genes: list[str],
                 source: str, notes: list[str]) -> RawDataset:
        labels = {"source_table": srcs.astype(str)}
        if any(c is not None for c in cancer):
            labels["cancer_type"] = np.array(["" if c is None else str(c) for c in cancer])
        data = ModalityData(
            modality=self.modality, kind="matrix", patient_ids=pid, item_ids=pid, data=X.astype(np.float32),
            feature_names=genes, labels=labels, source=source,
            fingerprint=fingerprint(self.fingerprint_inputs(), self.get_params()),
        )
        out = RawDataset(modalities={self.modality: data}, notes=notes)
        if "cancer_type" in labels:
            out.labels["cancer_type"] = labels_from_items(pid, labels["cancer_type"])
            notes.append(availability_note(self.modality, pid, out.labels["cancer_type"]))
        return out


def _joined_genes(sources: list[_Source], join: str) -> list[str]:
    """The genes kept: shared by every source (in the first source's order) or their ordered union."""
    if join == "shared":
        keep = set(sources[0].genes).intersection(*(set(s.genes) for s in sources[1:]))
        genes = [g for g in sources[0].genes if g in keep]
        if not genes:
            raise DataError("the RNA tables share no gene", where="combine",
                            hint="use combine: union or per-source-scale with join: union")
        return genes
    return list(dict.fromkeys(g for s in sources for g in s.genes))


def _stack(sources: list[_Source], genes: list[str]) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """Rows of every source on the common gene axis (NaN where a source lacks a gene); ids, cancers, sources."""
    gpos = {g: i for i, g in enumerate(genes)}
    X = np.full((sum(len(s.ids) for s in sources), len(genes)), np.nan, dtype=np.float32)
    r = 0
    for s in sources:
        cols = [j for j, g in enumerate(s.genes) if g in gpos]
        X[r:r + len(s.ids), [gpos[s.genes[j]] for j in cols]] = s.X[:, cols]
        r += len(s.ids)
    pid = np.concatenate([s.ids for s in sources])
    cancer = np.concatenate([s.cancer if s.cancer is not None else np.full(len(s.ids), None, dtype=object)
                             for s in sources])
    srcs = np.concatenate([np.full(len(s.ids), s.name, dtype=object) for s in sources])
    return X, pid, cancer, srcs


def _fill_missing(X: np.ndarray, fill: Any, what: str, notes: list[str]) -> np.ndarray:
    """Fill NaNs (genes a source lacks) with a number or the gene's mean (``"mean"``)."""
    missing = np.isnan(X)
    if isinstance(fill, str) and fill == "mean":
        mu = np.nanmean(X, axis=0)
        X = np.where(missing, np.where(np.isfinite(mu), mu, 0.0)[None, :], X)
    else:
        try:
            value = float(fill)
        except (TypeError, ValueError) as exc:
            raise DataError(f"fill must be a number or 'mean', got {fill!r}", where="fill") from exc
        X = np.where(missing, value, X)
    notes.append(f"{what}; {missing.mean():.1%} of values filled with {fill!r} (genes a source lacks)")
    return X


# --------------------------------------------------------------------------- GDC STAR counts

STAR_VALUES = ("unstranded", "stranded_first", "stranded_second", "tpm_unstranded", "fpkm_unstranded",
               "fpkm_uq_unstranded")


class GdcStarCountsReader(Reader):
    """A GDC download folder of per-sample STAR gene-count TSVs plus the GDC sample sheet.

    Parameters
    ----------
    folder: the download folder (files may sit in per-file-UUID subfolders).
    sample_sheet: the GDC sample sheet TSV (``auto``: ``gdc_sample_sheet*.tsv`` in ``folder``).
    value: count column: unstranded | stranded_first | stranded_second | tpm_unstranded | fpkm_unstranded | fpkm_uq_unstranded.
    gene_key: ``gene_name`` (symbols; duplicates summed) or ``gene_id`` (Ensembl, version stripped).
    gene_types: keep these ``gene_type`` values (None = all).
    sample_types: keep these ``Sample Type`` values (None = all); one sample per case (the first).
    log1p: log(1+x) the values.
    """

    provides = ("rna",)

    def __init__(self, folder: str = "", sample_sheet: str = "auto", value: str = "tpm_unstranded",
                 gene_key: str = "gene_name", gene_types: list | None = ("protein_coding",),  # type: ignore[assignment]
                 sample_types: list | None = ("Primary Tumor",),  # type: ignore[assignment]
                 log1p: bool = True, modality: str = "rna"):
        self.folder = folder
        self.sample_sheet = sample_sheet
        self.value = value
        self.gene_key = gene_key
        self.gene_types = gene_types
        self.sample_types = sample_types
        self.log1p = log1p
        self.modality = modality

    def _sheet_path(self) -> str:
        if self.sample_sheet and self.sample_sheet != "auto":
            return resolve_paths(self.sample_sheet, what="GDC sample sheet", param="sample_sheet")[0]
        if not os.path.isdir(self.folder):
            raise DataError(f"GDC folder not found: {self.folder}", where="folder", hint="point folder at the download")
        hits = sorted(p for p in os.listdir(self.folder) if re.match(r"gdc_sample_sheet.*\.(tsv|txt)$", p))
        if not hits:
            raise DataError("no GDC sample sheet (gdc_sample_sheet*.tsv) in the folder", where=self.folder,
                            hint="download the sample sheet from the GDC cart and set sample_sheet")
        return os.path.join(self.folder, hits[0])

    def fingerprint_inputs(self) -> list[str]:
        return [self.folder, self._sheet_path()]

    def _sheet(self) -> Any:
        """The sample sheet (a DataFrame), restricted to ``sample_types``."""
        sheet_path = self._sheet_path()
        sheet = read_table(sheet_path, sep="\t")
        missing = [c for c in ("File Name", "Case ID") if c not in sheet.columns]
        if missing:
            raise DataError(f"sample sheet lacks columns {missing} (columns: {list(sheet.columns)})",
                            where=sheet_path, hint="use the GDC 'Sample Sheet' download of the same cart")
        if self.sample_types is not None and "Sample Type" in sheet.columns:
            sheet = sheet[sheet["Sample Type"].astype(str).str.split(",").str[0].str.strip().isin(self.sample_types)]
        return sheet

    def _counts(self, path: str) -> Any:
        """One STAR file's ``value`` column summed per gene key (a pandas Series indexed by gene)."""
        import pandas as pd

        df = pd.read_csv(path, sep="\t", comment="#")
        if self.value not in df.columns or self.gene_key not in df.columns:
            raise DataError(f"not a STAR gene-count file: columns {list(df.columns)}", where=path,
                            hint=f"expected gene_id, gene_name, gene_type and {self.value}")
        df = df[~df["gene_id"].astype(str).str.startswith("N_")]
        if self.gene_types is not None and "gene_type" in df.columns:
            df = df[df["gene_type"].isin(self.gene_types)]
        key = df[self.gene_key].astype(str)
        if self.gene_key == "gene_id":
            key = key.str.replace(r"\.\d+$", "", regex=True)
        return pd.to_numeric(df[self.value], errors="coerce").groupby(key.to_numpy()).sum()

    def read(self, ctx: Any = None) -> RawDataset:
        if self.value not in STAR_VALUES:
            raise DataError(f"unknown value column {self.value!r}", where="value", hint=f"one of {STAR_VALUES}")
        sheet = self._sheet()
        files: dict[str, str] = {}
        for dirpath, _dirs, names in os.walk(self.folder):
            for name in names:
                files.setdefault(name, os.path.join(dirpath, name))
        notes: list[str] = []
        vectors, ids, cancers, genes_ref = [], [], [], None
        seen: set[str] = set()
        n_missing = 0
        for _, row in sheet.iterrows():
            pid = barcodes12([str(row["Case ID"]).split(",")[0].strip()])[0]
            if pid in seen:
                notes.append(f"{pid}: more than one sample, kept the first ({row['File Name']} skipped)")
                continue
            path = files.get(str(row["File Name"]))
            if path is None:
                n_missing += 1
                continue
            s = self._counts(path)
            genes_ref = s.index if genes_ref is None else genes_ref
            vectors.append(s.reindex(genes_ref).to_numpy(dtype=np.float32))
            ids.append(pid)
            seen.add(pid)
            project = str(row.get("Project ID", ""))
            cancers.append(project.split(",")[0].strip().replace("TCGA-", "") if project else "")
        if n_missing:
            notes.append(f"{n_missing} files of the sample sheet are not in the folder")
        if not vectors:
            raise DataError("no STAR count file of the sample sheet was found in the folder", where=self.folder,
                            hint="the folder must hold the files named in the sample sheet's 'File Name' column")
        return self._dataset(np.vstack(vectors), np.array(ids), cancers, [str(g) for g in genes_ref], notes)

    def _dataset(self, X: np.ndarray, pid: np.ndarray, cancers: list[str], genes: list[str],
                 notes: list[str]) -> RawDataset:
        X = np.where(np.isfinite(X), X, 0.0)
        if self.log1p:
            X = np.log1p(np.clip(X, 0, None))
        labels = {"cancer_type": np.array(cancers)} if any(cancers) else {}
        data = ModalityData(modality=self.modality, kind="matrix", patient_ids=pid, item_ids=pid,
                            data=X.astype(np.float32), feature_names=genes,
                            labels=labels, source=f"gdc-star-counts: {self.folder} ({self.value})",
                            fingerprint=fingerprint(self.fingerprint_inputs(), self.get_params()))
        out = RawDataset(modalities={self.modality: data}, notes=notes)
        if labels:
            out.labels["cancer_type"] = labels_from_items(pid, labels["cancer_type"])
        return out


@hookimpl
def register_readers(register):
    register("rna-table", RnaTableReader, modality="rna", tags=["rna", "table"])
    register("gdc-star-counts", GdcStarCountsReader, modality="rna", tags=["rna", "gdc"])
