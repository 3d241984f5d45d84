"""The one table of what each route needs: `open` (no token), `any` (any valid token), `read`, `write`, `admin`.

A request bearing a scoped token must hold the right of the route it reaches (403 `forbidden_right`
otherwise); the admin token (`serve --token`) holds all. tests/unit/test_tokens.py walks the app's route
table against this one: a route added without a class here fails that test, and a route missing here is
refused to every scoped token (`admin` is the default), never let through.

`admin` is what reaches across namespaces or acts on the service itself: token management, delete-by-filter
(`DELETE /memories`, the one bulk erase) and `/metrics` (process-wide counts of every namespace, for the
operator's scraper; in `EVERY_NAMESPACE`, so only the admin token itself reaches it). Import, export and backup
are CLI commands on the data dir or database, not routes.
"""

from __future__ import annotations

from typing import Literal

Right = Literal["open", "any", "read", "write", "admin"]

#: (method, route template) -> right. "*" stands for every method of a mount.
ROUTE_RIGHTS: dict[tuple[str, str], Right] = {
    # no data: a redirect, health probes, Swagger UI's files, the console's page shells and static files
    ("GET", "/"): "open",
    ("GET", "/health"): "open",
    ("*", "/docs/static/{path}"): "open",
    ("GET", "/docs/oauth2-redirect"): "open",
    ("GET", "/ui"): "open",
    ("GET", "/ui/"): "open",
    ("GET", "/ui/login"): "open",
    ("GET", "/ui/memories"): "open",
    ("GET", "/ui/memories/{id}"): "open",
    ("GET", "/ui/workflows"): "open",
    ("GET", "/ui/workflows/{workflow_id}"): "open",
    ("GET", "/ui/traces"): "open",
    ("GET", "/ui/traces/{trace_id}"): "open",
    ("GET", "/ui/docs"): "open",
    ("GET", "/ui/static/{name}"): "open",
    # the API's description and the token's own scope
    ("GET", "/openapi.json"): "any",
    ("HEAD", "/openapi.json"): "any",
    ("GET", "/docs"): "any",
    ("GET", "/redoc"): "any",
    ("GET", "/whoami"): "any",
    # reads
    ("POST", "/search"): "read",
    ("GET", "/memories"): "read",
    ("GET", "/memories/{id}"): "read",
    ("GET", "/keys"): "read",
    ("GET", "/keys/{key}"): "read",
    ("GET", "/claims/{key}"): "read",
    ("GET", "/stats"): "read",
    ("GET", "/namespaces"): "read",
    ("GET", "/memories/{id}/history"): "read",
    ("GET", "/deleted"): "read",
    ("POST", "/ui/api/memories"): "read",
    ("GET", "/ui/api/overview"): "read",
    ("GET", "/ui/api/workflows"): "read",
    ("GET", "/ui/api/workflows/{workflow_id}"): "read",
    ("GET", "/ui/api/traces"): "read",
    ("GET", "/ui/api/traces/{trace_id}"): "read",
    # writes
    ("POST", "/ingest"): "write",
    ("POST", "/ingest/batch"): "write",
    ("PATCH", "/memories/{id}"): "write",
    ("DELETE", "/memories/{id}"): "write",
    ("POST", "/claims"): "write",
    ("DELETE", "/claims/{key}"): "write",
    ("POST", "/memories/{id}/revert"): "write",
    ("POST", "/memories/{id}/restore"): "write",
    ("POST", "/conversations"): "write",
    ("DELETE", "/conversations/{id}"): "write",
    # admin
    ("DELETE", "/memories"): "admin",
    ("GET", "/metrics"): "admin",
    ("GET", "/tokens"): "admin",
    ("POST", "/tokens"): "admin",
    ("DELETE", "/tokens/{id}"): "admin",
}


#: Routes that answer for every namespace at once and cannot be narrowed to a scope's: only a token reaching every
#: namespace (the admin token) may call them; a scoped token, even with `admin`, gets 403 forbidden_namespace.
EVERY_NAMESPACE: frozenset[tuple[str, str]] = frozenset({("GET", "/metrics")})


def right_of(method: str, template: str) -> Right:
    """The right a route needs; `admin` for one missing from the table (refused to scoped tokens, not let through)."""
    return ROUTE_RIGHTS.get((method, template)) or ROUTE_RIGHTS.get(("*", template)) or "admin"
