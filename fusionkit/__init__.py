"""fusionkit: multimodal cancer embeddings from one YAML recipe.

Importing fusionkit is light: no torch, timm, sentence-transformers, faiss
or scikit-learn is imported until a component needs it.
"""

from __future__ import annotations

__version__ = "0.1.0"

from .hookspecs import hookimpl  # noqa: E402

__all__ = ["__version__", "hookimpl"]
