"""Input fingerprints: a streaming hash of the whole file, cached by its stat.

Every byte of an input counts (an edit in the middle of a 10 GB file changes
its fingerprint), and a re-run stays fast: the hash is remembered under the
file's path, size, mtime, ctime and inode, in memory and, when a run
configures it, in ``<cache>/fingerprints.json`` (data, never code). A file
whose stat changed is hashed again.
"""

from __future__ import annotations

import hashlib
import json
import logging
import os
import threading
from pathlib import Path

from .errors import DataError

__all__ = ["file_fingerprint", "configure", "Fingerprinter"]

log = logging.getLogger("fusionkit")
_BLOCK = 1 << 20
_FORMAT = 1


def _stat_key(path: Path) -> str:
    st = path.stat()
    return f"{st.st_size}:{st.st_mtime_ns}:{st.st_ctime_ns}:{st.st_ino}:{st.st_dev}"


def _hash_file(path: Path) -> str:
    h = hashlib.sha256()
    try:
        with open(path, "rb") as fh:
            for block in iter(lambda: fh.read(_BLOCK), b""):
                h.update(block)
    except OSError as exc:
        raise DataError(f"cannot read input file: {exc.strerror or exc}", where=str(path),
                        hint="check that the file exists and is readable") from exc
    return h.hexdigest()


class Fingerprinter:
    """Whole-file sha256 fingerprints, remembered by stat (and optionally on disk)."""

    def __init__(self, cache_file: str | os.PathLike[str] | None = None):
        self.cache_file = Path(cache_file) if cache_file else None
        self._memo: dict[str, tuple[str, str]] = {}
        self._dirty = False
        self._lock = threading.Lock()
        self.hashed = 0  # files hashed by this object (the rest came from the cache)
        if self.cache_file is not None:
            entries, readable = _read_cache(self.cache_file)
            self._memo.update(entries)
            self._dirty = not readable  # an unreadable cache file is rewritten at the next save

    def file(self, path: str | os.PathLike[str]) -> str:
        """The sha256 (hex) of one file's whole content."""
        p = Path(path)
        if not p.is_file():
            raise DataError("input file not found" if not p.exists() else "input is not a regular file",
                            where=str(p), hint="check the path (relative paths resolve against the recipe file)")
        key = os.path.realpath(p)
        try:
            stat = _stat_key(p)
        except OSError as exc:
            raise DataError(f"cannot stat input file: {exc.strerror or exc}", where=str(p)) from exc
        with self._lock:
            hit = self._memo.get(key)
        if hit is not None and hit[0] == stat:
            return hit[1]
        digest = _hash_file(p)
        self.hashed += 1
        with self._lock:
            self._memo[key] = (stat, digest)
            self._dirty = True
        return digest

    def fingerprint(self, path: str | os.PathLike[str], length: int = 16) -> str:
        """A file's or a folder's (every file, by relative name) content fingerprint."""
        p = Path(path)
        if p.is_dir():
            h = hashlib.sha256()
            for sub in sorted(q for q in p.rglob("*") if q.is_file()):
                h.update(str(sub.relative_to(p)).encode("utf-8", "surrogateescape"))
                h.update(self.file(sub).encode())
            return h.hexdigest()[:length]
        h = hashlib.sha256(self.file(p).encode())
        return h.hexdigest()[:length]

    def save(self) -> None:
        """Write the remembered hashes to ``cache_file`` (atomically) if any is new."""
        if self.cache_file is None or not self._dirty:
            return
        from .store import atomic_write_json

        with self._lock:
            entries = {k: list(v) for k, v in self._memo.items()}
            self._dirty = False
        try:
            atomic_write_json(self.cache_file, {"format": _FORMAT, "entries": entries})
        except OSError as exc:  # a cache that cannot be written only costs time
            log.warning("could not save fingerprint cache %s: %s", self.cache_file, exc)


def _read_cache(path: Path) -> tuple[dict[str, tuple[str, str]], bool]:
    """(entries, whether the file was readable); a missing file is readable and empty."""
    if not path.exists():
        return {}, True
    try:
        doc = json.loads(path.read_text())
        if doc.get("format") != _FORMAT:
            raise ValueError(f"format {doc.get('format')!r}")
        entries = doc["entries"]
        return {str(k): (str(v[0]), str(v[1])) for k, v in entries.items()
                if isinstance(v, list) and len(v) == 2 and len(str(v[1])) == 64}, True
    except (OSError, ValueError, KeyError, TypeError, AttributeError) as exc:
        log.warning("ignoring unreadable fingerprint cache %s (%s); it will be rebuilt", path, exc)
        return {}, False


_DEFAULT = Fingerprinter()


def configure(cache_file: str | os.PathLike[str] | None) -> Fingerprinter:
    """Use ``cache_file`` (inside a run's cache folder) for fingerprints from now on; returns it."""
    global _DEFAULT
    fresh = Fingerprinter(cache_file)  # (re)read: another process may have added to it
    fresh._memo = {**_DEFAULT._memo, **fresh._memo}
    _DEFAULT = fresh
    return _DEFAULT


def default() -> Fingerprinter:
    return _DEFAULT


def file_fingerprint(path: str | os.PathLike[str], length: int = 16) -> str:
    """Content fingerprint of a file or folder: every byte hashed, cached by stat."""
    return _DEFAULT.fingerprint(path, length)

