"""Tracing: OpenTelemetry spans for workflows, steps, agents, tools and memory calls; the span processor that
stores each finished workflow trace in Memory Spine; JSON logs that carry the trace and span ids.

The kit's public name for three modules whose imports point one way:
- spans.py: the tracer, `span()`, `record()`, `current_trace_id()`, the span around each memory call;
- trace_store.py: `install()`, `TraceStore` (stores each workflow's trace, in the seed's shape), `flush()`,
  `save_partial()`;
- logs.py: `JsonFormatter`, `configure_logging()`.
Spans are plain OpenTelemetry spans, so any OTel exporter added to the provider sees them too. Running
workflows is durable.py's job, HTTP client.py's.
"""

from __future__ import annotations

from typing import Any

from . import spans as _spans
from .logs import JsonFormatter, configure_logging
from .spans import KIND, MAX_RECORDED_CHARS, WORKFLOW, WORKFLOW_ID, current_trace_id, memory_span, record, span, tracer
from .trace_store import TraceStore, flush, install, save_partial

__all__ = [
    "KIND",
    "MAX_RECORDED_CHARS",
    "WORKFLOW",
    "WORKFLOW_ID",
    "JsonFormatter",
    "TraceStore",
    "configure_logging",
    "current_trace_id",
    "flush",
    "install",
    "memory_span",
    "record",
    "save_partial",
    "span",
    "tracer",
]


def __getattr__(name: str) -> Any:
    # The provider install() chose lives in spans.py; read it there (it changes after import).
    if name == "_provider":
        return _spans.installed_provider()
    raise AttributeError(name)
