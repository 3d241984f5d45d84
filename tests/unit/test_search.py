"""storage/search.py, the search vocabulary both backends share: keyword pruning, fusion, the exact bound.

The pruning functions are checked against the rules both dialects wrote inline before they shared them (the
reference below), over many random queries, and once end to end through SQLite's FTS5 query.
"""

from __future__ import annotations

import random

import numpy as np

from memory_spine.storage.base import NewRecord
from memory_spine.storage.search import MAX_KEYWORD_TERMS, STOPWORDS, drop_stopwords, exact_cap, fuse, rarest
from memory_spine.storage.sqlite import SQLiteStorage


def reference(phrases: list[tuple[str, ...]], rarity: dict, common: float) -> list[tuple[str, ...]]:
    """The pruning as sqlite.py and pg_search.py each spelled it out before storage/search.py."""
    phrases = [p for p in phrases if not (len(p) == 1 and p[0] in STOPWORDS)] or phrases
    ranked = sorted(phrases, key=lambda p: rarity[p])
    return [p for p in ranked if rarity[p] <= common][:MAX_KEYWORD_TERMS] or ranked[:1]


def test_pruning_matches_the_rules_it_replaced():
    rng = random.Random(17)
    vocab = [*sorted(STOPWORDS)[:6], "alpha", "beta", "gamma", "delta", "os", "path", "join", "zeta", "eta"]
    for _ in range(2000):
        phrases = list(
            dict.fromkeys(tuple(rng.sample(vocab, rng.choice([1, 1, 2, 3]))) for _ in range(rng.randint(1, 14)))
        )
        rarity = {p: rng.randint(0, 100) for p in phrases}
        common = rng.choice([0, 20, 50, 100])
        kept = drop_stopwords(phrases, lambda p: p)
        assert rarest(kept, rarity, common) == reference(phrases, rarity, common)


def test_only_stop_words_are_kept_and_the_rarest_stays_when_all_are_common():
    assert drop_stopwords([("the",), ("a",)], lambda p: p) == [("the",), ("a",)]
    assert drop_stopwords([("the",), ("the", "end")], lambda p: p) == [("the", "end")]
    assert rarest(["x", "y"], {"x": 9, "y": 7}, common=1) == ["y"]
    many = [f"w{i}" for i in range(12)]
    assert rarest(many, {w: i for i, w in enumerate(many)}, common=100) == many[:MAX_KEYWORD_TERMS]


def test_fuse_and_exact_cap():
    assert fuse([(1, 0.9), (2, 0.5)], [(1, 3.0)], 10)[0] == (1, 1.0)
    assert exact_cap(10, 0, 4096) == 256 and exact_cap(10, 10**8, 4096) == 4096 and exact_cap(10, 10**6, 0) == 0


def test_sqlite_keyword_query_drops_stop_words_and_common_phrases(tmp_path):
    store = SQLiteStorage(tmp_path / "m.db", 4)
    vec = np.ones(4, dtype=np.float32)
    records = [
        NewRecord(f"r{i}", f"common word {i}" + (" rare" if i == 0 else ""), [], {}, "medium", None, None, None, vec)
        for i in range(300)
    ]
    store.put(records)
    try:
        assert store.keyword_match("the common rare", total=300) == '"rare"'  # "common" is in all 300
        assert store.keyword_match("the", total=300) == '"the"'  # nothing else left: the stop word stays
        assert store.keyword_match("os.path.join rare", total=300) == '"os path join" OR "rare"'
    finally:
        store.close()
