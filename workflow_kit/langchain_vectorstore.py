"""MemorySpineVectorStore: a LangChain `VectorStore` over Memory Spine, sync and async, with `get_by_ids`.

    from workflow_kit.langchain_vectorstore import MemorySpineVectorStore
    store = MemorySpineVectorStore("http://127.0.0.1:8788", collection="docs")   # token= or MEMORY_SPINE_TOKEN
    store.add_documents([Document("The deploy failed: migration timeout", metadata={"sev": 3})], ids=["inc-1"])
    store.similarity_search("why did the release break?", k=3, filter={"sev": {"$gte": 2}})

Needs the `langchain` extra (`langchain-core`). The service embeds every text itself with its own model
(all-MiniLM-L6-v2, or whatever it was started with), so the store takes no `Embeddings`: ranking is the
service's semantic search (cosine similarity, which is also the relevance score). A collection keeps its
documents apart from everything else in the service:

    record id   {collection}:{document id}    (so each collection has its own id space; the key is the same)
    tags        ["langchain", "lc:{collection}"]  (every search and delete is confined to the collection tag)
    content     the document's page_content, exactly
    metadata    the document's metadata, exactly (a JSON object: it comes back as stored)

Ids given by the caller (`ids=` or `Document.id`) are kept; missing ones are made here (uuid4 hex). `filter=` is
the service's `where` language over metadata (`{"field": value}`, `$eq $ne $in $nin $gt $gte $lt $lte`, `$and`,
`$or`, dotted names). Not built: search by vector and maximal marginal relevance (the service does not take
query vectors nor return stored ones).
"""

from __future__ import annotations

import asyncio
import uuid
from collections.abc import Callable, Iterable, Sequence
from typing import Any

import httpx
from langchain_core.documents import Document
from langchain_core.embeddings import Embeddings
from langchain_core.vectorstores import VectorStore

from ._bridge import Bridge
from .errors import NotFound

__all__ = ["MemorySpineVectorStore"]

TAG = "langchain"
_BATCH = 100  # documents per /ingest/batch: 100 texts of up to 100,000 characters stay under the 16 MiB body cap


def _relevance(hit: dict[str, Any]) -> float:
    """A hit's relevance: its cosine similarity (`score`), else (keyword mode) its BM25-derived `rank_score`."""
    score = hit.get("score")
    return float(score if score is not None else hit.get("rank_score") or 0.0)


class MemorySpineVectorStore(VectorStore):
    """A LangChain vector store keeping one collection of documents in Memory Spine.

    Args:
        base_url: the service (default MEMORY_SPINE_URL, else http://127.0.0.1:8788).
        collection: the name documents are kept under (no ':' or whitespace, at most 100 characters).
        token: the service's bearer token (default MEMORY_SPINE_TOKEN).
        mode: the service's search mode: "semantic" (default), "hybrid" or "keyword". The score is the cosine
            similarity in semantic and hybrid mode (hybrid only orders differently); in keyword mode it is the
            BM25-derived `rank_score` unless `min_score` is given (then the cosine, as the service reports).
        timeout: seconds per request; connection errors and 5xx are retried by the kit's client.
        transport: an httpx transport (e.g. `httpx.ASGITransport(app=create_app(service))` in-process).
    """

    def __init__(
        self,
        base_url: str | None = None,
        *,
        collection: str = "langchain",
        token: str | None = None,
        mode: str = "semantic",
        timeout: float = 10.0,
        transport: httpx.AsyncBaseTransport | None = None,
    ) -> None:
        if not collection or ":" in collection or any(ch.isspace() for ch in collection) or len(collection) > 100:
            raise ValueError("collection must be 1..100 characters, without ':' or whitespace")
        if mode not in ("semantic", "hybrid", "keyword"):
            raise ValueError("mode must be 'semantic', 'hybrid' or 'keyword'")
        self.collection = collection
        self.mode = mode
        self._tag = f"lc:{collection}"
        self._bridge = Bridge(base_url, token=token, timeout=timeout, transport=transport, name="memory-spine-lc")

    # -- mapping between documents and records (the one place it is decided) ------------------------------------

    def _record_id(self, doc_id: str) -> str:
        return f"{self.collection}:{doc_id}"

    def _document(self, rec: dict[str, Any]) -> Document:
        doc_id = rec["id"][len(self.collection) + 1 :]
        return Document(page_content=rec["content"], metadata=rec["metadata"], id=doc_id)

    def _body(self, text: str, metadata: dict[str, Any] | None, doc_id: str) -> dict[str, Any]:
        if not isinstance(doc_id, str) or not doc_id:
            raise ValueError(f"document ids must be non-empty strings, not {doc_id!r}")
        rid = self._record_id(doc_id)
        # An explicit key keeps a text that starts with `checkpoint:` or `dedup:` from being taken for one.
        return {"id": rid, "key": rid, "content": text, "metadata": dict(metadata or {}), "tags": [TAG, self._tag]}

    # -- life ----------------------------------------------------------------------------------------------------

    @property
    def embeddings(self) -> Embeddings | None:
        """None: the service embeds with its own model."""
        return None

    async def aclose(self) -> None:
        """Close the running loop's connection pool and the sync methods' loop thread."""
        await self._bridge.aclose()

    def close(self) -> None:
        """Close the sync methods' loop thread."""
        self._bridge.close()

    # -- writes --------------------------------------------------------------------------------------------------

    async def aadd_texts(
        self,
        texts: Iterable[str],
        metadatas: list[dict[str, Any]] | None = None,
        *,
        ids: list[str] | None = None,
        **kwargs: Any,
    ) -> list[str]:
        """Store texts (an existing id is replaced); returns their ids, the given ones kept, missing ones made."""
        texts = list(texts)
        if metadatas is not None and len(metadatas) != len(texts):
            raise ValueError(f"{len(metadatas)} metadatas for {len(texts)} texts")
        if ids is not None and len(ids) != len(texts):
            raise ValueError(f"{len(ids)} ids for {len(texts)} texts")
        doc_ids = [(ids[i] if ids is not None and ids[i] else uuid.uuid4().hex) for i in range(len(texts))]
        bodies = [self._body(text, metadatas[i] if metadatas else None, doc_ids[i]) for i, text in enumerate(texts)]
        client = self._bridge.client()
        for i in range(0, len(bodies), _BATCH):
            await client.ingest_batch(bodies[i : i + _BATCH])
        return doc_ids

    def add_texts(
        self,
        texts: Iterable[str],
        metadatas: list[dict[str, Any]] | None = None,
        *,
        ids: list[str] | None = None,
        **kwargs: Any,
    ) -> list[str]:
        """Sync `aadd_texts`."""
        return self._bridge.run(self.aadd_texts(texts, metadatas, ids=ids, **kwargs))

    async def adelete(self, ids: list[str] | None = None, **kwargs: Any) -> bool | None:
        """Delete these documents (ids that are not there are skipped); with no ids, the whole collection."""
        client = self._bridge.client()
        if ids is None:
            await client.delete_where(tags=[self._tag])
            return True

        async def one(doc_id: str) -> None:
            try:
                await client.delete(self._record_id(doc_id))
            except NotFound:
                pass

        await asyncio.gather(*(one(i) for i in ids))
        return True

    def delete(self, ids: list[str] | None = None, **kwargs: Any) -> bool | None:
        """Sync `adelete`."""
        return self._bridge.run(self.adelete(ids, **kwargs))

    # -- reads ---------------------------------------------------------------------------------------------------

    async def aget_by_ids(self, ids: Sequence[str], /) -> list[Document]:
        """The documents with these ids, in the order asked; ids not found are left out."""
        client = self._bridge.client()

        async def one(doc_id: str) -> Document | None:
            try:
                return self._document(await client.get(self._record_id(doc_id)))
            except NotFound:
                return None

        found = await asyncio.gather(*(one(i) for i in ids))
        return [doc for doc in found if doc is not None]

    def get_by_ids(self, ids: Sequence[str], /) -> list[Document]:
        """Sync `aget_by_ids`."""
        return self._bridge.run(self.aget_by_ids(ids))

    async def asimilarity_search_with_score(
        self, query: str, k: int = 4, filter: dict[str, Any] | None = None, **kwargs: Any
    ) -> list[tuple[Document, float]]:
        """The `k` (1..100) documents nearest to `query`, best first, with the service's score.

        `filter` is a `where` over metadata; other keyword arguments go to /search as they are (`min_score`,
        `tags`, `mode`, ...).
        """
        body: dict[str, Any] = {"limit": k, "mode": self.mode, "where": filter or None, **kwargs}
        body["tags_all"] = [self._tag, *(body.get("tags_all") or [])]
        found = await self._bridge.client().search(query, **body)
        return [(self._document(hit), _relevance(hit)) for hit in found.get("results") or []]

    def similarity_search_with_score(
        self, query: str, k: int = 4, filter: dict[str, Any] | None = None, **kwargs: Any
    ) -> list[tuple[Document, float]]:
        """Sync `asimilarity_search_with_score`."""
        return self._bridge.run(self.asimilarity_search_with_score(query, k, filter, **kwargs))

    async def asimilarity_search(self, query: str, k: int = 4, **kwargs: Any) -> list[Document]:
        """The `k` documents nearest to `query`, best first (see `asimilarity_search_with_score`)."""
        return [doc for doc, _ in await self.asimilarity_search_with_score(query, k, **kwargs)]

    def similarity_search(self, query: str, k: int = 4, **kwargs: Any) -> list[Document]:
        """Sync `asimilarity_search`."""
        return [doc for doc, _ in self.similarity_search_with_score(query, k, **kwargs)]

    def _select_relevance_score_fn(self) -> Callable[[float], float]:
        # The service's score is already the cosine similarity, LangChain's relevance for cosine.
        return lambda score: score

    # -- construction --------------------------------------------------------------------------------------------

    @classmethod
    def from_texts(
        cls,
        texts: list[str],
        embedding: Embeddings | None = None,
        metadatas: list[dict[str, Any]] | None = None,
        *,
        ids: list[str] | None = None,
        **kwargs: Any,
    ) -> MemorySpineVectorStore:
        """A store (constructor arguments in `kwargs`) holding these texts. `embedding` must be None: the
        service embeds with its own model, and silently ignoring a caller's model would mislead."""
        _no_embedding(embedding)
        store = cls(**kwargs)
        store.add_texts(texts, metadatas, ids=ids)
        return store

    @classmethod
    async def afrom_texts(
        cls,
        texts: list[str],
        embedding: Embeddings | None = None,
        metadatas: list[dict[str, Any]] | None = None,
        *,
        ids: list[str] | None = None,
        **kwargs: Any,
    ) -> MemorySpineVectorStore:
        """Async `from_texts`."""
        _no_embedding(embedding)
        store = cls(**kwargs)
        await store.aadd_texts(texts, metadatas, ids=ids)
        return store


def _no_embedding(embedding: Embeddings | None) -> None:
    if embedding is not None:
        raise ValueError("MemorySpineVectorStore: the service embeds texts with its own model; pass embedding=None")
