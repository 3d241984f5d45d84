"""The console's server side: key groups (workflows from checkpoints), which paths are open, the JSON its pages
load, and the views (workflow status and steps, the waterfall, latency quantiles, rates)."""

from __future__ import annotations

import json
import math
import time

import httpx
import pytest
from pydantic import SecretStr

from memory_spine.api import create_app
from memory_spine.api.auth import is_open
from memory_spine.config import Settings
from memory_spine.errors import InvalidInput, NotFound
from memory_spine.models import MemoryIn
from memory_spine.service import MemoryService
from memory_spine.ui import views

TOKEN = "ui-unit-token"


def test_key_groups_lists_each_parent_once_by_its_newest_record(service):
    for wf in ("a", "b", "c"):
        for step in ("fetch", "post"):
            service.ingest(MemoryIn(content=f"checkpoint:{wf}:{step}"))
    service.ingest(MemoryIn(content="checkpoint:a:retry"))  # a is now the newest workflow
    service.ingest(MemoryIn(content="checkpoint:abc"))  # parent "checkpoint": not under "checkpoint:"
    service.ingest(MemoryIn(content="a note", key="checkpoint-like"))

    page = service.key_groups("checkpoint:", limit=2)
    assert page["total"] == 3
    assert [r["key"] for r in page["results"]] == ["checkpoint:a:retry", "checkpoint:c:post"]
    assert [r["key"] for r in service.key_groups("checkpoint:", limit=10, offset=2)["results"]] == ["checkpoint:b:post"]
    assert [r["key"] for r in service.key_groups("checkpoint:b")["results"]] == ["checkpoint:b:post"]
    assert "seq" not in page["results"][0]


def test_key_groups_skips_expired_records(service):
    service.ingest(MemoryIn(content="checkpoint:x:one"))
    service.ingest(MemoryIn(content="checkpoint:x:two", ttl_seconds=0.001))
    time.sleep(0.01)
    assert [r["key"] for r in service.key_groups("checkpoint:")["results"]] == ["checkpoint:x:one"]


@pytest.mark.parametrize(
    ("kw", "field"), [({"prefix": ""}, "prefix"), ({"limit": 0}, "limit"), ({"offset": -1}, "offset")]
)
def test_key_groups_refuses_bad_arguments(service, kw, field):
    args = {"prefix": "checkpoint:", **kw}
    with pytest.raises(InvalidInput) as err:
        service.key_groups(**args)
    assert err.value.field == field


# -- auth: which paths the console serves without a token ------------------------------------------------------


@pytest.mark.parametrize(
    ("path", "open_"),
    [
        ("/health", True),
        ("/ui", True),
        ("/ui/", True),
        ("/ui/memories/abc", True),
        ("/ui/static/console.js", True),
        ("/ui/api", False),
        ("/ui/api/overview", False),
        ("/ui/api/workflows/x", False),
        ("/uix", False),
        ("/memories", False),
        ("/UI/api/overview", False),
    ],
)
def test_only_the_console_shells_are_open(path, open_):
    assert is_open(path) is open_


@pytest.fixture
def secured_app(tmp_path):
    svc = MemoryService.open(Settings(data_dir=tmp_path / "d", embedder="fake", token=SecretStr(TOKEN)))
    yield create_app(svc)
    svc.close()


async def test_pages_need_no_token_and_hold_no_data_but_their_data_does(secured_app):
    async with httpx.AsyncClient(transport=httpx.ASGITransport(app=secured_app), base_url="http://ms") as c:
        auth = {"Authorization": f"Bearer {TOKEN}"}
        made = await c.post("/ingest", json={"content": "the secret plan"}, headers=auth)
        memory_id = made.json()["id"]
        for path in ["/ui", "/ui/login", "/ui/memories", f"/ui/memories/{memory_id}", "/ui/workflows", "/ui/traces"]:
            r = await c.get(path)
            assert r.status_code == 200, path
            assert r.headers["content-type"].startswith("text/html")
            assert "the secret plan" not in r.text
            assert "script-src 'self'" in r.headers["content-security-policy"]
            assert "frame-ancestors 'none'" in r.headers["content-security-policy"]
        assert (await c.get("/ui/static/console.js")).headers["content-type"].startswith("text/javascript")
        assert (await c.get("/ui/static/..%2F..%2Fapi%2Fapp.py")).status_code == 404  # files by name only
        assert (await c.get("/ui/static/nope.js")).status_code == 404
        for method, path in [
            ("GET", "/ui/api/overview"),
            ("GET", "/ui/api/workflows"),
            ("GET", "/ui/api/workflows/x"),
            ("GET", "/ui/api/traces"),
            ("GET", "/ui/api/traces/x"),
            ("POST", "/ui/api/memories"),
        ]:
            r = await c.request(method, path, json={} if method == "POST" else None)
            assert r.status_code == 401, path
            r = await c.request(method, path, json={} if method == "POST" else None, headers=auth)
            assert r.status_code in (200, 404), (path, r.status_code)
        listed = await c.post("/ui/api/memories", json={"where": {"missing": None}}, headers=auth)
        assert [m["id"] for m in listed.json()["results"]] == [memory_id]
        bad = await c.post("/ui/api/memories", json={"tag": ["x"]}, headers=auth)
        assert bad.status_code == 422 and bad.json()["error"]["field"] == "tag"


# -- views -----------------------------------------------------------------------------------------------------


def _span(span_id, parent, start, end, **kw):
    return {
        "span_id": span_id,
        "parent_id": parent,
        "name": span_id,
        "kind": kw.pop("kind", "agent"),
        "start": start,
        "end": end,
        "duration_ms": round((end - start) * 1000, 3),
        "status": kw.pop("status", "ok"),
        **kw,
    }


def test_waterfall_orders_spans_as_a_tree_with_depths_and_offsets():
    doc = {
        "trace_id": "t",
        "started_at": 100.0,
        "spans": [
            _span("c2", "root", 100.5, 100.9),
            _span("root", None, 100.0, 101.0, kind="workflow"),
            _span("c1", "root", 100.1, 100.4, status="error"),
            _span("g1", "c1", 100.2, 100.3),
            _span("lost", "dropped", 100.6, 100.7, kind="memory"),
        ],
    }
    w = views.waterfall(doc)
    assert [(s["span_id"], s["depth"]) for s in w["spans"]] == [
        ("root", 0),
        ("c1", 1),
        ("g1", 2),
        ("c2", 1),
        ("lost", 0),
    ]
    assert [s["offset_ms"] for s in w["spans"]] == [0.0, 100.0, 200.0, 500.0, 600.0]
    assert w["spans"][-1]["orphan"] is True and w["spans"][0]["orphan"] is False
    assert w["total_ms"] == 1000.0
    assert w["error_count"] == 1 and w["max_depth"] == 2
    assert "spans" not in {k for k in w if k != "spans"}


def test_quantile_interpolates_inside_the_bucket_like_prometheus():
    buckets = [(0.01, 50.0), (0.1, 90.0), (1.0, 100.0), (math.inf, 100.0)]
    assert views.quantile(0.5, buckets) == pytest.approx(0.01)
    assert views.quantile(0.7, buckets) == pytest.approx(0.01 + 0.09 * 0.5)
    assert views.quantile(0.95, buckets) == pytest.approx(0.1 + 0.9 * 0.5)
    assert views.quantile(0.5, [(0.1, 0.0), (math.inf, 0.0)]) is None
    assert views.quantile(0.99, [(0.1, 1.0), (math.inf, 10.0)]) == 0.1  # past the last finite bound


def test_rates_are_per_interval_between_samples():
    rates = views.Rates(started_at=1000.0, every=5.0)
    first = rates.sample(ingest=100, search=10, now=1010.0)
    assert first == [{"from": 1000.0, "to": 1010.0, "ingest": 10.0, "search": 1.0}]
    assert len(rates.sample(ingest=120, search=10, now=1012.0)) == 1  # too soon: no new sample
    second = rates.sample(ingest=150, search=40, now=1020.0)
    assert second[-1] == {"from": 1010.0, "to": 1020.0, "ingest": 5.0, "search": 3.0}


def _cp(status="running", step="b", updated="2026-01-01T00:00:02Z"):
    return {"metadata": {"status": status, "step": step}, "updated_at": updated}


def _trace(status, error=None, created="2026-01-01T00:00:05Z"):
    spans = [{"span_id": "r", "parent_id": None, "error": error}]
    return {"metadata": {"status": status}, "created_at": created, "content": json.dumps({"spans": spans})}


@pytest.mark.parametrize(
    ("latest", "escalations", "claim", "trace", "expected"),
    [
        (_cp("completed"), [], None, None, "completed"),
        (_cp(), [{"metadata": {"status": "open", "kind": "budget"}}], None, None, "paused"),
        (_cp(), [{"metadata": {"status": "resolved"}}], None, None, "stopped"),
        (_cp(), [], {"holder": "w1", "expires_at": "later"}, None, "running"),
        (_cp(), [], None, _trace("error", "RuntimeError: boom"), "failed"),
        (_cp(), [], None, _trace("error", "WorkflowStopped: SIGTERM"), "stopped"),
        (_cp(), [], None, _trace("error", "RuntimeError: boom", created="2026-01-01T00:00:01Z"), "stopped"),
        (None, [], None, _trace("error", "RuntimeError: boom"), "failed"),
        (_cp(), [], None, _trace("ok"), "stopped"),
    ],
)
def test_workflow_status(latest, escalations, claim, trace, expected):
    assert views.workflow_status(latest, escalations, claim, trace)[0] == expected


async def test_a_failing_workflow_page_shows_its_steps_events_and_attempts(app, service):
    from workflow_kit import Agent, CircuitBreaker, CircuitOpen, MemoryClient, constant, fallback, run_workflow

    async def down(_):
        raise ConnectionError("refused")

    dep = Agent("dep", down, breaker=CircuitBreaker("dep", failure_threshold=2))

    async def load(ctx):
        return {"rows": 3}

    async def transform(ctx):
        for _ in range(3):
            try:
                await dep(1)
            except (ConnectionError, CircuitOpen):
                pass
        return await fallback([dep, constant("cached", name="cache")], 1, name="dep")

    async def publish(ctx):
        raise RuntimeError("upload failed")

    async with MemoryClient("http://ms", transport=httpx.ASGITransport(app=app)) as client:
        for _ in range(2):
            with pytest.raises(RuntimeError):
                await run_workflow(client, "wf-1", [load, transform, publish], name="etl", lease_seconds=None)

    page = views.workflows(service)
    assert page["total"] == 1
    row = page["results"][0]
    assert (row["workflow_id"], row["workflow"], row["status"], row["last_step"]) == (
        "wf-1",
        "etl",
        "failed",
        "transform",
    )
    wf = views.workflow(service, "wf-1")
    assert [(s["name"], s["state"]) for s in wf["steps"]] == [
        ("load", "done"),
        ("transform", "done"),
        ("publish", "failed"),
    ]
    transform_events = [e["kind"] for e in wf["steps"][1]["events"]]
    assert transform_events.count("breaker") == 1 and "fallback" in transform_events
    errors = [e for e in wf["steps"][1]["events"] if e["kind"] == "error"]
    assert len(errors) == 4  # two refused connections and two open-circuit refusals, each shown once
    assert all("exception.stacktrace" not in e["attributes"] for e in errors)
    publish_step = wf["steps"][2]
    assert publish_step["retries"] == 1 and len(publish_step["attempts"]) == 2
    assert all(a["error"] == "RuntimeError: upload failed" for a in publish_step["attempts"])
    assert len(wf["runs"]) == 2 and wf["runs"][0]["steps"] == [{"name": "publish", "status": "error"}]
    assert wf["steps"][0]["output"] == {"rows": 3}
    with pytest.raises(NotFound):
        views.workflow(service, "nope")


@pytest.mark.parametrize(
    ("workflow_id", "shell"),
    [("nightly-0007", "nightly-0007"), ("x; rm -rf ~", "'x; rm -rf ~'"), ("a'$(id)`b`", "'a'\"'\"'$(id)`b`'")],
)
def test_the_rerun_snippet_gets_the_workflow_id_quoted_for_a_shell(service, workflow_id, shell):
    # A stored workflow id is anyone's text; the console pastes it into a shell command.
    key = f"checkpoint:{workflow_id}:load"
    service.ingest(MemoryIn(content="step load done", key=key, metadata={"workflow_id": workflow_id}), "_kit/default")
    assert views.workflow(service, workflow_id)["workflow_id_shell"] == shell
