"""The planner: which plan at which selectivity, the same answers as brute force, exactly `limit` results.

One corpus of 10,300 records (fake embedder at 64 dimensions, so HNSW builds in seconds) with tags of known
selectivity: `p001` 0.01 % (1 record), `p1` 1 %, `p10` 10 %, `all` 100 %, and `far` (300 records whose vectors
point away from the probe query, so HNSW never reaches them). The reference is numpy over every stored vector.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass

import numpy as np
import pytest

from memory_spine.config import Settings
from memory_spine.embedders import FakeEmbedder
from memory_spine.models import MemoryIn, MemoryRestore, SearchQuery
from memory_spine.service import MemoryService

N = 10_000
DIM = 64
VOCAB = [f"w{i}" for i in range(400)]
SELECTIVITY = {"p001": 1, "p1": 100, "p10": 1_000, "all": N}
FAR_QUERY = "w1 w2 w3"


def tags_of(i: int) -> list[str]:
    tags = ["all"]
    if i % 10 == 0:
        tags.append("p10")
    if i % 100 == 0:
        tags.append("p1")
    if i % 10_000 == 0:
        tags.append("p001")
    return tags


@dataclass
class Corpus:
    svc: MemoryService
    ids: list[str]
    tags: list[set[str]]
    vectors: np.ndarray

    def mask(self, tag: str | None) -> np.ndarray:
        return np.array([tag is None or tag in t for t in self.tags])

    def reference(self, query: str, tag: str | None, limit: int) -> tuple[list[str], np.ndarray]:
        q = self.svc.embed_query(query)
        scores = self.vectors @ q
        idx = np.flatnonzero(self.mask(tag))
        top = idx[np.argsort(-scores[idx], kind="stable")[:limit]]
        return [self.ids[i] for i in top], scores[top]

    def search(self, query: str, tag: str | None, limit: int, exact_max: int) -> dict:
        self.svc.planner.exact_max = exact_max
        return self.svc.search(
            SearchQuery(query=query, limit=limit, tags=[tag] if tag else None, mode="semantic", explain=True)
        )


def small_settings(path, **kw) -> Settings:
    base = {"embedder": "fake", "purge_seconds": 3600, "index_save_seconds": 3600, "hnsw_ef_construction": 100}
    return Settings(data_dir=path, **{**base, **kw})


@pytest.fixture(scope="module")
def corpus(tmp_path_factory) -> Corpus:
    rng = np.random.default_rng(7)
    svc = MemoryService.open(small_settings(tmp_path_factory.mktemp("planner")), embedder=FakeEmbedder(dim=DIM))
    for start in range(0, N, 1000):
        svc.ingest_batch(
            [
                MemoryIn(id=f"m{i}", content=" ".join(rng.choice(VOCAB, 8)), tags=tags_of(i))
                for i in range(start, start + 1000)
            ]
        )
    # `far`: vectors pointing away from FAR_QUERY, written with restore() so we choose them.
    away = -svc.embed_query(FAR_QUERY)
    far_vecs = away + 0.3 * rng.standard_normal((300, DIM)).astype(np.float32)
    far_vecs /= np.linalg.norm(far_vecs, axis=1, keepdims=True)
    svc.restore([MemoryRestore(id=f"far{i}", content=f"far away {i}", tags=["far"]) for i in range(300)], far_vecs)
    ids, tags, vecs = [], [], []
    for row in svc.dump(vectors=True):
        ids.append(row["id"])
        tags.append(set(row["tags"]))
        vecs.append(np.frombuffer(row["vector"], dtype=np.float32))
    yield Corpus(svc, ids, tags, np.vstack(vecs))
    svc.close()


def queries(n: int, seed: int = 1) -> list[str]:
    rng = np.random.default_rng(seed)
    return [" ".join(rng.choice(VOCAB, 3)) for _ in range(n)]


# -- which plan ------------------------------------------------------------------------------------------------
@pytest.mark.parametrize(
    ("tag", "exact_max", "plan"),
    [
        (None, 4096, "hnsw"),
        ("p001", 4096, "exact"),
        ("p1", 4096, "exact"),
        ("p10", 4096, "exact"),
        ("all", 4096, "hnsw_filter"),
        ("p001", 0, "hnsw_filter"),
        ("p1", 50, "hnsw_filter"),
        ("p10", 500, "hnsw_filter"),
        ("p10", 1000, "exact"),  # the bound is inclusive
    ],
)
def test_plan_follows_the_number_of_candidates(corpus, tag, exact_max, plan):
    out = corpus.search("w5 w6 w7", tag, 10, exact_max)
    if plan == "exact" and SELECTIVITY[tag] > corpus.svc.planner.exact_cap(10):
        plan = "hnsw_filter"  # exact_max bounds the exact plan; the size-aware cap may bound it lower
    assert out["plan"]["plan"] == plan
    if plan == "exact":
        assert out["plan"]["candidates"] == SELECTIVITY[tag]
    if plan == "hnsw_filter":
        assert out["plan"]["k"][0] >= 10


def test_exact_cap_grows_with_limit_and_size_within_its_bounds(corpus):
    planner = corpus.svc.planner
    planner.exact_max = 100_000
    assert planner.exact_cap(10) < planner.exact_cap(100)  # sqrt(limit * N): where the two plans cost alike
    assert planner.exact_cap(1) >= 256
    planner.exact_max = 300
    assert planner.exact_cap(100) == 300


def test_settings_reach_the_planner(tmp_path):
    with MemoryService.open(small_settings(tmp_path, exact_max_candidates=3), embedder=FakeEmbedder(dim=DIM)) as svc:
        svc.ingest_batch([MemoryIn(content=f"w{i} w{i + 1}", tags=["t"]) for i in range(5)])
        assert svc.planner.exact_max == 3
        out = svc.search(SearchQuery(query="w1", tags=["t"], explain=True, mode="semantic"))
        # Too many candidates for the bound: the broad-filter path (its rounds of k), which in a store this small
        # (under the index's exact_below) scores every vector exactly.
        assert out["plan"]["plan"] == "exact" and out["plan"]["k"]


# -- same answers as brute force ---------------------------------------------------------------------------------
@pytest.mark.parametrize(
    ("tag", "exact_max"),
    [("p001", 4096), ("p1", 4096), ("p10", 4096), ("all", 100_000), ("p1", 0), ("p10", 0), ("all", 0), (None, 0)],
)
def test_same_answers_as_brute_force(corpus, tag, exact_max):
    recalls = []
    for query in queries(15):
        out = corpus.search(query, tag, 10, exact_max)
        ref_ids, ref_scores = corpus.reference(query, tag, 10)
        got = [h["id"] for h in out["results"]]
        scores = np.array([h["score"] for h in out["results"]])
        assert len(got) == len(ref_ids)
        assert all(np.diff(scores) <= 1e-6), "best first"
        # Every hit carries its true cosine and passes the filter, whichever plan found it.
        q = corpus.svc.embed_query(query)
        for h in out["results"]:
            i = corpus.ids.index(h["id"])
            assert h["score"] == pytest.approx(float(corpus.vectors[i] @ q), abs=1e-5)
            assert tag is None or tag in h["tags"]
        if out["plan"]["plan"] == "exact":
            assert got == ref_ids
            np.testing.assert_allclose(scores, ref_scores, atol=1e-5)
        recalls.append(len(set(got) & set(ref_ids)) / len(ref_ids))
    assert np.mean(recalls) >= 0.95, recalls


def test_filter_whose_matches_hnsw_cannot_reach_falls_back_to_exact(corpus):
    out = corpus.search(FAR_QUERY, "far", 10, 0)
    assert out["plan"]["plan"].startswith("hnsw_filter")  # then "+exact", or HNSW widened to the whole index
    k = out["plan"]["k"]
    assert len(k) >= 2 and k == sorted(k) and len(set(k)) == len(k), "k widened each round"
    ref_ids, _ = corpus.reference(FAR_QUERY, "far", 10)
    assert [h["id"] for h in out["results"]] == ref_ids


# -- exactly `limit` ---------------------------------------------------------------------------------------------
@pytest.mark.parametrize("tag", ["p001", "p1", "p10", "all"])
@pytest.mark.parametrize("exact_max", [100_000, 0])
@pytest.mark.parametrize("limit", [1, 10, 100])
def test_exactly_limit_results_at_every_selectivity(corpus, tag, exact_max, limit):
    for query in queries(3, seed=limit):
        out = corpus.search(query, tag, limit, exact_max)
        assert len(out["results"]) == min(limit, SELECTIVITY[tag]), out["plan"]
        assert len({h["id"] for h in out["results"]}) == len(out["results"])


def test_expired_neighbours_do_not_shorten_results(tmp_path):
    """The index still holds expired (not yet purged) vectors; results skip them and stay `limit` long."""
    with MemoryService.open(small_settings(tmp_path), embedder=FakeEmbedder(dim=DIM)) as svc:
        rng = np.random.default_rng(3)
        svc.ingest_batch([MemoryIn(id=f"live{i}", content=" ".join(rng.choice(VOCAB, 8))) for i in range(1000)])
        svc.ingest_batch([MemoryIn(id=f"old{i}", content=f"{FAR_QUERY} {i}", expires_at=1.0) for i in range(300)])
        assert len(svc.index) == 1300
        for tag_filter in (None, ["nope"]):
            out = svc.search(
                SearchQuery(query=FAR_QUERY, limit=10, tags_none=tag_filter, explain=True, mode="semantic")
            )
            assert len(out["results"]) == 10, out["plan"]
            assert all(h["id"].startswith("live") for h in out["results"])
        vectors = {r["id"]: np.frombuffer(r["vector"], dtype=np.float32) for r in svc.dump(vectors=True)}
        q = svc.embed_query(FAR_QUERY)
        ref = sorted(vectors, key=lambda i: -float(vectors[i] @ q))[:10]
        assert [h["id"] for h in out["results"]] == ref


# -- key, keyword, hybrid plans ------------------------------------------------------------------------------------
@pytest.mark.parametrize("mode", ["semantic", "keyword", "hybrid"])
def test_exact_key_queries_keep_their_answer_in_every_mode(service, mode):
    for i, content in enumerate(
        ["checkpoint:wf-1:fetch", "checkpoint:wf-12:fetch", "checkpoint:wf-1:parse", "dedup:abc sent the mail"]
    ):
        service.ingest(MemoryIn(id=f"k{i}", content=content))
    service.ingest(MemoryIn(content="checkpoint wf-1 fetch parse dedup abc, in plain words"))

    def run(query: str) -> tuple[list[str], dict]:
        out = service.search(SearchQuery(query=query, mode=mode, explain=True))
        return [h["id"] for h in out["results"]], out["plan"]

    ids, plan = run("checkpoint:wf-1")
    assert ids == ["k2", "k0"] and plan["plan"] == "exact_key" and plan["mode"] == mode
    assert run("checkpoint:wf-1:fetch")[0] == ["k0"]
    assert run("dedup:abc")[0] == ["k3"]
    ids, plan = run("dedup:nope")
    assert ids == [] and plan["plan"] == "exact_key"  # never a semantic neighbour of the key
    hits = service.search(SearchQuery(query="checkpoint:wf-1", mode=mode))["results"]
    # No vector scored: no similarity; the key match ranks first.
    assert hits and all(h["score"] is None and h["rank_score"] == 1.0 for h in hits)


def test_keyword_and_hybrid_plans_are_explained(service):
    service.ingest_batch([MemoryIn(content=f"note number {i} about sqlite", tags=["t"]) for i in range(20)])
    out = service.search(SearchQuery(query="sqlite", mode="keyword", explain=True, limit=5))
    assert out["plan"]["plan"] == "keyword" and len(out["results"]) == 5
    assert all(0 < h["rank_score"] < 1 and h["score"] is None for h in out["results"])
    out = service.search(SearchQuery(query="sqlite note", mode="hybrid", explain=True, tags=["t"], limit=5))
    assert out["plan"]["plan"] == "hybrid" and out["plan"]["semantic"]["plan"] == "exact"
    assert out["plan"]["keyword_hits"] == 20 and len(out["results"]) == 5
    assert "plan" not in service.search(SearchQuery(query="sqlite"))


def test_default_mode_comes_from_settings(tmp_path):
    with MemoryService.open(small_settings(tmp_path, default_mode="keyword")) as svc:
        svc.ingest(MemoryIn(content="hello there"))
        assert svc.search(SearchQuery(query="hello", explain=True))["plan"]["plan"] == "keyword"


def test_the_plan_is_logged(service, caplog):
    service.ingest(MemoryIn(content="hello world", tags=["t"]))
    with caplog.at_level(logging.DEBUG, logger="memory_spine.service"):
        service.search(SearchQuery(query="hello", tags=["t"], mode="semantic"))
    logged = [r for r in caplog.records if getattr(r, "event", None) == "search"]
    assert logged and logged[-1].plan == "exact" and logged[-1].mode == "semantic"


async def test_explain_over_http(client):
    await client.post("/ingest", json={"content": "hello world", "tags": ["t"]})
    r = await client.post("/search", json={"query": "hello", "tags": ["t"], "explain": True, "mode": "semantic"})
    assert r.json()["plan"]["plan"] == "exact" and r.json()["plan"]["candidates"] == 1
    r = await client.post("/search", json={"query": "hello"})
    assert "plan" not in r.json()


# -- hybrid finds what semantic misses ------------------------------------------------------------------------------
class CodeBlindEmbedder(FakeEmbedder):
    """The fake embedder, seeing every token that holds digits as the same word: a stand-in for how a sentence
    model smears rare codes (real model, identifier queries: hit@1 0.70 semantic, 0.98 hybrid; see
    benchmarks/quality_modes.py)."""

    def embed(self, texts):
        blind = [" ".join("code" if any(c.isdigit() for c in w) else w for w in t.split()) for t in texts]
        return super().embed(blind)


def test_hybrid_finds_an_exact_identifier_that_semantic_misses(tmp_path):
    with MemoryService.open(small_settings(tmp_path), embedder=CodeBlindEmbedder(dim=DIM)) as svc:
        rng = np.random.default_rng(11)
        svc.ingest_batch([MemoryIn(content=f"error E{1000 + i} " + " ".join(rng.choice(VOCAB, 6))) for i in range(40)])
        target = svc.ingest(MemoryIn(content="deploy of the billing job failed with E4471 on node three"))["id"]

        def top(mode: str) -> list[str]:
            return [h["id"] for h in svc.search(SearchQuery(query="E4471", mode=mode, limit=5))["results"]]

        assert target not in top("semantic")
        assert top("keyword") == [target]
        assert target in top("hybrid")[:2]
