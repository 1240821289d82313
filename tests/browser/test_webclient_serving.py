"""How `mount_web_client` serves the static client: headers, caching, and nothing shadowed."""

from __future__ import annotations

import asyncio
import json
import urllib.error
import urllib.request
from collections.abc import Coroutine
from concurrent.futures import ThreadPoolExecutor
from typing import Any

import httpx
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse
from starlette.routing import Route

from qunliao.webclient import CONTENT_SECURITY_POLICY, WEB_ROOT, mount_web_client


async def _api(request: Request) -> JSONResponse:
    return JSONResponse({"api": True})


def _run(coro: Coroutine[Any, Any, None]) -> None:
    """Run in a thread of its own: the session's sync Playwright already owns this thread's loop."""
    with ThreadPoolExecutor(max_workers=1) as pool:
        pool.submit(asyncio.run, coro).result()


def _client() -> httpx.AsyncClient:
    app = Starlette(routes=[Route("/api/v1/thing", _api), Route("/healthz", _api)])
    mount_web_client(app)
    return httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url="http://testserver")


def test_index_and_assets_carry_security_and_cache_headers() -> None:
    _run(_test_index_and_assets_carry_security_and_cache_headers())


async def _test_index_and_assets_carry_security_and_cache_headers() -> None:
    async with _client() as client:
        index = await client.get("/")
        assert index.status_code == 200
        assert index.headers["content-type"] == "text/html; charset=utf-8"
        assert index.headers["cache-control"] == "no-cache"
        assert index.headers["content-security-policy"] == CONTENT_SECURITY_POLICY
        assert "script-src 'self'" in CONTENT_SECURITY_POLICY
        assert "unsafe-inline" not in CONTENT_SECURITY_POLICY
        assert index.headers["x-content-type-options"] == "nosniff"
        assert index.text == (WEB_ROOT / "index.html").read_text()

        for path in ("/app.js", "/api.js", "/views/chat.js", "/style.css"):
            asset = await client.get(path)
            assert asset.status_code == 200, path
            assert asset.headers["etag"]
            assert asset.headers["x-content-type-options"] == "nosniff"
        assert (await client.get("/app.js")).headers["content-type"].startswith("text/javascript")
        assert (await client.get("/style.css")).headers["content-type"].startswith("text/css")


def test_etag_revalidation_answers_304() -> None:
    _run(_test_etag_revalidation_answers_304())


async def _test_etag_revalidation_answers_304() -> None:
    async with _client() as client:
        first = await client.get("/app.js")
        again = await client.get("/app.js", headers={"If-None-Match": first.headers["etag"]})
        assert again.status_code == 304
        assert again.content == b""
        changed = await client.get("/app.js", headers={"If-None-Match": '"something-else"'})
        assert changed.status_code == 200


def test_api_routes_are_not_shadowed_and_unknown_paths_are_404() -> None:
    _run(_test_api_routes_are_not_shadowed_and_unknown_paths_are_404())


async def _test_api_routes_are_not_shadowed_and_unknown_paths_are_404() -> None:
    async with _client() as client:
        assert (await client.get("/api/v1/thing")).json() == {"api": True}
        assert (await client.get("/healthz")).json() == {"api": True}
        assert (await client.get("/api/v1/nothing-here")).status_code == 404
        assert (await client.get("/no-such-file.js")).status_code == 404
        assert (await client.get("/../pyproject.toml")).status_code == 404


def test_no_inline_script_or_style_in_index() -> None:
    html = (WEB_ROOT / "index.html").read_text()
    assert "<script>" not in html and "<script " in html
    assert 'type="module" src="/app.js"' in html
    assert "<style" not in html and "style=" not in html and "onload" not in html


def test_real_server_serves_client_and_keeps_api(server_url: str) -> None:
    with urllib.request.urlopen(f"{server_url}/") as response:
        assert response.status == 200
        assert response.headers["Content-Security-Policy"] == CONTENT_SECURITY_POLICY
        assert b'src="/app.js"' in response.read()
    with urllib.request.urlopen(f"{server_url}/healthz") as response:
        assert json.loads(response.read())["status"] == "ok"
    with urllib.request.urlopen(f"{server_url}/openapi.json") as response:
        assert "paths" in json.loads(response.read())
    try:
        urllib.request.urlopen(f"{server_url}/api/v1/conversations")
        raise AssertionError("an unauthenticated API call must fail")
    except urllib.error.HTTPError as error:
        assert error.code == 401
        assert json.loads(error.read())["error"]["code"] == "unauthorized"


def test_client_code_never_builds_html_from_strings() -> None:
    forbidden = ("innerHTML", "outerHTML", "insertAdjacentHTML", "document.write", "eval(")
    for path in WEB_ROOT.rglob("*.js"):
        code = path.read_text()
        for word in forbidden:
            assert word not in code.replace("(never innerHTML)", ""), f"{word} in {path.name}"
