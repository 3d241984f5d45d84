"""POST /conversations and conversation search (fake embedder, in-process): the records written, validation
(422 naming the field, nothing written), idempotent re-ingest, deletion with the derived records, and turn
ranking (derived records never results; each turn once; window evidence counts)."""

from __future__ import annotations

import copy

import pytest

from memory_spine import conversations
from memory_spine.models import ConversationIn
from memory_spine.storage.search import fuse_units

CONV = {
    "id": "c1",
    "tags": ["chat"],
    "sessions": [
        {
            "id": "s1",
            "date": "2023-05-08T13:56:00Z",
            "turns": [
                {"id": "t1", "speaker": "Ann", "text": "I adopted a puppy named Biscuit yesterday!"},
                {"id": "t2", "speaker": "Bo", "text": "Congrats! What breed?"},
                {"id": "t3", "speaker": "Ann", "text": "A corgi.", "captions": ["a photo of a small dog"]},
            ],
        },
        {
            "id": "s2",
            "date": "2023-06-01T09:00:00Z",
            "turns": [
                {"speaker": "Bo", "text": "I started pottery classes on Tuesdays."},
                {"speaker": "Ann", "text": "Nice, show me your first bowl."},
            ],
        },
    ],
}


async def post(client, body):
    return await client.post("/conversations", json=body)


async def everything(client) -> list[dict]:
    return (await client.get("/memories", params={"limit": 1000})).json()["results"]


async def test_ingest_writes_turns_windows_and_sessions(client):
    r = await post(client, CONV)
    assert r.status_code == 200, r.text
    assert r.json() == {"id": "c1", "turns": 5, "records": 5 + 5 + 2, "created": 12, "deleted": 0}
    rows = {m["id"]: m for m in await everything(client)}
    t1 = rows["c1#turn:t1"]
    assert t1["content"] == "Ann: I adopted a puppy named Biscuit yesterday!"
    assert t1["metadata"] == {"conversation": "c1", "session": "s1", "turn": "t1", "speaker": "Ann", "position": 0}
    assert t1["occurred_at"] == "2023-05-08T13:56:00.000000Z" and t1["tags"] == ["chat"]
    assert rows["c1#turn:t3"]["content"].endswith("[shares a photo of a small dog]")
    # A turn without an id is named by its session and position; `turn` is then its position.
    second = rows["c1#turn:s2:1"]
    assert second["metadata"]["turn"] == 0 and second["occurred_at"] == "2023-06-01T09:00:00.000000Z"
    window = rows["c1#turn:t2#window"]
    assert window["metadata"]["derived"] == "window" and window["metadata"]["center"] == "c1#turn:t2"
    assert window["metadata"]["turns"] == ["c1#turn:t1", "c1#turn:t2", "c1#turn:t3"]
    session = rows["c1#session:s1"]
    assert session["metadata"]["turns"] == ["c1#turn:t1", "c1#turn:t2", "c1#turn:t3"]
    assert "Bo: Congrats! What breed?" in session["content"]


async def test_reingest_is_idempotent_and_drops_what_is_gone(client, service):
    assert (await post(client, CONV)).status_code == 200
    before = {m["id"]: m for m in await everything(client)}
    again = await post(client, CONV)
    assert again.json()["created"] == 0 and again.json()["deleted"] == 0
    after = {m["id"]: m for m in await everything(client)}
    assert after.keys() == before.keys()
    assert all(after[i]["content"] == before[i]["content"] for i in after)
    shorter = copy.deepcopy(CONV)
    shorter["sessions"] = shorter["sessions"][:1]
    r = await post(client, shorter)
    assert r.json()["deleted"] == 2 + 2 + 1  # session s2's turns, windows and session record
    assert len(await everything(client)) == 3 + 3 + 1


@pytest.mark.parametrize(
    ("mutate", "field"),
    [
        (lambda c: c["sessions"][1]["turns"][1].pop("text"), "sessions[1].turns[1].text"),
        (lambda c: c["sessions"][1]["turns"][1].update(text="  "), "sessions[1].turns[1].text"),
        (lambda c: c["sessions"][0]["turns"][2].update(id="t1"), "sessions[0].turns[2].id"),
        (lambda c: c["sessions"][1].update(id="s1"), "sessions[1].id"),
        (lambda c: c["sessions"][1].update(date="next Tuesday-ish"), "sessions[1].date"),
        (lambda c: c["sessions"][0]["turns"][0].update(speaker=""), "sessions[0].turns[0].speaker"),
        (lambda c: c["sessions"][0].update(turns=[]), "sessions[0].turns"),
        (lambda c: c.update(sessions=[]), "sessions"),
        (lambda c: c.update(id=""), "id"),
        (lambda c: c["sessions"][0]["turns"][0].update(colour="red"), "sessions[0].turns[0].colour"),
    ],
)
async def test_bad_conversation_is_422_naming_the_field_and_writes_nothing(client, mutate, field):
    body = copy.deepcopy(CONV)
    mutate(body)
    r = await post(client, body)
    assert r.status_code == 422, r.text
    assert r.json()["error"]["field"] == field
    assert await everything(client) == []


async def test_delete_conversation_deletes_derived_records(client):
    await post(client, CONV)
    await client.post("/ingest", json={"id": "other", "content": "unrelated", "metadata": {"conversation": "c1"}})
    r = await client.delete("/conversations/c1")
    assert r.status_code == 200 and r.json() == {"deleted": 12}
    assert [m["id"] for m in await everything(client)] == ["other"]  # a record of its own, not the conversation's
    assert (await client.delete("/conversations/c1")).status_code == 404


@pytest.mark.parametrize("mode", ["semantic", "keyword", "hybrid"])
@pytest.mark.parametrize("extra", [{"conversation": "c1"}, {"granularity": "turn"}, {}, {"granularity": "record"}])
async def test_search_returns_turns_only_each_once(client, mode, extra):
    await post(client, CONV)
    r = await client.post("/search", json={"query": "Ann puppy corgi pottery", "mode": mode, "limit": 10, **extra})
    assert r.status_code == 200, r.text
    ids = [h["id"] for h in r.json()["results"]]
    assert ids and len(ids) == len(set(ids))
    assert all("#window" not in i and "#session" not in i for i in ids), ids
    if extra.get("granularity") != "record":
        assert len(ids) == 5  # every turn reachable, through its own hit or its window's


async def test_window_evidence_finds_a_short_turn(client):
    """'A corgi.' holds neither word of 'puppy breed'; the windows it shares with 'What breed?' do."""
    await post(client, CONV)
    body = {"query": "puppy breed", "mode": "keyword", "conversation": "c1", "limit": 5}
    records = [
        h["id"] for h in (await client.post("/search", json={**body, "granularity": "record"})).json()["results"]
    ]
    turns = [h["id"] for h in (await client.post("/search", json=body)).json()["results"]]
    assert "c1#turn:t3" not in records and set(records) == {"c1#turn:t1", "c1#turn:t2"}
    assert "c1#turn:t3" in turns[:3], turns


async def test_conversation_filter_keeps_other_records_out(client):
    await post(client, CONV)
    await client.post("/ingest", json={"id": "note", "content": "Ann's puppy Biscuit is a corgi"})
    r = await client.post("/search", json={"query": "corgi puppy", "conversation": "c1", "limit": 10})
    assert "note" not in [h["id"] for h in r.json()["results"]]
    r = await client.post("/search", json={"query": "corgi puppy", "conversation": "c2", "limit": 10})
    assert r.json()["results"] == []


def test_fuse_units_credits_derived_hits_to_their_turns():
    rows = {
        1: {"id": "c#turn:a", "metadata": {"conversation": "c"}},
        2: {
            "id": "c#turn:b#window",
            "metadata": {
                "conversation": "c",
                "derived": "window",
                "center": "c#turn:b",
                "turns": ["c#turn:a", "c#turn:b"],
            },
        },
    }
    got = dict(fuse_units([([(2, 0.9), (1, 0.8)], rows)], conversations.units, 10, k=10))
    assert set(got) == {"c#turn:a", "c#turn:b"}
    assert got["c#turn:a"] > got["c#turn:b"]  # its own hit (rank 2) plus half the window's (rank 1)


def test_units_for_weighs_the_named_speaker():
    row = {"id": "c#turn:a", "metadata": {"conversation": "c", "speaker": "Ann"}}
    assert conversations.units_for("What did Ann adopt?")(row) == [("c#turn:a", 1 + conversations.SPEAKER)]
    assert conversations.units_for("What did Annabel adopt?")(row) == [("c#turn:a", 1.0)]


def test_records_validate_before_building():
    body = copy.deepcopy(CONV)
    body["sessions"][0]["turns"][1]["id"] = "t1"
    with pytest.raises(Exception) as err:
        conversations.records(ConversationIn.model_validate(body), 100_000)
    assert err.value.field == "sessions[0].turns[1].id"
