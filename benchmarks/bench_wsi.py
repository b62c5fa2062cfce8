"""Whole-slide reading stays memory-bounded: peak RSS of a recipe on a >= 20k x 20k slide.

The slide is built the same way as the tests' (``tests/slide_builder.py``): real
256-px H&E tiles from ``../shared/data/tcga/tiles`` on a grid of 80 x 80 cells
(20,480 x 20,480 px at level 0, 0.25 um/px), tissue on a central disc and white
background around it, pyramid levels 1, 4, 16, 64 each its own tiled JPEG page.
A child process runs a whole recipe on it (``wsi`` reader at 40x, every tissue
tile, a colour-statistics encoder fed in batches of 64) through OpenSlide and
then tiffslide, and reports its peak resident set (VmHWM). The baseline is the
slide's decoded level 0 (what holding the slide in memory would take).

    python benchmarks/bench_wsi.py [--quick]
"""

from __future__ import annotations

import sys
from pathlib import Path
from typing import Any

from common import REPO, TCGA, main_for, row, run_child, skip, temp_dir

CHILD = r"""
import json, os, resource, time
import numpy as np
from fusionkit import Encoder, engine, hookimpl, plugins
from fusionkit.recipe import load_recipe

def status():
    out = {}
    with open("/proc/self/status") as fh:
        for line in fh:
            k, _, v = line.partition(":")
            if k in ("VmRSS", "VmHWM"):
                out[k] = int(v.split()[0]) * 1024
    return out

class Stats(Encoder):
    '''Colour statistics per tile (8-d).'''
    modality = "image"
    input_kind = "image"
    card = {"dim": 8}
    def __init__(self, dim: int = 8, batch_size: int = 64):
        self.dim, self.batch_size = dim, batch_size
    def encode(self, data, ctx=None):
        out = []
        for s in range(0, len(data.data), self.batch_size):
            X = np.stack([np.asarray(t) for t in data.data[s:s + self.batch_size]]).astype(np.float32) / 255
            out.append(np.concatenate([X.mean(axis=(1, 2)), X.std(axis=(1, 2)),
                                       (X > 0.86).all(-1).mean(axis=(1, 2))[:, None],
                                       X.mean(axis=(1, 2, 3))[:, None]], axis=1))
        return np.concatenate(out)

mod = type("M", (), {})()
@hookimpl
def register_encoders(register):
    register("stats", Stats)
mod.register_encoders = register_encoders
system = plugins.load(env={}, entry_points=[], extra=[("bench-stats", mod)])
recipe = os.path.join(ARGS["work"], "recipe.yaml")
with open(recipe, "w") as fh:
    fh.write(f'''schema: 1
name: wsi_bench
seed: 1
width: 8
data:
  reader: {{name: wsi, params: {{paths: {ARGS["slide"]}, magnification: 40, max_tiles_per_slide: null,
                                backend: {ARGS["backend"]}}}}}
modalities:
  image: {{encoder: {{name: stats, params: {{batch_size: 64}}}}}}
sampling:
  tiles: {{name: modality-level, params: {{k: 3, n: 100}}}}
aggregator: mean
''')
rec = load_recipe(recipe, system)
before = status()
t0 = time.perf_counter()
record = engine.run(rec, system, out_dir=os.path.join(ARGS["work"], "run-" + ARGS["backend"]), progress=False)
wall = time.perf_counter() - t0
after = status()
summary = json.load(open(os.path.join(ARGS["work"], "run-" + ARGS["backend"], "data_summary.json")))
RESULT.update(rss_before=before["VmRSS"], peak=after["VmHWM"], wall=wall,
              tiles=summary["modalities"]["image"]["items"], notes=summary.get("notes", []))
"""


def build_slide(folder: Path, cells: int) -> tuple[Path, int]:
    """A ``cells`` x ``cells`` slide of real tiles on a central disc; returns (path, tissue cells)."""
    import numpy as np

    sys.path.insert(0, str(REPO / "tests"))
    from slide_builder import real_tiles, write_pyramid

    tiles = real_tiles(TCGA / "tiles")
    centre, radius = (cells - 1) / 2, cells * 0.45
    r, c = np.mgrid[0:cells, 0:cells]
    disc = (r - centre) ** 2 + (c - centre) ** 2 <= radius ** 2
    index = np.where(disc, np.cumsum(disc).reshape(cells, cells) % len(tiles), -1)
    path = folder / "TCGA-38-6178-01Z-00-DX1.tif"
    write_pyramid(path, tiles, cells, cells, lambda i, j: int(index[i, j]), downsamples=(1, 4, 16, 64),
                  compression="jpeg")
    return path, int(disc.sum())


def run(quick: bool = False, tmp: Path | None = None) -> list[dict[str, Any]]:
    name = "wsi"
    for module in ("openslide", "tiffslide", "tifffile"):
        try:
            __import__(module)
        except Exception as exc:  # noqa: BLE001
            return [skip(name, "peak RSS", f"{module} missing ({exc}); pip install 'fusionkit[wsi]'")]
    if not (TCGA / "tiles").is_dir():
        return [skip(name, "peak RSS", f"real tiles not found at {TCGA / 'tiles'}")]
    cells = 24 if quick else 80
    rows = []
    with temp_dir(tmp, "wsi") as work:
        slide, tissue = build_slide(work, cells)
        side = cells * 256
        decoded = side * side * 3
        for backend in ("openslide", "tiffslide"):
            res = run_child(CHILD, {"slide": str(slide), "backend": backend, "work": str(work)})
            note = (f"{side:,} x {side:,} px slide ({slide.stat().st_size / 2**20:.0f} MiB JPEG tiles), "
                    f"{res['tiles']:,} tissue tiles of {cells * cells:,} (expected {tissue:,}), recipe wall "
                    f"{res['wall']:.1f} s; RSS before the run {res['rss_before'] / 2**20:.0f} MiB; baseline = the "
                    "decoded level 0")
            rows.append(row(name, f"peak RSS of a recipe run ({backend})", res["peak"] / 2**20, decoded / 2**20,
                            unit="MiB", target="<= 1/4 of the decoded slide", met=res["peak"] <= decoded / 4,
                            note=note))
    return rows


if __name__ == "__main__":
    main_for(run)
