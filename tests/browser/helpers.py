"""Helpers that drive the web client the way a person does: through labelled controls."""

from __future__ import annotations

import json
import re
import urllib.request
import uuid
from dataclasses import dataclass, field
from typing import Any

from playwright.sync_api import (
    Browser,
    BrowserContext,
    ConsoleMessage,
    Dialog,
    Locator,
    Page,
    ViewportSize,
    expect,
)

PASSWORD = "correct-horse-battery"
DESKTOP: ViewportSize = {"width": 1280, "height": 800}
PHONE: ViewportSize = {"width": 360, "height": 740}


def unique(prefix: str) -> str:
    return f"{prefix}{uuid.uuid4().hex[:8]}"


@dataclass
class Person:
    """One user in one browser context, with everything the page reported collected."""

    username: str
    display_name: str
    context: BrowserContext
    page: Page
    dialogs: list[str] = field(default_factory=list)
    csp_errors: list[str] = field(default_factory=list)
    page_errors: list[str] = field(default_factory=list)
    accept_dialogs: bool = False

    def close(self) -> None:
        self.context.close()


def open_person(
    browser: Browser,
    base_url: str,
    display_name: str,
    *,
    prefix: str = "u",
    locale: str = "en-US",
    viewport: ViewportSize | None = None,
    register: bool = True,
) -> Person:
    phone = viewport is not None and viewport["width"] < 720
    context = browser.new_context(
        viewport=viewport or DESKTOP,
        has_touch=phone,
        locale=locale,
        base_url=base_url,
        device_scale_factor=1,
    )
    page = context.new_page()
    person = Person(unique(prefix), display_name, context, page)

    def on_dialog(dialog: Dialog) -> None:
        if person.accept_dialogs:
            dialog.accept()
        else:
            person.dialogs.append(f"{dialog.type}: {dialog.message}")
            dialog.dismiss()

    def on_console(message: ConsoleMessage) -> None:
        if "Content Security Policy" in message.text:
            person.csp_errors.append(message.text)

    page.on("dialog", on_dialog)
    page.on("console", on_console)
    page.on("pageerror", lambda error: person.page_errors.append(str(error)))
    if register:
        sign_up(person)
    return person


def sign_up(person: Person) -> None:
    page = person.page
    page.goto("/")
    page.get_by_label("Username", exact=True).fill(person.username)
    page.get_by_label("Password", exact=True).fill(PASSWORD)
    page.locator("#login-display-name").fill(person.display_name)
    page.get_by_role("button", name="Register", exact=True).click()
    expect(page.get_by_role("button", name="New chat", exact=True)).to_be_visible()


def sign_in(person: Person) -> None:
    page = person.page
    page.get_by_label("Username", exact=True).fill(person.username)
    page.get_by_label("Password", exact=True).fill(PASSWORD)
    page.get_by_role("button", name="Sign in", exact=True).click()
    expect(page.get_by_role("button", name="New chat", exact=True)).to_be_visible()


def start_chat(person: Person, others: list[Person], title: str | None = None) -> None:
    """Use "New chat": one other person gives a direct chat, several (or a title) a group."""
    page = person.page
    page.get_by_role("button", name="New chat", exact=True).click()
    dialog = page.get_by_role("dialog")
    for other in others:
        dialog.get_by_role("searchbox").fill(other.username)
        box = dialog.get_by_role("checkbox", name=other.display_name, exact=True)
        box.check()
    if title:
        dialog.locator(".group-name").fill(title)
    dialog.locator("button[type=submit]").click()
    expect(dialog).to_be_hidden()
    expect(page.get_by_label("Message", exact=True)).to_be_visible()


def open_chat(person: Person, title: str) -> None:
    page = person.page
    page.locator(".conv", has=page.locator(".conv-title", has_text=title)).first.click()
    expect(page.locator(".chat .chat-title")).to_contain_text(title)


def send(person: Person, text: str) -> None:
    box = person.page.get_by_label("Message", exact=True)
    box.fill(text)
    box.press("Enter")


def sent_messages(page: Page, text: str) -> Locator:
    """Confirmed (not pending) message bubbles whose text is exactly `text`."""
    return page.locator(".messages li.msg:not(.pending) .bubble > .text").filter(
        has_text=_exact(text)
    )


def any_messages(page: Page, text: str) -> Locator:
    return page.locator(".messages li.msg .bubble > .text").filter(has_text=_exact(text))


def _exact(text: str) -> re.Pattern[str]:
    return re.compile("^" + re.escape(text) + "$")


def message_item(page: Page, text: str) -> Locator:
    return page.locator(".messages li.msg:not(.pending)").filter(
        has=page.locator(".bubble > .text", has_text=_exact(text))
    )


def api(
    base_url: str, method: str, path: str, body: object = None, token: str | None = None
) -> Any:
    """Call the HTTP API directly (for seeding data faster than through the UI)."""
    headers = {"Content-Type": "application/json"}
    if token:
        headers["Authorization"] = f"Bearer {token}"
    data = json.dumps(body).encode() if body is not None else None
    request = urllib.request.Request(
        f"{base_url}/api/v1{path}", data=data, method=method, headers=headers
    )
    with urllib.request.urlopen(request, timeout=10) as response:
        raw = response.read()
    return json.loads(raw) if raw else None


def api_user(base_url: str, username: str, display_name: str) -> dict[str, str]:
    """Register and sign in over HTTP; returns the session (access_token, user_id, …)."""
    api(
        base_url,
        "POST",
        "/accounts",
        {"username": username, "password": PASSWORD, "display_name": display_name},
    )
    session: dict[str, str] = api(
        base_url,
        "POST",
        "/sessions",
        {"username": username, "password": PASSWORD, "device_name": "seed"},
    )
    return session


def assert_clean(*people: Person) -> None:
    """No alert fired, no CSP violation, no uncaught error in any page."""
    for person in people:
        assert person.dialogs == [], person.dialogs
        assert person.csp_errors == [], person.csp_errors
        assert person.page_errors == [], person.page_errors
