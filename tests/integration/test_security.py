"""Security of a real `memory-spine serve` process: the token guards every route that holds data (walked from the
app's route table, every method; /health and the console's page shells answer, with no data), neither the token
nor a wrong guess ever reaches the log (debug level), a non-loopback bind without a token is refused before
anything listens, and CORS is off unless configured.

The in-process versions live in tests/unit/test_auth.py; these run the real process, configured through the
environment (MEMORY_SPINE_TOKEN, MEMORY_SPINE_HOST, MEMORY_SPINE_CORS_ORIGINS), with uvicorn's own logging.
The fake embedder is enough: no check here depends on the model.
"""

from __future__ import annotations

import os
import re
import socket
import subprocess
import sys

import httpx
import pytest

from ..conftest import ROOT, free_port

pytestmark = pytest.mark.integration

TOKEN = "tok-" + "9f3c2a71e5d84b06a1c7"
GUESS = "guess-" + "d41d8cd98f00b204e980"


def _routes() -> list[tuple[str, str]]:
    """Every (method, concrete path) the app serves, from its route table (API, schema and docs pages)."""
    from memory_spine.api import create_app
    from memory_spine.config import Settings

    def walk(routes) -> list[tuple[str, str]]:
        out = []
        for route in routes:
            if hasattr(route, "original_router"):  # FastAPI >= 0.16x keeps an included router as one entry
                out += walk(route.original_router.routes)
                continue
            path = re.sub(r"\{[^}]+\}", "x", route.path)
            out += [(method, path) for method in sorted(getattr(route, "methods", None) or {"GET"})]
        return out

    return walk(create_app(Settings(embedder="fake")).routes)  # not started: only its route table is read


@pytest.fixture
def secured(server_factory):
    return server_factory(embedder="fake", args=["--log-level", "debug"], env={"MEMORY_SPINE_TOKEN": TOKEN})


def test_every_route_that_holds_data_needs_the_token(secured):
    """Walk the app's route table, every method, with no token, a wrong one and one without its scheme: the API
    (everything in the OpenAPI schema but /health) answers 401; whatever else answers (the docs' OAuth redirect
    helper, the console's HTML shells and static files) carries no record, and no API data format."""
    routes = _routes()
    assert len(routes) >= 19 and ("POST", "/ingest") in routes and ("GET", "/docs") in routes
    good = {"Authorization": f"Bearer {TOKEN}"}
    canary = "canary-" + "7c1e94d0b3"
    with httpx.Client(base_url=secured.url, timeout=30) as http:
        api = {re.sub(r"\{[^}]+\}", "x", p) for p in http.get("/openapi.json", headers=good).json()["paths"]}
        http.post("/ingest", json={"id": "kept", "content": f"{canary} secret note", "key": "x"}, headers=good)
        http.post("/claims", json={"key": "x", "holder": canary}, headers=good)
        opened = set()
        for method, path in routes + [("GET", "/no/such/route"), ("OPTIONS", "/search"), ("HEAD", "/stats")]:
            body = {} if method in ("POST", "PATCH", "DELETE") else None
            for headers in ({}, {"Authorization": f"Bearer {GUESS}"}, {"Authorization": TOKEN}):
                r = http.request(method, path, json=body, headers=headers)
                if path == "/health":
                    assert r.status_code == 200 and canary not in r.text, (method, path)
                elif r.status_code == 401:
                    if method != "HEAD":
                        assert r.json()["error"]["type"] == "unauthorized"
                    assert r.headers["www-authenticate"] == "Bearer"
                else:
                    assert path not in api, (method, path, headers, r.status_code)
                    assert r.status_code < 500 and canary not in r.text, (method, path, r.status_code)
                    if r.headers.get("content-type", "").startswith("application/json"):  # only an error
                        assert r.status_code >= 400 and set(r.json()) <= {"error", "errors"}, (method, path)
                    opened.add(path)
            if path in api and path != "/health":
                assert http.request(method, path, json=body, headers=good).status_code != 401, (method, path)
        assert http.get("/stats", headers=good).json()["total_memories"] == 1  # no refused write got through
    print(f"{len(routes)} routes walked; open without a token (no data): {sorted(opened)}")


def test_the_token_never_reaches_the_log_or_a_response(secured):
    good = {"Authorization": f"Bearer {TOKEN}"}
    with httpx.Client(base_url=secured.url, timeout=30) as http:
        seen = []
        seen.append(http.post("/ingest", json={"content": "with the token"}, headers=good))
        seen.append(
            http.post("/ingest", json={"content": "with a guess"}, headers={"Authorization": f"Bearer {GUESS}"})
        )
        seen.append(http.post("/search", json={"query": "token"}, headers=good))
        seen.append(http.post("/search", json={"query": "x", "limit": 0}, headers=good))  # a 422
        seen.append(http.get("/stats", headers=good))
        seen.append(http.get("/metrics", headers=good))
        seen.append(http.get("/openapi.json", headers=good))
        seen.append(http.get("/health"))
        seen.append(http.get("/stats", headers={"Authorization": f"Basic {TOKEN}"}))
        for r in seen:
            assert TOKEN not in r.text and GUESS not in r.text, r.url
    assert secured.terminate() == 0  # the shutdown lines too
    log = secured.log_path.read_text(errors="replace")
    assert '"level":"debug"' in log and '"route":"/ingest"' in log  # it did log, at debug level
    for secret in (TOKEN, GUESS, TOKEN[4:]):
        assert secret not in log, [line for line in log.splitlines() if secret in line][:3]


@pytest.mark.parametrize(
    ("args", "env"),
    [
        (["--host", "0.0.0.0"], {}),
        (["--host", "::"], {}),
        ([], {"MEMORY_SPINE_HOST": "0.0.0.0"}),
        (["--host", "0.0.0.0"], {"MEMORY_SPINE_TOKEN": ""}),
    ],
    ids=["flag", "ipv6-any", "env", "empty-token"],
)
def test_non_loopback_bind_without_a_token_is_refused_before_listening(tmp_path, args, env):
    port = free_port()
    run_env = {k: v for k, v in os.environ.items() if not k.startswith("MEMORY_SPINE_")}
    run_env.update({"PYTHONPATH": str(ROOT), **env})
    cmd = [sys.executable, "-m", "memory_spine", "serve", "--port", str(port), "--data-dir", str(tmp_path / "d")]
    r = subprocess.run(
        [*cmd, "--embedder", "fake", *args], capture_output=True, text=True, timeout=30, cwd=str(ROOT), env=run_env
    )
    assert r.returncode == 2, r.stderr
    assert "not a loopback address" in r.stderr and "--token" in r.stderr
    assert not (tmp_path / "d").exists()  # refused before touching the data dir
    with socket.socket() as s:
        s.bind(("127.0.0.1", port))  # and nothing ever listened


def test_cors_is_off_by_default_and_only_for_configured_origins(secured, server_factory):
    preflight = {"Origin": "http://ui.example", "Access-Control-Request-Method": "POST"}
    good = {"Authorization": f"Bearer {TOKEN}"}
    with httpx.Client(base_url=secured.url, timeout=30) as http:
        r = http.options("/search", headers=preflight)
        assert "access-control-allow-origin" not in r.headers
        r = http.post("/search", json={"query": "x"}, headers={**good, "Origin": "http://ui.example"})
        assert r.status_code == 200 and "access-control-allow-origin" not in r.headers
    cors = server_factory(
        embedder="fake",
        env={"MEMORY_SPINE_TOKEN": TOKEN, "MEMORY_SPINE_CORS_ORIGINS": '["http://ui.example"]'},
    )
    with httpx.Client(base_url=cors.url, timeout=30) as http:
        r = http.options("/search", headers=preflight)
        assert r.headers.get("access-control-allow-origin") == "http://ui.example"
        r = http.options("/search", headers={**preflight, "Origin": "http://evil.example"})
        assert r.headers.get("access-control-allow-origin") != "http://evil.example"
        r = http.post("/search", json={"query": "x"}, headers={"Origin": "http://evil.example", **good})
        assert "access-control-allow-origin" not in r.headers
        r = http.post("/search", json={"query": "x"}, headers={"Origin": "http://ui.example"})
        assert r.status_code == 401  # CORS opens the browser's door, not the token check
