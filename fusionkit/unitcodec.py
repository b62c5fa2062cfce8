"""Unit results on disk without pickle: a cache folder is data, not code.

A finished unit's result (plain values: dicts, lists, tuples, str, numbers,
bools, None, numpy arrays and scalars) is written as one file::

    FKUNIT 1\\n
    {"format": 1, "key": ..., "sha256": ..., "size": ...}\\n
    <npz bytes: "__tree__" (the JSON structure, utf-8) and one array per numpy value>

The npz is read with ``allow_pickle=False`` and the JSON with ``json``, so
nothing in a cache file can run code. The header's sha256 covers the npz, so
a truncated, corrupt or foreign file (another key's, a planted pickle) is
detected and raised as :class:`CorruptUnitError`, which the unit cache
reports, discards and recomputes. Round trips are exact: float bits, numpy
dtypes and tuples come back as they went in.
"""

from __future__ import annotations

import hashlib
import io
import json
import math
from typing import Any

import numpy as np

from .errors import FusionkitError

__all__ = ["encode_unit", "decode_unit", "CorruptUnitError", "UnitCodecError", "MAGIC", "FORMAT"]

MAGIC = b"FKUNIT 1\n"
FORMAT = 1
_TAGS = ("__t__", "__a__", "__d__", "__f__")


class UnitCodecError(FusionkitError):
    """A unit result holds a value that cannot be stored as data (a class instance, say)."""


class CorruptUnitError(FusionkitError):
    """A cached unit file is truncated, corrupt, foreign or of another format."""


def _encode(value: Any, arrays: list[np.ndarray], path: str) -> Any:
    if value is None or isinstance(value, (bool, str)):
        return value
    if isinstance(value, int) and not isinstance(value, np.integer):
        return value
    if isinstance(value, float) and not isinstance(value, np.floating):
        return value if math.isfinite(value) else {"__f__": repr(value)}
    if isinstance(value, (np.ndarray, np.generic)):
        arr = np.asarray(value)
        if arr.dtype.hasobject:
            raise UnitCodecError(f"unit result holds a numpy object array at {path}",
                                 hint="return numeric or string arrays (object arrays need pickle)")
        arrays.append(arr)
        return {"__a__": len(arrays) - 1, "scalar": isinstance(value, np.generic)}
    if isinstance(value, tuple):
        return {"__t__": [_encode(v, arrays, f"{path}[{i}]") for i, v in enumerate(value)]}
    if isinstance(value, list):
        return [_encode(v, arrays, f"{path}[{i}]") for i, v in enumerate(value)]
    if isinstance(value, dict):
        if all(type(k) is str for k in value) and not any(k in _TAGS for k in value):
            return {k: _encode(v, arrays, f"{path}.{k}") for k, v in value.items()}
        return {"__d__": [[_encode(k, arrays, f"{path}.<key>"), _encode(v, arrays, f"{path}.{k}")]
                          for k, v in value.items()]}
    raise UnitCodecError(f"unit result holds a {type(value).__module__}.{type(value).__qualname__} at {path}",
                         hint="units return plain data: dict, list, tuple, str, numbers, None and numpy arrays")


def _decode(node: Any, arrays: dict[str, np.ndarray]) -> Any:
    if isinstance(node, list):
        return [_decode(v, arrays) for v in node]
    if not isinstance(node, dict):
        return node
    if "__a__" in node:
        arr = arrays[f"a{int(node['__a__'])}"]
        return arr[()] if node.get("scalar") else arr
    if "__t__" in node:
        return tuple(_decode(v, arrays) for v in node["__t__"])
    if "__d__" in node:
        return {_hashable(_decode(k, arrays)): _decode(v, arrays) for k, v in node["__d__"]}
    if "__f__" in node:
        return float(node["__f__"])
    return {k: _decode(v, arrays) for k, v in node.items()}


def _hashable(key: Any) -> Any:
    return key.item() if isinstance(key, np.generic) else key


def encode_unit(key: str, value: Any) -> bytes:
    """The bytes of one cache file for ``value`` (see the module docstring)."""
    arrays: list[np.ndarray] = []
    tree = _encode(value, arrays, "result")
    blob = json.dumps(tree, allow_nan=False, separators=(",", ":")).encode("utf-8")
    buf = io.BytesIO()
    np.savez(buf, __tree__=np.frombuffer(blob, dtype=np.uint8), **{f"a{i}": a for i, a in enumerate(arrays)})
    body = buf.getvalue()
    header = {"format": FORMAT, "key": key, "sha256": hashlib.sha256(body).hexdigest(), "size": len(body)}
    return MAGIC + json.dumps(header, sort_keys=True).encode("ascii") + b"\n" + body


def decode_unit(data: bytes, *, key: str, where: str = "") -> Any:
    """The value stored by :func:`encode_unit`; :class:`CorruptUnitError` for anything else."""
    def bad(why: str) -> CorruptUnitError:
        return CorruptUnitError(f"corrupt cache entry ({why})", where=where or None,
                                hint="it is discarded and the unit recomputed")

    if not data.startswith(MAGIC):
        raise bad("not a fusionkit unit file" + ("; looks like a pickle" if data[:1] == b"\x80" else ""))
    end = data.find(b"\n", len(MAGIC))
    if end < 0:
        raise bad("truncated header")
    try:
        header = json.loads(data[len(MAGIC):end].decode("ascii"))
    except (UnicodeDecodeError, ValueError):
        raise bad("unreadable header") from None
    if not isinstance(header, dict) or header.get("format") != FORMAT:
        raise bad(f"format {header.get('format') if isinstance(header, dict) else '?'!r}")
    if header.get("key") != key:
        raise bad(f"it belongs to key {header.get('key')!r}")
    body = data[end + 1:]
    if len(body) != header.get("size") or hashlib.sha256(body).hexdigest() != header.get("sha256"):
        raise bad("checksum mismatch: truncated or modified")
    try:
        with np.load(io.BytesIO(body), allow_pickle=False) as z:
            arrays = {name: z[name] for name in z.files}
        tree = json.loads(arrays.pop("__tree__").tobytes().decode("utf-8"))
        return _decode(tree, arrays)
    except (ValueError, KeyError, OSError, TypeError, IndexError) as exc:
        raise bad(f"unreadable body: {exc}") from None
