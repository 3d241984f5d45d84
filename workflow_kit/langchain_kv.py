"""MemorySpineByteStore: a LangChain key-value `BaseStore[str, bytes]` (a ByteStore) over Memory Spine's exact keys.

    from workflow_kit.langchain_kv import MemorySpineByteStore
    kv = MemorySpineByteStore("http://127.0.0.1:8788", namespace="emb-cache")
    kv.mset([("a", b"1"), ("b", b"2")]); kv.mget(["a", "b", "c"])   # -> [b"1", b"2", None]
    list(kv.yield_keys(prefix="a"))                                 # -> ["a"]

Needs the `langchain` extra (`langchain-core`). It fits where LangChain wants a ByteStore, e.g.
`CacheBackedEmbeddings.from_bytes_store(..., document_embedding_cache=kv)`. Each value is one record, read and
listed by exact key, never by similarity:

    key         {namespace}:{key}              (GET /keys/{key}; yield_keys is GET /memories?key_prefix=)
    id          kv-{sha256(key)[:40]}          (derived from the key, so setting a key again replaces it)
    metadata    {"b64": base64 of the value}   (values up to `max_value_bytes`, under the metadata cap)
    content     "langchain kv {key}"           (short: the service embeds every write)
    tags        ["langchain", "langchain:kv"]
"""

from __future__ import annotations

import asyncio
import base64
import hashlib
from collections.abc import AsyncIterator, Iterator, Sequence
from typing import Any

import httpx
from langchain_core.stores import BaseStore

from ._bridge import Bridge
from .errors import NotFound

__all__ = ["MemorySpineByteStore"]

TAGS = ["langchain", "langchain:kv"]
_BATCH = 100
_PAGE = 500


class MemorySpineByteStore(BaseStore[str, bytes]):
    """LangChain's ByteStore interface (`mget/mset/mdelete/yield_keys` and their a-forms) over exact keys.

    Args:
        base_url: the service (default MEMORY_SPINE_URL, else http://127.0.0.1:8788).
        namespace: first part of every key, to keep several stores apart (no ':' or whitespace).
        token: the service's bearer token (default MEMORY_SPINE_TOKEN).
        max_value_bytes: the largest value accepted (default 40,000 bytes; its base64 must fit the service's
            64 KiB metadata cap). A bigger value raises ValueError before anything is written.
        timeout, transport: as for `MemoryClient`.
    """

    def __init__(
        self,
        base_url: str | None = None,
        *,
        namespace: str = "kv",
        token: str | None = None,
        max_value_bytes: int = 40_000,
        timeout: float = 10.0,
        transport: httpx.AsyncBaseTransport | None = None,
    ) -> None:
        if not namespace or ":" in namespace or any(ch.isspace() for ch in namespace):
            raise ValueError("namespace must be non-empty, without ':' or whitespace")
        self.namespace = namespace
        self.max_value_bytes = max_value_bytes
        self._bridge = Bridge(base_url, token=token, timeout=timeout, transport=transport, name="memory-spine-kv")

    def _key(self, key: str) -> str:
        if not isinstance(key, str) or not key:
            raise ValueError(f"keys must be non-empty strings, not {key!r}")
        return f"{self.namespace}:{key}"

    @staticmethod
    def _id(full_key: str) -> str:
        return "kv-" + hashlib.sha256(full_key.encode("utf-8", "surrogatepass")).hexdigest()[:40]

    def _body(self, key: str, value: bytes) -> dict[str, Any]:
        if not isinstance(value, bytes | bytearray):
            raise TypeError(f"MemorySpineByteStore holds bytes; {key!r} has a {type(value).__name__}")
        if len(value) > self.max_value_bytes:
            raise ValueError(f"the value of {key!r} is {len(value)} bytes; the limit is {self.max_value_bytes}")
        full = self._key(key)
        return {
            "id": self._id(full),
            "key": full,
            "content": f"langchain kv {full[:200]}",
            "metadata": {"b64": base64.b64encode(bytes(value)).decode("ascii")},
            "tags": TAGS,
            "importance": "low",
        }

    async def aclose(self) -> None:
        """Close the running loop's connection pool and the sync methods' loop thread."""
        await self._bridge.aclose()

    def close(self) -> None:
        """Close the sync methods' loop thread."""
        self._bridge.close()

    # -- async -----------------------------------------------------------------------------------------------

    async def amget(self, keys: Sequence[str]) -> list[bytes | None]:
        """The values of these keys, in order; None where a key has no value."""
        client = self._bridge.client()

        async def one(key: str) -> bytes | None:
            try:
                rec = await client.get(self._id(self._key(key)))
            except NotFound:
                return None
            return base64.b64decode(rec["metadata"]["b64"])

        return list(await asyncio.gather(*(one(k) for k in keys)))

    async def amset(self, key_value_pairs: Sequence[tuple[str, bytes]]) -> None:
        """Set these keys (a key given twice keeps its last value), in batches of 100, each all or nothing."""
        last = {key: value for key, value in key_value_pairs}
        bodies = [self._body(key, value) for key, value in last.items()]
        client = self._bridge.client()
        for i in range(0, len(bodies), _BATCH):
            await client.ingest_batch(bodies[i : i + _BATCH])

    async def amdelete(self, keys: Sequence[str]) -> None:
        """Delete these keys; keys without a value are skipped."""
        client = self._bridge.client()

        async def one(key: str) -> None:
            try:
                await client.delete(self._id(self._key(key)))
            except NotFound:
                pass

        await asyncio.gather(*(one(k) for k in set(keys)))

    async def ayield_keys(self, *, prefix: str | None = None) -> AsyncIterator[str]:
        """Every key (starting with `prefix`, if given), page by page, most recently set first."""
        client = self._bridge.client()
        start = f"{self.namespace}:{prefix or ''}"
        cursor: str | None = None
        while True:
            page = await client.list(key_prefix=start, tags=[TAGS[1]], limit=_PAGE, cursor=cursor)
            for rec in page.get("results") or []:
                yield rec["key"][len(self.namespace) + 1 :]
            cursor = page.get("next_cursor")
            if not cursor:
                return

    async def aclear(self) -> None:
        """Delete every key of this namespace, in one request."""
        await self._bridge.client().delete_where(key_prefix=f"{self.namespace}:", tags=[TAGS[1]])

    # -- sync: the async methods on the bridge's loop thread ----------------------------------------------------

    def mget(self, keys: Sequence[str]) -> list[bytes | None]:
        """Sync `amget`."""
        return self._bridge.run(self.amget(keys))

    def mset(self, key_value_pairs: Sequence[tuple[str, bytes]]) -> None:
        """Sync `amset`."""
        self._bridge.run(self.amset(key_value_pairs))

    def mdelete(self, keys: Sequence[str]) -> None:
        """Sync `amdelete`."""
        self._bridge.run(self.amdelete(keys))

    def yield_keys(self, *, prefix: str | None = None) -> Iterator[str]:
        """Sync `ayield_keys`, fetching lazily page by page."""
        yield from self._bridge.iterate(self.ayield_keys(prefix=prefix))

    def clear(self) -> None:
        """Sync `aclear`."""
        self._bridge.run(self.aclear())
