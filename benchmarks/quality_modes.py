"""Search quality of each mode (semantic, keyword, hybrid) on labelled queries, with the real model, in-process.

Corpus: docstrings of the Python standard library (offline, deterministic). Each function or class docstring
of two or more sentences gives one passage, `"<module>.<qualname>: <the docstring minus its first sentence>"`.
Three kinds of labelled query, each with exactly one right passage:

- ``summary``: the docstring's first sentence, which the passage does not contain: a natural-language
  description of what one wants, the case semantic search is for;
- ``identifier``: a distinctive name that occurs in exactly one passage (a dotted qualname, snake_case,
  CamelCase or CONSTANT_CASE word, or a token with digits), alone, as an agent pastes an error code or a name;
- ``identifier_question``: the same identifier inside a question ("what does X do?"), so the query mixes a rare
  exact token with common words.

For each mode: hit@1, hit@5 and MRR@10 per kind, and overall (the kinds weighted equally). Alternative
fusions of the same two lists (convex combinations of normalised scores, RRF with other k) are scored too, to
show whether a different fusion would change the choice. Hybrid is also run with `min_score` (a cut on each
hit's cosine similarity, `score`), and the report gives the median similarity of the right passage and of the
other hits per kind: what a `min_score` keeps.

    python -m benchmarks.quality_modes [--n 3000] [--queries 200] [--embedder onnx] [--json out.json]
"""

from __future__ import annotations

import argparse
import ast
import hashlib
import json
import re
import sys
import sysconfig
import tempfile
import time
from collections import Counter
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

import numpy as np

from memory_spine.config import Settings
from memory_spine.embedders import create_embedder
from memory_spine.models import MemoryIn, SearchQuery
from memory_spine.service import MemoryService

_SENTENCE_END = re.compile(r"(?<=[.!?])\s+(?=[A-Z(`'\"])")
_IDENT = re.compile(r"(?<![\w.])[A-Za-z_][A-Za-z0-9_]*(?:\.[A-Za-z_][A-Za-z0-9_]*)*(?![\w.])")
_SKIP_DIRS = {"test", "tests", "idlelib", "lib2to3", "site-packages", "ensurepip", "turtledemo", "__pycache__"}
QUESTIONS = ("what does {} do?", "how do I use {}", "when is {} used?", "explain {}")
MIN_SCORES = (0.2, 0.3)  # hybrid is also scored with these cuts on similarity


def _distinctive(token: str) -> bool:
    """A token a person would search by exact match: names with structure, not plain words."""
    if len(token) < 6 or token.startswith("__"):
        return False
    if "." in token or "_" in token.strip("_") or any(c.isdigit() for c in token):
        return True
    return sum(c.isupper() for c in token[1:]) >= 1 and not token.isupper()  # CamelCase


def _clean(doc: str) -> str:
    lines = []
    for line in doc.splitlines():
        s = line.strip()
        if s.startswith((">>>", "...")) or set(s) <= set("-=~^*"):
            continue
        lines.append(s)
    return " ".join(" ".join(lines).split())


def harvest(limit_files: int | None = None) -> list[tuple[str, str, str]]:
    """(name, summary, body) for every stdlib docstring of two or more sentences."""
    root = Path(sysconfig.get_paths()["stdlib"])
    out: list[tuple[str, str, str]] = []
    files = sorted(p for p in root.rglob("*.py") if not (set(p.relative_to(root).parts[:-1]) & _SKIP_DIRS))
    for path in files[:limit_files]:
        module = ".".join(path.relative_to(root).with_suffix("").parts).removesuffix(".__init__")
        try:
            tree = ast.parse(path.read_text(encoding="utf-8"))
        except (SyntaxError, UnicodeDecodeError, ValueError):
            continue
        stack: list[tuple[ast.AST, str]] = [(tree, module)]
        while stack:
            node, prefix = stack.pop()
            for child in ast.iter_child_nodes(node):
                if isinstance(child, ast.FunctionDef | ast.AsyncFunctionDef | ast.ClassDef):
                    name = f"{prefix}.{child.name}"
                    stack.append((child, name))
                    doc = ast.get_docstring(child)
                    if not doc:
                        continue
                    text = _clean(doc)
                    parts = _SENTENCE_END.split(text, maxsplit=1)
                    if len(parts) != 2:
                        continue
                    summary, body = parts
                    body = " ".join(body.split()[:110])
                    if len(summary.split()) >= 4 and len(body) >= 80:
                        out.append((name, summary, body))
    return out


def build(n: int, n_queries: int, seed: int = 0) -> tuple[list[dict[str, Any]], dict[str, list[tuple[str, int]]]]:
    items = harvest()
    # Deterministic sample, one passage per summary (duplicated docstrings would make labels ambiguous).
    items.sort(key=lambda it: hashlib.blake2b(f"{seed}:{it[0]}".encode(), digest_size=8).digest())
    seen_summary: set[str] = set()
    seen_body: set[str] = set()
    passages: list[dict[str, Any]] = []
    for name, summary, body in items:
        if summary.lower() in seen_summary or body.lower() in seen_body:
            continue
        seen_summary.add(summary.lower())
        seen_body.add(body.lower())
        passages.append({"name": name, "summary": summary, "text": f"{name}: {body}"})
        if len(passages) == n:
            break
    texts_lower = [p["text"].lower() for p in passages]
    # Document frequency of each candidate identifier, by exact (case-insensitive) occurrence.
    df: Counter[str] = Counter()
    for p in passages:
        df.update({t.lower() for t in _IDENT.findall(p["text"]) if _distinctive(t)})
    rng = np.random.default_rng(seed)
    queries: dict[str, list[tuple[str, int]]] = {"summary": [], "identifier": [], "identifier_question": []}
    order = rng.permutation(len(passages))
    for i in order:
        p = passages[i]
        if len(queries["summary"]) < n_queries and sum(p["summary"].lower() in t for t in texts_lower) == 0:
            queries["summary"].append((p["summary"], int(i)))
        if len(queries["identifier"]) < n_queries:
            cands = sorted({t for t in _IDENT.findall(p["text"]) if _distinctive(t) and df[t.lower()] == 1})
            # A whole qualname is too easy for keyword search (it is the passage's first token); prefer the
            # names inside the text and fall back to the qualname's last two parts.
            inner = [t for t in cands if t != p["name"]]
            pick = inner[int(rng.integers(len(inner)))] if inner else ".".join(p["name"].split(".")[-2:])
            if sum(pick.lower() in t for t in texts_lower) == 1:
                queries["identifier"].append((pick, int(i)))
                q = QUESTIONS[int(rng.integers(len(QUESTIONS)))].format(pick)
                queries["identifier_question"].append((q, int(i)))
    return passages, queries


def _scores(ranks: Sequence[int | None]) -> dict[str, float]:
    n = len(ranks)
    return {
        "hit@1": sum(r == 1 for r in ranks) / n,
        "hit@5": sum(r is not None and r <= 5 for r in ranks) / n,
        "mrr@10": sum(1 / r for r in ranks if r is not None and r <= 10) / n,
    }


def _rank(ids: Sequence[str], target: str) -> int | None:
    return ids.index(target) + 1 if target in ids else None


def _minmax(scored: list[tuple[int, float]]) -> dict[int, float]:
    if not scored:
        return {}
    vals = [s for _, s in scored]
    lo, hi = min(vals), max(vals)
    return {seq: (s - lo) / (hi - lo) if hi > lo else 1.0 for seq, s in scored}


def fusions() -> dict[str, Callable[[list, list], list[int]]]:
    def rrf(k: int) -> Callable[[list, list], list[int]]:
        def fuse(sem: list, kw: list) -> list[int]:
            fused: dict[int, float] = {}
            for ranked in (sem, kw):
                for rank, (seq, _s) in enumerate(ranked):
                    fused[seq] = fused.get(seq, 0.0) + 1.0 / (k + rank + 1)
            return [s for s, _ in sorted(fused.items(), key=lambda kv: kv[1], reverse=True)]

        return fuse

    def convex(alpha: float) -> Callable[[list, list], list[int]]:
        def fuse(sem: list, kw: list) -> list[int]:
            a, b = _minmax(sem), _minmax(kw)
            fused = {s: alpha * a.get(s, 0.0) + (1 - alpha) * b.get(s, 0.0) for s in a.keys() | b.keys()}
            return [s for s, _ in sorted(fused.items(), key=lambda kv: kv[1], reverse=True)]

        return fuse

    return {
        "rrf k=10 (= hybrid)": rrf(10),
        "rrf k=60": rrf(60),
        "convex a=0.3": convex(0.3),
        "convex a=0.5": convex(0.5),
        "convex a=0.6": convex(0.6),
        "convex a=0.7": convex(0.7),
    }


def run(n: int, n_queries: int, embedder: str, seed: int = 0) -> dict[str, Any]:
    started = time.perf_counter()
    passages, queries = build(n, n_queries, seed)
    print(
        f"corpus: {len(passages)} passages; queries: " + ", ".join(f"{k} {len(v)}" for k, v in queries.items()),
        file=sys.stderr,
    )
    with tempfile.TemporaryDirectory() as tmp:
        settings = Settings(data_dir=Path(tmp), embedder=embedder, purge_seconds=3600, index_save_seconds=3600)
        svc = MemoryService.open(settings, embedder=create_embedder(embedder))
        try:
            t0 = time.perf_counter()
            for start in range(0, len(passages), 256):
                chunk = passages[start : start + 256]
                svc.ingest_batch([MemoryIn(id=f"p{start + j}", content=p["text"]) for j, p in enumerate(chunk)])
            ingest_s = time.perf_counter() - t0
            print(f"ingested in {ingest_s:.1f}s", file=sys.stderr)
            modes = ("semantic", "keyword", "hybrid")
            ranks: dict[str, dict[str, list[int | None]]] = {}
            latency: dict[str, list[float]] = {m: [] for m in modes}
            # Hybrid hits' cosine similarity (`score`): the right passage's, and the other hits'.
            similarity: dict[str, dict[str, list[float]]] = {}
            for kind, qs in queries.items():
                for query, target_i in qs:
                    target = f"p{target_i}"
                    svc.embed_query(query)  # cached: the latencies below compare the plans, not the model
                    for mode in modes:
                        t1 = time.perf_counter()
                        out = svc.search(SearchQuery(query=query, limit=10, mode=mode))
                        latency[mode].append((time.perf_counter() - t1) * 1000)
                        ranks.setdefault(mode, {}).setdefault(kind, []).append(
                            _rank([h["id"] for h in out["results"]], target)
                        )
                        if mode == "hybrid":
                            sims = similarity.setdefault(kind, {"right": [], "other": []})
                            for h in out["results"]:
                                sims["right" if h["id"] == target else "other"].append(h["score"])
                    for cut in MIN_SCORES:
                        out = svc.search(SearchQuery(query=query, limit=10, mode="hybrid", min_score=cut))
                        ranks.setdefault(f"hybrid min_score={cut}", {}).setdefault(kind, []).append(
                            _rank([h["id"] for h in out["results"]], target)
                        )
                    # The two lists hybrid fuses, fused other ways.
                    now = time.time()
                    sem, sem_rows, _ = svc.planner.semantic(svc.embed_query(query), None, 30, now)
                    kw, kw_rows, _ = svc.planner.keyword(query, None, 30, now)
                    rows = {**sem_rows, **kw_rows}
                    for name, fuse in fusions().items():
                        ids = [rows[s]["id"] for s in fuse(sem, kw)[:10]]
                        ranks.setdefault(name, {}).setdefault(kind, []).append(_rank(ids, target))
        finally:
            svc.close()
    table: dict[str, Any] = {}
    for mode, by_kind in ranks.items():
        row = {kind: _scores(r) for kind, r in by_kind.items()}
        row["overall"] = {m: float(np.mean([row[k][m] for k in by_kind])) for m in ("hit@1", "hit@5", "mrr@10")}
        table[mode] = row
    return {
        "embedder": embedder,
        "passages": len(passages),
        "queries": {k: len(v) for k, v in queries.items()},
        "ingest_seconds": round(ingest_s, 1),
        "seconds": round(time.perf_counter() - started, 1),
        "results": table,
        # In-process, with the query vector already cached (embedding one query costs the same in every mode
        # but keyword, which needs none).
        "latency_ms_p50": {m: round(float(np.percentile(v, 50)), 2) for m, v in latency.items()},
        "hybrid_similarity_median": {
            kind: {who: round(float(np.median(v)), 3) if v else None for who, v in sims.items()}
            for kind, sims in similarity.items()
        },
    }


def render(report: dict[str, Any]) -> str:
    kinds = [*report["queries"], "overall"]
    lines = [
        f"{report['passages']} passages, embedder {report['embedder']}, queries {report['queries']}",
        "",
        "| mode | " + " | ".join(f"{k} hit@1 / hit@5 / MRR@10" for k in kinds) + " |",
        "|---|" + "---|" * len(kinds),
    ]
    for mode, row in report["results"].items():
        cells = [f"{row[k]['hit@1']:.3f} / {row[k]['hit@5']:.3f} / {row[k]['mrr@10']:.3f}" for k in kinds]
        lines.append(f"| {mode} | " + " | ".join(cells) + " |")
    lines += ["", f"latency p50 (ms, in-process): {report['latency_ms_p50']}"]
    lines += [f"hybrid hits' median similarity, right passage / other hits: {report['hybrid_similarity_median']}"]
    return "\n".join(lines)


def main(argv: Sequence[str] | None = None) -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--n", type=int, default=3000, help="passages (default 3000)")
    ap.add_argument("--queries", type=int, default=200, help="queries of each kind (default 200)")
    ap.add_argument("--embedder", default="onnx", help="onnx (default) | sentence-transformers | fake")
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--json", type=Path, help="also write the report here")
    args = ap.parse_args(argv)
    report = run(args.n, args.queries, args.embedder, args.seed)
    print(render(report))
    if args.json:
        args.json.write_text(json.dumps(report, indent=2))


if __name__ == "__main__":
    main()
