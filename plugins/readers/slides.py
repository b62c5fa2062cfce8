"""Reader ``wsi``: whole-slide images through OpenSlide or tiffslide, tiled lazily.

A slide is never held in memory. The reader

1. opens it with OpenSlide (``openslide-bin`` ships the library as a wheel) or
   tiffslide (pure Python); ``backend: auto`` takes OpenSlide when it imports;
2. lays a grid of ``tile_size`` tiles at the wanted resolution (``mpp``, else
   ``magnification``, else an explicit ``level``) over level 0, reading from the
   pyramid level closest above that resolution;
3. finds tissue on a low-resolution image of the slide read strip by strip: the
   paper's RGB threshold (a tile whose fraction of pixels with all channels >=
   ``white_level`` exceeds ``background_threshold`` is background) or, with
   ``tissue: otsu``, Otsu's threshold on HSV saturation;
4. returns each kept tile as a lazy :class:`SlideTile` (path, level, level-0
   ``x``/``y``, size) whose pixels are read only when an encoder turns it into an
   array (``numpy.asarray``), batch by batch. Tile coordinates are item labels
   (``slide_id``, ``x``, ``y``), so they are columns of the embedding store.

Install the backends with ``pip install "fusionkit[wsi]"``.
"""

from __future__ import annotations

import importlib
import os
import re
from collections import OrderedDict
from dataclasses import dataclass
from typing import Any, Literal

import numpy as np

from fusionkit import DataError, ModalityData, RawDataset, Reader, hookimpl, safe_component

from fusionkit_plugins.readers.common import (fingerprint, find_barcodes, labels_from_items, load_cancer_map,
                                              resolve_paths, rng_for)
from fusionkit_plugins.readers.caps import sample_capped

SLIDE_EXTENSIONS = (".svs", ".tif", ".tiff", ".ndpi", ".mrxs", ".scn", ".vms", ".bif", ".svslide")
BACKENDS = ("auto", "openslide", "tiffslide")
TISSUE_METHODS = ("rgb", "otsu", "none")
WSI_HINT = 'pip install "fusionkit[wsi]"   (openslide-bin + openslide-python, and tiffslide)'
#: mask pixels per tile side when detecting tissue (the mask is read at about tile/16 resolution)
MASK_CELLS = 16
#: pixels of one strip read while building the mask (bounds the reader's memory)
STRIP_PIXELS = 8 << 20

_OPEN: "OrderedDict[tuple[str, str], Any]" = OrderedDict()


# --------------------------------------------------------------------------- backends

def open_slide(path: str, backend: str = "auto") -> Any:
    """An OpenSlide-like object (``auto``: openslide, else tiffslide), or DataError naming the fix."""
    if backend not in BACKENDS:
        raise DataError(f"unknown slide backend {backend!r}", where="wsi.backend",
                        hint=f"one of: {', '.join(BACKENDS)}")
    order = ["openslide", "tiffslide"] if backend == "auto" else [backend]
    missing = []
    for name in order:
        try:
            module = importlib.import_module(name)
        except (ImportError, OSError) as exc:  # OSError: openslide-python without the library
            missing.append(f"{name}: {exc}")
            continue
        try:
            return module.OpenSlide(path) if name == "openslide" else module.TiffSlide(path)
        except Exception as exc:  # each backend raises its own error types
            raise DataError(f"{name} cannot open the slide ({type(exc).__name__}: {exc})", where=path,
                            hint="check the file; OpenSlide reads .svs .tif .ndpi .mrxs .scn .vms .bif, "
                                 "tiffslide reads .svs and tiled .tif") from exc
    raise DataError(f"reading whole-slide images needs a slide backend ({'; '.join(missing)})", where=path,
                    hint=WSI_HINT)


_open_slide = open_slide  # the 0.2 name


def cached_slide(path: str, backend: str, keep: int = 4) -> Any:
    """An open slide from a small per-process cache (lazy tiles reopen slides in workers)."""
    key = (path, backend)
    slide = _OPEN.pop(key, None)
    if slide is None:
        slide = open_slide(path, backend)
        while len(_OPEN) >= keep:
            _OPEN.popitem(last=False)[1].close()
    _OPEN[key] = slide
    return slide


def to_rgb(region: Any) -> np.ndarray:
    """uint8 (H, W, 3) of a read region; transparent pixels (outside the slide) become white."""
    arr = np.asarray(region)
    if arr.ndim == 3 and arr.shape[2] == 4:
        rgb = arr[..., :3].copy()
        rgb[arr[..., 3] == 0] = 255
        return rgb
    return np.asarray(region.convert("RGB") if hasattr(region, "convert") else arr)[..., :3]


def _prop(slide: Any, *keys: str) -> float | None:
    props = getattr(slide, "properties", {}) or {}
    for key in keys:
        value = props.get(key)
        try:
            if value not in (None, "", "None") and float(value) > 0:
                return float(value)
        except (TypeError, ValueError):
            continue
    return None


def slide_mpp(slide: Any) -> float | None:
    """Microns per level-0 pixel from the slide's metadata, if any."""
    return _prop(slide, "openslide.mpp-x", "tiffslide.mpp-x", "aperio.MPP")


def slide_magnification(slide: Any) -> float | None:
    """Objective power from the slide's metadata, if any."""
    return _prop(slide, "openslide.objective-power", "tiffslide.objective-power", "aperio.AppMag")


def choose_level(level_downsamples: list[float], base_mpp_mag: float | None, magnification: float | None,
                 level: int | None) -> tuple[int, float]:
    """(level, extra downsample) for a wanted magnification (or an explicit level)."""
    if level is not None:
        if not 0 <= level < len(level_downsamples):
            raise DataError(f"level {level} out of range (slide has {len(level_downsamples)} levels)", where="level")
        return int(level), 1.0
    if magnification is None or base_mpp_mag is None:
        return 0, 1.0
    return level_for(level_downsamples, float(base_mpp_mag) / float(magnification))


def level_for(level_downsamples: list[float], want: float) -> tuple[int, float]:
    """(level, extra downsample) to reach ``want`` x level 0: the closest level at or above that resolution."""
    if want < 1 - 1e-6:
        raise DataError(f"the wanted resolution is {1 / want:.3g}x finer than the slide's level 0", where="wsi",
                        hint="ask for a magnification at or below the slide's, or an mpp at or above its mpp")
    best = max((i for i, d in enumerate(level_downsamples) if d <= want * 1.01), key=lambda i: level_downsamples[i])
    return best, want / float(level_downsamples[best])


# --------------------------------------------------------------------------- lazy tiles

class SlideTile:
    """One tile of a slide, read on demand: ``numpy.asarray(tile)`` is (size, size, 3) uint8."""

    __slots__ = ("path", "backend", "level", "x", "y", "read_size", "size")

    def __init__(self, path: str, backend: str, level: int, x: int, y: int, read_size: int, size: int):
        self.path, self.backend, self.level = path, backend, int(level)
        self.x, self.y, self.read_size, self.size = int(x), int(y), int(read_size), int(size)

    def __getstate__(self) -> tuple:
        return tuple(getattr(self, k) for k in self.__slots__)

    def __setstate__(self, state: tuple) -> None:
        for k, v in zip(self.__slots__, state):
            setattr(self, k, v)

    def read(self) -> np.ndarray:
        slide = cached_slide(self.path, self.backend)
        region = slide.read_region((self.x, self.y), self.level, (self.read_size, self.read_size))
        if self.read_size != self.size:
            from PIL import Image

            region = Image.fromarray(to_rgb(region)).resize((self.size, self.size), Image.BILINEAR)
        return to_rgb(region)

    def __array__(self, dtype: Any = None, copy: Any = None) -> np.ndarray:
        arr = self.read()
        return arr if dtype is None else arr.astype(dtype)

    def __repr__(self) -> str:
        return f"SlideTile({os.path.basename(self.path)!r}, level={self.level}, x={self.x}, y={self.y})"


# --------------------------------------------------------------------------- grid and tissue

@dataclass(frozen=True)
class TileGrid:
    """Where the tiles of one slide are: ``nx`` x ``ny`` tiles of ``step`` level-0 pixels each."""

    level: int
    downsample: float  # of ``level``
    want: float  # level-0 pixels per output pixel
    read_size: int  # pixels read at ``level`` per tile
    tile_size: int
    step: float  # level-0 pixels per tile
    nx: int
    ny: int

    def origin(self, col: np.ndarray, row: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        return (np.floor(col * self.step).astype(np.int64), np.floor(row * self.step).astype(np.int64))


def otsu_threshold(values: np.ndarray, bins: int = 256) -> float:
    """Otsu's threshold of values in [0, 1] (maximises the between-class variance)."""
    hist, edges = np.histogram(np.clip(values, 0, 1), bins=bins, range=(0.0, 1.0))
    p = hist.astype(np.float64) / max(1, hist.sum())
    centers = (edges[:-1] + edges[1:]) / 2
    w0 = np.cumsum(p)
    mu = np.cumsum(p * centers)
    w1 = 1 - w0
    with np.errstate(divide="ignore", invalid="ignore"):
        between = (mu[-1] * w0 - mu) ** 2 / (w0 * w1)
    between[~np.isfinite(between)] = -1
    return float(edges[int(np.argmax(between)) + 1])


def saturation(rgb: np.ndarray) -> np.ndarray:
    """HSV saturation in [0, 1] of uint8/float RGB pixels (..., 3)."""
    x = rgb.astype(np.float32)
    hi, lo = x.max(axis=-1), x.min(axis=-1)
    return np.where(hi > 0, (hi - lo) / np.maximum(hi, 1e-6), 0.0)


def mask_image(slide: Any, scale: float, white_level: int) -> tuple[np.ndarray, np.ndarray, float]:
    """(white fraction, mean RGB) of blocks of about ``scale`` level-0 pixels, and the exact block size.

    The slide is read strip by strip at the level closest above ``scale``; each strip is reduced to
    blocks at once, so memory stays at one strip whatever the slide size.
    """
    downs = [float(d) for d in slide.level_downsamples]
    lvl = max((i for i, d in enumerate(downs) if d <= max(scale, 1.0) * 1.01), key=lambda i: downs[i])
    f = max(1, int(scale / downs[lvl]))
    w, h = slide.level_dimensions[lvl]
    bw, bh = max(1, w // f), max(1, h // f)
    rows = max(1, (STRIP_PIXELS // max(1, bw * f)) // f)  # block rows per strip
    white = np.zeros((bh, bw), dtype=np.float32)
    mean = np.zeros((bh, bw, 3), dtype=np.float32)
    for r0 in range(0, bh, rows):
        r1 = min(bh, r0 + rows)
        y0 = int(round(r0 * f * downs[lvl]))
        strip = to_rgb(slide.read_region((0, y0), lvl, (bw * f, (r1 - r0) * f)))
        strip = strip[: (r1 - r0) * f, : bw * f].reshape(r1 - r0, f, bw, f, 3)
        white[r0:r1] = (strip >= white_level).all(axis=-1).mean(axis=(1, 3))
        mean[r0:r1] = strip.mean(axis=(1, 3))
    return white, mean, f * downs[lvl]


def block_means(values: np.ndarray, grid: TileGrid, block: float) -> np.ndarray:
    """Mean of a (bh, bw) block map over each tile of ``grid``: (ny, nx), via an integral image."""
    integral = np.zeros((values.shape[0] + 1, values.shape[1] + 1), dtype=np.float64)
    integral[1:, 1:] = values.cumsum(0).cumsum(1)

    def edges(n: int, limit: int) -> tuple[np.ndarray, np.ndarray]:
        lo = np.minimum(np.round(np.arange(n) * grid.step / block).astype(np.int64), limit - 1)
        hi = np.clip(np.round(np.arange(1, n + 1) * grid.step / block).astype(np.int64), lo + 1, limit)
        return lo, hi

    r0, r1 = edges(grid.ny, values.shape[0])
    c0, c1 = edges(grid.nx, values.shape[1])
    total = (integral[r1][:, c1] - integral[r0][:, c1] - integral[r1][:, c0] + integral[r0][:, c0])
    return total / ((r1 - r0)[:, None] * (c1 - c0)[None, :])


def background_fraction(slide: Any, grid: TileGrid, method: str, white_level: int) -> np.ndarray:
    """(ny, nx) fraction of background in each tile, by the RGB threshold or Otsu on saturation."""
    if method == "none" or grid.nx == 0 or grid.ny == 0:
        return np.zeros((grid.ny, grid.nx))
    white, mean, block = mask_image(slide, grid.step / MASK_CELLS, white_level)
    if method == "rgb":
        return block_means(white, grid, block)
    sat = saturation(mean)
    tissue = (sat > otsu_threshold(sat.reshape(-1))).astype(np.float32)
    return 1.0 - block_means(tissue, grid, block)


# --------------------------------------------------------------------------- the reader

class WsiReader(Reader):
    """Whole-slide images (OpenSlide or tiffslide) cut into tissue tiles at a magnification or mpp.

    Tiles are lazy: pixels are read from the slide when the encoder asks for them, batch by
    batch. Tile coordinates (level 0) are kept as item labels ``slide_id``, ``x``, ``y``.

    Parameters
    ----------
    paths: slide file(s), glob or folder. id_regex: patient id from the file name (default: TCGA barcode).
    mpp: wanted microns per pixel (wins over magnification). magnification: wanted objective power.
    level: explicit pyramid level (wins over both). tile_size: tile side in output pixels.
    base_mpp, base_magnification: the slide's level-0 mpp / objective power when its metadata lacks them.
    tissue: ``rgb`` (the paper's threshold), ``otsu`` (Otsu on saturation) or ``none``.
    background_threshold: drop tiles whose background fraction exceeds it. white_level: see ``rgb``.
    max_tiles_per_slide: cap, tiles drawn with the seed (None = all).
    backend: ``auto``, ``openslide`` or ``tiffslide``. labels_file: optional patient -> cancer_type table.
    output_dir: also write each tile as a PNG there and return paths instead of lazy tiles.
    """

    provides = ("image",)

    def __init__(self, paths: Any = None, magnification: float | None = 20.0, mpp: float | None = None,
                 level: int | None = None, tile_size: int = 256, base_mpp: float | None = None,
                 base_magnification: float | None = None, tissue: Literal["rgb", "otsu", "none"] = "rgb", background_threshold: float = 0.8,
                 white_level: int = 220, max_tiles_per_slide: int | None = 200, backend: str = "auto",
                 id_regex: str | None = None, labels_file: str | None = None, output_dir: str | None = None,
                 seed: int = 0, modality: str = "image"):
        self.paths = paths
        self.magnification = magnification
        self.mpp = mpp
        self.level = level
        self.tile_size = tile_size
        self.base_mpp = base_mpp
        self.base_magnification = base_magnification
        self.tissue = tissue
        self.background_threshold = background_threshold
        self.white_level = white_level
        self.max_tiles_per_slide = max_tiles_per_slide
        self.backend = backend
        self.id_regex = id_regex
        self.labels_file = labels_file
        self.output_dir = output_dir
        self.seed = seed
        self.modality = modality

    def _slides(self) -> list[str]:
        out = []
        for p in resolve_paths(self.paths, what="slide", param="paths"):
            if os.path.isdir(p):
                out.extend(sorted(os.path.join(p, n) for n in os.listdir(p) if n.lower().endswith(SLIDE_EXTENSIONS)))
            else:
                out.append(p)
        if not out:
            raise DataError("no slide files found", where=str(self.paths), hint=f"extensions: {SLIDE_EXTENSIONS}")
        return out

    def fingerprint_inputs(self) -> list[str]:
        return self._slides()

    def _patient(self, path: str) -> str:
        name = os.path.basename(path)
        if self.id_regex:
            m = re.search(self.id_regex, name)
            if m:
                return m.group(1) if m.groups() else m.group(0)
        found = find_barcodes(name)
        if not found:
            raise DataError(f"cannot parse a patient id from slide name {name!r}", where=path,
                            hint="name slides after the TCGA barcode or set id_regex")
        return found[0]

    def grid(self, slide: Any, path: str = "") -> tuple[TileGrid, str]:
        """The tile grid of one open slide, and a note saying how the resolution was chosen."""
        downs = [float(d) for d in slide.level_downsamples]
        base_mpp = self.base_mpp or slide_mpp(slide)
        base_mag = self.base_magnification or slide_magnification(slide)
        if base_mag is None and base_mpp:
            base_mag = float(round(10.0 / base_mpp))  # 0.25 um/px ~ 40x, 0.5 ~ 20x
        if self.level is not None:
            lvl, extra = choose_level(downs, None, None, int(self.level))
            want, how = downs[lvl], f"level {lvl}"
        elif self.mpp:
            if not base_mpp:
                raise DataError("the slide does not record its microns per pixel, so mpp cannot be honoured",
                                where=path, hint="set base_mpp (the slide's level-0 mpp), or use level")
            want, how = float(self.mpp) / base_mpp, f"{self.mpp} mpp"
        elif self.magnification and base_mag:
            want, how = base_mag / float(self.magnification), f"{self.magnification:g}x of {base_mag:g}x"
        else:
            want, how = 1.0, "level 0 (the slide records no mpp or magnification: set base_mpp)"
        lvl, extra = level_for(downs, want)
        w0, h0 = slide.level_dimensions[0]
        step = self.tile_size * want
        grid = TileGrid(level=lvl, downsample=downs[lvl], want=want, tile_size=int(self.tile_size), step=step,
                        read_size=max(1, int(round(self.tile_size * extra))), nx=int(w0 // step), ny=int(h0 // step))
        return grid, how

    def tiles_of(self, path: str, rng: np.random.Generator) -> tuple[list[Any], np.ndarray, np.ndarray, str]:
        """(lazy tiles, level-0 xy (n, 2), background fractions, note) of one slide."""
        if self.tissue not in TISSUE_METHODS:
            raise DataError(f"tissue must be one of {TISSUE_METHODS}, got {self.tissue!r}", where="wsi.tissue")
        backend = self.backend if self.backend != "auto" else _first_backend(path)
        slide = cached_slide(path, backend)
        grid, how = self.grid(slide, path)
        bg = background_fraction(slide, grid, self.tissue, self.white_level)
        rows, cols = np.nonzero(bg <= self.background_threshold)
        pick = sample_capped(np.zeros(len(rows), dtype=np.int64), self.max_tiles_per_slide, rng)
        rows, cols = rows[pick], cols[pick]
        xs, ys = grid.origin(cols, rows)
        tiles = [SlideTile(path, backend, grid.level, x, y, grid.read_size, grid.tile_size) for x, y in zip(xs, ys)]
        tissue = int((bg <= self.background_threshold).sum())
        note = (f"{os.path.basename(path)}: {len(tiles)} tiles of {grid.nx * grid.ny} ({tissue} tissue by "
                f"{self.tissue}), {grid.tile_size}px at {how}, read from level {grid.level} [{backend}]")
        return tiles, np.stack([xs, ys], axis=1), bg[rows, cols], note

    def read(self, ctx: Any = None) -> RawDataset:
        cmap = load_cancer_map(self.labels_file)
        items: list[Any] = []
        pids, ids, slides, xs, ys, bgs, notes = [], [], [], [], [], [], []
        for path in self._slides():
            pid = self._patient(path)
            tiles, xy, bg, note = self.tiles_of(path, rng_for(ctx, self.seed, "wsi", os.path.basename(path)))
            stem = os.path.splitext(os.path.basename(path))[0]
            for tile, (x, y) in zip(tiles, xy):
                ids.append(f"{stem}_x{x}_y{y}")
                items.append(self._save_png(tile, ids[-1]) if self.output_dir else tile)
            pids += [pid] * len(tiles)
            slides += [stem] * len(tiles)
            xs += [str(int(v)) for v in xy[:, 0]]
            ys += [str(int(v)) for v in xy[:, 1]]
            bgs.append(np.asarray(bg, dtype=np.float32))
            notes.append(note)
        pid_arr = np.array(pids, dtype=str)
        labels = {"slide_id": np.array(slides, dtype=str), "x": np.array(xs, dtype=str), "y": np.array(ys, dtype=str),
                  "background_fraction": np.concatenate(bgs) if bgs else np.zeros(0, np.float32)}
        if cmap:
            labels["cancer_type"] = np.array([cmap.get(p, "") for p in pids], dtype=str)
        data = ModalityData(modality=self.modality, kind="image", patient_ids=pid_arr,
                            item_ids=np.array(ids, dtype=str), data=items, labels=labels,
                            source="wsi: " + ", ".join(os.path.basename(p) for p in self._slides()),
                            fingerprint=fingerprint(self.fingerprint_inputs(), self.get_params()))
        out = RawDataset(modalities={self.modality: data}, notes=notes)
        if cmap:
            out.labels["cancer_type"] = labels_from_items(pid_arr, labels["cancer_type"])
        return out

    def _save_png(self, tile: SlideTile, item_id: str) -> str:
        from PIL import Image

        os.makedirs(str(self.output_dir), exist_ok=True)
        path = os.path.join(str(self.output_dir), safe_component(item_id) + ".png")  # ids never become paths
        Image.fromarray(tile.read()).save(path)
        return path


def _first_backend(path: str) -> str:
    """The backend ``auto`` resolves to (recorded in each tile so workers reopen the same way)."""
    for name in ("openslide", "tiffslide"):
        try:
            importlib.import_module(name)
            return name
        except Exception:  # ImportError, or OSError when openslide-python finds no library
            continue
    open_slide(path, "auto")  # raises the DataError with the install hint
    return "tiffslide"  # pragma: no cover


@hookimpl
def register_readers(register):
    register("wsi", WsiReader, modality="image", tags=["image", "wsi", "openslide", "tiffslide"])


__all__ = ["WsiReader", "SlideTile", "TileGrid", "open_slide", "choose_level", "level_for", "otsu_threshold",
           "background_fraction", "mask_image"]
