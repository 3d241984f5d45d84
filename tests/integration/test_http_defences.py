"""The HTTP layer's defences (issue 15) against one real `memory-spine serve` process with the real model.

The server reads its token from a file (so `ps` shows none), answers only loopback names, IP literals and the
configured host (421 otherwise), cuts slow headers and bodies (408, short timeouts here), labels every request
refused before routing by its route or `unmatched` (never the raw path), keeps the result cache under its byte
bound, and embeds a batch of long texts without tokenizing all of them. `benchmarks/attacks.py` runs the same
attacks at full size and prints the figures.
"""

from __future__ import annotations

import random
import socket
import string
import threading
import time

import httpx
import psutil
import pytest

from ..conftest import ServerProcess

pytestmark = pytest.mark.integration

TOKEN = "defence-" + "0c4f7a91d2e3b5"
CACHE_BYTES = 4 * 1024 * 1024
MB = 1024 * 1024


@pytest.fixture(scope="module")
def srv(tmp_path_factory):
    work = tmp_path_factory.mktemp("defences")
    token_file = work / "token"
    token_file.write_text(TOKEN + "\n")
    server = ServerProcess(
        work / "data",
        args=["--token-file", str(token_file), "--allowed-hosts", "memory.example", "--header-timeout", "1"],
        env={"MEMORY_SPINE_BODY_TIMEOUT": "2", "MEMORY_SPINE_RESULT_CACHE_BYTES": str(CACHE_BYTES)},
    ).start()
    yield server
    server.stop()


@pytest.fixture(scope="module")
def api(srv):
    with httpx.Client(base_url=srv.url, headers={"Authorization": f"Bearer {TOKEN}"}, timeout=120) as c:
        yield c


def _rss(srv: ServerProcess) -> float:
    return psutil.Process(srv.proc.pid).memory_info().rss / MB


def test_the_token_comes_from_the_file_and_is_not_in_ps(srv, api):
    assert TOKEN not in " ".join(psutil.Process(srv.proc.pid).cmdline())
    assert httpx.get(srv.url + "/stats").status_code == 401
    assert api.get("/stats").status_code == 200


def test_requests_refused_before_routing_never_label_metrics_with_their_path(srv, api):
    rng = random.Random(15)
    paths = ["/" + "".join(rng.choices(string.ascii_lowercase, k=20)) for _ in range(300)]
    with httpx.Client(base_url=srv.url) as anonymous:
        for path in paths:
            assert anonymous.get(path).status_code == 401
        assert anonymous.get("/memories/some-id").status_code == 401
    assert api.get(paths[0]).status_code == 404
    text = api.get("/metrics").text
    assert not any(p in text for p in paths), "a raw path became a label"
    assert 'route="unmatched",status="401"} 300.0' in text
    assert 'route="/memories/{id}",status="401"} 1.0' in text  # refused, but its route is known
    assert 'route="unmatched",status="404"} 1.0' in text


@pytest.mark.parametrize(
    ("host", "status"),
    [
        ("evil.example", 421),
        ("evil.example:8788", 421),
        ("localhost.evil.example", 421),
        ("sub.memory.example", 421),
        ("localhost", 200),
        ("LOCALHOST.:8788", 200),
        ("app.localhost", 200),
        ("127.0.0.1:8788", 200),
        ("[::1]:8788", 200),
        ("10.1.2.3", 200),
        ("memory.example", 200),
        ("memory.example:443", 200),
    ],
)
def test_only_loopback_names_ip_literals_and_configured_hosts_are_answered(api, host, status):
    r = api.get("/memories", headers={"Host": host})
    assert r.status_code == status, r.text
    if status == 421:
        error = r.json()["error"]
        assert error["field"] == "Host" and host in error["message"] and "--allowed-hosts" in error["message"]


def test_health_answers_any_host(srv):
    assert httpx.get(srv.url + "/health", headers={"Host": "lb.internal"}).status_code == 200


def _drip(port: int, first: bytes, rest: bytes, out: list[tuple[float, bytes]]) -> None:
    started = time.monotonic()
    answer = b""
    with socket.create_connection(("127.0.0.1", port)) as s:
        s.settimeout(0.25)
        s.sendall(first)
        for byte in rest:
            try:
                s.sendall(bytes([byte]))
                answer = s.recv(4096)
                break  # an answer, or the connection closed
            except TimeoutError:
                continue
            except OSError:
                break
    out.append((time.monotonic() - started, answer))


def test_slow_headers_and_bodies_are_cut_with_408_while_others_are_served(srv, api):
    auth = b"Authorization: Bearer " + TOKEN.encode() + b"\r\n"
    slow_head = b"GET /stats HTTP/1.1\r\nHost: 127.0.0.1\r\n" + auth + b"X-Slow: " + b"a" * 40
    body = b'{"content": "' + b"b" * 40 + b'"}'
    head = b"POST /ingest HTTP/1.1\r\nHost: 127.0.0.1\r\n" + auth + b"Content-Type: application/json\r\n"
    head += b"Content-Length: " + str(len(body)).encode() + b"\r\n\r\n"
    heads: list[tuple[float, bytes]] = []
    bodies: list[tuple[float, bytes]] = []
    threads = [threading.Thread(target=_drip, args=(srv.port, b"G", slow_head[1:], heads)) for _ in range(8)]
    threads += [threading.Thread(target=_drip, args=(srv.port, head, body, bodies)) for _ in range(8)]
    for t in threads:
        t.start()
    time.sleep(0.3)
    started = time.monotonic()
    assert api.get("/stats").status_code == 200
    assert time.monotonic() - started < 1.0, "a normal request waited on the slow ones"
    for t in threads:
        t.join(15)
    assert len(heads) == len(bodies) == 8
    for seconds, answer in heads:
        assert 0.9 < seconds < 3.0 and answer.startswith(b"HTTP/1.1 408"), (seconds, answer[:80])
        assert b'"field":"headers"' in answer
    for seconds, answer in bodies:
        assert 1.9 < seconds < 4.0 and answer.startswith(b"HTTP/1.1 408"), (seconds, answer[:80])
    # Nothing of the cut bodies was stored.
    assert api.post("/search", json={"query": "b" * 40, "mode": "keyword"}).json()["results"] == []


def test_a_connection_that_never_sends_is_closed_quietly(srv):
    started = time.monotonic()
    with socket.create_connection(("127.0.0.1", srv.port)) as s:
        s.settimeout(5)
        assert s.recv(4096) == b""  # closed, no 408 a client could take for the answer to its next request
    assert 0.9 < time.monotonic() - started < 3.0


def test_a_batch_of_long_texts_is_not_tokenized_whole(srv, api):
    rng = random.Random(6)
    letters = string.ascii_lowercase  # random letter strings: ~3 characters a token, the densest text
    records = [
        {"content": " ".join("".join(rng.choices(letters, k=rng.randint(3, 9))) for _ in range(17_000))[:100_000]}
        for _ in range(48)
    ]
    before = _rss(srv)
    peak = [before]
    done = threading.Event()

    def sample() -> None:
        while not done.is_set():
            peak[0] = max(peak[0], _rss(srv))
            time.sleep(0.02)

    sampler = threading.Thread(target=sample)
    sampler.start()
    try:
        r = api.post("/ingest/batch", json={"records": records})
    finally:
        done.set()
        sampler.join()
    assert r.status_code == 200, r.text
    # Tokenized whole, such texts took ~10 MB each (160: 160 -> 1,692 MB); clipped, the 5 MB of JSON dominates.
    assert peak[0] - before < 200, f"RSS {before:.0f} -> peak {peak[0]:.0f} MB"


def test_the_result_cache_stays_under_its_byte_bound(api):
    # Over the records of the test above (48 x 100 KB): each answer is ~500 KB, twelve would be 6 MB.
    for i in range(12):
        r = api.post("/search", json={"query": f"agent {i}", "limit": 5, "mode": "semantic"})
        assert r.status_code == 200 and len(r.json()["results"]) == 5
    cache = api.get("/stats").json()["result_cache"]
    assert 0 < cache["bytes"] <= CACHE_BYTES and cache["max_bytes"] == CACHE_BYTES, cache
