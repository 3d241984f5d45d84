"""Header and body timeouts for uvicorn's httptools protocol: slow clients get 408 and a closed connection.

uvicorn times out only idle keep-alive connections (`timeout_keep_alive`, armed after a response); a client that
opens a connection and sends its headers, or its body, a byte every few seconds is never timed out, and any
number of such connections hold their sockets and request state for as long as the client likes (8 were held
for 40 s in the attack that prompted this). h11 and httptools have no option for it either, and an ASGI
middleware only sees a request once its headers are complete, so the timeouts live here, in the protocol:

- header timeout: from the connection opening, or from the first byte of a request on a kept-alive
  connection, until its headers are complete;
- body timeout: from the headers until the whole body has arrived. It is a deadline for the whole body, not
  an idle timer, so dripping a byte a second does not extend it. It is paused while uvicorn itself stops
  reading (flow control: the app has not consumed the body yet), which is not the client's fault.

`serve` passes the class built by `timed_protocol()` to uvicorn as its `http` protocol.
"""

from __future__ import annotations

import asyncio
import logging
from typing import Any

import orjson
from uvicorn.protocols.http.httptools_impl import STATUS_LINE, HttpToolsProtocol

from .errors import error_body

log = logging.getLogger("memory_spine.http")


def _timeout_response(what: str, seconds: float) -> bytes:
    message = f"the request's {what} did not arrive within {seconds:g} seconds"
    body = orjson.dumps(error_body("request_timeout", message, what))
    head = [
        STATUS_LINE[408],
        b"content-type: application/json\r\n",
        b"content-length: " + str(len(body)).encode() + b"\r\n",
        b"connection: close\r\n",
        b"\r\n",
    ]
    return b"".join(head) + body


class TimedHttpToolsProtocol(HttpToolsProtocol):
    """uvicorn's httptools protocol plus a header and a body timeout (class attributes, 0: off)."""

    header_timeout: float = 10.0
    body_timeout: float = 30.0

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self._deadline: asyncio.TimerHandle | None = None
        self._begun = False  # a byte of the current request has arrived

    def _arm(self, seconds: float, handler: Any) -> None:
        self._disarm()
        if seconds > 0:
            self._deadline = self.loop.call_later(seconds, handler)

    def _disarm(self) -> None:
        if self._deadline is not None:
            self._deadline.cancel()
            self._deadline = None

    # -- uvicorn's callbacks ----------------------------------------------------------------------------
    def connection_made(self, transport: asyncio.Transport) -> None:  # type: ignore[override]
        super().connection_made(transport)
        self._arm(self.header_timeout, self._headers_too_slow)

    def connection_lost(self, exc: Exception | None) -> None:
        self._disarm()
        super().connection_lost(exc)

    def on_message_begin(self) -> None:
        super().on_message_begin()
        self._begun = True
        if self._deadline is None:  # a later request on a kept-alive connection
            self._arm(self.header_timeout, self._headers_too_slow)

    def on_headers_complete(self) -> None:
        super().on_headers_complete()
        self._arm(self.body_timeout, self._body_too_slow)

    def on_message_complete(self) -> None:
        self._disarm()
        self._begun = False
        super().on_message_complete()

    def handle_websocket_upgrade(self) -> None:
        self._disarm()  # the connection belongs to the WebSocket protocol from here
        super().handle_websocket_upgrade()

    # -- the timeouts -----------------------------------------------------------------------------------
    def _headers_too_slow(self) -> None:
        self._deadline = None
        if self.transport.is_closing():
            return
        if self.cycle is not None and not self.cycle.response_complete:
            # A pipelined request's headers trickle in while we still answer the one before: not judged yet.
            self._arm(self.header_timeout, self._headers_too_slow)
            return
        if not self._begun:
            # Opened and never used (a pre-opened pool connection): close quietly, as for an idle keep-alive;
            # a 408 there could be read as the answer to a request the client is sending right now.
            self.transport.close()
            return
        self._give_up("headers", self.header_timeout)

    def _body_too_slow(self) -> None:
        self._deadline = None
        if self.transport.is_closing():
            return
        if self.flow.read_paused:
            # uvicorn stopped reading until the app takes what it has: the wait is ours, not the client's.
            self._arm(self.body_timeout, self._body_too_slow)
            return
        cycle = self.cycle
        if cycle is not None and cycle.response_started:
            # The app answered without reading the whole body (say, a 413 or 401): nothing more to say.
            self.transport.close()
            return
        self._give_up("body", self.body_timeout)

    def _give_up(self, what: str, seconds: float) -> None:
        client = f"{self.client[0]}:{self.client[1]}" if self.client else None
        log.warning(
            "request timeout", extra={"event": "request_timeout", "part": what, "seconds": seconds, "client": client}
        )
        if self.cycle is not None and not self.cycle.response_complete:
            # The app, waiting for the rest of the body, sees a disconnect: its response goes nowhere, ours first.
            self.cycle.disconnected = True
            self.cycle.message_event.set()
        self.transport.write(_timeout_response(what, seconds))
        self.transport.close()


def timed_protocol(header_timeout: float, body_timeout: float) -> type[TimedHttpToolsProtocol]:
    """A protocol class for `uvicorn.Config(http=...)` with these timeouts (seconds; 0 turns one off)."""
    return type(
        "TimedHttpToolsProtocol",
        (TimedHttpToolsProtocol,),
        {"header_timeout": float(header_timeout), "body_timeout": float(body_timeout)},
    )
