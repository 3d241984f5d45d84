"""Schemathesis against a live `memory-spine serve` with a token: every operation of the live OpenAPI schema, the
coverage, fuzzing and stateful phases, positive and negative data. Zero 5xx, and every response matching its
documented status, content type and schema.

Schemathesis runs as its CLI in a subprocess (its own hypothesis settings, its own summary, which gives the
figures): `pip install schemathesis`; the test is skipped, visibly, where it is not installed.
"""

from __future__ import annotations

import re
import subprocess
import sys

import httpx
import pytest

from benchmarks.crash_test import check_data_dir

pytestmark = pytest.mark.integration

TOKEN = "fuzz-token-5b0e7d"
CHECKS = [
    "not_a_server_error",
    "status_code_conformance",
    "content_type_conformance",
    "response_headers_conformance",
    "response_schema_conformance",
    "ignored_auth",  # the schema declares the bearer token (when one is set): requests without it must be 401
]


def _operations(schema: dict) -> int:
    methods = {"get", "put", "post", "delete", "patch", "head", "options"}
    return sum(1 for item in schema["paths"].values() for m in item if m in methods)


def test_schemathesis_finds_no_server_error_and_no_schema_mismatch(server_factory, tmp_path):
    pytest.importorskip("schemathesis", reason="schemathesis is not installed (pip install schemathesis)")
    server = server_factory(args=["--token", TOKEN, "--log-level", "warning"])
    headers = {"Authorization": f"Bearer {TOKEN}"}
    schema = httpx.get(server.url + "/openapi.json", headers=headers).json()
    before = httpx.get(server.url + "/stats", headers=headers).json()
    assert before["total_memories"] == 0
    cmd = [
        sys.executable,
        "-m",
        "schemathesis.cli",
        "run",
        server.url + "/openapi.json",
        "--header",
        f"Authorization: Bearer {TOKEN}",
        "--checks",
        ",".join(CHECKS),
        "--phases",
        "examples,coverage,fuzzing,stateful",
        "--mode",
        "all",
        "--max-examples",
        "40",
        "--workers",
        "2",
        "--seed",
        "20261124",
        "--request-timeout",
        "30",
        "--generation-database",
        "none",
        "--no-color",
    ]
    run = subprocess.run(cmd, capture_output=True, text=True, timeout=600, cwd=str(tmp_path))
    out = run.stdout + run.stderr
    print(out[-3000:])
    generated = re.search(r"(\d+) generated", out)
    tested = re.search(r"Tested: (\d+)", out)
    assert generated and tested, out[-3000:]
    print(f"schemathesis: {generated.group(1)} cases over {tested.group(1)} operations")
    assert int(tested.group(1)) == _operations(schema), out[-3000:]
    assert run.returncode == 0, out[-6000:]
    # The server is still healthy, and nothing it logged is an unexpected error.
    assert httpx.get(server.url + "/health").status_code == 200
    log = server.log_path.read_text(errors="replace")
    assert '"level":"error"' not in log, log[-3000:]
    # Thousands of random writes later the index still matches the table (expired records included, which
    # /stats does not count until they are purged): `memory-spine check` on the stopped data dir.
    assert server.terminate() == 0
    rc, report = check_data_dir(server.data_dir, server.embedder)
    assert rc == 0 and report["rows"] == report["index_elements"], report
