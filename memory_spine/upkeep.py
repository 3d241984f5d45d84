"""Background upkeep: the service's one housekeeping thread. Every second it lets the search maintain itself
(persisting the hnswlib index now and then); every `purge_seconds` it purges expired records and prunes old
history; every TRIM_SECONDS it hands freed heap memory back to the OS (allocator.py). A failure is logged and
the next tick tries again; nothing here raises into a request.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable

from . import allocator
from .errors import MemorySpineError

log = logging.getLogger("memory_spine.service")

TRIM_SECONDS = 10.0  # how often housekeeping returns freed heap memory to the OS
TICK_SECONDS = 1.0


class Upkeep:
    """The housekeeping thread of one service: `start()` once, `stop()` on close.

    `purge` drops what expired (the service's purge_expired and prune_history), `maintain` is the search's
    upkeep (VectorSearch.maintain); `monotonic` paces them.
    """

    def __init__(
        self,
        purge: Callable[[], object],
        maintain: Callable[[], object],
        purge_seconds: float,
        monotonic: Callable[[], float] = time.monotonic,
    ) -> None:
        self.purge = purge
        self.maintain = maintain
        self.purge_seconds = purge_seconds
        self.monotonic = monotonic
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name="memory-spine-housekeeping", daemon=True)

    def start(self) -> None:
        self._thread.start()

    def stop(self, timeout: float = 30) -> None:
        """Ask the thread to stop and wait for it (at most `timeout` seconds)."""
        self._stop.set()
        self._thread.join(timeout=timeout)

    def _run(self) -> None:
        next_purge = self.monotonic() + self.purge_seconds
        next_trim = self.monotonic() + TRIM_SECONDS
        while not self._stop.wait(TICK_SECONDS):
            try:
                if self.monotonic() >= next_purge:
                    self.purge()
                    next_purge = self.monotonic() + self.purge_seconds
                self.maintain()
                if self.monotonic() >= next_trim:
                    # Hand what bursts of work freed back to the OS (a few ms; see allocator).
                    allocator.trim()
                    next_trim = self.monotonic() + TRIM_SECONDS
            except MemorySpineError as exc:
                log.warning("housekeeping failed: %s", exc, extra={"event": "housekeeping_failed"})
            except Exception:
                log.exception("housekeeping failed")
