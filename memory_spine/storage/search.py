"""The search vocabulary both backends share: what a plan reports, how lists fuse, when exact scoring pays.

- `Plan`: what a search did, for `"explain": true` and the logs;
- `Scored`, `Rows`, `Cosines`: (seq, score) pairs best first, the hydrated rows by seq, and the cosine
  similarity with the query by seq;
- `fuse`, `hybrid`: reciprocal rank fusion (k=10) of a semantic and a keyword list, the hybrid mode of every
  backend, which also reports each hit's cosine similarity (the two scores of a search hit, below);
- `fuse_units`: the same fusion where hits are evidence for other units (a conversation's window and session
  records for the turns they cover), so each unit appears once, ranked by all of its evidence;
- `exact_cap`: how many filter matches are still worth scoring exactly rather than walking HNSW with a filter;
- `drop_stopwords`, `rarest` (`STOPWORDS`, `MAX_KEYWORD_TERMS`): the keyword pruning both dialects apply to a
  query's phrases, each dialect with its own tokens and its own document frequencies.

The embedded default's planner (planner.py) and PostgreSQL's search (storage/pg_search.py) import this module;
it imports neither, nor any backend, so neither backend depends on the other.

The two scores of a search hit: `score` is the cosine similarity of the query's and the record's embeddings
whenever the search scored the record's vector (semantic and hybrid always, keyword when `min_score` asks for
it), null otherwise; `rank_score` is what the results are ordered by (the cosine in semantic mode, the fused
rank in hybrid, BM25 mapped into [0, 1) in keyword). `min_score` filters on `score`.
"""

from __future__ import annotations

import math
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any, TypeVar

__all__ = [
    "MAX_KEYWORD_TERMS",
    "RRF_K",
    "STOPWORDS",
    "Cosines",
    "Plan",
    "Rows",
    "Scored",
    "drop_stopwords",
    "exact_cap",
    "fuse",
    "fuse_units",
    "hybrid",
    "rarest",
]

# k=10 rather than the usual 60: a list's first few hits count for more. Chosen on LoCoMo's tune split
# (benchmarks/conversations.py, hybrid top-5 recall, stemmed keyword list): facts 0.572 -> 0.579, turns
# 0.549 -> 0.571, session summaries 0.711 -> 0.743; stdlib passages (benchmarks/quality_modes.py) MRR@10
# 0.834 -> 0.836. Min-max score fusion at 0.5 scored 0.572 / 0.567 / 0.740 and 0.848, but depends on each
# backend's keyword scale (BM25 vs ts_rank); ranks do not.
RRF_K = 10
Scored = list[tuple[int, float]]
Rows = dict[int, dict[str, Any]]
Cosines = dict[int, float]  # seq -> cosine similarity of the record's stored vector with the query

# Lucene's default English stop set: words too common to say anything, and costly to score (BM25 must rank
# every record holding any query term); plus question words and pronouns, which a question to a memory
# ("When did she ...?") always holds and short records (a chat turn, a fact) hold by chance: measured on
# LoCoMo's tune split (benchmarks/conversations.py), keyword top-5 recall 0.450 -> 0.509 on turns and
# 0.476 -> 0.491 on facts.
STOPWORDS = frozenset(
    "a an and are as at be but by for if in into is it no not of on or such that the their then there these"
    " they this to was will with"
    " what when where which who why how did do does has have had i me my you your we our he his she her about"
    " would could should from".split()
)
MAX_KEYWORD_TERMS = 8  # a keyword query keeps at most this many of its rarest phrases
P = TypeVar("P")


@dataclass
class Plan:
    """What the planner did, for `"explain": true` and the logs."""

    name: str
    candidates: int | None = None
    k: list[int] = field(default_factory=list)
    ms: float = 0.0
    detail: dict[str, Any] = field(default_factory=dict)

    def add_ms(self, name: str, seconds: float) -> None:
        """Add to a timing in `detail` (milliseconds), e.g. the index's share of the plan."""
        self.detail[name] = round(self.detail.get(name, 0.0) + seconds * 1000, 3)

    def as_dict(self) -> dict[str, Any]:
        out: dict[str, Any] = {"plan": self.name, "ms": round(self.ms, 3)}
        if self.candidates is not None:
            out["candidates"] = self.candidates
        if self.k:
            out["k"] = self.k
        out.update(self.detail)
        return out


def fuse(semantic: Scored, keyword: Scored, limit: int) -> Scored:
    """Reciprocal rank fusion (k=RRF_K) of two ranked lists; 1.0 means first in both."""
    fused: dict[int, float] = {}
    for ranked in (semantic, keyword):
        for rank, (seq, _score) in enumerate(ranked):
            fused[seq] = fused.get(seq, 0.0) + 1.0 / (RRF_K + rank + 1)
    best = 2.0 / (RRF_K + 1)  # first in both lists
    order = sorted(fused.items(), key=lambda kv: kv[1], reverse=True)[:limit]
    return [(s, sc / best) for s, sc in order]


def fuse_units(
    lists: Sequence[tuple[Scored, Rows]],
    units: Callable[[dict[str, Any]], Sequence[tuple[str, float]]],
    limit: int,
    k: int = RRF_K,
) -> list[tuple[str, float]]:
    """Weighted reciprocal rank fusion of ranked lists whose hits stand for units (`units(row)`: (unit id, weight)
    pairs). Returns the `limit` best (unit id, score) pairs; 1.0 means first in every list on a weight-1 hit."""
    fused: dict[str, float] = {}
    for ranked, rows in lists:
        for rank, (seq, _score) in enumerate(ranked):
            row = rows.get(seq)
            if row is None:
                continue
            for unit, weight in units(row):
                fused[unit] = fused.get(unit, 0.0) + weight / (k + rank + 1)
    best = max(len(lists), 1) / (k + 1)
    order = sorted(fused.items(), key=lambda kv: kv[1], reverse=True)[:limit]
    return [(u, sc / best) for u, sc in order]


def hybrid(
    semantic: Callable[[int], tuple[Scored, Rows, Plan]],
    keyword: Callable[[int], tuple[Scored, Rows]],
    limit: int,
    similarity: Callable[[list[int]], Cosines],
    min_score: float | None = None,
) -> tuple[Scored, Rows, Plan, Cosines]:
    """The hybrid plan: both searches `max(3 * limit, 30)` deep (each called with that depth), fused by `fuse`.

    Returns the fused (seq, rank score) list, the rows, the plan, and each hit's cosine similarity with the
    query: the semantic list's own (exact: HNSW and exact plans both score the stored vectors), else, for hits
    only the keyword list found, scored exactly by `similarity(seqs)` (their stored vectors: a few microseconds
    each). With `min_score`, hits less similar than that are dropped before the cut to `limit`, so the deeper
    candidates that pass take their places.
    """
    started = time.perf_counter()
    depth = max(limit * 3, 30)
    sem, sem_rows, sem_plan = semantic(depth)
    kw, kw_rows = keyword(depth)
    hits = fuse(sem, kw, limit if min_score is None else len(sem) + len(kw))
    cosines = dict(sem)
    missing = [s for s, _ in hits if s not in cosines]
    if missing:
        cosines.update(similarity(missing))
    if min_score is not None:
        hits = [(s, r) for s, r in hits if cosines.get(s, -math.inf) >= min_score][:limit]
    plan = Plan(
        "hybrid",
        ms=(time.perf_counter() - started) * 1000,
        detail={"semantic": sem_plan.as_dict(), "keyword_hits": len(kw), "keyword_only_scored": len(missing)},
    )
    return hits, {**kw_rows, **sem_rows}, plan, cosines


def drop_stopwords(phrases: list[P], words: Callable[[P], Sequence[str]]) -> list[P]:
    """The phrases that are not a lone stop word; all of them when nothing else would be left."""
    return [p for p in phrases if not (len(words(p)) == 1 and words(p)[0] in STOPWORDS)] or phrases


def rarest(phrases: list[P], rarity: Mapping[P, float], common: float) -> list[P]:
    """The MAX_KEYWORD_TERMS rarest phrases no commoner than `common`, rarest first; the rarest one alone when
    all are commoner. Common terms add almost nothing to a ranking but make the database score most rows."""
    ranked = sorted(phrases, key=lambda p: rarity[p])
    return [p for p in ranked if rarity[p] <= common][:MAX_KEYWORD_TERMS] or ranked[:1]


def exact_cap(limit: int, size: int, most: int) -> int:
    """Most candidates worth scoring exactly rather than searching HNSW with a filter, over `size` records.

    Exact scoring reads each candidate's vector (a few microseconds each); a filtered HNSW search checks about
    limit / selectivity candidates against the filter (also a few microseconds each). The two cost the same
    near sqrt(limit * N) candidates, so that is the bound, capped by `most` (`exact_max_candidates`).
    """
    return min(most, max(256, int(1.3 * math.sqrt(limit * max(size, 1)))))
