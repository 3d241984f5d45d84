"""Token routes: `GET /whoami` (any valid token: its own scope), and `GET|POST /tokens`, `DELETE /tokens/{id}`
(the `admin` right): list, create (the token is in the answer once) and revoke scoped tokens.

A scoped token with `admin` manages only tokens inside its own scope and creates none wider than itself
(403 otherwise); the admin token manages all. A revocation here is seen by this process's next request; other
replicas see it within `token_cache_seconds` (see memory_spine/tokens.py).
"""

from __future__ import annotations

import threading
import time
from typing import Annotated, Any

from fastapi import APIRouter, Body, Request
from pydantic import BaseModel, ConfigDict, Field
from starlette.responses import Response

from ..errors import NotFound, NotReady
from ..storage.tokens import token_store
from ..tokens import ForbiddenNamespace, TokenResolver, hash_token, make_row, parse_duration, public
from .auth import request_scope
from .responses import JSON

router = APIRouter()
_LOCK = threading.Lock()
_ERR = {401: {"description": "Missing or wrong bearer token"}, 403: {"description": "Outside the token's scope"}}


def resolver_for(app: Any) -> TokenResolver:
    """The app's scoped-token resolver, made on first use once the service (and so its storage) is open."""
    found = getattr(app.state, "tokens", None)
    if found is not None:
        return found
    svc = app.state.service
    if svc is None:
        raise NotReady("the service is still loading")
    with _LOCK:
        if getattr(app.state, "tokens", None) is None:
            settings = app.state.settings
            app.state.tokens = TokenResolver(
                token_store(svc.storage), ttl=settings.token_cache_seconds, size=settings.token_cache_size
            )
    return app.state.tokens


class TokenIn(BaseModel):
    """A token to create: the namespaces it reaches (`team/` for a subtree), its rights, its lifetime."""

    model_config = ConfigDict(extra="forbid")

    namespaces: list[str] = Field(min_length=1, max_length=64)
    rights: list[str] = Field(default=["read", "write"], max_length=3)
    expires: str | float | None = Field(default=None, description="30d, 12h, 90m, or seconds; none: never")
    name: str | None = Field(default=None, max_length=200)


@router.get("/whoami", responses=_ERR)
def whoami(request: Request) -> Response:
    """The scope of the token this request bears: namespaces (null: all), rights, expiry."""
    return JSON(request_scope(request).describe())


def _visible(request: Request, row: dict[str, Any]) -> bool:
    return request_scope(request).within(row["namespaces"], row["rights"])


@router.get("/tokens", responses=_ERR)
def list_tokens(request: Request) -> Response:
    """Every token this admin may manage (never a token's secret: only its hash is stored)."""
    rows = resolver_for(request.app).store.list()
    return JSON({"tokens": [public(r) for r in rows if _visible(request, r)]})


@router.post("/tokens", status_code=201, responses=_ERR)
def create_token(body: Annotated[TokenIn, Body()], request: Request) -> Response:
    """Create a scoped token; the answer's `token` is shown this once."""
    scope = request_scope(request)
    expires = None if body.expires is None else parse_duration(body.expires)
    row, token = make_row(body.namespaces, body.rights, name=body.name, expires_in=expires)
    for right in row["rights"]:
        scope.check_right(right)
    for ns in row["namespaces"]:
        if not scope.covers(ns):
            raise ForbiddenNamespace(ns, scope.namespaces or ())
    resolver_for(request.app).store.create(row, hash_token(token))
    return JSON({**public(row), "token": token}, status_code=201)


@router.delete("/tokens/{id}", responses={**_ERR, 404: {"description": "No such token"}})
def revoke_token(id: str, request: Request) -> Response:
    """Revoke a token: from the next request on (here; other replicas within token_cache_seconds) it is a 401."""
    tokens = resolver_for(request.app)
    row = next((r for r in tokens.store.list() if r["id"] == id), None)
    if row is None or not _visible(request, row):
        raise NotFound(f"no token {id!r}")
    revoked = tokens.store.revoke(id, time.time())
    tokens.forget(id)
    return JSON(public(revoked or row))
