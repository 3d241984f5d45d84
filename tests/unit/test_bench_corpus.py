"""The benchmark corpus builder (benchmarks.corpus) on tiny trees: cleaning, packing, determinism,
exact selectivity, labelled queries that have exactly one right answer, and the pool cache."""

from __future__ import annotations

import random
import sysconfig
from pathlib import Path

import pytest

from benchmarks.corpus import (
    MAX_TOKENS,
    MAX_WORDS,
    MIN_WORDS,
    SELECTIVITY_TAGS,
    _tokenizer,
    build_corpus,
    harvest_source,
    normalise,
)

_WORDS = (
    "index record vector query filter cache model token batch server client memory store shard lease claim "
    "workflow step checkpoint planner storage journal budget breaker window latency replica snapshot cursor "
    "stream buffer socket parser encoder decoder schema column table row page segment block chunk frame"
).split()


def _sentence(rng: random.Random) -> str:
    words = [rng.choice(_WORDS) for _ in range(rng.randint(8, 14))]
    return " ".join(words).capitalize() + "."


def _write_tree(root: Path, files: int = 60, funcs: int = 12, seed: int = 7) -> None:
    """Python files whose docstrings are unique synthetic prose, with a distinctive name now and then."""
    rng = random.Random(seed)
    for f in range(files):
        pkg = root / f"pkg{f % 5}"
        pkg.mkdir(parents=True, exist_ok=True)
        lines = [f'"""Module {f}. {_sentence(rng)} {_sentence(rng)}"""', ""]
        for g in range(funcs):
            body = " ".join(_sentence(rng) for _ in range(3))
            if g % 4 == 0:
                body += f" See UniqueHandlerName{f}x{g}Impl for details."
            lines += [f"def f{g}():", f'    """{body}', "", "    >>> f0()  # a doctest is not prose", '    """', ""]
            lines += [f"# {_sentence(rng)} {_sentence(rng)}", f"# {_sentence(rng)}", "x = 1", ""]
        (pkg / f"mod{f}.py").write_text("\n".join(lines), encoding="utf-8")


@pytest.fixture(scope="module")
def tree(tmp_path_factory: pytest.TempPathFactory) -> Path:
    root = tmp_path_factory.mktemp("src")
    _write_tree(root)
    return root


def _build(tree: Path, cache: Path, n: int, **kw):
    return build_corpus(n, roots=[("site-packages", tree)], cache_dir=cache, workers=1, **kw)


def test_passages_are_clean_prose_within_bounds(tree: Path, tmp_path: Path) -> None:
    corpus = _build(tree, tmp_path, 1000)
    assert corpus.n == 1000
    tok = _tokenizer()
    for p in corpus.passages:
        words = len(p.text.split())
        assert MIN_WORDS <= words <= MAX_WORDS
        assert len(tok.encode(p.text, add_special_tokens=False).ids) <= MAX_TOKENS
        assert ">>>" not in p.text and "x = 1" not in p.text
    assert len({normalise(p.text) for p in corpus.passages}) == corpus.n
    assert {p.metadata["kind"] for p in corpus.passages} >= {"function-doc", "comment"}
    assert all(p.metadata["source_file"].startswith("site-packages/pkg") for p in corpus.passages)
    assert all(p.tags[0] == f"pkg-{p.metadata['package']}" for p in corpus.passages)


def test_selectivity_tags_are_exact_and_nested(tree: Path, tmp_path: Path) -> None:
    corpus = _build(tree, tmp_path, 1000)
    counts = corpus.tag_counts()
    assert {t: counts.get(t, 0) for t in SELECTIVITY_TAGS} == {"sel-0.1": 1, "sel-1": 10, "sel-10": 100, "sel-50": 500}
    for p in corpus.passages:
        b = p.metadata["sel_bucket"]
        assert 0 <= b <= 999
        assert {t for t in p.tags if t.startswith("sel-")} == {t for t, bound in SELECTIVITY_TAGS.items() if b < bound}
    keyed = [p for p in corpus.passages if p.key is not None]
    assert len(keyed) == 100 and all(p.key == f"dedup:{p.id}" for p in keyed)


def test_deterministic_and_prefix_stable(tree: Path, tmp_path: Path) -> None:
    a = _build(tree, tmp_path / "a", 600, holdout=50)
    b = _build(tree, tmp_path / "b", 600, holdout=50)
    assert [p.record() for p in a.passages] == [p.record() for p in b.passages]
    assert a.queries == b.queries and a.digest == b.digest and a.holdout == b.holdout
    small = _build(tree, tmp_path / "a", 300)
    assert [p.text for p in small.passages] == [p.text for p in a.passages[:300]]
    assert a.holdout[:10] == [p.text for p in _build(tree, tmp_path / "a", 610).passages[600:]]
    assert not {normalise(t) for t in a.holdout} & {normalise(p.text) for p in a.passages}


def test_labelled_queries_have_exactly_one_answer(tree: Path, tmp_path: Path) -> None:
    corpus = _build(tree, tmp_path, 1000, queries=40)
    sentence, ident = corpus.queries_of("sentence"), corpus.queries_of("identifier")
    assert len(sentence) == 40 and len(ident) > 10
    norms = [normalise(p.text) for p in corpus.passages]
    for q in corpus.queries:
        assert corpus.passages[q.target_index].id == q.target
        holders = [i for i, t in enumerate(norms) if normalise(q.text) in t]
        assert holders == [q.target_index], q
    assert all(q.text.startswith("UniqueHandlerName") for q in ident)
    probes = corpus.probes(20)
    assert len(probes) == len(set(probes)) and not set(probes) & {q.text for q in corpus.queries}


def test_pool_cache_is_reused_and_too_large_n_is_refused(tree: Path, tmp_path: Path) -> None:
    _build(tree, tmp_path, 100)
    cached = list(tmp_path.glob("pool-*.jsonl.gz"))
    assert len(cached) == 1
    mtime = cached[0].stat().st_mtime_ns
    pool_size = _build(tree, tmp_path, 100).pool_size
    assert cached[0].stat().st_mtime_ns == mtime
    with pytest.raises(ValueError, match="unique passages"):
        _build(tree, tmp_path, pool_size + 1)


def test_harvest_keeps_prose_and_drops_code_boilerplate_and_pragmas() -> None:
    src = '''"""Copyright 2020 Someone. Licensed under the Apache License, Version 2.0 and more words here."""

# This comment block explains why the cache is flushed before the lease expires, which
# matters because a stale lease would let two workers claim the same step at once.
# noqa: E501
x = compute(y)  # a trailing comment is not a block

def f():
    """Return the vector of a record, or None when the record was deleted before the read.

    Parameters
    ----------
    record : Record
        The record whose vector is read from the storage layer without copying it.

    >>> f()
    """
'''
    texts = [t for t, _, _ in harvest_source(src)]
    assert not any("Copyright" in t or "noqa" in t or "compute" in t or ">>>" in t for t in texts)
    assert any(t.startswith("This comment block explains why the cache is flushed") for t in texts)
    assert any(t.startswith("Return the vector of a record") for t in texts)
    assert all("----" not in t and "Parameters" not in t for t in texts)


def test_real_stdlib_subset(tmp_path: Path) -> None:
    std = Path(sysconfig.get_paths()["stdlib"])
    roots = [("stdlib", std / "json"), ("stdlib", std / "email")]
    corpus = build_corpus(200, roots=roots, cache_dir=tmp_path, workers=1)
    assert corpus.n == 200 and corpus.queries_of("sentence")
    assert all(p.metadata["source_file"].startswith("stdlib/") for p in corpus.passages)
