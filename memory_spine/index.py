"""The hnswlib vector index: a derived cache of the vectors stored in SQLite, never the truth.

Files in the data dir: `index.hnsw` (hnswlib's own format) and `index.json`, a marker saying which storage
version the file covers, how many elements, the parameters, and a checksum of the file. On open the index is
loaded and caught up with what storage changed since that version; a missing, truncated or garbled file
(checksum mismatch, load error, wrong parameters) is rebuilt from the stored vectors, without re-embedding.
Saves write a temp file and rename it, then the marker, so a crash mid-save leaves the previous pair (or a new
file with an older marker, which catch-up makes right again: adds and deletes are idempotent).

No stranded points (issue 23). HNSW keeps no promise that a point far from the bulk keeps an incoming link: the
graph's neighbour lists prune a far point in favour of nearer ones, and a search never reaches it again. So some
vectors are also kept in a small side list (`SideList`) that every query scores exactly, beside the graph:

- while the index holds at most `exact_below` vectors (the measured crossover where one matrix product is as
  fast as the graph), the side list holds them all and a query is exact (no graph walk at all);
- above it, the side list holds the *isolated* vectors: after each add the new vectors' k-th nearest neighbour
  (k = `ISOLATION_K`) is looked up in the graph and remembered per label (`_kth`); a vector whose k-th neighbour
  is more than `ISOLATION_RATIO` times as far as is typical (the median over the last `_RESERVOIR` adds) is kept.
  Look-alike bulk never is; a memory on another topic, or a small island of them (fewer than k), always is.
  A remembered distance only ever overestimates (later adds can only bring neighbours nearer, and an approximate
  lookup misses some), so when the typical distance falls (the bulk grows denser) the side list is widened from
  the remembered distances, with no lookups, and errs towards keeping a vector.

The distances are saved beside the index (`index.kth.npy`) and the recent ones in the marker, so a restart does
not look them up again.
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
from typing import TYPE_CHECKING, Any

import hnswlib
import numpy as np

if TYPE_CHECKING:
    from .storage.base import VectorSource

log = logging.getLogger("memory_spine.index")

INDEX_FILE = "index.hnsw"
MARKER_FILE = "index.json"
KTH_FILE = "index.kth.npy"
_MIN_CAPACITY = 1024

# Measured crossover (README, "Search plans"): up to about this many 384-d vectors one float32 matrix product and
# a partial sort (single-threaded BLAS) costs no more than a graph walk at ef=128, so they are all scored exactly.
EXACT_BELOW = 2048
ISOLATION_K = 10  # a vector with fewer than this many near neighbours is "isolated" ...
ISOLATION_RATIO = 2.0  # ... when its k-th neighbour is this many times further than the median
ISOLATION_FLOOR = 0.1  # cosine distance: ten neighbours with cosine >= 0.9 are never isolated
_ISOLATION_EF = 32  # the neighbour lookup's ef: cheap, and only ever errs towards keeping a vector
_RESERVOIR = 1024
_BLOCK = 1024  # rows per matrix-vector product (see SideList.top)


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
    exact_below: int = EXACT_BELOW


class SideList:
    """Vectors scored exactly on every query: labels and unit rows of a float32 matrix (swap-remove)."""

    def __init__(self, dim: int) -> None:
        self.dim = dim
        self._vecs = np.empty((64, dim), dtype=np.float32)
        self._labels = np.empty(64, dtype=np.int64)
        self._row: dict[int, int] = {}

    def __len__(self) -> int:
        return len(self._row)

    def __contains__(self, label: object) -> bool:
        return label in self._row

    def labels(self) -> list[int]:
        return self._labels[: len(self._row)].tolist()

    def clear(self) -> None:
        self._row.clear()

    def add(self, labels: np.ndarray, vecs: np.ndarray) -> None:
        vecs = np.asarray(vecs, dtype=np.float32)
        norms = np.linalg.norm(vecs, axis=1, keepdims=True)
        vecs = vecs / np.where(norms > 0, norms, 1.0)
        for label, vec in zip(labels.tolist(), vecs, strict=True):
            row = self._row.get(label)
            if row is None:
                row = len(self._row)
                if row == len(self._labels):
                    self._vecs = np.concatenate([self._vecs, np.empty_like(self._vecs)])
                    self._labels = np.concatenate([self._labels, np.empty_like(self._labels)])
                self._row[label] = row
                self._labels[row] = label
            self._vecs[row] = vec

    def discard(self, label: int) -> None:
        row = self._row.pop(label, None)
        if row is None:
            return
        last = len(self._row)
        if row != last:
            moved = int(self._labels[last])
            self._vecs[row] = self._vecs[last]
            self._labels[row] = moved
            self._row[moved] = row

    def compact(self) -> None:
        """Give back the rows of a list that shrank (the whole store's, past the crossover)."""
        n = len(self._row)
        if len(self._labels) > max(4 * n, 256):
            size = max(2 * n, 64)
            self._vecs = self._vecs[:size].copy()
            self._labels = self._labels[:size].copy()

    def scores(self, vector: np.ndarray) -> np.ndarray:
        """Cosine similarity of every vector in the list to `vector`, in row order."""
        n = len(self._row)
        q = np.asarray(vector, dtype=np.float32).reshape(-1)
        norm = float(np.sqrt(q @ q))
        if norm > 0 and abs(norm - 1.0) > 1e-4:
            q = q / norm
        if n <= _BLOCK:
            return self._vecs[:n] @ q
        # In blocks: OpenBLAS threads a larger product, and waking threads on a busy machine costs milliseconds.
        return np.concatenate([self._vecs[i : min(i + _BLOCK, n)] @ q for i in range(0, n, _BLOCK)])

    def top(
        self,
        vector: np.ndarray,
        k: int,
        allowed: Callable[[int], bool] | None = None,
        scores: np.ndarray | None = None,
    ) -> tuple[np.ndarray, np.ndarray]:
        """The k most similar labels (cosine), best first, among those `allowed` passes."""
        n = len(self._row)
        if n == 0 or k <= 0:
            return np.empty(0, dtype=np.int64), np.empty(0, dtype=np.float32)
        if scores is None:
            scores = self.scores(vector)
        labels = self._labels[:n]
        if allowed is not None:
            keep = np.fromiter((allowed(int(x)) for x in labels), dtype=bool, count=n)
            labels, scores = labels[keep], scores[keep]
        k = min(k, len(labels))
        if k < len(labels):
            part = np.argpartition(-scores, k - 1)[:k]
        else:
            part = np.arange(len(labels))
        order = part[np.argsort(-scores[part], kind="stable")]
        return labels[order], scores[order]


class VectorIndex:
    """Cosine-space hnswlib index keyed by storage `seq`, growing without a fixed capacity."""

    @classmethod
    def for_settings(cls, settings: Any, dim: int) -> VectorIndex:
        """The index of `settings.data_dir`, with the settings' HNSW parameters (not loaded yet)."""
        params = IndexParams(
            dim=dim,
            m=settings.hnsw_m,
            ef_construction=settings.hnsw_ef_construction,
            ef_search=settings.hnsw_ef_search,
            exact_below=getattr(settings, "exact_below", EXACT_BELOW),
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
        self.side = SideList(params.dim)
        self.exact_all = True  # the side list holds every live vector (at most exact_below of them)
        self._recent = np.empty(0, dtype=np.float32)  # k-th neighbour distances of the last adds
        self._kth = np.full(0, np.nan, dtype=np.float32)  # by label: k-th neighbour distance when last looked up
        self._limit = np.inf  # the isolation threshold the side list was last widened (or narrowed) to

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

    def open(self, storage: VectorSource) -> dict[str, Any]:
        """Load the persisted index and catch it up with storage, or rebuild it. Returns what happened."""
        started = time.perf_counter()
        how = "loaded"
        reason = None
        try:
            self.load()
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

    def load(self) -> None:
        """Read the persisted index and its marker, as they are (no catching up).

        Raises:
            FileNotFoundError / ValueError / RuntimeError: missing, truncated or garbled (`open` rebuilds then).
        """
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
        self._recent = np.asarray(marker.get("recent_kth", []), dtype=np.float32)[-_RESERVOIR:]
        self._limit = np.inf
        self.side.clear()
        ids = np.asarray(index.get_ids_list(), dtype=np.int64)
        try:
            kth = np.load(self.dir / KTH_FILE)
            if kth.dtype != np.float32 or kth.ndim != 1:
                raise ValueError("not a float32 vector")
        except Exception:
            kth = np.full(0, np.nan, dtype=np.float32)  # looked up again below
        self._kth = kth
        if self._count <= self.params.exact_below:
            self.exact_all = True
            self._side_add(np.array([x for x in ids if self._is_live(int(x))], dtype=np.int64))
            return
        self.exact_all = False
        known = ids < len(kth)
        known[known] = np.isfinite(kth[ids[known]])
        # Deleted labels have no distance either: only the live ones among the unknown are looked up.
        unknown = [int(x) for x in ids[~known] if self._is_live(int(x))]
        if unknown:  # a file from before the side list, or lost: look them up (about 0.1 ms each)
            self._vet(unknown, threads=2)
        self._refit(force=True)

    def _side_add(self, labels: np.ndarray) -> None:
        """Copy these labels' vectors from the graph into the side list (hnswlib keeps them normalised)."""
        assert self._index is not None
        if len(labels):
            self.side.add(labels, np.asarray(self._index.get_items(labels.tolist()), dtype=np.float32))

    def _rebuild(self, storage: VectorSource) -> None:
        with storage.exclusive(), self._lock:
            self._index = self._new(_MIN_CAPACITY)
            self._count = 0
            self.side.clear()
            self.exact_all = True
            self._recent = np.empty(0, dtype=np.float32)
            self._kth = np.full(0, np.nan, dtype=np.float32)
            self._limit = np.inf
            self.version = storage.max_vector_version()
            for seqs, vecs in storage.iter_vectors():
                self._add_unlocked(seqs, vecs, threads=2, fresh=True)

    def rebuild(self, storage: VectorSource) -> None:
        """Drop the in-memory index and build it again from the stored vectors."""
        self._rebuild(storage)

    def catch_up(self, storage: VectorSource) -> int:
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
        if self.exact_all and self._count <= self.params.exact_below:
            self.side.add(seqs, vecs)
        elif self.exact_all:
            # Past the crossover: from now on the graph answers, and the side list keeps only isolated vectors.
            self.side.add(seqs, vecs)
            self.exact_all = False
            self._vet(self.side.labels(), threads=2)
        else:
            self._vet(seqs.tolist(), vecs, threads)

    def _vet(self, labels: list[int], vecs: np.ndarray | None = None, threads: int = 1) -> None:
        """Look up and remember each vector's k-th nearest neighbour distance; refit the side list to them."""
        assert self._index is not None
        if not labels:
            return
        if vecs is None:
            vecs = np.asarray(self._index.get_items(labels), dtype=np.float32)
        k = min(ISOLATION_K + 1, self._index.get_current_count())
        self._index.set_ef(max(_ISOLATION_EF, k))
        try:
            found, dist = self._index.knn_query(vecs, k=k, num_threads=threads)
        finally:
            self._index.set_ef(self.params.ef_search)
        mine = found == np.asarray(labels, dtype=np.uint64)[:, None]
        # The k-th neighbour other than the vector itself (itself is usually first, at distance 0); fewer
        # neighbours than k: as far as can be.
        others = np.where(mine, np.inf, dist)
        others.sort(axis=1)
        kth = others[:, ISOLATION_K - 1] if k > ISOLATION_K else np.full(len(labels), 2.0)
        kth = np.minimum(kth, 2.0).astype(np.float32)
        self._recent = np.concatenate([self._recent, kth])[-_RESERVOIR:]
        top = max(labels)
        if top >= len(self._kth):
            grown = np.full(max(top + 1, 2 * len(self._kth), 1024), np.nan, dtype=np.float32)
            grown[: len(self._kth)] = self._kth
            self._kth = grown
        self._kth[labels] = kth
        if not self._refit():
            keep = kth > self._limit
            for lb, iso in zip(labels, keep.tolist(), strict=True):
                if not iso:
                    self.side.discard(lb)
            if keep.any():
                self.side.add(np.asarray(labels, dtype=np.int64)[keep], vecs[keep])

    def _refit(self, force: bool = False) -> bool:
        """Move the isolation threshold to the recent median; when it moved, rebuild the side list from `_kth`."""
        typical = float(np.median(self._recent)) if len(self._recent) else 0.0
        limit = max(ISOLATION_RATIO * typical, ISOLATION_FLOOR)
        if not force and abs(limit - self._limit) <= 0.05 * min(limit, self._limit):
            return False
        self._limit = limit
        with np.errstate(invalid="ignore"):
            wanted = set(np.flatnonzero(self._kth > limit).tolist())
        for lb in [x for x in self.side.labels() if x not in wanted]:
            self.side.discard(lb)
        new = [lb for lb in wanted if lb not in self.side and self._is_live(lb)]
        self._side_add(np.asarray(new, dtype=np.int64))
        self.side.compact()
        return True

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
                self.side.discard(int(s))
                if 0 <= int(s) < len(self._kth):
                    self._kth[int(s)] = np.nan
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
            if self.exact_all:
                return self.side.top(vector, k, allowed)
            self._index.set_ef(max(ef or self.params.ef_search, k))
            try:
                labels, dist = self._index.knn_query(vector, k=k, filter=allowed)
            except RuntimeError:
                # hnswlib raises when fewer than k elements pass the filter; ask for what there is.
                labels, dist = self._fallback_query(vector, k, allowed)
            found, sims = labels[0].astype(np.int64), (1.0 - dist[0]).astype(np.float32)
            if not len(self.side):
                return found, sims
            scores = self.side.scores(vector)
            if len(found) == k and float(scores.max()) < float(sims[-1]):
                return found, sims  # the usual case: no side vector beats the graph's k-th
            side, side_sims = self.side.top(vector, k, allowed, scores)
            return _merge(found, sims, side, side_sims, k)

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
            "exact_below": self.params.exact_below,
            "exact": self.exact_all,
            "side_list": len(self.side),
        }

    # -- persistence ----------------------------------------------------------------------------------
    def save(self, storage: VectorSource) -> dict[str, Any]:
        """Persist the index and its marker. Holds off writes so the file matches exactly one version."""
        started = time.perf_counter()
        self.dir.mkdir(parents=True, exist_ok=True)
        index_path = self.dir / INDEX_FILE
        tmp = self.dir / (INDEX_FILE + ".tmp")
        with storage.exclusive(), self._lock:
            assert self._index is not None
            version = self.version
            self._index.save_index(str(tmp))
            kth_tmp = self.dir / (KTH_FILE + ".tmp.npy")
            np.save(kth_tmp, self._kth)
            os.replace(kth_tmp, self.dir / KTH_FILE)
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
                "recent_kth": [round(float(x), 5) for x in self._recent],
            }
            os.replace(tmp, index_path)
            marker_tmp = self.dir / (MARKER_FILE + ".tmp")
            marker_tmp.write_text(json.dumps(marker))
            os.replace(marker_tmp, self.dir / MARKER_FILE)
        return {"version": version, "elements": marker["elements"], "seconds": time.perf_counter() - started}


def _merge(
    labels: np.ndarray, sims: np.ndarray, more: np.ndarray, more_sims: np.ndarray, k: int
) -> tuple[np.ndarray, np.ndarray]:
    """The k best of two ranked (label, similarity) lists, each label once, best first."""
    best = dict(zip(labels.tolist(), sims.tolist(), strict=True))
    for label, sim in zip(more.tolist(), more_sims.tolist(), strict=True):
        if sim > best.get(label, -np.inf):
            best[label] = sim
    top = sorted(best.items(), key=lambda kv: kv[1], reverse=True)[:k]
    return np.array([lb for lb, _ in top], dtype=np.int64), np.array([sc for _, sc in top], dtype=np.float32)
