"""The ``fusionkit query`` command (registered here): nearest patients from a saved index
folder, plus :func:`load_index` (any saved index, dispatched on ``meta.json``) and
:func:`query_index` (the command's engine).

The retrieval task may add ``lookup.npz`` (aggregate vectors of indexed and
held-out query patients) and ``labels.json`` beside an index's files so that
``fusionkit query INDEX_DIR --patient ID`` can answer by patient id.
"""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any

import numpy as np

from fusionkit import hookimpl
from fusionkit import DataError, FusionkitError, find_run_folder, require_complete

from fusionkit_plugins.indexes.common import INDEX_CLASSES, BaseIndex, as_matrix, read_meta
from fusionkit_plugins.indexes.faiss import FaissFlatIndex, FaissHNSWIndex, FaissIVFIndex
from fusionkit_plugins.indexes.numpy_exact import NumpyExactIndex

__all__ = ["load_index", "query_index"]

#: the built-in index classes; other subclasses of BaseIndex join ``INDEX_CLASSES`` when defined
BUILTIN_INDEXES = (FaissFlatIndex, FaissHNSWIndex, FaissIVFIndex, NumpyExactIndex)


def load_index(path: str | os.PathLike[str]) -> BaseIndex:
    """Load any index folder written by ``save`` (dispatches on ``meta.json``)."""
    meta = read_meta(Path(path))
    classes = {**{c.index_name: c for c in BUILTIN_INDEXES}, **INDEX_CLASSES}
    cls = classes.get(meta.get("index", ""))
    if cls is None:
        raise DataError(f"{path} holds an index of unknown type {meta.get('index')!r}",
                        hint=f"known: {', '.join(classes)}")
    return cls.load(path)


def query_index(folder: str | os.PathLike[str], *, patient: str | None = None, vector: np.ndarray | None = None,
                k: int = 10, include_self: bool = False) -> dict[str, Any]:
    """Answer one query from a saved index folder.

    By patient: the patient's aggregate is looked up in ``lookup.npz`` (written by
    the retrieval task next to the index: the aggregates of the indexed patients
    and of the held-out query patients). When the patient is itself indexed it
    is left out of its own neighbours unless ``include_self``. By vector: any
    vector of the index width.
    """
    folder = Path(folder)
    index = load_index(folder)
    labels: dict[str, Any] = {}
    if (folder / "labels.json").exists():
        labels = json.loads((folder / "labels.json").read_text())
    role = None
    if vector is None:
        if patient is None:
            raise DataError("give a patient id or a vector")
        lookup_path = folder / "lookup.npz"
        if not lookup_path.exists():
            raise DataError(f"{folder} has no lookup.npz, so it cannot query by patient",
                            hint="pass the query vector with --vector-file (a .npy of the index width)")
        with np.load(lookup_path, allow_pickle=False) as z:
            ids = z["ids"].astype(str)
            hit = np.where(ids == str(patient))[0]
            if not len(hit):
                raise DataError(f"patient {patient!r} is not in {lookup_path.name}",
                                hint="it holds the indexed and held-out query patients of the last repeat; "
                                     "or pass --vector-file")
            vector = np.asarray(z["X"][hit[0]], dtype=np.float32)
            role = str(z["role"][hit[0]]) if "role" in z else None
    Q = as_matrix(vector)
    extra = 0 if include_self or patient is None else 1
    scores, ids = index.search(Q, int(k) + extra)
    neighbours = []
    for s, i in zip(scores[0], ids[0]):
        if i == "" or (not include_self and patient is not None and i == str(patient)):
            continue
        row: dict[str, Any] = {"id": str(i), "score": None if np.isnan(s) else float(s)}
        for lname, table in labels.items():
            if isinstance(table, dict) and str(i) in table:
                row[lname] = table[str(i)]
        neighbours.append(row)
        if len(neighbours) == int(k):
            break
    out: dict[str, Any] = {"index": str(folder), "type": index.index_name, "metric": index.metric,
                           "larger_is_closer": index.larger_is_closer, "k": int(k), "query": patient,
                           "query_role": role, "neighbours": neighbours}
    if patient is not None:
        for lname, table in labels.items():
            if isinstance(table, dict) and str(patient) in table:
                out.setdefault("query_labels", {})[lname] = table[str(patient)]
    return out


def _load_vector(path: str) -> np.ndarray:
    """A query vector from a numeric .npy (never unpickled)."""
    try:
        vector = np.load(path, allow_pickle=False)
    except (ValueError, OSError, EOFError) as exc:
        raise DataError(f"not a numeric .npy vector ({exc})", where=path,
                        hint="save the vector with numpy.save as a float array of the index width") from None
    if not isinstance(vector, np.ndarray) or vector.dtype.kind not in "fiu":
        raise DataError("the vector file must hold a numeric array", where=path)
    return vector


@hookimpl
def register_commands(cli):
    import click

    @cli.command("query")
    @click.argument("index_dir", type=click.Path(exists=True, file_okay=False))
    @click.option("--patient", default=None, help="Query by patient id (its aggregate is read from lookup.npz).")
    @click.option("--vector-file", type=click.Path(exists=True, dir_okay=False), default=None,
                  help="Query by a vector: .npy of shape (dim,) or (1, dim).")
    @click.option("-k", "k", type=int, default=10, show_default=True, help="Neighbours to return.")
    @click.option("--include-self", is_flag=True, default=False,
                  help="Keep the query patient among its own neighbours when it is indexed.")
    @click.option("--json", "as_json", is_flag=True, default=False, help="Print JSON.")
    def query(index_dir: str, patient: str | None, vector_file: str | None, k: int, include_self: bool,
              as_json: bool) -> None:
        """Nearest patients from a saved index (a retrieval task's <task>/index folder).

        \b
        fusionkit query runs/x/retrieval/index --patient TCGA-AA-0001 -k 10
        fusionkit query runs/x/retrieval/index --vector-file q.npy --json
        """
        if (patient is None) == (vector_file is None):
            raise click.UsageError("give exactly one of --patient or --vector-file")
        try:
            run = find_run_folder(index_dir)
            if run is not None:  # an index of a failed or unfinished run is stale
                require_complete(run, what="index")
            vector = _load_vector(vector_file) if vector_file else None
            answer = query_index(index_dir, patient=patient, vector=vector, k=k, include_self=include_self)
        except FusionkitError as err:
            click.echo(f"error: {err}", err=True)
            raise SystemExit(1)
        if as_json:
            click.echo(json.dumps(answer, indent=2))
            return
        head = f"{answer['type']} ({answer['metric']}, {'higher' if answer['larger_is_closer'] else 'lower'} is closer)"
        who = f"patient {patient}" + (f" [{answer['query_role']}]" if answer.get("query_role") else "") \
            if patient else vector_file
        click.echo(f"{who} -> {len(answer['neighbours'])} neighbours from {head}")
        if answer.get("query_labels"):
            click.echo("query labels: " + ", ".join(f"{k}={v}" for k, v in answer["query_labels"].items()))
        for rank, row in enumerate(answer["neighbours"], 1):
            extra = "  ".join(f"{k}={v}" for k, v in row.items() if k not in ("id", "score"))
            score = "nan" if row["score"] is None else f"{row['score']:.4f}"
            click.echo(f"{rank:3d}  {row['id']:<20s} {score:>10s}  {extra}")
