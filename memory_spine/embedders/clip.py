"""`Clipper`: cut a long text to the part the model reads, before it is tokenized.

The model reads the first `max_seq_length` (256) tokens of a text, but a tokenizer with truncation on still
tokenizes the whole text first (and keeps the overflow): one `/ingest/batch` of 160 texts of 100k characters
took the service from 162 to 1,485 MB. So a text longer than a window of characters (16 per token to start,
far more than any prose needs) is cut to that window, and the cut is kept only when it provably changes nothing:

- the window ends at a word boundary the tokenizer also splits on (a space or a punctuation mark), so no word
  is cut in two: the tokens before it are exactly the full text's first tokens;
- those tokens already fill the model's length.

Otherwise (a text of mostly spaces, a window ending inside a long run without a boundary) the window grows
fourfold and is tried again, up to the whole text. The embeddings are the same as without clipping; that is
tested against the full tokenization on prose, code, CJK, base64 and whitespace-padded texts.
"""

from __future__ import annotations

import string
import unicodedata
from collections.abc import Sequence
from typing import Any

#: Characters per token of the first window: prose runs ~4-5, code ~3; 16 leaves a wide margin.
CHARS_PER_TOKEN = 16
#: How far back from the window's end to look for a boundary.
_BOUNDARY_SCAN = 400
_ASCII_PUNCT = frozenset(string.punctuation)


def _is_boundary(ch: str) -> bool:
    # What the BERT pre-tokenizer splits on and its normaliser leaves in place: space, tab, newline, CR and
    # space separators (Zs); ASCII and Unicode punctuation (P*). Control characters are not boundaries (the
    # normaliser deletes them, joining the words on either side).
    if ch in " \t\n\r" or ch in _ASCII_PUNCT:
        return True
    category = unicodedata.category(ch)
    return category == "Zs" or category.startswith("P")


def _boundary(piece: str) -> int:
    """Index in `piece` after the last boundary character within the scan; the scan's start if there is none."""
    stop = max(0, len(piece) - _BOUNDARY_SCAN)
    for i in range(len(piece) - 1, stop - 1, -1):
        if _is_boundary(piece[i]):
            return i + 1
    return stop


class Clipper:
    """Cuts texts to what a tokenizer with truncation at `max_tokens` would keep, without tokenizing it all.

    `tokenizer` is a `tokenizers.Tokenizer` with truncation at `max_tokens` (special tokens included), the
    same as the model's.
    """

    def __init__(self, tokenizer: Any, max_tokens: int, chars_per_token: int = CHARS_PER_TOKEN) -> None:
        self.tokenizer = tokenizer
        self.max_tokens = max_tokens
        self.window = max_tokens * chars_per_token

    def clip(self, text: str) -> str:
        """`text`, or a prefix of it that tokenizes to the same first `max_tokens` tokens."""
        window = self.window
        while len(text) > window:
            piece = text[:window]
            cut = _boundary(piece)
            enc = self.tokenizer.encode(piece)
            # Full (truncation reached) and the last real token (before [SEP]) ends before the boundary.
            content = [
                end for (_, end), special in zip(enc.offsets, enc.special_tokens_mask, strict=True) if not special
            ]
            if len(enc.ids) >= self.max_tokens and content and content[-1] <= cut:
                return piece[:cut]
            window *= 4
        return text

    def __call__(self, texts: Sequence[str]) -> list[str]:
        return [self.clip(t) if len(t) > self.window else t for t in texts]
