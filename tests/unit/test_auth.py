"""Auth: off by default; with a token every endpoint but /health needs `Authorization: Bearer <token>` (401 with
the JSON error body otherwise), compared in constant time and never logged. Also: CORS off unless configured,
and `serve` refusing a non-loopback bind without a token."""

from __future__ import annotations

import logging
import re

import httpx
import pytest

from memory_spine.api import create_app
from memory_spine.config import Settings
from memory_spine.service import MemoryService

TOKEN = "s3cret-token-value"


def open_service(tmp_path, **kw) -> MemoryService:
    return MemoryService.open(
        Settings(data_dir=tmp_path / "d", embedder="fake", purge_seconds=3600, index_save_seconds=3600, **kw)
    )


@pytest.fixture
def secured(tmp_path):
    svc = open_service(tmp_path, token=TOKEN)
    yield svc
    svc.close()


@pytest.fixture
async def anon(secured):
    app = create_app(secured)
    async with httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url="http://ms") as c:
        c.app = app
        yield c


def endpoints(app) -> list[tuple[str, str]]:
    """Every (method, concrete path) of the API (from its OpenAPI schema) and the docs pages."""
    out = [("GET", "/openapi.json"), ("GET", "/docs"), ("GET", "/redoc")]
    for path, ops in app.openapi()["paths"].items():
        out += [(method.upper(), re.sub(r"\{[^}]+\}", "x", path)) for method in ops]
    return out


async def test_every_endpoint_but_health_needs_the_token(anon):
    eps = endpoints(anon.app)
    assert {("POST", "/ingest"), ("POST", "/search"), ("GET", "/metrics"), ("GET", "/docs")} <= set(eps)
    assert len(eps) >= 18
    for method, path in eps:
        r = await anon.request(method, path, json={} if method in ("POST", "PATCH", "DELETE") else None)
        if path == "/health":
            assert r.status_code == 200, (method, path)
            continue
        assert r.status_code == 401, (method, path, r.status_code)
        assert r.json()["error"]["type"] == "unauthorized", (method, path)
        assert r.json()["error"]["message"]
        assert r.headers["www-authenticate"] == "Bearer"
    # With the token, no endpoint answers 401 (their other answers depend on the dummy parameters).
    for method, path in eps:
        r = await anon.request(
            method,
            path,
            json={} if method in ("POST", "PATCH", "DELETE") else None,
            headers={"Authorization": f"Bearer {TOKEN}"},
        )
        assert r.status_code != 401, (method, path)


async def test_unknown_paths_answer_401_not_404(anon):
    assert (await anon.get("/no/such/route")).status_code == 401


@pytest.mark.parametrize(
    "header",
    [
        None,
        "",
        TOKEN,
        f"Basic {TOKEN}",
        "Bearer",
        "Bearer ",
        "Bearer wrong",
        f"Bearer {TOKEN[:-1]}",
        f"Bearer {TOKEN}x",
        f"Bearer {TOKEN.upper()}",
    ],
)
async def test_wrong_or_missing_credentials_are_refused_and_nothing_is_written(anon, secured, header):
    headers = {"Authorization": header} if header is not None else {}
    r = await anon.post("/ingest", json={"content": "should not be stored"}, headers=headers)
    assert r.status_code == 401
    assert r.headers["content-type"].startswith("application/json")
    assert secured.stats()["total_memories"] == 0


@pytest.mark.parametrize("header", [f"Bearer {TOKEN}", f"bearer {TOKEN}", f"BEARER {TOKEN}", f"Bearer {TOKEN}  "])
async def test_the_right_token_is_accepted(anon, header):
    r = await anon.post("/ingest", json={"content": "stored"}, headers={"Authorization": header})
    assert r.status_code == 200
    r = await anon.get("/stats", headers={"Authorization": header})
    assert r.json()["total_memories"] == 1


async def test_comparison_is_constant_time(anon, monkeypatch):
    import hmac

    from memory_spine.api import auth

    seen = []
    compare = hmac.compare_digest

    def spy(a, b):
        seen.append((a, b))
        return compare(a, b)

    monkeypatch.setattr(auth.hmac, "compare_digest", spy)
    await anon.get("/stats", headers={"Authorization": "Bearer guess"})
    await anon.get("/stats", headers={"Authorization": f"Bearer {TOKEN}"})
    assert seen == [(b"guess", TOKEN.encode()), (TOKEN.encode(), TOKEN.encode())]


async def test_the_token_is_never_logged(anon, caplog):
    with caplog.at_level(logging.DEBUG):
        await anon.get("/stats", headers={"Authorization": f"Bearer {TOKEN}"})
        await anon.get("/stats", headers={"Authorization": "Bearer wrong-guess"})
        await anon.post("/search", json={"query": "x"}, headers={"Authorization": f"Bearer {TOKEN}"})
    assert caplog.records
    for rec in caplog.records:
        assert TOKEN not in rec.getMessage() and TOKEN not in str(rec.__dict__)


async def test_auth_off_by_default(client):
    assert (await client.get("/stats")).status_code == 200
    assert (await client.post("/ingest", json={"content": "open"})).status_code == 200
    assert (await client.get("/metrics")).status_code == 200


def test_token_from_the_environment(monkeypatch, tmp_path):
    monkeypatch.setenv("MEMORY_SPINE_TOKEN", "from-env")
    settings = Settings(data_dir=tmp_path)
    assert settings.token is not None and settings.token.get_secret_value() == "from-env"
    assert "from-env" not in repr(settings)


async def test_cors_is_off_unless_configured(client):
    preflight = {"Origin": "http://ui.example", "Access-Control-Request-Method": "POST"}
    r = await client.options("/search", headers=preflight)
    assert "access-control-allow-origin" not in r.headers
    r = await client.post("/search", json={"query": "x"}, headers={"Origin": "http://ui.example"})
    assert "access-control-allow-origin" not in r.headers


async def test_cors_when_configured_also_with_a_token(tmp_path):
    with open_service(tmp_path, token=TOKEN, cors_origins=["http://ui.example"]) as svc:
        app = create_app(svc)
        async with httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url="http://ms") as c:
            # A browser's preflight never carries the Authorization header: it must not meet a 401.
            preflight = {
                "Origin": "http://ui.example",
                "Access-Control-Request-Method": "POST",
                "Access-Control-Request-Headers": "authorization, content-type",
            }
            r = await c.options("/search", headers=preflight)
            assert r.status_code == 200 and r.headers["access-control-allow-origin"] == "http://ui.example"
            r = await c.options("/search", headers={**preflight, "Origin": "http://evil.example"})
            assert r.headers.get("access-control-allow-origin") != "http://evil.example"
            # The real request still needs the token, and its 401 is readable by the page.
            r = await c.post("/search", json={"query": "x"}, headers={"Origin": "http://ui.example"})
            assert r.status_code == 401 and r.headers["access-control-allow-origin"] == "http://ui.example"
            headers = {"Origin": "http://ui.example", "Authorization": f"Bearer {TOKEN}"}
            assert (await c.post("/search", json={"query": "x"}, headers=headers)).status_code == 200


def test_serve_refuses_a_public_address_without_a_token(tmp_path, capsys, monkeypatch):
    from memory_spine import cli

    monkeypatch.delenv("MEMORY_SPINE_TOKEN", raising=False)
    assert cli.main(["serve", "--host", "0.0.0.0", "--data-dir", str(tmp_path), "--embedder", "fake"]) == 2
    err = capsys.readouterr().err
    assert "0.0.0.0" in err and "--token" in err and "--insecure" in err
