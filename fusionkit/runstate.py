"""Run folders are transactional: a failed or interrupted run never looks complete.

``run.json`` is the folder's state. A run (holding the folder's
:class:`~fusionkit.runlock.RunLock`) first writes ``status: running``, then
removes the outputs that would make an old run look finished
(``report.html``; ``metrics.json`` is rewritten after each task), and ends
with ``status: ok`` or ``status: failed`` plus the error. A run killed
outright stays ``running`` with no lock holder: *interrupted*.

:func:`require_complete` is what ``results``, ``query`` and the report
use to refuse anything but a finished run, with a message saying why.
"""

from __future__ import annotations

import datetime as _dt
import json
import os
import shutil
from contextlib import contextmanager
from pathlib import Path
from typing import Any, Iterator

from .errors import FusionkitError
from .runlock import RunLock, holder

__all__ = ["IncompleteRunError", "run_transaction", "checkpoint", "require_complete", "find_run_folder",
           "run_status", "STALE_OUTPUTS"]

#: outputs a new run removes before it starts (they would describe the previous run; the
#: run rewrites them): the report, and the aggregates of sampling entries it may no longer have
STALE_OUTPUTS = ("report.html", "aggregates")
OK = ("ok", "finished")  # "finished": run folders written before fusionkit 0.3


class IncompleteRunError(FusionkitError):
    """A run folder holds no finished run (running, interrupted or failed)."""


def _now() -> str:
    return _dt.datetime.now(_dt.timezone.utc).isoformat()


def _write(out: Path, record: dict[str, Any]) -> None:
    from .store import atomic_write_json

    atomic_write_json(out / "run.json", record)


def _error_text(exc: BaseException) -> str:
    if isinstance(exc, FusionkitError):
        return str(exc)
    if isinstance(exc, KeyboardInterrupt):
        return "interrupted (Ctrl-C)"
    return f"{type(exc).__name__}: {exc}"


@contextmanager
def run_transaction(out: str | os.PathLike[str], record: dict[str, Any], *,
                    recipe: str | None = None) -> Iterator[dict[str, Any]]:
    """Lock ``out``, mark it running, clear stale outputs; end ``ok`` or ``failed`` (re-raising).

    ``record`` is the run record (``run.json``); the caller fills it during
    the run and may call :func:`checkpoint` to save it midway.
    """
    out = Path(out)
    with RunLock(out, recipe=recipe):
        record.update(status="running", pid=os.getpid(), started=record.get("started") or _now())
        record.pop("error", None)
        _write(out, record)  # from here on, the folder says "running" whatever else it holds
        for name in STALE_OUTPUTS:
            stale = out / name
            if stale.is_dir() and not stale.is_symlink():
                shutil.rmtree(stale, ignore_errors=True)
            else:
                stale.unlink(missing_ok=True)
        try:
            yield record
        except BaseException as exc:
            record.update(status="failed", error=_error_text(exc), error_type=type(exc).__name__,
                          finished=_now())
            try:
                _write(out, record)
            except (OSError, FusionkitError):  # a full disk must not hide the original error
                pass
            raise
        record.update(status="ok", finished=_now())
        _write(out, record)


def checkpoint(out: str | os.PathLike[str], record: dict[str, Any]) -> None:
    """Save the run record midway (still ``running``)."""
    _write(Path(out), record)


def run_status(run_dir: str | os.PathLike[str]) -> tuple[str, dict[str, Any]]:
    """(state, record): state is ok, running, interrupted, failed, missing or unreadable."""
    path = Path(run_dir) / "run.json"
    if not path.exists():
        return "missing", {}
    try:
        record = json.loads(path.read_text())
        if not isinstance(record, dict):
            raise ValueError("not a JSON object")
    except (OSError, ValueError) as exc:
        return "unreadable", {"error": str(exc)}
    status = record.get("status")
    if status in OK:
        return "ok", record
    if status == "failed":
        return "failed", record
    if status == "running":
        return ("running" if holder(run_dir) else "interrupted"), record
    return "unreadable", {"error": f"unknown status {status!r}"}


def require_complete(run_dir: str | os.PathLike[str], *, what: str = "results") -> dict[str, Any]:
    """The run record of a finished run in ``run_dir``; :class:`IncompleteRunError` otherwise."""
    state, record = run_status(run_dir)
    where = str(run_dir)
    if state == "ok":
        return record
    if state == "missing":
        raise IncompleteRunError("not a fusionkit run folder (run.json missing)", where=where,
                                 hint="give the --out folder of a `fusionkit run`")
    if state == "unreadable":
        raise IncompleteRunError(f"run.json is unreadable ({record.get('error')})", where=where,
                                 hint="re-run the recipe into this folder to rebuild it")
    if state == "running":
        who = holder(run_dir) or {}
        raise IncompleteRunError(f"the run is still in progress (pid {who.get('pid')}); its {what} are not final",
                                 where=where, hint="wait for it to finish")
    if state == "interrupted":
        raise IncompleteRunError(f"the run was interrupted before it finished; its {what} are incomplete",
                                 where=where, hint="re-run the same command: finished work is reused")
    err = str(record.get("error") or "unknown error").splitlines()[0]
    raise IncompleteRunError(f"the last run in this folder failed ({err}); its {what} would be stale",
                             where=where, hint="fix the problem and re-run the recipe into this folder")


def find_run_folder(path: str | os.PathLike[str], levels: int = 4) -> Path | None:
    """The run folder holding ``path`` (itself or a parent with run.json), or None."""
    p = Path(path).resolve()
    for cand in [p, *p.parents][: levels + 1]:
        if (cand / "run.json").exists():
            return cand
    return None
