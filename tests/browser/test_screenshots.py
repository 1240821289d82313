"""Screenshots of the main screens for docs/web-client.md: desktop 1280 and phone 360, en and zh.

They are taken from a real conversation seeded through the UI, so they double as a smoke test of
the layouts (nothing overflows at 360 px, CJK text renders with the Noto CJK font).
"""

from __future__ import annotations

import os
import tempfile
from pathlib import Path

from playwright.sync_api import Browser, Page, ViewportSize, expect

from .helpers import (
    DESKTOP,
    PHONE,
    Person,
    message_item,
    open_chat,
    open_person,
    send,
    sent_messages,
    sign_in,
    start_chat,
)

# docs/screenshots is refreshed on purpose (QUNLIAO_UPDATE_SCREENSHOTS=1); an ordinary test run
# takes them into a temporary directory and leaves the work tree as it was.
DOCS_SHOTS = Path(__file__).resolve().parents[2] / "docs" / "screenshots"
SHOTS = (
    DOCS_SHOTS
    if os.environ.get("QUNLIAO_UPDATE_SCREENSHOTS") == "1"
    else Path(tempfile.mkdtemp(prefix="qunliao-screenshots-"))
)
GROUP = "产品讨论组 Product"
ANNOUNCEMENT = "本周五下午三点发布 v1.0，请大家提前测试。Release on Friday 15:00."


def shoot(page: Page, name: str) -> None:
    SHOTS.mkdir(parents=True, exist_ok=True)
    page.evaluate("() => document.getElementById('toast')?.classList.remove('show')")
    page.wait_for_timeout(300)  # let the last frame and the scroll position settle
    page.screenshot(path=str(SHOTS / f"{name}.png"))
    # No horizontal overflow at any width: everything fits the viewport.
    assert page.evaluate("() => document.documentElement.scrollWidth <= window.innerWidth")
    # Every control on screen has an accessible name.
    assert page.evaluate(UNNAMED_CONTROLS) == [], name


UNNAMED_CONTROLS = """() => [...document.querySelectorAll("button, input, textarea, select")]
  .filter((el) => el.getClientRects().length && el.type !== "hidden")
  .filter((el) => !(el.getAttribute("aria-label") || el.textContent.trim() || el.title
    || (el.labels && [...el.labels].some((l) => l.textContent.trim()))))
  .map((el) => el.outerHTML.slice(0, 120))"""


def same_user(
    browser: Browser, base_url: str, person: Person, locale: str, viewport: ViewportSize
) -> Person:
    other = open_person(
        browser, base_url, person.display_name, locale=locale, viewport=viewport, register=False
    )
    other.username = person.username
    other.page.goto("/")
    sign_in(other)
    return other


def test_screenshots(browser: Browser, server_url: str) -> None:
    for locale, viewport, name in (
        ("en-US", DESKTOP, "login-desktop-en"),
        ("zh-CN", PHONE, "login-phone-zh"),
    ):
        visitor = open_person(
            browser, server_url, "-", locale=locale, viewport=viewport, register=False
        )
        visitor.page.goto("/")
        expect(visitor.page.get_by_role("button", name="Register", exact=True)).to_be_visible()
        shoot(visitor.page, name)
        visitor.close()

    alice = open_person(browser, server_url, "王芳 Fang", prefix="wangfang")
    bob = open_person(browser, server_url, "李雷", prefix="lilei")
    carol = open_person(browser, server_url, "Carol Zhang", prefix="carol")
    dave = open_person(browser, server_url, "陈静", prefix="chenjing")
    extra: list[Person] = []
    try:
        start_chat(bob, [alice])
        send(bob, "周末一起去爬山吗？香山的红叶正好。")
        start_chat(alice, [bob, carol], title=GROUP)
        for person in (bob, carol):
            open_chat(person, GROUP)
        send(bob, "大家好！明天上午十点开周会，记得带上本周的进度。")
        send(carol, "Got it. I'll share the roadmap draft before the meeting.")
        expect(
            sent_messages(alice.page, "Got it. I'll share the roadmap draft before the meeting.")
        ).to_have_count(1)
        send(alice, "好的，我来准备演示。Demo will be ready by 9:30")
        question = message_item(bob.page, "好的，我来准备演示。Demo will be ready by 9:30")
        question.locator(".bubble").hover()
        question.get_by_role("button", name="Reply: 好的").click()
        send(bob, "太好了，谢谢！会议室我已经订好了：三楼 301。")
        carol.page.get_by_role("button", name="Contacts").click()
        send(alice, "收到！我把需求文档也更新了，请大家看一下最后一节（权限和审计）。")
        receipt = message_item(
            alice.page, "收到！我把需求文档也更新了，请大家看一下最后一节（权限和审计）。"
        ).locator(".receipt")
        expect(receipt).to_have_text("1 unread")

        alice.page.get_by_role("button", name="Group info").click()
        sheet = alice.page.get_by_role("dialog", name="Group info")
        sheet.get_by_label("Announcement").fill(ANNOUNCEMENT)
        sheet.get_by_role("button", name="Save").click()
        sheet.get_by_role("button", name="Close").click()
        expect(alice.page.locator(".announcement")).to_contain_text("本周五")

        dave.page.get_by_role("button", name="Contacts").click()
        dave.page.get_by_role("searchbox", name="Search users").fill(alice.username)
        dave.page.get_by_role("button", name="Add friend 王芳 Fang").click()
        expect(dave.page.get_by_text("Request sent")).to_be_visible()

        shoot(alice.page, "chat-desktop-en")
        alice.page.get_by_role("button", name="New chat", exact=True).click()
        picker = alice.page.get_by_role("dialog", name="New chat")
        picker.get_by_role("searchbox").fill(dave.username)
        expect(picker.get_by_role("checkbox", name="陈静", exact=True)).to_be_visible()
        picker.get_by_role("checkbox", name="陈静", exact=True).check()
        shoot(alice.page, "new-chat-desktop-en")
        alice.page.keyboard.press("Escape")
        receipt.click()
        expect(
            alice.page.get_by_role("dialog", name="Read receipts").locator(".person")
        ).to_have_count(2)
        shoot(alice.page, "receipts-desktop-en")
        alice.page.keyboard.press("Escape")

        zh = same_user(browser, server_url, alice, "zh-CN", DESKTOP)
        extra.append(zh)
        open_chat(zh, GROUP)
        expect(zh.page.get_by_role("button", name="Send", exact=True)).to_have_text("发送")
        shoot(zh.page, "chat-desktop-zh")
        zh.page.locator(".receipt.link").last.click()
        expect(zh.page.locator("dialog .person")).to_have_count(2)
        shoot(zh.page, "receipts-desktop-zh")
        zh.page.keyboard.press("Escape")
        zh.page.locator(".tab").nth(1).click()
        expect(zh.page.locator(".requests")).to_contain_text("陈静")
        shoot(zh.page, "contacts-desktop-zh")

        for locale, lang in (("en-US", "en"), ("zh-CN", "zh")):
            phone = same_user(browser, server_url, alice, locale, PHONE)
            extra.append(phone)
            expect(phone.page.locator(".conv").first).to_be_visible()
            shoot(phone.page, f"list-phone-{lang}")
            open_chat(phone, GROUP)
            expect(phone.page.get_by_role("button", name="New chat", exact=True)).to_be_hidden()
            shoot(phone.page, f"chat-phone-{lang}")
            if lang == "en":
                phone.context.set_offline(True)
                expect(phone.page.locator(".conn")).to_be_visible()
                send(phone, "On the subway, this goes out when I'm back online 地铁里")
                expect(phone.page.locator(".msg.pending")).to_have_count(1)
                shoot(phone.page, "offline-phone-en")
                phone.context.set_offline(False)
                expect(phone.page.locator(".msg.pending")).to_have_count(0, timeout=15000)
            if lang == "zh":
                phone.page.locator(".chat-head .icon:not(.back)").click()
                expect(phone.page.locator("dialog .members .person")).to_have_count(3)
                shoot(phone.page, "group-info-phone-zh")
                phone.page.keyboard.press("Escape")
            phone.page.get_by_role("button", name="Back" if lang == "en" else "返回").click()
            expect(phone.page.get_by_role("button", name="New chat", exact=True)).to_be_visible()
    finally:
        for person in (alice, bob, carol, dave, *extra):
            person.close()
