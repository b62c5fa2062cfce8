"""Reader ``tiles``: folders of H&E tiles (whole-slide images: ``readers/slides.py``).

Background removal (here and in ``wsi``) is the paper's "simple RGB threshold": a
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

from fusionkit_plugins.readers.caps import sample_capped
from fusionkit_plugins.readers.common import (availability_note, barcodes12, find_barcodes, fingerprint, labels_from_items,
                             load_cancer_map, pick_column, read_table, resolve_paths, rng_for)
# the wsi reader moved to readers/slides.py; its names stay importable from here
from fusionkit_plugins.readers.slides import SLIDE_EXTENSIONS, WsiReader, _open_slide, choose_level  # noqa: F401

IMAGE_EXTENSIONS = (".png", ".jpg", ".jpeg", ".tif", ".tiff", ".bmp", ".webp")
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


@hookimpl
def register_readers(register):
    register("tiles", TilesReader, modality="image", tags=["image", "tiles"])
