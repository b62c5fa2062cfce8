"""Formatting shared by the HTML report and the text views (``fusionkit results``,
the console summary): one number formatter, so both show the same digits.
"""

from __future__ import annotations

import base64
import csv
import html
import io
import math
import numbers
from pathlib import Path
from typing import Any, Mapping, Sequence

MAX_TABLE_ROWS = 60
MAX_TABLE_COLS = 24
MAX_FIGURE_BYTES = 4_000_000
THUMB_WIDTH = 240


def esc(x: Any) -> str:
    return html.escape(str(x), quote=True)


def is_num(x: Any) -> bool:
    """True for real numbers (numpy included) and for strings that parse as one."""
    if isinstance(x, bool) or x is None:
        return False
    if isinstance(x, numbers.Real):
        return True
    if isinstance(x, str) and x.strip():
        try:
            float(x)
            return True
        except ValueError:
            return False
    return False


def as_float(x: Any) -> float | None:
    """``x`` as a finite float, or None (missing, NaN, text)."""
    if not is_num(x):
        return None
    v = float(x)
    return v if math.isfinite(v) else None


def num(x: Any, digits: int = 3) -> str:
    """A number as text: ``digits`` decimals, trailing zeros kept (0.90, not 0.9); '' when missing."""
    if x is None or (isinstance(x, str) and not x.strip()):
        return ""
    if not is_num(x):
        return str(x)
    if isinstance(x, numbers.Integral) or (isinstance(x, str) and x.strip().lstrip("-").isdigit()):
        return str(int(x))
    v = float(x)
    if math.isnan(v):
        return "n/a"
    if math.isinf(v):
        return "inf" if v > 0 else "-inf"
    if v != 0 and (abs(v) >= 1e5 or abs(v) < 10 ** -digits):
        return f"{v:.{max(digits - 1, 1)}g}"
    return f"{v:.{digits}f}"


def ci(lo: Any, hi: Any, digits: int = 3) -> str:
    """``[lo, hi]`` or '' when either bound is missing."""
    a, b = as_float(lo), as_float(hi)
    return f"[{num(a, digits)}, {num(b, digits)}]" if a is not None and b is not None else ""


def with_ci(stat: Mapping[str, Any] | None, digits: int = 3) -> str:
    """``mean [lo, hi]`` of a ``{mean, ci_low, ci_high}`` mapping."""
    if not stat:
        return ""
    text = num(stat.get("mean"), digits)
    bounds = ci(stat.get("ci_low"), stat.get("ci_high"), digits)
    return f"{text} {bounds}".strip()


def plain(x: Any, digits: int = 3) -> str:
    """Any value as short readable text (lists joined, mappings as ``k: v``), never JSON."""
    if isinstance(x, Mapping):
        if {"mean", "ci_low", "ci_high"} <= set(x):
            return with_ci(x, digits)
        return "; ".join(f"{k}: {plain(v, digits)}" for k, v in x.items())
    if isinstance(x, (list, tuple)):
        return ", ".join(plain(v, digits) for v in x)
    if is_num(x) and not isinstance(x, str):
        return num(x, digits)
    return "" if x is None else str(x)


def stat_cell(x: Any, digits: int = 3) -> tuple[str, bool]:
    """(HTML text, numeric?) of one table cell."""
    if isinstance(x, Mapping) and {"mean", "ci_low", "ci_high"} <= set(x):
        mean = esc(num(x.get("mean"), digits))
        bounds = ci(x.get("ci_low"), x.get("ci_high"), digits)
        return (f"{mean} <span class='ci'>{esc(bounds)}</span>" if bounds else mean), True
    if is_num(x) and not isinstance(x, str):
        return esc(num(x, digits)), True
    if isinstance(x, str) and is_num(x) and any(c in x for c in ".eE"):
        return esc(num(x, digits)), True
    return esc(plain(x, digits)), is_num(x)


def html_table(rows: Sequence[Mapping[str, Any]], columns: Sequence[str] | None = None, *,
               max_rows: int = MAX_TABLE_ROWS, max_cols: int = MAX_TABLE_COLS, css: str = "",
               digits: int = 3, headers: Mapping[str, str] | None = None) -> str:
    """Rows of dicts as an HTML table (first ``max_rows`` rows, first ``max_cols`` columns)."""
    rows = list(rows)
    if not rows:
        return '<p class="note">(empty)</p>'
    if columns is None:
        columns = list(dict.fromkeys(k for row in rows for k in row))
    columns = list(columns)
    extra_cols = len(columns) - max_cols
    columns = columns[:max_cols]
    headers = headers or {}
    out = [f'<div class="scroll"><table class="{css}"><thead><tr>']
    out += [f"<th>{esc(headers.get(c, c))}</th>" for c in columns]
    out.append("</tr></thead><tbody>")
    for row in rows[:max_rows]:
        cells = []
        for c in columns:
            text, numeric = stat_cell(row.get(c), digits)
            cells.append(f"<td class='num'>{text}</td>" if numeric else f"<td>{text}</td>")
        out.append("<tr>" + "".join(cells) + "</tr>")
    out.append("</tbody></table></div>")
    notes = []
    if len(rows) > max_rows:
        notes.append(f"showing {max_rows} of {len(rows)} rows")
    if extra_cols > 0:
        notes.append(f"{extra_cols} more column(s) not shown")
    if notes:
        out.append(f'<p class="note">{esc("; ".join(notes))} (full table in the CSV).</p>')
    return "".join(out)


def read_csv_rows(path: str | Path, limit: int | None = None) -> tuple[list[dict[str, Any]], int]:
    """(rows, total row count) of a CSV file; ``limit`` caps the rows kept."""
    rows: list[dict[str, Any]] = []
    total = 0
    with open(path, newline="") as fh:
        for row in csv.DictReader(fh):
            total += 1
            if limit is None or len(rows) < limit:
                rows.append(row)
    return rows, total


_MIME = {"png": "image/png", "jpg": "image/jpeg", "jpeg": "image/jpeg", "svg": "image/svg+xml", "gif": "image/gif"}


def data_uri(path: Path, thumb_width: int | None = None, focus: tuple[int, int] | None = None) -> str | None:
    """A ``data:`` URI of an image file; None when too big to embed.

    ``thumb_width``: downscale to that width. ``focus`` (panel index, panels): for a
    figure with one panel per item, at most four to a row, crop to that panel first
    (only when the figure's shape fits such a grid).
    """
    data = path.read_bytes()
    mime = _MIME.get(path.suffix.lower().lstrip("."), "application/octet-stream")
    if thumb_width and mime in ("image/png", "image/jpeg"):
        small = _thumbnail(data, thumb_width, focus)
        if small is not None:
            data, mime = small, "image/png"
    if len(data) > MAX_FIGURE_BYTES:
        return None
    return f"data:{mime};base64,{base64.b64encode(data).decode('ascii')}"


def _panel_box(w: int, h: int, focus: tuple[int, int] | None) -> tuple[int, int, int, int] | None:
    if not focus or focus[1] < 2:
        return None
    idx, n = focus
    cols = min(4, n)
    rows = -(-n // cols)
    if not 0.7 < (w / h) / (cols / rows * 3.4 / 2.9) < 1.4:  # not a panel grid
        return None
    col, row = idx % cols, idx // cols
    return (w * col // cols, h * row // rows, w * (col + 1) // cols, h * (row + 1) // rows)


def _thumbnail(data: bytes, width: int, focus: tuple[int, int] | None = None) -> bytes | None:
    try:
        from PIL import Image  # matplotlib's dependency; optional here
    except ImportError:  # pragma: no cover - full image instead
        return None
    try:
        with Image.open(io.BytesIO(data)) as im:
            box = _panel_box(im.width, im.height, focus)
            im = im.crop(box) if box else im
            if im.width <= width and box is None:
                return None
            height = max(1, round(im.height * width / im.width))
            small = im.convert("RGBA").resize((width, height), Image.LANCZOS)
            buf = io.BytesIO()
            small.save(buf, format="PNG", optimize=True)
            return buf.getvalue()
    except (OSError, ValueError):
        return None


def anchor(*parts: str) -> str:
    """An HTML id made of letters, digits and dashes."""
    text = "-".join(parts)
    return "".join(ch if ch.isalnum() else "-" for ch in text).strip("-").lower()
