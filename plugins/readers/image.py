"""Image readers: folders of H&E tiles (``tiles``) and whole-slide images (``wsi``).

Background removal (both readers) is the paper's "simple RGB threshold": a
pixel is *near-white* when all three channels are >= ``white_level``; a tile
whose fraction of near-white pixels exceeds ``background_threshold`` is
background and dropped.
"""

from __future__ import annotations

import os
import re
from typing import Any

import numpy as np

from fusionkit import hookimpl
from fusionkit import ModalityData, RawDataset, Reader
from fusionkit import DataError

from fusionkit_plugins.readers.common import (availability_note, barcodes12, find_barcodes, fingerprint, labels_from_items,
                             load_cancer_map, pick_column, read_table, resolve_paths, rng_for)

IMAGE_EXTENSIONS = (".png", ".jpg", ".jpeg", ".tif", ".tiff", ".bmp", ".webp")
SLIDE_EXTENSIONS = (".svs", ".tif", ".tiff", ".ndpi", ".mrxs", ".scn", ".vms", ".bif")
#: files that may sit beside tiles without being tiles
_SIDE_FILES = re.compile(r"(\.csv|\.tsv|\.json|\.md|\.txt\.gz|\.csv\.gz|\.yaml|\.yml)$|^(readme|license)", re.I)


def white_fraction(tiles: np.ndarray, white_level: int = 220) -> np.ndarray:
    """Fraction of near-white pixels of each tile; ``tiles`` is (H, W, 3) or (n, H, W, 3) uint8."""
    arr = np.asarray(tiles)
    if arr.ndim == 3:
        arr = arr[None]
    white = (arr[..., :3] >= white_level).all(axis=-1)
    return white.reshape(white.shape[0], -1).mean(axis=1)


def tile_grid(image: np.ndarray, tile_size: int = 256, *, white_level: int = 220,
              background_threshold: float | None = 0.8) -> tuple[np.ndarray, np.ndarray]:
    """Cut an RGB array into non-overlapping ``tile_size`` tiles (incomplete border tiles dropped).

    Returns ``(coords, fractions)``: ``coords`` (n, 2) int64 top-left ``(x, y)`` of the kept tiles in
    row-major order, ``fractions`` their near-white fraction. Vectorised: the image is reshaped into
    a (rows, size, cols, size, 3) view, no loop over tiles.
    """
    img = np.asarray(image)
    if img.ndim != 3 or img.shape[2] < 3:
        raise DataError(f"expected an (H, W, 3) RGB array, got shape {img.shape}", where="tile_grid")
    h, w = img.shape[:2]
    nr, nc = h // tile_size, w // tile_size
    if nr == 0 or nc == 0:
        return np.zeros((0, 2), dtype=np.int64), np.zeros(0)
    view = img[: nr * tile_size, : nc * tile_size, :3].reshape(nr, tile_size, nc, tile_size, 3)
    white = (view >= white_level).all(axis=-1)  # (nr, s, nc, s)
    frac = white.mean(axis=(1, 3)).reshape(-1)  # row-major over (nr, nc)
    rr, cc = np.meshgrid(np.arange(nr), np.arange(nc), indexing="ij")
    coords = np.stack([cc.reshape(-1) * tile_size, rr.reshape(-1) * tile_size], axis=1).astype(np.int64)
    if background_threshold is not None:
        keep = frac <= background_threshold
        coords, frac = coords[keep], frac[keep]
    return coords, frac


def sample_capped(groups: np.ndarray, cap: int | None, rng: np.random.Generator) -> np.ndarray:
    """Indices keeping at most ``cap`` items per group, chosen uniformly at random (sorted)."""
    groups = np.asarray(groups)
    if cap is None or len(groups) == 0:
        return np.arange(len(groups))
    order = rng.permutation(len(groups))
    g = groups[order]
    # rank of each item within its group in the permuted order (vectorised)
    sort = np.argsort(g, kind="stable")
    gs = g[sort]
    starts = np.r_[0, np.flatnonzero(gs[1:] != gs[:-1]) + 1]
    run = np.repeat(starts, np.diff(np.r_[starts, len(gs)]))
    rank = np.empty(len(g), dtype=np.int64)
    rank[sort] = np.arange(len(gs)) - run
    return np.sort(order[rank < int(cap)])


class TilesReader(Reader):
    """A folder of PNG/JPEG H&E tiles (with an index CSV, or patient ids parsed from file names).

    Parameters
    ----------
    folder: the tile folder (searched recursively when there is no index).
    index: index CSV (``auto`` = ``tiles_index.csv`` in the folder if present; ``none`` = parse names).
    path_column, id_column, cancer_column: columns of the index (tile file name/path, patient, cancer).
    labels_file: optional patient -> cancer_type table.
    id_regex: regex with one group that extracts the patient id from a file name
        (default: the TCGA barcode in the name).
    background_threshold: drop tiles whose near-white fraction exceeds it (None = keep all).
    white_level: channel level (0-255) at and above which a pixel counts as white.
    max_tiles_per_patient: cap, tiles sampled at random with the seed (None = all).
    load: return HxWx3 uint8 arrays instead of file paths.
    verify: open each tile header and fail on files that are not images (always done when
        background_threshold is set, since pixels are read then).
    seed: seed of the per-patient sampling when the run gives no context.
    """

    provides = ("image",)

    def __init__(self, folder: str = "", index: str = "auto", path_column: str = "tile",
                 id_column: str = "patient_id", cancer_column: str | None = "cancer_type",
                 labels_file: str | None = None, id_regex: str | None = None,
                 background_threshold: float | None = None, white_level: int = 220,
                 max_tiles_per_patient: int | None = None, load: bool = False, verify: bool = True,
                 seed: int = 0, modality: str = "image"):
        self.folder = folder
        self.index = index
        self.path_column = path_column
        self.id_column = id_column
        self.cancer_column = cancer_column
        self.labels_file = labels_file
        self.id_regex = id_regex
        self.background_threshold = background_threshold
        self.white_level = white_level
        self.max_tiles_per_patient = max_tiles_per_patient
        self.load = load
        self.verify = verify
        self.seed = seed
        self.modality = modality

    def _index_path(self) -> str | None:
        if self.index in (None, "", "none"):
            return None
        if self.index == "auto":
            cand = os.path.join(self.folder, "tiles_index.csv")
            return cand if os.path.isfile(cand) else None
        return resolve_paths(self.index, what="tile index", param="index")[0]

    def fingerprint_inputs(self) -> list[str]:
        return [self.folder] + ([p] if (p := self._index_path()) else [])

    def _listing(self) -> tuple[list[str], list[str], list[str | None]]:
        """(paths, patient ids, cancers) before filtering."""
        if not os.path.isdir(self.folder):
            raise DataError(f"tile folder not found: {self.folder}", where="folder", hint="check the path")
        idx = self._index_path()
        if idx:
            df = read_table(idx)
            pc = pick_column(df.columns, self.path_column, path=idx, role="path",
                             candidates=("tile", "path", "file", "filename"))
            ic = pick_column(df.columns, self.id_column, path=idx)
            cc = pick_column(df.columns, self.cancer_column, path=idx, role="cancer", required=False) \
                if self.cancer_column else None
            paths = [p if os.path.isabs(str(p)) else os.path.join(os.path.dirname(idx), str(p)) for p in df[pc]]
            missing = [p for p in paths if not os.path.isfile(p)]
            if missing:
                raise DataError(f"{len(missing)} tiles listed in the index are missing (first: {missing[0]})",
                                where=idx, hint="fix the index or the folder")
            return paths, list(barcodes12(df[ic])), (df[cc].astype(str).tolist() if cc else [None] * len(df))
        paths, ids = [], []
        rx = re.compile(self.id_regex) if self.id_regex else None
        for dirpath, _dirs, names in os.walk(self.folder):
            for name in sorted(names):
                full = os.path.join(dirpath, name)
                if name.startswith(".") or _SIDE_FILES.search(name):
                    continue
                if not name.lower().endswith(IMAGE_EXTENSIONS):
                    raise DataError(f"not an image file among the tiles: {name}", where=full,
                                    hint=f"tiles must be {', '.join(IMAGE_EXTENSIONS)}; move other files out "
                                         "of the folder")
                if rx:
                    m = rx.search(name)
                    pid = m.group(1) if m and m.groups() else (m.group(0) if m else None)
                else:
                    found = find_barcodes(name)
                    pid = found[0] if found else None
                if not pid:
                    raise DataError(f"cannot parse a patient id from tile name {name!r}", where=full,
                                    hint="name tiles after the patient barcode, set id_regex, or give an index CSV")
                paths.append(full)
                ids.append(pid)
        if not paths:
            raise DataError("no tile images in the folder", where=self.folder, hint="check the folder")
        order = np.argsort(paths, kind="stable")
        return [paths[i] for i in order], [ids[i] for i in order], [None] * len(paths)

    def read(self, ctx: Any = None) -> RawDataset:
        from PIL import Image, UnidentifiedImageError

        paths, ids, cancers = self._listing()
        cmap = load_cancer_map(self.labels_file)
        cancers = [c if c not in (None, "nan") else cmap.get(p) for p, c in zip(ids, cancers)]
        notes: list[str] = []
        need_pixels = self.background_threshold is not None or self.load
        arrays: dict[int, np.ndarray] = {}
        keep = np.ones(len(paths), dtype=bool)
        fracs = np.full(len(paths), np.nan)
        for i, path in enumerate(paths):
            if not (need_pixels or self.verify):
                break
            try:
                with Image.open(path) as im:
                    if need_pixels:
                        arr = np.asarray(im.convert("RGB"))
                    else:
                        im.verify()
                        continue
            except (UnidentifiedImageError, OSError, SyntaxError) as exc:
                raise DataError(f"not a readable image among the tiles: {os.path.basename(path)} ({exc})",
                                where=path, hint="remove or re-export the file") from exc
            if self.background_threshold is not None:
                fracs[i] = float(white_fraction(arr, self.white_level)[0])
                keep[i] = fracs[i] <= self.background_threshold
            if self.load and keep[i]:
                arrays[i] = arr
        if self.background_threshold is not None:
            notes.append(f"image: {int((~keep).sum())} of {len(paths)} tiles dropped as background "
                         f"(> {self.background_threshold:.0%} pixels with RGB >= {self.white_level})")
        idx = np.flatnonzero(keep)
        pid_all = np.array(ids)
        rng = rng_for(ctx, self.seed, "tiles", self.modality)
        sel = idx[sample_capped(pid_all[idx], self.max_tiles_per_patient, rng)]
        if self.max_tiles_per_patient is not None and len(sel) < len(idx):
            notes.append(f"image: capped at {self.max_tiles_per_patient} tiles per patient "
                         f"({len(idx) - len(sel)} tiles not used)")
        data_items = [arrays[i] for i in sel] if self.load else [paths[i] for i in sel]
        pid = pid_all[sel]
        labels: dict[str, np.ndarray] = {}
        if any(c for c in cancers):
            labels["cancer_type"] = np.array([cancers[i] or "" for i in sel])
        if self.background_threshold is not None:
            labels["white_fraction"] = fracs[sel].astype(np.float32)
        item_ids = np.array([os.path.splitext(os.path.basename(paths[i]))[0] for i in sel])
        if len(set(item_ids)) != len(item_ids):
            item_ids = np.array([os.path.relpath(paths[i], self.folder) for i in sel])
        data = ModalityData(modality=self.modality, kind="image", patient_ids=pid, item_ids=item_ids,
                            data=data_items, labels=labels, source=f"tiles: {self.folder}",
                            fingerprint=fingerprint(self.fingerprint_inputs(), self.get_params()))
        out = RawDataset(modalities={self.modality: data}, notes=notes)
        if "cancer_type" in labels:
            out.labels["cancer_type"] = labels_from_items(pid, labels["cancer_type"])
            notes.append(availability_note(self.modality, pid, out.labels["cancer_type"], len(pid)))
        return out


# --------------------------------------------------------------------------- WSI

def _open_slide(path: str) -> Any:
    """An OpenSlide-like object (openslide, else tiffslide), or DataError with the pip hint."""
    try:
        import openslide  # type: ignore

        return openslide.OpenSlide(path)
    except ImportError:
        pass
    except Exception as exc:
        raise DataError(f"openslide cannot open the slide ({exc})", where=path,
                        hint="check the file; supported: .svs .tif .ndpi .mrxs .scn") from exc
    try:
        import tiffslide  # type: ignore

        return tiffslide.TiffSlide(path)
    except ImportError as exc:
        raise DataError("reading whole-slide images needs openslide or tiffslide", where=path,
                        hint="pip install tiffslide   (pure Python), or pip install openslide-python "
                             "openslide-bin") from exc
    except Exception as exc:
        raise DataError(f"tiffslide cannot open the slide ({exc})", where=path,
                        hint="check the file; tiffslide reads .svs/.tif/.ndpi") from exc


def choose_level(level_downsamples: list[float], base_mpp_mag: float | None, magnification: float | None,
                 level: int | None) -> tuple[int, float]:
    """(level, extra downsample) for a wanted magnification (or an explicit level)."""
    if level is not None:
        if not 0 <= level < len(level_downsamples):
            raise DataError(f"level {level} out of range (slide has {len(level_downsamples)} levels)", where="level")
        return int(level), 1.0
    if magnification is None or base_mpp_mag is None:
        return 0, 1.0
    want = float(base_mpp_mag) / float(magnification)  # downsample wanted relative to level 0
    if want < 1:
        raise DataError(f"magnification {magnification}x is above the slide's {base_mpp_mag}x", where="magnification")
    best = max((i for i, d in enumerate(level_downsamples) if d <= want * 1.01), key=lambda i: level_downsamples[i])
    return best, want / float(level_downsamples[best])


class WsiReader(Reader):
    """Whole-slide images (.svs/.tif/.ndpi via openslide or tiffslide) cut into 256x256 tiles.

    Non-overlapping tiles at the chosen magnification (or level); background tiles dropped by the
    RGB threshold; at most ``max_tiles_per_slide`` tiles per slide, sampled with the seed. Tiles are
    returned as uint8 arrays, or written as PNGs to ``output_dir`` and returned as paths.

    Parameters
    ----------
    paths: slide file(s), glob or folder. id_regex: patient id from the file name (default: TCGA barcode).
    magnification: wanted objective power (e.g. 20); uses the slide's ``objective-power`` property.
    level: explicit pyramid level (overrides magnification). tile_size: tile width in pixels.
    background_threshold, white_level: background rule (module doc). max_tiles_per_slide: cap.
    labels_file: optional patient -> cancer_type table. output_dir: where to write tile PNGs.
    """

    provides = ("image",)

    def __init__(self, paths: Any = None, magnification: float | None = 20.0, level: int | None = None,
                 tile_size: int = 256, background_threshold: float = 0.8, white_level: int = 220,
                 max_tiles_per_slide: int | None = 200, id_regex: str | None = None,
                 labels_file: str | None = None, output_dir: str | None = None, seed: int = 0,
                 modality: str = "image"):
        self.paths = paths
        self.magnification = magnification
        self.level = level
        self.tile_size = tile_size
        self.background_threshold = background_threshold
        self.white_level = white_level
        self.max_tiles_per_slide = max_tiles_per_slide
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

    def tiles_of_slide(self, slide: Any, rng: np.random.Generator) -> tuple[list[np.ndarray], np.ndarray]:
        """(tiles, coords at level 0) of one open slide."""
        props = getattr(slide, "properties", {}) or {}
        mag = props.get("openslide.objective-power") or props.get("tiffslide.objective-power")
        lvl, extra = choose_level(list(slide.level_downsamples), float(mag) if mag else None,
                                  self.magnification, self.level)
        ds = float(slide.level_downsamples[lvl])
        read_size = int(round(self.tile_size * extra))
        w, h = slide.level_dimensions[lvl]
        # background mask from a thumbnail-sized read of the whole level, in tiles of read_size
        thumb_scale = max(1, read_size // 16)
        thumb = np.asarray(slide.get_thumbnail((max(1, w // thumb_scale), max(1, h // thumb_scale))).convert("RGB"))
        cell = max(1, read_size // thumb_scale)
        coords_t, _ = tile_grid(thumb, cell, white_level=self.white_level,
                                background_threshold=self.background_threshold)
        coords = (coords_t // cell) * read_size  # in level pixels
        pick = sample_capped(np.zeros(len(coords), dtype=np.int64), self.max_tiles_per_slide, rng)
        tiles, kept = [], []
        for x, y in coords[pick]:
            x0, y0 = int(x * ds), int(y * ds)
            region = slide.read_region((x0, y0), lvl, (read_size, read_size)).convert("RGB")
            if read_size != self.tile_size:
                region = region.resize((self.tile_size, self.tile_size))
            arr = np.asarray(region)
            if self.background_threshold is not None and \
                    white_fraction(arr, self.white_level)[0] > self.background_threshold:
                continue
            tiles.append(arr)
            kept.append((x0, y0))
        return tiles, np.asarray(kept, dtype=np.int64).reshape(-1, 2)

    def read(self, ctx: Any = None) -> RawDataset:
        from PIL import Image

        cmap = load_cancer_map(self.labels_file)
        items, pids, item_ids, notes = [], [], [], []
        for path in self._slides():
            pid = self._patient(path)
            slide = _open_slide(path)
            rng = rng_for(ctx, self.seed, "wsi", os.path.basename(path))
            tiles, coords = self.tiles_of_slide(slide, rng)
            stem = os.path.splitext(os.path.basename(path))[0]
            for arr, (x, y) in zip(tiles, coords):
                iid = f"{stem}_x{x}_y{y}"
                if self.output_dir:
                    os.makedirs(self.output_dir, exist_ok=True)
                    out = os.path.join(self.output_dir, iid + ".png")
                    Image.fromarray(arr).save(out)
                    items.append(out)
                else:
                    items.append(arr)
                pids.append(pid)
                item_ids.append(iid)
            notes.append(f"wsi: {os.path.basename(path)} -> {len(tiles)} tiles")
        pid_arr = np.array(pids)
        labels = {"cancer_type": np.array([cmap.get(p, "") for p in pids])} if cmap else {}
        data = ModalityData(modality=self.modality, kind="image", patient_ids=pid_arr, item_ids=np.array(item_ids),
                            data=items, labels=labels, source="wsi: " + ", ".join(os.path.basename(p)
                                                                                    for p in self._slides()),
                            fingerprint=fingerprint(self.fingerprint_inputs(), self.get_params()))
        out = RawDataset(modalities={self.modality: data}, notes=notes)
        if labels:
            out.labels["cancer_type"] = labels_from_items(pid_arr, labels["cancer_type"])
        return out


@hookimpl
def register_readers(register):
    register("tiles", TilesReader, modality="image", tags=["image", "tiles"])
    register("wsi", WsiReader, modality="image", tags=["image", "wsi"])
