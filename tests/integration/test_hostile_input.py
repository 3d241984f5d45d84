"""Hostile input against a real `memory-spine serve`: a catalogue of bad requests, each answered with a 4xx whose
JSON body names the field, and none of them changing what is stored.

Bytes go over a real socket to uvicorn (httptools), so this also covers what in-process tests cannot: real
chunked bodies, bytes that are not UTF-8, a body nested past Python's recursion limit, garbage on the wire.
Unknown fields are rejected (422 naming the field), never ignored: a typo such as `tag` would otherwise
silently widen a filter or drop data.
"""

from __future__ import annotations

import json
import socket
from collections.abc import Iterator

import httpx
import pytest

from ..conftest import ServerProcess

pytestmark = pytest.mark.integration

BODY_CAP = 2_000_000
SEEDED = "seeded-1"


@pytest.fixture(scope="module")
def srv(tmp_path_factory) -> Iterator[ServerProcess]:
    server = ServerProcess(
        tmp_path_factory.mktemp("hostile") / "data",
        args=["--log-level", "warning"],
        env={"MEMORY_SPINE_MAX_BODY_BYTES": str(BODY_CAP)},
    ).start()
    r = httpx.post(
        server.url + "/ingest",
        json={"id": SEEDED, "content": "a record that bad input must leave alone", "tags": ["t"], "metadata": {"a": 1}},
    )
    r.raise_for_status()
    yield server
    server.stop()


@pytest.fixture
def http(srv) -> Iterator[httpx.Client]:
    with httpx.Client(base_url=srv.url, timeout=60) as c:
        yield c


def _state(http: httpx.Client) -> tuple[int, dict]:
    return http.get("/stats").json()["total_memories"], http.get(f"/memories/{SEEDED}").json()


def _raw(text: str) -> bytes:
    return text.encode("utf-8", "surrogatepass")


def _json(obj: object) -> bytes:
    # ensure_ascii keeps lone surrogates as \\udXXX escapes, which is how a hostile client sends them.
    return json.dumps(obj).encode()


DEEP = 100_000
CASES: list[tuple[str, str, str, bytes, int, str]] = [
    # (name, method, path, body, status, field)
    ("trailing comma", "POST", "/ingest", b'{"content": "x",}', 422, "body"),
    ("truncated json", "POST", "/ingest", b'{"content": "x"', 422, "body"),
    ("json array", "POST", "/ingest", b"[]", 422, "body"),
    ("json string", "POST", "/ingest", b'"content"', 422, "body"),
    ("json null", "POST", "/ingest", b"null", 422, "body"),
    ("empty body", "POST", "/ingest", b"", 422, "body"),
    ("not utf-8", "POST", "/ingest", b'{"content": "\xff\xfe\xfd"}', 422, "body"),
    (
        "nested past recursion",
        "POST",
        "/ingest",
        b'{"content": "x", "metadata": ' + b"[" * DEEP + b"]" * DEEP + b"}",
        422,
        "body",
    ),
    ("content number", "POST", "/ingest", _json({"content": 123}), 422, "content"),
    ("content null", "POST", "/ingest", _json({"content": None}), 422, "content"),
    ("content missing", "POST", "/ingest", _json({"tags": ["a"]}), 422, "content"),
    ("content empty", "POST", "/ingest", _json({"content": ""}), 422, "content"),
    ("content blank", "POST", "/ingest", _json({"content": " \n\t "}), 422, "content"),
    ("content too long", "POST", "/ingest", _json({"content": "x" * 100_001}), 422, "content"),
    ("tags string", "POST", "/ingest", _json({"content": "x", "tags": "a"}), 422, "tags"),
    ("tag number", "POST", "/ingest", _json({"content": "x", "tags": [1]}), 422, "tags[0]"),
    ("too many tags", "POST", "/ingest", _json({"content": "x", "tags": [f"t{i}" for i in range(65)]}), 422, "tags"),
    ("tag too long", "POST", "/ingest", _json({"content": "x", "tags": ["t" * 129]}), 422, "tags[0]"),
    ("metadata list", "POST", "/ingest", _json({"content": "x", "metadata": [1]}), 422, "metadata"),
    ("metadata string", "POST", "/ingest", _json({"content": "x", "metadata": "a=1"}), 422, "metadata"),
    ("importance unknown", "POST", "/ingest", _json({"content": "x", "importance": "urgent"}), 422, "importance"),
    ("ttl string", "POST", "/ingest", _json({"content": "x", "ttl_seconds": "soon"}), 422, "ttl_seconds"),
    ("ttl negative", "POST", "/ingest", _json({"content": "x", "ttl_seconds": -5}), 422, "ttl_seconds"),
    ("ttl beyond 9999", "POST", "/ingest", _json({"content": "x", "ttl_seconds": 1e300}), 422, "ttl_seconds"),
    ("expires garbage", "POST", "/ingest", _json({"content": "x", "expires_at": "tomorrow"}), 422, "expires_at"),
    ("expires beyond 9999", "POST", "/ingest", _json({"content": "x", "expires_at": 1e300}), 422, "expires_at"),
    ("id number", "POST", "/ingest", _json({"content": "x", "id": 5}), 422, "id"),
    ("id too long", "POST", "/ingest", _json({"content": "x", "id": "i" * 257}), 422, "id"),
    ("key list", "POST", "/ingest", _json({"content": "x", "key": []}), 422, "key"),
    ("key too long", "POST", "/ingest", _json({"content": "x", "key": "k" * 513}), 422, "key"),
    ("NUL in content", "POST", "/ingest", _json({"content": "a\x00b"}), 422, "content"),
    ("NUL in tag", "POST", "/ingest", _json({"content": "x", "tags": ["a\x00"]}), 422, "tags[0]"),
    ("NUL in id", "POST", "/ingest", _json({"content": "x", "id": "a\x00b"}), 422, "id"),
    ("NUL in key", "POST", "/ingest", _json({"content": "x", "key": "k\x00"}), 422, "key"),
    ("NUL in metadata value", "POST", "/ingest", _json({"content": "x", "metadata": {"a": "\x00"}}), 422, "metadata"),
    ("NUL in metadata key", "POST", "/ingest", _json({"content": "x", "metadata": {"\x00": 1}}), 422, "metadata"),
    ("surrogate in content", "POST", "/ingest", _json({"content": "a\ud800b"}), 422, "content"),
    ("surrogate in tag", "POST", "/ingest", _json({"content": "x", "tags": ["\udfff"]}), 422, "tags[0]"),
    ("surrogate in id", "POST", "/ingest", _json({"content": "x", "id": "\ud834"}), 422, "id"),
    ("surrogate in key", "POST", "/ingest", _json({"content": "x", "key": "k\udc00"}), 422, "key"),
    (
        "surrogate in metadata",
        "POST",
        "/ingest",
        _json({"content": "x", "metadata": {"a": ["\ud800"]}}),
        422,
        "metadata",
    ),
    ("surrogate metadata key", "POST", "/ingest", _json({"content": "x", "metadata": {"\ud800": 1}}), 422, "metadata"),
    (
        "metadata 17 deep",
        "POST",
        "/ingest",
        b'{"content": "x", "metadata": ' + b'{"a":' * 17 + b"1" + b"}" * 17 + b"}",
        422,
        "metadata",
    ),
    ("metadata NaN", "POST", "/ingest", b'{"content": "x", "metadata": {"a": NaN}}', 422, "metadata"),
    ("metadata Infinity", "POST", "/ingest", b'{"content": "x", "metadata": {"a": -Infinity}}', 422, "metadata"),
    (
        "metadata 2**70",
        "POST",
        "/ingest",
        b'{"content": "x", "metadata": {"n": 1180591620717411303424}}',
        422,
        "metadata.n",
    ),
    ("metadata 70 KB", "POST", "/ingest", _json({"content": "x", "metadata": {"a": "m" * 70_000}}), 422, "metadata"),
    ("unknown field", "POST", "/ingest", _json({"content": "x", "tag": ["a"]}), 422, "tag"),
    ("batch empty", "POST", "/ingest/batch", _json({"records": []}), 422, "records"),
    ("batch 1001", "POST", "/ingest/batch", _json({"records": [{"content": "r"}] * 1001}), 422, "records"),
    (
        "batch one bad",
        "POST",
        "/ingest/batch",
        _json({"records": [{"content": "ok"}, {"content": "ok"}, {"content": ""}]}),
        422,
        "records[2].content",
    ),
    (
        "batch repeats an id",
        "POST",
        "/ingest/batch",
        _json({"records": [{"content": "a", "id": "d"}, {"content": "b", "id": "d"}]}),
        422,
        "records[1].id",
    ),
    (
        "batch unknown field",
        "POST",
        "/ingest/batch",
        _json({"records": [{"content": "a", "foo": 1}]}),
        422,
        "records[0].foo",
    ),
    (
        "batch unknown top",
        "POST",
        "/ingest/batch",
        _json({"records": [{"content": "a"}], "atomic": False}),
        422,
        "atomic",
    ),
    ("search limit 0", "POST", "/search", _json({"query": "x", "limit": 0}), 422, "limit"),
    ("search limit 10^9", "POST", "/search", _json({"query": "x", "limit": 10**9}), 422, "limit"),
    ("search limit 10^30", "POST", "/search", _json({"query": "x", "limit": 10**30}), 422, "limit"),
    ("search limit string", "POST", "/search", _json({"query": "x", "limit": "ten"}), 422, "limit"),
    ("search limit float", "POST", "/search", _json({"query": "x", "limit": 2.5}), 422, "limit"),
    ("search unknown field", "POST", "/search", _json({"query": "x", "tag": ["a"]}), 422, "tag"),
    ("search empty", "POST", "/search", _json({"query": "  "}), 422, "query"),
    ("search NUL", "POST", "/search", _json({"query": "a\x00"}), 422, "query"),
    ("search surrogate", "POST", "/search", _json({"query": "a\ud800"}), 422, "query"),
    ("search mode", "POST", "/search", _json({"query": "x", "mode": "psychic"}), 422, "mode"),
    (
        "where operator",
        "POST",
        "/search",
        _json({"query": "x", "where": {"a": {"$regex": ".*"}}}),
        422,
        "where.a.$regex",
    ),
    ("where 2**64", "POST", "/search", _json({"query": "x", "where": {"a": 2**64}}), 422, "where.a"),
    ("where surrogate", "POST", "/search", _json({"query": "x", "where": {"a": "\ud800"}}), 422, "where.a"),
    ("tags_none surrogate", "POST", "/search", _json({"query": "x", "tags_none": ["\ud800"]}), 422, "tags_none[0]"),
    ("delete everything", "DELETE", "/memories", _json({}), 422, "filter"),
    ("delete unknown field", "DELETE", "/memories", _json({"tag": ["t"]}), 422, "tag"),
    ("patch unknown field", "PATCH", f"/memories/{SEEDED}", _json({"tagz": ["b"]}), 422, "tagz"),
    ("patch empty content", "PATCH", f"/memories/{SEEDED}", _json({"content": ""}), 422, "content"),
    ("patch NUL tag", "PATCH", f"/memories/{SEEDED}", _json({"tags": ["\x00"]}), 422, "tags[0]"),
    (
        "patch metadata 2**64",
        "PATCH",
        f"/memories/{SEEDED}",
        b'{"metadata": {"b": {"c": 18446744073709551616}}}',
        422,
        "metadata.b.c",
    ),
    ("patch surrogate metadata", "PATCH", f"/memories/{SEEDED}", _json({"metadata": {"a": "\udbff"}}), 422, "metadata"),
    ("patch not utf-8", "PATCH", f"/memories/{SEEDED}", b'{"content": "\xc3\x28"}', 422, "body"),
    ("claim lease 0", "POST", "/claims", _json({"key": "k", "lease_seconds": 0}), 422, "lease_seconds"),
    ("claim lease NaN", "POST", "/claims", b'{"key": "k", "lease_seconds": NaN}', 422, "lease_seconds"),
    ("claim NUL key", "POST", "/claims", _json({"key": "k\x00"}), 422, "key"),
    ("claim unknown field", "POST", "/claims", _json({"key": "k", "ttl": 5}), 422, "ttl"),
]
QUERY_CASES: list[tuple[str, str, dict, str]] = [
    ("list limit 0", "/memories", {"limit": 0}, "limit"),
    ("list limit 10^9", "/memories", {"limit": 10**9}, "limit"),
    ("list limit word", "/memories", {"limit": "many"}, "limit"),
    ("list cursor", "/memories", {"cursor": "not-a-cursor"}, "cursor"),
    ("list order", "/memories", {"order": "sideways"}, "order"),
    ("list NUL tag", "/memories", {"tags": "a\x00"}, "tags[0]"),
    ("keys limit 0", "/keys", {"prefix": "a", "limit": 0}, "limit"),
    ("keys limit 10^9", "/keys", {"prefix": "a", "limit": 10**9}, "limit"),
    ("keys no prefix", "/keys", {}, "prefix"),
]


@pytest.mark.parametrize(("name", "method", "path", "body", "status", "field"), CASES, ids=[c[0] for c in CASES])
def test_bad_body_is_a_4xx_naming_the_field_and_changes_nothing(http, name, method, path, body, status, field):
    before = _state(http)
    r = http.request(method, path, content=body, headers={"content-type": "application/json"})
    assert r.status_code == status, (r.status_code, r.text[:500])
    err = r.json()["error"]
    assert err["field"] == field, err
    assert err["message"] and err["type"] in ("invalid_input", "payload_too_large")
    assert _state(http) == before


@pytest.mark.parametrize(("name", "path", "params", "field"), QUERY_CASES, ids=[c[0] for c in QUERY_CASES])
def test_bad_query_parameter_is_a_422_naming_it(http, name, path, params, field):
    r = http.get(path, params=params)
    assert r.status_code == 422, r.text[:500]
    assert r.json()["error"]["field"] == field


def test_bodies_over_the_cap_are_413_with_or_without_a_length(http):
    before = _state(http)
    big = _json({"content": "x" * (BODY_CAP + 10)})
    r = http.post("/ingest", content=big, headers={"content-type": "application/json"})
    assert r.status_code == 413 and r.json()["error"]["field"] == "body"

    def chunks() -> Iterator[bytes]:  # no Content-Length: the cap must hold while the body streams in
        yield b'{"content": "'
        for _ in range(BODY_CAP // 65536 + 2):
            yield b"x" * 65536
        yield b'"}'

    r = http.post("/ingest", content=chunks(), headers={"content-type": "application/json"})
    assert r.status_code == 413 and r.json()["error"]["field"] == "body"
    assert _state(http) == before


def test_patch_of_an_unknown_or_odd_id_is_a_404(http):
    before = _state(http)
    for rid in ("no-such-id", "%ED%A0%80", "x" * 2000):
        r = http.patch(f"/memories/{rid}", json={"tags": ["b"]})
        assert r.status_code == 404, (rid, r.text)
        assert http.delete(f"/memories/{rid}").status_code == 404
    # No id can hold a NUL (ingest refuses it, and PostgreSQL text cannot): a 422 naming the id, on both backends.
    for method in ("GET", "PATCH", "DELETE"):
        r = http.request(method, "/memories/a%00b", json={"tags": ["b"]} if method == "PATCH" else None)
        assert r.status_code == 422 and r.json()["error"]["field"] == "id", (method, r.text)
    assert _state(http) == before


def test_ids_with_a_slash_are_reachable(http):
    r = http.post("/ingest", json={"id": "team/a/1", "content": "an id with slashes"})
    assert r.status_code == 200
    assert http.get("/memories/team/a/1").json()["content"] == "an id with slashes"
    assert http.patch("/memories/team/a/1", json={"tags": ["s"]}).json()["tags"] == ["s"]
    assert http.delete("/memories/team%2Fa%2F1").json() == {"deleted": 1}
    assert http.get("/memories/team/a/1").status_code == 404


def test_garbage_on_the_wire_does_not_hurt_the_server(srv, http):
    before = _state(http)
    for garbage in (b"GARBAGE\r\n\r\n", b"POST /ingest HTTP/1.1\r\nContent-Length: -1\r\n\r\n", b"\x00" * 64):
        with socket.create_connection(("127.0.0.1", srv.port), timeout=10) as s:
            s.sendall(garbage)
            try:
                answer = s.recv(4096)
            except (ConnectionResetError, TimeoutError):
                answer = b""
        assert not answer or answer.startswith(b"HTTP/1.1 4"), answer[:200]
    assert http.get("/health").status_code == 200
    assert _state(http) == before
