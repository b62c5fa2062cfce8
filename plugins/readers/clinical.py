"""Clinical reader; registers ``clinical-sentences``: structured clinical fields rendered as
annotation sentences (derived text, clearly marked as such; not report text).

One item per (patient, field), e.g. ``Age at diagnosis: 63 years.``. SPEC 2.5:
render for every cancer or for none, and leave out fields that name the
diagnosis (:data:`DIAGNOSIS_FIELDS`, :func:`is_diagnosis_field`) when other
signal is to be tested.
"""

from __future__ import annotations

import os
import re
from typing import Any

import numpy as np

from fusionkit import hookimpl
from fusionkit import ModalityData, RawDataset, Reader
from fusionkit import DataError

from fusionkit_plugins.readers.common import (availability_note, barcodes12, fingerprint, labels_from_items,
                                              pick_column, read_table, resolve_paths)

__all__ = ["ClinicalSentencesReader", "DIAGNOSIS_FIELDS", "render_field", "is_diagnosis_field"]

#: fields that name the diagnosis, histology, organ or site (left out by exclude_diagnosis_fields)
DIAGNOSIS_FIELDS = (
    "histological_type", "histological_type_other", "tumor_tissue_site", "anatomic_neoplasm_subdivision",
    "icd_o_3_histology", "icd_o_3_site", "icd_10", "blca_diagnosis_subtype", "thyroid_focus_type",
    "thyroid_tumor_location", "location_in_lung_parenchyma", "breast_surgical_procedure",
    "initial_pathologic_diagnosis_method", "cancer_type", "project", "disease", "diagnosis",
    "primary_diagnosis", "tissue_or_organ_of_origin", "site_of_resection_or_biopsy", "morphology",
)
_DIAG_PATTERN = re.compile(r"histolog|icd_|diagnosis_(?:subtype|method)|primary_diagnosis|tissue_site|morpholog|"
                           r"primary_site|organ_of_origin", re.IGNORECASE)
# histological *grade* fields describe differentiation, not the diagnosis
_NOT_DIAG = re.compile(r"grade", re.IGNORECASE)

_LABELS = {
    "age_at_diagnosis": ("Age at diagnosis", "{} years"),
    "year_of_diagnosis": ("Year of diagnosis", "{}"),
    "pathologic_T": ("Pathologic T category", "{}"),
    "pathologic_N": ("Pathologic N category", "{}"),
    "pathologic_M": ("Pathologic M category", "{}"),
    "ajcc_pathologic_tumor_stage_cdr": ("AJCC pathologic tumor stage", "{}"),
    "ajcc_system_version": ("AJCC staging system edition", "{}"),
    "OS": ("Overall survival event", "{}"),
    "DSS": ("Disease-specific survival event", "{}"),
    "PFI": ("Progression-free interval event", "{}"),
    "OS_time_days": ("Overall survival time", "{} days"),
    "DSS_time_days": ("Disease-specific survival time", "{} days"),
    "PFI_time_days": ("Progression-free interval time", "{} days"),
    "tumor_status_cdr": ("Tumor status", "{}"),
    "vital_status_cdr": ("Vital status", "{}"),
    "prior_dx": ("Prior malignancy diagnosis", "{}"),
}


def is_diagnosis_field(name: str) -> bool:
    """Whether a clinical field names the diagnosis, histology, organ or site."""
    return name in DIAGNOSIS_FIELDS or (bool(_DIAG_PATTERN.search(name)) and not _NOT_DIAG.search(name))


def _fmt_value(value: Any) -> str:
    if isinstance(value, float):
        if value.is_integer():
            return str(int(value))
        return f"{value:.4g}"
    text = str(value).strip()
    return text.lower() if text.isupper() and len(text) > 3 else text


def render_field(field: str, value: Any) -> str:
    """One annotation sentence for a structured field, e.g. ``Age at diagnosis: 63 years.``"""
    label, template = _LABELS.get(field, (field.replace("_cdr", "").replace("_", " ").strip().capitalize(), "{}"))
    return f"{label}: {template.format(_fmt_value(value))}."


def _is_blank(value: Any) -> bool:
    return value is None or (isinstance(value, float) and np.isnan(value)) or str(value).strip() in ("", "nan")


class ClinicalSentencesReader(Reader):
    """Structured clinical fields rendered as annotation sentences (derived text, not a report).

    One item per (patient, field). ``ModalityData.source`` and ``extras['derived_from']`` say that
    the text is generated from structured fields. SPEC 2.5: render for every cancer or for none,
    and leave out fields that name the diagnosis when other signal is to be tested.

    Parameters
    ----------
    path: clinical table (CSV/TSV, gz ok), one row per patient.
    fields: fields to render (None = every field allowed by the options below).
    exclude_diagnosis_fields: drop fields naming the diagnosis/histology/organ/site (see DIAGNOSIS_FIELDS).
    shared_fields_only: keep only fields filled for at least ``min_field_coverage`` of the patients
        of *every* included cancer, so the set of fields does not reveal the cancer.
    min_field_coverage: coverage threshold used by shared_fields_only.
    cancers: cancers to render (None = all in the table). Rendering for only some cancers makes
        availability leak the label (SPEC 2.5); a note says so.
    id_column, cancer_column: columns of the table.
    """

    provides = ("clinical",)

    def __init__(self, path: str = "", fields: list | None = None, exclude_diagnosis_fields: bool = True,
                 shared_fields_only: bool = True, min_field_coverage: float = 0.5, cancers: list | None = None,
                 id_column: str = "auto", cancer_column: str = "cancer_type", modality: str = "clinical"):
        self.path = path
        self.fields = fields
        self.exclude_diagnosis_fields = exclude_diagnosis_fields
        self.shared_fields_only = shared_fields_only
        self.min_field_coverage = min_field_coverage
        self.cancers = cancers
        self.id_column = id_column
        self.cancer_column = cancer_column
        self.modality = modality

    def fingerprint_inputs(self) -> list[str]:
        return resolve_paths(self.path, what="clinical table", param="path")

    def read(self, ctx: Any = None) -> RawDataset:
        path = self.fingerprint_inputs()[0]
        notes: list[str] = []
        df, idc, cc = self._table(path, notes)
        fields = self._fields(df, idc, cc, path, notes)
        return self._dataset(df, idc, cc, fields, path, notes)

    def _table(self, path: str, notes: list[str]) -> tuple[Any, str, str | None]:
        """(table with one row per 12-char barcode of the wanted cancers, id column, cancer column or None)."""
        df = read_table(path)
        idc = pick_column(df.columns, self.id_column, path=path)
        cc = pick_column(df.columns, self.cancer_column, path=path, role="cancer", required=False)
        df = df.copy()
        df[idc] = barcodes12(df[idc])
        df = df.drop_duplicates(idc)
        if self.cancers is not None:
            if cc is None:
                raise DataError("cancers given but the table has no cancer column", where=path,
                                hint="set cancer_column")
            df = df[df[cc].astype(str).isin([str(c) for c in self.cancers])]
            present = sorted(df[cc].astype(str).unique())
            notes.append(f"clinical: rendered for {', '.join(present)} (cancers parameter); render it for every "
                         "cancer of the study, else its availability can leak the label (SPEC 2.5)")
        if df.empty:
            raise DataError("no patient left in the clinical table", where=path, hint="check cancers")
        return df, idc, cc

    def _fields(self, df: Any, idc: str, cc: str | None, path: str, notes: list[str]) -> list[str]:
        """The fields to render: ``fields``, minus diagnosis fields, minus fields not shared by every cancer."""
        candidates = [c for c in df.columns if c not in (idc, cc)]
        if self.fields is not None:
            unknown = [f for f in self.fields if f not in df.columns]
            if unknown:
                raise DataError(f"unknown clinical fields {unknown} (columns: {candidates[:15]}...)", where=path,
                                hint="pick fields among the table's columns")
            candidates = [f for f in self.fields if f in candidates]
        if self.exclude_diagnosis_fields:
            dropped = [c for c in candidates if is_diagnosis_field(c)]
            candidates = [c for c in candidates if not is_diagnosis_field(c)]
            if dropped:
                notes.append(f"clinical: left out diagnosis-naming fields {dropped}")
        if self.shared_fields_only and cc is not None:
            filled = df[candidates].notna() & (df[candidates].astype(str).apply(lambda s: s.str.strip()) != "")
            cov = filled.groupby(df[cc].astype(str).to_numpy()).mean()
            ok = (cov >= self.min_field_coverage).all(axis=0)
            dropped = [c for c in candidates if not ok[c]]
            candidates = [c for c in candidates if ok[c]]
            if dropped:
                notes.append(f"clinical: {len(dropped)} fields not filled for >= {self.min_field_coverage:.0%} of "
                             f"every cancer were left out (shared_fields_only)")
        if not candidates:
            raise DataError("no clinical field left to render", where=path,
                            hint="relax shared_fields_only / exclude_diagnosis_fields or list fields")
        return candidates

    def _dataset(self, df: Any, idc: str, cc: str | None, fields: list[str], path: str,
                 notes: list[str]) -> RawDataset:
        pids, items, texts, item_fields, cancers = [], [], [], [], []
        cancer_vals = df[cc].astype(str).to_numpy() if cc else np.full(len(df), "")
        values = df[fields].to_numpy(dtype=object)
        for i, pid in enumerate(df[idc].to_numpy()):
            for j, f in enumerate(fields):
                if _is_blank(values[i, j]):
                    continue
                pids.append(pid)
                items.append(f"{pid}:{f}")
                texts.append(render_field(f, values[i, j]))
                item_fields.append(f)
                cancers.append(cancer_vals[i])
        pid_arr = np.array(pids)
        labels = {"field": np.array(item_fields)}
        if cc:
            labels["cancer_type"] = np.array(cancers)
        data = ModalityData(
            modality=self.modality, kind="text", patient_ids=pid_arr, item_ids=np.array(items), data=texts,
            labels=labels,
            source=f"clinical-sentences: DERIVED from structured clinical fields of {os.path.basename(path)} "
                   "(rendered annotation sentences, not report text)",
            fingerprint=fingerprint([path], self.get_params()),
            extras={"derived_from": "structured-fields", "fields": fields},
        )
        notes.append(f"clinical: {len(fields)} fields rendered: {', '.join(fields)}")
        out = RawDataset(modalities={self.modality: data}, notes=notes)
        if cc:
            out.labels["cancer_type"] = labels_from_items(pid_arr, labels["cancer_type"])
            notes.append(availability_note(self.modality, pid_arr, out.labels["cancer_type"], len(pid_arr)))
        return out


@hookimpl
def register_readers(register):
    register("clinical-sentences", ClinicalSentencesReader, modality="clinical", tags=["text", "derived"])
