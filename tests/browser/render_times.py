"""How long each console page takes to render on a big data dir: 100k memories and 1,000 workflow traces.

    python tests/browser/render_times.py fill --data-dir /tmp/ui-big        # once: ~1,000 code-review runs, 100k
    python tests/browser/render_times.py measure --data-dir /tmp/ui-big     # memories (fake embedder)

`fill` starts `memory-spine serve --embedder fake` on the data dir, runs the code-review example (in this
process, one run after another) for `--workflows` ids, a few paused and failed ones among them, then ingests
`--memories` notes in batches of 1,000 (after the traces, so the traces are the oldest rows: the slow case
for anything that reads newest first). `measure` serves the data dir again and opens each page in headless
Chromium (Debian's), `--repeat` times, timing from navigation to the page saying it has drawn its data
(`<body data-ready>`), and prints one line per page with the median and the slowest, in milliseconds.

Not a test (pytest does not collect it): a measurement to run by hand.
"""

from __future__ import annotations

import argparse
import asyncio
import importlib.util
import json
import random
import statistics
import sys
import time
from pathlib import Path

import httpx

ROOT = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(ROOT))

from tests.browser.support import CHROMIUM_ARGS, CHROMIUM_PATH, run_failing, run_paused  # noqa: E402
from tests.conftest import ServerProcess  # noqa: E402

TAGS = ["incident", "deploy", "billing", "search", "infra", "security", "note", "design", "oncall", "customer"]
WORDS = (
    "database migration timed out cache eviction latency spike rollback release canary queue backlog index rebuild"
    " token rotation certificate expiry disk pressure memory leak retry storm rate limit quota alert page owner"
).split()


def _example():
    spec = importlib.util.spec_from_file_location("code_review_example", ROOT / "examples" / "code_review.py")
    module = importlib.util.module_from_spec(spec)
    assert spec.loader is not None
    spec.loader.exec_module(module)
    return module


async def _workflows(url: str, count: int, journal: Path) -> None:
    example = _example()
    for i in range(count):
        wf = f"pr-{i:04d}"
        if i % 100 == 7:
            await run_paused(url, f"nightly-{i:04d}")
        elif i % 100 == 13:
            await run_failing(url, f"ingest-{i:04d}")
        else:
            args = ["--memory-url", url, "--workflow-id", wf, "--journal-dir", str(journal), "--quiet"]
            code = await example.main(args)
            assert code == 0, wf
        if i % 100 == 0:
            print(f"  {i} workflows", file=sys.stderr, flush=True)


def _memories(url: str, count: int) -> None:
    rnd = random.Random(7)
    with httpx.Client(base_url=url, timeout=300) as http:
        for start in range(0, count, 1000):
            records = [
                {
                    "content": " ".join(rnd.choice(WORDS) for _ in range(12)) + f" (note {start + j})",
                    "tags": rnd.sample(TAGS, rnd.randint(1, 3)),
                    "metadata": {"severity": rnd.randint(1, 5), "team": rnd.choice(["core", "infra", "web"])},
                    "importance": rnd.choice(["low", "medium", "high"]),
                }
                for j in range(min(1000, count - start))
            ]
            http.post("/ingest/batch", json={"records": records}).raise_for_status()
            if start % 10_000 == 0:
                print(f"  {start} memories", file=sys.stderr, flush=True)


def fill(data_dir: Path, workflows: int, memories: int) -> None:
    srv = ServerProcess(data_dir, embedder="fake").start()
    try:
        started = time.monotonic()
        asyncio.run(_workflows(srv.url, workflows, data_dir.parent / f"{data_dir.name}-journal"))
        print(f"{workflows} workflows in {time.monotonic() - started:.0f} s", file=sys.stderr)
        started = time.monotonic()
        _memories(srv.url, memories)
        print(f"{memories} memories in {time.monotonic() - started:.0f} s", file=sys.stderr)
        print(json.dumps(httpx.get(srv.url + "/stats").json()["total_memories"]))
    finally:
        srv.stop()


def measure(data_dir: Path, repeat: int) -> dict[str, list[float]]:
    from playwright.sync_api import sync_playwright

    srv = ServerProcess(data_dir, embedder="fake").start(timeout=300)
    try:
        http = httpx.Client(base_url=srv.url, timeout=60)
        wf = http.get("/keys", params={"prefix": "checkpoint:", "limit": 1}).json()["results"][0]["metadata"]
        trace = http.get("/keys", params={"prefix": "trace:", "limit": 1}).json()["results"][0]["metadata"]
        memory = http.get("/memories", params={"limit": 1}).json()["results"][0]["id"]
        pages = {
            "overview": "/ui",
            "memories (newest)": "/ui/memories",
            "memories (hybrid search)": "/ui/memories?q=database+migration+rollback&mode=hybrid",
            "memories (semantic, tag filter)": "/ui/memories?q=latency+spike&mode=semantic&tags=incident",
            "memory record": f"/ui/memories/{memory}",
            "workflows": "/ui/workflows",
            "workflow": f"/ui/workflows/{wf['workflow_id']}",
            "traces": "/ui/traces",
            "traces (filtered: status=error)": "/ui/traces?status=error",
            "trace": f"/ui/traces/{trace['trace_id']}",
        }
        times: dict[str, list[float]] = {name: [] for name in pages}
        with sync_playwright() as p:
            browser = p.chromium.launch(executable_path=CHROMIUM_PATH, args=CHROMIUM_ARGS)
            page = browser.new_page(viewport={"width": 1280, "height": 900})
            for _ in range(repeat):
                for name, path in pages.items():
                    started = time.perf_counter()
                    page.goto(srv.url + path)
                    page.wait_for_selector("body[data-ready]", timeout=60_000)
                    times[name].append((time.perf_counter() - started) * 1000)
            browser.close()
        return times
    finally:
        srv.stop()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("command", choices=["fill", "measure"])
    parser.add_argument("--data-dir", type=Path, required=True)
    parser.add_argument("--workflows", type=int, default=1000)
    parser.add_argument("--memories", type=int, default=100_000)
    parser.add_argument("--repeat", type=int, default=5)
    args = parser.parse_args()
    if args.command == "fill":
        fill(args.data_dir, args.workflows, args.memories)
        return
    times = measure(args.data_dir, args.repeat)
    print(f"{'page':34} {'median ms':>10} {'max ms':>8}")
    for name, values in times.items():
        print(f"{name:34} {statistics.median(values):10.0f} {max(values):8.0f}")


if __name__ == "__main__":
    main()
