"""Bearer-token check: when a token is configured, every route but /health and the console's page shells needs
`Authorization: Bearer <t>`.

The comparison is constant-time (hmac.compare_digest) and the token is never logged.
"""

from __future__ import annotations

import hmac

from ..errors import Unauthorized

OPEN_PATHS = frozenset({"/health", "/"})
#: Swagger UI's own files (from the fastapi-offline package): vendor code, no data.
DOCS_STATIC = "/docs/static/"


def is_open(path: str) -> bool:
    """Paths served without a token: /health, `/` (a redirect to /ui), Swagger UI's files, and the console's HTML
    shells and static files under /ui, which hold no data (their data comes from /ui/api/ and the rest of the API,
    which need the token)."""
    if path in OPEN_PATHS or path.startswith(DOCS_STATIC):
        return True
    return (path == "/ui" or path.startswith("/ui/")) and not (path == "/ui/api" or path.startswith("/ui/api/"))


def check_bearer(header: bytes | None, token: bytes) -> None:
    """Raise Unauthorized unless `header` is `Bearer <token>`."""
    if not header:
        raise Unauthorized("this service requires a token: send 'Authorization: Bearer <token>'")
    scheme, _, value = header.partition(b" ")
    if scheme.lower() != b"bearer" or not hmac.compare_digest(value.strip(), token):
        raise Unauthorized("the bearer token is missing or wrong")
