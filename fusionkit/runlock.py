"""One run at a time writes into a run folder.

A run takes ``<out>/.fusionkit.lock`` before it touches anything else there:
an exclusive ``flock`` on the file (released by the kernel when the process
dies, kill -9 included) plus the holder's pid, host, command and start time
written inside, so a second run fails fast naming the holder. Where the file
system has no working ``flock`` the lock falls back to exclusive creation,
and a lock whose holder pid no longer runs on this host is stale and taken
over. A lock held only by orphaned children of a dead run is stale too.
"""

from __future__ import annotations

import datetime as _dt
import errno
import json
import logging
import os
import socket
import sys
from pathlib import Path
from typing import Any

from .errors import FusionkitError

__all__ = ["RunLock", "RunLockedError", "LOCK_NAME", "holder", "is_locked"]

log = logging.getLogger("fusionkit")
LOCK_NAME = ".fusionkit.lock"
#: folders this process holds (real path -> depth): a lock taken again by its holder nests
_HELD: dict[str, int] = {}


class RunLockedError(FusionkitError):
    """Another run holds the run folder."""


def _pid_alive(pid: int) -> bool:
    if pid <= 0:
        return False
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


def _read_holder(path: Path) -> dict[str, Any]:
    try:
        return json.loads(path.read_text() or "{}")
    except (OSError, ValueError):
        return {}


def holder(folder: str | os.PathLike[str]) -> dict[str, Any] | None:
    """Who holds the lock on ``folder`` (pid, host, command, started), or None when nobody does."""
    path = Path(folder) / LOCK_NAME
    if not path.exists():
        return None
    try:
        import fcntl

        with open(path, "rb") as fh:
            try:
                fcntl.flock(fh.fileno(), fcntl.LOCK_SH | fcntl.LOCK_NB)
            except BlockingIOError:
                return _read_holder(path)
            fcntl.flock(fh.fileno(), fcntl.LOCK_UN)
        return None
    except (ImportError, OSError):
        info = _read_holder(path)
        same_host = info.get("host") == socket.gethostname()
        return info if info and (not same_host or _pid_alive(int(info.get("pid", 0)))) else None


def is_locked(folder: str | os.PathLike[str]) -> bool:
    return holder(folder) is not None


def _describe(info: dict[str, Any]) -> str:
    if not info:
        return "another process (no holder information)"
    cmd = info.get("command") or ""
    cmd = f" running `{cmd}`" if cmd else ""
    return f"pid {info.get('pid')} on {info.get('host')}{cmd}, since {info.get('started')}"


class RunLock:
    """Exclusive lock on one run folder; use as a context manager.

    >>> with RunLock(out_dir, recipe="recipe.yaml"):   # doctest: +SKIP
    ...     run()
    """

    def __init__(self, folder: str | os.PathLike[str], *, recipe: str | None = None):
        self.folder = Path(folder)
        self.path = self.folder / LOCK_NAME
        self.recipe = recipe
        self._fh: Any = None
        self._flock = True
        self._nested = False

    def _info(self) -> dict[str, Any]:
        return {"pid": os.getpid(), "host": socket.gethostname(), "recipe": self.recipe,
                "command": " ".join(os.path.basename(a) if i == 0 else a for i, a in enumerate(sys.argv))[:300],
                "started": _dt.datetime.now(_dt.timezone.utc).isoformat(timespec="seconds")}

    def acquire(self) -> "RunLock":
        try:
            self.folder.mkdir(parents=True, exist_ok=True)
        except OSError as exc:
            raise FusionkitError(f"cannot create the run folder: {exc.strerror or exc}", where=str(self.folder),
                                 hint="choose another --out (or output.dir in the recipe)") from None
        real = os.path.realpath(self.folder)
        if _HELD.get(real) and holder(self.folder) and holder(self.folder).get("pid") == os.getpid():
            _HELD[real] += 1  # this process already holds it (the CLI around the engine)
            self._nested = True
            return self
        for _attempt in range(3):
            if self._try_acquire():
                _HELD[real] = 1
                return self
        raise RunLockedError(f"run folder is locked by {_describe(_read_holder(self.path))}", where=str(self.folder),
                             hint="wait for that run to finish, or choose another --out")

    def _try_acquire(self) -> bool:
        try:
            import fcntl
        except ImportError:  # pragma: no cover - not POSIX
            return self._acquire_exclusive()
        fh = open(self.path, "a+b")
        try:
            fcntl.flock(fh.fileno(), fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            fh.close()
            info = _read_holder(self.path)
            if info.get("host") == socket.gethostname() and info.get("pid") and not _pid_alive(int(info["pid"])):
                # held only by orphaned children of a dead run: a fresh file (inode) is a fresh lock
                log.warning("taking over the stale lock of %s (pid %s is gone)", self.folder, info["pid"])
                self._unlink_if_same(info)
                return False
            raise RunLockedError(f"run folder is locked by {_describe(info)}", where=str(self.folder),
                                 hint="wait for that run to finish, or choose another --out") from None
        except OSError as exc:
            fh.close()
            if exc.errno in (errno.ENOLCK, errno.EOPNOTSUPP, errno.ENOSYS):
                self._flock = False
                return self._acquire_exclusive()
            raise
        if not self.path.exists() or os.fstat(fh.fileno()).st_ino != self.path.stat().st_ino:
            fh.close()  # the file was replaced while we waited: lock the new one
            return False
        fh.seek(0)
        fh.truncate()
        fh.write(json.dumps(self._info()).encode())
        fh.flush()
        self._fh = fh
        return True

    def _unlink_if_same(self, info: dict[str, Any]) -> None:
        if _read_holder(self.path) == info:
            try:
                self.path.unlink()
            except FileNotFoundError:
                pass

    def _acquire_exclusive(self) -> bool:
        """Fallback without flock: O_EXCL creation, stale when the holder pid is gone (same host)."""
        try:
            fd = os.open(self.path, os.O_CREAT | os.O_EXCL | os.O_WRONLY, 0o644)
        except FileExistsError:
            info = _read_holder(self.path)
            if info.get("host") == socket.gethostname() and not _pid_alive(int(info.get("pid") or 0)):
                log.warning("removing the stale lock of %s (pid %s is gone)", self.folder, info.get("pid"))
                self._unlink_if_same(info)
                return False
            raise RunLockedError(f"run folder is locked by {_describe(info)}", where=str(self.folder),
                                 hint="wait for that run to finish, or choose another --out") from None
        with os.fdopen(fd, "wb") as fh:
            fh.write(json.dumps(self._info()).encode())
        return True

    def release(self) -> None:
        real = os.path.realpath(self.folder)
        if real in _HELD:
            _HELD[real] -= 1
            if _HELD[real] > 0:
                return
            del _HELD[real]
        if self._nested:
            return
        try:
            if self._fh is not None or not self._flock:
                self.path.unlink()
        except FileNotFoundError:
            pass
        if self._fh is not None:
            self._fh.close()
            self._fh = None

    def __enter__(self) -> "RunLock":
        return self.acquire()

    def __exit__(self, *exc: Any) -> None:
        self.release()
