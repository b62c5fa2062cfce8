"""Demo-cohort reader; registers ``synthetic-tcga``: raw inputs for all four modalities, generated
deterministically from ``seed`` (no file needed; < 10 s for the default size).

Patients and labels
    ``n_patients`` patients with barcodes ``TCGA-SY-XXXX`` spread over BRCA, BLCA, COAD, STAD,
    THCA, LUAD in the proportions of ../shared/data/tcga/patients.csv; each gets a molecular
    subtype of its cancer (``BRCA.LumA``, ``COAD.MSI``, ... 3-4 per cancer) and a TMB.
    Labels: ``cancer_type``, ``subtype``, ``tmb``, ``tmb_class`` (SPEC 2.3: mutated genes / 30,
    ``high`` if >= 0.5, ``none`` without mutation).

Planted structure (what a good pipeline should recover)
    * ``rna`` (matrix, log-expression-like): ``baseline + cancer programme + subtype programme
      + latent factors + noise``. Each cancer up-regulates its marker genes (ESR1/GATA3 for BRCA,
      UPK1B/UPK3A for BLCA, CDX2/VIL1 for COAD, CLDN18/MUC5AC for STAD, TG/TPO/PAX8 for THCA,
      NKX2-1/SFTPC/NAPSA for LUAD) and a random 4% of the other genes (``program_strength``);
      each subtype shifts another 2% (``subtype_strength``); ``n_latent`` patient-level factors
      shared across cancers (e.g. immune/proliferation axes) add correlated variation that is
      *not* label-related; unit Gaussian noise on top.
    * ``mutation`` (one-hot matrix): driver genes mutated with published-like per-cancer TCGA
      frequencies (TP53, PIK3CA, KRAS, APC, BRAF, CDH1, GATA3, FGFR3, KDM6A, STK11, KEAP1, EGFR,
      ...) plus a long tail of passenger genes whose rate scales with a per-patient mutation
      burden (log-normal, per-cancer median; MSI/EBV-like subtypes hypermutated; THCA very low).
    * ``text`` (sentences): report-like sentences; with probability ``text_specificity`` a
      sentence uses cancer-specific vocabulary (organ, histology, markers, some subtype hints),
      otherwise generic boilerplate shared by all cancers (specimen handling, margins, cassettes).
    * ``image`` (HxWx3 uint8 tiles): H&E-like textures: eosin-pink stroma, haematoxylin-purple
      nuclei from thresholded smoothed noise, white lumina; nuclei density, size and hue and the
      lumen fraction differ mildly per cancer.

Planted survival (issue 12; see docs/DATA.md)
    Overall survival labels ``OS`` (event 0/1) and ``OS_time`` (days), and clinical covariates
    ``age_at_diagnosis`` (years) and ``stage`` (I-IV), from a proportional-hazards model with a
    Weibull baseline (shape 1.2) per cancer (THCA lowest, BLCA/STAD highest)::

        log hazard = log base[cancer] + 0.7 * survival_strength * a + 0.45 * (stage - 2.3)
                     + 0.35 * (age - 60) / 10 + subtype effect

    ``a`` is the first RNA latent factor (a patient's "aggressiveness": in the RNA, not in the
    cancer label); stage is an ordinal cut of ``0.6 a + noise + per-cancer shift``, so age and
    stage carry part of the risk and the RNA carries more; subtype effects (e.g. BRCA.Basal +0.4,
    COAD.MSI -0.4) are visible in the RNA subtype programmes. Follow-up is uniform between 0.5
    and 10 years (administrative censoring). ``survival_strength: 0`` removes the RNA's own part.

Missing modalities
    Each modality is missing for a patient with its rate in ``missing_rates`` (default 10% each),
    independently and *the same for every cancer*, so availability does not leak the label; a
    patient keeps at least ``min_modalities`` modalities.
"""

from __future__ import annotations

from typing import Any

import numpy as np

from fusionkit import hookimpl
from fusionkit import ModalityData, RawDataset, Reader
from fusionkit import DataError

from fusionkit_plugins.readers.common import SIX_CANCERS, fingerprint
from fusionkit_plugins.readers.maf import tmb_labels

CANCERS = SIX_CANCERS
#: cohort proportions of ../shared/data/tcga/patients.csv
PROPORTIONS = np.array([831, 300, 338, 346, 371, 408], dtype=float)
SUBTYPES = {
    "BRCA": ("LumA", "LumB", "Basal", "Her2"),
    "BLCA": ("LumP", "Basal_Squamous", "LumU"),
    "COAD": ("CIN", "MSI", "GS"),
    "STAD": ("CIN", "MSI", "GS", "EBV"),
    "THCA": ("BRAF", "RAS", "Neither"),
    "LUAD": ("TRU", "PP", "PI"),
}
SUBTYPE_WEIGHTS = {
    "BRCA": (0.5, 0.2, 0.18, 0.12), "BLCA": (0.4, 0.4, 0.2), "COAD": (0.65, 0.15, 0.2),
    "STAD": (0.5, 0.2, 0.2, 0.1), "THCA": (0.6, 0.25, 0.15), "LUAD": (0.4, 0.3, 0.3),
}
HYPERMUTATED = {"COAD.MSI", "STAD.MSI"}
MARKERS = {
    "BRCA": ("ESR1", "GATA3", "KRT8", "FOXA1", "TFF1"),
    "BLCA": ("UPK1B", "UPK3A", "UPK2", "KRT20", "PPARG"),
    "COAD": ("CDX2", "VIL1", "CDH17", "LGALS4", "SATB2"),
    "STAD": ("CLDN18", "MUC5AC", "TFF2", "GKN1", "PGC"),
    "THCA": ("TG", "TPO", "PAX8", "TSHR", "FOXE1"),
    "LUAD": ("NKX2-1", "SFTPC", "NAPSA", "SFTPB", "SFTA2"),
}
#: approximate TCGA non-silent mutation frequencies: BRCA BLCA COAD STAD THCA LUAD
DRIVERS = {
    "TP53": (.30, .48, .55, .45, .01, .50), "PIK3CA": (.35, .20, .18, .15, .01, .06),
    "KRAS": (.01, .03, .42, .10, .01, .30), "APC": (.02, .03, .75, .10, .00, .06),
    "BRAF": (.01, .02, .10, .05, .60, .07), "NRAS": (.01, .02, .05, .02, .08, .01),
    "HRAS": (.00, .04, .00, .01, .04, .00), "CDH1": (.13, .02, .03, .10, .00, .02),
    "GATA3": (.12, .01, .01, .01, .00, .01), "MAP3K1": (.08, .02, .02, .02, .00, .03),
    "FGFR3": (.01, .14, .01, .01, .00, .01), "KDM6A": (.02, .26, .03, .03, .00, .02),
    "KMT2D": (.06, .28, .12, .12, .01, .10), "ARID1A": (.05, .25, .10, .25, .01, .07),
    "RB1": (.02, .17, .02, .04, .00, .04), "ELF3": (.00, .10, .03, .03, .00, .02),
    "EGFR": (.01, .02, .03, .04, .00, .14), "STK11": (.00, .01, .01, .01, .00, .17),
    "KEAP1": (.00, .01, .01, .01, .00, .17), "NF1": (.03, .05, .05, .06, .00, .11),
    "SMAD4": (.00, .01, .13, .08, .00, .03), "FBXW7": (.01, .05, .12, .06, .00, .03),
    "PTEN": (.05, .03, .05, .08, .00, .03), "CTNNB1": (.01, .02, .05, .07, .00, .03),
    "RHOA": (.00, .03, .01, .06, .00, .00), "ERBB2": (.03, .10, .05, .06, .00, .02),
    "TTN": (.20, .40, .45, .45, .02, .55), "MUC16": (.10, .25, .25, .25, .01, .40),
}
#: planted survival per cancer: yearly baseline hazard, mean age at diagnosis, stage shift
SURVIVAL = {"BRCA": (0.018, 58.0, -0.2), "BLCA": (0.12, 68.0, 0.6), "COAD": (0.05, 66.0, 0.1),
            "STAD": (0.11, 65.0, 0.3), "THCA": (0.005, 47.0, -0.6), "LUAD": (0.09, 65.0, -0.1)}
#: log hazard ratios of some subtypes (0 for the others)
SUBTYPE_HAZARD = {"BRCA.Basal": 0.4, "BRCA.Her2": 0.3, "BRCA.LumA": -0.3, "COAD.MSI": -0.4, "STAD.MSI": -0.3,
                  "STAD.EBV": -0.3, "BLCA.Basal_Squamous": 0.4}
STAGES = ("I", "II", "III", "IV")
#: median passenger burden multiplier per cancer (THCA lowest, LUAD/STAD/BLCA highest)
BURDEN = {"BRCA": 0.5, "BLCA": 1.6, "COAD": 1.2, "STAD": 1.5, "THCA": 0.08, "LUAD": 1.8}

_GENERIC = (
    "The specimen is received in formalin and labeled with the patient name.",
    "Representative sections are submitted in cassettes {a} through {b}.",
    "The surgical margins are free of tumor.",
    "The closest margin is {x} cm from the lesion.",
    "Sections show tumor cells with {grade} nuclear pleomorphism.",
    "Lymphovascular invasion is {neg}.",
    "A total of {n} lymph nodes are identified and examined.",
    "The tumor measures {x} x {y} x {z} cm.",
    "Gross description was dictated by the resident.",
    "Immunohistochemical stains were performed with appropriate controls.",
    "The cut surface is tan white and firm.",
    "Final diagnosis is rendered after review of all slides.",
    "Perineural invasion is {neg}.",
    "The specimen was received fresh and later fixed in formalin.",
)
_SPECIFIC = {
    "BRCA": ("Invasive ductal carcinoma of the {side} breast is identified.",
             "Estrogen receptor is {pos} in tumor cells.", "The nipple and overlying skin are uninvolved.",
             "Sentinel axillary lymph nodes are examined.", "Ductal carcinoma in situ is present adjacent.",
             "Nottingham histologic grade is {g3} of 3.", "HER2 immunostain score is {her2}."),
    "BLCA": ("Invasive urothelial carcinoma involves the bladder wall.",
             "The tumor invades the muscularis propria (detrusor muscle).",
             "Transurethral resection of bladder tumor fragments are received.",
             "Carcinoma in situ of the urothelium is present.", "The ureteral margins are free of carcinoma.",
             "Papillary urothelial neoplasm with high grade features."),
    "COAD": ("Adenocarcinoma of the {part} colon is identified.", "The tumor invades through the muscularis propria "
             "into pericolonic fat.", "Mismatch repair proteins MLH1 and PMS2 are {mmr}.",
             "The colonic mucosa shows a tubular adenoma.", "Tumor deposits are present in the mesentery.",
             "Right hemicolectomy specimen with attached terminal ileum."),
    "STAD": ("Adenocarcinoma of the stomach, intestinal type, is identified.",
             "The gastric wall is thickened at the antrum.", "Signet ring cells are {present} in the gastric mucosa.",
             "Helicobacter pylori organisms are not identified.", "Partial gastrectomy specimen with omentum.",
             "The tumor involves the lesser curvature of the stomach."),
    "THCA": ("Papillary thyroid carcinoma, classical variant, is identified.",
             "The thyroid lobe shows nuclear grooves and pseudoinclusions.",
             "Total thyroidectomy specimen weighing {w} grams.", "Extrathyroidal extension is {neg}.",
             "The parathyroid glands are identified and unremarkable.", "Follicular architecture is focally present."),
    "LUAD": ("Adenocarcinoma of the lung, acinar predominant, is identified.",
             "The {lobe} lobe of the lung shows a peripheral mass.", "TTF-1 and napsin A are positive in tumor cells.",
             "The visceral pleura is not involved.", "Bronchial margin is free of carcinoma.",
             "Lepidic growth pattern is present at the periphery."),
}
_SUBTYPE_TEXT = {
    "BRCA.Basal": "Tumor cells are negative for estrogen and progesterone receptors.",
    "BRCA.Her2": "HER2 is amplified by in situ hybridization.",
    "BRCA.LumA": "Tumor is strongly positive for estrogen receptor with low Ki-67.",
    "COAD.MSI": "Loss of MLH1 expression is seen, consistent with microsatellite instability.",
    "STAD.MSI": "Loss of MLH1 expression is seen, consistent with microsatellite instability.",
    "STAD.EBV": "EBER in situ hybridization is positive in tumor cells.",
    "THCA.BRAF": "Tall cell features are focally present.",
    "BLCA.Basal_Squamous": "Squamous differentiation is present in the tumor.",
}
#: per cancer: nuclei density threshold (lower = denser), nucleus blur sigma, nucleus RGB, lumen fraction
_TILE_STYLE = {
    "BRCA": (0.58, 1.6, (95, 55, 150), 0.06),
    "BLCA": (0.52, 1.9, (85, 50, 140), 0.03),
    "COAD": (0.50, 1.4, (80, 45, 135), 0.14),
    "STAD": (0.55, 1.5, (100, 60, 155), 0.10),
    "THCA": (0.66, 1.8, (110, 70, 160), 0.20),
    "LUAD": (0.56, 1.7, (90, 55, 145), 0.16),
}
MODALITIES = ("rna", "mutation", "text", "image")


def _barcodes(n: int) -> np.ndarray:
    digits = "0123456789ABCDEFGHIJKLMNOPQRSTUVWXYZ"
    out = []
    for i in range(n):
        s, v = "", i
        for _ in range(4):
            s = digits[v % 36] + s
            v //= 36
        out.append(f"TCGA-SY-{s}")
    return np.array(out)


def _smooth(field: np.ndarray, sigma: float) -> np.ndarray:
    from scipy.ndimage import gaussian_filter

    out = gaussian_filter(field, sigma=(0, sigma, sigma), mode="wrap")
    out -= out.mean(axis=(1, 2), keepdims=True)
    out /= out.std(axis=(1, 2), keepdims=True) + 1e-8
    return out


class SyntheticTcgaReader(Reader):
    """Deterministic synthetic TCGA-like cohort (rna, mutation, text, image + labels) for demos and tests.

    Parameters
    ----------
    n_patients: cohort size. n_genes: RNA genes. n_mutation_genes: genes of the mutation matrix
        (drivers + passengers; TMB counts all of them).
    min_tiles, max_tiles: tiles per patient (uniform). tile_size: tile width in pixels.
    min_sentences, max_sentences: sentences per patient (uniform).
    missing_rates: ``{modality: rate}`` of patients lacking it (default 0.1 each, same for every cancer).
    min_modalities: each patient keeps at least this many modalities.
    program_strength, subtype_strength: size of the planted cancer / subtype expression shifts.
    n_latent: patient-level latent factors (not label-related). text_specificity: probability that a
    sentence carries cancer-specific vocabulary. cancers: subset of the six. tmb_divisor, tmb_threshold: SPEC 2.3.
    survival_strength: weight of the RNA latent factor in the planted hazard (0: only cancer, stage,
    age and subtype).
    seed: everything is a function of it.
    """

    provides = MODALITIES
    yields_labels = ("cancer_type", "subtype", "tmb", "tmb_class", "OS", "OS_time", "age_at_diagnosis", "stage")

    def __init__(self, n_patients: int = 600, n_genes: int = 1000, n_mutation_genes: int = 400,
                 min_tiles: int = 2, max_tiles: int = 4, tile_size: int = 64,
                 min_sentences: int = 4, max_sentences: int = 10, missing_rates: dict | None = None,
                 min_modalities: int = 1, program_strength: float = 1.5, subtype_strength: float = 1.0,
                 n_latent: int = 8, text_specificity: float = 0.5, cancers: list | None = None,
                 tmb_divisor: float = 30.0, tmb_threshold: float = 0.5, survival_strength: float = 1.0,
                 seed: int = 0):
        self.n_patients = n_patients
        self.n_genes = n_genes
        self.n_mutation_genes = n_mutation_genes
        self.min_tiles = min_tiles
        self.max_tiles = max_tiles
        self.tile_size = tile_size
        self.min_sentences = min_sentences
        self.max_sentences = max_sentences
        self.missing_rates = missing_rates
        self.min_modalities = min_modalities
        self.program_strength = program_strength
        self.subtype_strength = subtype_strength
        self.n_latent = n_latent
        self.text_specificity = text_specificity
        self.cancers = cancers
        self.tmb_divisor = tmb_divisor
        self.tmb_threshold = tmb_threshold
        self.survival_strength = survival_strength
        self.seed = seed

    def fingerprint_inputs(self) -> list[str]:
        return []

    # ------------------------------------------------------------------ pieces
    def _rng(self, part: str) -> np.random.Generator:
        import zlib

        return np.random.default_rng([int(self.seed), zlib.crc32(part.encode())])

    def _cohort(self) -> tuple[np.ndarray, np.ndarray, np.ndarray, list[str]]:
        cancers = list(self.cancers) if self.cancers else list(CANCERS)
        unknown = [c for c in cancers if c not in CANCERS]
        if unknown:
            raise DataError(f"unknown cancers {unknown}", where="cancers", hint=f"choose among {CANCERS}")
        if self.n_patients < len(cancers):
            raise DataError(f"n_patients must be >= {len(cancers)}", where="n_patients")
        rng = self._rng("cohort")
        p = PROPORTIONS[[CANCERS.index(c) for c in cancers]]
        cancer = rng.choice(np.array(cancers), size=self.n_patients, p=p / p.sum())
        cancer[: len(cancers)] = cancers  # every cancer present
        subtype = np.empty(self.n_patients, dtype=object)
        for c in cancers:
            idx = np.flatnonzero(cancer == c)
            w = np.array(SUBTYPE_WEIGHTS[c])
            subtype[idx] = [f"{c}.{s}" for s in rng.choice(SUBTYPES[c], size=len(idx), p=w / w.sum())]
        return _barcodes(self.n_patients), cancer.astype(str), subtype.astype(str), cancers

    def _availability(self, n: int) -> dict[str, np.ndarray]:
        rates = {m: 0.1 for m in MODALITIES}
        for key, value in (self.missing_rates or {}).items():
            if key not in rates:
                raise DataError(f"missing_rates names an unknown modality {key!r}", where="missing_rates",
                                hint=f"modalities: {MODALITIES}")
            rates[key] = float(value)
        rng = self._rng("missing")
        avail = np.stack([rng.random(n) >= rates[m] for m in MODALITIES], axis=1)
        need = min(int(self.min_modalities), len(MODALITIES))
        short = avail.sum(axis=1) < need
        for i in np.flatnonzero(short):  # restore random modalities (rare), independent of the cancer
            missing = np.flatnonzero(~avail[i])
            add = rng.choice(missing, size=need - avail[i].sum(), replace=False)
            avail[i, add] = True
        return {m: avail[:, j] for j, m in enumerate(MODALITIES)}

    def _rna(self, cancer: np.ndarray, subtype: np.ndarray, cancers: list[str]
             ) -> tuple[np.ndarray, list[str], np.ndarray]:
        """(expression, genes, latent factors Z (n, n_latent))."""
        rng = self._rng("rna")
        markers = [g for c in CANCERS for g in MARKERS[c]]
        G = max(int(self.n_genes), len(markers) + 10)
        genes = markers + [f"SYN{i:05d}" for i in range(G - len(markers))]
        n = len(cancer)
        base = rng.normal(6.0, 2.0, size=G).astype(np.float32)
        X = np.tile(base, (n, 1))
        for c in cancers:
            prog = np.zeros(G, dtype=np.float32)
            prog[[genes.index(g) for g in MARKERS[c]]] = 3.0
            others = rng.choice(np.arange(len(markers), G), size=max(1, int(0.04 * G)), replace=False)
            prog[others] = rng.normal(0, 1.0, size=len(others)) + np.sign(rng.normal(size=len(others)))
            X[cancer == c] += self.program_strength * prog
        for s in np.unique(subtype):
            prog = np.zeros(G, dtype=np.float32)
            idx = rng.choice(G, size=max(1, int(0.02 * G)), replace=False)
            prog[idx] = rng.normal(0, 1.0, size=len(idx)) + np.sign(rng.normal(size=len(idx)))
            X[subtype == s] += self.subtype_strength * prog
        k = int(self.n_latent)
        Z = np.zeros((n, 0), dtype=np.float32)
        if k > 0:
            Z = rng.normal(size=(n, k)).astype(np.float32)
            W = rng.normal(size=(k, G)).astype(np.float32) * (rng.random((k, G)) < 0.2)
            X += Z @ W
        X += rng.normal(size=X.shape).astype(np.float32)
        return X.astype(np.float32), genes, Z

    def _survival(self, cancer: np.ndarray, subtype: np.ndarray, Z: np.ndarray) -> dict[str, dict[str, Any]]:
        """Planted overall survival and covariates (see the module docstring): per-patient arrays."""
        rng = self._rng("survival")
        n = len(cancer)
        a = Z[:, 0].astype(np.float64) if Z.shape[1] else rng.normal(size=n)
        base, age_mean, shift = (np.array([SURVIVAL[c][j] for c in cancer]) for j in range(3))
        age = np.clip(np.round(rng.normal(age_mean, 11.0)), 20, 90)
        stage = np.digitize(0.6 * a + rng.normal(size=n) + shift, [-0.6, 0.4, 1.3])  # 0..3 = I..IV
        lp = (np.log(base) + 0.7 * float(self.survival_strength) * a + 0.45 * (stage - 1.3)
              + 0.35 * (age - 60.0) / 10.0 + np.array([SUBTYPE_HAZARD.get(s, 0.0) for s in subtype]))
        years = (rng.exponential(size=n) / np.exp(lp)) ** (1 / 1.2)
        follow = rng.uniform(0.5, 10.0, size=n)
        days = np.maximum(1.0, np.round(np.minimum(years, follow) * 365.25))
        return {"event": (years <= follow).astype(int), "time": days, "age": age,
                "stage": np.array(STAGES)[stage]}

    def _mutations(self, cancer: np.ndarray, subtype: np.ndarray) -> tuple[np.ndarray, list[str], np.ndarray]:
        rng = self._rng("mutation")
        n = len(cancer)
        drivers = list(DRIVERS)
        G = max(int(self.n_mutation_genes), len(drivers) + 10)
        genes = drivers + [f"PASS{i:04d}" for i in range(G - len(drivers))]
        ci = np.array([CANCERS.index(c) for c in cancer])
        freq = np.array([DRIVERS[g] for g in drivers], dtype=float).T  # (6, n_drivers)
        rel = rng.lognormal(0.0, 0.8, size=n) * np.where(np.isin(subtype, list(HYPERMUTATED)), 6.0, 1.0)
        burden = np.array([BURDEN[c] for c in cancer]) * rel
        # drivers keep their published frequency on average; hypermutated tumours a little more
        p_drv = np.clip(freq[ci] * np.clip(0.8 + 0.2 * rel[:, None], 0.6, 1.6) / 1.07, 0, 0.95)
        weight = rng.lognormal(-4.6, 0.9, size=G - len(drivers))  # passenger gene rates (long tail)
        p_pass = np.clip(burden[:, None] * weight[None, :], 0, 0.9)
        P = np.hstack([p_drv, p_pass])
        M = (rng.random(P.shape) < P).astype(np.float32)
        return M, genes, burden

    def _text(self, pid: np.ndarray, cancer: np.ndarray, subtype: np.ndarray) -> tuple[list[str], np.ndarray]:
        rng = self._rng("text")
        n = len(pid)
        counts = rng.integers(self.min_sentences, self.max_sentences + 1, size=n)
        owner = np.repeat(np.arange(n), counts)
        total = len(owner)
        specific = rng.random(total) < float(self.text_specificity)
        pick = rng.random(total)
        nums = rng.integers(1, 30, size=(total, 4))
        fills = {
            "side": ("left", "right"), "pos": ("positive", "negative"), "her2": ("0", "1+", "2+", "3+"),
            "part": ("sigmoid", "ascending", "transverse"), "mmr": ("retained", "intact"),
            "present": ("present", "absent"), "lobe": ("upper", "lower", "middle"),
            "grade": ("mild", "moderate", "marked"), "neg": ("not identified", "absent", "present"),
        }
        texts: list[str] = []
        for j in range(total):
            i = owner[j]
            c = cancer[i]
            if specific[j]:
                st = _SUBTYPE_TEXT.get(subtype[i])
                pool = _SPECIFIC[c]
                tpl = st if st is not None and pick[j] < 0.15 else pool[int(pick[j] * len(pool)) % len(pool)]
            else:
                tpl = _GENERIC[int(pick[j] * len(_GENERIC)) % len(_GENERIC)]
            a, b, x, y = nums[j]
            values = {k: v[(a + b) % len(v)] for k, v in fills.items()}
            texts.append(tpl.format(a=f"A{a % 5 + 1}", b=f"A{a % 5 + 2 + b % 6}", x=f"{x / 10:.1f}",
                                    y=f"{y / 10:.1f}", z=f"{(a + b) / 10:.1f}", n=a, g3=b % 3 + 1,
                                    w=10 * x + y, **values))
        return texts, owner

    def _tiles(self, cancer: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        rng = self._rng("image")
        n = len(cancer)
        counts = rng.integers(self.min_tiles, self.max_tiles + 1, size=n)
        owner = np.repeat(np.arange(n), counts)
        T, S = len(owner), int(self.tile_size)
        tiles = np.empty((T, S, S, 3), dtype=np.uint8)
        tc = cancer[owner]
        for c in np.unique(tc):
            idx = np.flatnonzero(tc == c)
            thr, sigma, nuc, lumen = _TILE_STYLE[c]
            k = len(idx)
            f32 = np.float32

            def noise(*shape):
                return rng.standard_normal(size=shape, dtype=f32)

            nuclei = _smooth(noise(k, S, S), sigma)
            mask = np.clip((nuclei - f32(thr * 2.2)) * f32(2.5) + f32(0.5), 0, 1)[..., None]  # soft nuclei
            lum = _smooth(noise(k, S // 4, S // 4), S / 40)  # coarse field, upsampled: round lumina
            lum = lum.repeat(4, axis=1).repeat(4, axis=2)
            cut = np.quantile(lum.reshape(k, -1), 1 - lumen, axis=1).astype(f32)[:, None, None]
            lumen_mask = (lum > cut).astype(f32)[..., None]
            fibres = _smooth(noise(k, S, S), 0.8)[..., None]
            stroma = np.array([232, 160, 200], dtype=f32) + f32(6) * noise(k, 1, 1, 3)
            img = stroma * (1 - mask) + np.array(nuc, dtype=f32) * mask
            img += f32(10) * fibres
            img = img * (1 - lumen_mask) + np.array([245, 240, 245], dtype=f32) * lumen_mask
            img += f32(4) * noise(k, S, S, 3)
            tiles[idx] = np.clip(img, 0, 255).astype(np.uint8)
        return tiles, owner

    # ------------------------------------------------------------------ read
    def read(self, ctx: Any = None) -> RawDataset:
        if self.min_tiles < 0 or self.max_tiles < self.min_tiles or self.min_sentences < 0 or \
                self.max_sentences < self.min_sentences:
            raise DataError("min/max tiles and sentences must satisfy 0 <= min <= max", where="synthetic-tcga")
        pid, cancer, subtype, cancers = self._cohort()
        avail = self._availability(len(pid))
        fp = fingerprint([], {"reader": "synthetic-tcga", **self.get_params()})
        mods: dict[str, ModalityData] = {}
        X, genes, Z = self._rna(cancer, subtype, cancers)
        r = avail["rna"]
        mods["rna"] = ModalityData("rna", "matrix", pid[r], pid[r], X[r], genes,
                                   {"cancer_type": cancer[r], "subtype": subtype[r]},
                                   source="synthetic-tcga: planted cancer/subtype expression programmes", fingerprint=fp)
        M, mgenes, _ = self._mutations(cancer, subtype)
        n_mut = M.sum(axis=1).astype(int)
        tmb, tmb_class = tmb_labels(dict(zip(pid, n_mut.tolist())), self.tmb_divisor, self.tmb_threshold)
        m = avail["mutation"]
        mods["mutation"] = ModalityData("mutation", "matrix", pid[m], pid[m], M[m], mgenes,
                                        {"cancer_type": cancer[m],
                                         "tmb_class": np.array([tmb_class[p] for p in pid[m]])},
                                        source="synthetic-tcga: per-cancer driver frequencies + passenger tail",
                                        fingerprint=fp)
        t = np.flatnonzero(avail["text"])
        texts, owner = self._text(pid[t], cancer[t], subtype[t])
        own = t[owner]
        seq = np.arange(len(own)) - np.repeat(np.r_[0, np.flatnonzero(np.diff(own)) + 1],
                                              np.diff(np.r_[0, np.flatnonzero(np.diff(own)) + 1, len(own)]))
        mods["text"] = ModalityData("text", "text", pid[own], np.char.add(np.char.add(pid[own], ":s"),
                                                                          seq.astype(str)),
                                    texts, None, {"cancer_type": cancer[own]},
                                    source="synthetic-tcga: template report sentences", fingerprint=fp)
        im = np.flatnonzero(avail["image"])
        tiles, towner = self._tiles(cancer[im])
        own = im[towner]
        mods["image"] = ModalityData("image", "image", pid[own], np.array([f"{pid[o]}:t{j}" for j, o in enumerate(own)]),
                                     list(tiles), None, {"cancer_type": cancer[own]},
                                     source="synthetic-tcga: H&E-like textures", fingerprint=fp)
        mut_pids = set(pid[m].tolist())
        labels = {
            "cancer_type": dict(zip(pid.tolist(), cancer.tolist())),
            "subtype": dict(zip(pid.tolist(), subtype.tolist())),
            "tmb": {p: tmb[p] for p in pid if p in mut_pids},
            "tmb_class": {p: tmb_class[p] for p in pid if p in mut_pids},
        }
        sv = self._survival(cancer, subtype, Z)
        ids = pid.tolist()
        labels.update({"OS": dict(zip(ids, sv["event"].tolist())), "OS_time": dict(zip(ids, sv["time"].tolist())),
                       "age_at_diagnosis": dict(zip(ids, sv["age"].tolist())),
                       "stage": dict(zip(ids, sv["stage"].tolist()))})
        notes = [f"synthetic-tcga: {len(pid)} patients, seed {self.seed}"]
        for name, md in mods.items():
            per = {c: len(set(md.patient_ids[md.labels['cancer_type'] == c])) for c in cancers}
            notes.append(f"{name}: {len(set(md.patient_ids))} patients, {len(md)} items ("
                         + ", ".join(f"{c} {per[c]}" for c in cancers) + ")")
        notes.append(f"planted overall survival: {int(sv['event'].sum())} events among {len(pid)}, follow-up "
                     f"0.5-10 years; RNA latent factor weight {0.7 * float(self.survival_strength):g}")
        return RawDataset(modalities=mods, labels=labels, notes=notes,
                          continuous_labels={"OS_time", "age_at_diagnosis"})


@hookimpl
def register_readers(register):
    register("synthetic-tcga", SyntheticTcgaReader, modality="multi", tags=["demo", "synthetic"])
