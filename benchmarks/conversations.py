"""Recall on long multi-session conversations (LoCoMo), per mode and granularity, on a tune and a held-out split.

Data: LoCoMo (Maharana et al., ACL 2024, github.com/snap-research/locomo, `data/locomo10.zip`): 10 very long
conversations between two people (19-32 sessions, 369-689 turns each, session dates from 2022-2024), with
1,986 questions labelled by the dialog ids (`D3:7`) of the turns that answer them (`evidence`), an LLM-distilled
`observation` list per session (facts, each tagged with the dialog id it came from) and a `session_summary`.
The repository carries no licence, so no copy lives in this repository: the loader reads the zip (or an
unpacked `locomo10.json` / directory of per-conversation json files) from `--data`, `$LOCOMO_DATA`, or a git
mirror of the repository (`$LOCOMO_GIT`, default /work/.mirror/snap-research+locomo/repo: `git clone
https://github.com/snap-research/locomo` gives one).

Questions: categories 1-4 (multi-hop, temporal, open-domain, single-hop); category 5 (adversarial, with no
answer in the conversation) is left out, as retrieval papers on LoCoMo do. Evidence ids are normalised
(`"D8:6; D9:17"` split, ids not in the conversation dropped); a question left without evidence is skipped.

Each conversation is searched on its own (a fresh store per conversation and granularity), as an agent keeps
one memory per user. Granularities (what is stored):

- ``turns``: one record per turn, `"<speaker>: <text>"` (plus `[shares <caption>]` for a shared photo), the
  way an agent stores a chat in a plain memory (`POST /memories` per turn);
- ``conversation``: the same turns through `POST /conversations` (turn records plus window and session records
  derived from them) searched with `"conversation"` and `"granularity": "turn"` (only when the service has it);
- ``facts``: LoCoMo's `observation` facts, one record each; a fact counts for the dialog ids it cites;
- ``sessions``: LoCoMo's `session_summary`, one record per session; relevant = the sessions holding evidence.

Metrics per question, averaged: recall@5 = the share of its evidence ids (sessions for ``sessions``) found in
the top 5; MRR@10 = 1 / the rank of the first hit within 10. Latency: in-process search with the query vector
already cached (what the search costs beyond the model), and the model's own time for one query (the floor).

The split: conversations 0-4 (in the zip's numeric order: 26, 30, 41, 42, 43) are the tune split, 5-9 (44, 47,
48, 49, 50) the held-out test split; choices are made on `--split tune` only and reported on `--split test`.

    python -m benchmarks.conversations [--split tune|test|all] [--granularity turns,facts,...] [--json out.json]
    python -m benchmarks.conversations --sweep    # turn-fusion variants, tune split only
"""

from __future__ import annotations

import argparse
import hashlib
import io
import json
import os
import re
import subprocess
import sys
import tempfile
import time
import zipfile
from collections.abc import Callable, Iterable, Sequence
from datetime import datetime
from pathlib import Path
from typing import Any

import numpy as np

from memory_spine.config import Settings
from memory_spine.embedders import create_embedder
from memory_spine.models import MemoryIn, SearchQuery
from memory_spine.service import MemoryService

GIT_MIRROR = "/work/.mirror/snap-research+locomo/repo"
SPLITS = {"tune": range(0, 5), "test": range(5, 10), "all": range(0, 10)}
MODES = ("semantic", "keyword", "hybrid")
GRANULARITIES = ("turns", "conversation", "facts", "sessions")
_DIA = re.compile(r"D\d+:\d+")
_SESSION_KEY = re.compile(r"session_(\d+)$")


# -- data -------------------------------------------------------------------------------------------------
def _read_zip(blob: bytes) -> list[dict[str, Any]]:
    out: list[tuple[int, dict[str, Any]]] = []
    with zipfile.ZipFile(io.BytesIO(blob)) as zf:
        for name in zf.namelist():
            if name.endswith(".json"):
                data = json.loads(zf.read(name))
                if isinstance(data, list):  # locomo10.json: the whole set in one file
                    return [_normalise(d) for d in data]
                out.append((int(re.sub(r"\D", "", Path(name).stem) or 0), data))
    return [_normalise(d) for _, d in sorted(out, key=lambda kv: kv[0])]


def _normalise(d: dict[str, Any]) -> dict[str, Any]:
    """Both published shapes -> {conversation: {speaker_a, session_N, session_N_date_time}, qa, observation,
    session_summary} (locomo10.json nests the dialogue under `conversation`; the zip's files do not)."""
    if "conversation" in d:
        return d
    conv = {
        k: v
        for k, v in d.items()
        if k.startswith(("speaker_", "session_")) and not k.endswith(("_observation", "_summary"))
    }
    obs = {f"{k}": v for k, v in d.items() if k.endswith("_observation")}
    summ = {k: v for k, v in d.items() if k.endswith("_summary")}
    return {"conversation": conv, "qa": d.get("qa", []), "observation": obs, "session_summary": summ}


def load(data: str | None = None) -> list[dict[str, Any]]:
    """The 10 LoCoMo conversations, in a fixed order (see the module docstring for where they are read from)."""
    path = data or os.environ.get("LOCOMO_DATA")
    if path:
        p = Path(path)
        if p.is_dir():
            files = sorted(p.glob("*.json"), key=lambda f: int(re.sub(r"\D", "", f.stem) or 0))
            return [_normalise(json.loads(f.read_text())) for f in files]
        if p.suffix == ".zip":
            return _read_zip(p.read_bytes())
        return [_normalise(d) for d in json.loads(p.read_text())]
    git_dir = os.environ.get("LOCOMO_GIT", GIT_MIRROR)
    try:
        blob = subprocess.run(
            ["git", "--git-dir", git_dir, "show", "HEAD:data/locomo10.zip"], check=True, capture_output=True
        ).stdout
    except (OSError, subprocess.CalledProcessError) as exc:
        sys.exit(
            f"LoCoMo not found ({exc}): clone https://github.com/snap-research/locomo and pass --data"
            " <clone>/data/locomo10.zip (or set LOCOMO_DATA / LOCOMO_GIT)"
        )
    return _read_zip(blob)


def parse_locomo_date(text: str) -> datetime:
    """'1:56 pm on 8 May, 2023' -> a naive datetime (LoCoMo gives no zone; read as UTC)."""
    return datetime.strptime(text.strip(), "%I:%M %p on %d %B, %Y")


def sessions(conv: dict[str, Any]) -> list[dict[str, Any]]:
    """[{n, date, turns: [{dia_id, speaker, text, caption}]}] in session order (sessions with turns only)."""
    c = conv["conversation"]
    out = []
    for key in c:
        m = _SESSION_KEY.match(key)
        if m and isinstance(c[key], list) and c[key]:
            n = int(m.group(1))
            turns = [
                {
                    "dia_id": t["dia_id"],
                    "speaker": t["speaker"],
                    "text": t.get("text", ""),
                    "caption": t.get("blip_caption"),
                }
                for t in c[key]
            ]
            out.append({"n": n, "date": parse_locomo_date(c[f"session_{n}_date_time"]), "turns": turns})
    return sorted(out, key=lambda s: s["n"])


def turn_text(t: dict[str, Any]) -> str:
    return f"{t['speaker']}: {t['text']}" + (f" [shares {t['caption']}]" if t.get("caption") else "")


def facts(conv: dict[str, Any]) -> list[tuple[str, set[str]]]:
    """(fact, the dialog ids it cites) from `observation`."""
    out = []
    for _key, by_speaker in sorted(conv["observation"].items()):
        for items in by_speaker.values():
            for item in items:
                text, ids = item[0], item[1]
                cited = set(_DIA.findall(ids if isinstance(ids, str) else " ".join(map(str, ids))))
                if text and cited:
                    out.append((text, cited))
    return out


def summaries(conv: dict[str, Any]) -> list[tuple[str, int]]:
    out = []
    for key, text in conv["session_summary"].items():
        m = re.match(r"session_(\d+)_summary$", key)
        if m and text:
            out.append((text, int(m.group(1))))
    return sorted(out, key=lambda kv: kv[1])


def questions(conv: dict[str, Any], known: set[str]) -> list[tuple[str, set[str], int]]:
    """(question, evidence dialog ids, category) for categories 1-4 with evidence found in the conversation."""
    out = []
    for q in conv["qa"]:
        if q.get("category") == 5:
            continue
        ev = {e for raw in q.get("evidence", []) for e in _DIA.findall(str(raw))} & known
        if ev:
            out.append((q["question"], ev, int(q["category"])))
    return out


# -- the embedder, cached across runs (the benchmark re-embeds the same ~20k texts on every run otherwise) -----
class CachedEmbedder:
    """The real embedder with a text -> vector cache on disk; `floor` times the real model on fresh texts."""

    def __init__(self, kind: str, cache: Path | None) -> None:
        self.inner = create_embedder(kind)
        self.name, self.model, self.dim = self.inner.name, self.inner.model, self.inner.dim
        self.path = cache
        self.vectors: dict[str, np.ndarray] = {}
        if cache is not None and cache.exists():
            with np.load(cache) as z:
                self.vectors = dict(zip(z["keys"].tolist(), z["vectors"], strict=True))
        self.dirty = False

    @staticmethod
    def _key(text: str) -> str:
        return hashlib.blake2b(text.encode("utf-8", "surrogatepass"), digest_size=12).hexdigest()

    def embed(self, texts: Sequence[str]) -> np.ndarray:
        keys = [self._key(t) for t in texts]
        missing = [i for i, k in enumerate(keys) if k not in self.vectors]
        if missing:
            fresh = self.inner.embed([texts[i] for i in missing])
            for i, v in zip(missing, fresh, strict=True):
                self.vectors[keys[i]] = v
            self.dirty = True
        if not keys:
            return np.zeros((0, self.dim), np.float32)
        return np.vstack([self.vectors[k] for k in keys]).astype(np.float32)

    def save(self) -> None:
        if self.path is not None and self.dirty:
            self.path.parent.mkdir(parents=True, exist_ok=True)
            keys = list(self.vectors)
            np.savez(self.path, keys=np.array(keys), vectors=np.vstack([self.vectors[k] for k in keys]))

    def close(self) -> None:
        self.save()


# -- one store per conversation and granularity ------------------------------------------------------------
Ingest = Callable[[MemoryService, dict[str, Any]], None]
Search = Callable[[MemoryService, str, str, int], list[dict[str, Any]]]


def _plain_search(svc: MemoryService, query: str, mode: str, limit: int) -> list[dict[str, Any]]:
    return svc.search(SearchQuery(query=query, limit=limit, mode=mode))["results"]  # type: ignore[arg-type]


def _ingest_turns(svc: MemoryService, conv: dict[str, Any]) -> None:
    items = [
        MemoryIn(content=turn_text(t), metadata={"dia_id": t["dia_id"], "session": s["n"]})
        for s in sessions(conv)
        for t in s["turns"]
    ]
    for i in range(0, len(items), 256):
        svc.ingest_batch(items[i : i + 256])


def _ingest_facts(svc: MemoryService, conv: dict[str, Any]) -> None:
    items = [MemoryIn(content=text, metadata={"dia_ids": sorted(ids)}) for text, ids in facts(conv)]
    for i in range(0, len(items), 256):
        svc.ingest_batch(items[i : i + 256])


def _ingest_sessions(svc: MemoryService, conv: dict[str, Any]) -> None:
    svc.ingest_batch([MemoryIn(content=text, metadata={"session": n}) for text, n in summaries(conv)])


def conversation_body(conv: dict[str, Any], conv_id: str) -> dict[str, Any]:
    """The conversation in `POST /conversations`' shape (turn ids = LoCoMo's dialog ids)."""
    return {
        "id": conv_id,
        "sessions": [
            {
                "id": f"s{s['n']}",
                "date": s["date"].isoformat() + "Z",
                "turns": [
                    {"id": t["dia_id"], "speaker": t["speaker"], "text": t["text"]}
                    | ({"captions": [t["caption"]]} if t.get("caption") else {})
                    for t in s["turns"]
                ],
            }
            for s in sessions(conv)
        ],
    }


def _ingest_conversation(svc: MemoryService, conv: dict[str, Any]) -> None:
    from memory_spine.models import ConversationIn  # type: ignore[attr-defined]

    svc.ingest_conversation(ConversationIn.model_validate(conversation_body(conv, "c")))  # type: ignore[attr-defined]


def _conversation_search(svc: MemoryService, query: str, mode: str, limit: int) -> list[dict[str, Any]]:
    q = SearchQuery.model_validate(
        {"query": query, "limit": limit, "mode": mode, "conversation": "c", "granularity": "turn"}
    )
    return svc.search(q)["results"]


def _has_conversations() -> bool:
    return hasattr(MemoryService, "ingest_conversation")


def _relevant_turns(hit: dict[str, Any]) -> set[str]:
    md = hit["metadata"]
    if "dia_ids" in md:
        return set(md["dia_ids"])
    if "dia_id" in md:
        return {md["dia_id"]}
    if "turn" in md:
        return {str(md["turn"])}
    return set()


def _score(ranked: list[set[str]], wanted: set[str]) -> tuple[float, float]:
    found: set[str] = set()
    for hit in ranked[:5]:
        found |= hit & wanted
    first = next((i + 1 for i, hit in enumerate(ranked[:10]) if hit & wanted), None)
    return len(found) / len(wanted), (1.0 / first if first else 0.0)


def run_one(
    svc_factory: Callable[[], MemoryService], conv: dict[str, Any], granularity: str, modes: Iterable[str]
) -> dict[str, Any]:
    known = {t["dia_id"] for s in sessions(conv) for t in s["turns"]}
    qs = questions(conv, known)
    session_of = {t["dia_id"]: s["n"] for s in sessions(conv) for t in s["turns"]}
    ingest: Ingest = {
        "turns": _ingest_turns,
        "facts": _ingest_facts,
        "sessions": _ingest_sessions,
        "conversation": _ingest_conversation,
    }[granularity]
    search: Search = _conversation_search if granularity == "conversation" else _plain_search
    svc = svc_factory()
    out: dict[str, Any] = {"questions": len(qs), "modes": {}}
    try:
        t0 = time.perf_counter()
        ingest(svc, conv)
        out["ingest_s"] = round(time.perf_counter() - t0, 2)
        out["records"] = svc.stats().get("memories", svc.stats().get("count"))
        for q, _ev, _cat in qs:
            svc.embed_query(q)  # the latencies below are the search's own, beyond the model
        for mode in modes:
            recalls, rrs, ms = [], [], []
            for q, ev, _cat in qs:
                t1 = time.perf_counter()
                hits = search(svc, q, mode, 10)
                ms.append((time.perf_counter() - t1) * 1000)
                if granularity == "sessions":
                    wanted = {str(session_of[e]) for e in ev}
                    ranked = [{str(h["metadata"]["session"])} for h in hits]
                else:
                    wanted, ranked = ev, [_relevant_turns(h) for h in hits]
                r, rr = _score(ranked, wanted)
                recalls.append(r)
                rrs.append(rr)
            out["modes"][mode] = {"recall@5": recalls, "mrr@10": rrs, "ms": ms}
    finally:
        svc.close()
    return out


def run(
    conversations: list[dict[str, Any]], split: str, granularities: Sequence[str], embedder: str, cache: Path | None
) -> dict[str, Any]:
    emb = CachedEmbedder(embedder, cache)
    picked = [i for i in SPLITS[split] if i < len(conversations)]
    per: dict[str, dict[str, dict[str, list[float]]]] = {}
    tmp = tempfile.TemporaryDirectory()
    counter = iter(range(10**6))

    def factory() -> MemoryService:
        d = Path(tmp.name) / str(next(counter))
        settings = Settings(data_dir=d, embedder=embedder, purge_seconds=3600, index_save_seconds=3600)
        return MemoryService.open(settings, embedder=emb)  # type: ignore[arg-type]

    started = time.perf_counter()
    sizes: dict[str, Any] = {}
    try:
        for g in granularities:
            if g == "conversation" and not _has_conversations():
                print("skipping granularity 'conversation': this service has no POST /conversations", file=sys.stderr)
                continue
            for i in picked:
                res = run_one(factory, conversations[i], g, MODES)
                sizes.setdefault(g, []).append(
                    {"conversation": i, "records": res.get("records"), "questions": res["questions"]}
                )
                for mode, m in res["modes"].items():
                    acc = per.setdefault(g, {}).setdefault(mode, {"recall@5": [], "mrr@10": [], "ms": []})
                    for k in acc:
                        acc[k].extend(m[k])
                print(f"  {g} conv {i}: {res['questions']} questions, ingest {res['ingest_s']} s", file=sys.stderr)
        # The model's own time for one query (the floor every semantic search pays), on texts it has not seen.
        probes = [f"what did they say about item {k} last week?" for k in range(60)]
        floor = []
        for p in probes:
            t0 = time.perf_counter()
            emb.inner.embed([p])
            floor.append((time.perf_counter() - t0) * 1000)
    finally:
        emb.save()
        tmp.cleanup()
    table = {
        g: {
            mode: {
                "recall@5": round(float(np.mean(v["recall@5"])), 4),
                "mrr@10": round(float(np.mean(v["mrr@10"])), 4),
                "p50_ms": round(float(np.percentile(v["ms"], 50)), 3),
                "p95_ms": round(float(np.percentile(v["ms"], 95)), 3),
                "questions": len(v["recall@5"]),
            }
            for mode, v in by_mode.items()
        }
        for g, by_mode in per.items()
    }
    return {
        "split": split,
        "conversations": picked,
        "sizes": sizes,
        "embedder": embedder,
        "floor_embed_p50_ms": round(float(np.percentile(floor, 50)), 3),
        "results": table,
        "seconds": round(time.perf_counter() - started, 1),
        "load": os.getloadavg(),
    }


# -- the fusion sweep (tune split only): the lists a conversation search fuses, fused other ways -------------
def sweep(conversations: list[dict[str, Any]], embedder: str, cache: Path | None) -> list[dict[str, Any]]:
    """Turn fusion variants on the tune split: RRF k, window/session weights, speaker weight, min-max fusion.

    Reads each question's semantic and keyword lists (60 deep) once from a store filled by `POST
    /conversations`, then fuses them offline; the held-out split is never read here.
    """
    import itertools

    emb = CachedEmbedder(embedder, cache)
    questions_lists = []
    with tempfile.TemporaryDirectory() as tmp:
        for i in SPLITS["tune"]:
            conv = conversations[i]
            settings = Settings(data_dir=Path(tmp) / str(i), purge_seconds=3600, index_save_seconds=3600)
            svc = MemoryService.open(settings, embedder=emb)  # type: ignore[arg-type]
            try:
                _ingest_conversation(svc, conv)
                known = {t["dia_id"] for s in sessions(conv) for t in s["turns"]}
                now = time.time()
                for q, ev, _cat in questions(conv, known):
                    sem, srows, _ = svc.planner.semantic(svc.embed_query(q), None, 60, now)
                    kw, krows, _ = svc.planner.keyword(q, None, 60, now)
                    rows = {**srows, **krows}
                    questions_lists.append((q, [(rows[s], sc) for s, sc in sem], [(rows[s], sc) for s, sc in kw], ev))
            finally:
                svc.close()
    emb.save()

    def score(center: float, nb: float, sess: float, spk: float, k: int, depth: int, fusion: str) -> tuple:
        recalls, rrs = [], []
        for q, sem, kw, ev in questions_lists:
            fused: dict[str, float] = {}
            for lst in (sem[:depth], kw[:depth]):
                if fusion == "rrf":
                    contrib = [(row, 1.0 / (k + r + 1)) for r, (row, _sc) in enumerate(lst)]
                else:
                    scs = [sc for _, sc in lst] or [0.0]
                    lo, hi = min(scs), max(scs)
                    contrib = [(row, 0.5 * ((sc - lo) / (hi - lo) if hi > lo else 1.0)) for row, sc in lst]
                for row, c in contrib:
                    md = row["metadata"]
                    if md.get("derived") == "window":
                        pairs = [(t, center if t == md["center"] else nb) for t in md["turns"]]
                    elif md.get("derived") == "session":
                        pairs = [(t, sess) for t in md["turns"]]
                    else:
                        named = re.search(r"\b" + re.escape(md.get("speaker", "")) + r"\b", q) is not None
                        pairs = [(row["id"], 1.0 + spk if named else 1.0)]
                    for unit, w in pairs:
                        fused[unit] = fused.get(unit, 0.0) + w * c
            top = [u.split("#turn:", 1)[1] for u, _ in sorted(fused.items(), key=lambda kv: -kv[1])[:10]]
            r, rr = _score([{t} for t in top], ev)
            recalls.append(r)
            rrs.append(rr)
        return round(float(np.mean(recalls)), 4), round(float(np.mean(rrs)), 4)

    out = []
    grid = itertools.product([0.5, 1.0], [0.0, 0.5, 0.75], [0.0, 0.15, 0.3], [0.0, 0.5], [10, 60], [30, 60])
    for center, nb, sess, spk, k, depth in grid:
        r, rr = score(center, nb, sess, spk, k, depth, "rrf")
        out.append(
            {
                "fusion": "rrf",
                "center": center,
                "neighbour": nb,
                "session": sess,
                "speaker": spk,
                "k": k,
                "depth": depth,
                "recall@5": r,
                "mrr@10": rr,
            }
        )
    for depth in (30, 60):
        r, rr = score(1.0, 0.5, 0.15, 0.5, 0, depth, "minmax")
        out.append({"fusion": "minmax 0.5/0.5", "depth": depth, "recall@5": r, "mrr@10": rr})
    return sorted(out, key=lambda d: -d["recall@5"])


def render(report: dict[str, Any]) -> str:
    lines = [
        f"LoCoMo split {report['split']} (conversations {report['conversations']}), embedder {report['embedder']},"
        f" query embedding floor p50 {report['floor_embed_p50_ms']} ms,"
        f" load {tuple(round(x, 2) for x in report['load'])}",
        "",
        "| granularity | mode | questions | recall@5 | MRR@10 | search p50 / p95 ms (beyond the model) |",
        "|---|---|---|---|---|---|",
    ]
    for g, by_mode in report["results"].items():
        for mode, r in by_mode.items():
            lines.append(
                f"| {g} | {mode} | {r['questions']} | {r['recall@5']:.3f} | {r['mrr@10']:.3f} |"
                f" {r['p50_ms']:.2f} / {r['p95_ms']:.2f} |"
            )
    return "\n".join(lines)


def main(argv: Sequence[str] | None = None) -> None:
    ap = argparse.ArgumentParser(description=(__doc__ or "").split("\n\n")[0])
    ap.add_argument("--data", help="locomo10.zip, locomo10.json or a directory of its json files")
    ap.add_argument("--split", choices=sorted(SPLITS), default="test")
    ap.add_argument(
        "--granularity", default=",".join(GRANULARITIES), help="comma-separated: " + ", ".join(GRANULARITIES)
    )
    ap.add_argument("--embedder", default="onnx")
    ap.add_argument(
        "--cache",
        type=Path,
        default=Path(tempfile.gettempdir()) / "memory-spine-bench" / "locomo-vectors.npz",
        help="text -> vector cache across runs ('' for none)",
    )
    ap.add_argument("--json", type=Path, help="also write the report here")
    ap.add_argument("--sweep", action="store_true", help="the turn-fusion sweep on the tune split (no report)")
    args = ap.parse_args(argv)
    if args.sweep:
        rows = sweep(load(args.data), args.embedder, args.cache if str(args.cache) else None)
        for row in rows[:15] + rows[-3:]:
            print(json.dumps(row))
        if args.json:
            args.json.write_text(json.dumps(rows, indent=1))
        return
    grans = [g for g in args.granularity.split(",") if g]
    bad = [g for g in grans if g not in GRANULARITIES]
    if bad:
        ap.error(f"unknown granularity {bad}")
    report = run(load(args.data), args.split, grans, args.embedder, args.cache if str(args.cache) else None)
    print(render(report))
    if args.json:
        args.json.write_text(json.dumps(report, indent=2))


if __name__ == "__main__":
    main()
