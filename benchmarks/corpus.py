"""A deterministic corpus of real text for the benchmarks, with selectivity tags and labelled queries.

The text is what every machine with this project installed already has offline: the docstrings and the
comment blocks of the Python standard library and of the installed packages (site-packages). Each
docstring or comment block is cleaned (doctest examples, reST underlines, section headers and code-like
lines dropped), split into sentences and packed into passages of 1-4 sentences, 20-120 words and at most
126 word pieces (so that an embedder truncating at 128 tokens sees the whole passage: the vectors do not
depend on a truncation setting). Passages are deduplicated on their normalised text (lowercase,
alphanumerics only) and boilerplate (licence headers) is dropped.

Order and selection are deterministic and stable: the unique passages are ordered by a seeded hash of their
normalised text and a corpus of ``n`` passages is the first ``n`` of that order, so the 10k corpus is a prefix
of the 100k one, and installing one more package only inserts its passages here and there.

Each passage gets:

- ``tags``: ``pkg-<top-level package>`` (a natural, skewed distribution) and the nested selectivity tags
  ``sel-0.1``, ``sel-1``, ``sel-10``, ``sel-50``, held by exactly 0.1 %, 1 %, 10 % and 50 % of the passages
  (exactly when ``n`` is a multiple of 1000; within one passage otherwise);
- ``metadata``: ``source_file``, ``line``, ``kind`` (module-doc, class-doc, function-doc, comment),
  ``package`` and ``sel_bucket`` (0..999 from a seeded permutation; ``sel_bucket < 100`` is the same set as
  tag ``sel-10``, for stores that filter on metadata only, like Chroma);
- ``key``: ``dedup:<id>`` on every tenth passage, for exact-key lookups.

Labelled queries: ``sentence`` (a passage's first sentence, cut to 60 % of its words when the passage is a
single sentence, occurring in no other passage) and ``identifier`` (a distinctive CamelCase, snake_case,
CONSTANT_CASE name or error code that occurs in exactly one passage).

Harvesting parses ~20k files and takes a minute or two, so the pool of unique passages is kept as a
snapshot in ``benchmarks/.cache/`` (keyed by the builder version, the Python version and the roots) and reused
until ``--refresh-pool``: packages installed between two runs do not change the corpus, so results stay
comparable and the cached embeddings stay valid. The corpus digest in every result names the exact texts.
Embeddings are left to :mod:`benchmarks.embeddings`. ``python -m benchmarks.corpus --n 100000 [--embed]``
builds and describes a corpus.
"""

from __future__ import annotations

import argparse
import ast
import gzip
import hashlib
import inspect
import json
import os
import re
import sys
import sysconfig
import time
from collections import Counter
from collections.abc import Iterable, Iterator, Sequence
from concurrent.futures import ProcessPoolExecutor
from dataclasses import dataclass, field
from multiprocessing import get_context
from pathlib import Path
from typing import Any

import numpy as np

#: Bump when harvesting or packing changes, so that cached pools are not reused.
BUILDER_VERSION = 2
DEFAULT_CACHE_DIR = Path(__file__).resolve().parent / ".cache"

MIN_WORDS = 20
MAX_WORDS = 120
#: A soft target: a passage is closed once it has this many words (or 4 sentences).
TARGET_WORDS = 40
MAX_SENTENCES = 4
#: Word pieces without [CLS]/[SEP]; 126 + 2 = the 128 tokens all-MiniLM-L6-v2's tokenizer.json truncates at.
MAX_TOKENS = 126
MAX_FILE_BYTES = 2_000_000

#: Selectivity tag -> exclusive upper bound on ``sel_bucket`` (0..999). Nested: sel-0.1 ⊂ sel-1 ⊂ ...
SELECTIVITY_TAGS: dict[str, int] = {"sel-0.1": 1, "sel-1": 10, "sel-10": 100, "sel-50": 500}

_BOILERPLATE = re.compile(
    r"copyright|licen[cs]e|warrant|spdx|all rights reserved|permission is hereby|redistribut", re.I
)
_UNDERLINE = re.compile(r"[-=~^*+#`'\":._]{3,}")
_CONTROL = re.compile(r"[\x00-\x08\x0b\x0c\x0e-\x1f\x7f]")
_SECTION = re.compile(r"[A-Z][A-Za-z ]{0,30}:")
#: "name : type" lines of numpydoc parameter lists.
_PARAM_SPEC = re.compile(r"\*{0,2}[A-Za-z_][\w, *]*\s:\s?[^.]{0,60}")
_SENTENCE_SPLIT = re.compile(r"(?<=[.!?])\s+(?=[\"'(`]?[A-Z0-9])")
_PROSE_WORD = re.compile(r"[(\"'`]*[A-Za-z][A-Za-z'-]*[)\"'`,.;:!?]*")
_CODE_CHARS = set("{}[]=<>|\\_$@%^&*~#")
_COMMENT_LINE = re.compile(r"^[ \t]*#(?!!)[ ]?(.*)$")
_PRAGMA = re.compile(r"^\s*(noqa|type:|pragma|fmt:|pylint:|mypy:|isort:|ruff:|-\*-|todo\b|fixme\b|xxx\b)", re.I)
_IDENTIFIER_PATTERNS = (
    re.compile(r"\b[A-Z][a-z0-9]+(?:[A-Z][a-z0-9]*){2,}\b"),  # CamelCase, three humps or more
    re.compile(r"\b[a-z][a-z0-9]*(?:_[a-z0-9]+){2,}\b"),  # snake_case, three parts or more
    re.compile(r"\b[A-Z][A-Z0-9]*(?:_[A-Z0-9]+)+\b"),  # CONSTANT_CASE
    re.compile(r"\b[A-Z]{1,4}[0-9]{3,5}\b"),  # error codes: E501, W0611, SIM115
)


@dataclass(frozen=True)
class Passage:
    """One corpus passage as it is ingested: ``id``, ``text``, ``tags``, ``metadata`` and an optional ``key``."""

    id: str
    text: str
    tags: list[str]
    metadata: dict[str, Any]
    key: str | None = None

    def record(self) -> dict[str, Any]:
        """The body of ``POST /ingest`` for this passage."""
        body: dict[str, Any] = {"id": self.id, "content": self.text, "tags": self.tags, "metadata": self.metadata}
        if self.key is not None:
            body["key"] = self.key
        return body


@dataclass(frozen=True)
class LabelledQuery:
    """A query whose one right answer is known: passage ``target`` (at ``target_index`` in the corpus)."""

    kind: str  # "sentence" or "identifier"
    text: str
    target: str
    target_index: int


@dataclass
class Corpus:
    """``n`` passages, their labelled queries, and a digest identifying the texts (the embedding cache key)."""

    passages: list[Passage]
    queries: list[LabelledQuery]
    digest: str
    pool_size: int
    seed: int
    #: Texts of further unique passages, not in the corpus: new records to ingest and new questions to ask.
    holdout: list[str] = field(default_factory=list)
    stats: dict[str, Any] = field(default_factory=dict)

    @property
    def n(self) -> int:
        return len(self.passages)

    def texts(self) -> list[str]:
        return [p.text for p in self.passages]

    def queries_of(self, kind: str) -> list[LabelledQuery]:
        return [q for q in self.queries if q.kind == kind]

    def probes(self, k: int) -> list[str]:
        """Up to ``k`` distinct question-like texts (first sentences of holdout passages), none in the corpus.

        Each is asked once, so the service's query-embedding cache never answers them.
        """
        out: dict[str, None] = {}
        for text in self.holdout:
            q = _sentence_query(text)
            if q is not None:
                out.setdefault(q, None)
                if len(out) >= k:
                    break
        return list(out)

    def tag_counts(self) -> dict[str, int]:
        return dict(Counter(t for p in self.passages for t in p.tags))

    def describe(self) -> dict[str, Any]:
        """A JSON-able summary: sizes, digest, selectivity counts, kinds, words, query counts."""
        words = np.array([len(p.text.split()) for p in self.passages]) if self.passages else np.zeros(1)
        counts = self.tag_counts()
        return {
            "n": self.n,
            "pool_size": self.pool_size,
            "seed": self.seed,
            "digest": self.digest,
            "selectivity": {t: counts.get(t, 0) for t in SELECTIVITY_TAGS},
            "kinds": dict(Counter(p.metadata["kind"] for p in self.passages)),
            "packages": len({p.metadata["package"] for p in self.passages}),
            "words": {"mean": round(float(words.mean()), 1), "min": int(words.min()), "max": int(words.max())},
            "queries": dict(Counter(q.kind for q in self.queries)),
            "holdout": len(self.holdout),
            **self.stats,
        }


# --------------------------------------------------------------------------------------------- harvesting


def normalise(text: str) -> str:
    """Lowercase, alphanumerics only, single spaces: the form passages are deduplicated on."""
    return " ".join(re.sub(r"[^a-z0-9]+", " ", text.lower()).split())


def _is_prose(text: str) -> bool:
    words = text.split()
    if not words:
        return False
    if sum(1 for w in words if _PROSE_WORD.fullmatch(w)) < 0.75 * len(words):
        return False
    return sum(1 for c in text if c in _CODE_CHARS) <= 0.03 * len(text)


def _docstring_paragraphs(doc: str) -> list[str]:
    """Clean a docstring into prose paragraphs (one line each)."""
    out = []
    for para in re.split(r"\n[ \t]*\n", doc):
        lines = [ln.strip() for ln in para.splitlines()]
        if any(ln.startswith((">>>", "... ", "$ ", "In [")) for ln in lines):
            continue  # doctest or shell session
        lines = [
            ln
            for i, ln in enumerate(lines)
            if ln
            and not _UNDERLINE.fullmatch(ln)
            # a numpydoc section header ("Parameters" over "----------"), or a Google one ("Args:")
            and not (i + 1 < len(lines) and _UNDERLINE.fullmatch(lines[i + 1]))
            and not _SECTION.fullmatch(ln)
            and not _PARAM_SPEC.fullmatch(ln)
        ]
        if not lines or (len(lines) == 1 and len(lines[0].split()) <= 3 and not lines[0].endswith(".")):
            continue  # empty, or a section header such as "Parameters"
        if lines[-1].endswith("::"):
            lines[-1] = lines[-1][:-1]  # "Example::" introduces code; keep the sentence, not the block
        text = " ".join(" ".join(lines).split())
        if _is_prose(text) and not _BOILERPLATE.search(text):
            out.append(text)
    return out


def _comment_blocks(src: str) -> Iterator[tuple[int, list[str]]]:
    """Blocks of consecutive whole-line comments: (first line number, paragraphs)."""
    start = 0
    paras: list[str] = []
    cur: list[str] = []
    lines = src.splitlines()
    for i, line in enumerate([*lines, ""], start=1):
        m = _COMMENT_LINE.match(line)
        if m:
            if not paras and not cur:
                start = i
            body = m.group(1).strip()
            if not body or _UNDERLINE.fullmatch(body):
                if cur:
                    paras.append(" ".join(cur))
                    cur = []
            elif not _PRAGMA.match(body):
                cur.append(body)
            continue
        if cur:
            paras.append(" ".join(cur))
            cur = []
        if paras:
            yield start, paras
            paras = []
    # the sentinel "" above flushes the last block


def _units(src: str) -> Iterator[tuple[int, str, list[str]]]:
    """Every docstring and comment block of a source file: (line, kind, prose paragraphs)."""
    try:
        tree = ast.parse(src)
    except (SyntaxError, ValueError, RecursionError, MemoryError):
        return
    kinds = {ast.Module: "module-doc", ast.ClassDef: "class-doc"}
    for node in ast.walk(tree):
        if not isinstance(node, ast.Module | ast.ClassDef | ast.FunctionDef | ast.AsyncFunctionDef):
            continue
        body = node.body
        if not (body and isinstance(body[0], ast.Expr) and isinstance(body[0].value, ast.Constant)):
            continue
        value = body[0].value.value
        if isinstance(value, str):
            paras = _docstring_paragraphs(inspect.cleandoc(value))
            if paras:
                yield body[0].lineno, kinds.get(type(node), "function-doc"), paras
    for line, raw in _comment_blocks(src):
        paras = [" ".join(p.split()) for p in raw]
        paras = [p for p in paras if _is_prose(p) and not _BOILERPLATE.search(p)]
        if paras:
            yield line, "comment", paras


_TOKENIZER: Any = None


def _tokenizer() -> Any:
    global _TOKENIZER
    if _TOKENIZER is None:
        from tokenizers import Tokenizer

        from memory_spine.embedders import model_dir

        tok = Tokenizer.from_file(str(model_dir() / "tokenizer.json"))
        tok.no_padding()
        tok.no_truncation()
        _TOKENIZER = tok
    return _TOKENIZER


def _pack(sentences: Sequence[tuple[str, int, int]]) -> list[str]:
    """Pack (sentence, words, tokens) into passages of 1-4 sentences, 20-120 words, <= 126 word pieces."""
    chunks: list[tuple[list[str], int, int]] = []
    cur: list[str] = []
    cw = ct = 0

    def flush() -> None:
        nonlocal cur, cw, ct
        if cur:
            if cw >= MIN_WORDS:
                chunks.append((cur, cw, ct))
            elif chunks and chunks[-1][1] + cw <= MAX_WORDS and chunks[-1][2] + ct <= MAX_TOKENS:
                prev = chunks.pop()
                chunks.append((prev[0] + cur, prev[1] + cw, prev[2] + ct))
        cur, cw, ct = [], 0, 0

    for s, w, t in sentences:
        if w > MAX_WORDS or t > MAX_TOKENS:
            flush()  # an overlong sentence (often a flattened list) ends the passage and is dropped
            continue
        if cur and (cw + w > MAX_WORDS or ct + t > MAX_TOKENS):
            flush()
        cur.append(s)
        cw += w
        ct += t
        if cw >= TARGET_WORDS or len(cur) >= MAX_SENTENCES:
            flush()
    flush()
    return [" ".join(c[0]) for c in chunks]


def harvest_source(src: str) -> list[tuple[str, int, str]]:
    """All passages of one source file: (text, line, kind), in file order, not yet deduplicated."""
    units = list(_units(src))
    if not units:
        return []
    sents_per_unit = [[s for p in paras for s in _SENTENCE_SPLIT.split(p) if s] for _, _, paras in units]
    flat = [s for sents in sents_per_unit for s in sents]
    if not flat:
        return []
    tokens = [len(e.ids) for e in _tokenizer().encode_batch(flat, add_special_tokens=False)]
    out, k = [], 0
    for (line, kind, _), sents in zip(units, sents_per_unit, strict=True):
        triples = [(s, len(s.split()), tokens[k + i]) for i, s in enumerate(sents)]
        k += len(sents)
        out.extend((text, line, kind) for text in _pack(triples))
    return out


def _harvest_files(batch: list[tuple[str, str]]) -> list[tuple[str, str, int, str]]:
    """Worker: harvest (absolute path, relative name) pairs into (text, rel, line, kind)."""
    out = []
    for path, rel in batch:
        try:
            src = Path(path).read_text(encoding="utf-8")
        except (OSError, UnicodeDecodeError):
            continue
        out.extend((text, rel, line, kind) for text, line, kind in harvest_source(src))
    return out


def default_roots() -> list[tuple[str, Path]]:
    """(label, directory): the standard library and site-packages of this interpreter."""
    paths = sysconfig.get_paths()
    roots = [("stdlib", Path(paths["stdlib"]))]
    for p in dict.fromkeys([paths["purelib"], paths["platlib"]]):
        roots.append(("site-packages", Path(p)))
    return roots


def _walk(roots: Sequence[tuple[str, Path]]) -> list[tuple[str, str, int, int]]:
    """Sorted walk: (absolute path, label/relative path, size, mtime_ns) of every .py file under the roots."""
    nested = {str(r) for _, r in roots}
    files = []
    seen: set[str] = set()
    for label, root in roots:
        for dirpath, dirnames, filenames in os.walk(root):
            # Other roots nested inside this one (site-packages inside stdlib) are walked on their own.
            dirnames[:] = sorted(
                d
                for d in dirnames
                if d != "__pycache__" and not d.startswith(".") and os.path.join(dirpath, d) not in nested
            )
            for name in sorted(filenames):
                if not name.endswith(".py"):
                    continue
                path = os.path.join(dirpath, name)
                if path in seen:
                    continue
                seen.add(path)
                try:
                    st = os.stat(path)
                except OSError:
                    continue
                if st.st_size <= MAX_FILE_BYTES:
                    rel = f"{label}/{os.path.relpath(path, root)}"
                    files.append((path, rel, st.st_size, st.st_mtime_ns))
    return files


def _package(rel: str) -> str:
    """Top-level package of a relative path: ``site-packages/numpy/core/x.py`` -> ``numpy``."""
    parts = rel.split("/")
    top = parts[1] if len(parts) > 1 else parts[0]
    top = top.removesuffix(".py")
    if top.endswith((".dist-info", ".egg-info")):
        top = top.split("-")[0]
    return re.sub(r"[^a-z0-9_.-]+", "-", top.lower()) or "unknown"


def build_pool(
    roots: Sequence[tuple[str, Path]] | None = None,
    *,
    cache_dir: Path = DEFAULT_CACHE_DIR,
    workers: int | None = None,
    refresh: bool = False,
    verbose: bool = False,
) -> list[tuple[str, str, int, str]]:
    """Every unique passage under ``roots`` as (text, source_file, line, kind), in sorted-walk order.

    The first harvest is kept as a snapshot in ``cache_dir``, keyed by the builder version and the roots, and
    reused until ``refresh``: packages installed later do not change the corpus under a running series of
    benchmarks (nor force its embeddings to be recomputed). A ``.json`` beside it records what was read.
    """
    roots = list(roots) if roots is not None else default_roots()
    key = hashlib.sha256(
        f"v{BUILDER_VERSION}|{MIN_WORDS}|{MAX_WORDS}|{MAX_TOKENS}|{TARGET_WORDS}|{sys.version_info[:2]}".encode()
    )
    for label, root in roots:
        key.update(f"{label}={Path(root).resolve()}\n".encode())
    cache = Path(cache_dir) / f"pool-v{BUILDER_VERSION}-{key.hexdigest()[:16]}.jsonl.gz"
    if cache.exists() and not refresh:
        with gzip.open(cache, "rt", encoding="utf-8") as f:
            return [tuple(json.loads(line)) for line in f]  # type: ignore[misc]

    files = _walk(roots)
    t0 = time.perf_counter()
    workers = workers or min(4, os.cpu_count() or 1)
    pairs = [(p, rel) for p, rel, _, _ in files]
    batches = [pairs[i : i + 200] for i in range(0, len(pairs), 200)]
    results: Iterable[list[tuple[str, str, int, str]]]
    if workers > 1 and len(batches) > 1:
        # spawn, not fork: a forked child of a process that already used `tokenizers` can deadlock.
        with ProcessPoolExecutor(workers, mp_context=get_context("spawn")) as ex:
            results = list(ex.map(_harvest_files, batches))
    else:
        results = [_harvest_files(b) for b in batches]
    pool, seen = [], set()
    for batch in results:
        for item in batch:
            digest = hashlib.blake2b(normalise(item[0]).encode(), digest_size=16).digest()
            if digest not in seen:
                seen.add(digest)
                pool.append(item)
    if verbose:
        print(f"harvested {len(pool)} unique passages from {len(files)} files in {time.perf_counter() - t0:.0f} s")
    cache.parent.mkdir(parents=True, exist_ok=True)
    tmp = cache.with_suffix(".tmp")
    with gzip.open(tmp, "wt", encoding="utf-8") as f:
        for item in pool:
            f.write(json.dumps(item, ensure_ascii=False) + "\n")
    tmp.replace(cache)
    info = {
        "builder_version": BUILDER_VERSION,
        "roots": [[label, str(root)] for label, root in roots],
        "files": len(files),
        "passages": len(pool),
        "files_sha256": hashlib.sha256("".join(f"{r}|{s}|{m}\n" for _, r, s, m in files).encode()).hexdigest(),
        "created": time.strftime("%Y-%m-%dT%H:%M:%S%z"),
    }
    cache.with_name(cache.name.removesuffix(".jsonl.gz") + ".json").write_text(json.dumps(info, indent=1) + "\n")
    return pool


# ------------------------------------------------------------------------------------------------ corpus


def _seeded_rank(seed: int, text: str) -> bytes:
    return hashlib.blake2b(f"{seed}\x00{normalise(text)}".encode(), digest_size=16).digest()


def selectivity_tags(sel_bucket: int) -> list[str]:
    """The nested selectivity tags a passage in bucket ``sel_bucket`` (0..999) holds."""
    return [tag for tag, bound in SELECTIVITY_TAGS.items() if sel_bucket < bound]


def _sentence_query(text: str) -> str | None:
    words = text.split()
    first = _SENTENCE_SPLIT.split(text, maxsplit=1)[0].split()
    if len(first) >= 0.8 * len(words):  # a one-sentence passage: the sentence would be the passage itself
        first = words[: max(5, int(len(words) * 0.6))]
    return " ".join(first) if len(first) >= 5 else None


def _identifiers(text: str) -> set[str]:
    found: set[str] = set()
    for pattern in _IDENTIFIER_PATTERNS:
        found.update(m for m in pattern.findall(text) if len(m) >= 8 or pattern is _IDENTIFIER_PATTERNS[3])
    return found


def labelled_queries(passages: Sequence[Passage], k: int, *, seed: int = 0) -> list[LabelledQuery]:
    """Up to ``k`` sentence queries and ``k`` identifier queries, each with exactly one right passage."""
    rng = np.random.default_rng(seed + 1)
    order = rng.permutation(len(passages))
    norms = [normalise(p.text) for p in passages]
    joined = "\n".join(norms)
    out: list[LabelledQuery] = []

    n_sent = 0
    for i in order:
        if n_sent >= k:
            break
        q = _sentence_query(passages[i].text)
        # The query must occur in no other passage, or its label would be ambiguous.
        if q is not None and joined.count(normalise(q)) == 1:
            out.append(LabelledQuery("sentence", q, passages[i].id, int(i)))
            n_sent += 1

    idents = [_identifiers(p.text) for p in passages]
    df = Counter(x for s in idents for x in s)
    lower_df = Counter(x.lower() for x in df.elements())
    n_id = 0
    for i in order:
        if n_id >= k:
            break
        unique = [x for x in idents[i] if df[x] == 1 and lower_df[x.lower()] == 1]
        if unique:
            pick = min(unique, key=lambda x: hashlib.blake2b(f"{seed}{x}".encode(), digest_size=8).digest())
            out.append(LabelledQuery("identifier", pick, passages[i].id, int(i)))
            n_id += 1
    return out


def build_corpus(
    n: int,
    *,
    seed: int = 0,
    queries: int | None = None,
    holdout: int = 0,
    roots: Sequence[tuple[str, Path]] | None = None,
    cache_dir: Path = DEFAULT_CACHE_DIR,
    workers: int | None = None,
    refresh: bool = False,
    verbose: bool = False,
) -> Corpus:
    """The first ``n`` unique passages in seeded-hash order, tagged, with labelled queries.

    ``queries`` is the number of queries of each kind (default ``min(200, n // 10)``); ``holdout`` the
    number of further passages to keep aside (as many as the pool has, up to that).

    Raises:
        ValueError: when fewer than ``n`` unique passages exist under ``roots``.
    """
    pool = build_pool(roots, cache_dir=cache_dir, workers=workers, refresh=refresh, verbose=verbose)
    if len(pool) < n:
        raise ValueError(f"only {len(pool)} unique passages available, {n} asked")
    # Control characters (a NUL quoted in a docstring) are refused by stores, as the service refuses them.
    ranked = sorted(
        (item for item in pool if not _CONTROL.search(item[0])), key=lambda item: _seeded_rank(seed, item[0])
    )
    chosen = ranked[:n]
    perm = np.random.default_rng(seed).permutation(n)
    bucket = np.empty(n, dtype=np.int64)
    bucket[perm] = np.arange(n) * 1000 // n
    passages = []
    for i, (text, rel, line, kind) in enumerate(chosen):
        pid = f"doc-{i:07d}"
        b = int(bucket[i])
        pkg = _package(rel)
        passages.append(
            Passage(
                id=pid,
                text=text,
                tags=[f"pkg-{pkg}", *selectivity_tags(b)],
                metadata={"source_file": rel, "line": line, "kind": kind, "package": pkg, "sel_bucket": b},
                key=f"dedup:{pid}" if i % 10 == 0 else None,
            )
        )
    k = queries if queries is not None else min(200, n // 10)
    digest = hashlib.sha256("\x00".join(p.text for p in passages).encode()).hexdigest()
    extra = [item[0] for item in ranked[n : n + holdout]]
    return Corpus(passages, labelled_queries(passages, k, seed=seed), digest, len(pool), seed, extra)


def main(argv: Sequence[str] | None = None) -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else None)
    ap.add_argument("--n", type=int, default=10_000)
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--refresh-pool", action="store_true", help="harvest again instead of the cached snapshot")
    ap.add_argument("--embed", action="store_true", help="also compute (or load) the cached embeddings")
    ap.add_argument("--embedder", default="auto", help="auto, onnx or sentence-transformers")
    ap.add_argument("--sample", type=int, default=3, help="print this many passages and queries")
    args = ap.parse_args(argv)
    t0 = time.perf_counter()
    corpus = build_corpus(args.n, seed=args.seed, refresh=args.refresh_pool, verbose=True)
    print(f"built in {time.perf_counter() - t0:.1f} s")
    print(json.dumps(corpus.describe(), indent=2))
    for p in corpus.passages[: args.sample]:
        print(json.dumps(p.record(), ensure_ascii=False))
    for kind in ("sentence", "identifier"):
        for q in corpus.queries_of(kind)[: args.sample]:
            print(kind, repr(q.text), "->", q.target)
    if args.embed:
        from .embeddings import embed_corpus

        vecs = embed_corpus(corpus, embedder=args.embedder, verbose=True)
        print("embeddings", vecs.shape, vecs.dtype)
    sys.stdout.flush()


if __name__ == "__main__":
    main()
