"""Integration tests of the real-model embedders: the ONNX fast path agrees with sentence-transformers,
batches agree with single texts, the ONNX export is cached, exported once under concurrency, and a warm
start never imports torch.

Most tests use the default cache dir so the one-time export (~6-8 s) happens once per machine; only
the export test itself uses a fresh temporary dir.
"""

from __future__ import annotations

import os

# Before anything can import huggingface_hub: the model is local and there is no network.
os.environ.setdefault("HF_HUB_OFFLINE", "1")

import subprocess
import sys
import textwrap
import threading
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import pytest

from memory_spine.embedders import Embedder, create_embedder, export_onnx, onnx_path
from memory_spine.embedders.export import data_path

pytestmark = pytest.mark.integration

REPO = Path(__file__).resolve().parents[2]

WORDS = "memory agents retrieve notes about projects deadlines people and decisions".split()
# ~600 words, well past the 256-token limit, and past 128 (where the shipped tokenizer.json truncates).
LONG = " ".join(WORDS[i % len(WORDS)] + ("s" if i % 7 == 0 else "") for i in range(600))
TEXTS = [
    "What did we decide about the database migration last Tuesday?",
    "hello",
    "?!... ;-) -- ''",
    "Ünïcödé straße, café naïve — 日本語のテキスト, emoji 🚀🔥, Ελληνικά, русский",
    "",
    LONG,
    "The agent stores short notes.",
    " ".join(WORDS * 15),  # ~160 tokens: between the 128 trap and 256
]


def _env() -> dict[str, str]:
    return {**os.environ, "PYTHONPATH": str(REPO), "HF_HUB_OFFLINE": "1"}


def _rowwise_cos(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    return (a * b).sum(axis=1) / (np.linalg.norm(a, axis=1) * np.linalg.norm(b, axis=1))


@pytest.fixture(scope="session")
def onnx_embedder() -> Iterator[Embedder]:
    # Default cache dir: warms it for the rest of the machine's runs (and for the subprocess test).
    e = create_embedder("onnx")
    yield e
    e.close()


@pytest.fixture(scope="session")
def sbert_embedder() -> Iterator[Embedder]:
    e = create_embedder("sentence-transformers")
    yield e
    e.close()


def test_identity_and_shapes(onnx_embedder: Embedder, sbert_embedder: Embedder) -> None:
    for e in (onnx_embedder, sbert_embedder):
        assert isinstance(e, Embedder)
        assert e.model == "all-MiniLM-L6-v2"
        assert e.dim == 384
        v = e.embed(TEXTS)
        assert v.shape == (len(TEXTS), 384)
        assert v.dtype == np.float32
        np.testing.assert_allclose(np.linalg.norm(v, axis=1), 1.0, atol=1e-4)
        empty = e.embed([])
        assert empty.shape == (0, 384) and empty.dtype == np.float32
    assert onnx_embedder.name == "onnx:all-MiniLM-L6-v2"
    assert sbert_embedder.name == "sentence-transformers:all-MiniLM-L6-v2"


def test_onnx_agrees_with_sentence_transformers(onnx_embedder: Embedder, sbert_embedder: Embedder) -> None:
    cos = _rowwise_cos(onnx_embedder.embed(TEXTS), sbert_embedder.embed(TEXTS))
    assert np.all(cos >= 0.9999), dict(zip(TEXTS, cos, strict=True))


def test_long_text_is_truncated_at_256_not_128(onnx_embedder: Embedder) -> None:
    # Guards the tokenizer.json trap directly: words after token 128 must still count, words after
    # token 256 must not.
    mid = " ".join(WORDS * 15)  # ~160 tokens
    a, b = onnx_embedder.embed([mid, mid + " zebra giraffe"])
    assert _rowwise_cos(a[None], b[None])[0] < 0.9999
    c, d = onnx_embedder.embed([LONG, LONG + " zebra giraffe"])
    assert _rowwise_cos(c[None], d[None])[0] > 0.99999


@pytest.mark.parametrize("kind", ["onnx", "sbert"])
def test_batch_equals_one_by_one(kind: str, onnx_embedder: Embedder, sbert_embedder: Embedder) -> None:
    e = onnx_embedder if kind == "onnx" else sbert_embedder
    # 40 texts of mixed lengths: more than one 32-text chunk, with sorting and padding in play.
    texts = (TEXTS * 5)[:40]
    batch = e.embed(texts)
    single = np.vstack([e.embed([t]) for t in texts])
    cos = _rowwise_cos(batch, single)
    assert np.all(cos >= 0.9999), cos


def test_onnx_embed_is_thread_safe(onnx_embedder: Embedder) -> None:
    expected = onnx_embedder.embed(TEXTS)
    results: list[np.ndarray] = []
    errors: list[BaseException] = []

    def work() -> None:
        try:
            for _ in range(3):
                results.append(onnx_embedder.embed(TEXTS))
        except BaseException as exc:  # surfaced in the main thread below
            errors.append(exc)

    threads = [threading.Thread(target=work) for _ in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert not errors
    assert len(results) == 12
    for r in results:
        assert np.all(_rowwise_cos(r, expected) >= 0.9999)


def test_default_cache_is_reused(onnx_embedder: Embedder) -> None:
    path = onnx_path()
    assert path.exists()
    before = path.stat().st_mtime_ns
    again = create_embedder("onnx")
    try:
        assert again.path == path  # type: ignore[attr-defined]
        assert path.stat().st_mtime_ns == before
        np.testing.assert_allclose(again.embed(["hello"]), onnx_embedder.embed(["hello"]), atol=1e-6)
    finally:
        again.close()


def test_closed_embedder_refuses_to_embed() -> None:
    e = create_embedder("onnx")
    e.close()
    with pytest.raises(RuntimeError):
        e.embed(["x"])


def test_warm_start_does_not_import_torch(onnx_embedder: Embedder) -> None:
    cache_dir = onnx_path().parent  # warm: the fixture exported (or found) the file there
    code = textwrap.dedent(
        f"""
        import sys
        from pathlib import Path
        import memory_spine.embedders as e
        v = e.create_embedder('onnx', cache_dir=Path({str(cache_dir)!r})).embed(['x'])
        assert v.shape == (1, 384), v.shape
        heavy = [m for m in ('torch', 'transformers', 'sentence_transformers') if m in sys.modules]
        assert not heavy, heavy
        """
    )
    proc = subprocess.run(
        [sys.executable, "-c", code], env=_env(), cwd=REPO, capture_output=True, text=True, timeout=120
    )
    assert proc.returncode == 0, proc.stderr


@pytest.fixture(scope="session")
def fresh_export(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, list[subprocess.CompletedProcess]]:
    """Two processes export into one empty cache dir at the same moment."""
    cache_dir = tmp_path_factory.mktemp("onnx-cache")
    code = textwrap.dedent(
        f"""
        import logging
        from pathlib import Path
        logging.basicConfig(level=logging.INFO, format="%(name)s %(message)s")
        from memory_spine.embedders import export_onnx
        print(export_onnx(Path({str(cache_dir)!r})))
        """
    )
    procs = [
        subprocess.Popen(
            [sys.executable, "-c", code],
            env=_env(),
            cwd=REPO,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
        )
        for _ in range(2)
    ]
    done = []
    for p in procs:
        out, err = p.communicate(timeout=240)
        done.append(subprocess.CompletedProcess(p.args, p.returncode, out, err))
    return cache_dir, done


def test_concurrent_first_start_exports_once(fresh_export: tuple[Path, list]) -> None:
    cache_dir, procs = fresh_export
    for p in procs:
        assert p.returncode == 0, p.stderr
    paths = {p.stdout.strip() for p in procs}
    assert len(paths) == 1
    path = Path(paths.pop())
    assert path.parent == cache_dir and path.exists()
    assert path == onnx_path(cache_dir)
    exports = sum(p.stderr.count("exporting all-MiniLM-L6-v2") for p in procs)
    assert exports == 1, [p.stderr for p in procs]
    # The temp file was renamed into place, none is left behind.
    assert not list(cache_dir.glob("*.tmp"))
    # Readable by other users (mkstemp's default would be 0600), the weights beside the graph too.
    assert path.stat().st_mode & 0o044 == 0o044
    weights = data_path(path)
    assert weights.exists() and weights.stat().st_mode & 0o044 == 0o044
    assert weights.stat().st_size > 4 * path.stat().st_size  # the big weights live outside the graph


def test_fresh_export_is_reused_and_matches(fresh_export: tuple[Path, list], onnx_embedder: Embedder) -> None:
    cache_dir, _ = fresh_export
    path = onnx_path(cache_dir)
    before = path.stat().st_mtime_ns
    assert export_onnx(cache_dir) == path
    e = create_embedder("onnx", cache_dir=cache_dir)
    try:
        assert path.stat().st_mtime_ns == before
        cos = _rowwise_cos(e.embed(TEXTS), onnx_embedder.embed(TEXTS))
        assert np.all(cos >= 0.99999)
    finally:
        e.close()
