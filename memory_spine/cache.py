"""`LRU`: the service's in-memory caches, bounded by entries and by bytes, and `sizeof()`, the byte estimate.

Every cache in the process is one of these (the query cache and the result cache in service.py, the fake
embedder's word vectors): counting entries alone let 80 searches of 100 records of 100 KB each pin 450 MB,
since one entry can be a thousand times another. The byte count is an estimate of what the entry holds (string
lengths, array buffers, a fixed overhead per object), computed once when an entry is put; an entry larger than a
quarter of the budget is not kept at all, so one huge answer cannot flush everything else.
"""

from __future__ import annotations

import sys
import threading
from collections import OrderedDict
from collections.abc import Callable, Hashable
from typing import Any

import numpy as np

_OBJECT = 56  # a small Python object's header (an int, a float, an empty dict is more; close enough)
_SLOT = 8  # one reference in a list, a tuple or a dict's table


def sizeof(value: Any) -> int:
    """Roughly how many bytes `value` holds: walks dicts, lists and tuples; counts str/bytes and arrays by size."""
    if isinstance(value, str):
        return sys.getsizeof(value)
    if isinstance(value, bytes | bytearray):
        return len(value) + _OBJECT
    if isinstance(value, np.ndarray):
        return value.nbytes + 112
    if isinstance(value, dict):
        return _OBJECT + sum(2 * _SLOT + sizeof(k) + sizeof(v) for k, v in value.items())
    if isinstance(value, list | tuple | set | frozenset):
        return _OBJECT + sum(_SLOT + sizeof(v) for v in value)
    return _OBJECT


class LRU:
    """A thread-safe LRU of at most `size` entries and about `max_bytes` bytes; counts hits and misses (/stats)."""

    def __init__(self, size: int, max_bytes: int, weigh: Callable[[Any, Any], int] | None = None) -> None:
        self.size = size
        self.max_bytes = max_bytes
        self._weigh = weigh or (lambda key, value: sizeof(key) + sizeof(value))
        self._items: OrderedDict[Hashable, tuple[Any, int]] = OrderedDict()
        self._lock = threading.Lock()
        self.bytes = 0
        self.hits = 0
        self.misses = 0

    def get(self, key: Hashable, valid: Callable[[Any], bool] | None = None) -> Any:
        """The entry for `key` (None if absent, or if `valid` says it no longer holds: a miss either way)."""
        with self._lock:
            item = self._items.get(key)
            if item is None or (valid is not None and not valid(item[0])):
                self.misses += 1
                return None
            self._items.move_to_end(key)
            self.hits += 1
            return item[0]

    def put(self, key: Hashable, value: Any) -> None:
        """Keep `value` under `key`, evicting the least recently used entries beyond either bound."""
        if self.size <= 0 or self.max_bytes <= 0:
            return
        weight = self._weigh(key, value)
        with self._lock:
            old = self._items.pop(key, None)
            if old is not None:
                self.bytes -= old[1]
            if weight > self.max_bytes // 4:
                return  # one entry may not take over the cache
            self._items[key] = (value, weight)
            self.bytes += weight
            while len(self._items) > self.size or self.bytes > self.max_bytes:
                _, (_, dropped) = self._items.popitem(last=False)
                self.bytes -= dropped

    def __len__(self) -> int:
        return len(self._items)

    def info(self) -> dict[str, Any]:
        """Entries, bytes, bounds, hits, misses and hit rate."""
        total = self.hits + self.misses
        return {
            "entries": len(self._items),
            "capacity": self.size,
            "bytes": self.bytes,
            "max_bytes": self.max_bytes,
            "hits": self.hits,
            "misses": self.misses,
            "hit_rate": round(self.hits / total, 4) if total else 0.0,
        }
