"""Built-in readers: unit tests on tiny files in tmp_path, then real-data tests on ../shared/data."""

from __future__ import annotations

import gzip
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from fusionkit.errors import DataError
from fusionkit_plugins.readers.clinical import ClinicalSentencesReader
from fusionkit_plugins.readers.image import (TilesReader, WsiReader, _open_slide, choose_level, sample_capped, tile_grid,
                                             white_fraction)
from fusionkit_plugins.readers.maf import MafReader
from fusionkit_plugins.readers.rna import GdcStarCountsReader, RnaTableReader
from fusionkit_plugins.readers.tcga import TcgaFolderReader, TcgaLabelsReader
from fusionkit_plugins.readers.text import ReportTextReader, clean_ocr, split_sentences

READER_NAMES = ("rna-table", "gdc-star-counts", "maf", "report-text", "clinical-sentences", "tiles", "wsi",
                "tcga-labels", "tcga-folder", "synthetic-tcga")


# --------------------------------------------------------------------------- registration

def test_all_readers_registered_with_defaults(plugin_system):
    for name in READER_NAMES:
        info = plugin_system.info("reader", name)
        assert info.builtin
        reader = plugin_system.create("reader", name, {})  # defaults bind
        assert reader.component_kind == "reader"


def test_importing_readers_stays_light():
    code = ("import sys, fusionkit_plugins.readers.tcga, fusionkit_plugins.readers.synthetic; "
            "heavy = [m for m in ('torch', 'timm', 'sentence_transformers', 'faiss', 'sklearn') if m in sys.modules]; "
            "print(','.join(heavy))")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == ""


# --------------------------------------------------------------------------- rna-table

def _table(path: Path, ids, genes, values, extra=None, sep=","):
    df = pd.DataFrame(values, columns=genes)
    df.insert(0, "patient_id", ids)
    for k, v in (extra or {}).items():
        df[k] = v
    if str(path).endswith(".parquet"):
        df.to_parquet(path)
    else:
        df.to_csv(path, index=False, sep=sep, compression="gzip" if str(path).endswith(".gz") else None)
    return str(path)


@pytest.fixture
def two_tables(tmp_path):
    a = _table(tmp_path / "a.csv", ["TCGA-AA-0001-01A", "TCGA-AA-0002", "TCGA-AA-0003"], ["G1", "G2", "G3"],
               [[1, 2, 3], [4, 5, 6], [7, 8, 9]], {"cancer": ["BRCA"] * 3})
    b = _table(tmp_path / "b.tsv.gz", ["TCGA-BB-0001", "TCGA-BB-0002"], ["G2", "G3", "G4"],
               [[10, 20, 30], [40, 50, 60]], {"cancer": ["THCA"] * 2}, sep="\t")
    return a, b


def test_rna_single_table_ids_and_cancer(two_tables):
    ds = RnaTableReader(paths=two_tables[0], cancer_column="cancer").read(None)
    md = ds.modalities["rna"]
    assert md.kind == "matrix" and md.data.dtype == np.float32 and md.data.shape == (3, 3)
    assert md.patient_ids[0] == "TCGA-AA-0001"  # cut to the 12-char barcode
    assert md.feature_names == ["G1", "G2", "G3"]
    assert list(md.labels["cancer_type"]) == ["BRCA"] * 3
    assert ds.labels["cancer_type"]["TCGA-AA-0002"] == "BRCA"
    assert md.fingerprint


def test_rna_different_genes_need_a_strategy(two_tables):
    with pytest.raises(DataError) as err:
        RnaTableReader(paths=list(two_tables), cancer_column="cancer").read(None)
    assert "combine" in str(err.value) and "shared" in str(err.value)


def test_rna_shared_union_and_per_source_scale(two_tables):
    shared = RnaTableReader(paths=list(two_tables), cancer_column="cancer", combine="shared").read(None)
    assert shared.modalities["rna"].feature_names == ["G2", "G3"]
    assert shared.modalities["rna"].data.shape == (5, 2)
    with pytest.raises(DataError, match="fill"):
        RnaTableReader(paths=list(two_tables), cancer_column="cancer", combine="union").read(None)
    union = RnaTableReader(paths=list(two_tables), cancer_column="cancer", combine="union", fill="mean").read(None)
    md = union.modalities["rna"]
    assert md.feature_names == ["G1", "G2", "G3", "G4"]
    g1, g4 = md.data[:, 0], md.data[:, 3]
    assert g1[3] == pytest.approx(4.0) and g4[0] == pytest.approx(45.0)  # means of the patients that have them
    assert any("filled" in n for n in union.notes)
    zero = RnaTableReader(paths=list(two_tables), cancer_column="cancer", combine="union", fill=0).read(None)
    assert zero.modalities["rna"].data[3, 0] == 0
    pss = RnaTableReader(paths=list(two_tables), cancer_column="cancer", combine="per-source-scale").read(None)
    X = pss.modalities["rna"].data
    # every source is z-scored per gene: source b's G2 column has mean 0, sd 1
    assert X[3:, 1].mean() == pytest.approx(0.0, abs=1e-6) and X[3:, 1].std() == pytest.approx(1.0, abs=1e-5)
    assert X[0, 3] == 0.0  # G4 missing in source a -> 0 (its mean after scaling)
    pss_shared = RnaTableReader(paths=list(two_tables), combine="per-source-scale", join="shared").read(None)
    assert pss_shared.modalities["rna"].feature_names == ["G2", "G3"]


def test_rna_duplicates_nan_log_zscore_and_errors(tmp_path):
    p = _table(tmp_path / "d.csv", ["TCGA-AA-0001", "TCGA-AA-0001", "TCGA-AA-0002"], ["G1", "G2"],
               [[1, 2], [3, 4], [np.nan, 6]])
    with pytest.raises(DataError) as err:
        RnaTableReader(paths=p).read(None)
    assert "nan" in str(err.value).lower() and "G1" in str(err.value)
    ds = RnaTableReader(paths=p, nan="zero", log1p=True).read(None)
    md = ds.modalities["rna"]
    assert list(md.patient_ids) == ["TCGA-AA-0001", "TCGA-AA-0002"]
    assert md.data[0, 0] == pytest.approx(np.log1p(1.0)) and md.data[1, 0] == 0.0
    assert any("duplicate" in n for n in ds.notes)
    assert RnaTableReader(paths=p, nan="drop-gene").read(None).modalities["rna"].feature_names == ["G2"]
    z = RnaTableReader(paths=p, nan="mean", zscore=True).read(None).modalities["rna"].data
    assert np.allclose(z.mean(axis=0), 0, atol=1e-6)
    # missing id column: the error names the file and the columns found
    bad = tmp_path / "bad.csv"
    pd.DataFrame({"sample": ["x"], "G1": [1.0]}).to_csv(bad, index=False)
    with pytest.raises(DataError) as err:
        RnaTableReader(paths=str(bad), id_column="patient_id").read(None)
    assert "bad.csv" in str(err.value) and "sample" in str(err.value) and "G1" in str(err.value)
    with pytest.raises(DataError, match="not found"):
        RnaTableReader(paths=str(tmp_path / "nope.csv")).read(None)
    with pytest.raises(DataError, match="log1p"):
        RnaTableReader(paths=_table(tmp_path / "neg.csv", ["TCGA-AA-0001"], ["G1"], [[-3.0]]), log1p=True).read(None)


def test_rna_nested_paths_join_same_patients(tmp_path):
    a = _table(tmp_path / "t1.csv", ["TCGA-TT-0001", "TCGA-TT-0002", "TCGA-TT-0003"], ["A1", "A2"],
               [[1, 2], [3, 4], [5, 6]], {"duplicate_patient": [0, 0, 0]})
    b = _table(tmp_path / "t2.csv", ["TCGA-TT-0002", "TCGA-TT-0001"], ["B1"], [[20], [10]])
    ds = RnaTableReader(paths=[[a, b]], source_cancer={"t": "THCA"}).read(None)
    md = ds.modalities["rna"]
    assert md.feature_names == ["A1", "A2", "B1"]  # duplicate_patient is metadata, not a gene
    assert list(md.patient_ids) == ["TCGA-TT-0001", "TCGA-TT-0002"]
    assert md.data[:, 2].tolist() == [10, 20]
    assert set(md.labels["cancer_type"]) == {"THCA"}


def test_rna_parquet(tmp_path):
    pytest.importorskip("pyarrow")
    p = _table(tmp_path / "x.parquet", ["TCGA-AA-0001"], ["G1"], [[1.5]])
    assert RnaTableReader(paths=p).read(None).modalities["rna"].data[0, 0] == pytest.approx(1.5)


def test_gdc_star_counts(tmp_path):
    header = "# gene-model: GENCODE v36\ngene_id\tgene_name\tgene_type\tunstranded\tstranded_first\t" \
             "stranded_second\ttpm_unstranded\tfpkm_unstranded\tfpkm_uq_unstranded\n"
    rows = ["N_unmapped\t\t\t100\t100\t100\t\t\t", "ENSG1.5\tTP53\tprotein_coding\t10\t5\t5\t{tpm}\t1\t1",
            "ENSG2.1\tMALAT1\tlncRNA\t99\t1\t1\t50\t1\t1", "ENSG3.2\tKRAS\tprotein_coding\t3\t1\t1\t7\t1\t1"]
    sheet = ["File ID\tFile Name\tData Category\tData Type\tProject ID\tCase ID\tSample ID\tSample Type"]
    for i, (case, tpm, stype) in enumerate([("TCGA-AB-0001", 4, "Primary Tumor"),
                                            ("TCGA-AB-0002", 9, "Primary Tumor"),
                                            ("TCGA-AB-0002", 1, "Primary Tumor"),
                                            ("TCGA-AB-0003", 2, "Solid Tissue Normal")]):
        sub = tmp_path / f"uuid{i}"
        sub.mkdir()
        name = f"f{i}.rna_seq.augmented_star_gene_counts.tsv"
        (sub / name).write_text(header + "\n".join(r.format(tpm=tpm) for r in rows) + "\n")
        sheet.append(f"uuid{i}\t{name}\tTranscriptome Profiling\tGene Expression Quantification\tTCGA-BRCA\t"
                     f"{case}\t{case}-01A\t{stype}")
    (tmp_path / "gdc_sample_sheet.2024-01-01.tsv").write_text("\n".join(sheet) + "\n")
    ds = GdcStarCountsReader(folder=str(tmp_path)).read(None)
    md = ds.modalities["rna"]
    assert list(md.patient_ids) == ["TCGA-AB-0001", "TCGA-AB-0002"]  # normal dropped, one sample per case
    assert md.feature_names == ["KRAS", "TP53"]  # lncRNA and N_ rows dropped
    assert md.data[1, 1] == pytest.approx(np.log1p(9))
    assert ds.labels["cancer_type"]["TCGA-AB-0001"] == "BRCA"
    raw = GdcStarCountsReader(folder=str(tmp_path), value="unstranded", log1p=False, gene_types=None,
                              sample_types=None).read(None).modalities["rna"]
    assert "MALAT1" in raw.feature_names and len(raw) == 3
    (tmp_path / "gdc_sample_sheet.2024-01-01.tsv").unlink()
    with pytest.raises(DataError, match="sample sheet"):
        GdcStarCountsReader(folder=str(tmp_path)).read(None)


# --------------------------------------------------------------------------- maf

MAF_COLS = ["Hugo_Symbol", "Variant_Classification", "Tumor_Sample_Barcode", "is_silent_slot", "cancer_type"]


def _maf(path: Path, rows):
    df = pd.DataFrame(rows, columns=MAF_COLS)
    df.to_csv(path, sep="\t", index=False, compression="gzip" if str(path).endswith(".gz") else None)
    return str(path)


def test_maf_one_hot_and_tmb(tmp_path):
    rows = [("TP53", "Missense_Mutation", "TCGA-AA-0001-01A-11D", False, "COAD"),
            ("TP53", "Nonsense_Mutation", "TCGA-AA-0001", False, "COAD"),
            ("APC", "Frame_Shift_Del", "TCGA-AA-0001", False, "COAD"),
            ("KRAS", "Silent", "TCGA-AA-0002", True, "COAD"),
            ("TTN", "Intron", "TCGA-AA-0002", True, "COAD")]
    rows += [(f"G{i}", "Missense_Mutation", "TCGA-AA-0003", False, "COAD") for i in range(16)]
    a = _maf(tmp_path / "a.maf.gz", rows)
    b = _maf(tmp_path / "b.maf", [("TP53", "Missense_Mutation", "TCGA-BB-0001", False, "LUAD")])
    ds = MafReader(paths=[a, b], min_gene_frequency=0.0).read(None)
    md = ds.modalities["mutation"]
    assert md.kind == "matrix" and set(np.unique(md.data)) <= {0.0, 1.0}
    pos = {p: i for i, p in enumerate(md.patient_ids)}
    tp53 = md.feature_names.index("TP53")
    assert md.data[pos["TCGA-AA-0001"], tp53] == 1 and md.data[pos["TCGA-BB-0001"], tp53] == 1
    assert "KRAS" not in md.feature_names and "TTN" not in md.feature_names  # silent rows dropped
    assert md.data[pos["TCGA-AA-0002"]].sum() == 0  # only silent -> zero row, kept
    assert ds.labels["tmb_class"] == {"TCGA-AA-0001": "low", "TCGA-AA-0002": "none", "TCGA-AA-0003": "high",
                                      "TCGA-BB-0001": "low"}
    assert ds.labels["tmb"]["TCGA-AA-0001"] == pytest.approx(2 / 30)
    assert ds.labels["cancer_type"]["TCGA-BB-0001"] == "LUAD"
    # configurable classes, divisor and threshold, gene frequency filter
    ds2 = MafReader(paths=a, variant_classes=["Silent", "Missense_Mutation"], exclude_silent_slot=False,
                    tmb_divisor=1.0, tmb_threshold=2.0, min_gene_frequency=0.0).read(None)
    md2 = ds2.modalities["mutation"]
    assert "KRAS" in md2.feature_names and "TTN" not in md2.feature_names
    with pytest.raises(DataError, match="min_gene_frequency"):
        MafReader(paths=a, min_gene_frequency=0.9).read(None)
    assert ds2.labels["tmb_class"]["TCGA-AA-0002"] == "low" and ds2.labels["tmb_class"]["TCGA-AA-0003"] == "high"


def test_maf_errors(tmp_path):
    empty = tmp_path / "empty.maf"
    empty.write_text("")
    with pytest.raises(DataError, match="empty"):
        MafReader(paths=str(empty)).read(None)
    header_only = tmp_path / "h.maf.gz"
    with gzip.open(header_only, "wt") as fh:
        fh.write("\t".join(MAF_COLS) + "\n")
    with pytest.raises(DataError, match="no variant rows"):
        MafReader(paths=str(header_only)).read(None)
    bad = tmp_path / "bad.maf"
    bad.write_text("Hugo_Symbol\tVariant_Classification\tsample\nTP53\tSilent\tx\n")
    with pytest.raises(DataError) as err:
        MafReader(paths=str(bad)).read(None)
    assert "bad.maf" in str(err.value) and "Tumor_Sample_Barcode" in str(err.value)


# --------------------------------------------------------------------------- report-text

OCR = ("UUID:FA1D30C7-E486-48DD-989F-E774B42EA1B1\nTCGA-2F-A9KO- 61A-PRRedacted\n"
       "III IIIIIIIIIIIIIIIII IIIIIN IIIIII I I IH I!IIII I IIIIIII\n--- Page 1 ---\n"
       "Histologic diagnosis\nHigh grade muscle invasive urothelial cell carcinoma with CIS.\n"
       "Tumor size\n2.5 cm in greatest diameter\nThe bladder wall is thickened. The tumor invades the detrusor "
       "muscle. The tumor invades the detrusor muscle.\n@#$%^&*~~ |||| ;;\n")


def test_clean_ocr_and_split():
    cleaned = clean_ocr(OCR)
    assert "TCGA" not in cleaned and "Redacted" not in cleaned and "UUID" not in cleaned
    assert "Page 1" not in cleaned and "IIIIIII" not in cleaned
    sents = split_sentences(cleaned)
    assert "Histologic diagnosis: High grade muscle invasive urothelial cell carcinoma with CIS." in sents
    assert any(s.startswith("Tumor size: 2.5 cm") for s in sents)
    assert "The bladder wall is thickened." in sents
    assert all(len(s) >= 20 for s in sents)
    assert split_sentences("ab cd\n1 2 3 4 5 6 7 8 9 10 11 12 13 14\n") == []


def test_report_text_csv_dedup(tmp_path):
    short = "Invasive ductal carcinoma of the breast is present. The margins are clear of tumor cells."
    long_ = short + " Estrogen receptor is strongly positive in tumor cells."
    df = pd.DataFrame({
        "patient_id": ["TCGA-AA-0001", "TCGA-AA-0001", "TCGA-AA-0002", "TCGA-AA-0003"],
        "cancer_type": ["BRCA", "BRCA", "BRCA", "BRCA"],
        "source": ["ocr-a", "ocr-b", "ocr-a", "ocr-a"],
        "text": [short, long_, short + " " + short, ""],
    })
    path = tmp_path / "reports.csv.gz"
    df.to_csv(path, index=False)
    ds = ReportTextReader(path=str(path)).read(None)
    md = ds.modalities["text"]
    assert md.kind == "text" and len(md.data) == len(md.patient_ids)
    p1 = [s for s, p in zip(md.data, md.patient_ids) if p == "TCGA-AA-0001"]
    assert len(p1) == 3 and any("Estrogen" in s for s in p1)  # longest of the two reports kept
    p2 = [s for s, p in zip(md.data, md.patient_ids) if p == "TCGA-AA-0002"]
    assert len(p2) == 2  # identical sentences de-duplicated
    assert "TCGA-AA-0003" not in set(md.patient_ids)
    assert set(md.labels["cancer_type"]) == {"BRCA"}
    assert any("more than one report" in n for n in ds.notes)
    first = ReportTextReader(path=str(path), duplicate_reports="first").read(None).modalities["text"]
    assert sum(p == "TCGA-AA-0001" for p in first.patient_ids) == 2
    nodedup = ReportTextReader(path=str(path), dedup_sentences=False).read(None).modalities["text"]
    assert sum(p == "TCGA-AA-0002" for p in nodedup.patient_ids) == 4
    with pytest.raises(DataError, match="duplicate_reports"):
        ReportTextReader(path=str(path), duplicate_reports="bogus").read(None)
    jl = tmp_path / "r.jsonl"
    df.iloc[:1][["patient_id", "text"]].to_json(jl, orient="records", lines=True)
    assert len(ReportTextReader(path=str(jl)).read(None).modalities["text"]) == 2


def _write_pdf(path: Path, text: str) -> None:
    from pypdf import PdfWriter
    from pypdf.generic import DecodedStreamObject, DictionaryObject, NameObject

    writer = PdfWriter()
    page = writer.add_blank_page(width=612, height=792)
    font = DictionaryObject({NameObject("/Type"): NameObject("/Font"), NameObject("/Subtype"): NameObject("/Type1"),
                             NameObject("/BaseFont"): NameObject("/Helvetica")})
    page[NameObject("/Resources")] = DictionaryObject({NameObject("/Font"): DictionaryObject(
        {NameObject("/F1"): writer._add_object(font)})})
    stream = DecodedStreamObject()
    stream.set_data(f"BT /F1 12 Tf 72 720 Td ({text}) Tj ET".encode())
    page[NameObject("/Contents")] = writer._add_object(stream)
    with open(path, "wb") as fh:
        writer.write(fh)


def test_report_text_folder_txt_and_pdf(tmp_path):
    folder = tmp_path / "reports"
    folder.mkdir()
    (folder / "TCGA-AA-0001.report.txt").write_text("Papillary thyroid carcinoma, classical variant, is seen.\n")
    (folder / "case2.txt").write_text("Patient TCGA-AA-0002-01A.\nAdenocarcinoma of the lung is identified here.\n")
    try:
        _write_pdf(folder / "TCGA-AA-0003.pdf", "Invasive urothelial carcinoma involves the bladder wall.")
    except Exception as exc:  # pragma: no cover - depends on pypdf internals
        pytest.skip(f"cannot build a text PDF with this pypdf: {exc}")
    ds = ReportTextReader(path=str(folder)).read(None)
    md = ds.modalities["text"]
    got = dict(zip(md.patient_ids, md.data))
    assert got["TCGA-AA-0001"].startswith("Papillary thyroid carcinoma")
    assert got["TCGA-AA-0002"].startswith("Adenocarcinoma of the lung")
    assert "urothelial carcinoma" in got["TCGA-AA-0003"]
    (folder / "unknown.txt").write_text("No barcode anywhere in this report text at all.\n")
    with pytest.raises(DataError, match="unknown.txt"):
        ReportTextReader(path=str(folder)).read(None)


# --------------------------------------------------------------------------- clinical-sentences

def test_clinical_sentences(tmp_path):
    df = pd.DataFrame({
        "patient_id": ["TCGA-AA-0001", "TCGA-AA-0002", "TCGA-BB-0001"],
        "cancer_type": ["BRCA", "BRCA", "THCA"],
        "gender": ["FEMALE", "FEMALE", "MALE"],
        "age_at_diagnosis": [50.0, 61.0, 33.0],
        "histological_type": ["Infiltrating Ductal Carcinoma", "Lobular", "Papillary"],
        "icd_o_3_site": ["C50.9", "C50.9", "C73.9"],
        "er_status_ihc": ["Positive", "Negative", None],
        "pathologic_stage": ["Stage II", None, "Stage I"],
    })
    path = tmp_path / "clin.csv.gz"
    df.to_csv(path, index=False)
    ds = ClinicalSentencesReader(path=str(path)).read(None)
    md = ds.modalities["clinical"]
    assert "DERIVED" in md.source and md.extras["derived_from"] == "structured-fields"
    fields = set(md.labels["field"])
    assert "histological_type" not in fields and "icd_o_3_site" not in fields
    assert "er_status_ihc" not in fields  # BRCA-only field: dropped by shared_fields_only
    assert {"gender", "age_at_diagnosis"} <= fields
    assert "Age at diagnosis: 50 years." in md.data
    assert not any("Ductal" in s or "Papillary" in s for s in md.data)
    full = ClinicalSentencesReader(path=str(path), exclude_diagnosis_fields=False, shared_fields_only=False
                                   ).read(None).modalities["clinical"]
    assert "histological_type" in set(full.labels["field"]) and "er_status_ihc" in set(full.labels["field"])
    only = ClinicalSentencesReader(path=str(path), cancers=["THCA"]).read(None)
    assert set(only.modalities["clinical"].patient_ids) == {"TCGA-BB-0001"}
    assert any("leak" in n for n in only.notes)
    picked = ClinicalSentencesReader(path=str(path), fields=["gender"]).read(None).modalities["clinical"]
    assert set(picked.labels["field"]) == {"gender"} and "Gender: female." in picked.data
    with pytest.raises(DataError, match="unknown clinical fields"):
        ClinicalSentencesReader(path=str(path), fields=["nope"]).read(None)


# --------------------------------------------------------------------------- tiles / wsi

def _tile(path: Path, color, size=32):
    from PIL import Image

    arr = np.zeros((size, size, 3), dtype=np.uint8)
    arr[:] = color
    Image.fromarray(arr).save(path)


@pytest.fixture
def tile_folder(tmp_path):
    folder = tmp_path / "tiles"
    folder.mkdir()
    for p in range(3):
        for t in range(4):
            _tile(folder / f"TCGA-AA-000{p}-01Z-00-DX1_t{t}.png", (200, 120, 180) if t else (250, 250, 250))
    return folder


def test_tiles_from_names_background_and_cap(tile_folder):
    ds = TilesReader(folder=str(tile_folder)).read(None)
    md = ds.modalities["image"]
    assert md.kind == "image" and len(md) == 12 and isinstance(md.data[0], str) and os.path.isfile(md.data[0])
    assert set(md.patient_ids) == {"TCGA-AA-0000", "TCGA-AA-0001", "TCGA-AA-0002"}
    bg = TilesReader(folder=str(tile_folder), background_threshold=0.5).read(None).modalities["image"]
    assert len(bg) == 9 and not any(i.endswith("_t0") for i in bg.item_ids)
    capped = TilesReader(folder=str(tile_folder), max_tiles_per_patient=2, seed=3).read(None).modalities["image"]
    assert len(capped) == 6 and all((capped.patient_ids == p).sum() == 2 for p in set(capped.patient_ids))
    again = TilesReader(folder=str(tile_folder), max_tiles_per_patient=2, seed=3).read(None).modalities["image"]
    assert list(again.item_ids) == list(capped.item_ids)
    loaded = TilesReader(folder=str(tile_folder), load=True, max_tiles_per_patient=1).read(None).modalities["image"]
    assert loaded.data[0].shape == (32, 32, 3) and loaded.data[0].dtype == np.uint8


def test_tiles_index_and_bad_files(tile_folder, tmp_path):
    names = sorted(os.listdir(tile_folder))
    pd.DataFrame({"tile": names, "patient_id": [n[:12] for n in names], "cancer_type": "LUAD"}).to_csv(
        tile_folder / "tiles_index.csv", index=False)
    ds = TilesReader(folder=str(tile_folder)).read(None)
    assert set(ds.modalities["image"].labels["cancer_type"]) == {"LUAD"}
    assert ds.labels["cancer_type"]["TCGA-AA-0001"] == "LUAD"
    (tile_folder / "tiles_index.csv").unlink()
    (tile_folder / "TCGA-AA-0009_notes.docx").write_text("hello")
    with pytest.raises(DataError) as err:
        TilesReader(folder=str(tile_folder)).read(None)
    assert "TCGA-AA-0009_notes.docx" in str(err.value)
    (tile_folder / "TCGA-AA-0009_notes.docx").unlink()
    (tile_folder / "TCGA-AA-0009_broken.png").write_text("not a png")
    with pytest.raises(DataError) as err:
        TilesReader(folder=str(tile_folder)).read(None)
    assert "TCGA-AA-0009_broken.png" in str(err.value)


def test_tile_grid_threshold_and_sampling():
    img = np.full((600, 520, 3), 255, dtype=np.uint8)  # white "slide"
    img[:256, 256:512] = (180, 90, 160)  # tissue in tile (row 0, col 1)
    img[256:512, :256] = (180, 90, 160)
    img[256:512, :100] = 255  # tile (1, 0): ~39% white, still tissue at 0.8
    coords, frac = tile_grid(img, 256, background_threshold=0.8)
    assert coords.tolist() == [[256, 0], [0, 256]]  # (x, y); border remainders dropped
    assert frac[1] == pytest.approx(100 / 256, abs=1e-6)
    all_coords, all_frac = tile_grid(img, 256, background_threshold=None)
    assert len(all_coords) == 4 and all_frac[0] == 1.0
    assert white_fraction(img[:256, :256])[0] == 1.0
    groups = np.repeat(np.arange(4), [10, 1, 5, 3])
    idx = sample_capped(groups, 2, np.random.default_rng(0))
    assert np.bincount(groups[idx]).tolist() == [2, 1, 2, 2]
    assert idx.tolist() == sample_capped(groups, 2, np.random.default_rng(0)).tolist()


def test_choose_level_and_missing_backend(tmp_path):
    assert choose_level([1.0, 4.0, 16.0], 40.0, 20.0, None) == (0, 2.0)
    assert choose_level([1.0, 4.0, 16.0], 40.0, 10.0, None) == (1, 1.0)
    assert choose_level([1.0, 4.0], None, 20.0, 1) == (1, 1.0)
    with pytest.raises(DataError):
        choose_level([1.0], 20.0, 40.0, None)
    slide = tmp_path / "TCGA-AA-0001-01Z.svs"
    slide.write_bytes(b"not a slide")
    try:
        import openslide  # noqa: F401
        has_backend = True
    except ImportError:
        try:
            import tiffslide  # noqa: F401
            has_backend = True
        except ImportError:
            has_backend = False
    with pytest.raises(DataError) as err:
        _open_slide(str(slide))
    if not has_backend:
        assert "pip install" in str(err.value)
    with pytest.raises(DataError):
        WsiReader(paths=str(tmp_path / "missing.svs")).read(None)


# --------------------------------------------------------------------------- tcga-labels (tiny)

def test_tcga_labels_tiny(tmp_path):
    pd.DataFrame({"patient_id": ["TCGA-AA-0001", "TCGA-AA-0002", "TCGA-BB-0001"],
                  "cancer_type": ["BRCA", "BRCA", "LUAD"]}).to_csv(tmp_path / "patients.csv", index=False)
    (tmp_path / "subtypes").mkdir()
    pd.DataFrame({"patient": ["TCGA-AA-0001", "TCGA-AA-0002", "TCGA-BB-0001"],
                  "Tissue": ["BRCA", "LUAD", "LUAD"], "mRNA": [3.0, 1.0, 2.0]}).to_csv(
        tmp_path / "subtypes" / "s.tsv", sep="\t", index=False)
    (tmp_path / "mutations").mkdir()
    _maf(tmp_path / "mutations" / "x.maf.tsv.gz", [("TP53", "Missense_Mutation", "TCGA-AA-0001", False, "BRCA")])
    ds = TcgaLabelsReader(root=str(tmp_path), subtype_file="subtypes/s.tsv", cancer2name=None,
                          maf="mutations/*.maf.tsv.gz").read(None)
    assert ds.modalities == {}
    assert ds.labels["cancer_type"] == {"TCGA-AA-0001": "BRCA", "TCGA-AA-0002": "BRCA", "TCGA-BB-0001": "LUAD"}
    assert ds.labels["subtype"] == {"TCGA-AA-0001": "BRCA.mRNA_3", "TCGA-BB-0001": "LUAD.mRNA_2"}  # other cohort dropped
    assert ds.labels["tmb_class"] == {"TCGA-AA-0001": "low"}


# --------------------------------------------------------------------------- real data

@pytest.mark.realdata
def test_real_rna_tables(shared_data):
    rna = shared_data / "rna"
    thca = [str(rna / "thca_csdR_1000genes_504samples.csv.gz"),
            str(rna / "thca_xena_toil_kegg_hsa04919_121genes_504tumors.csv.gz")]
    others = [str(rna / "porpoise_blca_rnaseq_zscore.csv.gz"), str(rna / "porpoise_stad_rnaseq_zscore.csv.gz")]
    with pytest.raises(DataError, match="different gene sets"):
        RnaTableReader(paths=others + thca[:1]).read(None)
    shared = RnaTableReader(paths=others + thca[:1], combine="shared", nan="zero").read(None).modalities["rna"]
    assert 50 <= len(shared.feature_names) <= 80  # ~68 genes shared with the csdR THCA table
    ds = RnaTableReader(paths=others + [thca], combine="per-source-scale", nan="zero",
                        labels_file=str(shared_data / "patients.csv")).read(None)
    md = ds.modalities["rna"]
    counts = pd.Series(md.labels["cancer_type"]).value_counts().to_dict()
    assert counts["THCA"] > 350 and counts["BLCA"] > 250 and counts["STAD"] > 250
    assert len(md.feature_names) > 2500 and np.isfinite(md.data).all()
    assert len(set(md.patient_ids)) == len(md.patient_ids)
    assert any("column-wise" in n for n in ds.notes)


@pytest.mark.realdata
def test_real_maf_tp53_and_tmb(shared_data):
    ds = MafReader(paths=[str(shared_data / "mutations" / f"{c}_firehose.maf.tsv.gz") for c in ("COAD", "THCA")],
                   min_gene_frequency=0.02).read(None)
    md = ds.modalities["mutation"]
    ct = md.labels["cancer_type"]
    j = md.feature_names.index("TP53")
    coad, thca = md.data[ct == "COAD", j].mean(), md.data[ct == "THCA", j].mean()
    assert coad > 0.4 and thca < 0.05
    assert md.data[ct == "THCA", md.feature_names.index("BRAF")].mean() > 0.4
    assert md.data[ct == "COAD", md.feature_names.index("APC")].mean() > 0.5
    cls = pd.Series(ds.labels["tmb_class"])
    assert set(cls) <= {"high", "low", "none"}
    tmb = pd.Series(ds.labels["tmb"])
    by_cancer = tmb.groupby(tmb.index.map(ds.labels["cancer_type"])).median()
    assert by_cancer["THCA"] < by_cancer["COAD"] / 3  # THCA has few mutated genes
    assert ds.labels["tmb_class"] and (cls == "high").any() and (cls == "low").any()


@pytest.mark.realdata
def test_real_reports(shared_data):
    ds = ReportTextReader(path=str(shared_data / "reports" / "pathology_reports.csv.gz"), cancers=["BLCA", "COAD"]
                          ).read(None)
    md = ds.modalities["text"]
    assert set(md.labels["cancer_type"]) == {"BLCA", "COAD"}
    assert len(set(md.patient_ids)) > 550
    # one report per patient: only one report source per patient after de-duplication
    per = pd.DataFrame({"p": md.patient_ids, "s": md.labels["report_source"]}).groupby("p")["s"].nunique()
    assert per.max() == 1
    assert any("more than one report" in n for n in ds.notes)
    assert not any("TCGA-" in s or "Redacted" in s for s in md.data)
    key = pd.Series([p + "|" + s.lower() for p, s in zip(md.patient_ids, md.data)])
    assert not key.duplicated().any()


@pytest.mark.realdata
def test_real_clinical_sentences(shared_data):
    ds = ClinicalSentencesReader(path=str(shared_data / "clinical" / "clinical_annotations.csv.gz"),
                                 cancers=["BRCA", "BLCA", "COAD", "STAD", "THCA", "LUAD"]).read(None)
    md = ds.modalities["clinical"]
    assert set(md.labels["cancer_type"]) == {"BRCA", "BLCA", "COAD", "STAD", "THCA", "LUAD"}
    fields = set(md.labels["field"])
    assert not fields & {"histological_type", "icd_o_3_site", "icd_10", "tumor_tissue_site", "thyroid_tumor_location"}
    assert "gender" in fields
    text = " ".join(md.data[:5000]).lower()
    assert "carcinoma" not in text and "thyroid" not in text


@pytest.mark.realdata
def test_real_tiles(shared_data):
    ds = TilesReader(folder=str(shared_data / "tiles"), max_tiles_per_patient=3).read(None)
    md = ds.modalities["image"]
    assert all(len(p) == 12 and p.startswith("TCGA-") for p in md.patient_ids)
    assert len(set(md.patient_ids)) >= 15 and len(md) <= 3 * len(set(md.patient_ids))
    assert {"BRCA", "LUAD"} <= set(md.labels["cancer_type"])


@pytest.mark.realdata
def test_real_tcga_labels(shared_data):
    ds = TcgaLabelsReader(root=str(shared_data), maf=None).read(None)
    ct = ds.labels["cancer_type"]
    assert pd.Series(ct).value_counts().to_dict()["BRCA"] == 831
    sub = ds.labels["subtype"]
    assert len(sub) > 500 and all(v.startswith(ct[p] + ".") for p, v in sub.items())


@pytest.mark.realdata
def test_real_tcga_folder(shared_data):
    ds = TcgaFolderReader(root=str(shared_data), clinical=True).read(None)
    mods = ds.modalities
    assert set(mods) == {"rna", "mutation", "text", "image", "clinical"}
    for md in mods.values():
        assert "cancer_type" in md.labels and len(md.labels["cancer_type"]) == len(md)
    rna_c = set(mods["rna"].labels["cancer_type"])
    assert rna_c == {"BRCA", "BLCA", "COAD", "STAD", "THCA", "LUAD"}
    assert set(mods["clinical"].labels["cancer_type"]) == rna_c  # rendered for every cancer
    assert not {"STAD", "THCA"} & set(mods["text"].labels["cancer_type"])  # known gap, reported
    assert any(n.startswith("availability") for n in ds.notes)
    assert {"cancer_type", "subtype", "tmb", "tmb_class"} <= set(ds.labels)
    missing = TcgaFolderReader(root=str(shared_data), modalities=["rna"], thca_rna="missing").read(None)
    assert "THCA" not in set(missing.modalities["rna"].labels["cancer_type"])
    with pytest.raises(DataError, match="not found"):
        TcgaFolderReader(root=str(shared_data / "nope")).read(None)
