"""The internals of picows, uvicorn and aiosqlite that qunliao relies on, one test each.

pyproject.toml pins these three libraries exactly because the hot path reaches past their
public APIs. To upgrade one, install the new version, run this file, and re-read the files a
failure names before moving the pin (docs/operations.md, "Pinned libraries").

Library names are looked up inside the tests, so a missing one fails its own test with a message
instead of failing the whole file when it is collected.
"""

from __future__ import annotations

import asyncio
import importlib
import inspect
import re
import sqlite3
import threading
import tomllib
from importlib.metadata import version
from pathlib import Path
from typing import Any

import pytest

PYPROJECT = Path(__file__).resolve().parents[2] / "pyproject.toml"
PINNED = ("picows", "uvicorn", "aiosqlite")
FAST_WS = "src/qunliao/realtime/fast_ws.py"
ASGI_SOCKET = "src/qunliao/realtime/asgi_socket.py"
CLI = "src/qunliao/cli.py"
STORAGE = (
    "src/qunliao/storage/db.py, src/qunliao/storage/eventlog/batch.py and "
    "src/qunliao/storage/eventlog/write.py"
)
HTTP_TOOLS = ("uvicorn.protocols.http.httptools_impl", "HttpToolsProtocol")


def changed(package: str, thing: str, files: str, why: str) -> str:
    return (
        f"{package} {version(package)} changed {thing} that {files} relies on ({why}); "
        f"re-check {files} before upgrading"
    )


def internal(package: str, module: str, name: str, files: str, why: str) -> Any:
    """`module.name`, or a failure that says which file needs it and why."""
    try:
        return getattr(importlib.import_module(module), name)
    except (ImportError, AttributeError) as exc:
        pytest.fail(changed(package, f"{module}.{name} ({exc})", files, why))


def parameters(function: Any) -> list[str]:
    return [name for name in inspect.signature(function).parameters if name != "self"]


def exact_pins() -> dict[str, str]:
    """The `name==version` dependencies in pyproject.toml."""
    pins = {}
    for requirement in tomllib.loads(PYPROJECT.read_text())["project"]["dependencies"]:
        match = re.fullmatch(r"([\w.-]+)(?:\[[^\]]*\])?==([^;,\s]+)", requirement.strip())
        if match:
            pins[match[1].lower()] = match[2]
    return pins


@pytest.mark.parametrize("package", PINNED)
def test_the_installed_version_is_the_pinned_one(package: str) -> None:
    pinned = exact_pins().get(package)
    assert pinned is not None, (
        f"pyproject.toml no longer pins {package} to one version (==): qunliao uses its "
        "internals, which tests/unit/test_private_apis.py checks against that version"
    )
    installed = version(package)
    assert installed == pinned, (
        f"{package} {installed} is installed but pyproject.toml pins {pinned}: reinstall "
        f"(`pip install -e .`), or to upgrade, run tests/unit/test_private_apis.py on "
        f"{installed}, re-check the files its failures name, then move the pin"
    )


# ---------------------------------------------------------------- picows


async def test_picows_server_protocol_is_built_as_fast_ws_builds_it() -> None:
    why = (
        "a WebSocket upgrade that uvicorn accepted is handed to picows' WSProtocol, which is not "
        "exported; fast_ws builds it by keyword and feeds it the head uvicorn already read"
    )
    protocol_class = internal("picows", "picows.picows", "WSProtocol", FAST_WS, why)
    from picows import WSListener

    from qunliao.realtime.fast_ws import picows_protocol

    try:
        protocol = picows_protocol(lambda request: WSListener())
    except TypeError as exc:  # a parameter renamed, added or retyped
        pytest.fail(changed("picows", f"WSProtocol's parameters ({exc})", FAST_WS, why))
    assert isinstance(protocol, protocol_class)
    assert isinstance(protocol, asyncio.BufferedProtocol), changed(
        "picows", "WSProtocol's base (no longer an asyncio.BufferedProtocol)", FAST_WS, why
    )
    for method in ("connection_made", "get_buffer", "buffer_updated"):
        assert callable(getattr(protocol, method, None)), changed(
            "picows", f"WSProtocol.{method}", FAST_WS, why
        )


# ---------------------------------------------------------------- uvicorn


@pytest.fixture
def uvicorn_config() -> Any:
    """uvicorn's Config as `qunliao serve` builds it, for the picows engine."""
    from uvicorn import Config

    async def app(scope: Any, receive: Any, send: Any) -> None:
        raise AssertionError("not served")

    config = Config(app, http="qunliao.realtime.fast_ws:HttpOrWebSocket", log_config=None)
    config.load()
    return config


def test_uvicorn_httptools_protocol_takes_the_hand_off() -> None:
    why = (
        "HttpOrWebSocket builds uvicorn's HttpToolsProtocol for every connection that is not "
        "the gateway's WebSocket, by keyword, then replays the bytes it already read"
    )
    http_tools = internal("uvicorn", *HTTP_TOOLS, FAST_WS, why)
    passed = ["config", "server_state", "app_state", "_loop"]
    taken = parameters(http_tools.__init__)
    assert taken == passed, changed(
        "uvicorn", f"HttpToolsProtocol's parameters (now {taken}, passed {passed})", FAST_WS, why
    )
    for method in ("connection_made", "data_received"):
        assert callable(getattr(http_tools, method, None)), changed(
            "uvicorn", f"HttpToolsProtocol.{method}", FAST_WS, why
        )


def test_limited_http_overrides_what_httptools_protocol_has() -> None:
    why = (
        "LimitedHttp subclasses HttpToolsProtocol and wraps its parser callbacks and fields to "
        "bound the request head and its time; a renamed callback would silently lift a limit"
    )
    files = "src/qunliao/realtime/connections.py"
    http_tools = internal("uvicorn", *HTTP_TOOLS, files, why)
    for method in (
        "connection_made", "connection_lost", "data_received", "handle_websocket_upgrade",
        "on_message_begin", "on_url", "on_header", "on_headers_complete", "on_body",
        "on_message_complete",
    ):  # fmt: skip
        assert callable(getattr(http_tools, method, None)), changed(
            "uvicorn", f"HttpToolsProtocol.{method}", files, why
        )
    source = inspect.getsource(http_tools.__init__)
    for field in ("self.transport", "self.app_state", "self.loop", "self.parser"):
        assert field in source, changed("uvicorn", f"HttpToolsProtocol {field}", files, why)


def test_uvicorn_builds_fast_ws_as_its_http_protocol(uvicorn_config: Any) -> None:
    why = (
        "cli.py names HttpOrWebSocket as uvicorn's `http` protocol class; uvicorn builds one per "
        "connection with the arguments of its own protocols, and fast_ws reads "
        "`config.timeout_keep_alive` from them"
    )
    from qunliao.realtime.fast_ws import HttpOrWebSocket

    files = f"{CLI} and {FAST_WS}"
    assert uvicorn_config.http_protocol_class is HttpOrWebSocket, changed(
        "uvicorn", "how `http=` names the protocol class", files, why
    )
    http_tools = internal("uvicorn", *HTTP_TOOLS, files, why)
    theirs, ours = parameters(http_tools.__init__), parameters(HttpOrWebSocket.__init__)
    assert ours == theirs, changed(
        "uvicorn", f"an http protocol's parameters (now {theirs}, ours {ours})", files, why
    )
    assert isinstance(uvicorn_config.timeout_keep_alive, int | float), changed(
        "uvicorn", "Config.timeout_keep_alive", files, why
    )


def test_uvicorn_gives_protocols_the_lifespan_state(uvicorn_config: Any) -> None:
    why = (
        "the app's lifespan yields the gateway route into uvicorn's lifespan state, which "
        "uvicorn passes to each connection's protocol as `app_state`"
    )
    files = f"src/qunliao/app.py and {FAST_WS}"
    lifespan_class = internal("uvicorn", "uvicorn.lifespan.on", "LifespanOn", files, why)
    state = getattr(lifespan_class(uvicorn_config), "state", None)
    assert isinstance(state, dict), changed("uvicorn", "LifespanOn.state", files, why)


def test_uvicorn_server_state_tracks_connections_to_shut_them_down() -> None:
    why = (
        "a picows socket joins uvicorn's `server_state.connections`, so that on SIGTERM uvicorn "
        "calls its `shutdown()` (close with 1012) and waits for the set to empty"
    )
    server_state_class = internal("uvicorn", "uvicorn.server", "ServerState", FAST_WS, why)
    connections = getattr(server_state_class(), "connections", None)
    assert isinstance(connections, set), changed("uvicorn", "ServerState.connections", FAST_WS, why)
    http_tools = internal("uvicorn", *HTTP_TOOLS, FAST_WS, why)
    shutdown = getattr(http_tools, "shutdown", None)
    assert callable(shutdown) and parameters(shutdown) == [], changed(
        "uvicorn", "a connection's `shutdown()` (as HttpToolsProtocol has it)", FAST_WS, why
    )


def test_uvicorn_client_disconnected_is_an_os_error() -> None:
    why = "a send after the client left raises uvicorn's ClientDisconnected, caught as OSError"
    disconnected = internal(
        "uvicorn", "uvicorn.protocols.utils", "ClientDisconnected", ASGI_SOCKET, why
    )
    assert issubclass(disconnected, OSError), changed(
        "uvicorn", "ClientDisconnected's base", ASGI_SOCKET, why
    )


def test_uvicorn_supervisor_reports_a_worker_that_failed_to_start() -> None:
    why = (
        "`qunliao serve --workers` exits 3 when uvicorn's supervisor logs 'failed to start' on "
        "the uvicorn.error logger, since the supervisor itself returns normally"
    )
    multiprocess = importlib.import_module("uvicorn.supervisors.multiprocess")
    logger = getattr(multiprocess, "logger", None)
    assert getattr(logger, "name", None) == "uvicorn.error", changed(
        "uvicorn", "the supervisor's logger", CLI, why
    )
    assert "failed to start" in inspect.getsource(multiprocess), changed(
        "uvicorn", "the supervisor's message for a worker that failed", CLI, why
    )


# ---------------------------------------------------------------- aiosqlite


def test_aiosqlite_execute_takes_a_callable_and_its_arguments() -> None:
    why = (
        "the group-commit batch and the WAL checkpoint run as one call in the connection's "
        "thread: `driver._execute(fn, driver._conn, ...)`"
    )
    connection_class = internal("aiosqlite", "aiosqlite", "Connection", STORAGE, why)
    execute = getattr(connection_class, "_execute", None)
    assert inspect.iscoroutinefunction(execute), changed(
        "aiosqlite", "Connection._execute (no longer a coroutine function)", STORAGE, why
    )
    try:
        inspect.signature(execute).bind(object(), len, object(), [], 0)
    except TypeError as exc:
        pytest.fail(changed("aiosqlite", f"Connection._execute's parameters ({exc})", STORAGE, why))


async def test_aiosqlite_runs_a_callable_on_its_sqlite_connection_in_its_thread() -> None:
    why = (
        "db.py takes the aiosqlite connection from SQLAlchemy's `driver_connection`; its `_conn` "
        "is the sqlite3 connection, and `_execute` runs the batch in the connection's thread"
    )
    import aiosqlite
    from sqlalchemy.ext.asyncio import create_async_engine

    def probe(conn: sqlite3.Connection, rows: list[int], now_ms: int) -> tuple[int, Any]:
        return threading.get_ident(), conn.execute("SELECT ?", (now_ms,)).fetchone()[0]

    engine = create_async_engine("sqlite+aiosqlite://")
    try:
        async with engine.connect() as conn:
            driver = (await conn.get_raw_connection()).driver_connection  # as db.py holds it
            assert isinstance(driver, aiosqlite.Connection), changed(
                "aiosqlite", "the connection SQLAlchemy's adapter wraps", STORAGE, why
            )
            sqlite = getattr(driver, "_conn", None)
            assert isinstance(sqlite, sqlite3.Connection), changed(
                "aiosqlite", "Connection._conn", STORAGE, why
            )
            thread, echoed = await driver._execute(probe, sqlite, [1], 7)
    finally:
        await engine.dispose()
    assert echoed == 7
    assert thread != threading.get_ident(), changed(
        "aiosqlite", "where Connection._execute runs its callable", STORAGE, why
    )
