"""The web console at `/ui`: HTML shells (Jinja2), their static files, and the read-only JSON they load.

A page is an empty shell: its script fetches the data with `fetch()` and the bearer token the login page
keeps in `sessionStorage`, so a token never rides in a URL and a plain navigation (which cannot carry the
header) needs none. The shells and `/ui/static/*` are therefore served without a token (auth.py: they hold no
data); everything under `/ui/api/` needs it like the rest of the API. Pages read memories through the public
API (`/search`, `/memories`), and the console's own views (workflows, traces, overview) through `/ui/api/`,
which ui/views/ (one module a page) computes from `MemoryService`.

Every page is sent with a strict Content-Security-Policy (scripts and styles from this origin only, no inline
script), so a memory whose content is HTML can never run in the page that shows it.
"""

from __future__ import annotations

import mimetypes
from functools import cache
from pathlib import Path
from typing import Annotated, Any

from fastapi import APIRouter, Body, Query, Request
from jinja2 import Environment, FileSystemLoader, select_autoescape
from pydantic import Field
from starlette.responses import FileResponse, HTMLResponse, Response

from .. import __version__
from ..errors import NotFound
from ..models import Filter
from ..namespaces import KIT_PREFIX, kit_namespace, resolve
from ..ui import views
from .auth import authorize, requested, visible
from .responses import JSON
from .routes import Ns, Svc

router = APIRouter(include_in_schema=False)

PACKAGE = Path(__file__).resolve().parent.parent
TEMPLATES = PACKAGE / "templates"
STATIC = PACKAGE / "static"

_SECURITY_HEADERS = {
    "content-security-policy": (
        "default-src 'none'; script-src 'self'; style-src 'self'; img-src 'self' data:; connect-src 'self';"
        " font-src 'self'; form-action 'self'; base-uri 'none'; frame-ancestors 'none'"
    ),
    "x-content-type-options": "nosniff",
    "referrer-policy": "no-referrer",
    "x-frame-options": "DENY",
}
_NO_STORE = {"cache-control": "no-store"}

NAV = [
    ("overview", "Overview", "/ui"),
    ("memories", "Memories", "/ui/memories"),
    ("workflows", "Workflows", "/ui/workflows"),
    ("traces", "Traces", "/ui/traces"),
]


@cache
def _env() -> Environment:
    # Built on first use, not at import: the service starts without reading templates.
    return Environment(loader=FileSystemLoader(TEMPLATES), autoescape=select_autoescape(["html"]))


@cache
def _static_files() -> dict[str, Path]:
    """The files under static/, by their path: only these are served (no path is ever joined from a URL)."""
    return {p.relative_to(STATIC).as_posix(): p for p in STATIC.rglob("*") if p.is_file()}


def _page(template: str, page: str, title: str, **context: Any) -> HTMLResponse:
    html = (
        _env()
        .get_template(template)
        .render(page=page, title=title, nav=NAV, version=__version__, static="/ui/static", **context)
    )
    return HTMLResponse(html, headers={**_SECURITY_HEADERS, **_NO_STORE})


# -- pages (no data in them; served without a token) -----------------------------------------------------------


@router.get("/ui")
@router.get("/ui/")
def overview_page() -> Response:
    return _page("overview.html", "overview", "Overview")


@router.get("/ui/login")
def login_page() -> Response:
    return _page("login.html", "login", "Sign in")


@router.get("/ui/memories")
def memories_page() -> Response:
    return _page("memories.html", "memories", "Memories")


@router.get("/ui/memories/{id:path}")
def memory_page(id: str) -> Response:
    return _page("memory.html", "memories", "Memory", memory_id=id)


@router.get("/ui/workflows")
def workflows_page() -> Response:
    return _page("workflows.html", "workflows", "Workflows")


@router.get("/ui/workflows/{workflow_id:path}")
def workflow_page(workflow_id: str) -> Response:
    return _page("workflow.html", "workflows", f"Workflow {workflow_id}", workflow_id=workflow_id)


@router.get("/ui/traces")
def traces_page() -> Response:
    return _page("traces.html", "traces", "Traces")


@router.get("/ui/traces/{trace_id}")
def trace_page(trace_id: str) -> Response:
    return _page("trace.html", "traces", f"Trace {trace_id}", trace_id=trace_id)


@router.get("/ui/docs")
def docs_page() -> Response:
    """The API docs with the console's token (the plain /docs page needs the header, which a browser cannot add)."""
    html = _env().get_template("docs.html").render(version=__version__, static="/ui/static")
    return HTMLResponse(html, headers={**_SECURITY_HEADERS, **_NO_STORE})


@router.get("/ui/static/{name:path}")
def static_file(name: str) -> Response:
    path = _static_files().get(name)
    if path is None:
        raise NotFound(f"no static file {name!r}")
    media = mimetypes.guess_type(path.name)[0] or "application/octet-stream"
    if media.startswith("text/") or media == "application/javascript":
        media += "; charset=utf-8"
    return FileResponse(path, media_type=media, headers={"cache-control": "no-cache", **_SECURITY_HEADERS})


# -- data (under /ui/api/: the token is required when one is set) ----------------------------------------------


class ListQuery(Filter):
    """A page of memories matching a filter, newest (or oldest) first: /memories with every filter field."""

    limit: int = Field(default=50, ge=1, le=200)
    cursor: str | None = None
    order: str = Field(default="newest", pattern="^(newest|oldest)$")


def _kit(ns: str | None) -> str:
    """The namespace workflow pages read: the kit's of the page's namespace (`_kit/<it>`, or itself if a kit's)."""
    namespace = resolve(ns)
    return namespace if namespace.startswith(KIT_PREFIX) else kit_namespace(namespace)


def authorized_kit(request: Request, ns: str | None) -> str:
    """`_kit(ns)`, once the request's token is known to reach it (403 otherwise)."""
    kit = _kit(ns)
    authorize(request, kit)
    return kit


@router.post("/ui/api/memories")
def list_memories(q: Annotated[ListQuery, Body()], svc: Svc, ns: Ns, request: Request) -> Response:
    authorize(request, requested(q.namespace, ns))
    flt = Filter(**q.model_dump(include=set(Filter.model_fields)))
    return JSON(svc.list(flt, limit=q.limit, cursor=q.cursor, order=q.order, namespace=ns), headers=_NO_STORE)


@router.get("/ui/api/overview")
def overview(request: Request, svc: Svc, ns: Ns) -> Response:
    authorize(request, resolve(ns))
    state = request.app.state
    rates = getattr(state, "ui_rates", None)
    if rates is None:
        rates = state.ui_rates = views.Rates(svc.started_at)
    out = views.overview(svc, state.metrics.registry, rates, namespace=resolve(ns))
    if isinstance(out.get("namespaces"), dict):  # a scoped token sees its own namespaces' counts only
        out["namespaces"] = {n: out["namespaces"][n] for n in visible(request, out["namespaces"])}
    return JSON(out, headers=_NO_STORE)


@router.get("/ui/api/workflows")
def workflows(
    svc: Svc,
    ns: Ns,
    request: Request,
    prefix: str = "",
    limit: Annotated[int, Query(ge=1, le=200)] = 50,
    offset: Annotated[int, Query(ge=0)] = 0,
) -> Response:
    return JSON(views.workflows(svc, prefix, limit, offset, namespace=authorized_kit(request, ns)), headers=_NO_STORE)


@router.get("/ui/api/workflows/{workflow_id:path}")
def workflow(workflow_id: str, svc: Svc, ns: Ns, request: Request) -> Response:
    return JSON(views.workflow(svc, workflow_id, namespace=authorized_kit(request, ns)), headers=_NO_STORE)


@router.get("/ui/api/traces")
def traces(
    svc: Svc,
    ns: Ns,
    request: Request,
    workflow_id: str | None = None,
    status: Annotated[str | None, Query(pattern="^(ok|error)$")] = None,
    limit: Annotated[int, Query(ge=1, le=200)] = 50,
    cursor: str | None = None,
) -> Response:
    kit = authorized_kit(request, ns)
    return JSON(views.traces(svc, workflow_id or None, status, limit, cursor, namespace=kit), headers=_NO_STORE)


@router.get("/ui/api/traces/{trace_id}")
def trace(trace_id: str, svc: Svc, ns: Ns, request: Request) -> Response:
    return JSON(views.trace(svc, trace_id, namespace=authorized_kit(request, ns)), headers=_NO_STORE)
