"""POST /conversations and conversation search against a real `memory-spine serve` with the real model (issue 24):
a short answer turn is found through its window, results are distinct turns, `when` narrows to a session's
date, re-ingest is idempotent, DELETE /conversations/{id} removes everything it wrote."""

from __future__ import annotations

import httpx
import pytest

pytestmark = [pytest.mark.integration, pytest.mark.timeout(120)]

CONVERSATION = {
    "id": "ann-bo",
    "sessions": [
        {
            "id": "s1",
            "date": "2023-05-08T13:56:00Z",
            "turns": [
                {"id": "D1:1", "speaker": "Ann", "text": "Guess what, we finally adopted a puppy!"},
                {"id": "D1:2", "speaker": "Bo", "text": "No way! What breed is it?"},
                {"id": "D1:3", "speaker": "Ann", "text": "A corgi. We named him Biscuit."},
                {"id": "D1:4", "speaker": "Bo", "text": "I love that. My weekend was quiet, mostly gardening."},
            ],
        },
        {
            "id": "s2",
            "date": "2023-06-20T09:30:00Z",
            "turns": [
                {"id": "D2:1", "speaker": "Bo", "text": "I signed up for a pottery class on Tuesdays."},
                {"id": "D2:2", "speaker": "Ann", "text": "Show me your first bowl when it is fired!"},
                {"id": "D2:3", "speaker": "Bo", "text": "Will do. How is Biscuit settling in?", "captions": []},
            ],
        },
    ],
}


def test_conversation_ingest_and_turn_search(server):
    with httpx.Client(base_url=server.url, timeout=60) as c:
        r = c.post("/conversations", json=CONVERSATION)
        assert r.status_code == 200, r.text
        assert r.json() == {"id": "ann-bo", "turns": 7, "records": 7 + 7 + 2, "created": 16, "deleted": 0}
        again = c.post("/conversations", json=CONVERSATION).json()
        assert again["created"] == 0 and again["deleted"] == 0

        r = c.post("/search", json={"query": "What breed of dog did Ann adopt?", "conversation": "ann-bo", "limit": 5})
        hits = r.json()["results"]
        ids = [h["id"] for h in hits]
        assert len(ids) == 5 and len(set(ids)) == 5
        assert all(h["metadata"]["conversation"] == "ann-bo" and "derived" not in h["metadata"] for h in hits)
        assert "ann-bo#turn:D1:3" in ids[:3], ids  # "A corgi." through its window with "What breed is it?"

        r = c.post(
            "/search",
            json={"query": "pottery class", "conversation": "ann-bo", "when": "in June 2023", "explain": True},
        )
        body = r.json()
        assert body["time_range"]["from"] == "2023-06-01T00:00:00Z"
        assert {h["metadata"]["session"] for h in body["results"]} == {"s2"}
        assert body["results"][0]["id"] == "ann-bo#turn:D2:1" and body["plan"]["plan"] == "turns"

        bad = c.post("/conversations", json={"id": "x", "sessions": [{"turns": [{"speaker": "Ann"}]}]})
        assert bad.status_code == 422 and bad.json()["error"]["field"] == "sessions[0].turns[0].text"

        assert c.delete("/conversations/ann-bo").json() == {"deleted": 16}
        assert c.get("/stats").json()["total_memories"] == 0
