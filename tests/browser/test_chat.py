"""Two people chatting live in two browser contexts; sessions survive a reload."""

from __future__ import annotations

from playwright.sync_api import Browser, expect

from .helpers import (
    message_item,
    open_chat,
    open_person,
    send,
    sent_messages,
    sign_in,
    start_chat,
)


def test_two_users_chat_live_both_ways(browser: Browser, server_url: str) -> None:
    alice = open_person(browser, server_url, "Alice 王", prefix="alice")
    bob = open_person(browser, server_url, "Bob 李", prefix="bob")
    try:
        start_chat(alice, [bob])
        send(alice, "Hello Bob, 你好！")
        expect(sent_messages(alice.page, "Hello Bob, 你好！")).to_have_count(1)
        expect(message_item(alice.page, "Hello Bob, 你好！").locator(".receipt")).to_have_text(
            "Sent"
        )

        # Bob's list shows the new chat live, with preview and unread badge.
        conv = bob.page.locator(".conv", has_text="Alice 王")
        expect(conv).to_be_visible()
        expect(conv.locator(".conv-preview")).to_have_text("Hello Bob, 你好！")
        expect(conv.locator(".badge")).to_have_text("1")
        open_chat(bob, "Alice 王")
        expect(sent_messages(bob.page, "Hello Bob, 你好！")).to_have_count(1)
        expect(conv.locator(".badge")).to_have_count(0)

        # Shift+Enter makes a new line, Enter sends.
        box = bob.page.get_by_label("Message", exact=True)
        box.fill("line one")
        box.press("Shift+Enter")
        box.press_sequentially("line two")
        box.press("Enter")
        expect(sent_messages(alice.page, "line one\nline two")).to_have_count(1)
        expect(alice.page.locator(".chat-subtitle")).not_to_contain_text("typing")

        # Own messages sit on the right, the other side's on the left.
        mine = message_item(alice.page, "Hello Bob, 你好！")
        theirs = message_item(alice.page, "line one\nline two")
        expect(mine).to_have_class("msg mine")
        mine_box = mine.locator(".bubble").bounding_box()
        theirs_box = theirs.locator(".bubble").bounding_box()
        assert mine_box and theirs_box
        assert mine_box["x"] > theirs_box["x"] + 100

        # The direct chat shows "Read" once Bob has seen Alice's message.
        expect(mine.locator(".receipt")).to_have_text("Read")

        # Reload: still signed in, the history is still there.
        alice.page.reload()
        open_chat(alice, "Bob 李")
        expect(sent_messages(alice.page, "Hello Bob, 你好！")).to_have_count(1)
        expect(sent_messages(alice.page, "line one\nline two")).to_have_count(1)

        # Sign out, and a reload stays signed out; signing in again works.
        alice.page.get_by_role("button", name="Settings").click()
        alice.page.get_by_role("button", name="Sign out", exact=True).click()
        expect(alice.page.get_by_role("button", name="Sign in", exact=True)).to_be_visible()
        alice.page.reload()
        expect(alice.page.get_by_role("button", name="Sign in", exact=True)).to_be_visible()
        alice.page.get_by_label("Username", exact=True).fill(alice.username)
        alice.page.get_by_label("Password", exact=True).fill("not the password")
        alice.page.get_by_role("button", name="Sign in", exact=True).click()
        expect(alice.page.get_by_role("alert")).to_have_text("Wrong username or password.")
        sign_in(alice)
        open_chat(alice, "Bob 李")
        expect(sent_messages(alice.page, "Hello Bob, 你好！")).to_have_count(1)

        for person in (alice, bob):
            assert person.page_errors == []
            assert person.csp_errors == []
    finally:
        alice.close()
        bob.close()


def test_reconnect_resumes_without_gaps_or_duplicates(browser: Browser, server_url: str) -> None:
    alice = open_person(browser, server_url, "Alice", prefix="alice")
    bob = open_person(browser, server_url, "Bob", prefix="bob")
    sockets: list[str] = []
    alice.page.on("websocket", lambda ws: sockets.append(ws.url))
    try:
        start_chat(alice, [bob])
        send(alice, "before the drop")
        open_chat(bob, "Alice")
        expect(sent_messages(bob.page, "before the drop")).to_have_count(1)
        expect(sent_messages(alice.page, "before the drop")).to_have_count(1)

        # The connection dies (as when a server restarts); Bob keeps writing meanwhile.
        alice.page.evaluate(
            "() => { window.qunliao.socket.attempt = 4; window.qunliao.socket.drop('test'); }"
        )
        for n in range(5):
            send(bob, f"during the gap {n}")
        send(alice, "after the drop")
        for page in (alice.page, bob.page):
            for n in range(5):
                expect(sent_messages(page, f"during the gap {n}")).to_have_count(1)
            expect(sent_messages(page, "after the drop")).to_have_count(1)
        assert len(sockets) >= 1
        assert any("since=" in url for url in sockets), sockets
        texts = alice.page.locator(".messages li.msg .bubble > .text").all_inner_texts()
        assert len(texts) == len(set(texts)) == 7

        # A resume token the server refuses (close 4400) is dropped and the socket goes live.
        alice.page.evaluate(
            "() => { window.qunliao.since = 'not-a-token'; window.qunliao.socket.drop('test'); }"
        )
        alice.page.wait_for_timeout(1500)
        send(bob, "after a bad token")
        expect(sent_messages(alice.page, "after a bad token")).to_have_count(1)
        for person in (alice, bob):
            assert person.page_errors == []
    finally:
        alice.close()
        bob.close()
