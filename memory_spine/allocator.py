"""glibc malloc tuning for the long-running server: few arenas, and freed memory handed back to the OS.

glibc gives each thread that contends for the heap an arena of its own (up to 8 per core) and keeps what is
freed in each for reuse. A server whose requests hop over a pool of worker threads leaves a batch's peak in
every arena it touched: the resident size grows with the pool, not with the data. Two arenas and a periodic
`malloc_trim` keep it close to what is live. Elsewhere than glibc (musl, macOS) both calls are no-ops.
"""

from __future__ import annotations

import ctypes
import ctypes.util

M_ARENA_MAX = -8  # glibc's mallopt parameter number

_libc: ctypes.CDLL | None = None


def _glibc() -> ctypes.CDLL | None:
    global _libc
    if _libc is None:
        try:
            lib = ctypes.CDLL(ctypes.util.find_library("c") or "libc.so.6")
            lib.malloc_trim  # only glibc has it  # noqa: B018
            lib.mallopt  # noqa: B018
        except (OSError, AttributeError):
            return None
        _libc = lib
    return _libc


def limit_arenas(count: int = 2) -> bool:
    """Cap malloc arenas (like MALLOC_ARENA_MAX). Call before the worker threads start. True if applied."""
    lib = _glibc()
    return bool(lib is not None and lib.mallopt(M_ARENA_MAX, count) == 1)


def trim() -> bool:
    """Return free heap memory to the OS (glibc's malloc_trim). True if some was released."""
    lib = _glibc()
    return bool(lib is not None and lib.malloc_trim(0) == 1)
