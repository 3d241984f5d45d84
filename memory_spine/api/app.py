"""`create_app()`: the FastAPI application around one `MemoryService`.

Given a ready `MemoryService` (tests, embedding in-process) the app serves it at once and leaves closing it to
the caller. Given `Settings` (the `serve` command) the app opens the service in a background thread during
start-up, so `/health` answers 503 "loading" until the index and model are ready, and closes it at shutdown
(which persists the index).
"""

from __future__ import annotations

import logging
import threading
from contextlib import asynccontextmanager
from typing import Any

from fastapi import FastAPI
from fastapi.middleware.cors import CORSMiddleware
from fastapi.responses import RedirectResponse
from fastapi_offline import FastAPIOffline

from .. import __version__
from ..config import Settings
from ..embedders.weights import ModelUnavailable
from ..errors import MemorySpineError
from ..metrics import Metrics
from ..service import MemoryService
from . import errors
from .auth import is_open
from .hosts import HostCheck
from .middleware import RequestMiddleware
from .routes import router
from .tokens import resolver_for
from .tokens import router as tokens_router
from .ui import router as ui_router

log = logging.getLogger("memory_spine.api")


def _document_bearer(app: FastAPI) -> None:
    """Say in the OpenAPI schema what the middleware enforces: a bearer token on every operation but the open ones."""
    build = app.openapi

    def openapi() -> dict[str, Any]:
        if app.openapi_schema is None:
            schema = build()
            schemes = schema.setdefault("components", {}).setdefault("securitySchemes", {})
            schemes["bearer"] = {"type": "http", "scheme": "bearer"}
            for path, operations in schema["paths"].items():
                if not is_open(path):
                    for operation in operations.values():
                        operation["security"] = [{"bearer": []}]
        return app.openapi_schema

    app.openapi = openapi  # type: ignore[method-assign]


def _route_table(routes: list[Any]) -> list[Any]:
    """The app's routes, flat: what requests refused before routing are matched against for their metrics label.

    FastAPI (0.16x) keeps an included router as one entry whose matches() leaves no route in the scope, so the
    routers are walked for their own routes.
    """
    out: list[Any] = []
    for route in routes:
        if hasattr(route, "original_router"):
            out += _route_table(route.original_router.routes)
        elif hasattr(route, "path_format"):
            out.append(route)
    return out


def create_app(target: MemoryService | Settings) -> FastAPI:
    """Build the ASGI app for a service, or for settings from which the service will be opened."""
    owned = isinstance(target, Settings)
    settings = target if owned else target.settings
    metrics = Metrics()

    @asynccontextmanager
    async def lifespan(app: FastAPI):
        loader: threading.Thread | None = None
        if owned:

            def load() -> None:
                try:
                    svc = MemoryService.open(settings)
                except (MemorySpineError, ModelUnavailable) as exc:  # ModelUnavailable: `serve` checks first
                    app.state.load_error = getattr(exc, "message", str(exc))
                    log.error("could not open the service: %s", app.state.load_error, extra={"event": "load_failed"})
                    app.state.fatal = exc
                    return
                except Exception as exc:  # surfaced through /health and the log, and the process exits
                    app.state.load_error = repr(exc)
                    log.exception("could not open the service")
                    app.state.fatal = exc
                    return
                metrics.bind(svc)
                app.state.service = svc
                log.info(
                    "ready", extra={"event": "ready", "seconds": round(svc.opened_in, 3), "memories": len(svc.planner)}
                )

            loader = threading.Thread(target=load, name="memory-spine-open", daemon=True)
            loader.start()
            app.state.loader = loader
        try:
            yield
        finally:
            if owned:
                if loader is not None:
                    loader.join()
                svc = app.state.service
                app.state.service = None
                tokens = getattr(app.state, "tokens", None)
                if tokens is not None:
                    tokens.store.close()
                if svc is not None:
                    svc.close()
                    log.info("stopped", extra={"event": "stopped"})

    # /docs and /redoc with Swagger UI and ReDoc served from the fastapi-offline package, not a CDN: they work
    # offline. Their files are under /docs/static (open: vendor code, no data).
    app = FastAPIOffline(
        static_url="/docs/static",
        title="memory-spine",
        version=__version__,
        description="A local memory service for AI-agent workflows: exact keys, semantic, keyword and hybrid"
        " search, claims for exactly-once actions.",
        lifespan=lifespan,
    )
    app.state.service = None if owned else target
    app.state.load_error = None
    app.state.fatal = None
    app.state.metrics = metrics
    app.state.settings = settings
    if not owned:
        metrics.bind(target)
    errors.install(app)

    @app.get("/", include_in_schema=False)
    async def root() -> RedirectResponse:
        return RedirectResponse("/ui", status_code=307)

    app.include_router(router)
    app.include_router(tokens_router)  # /whoami, /tokens
    app.include_router(ui_router)  # the web console at /ui
    token = settings.token.get_secret_value() if settings.token else None
    app.add_middleware(
        RequestMiddleware,
        token=token,
        max_body_bytes=settings.max_body_bytes,
        metrics=metrics,
        routes=_route_table(app.router.routes),
        # The Host check guards a listening socket against DNS rebinding, so it comes with `serve` (an app built
        # from settings); an app around an open service is called in-process (ASGITransport, any base URL).
        hosts=HostCheck(settings.allowed_hosts, bind_host=settings.host) if owned else None,
        tokens=lambda: resolver_for(app),
    )
    if token:
        _document_bearer(app)
    if settings.cors_origins:
        # Added last, so outermost: a browser's preflight carries no Authorization header and must be answered
        # before the token check, and a 401 must carry the CORS headers for the page to read it.
        app.add_middleware(
            CORSMiddleware, allow_origins=settings.cors_origins, allow_methods=["*"], allow_headers=["*"]
        )
    return app
