"""The one table from error class to HTTP status, and the one JSON error body.

Body: `{"error": {"type", "message", "field"?}}`, plus `"errors": [{"field", "message"}]` for validation
failures, `"claim"` for a lost claim and `"current_version"` (with an `ETag` header) for a failed `If-Match` /
`if_version` (412). Statuses are looked up along the exception's MRO, so a subclass without its own entry
inherits its parent's status.
"""

from __future__ import annotations

import logging
import re
from typing import Any

from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from starlette.exceptions import HTTPException as StarletteHTTPException

from ..errors import (
    Conflict,
    DataDirLocked,
    Forbidden,
    InvalidInput,
    MemorySpineError,
    MisdirectedRequest,
    NotFound,
    NotReady,
    PayloadTooLarge,
    PreconditionFailed,
    QueryTimeout,
    ReadOnlyStorage,
    RequestTimeout,
    StorageError,
    StorageFull,
    Unauthorized,
)
from .responses import JSON as ORJSONResponse

log = logging.getLogger("memory_spine.api")

STATUS: dict[type[MemorySpineError], int] = {
    InvalidInput: 422,
    PayloadTooLarge: 413,
    NotFound: 404,
    Conflict: 409,
    PreconditionFailed: 412,
    Unauthorized: 401,
    RequestTimeout: 408,
    MisdirectedRequest: 421,
    Forbidden: 403,
    NotReady: 503,
    QueryTimeout: 503,
    StorageError: 503,
    StorageFull: 507,
    ReadOnlyStorage: 503,
    DataDirLocked: 503,
    MemorySpineError: 500,
}


def etag(version: int) -> str:
    """A record's version as a strong entity tag (RFC 9110), the form `If-Match` sends back."""
    return f'"{version}"'


def status_for(exc: MemorySpineError) -> int:
    for cls in type(exc).__mro__:
        if cls in STATUS:
            return STATUS[cls]
    return 500


def error_body(type_: str, message: str, field: str | None = None, **extra: Any) -> dict[str, Any]:
    err: dict[str, Any] = {"type": type_, "message": message}
    if field is not None:
        err["field"] = field
    return {"error": err, **extra}


def refusal_body(exc: MemorySpineError) -> dict[str, Any]:
    """The body of a refusal that needs no request: 401, 403 (a 403 of a scope names the namespace or right in
    the error object, e.g. `{"error": {"type": "forbidden_namespace", "field": "namespace", "namespace": "b"}}`)."""
    body = error_body(exc.type, exc.message, exc.field)
    if isinstance(exc, Forbidden):
        body["error"].update(getattr(exc, "detail", None) or {})
    return body


# pydantic names the member of a union that failed (`expires_at.float`, `importance.list[...]`): a type, not a field.
_UNION_MEMBER = re.compile(r"(float|int|str|bool|datetime|date|none|(list|dict|literal|function-\w+)\[.*\])")


def _field(loc: tuple | list) -> str:
    parts = [str(p) for p in loc]
    if parts and parts[0] in ("body", "query", "path", "header"):
        parts = parts[1:]  # where it came from, not which field
    # A bracketed member (`list[...]`) anywhere; a plain one (`float`) only as the last part, and only one: a
    # field may itself be called `date` (a conversation session's `date` fails as `date.float`, `date.datetime`).
    parts = [p for p in parts if not (_UNION_MEMBER.fullmatch(p) and "[" in p)]
    if len(parts) > 1 and _UNION_MEMBER.fullmatch(parts[-1]):
        parts = parts[:-1]
    out = ""
    for p in parts:
        out += f"[{p}]" if p.isdigit() else (f".{p}" if out else p)
    return out or "body"


def _where(err: dict[str, Any]) -> str:
    if err.get("type") == "json_invalid":
        return "body"  # its loc ends with the character offset, which is not a field
    return _field(err.get("loc", ()))


def _problem(err: dict[str, Any]) -> str:
    if err.get("type") == "extra_forbidden":
        return "is not a known field"
    if err.get("type") == "missing":
        return "is required"
    if err.get("type") == "json_invalid":
        return f"the body is not valid JSON ({err.get('ctx', {}).get('error', 'parse error')})"
    return str(err.get("msg", "is invalid"))


def install(app: FastAPI) -> None:
    """Register the handlers that render every error in the one shape."""

    @app.exception_handler(MemorySpineError)
    async def _ours(request: Request, exc: MemorySpineError) -> ORJSONResponse:
        status = status_for(exc)
        extra: dict[str, Any] = {}
        if isinstance(exc, Conflict):
            extra.update(exc.detail)
        if isinstance(exc, InvalidInput) and exc.field is not None:
            # The same `errors` array a validation failure carries (the `where` checks, the limits, ...).
            extra["errors"] = [{"field": exc.field, "message": getattr(exc, "problem", exc.message)}]
        if status >= 500:
            log.warning("request failed: %s", exc.message, extra={"event": "error", "error_type": exc.type})
        headers = {"WWW-Authenticate": "Bearer"} if isinstance(exc, Unauthorized) else None
        if isinstance(exc, PreconditionFailed):
            headers = {"ETag": etag(exc.current_version)}
        if isinstance(exc, Forbidden):
            return ORJSONResponse(refusal_body(exc), status_code=status)
        return ORJSONResponse(
            error_body(exc.type, exc.message, exc.field, **extra), status_code=status, headers=headers
        )

    @app.exception_handler(RequestValidationError)
    async def _validation(request: Request, exc: RequestValidationError) -> ORJSONResponse:
        errors = [{"field": _where(e), "message": _problem(e)} for e in exc.errors()]
        kind = request.headers.get("content-type", "")
        if errors and errors[0]["field"] == "body" and not kind.lower().startswith("application/json"):
            # FastAPI reads a body as JSON only when the request says so; without the header the JSON arrives as
            # bytes and fails as "not a dictionary", which would hide the real cause.
            said = f"'content-type: {kind}'" if kind else "no content-type"
            errors[0]["message"] = f"must be JSON sent with 'content-type: application/json' (the request had {said})"
        first = errors[0] if errors else {"field": "body", "message": "is invalid"}
        return ORJSONResponse(
            error_body("invalid_input", f"{first['field']}: {first['message']}", first["field"], errors=errors),
            status_code=422,
        )

    @app.exception_handler(StarletteHTTPException)
    async def _http(request: Request, exc: StarletteHTTPException) -> ORJSONResponse:
        if exc.status_code == 400:
            # FastAPI's answer to a body it could not decode at all (bytes that are not UTF-8, JSON nested past
            # Python's recursion limit): bad input like any other JSON error, so a 422 naming the body.
            message = "is not valid JSON (not UTF-8, or nested too deeply to parse)"
            errors = [{"field": "body", "message": message}]
            return ORJSONResponse(
                error_body("invalid_input", f"body: {message}", "body", errors=errors), status_code=422
            )
        kind = {404: "not_found", 405: "method_not_allowed", 413: "payload_too_large"}.get(
            exc.status_code, "http_error"
        )
        return ORJSONResponse(
            error_body(kind, str(exc.detail)), status_code=exc.status_code, headers=getattr(exc, "headers", None)
        )

    @app.exception_handler(Exception)
    async def _unexpected(request: Request, exc: Exception) -> ORJSONResponse:
        log.exception("unexpected error")
        return ORJSONResponse(error_body("internal", "internal error; see the server log"), status_code=500)
