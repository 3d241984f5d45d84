"""Namespaces over HTTP, on every backend (`sqlite`, `postgres`): isolation, subtrees, precedence, bad names.

The same id, exact key and claim in two namespaces are two things; a search names one namespace, several, or a
subtree (`team/`), and every hit says its namespace; body beats `?namespace=` beats the X-Memory-Namespace header
beats `default`; an unknown namespace reads empty; a malformed one is a 422 naming `namespace`. The grammar is
also checked by a property test (`MEMORY_SPINE_NAMESPACE_EXAMPLES`, default 200; a long run:
`MEMORY_SPINE_NAMESPACE_EXAMPLES=20000 pytest tests/contracts/test_namespaces.py -k grammar`).
"""

from __future__ import annotations

import os

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from memory_spine.errors import InvalidInput
from memory_spine.namespaces import selector, validate

pytestmark = pytest.mark.timeout(120)
EXAMPLES = int(os.environ.get("MEMORY_SPINE_NAMESPACE_EXAMPLES", "200"))
H = "X-Memory-Namespace"


async def put(client, ns: str | None = None, **body) -> dict:
    if ns is not None:
        body["namespace"] = ns
    r = await client.post("/ingest", json=body)
    assert r.status_code == 200, r.text
    return r.json()


async def found(client, query: str, **body) -> list[dict]:
    r = await client.post("/search", json={"query": query, "limit": 20, **body})
    assert r.status_code == 200, r.text
    return r.json()["results"]


async def test_same_id_key_and_claim_in_two_namespaces(client, backend):
    await put(client, "team/a", id="r1", content="alpha plan", key="plan:q3")
    await put(client, "team/b", id="r1", content="beta plan", key="plan:q3")
    a = (await client.get("/memories/r1", params={"namespace": "team/a"})).json()
    b = (await client.get("/memories/r1", headers={H: "team/b"})).json()
    assert (a["content"], a["namespace"]) == ("alpha plan", "team/a")
    assert (b["content"], b["namespace"]) == ("beta plan", "team/b")
    assert (await client.get("/memories/r1")).status_code == 404, "default holds no r1"
    assert (await client.get("/keys/plan:q3", params={"namespace": "team/b"})).json()["content"] == "beta plan"
    hits = await found(client, "plan:q3", namespace="team/a")
    assert [h["content"] for h in hits] == ["alpha plan"]
    # A write to one does not touch the other; a delete neither.
    r = await client.patch("/memories/r1", params={"namespace": "team/a"}, json={"tags": ["x"]})
    assert r.status_code == 200 and r.json()["tags"] == ["x"]
    assert (await client.get("/memories/r1", params={"namespace": "team/b"})).json()["tags"] == []
    assert (await client.delete("/memories/r1", params={"namespace": "team/a"})).status_code == 200
    assert (await client.get("/memories/r1", params={"namespace": "team/b"})).status_code == 200
    # Claims: the same key claimed in two namespaces, each released with its own token.
    c1 = await client.post("/claims", json={"key": "job:1", "namespace": "team/a"})
    c2 = await client.post("/claims", json={"key": "job:1"}, headers={H: "team/b"})
    assert c1.status_code == 201 and c2.status_code == 201, (c1.text, c2.text)
    assert c1.json()["namespace"] == "team/a" and c2.json()["namespace"] == "team/b"
    assert (await client.get("/claims/job:1")).status_code == 404
    wrong = await client.delete("/claims/job:1", params={"namespace": "team/b"}, headers={"X-Lease-Token": "nope"})
    assert wrong.status_code == 409
    ok = await client.delete(
        "/claims/job:1", params={"namespace": "team/a"}, headers={"X-Lease-Token": c1.json()["lease_token"]}
    )
    assert ok.status_code == 200
    assert (await client.get("/claims/job:1", params={"namespace": "team/b"})).status_code == 200
    # A fenced write checks the claim of its own namespace.
    fenced = {"key": "job:1", "token": c2.json()["fence"]}
    assert (await client.post("/ingest", json={"content": "x", "namespace": "team/b", "fence": fenced})).is_success
    assert (
        await client.post("/ingest", json={"content": "x", "namespace": "team/a", "fence": fenced})
    ).status_code == 409


async def test_lists_stats_and_delete_by_filter_stay_in_their_namespace(client, backend):
    for ns in ("default", "ops", "_kit/default"):
        for i in range(3):
            await put(client, ns, id=f"{ns}-{i}", content=f"note {i}", tags=["t"], key=f"k:{i}")
    listed = (await client.get("/memories", params={"tags": "t"})).json()["results"]
    assert {r["namespace"] for r in listed} == {"default"} and len(listed) == 3
    assert len((await client.get("/memories", headers={H: "ops"})).json()["results"]) == 3
    assert {r["namespace"] for r in (await client.get("/keys", params={"prefix": "k:"})).json()["results"]} == {
        "default"
    }
    stats = (await client.get("/stats")).json()
    assert stats["namespace"] == "default" and stats["total_memories"] == 3 and stats["tags"] == {"t": 3}
    assert stats["namespaces"] == {"_kit/default": 3, "default": 3, "ops": 3}
    assert (await client.get("/stats", params={"namespace": "ops"})).json()["total_memories"] == 3
    listing = (await client.get("/namespaces")).json()["namespaces"]
    assert {n["namespace"]: n["memories"] for n in listing} == stats["namespaces"]
    dry = await client.request("DELETE", "/memories", json={"tags": ["t"], "dry_run": True, "namespace": "ops"})
    assert dry.json() == {"would_delete": 3}
    gone = await client.request("DELETE", "/memories", json={"tags": ["t"]}, headers={H: "ops"})
    assert gone.json() == {"deleted": 3}
    assert (await client.get("/stats")).json()["namespaces"] == {"_kit/default": 3, "default": 3}
    refused = await client.request("DELETE", "/memories", json={"tags": ["t"], "namespace": ["ops", "default"]})
    assert refused.status_code == 422 and refused.json()["error"]["field"] == "namespace"
    # An unknown namespace reads empty, not 404.
    assert (await client.get("/memories", params={"namespace": "nobody/here"})).json()["results"] == []
    assert await found(client, "note", namespace="nobody/here") == []
    assert (await client.get("/stats", params={"namespace": "nobody"})).json()["total_memories"] == 0


@pytest.mark.parametrize("mode", ["semantic", "keyword", "hybrid"])
async def test_search_several_namespaces_and_subtrees(client, backend, mode):
    for ns in ("team", "team/a", "team/a/x", "team/b", "teams", "other"):
        await put(client, ns, content=f"incident report from {ns}", id="same")
    names = lambda hits: sorted(h["namespace"] for h in hits)  # noqa: E731
    q = "incident report"
    assert names(await found(client, q, mode=mode)) == []
    assert names(await found(client, q, mode=mode, namespace="team/a")) == ["team/a"]
    assert names(await found(client, q, mode=mode, namespace="team/")) == ["team", "team/a", "team/a/x", "team/b"]
    assert names(await found(client, q, mode=mode, namespace=["team/a/", "other"])) == ["other", "team/a", "team/a/x"]
    assert names(await found(client, q, mode=mode, namespace=["teams", "team/b"])) == ["team/b", "teams"]
    # With a filter too, and with the planner's exact-key path.
    assert names(await found(client, q, mode=mode, namespace="team/", where={"nothing": 1})) == []
    await put(client, "team/b", content="x", key="dedup:7")
    await put(client, "other", content="y", key="dedup:7")
    await put(client, "default", content="z", key="dedup:7")
    keyed = await found(client, "dedup:7", namespace=["team/", "other"])
    assert names(keyed) == ["other", "team/b"]


async def test_precedence_body_query_header_default(client, backend):
    r = await client.post(
        "/ingest?namespace=q", json={"content": "a", "id": "p", "namespace": "body"}, headers={H: "h"}
    )
    assert r.status_code == 200
    await put(client, None, content="b", id="p")
    await client.post("/ingest?namespace=q", json={"content": "c", "id": "p"}, headers={H: "h"})
    await client.post("/ingest", json={"content": "d", "id": "p"}, headers={H: "h"})
    got = {
        ns: (await client.get("/memories/p", params={"namespace": ns})).json()["content"] for ns in ("body", "q", "h")
    }
    assert got == {"body": "a", "q": "c", "h": "d"}
    assert (await client.get("/memories/p")).json()["content"] == "b"
    # query beats header on reads; body beats both in a search.
    assert (await client.get("/memories/p", params={"namespace": "q"}, headers={H: "h"})).json()["content"] == "c"
    hits = await found(client, "anything", namespace="body", mode="keyword")
    assert hits == [] or {h["namespace"] for h in hits} == {"body"}
    r = await client.post(
        "/search?namespace=q", json={"query": "c", "mode": "keyword", "namespace": "h"}, headers={H: "x"}
    )
    assert {h["namespace"] for h in r.json()["results"]} <= {"h"}
    # A batch: each record's own, else the batch's, else the query's.
    r = await client.post(
        "/ingest/batch?namespace=q",
        json={
            "namespace": "bt",
            "records": [{"content": "e", "id": "b1"}, {"content": "f", "id": "b1", "namespace": "o"}],
        },
    )
    assert r.status_code == 200, r.text
    assert (await client.get("/memories/b1", params={"namespace": "bt"})).json()["content"] == "e"
    assert (await client.get("/memories/b1", params={"namespace": "o"})).json()["content"] == "f"


@pytest.mark.parametrize(
    "bad",
    ["", "/", "a//b", "a/", "/a", "..", "a/../b", "./a", "a b", "a\x00b", "tab\there", "x" * 256, "s" * 65, "é"],
)
async def test_malformed_namespace_is_a_422_naming_it(client, backend, bad):
    calls = [
        lambda: client.post("/ingest", json={"content": "x", "namespace": bad}),
        lambda: client.get("/memories", params={"namespace": bad}),
        lambda: client.post("/claims", json={"key": "k", "namespace": bad}),
        lambda: client.get("/stats", params={"namespace": bad}),
    ]
    if bad != "a/":  # in a search, `a/` is the subtree under `a`
        calls.append(lambda: client.post("/search", json={"query": "x", "namespace": bad}))
    if bad.isprintable() and bad.isascii():  # a header cannot carry control characters or non-ASCII
        calls.append(lambda: client.get("/memories/x", headers={H: bad}))
    for call in calls:
        r = await call()
        assert r.status_code == 422, (bad, r.status_code, r.text)
        body = r.json()
        assert body["error"]["field"].startswith("namespace"), body
        assert body["errors"][0]["field"].startswith("namespace"), body
    if bad != "a/":
        r = await client.post("/search", json={"query": "x", "namespace": ["ok", bad]})
        assert r.status_code == 422 and r.json()["error"]["field"] == "namespace[1]"


_SEGMENT = st.text(st.sampled_from("abcXYZ019_-.:"), min_size=1, max_size=8).filter(lambda s: s not in (".", ".."))
_GOOD = st.lists(_SEGMENT, min_size=1, max_size=5).map("/".join)
_ANY = st.text(st.characters(codec="utf-8"), max_size=40) | _GOOD | _GOOD.map(lambda s: s + "//x")


def _expected_ok(value: str) -> bool:
    if not value or len(value) > 255:
        return False
    allowed = set("abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789_-.:")
    return all(seg and seg not in (".", "..") and len(seg) <= 64 and set(seg) <= allowed for seg in value.split("/"))


@settings(max_examples=EXAMPLES, deadline=None, suppress_health_check=list(HealthCheck))
@given(_ANY)
def test_grammar_property(value):
    """validate() accepts exactly the grammar, and a refusal names the field; selector() agrees on subtrees."""
    try:
        assert validate(value) == value
        ok = True
    except InvalidInput as exc:
        assert exc.field == "namespace"
        ok = False
    assert ok == _expected_ok(value), value
    if ok:
        sel = selector(value + "/")
        assert sel.matches(value) and sel.matches(value + "/x") and not sel.matches(value + "x")


def test_a_postgres_database_from_before_namespaces_migrates_in_place(pg_cluster, tmp_path, monkeypatch):
    """Migrations 1-3 only (the schema before namespaces), a record and a claim written as then; opening the
    service applies the namespace migration: both land in `default`, and the same id can live elsewhere."""
    import psycopg

    from memory_spine.config import Settings
    from memory_spine.embedders import FakeEmbedder
    from memory_spine.models import MemoryIn
    from memory_spine.service import MemoryService
    from memory_spine.storage import pg_schema

    from .conftest import DIM, postgres_or_skip

    cluster = postgres_or_skip(pg_cluster)
    url = cluster.create_database("before_namespaces")
    try:
        with psycopg.connect(url, autocommit=True) as conn:
            monkeypatch.setattr(pg_schema, "MIGRATIONS", pg_schema.MIGRATIONS[:3])
            pg_schema.migrate(conn, dim=DIM, hnsw_m=16, hnsw_ef_construction=64)
            monkeypatch.undo()
            vector = "[" + ",".join(["0.125"] * DIM) + "]"
            conn.execute(
                "INSERT INTO memories (id, content, created_at, updated_at, version, embedding)"
                " VALUES ('old', 'an old note', now(), now(), nextval('memory_versions'), %s::vector)",
                (vector,),
            )
            conn.execute(
                "INSERT INTO claims (key, holder, acquired_at, expires_at, fence, token_hash)"
                " VALUES ('job:1', 'w1', now(), now() + interval '1 hour', 1, 'h')"
            )
        settings = Settings(database=url, data_dir=tmp_path, embedder="fake")
        with MemoryService.open(settings, embedder=FakeEmbedder(dim=DIM)) as svc:
            assert svc.get("old")["namespace"] == "default"
            assert svc.get_claim("job:1")["namespace"] == "default"
            svc.ingest(MemoryIn(id="old", content="another", namespace="team/x"))
            assert svc.get("old")["content"] == "an old note" and svc.get("old", "team/x")["content"] == "another"
    finally:
        cluster.drop_database(url)
