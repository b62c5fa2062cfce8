"""Small builders shared by tests (not fixtures: plain functions)."""

from __future__ import annotations

from pathlib import Path

import numpy as np

CANCERS = ("BRCA", "LUAD", "THCA")


def write_embeddings(folder: Path, modalities: dict[str, tuple[int, float]], *, n_patients: int = 60,
                     dim: int = 16, seed: int = 0) -> dict[str, Path]:
    """Write .npy + ids CSV per modality: {name: (items, mean offset)}; returns {name: npy path}."""
    import pandas as pd

    rng = np.random.default_rng(seed)
    folder.mkdir(parents=True, exist_ok=True)
    out = {}
    for mi, (name, (n_items, offset)) in enumerate(modalities.items()):
        pids = [f"TCGA-AA-{i % n_patients:04d}" for i in range(n_items)]
        cancer = [CANCERS[int(p[-4:]) % len(CANCERS)] for p in pids]
        centre = np.zeros(dim, dtype=np.float32)
        centre[mi % dim] = 3.0
        X = rng.normal(offset, 1.0, (n_items, dim)).astype(np.float32) + centre
        for ci, c in enumerate(CANCERS):  # a little cancer signal
            X[np.array(cancer) == c, (ci + 5) % dim] += 2.0
        np.save(folder / f"{name}.npy", X)
        pd.DataFrame({"patient_id": pids, "cancer_type": cancer}).to_csv(folder / f"{name}_ids.csv", index=False)
        out[name] = folder / f"{name}.npy"
    return out


def imported_recipe(folder: Path, modalities: dict[str, tuple[int, float]] | None = None, *, extra: str = "",
                    name: str = "imported", dim: int = 16) -> Path:
    modalities = modalities or {"rna": (60, 0.5), "mutation": (55, -0.5), "text": (240, 0.0)}
    write_embeddings(folder, modalities, dim=dim)
    inputs = ", ".join(f"{m}: {{path: {m}.npy, ids: {m}_ids.csv}}" for m in modalities)
    mods = "\n".join(f"  {m}: {{encoder: identity}}" for m in modalities)
    text = f"""schema: 1
name: {name}
seed: 11
width: {dim}
data:
  reader: {{name: precomputed, params: {{inputs: {{{inputs}}}}}}}
modalities:
{mods}
sampling:
  simple: {{name: modality-level, params: {{k: "3..5", n: 40}}}}
  patients: {{name: patient-level, params: {{k: 3, repeats: 2}}}}
aggregator: sum
{extra}
"""
    path = folder / "recipe.yaml"
    path.write_text(text)
    return path
