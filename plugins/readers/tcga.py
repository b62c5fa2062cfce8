"""TCGA readers; registers ``tcga-labels`` and ``tcga-folder``.

==================== ========================================================================
``tcga-labels``      cancer type, PanCanAtlas subtype and TMB class joined on the 12-char barcode
``tcga-folder``      every modality and label of a folder laid out like ``../shared/data/tcga``,
                     by delegating to the readers of the other modules: ``rna-table``
                     (``readers/rna.py``), ``maf`` (``readers/maf.py``), ``report-text``
                     (``readers/text.py``), ``tiles`` (``readers/image.py``) and
                     ``clinical-sentences`` (``readers/clinical.py``)
==================== ========================================================================

Patient key everywhere: the 12-character barcode ``TCGA-XX-XXXX``. See docs/DATA.md.
"""

from __future__ import annotations

import json
import os
import time
from typing import Any

import numpy as np

from fusionkit import hookimpl
from fusionkit import ModalityData, RawDataset, Reader
from fusionkit import DataError

from fusionkit_plugins.readers.clinical import ClinicalSentencesReader
from fusionkit_plugins.readers.common import (SIX_CANCERS, availability_note, barcodes12, load_cancer_map, pick_column,
                                              read_table, resolve_paths)
from fusionkit_plugins.readers.image import TilesReader
from fusionkit_plugins.readers.maf import NON_SILENT, MafReader, tmb_labels
from fusionkit_plugins.readers.rna import RnaTableReader
from fusionkit_plugins.readers.text import ReportTextReader


# --------------------------------------------------------------------------- tcga-labels

def _subtype_value(raw: Any, column: str, cancer: str, names: dict[str, dict[str, str]]) -> str | None:
    """Normalise one subtype cell to ``<CANCER>.<name>``; None when missing or of another cancer."""
    if raw is None or (isinstance(raw, float) and np.isnan(raw)):
        return None
    text = str(raw).strip()
    if not text or text.lower() in ("nan", "na", "none", "[not available]"):
        return None
    if isinstance(raw, float) and raw.is_integer():
        text = str(int(raw))
    # gdan-tmp labels "BRCA_1" -> cancer2name name
    for cohort, mapping in names.items():
        if text in mapping:
            if cohort not in (cancer, "COADREAD" if cancer in ("COAD", "READ") else "",
                              "GEA" if cancer == "STAD" else ""):
                return None
            return f"{cancer}.{mapping[text]}"
    # prefixed values "BRCA.LumA", "GI.CIN", "THCA.1": keep only the patient's own cancer
    if "." in text:
        prefix = text.split(".", 1)[0].upper()
        if prefix in SIX_CANCERS + ("READ", "LUSC") and prefix != cancer:
            return None
        return text if prefix == cancer else f"{cancer}.{text}"
    return f"{cancer}.{column}_{text}"


class TcgaLabelsReader(Reader):
    """Patient labels joined on the 12-char barcode: cancer type, molecular subtype, TMB class.

    Parameters
    ----------
    root: folder laid out like ../shared/data/tcga (other paths are relative to it).
    patients_file: patient -> cancer_type table.
    subtype_file: subtype table; subtype_column: its column used as ``subtype`` (PanCanAtlas 2014
        table: ``mRNA``, ``COCA``, ...; a table with ``BRCA.LumA``-style values works too).
    subtype_tissue_column: column with the cohort of each subtype row; rows whose cohort differs from
        the patient's cancer are dropped (subtypes of the patient's own cancer only).
    cancer2name: optional gdan-tmp ``cancer2name.json`` to name ``BRCA_1``-style labels.
    maf: MAF file(s) or glob for ``tmb``/``tmb_class`` (None = none); tmb_divisor, tmb_threshold: SPEC 2.3.
    cancers: keep patients of these cancers (default: the six of the paper).
    min_subtype_size: subtype classes with fewer patients are set to missing.
    """

    provides = ()
    yields_labels = ("cancer_type", "subtype", "tmb", "tmb_class")

    def __init__(self, root: str = "", patients_file: str = "patients.csv",
                 subtype_file: str | None = "subtypes/pancan_subtype.tsv", subtype_column: str = "mRNA",
                 subtype_tissue_column: str | None = "Tissue", subtype_id_column: str = "auto",
                 cancer2name: str | None = "subtypes/cancer2name.json",
                 maf: Any = "mutations/*_firehose.maf.tsv.gz", tmb_divisor: float = 30.0,
                 tmb_threshold: float = 0.5, cancers: list | None = list(SIX_CANCERS),  # noqa: B006
                 min_subtype_size: int = 1):
        self.root = root
        self.patients_file = patients_file
        self.subtype_file = subtype_file
        self.subtype_column = subtype_column
        self.subtype_tissue_column = subtype_tissue_column
        self.subtype_id_column = subtype_id_column
        self.cancer2name = cancer2name
        self.maf = maf
        self.tmb_divisor = tmb_divisor
        self.tmb_threshold = tmb_threshold
        self.cancers = cancers
        self.min_subtype_size = min_subtype_size

    def _p(self, rel: str | None) -> str | None:
        if not rel:
            return None
        return rel if os.path.isabs(rel) or not self.root else os.path.join(self.root, rel)

    def fingerprint_inputs(self) -> list[str]:
        out = [p for p in (self._p(self.patients_file), self._p(self.subtype_file), self._p(self.cancer2name)) if p]
        if self.maf:
            out += resolve_paths(self.maf, root=self.root or None, what="MAF file", param="maf")
        return out

    def read(self, ctx: Any = None) -> RawDataset:
        notes: list[str] = []
        pfile = resolve_paths(self._p(self.patients_file), what="patients table", param="patients_file")[0]
        cancer = load_cancer_map(pfile)
        if self.cancers is not None:
            wanted = {str(c) for c in self.cancers}
            cancer = {p: c for p, c in cancer.items() if c in wanted}
        labels: dict[str, dict[str, Any]] = {"cancer_type": cancer}
        if self.subtype_file:
            labels["subtype"] = self._subtypes(cancer, notes)
        if self.maf:
            maf = MafReader(paths=resolve_paths(self.maf, root=self.root or None, what="MAF file", param="maf"),
                            min_gene_frequency=0.0, tmb_divisor=self.tmb_divisor, tmb_threshold=self.tmb_threshold)
            rows, _ = maf.load_rows()
            keep = rows["vclass"].astype(str).isin(NON_SILENT)
            if "is_silent_slot" in rows.columns:
                keep &= ~rows["is_silent_slot"].astype(str).str.lower().isin(("1", "true", "1.0"))
            n = rows[keep].groupby("patient_id")["gene"].nunique()
            counts = {p: int(n.get(p, 0)) for p in rows["patient_id"].unique() if p in cancer}
            tmb, cls = tmb_labels(counts, self.tmb_divisor, self.tmb_threshold)
            labels["tmb"], labels["tmb_class"] = tmb, cls
        for name, table in labels.items():
            if name == "tmb":
                continue
            per: dict[str, dict[str, int]] = {}
            for p, v in table.items():
                per.setdefault(cancer.get(p, "?"), {}).setdefault(str(v), 0)
                per[cancer.get(p, "?")][str(v)] += 1
            notes.append(f"labels.{name}: {len(table):,} patients; " + "; ".join(
                f"{c}: {len(per[c])} classes" for c in sorted(per)))
        return RawDataset(labels=labels, notes=notes)

    def _subtypes(self, cancer: dict[str, str], notes: list[str]) -> dict[str, str]:
        path = resolve_paths(self._p(self.subtype_file), what="subtype table", param="subtype_file")[0]
        df = read_table(path)
        idc = pick_column(df.columns, self.subtype_id_column, path=path, param="subtype_id_column",
                          candidates=("patient", "patient_id", "pan.samplesID", "sample", "Sample"))
        col = pick_column(df.columns, self.subtype_column, path=path, role="subtype")
        tc = pick_column(df.columns, self.subtype_tissue_column, path=path, role="tissue", required=False,
                         param="subtype_tissue_column") \
            if self.subtype_tissue_column else None
        names: dict[str, dict[str, str]] = {}
        c2n = self._p(self.cancer2name)
        if c2n and os.path.isfile(c2n):
            with open(c2n) as fh:
                names = json.load(fh)
        ids = barcodes12(df[idc])
        tissue = df[tc].astype(str).to_numpy() if tc else np.full(len(df), "")
        out: dict[str, str] = {}
        dropped = 0
        for pid, raw, tis in zip(ids, df[col].to_numpy(dtype=object), tissue):
            c = cancer.get(pid)
            if c is None or pid in out:
                continue
            if tc and tis and tis.upper() != c and not (c == "COAD" and tis.upper() in ("COADREAD", "COAD")):
                dropped += 1
                continue
            value = _subtype_value(raw, col, c, names)
            if value is not None:
                out[pid] = value
        if dropped:
            notes.append(f"labels.subtype: {dropped} rows whose cohort differs from the patient's cancer dropped")
        if self.min_subtype_size > 1:
            counts: dict[str, int] = {}
            for v in out.values():
                counts[v] = counts.get(v, 0) + 1
            out = {p: v for p, v in out.items() if counts[v] >= self.min_subtype_size}
        return out


# --------------------------------------------------------------------------- tcga-folder

THCA_RNA = ("per-source-scale", "shared", "missing")


class TcgaFolderReader(Reader):
    """All modalities and labels of a folder laid out like ../shared/data/tcga.

    Delegates to rna-table, maf, report-text, tiles, clinical-sentences and tcga-labels; every
    item gets ``cancer_type`` from ``patients.csv``; ``notes`` lists availability per modality and cancer.

    THCA RNA (default ``thca_rna: per-source-scale``): the two THCA tables are joined column-wise
    (same patients, 1,000 + 121 genes) into one source and z-scored per gene; the PORPOISE tables
    are already z-scores on a shared scale and are kept as they are (z-scoring each one-cancer
    table per gene would erase the differences between cancers: a PCA-256 probe of cancer type
    falls from 0.71 to 0.10 macro-F1, issue 15); genes are united and genes a source lacks are 0.
    THCA shares only ~68 genes with the others, so THCA RNA differs from the others by source as
    well as biology: ``shared`` keeps only the common genes, ``missing`` leaves THCA
    without RNA (reported in the notes).

    Parameters
    ----------
    root: the folder. modalities: which of rna, mutation, text, image to read.
    clinical: also read ``clinical`` (structured fields as sentences, rendered for all cancers).
    clinical_exclude_diagnosis_fields, clinical_shared_fields_only: passed to clinical-sentences.
    cancers: cancers to keep (default the six). thca_rna: per-source-scale | shared | missing.
    min_gene_frequency: of the mutation matrix. duplicate_reports: report-text policy.
    max_sentences_per_patient, max_tiles_per_patient: caps (None = all).
    background_threshold: tiles background rule (None = keep all).
    subtype_column: column of the subtype table used as ``subtype``. seed: tile sampling seed.
    """

    provides = ("rna", "mutation", "text", "image", "clinical")
    yields_labels = ("cancer_type", "subtype", "tmb", "tmb_class")

    def __init__(self, root: str = "", modalities: list | None = ("rna", "mutation", "text", "image"),  # type: ignore[assignment]
                 clinical: bool = False, clinical_exclude_diagnosis_fields: bool = True,
                 clinical_shared_fields_only: bool = True, cancers: list | None = list(SIX_CANCERS),  # noqa: B006
                 thca_rna: str = "per-source-scale", min_gene_frequency: float = 0.01,
                 duplicate_reports: str = "longest", max_sentences_per_patient: int | None = None,
                 max_tiles_per_patient: int | None = None, background_threshold: float | None = None,
                 subtype_column: str = "mRNA", tmb_divisor: float = 30.0, tmb_threshold: float = 0.5,
                 seed: int = 0):
        self.root = root
        self.modalities = modalities
        self.clinical = clinical
        self.clinical_exclude_diagnosis_fields = clinical_exclude_diagnosis_fields
        self.clinical_shared_fields_only = clinical_shared_fields_only
        self.cancers = cancers
        self.thca_rna = thca_rna
        self.min_gene_frequency = min_gene_frequency
        self.duplicate_reports = duplicate_reports
        self.max_sentences_per_patient = max_sentences_per_patient
        self.max_tiles_per_patient = max_tiles_per_patient
        self.background_threshold = background_threshold
        self.subtype_column = subtype_column
        self.tmb_divisor = tmb_divisor
        self.tmb_threshold = tmb_threshold
        self.seed = seed

    def _p(self, *parts: str) -> str:
        return os.path.join(self.root, *parts)

    def _check_root(self) -> None:
        if not os.path.isdir(self.root):
            raise DataError(f"TCGA folder not found: {self.root!r}", where="root",
                            hint="point root at a folder laid out like ../shared/data/tcga")
        if not os.path.isfile(self._p("patients.csv")):
            raise DataError("patients.csv (patient_id, cancer_type) is missing", where=self.root,
                            hint="the folder needs patients.csv to label patients")

    def _mods(self) -> list[str]:
        mods = list(self.modalities or [])
        unknown = [m for m in mods if m not in ("rna", "mutation", "text", "image", "clinical")]
        if unknown:
            raise DataError(f"unknown modalities {unknown}", where="modalities",
                            hint="choose among rna, mutation, text, image (and clinical)")
        if self.clinical and "clinical" not in mods:
            mods.append("clinical")
        return mods

    def _sub_readers(self) -> dict[str, Reader]:
        mods = self._mods()
        out: dict[str, Reader] = {}
        if "rna" in mods:
            if self.thca_rna not in THCA_RNA:
                raise DataError(f"unknown thca_rna {self.thca_rna!r}", where="thca_rna", hint=f"one of {THCA_RNA}")
            rna_dir = self._p("rna")
            others = sorted(os.path.join(rna_dir, n) for n in os.listdir(rna_dir)
                            if n.startswith("porpoise_") and n.endswith((".csv.gz", ".csv")))
            thca = sorted(os.path.join(rna_dir, n) for n in os.listdir(rna_dir) if n.lower().startswith("thca"))
            paths: list[Any] = list(others)
            if thca and self.thca_rna != "missing":
                paths.append(thca)
            out["rna"] = RnaTableReader(
                paths=paths, labels_file=self._p("patients.csv"),
                combine="per-source-scale" if self.thca_rna == "per-source-scale" else "shared",
                join="union", fill=0.0, nan="zero", keep_scale=["porpoise_*"])
        if "mutation" in mods:
            out["mutation"] = MafReader(paths=self._p("mutations", "*.maf.tsv.gz"),
                                        min_gene_frequency=self.min_gene_frequency,
                                        tmb_divisor=self.tmb_divisor, tmb_threshold=self.tmb_threshold)
        if "text" in mods:
            out["text"] = ReportTextReader(path=self._p("reports", "pathology_reports.csv.gz"),
                                           duplicate_reports=self.duplicate_reports,
                                           max_sentences_per_patient=self.max_sentences_per_patient)
        if "image" in mods:
            out["image"] = TilesReader(folder=self._p("tiles"), background_threshold=self.background_threshold,
                                       max_tiles_per_patient=self.max_tiles_per_patient, seed=self.seed)
        if "clinical" in mods:
            out["clinical"] = ClinicalSentencesReader(
                path=self._p("clinical", "clinical_annotations.csv.gz"), cancers=self.cancers,
                exclude_diagnosis_fields=self.clinical_exclude_diagnosis_fields,
                shared_fields_only=self.clinical_shared_fields_only)
        return out

    def fingerprint_inputs(self) -> list[str]:
        self._check_root()
        out = [self._p("patients.csv")]
        for r in self._sub_readers().values():
            out += r.fingerprint_inputs()
        return out

    def read(self, ctx: Any = None) -> RawDataset:
        self._check_root()
        t0 = time.perf_counter()
        labels_ds = TcgaLabelsReader(root=self.root, subtype_column=self.subtype_column,
                                     maf="mutations/*.maf.tsv.gz" if "mutation" in self._mods() else None,
                                     tmb_divisor=self.tmb_divisor, tmb_threshold=self.tmb_threshold,
                                     cancers=self.cancers).read(ctx)
        cancer = labels_ds.labels["cancer_type"]
        notes = list(labels_ds.notes)
        modalities: dict[str, ModalityData] = {}
        for name, reader in self._sub_readers().items():
            sub = reader.read(ctx)
            for lname, table in sub.labels.items():  # e.g. the clinical table's endpoints and covariates
                labels_ds.labels.setdefault(lname, {p: v for p, v in table.items() if p in cancer})
            labels_ds.continuous_labels |= sub.continuous_labels
            md = sub.modalities[reader.modality]
            md.modality = name
            # keep the patients of the chosen cancers; label every item from patients.csv
            keep = np.array([p in cancer for p in md.patient_ids], dtype=bool)
            dropped = int((~keep).sum())
            if dropped:
                md = md.subset(np.flatnonzero(keep))
                notes.append(f"{name}: {dropped} items of patients outside {', '.join(self.cancers or [])} "
                             "or not in patients.csv dropped")
            md.labels["cancer_type"] = np.array([cancer[p] for p in md.patient_ids])
            modalities[name] = md
            notes.extend(n for n in sub.notes if " patients" not in n or not n.startswith(f"{reader.modality}:"))
        if "mutation" in modalities:
            md = modalities["mutation"]
            md.labels["tmb_class"] = np.array([labels_ds.labels["tmb_class"].get(p, "none") for p in md.patient_ids])
        if "rna" in modalities and self.thca_rna == "missing":
            notes.append("rna: THCA RNA treated as missing (thca_rna=missing)")
        # availability per modality and cancer (SPEC 2.5: report it next to every result)
        cancers = sorted(set(cancer.values()))
        header = "availability (patients) | " + " | ".join(cancers)
        rows = [header]
        for name, md in modalities.items():
            pids = set(md.patient_ids.tolist())
            per = {c: 0 for c in cancers}
            for p in pids:
                per[cancer[p]] += 1
            rows.append(f"{name} | " + " | ".join(str(per[c]) for c in cancers))
            notes.append(availability_note(name, md.patient_ids, cancer, len(md)))
        total = {c: sum(1 for v in cancer.values() if v == c) for c in cancers}
        rows.append("patients.csv | " + " | ".join(str(total[c]) for c in cancers))
        notes.append("\n".join(rows))
        notes.append(f"tcga-folder: read in {time.perf_counter() - t0:.1f}s")
        return RawDataset(modalities=modalities, labels=labels_ds.labels, notes=notes,
                          continuous_labels=labels_ds.continuous_labels)


# --------------------------------------------------------------------------- registration

@hookimpl
def register_readers(register):
    register("tcga-labels", TcgaLabelsReader, tags=["labels"])
    register("tcga-folder", TcgaFolderReader, modality="multi", tags=["tcga", "rna", "mutation", "text", "image"])


__all__ = ["TcgaLabelsReader", "TcgaFolderReader"]
