"""Serve the web client (static files in ``qunliao/web``) at ``/``.

One exact route per file, added after the API routes, so nothing under ``/api``, ``/docs``,
``/openapi.json`` or ``/healthz`` can ever be shadowed and unknown paths keep the app's own 404.
Files are read once at mount time (no blocking I/O on the event loop) and served with an ETag;
``Cache-Control: no-cache`` makes browsers revalidate, so an upgrade is picked up on the next load
without a build step or hashed file names.
"""

from __future__ import annotations

import hashlib
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from pathlib import Path

from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route

WEB_ROOT = Path(__file__).parent / "web"

CONTENT_SECURITY_POLICY = (
    "default-src 'self'; script-src 'self'; style-src 'self'; img-src 'self' data:; "
    "connect-src 'self' ws: wss:; object-src 'none'; base-uri 'none'; frame-ancestors 'none'"
)

CONTENT_TYPES = {
    ".html": "text/html; charset=utf-8",
    ".js": "text/javascript; charset=utf-8",
    ".css": "text/css; charset=utf-8",
    ".svg": "image/svg+xml",
    ".png": "image/png",
    ".ico": "image/x-icon",
    ".json": "application/json",
    ".webmanifest": "application/manifest+json",
}

RESERVED_PREFIXES = ("/api", "/docs", "/redoc", "/openapi.json", "/healthz")


@dataclass(frozen=True)
class StaticFile:
    body: bytes
    content_type: str
    etag: str
    cache_control: str


def security_headers() -> dict[str, str]:
    """Headers every web-client response carries."""
    return {
        "Content-Security-Policy": CONTENT_SECURITY_POLICY,
        "X-Content-Type-Options": "nosniff",
        "Referrer-Policy": "no-referrer",
        "X-Frame-Options": "DENY",
    }


def load_static_files(root: Path = WEB_ROOT) -> dict[str, StaticFile]:
    """Map URL path → file for every servable file under ``root`` (``/`` is index.html)."""
    files: dict[str, StaticFile] = {}
    for path in sorted(root.rglob("*")):
        content_type = CONTENT_TYPES.get(path.suffix)
        if not path.is_file() or content_type is None:
            continue
        url = "/" + path.relative_to(root).as_posix()
        if _is_reserved(url):
            continue
        body = path.read_bytes()
        etag = '"' + hashlib.sha256(body).hexdigest()[:32] + '"'
        files[url] = StaticFile(body, content_type, etag, "no-cache")
    if "/index.html" in files:
        files["/"] = files["/index.html"]
    return files


def _is_reserved(url: str) -> bool:
    return any(url == prefix or url.startswith(prefix + "/") for prefix in RESERVED_PREFIXES)


def _endpoint(static: StaticFile) -> Callable[[Request], Awaitable[Response]]:
    async def serve(request: Request) -> Response:
        headers = {"ETag": static.etag, "Cache-Control": static.cache_control, **security_headers()}
        if static.etag in _etags(request.headers.get("if-none-match", "")):
            return Response(status_code=304, headers=headers)
        return Response(static.body, media_type=static.content_type, headers=headers)

    return serve


def _etags(header: str) -> set[str]:
    return {tag.strip().removeprefix("W/") for tag in header.split(",") if tag.strip()}


DOCS_ASSETS = "/docs-assets"


def mount_api_docs(app: Starlette) -> None:
    """The API reference at /docs with Swagger UI's files from the installed package: nothing
    loads from a CDN on the origin where the web client keeps its token."""
    from fastapi.openapi.docs import get_swagger_ui_html
    from starlette.staticfiles import StaticFiles
    from swagger_ui_bundle import swagger_ui_path

    async def docs(_request: Request) -> Response:
        return get_swagger_ui_html(
            openapi_url="/openapi.json",
            title="qunliao API",
            swagger_js_url=f"{DOCS_ASSETS}/swagger-ui-bundle.js",
            swagger_css_url=f"{DOCS_ASSETS}/swagger-ui.css",
            swagger_favicon_url="/favicon.svg",
        )

    app.router.routes.append(Route("/docs", docs, methods=["GET", "HEAD"]))
    app.mount(DOCS_ASSETS, StaticFiles(directory=str(swagger_ui_path)), name="docs-assets")


def mount_web_client(app: Starlette, root: Path = WEB_ROOT) -> None:
    """Add one GET/HEAD route per web-client file; call after the API routes are registered."""
    for url, static in load_static_files(root).items():
        app.router.routes.append(Route(url, _endpoint(static), methods=["GET", "HEAD"]))
