"""Conversations on every backend: POST /conversations, turn search, re-ingest and DELETE (issue 24)."""

from __future__ import annotations

import pytest

pytestmark = pytest.mark.timeout(120)

CONV = {
    "id": "c1",
    "sessions": [
        {
            "id": "s1",
            "date": "2023-05-08T13:56:00Z",
            "turns": [
                {"id": "t1", "speaker": "Ann", "text": "We adopted a puppy last week."},
                {"id": "t2", "speaker": "Bo", "text": "What breed?"},
                {"id": "t3", "speaker": "Ann", "text": "A corgi named Biscuit."},
            ],
        },
        {"id": "s2", "date": "2023-06-20T09:00:00Z", "turns": [{"speaker": "Bo", "text": "Pottery starts Tuesday."}]},
    ],
}


async def test_conversation_round_trip(client):
    r = await client.post("/conversations", json=CONV)
    assert r.status_code == 200, r.text
    assert r.json() == {"id": "c1", "turns": 4, "records": 4 + 4 + 2, "created": 10, "deleted": 0}
    assert (await client.post("/conversations", json=CONV)).json()["created"] == 0
    for mode in ("semantic", "keyword", "hybrid"):
        body = {"query": "puppy breed corgi", "conversation": "c1", "mode": mode, "limit": 10}
        hits = (await client.post("/search", json=body)).json()["results"]
        ids = [h["id"] for h in hits]
        # Keyword search cannot reach the pottery turn (no shared word, nor in its window or session).
        want = {"c1#turn:t1", "c1#turn:t2", "c1#turn:t3"} | ({"c1#turn:s2:1"} if mode != "keyword" else set())
        assert len(ids) == len(set(ids)) and set(ids) == want, (mode, ids)
        assert all("derived" not in h["metadata"] for h in hits)
    body = {"query": "pottery", "conversation": "c1", "when": "June 2023", "mode": "keyword"}
    got = (await client.post("/search", json=body)).json()
    assert [h["id"] for h in got["results"]] == ["c1#turn:s2:1"]
    shorter = {**CONV, "sessions": CONV["sessions"][:1]}
    assert (await client.post("/conversations", json=shorter)).json()["deleted"] == 3
    assert (await client.delete("/conversations/c1")).json() == {"deleted": 7}
    assert (await client.get("/stats")).json()["total_memories"] == 0
