"""Vendored tile networks behind one builder: ``build_network(arch, backend, **arch_kwargs)``.

Registers nothing. The tile encoders of ``encoders/tiles.py`` import this
module lazily (inside methods), because it imports torch at module level.

Two architectures, each with a native torch implementation whose
``state_dict`` keys and numerics match timm's exactly (timm imports
torchvision, which has no CPU build on PyPI; see docs/INSTALL_NOTES.md):

* ``efficientnet-lite0``: timm ``tf_efficientnet_lite0`` (stem 32, seven
  stages, head 1280, ReLU6, TF "SAME" padding, no squeeze-excite), plus
  :func:`map_efficientnet_pytorch_keys`, which maps the EfficientNet-PyTorch
  checkpoint layout onto timm's names;
* ``prov-gigapath``: timm ``vit_giant_patch14_dinov2`` as Prov-GigaPath
  configures it (SwiGLU MLP, LayerScale; output = class token after norm).
"""

from __future__ import annotations

import math
from typing import Any

import torch
import torch.nn.functional as F
from torch import nn

from fusionkit import DataError

__all__ = ["NETWORKS", "TIMM_ARCHITECTURES", "LITE0_STAGES", "build_network", "map_efficientnet_pytorch_keys",
           "EfficientNetLite0", "GigaPathViT"]

#: per stage of EfficientNet-Lite0 (timm arch_def, depth multiplier 1.0):
#: (repeats, block kind, kernel, stride, expansion, output channels)
LITE0_STAGES = ((1, "ds", 3, 1, 1, 16), (2, "ir", 3, 2, 6, 24), (2, "ir", 5, 2, 6, 40), (3, "ir", 3, 2, 6, 80),
                (3, "ir", 5, 1, 6, 112), (4, "ir", 5, 2, 6, 192), (1, "ir", 3, 1, 6, 320))


# --------------------------------------------------------------------------- EfficientNet-Lite0

def _pad_same(x: torch.Tensor, k: int, s: int) -> torch.Tensor:
    ih, iw = x.shape[-2:]
    ph = max((math.ceil(ih / s) - 1) * s + k - ih, 0)
    pw = max((math.ceil(iw / s) - 1) * s + k - iw, 0)
    if ph or pw:
        x = F.pad(x, [pw // 2, pw - pw // 2, ph // 2, ph - ph // 2])
    return x


class _ConvSame(nn.Conv2d):
    """TF 'SAME' padding (timm Conv2dSame / static same padding), no bias."""

    def __init__(self, cin: int, cout: int, k: int, s: int = 1, groups: int = 1):
        super().__init__(cin, cout, k, s, padding=0, groups=groups, bias=False)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return F.conv2d(_pad_same(x, self.kernel_size[0], self.stride[0]), self.weight, None,
                        self.stride, 0, 1, self.groups)


def _bn(c: int) -> nn.BatchNorm2d:
    return nn.BatchNorm2d(c, eps=1e-3)


class _DepthwiseSeparable(nn.Module):
    """timm DepthwiseSeparableConv without squeeze-excite."""

    def __init__(self, cin: int, cout: int, k: int, s: int):
        super().__init__()
        self.conv_dw, self.bn1 = _ConvSame(cin, cin, k, s, groups=cin), _bn(cin)
        self.conv_pw, self.bn2 = _ConvSame(cin, cout, 1), _bn(cout)
        self.has_skip = s == 1 and cin == cout

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        y = F.relu6(self.bn1(self.conv_dw(x)))
        y = self.bn2(self.conv_pw(y))
        return x + y if self.has_skip else y


class _InvertedResidual(nn.Module):
    """timm InvertedResidual without squeeze-excite."""

    def __init__(self, cin: int, cout: int, k: int, s: int, e: int):
        super().__init__()
        mid = cin * e
        self.conv_pw, self.bn1 = _ConvSame(cin, mid, 1), _bn(mid)
        self.conv_dw, self.bn2 = _ConvSame(mid, mid, k, s, groups=mid), _bn(mid)
        self.conv_pwl, self.bn3 = _ConvSame(mid, cout, 1), _bn(cout)
        self.has_skip = s == 1 and cin == cout

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        y = F.relu6(self.bn1(self.conv_pw(x)))
        y = F.relu6(self.bn2(self.conv_dw(y)))
        y = self.bn3(self.conv_pwl(y))
        return x + y if self.has_skip else y


class EfficientNetLite0(nn.Module):
    """tf_efficientnet_lite0 (timm names): stem 32, 7 stages, head 1280, ReLU6, no SE; pooled output."""

    num_features = 1280

    def __init__(self) -> None:
        super().__init__()
        self.conv_stem, self.bn1 = _ConvSame(3, 32, 3, 2), _bn(32)
        stages, cin = [], 32
        for repeats, kind, k, s, e, cout in LITE0_STAGES:
            blocks: list[nn.Module] = []
            for r in range(repeats):
                stride = s if r == 0 else 1
                blocks.append(_DepthwiseSeparable(cin, cout, k, stride) if kind == "ds"
                              else _InvertedResidual(cin, cout, k, stride, e))
                cin = cout
            stages.append(nn.Sequential(*blocks))
        self.blocks = nn.Sequential(*stages)
        self.conv_head, self.bn2 = _ConvSame(cin, 1280, 1), _bn(1280)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = F.relu6(self.bn1(self.conv_stem(x)))
        x = self.blocks(x)
        x = F.relu6(self.bn2(self.conv_head(x)))
        return x.mean(dim=(2, 3))


def map_efficientnet_pytorch_keys(sd: dict[str, Any], drop_classifier: bool = True) -> dict[str, Any]:
    """Map EfficientNet-PyTorch (lukemelas) keys of EfficientNet-Lite0 onto timm's tf_efficientnet_lite0 names.

    Every source key is either mapped or (the ImageNet classifier ``_fc``,
    when ``drop_classifier``) dropped on purpose; anything else raises.
    """
    flat = []  # flat block index -> (stage, index in stage, kind)
    for s, (repeats, kind, *_rest) in enumerate(LITE0_STAGES):
        flat += [(s, i, kind) for i in range(repeats)]
    top = {"_conv_stem": "conv_stem", "_bn0": "bn1", "_conv_head": "conv_head", "_bn1": "bn2", "_fc": "classifier"}
    ds = {"_depthwise_conv": "conv_dw", "_bn1": "bn1", "_project_conv": "conv_pw", "_bn2": "bn2"}
    ir = {"_expand_conv": "conv_pw", "_bn0": "bn1", "_depthwise_conv": "conv_dw", "_bn1": "bn2",
          "_project_conv": "conv_pwl", "_bn2": "bn3"}
    out: dict[str, Any] = {}
    unknown = []
    for key, value in sd.items():
        parts = key.split(".")
        if parts[0] == "_blocks" and len(parts) == 4 and parts[1].isdigit() and int(parts[1]) < len(flat):
            stage, idx, kind = flat[int(parts[1])]
            name = (ds if kind == "ds" else ir).get(parts[2])
            if name is None:
                unknown.append(key)
                continue
            out[f"blocks.{stage}.{idx}.{name}.{parts[3]}"] = value
        elif parts[0] in top and len(parts) == 2:
            if parts[0] == "_fc" and drop_classifier:
                continue
            out[f"{top[parts[0]]}.{parts[1]}"] = value
        else:
            unknown.append(key)
    if unknown:
        raise DataError(f"efficientnet-lite0: {len(unknown)} checkpoint keys have no timm counterpart: "
                        f"{', '.join(unknown[:5])}", hint="the checkpoint is not EfficientNet-Lite0 "
                                                          "in EfficientNet-PyTorch layout")
    return out


# --------------------------------------------------------------------------- Prov-GigaPath ViT

class _PatchEmbed(nn.Module):
    def __init__(self, patch: int, dim: int):
        super().__init__()
        self.proj = nn.Conv2d(3, dim, patch, patch)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.proj(x).flatten(2).transpose(1, 2)


class _LayerScale(nn.Module):
    def __init__(self, dim: int, init: float):
        super().__init__()
        self.gamma = nn.Parameter(init * torch.ones(dim))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x * self.gamma


class _Attention(nn.Module):
    def __init__(self, dim: int, heads: int):
        super().__init__()
        self.heads = heads
        self.qkv = nn.Linear(dim, dim * 3)
        self.proj = nn.Linear(dim, dim)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        b, n, c = x.shape
        qkv = self.qkv(x).reshape(b, n, 3, self.heads, c // self.heads).permute(2, 0, 3, 1, 4)
        x = F.scaled_dot_product_attention(qkv[0], qkv[1], qkv[2])
        return self.proj(x.transpose(1, 2).reshape(b, n, c))


class _SwiGLUPacked(nn.Module):
    def __init__(self, dim: int, hidden: int):
        super().__init__()
        self.fc1 = nn.Linear(dim, hidden)
        self.fc2 = nn.Linear(hidden // 2, dim)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x1, x2 = self.fc1(x).chunk(2, dim=-1)
        return self.fc2(F.silu(x1) * x2)


class _Block(nn.Module):
    def __init__(self, dim: int, heads: int, hidden: int, init_values: float):
        super().__init__()
        self.norm1 = nn.LayerNorm(dim, eps=1e-6)
        self.attn = _Attention(dim, heads)
        self.ls1 = _LayerScale(dim, init_values)
        self.norm2 = nn.LayerNorm(dim, eps=1e-6)
        self.mlp = _SwiGLUPacked(dim, hidden)
        self.ls2 = _LayerScale(dim, init_values)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = x + self.ls1(self.attn(self.norm1(x)))
        return x + self.ls2(self.mlp(self.norm2(x)))


class GigaPathViT(nn.Module):
    """timm vit_giant_patch14_dinov2 as Prov-GigaPath configures it; output = class token after norm."""

    def __init__(self, img_size: int = 224, patch_size: int = 16, embed_dim: int = 1536, depth: int = 40,
                 num_heads: int = 24, mlp_ratio: float = 5.33334, init_values: float = 1e-5):
        super().__init__()
        self.num_features = embed_dim
        n_patches = (img_size // patch_size) ** 2
        self.cls_token = nn.Parameter(torch.zeros(1, 1, embed_dim))
        self.pos_embed = nn.Parameter(torch.randn(1, n_patches + 1, embed_dim) * 0.02)
        self.patch_embed = _PatchEmbed(patch_size, embed_dim)
        hidden = int(embed_dim * mlp_ratio)
        self.blocks = nn.Sequential(*[_Block(embed_dim, num_heads, hidden, init_values) for _ in range(depth)])
        self.norm = nn.LayerNorm(embed_dim, eps=1e-6)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.patch_embed(x)
        x = torch.cat([self.cls_token.expand(x.shape[0], -1, -1), x], dim=1) + self.pos_embed
        x = self.norm(self.blocks(x))
        return x[:, 0]


# --------------------------------------------------------------------------- the builder

#: architecture -> native class
NETWORKS: dict[str, type[nn.Module]] = {"efficientnet-lite0": EfficientNetLite0, "prov-gigapath": GigaPathViT}
#: architecture -> the timm model name with the same state-dict keys
TIMM_ARCHITECTURES = {"efficientnet-lite0": "tf_efficientnet_lite0", "prov-gigapath": "vit_giant_patch14_dinov2"}


def build_network(arch: str, backend: str = "native", **arch_kwargs: Any) -> nn.Module:
    """The untrained network ``arch`` (a key of :data:`NETWORKS`), from timm or the native code.

    ``backend`` is ``native`` or ``timm`` (the caller decides whether timm
    imports); ``arch_kwargs`` are the architecture's constructor arguments
    (none for EfficientNet-Lite0). timm models are built with
    ``num_classes=0`` (pooled features), so both backends share their keys.
    """
    if arch not in NETWORKS:
        raise DataError(f"no tile network {arch!r}", hint=f"one of: {', '.join(NETWORKS)}")
    if backend == "timm":
        import timm

        return timm.create_model(TIMM_ARCHITECTURES[arch], pretrained=False, num_classes=0, **arch_kwargs)
    if backend != "native":
        raise DataError(f"{arch}: backend must be timm or native, got {backend!r}")
    return NETWORKS[arch](**arch_kwargs)
