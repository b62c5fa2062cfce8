"""Shared fixtures. Real-data tests read ../shared/data/tcga and skip when it is absent."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")

REPO = Path(__file__).resolve().parents[1]
SHARED_DATA = Path(os.environ.get("FUSIONKIT_SHARED_DATA", REPO.parent / "shared" / "data" / "tcga"))


@pytest.fixture
def shared_data() -> Path:
    """Root of the real TCGA-derived data (../shared/data/tcga); skips when absent."""
    if not SHARED_DATA.is_dir():
        pytest.skip(f"real data not found at {SHARED_DATA} (set FUSIONKIT_SHARED_DATA or place ../shared beside the repo)")
    return SHARED_DATA


@pytest.fixture
def plugin_system():
    """A fresh plugin system per test (never a global one)."""
    from fusionkit import plugins

    return plugins.load(env={})


@pytest.fixture
def torch_one_thread():
    """Run a test with one torch thread (2 shared cores: more threads are slower here)."""
    torch = pytest.importorskip("torch")
    old = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(old)
