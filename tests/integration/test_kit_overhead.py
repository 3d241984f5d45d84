"""What durability costs per step over HTTP against a real memory-spine (ONNX model): p50/p95 of a checkpoint
(plain, and fenced: written under a claim, its fence checked in the write's transaction), a claim, a release,
a whole idempotent() call, and a resume read. Printed (`pytest -s`) and bounded loosely."""

from __future__ import annotations

import statistics
import time

import pytest

from workflow_kit import MemoryClient, idempotent

pytestmark = pytest.mark.integration


@pytest.fixture(scope="module")
def server(tmp_path_factory):
    """One real service for the module (its tests use distinct ids): a process start is most of a test's time."""
    from tests.conftest import ServerProcess

    srv = ServerProcess(tmp_path_factory.mktemp("kit-server") / "data").start()
    yield srv
    srv.stop()


N = 60


async def timed(n, call):
    samples = []
    for i in range(n):
        started = time.perf_counter()
        await call(i)
        samples.append((time.perf_counter() - started) * 1000)
    samples.sort()
    return {"p50": round(statistics.median(samples), 2), "p95": round(samples[int(n * 0.95) - 1], 2)}


async def paired(n, first, second):
    """p50/p95 of two calls measured in alternating order, one of each per round."""
    samples: dict[str, list[float]] = {first[0]: [], second[0]: []}
    for i in range(n):
        for name, call in (first, second) if i % 2 == 0 else (second, first):
            started = time.perf_counter()
            await call(i)
            samples[name].append((time.perf_counter() - started) * 1000)
    out = {}
    for name, got in samples.items():
        got.sort()
        out[name] = {"p50": round(statistics.median(got), 2), "p95": round(got[int(n * 0.95) - 1], 2)}
    return out


async def test_checkpoint_and_claim_overhead(server):
    async with MemoryClient(server.url) as client:
        await timed(20, lambda i: client.checkpoint("warm", f"s{i}", {"result": i}))  # warm up pool and model
        tokens: dict[int, str] = {}

        async def take(i: int) -> None:
            tokens[i] = (await client.claim(f"dedup:bench{i}", holder="bench", lease_seconds=60))["lease_token"]

        held = await client.kit.claim("workflow:bench-fenced", lease_seconds=600)  # where checkpoints live
        fence = {"key": "workflow:bench-fenced", "token": held["fence"]}
        results = {
            # Interleaved (plain, fenced, fenced, plain, ...) so that a load change on a shared machine weighs on
            # both alike: the difference is the fence check (one primary-key read in the write's transaction).
            **await paired(
                N,
                ("checkpoint", lambda i: client.checkpoint("bench", f"step{i}", {"result": {"i": i}})),
                (
                    "checkpoint (fenced)",
                    lambda i: client.checkpoint("bench-fenced", f"step{i}", {"result": {"i": i}}, fence=fence),
                ),
            ),
            "claim": await timed(N, take),
            "release": await timed(N, lambda i: client.release(f"dedup:bench{i}", lease_token=tokens[i])),
            "latest_checkpoint": await timed(N, lambda i: client.latest_checkpoint("bench")),
            "idempotent (new key)": await timed(N // 2, lambda i: idempotent(client, "bench", {"i": i}, _noop)),
            "idempotent (cached)": await timed(N // 2, lambda i: idempotent(client, "bench", {"i": i}, _noop)),
        }
    for name, r in results.items():
        print(f"{name:>22}: p50 {r['p50']:7.2f} ms   p95 {r['p95']:7.2f} ms")
    # Loose bounds: a regression by an order of magnitude fails, CI noise does not.
    assert results["checkpoint"]["p50"] < 100
    assert results["checkpoint (fenced)"]["p50"] < 100
    assert results["claim"]["p50"] < 50


async def _noop(params):
    return params
