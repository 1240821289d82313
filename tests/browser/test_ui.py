"""History paging, keyboard use, Chinese UI with the contract accessible names."""

from __future__ import annotations

import random

from playwright.sync_api import Browser, expect

from .helpers import (
    PHONE,
    api,
    api_user,
    assert_clean,
    open_chat,
    open_person,
    send,
    sent_messages,
    sign_in,
    unique,
)


def test_infinite_scroll_loads_older_history_once(browser: Browser, server_url: str) -> None:
    bob = api_user(server_url, unique("bob"), "Bob")
    alice_name = unique("alice")
    alice_session = api_user(server_url, alice_name, "Alice")
    conv = api(
        server_url,
        "POST",
        "/conversations",
        {"kind": "direct", "member_ids": [alice_session["user_id"]]},
        bob["access_token"],
    )["conversation_id"]
    total = 130
    for n in range(total):
        body = {"client_txn_id": f"seed-{n}", "msg_type": "text", "body": {"text": f"history {n}"}}
        api(server_url, "POST", f"/conversations/{conv}/messages", body, bob["access_token"])
    alice = open_person(browser, server_url, "Alice", register=False)
    alice.username = alice_name
    try:
        alice.page.goto("/")
        sign_in(alice)
        open_chat(alice, "Bob")
        page = alice.page
        bubbles = page.locator(".messages li.msg .bubble > .text")
        expect(sent_messages(page, f"history {total - 1}")).to_be_visible()
        assert bubbles.count() < total  # only the newest page at first
        for _ in range(10):
            if page.locator(".history-edge").inner_text() == "Start of the conversation":
                break
            page.locator(".scroller").evaluate("(el) => { el.scrollTop = 0; }")
            page.wait_for_timeout(300)
        expect(page.locator(".history-edge")).to_have_text("Start of the conversation")
        texts = bubbles.all_inner_texts()
        assert texts == [f"history {n}" for n in range(total)]
        # Reading the top did not move the view back to the bottom.
        assert page.locator(".scroller").evaluate("(el) => el.scrollTop") < 2000
        # A new message while reading old ones: a "New messages" button, not a jump.
        body = {"client_txn_id": "late", "msg_type": "text", "body": {"text": "a new one"}}
        api(server_url, "POST", f"/conversations/{conv}/messages", body, bob["access_token"])
        jump = page.get_by_role("button", name="New messages")
        expect(jump).to_be_visible()
        assert page.locator(".scroller").evaluate("(el) => el.scrollTop") < 2000
        jump.click()
        expect(jump).to_be_hidden()
        expect(sent_messages(page, "a new one")).to_be_in_viewport()
        assert_clean(alice)
    finally:
        alice.close()


def test_keyboard_only_sign_in_open_chat_and_send(browser: Browser, server_url: str) -> None:
    alice = open_person(browser, server_url, "Alice", prefix="alice")
    bob = open_person(browser, server_url, "Bob", prefix="bob")
    try:
        bob_id = bob.page.evaluate("() => window.qunliao.me.user_id")
        alice.page.evaluate("(id) => window.qunliao.createConversation('direct', [id])", bob_id)
        page = alice.page
        page.reload()
        page.get_by_role("button", name="Settings").click()
        page.get_by_role("button", name="Sign out", exact=True).click()
        # Sign in with the keyboard: the username field has focus, Tab, Enter submits.
        expect(page.get_by_label("Username", exact=True)).to_be_focused()
        page.keyboard.type(alice.username)
        page.keyboard.press("Tab")
        expect(page.get_by_label("Password", exact=True)).to_be_focused()
        page.keyboard.type("correct-horse-battery")
        page.keyboard.press("Enter")
        expect(page.get_by_role("button", name="New chat", exact=True)).to_be_visible()
        expect(page.locator(".conv", has_text="Bob")).to_be_visible()
        # Tab to the conversation and open it with Enter; the message box gets the focus.
        for _ in range(12):
            page.keyboard.press("Tab")
            if page.evaluate("() => document.activeElement.classList.contains('conv')"):
                break
        page.keyboard.press("Enter")
        message = page.get_by_label("Message", exact=True)
        expect(message).to_be_focused()
        page.keyboard.type("sent with the keyboard")
        page.keyboard.press("Enter")
        expect(sent_messages(page, "sent with the keyboard")).to_have_count(1)
        open_chat(bob, "Alice")
        expect(sent_messages(bob.page, "sent with the keyboard")).to_have_count(1)
        # Dialogs close with Escape and give the page back.
        page.get_by_role("button", name="New chat", exact=True).press("Enter")
        expect(page.get_by_role("dialog", name="New chat")).to_be_visible()
        page.keyboard.press("Escape")
        expect(page.get_by_role("dialog")).to_have_count(0)
        # "Sign out all other devices": a second session of Alice's is sent back to sign-in.
        other = open_person(browser, server_url, "Alice", register=False)
        other.username = alice.username
        other.page.goto("/")
        sign_in(other)
        page.get_by_role("button", name="Settings").click()
        page.get_by_role("button", name="Sign out all other devices").click()
        expect(page.get_by_text("Your other devices are signed out.")).to_be_visible()
        expect(other.page.get_by_role("button", name="Sign in", exact=True)).to_be_visible()
        other.close()
        assert_clean(alice, bob)
    finally:
        alice.close()
        bob.close()


def test_chinese_ui_keeps_contract_names_and_switches_language(
    browser: Browser, server_url: str
) -> None:
    li = open_person(browser, server_url, "李雷", prefix="lilei", locale="zh-CN", register=False)
    # A display name of its own per run, so a search in Chinese finds exactly one person.
    han_name = "韩梅梅" + "".join(
        "零一二三四五六七八九"[int(d)] for d in str(random.randrange(10**6))
    )
    han = open_person(
        browser, server_url, han_name, prefix="hanmeimei", locale="zh-CN", viewport=PHONE
    )
    try:
        page = li.page
        page.goto("/")
        expect(page.get_by_role("button", name="Sign in", exact=True)).to_have_text("登录")
        expect(page.get_by_role("button", name="Register", exact=True)).to_have_text("注册")
        expect(
            page.locator("label", has=page.get_by_label("Username", exact=True))
        ).to_contain_text("用户名")
        page.get_by_label("Username", exact=True).fill(li.username)
        page.get_by_label("Password", exact=True).fill("correct-horse-battery")
        page.locator("#login-display-name").fill(li.display_name)
        page.get_by_role("button", name="Register", exact=True).click()
        new_chat = page.get_by_role("button", name="New chat", exact=True)
        expect(new_chat).to_contain_text("发起聊天")

        new_chat.click()
        dialog = page.get_by_role("dialog")
        dialog.get_by_role("searchbox").fill(han_name[1:])  # display-name substring, in Chinese
        dialog.get_by_role("checkbox", name=han_name, exact=True).check()
        dialog.locator("button[type=submit]").click()
        expect(page.get_by_role("button", name="Send", exact=True)).to_have_text("发送")
        expect(page.get_by_label("Message", exact=True)).to_have_attribute("placeholder", "消息")
        long_text = "这是一条很长的中文消息，用来检查在窄屏上是否能正确换行，而不会撑破布局。" * 3
        send(li, long_text)

        open_chat(han, "李雷")
        bubble = sent_messages(han.page, long_text)
        expect(bubble).to_have_count(1)
        box = bubble.bounding_box()
        assert box and box["x"] + box["width"] <= 360
        assert han.page.evaluate("() => document.documentElement.scrollWidth") <= 360

        # Settings list the signed-in devices, this one just used (issue 14: last_seen_at).
        page.get_by_role("button", name="设置").click()
        device = page.get_by_role("list", name="已登录的设备").get_by_role("listitem")
        expect(device).to_have_count(1)
        expect(device).to_contain_text("本机")
        expect(device).to_contain_text("刚刚活跃")
        # Switch to English in settings; the choice sticks across a reload.
        page.get_by_label("语言").first.select_option("en")
        expect(page.get_by_role("button", name="Send", exact=True)).to_have_text("Send")
        page.reload()
        expect(page.locator(".tab").first).to_contain_text("Chats")
        page.evaluate("() => localStorage.removeItem('qunliao.lang')")
        page.get_by_role("button", name="Settings").click()
        page.get_by_role("button", name="Sign out", exact=True).click()
        sign_in(li)
        assert_clean(li, han)
    finally:
        li.close()
        han.close()
