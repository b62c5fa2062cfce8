"""Text readers: pathology reports (``report-text``) and structured clinical fields
rendered as sentences (``clinical-sentences``).

OCR clean-up (:func:`clean_ocr`) removes what the TCGA report PDFs' text layers
are full of: ``--- Page n ---`` markers, UUIDs, TCGA barcodes (they identify the
patient, not the disease), redaction banners (``PRRedacted``), barcode strokes
(``IIII lll 1111 !!``) and other runs of junk characters. Sentence segmentation
(:func:`split_sentences`) splits on line breaks and sentence punctuation, glues
short header lines onto the line that follows (``Tumor size`` + ``2.5 cm``),
and drops fragments that are too short or mostly non-letters.
"""

from __future__ import annotations

import os
import re
from typing import Any, Iterable

import numpy as np

from fusionkit import hookimpl
from fusionkit import ModalityData, RawDataset, Reader
from fusionkit import DataError

from fusionkit_plugins.readers.common import (availability_note, barcodes12, find_barcodes, fingerprint, labels_from_items, load_cancer_map, pick_column, read_table,
                             resolve_paths)

# --------------------------------------------------------------------------- OCR clean-up

_PAGE = re.compile(r"-{2,}\s*Page\s*\d+\s*-{2,}", re.IGNORECASE)
_UUID = re.compile(r"UUID\s*:?\s*[0-9A-Z]{6,10}(?:\s?-\s?[0-9A-Z]{3,13}){2,4}", re.IGNORECASE)
_UUID_BARE = re.compile(r"\b[0-9A-F]{8}-[0-9A-F]{4}-[0-9A-F]{4}-[0-9A-F]{4}-[0-9A-F]{12}\b", re.IGNORECASE)
# TCGA barcodes, also OCR-garbled ("TCGA- BL-A5ZZ -01A-PR", "TCGA-BL-A13 -01A"); never across lines
_BARCODE = re.compile(r"TCGA ?[-.]? ?[A-Z0-9]{2} ?[-.] ?[A-Z0-9]{3,4}(?: ?- ?[A-Z0-9]{2,3}\b)*(?:-PR)?",
                      re.IGNORECASE)
_BARCODE_REST = re.compile(r"\bTCGA\b(?: ?[-.] ?[A-Z0-9]{1,4})?", re.IGNORECASE)
_REDACTED = re.compile(r"\b\w*Redacted\w*\b|\[?\s*redacted\s*\]?", re.IGNORECASE)
# barcode strokes: tokens made of I l 1 | ! ' ... (OCR of the printed barcode)
_STROKE_RUN = re.compile(r"[Il1|!i0]*[Il|]{4}[Il1|!i0 ]*")
_STROKE_TOKEN = re.compile(r"[Il1|!¦:;'`,.\-_/\\]{2,}|[IlHNUVi1|!()]*[Il]{3,}[IlHNUVi1|!()]*")
_JUNK = re.compile(r"[^\w\s.,;:()%/+\-'\"<>=&°#]+")
_SPACES = re.compile(r"[ \t\f\v]+")


def clean_ocr(text: str) -> str:
    """Remove OCR debris from one report (keeps line breaks; see the module doc)."""
    if not isinstance(text, str):
        return ""
    text = text.replace("\r\n", "\n").replace("\r", "\n")
    text = _PAGE.sub("\n", text)
    text = _UUID.sub(" ", text)
    text = _UUID_BARE.sub(" ", text)
    text = _REDACTED.sub(" ", text)
    text = _BARCODE.sub(" ", text)
    text = _BARCODE_REST.sub(" ", text)
    lines = []
    for line in text.split("\n"):
        if "II" in line or "ll" in line or "||" in line or "!!" in line or "11" in line:
            line = _STROKE_RUN.sub(" ", line)
            line = " ".join(t for t in line.split() if not _STROKE_TOKEN.fullmatch(t))
        line = _JUNK.sub(" ", line)
        line = _SPACES.sub(" ", line).strip(" ,;-_|").lstrip(".:")
        lines.append(line)
    return "\n".join(lines)


_ABBREV = ("dr", "mr", "mrs", "ms", "no", "vs", "approx", "fig", "st", "e.g", "i.e", "cf", "etc", "ca", "pt")
_ABBREV_END = re.compile(r"(?:^|\s)(%s)\.$" % "|".join(re.escape(a) for a in _ABBREV), re.IGNORECASE)
_WORD = re.compile(r"[A-Za-z]{2,}")
_SPLIT = re.compile(r"(?<=[.!?;])\s+(?=[\"'(]?[A-Z0-9])")


def _quality(sentence: str, min_chars: int, min_alpha: float) -> bool:
    s = sentence.strip()
    if len(s) < min_chars:
        return False
    n_chars = len(s) - s.count(" ")
    if n_chars <= 0 or sum(map(str.isalpha, s)) / n_chars < min_alpha:
        return False
    if len(_WORD.findall(s)) < 3:
        return False
    # a sentence of mostly 1-2 letter tokens is OCR noise
    tokens = s.split()
    return sum(len(t) <= 2 for t in tokens) / len(tokens) < 0.6


def split_sentences(text: str, *, min_chars: int = 20, min_alpha: float = 0.6, max_chars: int = 600) -> list[str]:
    """Sentences of a cleaned report, robust to OCR noise (see the module doc)."""
    segments: list[str] = []
    lines: list[str] = []
    for line in text.split("\n"):  # re-join wrapped lines: no end punctuation, next starts lower-case
        line = line.strip()
        if not line:
            continue
        if lines and not lines[-1].endswith((".", ":", ";", "!", "?")) and line[0].islower():
            lines[-1] = f"{lines[-1]} {line}"
        else:
            lines.append(line)
    for line in lines:
        parts = _SPLIT.split(line)
        merged: list[str] = []
        for part in parts:  # undo splits after abbreviations ("Dr. Smith")
            if merged and _ABBREV_END.search(merged[-1]):
                merged[-1] = merged[-1] + " " + part
            else:
                merged.append(part)
        segments.extend(p.strip() for p in merged if p.strip())
    # glue short headers ("Tumor size") onto the next segment
    out: list[str] = []
    carry = ""
    for seg in segments:
        if carry:
            seg = f"{carry}: {seg}" if not carry.endswith((":", ".")) else f"{carry} {seg}"
            carry = ""
        if not seg.endswith((".", "!", "?", ";")) and (len(seg) < min_chars or len(seg.split()) <= 3):
            # a header to glue onto the next segment; fragments without a real word are dropped
            carry = seg if re.search(r"[A-Za-z]{3,}", seg) else ""
            continue
        out.append(seg)
    if carry:
        out.append(carry)
    result = []
    for s in out:
        s = _SPACES.sub(" ", s).strip()
        while len(s) > max_chars:  # very long OCR run-ons: cut at the last space
            cut = s.rfind(" ", 0, max_chars)
            cut = cut if cut > min_chars else max_chars
            head, s = s[:cut].strip(), s[cut:].strip()
            if _quality(head, min_chars, min_alpha):
                result.append(head)
        if _quality(s, min_chars, min_alpha):
            result.append(s)
    return result


def _norm_sentence(s: str) -> str:
    return re.sub(r"[^a-z0-9]+", " ", s.lower()).strip()


def dedup_sentences(sentences: Iterable[str]) -> list[str]:
    """Drop sentences identical (case/punctuation-insensitive) to an earlier one."""
    seen: set[str] = set()
    out = []
    for s in sentences:
        key = _norm_sentence(s)
        if key and key not in seen:
            seen.add(key)
            out.append(s)
    return out


def pdf_text(path: str) -> str:
    """Text layer of a PDF (pypdf); DataError when pypdf is missing or the file is not a PDF."""
    try:
        import pypdf
    except ImportError as exc:  # pragma: no cover - pypdf is a dependency of the ml extra
        raise DataError("reading PDFs needs pypdf", where=path, hint="pip install pypdf") from exc
    try:
        reader = pypdf.PdfReader(path)
        return "\n".join((page.extract_text() or "") for page in reader.pages)
    except Exception as exc:
        raise DataError(f"cannot read PDF ({type(exc).__name__}: {exc})", where=path,
                        hint="a scanned PDF without a text layer needs OCR first (e.g. ocrmypdf)") from exc


# --------------------------------------------------------------------------- report-text

DUPLICATE_POLICIES = ("longest", "first", "keep-all")


class ReportTextReader(Reader):
    """Pathology reports (CSV/JSONL with a text column, a folder of .txt/.pdf) as one item per sentence.

    Parameters
    ----------
    path: a CSV/TSV (gz ok) or JSONL file, or a folder of ``.txt``/``.pdf`` files (one report each;
        patient id from the file name, else the only barcode in the text).
    text_column, id_column, cancer_column, source_column: columns of a table input.
    labels_file: optional patient -> cancer_type table used when there is no cancer column.
    clean: apply the OCR clean-up; min_sentence_chars, min_alpha_fraction: sentence quality filter.
    duplicate_reports: several reports of one patient (e.g. two OCR versions): ``longest`` keeps the
        longest report, ``first`` the first, ``keep-all`` merges them (their sentences are then de-duplicated).
    dedup_sentences: drop repeated sentences within a patient.
    max_sentences_per_patient: cap (first n sentences in reading order; None = all).
    cancers: keep only patients of these cancers (None = all).
    """

    provides = ("text",)

    def __init__(self, path: str = "", text_column: str = "text", id_column: str = "auto",
                 cancer_column: str | None = "cancer_type", source_column: str | None = "source",
                 labels_file: str | None = None, clean: bool = True, min_sentence_chars: int = 20,
                 min_alpha_fraction: float = 0.6, duplicate_reports: str = "longest",
                 dedup_sentences: bool = True, max_sentences_per_patient: int | None = None,
                 cancers: list | None = None, modality: str = "text"):
        self.path = path
        self.text_column = text_column
        self.id_column = id_column
        self.cancer_column = cancer_column
        self.source_column = source_column
        self.labels_file = labels_file
        self.clean = clean
        self.min_sentence_chars = min_sentence_chars
        self.min_alpha_fraction = min_alpha_fraction
        self.duplicate_reports = duplicate_reports
        self.dedup_sentences = dedup_sentences
        self.max_sentences_per_patient = max_sentences_per_patient
        self.cancers = cancers
        self.modality = modality

    def fingerprint_inputs(self) -> list[str]:
        return resolve_paths(self.path, what="report input", param="path") + \
            ([self.labels_file] if self.labels_file else [])

    def _records(self) -> list[dict[str, Any]]:
        """One dict per report: patient_id, text, cancer_type, source."""
        path = resolve_paths(self.path, what="report input", param="path")[0]
        recs: list[dict[str, Any]] = []
        if os.path.isdir(path):
            names = sorted(n for n in os.listdir(path) if not n.startswith("."))
            for name in names:
                full = os.path.join(path, name)
                if os.path.isdir(full):
                    continue
                low = name.lower()
                if low.endswith(".pdf"):
                    text = pdf_text(full)
                elif low.endswith((".txt", ".text")):
                    with open(full, encoding="utf-8", errors="replace") as fh:
                        text = fh.read()
                else:
                    continue
                ids = find_barcodes(name) or find_barcodes(text)
                if len(ids) != 1:
                    raise DataError(f"cannot tell the patient of report {name!r} "
                                    f"({'no' if not ids else len(ids)} TCGA barcodes in its name/text)",
                                    where=full, hint="name report files after the patient barcode "
                                                     "(TCGA-XX-XXXX...)")
                recs.append({"patient_id": ids[0], "text": text, "cancer_type": None, "source": name})
            if not recs:
                raise DataError("no .txt or .pdf report in the folder", where=path,
                                hint="put one report per file, named after the patient barcode")
            return recs
        low = path.lower()
        if low.endswith((".jsonl", ".jsonl.gz", ".ndjson")):
            import pandas as pd

            try:
                df = pd.read_json(path, lines=True)
            except ValueError as exc:
                raise DataError(f"cannot read JSONL: {exc}", where=path, hint="one JSON object per line") from exc
        else:
            df = read_table(path)
        tc = pick_column(df.columns, self.text_column, path=path, role="text", candidates=("text", "ocr_text"))
        idc = pick_column(df.columns, self.id_column, path=path)
        cc = pick_column(df.columns, self.cancer_column, path=path, role="cancer", required=False) \
            if self.cancer_column else None
        sc = pick_column(df.columns, self.source_column, path=path, role="source", required=False) \
            if self.source_column else None
        ids = barcodes12(df[idc])
        texts = df[tc].tolist()
        cancers = df[cc].astype(str).tolist() if cc else [None] * len(df)
        sources = df[sc].astype(str).tolist() if sc else [path] * len(df)
        for pid, text, c, s in zip(ids, texts, cancers, sources):
            recs.append({"patient_id": pid, "text": text if isinstance(text, str) else "", "cancer_type": c,
                         "source": s})
        return recs

    def read(self, ctx: Any = None) -> RawDataset:
        if self.duplicate_reports not in DUPLICATE_POLICIES:
            raise DataError(f"unknown duplicate_reports {self.duplicate_reports!r}", where="duplicate_reports",
                            hint=f"one of {DUPLICATE_POLICIES}")
        recs = self._records()
        cmap = load_cancer_map(self.labels_file)
        notes: list[str] = []
        by_patient: dict[str, list[dict[str, Any]]] = {}
        for r in recs:
            if not r["cancer_type"] or r["cancer_type"] in ("nan", "None"):
                r["cancer_type"] = cmap.get(r["patient_id"])
            if self.cancers is not None and r["cancer_type"] not in set(self.cancers):
                continue
            by_patient.setdefault(r["patient_id"], []).append(r)
        n_dup = sum(len(v) > 1 for v in by_patient.values())
        pids, items, texts, cancers, sources = [], [], [], [], []
        n_removed = 0
        for pid, group in by_patient.items():
            if len(group) > 1 and self.duplicate_reports != "keep-all":
                if self.duplicate_reports == "longest":
                    group = [max(group, key=lambda r: len(r["text"] or ""))]
                else:
                    group = group[:1]
            sentences: list[str] = []
            for r in group:
                text = clean_ocr(r["text"]) if self.clean else (r["text"] or "")
                sentences.extend(split_sentences(text, min_chars=self.min_sentence_chars,
                                                 min_alpha=self.min_alpha_fraction))
            if self.dedup_sentences:
                before = len(sentences)
                sentences = dedup_sentences(sentences)
                n_removed += before - len(sentences)
            if self.max_sentences_per_patient is not None:
                sentences = sentences[: int(self.max_sentences_per_patient)]
            for j, s in enumerate(sentences):
                pids.append(pid)
                items.append(f"{pid}:s{j}")
                texts.append(s)
                cancers.append(group[0]["cancer_type"] or "")
                sources.append(group[0]["source"])
        if n_dup:
            notes.append(f"text: {n_dup} patients had more than one report; duplicate_reports="
                         f"{self.duplicate_reports}")
        if n_removed:
            notes.append(f"text: {n_removed} repeated sentences removed within patients")
        with_text = set(pids)
        no_text = [p for p in by_patient if p not in with_text]
        if no_text:
            notes.append(f"text: {len(no_text)} patients have no usable sentence (empty or unreadable reports)")
        if not pids:
            raise DataError("no usable sentence in any report", where=str(self.path),
                            hint="check text_column; lower min_sentence_chars / min_alpha_fraction")
        pid_arr = np.array(pids)
        labels = {"report_source": np.array(sources)}
        if any(cancers):
            labels["cancer_type"] = np.array(cancers)
        data = ModalityData(modality=self.modality, kind="text", patient_ids=pid_arr, item_ids=np.array(items),
                            data=texts, labels=labels,
                            source=f"report-text: pathology reports ({os.path.basename(str(self.path))}), "
                                   "OCR-cleaned sentences",
                            fingerprint=fingerprint(self.fingerprint_inputs(), self.get_params()))
        out = RawDataset(modalities={self.modality: data}, notes=notes)
        if "cancer_type" in labels:
            out.labels["cancer_type"] = labels_from_items(pid_arr, labels["cancer_type"])
            notes.append(availability_note(self.modality, pid_arr, out.labels["cancer_type"], len(pid_arr)))
        return out


# --------------------------------------------------------------------------- clinical-sentences

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
        df = read_table(path)
        idc = pick_column(df.columns, self.id_column, path=path)
        cc = pick_column(df.columns, self.cancer_column, path=path, role="cancer", required=False)
        df = df.copy()
        df[idc] = barcodes12(df[idc])
        df = df.drop_duplicates(idc)
        notes: list[str] = []
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
        pids, items, texts, fields, cancers = [], [], [], [], []
        cancer_vals = df[cc].astype(str).to_numpy() if cc else np.full(len(df), "")
        values = df[candidates].to_numpy(dtype=object)
        for i, pid in enumerate(df[idc].to_numpy()):
            for j, f in enumerate(candidates):
                v = values[i, j]
                if v is None or (isinstance(v, float) and np.isnan(v)) or str(v).strip() in ("", "nan"):
                    continue
                pids.append(pid)
                items.append(f"{pid}:{f}")
                texts.append(render_field(f, v))
                fields.append(f)
                cancers.append(cancer_vals[i])
        pid_arr = np.array(pids)
        labels = {"field": np.array(fields)}
        if cc:
            labels["cancer_type"] = np.array(cancers)
        data = ModalityData(
            modality=self.modality, kind="text", patient_ids=pid_arr, item_ids=np.array(items), data=texts,
            labels=labels,
            source=f"clinical-sentences: DERIVED from structured clinical fields of {os.path.basename(path)} "
                   "(rendered annotation sentences, not report text)",
            fingerprint=fingerprint([path], self.get_params()),
            extras={"derived_from": "structured-fields", "fields": candidates},
        )
        notes.append(f"clinical: {len(candidates)} fields rendered: {', '.join(candidates)}")
        out = RawDataset(modalities={self.modality: data}, notes=notes)
        if cc:
            out.labels["cancer_type"] = labels_from_items(pid_arr, labels["cancer_type"])
            notes.append(availability_note(self.modality, pid_arr, out.labels["cancer_type"], len(pid_arr)))
        return out


__all__ = ["ReportTextReader", "ClinicalSentencesReader", "clean_ocr", "split_sentences", "dedup_sentences",
           "render_field", "is_diagnosis_field"]


@hookimpl
def register_readers(register):
    register("report-text", ReportTextReader, modality="text", tags=["text", "ocr", "pdf"])
    register("clinical-sentences", ClinicalSentencesReader, modality="clinical", tags=["text", "derived"])
