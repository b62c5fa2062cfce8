"""`wsi` reader on real pyramidal TIFFs assembled from the real H&E tiles of ../shared/data.

The test slide is a 7 x 7 grid of 256-px cells: a white margin ring and 25 real tissue tiles
inside (a mosaic of tiles from several TCGA slides, named after the first), three pyramid levels
(40x, 20x, 10x at 0.25 um/px), each level its own tiled TIFF page, opened as OpenSlide's
generic-tiff and by tiffslide.
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

from fusionkit import engine, hookimpl, plugins
from fusionkit.components import Encoder
from fusionkit.errors import DataError
from fusionkit.recipe import load_recipe
from fusionkit.store import EmbeddingStore
from slide_builder import framed_grid, real_tiles, write_pyramid

openslide = pytest.importorskip("openslide", reason="the wsi extra (openslide-bin, openslide-python) is not installed")
tiffslide = pytest.importorskip("tiffslide", reason="the wsi extra (tiffslide) is not installed")
pytest.importorskip("tifffile")

from fusionkit_plugins.readers.slides import (SlideTile, WsiReader, mask_image, open_slide,  # noqa: E402
                                              otsu_threshold)

SLIDE = "TCGA-38-6178-01Z-00-DX1.tif"
INNER = [(c * 256, r * 256) for r in range(1, 6) for c in range(1, 6)]  # level-0 (x, y) of the tissue cells


@pytest.fixture(scope="module")
def tiles():
    from conftest import SHARED_DATA

    folder = SHARED_DATA / "tiles"
    if not folder.is_dir():
        pytest.skip(f"real H&E tiles not found at {folder} (set FUSIONKIT_SHARED_DATA or place ../shared beside the repo)")
    return real_tiles(folder)


@pytest.fixture(scope="module")
def slide_dir(tiles, tmp_path_factory):
    folder = tmp_path_factory.mktemp("slides")
    write_pyramid(folder / SLIDE, tiles[:25], 7, 7, framed_grid(7))
    # a second patient: 4 x 4 cells, 2 x 2 tissue in the middle
    write_pyramid(folder / "TCGA-49-4488-01Z-00-DX1.tif", tiles[25:29], 4, 4, framed_grid(4))
    return folder


def test_pyramid_is_generic_tiff_and_backends_agree(slide_dir, tiles):
    a, b = open_slide(str(slide_dir / SLIDE), "openslide"), open_slide(str(slide_dir / SLIDE), "tiffslide")
    assert a.properties["openslide.vendor"] == "generic-tiff"
    assert a.level_dimensions == b.level_dimensions == ((1792, 1792), (896, 896), (448, 448))
    assert float(a.properties["openslide.mpp-x"]) == pytest.approx(0.25)
    assert float(b.properties["tiffslide.mpp-x"]) == pytest.approx(0.25)
    for lvl, loc in ((0, (256, 512)), (1, (300, 700)), (2, (0, 0))):
        x = np.asarray(a.read_region(loc, lvl, (200, 200)).convert("RGB"))
        y = np.asarray(b.read_region(loc, lvl, (200, 200)).convert("RGB"))
        np.testing.assert_array_equal(x, y)
    np.testing.assert_array_equal(np.asarray(SlideTile(str(slide_dir / SLIDE), "tiffslide", 0, 512, 256, 256, 256)),
                                  tiles[1])  # the real tile, pixel for pixel (lossless pages)


@pytest.mark.parametrize("tissue", ["rgb", "otsu"])
@pytest.mark.parametrize("backend", ["openslide", "tiffslide"])
def test_tissue_tiles_and_coordinates(slide_dir, tiles, tissue, backend):
    ds = WsiReader(paths=str(slide_dir / SLIDE), magnification=40, max_tiles_per_slide=None, tissue=tissue,
                   backend=backend).read(None)
    md = ds.modalities["image"]
    xy = list(zip(md.labels["x"].astype(int), md.labels["y"].astype(int)))
    assert len(md) == 25 and sorted(xy) == sorted(INNER)  # the 24 white margin cells are dropped
    assert all(isinstance(t, SlideTile) for t in md.data)  # lazy: no pixels held by the reader
    assert set(md.patient_ids) == {"TCGA-38-6178"} and set(md.labels["slide_id"]) == {SLIDE[:-4]}
    assert md.item_ids[0] == f"{SLIDE[:-4]}_x{xy[0][0]}_y{xy[0][1]}"
    k = INNER.index(xy[3])
    np.testing.assert_array_equal(np.asarray(md.data[3]), tiles[k])
    assert "25 tiles of 49 (25 tissue by " + tissue in ds.notes[0]


def test_magnification_and_mpp_choose_levels(slide_dir):
    path = str(slide_dir / SLIDE)
    half = WsiReader(paths=path, magnification=20, max_tiles_per_slide=None, background_threshold=1.0).read(None)
    md = half.modalities["image"]
    assert len(md) == 9 and md.data[0].level == 1 and md.data[0].read_size == 256
    assert sorted(set(md.labels["x"].astype(int))) == [0, 512, 1024]  # level-0 coordinates, 512 apart
    level1 = open_slide(path, "openslide").read_region((512, 512), 1, (256, 256))
    tile = md.data[list(md.item_ids).index(f"{SLIDE[:-4]}_x512_y512")]
    np.testing.assert_array_equal(np.asarray(tile), np.asarray(level1.convert("RGB")))
    assert "read from level 1" in half.notes[0] and "20x of 40x" in half.notes[0]
    assert WsiReader(paths=path, magnification=10).read(None).modalities["image"].data[0].level == 2
    coarse = WsiReader(paths=path, mpp=0.75, max_tiles_per_slide=None).read(None).modalities["image"]
    assert coarse.data[0].level == 1 and coarse.data[0].read_size == 384  # 1.5x more, resized to 256
    assert np.asarray(coarse.data[0]).shape == (256, 256, 3) and len(coarse) == 4
    capped = WsiReader(paths=path, magnification=40, max_tiles_per_slide=5, seed=2).read(None).modalities["image"]
    assert len(capped) == 5 and set(capped.item_ids) <= {f"{SLIDE[:-4]}_x{x}_y{y}" for x, y in INNER}
    with pytest.raises(DataError, match="finer than the slide"):
        WsiReader(paths=path, magnification=80).read(None)


def test_slide_without_resolution(tiles, tmp_path):
    path = write_pyramid(tmp_path / "TCGA-AA-0001-01Z-00-DX1.tif", tiles[:4], 4, 4, framed_grid(4), mpp=None)
    with pytest.raises(DataError) as err:
        WsiReader(paths=str(path), mpp=0.5).read(None)
    assert "base_mpp" in err.value.hint and err.value.where == str(path)
    ds = WsiReader(paths=str(path), mpp=0.5, base_mpp=0.25, max_tiles_per_slide=None).read(None)
    assert ds.modalities["image"].data[0].level == 1 and len(ds.modalities["image"]) == 4
    fallback = WsiReader(paths=str(path), max_tiles_per_slide=None).read(None)
    assert len(fallback.modalities["image"]) == 4 and "records no mpp" in fallback.notes[0]


def test_mask_strips_and_otsu(slide_dir, monkeypatch):
    from fusionkit_plugins.readers import slides

    slide = open_slide(str(slide_dir / SLIDE), "tiffslide")
    white, mean, block = mask_image(slide, 16.0, 220)
    monkeypatch.setattr(slides, "STRIP_PIXELS", 3000)  # many small strips: same mask
    white2, mean2, block2 = mask_image(slide, 16.0, 220)
    assert block == block2 == 16.0 and white.shape == (112, 112)
    np.testing.assert_allclose(white, white2)
    np.testing.assert_allclose(mean, mean2)
    assert white[:16].min() == 1.0 and white[16:96, 16:96].mean() < 0.3  # margin ring white, tissue not
    rng = np.random.default_rng(0)
    values = np.concatenate([rng.normal(0.05, 0.02, 5000), rng.normal(0.45, 0.05, 3000)])
    thr = otsu_threshold(values)
    assert 0.1 < thr < 0.35 and (values[:5000] < thr).mean() > 0.99 and (values[5000:] > thr).all()


class TileStats(Encoder):
    """Colour statistics of each tile (8-d): records what the reader hands over, batch by batch."""

    modality = "image"
    input_kind = "image"
    card = {"licence": "n/a", "gated": False, "weights_source": "none", "dim": 8}
    seen: list[tuple[str, int]] = []

    def __init__(self, dim: int = 8, batch_size: int = 4):
        self.dim = dim
        self.batch_size = batch_size

    def encode(self, data, ctx=None):
        out = []
        for start in range(0, len(data.data), self.batch_size):
            batch = data.data[start:start + self.batch_size]
            TileStats.seen.append((type(batch[0]).__name__, len(batch)))
            X = np.stack([np.asarray(t) for t in batch]).astype(np.float32) / 255.0
            white = (X >= 220 / 255).all(axis=-1).mean(axis=(1, 2))
            out.append(np.concatenate([X.mean(axis=(1, 2)), X.std(axis=(1, 2)), white[:, None],
                                       X.mean(axis=(1, 2, 3))[:, None]], axis=1))
        return np.concatenate(out)


def _system():
    mod = type("M", (), {})()

    @hookimpl
    def register_encoders(register):
        register("tile-stats", TileStats)

    mod.register_encoders = register_encoders
    return plugins.load(env={}, entry_points=[], extra=[("tile-stats-plugin", mod)])


def test_recipe_end_to_end_same_tiles_through_both_backends(slide_dir, tmp_path):
    system = _system()
    stores = {}
    for backend in ("openslide", "tiffslide"):
        recipe = tmp_path / f"{backend}.yaml"
        recipe.write_text(f"""schema: 1
name: slides_{backend}
seed: 5
width: 8
data:
  reader: {{name: wsi, params: {{paths: {slide_dir}, magnification: 40, max_tiles_per_slide: null,
                                backend: {backend}}}}}
modalities:
  image: {{encoder: {{name: tile-stats, params: {{batch_size: 4}}}}}}
sampling:
  tiles: {{name: modality-level, params: {{k: "2..3", n: 10}}}}
aggregator: mean
""")
        TileStats.seen.clear()
        out = tmp_path / backend
        engine.run(load_recipe(recipe, system), system, out_dir=out, progress=False)
        assert {t for t, _ in TileStats.seen} == {"SlideTile"} and max(n for _, n in TileStats.seen) == 4
        stores[backend] = EmbeddingStore(json.loads((out / "run.json").read_text())["stores"]["image"])
    a, b = stores["openslide"], stores["tiffslide"]
    assert a.n == b.n == 29  # 25 + 4 tissue tiles, margins dropped on both slides
    np.testing.assert_array_equal(np.asarray(a.embeddings), np.asarray(b.embeddings))
    for col in ("item_id", "patient_id", "slide_id", "x", "y"):
        np.testing.assert_array_equal(a.label(col), b.label(col))
    assert set(a.patient_ids) == {"TCGA-38-6178", "TCGA-49-4488"}
    assert np.asarray(a.embeddings)[:, 6].max() < 0.3  # no background tile reached the encoder
