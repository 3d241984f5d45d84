"""Conditional routing: pick the agent for a task from how similar past tasks went, remembered in memory.

    router = Router(client, {"sql-expert": sql_agent, "generalist": general_agent}, default="generalist")
    result = await router.run("the nightly report query times out")   # choose, call, remember the outcome
    route = await router.choose(task)                                  # just the decision, with its evidence

**History**: every outcome `router.record(task, agent, success)` stores (and `run` stores for you) is a memory:
content = the task, tags `["routing", "router:{name}"]`, metadata `{"router", "agent", "success"}`.

**Decision**: a semantic search for the task among this router's outcomes (`k` nearest, at least `min_score`
similar). Each hit votes for its agent with its similarity, positive if that agent succeeded, negative if it
failed. The agent with the best positive total wins; with no votes, no positive total, an unknown agent, or
the memory service out (a read that fails soft, with a warning), the `default` route is taken. The decision,
the votes and the evidence are recorded on the span (`reasoning`), so "why did step 12 go to B?" has an
answer.
"""

from __future__ import annotations

import inspect
import logging
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Any

from .. import tracing
from ..client import MemoryClient
from ..errors import InvalidInput, WorkflowKitError
from ..journal import recall

__all__ = ["Route", "Router"]

log = logging.getLogger("workflow_kit.routing")


@dataclass
class Route:
    """A routing decision: the agent, why (history | default), the votes and the past tasks behind them."""

    agent: str
    why: str
    votes: dict[str, float] = field(default_factory=dict)
    evidence: list[dict[str, Any]] = field(default_factory=list)


class Router:
    """Routes tasks among `routes` by the history of similar tasks; see the module docstring."""

    def __init__(
        self,
        client: MemoryClient,
        routes: Mapping[str, Callable[..., Any]],
        *,
        default: str,
        name: str = "router",
        k: int = 8,
        min_score: float = 0.3,
        read_timeout: float = 2.0,
    ) -> None:
        if default not in routes:
            raise InvalidInput("default", f"{default!r} is not one of the routes {sorted(routes)}")
        self.client = client
        self.routes = dict(routes)
        self.default = default
        self.name = name
        self.k = k
        self.min_score = min_score
        self.read_timeout = read_timeout

    async def choose(self, task: str) -> Route:
        """The route for `task` (never raises for a memory outage: that takes the default route)."""
        with tracing.span(f"route {self.name}", kind="router", inputs={"task": task}) as span:
            hits = await recall(
                self.client.kit,  # routing outcomes are the kit's records: `_kit/<namespace>`
                task,
                timeout=self.read_timeout,
                limit=self.k,
                tags_all=["routing", f"router:{self.name}"],
                min_score=self.min_score,
                mode="semantic",  # ranked by similarity, the votes' weight (min_score filters on it in any mode)
            )
            votes: dict[str, float] = {}
            evidence = []
            for hit in hits:
                meta = hit.get("metadata") or {}
                agent = meta.get("agent")
                if agent not in self.routes:
                    continue
                weight = float(hit.get("score") or 0.0)
                votes[agent] = votes.get(agent, 0.0) + (weight if meta.get("success") else -weight)
                evidence.append(
                    {"task": hit.get("content"), "agent": agent, "success": meta.get("success"), "score": weight}
                )
            best = max(votes.items(), key=lambda kv: kv[1], default=None)
            if best is not None and best[1] > 0:
                route = Route(best[0], "history", votes, evidence)
            else:
                route = Route(self.default, "default", votes, evidence)
            span.set_attribute("workflow_kit.route", route.agent)
            tracing.record(
                outputs={"agent": route.agent},
                reasoning={"why": route.why, "votes": votes, "evidence": evidence[:5]},
                on=span,
            )
            return route

    async def record(self, task: str, agent: str, success: bool, detail: Any = None) -> None:
        """Remember how `agent` did on `task` (fails soft: a lost outcome only makes routing less informed)."""
        try:
            await self.client.kit.ingest(
                task,
                tags=["routing", f"router:{self.name}"],
                metadata={"router": self.name, "agent": agent, "success": bool(success), "detail": detail},
            )
        except WorkflowKitError as exc:
            log.warning("routing outcome not stored", extra={"router": self.name, "agent": agent, "error": str(exc)})

    async def run(self, task: str, *args: Any, **kwargs: Any) -> Any:
        """Choose the route for `task`, call it with `(task, *args, **kwargs)`, record success or failure."""
        route = await self.choose(task)
        fn = self.routes[route.agent]
        try:
            value = fn(task, *args, **kwargs)
            if inspect.isawaitable(value):
                value = await value
        except Exception as exc:
            await self.record(task, route.agent, False, f"{type(exc).__name__}: {exc}"[:500])
            raise
        await self.record(task, route.agent, True)
        return value
