"""Benchmark 2: encoder overhead.

* Text: fusionkit's ``sbert`` encoder (all-MiniLM-L6-v2, packaged offline) vs
  ``SentenceTransformer.encode`` called directly, on the same 2,000 real
  pathology-report sentences (split with fusionkit's report-text sentence
  splitter; the first 2,000 unique sentences). Model loading is excluded from
  both (each is warmed up on 16 sentences first). Then the engine's store cache:
  ``fusionkit.engine.encode_modality`` twice with the same cache folder; the
  second call must reuse the stored embeddings.
* Tiles: ``efficientnet-lite0`` (encoder ``encode`` on PNG paths) vs a direct
  forward of the same network on tiles loaded with PIL and normalised by hand
  (timm's forward when timm imports; otherwise the plugin's own torch module,
  which is then the same network called without the encoder wrapper).
* VAE: ``mutation-vae`` training time per epoch on the real TCGA mutation
  matrix (non-silent mutations from the firehose MAFs, genes mutated in >= 1 %
  of patients, one-hot patient x gene).
"""

from __future__ import annotations

import sys
import time
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent))

import numpy as np  # noqa: E402

from common import TCGA, main_for, row, skip, temp_dir  # noqa: E402

BENCH = "2 encoders"


# ----------------------------------------------------------------------------- text

def report_sentences(n: int) -> list[str]:
    import pandas as pd

    from fusionkit_plugins.readers.text import clean_ocr, split_sentences

    df = pd.read_csv(TCGA / "reports" / "pathology_reports.csv.gz")
    out: list[str] = []
    seen: set[str] = set()
    for text in df["text"].astype(str):
        for s in split_sentences(clean_ocr(text)):
            if s not in seen:
                seen.add(s)
                out.append(s)
                if len(out) >= n:
                    return out
    return out


def bench_text(n: int, tmp: Path | None, n_cache: int = 500, reps: int = 1) -> list[dict[str, Any]]:
    if not (TCGA / "reports" / "pathology_reports.csv.gz").exists():
        return [skip(BENCH, "sbert vs sentence-transformers", f"no report data under {TCGA / 'reports'}")]
    try:
        import fusionkit.plugins

        system = fusionkit.plugins.load(env={})
        enc = system.create("encoder", "sbert", {"batch_size": 64, "device": "cpu"})
        sentences = report_sentences(n)
        enc.encode(sentences[:16])
    except Exception as exc:  # noqa: BLE001
        return [skip(BENCH, "sbert vs sentence-transformers", f"{type(exc).__name__}: {exc}")]
    st = enc.module()  # the same SentenceTransformer, called directly for the baseline
    st.encode(sentences[:16], batch_size=64)
    t_direct = t_fk = float("inf")
    # alternate the two paths in ABBA order so drifting load / CPU-quota throttling hits both alike
    for i in range(reps):
        for which in (("direct", "fk") if i % 2 == 0 else ("fk", "direct")):
            t0 = time.perf_counter()
            if which == "direct":
                Xd = st.encode(sentences, batch_size=64, convert_to_numpy=True, show_progress_bar=False)
                t_direct = min(t_direct, time.perf_counter() - t0)
            else:
                Xf = enc.encode(sentences)
                t_fk = min(t_fk, time.perf_counter() - t0)
    maxdiff = float(np.abs(Xf - Xd).max())
    rows = [row(BENCH, "sbert (fusionkit) vs sentence-transformers direct", len(sentences) / t_fk,
                len(sentences) / t_direct, unit="sentences/s", target=">= 0.95",
                met=(t_direct / t_fk) >= 0.95,
                note=f"{len(sentences):,} unique real report sentences, all-MiniLM-L6-v2, batch 64, CPU, best of {reps}, ABBA order; "
                     f"max |diff| {maxdiff:.1e}")]
    # engine store cache: first encode vs a second encode with the same cache
    try:
        from fusionkit.components import ModalityData
        from fusionkit.engine import RunContext, encode_modality
        from fusionkit.recipe import validate

        with temp_dir(tmp, "enc-cache") as folder:
            raw = {"schema": 1, "name": "bench-text", "seed": 0, "width": 384,
                   "data": {"reader": {"name": "report-text",
                                       "params": {"path": str(TCGA / "reports" / "pathology_reports.csv.gz")}}},
                   "modalities": {"text": {"encoder": {"name": "sbert", "params": {"device": "cpu"}}}},
                   "tasks": {}}
            recipe = validate(raw, system)
            data = ModalityData(modality="text", kind="text", patient_ids=np.array(["TCGA-00-0000"] * len(sentences)),
                                item_ids=np.array([f"s{i}" for i in range(len(sentences))]), data=sentences,
                                fingerprint=f"bench-{len(sentences)}")
            data = ModalityData(modality="text", kind="text", patient_ids=data.patient_ids[:n_cache],
                                item_ids=data.item_ids[:n_cache], data=sentences[:n_cache],
                                fingerprint=f"bench-{n_cache}")
            times = []
            for _ in range(2):
                ctx = RunContext(recipe, system, folder / "out", folder / "cache", progress=False)
                t0 = time.perf_counter()
                store = encode_modality("text", data, recipe, ctx)
                _ = np.asarray(store.embeddings[:])  # reading the stored vectors is part of the cached run
                times.append(time.perf_counter() - t0)
        rows.append(row(BENCH, "engine encode: first vs cached run", times[0], times[1], unit="s",
                        ratio=times[0] / times[1], target=">= 50x faster", met=times[0] / times[1] >= 50,
                        note=f"fusionkit.engine.encode_modality on {n_cache} sentences, same cache folder; first includes model load "
                             f"({times[0]:.2f} s), second reads the store ({times[1] * 1e3:.1f} ms)"))
    except Exception as exc:  # noqa: BLE001
        rows.append(skip(BENCH, "engine encode: first vs cached run", f"{type(exc).__name__}: {exc}"))
    return rows


# ----------------------------------------------------------------------------- tiles

def bench_tiles(n: int) -> list[dict[str, Any]]:
    tiles = sorted((TCGA / "tiles").glob("*.png"))[:n]
    if not tiles:
        return [skip(BENCH, "efficientnet-lite0 vs direct forward", f"no tiles under {TCGA / 'tiles'}")]
    try:
        import torch

        import fusionkit.plugins
        from fusionkit_plugins.encoders.tiles import timm_status

        system = fusionkit.plugins.load(env={})
        enc = system.create("encoder", "efficientnet-lite0", {"batch_size": 32, "device": "cpu"})
        enc.encode([str(p) for p in tiles[:2]])
    except Exception as exc:  # noqa: BLE001
        return [skip(BENCH, "efficientnet-lite0 vs direct forward", f"{type(exc).__name__}: {exc}")]
    from PIL import Image

    timm_ok, why = timm_status()
    model = enc.module()
    cfg = enc.data_config_
    size = cfg.get("input_size", 224)
    size = (int(size), int(size)) if isinstance(size, (int, float)) else tuple(size)[-2:]
    mean = np.asarray(cfg.get("mean", (0.485, 0.456, 0.406)), np.float32)[:, None, None]
    std = np.asarray(cfg.get("std", (0.229, 0.224, 0.225)), np.float32)[:, None, None]
    paths = [str(p) for p in tiles]

    def direct() -> np.ndarray:
        outs = []
        with torch.inference_mode():
            for s in range(0, len(paths), 32):
                batch = []
                for p in paths[s:s + 32]:
                    im = Image.open(p).convert("RGB").resize((size[1], size[0]), Image.BICUBIC)
                    batch.append((np.asarray(im, np.float32).transpose(2, 0, 1) / 255.0 - mean) / std)
                # contiguous NCHW, as timm's ToTensor/Normalize transforms produce
                outs.append(model(torch.from_numpy(np.ascontiguousarray(np.stack(batch)))).numpy())
        return np.concatenate(outs)

    # both warmed up on the full batch shape first, then timed alternately (best of 2 each)
    direct()
    enc.encode(paths)
    t_direct = t_fk = float("inf")
    for _ in range(2):
        t0 = time.perf_counter()
        direct()
        t_direct = min(t_direct, time.perf_counter() - t0)
        t0 = time.perf_counter()
        enc.encode(paths)
        t_fk = min(t_fk, time.perf_counter() - t0)
    base = "timm model forward" if timm_ok and getattr(enc, "backend_", "") == "timm" else \
        f"plugin's native torch module forward (timm not importable: {why})"
    return [row(BENCH, "efficientnet-lite0 (fusionkit) vs direct forward", len(paths) / t_fk, len(paths) / t_direct,
                unit="tiles/s", target=">= 0.9", met=t_direct / t_fk >= 0.9,
                note=f"{len(paths)} real 256x256 H&E tiles -> {size[0]}x{size[1]}, batch 32, CPU, best of 2; baseline: PIL load "
                     f"+ hand normalisation + {base}")]


# ----------------------------------------------------------------------------- VAE

def mutation_matrix(min_frac: float = 0.01) -> tuple[np.ndarray, list[str]]:
    import pandas as pd

    frames = []
    for f in sorted((TCGA / "mutations").glob("*_firehose.maf.tsv.gz")):
        df = pd.read_csv(f, sep="\t", usecols=["Hugo_Symbol", "Variant_Classification", "Tumor_Sample_Barcode"],
                         low_memory=False)
        frames.append(df[df["Variant_Classification"].astype(str) != "Silent"])
    df = pd.concat(frames)
    df["patient"] = df["Tumor_Sample_Barcode"].astype(str).str[:12]
    pairs = df[["patient", "Hugo_Symbol"]].drop_duplicates()
    n_pat = pairs["patient"].nunique()
    counts = pairs["Hugo_Symbol"].value_counts()
    genes = sorted(counts[counts >= max(1, int(np.ceil(min_frac * n_pat)))].index)
    pairs = pairs[pairs["Hugo_Symbol"].isin(set(genes))]
    pats = sorted(df["patient"].unique())
    pi = {p: i for i, p in enumerate(pats)}
    gi = {g: i for i, g in enumerate(genes)}
    X = np.zeros((len(pats), len(genes)), dtype=np.float32)
    X[pairs["patient"].map(pi).to_numpy(), pairs["Hugo_Symbol"].map(gi).to_numpy()] = 1.0
    return X, genes


def bench_vae(epochs: int) -> list[dict[str, Any]]:
    if not list((TCGA / "mutations").glob("*_firehose.maf.tsv.gz")):
        return [skip(BENCH, "mutation-vae time per epoch", f"no MAF files under {TCGA / 'mutations'}")]
    try:
        import fusionkit.plugins

        system = fusionkit.plugins.load(env={})
        t0 = time.perf_counter()
        X, genes = mutation_matrix()
        t_matrix = time.perf_counter() - t0
        vae = system.create("encoder", "mutation-vae", {"epochs": epochs, "seed": 0, "device": "cpu"})
    except Exception as exc:  # noqa: BLE001
        return [skip(BENCH, "mutation-vae time per epoch", f"{type(exc).__name__}: {exc}")]
    t0 = time.perf_counter()
    vae.fit(X)
    t_fit = time.perf_counter() - t0
    ran = len(getattr(vae, "history_", [])) or epochs
    return [row(BENCH, "mutation-vae time per epoch", t_fit / ran, None, unit="s",
                note=f"real matrix {X.shape[0]:,} patients x {X.shape[1]:,} genes (non-silent, >= 1 % of patients; "
                     f"built in {t_matrix:.1f} s), latent 768, batch {vae.batch_size}, {ran} epochs in {t_fit:.1f} s "
                     f"(incl. validation), CPU")]


def run(quick: bool = False, tmp: Path | None = None) -> list[dict[str, Any]]:
    if not TCGA.exists():
        return [skip(BENCH, "all", f"{TCGA} is absent")]
    rows = []
    for fn, arg in ((bench_text, (300 if quick else 2000, tmp, 200, 2 if quick else 3)), (bench_tiles, (32 if quick else 96,)),
                    (bench_vae, (2 if quick else 5,))):
        try:
            rows += fn(*arg)
        except Exception as exc:  # noqa: BLE001 - one failing part skips one row
            rows.append(skip(BENCH, fn.__name__, f"{type(exc).__name__}: {exc}"))
    return rows


if __name__ == "__main__":
    main_for(run)
