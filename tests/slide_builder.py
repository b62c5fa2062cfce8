"""Build real multi-resolution tiled TIFF slides from real H&E tiles (tests and benchmarks).

Each pyramid level is its own tiled page in the main IFD chain (not SubIFDs),
so OpenSlide opens the file as ``generic-tiff`` and tiffslide reads the same
levels. Pages are written tile by tile from a generator: building a slide of
any size holds only one tile of each level in memory.
"""

from __future__ import annotations

from pathlib import Path
from typing import Callable, Iterator, Sequence

import numpy as np

TILE = 256


def real_tiles(folder: Path, limit: int | None = None) -> list[np.ndarray]:
    """The real 256x256 RGB tiles of ``folder`` (sorted by name), as uint8 arrays."""
    from PIL import Image

    paths = sorted(Path(folder).glob("*.png"))[:limit]
    out = []
    for p in paths:
        with Image.open(p) as im:
            arr = np.asarray(im.convert("RGB"))
        if arr.shape == (TILE, TILE, 3):
            out.append(arr)
    return out


def _level_tiles(cell: Callable[[int, int], int], tiles: Sequence[np.ndarray], n_rows: int, n_cols: int,
                 d: int) -> Iterator[np.ndarray]:
    """Tiles of the level with downsample ``d``, row-major: each covers d x d cells shrunk by area mean."""
    small: dict[int, np.ndarray] = {}
    side = TILE // d
    white = np.full((TILE, TILE, 3), 255, dtype=np.uint8)
    for tr in range(-(-n_rows // d)):
        for tc in range(-(-n_cols // d)):
            out = white.copy()
            for i in range(d):
                for j in range(d):
                    r, c = tr * d + i, tc * d + j
                    k = cell(r, c) if r < n_rows and c < n_cols else -1
                    if k < 0:
                        continue
                    if k not in small:
                        small[k] = tiles[k].reshape(side, d, side, d, 3).mean(axis=(1, 3)).round().astype(np.uint8)
                    out[i * side:(i + 1) * side, j * side:(j + 1) * side] = small[k]
            yield out


def write_pyramid(path: Path, tiles: Sequence[np.ndarray], n_rows: int, n_cols: int,
                  cell: Callable[[int, int], int], *, downsamples: Sequence[int] = (1, 2, 4), mpp: float | None = 0.25,
                  compression: str | None = "zlib") -> Path:
    """Write a ``n_rows`` x ``n_cols`` grid of 256-px cells; ``cell(r, c)`` is an index into ``tiles``
    or -1 for a white (background) cell. ``mpp`` is stored as the TIFF resolution (None: none)."""
    import tifffile

    path = Path(path)
    with tifffile.TiffWriter(path, bigtiff=n_rows * n_cols * TILE * TILE * 3 > 2 ** 31) as tw:
        for i, d in enumerate(downsamples):
            shape = (n_rows * TILE // d, n_cols * TILE // d, 3)
            kw = {}
            if mpp:
                kw = {"resolution": (1e4 / (mpp * d), 1e4 / (mpp * d)), "resolutionunit": "CENTIMETER"}
            tw.write(_level_tiles(cell, tiles, n_rows, n_cols, d), shape=shape, dtype=np.uint8, tile=(TILE, TILE),
                     photometric="rgb", compression=compression, subfiletype=0 if i == 0 else 1, metadata=None,
                     **kw)
    return path


def framed_grid(n: int, margin: int = 1) -> Callable[[int, int], int]:
    """``cell`` for an n x n grid whose inner (n - 2 margin)^2 cells are tiles 0, 1, 2... (row-major)
    and whose ``margin`` outer rings are white."""
    inner = n - 2 * margin

    def cell(r: int, c: int) -> int:
        if margin <= r < n - margin and margin <= c < n - margin:
            return (r - margin) * inner + (c - margin)
        return -1

    return cell
