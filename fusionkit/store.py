"""On-disk, memory-mappable, patient-keyed embedding store.

Layout of one store (a folder)::

    meta.json                 provenance, shape, and the token of the live files
    embeddings.<token>.npy    float32 (n, dim), opened with mmap_mode="r"
    items.<token>.npz         str columns: patient_id, item_id, labels...

Writes are atomic: data files are written under a fresh token, then
``meta.json`` is replaced with ``os.replace`` (atomic on POSIX), then the files
of the old token are removed. A crash at any point leaves either the old store
or the new one, never a mix.
"""

from __future__ import annotations

import hashlib
import json
import os
import tempfile
import uuid
from pathlib import Path
from typing import Any, Iterable, Mapping

import numpy as np

from .errors import StoreError

STORE_FORMAT = 1


# ----------------------------------------------------------------------------- atomic helpers

def _umask() -> int:
    mask = os.umask(0)
    os.umask(mask)
    return mask


#: new files get the usual mode (0666 minus the umask), not mkstemp's private 0600
_FILE_MODE = 0o666 & ~_umask()


def _atomic_write(path: str | os.PathLike[str], write: Any) -> None:
    """Call ``write(fh)`` on a temp file in the target's folder, fsync, then rename over ``path``.

    A failing write (full disk, read-only folder) is one :class:`StoreError` naming the file.
    """
    path = Path(path)
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    except OSError as exc:
        raise StoreError(f"cannot write file: {exc.strerror or exc}", where=str(path),
                         hint="check that the folder is writable and the disk has space") from exc
    try:
        os.fchmod(fd, _FILE_MODE)
        with os.fdopen(fd, "wb") as fh:
            write(fh)
            fh.flush()
            os.fsync(fh.fileno())
        os.replace(tmp, path)
    except BaseException as exc:
        try:
            os.unlink(tmp)
        except FileNotFoundError:
            pass
        if isinstance(exc, OSError):
            raise StoreError(f"cannot write file: {exc.strerror or exc}", where=str(path),
                             hint="free disk space or check the folder's permissions, then re-run") from exc
        raise


def atomic_write_bytes(path: str | os.PathLike[str], data: bytes) -> None:
    """Write ``data`` to ``path`` through a temp file in the same folder + rename."""
    _atomic_write(path, lambda fh: fh.write(data))


def atomic_write_text(path: str | os.PathLike[str], text: str) -> None:
    atomic_write_bytes(path, text.encode("utf-8"))


def atomic_write_json(path: str | os.PathLike[str], obj: Any) -> None:
    atomic_write_text(path, json.dumps(obj, indent=2, sort_keys=True, default=_json_default) + "\n")


def atomic_save_npy(path: str | os.PathLike[str], array: np.ndarray) -> None:
    _atomic_write(path, lambda fh: np.save(fh, np.ascontiguousarray(array), allow_pickle=False))


def _json_default(obj: Any) -> Any:
    if isinstance(obj, np.integer):
        return int(obj)
    if isinstance(obj, np.floating):
        return float(obj)
    if isinstance(obj, np.ndarray):
        return obj.tolist()
    if isinstance(obj, Path):
        return str(obj)
    if isinstance(obj, (set, tuple)):
        return list(obj)
    return repr(obj)


def stable_hash(obj: Any, length: int = 16) -> str:
    """Hash of a JSON-able object (sorted keys); the basis of every cache key."""
    text = json.dumps(obj, sort_keys=True, default=_json_default, separators=(",", ":"))
    return hashlib.sha256(text.encode("utf-8")).hexdigest()[:length]


# ----------------------------------------------------------------------------- store

class EmbeddingStore:
    """A read-only view of one store: ``embeddings`` is a float32 memmap."""

    def __init__(self, path: str | os.PathLike[str], *, mmap: bool = True):
        self.path = Path(path)
        meta_path = self.path / "meta.json"
        if not meta_path.exists():
            raise StoreError(f"no embedding store at {str(self.path)!r} (meta.json missing)",
                             hint="run `fusionkit run` to build it, or import embeddings first")
        try:
            self.meta = json.loads(meta_path.read_text())
            token = str(self.meta["token"])
        except (ValueError, KeyError, TypeError, OSError) as exc:
            raise StoreError(f"corrupt meta.json in store {str(self.path)!r}: {exc}",
                             hint="delete the folder; a run rebuilds it") from None
        emb_path = self.path / f"embeddings.{token}.npy"
        items_path = self.path / f"items.{token}.npz"
        if not emb_path.exists() or not items_path.exists():
            raise StoreError(f"store {str(self.path)!r} is incomplete: files of token {token} missing",
                             hint="delete the folder and rebuild it")
        try:  # data only: no pickle, and a truncated file is named, never a traceback
            self.embeddings = np.load(emb_path, mmap_mode="r" if mmap else None, allow_pickle=False)
            with np.load(items_path, allow_pickle=False) as z:
                self.items = {k: z[k] for k in z.files}
        except (ValueError, OSError, EOFError, KeyError) as exc:
            raise StoreError(f"store {str(self.path)!r} is corrupt ({type(exc).__name__}: {exc})",
                             hint="delete the folder; a run rebuilds it") from None
        if self.embeddings.ndim != 2 or "patient_id" not in self.items or \
                list(self.embeddings.shape) != [self.meta.get("n"), self.meta.get("dim")]:
            raise StoreError(f"store {str(self.path)!r} is corrupt: embeddings of shape {self.embeddings.shape} "
                             f"but meta.json says ({self.meta.get('n')}, {self.meta.get('dim')})",
                             hint="delete the folder; a run rebuilds it")
        if self.embeddings.shape[0] != len(self.items["patient_id"]):
            raise StoreError(f"store {str(self.path)!r}: {self.embeddings.shape[0]} vectors but "
                             f"{len(self.items['patient_id'])} item rows")

    @property
    def n(self) -> int:
        return int(self.embeddings.shape[0])

    @property
    def dim(self) -> int:
        return int(self.embeddings.shape[1])

    @property
    def modality(self) -> str:
        return str(self.meta.get("modality", ""))

    @property
    def provenance(self) -> dict[str, Any]:
        return dict(self.meta.get("provenance", {}))

    @property
    def patient_ids(self) -> np.ndarray:
        return self.items["patient_id"]

    @property
    def item_ids(self) -> np.ndarray:
        return self.items["item_id"]

    def label(self, name: str) -> np.ndarray:
        try:
            return self.items[name]
        except KeyError:
            raise StoreError(f"store {str(self.path)!r} has no item column {name!r}",
                             hint=f"columns: {', '.join(sorted(self.items))}") from None

    def __len__(self) -> int:
        return self.n

    def __repr__(self) -> str:  # pragma: no cover
        return f"EmbeddingStore({str(self.path)!r}, n={self.n}, dim={self.dim}, modality={self.modality!r})"


class StoreWriter:
    """Streams a new version of a store; nothing is visible until :meth:`commit`.

    ``writer.embeddings`` is a writable memmap of shape (n, dim), so stores
    larger than RAM can be filled shard by shard.
    """

    def __init__(self, path: str | os.PathLike[str], n: int, dim: int):
        self.path = Path(path)
        self.path.mkdir(parents=True, exist_ok=True)
        self.token = uuid.uuid4().hex[:12]
        self._emb_path = self.path / f"embeddings.{self.token}.npy"
        self._tmp_emb = self.path / f".embeddings.{self.token}.npy.tmp"
        self.embeddings = np.lib.format.open_memmap(self._tmp_emb, mode="w+", dtype=np.float32, shape=(n, dim))
        self.n, self.dim = n, dim
        self._committed = False

    def commit(self, items: Mapping[str, Iterable[Any]], *, modality: str,
               provenance: Mapping[str, Any] | None = None) -> EmbeddingStore:
        cols = {k: np.asarray(list(v) if not isinstance(v, np.ndarray) else v).astype(str) for k, v in items.items()}
        for required in ("patient_id", "item_id"):
            if required not in cols:
                raise StoreError(f"store items need a {required!r} column", where=str(self.path))
        for key, col in cols.items():
            if len(col) != self.n:
                raise StoreError(f"item column {key!r} has {len(col)} rows, embeddings have {self.n}",
                                 where=str(self.path))
        emb = self.embeddings
        if not np.isfinite(emb).all():
            bad = int((~np.isfinite(emb)).any(axis=1).sum())
            self.abort()
            raise StoreError(f"{bad} embeddings contain NaN or inf; refusing to write the store",
                             where=f"{self.path} (modality {modality})",
                             hint="check the encoder's input for missing values")
        emb.flush()
        del self.embeddings
        del emb
        try:
            self._write_data_files(cols)
        except OSError as exc:  # a full disk or a read-only cache: one message naming the store
            raise StoreError(f"cannot write the embedding store: {exc.strerror or exc}", where=str(self.path),
                             hint="free disk space or check the cache folder's permissions, then re-run") from exc
        meta_path = self.path / "meta.json"
        meta = {
            "format": STORE_FORMAT,
            "token": self.token,
            "n": self.n,
            "dim": self.dim,
            "dtype": "float32",
            "modality": modality,
            "columns": sorted(cols),
            "provenance": dict(provenance or {}),
        }
        atomic_write_json(meta_path, meta)  # the commit point
        self._committed = True
        _remove_stale(self.path, keep=self.token)
        return EmbeddingStore(self.path)

    def _write_data_files(self, cols: dict[str, np.ndarray]) -> None:
        with open(self._tmp_emb, "rb+") as fh:
            os.fsync(fh.fileno())
        os.replace(self._tmp_emb, self._emb_path)
        items_tmp = self.path / f".items.{self.token}.npz.tmp"
        with open(items_tmp, "wb") as fh:
            np.savez(fh, **cols)
            fh.flush()
            os.fsync(fh.fileno())
        os.replace(items_tmp, self.path / f"items.{self.token}.npz")

    def abort(self) -> None:
        try:
            del self.embeddings
        except AttributeError:
            pass
        for p in (self._tmp_emb,):
            try:
                p.unlink()
            except FileNotFoundError:
                pass


def _remove_stale(folder: Path, keep: str) -> None:
    for p in folder.iterdir():
        name = p.name
        if name == "meta.json":
            continue
        if (name.startswith(("embeddings.", "items.")) and f".{keep}." not in name) or name.endswith(".tmp"):
            try:
                p.unlink()
            except (FileNotFoundError, IsADirectoryError):
                pass


def write_store(path: str | os.PathLike[str], embeddings: np.ndarray, items: Mapping[str, Iterable[Any]], *,
                modality: str, provenance: Mapping[str, Any] | None = None) -> EmbeddingStore:
    """Write a whole store atomically from an in-memory array."""
    embeddings = np.asarray(embeddings)
    if embeddings.ndim != 2:
        raise StoreError(f"embeddings must be 2-D (n, dim), got shape {embeddings.shape}", where=str(path))
    writer = StoreWriter(path, embeddings.shape[0], embeddings.shape[1])
    try:
        writer.embeddings[:] = embeddings.astype(np.float32, copy=False)
    except BaseException:
        writer.abort()
        raise
    return writer.commit(items, modality=modality, provenance=provenance)


def store_exists(path: str | os.PathLike[str]) -> bool:
    try:
        EmbeddingStore(path)
        return True
    except StoreError:
        return False

