"""One pure-ASGI middleware for every request: request id, Host check, auth (the request's Scope, and the route's
right for a scoped token), body-size cap, a JSON log line, metrics.

Pure ASGI (not BaseHTTPMiddleware) so it adds microseconds, not a task per request, to the hot path.
"""

from __future__ import annotations

import logging
import time
import uuid
from collections.abc import Callable, Sequence
from typing import Any

import orjson
from starlette.routing import Match

from ..errors import MemorySpineError, MisdirectedRequest, PayloadTooLarge, Unauthorized
from ..logs import request_id
from ..tokens import Scope, TokenResolver
from .auth import SCOPE_KEY, is_open, resolve
from .errors import refusal_body, status_for
from .hosts import HostCheck
from .rights import EVERY_NAMESPACE, right_of

log = logging.getLogger("memory_spine.http")

UNMATCHED = "unmatched"  # the one metrics/log route label of every path no route matches


class RequestMiddleware:
    """Wraps the app: assigns `X-Request-ID`, enforces auth and the body cap, logs and measures."""

    def __init__(
        self,
        app: Any,
        *,
        token: str | None,
        max_body_bytes: int,
        metrics: Any,
        routes: Sequence[Any] = (),
        hosts: HostCheck | None = None,
        tokens: Callable[[], TokenResolver] | None = None,
    ) -> None:
        self.app = app
        self.token = token.encode() if token else None
        self.max_body = max_body_bytes
        self.metrics = metrics
        self.routes = routes
        self.hosts = hosts
        self.tokens = tokens  # the scoped tokens' resolver (made once the service is open); None: admin token only

    def _no_tokens(self) -> TokenResolver:
        raise Unauthorized("the bearer token is missing or wrong")

    def _match(self, scope: dict) -> Any:
        """The route a request will reach (method and path), or None (a 404 or 405 the router answers).

        The routes' own regexes, not `Route.matches` (which builds a child scope per candidate): 20 us, not 90 us,
        for a scoped token's request over the whole table."""
        method, path = scope.get("method", ""), scope.get("path", "")
        root = scope.get("root_path", "")
        if root and path.startswith(root):
            path = path[len(root) :]
        for candidate in self.routes:
            methods = getattr(candidate, "methods", None)
            if (methods is None or method in methods) and candidate.path_regex.match(path):
                return candidate
        return None

    def _template(self, scope: dict) -> str:
        """The route template a request is measured and logged under: from the app's route table only.

        A request the router saw carries its route. One refused before routing (401, 413, 421) is matched
        against the table here, so `/memories` without a token still counts as `/memories`. Anything else is
        `unmatched`: a raw path must never become a label, or every random path would be a new time series
        (10k of them made one scrape 467 MB).
        """
        route = scope.get("route")
        if route is None:
            for candidate in self.routes:
                match, _ = candidate.matches(scope)
                if match != Match.NONE:
                    route = candidate
                    break
        # path_format drops converters: /memories/{id:path} is measured as /memories/{id}
        template = getattr(route, "path_format", None) or getattr(route, "path", None)
        return template or UNMATCHED

    async def _reject(self, send: Any, exc: Any, rid: str) -> int:
        status = status_for(exc)
        body = orjson.dumps(refusal_body(exc))
        headers = [(b"content-type", b"application/json"), (b"x-request-id", rid.encode())]
        if isinstance(exc, Unauthorized):
            headers.append((b"www-authenticate", b"Bearer"))
        await send({"type": "http.response.start", "status": status, "headers": headers})
        await send({"type": "http.response.body", "body": body})
        return status

    async def __call__(self, scope: dict, receive: Any, send: Any) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        started = time.perf_counter()
        headers = dict(scope.get("headers") or [])
        rid = headers.get(b"x-request-id", b"").decode("latin-1")[:128] or uuid.uuid4().hex
        token_ctx = request_id.set(rid)
        status_box = {"status": 500}
        path = scope.get("path", "")
        try:
            if self.hosts is not None and path != "/health" and not self.hosts.allows(headers.get(b"host")):
                host = headers.get(b"host", b"").decode("latin-1")[:256]
                exc = MisdirectedRequest(
                    f"this service does not answer for the host {host!r}: a page on another site reaching it by"
                    " DNS rebinding is refused; if that name is yours, add it to --allowed-hosts"
                    " (MEMORY_SPINE_ALLOWED_HOSTS)",
                    field="Host",
                )
                status_box["status"] = await self._reject(send, exc, rid)
                return
            granted = Scope.FULL
            if self.token is not None and not is_open(path):
                try:
                    granted = await resolve(headers.get(b"authorization"), self.token, self.tokens or self._no_tokens)
                    if not granted.is_full and (route := self._match(scope)) is not None:
                        template = getattr(route, "path_format", None) or route.path
                        granted.check_right(right_of(scope.get("method", ""), template))
                        if (scope.get("method", ""), template) in EVERY_NAMESPACE:
                            granted.check_every_namespace()
                except MemorySpineError as exc:  # Unauthorized, ForbiddenRight, NotReady (tokens before the service)
                    status_box["status"] = await self._reject(send, exc, rid)
                    return
            scope[SCOPE_KEY] = granted
            length = headers.get(b"content-length")
            if length is not None and length.isdigit() and int(length) > self.max_body:
                exc = PayloadTooLarge("body", f"is {int(length)} bytes; the limit is {self.max_body}")
                status_box["status"] = await self._reject(send, exc, rid)
                return

            if length is None and scope.get("method") in ("POST", "PUT", "PATCH", "DELETE"):
                # A chunked body has no length to check up front: read it here, under the cap, then replay it.
                chunks: list[bytes] = []
                received = 0
                while True:
                    message = await receive()
                    if message["type"] != "http.request":
                        # The client left (or timed out) mid-body: a part of a body is no request to act on.
                        status_box["status"] = 499
                        return
                    chunks.append(message.get("body", b""))
                    received += len(chunks[-1])
                    if received > self.max_body:
                        exc = PayloadTooLarge("body", f"is over the limit of {self.max_body} bytes")
                        status_box["status"] = await self._reject(send, exc, rid)
                        return
                    if not message.get("more_body"):
                        break
                replay = [{"type": "http.request", "body": b"".join(chunks), "more_body": False}]

                async def receive_replay() -> dict:
                    return replay.pop() if replay else await receive()

                app_receive = receive_replay
            else:
                app_receive = receive

            async def send_wrapper(message: dict) -> None:
                if message["type"] == "http.response.start":
                    status_box["status"] = message["status"]
                    message.setdefault("headers", [])
                    message["headers"] = [*message["headers"], (b"x-request-id", rid.encode())]
                await send(message)

            await self.app(scope, app_receive, send_wrapper)
        finally:
            elapsed = time.perf_counter() - started
            template = self._template(scope)
            if self.metrics is not None:
                self.metrics.observe_request(scope.get("method", ""), template, status_box["status"], elapsed)
            # /health is what probes poll every few seconds (and start-up scripts, while it answers 503 loading):
            # logged at debug, not to fill the info log. What makes it fail is logged on its own (load_failed,
            # health_database).
            quiet = path == "/health"
            log.log(
                logging.DEBUG if quiet else logging.INFO,
                "request",
                extra={
                    "event": "request",
                    "method": scope.get("method"),
                    "path": path,
                    "route": template,
                    "status": status_box["status"],
                    "ms": round(elapsed * 1000, 3),
                },
            )
            request_id.reset(token_ctx)
