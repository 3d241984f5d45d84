"""Scoped tokens, in process: hashing (the database never holds a token), expiry and revocation under an injected
clock, the bounded cache, `Scope.check`'s 403s, the route-rights table walked against the app's routes (a route
without a class fails here) and enforced on every route, `/tokens` without escalation, and the `token` CLI."""

from __future__ import annotations

import re

import httpx
import pytest

from memory_spine import cli
from memory_spine.api import create_app
from memory_spine.api.app import _route_table
from memory_spine.api.auth import is_open
from memory_spine.api.rights import ROUTE_RIGHTS, right_of
from memory_spine.config import Settings
from memory_spine.errors import Forbidden, InvalidInput, Unauthorized
from memory_spine.service import MemoryService
from memory_spine.storage.sqlite import DB_FILE
from memory_spine.storage.tokens import SQLiteTokenStore
from memory_spine.tokens import (
    RIGHTS,
    ForbiddenNamespace,
    ForbiddenRight,
    Scope,
    TokenResolver,
    hash_token,
    make_row,
    new_token,
    parse_duration,
    parse_rights,
    parse_scope_namespace,
)

ADMIN = "admin-token-value"


class Clock:
    def __init__(self, now: float = 1_000_000.0) -> None:
        self.now = now

    def __call__(self) -> float:
        return self.now


@pytest.fixture
def svc(tmp_path):
    s = MemoryService.open(
        Settings(data_dir=tmp_path / "d", embedder="fake", token=ADMIN, purge_seconds=3600, index_save_seconds=3600)
    )
    yield s
    s.close()


@pytest.fixture
async def http(svc):
    app = create_app(svc)
    async with httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url="http://ms") as c:
        c.app = app
        yield c


def bearer(token: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {token}"}


async def make_token(http, namespaces, rights, **kw) -> str:
    r = await http.post("/tokens", json={"namespaces": namespaces, "rights": rights, **kw}, headers=bearer(ADMIN))
    assert r.status_code == 201, r.text
    return r.json()["token"]


# -- hashing ----------------------------------------------------------------------------------------------------


def test_tokens_are_random_and_stored_only_as_their_sha256(tmp_path, svc):
    ids, tokens = zip(*(new_token() for _ in range(50)), strict=True)
    assert len(set(tokens)) == 50 and len(set(ids)) == 50
    assert all(re.fullmatch(r"mst_[A-Za-z0-9_-]{43}", t) for t in tokens)  # 32 random bytes
    token = tokens[0]
    assert re.fullmatch(r"[0-9a-f]{64}", hash_token(token)) and hash_token(token) != hash_token(tokens[1])
    store = SQLiteTokenStore(svc.storage.path)
    row, token = make_row(["team/"], ["read"], name="ci")
    store.create(row, hash_token(token))
    assert store.by_hash(hash_token(token))["id"] == row["id"]
    assert store.by_hash(hash_token(token + "x")) is None
    store.close()
    svc.storage._writer.execute("PRAGMA wal_checkpoint(TRUNCATE)")
    raw = b"".join(p.read_bytes() for p in (tmp_path / "d").glob(DB_FILE + "*"))
    assert hash_token(token).encode() in raw
    assert token.encode() not in raw and token[4:20].encode() not in raw


def test_parsers_name_the_field():
    assert parse_duration("30d") == 30 * 86400 and parse_duration("90m") == 5400 and parse_duration(3600) == 3600
    assert parse_duration("2w") == 14 * 86400 and parse_duration("45") == 45
    for bad in ("3x", "", "-1d", "0", "1000000d"):
        with pytest.raises(InvalidInput) as e:
            parse_duration(bad, "--expires")
        assert e.value.field == "--expires"
    assert parse_rights(["write", "read", "read"]) == ("read", "write")
    for bad in (["fly"], [], [""]):
        with pytest.raises(InvalidInput):
            parse_rights(bad)
    assert parse_scope_namespace("team/") == "team/" and parse_scope_namespace("a.b:c/d_e-f") == "a.b:c/d_e-f"
    for bad in ("", "/", "a//b", "a/../b", ".", "a/\x00", "x" * 65, "a b", "//", "a" + "/b" * 200):
        with pytest.raises(InvalidInput):
            parse_scope_namespace(bad)
    with pytest.raises(InvalidInput):
        make_row([], ["read"])


# -- scopes -----------------------------------------------------------------------------------------------------


def test_scope_covers_exact_names_subtrees_and_their_kit_namespaces():
    s = Scope(namespaces=("team/", "solo"), rights=frozenset({"read"}))
    for ns in ("team", "team/a", "team/a/b", "solo", "_kit/team/a", "_kit/solo", "team/", "team/a/"):
        assert s.covers(ns), ns
    for ns in ("teamx", "tea", "solo/x", "other", "_kit/other", "_kit", "default", "", "te/", "solo/"):
        assert not s.covers(ns), ns
    assert Scope.FULL.covers("anything") and Scope.FULL.is_full and not s.is_full
    assert s.within(["team/x/"], ["read"]) and not s.within(["team/"], ["write"]) and not s.within(["x"], ["read"])


def test_check_raises_403s_that_name_the_namespace_or_the_right():
    s = Scope(namespaces=("a",), rights=frozenset({"read"}))
    s.check("a", "read")
    s.check(["a", "_kit/a"], "any")
    with pytest.raises(ForbiddenNamespace) as e:
        s.check(["a", "b"], "read")
    assert isinstance(e.value, Forbidden) and e.value.detail == {"namespace": "b"} and "'b'" in e.value.message
    assert e.value.type == "forbidden_namespace" and e.value.field == "namespace"
    with pytest.raises(ForbiddenRight) as e:
        s.check("a", "write")
    assert e.value.type == "forbidden_right" and e.value.detail == {"right": "write"}


# -- resolving: expiry, revocation, the cache -------------------------------------------------------------------


class MemoryStore:
    def __init__(self) -> None:
        self.rows: dict[str, dict] = {}
        self.reads = 0

    def create(self, row, token_hash):
        self.rows[token_hash] = dict(row)

    def by_hash(self, token_hash):
        self.reads += 1
        row = self.rows.get(token_hash)
        return dict(row) if row else None

    def list(self):
        return list(self.rows.values())

    def revoke(self, token_id, now):
        for row in self.rows.values():
            if row["id"] == token_id and row["revoked_at"] is None:
                row["revoked_at"] = now

    def touch(self, token_id, now):
        for row in self.rows.values():
            if row["id"] == token_id:
                row["last_used_at"] = now


def test_expiry_is_checked_on_every_use_against_the_clock():
    clock, store = Clock(), MemoryStore()
    resolver = TokenResolver(store, ttl=3600, clock=clock)
    row, token = make_row(["a"], ["read"], expires_in=60, now=clock.now)
    store.create(row, hash_token(token))
    assert resolver.resolve(token).namespaces == ("a",)
    clock.now += 59.9
    assert resolver.resolve(token).rights == {"read"}
    clock.now += 0.1
    with pytest.raises(Unauthorized, match="expired"):
        resolver.resolve(token)  # from the cache: expiry needs no database read
    assert store.reads == 1
    with pytest.raises(Unauthorized, match="missing or wrong"):
        resolver.resolve("mst_unknown")


def test_a_revocation_elsewhere_is_seen_within_the_ttl_and_here_at_once():
    clock, store = Clock(), MemoryStore()
    resolver = TokenResolver(store, ttl=5, clock=clock)
    row, token = make_row(["a"], ["read", "write"], now=clock.now)
    store.create(row, hash_token(token))
    resolver.resolve(token)
    assert store.rows[hash_token(token)]["last_used_at"] == clock.now
    store.revoke(row["id"], clock.now)  # another process (the CLI, a replica)
    clock.now += 4.9
    resolver.resolve(token)  # still cached: within the documented window
    clock.now += 0.1
    with pytest.raises(Unauthorized, match="revoked"):
        resolver.resolve(token)
    row2, token2 = make_row(["a"], ["read"], now=clock.now)
    store.create(row2, hash_token(token2))
    resolver.resolve(token2)
    store.revoke(row2["id"], clock.now)
    resolver.forget(row2["id"])  # this process revoked it (DELETE /tokens/{id})
    with pytest.raises(Unauthorized, match="revoked"):
        resolver.resolve(token2)


def test_the_cache_is_bounded():
    clock, store = Clock(), MemoryStore()
    resolver = TokenResolver(store, ttl=3600, size=8, clock=clock)
    tokens = []
    for _ in range(20):
        row, token = make_row(["a"], ["read"], now=clock.now)
        store.create(row, hash_token(token))
        tokens.append(token)
        resolver.resolve(token)
    assert len(resolver._cache) == 8
    reads = store.reads
    resolver.resolve(tokens[-1])
    assert store.reads == reads  # a hit
    resolver.resolve(tokens[0])
    assert store.reads == reads + 1  # evicted: read again


# -- the route-rights table ------------------------------------------------------------------------------------


def routes(app) -> list[tuple[str, str]]:
    out = []
    for route in _route_table(app.router.routes):
        for method in sorted(getattr(route, "methods", None) or {"*"}):
            out.append((method, route.path_format))
    return out


def test_every_route_has_exactly_one_class_and_open_means_open(svc):
    app = create_app(svc)
    table = routes(app)
    missing = [r for r in table if r not in ROUTE_RIGHTS]
    assert not missing, f"routes without a right in api/rights.py ROUTE_RIGHTS: {missing}"
    stale = [r for r in ROUTE_RIGHTS if r not in table]
    assert not stale, f"ROUTE_RIGHTS names routes the app does not have: {stale}"
    assert {ROUTE_RIGHTS[r] for r in table} <= {"open", "any", *RIGHTS}
    for method, path in table:
        concrete = re.sub(r"\{[^}]+\}", "x", path)
        assert is_open(concrete) == (ROUTE_RIGHTS[(method, path)] == "open"), (method, path)
    assert right_of("DELETE", "/memories") == "admin" and right_of("GET", "/not-a-route") == "admin"
    assert right_of("DELETE", "/memories/{id}") == "write" and right_of("POST", "/search") == "read"


async def test_every_route_refuses_a_token_without_its_right_and_admits_one_with_it(http):
    checked = 0
    for method, path in routes(http.app):
        right = ROUTE_RIGHTS[(method, path)]
        if right == "open" or method in ("*", "HEAD"):
            continue
        url = re.sub(r"\{[^}]+\}", "x", path)
        body = {} if method in ("POST", "PATCH", "DELETE") else None
        others = [r for r in RIGHTS if r != right] or ["read"]
        lacking = await make_token(http, ["x/"], others)
        r = await http.request(method, url, json=body, headers=bearer(lacking))
        if right == "any":
            assert r.status_code != 403, (method, path, r.text)
        else:
            assert r.status_code == 403, (method, path, r.status_code, r.text)
            assert r.json()["error"] == {
                "type": "forbidden_right",
                "message": f"this needs the {right!r} right; the token has {', '.join(others)}",
                "field": "rights",
                "right": right,
            }
            holding = await make_token(http, ["x/"], [right])
            r = await http.request(method, url, json=body, headers=bearer(holding))
            assert r.status_code != 403 or r.json()["error"]["type"] != "forbidden_right", (method, path, r.text)
        checked += 1
    assert checked >= 25


async def test_metrics_answer_for_every_namespace_so_only_the_admin_token_reaches_them(http):
    scoped_admin = await make_token(http, ["x/"], ["read", "write", "admin"])
    r = await http.get("/metrics", headers=bearer(scoped_admin))
    assert r.status_code == 403 and r.json()["error"]["type"] == "forbidden_namespace"
    assert r.json()["error"]["namespace"] == "*" and "only the admin token" in r.json()["error"]["message"]
    assert (await http.get("/metrics", headers=bearer(ADMIN))).status_code == 200


async def test_unknown_revoked_and_expired_tokens_are_401(http, svc):
    for token in ("mst_" + "A" * 43, "nonsense", "mst_"):
        r = await http.post("/search", json={"query": "q"}, headers=bearer(token))
        assert r.status_code == 401 and r.headers["www-authenticate"] == "Bearer"
    token = await make_token(http, ["a"], ["read"])
    assert (await http.get("/whoami", headers=bearer(token))).json()["rights"] == ["read"]
    listed = (await http.get("/tokens", headers=bearer(ADMIN))).json()["tokens"]
    assert token not in str(listed)
    r = await http.delete(f"/tokens/{listed[0]['id']}", headers=bearer(ADMIN))
    assert r.status_code == 200 and r.json()["status"] == "revoked"
    r = await http.get("/whoami", headers=bearer(token))
    assert r.status_code == 401 and r.json()["error"]["message"] == "this token was revoked"
    assert (await http.delete("/tokens/nope", headers=bearer(ADMIN))).status_code == 404
    expiring = await make_token(http, ["a"], ["read"], expires=0.2)
    assert (await http.get("/whoami", headers=bearer(expiring))).status_code == 200
    import asyncio

    await asyncio.sleep(0.25)
    r = await http.get("/whoami", headers=bearer(expiring))
    assert r.status_code == 401 and "expired" in r.json()["error"]["message"]
    assert (await http.get("/whoami", headers=bearer(ADMIN))).json()["admin_token"] is True


async def test_a_scoped_admin_manages_only_its_own_scope_and_grants_no_more(http):
    team_admin = await make_token(http, ["team/"], ["read", "admin"])
    await make_token(http, ["other"], ["read"])
    h = bearer(team_admin)
    r = await http.post("/tokens", json={"namespaces": ["other"], "rights": ["read"]}, headers=h)
    assert r.status_code == 403 and r.json()["error"]["namespace"] == "other"
    r = await http.post("/tokens", json={"namespaces": ["team/a"], "rights": ["write"]}, headers=h)
    assert r.status_code == 403 and r.json()["error"]["right"] == "write"
    r = await http.post("/tokens", json={"namespaces": ["team/a"], "rights": ["read"]}, headers=h)
    assert r.status_code == 201
    seen = {tuple(t["namespaces"]) for t in (await http.get("/tokens", headers=h)).json()["tokens"]}
    assert seen == {("team/",), ("team/a",)}
    everyone = (await http.get("/tokens", headers=bearer(ADMIN))).json()["tokens"]
    other = next(t for t in everyone if t["namespaces"] == ["other"])
    assert (await http.delete(f"/tokens/{other['id']}", headers=h)).status_code == 404
    for bad in (
        {"namespaces": []},
        {"namespaces": ["a/../b"]},
        {"namespaces": ["a"], "rights": ["fly"]},
        {"namespaces": ["a"], "expires": "soon"},
        {"namespaces": ["a"], "extra": 1},
    ):
        r = await http.post("/tokens", json=bad, headers=bearer(ADMIN))
        assert r.status_code == 422, (bad, r.text)


# -- the CLI ------------------------------------------------------------------------------------------------------


def test_cli_creates_lists_and_revokes(svc, tmp_path, capsys):
    data = str(tmp_path / "d")
    code = cli.main(
        [
            "token",
            "create",
            "--data-dir",
            data,
            "--namespace",
            "team/",
            "--read-only",
            "--expires",
            "30d",
            "--name",
            "ci",
        ]
    )
    out, err = capsys.readouterr()
    assert code == 0 and re.fullmatch(r"mst_\S{43}\n", out) and "shown only this once" in err
    token = out.strip()
    resolver = TokenResolver(SQLiteTokenStore(svc.storage.path), ttl=0)
    scope = resolver.resolve(token)
    assert scope.namespaces == ("team/",) and scope.rights == {"read"} and scope.name == "ci"
    assert cli.main(["token", "list", "--data-dir", data]) == 0
    out, _ = capsys.readouterr()
    assert token not in out and '"status": "active"' in out and scope.token_id in out
    assert cli.main(["token", "revoke", "--data-dir", data, scope.token_id]) == 0
    capsys.readouterr()
    with pytest.raises(Unauthorized, match="revoked"):
        resolver.resolve(token)
    assert cli.main(["token", "revoke", "--data-dir", data, "nope"]) == 2
    assert cli.main(["token", "create", "--data-dir", data, "--namespace", "a", "--rights", "read,admin"]) == 0
    assert cli.main(["token", "create", "--data-dir", data]) == 2
    assert cli.main(["token", "create", "--data-dir", data, "--namespace", "a/../b"]) == 2
    assert cli.main(["token", "create", "--data-dir", data, "--namespace", "a", "--expires", "3x"]) == 2
    assert cli.main(["token", "list", "--data-dir", str(tmp_path / "missing")]) == 2
    _, err = capsys.readouterr()
    assert "missing" in err and not (tmp_path / "missing").exists()


# -- MCP ----------------------------------------------------------------------------------------------------------


async def test_mcp_tools_carry_the_scope_of_their_token(http):
    from mcp import Client

    from memory_spine.mcp_server import build_server
    from workflow_kit import MemoryClient

    token = await make_token(http, ["default"], ["read"])
    transport = httpx.ASGITransport(app=http.app)
    server = build_server(lambda: MemoryClient("http://ms", token=token, transport=transport, retries=0))
    async with Client(server) as mcp:
        stored = await mcp.call_tool("memory_store", {"content": "a read-only token cannot store"})
        assert stored.is_error and "HTTP 403: this needs the 'write' right" in stored.content[0].text
        stats = await mcp.call_tool("memory_stats", {})
        assert not stats.is_error, stats.content[0].text


def test_mcp_http_token_is_the_service_bearer_without_a_token(monkeypatch):
    import argparse

    from memory_spine.mcp_server import _share_tokens

    monkeypatch.delenv("MEMORY_SPINE_TOKEN", raising=False)
    monkeypatch.delenv("MEMORY_SPINE_MCP_TOKEN", raising=False)
    args = argparse.Namespace(token=None, http_token="mst_scoped")
    assert _share_tokens(args) == "mst_scoped" and args.token == "mst_scoped"
    args = argparse.Namespace(token="service", http_token="clients")
    assert _share_tokens(args) == "clients" and args.token == "service"
    args = argparse.Namespace(token="service", http_token=None)
    assert _share_tokens(args) == "service" and args.token == "service"
