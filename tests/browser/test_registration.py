"""The sign-up form follows the server's registration policy (GET /api/v1/server): it asks for
an invite code when the server wants one, and says so when registration is closed."""

from __future__ import annotations

import json
import subprocess
from collections.abc import Iterator

import pytest
from playwright.sync_api import Browser, Route, expect

from tests.browser.helpers import PASSWORD, open_person
from tests.e2e.helpers import ServerProcess, server_python


@pytest.fixture(scope="module")
def invite_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[ServerProcess]:
    workdir = tmp_path_factory.mktemp("invite-server")
    server = ServerProcess(
        f"sqlite:///{workdir / 'q.db'}", workdir, env={"QUNLIAO_REGISTRATION": "invite"}
    )
    server.start()
    try:
        yield server
    finally:
        server.stop()


def make_code(server: ServerProcess) -> str:
    """An invite code from the admin CLI, against the running server's database."""
    done = subprocess.run(
        [server_python(), "-m", "qunliao", "admin", "invites", "create",
         "--database-url", server.database_url],
        capture_output=True, text=True, timeout=60, check=True, cwd=server.workdir,
    )  # fmt: skip
    return done.stdout.strip()


def test_sign_up_with_an_invite_code(browser: Browser, invite_server: ServerProcess) -> None:
    person = open_person(browser, invite_server.url, "Invited 受邀者", register=False)
    try:
        page = person.page
        page.goto("/")
        code_box = page.get_by_label("Invite code", exact=True)
        expect(code_box).to_be_visible()
        page.get_by_label("Username", exact=True).fill(person.username)
        page.get_by_label("Password", exact=True).fill(PASSWORD)
        page.locator("#login-display-name").fill(person.display_name)
        register = page.get_by_role("button", name="Register", exact=True)
        alert = page.get_by_role("alert")

        register.click()
        expect(alert).to_contain_text("needs an invite code")
        code_box.fill("not-a-real-code")
        register.click()
        expect(alert).to_contain_text("doesn't work")

        code_box.fill(make_code(invite_server))
        register.click()
        expect(page.get_by_role("button", name="New chat", exact=True)).to_be_visible()
        assert person.page_errors == [] and person.csp_errors == []
    finally:
        person.close()


def test_closed_registration_in_chinese(browser: Browser, invite_server: ServerProcess) -> None:
    person = open_person(browser, invite_server.url, "李雷", locale="zh-CN", register=False)
    try:
        page = person.page
        page.goto("/")
        expect(page.locator("label", has=page.get_by_label("Invite code"))).to_contain_text(
            "邀请码"
        )

        def closed(route: Route) -> None:
            body = {"registration": "closed", "version": "test"}
            route.fulfill(status=200, content_type="application/json", body=json.dumps(body))

        page.route("**/api/v1/server", closed)
        page.reload()
        expect(page.get_by_role("status")).to_contain_text("本服务器已关闭注册")
        expect(page.get_by_role("button", name="Register", exact=True)).to_be_hidden()
        expect(page.get_by_label("Invite code", exact=True)).to_be_hidden()
        expect(page.get_by_role("button", name="Sign in", exact=True)).to_be_visible()
        assert person.page_errors == []
    finally:
        person.close()


def test_open_server_form_has_no_invite_field(browser: Browser, server_url: str) -> None:
    person = open_person(browser, server_url, "Open 开放", register=False)
    try:
        page = person.page
        page.goto("/")
        page.wait_for_load_state("networkidle")  # GET /api/v1/server has answered
        expect(page.get_by_role("button", name="Register", exact=True)).to_be_visible()
        expect(page.get_by_label("Invite code", exact=True)).to_be_hidden()
    finally:
        person.close()
