"""The hnswlib vector index: a derived cache of the vectors stored in SQLite, never the truth.

Files in the data dir: `index.hnsw` (hnswlib's own format) and `index.json`, a marker saying which storage
version the file covers, how many elements, the parameters, and a checksum of the file. On open the index is
loaded and caught up with what storage changed since that version; a missing, truncated or garbled file
(checksum mismatch, load error, wrong parameters) is rebuilt from the stored vectors, without re-embedding.
Saves write a temp file and rename it, then the marker, so a crash mid-save leaves the previous pair (or a new
file with an older marker, which catch-up makes right again: adds and deletes are idempotent).
"""

from __future__ import annotations

import hashlib
import json
import logging
import os
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import hnswlib
import numpy as np

log = logging.getLogger("memory_spine.index")

INDEX_FILE = "index.hnsw"
MARKER_FILE = "index.json"
_MIN_CAPACITY = 1024


def _checksum(path: Path) -> str:
    h = hashlib.blake2b(digest_size=16)
    with open(path, "rb") as f:
        while chunk := f.read(4 * 1024 * 1024):
            h.update(chunk)
    return h.hexdigest()


@dataclass
class IndexParams:
    dim: int
    m: int = 16
    ef_construction: int = 200
    ef_search: int = 128


class VectorIndex:
    """Cosine-space hnswlib index keyed by storage `seq`, growing without a fixed capacity."""

    @classmethod
    def for_settings(cls, settings: Any, dim: int) -> VectorIndex:
        """The index of `settings.data_dir`, with the settings' HNSW parameters (not loaded yet)."""
        params = IndexParams(
            dim=dim, m=settings.hnsw_m, ef_construction=settings.hnsw_ef_construction, ef_search=settings.hnsw_ef_search
        )
        return cls(Path(settings.data_dir).expanduser(), params)

    def __init__(self, directory: Path, params: IndexParams) -> None:
        self.dir = Path(directory)
        self.params = params
        self.version = 0  # the storage version this in-memory index reflects
        self._lock = threading.RLock()
        self._index: hnswlib.Index | None = None
        self._count = 0
        self.last_open: dict[str, Any] = {}

    # -- life -----------------------------------------------------------------------------------------
    def _new(self, capacity: int) -> hnswlib.Index:
        index = hnswlib.Index(space="cosine", dim=self.params.dim)
        index.init_index(
            max_elements=max(capacity, _MIN_CAPACITY),
            ef_construction=self.params.ef_construction,
            M=self.params.m,
            allow_replace_deleted=False,
        )
        index.set_ef(self.params.ef_search)
        index.set_num_threads(1)
        return index

    def open(self, storage: Any) -> dict[str, Any]:
        """Load the persisted index and catch it up with storage, or rebuild it. Returns what happened."""
        started = time.perf_counter()
        how = "loaded"
        reason = None
        try:
            self._load()
            if self.version > storage.max_vector_version():
                # Storage versions never go back, so the database lost commits the index had seen (a WAL lost
                # with the power, a restored copy): its labels may now name other records' vectors.
                raise ValueError(
                    f"the index covers storage version {self.version} but the database ends at"
                    f" {storage.max_vector_version()} (it lost writes, or was restored from an older copy)"
                )
        except Exception as exc:  # any unreadable file is a reason to rebuild, never to refuse to start
            fresh = not (self.dir / INDEX_FILE).exists() and not (self.dir / MARKER_FILE).exists()
            reason = str(exc)
            how = "created" if fresh and storage.max_vector_version() == 0 else "rebuilt"
            self._rebuild(storage)
        caught_up = 0
        if how == "loaded":
            caught_up = self.catch_up(storage)
        self.last_open = {
            "how": how,
            "reason": reason,
            "caught_up": caught_up,
            "elements": self._count,
            "seconds": round(time.perf_counter() - started, 3),
        }
        if how == "rebuilt":
            log.warning("vector index rebuilt from storage", extra={"event": "index_rebuilt", **self.last_open})
        else:
            log.info("vector index loaded", extra={"event": "index_loaded", **self.last_open})
        return self.last_open

    def _load(self) -> None:
        marker_path = self.dir / MARKER_FILE
        index_path = self.dir / INDEX_FILE
        if not index_path.exists():
            raise FileNotFoundError(f"{index_path} is missing")
        if not marker_path.exists():
            raise FileNotFoundError(f"{marker_path} is missing")
        marker = json.loads(marker_path.read_text())
        for name in ("dim", "m", "ef_construction"):
            if marker.get(name) != getattr(self.params, name):
                raise ValueError(f"index parameter {name} is {marker.get(name)}, expected {getattr(self.params, name)}")
        size = index_path.stat().st_size
        if size != marker.get("bytes"):
            raise ValueError(f"index file has {size} bytes, the marker says {marker.get('bytes')} (truncated?)")
        if _checksum(index_path) != marker.get("checksum"):
            raise ValueError("index file checksum does not match its marker (garbled?)")
        index = hnswlib.Index(space="cosine", dim=self.params.dim)
        index.load_index(str(index_path), max_elements=max(int(marker["capacity"]), _MIN_CAPACITY))
        index.set_ef(self.params.ef_search)
        index.set_num_threads(1)
        self._index = index
        self._count = int(marker["elements"])
        self.version = int(marker["version"])

    def _rebuild(self, storage: Any) -> None:
        with storage.exclusive(), self._lock:
            self._index = self._new(_MIN_CAPACITY)
            self._count = 0
            self.version = storage.max_vector_version()
            for seqs, vecs in storage.iter_vectors():
                self._add_unlocked(seqs, vecs, threads=2, fresh=True)

    def rebuild(self, storage: Any) -> None:
        """Drop the in-memory index and build it again from the stored vectors."""
        self._rebuild(storage)

    def catch_up(self, storage: Any) -> int:
        """Apply what storage changed since `self.version`. Returns how many changes were applied."""
        with storage.exclusive():
            changes = storage.changes_since(self.version)
            if changes.upserts:
                seqs = np.array([s for s, _ in changes.upserts], dtype=np.int64)
                vecs = np.vstack([v for _, v in changes.upserts])
                self.add(seqs, vecs)
            if changes.deletes:
                self.remove(changes.deletes)
            self.version = max(self.version, changes.version)
            return len(changes.upserts) + len(changes.deletes)

    # -- writes (called under storage's write lock, in commit order) --------------------------------------
    def _add_unlocked(self, seqs: np.ndarray, vecs: np.ndarray, threads: int = 1, fresh: bool = False) -> None:
        assert self._index is not None
        needed = self._index.get_current_count() + len(seqs)
        capacity = self._index.get_max_elements()
        if needed > capacity:
            self._index.resize_index(max(needed, capacity * 2))
        # hnswlib replaces the vector of a label it already holds, and un-deletes a deleted one; only labels
        # not live before add to the live count. get_items() raises for absent or deleted labels.
        live_before = 0 if fresh else sum(1 for s in seqs if self._is_live(int(s)))
        self._index.add_items(vecs, seqs, num_threads=threads)
        self._count += len(seqs) - live_before

    def _is_live(self, label: int) -> bool:
        assert self._index is not None
        try:
            self._index.get_items([label])
        except RuntimeError:
            return False
        return True

    def add(self, seqs: np.ndarray, vecs: np.ndarray) -> None:
        seqs = np.asarray(seqs, dtype=np.int64)
        with self._lock:
            self._add_unlocked(seqs, np.asarray(vecs, dtype=np.float32), threads=2 if len(seqs) > 64 else 1)

    def remove(self, seqs: list[int] | np.ndarray) -> None:
        with self._lock:
            assert self._index is not None
            for s in seqs:
                try:
                    self._index.mark_deleted(int(s))
                except RuntimeError:
                    continue  # absent or already deleted: nothing to remove
                self._count -= 1

    # -- reads ----------------------------------------------------------------------------------------
    def query(
        self, vector: np.ndarray, k: int, ef: int | None = None, allowed: Callable[[int], bool] | None = None
    ) -> tuple[np.ndarray, np.ndarray]:
        """Top-k labels and cosine similarities (1 - distance), best first."""
        with self._lock:
            assert self._index is not None
            k = min(k, self._count)
            if k <= 0:
                return np.empty(0, dtype=np.int64), np.empty(0, dtype=np.float32)
            self._index.set_ef(max(ef or self.params.ef_search, k))
            try:
                labels, dist = self._index.knn_query(vector, k=k, filter=allowed)
            except RuntimeError:
                # hnswlib raises when fewer than k elements pass the filter; ask for what there is.
                labels, dist = self._fallback_query(vector, k, allowed)
            return labels[0].astype(np.int64), (1.0 - dist[0]).astype(np.float32)

    def _fallback_query(self, vector: np.ndarray, k: int, allowed: Callable[[int], bool] | None):
        assert self._index is not None
        while k > 1:
            k //= 2
            try:
                return self._index.knn_query(vector, k=k, filter=allowed)
            except RuntimeError:
                continue
        return np.empty((1, 0), dtype=np.uint64), np.empty((1, 0), dtype=np.float32)

    def __len__(self) -> int:
        return self._count

    def labels(self) -> set[int]:
        """The live labels (for checks; O(n))."""
        with self._lock:
            assert self._index is not None
            return {int(x) for x in self._index.get_ids_list() if self._is_live(int(x))}

    def info(self) -> dict[str, Any]:
        with self._lock:
            capacity = self._index.get_max_elements() if self._index is not None else 0
        return {
            "elements": self._count,
            "capacity": capacity,
            "version": self.version,
            "m": self.params.m,
            "ef_construction": self.params.ef_construction,
            "ef_search": self.params.ef_search,
            "space": "cosine",
        }

    # -- persistence ----------------------------------------------------------------------------------
    def save(self, storage: Any) -> dict[str, Any]:
        """Persist the index and its marker. Holds off writes so the file matches exactly one version."""
        started = time.perf_counter()
        self.dir.mkdir(parents=True, exist_ok=True)
        index_path = self.dir / INDEX_FILE
        tmp = self.dir / (INDEX_FILE + ".tmp")
        with storage.exclusive(), self._lock:
            assert self._index is not None
            version = self.version
            self._index.save_index(str(tmp))
            with open(tmp, "rb") as f:
                os.fsync(f.fileno())
            marker = {
                "version": version,
                "elements": self._count,
                "capacity": self._index.get_max_elements(),
                "dim": self.params.dim,
                "m": self.params.m,
                "ef_construction": self.params.ef_construction,
                "bytes": tmp.stat().st_size,
                "checksum": _checksum(tmp),
                "saved_at": time.time(),
            }
            os.replace(tmp, index_path)
            marker_tmp = self.dir / (MARKER_FILE + ".tmp")
            marker_tmp.write_text(json.dumps(marker))
            os.replace(marker_tmp, self.dir / MARKER_FILE)
        return {"version": version, "elements": marker["elements"], "seconds": time.perf_counter() - started}
