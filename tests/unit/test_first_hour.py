"""What a new user meets in the first hour, in-process: `/` leads to the console, `/docs` works offline (its
Swagger UI files come from this service, and `/ui/docs` brings the console's token), a body without the JSON
content-type says so, every 422 carries the `errors` array, and polling `/health` does not fill the info log.
"""

from __future__ import annotations

import logging
import re

import httpx
import pytest

from memory_spine.api import create_app

TOKEN = "first-hour-token-0123456789"


async def test_root_redirects_to_the_console(client: httpx.AsyncClient) -> None:
    r = await client.get("/")
    assert r.status_code == 307 and r.headers["location"] == "/ui"


async def test_docs_load_nothing_from_another_host(client: httpx.AsyncClient) -> None:
    for page in ("/docs", "/redoc", "/ui/docs"):
        html = (await client.get(page)).text
        sources = re.findall(r'(?:src|href)="([^"]+)"', html)
        assert sources, page
        for src in sources:
            assert src.startswith("/"), (page, src)  # same origin: nothing from a CDN
            if src.startswith("/docs/static/") or src.startswith("/ui/static/"):
                got = await client.get(src.split("?")[0])
                assert got.status_code == 200 and len(got.content) > 1000, src


@pytest.fixture
async def secured(service) -> httpx.AsyncClient:
    from pydantic import SecretStr

    service.settings.token = SecretStr(TOKEN)  # the app reads the token from the service's settings
    app = create_app(service)
    async with httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url="http://ms") as c:
        yield c
    service.settings.token = None


async def test_with_a_token_the_docs_need_it_but_their_files_and_ui_docs_do_not(secured: httpx.AsyncClient) -> None:
    assert (await secured.get("/docs")).status_code == 401
    assert (await secured.get("/openapi.json")).status_code == 401
    assert (await secured.get("/docs/static/swagger-ui-bundle.js")).status_code == 200  # vendor code, no data
    page = await secured.get("/ui/docs")  # a shell that sends the console's token with every request
    assert page.status_code == 200 and "docs.js" in page.text
    script = (await secured.get("/ui/static/docs.js")).text
    assert "requestInterceptor" in script and "memory-spine.token" in script and "/ui/login" in script
    assert (await secured.get("/")).status_code == 307
    ok = await secured.get("/openapi.json", headers={"Authorization": f"Bearer {TOKEN}"})
    assert ok.status_code == 200 and "bearer" in ok.json()["components"]["securitySchemes"]


@pytest.mark.parametrize("content_type", [None, "text/plain", "application/x-www-form-urlencoded"])
async def test_a_body_without_the_json_content_type_says_so(client: httpx.AsyncClient, content_type) -> None:
    headers = {"content-type": content_type} if content_type else {}
    r = await client.post("/ingest", content=b'{"content": "x"}', headers=headers)
    assert r.status_code == 422
    message = r.json()["error"]["message"]
    assert "content-type: application/json" in message, message
    assert (content_type or "no content-type") in message
    # With the header, the same body is stored.
    assert (await client.post("/ingest", json={"content": "x"})).status_code in (200, 201)


async def test_where_errors_carry_the_errors_array(client: httpx.AsyncClient) -> None:
    r = await client.post("/search", json={"query": "x", "where": {"$bad": 1}})
    body = r.json()
    assert r.status_code == 422 and body["error"]["field"] == "where.$bad"
    assert body["errors"] == [{"field": "where.$bad", "message": body["error"]["message"].split(": ", 1)[1]}]


async def test_method_not_allowed_has_its_type(client: httpx.AsyncClient) -> None:
    r = await client.put("/ingest", json={})
    assert r.status_code == 405 and r.json()["error"]["type"] == "method_not_allowed"


async def test_health_polls_are_logged_at_debug(client: httpx.AsyncClient, caplog) -> None:
    with caplog.at_level(logging.DEBUG, logger="memory_spine.http"):
        await client.get("/health")
        await client.get("/stats")
    levels = {r.path: r.levelno for r in caplog.records if getattr(r, "event", None) == "request"}  # type: ignore[attr-defined]
    assert levels == {"/health": logging.DEBUG, "/stats": logging.INFO}
