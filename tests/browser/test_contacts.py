"""Contacts: search, friend request and acceptance (live), remark, block."""

from __future__ import annotations

from playwright.sync_api import Browser, expect

from .helpers import api, api_user, open_person, unique


def test_friend_request_remark_and_block(browser: Browser, server_url: str) -> None:
    alice = open_person(browser, server_url, "Alice", prefix="alice")
    bob = open_person(browser, server_url, "Bob 李", prefix="bob")
    try:
        alice.page.get_by_role("button", name="Contacts").click()
        alice.page.get_by_role("searchbox", name="Search users").fill(bob.username)
        alice.page.get_by_role("button", name="Add friend Bob 李").click()
        expect(alice.page.get_by_text("Request sent")).to_be_visible()

        # Bob gets the request live, with a badge on the Contacts tab.
        contacts_tab = bob.page.get_by_role("button", name="Contacts")
        expect(contacts_tab.locator(".badge")).to_have_text("1")
        contacts_tab.click()
        bob.page.get_by_role("button", name="Accept Alice").click()
        expect(bob.page.locator(".contacts")).to_contain_text("Friends (1)")

        # Alice's list updates live; she sets a remark that only she sees.
        expect(alice.page.locator(".contacts")).to_contain_text("Friends (1)", timeout=10000)
        alice.page.get_by_role("searchbox", name="Search users").fill("")
        alice.page.locator(".person.as-button", has_text="Bob 李").click()
        alice.page.get_by_label("Remark").fill("老李 (Bob)")
        alice.page.get_by_role("button", name="Save").click()
        expect(alice.page.locator(".person.as-button", has_text="老李 (Bob)")).to_be_visible()

        # A chat started from the contact shows the remark as its title.
        alice.page.locator(".person.as-button", has_text="老李 (Bob)").click()
        alice.page.get_by_role("button", name="Send message").click()
        expect(alice.page.get_by_label("Message", exact=True)).to_be_visible()
        expect(alice.page.locator(".chat .chat-title")).to_have_text("老李 (Bob)")

        # Block and unblock.
        alice.page.get_by_role("button", name="Contacts").click()
        alice.page.locator(".person.as-button", has_text="老李 (Bob)").click()
        alice.page.get_by_role("button", name="Block").click()
        expect(alice.page.locator(".person.as-button", has_text="老李 (Bob)")).to_contain_text(
            "Blocked"
        )
        alice.page.locator(".person.as-button", has_text="老李 (Bob)").click()
        alice.page.get_by_role("button", name="Unblock").click()
        expect(alice.page.locator(".person.as-button", has_text="老李 (Bob)")).not_to_contain_text(
            "Blocked"
        )
    finally:
        alice.close()
        bob.close()


def test_group_invitation_consent(browser: Browser, server_url: str) -> None:
    """Bob asks to consent before being added; Alice's group becomes an invitation he accepts."""
    bob = open_person(browser, server_url, "Bob 李", prefix="bob")
    try:
        bob.page.get_by_role("button", name="Settings").click()
        consent = bob.page.get_by_role("checkbox", name="Ask me before others add me to a group")
        expect(consent).to_be_enabled()
        consent.check()
        expect(consent).to_be_checked()
        expect(consent).to_be_enabled()  # saved
        bob.page.get_by_role("button", name="Close").click()

        alice = api_user(server_url, unique("alice"), "Alice 王")
        [found] = api(server_url, "GET", f"/users?q={bob.username}", token=alice["access_token"])[
            "users"
        ]
        created = api(
            server_url, "POST", "/conversations",
            {"kind": "group", "member_ids": [found["user_id"]], "title": "读书会"},
            token=alice["access_token"],
        )  # fmt: skip
        assert created["invited"] == [found["user_id"]]

        contacts_tab = bob.page.get_by_role("button", name="Contacts")
        expect(contacts_tab.locator(".badge")).to_have_text("1")
        contacts_tab.click()
        expect(bob.page.locator(".invitations")).to_contain_text("Alice 王")
        bob.page.get_by_role("button", name="Accept 读书会").click()
        expect(bob.page.locator(".invitations")).to_have_count(0)
        bob.page.get_by_role("button", name="Chats").click()
        expect(bob.page.locator(".conversations")).to_contain_text("读书会")
    finally:
        bob.close()
