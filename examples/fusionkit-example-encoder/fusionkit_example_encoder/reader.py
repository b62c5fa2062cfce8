"""fusionkit plugin: ``item-table``, the items of one modality from a CSV/TSV table.

Written from docs/PLUGINS.md ("A reader"), importing only ``fusionkit.__all__`` names.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

from fusionkit import DataError, ModalityData, RawDataset, Reader, hookimpl, normalise_ids, patient_labels


class ItemTableReader(Reader):
    """Items of one modality from a CSV/TSV table (gz ok): numeric feature columns, or one text column.

    One row per item, several rows per patient allowed. ``id_column`` holds the
    patient id (normalised: a TCGA sample barcode becomes its 12-character patient id);
    ``text_column``, when set, makes a text modality (one sentence per row),
    otherwise every numeric column but the labels is a feature;
    ``label_columns`` are per-item labels (default ``cancer_type`` when present)
    that also become patient labels; ``modality`` names what the reader yields.
    """

    def __init__(self, path: str = "", modality: str = "rna", id_column: str = "patient_id",
                 text_column: str | None = None, label_columns: list | None = None):
        self.path = path
        self.modality = modality
        self.id_column = id_column
        self.text_column = text_column
        self.label_columns = label_columns

    def fingerprint_inputs(self) -> list[str]:
        return [self.path]

    def _table(self, path: Path):
        import pandas as pd

        if not path.is_file():
            raise DataError(f"file not found: {path}", where="item-table.path",
                            hint="give path: a CSV/TSV file, relative to the recipe")
        sep = "\t" if ".tsv" in "".join(path.suffixes).lower() else ","
        table = pd.read_csv(path, sep=sep)
        needed = [self.id_column] + ([self.text_column] if self.text_column else [])
        missing = [c for c in needed if c not in table.columns]
        if missing:
            raise DataError(f"no column {missing[0]!r}", where=str(path),
                            hint=f"columns: {', '.join(map(str, table.columns[:10]))}")
        return table

    def read(self, ctx=None) -> RawDataset:
        import pandas as pd

        path = Path(self.path)
        table = self._table(path)
        labels = [c for c in (self.label_columns or ["cancer_type"]) if c in table.columns]
        if self.text_column:
            kind, feature_names = "text", None
            data = table[self.text_column].fillna("").astype(str).tolist()
        else:
            kind = "matrix"
            feature_names = [c for c in table.columns if c != self.id_column and c not in labels
                             and pd.api.types.is_numeric_dtype(table[c])]
            if not feature_names:
                raise DataError("no numeric feature column", where=str(path),
                                hint="give text_column for a text modality, or add numeric columns")
            data = table[feature_names].to_numpy(dtype=np.float32)
            if not np.isfinite(data).all():
                raise DataError("missing or infinite values", where=str(path), hint="impute or drop them first")
        pids, report = normalise_ids(table[self.id_column], source=f"{path} ({self.id_column})")
        values = {c: table[c].astype(str).to_numpy() for c in labels}
        items = ModalityData(modality=self.modality, kind=kind, patient_ids=pids,
                             item_ids=np.array([f"{p}:{self.modality}:{i}" for i, p in enumerate(pids)]),
                             data=data, feature_names=feature_names, labels=values,
                             source=f"item-table:{path.name}", extras={"id_report": report.as_dict()})
        tables = {c: patient_labels(pids, v, label=c, source=str(path)) for c, v in values.items()}
        return RawDataset(modalities={self.modality: items}, labels=tables)


@hookimpl
def register_readers(register):
    register("item-table", ItemTableReader, tags=["table", "text"])
