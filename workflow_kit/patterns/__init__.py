"""The seed's four workflow patterns, each a small async function over agents (any async callables).

- `sequential(stages, value)`: A -> B -> C, each stage's output the next one's input (sequential.py).
- `fan_out(branches, ...)`: A -> [B, C, D] with a timeout per branch; partial results plus which branches
  failed and why (parallel.py).
- `Router(...)`: picks the agent for a task from the outcomes of similar past tasks in memory, with a default
  route (routing.py).
- `self_improve(generate, evaluate)`: generate, evaluate, retry with the feedback; at most 3 attempts,
  another strategy after 2 failures, then escalation (self_improve.py).

For a durable chain (checkpoints, resume), make each stage a step of `run_workflow`; these patterns run
inside a step and are traced as spans under it.
"""

from .parallel import BranchFailure, FanOut, fan_out
from .routing import Route, Router
from .self_improve import Attempt, Improved, self_improve
from .sequential import sequential

__all__ = [
    "Attempt",
    "BranchFailure",
    "FanOut",
    "Improved",
    "Route",
    "Router",
    "fan_out",
    "self_improve",
    "sequential",
]
