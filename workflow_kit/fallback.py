"""Fallback chains: try the primary, then something cheaper, then a cached or degraded answer.

    summary = await fallback(
        [summariser, cheap_summariser, constant({"summary": "reviews attached"}, name="canned")], reviews
    )

Each link is called with the same arguments, in order, until one returns. A link that raises (an error, a
timeout budget running out, an open circuit breaker) hands over to the next; control-flow signals never do
(cancellation, a shutdown, a paused workflow, a scope or budget refusal: they end the chain as they would end a
step). The path taken is recorded on the chain's span: `workflow_kit.fallback.path` (one `name:ok` or
`name:ErrorType` per link tried), `workflow_kit.fallback.used` and `workflow_kit.fallback.degraded` (True when
it was not the first link), plus one `fallback.link_failed` event per failure. All links failing raises
`AllFailed` with every error. `with_path=True` returns a `FallbackResult` instead of the bare value.
"""

from __future__ import annotations

import inspect
import logging
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

from . import records, tracing
from .errors import AllFailed

__all__ = ["FallbackResult", "constant", "fallback"]

log = logging.getLogger("workflow_kit.fallback")

# Signals that end the chain: not failures of a link, decisions about the whole run.

Link = Callable[..., Any] | tuple[str, Callable[..., Any]]


@dataclass
class FallbackResult:
    """The value, the link that produced it, and every link tried (`name:ok` / `name:ErrorType`)."""

    value: Any
    used: str
    path: list[str]

    @property
    def degraded(self) -> bool:
        return len(self.path) > 1


def constant(value: Any, *, name: str = "cached") -> tuple[str, Callable[..., Any]]:
    """A last link that always answers `value` (a cached or degraded answer)."""
    return name, lambda *args, **kwargs: value


def _name(link: Link) -> tuple[str, Callable[..., Any]]:
    if isinstance(link, tuple):
        return link
    return getattr(link, "name", None) or getattr(link, "__name__", None) or repr(link), link


async def fallback(
    chain: Sequence[Link], *args: Any, name: str = "fallback", with_path: bool = False, **kwargs: Any
) -> Any:
    """Call the links of `chain` with `*args, **kwargs` until one returns; see the module docstring.

    Raises:
        AllFailed: every link raised; `.attempts` holds `(name, exception)` in order.
    """
    links = [_name(link) for link in chain]
    path: list[str] = []
    errors: list[tuple[str, BaseException]] = []
    with tracing.span(f"fallback {name}", kind="fallback") as span:
        for index, (link_name, fn) in enumerate(links):
            try:
                value = fn(*args, **kwargs)
                if inspect.isawaitable(value):
                    value = await value
            except Exception as exc:
                path.append(f"{link_name}:{type(exc).__name__}")
                errors.append((link_name, exc))
                if span.is_recording():
                    span.add_event(
                        records.EVENT_FALLBACK,
                        {"link": link_name, "index": index, "error": f"{type(exc).__name__}: {exc}"[:500]},
                    )
                log.warning(
                    "fallback: link failed, trying the next",
                    extra={"chain": name, "link": link_name, "error": f"{type(exc).__name__}: {exc}"},
                )
                continue
            path.append(f"{link_name}:ok")
            span.set_attribute(records.ATTR_FALLBACK_PATH, path)
            span.set_attribute(records.ATTR_FALLBACK_USED, link_name)
            span.set_attribute(records.ATTR_FALLBACK_DEGRADED, index > 0)
            return FallbackResult(value, link_name, path) if with_path else value
        span.set_attribute(records.ATTR_FALLBACK_PATH, path)
        raise AllFailed(errors)
