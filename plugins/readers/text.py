"""Report reader; registers ``report-text``: pathology reports (CSV/JSONL, a folder of
.txt/.pdf) as OCR-cleaned sentences, one item per sentence. (Structured clinical
fields rendered as sentences are ``clinical-sentences`` in ``readers/clinical.py``.)

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
        return _folder_records(path) if os.path.isdir(path) else self._table_records(path)

    def _table_records(self, path: str) -> list[dict[str, Any]]:
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
        return [{"patient_id": pid, "text": text if isinstance(text, str) else "", "cancer_type": c, "source": s}
                for pid, text, c, s in zip(ids, texts, cancers, sources)]

    def _by_patient(self, recs: list[dict[str, Any]]) -> dict[str, list[dict[str, Any]]]:
        """Reports grouped by patient (cancer filled from ``labels_file``, filtered by ``cancers``)."""
        cmap = load_cancer_map(self.labels_file)
        by_patient: dict[str, list[dict[str, Any]]] = {}
        for r in recs:
            if not r["cancer_type"] or r["cancer_type"] in ("nan", "None"):
                r["cancer_type"] = cmap.get(r["patient_id"])
            if self.cancers is not None and r["cancer_type"] not in set(self.cancers):
                continue
            by_patient.setdefault(r["patient_id"], []).append(r)
        return by_patient

    def _sentences(self, group: list[dict[str, Any]]) -> tuple[list[dict[str, Any]], list[str], int]:
        """(reports kept by ``duplicate_reports``, their sentences, repeated sentences removed)."""
        if len(group) > 1 and self.duplicate_reports != "keep-all":
            group = [max(group, key=lambda r: len(r["text"] or ""))] if self.duplicate_reports == "longest" \
                else group[:1]
        sentences: list[str] = []
        for r in group:
            text = clean_ocr(r["text"]) if self.clean else (r["text"] or "")
            sentences.extend(split_sentences(text, min_chars=self.min_sentence_chars,
                                             min_alpha=self.min_alpha_fraction))
        removed = 0
        if self.dedup_sentences:
            before = len(sentences)
            sentences = dedup_sentences(sentences)
            removed = before - len(sentences)
        if self.max_sentences_per_patient is not None:
            sentences = sentences[: int(self.max_sentences_per_patient)]
        return group, sentences, removed

    def read(self, ctx: Any = None) -> RawDataset:
        if self.duplicate_reports not in DUPLICATE_POLICIES:
            raise DataError(f"unknown duplicate_reports {self.duplicate_reports!r}", where="duplicate_reports",
                            hint=f"one of {DUPLICATE_POLICIES}")
        by_patient = self._by_patient(self._records())
        notes: list[str] = []
        pids, items, texts, cancers, sources = [], [], [], [], []
        n_removed = 0
        for pid, group in by_patient.items():
            group, sentences, removed = self._sentences(group)
            n_removed += removed
            pids += [pid] * len(sentences)
            items += [f"{pid}:s{j}" for j in range(len(sentences))]
            texts += sentences
            cancers += [group[0]["cancer_type"] or ""] * len(sentences)
            sources += [group[0]["source"]] * len(sentences)
        n_dup = sum(len(v) > 1 for v in by_patient.values())
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
        return self._dataset(np.array(pids), items, texts, cancers, sources, notes)

    def _dataset(self, pid_arr: np.ndarray, items: list[str], texts: list[str], cancers: list[str],
                 sources: list[str], notes: list[str]) -> RawDataset:
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


def _folder_records(path: str) -> list[dict[str, Any]]:
    """One record per ``.txt``/``.pdf`` file of a folder; the patient from the file name, else the text."""
    recs: list[dict[str, Any]] = []
    for name in sorted(n for n in os.listdir(path) if not n.startswith(".")):
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
                            where=full, hint="name report files after the patient barcode (TCGA-XX-XXXX...)")
        recs.append({"patient_id": ids[0], "text": text, "cancer_type": None, "source": name})
    if not recs:
        raise DataError("no .txt or .pdf report in the folder", where=path,
                        hint="put one report per file, named after the patient barcode")
    return recs


__all__ = ["ReportTextReader", "clean_ocr", "split_sentences", "dedup_sentences", "pdf_text"]


@hookimpl
def register_readers(register):
    register("report-text", ReportTextReader, modality="text", tags=["text", "ocr", "pdf"])
