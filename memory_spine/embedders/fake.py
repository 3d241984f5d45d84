"""FakeEmbedder: a deterministic, model-free embedder for tests and for running without the model.

Each lowercase word maps (through blake2b, which unlike ``hash()`` is stable across processes and
PYTHONHASHSEED) to a fixed pseudo-random Gaussian vector; a text's vector is the normalised sum of its
words' vectors. In high dimension random Gaussian vectors are nearly orthogonal, so cosine similarity
roughly measures word overlap: texts sharing words are similar, unrelated texts are near 0.
"""

from __future__ import annotations

import hashlib
import re
from collections.abc import Sequence

import numpy as np

from ..cache import LRU
from .base import check_texts, empty

_WORD = re.compile(r"\w+")
# Prefix keeps the empty-text vector from colliding with any word's vector (words are never empty).
_EMPTY_KEY = "\x00<empty>"


# Word -> vector, shared by every FakeEmbedder in the process. Bounded by bytes too: at 384 dimensions a vector
# is 3 KB, and a word may be 100k characters long.
_WORDS = LRU(65536, 64 * 1024 * 1024)


def _word_vector(word: str, dim: int) -> np.ndarray:
    vec = _WORDS.get((word, dim))
    if vec is not None:
        return vec
    seed = int.from_bytes(hashlib.blake2b(word.encode("utf-8"), digest_size=8).digest(), "little")
    vec = np.random.default_rng(seed).standard_normal(dim)
    vec /= np.linalg.norm(vec)
    # Shared via the cache, so make accidental in-place edits impossible.
    vec.flags.writeable = False
    _WORDS.put((word, dim), vec)
    return vec


class FakeEmbedder:
    """Deterministic bag-of-words embedder; needs no model and embeds thousands of texts per second."""

    def __init__(self, dim: int = 384) -> None:
        if dim < 1:
            raise ValueError(f"dim must be positive, got {dim}")
        self.dim = dim
        self.name = "fake"
        self.model = f"fake-{dim}"

    def embed(self, texts: Sequence[str]) -> np.ndarray:
        items = check_texts(texts)
        if not items:
            return empty(self.dim)
        out = np.empty((len(items), self.dim), dtype=np.float32)
        for i, text in enumerate(items):
            words = _WORD.findall(text.lower())
            if not words:
                out[i] = _word_vector(_EMPTY_KEY, self.dim)
                continue
            acc = np.zeros(self.dim, dtype=np.float64)
            for w in words:
                acc += _word_vector(w, self.dim)
            norm = np.linalg.norm(acc)
            # A sum of random unit vectors is essentially never zero, but guard the division anyway.
            out[i] = acc / norm if norm > 0 else _word_vector(_EMPTY_KEY, self.dim)
        return out

    def close(self) -> None:
        # Nothing to release; present to satisfy the Embedder protocol.
        pass

    def __repr__(self) -> str:
        return f"FakeEmbedder(dim={self.dim})"
