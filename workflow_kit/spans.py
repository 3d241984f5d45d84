"""Spans: the kit's OpenTelemetry tracer, `span()` and `record()` for agent and tool calls, and the span around each
MemoryClient call. Context travels in contextvars, so asyncio tasks started inside a step inherit its span.

Storing traces is trace_store.py's job (it imports this module, never the other way round), JSON logs are
logs.py's; tracing.py gathers the three under the kit's public name `workflow_kit.tracing`.
"""

from __future__ import annotations

import contextvars
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

from opentelemetry import trace
from opentelemetry.sdk.trace import TracerProvider
from opentelemetry.trace import Span, Status, StatusCode, format_trace_id

from . import _json, records

# Span attributes the kit sets and reads back when it writes a trace.
KIND = records.ATTR_KIND  # workflow | step | agent | tool | memory | any word the caller picks
WORKFLOW_ID = records.ATTR_WORKFLOW_ID
WORKFLOW = records.ATTR_WORKFLOW
RECORDED = {
    "inputs": records.ATTR_INPUTS,
    "outputs": records.ATTR_OUTPUTS,
    "reasoning": records.ATTR_REASONING,
}
# One recorded value is cut to this many characters of JSON, so a trace stays under the service's content cap.
MAX_RECORDED_CHARS = 4000

# True while the kit stores a trace (trace_store.py sets it): that request must not open a span of its own.
SUPPRESS: contextvars.ContextVar[bool] = contextvars.ContextVar("workflow_kit_suppress_spans", default=False)

# The provider install() (trace_store.py) chose; None until then.
_provider: TracerProvider | None = None


def installed_provider() -> TracerProvider | None:
    """The provider install() chose, or None before it ran."""
    return _provider


def use_provider(provider: TracerProvider) -> None:
    """Make the kit's tracer come from `provider` (install() calls this)."""
    global _provider
    _provider = provider


def tracer() -> trace.Tracer:
    """The kit's tracer: from the provider `install()` chose, else the global one (no-op until configured)."""
    provider = _provider or trace.get_tracer_provider()
    return provider.get_tracer("workflow_kit")


@contextmanager
def span(name: str, *, kind: str = "agent", inputs: Any = None, **attributes: Any) -> Iterator[Span]:
    """Run a block as a span: an agent call, a tool call, anything worth seeing in the trace.

    `inputs` is recorded as the span's inputs; other keyword arguments become attributes (str/int/float/bool).
    An exception leaving the block marks the span as an error and is re-raised.
    """
    attrs: dict[str, Any] = {KIND: kind}
    attrs.update({k: v if isinstance(v, str | int | float | bool) else _json.dumps(v) for k, v in attributes.items()})
    with tracer().start_as_current_span(name, attributes=attrs) as current:
        if inputs is not None:
            record(inputs=inputs, on=current)
        yield current


def record(*, inputs: Any = None, outputs: Any = None, reasoning: Any = None, on: Span | None = None) -> None:
    """Record what a step or agent received, produced, and why it chose what it did, on the current span."""
    target = on or trace.get_current_span()
    if not target.is_recording():
        return
    for name, value in (("inputs", inputs), ("outputs", outputs), ("reasoning", reasoning)):
        if value is not None:
            text = _json.dumps(value)
            if len(text) > MAX_RECORDED_CHARS:
                text = _json.dumps({"truncated": True, "head": text[:MAX_RECORDED_CHARS]})
            target.set_attribute(RECORDED[name], text)


def current_trace_id() -> str | None:
    """The current trace id as 32 hex digits, or None outside a recording span."""
    ctx = trace.get_current_span().get_span_context()
    return format_trace_id(ctx.trace_id) if ctx.is_valid else None


@contextmanager
def memory_span(op: str, method: str, path: str) -> Iterator[Span | None]:
    """A span around one MemoryClient call, opened only inside a trace (a bare client call stays untraced)."""
    if SUPPRESS.get() or not trace.get_current_span().is_recording():
        yield None
        return
    from .errors import ServiceError, WorkflowKitError

    attrs = {KIND: records.KIND_MEMORY, "http.request.method": method, "url.path": path}
    with tracer().start_as_current_span(
        f"memory.{op}",
        kind=trace.SpanKind.CLIENT,
        attributes=attrs,
        record_exception=False,
        set_status_on_exception=False,
    ) as s:
        try:
            yield s
        except WorkflowKitError as exc:
            if exc.status is not None:
                s.set_attribute("http.response.status_code", exc.status)
            # A 404 from find_key or a 409 from a busy claim is an answer, not a failure of the call.
            if isinstance(exc, ServiceError):
                s.record_exception(exc)
                s.set_status(Status(StatusCode.ERROR, f"{type(exc).__name__}: {exc}"))
            raise
