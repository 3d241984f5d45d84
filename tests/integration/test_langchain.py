"""The LangChain adapters against a real `memory-spine serve` process with the real model: langchain-tests'
own standard suites (`VectorStoreIntegrationTests`, sync and async; `BaseStoreSyncTests` / `BaseStoreAsyncTests`),
plus what those suites leave out: metadata round-trips exactly, filters, collections kept apart, ranking by
meaning, and the README's example run as a user would paste it."""

from __future__ import annotations

import uuid
from collections.abc import AsyncIterator, Iterator

import pytest
from langchain_core.documents import Document
from langchain_tests.integration_tests import (
    BaseStoreAsyncTests,
    BaseStoreSyncTests,
    VectorStoreIntegrationTests,
)

from workflow_kit.langchain_kv import MemorySpineByteStore
from workflow_kit.langchain_vectorstore import MemorySpineVectorStore

pytestmark = pytest.mark.integration


class TestVectorStoreSuite(VectorStoreIntegrationTests):
    @pytest.fixture
    def vectorstore(self, module_server) -> Iterator[MemorySpineVectorStore]:
        store = MemorySpineVectorStore(module_server.url, collection=f"suite-{uuid.uuid4().hex[:12]}")
        try:
            yield store
        finally:
            store.delete()  # the whole collection
            store.close()


class TestByteStoreSyncSuite(BaseStoreSyncTests[bytes]):
    @pytest.fixture
    def kv_store(self, module_server) -> Iterator[MemorySpineByteStore]:
        store = MemorySpineByteStore(module_server.url, namespace=f"kv-{uuid.uuid4().hex[:12]}")
        try:
            yield store
        finally:
            store.clear()
            store.close()

    @pytest.fixture
    def three_values(self) -> tuple[bytes, bytes, bytes]:
        return b"foo", b"\x00bar\xff", "bäz ✓".encode()


class TestByteStoreAsyncSuite(BaseStoreAsyncTests[bytes]):
    @pytest.fixture
    async def kv_store(self, module_server) -> AsyncIterator[MemorySpineByteStore]:
        store = MemorySpineByteStore(module_server.url, namespace=f"akv-{uuid.uuid4().hex[:12]}")
        try:
            yield store
        finally:
            await store.aclear()
            await store.aclose()

    @pytest.fixture
    def three_values(self) -> tuple[bytes, bytes, bytes]:
        return b"foo", b"\x00bar\xff", "bäz ✓".encode()


# -- what the standard suites leave out --------------------------------------------------------------------------


@pytest.fixture
def vs(module_server) -> Iterator[MemorySpineVectorStore]:
    store = MemorySpineVectorStore(module_server.url, collection=f"t-{uuid.uuid4().hex[:12]}")
    yield store
    store.delete()
    store.close()


ODD_METADATA = {
    "int": 3,
    "big": 2**53 + 1,
    "float": 0.1,
    "neg": -1.5e-7,
    "bool": True,
    "none": None,
    "text": 'naïve ✓ 中文 "quoted" \\ back',
    "list": [1, "two", 3.0, None, [False]],
    "nested": {"a": {"b": {"c": []}}, "empty": {}},
}


def test_metadata_and_content_come_back_exactly_as_stored(vs):
    content = "  leading and trailing spaces kept\n\ttabs too  "
    vs.add_documents([Document(content, metadata=ODD_METADATA)], ids=["odd"])
    (doc,) = vs.get_by_ids(["odd"])
    assert doc == Document(content, metadata=ODD_METADATA, id="odd")
    assert type(doc.metadata["list"][2]) is float and type(doc.metadata["int"]) is int
    (hit,) = vs.similarity_search("leading and trailing spaces", k=1)
    assert hit == doc


async def test_filters_are_the_services_where_language(vs):
    docs = [
        Document("the deploy failed: database migration timed out", metadata={"sev": 3, "team": "core"}),
        Document("the deploy failed: a disk filled up", metadata={"sev": 1, "team": "infra"}),
        Document("lunch menu for friday", metadata={"sev": 0, "team": "core"}),
    ]
    await vs.aadd_documents(docs, ids=["mig", "disk", "lunch"])
    hits = await vs.asimilarity_search("why did the release break?", k=3, filter={"sev": {"$gte": 1}})
    assert {d.id for d in hits} == {"mig", "disk"}
    hits = await vs.asimilarity_search("deploy", k=3, filter={"$or": [{"team": "infra"}, {"sev": 0}]})
    assert {d.id for d in hits} == {"disk", "lunch"}
    assert await vs.asimilarity_search("deploy", k=3, filter={"team": "nobody"}) == []


def test_ranking_is_by_meaning_with_the_services_model(vs):
    vs.add_texts(
        [
            "The deploy failed because the database migration timed out",
            "Our cat sleeps on the warm laptop keyboard",
            "Quarterly revenue grew eleven percent",
        ],
        ids=["deploy", "cat", "revenue"],
    )
    ranked = vs.similarity_search_with_relevance_scores("why did the release break?", k=3)
    assert [d.id for d, _ in ranked][0] == "deploy"
    scores = [s for _, s in ranked]
    assert scores == sorted(scores, reverse=True) and 0 < scores[0] <= 1
    # Hybrid ranks differently but scores the same: the cosine similarity; keyword mode gives its rank score.
    hybrid = vs.similarity_search_with_score("why did the release break?", k=3, mode="hybrid")
    semantic = dict((d.id, s) for d, s in vs.similarity_search_with_score("why did the release break?", k=3))
    assert all(s == pytest.approx(semantic[d.id], abs=1e-5) for d, s in hybrid)
    keyword = vs.similarity_search_with_score("quarterly revenue", k=3, mode="keyword")
    assert [d.id for d, _ in keyword] == ["revenue"] and 0 < keyword[0][1] < 1


def test_collections_keep_their_own_id_spaces(module_server, vs):
    other = MemorySpineVectorStore(module_server.url, collection=vs.collection + "-b")
    try:
        vs.add_texts(["alpha in a"], ids=["same"])
        other.add_texts(["beta in b"], ids=["same"])
        assert [d.page_content for d in vs.get_by_ids(["same"])] == ["alpha in a"]
        assert [d.page_content for d in other.similarity_search("alpha", k=5)] == ["beta in b"]
        other.delete()
        assert other.get_by_ids(["same"]) == [] and len(vs.get_by_ids(["same"])) == 1
    finally:
        other.delete()
        other.close()


def test_a_text_shaped_like_a_key_stays_an_ordinary_document(vs):
    vs.add_texts(["checkpoint:wf-1:step", "dedup:abc some text"], ids=["k1", "k2"])
    assert [d.id for d in vs.get_by_ids(["k1", "k2"])] == ["k1", "k2"]


def test_a_callers_embedding_model_is_refused_not_ignored(module_server):
    from langchain_core.embeddings import DeterministicFakeEmbedding

    with pytest.raises(ValueError, match="its own model"):
        MemorySpineVectorStore.from_texts(["x"], DeterministicFakeEmbedding(size=6), base_url=module_server.url)


def test_bad_input_is_named(vs, module_server):
    from workflow_kit import InvalidInput

    with pytest.raises(InvalidInput) as err:
        vs.add_texts(["   "], ids=["blank"])
    assert "content" in str(err.value)
    with pytest.raises(ValueError, match="collection"):
        MemorySpineVectorStore(module_server.url, collection="has:colon")


def test_kv_values_over_the_cap_are_refused_before_writing(module_server):
    kv = MemorySpineByteStore(module_server.url, namespace=f"cap-{uuid.uuid4().hex[:8]}", max_value_bytes=10)
    try:
        with pytest.raises(ValueError, match="limit is 10"):
            kv.mset([("ok", b"small"), ("big", b"x" * 11)])
        assert kv.mget(["ok", "big"]) == [None, None]
        with pytest.raises(TypeError):
            kv.mset([("s", "not bytes")])  # type: ignore[list-item]
    finally:
        kv.clear()
        kv.close()


def test_kv_namespaces_and_prefixes_do_not_leak(module_server):
    a = MemorySpineByteStore(module_server.url, namespace=f"ns-{uuid.uuid4().hex[:8]}")
    b = MemorySpineByteStore(module_server.url, namespace=a.namespace + "x")
    try:
        a.mset([("user:1", b"1"), ("user:10", b"10"), ("users", b"s")])
        b.mset([("user:1", b"other")])
        assert sorted(a.yield_keys(prefix="user:1")) == ["user:1", "user:10"]
        assert sorted(a.yield_keys()) == ["user:1", "user:10", "users"]
        assert a.mget(["user:1"]) == [b"1"] and b.mget(["user:1"]) == [b"other"]
    finally:
        a.clear()
        b.clear()
        a.close()
        b.close()


def test_readme_examples_run_as_pasted(module_server):
    from tests.integration.readme_examples import run_block, section_blocks

    blocks = [b for b in section_blocks("## LangChain and LangGraph store adapters") if "langgraph" not in b]
    assert len(blocks) == 2  # the VectorStore's and the ByteStore's
    for code in blocks:
        assert run_block(code, module_server.url)
