"""Scoped tokens on both backends: the store (only hashes), the `token` CLI against `--data-dir` or `--database`,
and on PostgreSQL two replicas sharing one tokens table (a token made on one works on the other; a revocation
made on one is refused by the other within its cache's ttl)."""

from __future__ import annotations

import httpx
import pytest
from pydantic import SecretStr

from memory_spine import cli
from memory_spine.api import create_app
from memory_spine.embedders import FakeEmbedder
from memory_spine.service import MemoryService
from memory_spine.storage.tokens import token_store
from memory_spine.tokens import TokenResolver, hash_token, make_row

from .conftest import DIM


def test_the_store_keeps_hashes_and_revokes(service):
    store = token_store(service.storage)
    row, token = make_row(["team/", "x"], ["read", "write"], name="n", expires_in=60, now=1000.0)
    store.create(row, hash_token(token))
    got = store.by_hash(hash_token(token))
    assert got == {**row}
    assert store.by_hash(token) is None  # looked up by hash only
    store.touch(row["id"], 1001.5)
    assert store.by_hash(hash_token(token))["last_used_at"] == pytest.approx(1001.5)
    revoked = store.revoke(row["id"], 1002.0)
    assert revoked["revoked_at"] == pytest.approx(1002.0)
    assert store.revoke(row["id"], 1003.0)["revoked_at"] == pytest.approx(1002.0)  # the first revocation stays
    assert store.revoke("nope", 1003.0) is None
    assert [r["id"] for r in store.list()] == [row["id"]]
    store.close()


def test_cli_on_either_backend(service, settings, capsys):
    where = ["--database", settings.database] if settings.database else ["--data-dir", str(settings.data_dir)]
    assert (
        cli.main(["token", "create", *where, "--namespace", "team/", "--rights", "read,write", "--expires", "1h"]) == 0
    )
    token = capsys.readouterr().out.strip()
    resolver = TokenResolver(token_store(service.storage), ttl=0)
    scope = resolver.resolve(token)
    assert scope.namespaces == ("team/",) and scope.rights == {"read", "write"}
    assert cli.main(["token", "list", *where]) == 0
    assert token not in capsys.readouterr().out
    assert cli.main(["token", "revoke", *where, scope.token_id]) == 0
    with pytest.raises(Exception, match="revoked"):
        resolver.resolve(token)


async def test_replicas_share_tokens(backend, settings):
    if backend != "postgres":
        pytest.skip("one process owns an SQLite data dir: replicas are PostgreSQL's")
    settings = settings.model_copy(update={"token": SecretStr("admin"), "token_cache_seconds": 0.0})
    one = MemoryService.open(settings, embedder=FakeEmbedder(dim=DIM))
    two = MemoryService.open(settings, embedder=FakeEmbedder(dim=DIM))
    admin = {"Authorization": "Bearer admin"}
    try:
        apps = [create_app(one), create_app(two)]
        clients = [httpx.AsyncClient(transport=httpx.ASGITransport(app=a), base_url="http://ms") for a in apps]
        r = await clients[0].post("/tokens", json={"namespaces": ["a"], "rights": ["read"]}, headers=admin)
        token = r.json()["token"]
        h = {"Authorization": f"Bearer {token}"}
        assert (await clients[1].get("/whoami", headers=h)).json()["namespaces"] == ["a"]
        assert (await clients[1].delete(f"/tokens/{r.json()['id']}", headers=admin)).status_code == 200
        r = await clients[0].get("/whoami", headers=h)
        assert r.status_code == 401 and "revoked" in r.text
        for c in clients:
            await c.aclose()
    finally:
        one.close()
        two.close()
