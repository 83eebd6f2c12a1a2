"""The web console's static files, served at /console (same origin as the API).

The console is a Vite + React app (``serve_app/console``); ``scripts/setup.sh`` builds it
into ``serve_app/console/dist`` (not committed). This router serves that folder:

- ``/console``, ``/console/`` and any SPA route below it (``/console/embed/<agent_id>``,
  ``/console/tasks/...``): ``index.html``, never cached (``no-store``), so a new build is
  picked up at once;
- ``/console/assets/<hashed name>``: the build's assets, cached for a year (``immutable``:
  their names change with their content);
- other files of the build's top folder (``favicon.svg``): served with a short cache;
- a missing file that looks like one (a name with a dot in its last segment): 404.

Every answer carries a strict Content-Security-Policy (scripts, styles and fonts only from
this origin; fetch, EventSource and the relay's WebSocket only to it; images also
``data:`` and ``blob:``), ``X-Content-Type-Options: nosniff`` and ``Referrer-Policy:
no-referrer`` (an embed page's URL holds a ticket). The console may not be framed
(``frame-ancestors 'none'``); an embed page may be framed by any site (a notebook).
Only files under the build folder are ever read; no route needs a key (the page signs in
with ``POST /v1/session``). Without a build, ``/console`` answers 503 saying how to make one.
"""

# No ``from __future__ import annotations``: FastAPI reads the routes' annotations.
import re
from pathlib import Path

from fastapi import APIRouter, Request, Response
from fastapi.responses import FileResponse, HTMLResponse, JSONResponse

from ._errors import error_body

__all__ = ["CONSOLE_DIST", "NOT_BUILT", "console_csp", "router"]

CONSOLE_DIST = Path(__file__).resolve().parent / "console" / "dist"
"""Where ``scripts/setup.sh`` builds the console (``vite build``)."""
NOT_BUILT = "the console is not built: run scripts/setup.sh to build the console"
"""The message of the 503 answered when there is no build."""

ASSET_CACHE = "public, max-age=31536000, immutable"
FILE_CACHE = "public, max-age=300"

_MEDIA_TYPES = {
    ".html": "text/html; charset=utf-8",
    ".js": "text/javascript; charset=utf-8",
    ".mjs": "text/javascript; charset=utf-8",
    ".css": "text/css; charset=utf-8",
    ".json": "application/json",
    ".map": "application/json",
    ".svg": "image/svg+xml",
    ".png": "image/png",
    ".jpg": "image/jpeg",
    ".ico": "image/x-icon",
    ".webp": "image/webp",
    ".woff2": "font/woff2",
    ".woff": "font/woff",
    ".wasm": "application/wasm",
    ".txt": "text/plain; charset=utf-8",
}
"""Media types of what a build holds (not the platform's mime table, which varies)."""

_HOST = re.compile(r"^[A-Za-z0-9.-]+(:[0-9]{1,5})?$|^\[[0-9A-Fa-f:.]+\](:[0-9]{1,5})?$")
"""A Host header fit to be named in the policy (anything else is left out of it)."""

router = APIRouter(include_in_schema=False)


def console_csp(host: str | None, *, embed: bool) -> str:
    """The Content-Security-Policy of a console page: ``embed`` pages may be framed by any
    site, the console by none; the WebSockets of ``host`` (the request's own) are allowed."""
    connect = "'self'"
    if host and _HOST.match(host):
        connect += f" ws://{host} wss://{host}"
    return "; ".join(
        [
            "default-src 'self'",
            "script-src 'self'",
            "style-src 'self'",
            "img-src 'self' data: blob:",
            "font-src 'self'",
            f"connect-src {connect}",
            "object-src 'none'",
            "base-uri 'none'",
            "form-action 'self'",
            "frame-ancestors *" if embed else "frame-ancestors 'none'",
        ]
    )


def _secure(response: Response, request: Request, *, embed: bool = False) -> Response:
    response.headers["Content-Security-Policy"] = console_csp(
        request.headers.get("host"), embed=embed
    )
    response.headers["X-Content-Type-Options"] = "nosniff"
    response.headers["Referrer-Policy"] = "no-referrer"
    if not embed:
        response.headers["X-Frame-Options"] = "DENY"
    return response


def _not_built(request: Request) -> Response:
    headers = {"Cache-Control": "no-store"}
    if "text/html" in request.headers.get("accept", ""):
        page = (
            "<!doctype html><meta charset=utf-8><title>Console not built</title>"
            f"<p>{NOT_BUILT.capitalize()}.</p>"
        )
        return _secure(HTMLResponse(page, status_code=503, headers=headers), request)
    body = error_body("unavailable", NOT_BUILT)
    return _secure(JSONResponse(body, status_code=503, headers=headers), request)


def _not_found(request: Request, path: str) -> Response:
    body = error_body("not_found", f"no such console file: {path[:200]}")
    return _secure(JSONResponse(body, status_code=404), request)


def _file(dist: Path, rel: str) -> Path | None:
    """The file ``rel`` names under ``dist``, or None (missing, a folder, or outside)."""
    if "\x00" in rel or "\\" in rel:
        return None
    parts = [p for p in rel.split("/") if p not in ("", ".")]
    if not parts or any(p == ".." or p.startswith(".") for p in parts):
        return None
    path = dist.joinpath(*parts).resolve()
    if not path.is_relative_to(dist) or not path.is_file():
        return None
    return path


def _media_type(path: Path) -> str:
    return _MEDIA_TYPES.get(path.suffix.lower(), "application/octet-stream")


def _index(request: Request, dist: Path, *, embed: bool) -> Response:
    index = dist / "index.html"
    if not index.is_file():
        return _not_built(request)
    response = FileResponse(
        index, media_type=_MEDIA_TYPES[".html"], headers={"Cache-Control": "no-store"}
    )
    return _secure(response, request, embed=embed)


@router.api_route("/console", methods=["GET", "HEAD"])
async def console_root(request: Request) -> Response:
    """The console's page."""
    return _index(request, CONSOLE_DIST.resolve(), embed=False)


@router.api_route("/console/{path:path}", methods=["GET", "HEAD"])
async def console_file(request: Request, path: str) -> Response:
    """A file of the build, or the page for any of the app's own routes."""
    dist = CONSOLE_DIST.resolve()
    if not (dist / "index.html").is_file():
        return _not_built(request)
    found = _file(dist, path)
    if found is not None and found.name != "index.html":
        cache = ASSET_CACHE if path.startswith("assets/") else FILE_CACHE
        response = FileResponse(found, media_type=_media_type(found))
        response.headers["Cache-Control"] = cache
        return _secure(response, request)
    last = path.rstrip("/").rsplit("/", 1)[-1]
    if path.startswith("assets/") or "." in last:
        return _not_found(request, path)
    return _index(request, dist, embed=path == "embed" or path.startswith("embed/"))
