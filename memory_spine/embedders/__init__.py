"""Embedding backends for memory-spine and the factory that picks one.

- ``onnx`` (default): all-MiniLM-L6-v2 on onnxruntime, from a graph shipped with the package and the
  weights read in place; never needs torch.
- ``sentence-transformers``: the same model on torch; the reference (the ``reference`` extra).
- ``fake``: deterministic bag-of-words vectors without any model, for tests.

Importing this package must not import torch, transformers or sentence_transformers (a start with a
warm cache stays light); the backends are imported on demand in :func:`create_embedder`.
"""

from __future__ import annotations

from pathlib import Path

from .base import MODEL_DIM, MODEL_NAME, Embedder
from .fake import FakeEmbedder
from .weights import ModelUnavailable, default_cache_dir, fetch_model, model_dir

#: Accepted values of ``kind`` in :func:`create_embedder`.
EMBEDDER_KINDS = ("onnx", "sentence-transformers", "fake")

__all__ = [
    "EMBEDDER_KINDS",
    "MODEL_DIM",
    "MODEL_NAME",
    "Embedder",
    "FakeEmbedder",
    "create_embedder",
    "ModelUnavailable",
    "default_cache_dir",
    "fetch_model",
    "model_dir",
]


def create_embedder(kind: str, *, cache_dir: Path | None = None, threads: int | None = None) -> Embedder:
    """Build the embedder named by ``kind`` (one of :data:`EMBEDDER_KINDS`).

    ``cache_dir`` is where fetched weights are cached (default :func:`default_cache_dir`); ``threads``
    caps the threads used for one embed call (default: up to 2).
    """
    if kind == "onnx":
        # Imported here so that `import memory_spine.embedders` does not load onnxruntime either.
        from .onnx import OnnxEmbedder

        return OnnxEmbedder(cache_dir=cache_dir, threads=threads)
    if kind == "sentence-transformers":
        from .sbert import SentenceTransformerEmbedder

        return SentenceTransformerEmbedder(cache_dir=cache_dir, threads=threads)
    if kind == "fake":
        return FakeEmbedder()
    raise ValueError(f"unknown embedder kind {kind!r}; expected one of {', '.join(EMBEDDER_KINDS)}")
