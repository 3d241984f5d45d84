"""No route leaks across namespaces (issue 18), on both backends: with records, keys and claims in `alpha-team`
and in `bravo-team` (and their kit namespaces), a token scoped to `alpha-team/` with every right walks the app's
whole route table, each route with each way of naming a namespace (none, `?namespace=`, the header, the body,
body against query, a list, a subtree, the kit's namespace, a malformed one) and each path value (an id and a
key both namespaces hold, one only bravo holds). No answer may carry anything of bravo's (its words, tags, ids,
namespace names), every refusal is a 403/4xx naming why, and bravo's records and claims are unchanged after the
walk. The walk also proves the token reaches alpha, so a test that refused everything could not pass.

New routes are walked without being listed here (their bodies default to `{}` plus the namespace); the number of
routes walked is printed (`-s`) and checked against the app's table.
"""

from __future__ import annotations

import itertools
import re
from typing import Any

import httpx
import pytest
from pydantic import SecretStr

from memory_spine.api import create_app
from memory_spine.api.app import _route_table
from memory_spine.api.rights import ROUTE_RIGHTS
from memory_spine.embedders import FakeEmbedder
from memory_spine.service import MemoryService

from .conftest import DIM

ADMIN = "leak-admin"
A, B = "alpha-team", "bravo-team"
SPACES = {A: "alpha", f"{A}/sub": "alpha", B: "bravo", f"{B}/sub": "bravo", f"_kit/{A}": "alpha", f"_kit/{B}": "bravo"}
PATH_VALUES = ["same", "only-bravo", "k/same", "job"]
# Ways to name a namespace: (query, header, body namespace)
WAYS: list[tuple[str | None, str | None, Any]] = [
    (None, None, None),
    (B, None, None),
    (None, B, None),
    (None, None, B),
    (A, None, B),
    (None, A, B),
    (B, A, None),
    (None, None, [A, B]),
    (None, None, f"{B}/"),
    (None, None, "bravo-team/sub"),
    (f"_kit/{B}", None, None),
    (None, None, f"_kit/{B}"),
    (None, None, f"{A}/../{B}"),
    (A, None, None),
]
BODIES: dict[tuple[str, str], list[dict[str, Any]]] = {
    ("POST", "/ingest"): [{"content": "probe", "id": "same", "key": "k/same"}],
    ("POST", "/ingest/batch"): [
        {"records": [{"content": "probe", "id": "same"}]},
        {"records": [{"content": "probe", "id": "same", "namespace": B}]},
    ],
    ("POST", "/search"): [
        {"query": "bravoword same", "limit": 100},
        {"query": "bravoword", "mode": "keyword", "limit": 100},
        {"query": "x", "key": "k/same"},
        {"query": "x", "key_prefix": "k/"},
    ],
    ("DELETE", "/memories"): [{"tags": ["bravotag"]}, {"key_prefix": "k/"}, {"tags": ["bravotag"], "dry_run": True}],
    ("PATCH", "/memories/{id}"): [{"content": "patched probe"}, {"tags": ["probe"]}],
    ("POST", "/claims"): [{"key": "job", "holder": "probe", "lease_seconds": 30}],
    ("POST", "/ui/api/memories"): [{"limit": 200}, {"tags": ["bravotag"]}],
    ("POST", "/memories/{id}/revert"): [{"version": 1}],
    ("POST", "/memories/{id}/restore"): [{}],
    ("POST", "/conversations"): [{"id": "same", "sessions": [{"turns": [{"speaker": "probe", "text": "probe"}]}]}],
    ("POST", "/tokens"): [{"namespaces": [B], "rights": ["read"]}, {"namespaces": [f"{A}/"], "rights": ["read"]}],
}


def _records(ns: str, who: str) -> list[dict[str, Any]]:
    words = f"{who}word"
    return [
        {"id": "same", "content": f"{words} same record", "key": "k/same", "tags": [f"{who}tag"], "namespace": ns},
        {
            "id": f"only-{who}",
            "content": f"{words} only",
            "tags": [f"{who}tag"],
            "metadata": {"o": who},
            "namespace": ns,
        },
        {"content": f"{words} third", "key": "k/other", "tags": [f"{who}tag", "shared"], "namespace": ns},
    ]


async def _snapshot(c: httpx.AsyncClient, ns: str) -> Any:
    h = {"Authorization": f"Bearer {ADMIN}"}
    page = (await c.get("/memories", params={"namespace": ns, "limit": 1000}, headers=h)).json()
    claim = await c.get("/claims/job", params={"namespace": ns}, headers=h)
    return (
        sorted((m["id"], m["updated_at"], m["content"], tuple(m["tags"]), str(m["metadata"])) for m in page["results"]),
        claim.json() if claim.status_code == 200 else claim.status_code,
    )


def _leaks(text: str) -> bool:
    return "bravo" in text.lower()


async def seed(c: httpx.AsyncClient) -> dict[str, Any]:
    """Records and a claim in every namespace of SPACES (as the admin); bravo's state, to compare after a walk."""
    admin = {"Authorization": f"Bearer {ADMIN}"}
    for ns, who in SPACES.items():
        for rec in _records(ns, who):
            r = await c.post("/ingest", json=rec, headers=admin)
            assert r.status_code == 200, r.text
        r = await c.post("/claims", json={"key": "job", "holder": f"{who}-holder", "namespace": ns}, headers=admin)
        assert r.status_code == 201, r.text
    return {ns: await _snapshot(c, ns) for ns in SPACES if SPACES[ns] == "bravo"}


def walkable(routes: list[Any]) -> list[tuple[str, str]]:
    """Every (method, template) of the route table a token is needed for (HEAD is GET's)."""
    return sorted(
        {
            (m, r.path_format)
            for r in routes
            for m in (getattr(r, "methods", None) or {"GET"})
            if ROUTE_RIGHTS.get((m, r.path_format)) != "open" and m != "HEAD"
        }
    )


async def walk(c: httpx.AsyncClient, routes: list[Any], before: dict[str, Any]) -> tuple[int, int, dict[int, int]]:
    """Make an alpha-scoped token with every right, prove it reaches alpha, walk every route every way, and check
    that nothing of bravo's came back or changed. Returns (routes walked, requests, statuses)."""
    admin = {"Authorization": f"Bearer {ADMIN}"}
    r = await c.post("/tokens", json={"namespaces": [f"{A}/"], "rights": ["read", "write", "admin"]}, headers=admin)
    token = {"Authorization": f"Bearer {r.json()['token']}"}
    # The token does reach alpha (else refusing everything would pass).
    r = await c.post("/search", json={"query": "alphaword", "namespace": A, "limit": 10}, headers=token)
    assert r.status_code == 200 and r.json()["results"], r.text
    assert (await c.get("/memories/only-alpha", params={"namespace": A}, headers=token)).status_code == 200

    requests = 0
    statuses: dict[int, int] = {}
    targets = walkable(routes)
    for method, template in targets:
        params = re.findall(r"\{([^}]+)\}", template)
        values = list(itertools.product(PATH_VALUES, repeat=len(params))) if params else [()]
        for value, (query, header, body_ns), body in itertools.product(
            values, WAYS, BODIES.get((method, template), [{}])
        ):
            url = template
            for p, v in zip(params, value, strict=True):
                url = url.replace("{" + p + "}", v)
            headers = dict(token)
            if header is not None:
                headers["X-Memory-Namespace"] = header
            payload = None
            if method in ("POST", "PATCH", "PUT", "DELETE"):
                payload = dict(body)
                if body_ns is not None:
                    payload["namespace"] = body_ns
            elif body_ns is not None:
                continue  # no body to name it in
            r = await c.request(
                method, url, params={"namespace": query} if query is not None else None, json=payload, headers=headers
            )
            requests += 1
            statuses[r.status_code] = statuses.get(r.status_code, 0) + 1
            where = (method, url, query, header, payload, r.status_code)
            assert r.status_code < 500, (where, r.text)
            if r.status_code < 400:
                assert not _leaks(r.text), (where, r.text[:500])
            elif r.status_code == 403:
                # a scope's refusal, or a claim released without its lease_token (the route's own 403)
                assert r.json()["error"]["type"] in ("forbidden_namespace", "forbidden_right", "forbidden"), where
    after = {ns: await _snapshot(c, ns) for ns in before}
    assert after == before, "a scoped token changed another namespace's records or claims"
    return len(targets), requests, statuses


async def test_a_scoped_token_reaches_nothing_outside_its_namespaces(settings, capsys):
    pytest.importorskip("memory_spine.namespaces")
    settings = settings.model_copy(update={"token": SecretStr(ADMIN)})
    svc = MemoryService.open(settings, embedder=FakeEmbedder(dim=DIM))
    try:
        app = create_app(svc)
        async with httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url="http://ms") as c:
            routes = _route_table(app.router.routes)
            walked, requests, statuses = await walk(c, routes, await seed(c))
        assert walked == len(walkable(routes)) >= 25
        with capsys.disabled():
            print(
                f"\nleak walk ({settings.database and 'postgres' or 'sqlite'}): {walked} routes, {requests} requests,"
                f" statuses {dict(sorted(statuses.items()))}"
            )
    finally:
        svc.close()
