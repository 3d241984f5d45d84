"""The seed's code-review pipeline on workflow_kit: fetch -> security / style / logic reviewers in parallel ->
summarise -> post the review.

    python examples/code_review.py --memory-url http://127.0.0.1:8788 --workflow-id pr-42 [--step-delay 0.5]

Everything runs offline: the diff and the three reviewers are deterministic fakes, and "posting" appends to a
fake review API's log next to the journal (`{journal-dir}/{workflow-id}.effects.jsonl`). What is real is the
machinery around them:

- durable steps (a checkpoint after each; a re-run with the same id resumes after the last one, by name),
- the post is an `idempotent` action that passes its dedup key on as the API's idempotency key, so a run
  killed anywhere (even between the post and its dedup record) posts once,
- the reviewers run as a fan-out with per-branch timeouts (a missing reviewer gives a partial review, not a
  failed one), each an `Agent` with a circuit breaker, a rate limit and a timeout, reading prior findings from
  memory (failing soft),
- the summary goes through a fallback chain (summariser -> cheap summariser -> canned text),
- bounded autonomy (scope of tools, actions and paths; a token, cost, step and wall-clock ceiling; a confidence
  threshold), a local journal when Memory Spine is down, SIGTERM finishing the current step, metrics.

The last line on stdout is one JSON object:
`{"workflow_id", "status", "resumed_from", "side_effects": {"post_review": n}}` where status is completed,
stopped (SIGTERM; exit 0, the next run resumes), paused (escalated to a person; exit 3, and `--approve NOTE`
resumes it) or failed (exit 1),
resumed_from is the step this run resumed at (null on a fresh start or a replay), and n counts the posts
the fake API accepted for this workflow id over all runs. Logs (JSON lines) and the metrics report go to
stderr.
"""

from __future__ import annotations

import argparse
import asyncio
import getpass
import hashlib
import json
import os
import socket
import sys
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
if str(ROOT) not in sys.path:  # run from a checkout without installing
    sys.path.insert(0, str(ROOT))

from workflow_kit import (  # noqa: E402
    Agent,
    Autonomy,
    Ceiling,
    CircuitBreaker,
    Journal,
    MemoryClient,
    Metrics,
    RateLimit,
    Scope,
    WorkflowPaused,
    WorkflowStopped,
    charge,
    check_scope,
    confidence,
    configure_logging,
    constant,
    fallback,
    fan_out,
    graceful_shutdown,
    idempotent,
    recall,
    resume,
    run_workflow,
)
from workflow_kit.idempotency import current_key  # noqa: E402

STEPS = ("fetch", "review", "summarise", "post")


# -- the outside world, faked --------------------------------------------------------------------------------


class FakeReviewAPI:
    """A code host's "post a review" endpoint. Like GitHub's or Stripe's, it honours an idempotency key: a
    request repeating a key it has seen is answered from the first one and not executed again."""

    def __init__(self, log: Path) -> None:
        self.log = log

    def _entries(self) -> list[dict[str, Any]]:
        if not self.log.exists():
            return []
        return [json.loads(line) for line in self.log.read_text().splitlines() if line.strip()]

    def post(self, pr: str, body: str, idempotency_key: str | None) -> dict[str, Any]:
        for entry in self._entries():
            if idempotency_key and entry.get("idempotency_key") == idempotency_key and entry["executed"]:
                self._append({"action": "post_review", "executed": False, "idempotency_key": idempotency_key})
                return {"review_id": entry["review_id"], "replayed": True}
        review_id = hashlib.sha256(f"{pr}:{body}".encode()).hexdigest()[:12]
        self._append(
            {
                "action": "post_review",
                "executed": True,
                "idempotency_key": idempotency_key,
                "review_id": review_id,
                "pid": os.getpid(),
            }
        )
        return {"review_id": review_id, "replayed": False}

    def _append(self, entry: dict[str, Any]) -> None:
        with open(self.log, "a") as f:
            f.write(json.dumps(entry) + "\n")
            f.flush()
            os.fsync(f.fileno())

    def executed(self) -> dict[str, int]:
        """How many times each action took effect here, over every run."""
        counts: dict[str, int] = {}
        for entry in self._entries():
            if entry["executed"]:
                counts[entry["action"]] = counts.get(entry["action"], 0) + 1
        return counts


def fake_diff(workflow_id: str) -> dict[str, str]:
    """A small pull request with one problem for each reviewer (the same for the same id)."""
    n = int(hashlib.sha256(workflow_id.encode()).hexdigest(), 16) % 90 + 10
    return {
        "src/users.py": (
            "def find_user(db, user_id):\n"
            f"    query = f'SELECT * FROM users WHERE id={{user_id}} LIMIT {n}'\n"
            "    return db.execute(query)\n"
        ),
        "src/report.py": (
            "def total(rows):\n"
            "    result = None\n"
            "    if result == None: result = sum(row['amount'] for row in rows if row['status'] == 'paid' and row['currency'] == 'EUR')\n"  # noqa: E501
            "    return result\n"
        ),
    }


# -- the agents (deterministic fakes) ------------------------------------------------------------------------


def reviewer(name: str, client: MemoryClient, check) -> Agent:
    async def review(files: dict[str, str]) -> dict[str, Any]:
        prior = await recall(client, f"{name} review findings", tags=["finding"], limit=3)  # context, fails soft
        findings = [f for path, text in sorted(files.items()) for f in check(path, text)]
        charge(tokens=400 + 50 * len(findings), cost=0.0004)
        await confidence(0.9, agent=name)
        return {"reviewer": name, "findings": findings, "prior_findings_seen": len(prior)}

    return Agent(
        name,
        review,
        breaker=CircuitBreaker(name, failure_threshold=3, cooldown=30),
        rate=RateLimit(10, per=1.0, name=name),
        timeout=10,
    )


def security_check(path: str, text: str) -> list[dict[str, str]]:
    if "f'SELECT" in text or 'f"SELECT' in text:
        return [{"file": path, "severity": "critical", "issue": "SQL built with an f-string: injection"}]
    return []


def style_check(path: str, text: str) -> list[dict[str, str]]:
    return [
        {"file": path, "severity": "low", "issue": f"line {i} is {len(line)} characters long"}
        for i, line in enumerate(text.splitlines(), 1)
        if len(line) > 100
    ]


def logic_check(path: str, text: str) -> list[dict[str, str]]:
    if "== None" in text:
        return [{"file": path, "severity": "medium", "issue": "comparison to None with ==; use `is None`"}]
    return []


def summarise_reviews(review: dict[str, Any]) -> str:
    lines = ["## Automated review"]
    for name, result in sorted(review["results"].items()):
        lines.append(f"**{name}**: {len(result['findings'])} finding(s)")
        lines += [f"- [{f['severity']}] {f['file']}: {f['issue']}" for f in result["findings"]]
    for name, failure in sorted(review["failed"].items()):
        lines.append(f"**{name}**: no review ({failure['kind']})")
    return "\n".join(lines)


def short_summary(review: dict[str, Any]) -> str:
    count = sum(len(r["findings"]) for r in review["results"].values())
    return f"## Automated review\n{count} finding(s) from {', '.join(sorted(review['results']))}"


# -- the workflow --------------------------------------------------------------------------------------------


def build_steps(client: MemoryClient, api: FakeReviewAPI, delay: float, holder: str, post_latency: float = 0.0) -> list:
    security = reviewer("security", client, security_check)
    style = reviewer("style", client, style_check)
    logic = reviewer("logic", client, logic_check)
    summariser = Agent("summariser", summarise_reviews, breaker=CircuitBreaker("summariser"), timeout=10)
    cheap = Agent("cheap-summariser", short_summary, timeout=5)

    async def fetch(ctx):
        await asyncio.sleep(delay)
        files = fake_diff(ctx.workflow_id)
        for path in files:
            check_scope(path=path)
        return {"pr": ctx.workflow_id, "files": files}

    async def review(ctx):
        await asyncio.sleep(delay)
        files = ctx.outputs["fetch"]["files"]
        out = await fan_out({"security": security, "style": style, "logic": logic}, files, timeout=15)
        return out.to_dict()

    async def summarise(ctx):
        await asyncio.sleep(delay)
        chain = [summariser, cheap, constant("## Automated review\nReviews attached.", name="canned")]
        return await fallback(chain, ctx.outputs["review"], name="summary")

    async def post(ctx):
        await asyncio.sleep(delay / 2)

        async def do_post(params: dict[str, Any]) -> dict[str, Any]:
            # The dedup key goes on as the API's idempotency key: a crash between this call and the dedup
            # record (the one gap no memory service closes alone) still posts once.
            receipt = api.post(params["pr"], ctx.outputs["summarise"], idempotency_key=current_key())
            await asyncio.sleep(post_latency)  # a slow answer: the post is done, its record not yet written
            return receipt

        receipt = await idempotent(
            ctx.client, "post_review", {"pr": ctx.workflow_id}, do_post, holder=holder, lease_seconds=10
        )
        await asyncio.sleep(delay / 2)
        return receipt

    return [fetch, review, summarise, post]


def autonomy(min_confidence: float = 0.5) -> Autonomy:
    return Autonomy(
        scope=Scope(
            actions={"post_review"},
            tools={"security", "style", "logic", "summariser", "cheap-summariser"},
            paths={"src/**", "tests/**"},
        ),
        ceiling=Ceiling(tokens=100_000, cost=1.0, steps=50, seconds=900),
        min_confidence=min_confidence,  # the fake reviewers are 0.9 sure: above 0.9, they escalate
    )


async def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--memory-url", default=os.environ.get("MEMORY_SPINE_URL", "http://127.0.0.1:8788"))
    parser.add_argument("--workflow-id", required=True)
    parser.add_argument("--step-delay", type=float, default=0.0, help="seconds each step takes (to watch, or kill)")
    parser.add_argument(
        "--journal-dir",
        type=Path,
        default=Path(os.environ.get("XDG_STATE_HOME", Path.home() / ".local" / "state")) / "workflow_kit" / "journal",
        help="local journal (and the fake API's log); default: $XDG_STATE_HOME/workflow_kit/journal",
    )
    parser.add_argument("--shutdown-deadline", type=float, default=20.0)
    parser.add_argument("--post-latency", type=float, default=0.0, help="seconds the fake API takes to answer a post")
    parser.add_argument("--quiet", action="store_true", help="no logs or metrics report on stderr")
    parser.add_argument("--approve", metavar="NOTE", help="a person's go-ahead for a paused (escalated) workflow")
    parser.add_argument("--min-confidence", type=float, default=0.5, help="reviewers less sure than this escalate")
    args = parser.parse_args(argv)

    configure_logging("ERROR" if args.quiet else "INFO")
    journal = Journal(args.journal_dir)
    api = FakeReviewAPI(args.journal_dir / f"{args.workflow_id}.effects.jsonl")
    # One holder name per host and workflow, shown in the console (it is no credential). A re-run after a crash
    # gives the dead run's claim back at once with the lease token kept next to the journal; two runs on this host
    # are kept apart by the journal's lock.
    holder = f"code-review:{socket.gethostname()}:{args.workflow_id}"
    metrics = Metrics()
    result: dict[str, Any] = {"workflow_id": args.workflow_id, "status": "failed", "resumed_from": None}
    code = 1
    async with MemoryClient(args.memory_url, timeout=3.0, retries=2) as client:
        if args.approve is not None:
            await resume(client, args.workflow_id, note=args.approve, by=getpass.getuser())
        async with graceful_shutdown(deadline=args.shutdown_deadline) as stop:
            try:
                run = await run_workflow(
                    client,
                    args.workflow_id,
                    build_steps(client, api, args.step_delay, holder, args.post_latency),
                    name="code-review",
                    holder=holder,
                    journal=journal,
                    autonomy=autonomy(args.min_confidence),
                    shutdown=stop,
                    rate_limit=RateLimit(30, per=1.0, name="code-review"),
                    metrics=metrics,
                )
                result.update(status="completed", resumed_from=run.resumed_from)
                code = 0
            except WorkflowStopped as exc:
                result.update(status="stopped", resumed_from=exc.resumed_from, stopped_after=exc.after, next=exc.next)
                code = 0
            except WorkflowPaused as exc:
                result.update(status="paused", reason=str(exc))
                code = 3
            except Exception as exc:  # reported on the last line, like every other outcome
                result.update(status="failed", error=f"{type(exc).__name__}: {exc}")
                code = 1
    if not args.quiet:
        print(metrics.report(), file=sys.stderr)
    result["side_effects"] = {"post_review": api.executed().get("post_review", 0)}
    print(json.dumps(result), flush=True)
    return code


if __name__ == "__main__":
    sys.exit(asyncio.run(main()))
