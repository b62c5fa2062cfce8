"""Reader ``patch-features``: patch embeddings already extracted by TRIDENT or CLAM.

The layout (one HDF5 file per slide, named after the slide)::

    <slide>.h5
      features   float32 (N, D)   one row per patch (TRIDENT slide encoders write (D,): one slide vector)
      coords     int     (N, 2)   top-left (x, y) of each patch in level-0 pixels
        attrs (TRIDENT): patch_size, patch_size_level0, level0_magnification,
                         target_magnification, overlap, name, level0_width, level0_height
        attrs (CLAM):    patch_size, patch_level, downsample (optional)

TRIDENT keeps the encoder in the folder name (``features_<encoder>/``); an
``encoder`` attribute on ``features`` or on the file is read when present.
Slide names are TCGA slide barcodes: the patient is the first 12 characters,
and a patient may have several slides. Each patch becomes one item whose
``slide_id``, ``x`` and ``y`` are kept as item labels (so they are columns of
the embedding store). Pair it with the ``identity`` encoder.
"""

from __future__ import annotations

import os
import re
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from fusionkit import DataError, ModalityData, RawDataset, Reader, hookimpl

from fusionkit_plugins.readers.common import (availability_note, find_barcodes, fingerprint, labels_from_items,
                                              load_cancer_map, resolve_paths, rng_for)
from fusionkit_plugins.readers.caps import sample_capped

H5_EXTENSIONS = (".h5", ".hdf5")
LAYOUT_HINT = ("TRIDENT/CLAM patch-feature files hold a dataset 'features' (N x D float) and a dataset "
               "'coords' (N x 2 level-0 pixel coordinates); re-run the feature extraction or fix the file")
#: attributes copied into the notes and the ModalityData extras when present
COORD_ATTRS = ("patch_size", "patch_size_level0", "level0_magnification", "target_magnification", "overlap",
               "patch_level", "downsample", "level0_width", "level0_height")


@dataclass
class SlideFeatures:
    """One slide's patches after capping: vectors, level-0 coordinates and attributes."""

    slide: str
    path: str
    X: np.ndarray
    coords: np.ndarray
    attrs: dict[str, Any] = field(default_factory=dict)


def _scalar(value: Any) -> Any:
    if isinstance(value, bytes):
        return value.decode("utf-8", "replace")
    if isinstance(value, np.ndarray) and value.size == 1:
        value = value.reshape(-1)[0]
    if isinstance(value, np.generic):
        return value.item()
    return value if isinstance(value, (str, int, float, bool)) else str(value)


def encoder_from_path(path: str) -> str | None:
    """TRIDENT's encoder name from a ``features_<encoder>`` folder in the path, if any."""
    for part in reversed(os.path.normpath(os.path.dirname(os.path.abspath(path))).split(os.sep)):
        if part.startswith("features_") and len(part) > len("features_"):
            return part[len("features_"):]
    return None


def read_slide_file(path: str, cap: int | None, rng: np.random.Generator) -> SlideFeatures:
    """Read one TRIDENT/CLAM file (at most ``cap`` random patches), checking the layout."""
    import h5py

    slide = os.path.splitext(os.path.basename(path))[0]
    try:
        fh = h5py.File(path, "r")
    except OSError as exc:
        raise DataError(f"not a readable HDF5 file ({exc})", where=path, hint=LAYOUT_HINT) from exc
    with fh:
        for name in ("features", "coords"):
            if name not in fh or not isinstance(fh[name], h5py.Dataset):
                raise DataError(f"slide {slide}: no {name!r} dataset (found: {', '.join(sorted(fh.keys())) or 'none'})",
                                where=path, hint=LAYOUT_HINT)
        feats, coords_ds = fh["features"], fh["coords"]
        attrs = {k: _scalar(v) for k, v in fh.attrs.items()}
        attrs.update({k: _scalar(v) for k, v in coords_ds.attrs.items()})
        attrs.update({f"features.{k}": _scalar(v) for k, v in feats.attrs.items()})
        if feats.ndim == 1:  # a TRIDENT slide encoder's output: one vector for the slide
            X = np.asarray(feats[()], dtype=np.float32)[None, :]
            return SlideFeatures(slide, path, X, np.zeros((1, 2), dtype=np.int64), {**attrs, "slide_level": True})
        if feats.ndim != 2:
            raise DataError(f"slide {slide}: 'features' has shape {feats.shape}, expected (N, D)", where=path,
                            hint=LAYOUT_HINT)
        if coords_ds.ndim != 2 or coords_ds.shape[1] != 2:
            raise DataError(f"slide {slide}: 'coords' has shape {coords_ds.shape}, expected (N, 2)", where=path,
                            hint=LAYOUT_HINT)
        n = feats.shape[0]
        if coords_ds.shape[0] != n:
            raise DataError(f"slide {slide}: {n} feature rows but {coords_ds.shape[0]} coordinates", where=path,
                            hint="features and coords must have one row per patch, in the same order; "
                                 "the file is truncated or mixes two extractions")
        rows = sample_capped(np.zeros(n, dtype=np.int64), cap, rng)
        whole = len(rows) == n
        X = np.asarray(feats[()] if whole else feats[rows], dtype=np.float32)
        coords = np.asarray(coords_ds[()] if whole else coords_ds[rows]).astype(np.int64)
    if not np.isfinite(X).all():
        bad = int((~np.isfinite(X)).any(axis=1).sum())
        raise DataError(f"slide {slide}: {bad} patch feature rows contain NaN or inf", where=path,
                        hint="re-extract the features of this slide, or remove the file")
    return SlideFeatures(slide, path, X, coords, attrs)


class PatchFeaturesReader(Reader):
    """Patch features from TRIDENT or CLAM: a folder of per-slide HDF5 files (features + coords).

    Parameters
    ----------
    paths: folder(s), glob(s) or files of per-slide ``.h5`` files.
    modality: the modality the patches belong to (default ``image``).
    id_regex: regex whose first group is the patient id in a file name (default: the TCGA barcode,
        i.e. the first 12 characters of the slide barcode).
    labels_file: optional patient -> cancer_type table.
    max_patches_per_slide: keep at most this many patches per slide, drawn with the seed (None = all).
    pool: ``none`` (one item per patch, coordinates kept) or ``mean`` (one item per slide).
    encoder_name: name of the encoder that produced the features (default: an ``encoder``
        attribute, else the TRIDENT folder name ``features_<encoder>``).
    seed: seed of the per-slide cap when the run gives no context.
    """

    provides = ("image",)

    def __init__(self, paths: Any = None, modality: str = "image", id_regex: str | None = None,
                 labels_file: str | None = None, max_patches_per_slide: int | None = None, pool: str = "none",
                 encoder_name: str | None = None, seed: int = 0):
        self.paths = paths
        self.modality = modality
        self.id_regex = id_regex
        self.labels_file = labels_file
        self.max_patches_per_slide = max_patches_per_slide
        self.pool = pool
        self.encoder_name = encoder_name
        self.seed = seed

    def files(self) -> list[str]:
        out: list[str] = []
        for p in resolve_paths(self.paths, what="patch-feature file", param="paths"):
            if os.path.isdir(p):
                out.extend(sorted(os.path.join(p, n) for n in os.listdir(p) if n.lower().endswith(H5_EXTENSIONS)))
            else:
                out.append(p)
        if not out:
            raise DataError("no .h5 patch-feature files found", where=str(self.paths),
                            hint="point paths at the folder of per-slide .h5 files (TRIDENT: features_<encoder>/)")
        return out

    def fingerprint_inputs(self) -> list[str]:
        return self.files()

    def _patient(self, slide: str, path: str) -> str:
        if self.id_regex:
            m = re.search(self.id_regex, slide)
            if m:
                return m.group(1) if m.groups() else m.group(0)
        else:
            found = find_barcodes(slide)
            if found:
                return found[0]
        raise DataError(f"cannot parse a patient id from slide file name {slide!r}", where=path,
                        hint="name files after the TCGA slide barcode (TCGA-XX-XXXX-...) or set id_regex")

    def read(self, ctx: Any = None) -> RawDataset:
        if self.pool not in ("none", "mean"):
            raise DataError(f"pool must be 'none' or 'mean', got {self.pool!r}", where="patch-features.pool")
        slides = []
        for path in self.files():
            rng = rng_for(ctx, self.seed, "patch-features", os.path.basename(path))
            slides.append(read_slide_file(path, self.max_patches_per_slide, rng))
        dims = {s.slide: s.X.shape[1] for s in slides}
        if len(set(dims.values())) > 1:
            raise DataError(f"slides have different feature widths: {dims}", where=str(self.paths),
                            hint="read the features of one encoder at a time (one features_<encoder> folder)")
        data = self._modality(slides)
        cmap = load_cancer_map(self.labels_file)
        out = RawDataset(modalities={self.modality: data}, notes=self._notes(slides, data))
        if cmap:
            data.labels["cancer_type"] = np.array([cmap.get(p, "") for p in data.patient_ids])
            out.labels["cancer_type"] = labels_from_items(data.patient_ids, data.labels["cancer_type"])
            out.notes.append(availability_note(self.modality, data.patient_ids, out.labels["cancer_type"], len(data)))
        return out

    def _modality(self, slides: list[SlideFeatures]) -> ModalityData:
        pids, items, slide_col, xs, ys, parts = [], [], [], [], [], []
        for s in slides:
            pid = self._patient(s.slide, s.path)
            if self.pool == "mean" or s.attrs.get("slide_level"):
                parts.append(s.X.mean(axis=0, keepdims=True))
                pids.append(pid)
                items.append(s.slide)
                slide_col.append(s.slide)
                xs.append("")
                ys.append("")
                continue
            ids = [f"{s.slide}_x{x}_y{y}" for x, y in s.coords]
            if len(set(ids)) != len(ids):
                raise DataError(f"slide {s.slide}: duplicate patch coordinates", where=s.path,
                                hint="each patch must have its own (x, y); the file mixes two extractions")
            parts.append(s.X)
            pids += [pid] * len(ids)
            items += ids
            slide_col += [s.slide] * len(ids)
            xs += [str(int(x)) for x in s.coords[:, 0]]
            ys += [str(int(y)) for y in s.coords[:, 1]]
        X = np.concatenate(parts).astype(np.float32, copy=False)
        coords = np.concatenate([s.coords for s in slides]) if self.pool == "none" else None
        encoder = self.encoder_name or self._encoder_name(slides)
        labels = {"slide_id": np.array(slide_col)}
        if self.pool == "none":
            labels.update(x=np.array(xs), y=np.array(ys))
        return ModalityData(
            modality=self.modality, kind="embedding", patient_ids=np.array(pids), item_ids=np.array(items), data=X,
            labels=labels, source=f"patch-features ({encoder or 'unknown encoder'}): {self.paths}",
            fingerprint=fingerprint(self.fingerprint_inputs(), self.get_params()),
            extras={"encoder": encoder, "coords": coords,
                    "slide_attrs": {s.slide: {k: s.attrs[k] for k in COORD_ATTRS if k in s.attrs} for s in slides}})

    @staticmethod
    def _encoder_name(slides: list[SlideFeatures]) -> str | None:
        for s in slides:
            for key in ("features.encoder", "encoder", "features.model", "model"):
                if s.attrs.get(key):
                    return str(s.attrs[key])
        return encoder_from_path(slides[0].path) if slides else None

    def _notes(self, slides: list[SlideFeatures], data: ModalityData) -> list[str]:
        a = slides[0].attrs if slides else {}
        mag = a.get("target_magnification")
        size = a.get("patch_size")
        detail = ", ".join(x for x in (f"{mag}x" if mag is not None else "", f"patch {size}" if size else "") if x)
        return [f"{self.modality}: {len(slides)} slides, {len(set(data.patient_ids))} patients, {len(data)} items"
                + (f" ({detail})" if detail else "")]


@hookimpl
def register_readers(register):
    register("patch-features", PatchFeaturesReader, modality="image", tags=["image", "trident", "clam", "hdf5"])
