"""MAF reader; registers ``maf``: somatic mutations -> patient x gene one-hot matrix + TMB labels.

Default filter (maftools' "non-silent" definition): keep the variant classes
Frame_Shift_Del, Frame_Shift_Ins, In_Frame_Del, In_Frame_Ins, Missense_Mutation,
Nonsense_Mutation, Nonstop_Mutation, Splice_Site and Translation_Start_Site;
rows flagged ``is_silent_slot`` (maftools' ``maf.silent`` slot: Silent, UTR,
intron, IGR, flank, RNA ...) are dropped too. Patients with no kept mutation
stay in the matrix as an all-zero row (``include_unmutated``).

TMB (SPEC 2.3): number of distinct genes with a kept mutation / ``tmb_divisor``
(30, Mb of exome); ``tmb_class`` = ``high`` if TMB >= ``tmb_threshold`` (0.5),
``low`` otherwise, and ``none`` for a patient without any kept mutation.
"""

from __future__ import annotations

import os
from typing import Any

import numpy as np

from fusionkit import hookimpl
from fusionkit import ModalityData, RawDataset, Reader
from fusionkit import DataError

from fusionkit_plugins.readers.common import (availability_note, barcodes12, fingerprint, labels_from_items,
                                              pick_column, resolve_paths)

NON_SILENT = ("Frame_Shift_Del", "Frame_Shift_Ins", "In_Frame_Del", "In_Frame_Ins", "Missense_Mutation",
              "Nonsense_Mutation", "Nonstop_Mutation", "Splice_Site", "Translation_Start_Site")


def tmb_labels(n_genes: dict[str, int], divisor: float = 30.0, threshold: float = 0.5
               ) -> tuple[dict[str, float], dict[str, str]]:
    """(tmb, tmb_class) per patient from the number of mutated genes (SPEC 2.3)."""
    if divisor <= 0:
        raise DataError(f"tmb_divisor must be > 0, got {divisor}", where="tmb_divisor")
    tmb = {p: float(n) / float(divisor) for p, n in n_genes.items()}
    cls = {p: ("none" if n_genes[p] == 0 else ("high" if tmb[p] >= threshold else "low")) for p in n_genes}
    return tmb, cls


def _read_maf(path: str, **kw: Any) -> Any:
    """``pandas.read_csv`` of a (gzipped) MAF; a truncated or mislabelled file is a DataError naming it."""
    import pandas as pd

    try:
        return pd.read_csv(path, sep="\t", comment="#", **kw)
    except pd.errors.EmptyDataError:
        raise
    except (EOFError, OSError, ValueError, UnicodeDecodeError) as exc:  # EOFError: truncated .gz
        raise DataError(f"cannot read MAF ({type(exc).__name__}: {exc})", where=path,
                        hint="the file is truncated, not gzip despite its .gz name, or not tab-separated; "
                             "download it again") from None
    except Exception as exc:  # zlib.error and other decompressor errors
        raise DataError(f"cannot read MAF ({type(exc).__name__}: {exc})", where=path,
                        hint="the file is corrupt; download it again") from None


class MafReader(Reader):
    """Somatic mutations from MAF files (gz ok) as a patient x gene one-hot matrix, with TMB labels.

    Parameters
    ----------
    paths: MAF file(s), glob or list.
    variant_classes: Variant_Classification values to keep (None = the non-silent set in the module doc).
    exclude_silent_slot: drop rows flagged ``is_silent_slot`` (when the column exists).
    min_gene_frequency: keep genes mutated in at least this fraction of patients (0 keeps all).
    max_genes: keep at most this many genes (most frequent first; None = no cap).
    genes: restrict to these genes (None = all).
    include_unmutated: keep patients without any kept mutation as zero rows.
    tmb_divisor, tmb_threshold: TMB = mutated genes / divisor; high if >= threshold.
    id_column: barcode column (ids cut to 12-char patient barcodes).
    """

    provides = ("mutation",)

    def __init__(self, paths: Any = None, variant_classes: list | None = None, exclude_silent_slot: bool = True,
                 min_gene_frequency: float = 0.01, max_genes: int | None = None, genes: list | None = None,
                 include_unmutated: bool = True, tmb_divisor: float = 30.0, tmb_threshold: float = 0.5,
                 id_column: str = "Tumor_Sample_Barcode", modality: str = "mutation"):
        self.paths = paths
        self.variant_classes = variant_classes
        self.exclude_silent_slot = exclude_silent_slot
        self.min_gene_frequency = min_gene_frequency
        self.max_genes = max_genes
        self.genes = genes
        self.include_unmutated = include_unmutated
        self.tmb_divisor = tmb_divisor
        self.tmb_threshold = tmb_threshold
        self.id_column = id_column
        self.modality = modality

    def fingerprint_inputs(self) -> list[str]:
        return resolve_paths(self.paths, what="MAF file", param="paths")

    def load_rows(self) -> tuple["Any", list[str]]:
        """All MAF rows (patient, gene, class, silent flag, cancer) of all files, unfiltered."""
        import pandas as pd

        frames, notes = [], []
        for path in self.fingerprint_inputs():
            if os.path.getsize(path) == 0:
                raise DataError("MAF file is empty (0 bytes)", where=path, hint="check the download")
            try:
                cols = _read_maf(path, nrows=0).columns
            except pd.errors.EmptyDataError as exc:
                raise DataError("MAF file is empty (no header)", where=path,
                                hint="a MAF needs a header with Hugo_Symbol, Variant_Classification and "
                                     "Tumor_Sample_Barcode") from exc
            idc = pick_column(cols, self.id_column, path=path)
            gene_c = pick_column(cols, "Hugo_Symbol", path=path, role="gene", param="")
            vc = pick_column(cols, "Variant_Classification", path=path, role="variant class", param="")
            use = [idc, gene_c, vc] + [c for c in ("is_silent_slot", "cancer_type") if c in cols]
            df = _read_maf(path, usecols=use, low_memory=False)
            if df.empty:
                raise DataError("MAF file has a header but no variant rows", where=path,
                                hint="an empty MAF gives no patients; drop it from paths")
            df = df.rename(columns={idc: "patient_id", gene_c: "gene", vc: "vclass"})
            df["patient_id"] = barcodes12(df["patient_id"])
            df["file"] = os.path.basename(path)
            frames.append(df)
        rows = pd.concat(frames, ignore_index=True)
        return rows, notes

    def _select_genes(self, kept: Any, n_patients: int) -> list[str]:
        """Sorted genes passing ``genes``, ``min_gene_frequency`` and ``max_genes`` (most frequent first)."""
        freq = kept.groupby("gene")["patient_id"].nunique().sort_values(ascending=False, kind="stable")
        if self.genes is not None:
            freq = freq[freq.index.isin([str(g) for g in self.genes])]
        if self.min_gene_frequency and self.min_gene_frequency > 0:
            freq = freq[freq >= self.min_gene_frequency * n_patients]
        if self.max_genes is not None:
            freq = freq.iloc[: int(self.max_genes)]
        genes = sorted(str(g) for g in freq.index)
        if not genes:
            raise DataError(f"no gene passes the filters (min_gene_frequency={self.min_gene_frequency}, "
                            f"{n_patients} patients)", where="min_gene_frequency",
                            hint="lower min_gene_frequency or check variant_classes")
        return genes

    def read(self, ctx: Any = None) -> RawDataset:
        import pandas as pd

        rows, notes = self.load_rows()
        all_patients = pd.unique(rows["patient_id"])
        cancer_of: dict[str, str] = {}
        if "cancer_type" in rows.columns:
            first = rows.drop_duplicates("patient_id")
            cancer_of = dict(zip(first["patient_id"], first["cancer_type"].astype(str)))
        keep_classes = set(self.variant_classes) if self.variant_classes else set(NON_SILENT)
        mask = rows["vclass"].astype(str).isin(keep_classes)
        if self.exclude_silent_slot and "is_silent_slot" in rows.columns:
            silent = rows["is_silent_slot"].astype(str).str.lower().isin(("1", "true", "1.0"))
            mask &= ~silent
        kept = rows.loc[mask, ["patient_id", "gene"]].dropna().drop_duplicates()
        notes.append(f"maf: {len(rows):,} variant rows, {int(mask.sum()):,} kept "
                     f"({'default non-silent classes' if not self.variant_classes else 'variant_classes'}"
                     f"{', is_silent_slot rows dropped' if self.exclude_silent_slot else ''})")
        patients = np.array(all_patients if self.include_unmutated else pd.unique(kept["patient_id"])).astype(str)
        n_genes_per = kept.groupby("patient_id")["gene"].nunique()
        counts = {p: int(n_genes_per.get(p, 0)) for p in patients}
        tmb, tmb_class = tmb_labels(counts, self.tmb_divisor, self.tmb_threshold)
        genes = self._select_genes(kept, len(patients))
        gpos = {g: i for i, g in enumerate(genes)}
        ppos = {p: i for i, p in enumerate(patients)}
        sub = kept[kept["gene"].isin(gpos) & kept["patient_id"].isin(ppos)]
        X = np.zeros((len(patients), len(genes)), dtype=np.float32)
        X[sub["patient_id"].map(ppos).to_numpy(), sub["gene"].map(gpos).to_numpy()] = 1.0
        labels: dict[str, np.ndarray] = {
            "tmb": np.array([tmb[p] for p in patients], dtype=np.float32),
            "tmb_class": np.array([tmb_class[p] for p in patients]),
        }
        if cancer_of:
            labels["cancer_type"] = np.array([cancer_of.get(p, "") for p in patients])
        data = ModalityData(modality=self.modality, kind="matrix", patient_ids=patients, item_ids=patients,
                            data=X, feature_names=genes, labels=labels,
                            source="maf: " + ", ".join(sorted(rows["file"].unique())),
                            fingerprint=fingerprint(self.fingerprint_inputs(), self.get_params()),
                            extras={"n_mutated_genes": {p: counts[p] for p in patients}})
        notes.append(f"maf: {len(patients):,} patients x {len(genes):,} genes "
                     f"(min_gene_frequency={self.min_gene_frequency}); tmb_class counts "
                     + ", ".join(f"{k} {v}" for k, v in sorted(pd.Series(labels['tmb_class']).value_counts().items())))
        out = RawDataset(modalities={self.modality: data}, notes=notes,
                         labels={"tmb": dict(zip(patients, labels["tmb"].tolist())),
                                 "tmb_class": dict(zip(patients, labels["tmb_class"].tolist()))})
        if cancer_of:
            out.labels["cancer_type"] = labels_from_items(patients, labels["cancer_type"])
            notes.append(availability_note(self.modality, patients, out.labels["cancer_type"]))
        return out


@hookimpl
def register_readers(register):
    register("maf", MafReader, modality="mutation", tags=["mutation", "tmb"])
