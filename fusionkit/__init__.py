"""fusionkit: multimodal cancer embeddings from one YAML recipe.

``fusionkit.__all__`` is the plugin API: everything a plugin (built-in or
third-party) imports comes from here, and nothing else in the package is
promised to stay put. See docs/PLUGINS.md.

Importing fusionkit is light: the names below are resolved on first use, and
no torch, timm, sentence-transformers, faiss or scikit-learn is imported until
a component needs it.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

__version__ = "0.2.0"

from .hookspecs import hookimpl  # noqa: E402

#: public name -> module that defines it (resolved lazily, on first access)
_EXPORTS: dict[str, str] = {
    # component contracts
    "Component": "components", "Reader": "components", "Encoder": "components", "Adapter": "components",
    "Sampler": "components", "Perturbation": "components", "Aggregator": "components", "Index": "components",
    "Task": "components",
    # data containers
    "ModalityData": "components", "RawDataset": "components", "DrawPlan": "components", "Aggregates": "components",
    "EmbeddingPool": "pool", "EmbeddingStore": "store", "aggregate": "pool",
    # the run as a plugin sees it
    "RunContext": "context", "Unit": "executors", "safe_name": "context",
    # errors
    "FusionkitError": "errors", "RecipeError": "errors", "PluginError": "errors", "ComponentError": "errors",
    "DataError": "errors", "StoreError": "errors", "WeightsUnavailableError": "errors",
    # conformance check for plugin authors
    "check_component": "testing",
    # helpers plugins share: hashing, atomic files, metrics with CIs, a dense classifier trainer
    "stable_hash": "store", "atomic_write_bytes": "store", "atomic_write_text": "store",
    "atomic_write_json": "store", "atomic_save_npy": "store",
    "metrics": "", "training": "",
    # safety: one id normalisation for every reader, declared parameter constraints, path checks, fingerprints
    "normalise_id": "ids", "normalise_ids": "ids", "IdReport": "ids", "check_lengths": "ids",
    "patient_labels": "ids", "Range": "constraints", "OneOf": "constraints", "Check": "constraints",
    "safe_component": "safety", "ensure_inside": "safety", "file_fingerprint": "fingerprint",
    # run folders: commands that read a run refuse one that did not finish
    "require_complete": "runstate", "find_run_folder": "runstate",
}

__all__ = ["__version__", "hookimpl", *_EXPORTS]


def __getattr__(name: str) -> Any:
    module = _EXPORTS.get(name)
    if module is None:
        raise AttributeError(f"module 'fusionkit' has no attribute {name!r}")
    import importlib

    if module == "":  # a public submodule (fusionkit.metrics, fusionkit.training)
        value = importlib.import_module(f".{name}", __name__)
    else:
        value = getattr(importlib.import_module(f".{module}", __name__), name)
    globals()[name] = value
    return value


def __dir__() -> list[str]:
    return sorted(set(globals()) | set(__all__))


if TYPE_CHECKING:  # pragma: no cover - for type checkers and IDEs only
    from . import metrics, training
    from .components import (Adapter, Aggregates, Aggregator, Component, DrawPlan, Encoder, Index, ModalityData,
                             Perturbation, RawDataset, Reader, Sampler, Task)
    from .context import RunContext, safe_name
    from .errors import (ComponentError, DataError, FusionkitError, PluginError, RecipeError, StoreError,
                         WeightsUnavailableError)
    from .executors import Unit
    from .pool import EmbeddingPool, aggregate
    from .store import (EmbeddingStore, atomic_save_npy, atomic_write_bytes, atomic_write_json, atomic_write_text,
                        stable_hash)
    from .testing import check_component
    from .constraints import Check, OneOf, Range
    from .fingerprint import file_fingerprint
    from .ids import IdReport, check_lengths, normalise_id, normalise_ids, patient_labels
    from .safety import ensure_inside, safe_component
    from .runstate import find_run_folder, require_complete
