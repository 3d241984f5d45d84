"""What a search hit's two scores mean, on every backend: `score` is the cosine similarity of the query's and the
record's embeddings wherever a vector was scored (hybrid too, keyword-only hits included), `rank_score` the
mode's own order, and `min_score` filters on the similarity in every mode.

The service runs with the fake embedder at 384 dimensions, where unrelated texts sit near 0 (the spread of a
random pair is ~0.05), so a 0.3 cut separates related from unrelated records by a wide margin.
"""

from __future__ import annotations

import numpy as np
import pytest

from memory_spine.embedders import FakeEmbedder

pytestmark = pytest.mark.timeout(120)

DIM = 384
# Records a workflow kit writes beside users' memories: dedup markers, traces, checkpoints (none shares a word
# with the cake query below).
KIT_LIKE = [
    *(f"dedup:{i:08x}c0ffee action=notify status=done attempt={i}" for i in range(8)),
    *(
        f'{{"trace_id": "{i:032x}", "span": "step {i}", "kind": "llm", "duration_ms": {40 + i}, "status": "ok"}}'
        for i in range(8)
    ),
    *(f"checkpoint:wf-{i}:fetch" for i in range(4)),
]
CAKES = [
    "chocolate cake recipe: melt the chocolate with butter, fold in flour and eggs",
    "a lemon cake recipe for a rainy afternoon",
    "grandmother's chocolate cake, baked every birthday",
]


@pytest.fixture
def service(settings):
    from memory_spine.service import MemoryService

    svc = MemoryService.open(settings, embedder=FakeEmbedder(dim=DIM))
    yield svc
    svc.close()


def cosine(text_a: str, text_b: str) -> float:
    a, b = FakeEmbedder(dim=DIM).embed([text_a, text_b])
    return float(a @ b)


async def search(client, **body) -> list[dict]:
    r = await client.post("/search", json=body)
    assert r.status_code == 200, r.text
    return r.json()


async def test_hybrid_scores_are_the_cosine_of_query_and_record(client):
    # 300 records the query's common words find by meaning, and a few only its rare word finds: the keyword
    # list brings records the semantic list (30 deep) never scored into the fused list.
    records = [{"id": f"m{i}", "content": f"routine maintenance log entry number {i}"} for i in range(300)]
    records += [
        {"id": f"z{i}", "content": f"zebra crossing {i} painted by the night shift on an unlit street"}
        for i in range(3)
    ]
    assert (await client.post("/ingest/batch", json={"records": records})).status_code == 200
    query = "routine maintenance zebra"
    out = await search(client, query=query, mode="hybrid", limit=10, explain=True)
    hits = out["results"]
    assert len(hits) == 10 and out["plan"]["keyword_only_scored"] > 0
    semantic_list = {h["id"] for h in (await search(client, query=query, mode="semantic", limit=30))["results"]}
    assert {h["id"] for h in hits} - semantic_list, "some fused hits only the keyword list found"
    for h in hits:
        assert h["score"] == pytest.approx(cosine(query, h["content"]), abs=1e-5), h["id"]
    ranks = [h["rank_score"] for h in hits]
    assert ranks == sorted(ranks, reverse=True) and 0 < ranks[-1] <= ranks[0] <= 1
    # The similarity is not the order: a fused list is not sorted by it.
    assert [h["score"] for h in hits] != sorted((h["score"] for h in hits), reverse=True)

    sem = (await search(client, query=query, mode="semantic", limit=5))["results"]
    assert all(h["score"] == h["rank_score"] == pytest.approx(cosine(query, h["content"]), abs=1e-5) for h in sem)


async def test_min_score_removes_kit_like_records_in_hybrid(client):
    records = [{"content": c} for c in CAKES + KIT_LIKE]
    assert (await client.post("/ingest/batch", json={"records": records})).status_code == 200
    query = "chocolate cake recipe"
    everything = (await search(client, query=query, mode="hybrid", limit=10))["results"]
    kit = [h for h in everything if h["content"] not in CAKES]
    # What the issue saw: a fused rank score puts unrelated records well above 0.3 ...
    assert kit and max(h["rank_score"] for h in kit) > 0.3
    # ... while their similarity says they are unrelated.
    assert all(h["score"] < 0.3 for h in kit)
    kept = (await search(client, query=query, mode="hybrid", limit=10, min_score=0.3))["results"]
    assert sorted(h["content"] for h in kept) == sorted(CAKES)
    assert all(h["score"] >= 0.3 for h in kept)
    # min_score drops before the cut to `limit`: the best two that pass, not the passing part of the best two.
    two = (await search(client, query=query, mode="hybrid", limit=2, min_score=0.3))["results"]
    assert [h["id"] for h in two] == [h["id"] for h in kept[:2]]
    # The default mode is hybrid: the same without naming it.
    assert [h["id"] for h in (await search(client, query=query, min_score=0.3))["results"]] == [h["id"] for h in kept]


async def test_keyword_scores_similarity_only_when_min_score_asks(client):
    records = [{"content": c} for c in CAKES + KIT_LIKE]
    records.append({"content": "recipe card template: status=draft attempt=1"})
    assert (await client.post("/ingest/batch", json={"records": records})).status_code == 200
    plain = (await search(client, query="recipe", mode="keyword", limit=10))["results"]
    assert len(plain) == 3 and all(h["score"] is None and 0 < h["rank_score"] < 1 for h in plain)
    kept = (await search(client, query="recipe", mode="keyword", limit=10, min_score=0.3))["results"]
    assert {h["content"] for h in kept} == {h["content"] for h in plain if cosine("recipe", h["content"]) >= 0.3}
    assert len(kept) < len(plain)
    for h in kept:
        assert h["score"] == pytest.approx(cosine("recipe", h["content"]), abs=1e-5)


async def test_exact_key_answers_carry_no_similarity(client):
    await client.post("/ingest", json={"content": "checkpoint:wf-1:fetch"})
    for mode in ("semantic", "keyword", "hybrid"):
        hits = (await search(client, query="checkpoint:wf-1", mode=mode, min_score=0.99))["results"]
        assert [(h["score"], h["rank_score"]) for h in hits] == [(None, 1.0)]


def test_fake_embedder_spread_is_what_the_cut_assumes():
    # Guards the module's premise: unrelated kit-like texts sit far below 0.3, related ones above it.
    assert max(abs(cosine("chocolate cake recipe", k)) for k in KIT_LIKE) < 0.2
    assert min(cosine("chocolate cake recipe", c) for c in CAKES) > 0.3
    assert np.isclose(cosine("chocolate cake recipe", "chocolate cake recipe"), 1.0)


async def test_a_min_score_that_is_no_number_is_refused(client):
    for bad in ("NaN", "Infinity", "-Infinity"):
        body = '{"query": "cake", "min_score": ' + bad + "}"
        r = await client.post("/search", content=body, headers={"content-type": "application/json"})
        assert r.status_code == 422 and r.json()["error"]["field"] == "min_score", (bad, r.text)
