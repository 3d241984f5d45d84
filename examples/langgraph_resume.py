"""A LangGraph graph stopped mid-run resumes from MemorySpineSaver, in a new process.

The graph is fetch -> review -> publish. `review` waits for a human (`interrupt`), and `--crash` makes `publish`
kill its process halfway, as a crash would. Every run is a new process; what carries the run over is the state
MemorySpineSaver keeps in Memory Spine:

    memory-spine serve &                                            # the service on 127.0.0.1:8788
    python examples/langgraph_resume.py start --thread pr-42        # fetch runs; review waits for approval
    python examples/langgraph_resume.py approve --thread pr-42 --crash   # review approved; publish dies
    python examples/langgraph_resume.py resume --thread pr-42       # publish runs; fetch and review do not

Each command prints the graph's state as one JSON line. `ran` lists the steps that finished, once each.
MEMORY_SPINE_URL / MEMORY_SPINE_TOKEN say where the service is. `durability="sync"` stores each step's
checkpoint before the next step starts, so a crash loses at most the step it hits.
"""

from __future__ import annotations

import argparse
import json
import operator
import os
import sys
from typing import Annotated, Any, TypedDict

from langgraph.graph import END, START, StateGraph
from langgraph.types import Command, interrupt

from workflow_kit.langgraph import MemorySpineSaver


class State(TypedDict, total=False):
    pr: int
    diff: str
    approved: bool
    url: str
    ran: Annotated[list[str], operator.add]


def fetch(state: State) -> dict[str, Any]:
    return {"diff": f"diff of PR {state['pr']}", "ran": ["fetch"]}


def review(state: State) -> dict[str, Any]:
    approved = interrupt({"question": f"publish {state['diff']}?"})  # the run stops here until resumed
    return {"approved": bool(approved), "ran": ["review"]}


def publish(state: State) -> dict[str, Any]:
    if os.environ.get("EXAMPLE_CRASH") == "1":
        os._exit(17)  # die mid-step, without cleanup, as a killed process would
    return {"url": f"https://example.invalid/pr/{state['pr']}", "ran": ["publish"]}


def build(saver: MemorySpineSaver) -> Any:
    graph = StateGraph(State)
    graph.add_node("fetch", fetch)
    graph.add_node("review", review)
    graph.add_node("publish", publish)
    graph.add_edge(START, "fetch")
    graph.add_edge("fetch", "review")
    graph.add_edge("review", "publish")
    graph.add_edge("publish", END)
    return graph.compile(checkpointer=saver)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("command", choices=["start", "approve", "resume"])
    parser.add_argument("--thread", required=True, help="the LangGraph thread id")
    parser.add_argument("--pr", type=int, default=42)
    parser.add_argument("--crash", action="store_true", help="publish kills the process midway")
    args = parser.parse_args(argv)
    if args.crash:
        os.environ["EXAMPLE_CRASH"] = "1"

    with MemorySpineSaver() as saver:
        graph = build(saver)
        config = {"configurable": {"thread_id": args.thread}}
        if args.command == "start":
            graph.invoke({"pr": args.pr, "ran": []}, config, durability="sync")
        elif args.command == "approve":
            graph.invoke(Command(resume=True), config, durability="sync")
        else:
            graph.invoke(None, config, durability="sync")  # continue after the last stored checkpoint
        snapshot = graph.get_state(config)
        waiting = [i.value for task in snapshot.tasks for i in task.interrupts]
        print(json.dumps({"values": snapshot.values, "next": list(snapshot.next), "waiting_for": waiting}))
    return 0


if __name__ == "__main__":
    sys.exit(main())
