"""The async/sync bridge the ecosystem adapters share: one MemoryClient per event loop, sync calls on a loop thread.

LangChain and LangGraph interfaces come in pairs (`add_texts` / `aadd_texts`, `batch` / `abatch`). The adapters
write the async form once over `MemoryClient` and run it from the sync form on a private event loop living on a
daemon thread, so a sync method works from any thread, with or without a running loop (but not from inside that
private loop). An httpx pool belongs to one loop, so each loop gets its own client.
"""

from __future__ import annotations

import asyncio
import threading
import weakref
from collections.abc import AsyncIterator, Coroutine, Iterator
from typing import Any, TypeVar

import httpx

from .client import MemoryClient

T = TypeVar("T")


class _LoopThread:
    """A private event loop on a daemon thread, for the sync methods."""

    def __init__(self, name: str) -> None:
        self.name = name
        self.loop = asyncio.new_event_loop()
        self.thread = threading.Thread(target=self.loop.run_forever, name=name, daemon=True)
        self.thread.start()

    def run(self, coro: Coroutine[Any, Any, T]) -> T:
        try:
            running = asyncio.get_running_loop()
        except RuntimeError:
            running = None
        if running is self.loop:
            coro.close()
            raise RuntimeError(f"{self.name}: a sync method was called from the adapter's own loop; await the a-method")
        return asyncio.run_coroutine_threadsafe(coro, self.loop).result()

    def stop(self) -> None:
        self.loop.call_soon_threadsafe(self.loop.stop)
        self.thread.join(timeout=10)
        self.loop.close()


class Bridge:
    """Per-loop MemoryClients plus the private loop the sync methods run on.

    Args:
        base_url, token, timeout, transport: as for `MemoryClient`.
        name: the loop thread's name, shown in errors and thread dumps.
    """

    def __init__(
        self,
        base_url: str | None = None,
        *,
        token: str | None = None,
        timeout: float = 10.0,
        transport: httpx.AsyncBaseTransport | None = None,
        name: str = "memory-spine-adapter",
    ) -> None:
        self.base_url = base_url
        self.name = name
        self._token = token
        self._timeout = timeout
        self._transport = transport
        self._clients: weakref.WeakKeyDictionary[asyncio.AbstractEventLoop, MemoryClient] = weakref.WeakKeyDictionary()
        self._lock = threading.Lock()
        self._loop_thread: _LoopThread | None = None

    def client(self) -> MemoryClient:
        """The MemoryClient of the running event loop."""
        loop = asyncio.get_running_loop()
        with self._lock:
            client = self._clients.get(loop)
            if client is None:
                client = MemoryClient(
                    self.base_url, token=self._token, timeout=self._timeout, transport=self._transport
                )
                self._clients[loop] = client
            return client

    def run(self, coro: Coroutine[Any, Any, T]) -> T:
        """Run `coro` on the private loop and return its result (the sync methods' way in)."""
        with self._lock:
            if self._loop_thread is None:
                self._loop_thread = _LoopThread(self.name)
            runner = self._loop_thread
        return runner.run(coro)

    def iterate(self, agen: AsyncIterator[T]) -> Iterator[T]:
        """A sync iterator over an async one, fetching lazily item by item on the private loop."""

        async def step() -> T:
            return await agen.__anext__()

        try:
            while True:
                try:
                    item = self.run(step())
                except StopAsyncIteration:
                    return
                yield item
        finally:
            aclose = getattr(agen, "aclose", None)
            if aclose is not None:
                self.run(aclose())

    async def aclose(self) -> None:
        """Close the running loop's connection pool, and the private loop of the sync methods."""
        loop = asyncio.get_running_loop()
        with self._lock:
            client = self._clients.pop(loop, None)
        if client is not None:
            await client.aclose()
        await asyncio.to_thread(self.close)

    def close(self) -> None:
        """Close the private loop of the sync methods (and its connection pool)."""
        with self._lock:
            runner, self._loop_thread = self._loop_thread, None
        if runner is None:
            return
        client = self._clients.pop(runner.loop, None)
        if client is not None:
            runner.run(client.aclose())
        runner.stop()
