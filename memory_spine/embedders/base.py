"""The Embedder protocol every embedding backend implements, and the facts about the bundled model.

Kept free of heavy imports (no torch, transformers, onnxruntime) so that anything can import it cheaply.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Protocol, runtime_checkable

import numpy as np

#: Name of the bundled sentence-transformers model. Embedders that report this same ``model`` produce
#: interchangeable vectors, so an index built with one can be queried with another.
MODEL_NAME = "all-MiniLM-L6-v2"
#: Output dimension of all-MiniLM-L6-v2.
MODEL_DIM = 384


@runtime_checkable
class Embedder(Protocol):
    """Turns texts into L2-normalised float32 vectors."""

    name: str
    """Backend and model, e.g. ``"onnx:all-MiniLM-L6-v2"``; for logs and metrics."""
    model: str
    """Which vector space the output lives in; equal ``model`` means interchangeable vectors."""
    dim: int

    def embed(self, texts: Sequence[str]) -> np.ndarray:
        """Return float32 ``(len(texts), dim)``, rows of unit L2 norm; ``[]`` gives shape ``(0, dim)``."""
        ...

    def close(self) -> None:
        """Release the model; the embedder must not be used afterwards."""
        ...


def check_texts(texts: Sequence[str]) -> list[str]:
    """Validate the ``embed`` argument and return it as a list.

    A bare ``str`` is a Sequence[str] too, and embedding it would silently embed each character;
    reject it loudly instead.
    """
    if isinstance(texts, str | bytes):
        raise TypeError("embed() takes a sequence of texts, not a single string; wrap it in a list")
    out = list(texts)
    for i, t in enumerate(out):
        if not isinstance(t, str):
            raise TypeError(f"embed() texts[{i}] is {type(t).__name__}, expected str")
    return out


def empty(dim: int) -> np.ndarray:
    """The result of embedding no texts."""
    return np.zeros((0, dim), dtype=np.float32)
