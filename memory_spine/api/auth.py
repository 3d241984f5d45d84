"""Bearer-token check: when a token is configured, every route but /health and the console's page shells needs
`Authorization: Bearer <t>`: the admin token (`serve --token`, every namespace and right) or a scoped token
(`memory-spine token create`, see memory_spine/tokens.py).

The middleware resolves the request's `Scope` once and leaves it in the ASGI scope under `SCOPE_KEY`; it also
refuses a scoped token a route's right (api/rights.py). Routes then call `authorize(request, namespaces)` once
with the namespaces they touch. The admin token is compared in constant time; no token is ever logged.
"""

from __future__ import annotations

import hmac
from collections.abc import Callable, Iterable
from typing import Any

from starlette.concurrency import run_in_threadpool
from starlette.requests import Request

from ..errors import Unauthorized
from ..namespaces import Selector, selector
from ..namespaces import resolve as resolve_namespace
from ..tokens import PREFIX, Scope, TokenResolver, hash_token
from .rights import right_of

OPEN_PATHS = frozenset({"/health", "/", "/docs/oauth2-redirect"})
#: Swagger UI's own files (from the fastapi-offline package): vendor code, no data.
DOCS_STATIC = "/docs/static/"
#: Where the middleware leaves the request's Scope in the ASGI scope.
SCOPE_KEY = "memory_spine.scope"


def is_open(path: str) -> bool:
    """Paths served without a token: /health, `/` (a redirect to /ui), Swagger UI's files and OAuth2 redirect page,
    and the console's HTML shells and static files under /ui, which hold no data (their data comes from /ui/api/
    and the rest of the API, which need the token)."""
    if path in OPEN_PATHS or path.startswith(DOCS_STATIC):
        return True
    return (path == "/ui" or path.startswith("/ui/")) and not (path == "/ui/api" or path.startswith("/ui/api/"))


def bearer(header: bytes | None) -> bytes:
    """The token of an `Authorization: Bearer <token>` header; Unauthorized for none or another scheme."""
    if not header:
        raise Unauthorized("this service requires a token: send 'Authorization: Bearer <token>'")
    scheme, _, value = header.partition(b" ")
    if scheme.lower() != b"bearer" or not value.strip():
        raise Unauthorized("the bearer token is missing or wrong")
    return value.strip()


async def resolve(header: bytes | None, admin_token: bytes, resolver: Callable[[], TokenResolver]) -> Scope:
    """The Scope a request's Authorization header grants: FULL for the admin token, a scoped token's from the
    store (cached; the store is read in the thread pool), else Unauthorized."""
    value = bearer(header)
    if hmac.compare_digest(value, admin_token):
        return Scope.FULL
    if not value.startswith(PREFIX.encode()) or len(value) > 128:
        raise Unauthorized("the bearer token is missing or wrong")  # not a scoped token: no lookup for junk
    tokens = resolver()
    h = hash_token(value.decode("latin-1"))
    row = tokens.cached(h)
    if row is None:
        row = await run_in_threadpool(tokens.load, h)
    return tokens.scope(row)


def request_scope(request: Request) -> Scope:
    """The Scope the middleware resolved for this request (FULL when the service needs no token)."""
    found = request.scope.get(SCOPE_KEY)
    if found is None:  # no RequestMiddleware in front (it always sets one): refuse rather than grant everything
        raise Unauthorized("no authentication ran for this request")
    return found


def authorize(request: Request, namespaces: str | Iterable[str] | Selector) -> Scope:
    """The one call a route makes with the namespaces it reads or changes (a name, several, or a search's
    `Selector`, whose subtrees must lie inside the scope's): 403 (`forbidden_namespace` naming the namespace, or
    `forbidden_right`) unless the request's token reaches them with the route's right."""
    scope = request_scope(request)
    if scope.is_full:
        return scope
    if isinstance(namespaces, Selector):
        namespaces = [*namespaces.names, *namespaces.prefixes]
    elif not isinstance(namespaces, str):
        namespaces = list(namespaces)
    route: Any = request.scope.get("route")
    template = getattr(route, "path_format", None) or request.url.path
    scope.check(namespaces, right_of(request.method, template))
    return scope


def requested(body: str | list[str] | None, outside: str | None) -> Selector:
    """The namespaces a request names: its body's `namespace` (a name, a list or a subtree) if given, else the
    query's or header's (`outside`), else `default`: what to `authorize` where the body may name several."""
    return selector(body) if body is not None else selector(resolve_namespace(outside))


def visible(request: Request, namespaces: Iterable[str]) -> list[str]:
    """Those of `namespaces` the request's token reaches: for answers that list namespaces (stats, /namespaces)."""
    scope = request_scope(request)
    return list(namespaces) if scope.is_full else [ns for ns in namespaces if scope.covers(ns)]
