"""MemorySpineStore (LangGraph's BaseStore) against a real `memory-spine serve` process with the real model.

LangGraph ships no conformance suite for stores, so these are the relevant cases of LangGraph's own store tests,
ported: `libs/checkpoint/tests/test_store.py` (list_namespaces, invalid namespaces, semantic search with updates,
filters, pagination, index fields, non-ASCII) and the backend tests in `libs/checkpoint-sqlite/tests/test_store.py`
(batch order and batch ops, basic ops, namespace segment boundaries, literal metacharacters, case). The cases
tied to InMemoryStore's internals (AsyncBatchedBaseStore's queue, `get_text_at_path`, the SQL text) are not
ported. Where LangGraph's tests lean on their character-count embeddings, the port says how it differs. Plus TTL
(expiry, refresh on read), the sync methods from a thread, a graph using the store, and the README example.
"""

from __future__ import annotations

import asyncio
import threading
import time
import uuid
from collections.abc import Iterator
from typing import Any

import httpx
import pytest
from langgraph.store.base import (
    GetOp,
    InvalidNamespaceError,
    Item,
    ListNamespacesOp,
    MatchCondition,
    PutOp,
    SearchOp,
)

from workflow_kit import MemoryClient
from workflow_kit.langgraph_store import MemorySpineStore

pytestmark = pytest.mark.integration


def make_store(module_server, **kw: Any) -> MemorySpineStore:
    return MemorySpineStore(module_server.url, prefix=f"t{uuid.uuid4().hex[:12]}", **kw)


def wipe(module_server, store: MemorySpineStore) -> None:
    """Delete every record in the store's namespaces (plain sync requests: callable with or without a running
    loop)."""
    listed = httpx.get(f"{module_server.url}/namespaces").json()["namespaces"]
    for name in (n["namespace"] for n in listed if n["namespace"].startswith(f"{store._layout.prefix}/")):
        resp = httpx.request("DELETE", f"{module_server.url}/memories", json={"tags": ["langgraph"], "namespace": name})
        resp.raise_for_status()


@pytest.fixture
def store(module_server) -> Iterator[MemorySpineStore]:
    s = make_store(module_server)
    yield s
    wipe(module_server, s)
    s.close()


# -- libs/checkpoint/tests/test_store.py: list_namespaces --------------------------------------------------------


def test_list_namespaces_basic(store) -> None:
    namespaces = [
        ("a", "b", "c"),
        ("a", "b", "d", "e"),
        ("a", "b", "d", "i"),
        ("a", "b", "f"),
        ("a", "c", "f"),
        ("b", "a", "f"),
        ("users", "123"),
        ("users", "456", "settings"),
        ("admin", "users", "789"),
    ]
    for i, ns in enumerate(namespaces):
        store.put(namespace=ns, key=f"id_{i}", value={"data": f"value_{i:02d}"})

    assert sorted(store.list_namespaces(prefix=("a", "b"))) == [
        ("a", "b", "c"),
        ("a", "b", "d", "e"),
        ("a", "b", "d", "i"),
        ("a", "b", "f"),
    ]
    assert sorted(store.list_namespaces(suffix=("f",))) == [("a", "b", "f"), ("a", "c", "f"), ("b", "a", "f")]
    assert sorted(store.list_namespaces(prefix=("a",), suffix=("f",))) == [("a", "b", "f"), ("a", "c", "f")]
    assert sorted(store.list_namespaces(prefix=("a", "b"), max_depth=3)) == [
        ("a", "b", "c"),
        ("a", "b", "d"),
        ("a", "b", "f"),
    ]
    assert store.list_namespaces(prefix=("a", "b"), limit=2) == [("a", "b", "c"), ("a", "b", "d", "e")]
    assert store.list_namespaces(prefix=("a", "b"), offset=2) == [("a", "b", "d", "i"), ("a", "b", "f")]
    assert sorted(store.list_namespaces(prefix=("a", "*", "f"))) == [("a", "b", "f"), ("a", "c", "f")]
    assert sorted(store.list_namespaces(suffix=("*", "f"))) == [("a", "b", "f"), ("a", "c", "f"), ("b", "a", "f")]
    assert store.list_namespaces(prefix=("nonexistent",)) == []
    assert store.list_namespaces(prefix=("users", "123")) == [("users", "123")]


def test_list_namespaces_with_wildcards(store) -> None:
    namespaces = [
        ("users", "123"),
        ("users", "456"),
        ("users", "789", "settings"),
        ("admin", "users", "789"),
        ("guests", "123"),
        ("guests", "456", "preferences"),
    ]
    for i, ns in enumerate(namespaces):
        store.put(namespace=ns, key=f"id_{i}", value={"data": f"value_{i:02d}"})

    assert sorted(store.list_namespaces(prefix=("users", "*"))) == [
        ("users", "123"),
        ("users", "456"),
        ("users", "789", "settings"),
    ]
    assert store.list_namespaces(suffix=("*", "preferences")) == [("guests", "456", "preferences")]
    assert store.list_namespaces(prefix=("*", "users"), suffix=("*", "settings")) == []
    store.put(namespace=("admin", "users", "settings", "789"), key="foo", value={"data": "some_val"})
    assert store.list_namespaces(prefix=("*", "users"), suffix=("settings", "*")) == [
        ("admin", "users", "settings", "789")
    ]


async def test_list_namespaces_pagination(store) -> None:
    await store.abatch(
        [PutOp(("namespace", f"sub_{i:02d}"), f"id_{i:02d}", {"data": f"value_{i:02d}"}) for i in range(20)]
    )
    assert await store.alist_namespaces(prefix=("namespace",), limit=5, offset=0) == [
        ("namespace", f"sub_{i:02d}") for i in range(5)
    ]
    assert await store.alist_namespaces(prefix=("namespace",), limit=5, offset=5) == [
        ("namespace", f"sub_{i:02d}") for i in range(5, 10)
    ]
    assert await store.alist_namespaces(prefix=("namespace",), limit=5, offset=15) == [
        ("namespace", f"sub_{i:02d}") for i in range(15, 20)
    ]


def test_list_namespaces_max_depth_no_conditions_and_empty(store) -> None:
    assert store.list_namespaces() == []
    namespaces = [("a", "b", "c", "d"), ("a", "b", "c", "e"), ("a", "b", "f"), ("a", "g"), ("h", "i", "j", "k")]
    for i, ns in enumerate(namespaces):
        store.put(namespace=ns, key=f"id_{i}", value={"data": f"value_{i:02d}"})
    assert sorted(store.list_namespaces(max_depth=2)) == [("a", "b"), ("a", "g"), ("h", "i")]
    assert sorted(store.list_namespaces()) == sorted(namespaces)


async def test_cannot_put_empty_namespace(store) -> None:
    doc = {"foo": "bar"}
    for bad in [(), ("the", "thing.about"), ("some", "fun", ""), ("langgraph", "foo")]:
        with pytest.raises(InvalidNamespaceError):
            store.put(bad, "foo", doc)
        with pytest.raises(InvalidNamespaceError):
            await store.aput(bad, "foo", doc)

    await store.aput(("foo", "langgraph", "foo"), "bar", doc)
    assert (await store.aget(("foo", "langgraph", "foo"), "bar")).value == doc
    assert (await store.asearch(("foo", "langgraph", "foo"), query="bar"))[0].value == doc
    await store.adelete(("foo", "langgraph", "foo"), "bar")
    assert (await store.aget(("foo", "langgraph", "foo"), "bar")) is None
    store.put(("foo", "langgraph", "foo"), "bar", doc)
    assert store.get(("foo", "langgraph", "foo"), "bar").value == doc
    assert store.search(("foo", "langgraph", "foo"), query="bar")[0].value == doc
    store.delete(("foo", "langgraph", "foo"), "bar")
    assert store.get(("foo", "langgraph", "foo"), "bar") is None

    # past the public put API, as LangGraph's own test does
    await store.abatch([PutOp(("langgraph", "foo"), "bar", doc)])
    assert (await store.aget(("langgraph", "foo"), "bar")).value == doc
    assert (await store.asearch(("langgraph", "foo")))[0].value == doc
    await store.adelete(("langgraph", "foo"), "bar")
    assert (await store.aget(("langgraph", "foo"), "bar")) is None


# -- semantic search (the service's model instead of LangGraph's character-count embeddings) ---------------------


AUTO_DOCS = [
    ("doc1", {"text": "short text"}),
    ("doc2", {"text": "longer text document"}),
    ("doc3", {"text": "longest text document here"}),
    ("doc4", {"description": "text in description field"}),
    ("doc5", {"content": "text in content field"}),
    ("doc6", {"body": "text in body field"}),
]


def test_vector_insert_with_auto_embedding(store) -> None:
    for key, value in AUTO_DOCS:
        store.put(("test",), key, value)
    results = store.search(("test",), query="long text")
    assert {"doc2", "doc3"} <= {r.key for r in results}
    assert all(r.score is not None for r in results)
    assert [r.score for r in results] == sorted((r.score for r in results), reverse=True)


async def test_async_vector_insert_with_auto_embedding(store) -> None:
    for key, value in AUTO_DOCS:
        await store.aput(("test",), key, value)
    results = await store.asearch(("test",), query="long text")
    assert {"doc2", "doc3"} <= {r.key for r in results}


async def test_vector_update_with_embedding(store) -> None:
    await store.aput(("test",), "doc1", {"text": "zany zebra Xerxes"})
    await store.aput(("test",), "doc2", {"text": "something about dogs"})
    await store.aput(("test",), "doc3", {"text": "text about birds"})

    initial = await store.asearch(("test",), query="Zany Xerxes")
    assert initial[0].key == "doc1"
    initial_score = initial[0].score

    await store.aput(("test",), "doc1", {"text": "new text about dogs"})
    after = await store.asearch(("test",), query="Zany Xerxes")
    after_score = next(r.score for r in after if r.key == "doc1")
    assert after_score < initial_score

    for r in await store.asearch(("test",), query="new text about dogs"):
        if r.key == "doc1":
            assert r.score > after_score

    # not indexed: never ranked, so not among the 3 best of 4
    store.put(("test",), "doc4", {"text": "new text about dogs"}, index=False)
    assert not any(r.key == "doc4" for r in store.search(("test",), query="new text about dogs", limit=3))
    # ... but listed after the ranked ones, with no score, when fewer are ranked than asked for
    tail = store.search(("test",), query="new text about dogs", limit=10)
    assert [r.key for r in tail][-1] == "doc4" and tail[-1].score is None and len(tail) == 4


FILTER_DOCS = [
    ("doc1", {"text": "red apple", "color": "red", "score": 4.5}),
    ("doc2", {"text": "red car", "color": "red", "score": 3.0}),
    ("doc3", {"text": "green apple", "color": "green", "score": 4.0}),
    ("doc4", {"text": "blue car", "color": "blue", "score": 3.5}),
]


def test_vector_search_with_filters(store) -> None:
    for key, value in FILTER_DOCS:
        store.put(("test",), key, value)
    results = store.search(("test",), query="apple", filter={"color": "red"})
    assert len(results) == 2 and results[0].key == "doc1"
    results = store.search(("test",), query="car", filter={"color": "red"})
    assert len(results) == 2 and results[0].key == "doc2"
    # LangGraph's test asks "bbbbluuu", which only character-count embeddings place next to "blue car"
    results = store.search(("test",), query="a blue vehicle", filter={"score": {"$gt": 3.2}})
    assert len(results) == 3 and results[0].key == "doc4"
    results = store.search(("test",), query="apple", filter={"score": {"$gte": 4.0}, "color": "green"})
    assert [r.key for r in results] == ["doc3"]
    # a filter the service's `where` cannot say (a list value) is still applied
    store.put(("test",), "doc5", {"text": "a yellow apple", "tags": ["fruit", "yellow"]})
    assert [r.key for r in store.search(("test",), query="apple", filter={"tags": ["fruit", "yellow"]})] == ["doc5"]
    # and without a query
    assert sorted(r.key for r in store.search(("test",), filter={"color": "red"})) == ["doc1", "doc2"]
    assert [r.key for r in store.search(("test",), filter={"score": {"$lt": 3.2}})] == ["doc2"]


async def test_async_vector_search_with_filters_concurrently(store) -> None:
    colors = ["red", "blue", "green", "yellow", "purple"]
    items = ["apple", "car", "house", "book", "phone"]
    scores = [3.0, 3.5, 4.0, 4.5, 5.0]
    docs = [
        (
            f"doc{i}",
            {"text": f"{colors[i % 5]} {items[i % 5]}", "color": colors[i % 5], "score": scores[i % 5], "index": i},
        )
        for i in range(50)
    ]
    await asyncio.gather(*[store.aput(("test",), key, value) for key, value in docs])
    queries: list[tuple[str, dict[str, Any]]] = [
        ("apple", {"color": "red"}),
        ("car", {"color": "blue"}),
        ("phone", {"score": {"$gt": 4.99}}),
        ("book", {"score": {"$lte": 3.5}}),
        ("apple", {"score": {"$gte": 3.0}, "color": "red"}),
        ("house", {"index": {"$gt": 25}}),
        ("phone", {"index": {"$lte": 10}}),
    ]
    found = await asyncio.gather(*[store.asearch(("test",), query=q, filter=f) for q, f in queries])
    ops = {"$gt": float.__gt__, "$gte": float.__ge__, "$lt": float.__lt__, "$lte": float.__le__}
    for results, (query, flt) in zip(found, queries, strict=True):
        assert results, (query, flt)
        for r in results:
            for field, cond in flt.items():
                if isinstance(cond, dict):
                    assert all(ops[op](float(r.value[field]), float(v)) for op, v in cond.items())
                else:
                    assert r.value[field] == cond


async def test_vector_search_pagination(store) -> None:
    for i in range(5):
        await store.aput(("test",), f"doc{i}", {"text": f"test document number {i}"})
    page1 = await store.asearch(("test",), query="test", limit=2)
    page2 = await store.asearch(("test",), query="test", limit=2, offset=2)
    assert len(page1) == 2 and len(page2) == 2
    assert not {r.key for r in page1} & {r.key for r in page2}
    assert len(await store.asearch(("test",), query="test", limit=10)) == 5
    assert len(store.search(("test",), limit=2, offset=4)) == 1  # listing pages too


def test_index_fields_decide_what_is_searched(module_server) -> None:
    """LangGraph's test_embed_with_path, with the service's one vector per item: the index fields' texts are
    embedded together, so the port checks which fields count, not LangGraph's per-field max-pooled scores."""
    store = make_store(module_server, index={"fields": ["key0", "key1", "key3"]})
    try:
        store.put(("test",), "doc1", {"key1": "the ocean is deep and blue", "key2": "a recipe for bread"})
        store.put(("test",), "doc2", {"key0": "mountain hiking trails", "key2": "volcanic eruption lava"})
        # key2 is not an index field: searching its text finds nothing better than chance
        assert store.search(("test",), query="the ocean is deep and blue")[0].key == "doc1"
        assert store.search(("test",), query="mountain hiking trails")[0].key == "doc2"
        lava = store.search(("test",), query="volcanic eruption lava")
        hiking = store.search(("test",), query="mountain hiking trails")
        assert lava[0].score < hiking[0].score
        # operation-level fields override the store's
        store.put(("test",), "doc3", {"key2": "volcanic eruption lava"}, index=["key2"])
        assert store.search(("test",), query="volcanic eruption lava")[0].key == "doc3"
        # a value with no text at its index fields is stored, but not ranked
        store.put(("test",), "doc4", {"other": "volcanic eruption lava"})
        found = store.search(("test",), query="volcanic eruption lava", limit=10)
        assert found[-1].key == "doc4" and found[-1].score is None
    finally:
        wipe(module_server, store)
        store.close()


def test_non_ascii(store) -> None:
    texts = ["这是中文", "これは日本語です", "이건 한국어야", "Это русский", "यह रूसी है"]
    for i, text in enumerate(texts, 1):
        store.put(("user_123", "memories"), str(i), {"text": text})
    for i, text in enumerate(texts, 1):
        assert store.search(("user_123", "memories"), query=text)[0].key == str(i)
    assert {store.get(("user_123", "memories"), str(i)).value["text"] for i in range(1, 6)} == set(texts)


# -- libs/checkpoint-sqlite/tests/test_store.py: batches and basic ops --------------------------------------------


def test_batch_order(store) -> None:
    store.put(("test", "foo"), "key1", {"data": "value1"})
    store.put(("test", "bar"), "key2", {"data": "value2"})
    results = store.batch(
        [
            GetOp(namespace=("test", "foo"), key="key1"),
            PutOp(namespace=("test", "bar"), key="key2", value={"data": "value2"}),
            SearchOp(namespace_prefix=("test",), filter={"data": "value1"}, limit=10, offset=0),
            ListNamespacesOp(match_conditions=None, max_depth=None, limit=10, offset=0),
            GetOp(namespace=("test",), key="key3"),
        ]
    )
    assert len(results) == 5
    assert isinstance(results[0], Item) and results[0].value == {"data": "value1"}
    assert results[0].key == "key1" and results[0].namespace == ("test", "foo")
    assert results[1] is None
    assert [r.key for r in results[2]] == ["key1"] and results[2][0].value == {"data": "value1"}
    assert ("test", "foo") in results[3] and ("test", "bar") in results[3]
    assert results[4] is None

    results = store.batch(
        [
            SearchOp(namespace_prefix=("test",), filter=None, limit=5, offset=0),
            GetOp(namespace=("test", "bar"), key="key2"),
            ListNamespacesOp(match_conditions=None, max_depth=None, limit=5, offset=0),
            PutOp(namespace=("test",), key="key3", value={"data": "value3"}),
            GetOp(namespace=("test", "foo"), key="key1"),
        ]
    )
    assert len(results[0]) >= 2
    assert results[1].value == {"data": "value2"} and results[1].namespace == ("test", "bar")
    assert len(results[2]) > 0 and results[3] is None
    assert results[4].value == {"data": "value1"}
    assert store.get(("test",), "key3").value == {"data": "value3"}


async def test_batch_get_put_search_and_list_ops(store) -> None:
    results = await store.abatch(
        [
            PutOp(namespace=("test",), key="key1", value={"data": "value1"}),
            PutOp(namespace=("test",), key="key2", value={"data": "value2"}),
            PutOp(namespace=("test",), key="key3", value=None),
        ]
    )
    assert results == [None, None, None]
    got = await store.abatch([GetOp(("test",), "key1"), GetOp(("test",), "key2"), GetOp(("test",), "key3")])
    assert [g.key if g else None for g in got] == ["key1", "key2", None]

    for namespace, key, value in [
        (("test", "foo"), "key1", {"data": "value1", "tag": "a"}),
        (("test", "bar"), "key2", {"data": "value2", "tag": "a"}),
        (("test", "baz"), "key3", {"data": "value3", "tag": "b"}),
    ]:
        await store.aput(namespace, key, value)
    found = await store.abatch(
        [
            SearchOp(namespace_prefix=("test",), filter={"tag": "a"}, limit=10, offset=0),
            SearchOp(namespace_prefix=("test",), filter=None, limit=2, offset=0),
            SearchOp(namespace_prefix=("test", "foo"), filter=None, limit=10, offset=0),
            ListNamespacesOp(match_conditions=None, max_depth=None, limit=10, offset=0),
            ListNamespacesOp(match_conditions=None, max_depth=1, limit=10, offset=0),
            ListNamespacesOp(
                match_conditions=(MatchCondition("suffix", ("foo",)),), max_depth=None, limit=10, offset=0
            ),
        ]
    )
    assert len(found[0]) == 2 and all(i.value["tag"] == "a" for i in found[0])
    assert len(found[1]) == 2
    assert [i.namespace for i in found[2]] == [("test", "foo")]
    assert found[3] == [("test",), ("test", "bar"), ("test", "baz"), ("test", "foo")]
    assert found[4] == [("test",)]
    assert found[5] == [("test", "foo")]


def test_puts_of_one_key_in_a_batch_keep_the_last(store) -> None:
    store.batch([PutOp(("t",), "k", {"v": 1}), PutOp(("t",), "k", {"v": 2}), PutOp(("t",), "gone", {"v": 0})])
    store.batch([PutOp(("t",), "gone", {"v": 5}), PutOp(("t",), "gone", None)])
    assert store.get(("t",), "k").value == {"v": 2}
    assert store.get(("t",), "gone") is None


def test_basic_store_ops(store) -> None:
    namespace = ("test", "documents")
    store.put(namespace, "doc1", {"title": "Test Document", "content": "Hello, World!"})
    item = store.get(namespace, "doc1")
    assert item.namespace == namespace and item.key == "doc1"
    assert item.value == {"title": "Test Document", "content": "Hello, World!"}
    store.put(namespace, "doc1", {"title": "Updated Document", "content": "Hello, Updated!"})
    updated = store.get(namespace, "doc1")
    assert updated.value == {"title": "Updated Document", "content": "Hello, Updated!"}
    assert updated.created_at == item.created_at and updated.updated_at >= item.updated_at
    assert store.get(("test", "other_documents"), "doc1") is None
    store.delete(namespace, "doc1")
    assert store.get(namespace, "doc1") is None
    store.delete(namespace, "never-there")  # deleting a missing item is not an error


def test_search_listing(store) -> None:
    for namespace, key, value in [
        (("test", "docs"), "doc1", {"title": "First Doc", "author": "Alice", "tags": ["important"]}),
        (("test", "docs"), "doc2", {"title": "Second Doc", "author": "Bob", "tags": ["draft"]}),
        (("test", "images"), "img1", {"title": "Image 1", "author": "Alice", "tags": ["final"]}),
    ]:
        store.put(namespace, key, value)
    assert len(store.search(("test",))) == 3
    docs = store.search(("test", "docs"))
    assert len(docs) == 2 and all(i.namespace == ("test", "docs") for i in docs)
    alice = store.search(("test",), filter={"author": "Alice"})
    assert len(alice) == 2 and all(i.value["author"] == "Alice" for i in alice)
    assert len(store.search(("test",), limit=2)) == 2
    assert len(store.search(("test",), offset=2)) == 1


def test_search_namespace_segment_boundary(store) -> None:
    for ns in [("foo",), ("foo", "child"), ("foo", "child", "deep"), ("foobar",), ("foobar", "baz"), ("foo2",)]:
        store.put(ns, "k", {"v": 1})

    def spaces(prefix: tuple[str, ...]) -> set[tuple[str, ...]]:
        return {item.namespace for item in store.search(prefix, limit=100)}

    assert spaces(("foo",)) == {("foo",), ("foo", "child"), ("foo", "child", "deep")}
    assert spaces(("foobar",)) == {("foobar",), ("foobar", "baz")}
    assert spaces(("foo2",)) == {("foo2",)}
    assert spaces(("fo",)) == set()
    assert spaces(()) == {
        ("foo",),
        ("foo", "child"),
        ("foo", "child", "deep"),
        ("foobar",),
        ("foobar", "baz"),
        ("foo2",),
    }
    # the same boundaries in a query search
    assert {i.namespace for i in store.search(("foo",), query="anything", limit=100)} == spaces(("foo",))


def test_namespace_metacharacters_are_literal_and_case_sensitive(store) -> None:
    pairs = [
        ("star*", "starX"),
        ("q?m", "qXm"),
        ("br[ack]et", "brXacXket"),
        ("user_1", "userX1"),
        ("a%b", "axxb"),
        ("plus+", "plusX"),
        ("sl/ash", "sl"),
        ("co:lon", "co"),
        ("Foo", "foo"),
        ("alice\n", "alice"),
    ]
    for label, decoy in pairs:
        store.put((label,), "k", {"v": label})
        store.put((decoy,), "k", {"v": decoy})
        store.put((label, "child"), "k", {"v": 1})
    for label, decoy in pairs:
        assert set(store.list_namespaces(prefix=[label], limit=100)) == {(label,), (label, "child")}
        assert {i.namespace for i in store.search((label,), limit=100)} == {(label,), (label, "child")}
        assert store.get((label,), "k").value == {"v": label}
        assert store.get((decoy,), "k").value == {"v": decoy}


def test_keys_and_values_round_trip_exactly(store) -> None:
    value = {"n": 2**53 + 1, "f": 0.1, "b": False, "none": None, "s": 'naïve ✓ "q"', "l": [1, [2.0]], "d": {}}
    for key in ["plain", "with:colon", "with/slash", "spaces in key", "x" * 600, "中文"]:
        store.put(("ns",), key, value)
        item = store.get(("ns",), key)
        assert item.key == key and item.value == value
    assert len(store.search(("ns",), limit=100)) == 6


def test_bad_values_are_refused_before_writing(store) -> None:
    with pytest.raises(TypeError):
        store.put(("ns",), "k", {"when": object()})
    with pytest.raises(ValueError, match="at most 100"):
        store.search(("ns",), query="x", limit=60, offset=50)
    assert store.get(("ns",), "k") is None


# -- the service's namespaces are LangGraph's ------------------------------------------------------------------


async def test_items_live_in_service_namespaces_other_clients_see(module_server, store) -> None:
    root = store._layout.prefix
    await store.aput(("users", "42"), "pref-1", {"text": "prefers dark mode"})
    await store.aput(("users", "42", "notes"), "n1", {"text": "met on Tuesday"})
    names = {n["namespace"]: n["memories"] for n in httpx.get(f"{module_server.url}/namespaces").json()["namespaces"]}
    assert names[f"{root}/users/42"] == 1 and names[f"{root}/users/42/notes"] == 1
    # Any client of the service (an MCP agent, the console, a scoped token) reads the item where it lives.
    async with MemoryClient(module_server.url, namespace=f"{root}/users/42") as client:
        record = await client.get_key("pref-1")
        assert record["metadata"]["value"] == {"text": "prefers dark mode"} and "prefers dark mode" in record["content"]
        hits = (await client.search("dark mode", namespace=f"{root}/users/", mode="semantic"))["results"]
        assert {h["namespace"] for h in hits} == {f"{root}/users/42", f"{root}/users/42/notes"}
        # Someone else's record in the store's namespaces (or in one of its own) is not an item of the store.
        await client.in_namespace(f"{root}/users/7").ingest("a note an agent left here", tags=["agent"])
        await client.ingest("another note an agent left", tags=["agent"])
    assert await store.alist_namespaces(prefix=("users",)) == [("users", "42"), ("users", "42", "notes")]
    assert {i.key for i in await store.asearch(("users",))} == {"pref-1", "n1"}
    assert {i.key for i in await store.asearch(("users",), query="a note an agent left")} == {"pref-1", "n1"}
    httpx.request(
        "DELETE", f"{module_server.url}/memories", json={"tags": ["agent"], "namespace": f"{root}/users/7"}
    ).raise_for_status()


def test_long_labels_are_hashed_and_decoded_from_their_items(store) -> None:
    long_label, other = "L" * 80, "é" * 30  # past 64 characters as segments
    store.put(("docs", long_label), "a", {"text": "one"})
    store.put(("docs", long_label, "x"), "b", {"text": "two"})
    store.put(("docs", other), "c", {"text": "three"})
    assert sorted(store.list_namespaces(prefix=("docs",))) == sorted(
        [("docs", long_label), ("docs", long_label, "x"), ("docs", other)]
    )
    assert store.list_namespaces(prefix=("docs",), max_depth=2) == sorted([("docs", long_label), ("docs", other)])
    assert [i.key for i in store.search(("docs", long_label))] != [] and store.get(("docs", other), "c").value == {
        "text": "three"
    }
    with pytest.raises(InvalidNamespaceError, match="255"):
        store.put(tuple("y" * 60 for _ in range(5)), "k", {"v": 1})
    assert store.search(tuple("y" * 60 for _ in range(5))) == []


async def test_items_of_the_key_prefix_layout_migrate_into_namespaces(module_server, store) -> None:
    root = store._layout.prefix
    meta = {"namespace": ["users", "42"], "key": "pref-1", "value": {"text": "prefers dark mode"}}
    async with MemoryClient(module_server.url) as client:  # what the store wrote before namespaces, in `default`
        common = {"tags": ["langgraph", "langgraph:store"], "importance": "low"}
        await client.ingest("prefers dark mode", key=f"{root}:users/42/:pref-1", metadata=meta, **common)
        old_ttl = {**meta, "key": "short", "value": {"text": "soon gone"}, "ttl_minutes": 60}
        await client.ingest("soon gone", key=f"{root}:users/42/:short", metadata=old_ttl, ttl_seconds=600, **common)
        newer = {**meta, "key": "both", "value": {"v": "old"}}
        await client.ingest("old copy", key=f"{root}:users/:both", metadata=newer, **common)
        await client.ingest("someone else's note", key=f"{root}:mine", tags=["langgraph:store"])
        await store.aput(("users", "42"), "both", {"v": "new"})  # put since under the namespaces: it wins

        assert await store.amigrate_legacy() == 2
        assert (await store.aget(("users", "42"), "pref-1")).value == {"text": "prefers dark mode"}
        assert (await store.aget(("users", "42"), "both")).value == {"v": "new"}
        short = await record_of(module_server, store, ("users", "42"), "short")
        assert short["expires_at"] is not None and short["metadata"]["ttl_minutes"] == 60
        hits = await store.asearch(("users",), query="which theme does the user like?", limit=1)
        assert [h.key for h in hits] == ["pref-1"]
        left = (await client.list(key_prefix=f"{root}:"))["results"]
        assert [r["content"] for r in left] == ["someone else's note"]  # not an item: left where it was
        assert await store.amigrate_legacy() == 0
        await client.delete(left[0]["id"])


# -- TTL ----------------------------------------------------------------------------------------------------------


async def record_of(module_server, store: MemorySpineStore, namespace: tuple[str, ...], key: str) -> dict[str, Any]:
    layout = store._layout
    async with MemoryClient(module_server.url, namespace=layout.namespace(namespace)) as client:
        return await client.get(layout.record_id(key))


async def test_ttl_expires_items(store) -> None:
    await store.aput(("ttl",), "short", {"text": "gone soon"}, ttl=1 / 60)  # one second
    await store.aput(("ttl",), "kept", {"text": "stays"})
    assert (await store.aget(("ttl",), "short", refresh_ttl=False)) is not None
    deadline = time.monotonic() + 30
    while await store.aget(("ttl",), "short", refresh_ttl=False) is not None:
        assert time.monotonic() < deadline, "an item with a one-second TTL was still there after 30 s"
        await asyncio.sleep(0.2)
    assert [i.key for i in await store.asearch(("ttl",))] == ["kept"]
    assert [i.key for i in await store.asearch(("ttl",), query="gone soon")] == ["kept"]


async def test_ttl_refresh_on_read(module_server) -> None:
    store = make_store(module_server, ttl={"default_ttl": 10, "refresh_on_read": True})
    try:
        await store.aput(("ttl",), "a", {"text": "alpha"})
        await store.aput(("ttl",), "forever", {"text": "beta"}, ttl=None)
        first = (await record_of(module_server, store, ("ttl",), "a"))["expires_at"]
        assert first is not None
        assert (await record_of(module_server, store, ("ttl",), "forever"))["expires_at"] is None

        await asyncio.sleep(0.05)
        await store.aget(("ttl",), "a", refresh_ttl=False)
        assert (await record_of(module_server, store, ("ttl",), "a"))["expires_at"] == first
        await store.aget(("ttl",), "a")  # refresh_on_read
        second = (await record_of(module_server, store, ("ttl",), "a"))["expires_at"]
        assert second > first
        await asyncio.sleep(0.05)
        await store.asearch(("ttl",), query="alpha")
        assert (await record_of(module_server, store, ("ttl",), "a"))["expires_at"] > second
        assert (await record_of(module_server, store, ("ttl",), "forever"))["expires_at"] is None
    finally:
        wipe(module_server, store)
        await store.aclose()


# -- use ----------------------------------------------------------------------------------------------------------


def test_sync_methods_from_threads_with_and_without_a_loop(store) -> None:
    errors: list[BaseException] = []

    def work(n: int) -> None:
        try:
            store.put(("threads",), f"k{n}", {"n": n})
            assert store.get(("threads",), f"k{n}").value == {"n": n}
        except BaseException as exc:  # noqa: BLE001 - reported below
            errors.append(exc)

    threads = [threading.Thread(target=work, args=(n,)) for n in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert not errors

    async def inside_a_loop() -> int:
        return len(store.search(("threads",)))  # a sync call while a loop runs on this thread

    assert asyncio.run(inside_a_loop()) == 4


async def test_a_graph_remembers_across_threads_through_the_store(store) -> None:
    from langgraph.graph import START, StateGraph
    from langgraph.store.base import BaseStore
    from typing_extensions import TypedDict

    class State(TypedDict):
        user: str
        said: str
        recalled: list[str]

    async def remember(state: State, *, store: BaseStore) -> dict:
        await store.aput(("users", state["user"], "memories"), uuid.uuid4().hex, {"text": state["said"]})
        hits = await store.asearch(("users", state["user"], "memories"), query="what pet does the user have?")
        return {"recalled": [h.value["text"] for h in hits]}

    graph = StateGraph(State).add_node(remember).add_edge(START, "remember").compile(store=store)
    await graph.ainvoke({"user": "u1", "said": "I have a cat named Miso", "recalled": []})
    await graph.ainvoke({"user": "u1", "said": "I work on compilers", "recalled": []})
    out = await graph.ainvoke({"user": "u2", "said": "I like tea", "recalled": []})
    assert out["recalled"] == ["I like tea"]
    out = await graph.ainvoke({"user": "u1", "said": "My favourite colour is green", "recalled": []})
    assert out["recalled"][0] == "I have a cat named Miso" and len(out["recalled"]) == 3


def test_readme_example_runs_as_pasted(module_server):
    from tests.integration.readme_examples import run_block, section_blocks

    (code,) = [b for b in section_blocks("## LangChain and LangGraph store adapters") if "langgraph_store" in b]
    assert run_block(code, module_server.url)[-1] == "prefers dark mode"
