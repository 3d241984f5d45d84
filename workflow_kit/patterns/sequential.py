"""Sequential chain: A -> B -> C -> D, one stage's output the next one's input.

    report = await sequential([fetch_diff, review, summarise], pr_number)

Each stage runs as a span (kind `stage`) with its input and output recorded, so a wrong answer at the end can
be followed back to the stage that produced it. A failing stage stops the chain: its exception propagates, with
a `stage` note naming where it happened. The chain itself keeps nothing: to survive a crash, run the stages as
steps of `run_workflow`, which checkpoints each one.
"""

from __future__ import annotations

import inspect
from collections.abc import Callable, Sequence
from typing import Any

from .. import tracing

__all__ = ["sequential"]

Stage = Callable[[Any], Any] | tuple[str, Callable[[Any], Any]]


def _named(stage: Stage) -> tuple[str, Callable[[Any], Any]]:
    if isinstance(stage, tuple):
        return stage
    return getattr(stage, "name", None) or getattr(stage, "__name__", None) or repr(stage), stage


async def sequential(stages: Sequence[Stage], value: Any, *, name: str = "sequential") -> Any:
    """Feed `value` through `stages` in order; returns the last stage's output."""
    with tracing.span(f"sequential {name}", kind="pattern", stages=[_named(s)[0] for s in stages]):
        for index, stage in enumerate(stages):
            stage_name, fn = _named(stage)
            with tracing.span(stage_name, kind="stage", inputs=value, index=index) as span:
                try:
                    out = fn(value)
                    if inspect.isawaitable(out):
                        out = await out
                except Exception as exc:
                    exc.add_note(f"in stage {index} ({stage_name!r}) of sequential {name!r}")
                    raise
                tracing.record(outputs=out, on=span)
            value = out
        return value
