"""Search plans: exact key, exact scoring of few candidates, HNSW (plain or post-filtered), keyword, hybrid.

The planner asks storage how many records a filter matches and picks:

- `exact_key`   the query is a key form (`checkpoint:...`, `dedup:...`): index lookup, newest first;
- `exact`       no filter and at most `exact_below` vectors in the store (the measured crossover): every vector
                scored with one matrix product held in memory (the index's side list);
- `hnsw`        no filter: the HNSW index, plus the side list of isolated vectors it may strand (index.py);
- `exact`       a filter matching at most `exact_max_candidates` records (found without counting a broad
                filter to the end): their stored vectors scored with one matrix product (numpy), so a
                selective filter is both exact and fast;
- `hnsw_filter` a broader filter: HNSW candidates checked against the filter in SQL, k (and ef with it)
                widening by the pass rate seen until `limit` hits are found; `+exact` when the filter's
                matches sit far from the query and four rounds were not enough;
- `keyword`     BM25 over the FTS5 index, with the filter in the same SQL;
- `hybrid`      semantic and keyword lists fused by reciprocal rank fusion (k=10), each hit with its cosine
                similarity (keyword-only hits: their stored vectors scored exactly, `similarity`).

Every plan returns exactly `limit` hits whenever at least `limit` live records match the filter.

`Planner` is the embedded default's `VectorSearch` (storage/base.py): it also keeps the derived index in step
with storage (`added`/`removed` after each commit) and persists it now and then (`maintain`). PostgreSQL's
`VectorSearch` runs the same plans in SQL (storage/pg_search.py); both share storage/search.py (`Plan`, `hybrid`,
`exact_cap`).
"""

from __future__ import annotations

import logging
import math
import time
from collections.abc import Sequence
from dataclasses import replace
from typing import TYPE_CHECKING, Any

import numpy as np

from .index import INDEX_FILE, VectorIndex
from .models import Filter
from .storage.filters import Conditions, parse_filter
from .storage.search import Cosines, Plan, Scored, exact_cap, hybrid

if TYPE_CHECKING:
    from .config import Settings
    from .storage.base import VectorSource

log = logging.getLogger("memory_spine.planner")


def open_planner(settings: Settings, storage: VectorSource) -> Planner:
    """The embedded default's search: load (or rebuild) the hnswlib index in the data dir, plan over it."""
    index = VectorIndex.for_settings(settings, storage.dim)
    index.open(storage)
    planner = Planner(
        storage, index, exact_max_candidates=settings.exact_max_candidates, ef_search=settings.hnsw_ef_search
    )
    planner.save_seconds = settings.index_save_seconds
    planner.save_changes = settings.index_save_changes
    return planner


class Planner:
    """Chooses and runs a plan over a `VectorSource` (storage/base.py) and a `VectorIndex`."""

    save_seconds: float = 60.0  # persist the index when changes are pending this long ...
    save_changes: int = 10_000  # ... or this many are pending

    def __init__(self, storage: VectorSource, index: VectorIndex, *, exact_max_candidates: int, ef_search: int) -> None:
        self.storage = storage
        self.index = index
        self.exact_max = exact_max_candidates
        self.ef = ef_search
        # A rebuilt index exists only in memory: count it as pending, so it is saved within save_seconds and a
        # second crash before any write does not cost another rebuild.
        self._saved_version = index.version if index.last_open.get("how") == "loaded" else -1
        self._last_save = time.monotonic()

    def semantic(self, vector: np.ndarray, flt: Filter | None, limit: int, now: float) -> tuple[Scored, dict, Plan]:
        """Top `limit` (seq, cosine) pairs plus their hydrated rows."""
        started = time.perf_counter()
        c = self.scoped(parse_filter(flt))
        if not c.restricts:
            hits, rows, plan = self._hnsw(vector, None, limit, now)
        else:
            # A namespace is a filter like any other: one shared index, the namespace's records scored exactly
            # when few (an index range on `namespace`), else HNSW candidates checked against it.
            cap = self.exact_cap(limit)
            if not c:  # only a namespace: counted from its index, then its vectors read in the same pass
                found = None
                if self.storage.namespace_count_upto(c, cap) <= cap:
                    found = self.storage.candidate_vectors(c, now, cap)
                if found is not None:
                    hits, rows, plan = self._scored(vector, *found, limit, now)
                else:
                    hits, rows, plan = self._hnsw(vector, c, limit, now)
            else:
                broad = bool(c.tags) and self.storage.tag_count_upto(list(c.tags), cap) > cap
                seqs = None if broad else self.storage.candidate_seqs(c, now, cap)
                if seqs is not None:
                    hits, rows, plan = self._exact(vector, seqs, limit, now)
                else:
                    hits, rows, plan = self._hnsw(vector, c, limit, now)
        plan.ms = (time.perf_counter() - started) * 1000
        return hits, rows, plan

    def scoped(self, c: Conditions) -> Conditions:
        """`c` without its namespace selection when that selects every namespace holding records (filters nothing)."""
        if c.namespaces is not None and c.namespaces.covers(self.storage.present_namespaces()):
            return replace(c, namespaces=None)
        return c

    def exact_cap(self, limit: int) -> int:
        """Most candidates worth scoring exactly rather than searching HNSW with a filter (storage/search.py)."""
        return exact_cap(limit, len(self.index), self.exact_max)

    def _exact(self, vector: np.ndarray, candidates: np.ndarray, limit: int, now: float):
        return self._scored(vector, *self.storage.vectors(candidates), limit, now)

    def _scored(self, vector: np.ndarray, seqs: np.ndarray, vecs: np.ndarray, limit: int, now: float):
        """The top `limit` of these (seqs, vectors) by cosine, exactly, with their rows."""
        plan = Plan("exact", candidates=len(seqs))
        if not len(seqs):
            return [], {}, plan
        scores = vecs @ vector.astype(np.float32)
        k = min(limit, len(seqs))
        top = np.argpartition(-scores, k - 1)[:k] if k < len(seqs) else np.arange(len(seqs))
        top = top[np.argsort(-scores[top], kind="stable")]
        hits = [(int(seqs[i]), float(scores[i])) for i in top]
        rows = self.storage.rows([s for s, _ in hits], None, now)
        return [(s, sc) for s, sc in hits if s in rows], rows, plan

    def _hnsw(self, vector: np.ndarray, flt: Filter | Conditions | None, limit: int, now: float):
        """HNSW, then the filter on the candidates in SQL; k widens with the pass rate seen so far.

        A broad filter (more than `exact_max` matches) needs no count: the first round asks for a few times
        `limit` neighbours, and the share of them that pass the filter estimates its selectivity for the next
        round. After four rounds the filter's matches evidently sit far from the query: they are scored exactly.
        """
        size = len(self.index)
        filtered = flt is not None
        plan = Plan("hnsw_filter" if filtered else "hnsw")
        if self.index.exact_all:
            plan.name, plan.candidates = "exact", size
        elif len(self.index.side):
            plan.detail["side_list"] = len(self.index.side)
        k = max(limit * 4, 32) if filtered else limit
        # More than exact_max records pass a broad filter, so its pass rate is at least this.
        floor_rate = self.exact_max / max(size, 1) if filtered else 0.0
        for _round in range(4):
            k = max(1, min(k, size))
            plan.k.append(k)
            t0 = time.perf_counter()
            labels, sims = self.index.query(vector, k, ef=max(self.ef, k))
            t1 = time.perf_counter()
            if filtered:
                passing: Any = self.storage.matching(labels.tolist(), flt, now)
            else:
                # No filter: hydrating the k neighbours is the liveness check too (one query, not two).
                passing = rows = self.storage.rows(labels.tolist(), None, now)
            plan.add_ms("index_ms", t1 - t0)
            plan.add_ms("sql_ms", time.perf_counter() - t1)
            hits = [(int(s), float(sc)) for s, sc in zip(labels, sims, strict=True) if int(s) in passing]
            if len(hits) >= limit or k >= size:
                if filtered:
                    # Hydrate only what is returned (a record deleted since the check simply drops out).
                    rows = self.storage.rows([s for s, _ in hits[:limit]], None, now)
                return [(s, sc) for s, sc in hits[:limit] if s in rows], rows, plan
            rate = max(len(hits) / k, floor_rate, 1e-6)
            # Widen to what the pass rate says is needed, at least double, at most 8x a round.
            k = min(max(k * 2, int(math.ceil(limit / rate * 1.5)) + limit), k * 8)
        plan.name += "+exact"
        seqs = self.storage.candidate_seqs(flt if flt is not None else Filter(), now, size)
        hits, rows, exact_plan = self._exact(vector, seqs if seqs is not None else np.empty(0), limit, now)
        plan.candidates = exact_plan.candidates
        return hits, rows, plan

    def keyword(self, query: str, flt: Filter | None, limit: int, now: float) -> tuple[Scored, dict, Plan]:
        started = time.perf_counter()
        ranked = self.storage.keyword(query, self.scoped(parse_filter(flt)), now, limit, total=len(self.index))
        rows = self.storage.rows([s for s, _ in ranked], None, now)
        # BM25 is unbounded; s / (1 + s) maps it into [0, 1) keeping the order.
        hits = [(s, sc / (1.0 + sc)) for s, sc in ranked if s in rows]
        plan = Plan("keyword", ms=(time.perf_counter() - started) * 1000)
        return hits, rows, plan

    def hybrid(
        self, query: str, vector: np.ndarray, flt: Filter | None, limit: int, now: float, min_score: float | None
    ) -> tuple[Scored, dict, Plan, Cosines]:
        return hybrid(
            lambda depth: self.semantic(vector, flt, depth, now),
            lambda depth: self.keyword(query, flt, depth, now)[:2],
            limit,
            lambda seqs: self.similarity(vector, seqs),
            min_score,
        )

    def similarity(self, vector: np.ndarray, seqs: Sequence[int]) -> Cosines:
        """Exact cosine similarities of these records' stored vectors with `vector` (stored vectors are unit)."""
        if not len(seqs):
            return {}
        found, vecs = self.storage.vectors(seqs)
        return dict(zip(found.tolist(), (vecs @ vector.astype(np.float32)).tolist(), strict=True))

    # -- the derived index's life (the rest of the VectorSearch contract) ----------------------------------
    def added(self, seqs: np.ndarray, vectors: np.ndarray) -> None:
        """After a commit, under storage's write lock: index the changed vectors, in commit order."""
        if len(seqs):
            self.index.add(np.asarray(seqs, dtype=np.int64), vectors)
        self.index.version = self.storage.max_vector_version()

    def removed(self, seqs: Sequence[int]) -> None:
        if len(seqs):
            self.index.remove(seqs)
        self.index.version = self.storage.max_vector_version()

    def maintain(self, force: bool = False) -> dict[str, Any] | None:
        """Persist the index when enough changes are pending (or `force`); storage then forgets its tombstones."""
        pending = self.index.version - self._saved_version
        due = time.monotonic() - self._last_save >= self.save_seconds
        if not (force or pending >= self.save_changes or (pending > 0 and due)):
            return None
        info = self.index.save(self.storage)
        self._saved_version = info["version"]
        self._last_save = time.monotonic()
        self.storage.forget_tombstones(info["version"])
        log.info("vector index saved", extra={"event": "index_saved", **info})
        return info

    def info(self) -> dict[str, Any]:
        index_file = self.index.dir / INDEX_FILE
        return {
            **self.index.info(),
            "bytes": index_file.stat().st_size if index_file.exists() else 0,
            "last_open": self.index.last_open,
        }

    def check(self, repair: bool) -> dict[str, Any]:
        """Does the index hold exactly the live rows? Rebuild it from the stored vectors if not and asked."""
        live = {int(s) for s in self.storage.live_seqs()}
        labels = self.index.labels()
        missing, extra = live - labels, labels - live
        report: dict[str, Any] = {
            "rows": len(live),
            "index_elements": len(labels),
            "missing_from_index": len(missing),
            "extra_in_index": len(extra),
        }
        if repair and (missing or extra):
            self.index.rebuild(self.storage)
            self.maintain(force=True)
            report["repaired"] = True
        return report

    def close(self) -> None:
        try:
            self.maintain(force=True)
        except Exception:
            log.exception("could not persist the index at shutdown; it will catch up on the next start")

    def __len__(self) -> int:
        return len(self.index)
