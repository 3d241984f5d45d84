"""Browser fixtures: a real `memory-spine serve` holding a run of the code-review example (plus a paused and a
failing workflow, and some notes), Debian's Chromium driven by Playwright, and helpers to open a page, wait
until it has drawn its data, screenshot it and check it with axe-core.

Screenshots go to test-artifacts/browser/ on every run, and also to docs/screenshots/ (the README's) when
MEMORY_SPINE_UPDATE_SCREENSHOTS=1.
"""

from __future__ import annotations

import asyncio
import os
import shutil
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import httpx
import pytest

from tests.browser.support import CHROMIUM_ARGS, CHROMIUM_PATH, ROOT, run_example, run_failing, run_paused
from tests.conftest import ServerProcess

ARTIFACTS = ROOT / "test-artifacts" / "browser"
DOCS_SCREENSHOTS = ROOT / "docs" / "screenshots"
VIEWPORT = {"width": 1280, "height": 900}

NOTES = [
    ("The deploy failed because the database migration timed out", ["incident", "deploy"], {"severity": 4}),
    ("Rolled back the billing release after error rates doubled", ["incident", "billing"], {"severity": 5}),
    ("Search latency p99 went from 40 ms to 900 ms after the index rebuild", ["incident", "search"], {"severity": 3}),
    ("The on-call rotation moves to Mondays from next month", ["oncall", "note"], {"severity": 1}),
    ("Design review: keep SQLite as the source of truth, the vector index is a cache", ["design"], {"severity": 2}),
    ("Customer asked for an export of their workspace in JSON lines", ["customer"], {"severity": 2}),
    ("Certificate for the internal API expires on the 30th: rotate it", ["infra", "security"], {"severity": 4}),
    ("Queue backlog cleared after adding two workers", ["infra"], {"severity": 2}),
    ('<b>bold?</b> <img src=x onerror="window.__pwned=1"> markup in a memory is text', ["note"], {"severity": 1}),
    ("scratch note one", ["scratch"], {"severity": 1}),
    ("scratch note two", ["scratch"], {"severity": 1}),
    ("scratch note three", ["scratch"], {"severity": 1}),
]


def _missing() -> str | None:
    try:
        import playwright.sync_api  # noqa: F401
    except ImportError:
        return "Playwright's Python package is not installed (pip install playwright; no browser download needed)"
    try:
        import axe_playwright_python  # noqa: F401
    except ImportError:
        return "axe-playwright-python (axe-core for the accessibility check) is not installed"
    if not os.access(CHROMIUM_PATH, os.X_OK):
        return f"no Chromium at {CHROMIUM_PATH}: apt-get update && apt-get install -y chromium"
    return None


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    reason = _missing()
    if reason is None:
        return
    here = Path(__file__).parent
    mine = [item for item in items if Path(str(item.fspath)).is_relative_to(here)]
    for item in mine:
        item.add_marker(pytest.mark.skip(reason=f"browser tests skipped: {reason}"))
    reporter = config.pluginmanager.get_plugin("terminalreporter")
    if mine and reporter is not None:  # said out loud, not only under -rs
        reporter.write_line(f"SKIPPING {len(mine)} browser tests: {reason}", yellow=True, bold=True)


# Module scope, not session: Playwright's sync API runs an event loop in this thread while it is open, and
# pytest-asyncio cannot start the async tests of later modules under it ("Runner.run() cannot be called from
# a running event loop").
@pytest.fixture(scope="module")
def browser() -> Iterator[Any]:
    from playwright.sync_api import sync_playwright

    with sync_playwright() as p:
        b = p.chromium.launch(executable_path=CHROMIUM_PATH, args=CHROMIUM_ARGS)
        yield b
        b.close()


@pytest.fixture
def page(browser):
    """A fresh browser context (its own sessionStorage) and page; page errors fail the test."""
    context = browser.new_context(viewport=VIEWPORT, locale="en-US", timezone_id="UTC")
    pg = context.new_page()
    errors: list[str] = []
    pg.on("pageerror", lambda exc: errors.append(str(exc)))
    pg.on("console", lambda msg: errors.append(msg.text) if msg.type == "error" and "401" not in msg.text else None)
    yield pg
    context.close()
    assert not errors, f"the page reported errors: {errors}"


@pytest.fixture(scope="module")
def console(tmp_path_factory) -> Iterator[ServerProcess]:
    """A real service (real model) holding the code-review example's run and the other workflows."""
    base = tmp_path_factory.mktemp("console")
    srv = ServerProcess(base / "data").start()
    try:
        run_example(srv.url, "pr-1042", base / "journal")
        # In a thread of their own: Playwright's sync API keeps an event loop running in this one.
        with ThreadPoolExecutor(1) as pool:
            pool.submit(asyncio.run, run_paused(srv.url, "nightly-0007")).result()
            pool.submit(asyncio.run, run_failing(srv.url, "ingest-0013")).result()
        records = [
            {
                "content": content,
                "tags": tags,
                "metadata": {**meta, "source": "browser-test"},
                "importance": "high" if meta["severity"] >= 4 else "medium",
            }
            for content, tags, meta in NOTES
        ]
        httpx.post(srv.url + "/ingest/batch", json={"records": records}, timeout=60).raise_for_status()
        yield srv
    finally:
        srv.stop()


def open_page(page, url: str, timeout: float = 20_000) -> None:
    """Go to a console page and wait until its script says it has drawn its data."""
    page.goto(url)
    page.wait_for_selector("body[data-ready]", timeout=timeout)
    state = page.evaluate("document.body.dataset.ready")
    assert state == "1", f"{url} failed to load: {page.text_content('#notice')}"


def screenshot(page, name: str) -> Path:
    ARTIFACTS.mkdir(parents=True, exist_ok=True)
    path = ARTIFACTS / f"{name}.png"
    page.screenshot(path=str(path), full_page=True)
    if os.environ.get("MEMORY_SPINE_UPDATE_SCREENSHOTS") == "1":
        DOCS_SCREENSHOTS.mkdir(parents=True, exist_ok=True)
        shutil.copyfile(path, DOCS_SCREENSHOTS / f"{name}.png")
    return path


def axe_violations(page) -> list[dict[str, Any]]:
    """axe-core's WCAG 2 A/AA violations on the page as it is now (labels, contrast, names, structure)."""
    from axe_playwright_python.base import AXE_SCRIPT

    page.evaluate(AXE_SCRIPT)
    result = page.evaluate(
        "axe.run(document, {runOnly: {type: 'tag', values: ['wcag2a', 'wcag2aa', 'wcag21a', 'wcag21aa']},"
        " resultTypes: ['violations']})"
    )
    return [
        {"id": v["id"], "impact": v["impact"], "help": v["help"], "nodes": [n["html"][:160] for n in v["nodes"][:5]]}
        for v in result["violations"]
    ]
