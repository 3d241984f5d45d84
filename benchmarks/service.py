"""The service as users meet it: a real ``memory-spine serve`` process measured over HTTP.

:class:`Server` starts ``python -m memory_spine serve`` on a free port and a data dir, waits for
``/health``, reads its RSS from ``/proc`` and stops it with SIGTERM. :func:`load_corpus` fills a data dir
with the corpus and its precomputed vectors through ``memory-spine import`` (so 100k passages are not
embedded again), and :class:`HttpBench` runs the scenarios with keep-alive clients: one stdlib
``http.client`` connection for latencies (the lightest Python client, so the figures are the service's:
httpx adds ~0.3 ms per request on these machines, and the /health round trip is printed as the HTTP floor),
an asyncio pool of httpx clients for concurrency. :func:`inprocess_index` measures the service's
search path without HTTP and without the model (planner + SQLite hydration), which is what Chroma's
``query(query_embeddings=...)`` is compared with.

Every number is a measurement; nothing here asserts.
"""

from __future__ import annotations

import asyncio
import base64
import http.client
import json
import os
import signal
import socket
import subprocess
import sys
import time
import urllib.parse
from collections.abc import Callable, Iterable, Sequence
from pathlib import Path
from typing import Any

import httpx
import numpy as np

from .corpus import Corpus, LabelledQuery
from .floors import K, cycle, summarize

ROOT = Path(__file__).resolve().parent.parent


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def dir_bytes(path: Path) -> int:
    return sum(f.stat().st_size for f in Path(path).rglob("*") if f.is_file())


def _env() -> dict[str, str]:
    return {**os.environ, "HF_HUB_OFFLINE": "1", "TRANSFORMERS_OFFLINE": "1", "PYTHONPATH": str(ROOT)}


class Server:
    """One ``memory-spine serve`` process on ``data_dir``; ``start`` returns the seconds to healthy."""

    def __init__(self, data_dir: Path, log_path: Path, *, embedder: str = "onnx", extra: Sequence[str] = ()) -> None:
        self.data_dir = Path(data_dir)
        self.log_path = Path(log_path)
        self.embedder = embedder
        self.extra = list(extra)
        self.port = 0
        self.proc: subprocess.Popen[bytes] | None = None

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def start(self, timeout: float = 180.0) -> float:
        self.port = _free_port()
        cmd = [
            sys.executable,
            "-m",
            "memory_spine",
            "serve",
            "--host",
            "127.0.0.1",
            "--port",
            str(self.port),
            "--data-dir",
            str(self.data_dir),
            "--embedder",
            self.embedder,
            "--log-level",
            "warning",
            *self.extra,
        ]
        log = open(self.log_path, "ab")
        t0 = time.perf_counter()
        self.proc = subprocess.Popen(cmd, stdout=log, stderr=subprocess.STDOUT, env=_env(), cwd=ROOT)
        log.close()
        deadline = t0 + timeout
        while time.perf_counter() < deadline:
            if self.proc.poll() is not None:
                raise RuntimeError(f"server exited with {self.proc.returncode}:\n{self.output()}")
            try:
                if httpx.get(self.url + "/health", timeout=1.0).status_code == 200:
                    return time.perf_counter() - t0
            except httpx.HTTPError:
                pass
            time.sleep(0.01)
        self.stop()
        raise RuntimeError(f"server not healthy after {timeout:.0f} s:\n{self.output()}")

    def output(self) -> str:
        try:
            return self.log_path.read_text(errors="replace")[-4000:]
        except OSError:
            return ""

    def memory_mb(self) -> dict[str, float]:
        """Memory of the server process, MiB: see :func:`process_memory_mb`."""
        return process_memory_mb(self.proc.pid) if self.proc is not None else {}

    def stop(self, timeout: float = 60.0) -> int | None:
        if self.proc is None:
            return None
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(timeout)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
        code = self.proc.returncode
        self.proc = None
        return code


def process_memory_mb(pid: int | str = "self") -> dict[str, float]:
    """``rss`` and ``peak`` (VmRSS, VmHWM), and from smaps_rollup ``pss``, ``anon`` (private heap: what the
    process really costs) and ``file`` (mapped files). RSS alone misleads for SQLite with ``mmap_size``: each
    reader connection maps the database again and each mapping's resident pages count once more in RSS,
    though they are the same page-cache pages."""
    out: dict[str, float] = {}
    wanted = {"VmRSS": "rss", "VmHWM": "peak", "Pss": "pss", "RssAnon": "anon", "RssFile": "file"}
    for name in ("status", "smaps_rollup"):
        try:
            text = Path(f"/proc/{pid}/{name}").read_text()
        except OSError:
            continue
        for line in text.splitlines():
            key, _, value = line.partition(":")
            if key in wanted and wanted[key] not in out and value.split():
                out[wanted[key]] = round(int(value.split()[0]) / 1024, 1)
    return out


# -------------------------------------------------------------------------------------------- loading


def write_import_file(
    path: Path, records: Iterable[dict[str, Any]], vectors: np.ndarray, model: str | None = None
) -> None:
    """Records (``POST /ingest`` bodies) as a ``memory-spine import`` file with their precomputed vectors
    (base64 float32), one vector per record in order; ``model`` names them (default: the bundled model)."""
    from memory_spine.embedders import MODEL_NAME

    header = {"memory_spine_export": 1, "model": model or MODEL_NAME, "dim": int(vectors.shape[1]), "vectors": True}
    with open(path, "w", encoding="utf-8") as f:
        f.write(json.dumps(header) + "\n")
        for rec, v in zip(records, vectors, strict=True):
            rec["vector"] = base64.b64encode(np.ascontiguousarray(v, dtype="<f4").tobytes()).decode("ascii")
            f.write(json.dumps(rec, ensure_ascii=False, separators=(",", ":")) + "\n")


def run_import(path: Path, data_dir: Path, embedder: str = "onnx") -> tuple[float, str]:
    """``memory-spine import`` of ``path`` into ``data_dir`` (no server running): seconds and its last line."""
    cmd = [sys.executable, "-m", "memory_spine", "import", str(path), "--data-dir", str(data_dir)]
    cmd += ["--embedder", embedder, "--quiet", "--batch-size", "1000"]
    t0 = time.perf_counter()
    proc = subprocess.run(cmd, env=_env(), cwd=ROOT, capture_output=True, text=True)
    seconds = time.perf_counter() - t0
    if proc.returncode != 0:
        raise RuntimeError(f"memory-spine import failed ({proc.returncode}): {proc.stderr[-3000:]}")
    return seconds, proc.stderr.strip().splitlines()[-1] if proc.stderr.strip() else ""


def load_corpus(data_dir: Path, corpus: Corpus, vectors: np.ndarray, workdir: Path) -> dict[str, Any]:
    """Import the corpus with its vectors into ``data_dir`` (no server running); seconds and records/s."""
    path = workdir / "corpus-import.jsonl"
    t0 = time.perf_counter()
    write_import_file(path, (p.record() for p in corpus.passages), vectors)
    write_s = time.perf_counter() - t0
    try:
        import_s, report = run_import(path, data_dir)
    finally:
        path.unlink(missing_ok=True)
    return {
        "method": "memory-spine import (precomputed vectors)",
        "write_file_s": round(write_s, 2),
        "import_s": round(import_s, 2),
        "records_per_s": round(corpus.n / import_s, 1),
        "report": report,
    }


# ------------------------------------------------------------------------------------------ scenarios


def _ids(body: dict[str, Any]) -> list[int]:
    """Corpus row indices of a /search answer (ids ``doc-0001234``); other records are -1."""
    out = []
    for hit in body["results"]:
        hid = hit["id"]
        out.append(int(hid[4:]) if hid.startswith("doc-") and hid[4:].isdigit() else -1)
    return out


class _Reply:
    """The little of an httpx response the scenarios use."""

    def __init__(self, status: int, content: bytes, path: str) -> None:
        self.status_code, self.content, self.path = status, content, path

    @property
    def text(self) -> str:
        return self.content.decode("utf-8", "replace")

    def json(self) -> Any:
        return json.loads(self.content)

    def raise_for_status(self) -> _Reply:
        if self.status_code >= 400:
            raise RuntimeError(f"{self.path}: HTTP {self.status_code}: {self.text[:500]}")
        return self


class KeepAliveClient:
    """One persistent HTTP/1.1 connection (stdlib ``http.client``), reopened if the server closed it."""

    def __init__(self, url: str, timeout: float = 60.0) -> None:
        parsed = urllib.parse.urlparse(url)
        self._host, self._port, self._timeout = parsed.hostname or "127.0.0.1", parsed.port or 80, timeout
        self._conn = http.client.HTTPConnection(self._host, self._port, timeout=timeout)

    def request(self, method: str, path: str, body: Any = None) -> _Reply:
        data = None if body is None else json.dumps(body).encode()
        headers = {"content-type": "application/json"} if data is not None else {}
        for attempt in (0, 1):
            try:
                self._conn.request(method, path, body=data, headers=headers)
                r = self._conn.getresponse()
                return _Reply(r.status, r.read(), path)
            except (ConnectionError, http.client.HTTPException):
                self._conn.close()
                if attempt:
                    raise
                self._conn = http.client.HTTPConnection(self._host, self._port, timeout=self._timeout)
        raise AssertionError("unreachable")

    def get(self, path: str) -> _Reply:
        return self.request("GET", path)

    def post(self, path: str, json: Any = None) -> _Reply:  # noqa: A002 - httpx's name
        return self.request("POST", path, json)

    def close(self) -> None:
        self._conn.close()


class HttpBench:
    """Scenarios against one running server, with one keep-alive client."""

    def __init__(self, url: str) -> None:
        self.url = url
        self.client = KeepAliveClient(url, timeout=60.0)
        self._warm = 0

    def close(self) -> None:
        self.client.close()

    def search(self, body: dict[str, Any]) -> dict[str, Any]:
        # Scenarios name their mode; the rest are semantic (the service's default is hybrid).
        r = self.client.post("/search", json={"mode": "semantic", **body})
        r.raise_for_status()
        return r.json()

    def timed(self, call: Callable[[Any], Any], items: Sequence[Any], warmup: int = 3) -> dict[str, Any]:
        """Latency of ``call(item)`` for each item after ``warmup`` untimed calls (of the items' tail)."""
        for item in list(items)[-warmup:] if warmup else []:
            call(item)
        ms = []
        for item in items:
            t0 = time.perf_counter()
            call(item)
            ms.append((time.perf_counter() - t0) * 1000)
        return summarize(ms)

    def health(self, samples: int) -> dict[str, Any]:
        return self.timed(lambda _: self.client.get("/health").raise_for_status(), range(samples), warmup=10)

    def semantic(
        self,
        queries: Sequence[str],
        *,
        breakdown: bool = False,
        floor: Callable[[str], Any] | None = None,
        **extra: Any,
    ) -> dict[str, Any]:
        """Latency of ``/search`` over ``queries`` (each new to the server's query cache).

        With ``breakdown``, the server's own view too: mean request time and embed time from ``/metrics``
        and the planner's time from ``explain``, so the client's mean splits into where it went.
        With ``floor`` (embed one text in this process), each request is paired with the floor measured just
        before it, so the overhead over the floor survives a noisy machine (``paired``).
        """
        self._warm += 1
        for i in range(3):  # warm up with texts of their own: a warm-up query would be a cache hit later
            self.search({"query": f"warm up {self._warm} {i}", "limit": K, **extra})
        plan_ms: list[float] = []
        floor_ms: list[float] = []
        ms: list[float] = []
        before = self.metrics() if breakdown else {}
        for q in queries:
            if floor is not None:
                t0 = time.perf_counter()
                floor(q)
                floor_ms.append((time.perf_counter() - t0) * 1000)
            t0 = time.perf_counter()
            body = self.search({"query": q, "limit": K, "explain": breakdown, **extra})
            ms.append((time.perf_counter() - t0) * 1000)
            if breakdown and body.get("plan"):
                plan_ms.append(float(body["plan"].get("ms", 0.0)))
        out = summarize(ms)
        if floor is not None:
            over = np.asarray(ms) - np.asarray(floor_ms)
            out["paired"] = {
                "floor_p50": round(float(np.percentile(floor_ms, 50)), 4),
                "floor_p99": round(float(np.percentile(floor_ms, 99)), 4),
                "overhead_p50": round(float(np.percentile(over, 50)), 4),
                "overhead_mean": round(float(over.mean()), 4),
            }
        if breakdown:
            out["breakdown_ms"] = _breakdown(out, before, self.metrics(), plan_ms)
        return out

    def metrics(self) -> dict[str, float]:
        """The sums and counts of the server's /search latency and embed time histograms."""
        r = self.client.get("/metrics")
        r.raise_for_status()
        want = {
            "memory_spine_embed_seconds_sum": "embed_sum",
            "memory_spine_embed_seconds_count": "embed_count",
        }
        out: dict[str, float] = {}
        for line in r.text.splitlines():
            name, _, value = line.rpartition(" ")
            base = name.split("{", 1)[0]
            if base in want:
                out[want[base]] = float(value)
            elif base.startswith("memory_spine_request_seconds_") and 'route="/search"' in name:
                if base.endswith("_sum"):
                    out["search_sum"] = float(value)
                elif base.endswith("_count"):
                    out["search_count"] = float(value)
        return out

    def stats(self) -> dict[str, Any]:
        r = self.client.get("/stats")
        r.raise_for_status()
        return r.json()

    def repeated(self, query: str, samples: int, *, whole: bool = True) -> dict[str, Any]:
        """A repeated query. ``whole``: the same search every time (the result cache answers it); else the
        same text in searches the result cache has not seen (``min_score`` varies, below any score), so only
        the query (embedding) cache helps. Both caches' hits during the scenario are reported."""

        def body(i: int) -> dict[str, Any]:
            return {"query": query, "limit": K} if whole else {"query": query, "limit": K, "min_score": -2.0 - i}

        before = self.stats()
        self.search(body(-1))
        out = self.timed(lambda i: self.search(body(i)), range(samples), warmup=0)
        after = self.stats()
        for cache in ("query_cache", "result_cache"):
            a, b = after.get(cache) or {}, before.get(cache) or {}
            out[cache] = {
                "capacity": a.get("capacity"),
                "hits_during": (a.get("hits", 0) or 0) - (b.get("hits", 0) or 0),
                "misses_during": (a.get("misses", 0) or 0) - (b.get("misses", 0) or 0),
            }
        return out

    def key_get(self, keys: Sequence[str]) -> dict[str, Any]:
        return self.timed(lambda k: self.client.get(f"/keys/{k}").raise_for_status(), keys)

    def key_search(self, keys: Sequence[str]) -> dict[str, Any]:
        return self.timed(lambda k: self.search({"query": k, "limit": 1}), keys)

    def concurrent(self, bodies: Sequence[dict[str, Any]], clients: int, path: str = "/search") -> dict[str, Any]:
        """``clients`` keep-alive connections sending ``bodies`` as fast as answered; latency + throughput."""
        return asyncio.run(_concurrent(self.url, path, bodies, clients))

    def ingest_one_by_one(self, texts: Sequence[str], prefix: str) -> dict[str, Any]:
        t0 = time.perf_counter()
        out = self.timed(
            lambda it: self.client.post(
                "/ingest", json={"id": f"{prefix}-{it[0]}", "content": it[1], "tags": ["bench-ingest"]}
            ).raise_for_status(),
            list(enumerate(texts)),
            warmup=0,
        )
        out["records_per_s"] = round(len(texts) / (time.perf_counter() - t0), 1)
        return out

    def ingest_batched(self, texts: Sequence[str], prefix: str, batch: int) -> dict[str, Any]:
        bodies = [
            {
                "records": [
                    {"id": f"{prefix}-{s + i}", "content": t, "tags": ["bench-ingest"]}
                    for i, t in enumerate(texts[s : s + batch])
                ]
            }
            for s in range(0, len(texts), batch)
        ]
        t0 = time.perf_counter()
        out = self.timed(lambda b: self.client.post("/ingest/batch", json=b).raise_for_status(), bodies, warmup=0)
        out["records_per_s"] = round(len(texts) / (time.perf_counter() - t0), 1)
        out["batch"] = batch
        return out

    def quality(self, queries: Sequence[LabelledQuery], mode: str) -> dict[str, Any]:
        """hit@1, hit@10 and MRR@10 per query kind, in one search mode."""
        out: dict[str, Any] = {}
        for kind in sorted({q.kind for q in queries}):
            ranks = []
            for q in (q for q in queries if q.kind == kind):
                ids = _ids(self.search({"query": q.text, "limit": K, "mode": mode}))
                ranks.append(ids.index(q.target_index) + 1 if q.target_index in ids else None)
            out[kind] = quality_summary(ranks)
        return out

    def recall(self, queries: Sequence[str], exact: np.ndarray, **extra: Any) -> float:
        from .floors import recall_at_k

        found = [_ids(self.search({"query": q, "limit": K, **extra})) for q in queries]
        return round(recall_at_k(found, exact), 4)


def _breakdown(
    client: dict[str, Any], before: dict[str, float], after: dict[str, float], plan_ms: list[float]
) -> dict[str, Any]:
    """Split the client's mean latency: HTTP client + transport, server framework, embedding, planner."""

    def mean(sum_key: str, count_key: str) -> float | None:
        n = after.get(count_key, 0) - before.get(count_key, 0)
        return (after.get(sum_key, 0) - before.get(sum_key, 0)) / n * 1000 if n else None

    server = mean("search_sum", "search_count")
    embed = mean("embed_sum", "embed_count")
    plan = float(np.mean(plan_ms)) if plan_ms else None
    out: dict[str, Any] = {
        "client_mean": client.get("mean"),
        "server_request_mean": server,
        "embed_mean": embed,
        "planner_mean": plan,
    }
    if server is not None and client.get("mean") is not None:
        out["client_and_transport"] = client["mean"] - server
    if server is not None and embed is not None and plan is not None:
        out["server_other"] = server - embed - plan
    return {k: (round(v, 3) if isinstance(v, float) else v) for k, v in out.items()}


def quality_summary(ranks: Sequence[int | None]) -> dict[str, Any]:
    """hit@1, hit@10, MRR@10 from the 1-based rank of the right answer (None = not in the top 10)."""
    n = max(1, len(ranks))
    return {
        "n": len(ranks),
        "hit@1": round(sum(1 for r in ranks if r == 1) / n, 4),
        "hit@10": round(sum(1 for r in ranks if r is not None) / n, 4),
        "mrr": round(sum(1 / r for r in ranks if r is not None) / n, 4),
    }


async def _concurrent(url: str, path: str, bodies: Sequence[dict[str, Any]], clients: int) -> dict[str, Any]:
    limits = httpx.Limits(max_connections=clients, max_keepalive_connections=clients)
    async with httpx.AsyncClient(base_url=url, timeout=120.0, limits=limits) as client:
        # Open the connections before the clock starts.
        await asyncio.gather(*(client.get("/health") for _ in range(clients)))
        queue: asyncio.Queue[dict[str, Any]] = asyncio.Queue()
        for b in bodies:
            queue.put_nowait(b)
        ms: list[float] = []
        errors = 0

        async def worker() -> None:
            nonlocal errors
            while True:
                try:
                    body = queue.get_nowait()
                except asyncio.QueueEmpty:
                    return
                t0 = time.perf_counter()
                r = await client.post(path, json=body)
                ms.append((time.perf_counter() - t0) * 1000)
                if r.status_code != 200:
                    errors += 1

        t0 = time.perf_counter()
        await asyncio.gather(*(worker() for _ in range(clients)))
        wall = time.perf_counter() - t0
    return {**summarize(ms), "clients": clients, "per_s": round(len(bodies) / wall, 1), "errors": errors}


# ---------------------------------------------------------------------------------- in-process index


def inprocess_index(
    data_dir: Path, qvecs: np.ndarray, filters: dict[str, dict[str, Any]], *, samples: int, exact: np.ndarray
) -> dict[str, Any]:
    """The service's search path on a precomputed vector, no HTTP, no model: planner + SQLite hydration.

    Opens the data dir in this process (the server must be stopped: the dir is locked while served). This
    uses the planner directly (``MemoryService.planner.semantic``), an internal API: on failure the error is
    returned instead of numbers.
    """
    try:
        from memory_spine.config import Settings
        from memory_spine.embedders import FakeEmbedder
        from memory_spine.models import Filter
        from memory_spine.service import MemoryService

        # The index needs the model's name and dimension only: no model is loaded or run here.
        stand_in = FakeEmbedder(dim=int(qvecs.shape[1]))
        stand_in.model = "all-MiniLM-L6-v2"
        svc = MemoryService.open(Settings(data_dir=data_dir), embedder=stand_in)
    except Exception as exc:  # noqa: BLE001 - an internal API may move; report, don't crash the run
        return {"error": f"{type(exc).__name__}: {exc}"}
    try:
        from .floors import recall_at_k, time_each

        def run(flt: Any) -> Callable[[np.ndarray], list[int]]:
            def one(q: np.ndarray) -> list[int]:
                hits, rows, _ = svc.planner.semantic(q, flt, K, time.time())
                return [int(rows[s]["id"][4:]) for s, _ in hits]

            return one

        qs = cycle(list(qvecs), samples)
        out: dict[str, Any] = {"semantic": summarize(time_each(run(None), qs))}
        out["semantic"]["recall"] = round(recall_at_k([run(None)(q) for q in qvecs], exact), 4)
        for name, flt in filters.items():
            out[name] = summarize(time_each(run(Filter(**flt)), qs))
        return out
    except Exception as exc:  # noqa: BLE001
        return {"error": f"{type(exc).__name__}: {exc}"}
    finally:
        svc.close()
