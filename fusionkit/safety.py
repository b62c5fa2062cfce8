"""Names from a recipe never become paths unchecked (SPEC §8).

Two functions carry the rule, and every path fusionkit builds from a recipe
goes through them:

* :func:`safe_component` turns any name (a recipe name, a task or sampling
  key, a modality, an encoder name) into one safe path component;
  :func:`check_name` refuses, at validation time, a name that *tries* to be
  a path (``../x``, ``/abs``, ``a/b``), naming the recipe key.
* :func:`ensure_inside` checks that a path stays inside a root folder (the
  run's output or cache folder) after resolving ``..`` and symlinks, and
  raises :class:`PathEscapeError` naming the offending key otherwise.
"""

from __future__ import annotations

import hashlib
import os
import re
from pathlib import Path

from .errors import FusionkitError

__all__ = ["PathEscapeError", "safe_component", "check_name", "name_problem", "ensure_inside", "MAX_COMPONENT"]

#: longest component produced (file systems allow 255 bytes; leave room for suffixes and temp names)
MAX_COMPONENT = 100
_ALLOWED = re.compile(r"[A-Za-z0-9._-]")
_NAME_HINT = "use letters, digits, '-', '_' and '.' only (it names a folder inside the run folder)"


class PathEscapeError(FusionkitError):
    """A name or path from a recipe would write outside the run's folders."""


def safe_component(name: object) -> str:
    """One safe path component for any name.

    Characters other than ASCII letters, digits, ``-``, ``_`` and ``.`` become
    ``_``; a leading dot becomes ``_`` (no hidden files, no ``.``/``..``); an
    empty name becomes ``_``; a name longer than :data:`MAX_COMPONENT` is cut
    and gets a short hash of the whole name, so distinct long names stay
    distinct. Names that are already safe come back unchanged.
    """
    text = str(name)
    out = "".join(ch if _ALLOWED.fullmatch(ch) else "_" for ch in text)
    if not out:
        return "_"
    if out.startswith("."):
        out = "_" + out[1:]
    if len(out) > MAX_COMPONENT:
        digest = hashlib.sha256(text.encode("utf-8", "surrogatepass")).hexdigest()[:10]
        out = f"{out[:MAX_COMPONENT - 11]}-{digest}"
    return out


def name_problem(name: object) -> str | None:
    """Why ``name`` cannot name a folder inside the run folder, or None when it can.

    Refused: empty names, names with a path separator, ``.``/``..``, a leading
    ``~`` or ``.``, control characters, and names longer than
    :data:`MAX_COMPONENT`. Other characters (spaces, say) are allowed and
    replaced by :func:`safe_component` when the name becomes a path.
    """
    text = str(name)
    if not text.strip():
        return "is empty"
    if "/" in text or "\\" in text:
        return f"{text!r} contains a path separator"
    if text in (".", "..") or text.startswith(("..", "~")):
        return f"{text!r} would point outside the run folder"
    if text.startswith("."):
        return f"{text!r} starts with a dot"
    if any(ord(ch) < 32 or ord(ch) == 127 for ch in text):
        return f"{text!r} contains a control character"
    if len(text) > MAX_COMPONENT:
        return f"is longer than {MAX_COMPONENT} characters"
    return None


def check_name(name: object, where: str) -> str:
    """Return ``name`` if it can name a folder inside the run folder, else raise naming ``where``."""
    problem = name_problem(name)
    if problem:
        raise PathEscapeError(f"name {problem}", where=where, hint=_NAME_HINT)
    return str(name)


def ensure_inside(root: str | os.PathLike[str], path: str | os.PathLike[str], *, where: str | None = None) -> Path:
    """``path`` resolved (``..`` and symlinks) if it lies inside ``root``; else :class:`PathEscapeError`.

    A relative ``path`` is taken relative to ``root``. The check uses the real
    paths of both, so a symlink planted in the run folder that points
    elsewhere is refused too.
    """
    root_real = Path(os.path.realpath(root))
    target = Path(path)
    if not target.is_absolute():
        target = Path(root) / target
    real = Path(os.path.realpath(target))
    if real != root_real and root_real not in real.parents:
        raise PathEscapeError(f"refusing to write {str(path)!r}: it resolves to {str(real)!r}, outside "
                              f"{str(root_real)!r}", where=where,
                              hint="outputs stay inside the run folder; rename the recipe key (" + _NAME_HINT + ")")
    return real
