"""Fixtures for the browser tests: a real `qunliao serve` process and Debian's chromium.

Set QUNLIAO_BROWSER_BASE_URL to run against a server that is already running instead.
In CI (CI=true) a missing chromium is a failure, never a skip.
"""

from __future__ import annotations

import os
import shutil
import socket
import subprocess
import sys
import time
import urllib.error
import urllib.request
from collections.abc import Iterator
from pathlib import Path

import pytest
from playwright.sync_api import Browser, Playwright, sync_playwright

CHROMIUM = "/usr/bin/chromium"
CHROMIUM_ARGS = [
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--no-first-run",
]
REPO = Path(__file__).resolve().parents[2]
IN_CI = os.environ.get("CI", "").lower() == "true"


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    """Everything here that drives chromium is `browser`; the serving tests need no browser."""
    for item in items:
        in_here = Path(str(item.path)).resolve().is_relative_to(Path(__file__).parent)
        if in_here and "browser" in getattr(item, "fixturenames", ()):
            item.add_marker(pytest.mark.browser)


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
        return port


def _wait_healthy(url: str, process: subprocess.Popen[bytes] | None, log: Path | None) -> None:
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        if process is not None and process.poll() is not None:
            output = log.read_text(errors="replace") if log else ""
            pytest.fail(f"qunliao serve exited with {process.returncode}:\n{output[-4000:]}")
        try:
            with urllib.request.urlopen(f"{url}/healthz", timeout=2) as response:
                if response.status == 200:
                    return
        except (urllib.error.URLError, ConnectionError, TimeoutError):
            pass
        time.sleep(0.2)
    pytest.fail(f"{url}/healthz did not answer within 60 s")


@pytest.fixture(scope="session")
def server_url(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    external = os.environ.get("QUNLIAO_BROWSER_BASE_URL")
    if external:
        _wait_healthy(external.rstrip("/"), None, None)
        yield external.rstrip("/")
        return
    data = tmp_path_factory.mktemp("qunliao-server")
    port = _free_port()
    log = data / "server.log"
    command = [
        sys.executable,
        "-m",
        "qunliao",
        "serve",
        "--host",
        "127.0.0.1",
        "--port",
        str(port),
        "--database-url",
        f"sqlite:///{data}/db.sqlite",
    ]
    with log.open("wb") as out:
        # The browser tests register their users from 127.0.0.1, more than 20 a minute.
        env = {**os.environ, "QUNLIAO_REGISTRATIONS_PER_ADDRESS_PER_MIN": "1000000"}
        process = subprocess.Popen(command, cwd=REPO, stdout=out, stderr=subprocess.STDOUT, env=env)
    url = f"http://127.0.0.1:{port}"
    try:
        _wait_healthy(url, process, log)
        yield url
    finally:
        process.terminate()
        try:
            process.wait(timeout=10)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait(timeout=10)


def _install_chromium() -> None:
    """Install Debian's chromium and a CJK font, as the issue asks, when we are allowed to."""
    if shutil.which("apt-get") is None or os.geteuid() != 0:
        return
    env = {**os.environ, "DEBIAN_FRONTEND": "noninteractive"}
    subprocess.run(["apt-get", "update", "-q"], env=env, check=False, timeout=600)
    subprocess.run(
        ["apt-get", "install", "-y", "-q", "chromium", "fonts-noto-cjk"],
        env=env,
        check=False,
        timeout=1200,
    )


# Module scope, not session: sync Playwright runs an event loop in this thread while it lives,
# which would break asyncio tests collected after the browser tests in a whole-suite run.
@pytest.fixture(scope="module")
def playwright_instance() -> Iterator[Playwright]:
    with sync_playwright() as playwright:
        yield playwright


@pytest.fixture(scope="module")
def browser(playwright_instance: Playwright) -> Iterator[Browser]:
    if not Path(CHROMIUM).exists():
        _install_chromium()
    if not Path(CHROMIUM).exists():
        message = f"{CHROMIUM} is missing and could not be installed (apt-get install chromium)"
        if IN_CI:
            pytest.fail(message)
        pytest.skip(message)
    browser = playwright_instance.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS)
    yield browser
    browser.close()
