"""PostgreSQL's `VectorSearch`: the planner's plans and contract, run in SQL (pgvector HNSW, tsvector).

- `exact`        no filter and at most `exact_below` records (the measured crossover): a sequential scan scoring
                 every vector, with the index left out;
- `hnsw`         no filter: the HNSW index (`ORDER BY embedding <=> q`, `hnsw.ef_search` for recall >= 0.98),
                 plus the side list: records whose 10th nearest neighbour was far above the median when written
                 (`memory_kth`, see index.py for why), scored exactly in the same statement;
- `exact`        a filter matching at most `exact_cap(limit)` records: one statement finds them (stopping at
                 cap + 1, so a broad filter is never counted to the end) and, if few enough, scores them exactly;
- `hnsw_filter`  a broader filter: HNSW with pgvector 0.8's iterative scan (`hnsw.iterative_scan`), which keeps
                 walking the graph until `limit` rows pass the filter; `+exact` when even that came back short
                 while more records match (the scan gives up after `hnsw.max_scan_tuples`): scored exactly;
- `keyword`      the generated `tsvector` column (GIN) ranked by `ts_rank`, the filter in the same SQL;
- `hybrid`       both lists fused by reciprocal rank fusion (`search.hybrid`, as the embedded default); hits only
                 the keyword list found get their cosine from one more statement (`similarity`).

Exact keys never reach this module: the service answers them from the key index. Hits come back with their
rows, so a search is one or two statements and no separate hydration.

The side list is the embedded default's (index.py), kept in the database so every replica shares it: after each
write the new vectors' 10th-neighbour distances are looked up through the HNSW index and stored in `memory_kth`;
a search adds the rows whose distance is above `ISOLATION_RATIO` times the median of the last 1,024 (an index
range scan). Rows no write looked up (bulk loads, rows from before the table) are looked up by `maintain`.
"""

from __future__ import annotations

import logging
import re
import threading
import time
from collections.abc import Sequence
from typing import Any

import numpy as np

from ..index import ISOLATION_FLOOR, ISOLATION_K, ISOLATION_RATIO
from ..models import Filter
from ..namespaces import Selector
from .filters import parse_filter
from .pg_schema import FTS_NORMALISE
from .postgres import ROW_COLUMNS, ROW_WIDTH, PostgresStorage, compile_filter, row_dict
from .search import Cosines, Plan, Rows, Scored, drop_stopwords, exact_cap, hybrid, rarest

log = logging.getLogger("memory_spine.pg_search")
_TOKENS = re.compile(r"[^\W_]+")  # how PostgreSQL's parser splits a chunk, near enough (it splits at "_")
_STATS_SECONDS = 60.0
# Measured crossover (README, "Search plans"): up to this many rows a sequential scan scoring every vector is as
# fast as the HNSW walk (server time 0.69 vs 0.58 ms at 500 rows, 2.5 vs 0.8 at 2,000, 12 vs 0.9 at 4,000).
PG_EXACT_BELOW = 400
# Below this many rows PostgreSQL's own planner may prefer that sequential scan to the index (it did at 4,000
# rows: 12 ms against 0.9), so the graph walk is asked for explicitly; above it the planner picks the index.
_FORCE_INDEX_BELOW = 20_000
_VET_EF = 40  # ef for the neighbour lookups: cheap; a miss only overestimates a distance (keeps a vector)
_VET_INLINE = 256  # writes of more vectors leave the lookups to maintain() (a bulk load may have no index yet)
_BACKFILL = 500  # rows maintain() looks up per call
_RECENT = 1024


class PostgresSearch:
    """Semantic, keyword and hybrid search over `PostgresStorage`, in SQL."""

    index = None  # the database keeps the vector index itself: no derived one here

    def __init__(self, storage: PostgresStorage, *, exact_max_candidates: int = 4096, ef_search: int = 128) -> None:
        self.storage = storage
        self.exact_max = exact_max_candidates
        self.ef = ef_search
        self._size = 0
        self._term_freq: dict[str, float] = {}
        self._stats_at = 0.0
        self._stats_lock = threading.Lock()
        self.exact_below = PG_EXACT_BELOW
        self._recent = np.empty(0, dtype=np.float32)
        self._limit = ISOLATION_FLOOR
        self._side = 0
        self._backfilling = True
        self._namespaces: dict[str, int] = {}
        self._refresh()

    # -- statistics: table size (for the exact bound) and common lexemes (for keyword pruning) ----------------
    def _refresh(self) -> None:
        with self.storage.conn() as conn:
            size = conn.execute(
                "SELECT greatest(reltuples, 0)::bigint FROM pg_class WHERE oid = 'memories'::regclass"
            ).fetchone()[0]
            if size < 100_000:  # cheap enough to count, and reltuples is 0 or stale on a young table
                size = conn.execute("SELECT count(*) FROM memories").fetchone()[0]
            row = conn.execute(
                "SELECT most_common_elems::text::text[], most_common_elem_freqs FROM pg_stats"
                " WHERE schemaname = current_schema() AND tablename = 'memories' AND attname = 'fts'"
            ).fetchone()
            recent = conn.execute("SELECT kth FROM memory_kth ORDER BY seq DESC LIMIT %s", (_RECENT,)).fetchall()
            self._recent = np.array([r[0] for r in recent], dtype=np.float32)
            self._fit()
            self._side = conn.execute("SELECT count(*) FROM memory_kth WHERE kth > %s", (self._limit,)).fetchone()[0]
            # Records per namespace (an index-only scan of (namespace, seq)): how selective a namespace is.
            self._namespaces = dict(conn.execute("SELECT namespace, count(*) FROM memories GROUP BY namespace"))
        self._size = int(size)
        self._term_freq = dict(zip(row[0], row[1], strict=False)) if row and row[0] else {}
        self._stats_at = time.monotonic()

    def _share(self, selected: Selector) -> float:
        """The share of the records (by the last refresh's counts) that `selected` namespaces hold."""
        total = sum(self._namespaces.values())
        if not total:
            return 0.0
        return sum(n for ns, n in self._namespaces.items() if selected.matches(ns)) / total

    def _fit(self) -> None:
        typical = float(np.median(self._recent)) if len(self._recent) else 0.0
        self._limit = max(ISOLATION_RATIO * typical, ISOLATION_FLOOR)

    def maintain(self, force: bool = False) -> dict[str, Any] | None:
        """Refresh the statistics the plans use, every minute (the database keeps its own index)."""
        if force or time.monotonic() - self._stats_at >= _STATS_SECONDS:
            with self._stats_lock:
                self._refresh()
            self._backfilling = True  # look for rows without a distance once a minute (an anti-join) ...
        if self._backfilling:
            self._backfilling = self.backfill(_BACKFILL) > 0  # ... and every second while some are found
        return None

    def backfill(self, most: int) -> int:
        """Look up the 10th-neighbour distance of up to `most` rows that have none. Returns how many."""
        if not self.storage.has_vector_index():
            return 0  # a bulk load is building it: later
        found = self.storage.fetch_all(
            "SELECT m.seq, m.embedding FROM memories m WHERE NOT EXISTS"
            " (SELECT 1 FROM memory_kth k WHERE k.seq = m.seq) ORDER BY m.seq LIMIT %s",
            [most],
        )
        if found:
            self._vet(np.array([r[0] for r in found], dtype=np.int64), np.vstack([r[1] for r in found]))
        return len(found)

    def _vet(self, seqs: np.ndarray, vectors: np.ndarray) -> None:
        """Store each vector's distance to its 10th nearest neighbour (itself excluded), through the HNSW index."""
        # As pgvector's text form: psycopg adapts one ndarray, not a list of them.
        vecs = ["[" + ",".join(map(repr, np.asarray(v, dtype=np.float32).tolist())) + "]" for v in vectors]
        with self.storage.conn() as conn, conn.transaction():
            # Through the index even for a small table (a scan per lookup measured 7 ms at 4,000 rows).
            conn.execute(f"SET LOCAL hnsw.ef_search = {_VET_EF}; SET LOCAL enable_seqscan = off")
            found = conn.execute(
                "SELECT v.seq, (SELECT array_agg(d) FROM (SELECT m.embedding <=> v.e AS d FROM memories m"
                " WHERE m.seq <> v.seq ORDER BY m.embedding <=> v.e LIMIT %s) s)"
                " FROM unnest(%s::bigint[], %s::text[]::vector[]) AS v(seq, e)",
                [ISOLATION_K, [int(x) for x in seqs], vecs],
            ).fetchall()
            kth = [float(max(d)) if d and len(d) >= ISOLATION_K else 2.0 for _, d in found]
            # Rows deleted meanwhile drop out of the join (and a later delete cascades).
            conn.execute(
                "INSERT INTO memory_kth (seq, kth) SELECT u.seq, u.kth FROM unnest(%s::bigint[], %s::real[])"
                " AS u(seq, kth) JOIN memories m ON m.seq = u.seq ON CONFLICT (seq) DO UPDATE SET kth = EXCLUDED.kth",
                [[r[0] for r in found], kth],
            )
        self._recent = np.concatenate([self._recent, np.asarray(kth, dtype=np.float32)])[-_RECENT:]
        self._fit()
        # Searches skip the side list while it is empty (it costs ~0.4 ms a search); the refresh recounts it every
        # minute, which is how an isolated record another replica wrote reaches this one's searches.
        self._side += sum(1 for x in kth if x > self._limit)

    def __len__(self) -> int:
        return self._size

    def exact_cap(self, limit: int) -> int:
        """Most candidates worth scoring exactly rather than walking HNSW with a filter (as the planner's)."""
        return exact_cap(limit, self._size, self.exact_max)

    # -- semantic ----------------------------------------------------------------------------------------------
    def semantic(self, vector: np.ndarray, flt: Filter | None, limit: int, now: float) -> tuple[Scored, Rows, Plan]:
        started = time.perf_counter()
        c = parse_filter(flt)
        cond, params = compile_filter(c, now)
        q = np.asarray(vector, dtype=np.float32)
        # A namespace holding most of the table filters almost nothing: the plain plans, the namespace still in
        # the SQL (the iterative scan walks on past other namespaces' rows). Whether it does is read from counts
        # refreshed every minute; a stale count only picks a slower plan, never other namespaces' records.
        wide = not c and (c.namespaces is None or self._share(c.namespaces) >= 0.5)
        if wide and self._size <= self.exact_below:
            plan = Plan("exact", candidates=self._size)
            hits, rows = self._hnsw(q, cond, params, limit, force=False, exact=True)
        elif wide:
            plan = Plan("hnsw", k=[limit])
            hits, rows = self._hnsw(q, cond, params, limit, force=False)
        else:
            cap = self.exact_cap(limit)
            n, hits, rows = self._exact(q, cond, params, limit, cap)
            if n <= cap:
                plan = Plan("exact", candidates=n)
            else:
                plan = Plan("hnsw_filter", k=[limit])
                hits, rows = self._hnsw(q, cond, params, limit, force=True)
        if len(hits) < limit and plan.name != "exact":
            # The iterative scan stops after hnsw.max_scan_tuples; if more records match, score them exactly.
            more = self.storage.fetch_all(
                f"SELECT count(*) FROM (SELECT 1 FROM memories m WHERE {cond} LIMIT %s) s", [*params, limit]
            )[0][0]
            if more > len(hits):
                n, hits, rows = self._exact(q, cond, params, limit, None)
                plan.name += "+exact"
                plan.candidates = n
        plan.ms = (time.perf_counter() - started) * 1000
        return hits, rows, plan

    def _hnsw(
        self, q: np.ndarray, cond: str, params: list[Any], limit: int, force: bool, exact: bool = False
    ) -> tuple[Scored, Rows]:
        # Exact: "+ 0" hides the ordering from the HNSW index, so a small table is scanned and every row scored.
        order = "(m.embedding <=> %s) + 0" if exact else "m.embedding <=> %s"
        query = (
            f"(SELECT {ROW_COLUMNS}, m.embedding <=> %s AS d FROM memories m WHERE {cond} ORDER BY {order} LIMIT %s)"
        )
        args = [q, *params, q, limit]
        if not exact and self._side:
            # The side list: isolated rows the graph walk may not reach, scored exactly (an index range scan).
            # Driven from memory_kth's index, the ordering hidden from HNSW ("+ 0"): left to itself the planner
            # walks the whole graph in distance order probing memory_kth for each row (measured 256 ms at 8k).
            query += (
                " UNION ALL (WITH side AS MATERIALIZED (SELECT k.seq FROM memory_kth k WHERE k.kth > %s)"
                f" SELECT {ROW_COLUMNS}, m.embedding <=> %s AS d FROM side JOIN memories m ON m.seq = side.seq"
                f" WHERE {cond} ORDER BY (m.embedding <=> %s) + 0 LIMIT %s)"
            )
            args += [self._limit, q, *params, q, limit]
        with self.storage.conn() as conn:
            if not force and (exact or self._size >= _FORCE_INDEX_BELOW):
                found = conn.execute(query, args).fetchall()
            elif not force:
                with conn.transaction():
                    conn.execute("SET LOCAL enable_seqscan = off")
                    found = conn.execute(query, args).fetchall()
            else:
                # A broad filter: walk the graph. Left to itself PostgreSQL may read every match through the tag
                # or metadata index and sort them all, which is exact but grows with the table (measured 107 ms
                # for a filter matching all of 30k records, against 5 for the graph walk).
                with conn.transaction():
                    conn.execute("SET LOCAL enable_seqscan = off; SET LOCAL enable_bitmapscan = off")
                    found = conn.execute(query, args).fetchall()
        # relaxed_order: the scan may return near-ties slightly out of order; a side row may also be a graph row.
        found.sort(key=lambda r: r[ROW_WIDTH])
        seen: set[int] = set()
        found = [r for r in found if not (r[0] in seen or seen.add(r[0]))][:limit]
        return [(r[0], 1.0 - float(r[ROW_WIDTH])) for r in found], {r[0]: row_dict(r) for r in found}

    def _exact(
        self, q: np.ndarray, cond: str, params: list[Any], limit: int, cap: int | None
    ) -> tuple[int, Scored, Rows]:
        """Score the filter's matches exactly, if at most `cap` (None: any number) match. Returns (matches, ...)."""
        bound = "LIMIT %s" if cap is not None else ""
        args: list[Any] = [*params, *([cap + 1] if cap is not None else []), q]
        gate = ""
        if cap is not None:
            gate = "WHERE (SELECT n FROM n) <= %s"
            args.append(cap)
        args.append(limit)
        found = self.storage.fetch_all(
            f"WITH c AS MATERIALIZED (SELECT m.seq FROM memories m WHERE {cond} {bound}),"
            " n AS (SELECT count(*) AS n FROM c),"
            " top AS (SELECT m.seq, m.embedding <=> %s AS d FROM c JOIN memories m ON m.seq = c.seq"
            f" {gate} ORDER BY d LIMIT %s)"
            f" SELECT n.n, {ROW_COLUMNS}, top.d FROM n LEFT JOIN top ON true LEFT JOIN memories m ON m.seq = top.seq"
            " ORDER BY top.d",
            args,
        )
        n = int(found[0][0]) if found else 0
        got = [r[1:] for r in found if r[1] is not None]
        return n, [(r[0], 1.0 - float(r[ROW_WIDTH])) for r in got], {r[0]: row_dict(r) for r in got}

    # -- keyword -----------------------------------------------------------------------------------------------
    def _chunks(self, query: str) -> list[str]:
        """The query's informative whitespace-separated chunks (each a phrase), rarest first, at most 8.

        As the embedded default: stop words go (unless nothing else is left), then chunks whose rarest word is
        in more than a fifth of the records (unless none would be left), by the database's own lexeme stats.
        """
        chunks = list(dict.fromkeys(c for c in query.split() if _TOKENS.search(c)))
        if not chunks:
            return []
        words = {c: [t.lower() for t in _TOKENS.findall(c)] for c in chunks}
        chunks = drop_stopwords(chunks, words.__getitem__)
        freq = self._term_freq
        rarity = {c: min(freq.get(t, 0.0) for t in words[c]) for c in chunks}
        return rarest(chunks, rarity, common=0.2 if self._size > 250 else 1.0)

    def _keyword(self, query: str, flt: Filter | None, limit: int, now: float) -> tuple[Scored, Rows]:
        chunks = self._chunks(query)
        if not chunks:
            return [], {}
        cond, params = compile_filter(flt, now)
        normalised = FTS_NORMALISE.format("c").replace("{{", "{")

        def any_phrase(config: str) -> str:
            return (
                f"(SELECT string_agg('(' || p::text || ')', ' | ') FROM (SELECT phraseto_tsquery('{config}'::regconfig,"
                f" {normalised}) AS p FROM unnest(%s::text[]) c) s WHERE p::text <> '')::tsquery"
            )

        # Stemmed or exact matches (the English configuration drops its stop words: a chunk of those alone still
        # matches exactly), ranked by both scores: an exact spelling adds its own to the stem's.
        found = self.storage.fetch_all(
            f"WITH q AS (SELECT {any_phrase('simple')} AS q, {any_phrase('english')} AS qs)"
            f" SELECT {ROW_COLUMNS}, coalesce(ts_rank(m.fts_stem, q.qs), 0)"
            " + CASE WHEN m.fts @@ q.q THEN ts_rank(m.fts, q.q) ELSE 0 END AS r FROM memories m, q"
            f" WHERE q.q IS NOT NULL AND (m.fts_stem @@ q.qs OR m.fts @@ q.q) AND {cond}"
            " ORDER BY r DESC, m.seq DESC LIMIT %s",
            [chunks, chunks, *params, limit],
        )
        # ts_rank is unbounded above; s * 10 / (1 + s * 10) maps it into [0, 1) keeping the order.
        return [(r[0], float(r[ROW_WIDTH]) * 10 / (1.0 + float(r[ROW_WIDTH]) * 10)) for r in found], {
            r[0]: row_dict(r) for r in found
        }

    def keyword(self, query: str, flt: Filter | None, limit: int, now: float) -> tuple[Scored, Rows, Plan]:
        started = time.perf_counter()
        hits, rows = self._keyword(query, flt, limit, now)
        return hits, rows, Plan("keyword", ms=(time.perf_counter() - started) * 1000)

    def hybrid(
        self, query: str, vector: np.ndarray, flt: Filter | None, limit: int, now: float, min_score: float | None
    ) -> tuple[Scored, Rows, Plan, Cosines]:
        return hybrid(
            lambda depth: self.semantic(vector, flt, depth, now),
            lambda depth: self._keyword(query, flt, depth, now),
            limit,
            lambda seqs: self.similarity(vector, seqs),
            min_score,
        )

    def similarity(self, vector: np.ndarray, seqs: Sequence[int]) -> Cosines:
        """Exact cosine similarities of these rows' vectors with `vector`: one statement, by primary key."""
        if not len(seqs):
            return {}
        found = self.storage.fetch_all(
            "SELECT seq, 1 - (embedding <=> %s) FROM memories WHERE seq = ANY(%s::bigint[])",
            [np.asarray(vector, dtype=np.float32), [int(s) for s in seqs]],
        )
        return {int(r[0]): float(r[1]) for r in found}

    # -- the rest of the contract: the database keeps the index itself ---------------------------------------------
    def added(self, seqs: np.ndarray, vectors: np.ndarray) -> None:
        """After a commit: look up the new vectors' neighbours (small writes; maintain() does the rest)."""
        self._size += len(seqs)  # an estimate until the next refresh (updates count too): only picks exact vs hnsw
        if len(seqs) > _VET_INLINE:
            self._backfilling = True
        elif len(seqs):
            try:
                if not self.storage.has_vector_index():
                    # A bulk load: without the index each lookup would read the table; maintain() does them.
                    self._backfilling = True
                    return
                self._vet(np.asarray(seqs, dtype=np.int64), vectors)
            except Exception as exc:  # the write is committed; maintain() looks these rows up later
                self._backfilling = True
                log.warning("could not look up new vectors' neighbours: %s", exc, extra={"event": "vet_failed"})

    def removed(self, seqs: Sequence[int]) -> None:
        return None

    def info(self) -> dict[str, Any]:
        self.maintain(force=True)
        with self.storage.conn() as conn:
            row = conn.execute(
                "SELECT pg_relation_size(to_regclass('memories_embedding')),"
                " (SELECT i.indisvalid FROM pg_index i WHERE i.indexrelid = to_regclass('memories_embedding'))"
            ).fetchone()
        return {
            "kind": "pgvector-hnsw",
            "elements": self._size,
            "m": self.storage.hnsw_m,
            "ef_construction": self.storage.hnsw_ef_construction,
            "ef_search": self.ef,
            "space": "cosine",
            "bytes": int(row[0] or 0),
            "valid": bool(row[1]) if row[1] is not None else False,
            "exact_below": self.exact_below,
            "exact": self._size <= self.exact_below,
            "side_list": self._side,
        }

    def check(self, repair: bool) -> dict[str, Any]:
        report: dict[str, Any] = {"rows": self.storage.count(None, time.time())}
        if repair and not self.storage.has_vector_index():
            report["index_seconds"] = round(self.storage.build_vector_index(), 3)
            report["repaired"] = True
        report["missing_from_index"] = 0 if self.storage.has_vector_index() else report["rows"]
        report["extra_in_index"] = 0
        return report

    def close(self) -> None:
        return None


def open_search(settings: Any, storage: PostgresStorage) -> PostgresSearch:
    """The registry entry for postgresql://...'s search."""
    return PostgresSearch(
        storage, exact_max_candidates=settings.exact_max_candidates, ef_search=settings.hnsw_ef_search
    )
