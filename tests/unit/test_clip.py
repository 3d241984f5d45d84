"""embedders.clip: a long text is cut before tokenizing, and the tokens the model reads stay exactly the same."""

from __future__ import annotations

import base64
import functools
import random

import pytest
from tokenizers import Tokenizer

from memory_spine.embedders.clip import Clipper
from memory_spine.embedders.weights import model_dir

MAX_TOKENS = 256


@pytest.fixture(scope="module")
def tok() -> Tokenizer:
    t = Tokenizer.from_file(str(model_dir() / "tokenizer.json"))
    t.enable_truncation(max_length=MAX_TOKENS)
    t.no_padding()
    return t


@functools.cache
def _texts() -> dict[str, str]:
    rng = random.Random(15)
    words = "the of memory agent checkpoint idempotent résumé naïve internationalization 東京 data".split()
    prose = "".join(rng.choice(words) + rng.choice([" ", ", ", ". ", "\n"]) for _ in range(20_000))[:100_000]
    alphabet = [" ", "\n", ".", "a", "é", "\u0301", "東", "\x1c", "\u00a0", "\u3000", "x" * 150, "-", "😀"]
    out = {
        "prose": prose,
        "cjk": "".join(chr(rng.randint(0x4E00, 0x9FFF)) for _ in range(50_000)),
        "base64": base64.b64encode(rng.randbytes(60_000)).decode(),
        "hex": rng.randbytes(30_000).hex(),
        "spaces": "a" + " " * 30_000 + prose[:30_000],
        "controls": "\x1c".join(prose.split(" ")),  # deleted by the normaliser, joining words: not a boundary
        "marks": "\u0301" * 5000 + "abc " + prose,
    }
    for k in range(6):
        out[f"mix{k}"] = "".join(rng.choice(alphabet) for _ in range(20_000))
    return out


@pytest.mark.parametrize("name", list(_texts()))
def test_clipped_text_tokenizes_like_the_whole(tok, name):
    text = _texts()[name]
    clipped = Clipper(tok, MAX_TOKENS).clip(text)
    assert text.startswith(clipped)
    assert tok.encode(clipped).ids == tok.encode(text).ids


def test_prose_is_cut_to_a_few_thousand_characters(tok):
    clipper = Clipper(tok, MAX_TOKENS)
    assert len(clipper.clip(_texts()["prose"])) <= clipper.window
    short = "a short text"
    assert clipper([short]) == [short]


def test_onnx_embeddings_of_long_texts_are_the_same_as_without_clipping():
    import numpy as np

    from memory_spine.embedders.onnx import OnnxEmbedder

    texts = [t[:40_000] for name, t in _texts().items() if name in ("prose", "spaces", "controls", "mix0")]
    emb = OnnxEmbedder()
    try:
        clipped = emb.embed(texts)
        emb._clip = list  # as before: the whole text to the tokenizer
        whole = emb.embed(texts)
    finally:
        emb.close()
    assert np.array_equal(clipped, whole)
