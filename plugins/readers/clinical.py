"""Clinical reader; registers ``clinical-sentences``: structured clinical fields rendered as
annotation sentences (derived text, clearly marked as such; not report text).

One item per (patient, field), e.g. ``Age at diagnosis: 63 years.``. SPEC 2.5:
render for every cancer or for none, and leave out fields that name the
diagnosis (:data:`DIAGNOSIS_FIELDS`, :func:`is_diagnosis_field`) when other
signal is to be tested.

Outcomes are labels, never text (issue 12): the survival endpoints of the TCGA
Clinical Data Resource (``OS``, ``DSS``, ``DFI``, ``PFI`` with ``<EP>_time_days``)
become patient labels ``<EP>`` (event, int 0/1) and ``<EP>_time`` (days, float)
that the ``survival`` task requests by name; patients with a missing event or a
missing or non-positive time are left out of that endpoint and counted in a note
(the run's data summary). Every outcome field (:func:`is_outcome_field`: the
endpoints, vital and tumour status, days to death or last follow-up) is left out
of the rendered sentences whatever the options, so the annotation text cannot
carry the endpoint. ``covariates`` adds ``age_at_diagnosis`` (float) and a coarse
``stage`` (I-IV) as labels, for clinical baselines.
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

__all__ = ["ClinicalSentencesReader", "DIAGNOSIS_FIELDS", "ENDPOINTS", "render_field", "is_diagnosis_field",
           "is_outcome_field", "coarse_stage"]

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

#: survival endpoints of the TCGA Clinical Data Resource: event column, time column (days)
ENDPOINTS = {"OS": "OS_time_days", "DSS": "DSS_time_days", "DFI": "DFI_time_days", "PFI": "PFI_time_days"}
#: outcome fields: never rendered as text (they are what survival models predict)
_OUTCOME = re.compile(r"^(OS|DSS|DFI|PFI)(_time(_days)?)?$|vital_status|tumor_status|days_to_(death|last)|"
                      r"death_days|last_contact|followup|follow_up|new_tumor_event|cause_of_death|"
                      r"(^|_)(os|dss|dfi|pfi)_(time|event|status)", re.IGNORECASE)
_STAGE = re.compile(r"stage\s*(IV|III|II|I|0)(?![IV])", re.IGNORECASE)

_LABELS = {
    "age_at_diagnosis": ("Age at diagnosis", "{} years"),
    "year_of_diagnosis": ("Year of diagnosis", "{}"),
    "pathologic_T": ("Pathologic T category", "{}"),
    "pathologic_N": ("Pathologic N category", "{}"),
    "pathologic_M": ("Pathologic M category", "{}"),
    "ajcc_pathologic_tumor_stage_cdr": ("AJCC pathologic tumor stage", "{}"),
    "ajcc_system_version": ("AJCC staging system edition", "{}"),
    "prior_dx": ("Prior malignancy diagnosis", "{}"),
}


def is_diagnosis_field(name: str) -> bool:
    """Whether a clinical field names the diagnosis, histology, organ or site."""
    return name in DIAGNOSIS_FIELDS or (bool(_DIAG_PATTERN.search(name)) and not _NOT_DIAG.search(name))


def is_outcome_field(name: str) -> bool:
    """Whether a clinical field records an outcome (survival endpoint, vital or tumour status, follow-up)."""
    return bool(_OUTCOME.search(name))


def coarse_stage(value: Any) -> str | None:
    """``Stage IIIA`` -> ``III``; ``Stage X``, blanks and anything unparsed -> None."""
    if _is_blank(value):
        return None
    m = _STAGE.search(str(value))
    return m.group(1).upper() if m else None


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
    endpoints: survival endpoints to expose as labels ``<EP>`` (event 0/1) and ``<EP>_time`` (days),
        among OS, DSS, DFI, PFI (None = each whose two columns the table has; [] = none).
    covariates: also expose ``age_at_diagnosis`` and a coarse ``stage`` (I-IV) as labels.
    """

    provides = ("clinical",)
    yields_labels = ("cancer_type", *[x for ep in ENDPOINTS for x in (ep, f"{ep}_time")], "age_at_diagnosis", "stage")

    def __init__(self, path: str = "", fields: list | None = None, exclude_diagnosis_fields: bool = True,
                 shared_fields_only: bool = True, min_field_coverage: float = 0.5, cancers: list | None = None,
                 id_column: str = "auto", cancer_column: str = "cancer_type", modality: str = "clinical",
                 endpoints: list | None = None, covariates: bool = True):
        self.path = path
        self.fields = fields
        self.exclude_diagnosis_fields = exclude_diagnosis_fields
        self.shared_fields_only = shared_fields_only
        self.min_field_coverage = min_field_coverage
        self.cancers = cancers
        self.id_column = id_column
        self.cancer_column = cancer_column
        self.modality = modality
        self.endpoints = endpoints
        self.covariates = covariates

    def fingerprint_inputs(self) -> list[str]:
        return resolve_paths(self.path, what="clinical table", param="path")

    def read(self, ctx: Any = None) -> RawDataset:
        path = self.fingerprint_inputs()[0]
        notes: list[str] = []
        df, idc, cc = self._table(path, notes)
        fields = self._fields(df, idc, cc, path, notes)
        out = self._dataset(df, idc, cc, fields, path, notes)
        self._outcome_labels(df, idc, path, out)
        return out

    def _outcome_labels(self, df: Any, idc: str, path: str, out: RawDataset) -> None:
        """Endpoint labels ``<EP>``/``<EP>_time`` (invalid ones dropped and counted) and covariate labels."""
        import pandas as pd

        wanted = list(ENDPOINTS) if self.endpoints is None else [str(e) for e in self.endpoints]
        unknown = [e for e in wanted if e not in ENDPOINTS]
        if unknown:
            raise DataError(f"unknown survival endpoints {unknown}", where=path,
                            hint=f"choose among {', '.join(ENDPOINTS)}")
        pids = df[idc].astype(str).to_numpy()
        for ep in wanted:
            tcol = ENDPOINTS[ep]
            if ep not in df.columns or tcol not in df.columns:
                if self.endpoints is not None:
                    raise DataError(f"endpoint {ep} needs columns {ep} and {tcol}", where=path,
                                    hint="leave it out of endpoints, or use a table with both columns")
                continue
            event = pd.to_numeric(df[ep], errors="coerce").to_numpy(dtype=float)
            time = pd.to_numeric(df[tcol], errors="coerce").to_numpy(dtype=float)
            missing = ~np.isfinite(event) | ~np.isin(event, (0.0, 1.0)) | ~np.isfinite(time)
            nonpos = ~missing & (time <= 0)
            ok = ~missing & ~nonpos
            out.labels[ep] = {p: int(e) for p, e in zip(pids[ok], event[ok])}
            out.labels[f"{ep}_time"] = {p: float(t) for p, t in zip(pids[ok], time[ok])}
            out.continuous_labels.add(f"{ep}_time")
            # worded without " patients": tcga-folder keeps such notes of its sub-readers
            out.notes.append(f"clinical: endpoint {ep}: (event, time) kept for {int(ok.sum())}, "
                             f"{int(event[ok].sum())} events; dropped {int(missing.sum())} with a missing event "
                             f"or time and {int(nonpos.sum())} with a time <= 0")
        if self.covariates:
            self._covariate_labels(df, pids, out)

    @staticmethod
    def _covariate_labels(df: Any, pids: np.ndarray, out: RawDataset) -> None:
        import pandas as pd

        if "age_at_diagnosis" in df.columns:
            age = pd.to_numeric(df["age_at_diagnosis"], errors="coerce").to_numpy(dtype=float)
            out.labels["age_at_diagnosis"] = {p: float(a) for p, a in zip(pids, age) if np.isfinite(a)}
            out.continuous_labels.add("age_at_diagnosis")
        col = next((c for c in ("ajcc_pathologic_tumor_stage_cdr", "ajcc_pathologic_tumor_stage",
                                "pathologic_stage") if c in df.columns), None)
        if col is not None:
            stages = [coarse_stage(v) for v in df[col].to_numpy(dtype=object)]
            out.labels["stage"] = {p: st for p, st in zip(pids, stages) if st is not None}
            out.notes.append(f"clinical: stage label from {col} for {len(out.labels['stage'])} "
                             "(I-IV; stage X or missing left out)")

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
            outcome = [f for f in self.fields if is_outcome_field(f)]
            if outcome:
                raise DataError(f"outcome fields {outcome} cannot be rendered as text: they would leak the "
                                "survival endpoints into the annotations", where=path,
                                hint="remove them from fields; endpoints are labels (see the endpoints parameter)")
            candidates = [f for f in self.fields if f in candidates]
        outcome = [c for c in candidates if is_outcome_field(c)]
        if outcome:
            candidates = [c for c in candidates if not is_outcome_field(c)]
            notes.append(f"clinical: outcome fields never rendered (labels only): {outcome}")
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
        leaked = sorted({f for f in item_fields if is_outcome_field(f)})
        if leaked:  # guarded in _fields; checked again on what is actually rendered
            raise DataError(f"outcome fields {leaked} would be rendered as text", where=path)
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
