"""Offline queue, recall, reply with quote, @mention, XSS attempts."""

from __future__ import annotations

import contextlib
import json

from playwright.sync_api import Browser, expect
from playwright.sync_api import Error as PlaywrightError

from .helpers import (
    any_messages,
    message_item,
    open_chat,
    open_person,
    send,
    sent_messages,
    start_chat,
)

XSS = "<img src=x onerror=alert(1)>"
OUTBOX_SIZES = (
    "() => Object.keys(localStorage).filter((k) => k.startsWith('qunliao.outbox.'))"
    ".map((k) => JSON.parse(localStorage.getItem(k)).length)"
)


def test_offline_queue_delivers_once(browser: Browser, server_url: str) -> None:
    alice = open_person(browser, server_url, "Alice", prefix="alice")
    bob = open_person(browser, server_url, "Bob", prefix="bob")
    try:
        start_chat(alice, [bob])
        send(alice, "online hello")
        open_chat(bob, "Alice")
        expect(sent_messages(bob.page, "online hello")).to_have_count(1)

        alice.context.set_offline(True)
        expect(alice.page.locator(".conn")).to_have_text(
            "Offline — messages will be sent when you're back online"
        )
        send(alice, "sent while offline 离线")
        send(alice, "second offline message")
        pending = alice.page.locator(".messages li.msg.pending")
        expect(pending).to_have_count(2)
        expect(pending.first.locator(".status")).to_have_text("Sending…")
        queued = json.loads(
            alice.page.evaluate(
                "() => localStorage.getItem(Object.keys(localStorage)"
                ".find((k) => k.startsWith('qunliao.outbox.')))"
            )
        )
        assert [entry["body"]["text"] for entry in queued] == [
            "sent while offline 离线",
            "second offline message",
        ]
        # Bob writes while Alice is away: her socket resumes and gets it once, no gap.
        send(bob, "while you were away")
        expect(sent_messages(bob.page, "while you were away")).to_have_count(1)
        bob.page.wait_for_timeout(1000)
        expect(any_messages(bob.page, "sent while offline 离线")).to_have_count(0)
        expect(any_messages(alice.page, "while you were away")).to_have_count(0)

        alice.context.set_offline(False)
        expect(pending).to_have_count(0, timeout=15000)
        expect(sent_messages(alice.page, "while you were away")).to_have_count(1)
        for page in (alice.page, bob.page):
            expect(sent_messages(page, "sent while offline 离线")).to_have_count(1)
            expect(sent_messages(page, "second offline message")).to_have_count(1)
        # In order, and still exactly once after a reload on both sides.
        texts = bob.page.locator(".messages li.msg .bubble > .text").all_inner_texts()
        assert texts.index("sent while offline 离线") + 1 == texts.index("second offline message")
        assert len(texts) == len(set(texts)) == 4
        for person in (alice, bob):
            person.page.reload()
            open_chat(person, "Bob" if person is alice else "Alice")
            expect(sent_messages(person.page, "sent while offline 离线")).to_have_count(1)
        assert alice.page.evaluate(OUTBOX_SIZES) == [0]

        # The queue survives a reload: queue offline, reload (fails offline), come back.
        alice.context.set_offline(True)
        expect(alice.page.locator(".conn")).to_be_visible()
        send(alice, "queued across a reload")
        expect(pending).to_have_count(1)
        with contextlib.suppress(PlaywrightError):
            alice.page.reload(timeout=5000)
        alice.context.set_offline(False)
        alice.page.goto("/")
        open_chat(alice, "Bob")
        expect(sent_messages(alice.page, "queued across a reload")).to_have_count(1)
        expect(sent_messages(bob.page, "queued across a reload")).to_have_count(1)
        assert alice.page.evaluate(OUTBOX_SIZES) == [0]
    finally:
        alice.close()
        bob.close()


def test_recall_reply_and_mention(browser: Browser, server_url: str) -> None:
    alice = open_person(browser, server_url, "Alice", prefix="alice")
    bob = open_person(browser, server_url, "Bob", prefix="bob")
    carol = open_person(browser, server_url, "Carol", prefix="carol")
    try:
        start_chat(alice, [bob, carol], title="Recall group")
        send(alice, "oops, wrong chat")
        open_chat(bob, "Recall group")
        expect(sent_messages(bob.page, "oops, wrong chat")).to_have_count(1)

        item = message_item(alice.page, "oops, wrong chat")
        item.locator(".bubble").hover()
        item.get_by_role("button", name="Recall: oops, wrong chat").click()
        expect(alice.page.locator(".messages .notice.recalled")).to_have_text(
            "You recalled a message"
        )
        expect(bob.page.locator(".messages .notice.recalled")).to_have_text(
            "Alice recalled a message"
        )
        expect(any_messages(bob.page, "oops, wrong chat")).to_have_count(0)
        bob.page.reload()
        open_chat(bob, "Recall group")
        expect(bob.page.locator(".messages .notice.recalled")).to_have_text(
            "Alice recalled a message"
        )

        # Reply with a quote.
        send(alice, "lunch at noon?")
        question = message_item(bob.page, "lunch at noon?")
        question.locator(".bubble").hover()
        question.get_by_role("button", name="Reply: lunch at noon?").click()
        expect(bob.page.locator(".reply-bar")).to_contain_text("Replying to Alice")
        send(bob, "yes 好的")
        answer = message_item(alice.page, "yes 好的")
        expect(answer.locator(".quote")).to_contain_text("Alice")
        expect(answer.locator(".quote")).to_contain_text("lunch at noon?")

        # @mention picker: type "@Ca", pick Carol with the keyboard.
        box = alice.page.get_by_label("Message", exact=True)
        box.press_sequentially("see you @Ca")
        picker = alice.page.get_by_role("listbox")
        expect(picker.get_by_role("option")).to_have_count(1)
        expect(picker.get_by_role("option").first).to_contain_text("Carol")
        box.press("Enter")
        expect(box).to_have_value("see you @Carol ")
        box.press("Enter")
        carol_conv = carol.page.locator(".conv", has_text="Recall group")
        expect(carol_conv.locator(".mention-mark")).to_have_text("[@you]")
        open_chat(carol, "Recall group")
        expect(carol_conv.locator(".mention-mark")).to_have_count(0)
        mention = message_item(carol.page, "see you @Carol")
        expect(mention.locator(".bubble")).to_have_class("bubble mentions-me")

        # Typing indicator: Bob types, Alice sees it in the header.
        bob.page.get_by_label("Message", exact=True).press_sequentially("typing something")
        expect(alice.page.locator(".chat-subtitle")).to_have_text("Bob is typing…")
    finally:
        for person in (alice, bob, carol):
            person.close()


def test_xss_in_message_and_display_name_renders_as_text(browser: Browser, server_url: str) -> None:
    mallory = open_person(browser, server_url, XSS, prefix="mallory")
    victim = open_person(browser, server_url, "Victim", prefix="victim")
    try:
        start_chat(mallory, [victim])
        send(mallory, XSS)
        send(mallory, "<script>alert(2)</script>")
        start_chat(mallory, [victim], title=XSS)
        send(mallory, "group " + XSS)

        conv = victim.page.locator(".conv", has_text=XSS)
        expect(conv.first).to_be_visible()
        open_chat(victim, XSS)
        victim.page.locator(".conv").filter(has_text="<script>alert(2)</script>").first.click()
        expect(sent_messages(victim.page, XSS)).to_have_count(1)
        expect(sent_messages(victim.page, "<script>alert(2)</script>")).to_have_count(1)
        expect(victim.page.locator(".chat-title")).to_have_text(XSS)
        victim.page.wait_for_timeout(500)
        for person in (mallory, victim):
            assert person.page.locator("#app img, #app script").count() == 0
            assert person.dialogs == []
            assert person.page_errors == []
    finally:
        mallory.close()
        victim.close()


def test_refused_message_shows_not_sent_with_retry_and_delete(
    browser: Browser, server_url: str
) -> None:
    alice = open_person(browser, server_url, "Alice", prefix="alice")
    bob = open_person(browser, server_url, "Bob", prefix="bob")
    try:
        start_chat(alice, [bob])
        too_long = "长" * 6000  # 18,000 bytes of UTF-8: over the 16,384-byte limit
        alice.page.get_by_label("Message", exact=True).fill(too_long)
        alice.page.get_by_role("button", name="Send", exact=True).click()
        failed = alice.page.locator(".messages li.msg.pending.failed")
        expect(failed).to_have_count(1)
        expect(failed.locator(".status")).to_contain_text("Not sent")
        failed.get_by_role("button", name="Retry").click()
        expect(failed.locator(".status")).to_contain_text("Not sent")
        failed.get_by_role("button", name="Delete").click()
        expect(failed).to_have_count(0)
        assert alice.page.evaluate(OUTBOX_SIZES) == [0]
        send(alice, "short is fine")
        open_chat(bob, "Alice")
        expect(sent_messages(bob.page, "short is fine")).to_have_count(1)
        expect(any_messages(bob.page, too_long)).to_have_count(0)
    finally:
        alice.close()
        bob.close()
