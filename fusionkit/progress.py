"""A quiet, informative console for a run, and a run log that keeps the noise.

* :class:`Console` — one progress display for the whole run. On a terminal a
  single live line: stage (``[3/9] task recognizer``), units done of total,
  elapsed time and an estimate of the time left in the stage. Piped (CI,
  ``| tee``), plain lines: one when a stage starts, one when it ends.
* :class:`RunLog` — library warnings (``warnings.warn``: scikit-learn's
  ``ConvergenceWarning``, torch's ``UserWarning``...) and third-party log
  records go to ``run.log`` in the run folder, one line per occurrence with
  the stage it happened in, instead of the terminal. Worker processes forked
  by the local executor inherit the capture and append to the same file.
  :meth:`RunLog.summary` counts them once at the end ("classifier: 41 x
  ConvergenceWarning: lbfgs failed to converge ...; see run.log").

Nothing here imports a heavy library. The CLI owns the console (only it
prints); the engine and the context announce stages and units through
:func:`current` (a do-nothing console outside a CLI run).
"""

from __future__ import annotations

import logging
import os
import re
import sys
import threading
import time
import warnings
from dataclasses import dataclass, field
from pathlib import Path
from typing import IO, Any, Iterable, Iterator

__all__ = ["Console", "RunLog", "ConsoleFilter", "current", "set_current", "set_unit", "quiet_libraries",
           "fmt_duration"]

#: environment that keeps libraries' own progress bars and chatter off the terminal
QUIET_ENV = {"HF_HUB_DISABLE_PROGRESS_BARS": "1", "TRANSFORMERS_VERBOSITY": "error", "TQDM_DISABLE": "1",
             "TOKENIZERS_PARALLELISM": "false"}


def quiet_libraries() -> None:
    """Set :data:`QUIET_ENV` (where unset) before any library is imported."""
    for key, value in QUIET_ENV.items():
        os.environ.setdefault(key, value)


def fmt_duration(seconds: float) -> str:
    """``42s``, ``3m05s``, ``1h02m``."""
    s = max(0, int(round(seconds)))
    if s < 60:
        return f"{s}s"
    if s < 3600:
        return f"{s // 60}m{s % 60:02d}s"
    return f"{s // 3600}h{(s % 3600) // 60:02d}m"


# ----------------------------------------------------------------------------- console

@dataclass
class _Stage:
    name: str
    started: float
    total: int = 0
    done: int = 0
    label: str = ""
    unit_started: float | None = None


class _Bar:
    """What the context's progress hooks expect of a bar (``update``, ``set_postfix_str``, ``close``)."""

    def __init__(self, console: "Console", desc: str, total: int | None):
        self.console, self.desc, self.total = console, desc, int(total or 0)
        console._units(desc, self.total)

    def update(self, n: int = 1) -> None:
        self.console._advance(n)

    def set_postfix_str(self, s: str = "", refresh: bool = True) -> None:
        self.console._label(s)

    def close(self) -> None:
        self.console._units_done()

    def __enter__(self) -> "_Bar":
        return self

    def __exit__(self, *exc: Any) -> None:
        self.close()


class Console:
    """The run's one progress display (``mode``: ``tty``, ``plain``, ``off``; ``auto`` = tty on a terminal)."""

    def __init__(self, stream: IO[str] | None = None, mode: str = "auto", *, tick: float = 1.0):
        self.stream = stream if stream is not None else sys.stderr
        if mode == "auto":
            mode = "tty" if getattr(self.stream, "isatty", lambda: False)() else "plain"
        self.mode = mode
        self.t0 = time.monotonic()
        self.stage: _Stage | None = None
        self.stages_total: int | None = None
        self.stage_index = 0
        self._lock = threading.RLock()
        self._line = False
        self._stop = threading.Event()
        self._ticker: threading.Thread | None = None
        self.tick = tick

    # ------------------------------------------------------------ stages
    def plan(self, n_stages: int) -> None:
        """How many stages the run has (shown as ``[i/n]``)."""
        self.stages_total = int(n_stages)

    def begin(self, name: str) -> None:
        """A new stage starts (the previous one ends)."""
        with self._lock:
            self.end()
            self.stage_index += 1
            self.stage = _Stage(name, time.monotonic())
            if self.mode == "plain":
                self._print(f"{self._prefix()} {name} ...")
            self._draw()
        self._start_ticker()

    def end(self, note: str = "") -> None:
        with self._lock:
            st = self.stage
            if st is None:
                return
            self.stage = None
            took = fmt_duration(time.monotonic() - st.started)
            units = f", {st.done} units" if st.total else ""
            if self.mode == "plain":
                self._print(f"{self._prefix()} {st.name}: done in {took}{units}{'; ' + note if note else ''}")
            elif self.mode == "tty":
                self._clear()

    def _prefix(self) -> str:
        of = f"/{self.stages_total}" if self.stages_total else ""
        return f"[{self.stage_index}{of}]"

    # ------------------------------------------------------------ units (through bars)
    def bar(self, iterable: Iterable[Any] | None = None, desc: str = "", total: int | None = None,
            **_: Any) -> Any:
        """A tqdm-like handle that feeds this display (the context's progress factory); given
        an iterable, that iterable counted unit by unit."""
        if iterable is not None:
            return self.progress(iterable, desc, total)
        return _Bar(self, desc, total)

    def progress(self, iterable: Iterable[Any], desc: str = "", total: int | None = None) -> Iterator[Any]:
        if total is None and hasattr(iterable, "__len__"):
            total = len(iterable)  # type: ignore[arg-type]
        b = self.bar(desc, total)
        try:
            for x in iterable:
                yield x
                b.update(1)
        finally:
            b.close()

    def _units(self, desc: str, total: int) -> None:
        with self._lock:
            if self.stage is None:
                self.begin(desc or "work")
            st = self.stage
            st.total += total
            st.label = desc
            st.unit_started = time.monotonic() if st.unit_started is None else st.unit_started
            self._draw()

    def _advance(self, n: int) -> None:
        with self._lock:
            if self.stage is not None:
                self.stage.done += n
                self._draw()

    def _label(self, s: str) -> None:
        with self._lock:
            if self.stage is not None:
                self.stage.label = s
                self._draw()

    def _units_done(self) -> None:
        with self._lock:
            self._draw()

    # ------------------------------------------------------------ output
    def status_line(self) -> str:
        """The live line: stage, units i/n, elapsed, estimated time left."""
        st = self.stage
        now = time.monotonic()
        parts = [f"{self._prefix()} {st.name}" if st else "fusionkit"]
        if st and st.total:
            parts.append(f"{st.done}/{st.total} units")
            if st.done and st.unit_started is not None and st.done < st.total:
                rate = (now - st.unit_started) / st.done
                parts.append(f"~{fmt_duration(rate * (st.total - st.done))} left")
        parts.append(f"{fmt_duration(now - self.t0)} elapsed")
        if st and st.label and st.label != st.name:
            parts.append(st.label)
        return " · ".join(parts)

    def _draw(self) -> None:
        if self.mode != "tty":
            return
        width = _terminal_width(self.stream)
        line = self.status_line()
        if len(line) > width - 1:
            line = line[: max(10, width - 2)] + "…"
        self.stream.write("\r" + line + "\x1b[K")
        self.stream.flush()
        self._line = True

    def _clear(self) -> None:
        if self._line:
            self.stream.write("\r\x1b[K")
            self.stream.flush()
            self._line = False

    def _print(self, text: str) -> None:
        self.stream.write(text + "\n")
        self.stream.flush()

    def message(self, text: str) -> None:
        """A line printed above the live display (or plainly)."""
        with self._lock:
            if self.mode == "off":
                return
            self._clear()
            self._print(text)
            if self.stage is not None:
                self._draw()

    def _start_ticker(self) -> None:
        if self.mode != "tty" or self._ticker is not None:
            return

        def tick() -> None:
            while not self._stop.wait(self.tick):
                with self._lock:
                    if self.stage is not None:
                        self._draw()

        self._ticker = threading.Thread(target=tick, name="fusionkit-progress", daemon=True)
        self._ticker.start()

    def close(self) -> None:
        self._stop.set()
        with self._lock:
            self.end()
            self._clear()


def _terminal_width(stream: Any) -> int:
    """Columns of the terminal (``$COLUMNS``, else the stream's, else 100: a pseudo-terminal may say 0)."""
    try:
        cols = int(os.environ.get("COLUMNS") or os.get_terminal_size(stream.fileno()).columns)
    except (OSError, AttributeError, ValueError):
        cols = 0
    return cols if cols >= 20 else 100


class _Discard:
    """A stream that writes nowhere."""

    def write(self, text: str) -> int:
        return len(text)

    def flush(self) -> None:
        pass

    def isatty(self) -> bool:
        return False


class _Null(Console):
    """The console outside a CLI run: no output at all."""

    def __init__(self) -> None:
        super().__init__(stream=_Discard(), mode="off")  # type: ignore[arg-type]


_CURRENT: Console | None = None
_UNIT = ""


def set_unit(label: str) -> None:
    """Name the unit of work running in this process (executors call it; warnings are logged with it)."""
    global _UNIT
    _UNIT = str(label or "")


def current() -> Console:
    """The console of the run in progress (a silent one when none is set)."""
    global _CURRENT
    if _CURRENT is None:
        _CURRENT = _Null()
    return _CURRENT


def set_current(console: Console | None) -> None:
    global _CURRENT
    _CURRENT = console


# ----------------------------------------------------------------------------- run log

_LINE = re.compile(r"^WARNING (?P<cat>\S+) \[(?P<stage>[^\]]*)\] \((?P<unit>[^)]*)\) (?P<where>\S+): (?P<msg>.*)$")


@dataclass
class WarningCount:
    stage: str
    category: str
    message: str
    count: int = 0
    where: set[str] = field(default_factory=set)


class RunLog:
    """Captures warnings and third-party log records of a run into ``path`` (appending).

    Use as a context manager around the run. Each warning becomes one line
    ``WARNING <Category> [<stage>] (<unit>) <file:line>: <message>`` (the full
    text of the first occurrence per process follows, indented).
    """

    def __init__(self, path: str | os.PathLike[str]):
        self.path = Path(path)
        self.start = 0
        self._seen: set[tuple[str, str]] = set()
        self._saved: Any = None
        self._handler: logging.Handler | None = None
        self._pid = os.getpid()

    def __enter__(self) -> "RunLog":
        self.path.parent.mkdir(parents=True, exist_ok=True)
        self.start = self.path.stat().st_size if self.path.exists() else 0
        self._saved = warnings.catch_warnings()  # restores filters and showwarning on exit
        self._saved.__enter__()
        warnings.simplefilter("always")
        for cat in (DeprecationWarning, PendingDeprecationWarning, ImportWarning, ResourceWarning):
            warnings.filterwarnings("ignore", category=cat)
        warnings.showwarning = self._show
        self._handler = _FileHandler(self.path)
        self._handler.setLevel(logging.INFO)
        self._handler.setFormatter(logging.Formatter("%(asctime)s %(levelname)s %(name)s: %(message)s"))
        logging.getLogger().addHandler(self._handler)
        return self

    def __exit__(self, *exc: Any) -> None:
        if self._saved is not None:
            self._saved.__exit__(None, None, None)
            self._saved = None
        if self._handler is not None:
            logging.getLogger().removeHandler(self._handler)
            self._handler.close()

    def write(self, text: str) -> None:
        """Append ``text`` (one or more lines) to the log (safe from forked workers: O_APPEND)."""
        data = (text if text.endswith("\n") else text + "\n").encode("utf-8", "replace")
        fd = os.open(self.path, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o644)
        try:
            os.write(fd, data)
        finally:
            os.close(fd)

    def _show(self, message: Any, category: type[Warning], filename: str, lineno: int, file: Any = None,
              line: str | None = None) -> None:
        text = str(message).strip()
        first = " ".join(text.splitlines()[0].split()) if text else ""
        where = f"{Path(filename).name}:{lineno}"
        stage = current().stage
        unit = _UNIT.replace(")", "]").replace("(", "[") or "-"
        out = f"WARNING {category.__name__} [{stage.name if stage else '-'}] ({unit}) {where}: {first}"
        key = (category.__name__, where)
        if os.getpid() != self._pid:
            self._seen, self._pid = set(), os.getpid()
        if key not in self._seen and "\n" in text:
            self._seen.add(key)
            out += "\n" + "\n".join("    " + x for x in text.splitlines()[1:])
        self.write(out)

    def counts(self) -> list[WarningCount]:
        """Warnings logged since this log was opened, grouped by stage, category and message."""
        groups: dict[tuple[str, str, str], WarningCount] = {}
        if not self.path.exists():
            return []
        with open(self.path, encoding="utf-8", errors="replace") as fh:
            fh.seek(getattr(self, "start", 0))
            for raw in fh:
                m = _LINE.match(raw.rstrip("\n"))
                if not m:
                    continue
                msg = m["msg"][:90]
                key = (m["stage"], m["cat"], msg)
                g = groups.setdefault(key, WarningCount(m["stage"], m["cat"], msg))
                g.count += 1
                g.where.add(m["where"])
        return sorted(groups.values(), key=lambda g: -g.count)

    def summary(self, limit: int = 6) -> list[str]:
        """One line per kind of warning: ``stage: N x Category: message``."""
        groups = self.counts()
        lines = [f"{g.stage}: {g.count} x {g.category}: {g.message}" for g in groups[:limit]]
        if len(groups) > limit:
            lines.append(f"... and {len(groups) - limit} more kinds")
        return lines


class ConsoleFilter(logging.Filter):
    """Lets fusionkit's own records of ``level`` and above through to the terminal, and
    other libraries' errors only (their warnings go to run.log)."""

    def __init__(self, level: int = logging.WARNING):
        super().__init__()
        self.level = level

    def filter(self, record: logging.LogRecord) -> bool:
        if record.name == "fusionkit" or record.name.startswith(("fusionkit.", "fusionkit_plugins")):
            return record.levelno >= self.level
        return record.levelno >= logging.ERROR


class _FileHandler(logging.Handler):
    """Appends formatted records with O_APPEND (forked workers share the file safely)."""

    def __init__(self, path: Path):
        super().__init__()
        self.path = path

    def emit(self, record: logging.LogRecord) -> None:
        try:
            data = (self.format(record) + "\n").encode("utf-8", "replace")
            fd = os.open(self.path, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o644)
            try:
                os.write(fd, data)
            finally:
                os.close(fd)
        except Exception:  # noqa: BLE001 - logging never breaks a run
            self.handleError(record)
