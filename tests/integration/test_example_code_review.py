"""examples/code_review.py end to end against a real memory-spine process (real model): fetch -> three
reviewers in parallel -> summarise -> post, once; the records it leaves in the service; a re-run replays."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from workflow_kit import MemoryClient, dedup_key

pytestmark = pytest.mark.integration

ROOT = Path(__file__).resolve().parents[2]
EXAMPLE = ROOT / "examples" / "code_review.py"


@pytest.fixture(scope="module")
def server(tmp_path_factory):
    from tests.conftest import ServerProcess

    srv = ServerProcess(tmp_path_factory.mktemp("example-server") / "data").start()
    yield srv
    srv.stop()


def example(url: str, wf: str, journal: Path, *extra: str, code: int = 0) -> tuple[dict, str]:
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    proc = subprocess.run(
        [sys.executable, str(EXAMPLE), "--memory-url", url, "--workflow-id", wf, "--journal-dir", str(journal), *extra],
        capture_output=True,
        text=True,
        timeout=120,
        env=env,
    )
    assert proc.returncode == code, proc.stderr[-4000:]
    return json.loads(proc.stdout.strip().splitlines()[-1]), proc.stderr


async def test_the_pipeline_runs_end_to_end_and_posts_once(server, tmp_path):
    journal = tmp_path / "journal"
    out, err = example(server.url, "pr-101", journal)
    assert out == {
        "workflow_id": "pr-101",
        "status": "completed",
        "resumed_from": None,
        "side_effects": {"post_review": 1},
    }
    assert '"message": "step done"' in err and "p95 ms" in err  # JSON logs and the metrics report on stderr

    async with MemoryClient(server.url) as client:
        checkpoints = (await client.kit.list_keys("checkpoint:pr-101:"))["results"]
        assert [c["metadata"]["step"] for c in checkpoints] == ["post", "summarise", "review", "fetch"]
        review = checkpoints[2]["metadata"]["result"]
        assert sorted(review["results"]) == ["logic", "security", "style"] and review["failed"] == {}
        assert review["results"]["security"]["findings"][0]["severity"] == "critical"
        summary = checkpoints[1]["metadata"]["result"]
        assert "SQL built with an f-string" in summary and "use `is None`" in summary
        assert checkpoints[0]["metadata"]["status"] == "completed"
        usage = checkpoints[0]["metadata"]["usage"]
        assert usage["steps"] == 4 and usage["tokens"] > 0  # three reviewers + the summariser, charged

        # The side effect's dedup record (the seed's format, found by the seed's query).
        key = dedup_key("post_review", {"pr": "pr-101"})
        hits = (await client.kit.search(f"dedup:{key}", limit=1))["results"]
        assert hits[0]["metadata"]["result"]["replayed"] is False

        # The trace: every step, the three reviewers as agents under the fan-out, the fallback path.
        trace_id = checkpoints[0]["metadata"]["trace_id"]
        trace = json.loads((await client.kit.get_key(f"trace:{trace_id}"))["content"])
        by_name = {s["name"]: s for s in trace["spans"]}
        assert {"step fetch", "step review", "step summarise", "step post"} <= set(by_name)
        for reviewer in ("security", "style", "logic"):
            assert by_name[reviewer]["kind"] == "agent"
            assert by_name[reviewer]["parent_id"] == by_name[f"branch {reviewer}"]["span_id"]
        assert by_name["fallback summary"]["attributes"]["workflow_kit.fallback.path"] == ["summariser:ok"]

    # A re-run replays the completed workflow: nothing runs, nothing is posted again.
    again, _ = example(server.url, "pr-101", journal, "--quiet")
    assert again == {
        "workflow_id": "pr-101",
        "status": "completed",
        "resumed_from": None,  # a replay resumes nothing
        "side_effects": {"post_review": 1},
    }
    effects = (journal / "pr-101.effects.jsonl").read_text().splitlines()
    assert len(effects) == 1 and json.loads(effects[0])["executed"] is True


async def test_a_low_confidence_review_pauses_the_workflow_until_a_person_approves(server, tmp_path):
    journal = tmp_path / "journal"
    paused, _ = example(server.url, "pr-102", journal, "--quiet", "--min-confidence", "0.95", code=3)
    assert paused["status"] == "paused" and paused["side_effects"] == {"post_review": 0}
    assert "confidence 0.90 under 0.95" in paused["reason"]
    again, _ = example(server.url, "pr-102", journal, "--quiet", "--min-confidence", "0.95", code=3)
    assert again["status"] == "paused" and "paused for a person" in again["reason"]  # nothing ran

    async with MemoryClient(server.url) as client:
        found = (await client.kit.list_keys("escalation:pr-102:"))["results"]  # one per reviewer (they run at once)
        assert sorted(e["metadata"]["detail"]["agent"] for e in found) == ["logic", "security", "style"]
        for esc in found:
            assert esc["tags"] == ["escalation", "low_confidence", "pr-102"] and esc["metadata"]["status"] == "open"
            assert esc["metadata"]["step"] == "review"

    done, _ = example(server.url, "pr-102", journal, "--quiet", "--min-confidence", "0.95", "--approve", "checked")
    assert done == {
        "workflow_id": "pr-102",
        "status": "completed",
        "resumed_from": "review",
        "side_effects": {"post_review": 1},
    }
