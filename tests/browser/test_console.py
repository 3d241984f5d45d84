"""The web console end to end: headless Chromium (Debian's) against a real service holding a run of the
code-review example, a paused and a failing workflow, and some notes.

Each page is opened, used as a person would (search, filter, open, edit, delete, sign in), checked against
what the service stores, screenshotted (test-artifacts/browser/, docs/screenshots/ on request) and checked by
axe-core for WCAG 2 A/AA violations (labels, contrast, names).
"""

from __future__ import annotations

import json
import re
from urllib.parse import unquote

import httpx
import pytest

from tests.browser.conftest import axe_violations, open_page, screenshot

pytestmark = pytest.mark.timeout(120)

TOKEN = "browser-test-token-3f9c1a"
KIT = {"X-Memory-Namespace": "_kit/default"}  # where the kit keeps its records (issue 18)


def api(srv, method: str, path: str, **kw) -> httpx.Response:
    return httpx.request(method, srv.url + path, timeout=30, **kw)


def stored_trace(srv, workflow_id: str) -> dict:
    """The newest stored trace of a workflow, as the kit wrote it."""
    rows = api(srv, "GET", "/keys", params={"prefix": "trace:", "limit": 100}, headers=KIT).json()["results"]
    rec = next(r for r in rows if r["metadata"]["workflow_id"] == workflow_id)
    return json.loads(rec["content"])


def shown_ms(text: str) -> float:
    """'7.84 ms' / '1.20 s' as milliseconds."""
    value, unit = text.split()
    return float(value) * (1000 if unit == "s" else 1)


def close_to_shown(text: str, ms: float) -> bool:
    value, _ = text.split()
    decimals = len(value.partition(".")[2])
    scale = 1000 if text.endswith(" s") else 1
    return abs(shown_ms(text) - ms) <= 0.5 * 10**-decimals * scale + 1e-9


def assert_accessible(page, name: str) -> None:
    violations = axe_violations(page)
    assert not violations, f"{name}: axe-core found WCAG A/AA violations:\n" + json.dumps(violations, indent=1)


# -- overview ------------------------------------------------------------------------------------------------


def test_overview_draws_totals_tags_rates_and_latency(page, console):
    stats = api(console, "GET", "/stats").json()
    open_page(page, console.url + "/ui")
    assert page.text_content("#total") == f"{stats['total_memories']:,}"
    tags = page.get_attribute("#chart-tags svg", "aria-label")
    top, count = sorted(stats["tags"].items(), key=lambda kv: (-kv[1], kv[0]))[0]
    assert f"{top}: {count}" in tags
    # The kit's records (checkpoints, traces, dedup) are in `_kit/default`: not in the default namespace's chart.
    assert not {"checkpoint", "trace", "dedup"} & set(stats["tags"]), stats["tags"]
    assert page.locator("#chart-tags svg rect").count() == min(12, len(stats["tags"]))
    latency = page.get_attribute("#chart-latency svg", "aria-label")
    assert "POST /ingest" in latency and "p99" in latency
    assert page.locator("#chart-rates svg path").count() == 2
    assert page.locator("#chart-sizes svg rect").count() == 2
    screenshot(page, "overview")
    assert_accessible(page, "overview")


# -- memories ------------------------------------------------------------------------------------------------


def result_ids(page) -> list[str]:
    return page.eval_on_selector_all("#results li", "items => items.map(li => li.dataset.id)")


def test_memories_search_modes_and_filters(page, console):
    open_page(page, console.url + "/ui/memories")
    assert "newest memories" in page.text_content("#summary")
    # Markup in a memory is shown as text, never run.
    assert page.locator("#results li", has_text="<img src=x").count() == 1
    assert page.evaluate("window.__pwned") is None

    page.fill("#q", "why did the release break?")
    page.select_option("#mode", "semantic")
    page.click("#search button[type=submit]")
    page.wait_for_function("() => document.querySelector('#summary').textContent.includes('semantic')")
    expected = api(
        console, "POST", "/search", json={"query": "why did the release break?", "mode": "semantic", "limit": 50}
    ).json()["results"]
    assert result_ids(page) == [r["id"] for r in expected]
    assert f"{expected[0]['score']:.3f}" in page.locator("#results li .score").first.inner_text()
    assert "mode=semantic" in page.url and "q=why" in page.url

    page.select_option("#mode", "keyword")
    page.fill("#q", "migration")
    page.click("#search button[type=submit]")
    page.wait_for_function("() => document.querySelector('#summary').textContent.includes('keyword')")
    assert "database migration timed out" in page.locator("#results li").first.inner_text()
    # Keyword mode scores no vectors: the card shows the rank score, labelled as such, not a similarity.
    assert "rank" in page.locator("#results li .score").first.inner_text()

    # Filters: tags (any of) and a metadata condition, with and without search words.
    page.fill("#q", "")
    page.fill("#tags", "incident, infra")
    page.fill("#where", '{"severity": {"$gte": 4}}')
    page.click("#search button[type=submit]")
    page.wait_for_function("() => document.querySelector('#summary').textContent.includes('matching the filters')")
    body = {"tags": ["incident", "infra"], "where": {"severity": {"$gte": 4}}, "limit": 50}
    expected = api(console, "POST", "/ui/api/memories", json=body).json()["results"]
    assert len(expected) == 3
    assert result_ids(page) == [r["id"] for r in expected]
    for item in page.locator("#results li").all():
        assert re.search(r"severity=[45]", item.inner_text())

    page.fill("#q", "certificate expiry")
    page.select_option("#mode", "hybrid")
    page.click("#search button[type=submit]")
    page.wait_for_function("() => document.querySelector('#summary').textContent.includes('hybrid')")
    texts = page.locator("#results li .text").all_inner_texts()
    assert texts and "Certificate for the internal API" in texts[0]

    # A bad metadata filter is named, not sent.
    page.fill("#where", "{severity: 4")
    page.click("#search button[type=submit]")
    page.wait_for_function("() => document.querySelector('#notice').textContent.includes('Metadata filter')")
    page.fill("#where", "")
    page.fill("#tags", "incident, design")
    page.fill("#q", "why did the release break?")
    page.click("#search button[type=submit]")
    page.wait_for_function("() => document.querySelector('#summary').textContent.includes('4 results')")
    screenshot(page, "memories")
    assert_accessible(page, "memories")


def test_memory_record_edit_then_delete(page, console):
    rec = api(console, "POST", "/search", json={"query": "queue backlog workers", "mode": "keyword"}).json()
    memory = rec["results"][0]
    open_page(page, f"{console.url}/ui/memories/{memory['id']}")
    assert page.text_content("#content") == memory["content"]
    assert json.loads(page.text_content("#metadata")) == memory["metadata"]
    screenshot(page, "memory")
    assert_accessible(page, "memory")

    page.fill("#edit-tags", "infra, capacity")
    page.select_option("#edit-importance", "critical")
    meta = dict(memory["metadata"])
    meta.pop("source")
    meta["workers"] = 2
    page.fill("#edit-metadata", json.dumps(meta))
    page.click("#edit button[type=submit]")
    page.wait_for_function("() => document.querySelector('#notice').textContent === 'Saved.'")
    stored = api(console, "GET", f"/memories/{memory['id']}").json()
    assert stored["tags"] == ["infra", "capacity"]
    assert stored["importance"] == "critical"
    assert stored["metadata"] == {"severity": 2, "workers": 2}  # the removed key is gone, the new one merged
    assert stored["content"] == memory["content"]

    page.click("#delete")
    page.click("#delete-yes")
    page.wait_for_url(re.compile(r"/ui/memories\?deleted="))
    page.wait_for_selector("body[data-ready]")
    assert "Deleted memory" in page.text_content("#notice")
    assert api(console, "GET", f"/memories/{memory['id']}").status_code == 404
    assert memory["id"] not in result_ids(page)


def test_memory_history_revert_and_restore(page, console):
    made = api(console, "POST", "/ingest", json={"id": "notes/history-demo", "content": "first draft", "tags": ["h"]})
    assert made.status_code == 200, made.text
    first = api(console, "GET", "/memories/notes%2Fhistory-demo").json()
    url = f"{console.url}/ui/memories/notes%2Fhistory-demo"
    open_page(page, url)
    assert page.locator("#history tbody tr").count() == 1
    page.fill("#edit-content", "second draft")
    page.click("#edit button[type=submit]")
    page.wait_for_function("() => document.querySelectorAll('#history tbody tr').length === 2")
    rows = page.locator("#history tbody tr")
    assert "content" in rows.nth(0).text_content() and "patch" in rows.nth(1).text_content()
    screenshot(page, "memory-history")
    assert_accessible(page, "memory history")

    page.click(f"#history tr[data-version='{first['version']}'] button.revert")
    page.wait_for_function("() => document.querySelector('#notice').textContent.startsWith('Reverted')")
    assert page.text_content("#content") == "first draft"
    now = api(console, "GET", "/memories/notes%2Fhistory-demo").json()
    assert now["content"] == "first draft" and now["version"] > first["version"]

    assert api(console, "DELETE", "/memories/notes%2Fhistory-demo").status_code == 200
    open_page(page, url)
    assert page.is_visible("#deleted-panel") and not page.is_visible("#edit-panel")
    page.click("#restore")
    page.wait_for_function("() => document.querySelector('#notice').textContent.startsWith('Restored')")
    assert page.text_content("#content") == "first draft"
    assert api(console, "GET", "/memories/notes%2Fhistory-demo").json()["content"] == "first draft"


def test_bulk_delete_shows_the_count_first(page, console):
    open_page(page, console.url + "/ui/memories")
    page.click("#bulk-count")
    assert "Set at least one filter" in page.text_content("#bulk-result")
    page.fill("#tags", "scratch")
    page.click("#bulk-count")
    page.wait_for_function("() => document.querySelector('#bulk-result').textContent.includes('match')")
    assert page.text_content("#bulk-result") == "3 memories match these filters."
    assert page.text_content("#bulk-delete") == "Delete 3 memories"
    # Nothing was deleted by counting.
    assert api(console, "DELETE", "/memories", json={"tags": ["scratch"], "dry_run": True}).json() == {
        "would_delete": 3
    }
    # Changing the filters after the count asks for a new count instead of deleting something else.
    page.fill("#tags", "scratch, note")
    page.click("#bulk-delete")
    assert "count again" in page.text_content("#bulk-result")
    page.fill("#tags", "scratch")
    page.click("#bulk-count")
    page.wait_for_function("() => !document.querySelector('#bulk-delete').hidden")
    page.click("#bulk-delete")
    page.wait_for_function("() => document.querySelector('#bulk-result').textContent.startsWith('Deleted')")
    assert page.text_content("#bulk-result") == "Deleted 3 memories."
    assert api(console, "DELETE", "/memories", json={"tags": ["scratch"], "dry_run": True}).json() == {
        "would_delete": 0
    }


# -- workflows -----------------------------------------------------------------------------------------------


def test_workflow_list_shows_each_workflow_with_its_status(page, console):
    open_page(page, console.url + "/ui/workflows")
    rows = page.eval_on_selector_all(
        "#workflows tbody tr", "rows => rows.map(r => [r.dataset.workflowId, r.dataset.status, r.innerText])"
    )
    status = {wf: st for wf, st, _ in rows}
    assert status == {"pr-1042": "completed", "nightly-0007": "paused", "ingest-0013": "failed"}
    text = {wf: t for wf, _, t in rows}
    assert "post (4 of 4)" in text["pr-1042"] and "code-review" in text["pr-1042"]
    assert "gather (1 of 3)" in text["nightly-0007"] and "budget" in text["nightly-0007"]
    assert "report store unreachable" in text["ingest-0013"]
    assert page.text_content("#summary") == "Workflows 1–3 of 3"
    screenshot(page, "workflows")
    assert_accessible(page, "workflows")

    page.fill("#prefix", "pr-")
    page.click("#filter button[type=submit]")
    page.wait_for_function("() => document.querySelectorAll('#workflows tbody tr').length === 1")
    page.click("text=pr-1042")
    page.wait_for_url(re.compile(r"/ui/workflows/pr-1042$"))
    page.wait_for_selector("body[data-ready='1']")


def test_workflow_page_steps_durations_and_dedup_match_the_stored_trace(page, console):
    trace = stored_trace(console, "pr-1042")
    step_spans = {s["attributes"]["workflow_kit.step"]: s for s in trace["spans"] if s["kind"] == "step"}
    open_page(page, console.url + "/ui/workflows/pr-1042")
    assert page.text_content("#status-badge") == "completed"
    steps = page.eval_on_selector_all("#steps > li", "items => items.map(li => [li.dataset.step, li.dataset.state])")
    assert steps == [["fetch", "done"], ["review", "done"], ["summarise", "done"], ["post", "done"]]
    for name, span in step_spans.items():
        shown = page.locator(f"#steps > li[data-step='{name}'] .step-head .sub").first.inner_text()
        assert close_to_shown(shown, span["duration_ms"]), (name, shown, span["duration_ms"])
    # The output of a step is its checkpointed result.
    cp = api(console, "GET", "/keys/checkpoint:pr-1042:summarise", headers=KIT).json()
    page.click("#steps > li[data-step='summarise'] summary:has-text('Output')")
    assert json.loads(page.locator("#steps > li[data-step='summarise'] pre").inner_text()) == cp["metadata"]["result"]
    # The exactly-once post: its dedup record, found through the trace's idempotent span.
    dedup_key = next(s["attributes"]["dedup_key"] for s in trace["spans"] if "dedup_key" in s["attributes"])
    row = page.locator(f"#dedup tr[data-key='dedup:{dedup_key}']")
    assert "post_review" in row.inner_text() and "executed" in row.inner_text()
    record = api(console, "GET", f"/keys/dedup:{dedup_key}", headers=KIT).json()
    assert record["metadata"]["result"]["review_id"] in row.inner_text()
    assert page.locator("#runs tbody tr").count() == 1
    assert page.is_hidden("#resume")
    screenshot(page, "workflow")
    assert_accessible(page, "workflow")


def test_failed_workflow_shows_breaker_fallback_and_retries(page, console):
    open_page(page, console.url + "/ui/workflows/ingest-0013")
    assert page.text_content("#status-badge") == "failed"
    transform = page.locator("#steps > li[data-step='transform']")
    kinds = transform.locator("ul.events li").evaluate_all("items => items.map(li => li.dataset.kind)")
    assert "breaker" in kinds and "fallback" in kinds
    assert "closed → open" in transform.inner_text()
    assert "fell back to cached" in transform.inner_text()
    publish = page.locator("#steps > li[data-step='publish']")
    assert publish.get_attribute("data-state") == "failed"
    assert "2 attempts (1 retry)" in publish.inner_text()
    assert page.locator("#runs tbody tr").count() == 2
    assert "resumes after its last checkpoint (step transform)" in page.text_content("#resume")
    screenshot(page, "workflow-failed")
    assert_accessible(page, "workflow-failed")


def test_paused_workflow_shows_how_to_resume_and_can_be_resolved(page, console):
    open_page(page, console.url + "/ui/workflows/nightly-0007")
    assert page.text_content("#status-badge") == "paused"
    box = page.text_content("#resume")
    assert "Paused for a person" in box and 'await resume(client, "nightly-0007"' in box
    draft = page.locator("#steps > li[data-step='draft']")
    assert draft.get_attribute("data-state") == "paused"
    kinds = draft.locator("ul.events li").evaluate_all("items => items.map(li => li.dataset.kind)")
    assert "budget" in kinds and "escalation" in kinds
    assert "tokens 1500 of 1000" in draft.inner_text()
    assert page.locator("#escalations tbody tr").count() == 1
    screenshot(page, "workflow-paused")
    assert_accessible(page, "workflow-paused")

    page.click("#resolve")
    page.wait_for_function("() => document.querySelector('#status-badge').textContent === 'stopped'")
    esc = api(console, "GET", "/keys", params={"prefix": "escalation:nightly-0007:"}, headers=KIT).json()["results"][0]
    assert esc["metadata"]["status"] == "resolved" and esc["metadata"]["resolved_by"] == "console"
    assert "Run it again with the same workflow id" in page.text_content("#resume")


# -- traces --------------------------------------------------------------------------------------------------


def test_trace_list_filters_by_workflow_and_status(page, console):
    open_page(page, console.url + "/ui/traces")
    all_rows = page.eval_on_selector_all(
        "#traces tbody tr", "rows => rows.map(r => [r.dataset.traceId, r.dataset.status])"
    )
    stored = api(console, "GET", "/keys", params={"prefix": "trace:"}, headers=KIT).json()["results"]
    assert sorted(t for t, _ in all_rows) == sorted(r["metadata"]["trace_id"] for r in stored)
    screenshot(page, "traces")
    assert_accessible(page, "traces")

    page.select_option("#status", "error")
    page.click("#filter button[type=submit]")
    page.wait_for_function("() => document.querySelector('#summary').textContent.includes('status error')")
    errors = page.eval_on_selector_all("#traces tbody tr", "rows => rows.map(r => r.dataset.status)")
    assert errors and set(errors) == {"error"}
    assert len(errors) == sum(1 for r in stored if r["metadata"]["status"] == "error")

    page.fill("#workflow_id", "ingest-0013")
    page.select_option("#status", "")
    page.click("#filter button[type=submit]")
    page.wait_for_function("() => document.querySelector('#summary').textContent.includes('of workflow ingest-0013')")
    assert page.locator("#traces tbody tr").count() == 2
    assert "workflow_id=ingest-0013" in page.url


def test_trace_waterfall_nesting_and_numbers_match_the_stored_trace(page, console):
    trace = stored_trace(console, "pr-1042")
    spans = {s["span_id"]: s for s in trace["spans"]}

    def depth(span_id: str) -> int:
        parent = spans[span_id]["parent_id"]
        return 0 if parent is None or parent not in spans else 1 + depth(parent)

    open_page(page, f"{console.url}/ui/traces/{trace['trace_id']}")
    rows = page.eval_on_selector_all(
        ".wf-row",
        "rows => rows.map(r => ({...r.dataset, ms: r.querySelector('.ms').textContent,"
        " indent: parseFloat(getComputedStyle(r.querySelector('.indent')).paddingLeft)}))",
    )
    assert len(rows) == len(spans)
    assert {r["spanId"] for r in rows} == set(spans)
    seen: set[str] = set()
    for r in rows:
        s = spans[r["spanId"]]
        assert (r["parentId"] or None) == s["parent_id"]
        assert s["parent_id"] is None or s["parent_id"] in seen, "a span is drawn before its parent"
        seen.add(r["spanId"])
        assert int(r["depth"]) == depth(r["spanId"])
        assert r["indent"] == pytest.approx(int(r["depth"]) * 1.1 * 15, abs=0.5)  # 1.1rem a level
        assert float(r["durationMs"]) == s["duration_ms"]
        assert float(r["offsetMs"]) == pytest.approx((s["start"] - trace["started_at"]) * 1000, abs=0.002)
        assert close_to_shown(r["ms"], s["duration_ms"]), (r["ms"], s["duration_ms"])
    # The four steps hang under the workflow span, the reviewers under the fan-out's branches.
    root = next(s for s in trace["spans"] if s["parent_id"] is None)
    assert [r["spanId"] for r in rows][0] == root["span_id"]
    by_name = {r["spanId"]: spans[r["spanId"]]["name"] for r in rows}
    assert [by_name[r["spanId"]] for r in rows if r["depth"] == "1" and r["kind"] == "step"] == [
        "step fetch",
        "step review",
        "step summarise",
        "step post",
    ]
    # The bars are where the numbers say: left edge at offset / total of the track.
    total = float(page.locator(".wf-axis .ticks span").last.inner_text().split()[0])
    assert close_to_shown(page.locator(".wf-axis .ticks span").last.inner_text(), root["duration_ms"])
    for r in rows[:6]:
        row = page.locator(f".wf-row[data-span-id='{r['spanId']}']")
        track, bar = row.locator(".track").bounding_box(), row.locator(".bar").bounding_box()
        assert (bar["x"] - track["x"]) / track["width"] == pytest.approx(
            float(r["offsetMs"]) / root["duration_ms"], abs=0.01
        )
    assert total > 0

    # A click shows the span's inputs and outputs as stored.
    security = next(s for s in trace["spans"] if s["name"] == "security" and s["kind"] == "agent")
    page.click(f".wf-row[data-span-id='{security['span_id']}']")
    assert page.text_content("#detail-title") == "security"
    blocks = page.locator("#detail pre.json").all_inner_texts()
    assert json.loads(blocks[0]) == security["inputs"]
    assert json.loads(blocks[1]) == security["outputs"]
    assert page.url.endswith("#" + security["span_id"])
    screenshot(page, "trace")
    assert_accessible(page, "trace")
    # Hiding memory calls hides exactly those rows.
    page.uncheck("#show-memory")
    visible = page.locator(".wf-row:not(.hidden)").count()
    assert visible == sum(1 for s in trace["spans"] if s["kind"] != "memory")


def test_trace_errors_are_highlighted(page, console):
    trace = stored_trace(console, "ingest-0013")  # the newest run: fails in step publish
    open_page(page, f"{console.url}/ui/traces/{trace['trace_id']}")
    errored = {s["span_id"] for s in trace["spans"] if s["status"] == "error"}
    assert errored
    shown = set(page.eval_on_selector_all(".wf-row.error", "rows => rows.map(r => r.dataset.spanId)"))
    assert shown == errored
    color = page.eval_on_selector(".wf-row.error .bar", "b => getComputedStyle(b).backgroundColor")
    assert color == "rgb(168, 32, 13)"
    page.click(".wf-row.error >> nth=-1")
    assert "RuntimeError: report store unreachable" in page.text_content("#detail")

    # The first run's transform step recorded its reasoning: shown on a click, as stored.
    rows = api(console, "GET", "/keys", params={"prefix": "trace:", "limit": 100}, headers=KIT).json()["results"]
    first = next(
        doc
        for doc in (json.loads(r["content"]) for r in rows if r["metadata"]["workflow_id"] == "ingest-0013")
        if any(s["name"] == "step transform" for s in doc["spans"])
    )
    step = next(s for s in first["spans"] if s["name"] == "step transform")
    open_page(page, f"{console.url}/ui/traces/{first['trace_id']}#{step['span_id']}")
    assert page.text_content("#detail-title") == "step transform"
    headings = page.locator("#detail h3").all_inner_texts()
    assert headings[:2] == ["Outputs", "Reasoning"]
    assert json.loads(page.locator("#detail pre.json").nth(1).inner_text()) == step["reasoning"]


# -- auth ----------------------------------------------------------------------------------------------------


def test_token_flow(page, server_factory):
    srv = server_factory(embedder="fake", args=["--token", TOKEN])
    auth = {"Authorization": f"Bearer {TOKEN}"}
    note = "a memory only a signed-in console can read"
    ingest = httpx.post(srv.url + "/ingest", json={"content": note, "tags": ["secret"]}, headers=auth, timeout=30)
    memory_id = ingest.json()["id"]
    # The shells are served without a token and hold no data; the data needs it.
    shell = httpx.get(f"{srv.url}/ui/memories/{memory_id}", timeout=30)
    assert shell.status_code == 200 and note not in shell.text
    assert "script-src 'self'" in shell.headers["content-security-policy"]
    assert httpx.get(srv.url + "/ui/api/overview", timeout=30).status_code == 401

    requests: list[tuple[str, dict]] = []
    page.on("request", lambda r: requests.append((r.url, r.all_headers())))
    page.goto(srv.url + "/ui/memories")
    page.wait_for_url(re.compile(r"/ui/login\?next="))
    assert unquote(page.url.split("next=")[1]) == "/ui/memories"
    page.wait_for_selector("body[data-ready='1']")
    screenshot(page, "login")
    assert_accessible(page, "login")

    page.fill("#token", "wrong-token")
    page.click("#login button[type=submit]")
    page.wait_for_selector("#login-error:not([hidden])")
    assert page.text_content("#login-error") == "The service refused this token."
    assert page.evaluate("sessionStorage.getItem('memory-spine.token')") is None

    page.fill("#token", TOKEN)
    page.click("#login button[type=submit]")
    page.wait_for_url(re.compile(r"/ui/memories$"))
    page.wait_for_selector("body[data-ready='1']")
    assert note in page.text_content("#results")
    assert page.evaluate("sessionStorage.getItem('memory-spine.token')") == TOKEN
    assert page.is_visible("#sign-out")

    # Another page of the same tab needs no new sign-in.
    open_page(page, srv.url + "/ui/workflows")
    open_page(page, srv.url + "/ui")

    # The token went out only as a header, on the console's own data requests; never in an address.
    assert all(TOKEN not in url for url, _ in requests)
    sent = [h.get("authorization") for url, h in requests if "/ui/api/" in url or url.endswith(("/search", "/whoami"))]
    assert sent[0] is None  # the first try, before signing in: answered 401, then the login page
    assert sent[1] == "Bearer wrong-token"
    assert len(sent) > 4 and all(h == f"Bearer {TOKEN}" for h in sent[2:])
    assert all("authorization" not in h for url, h in requests if "/ui/static/" in url)
    assert TOKEN not in srv.output()

    page.click("#sign-out")
    page.wait_for_url(re.compile(r"/ui/login"))
    assert page.evaluate("sessionStorage.getItem('memory-spine.token')") is None
    page.goto(srv.url + "/ui/traces")
    page.wait_for_url(re.compile(r"/ui/login\?next="))

    # A scoped token signs in too (the probe is /whoami, which any valid token may ask), and the console says its
    # scope once; what lies outside the scope the service refuses (tests/unit/test_tokens.py).
    made = httpx.post(
        srv.url + "/tokens", json={"namespaces": ["default"], "rights": ["read"], "name": "viewer"}, headers=auth
    )
    page.fill("#token", made.json()["token"])
    page.click("#login button[type=submit]")
    page.wait_for_url(re.compile(r"/ui/traces$"))
    page.wait_for_selector("body[data-ready='1']")
    assert page.text_content("#notice") == "Signed in with a scoped token (viewer): read on default."
