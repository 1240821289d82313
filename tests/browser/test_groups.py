"""Groups: create, a third member joins, DingTalk-style read receipts that update live."""

from __future__ import annotations

from playwright.sync_api import Browser, expect

from .helpers import message_item, open_chat, open_person, send, sent_messages, start_chat


def test_group_third_member_joins_and_receipts_update_live(
    browser: Browser, server_url: str
) -> None:
    alice = open_person(browser, server_url, "Alice 王", prefix="alice")
    bob = open_person(browser, server_url, "Bob 李", prefix="bob")
    carol = open_person(browser, server_url, "Carol 张", prefix="carol")
    try:
        start_chat(alice, [bob], title="项目组 Project")
        expect(alice.page.locator(".chat-title")).to_have_text("项目组 Project (2)")
        send(alice, "first, before Carol")
        expect(sent_messages(bob.page, "first, before Carol")).to_have_count(0)
        open_chat(bob, "项目组 Project")
        expect(sent_messages(bob.page, "first, before Carol")).to_have_count(1)

        # Alice adds Carol from the group info sheet.
        alice.page.get_by_role("button", name="Group info").click()
        sheet = alice.page.get_by_role("dialog", name="Group info")
        sheet.get_by_text("Add members").click()
        sheet.get_by_role("searchbox").fill(carol.username)
        sheet.get_by_role("checkbox", name="Carol 张", exact=True).check()
        sheet.get_by_role("button", name="Add", exact=True).click()
        expect(sheet.locator(".members .person")).to_have_count(3)
        expect(sheet.locator(".members")).to_contain_text("Owner")
        sheet.get_by_role("button", name="Close").click()

        # Carol sees the group live and can talk in it.
        open_chat(carol, "项目组 Project")
        send(carol, "hi all, Carol here")
        expect(sent_messages(alice.page, "hi all, Carol here")).to_have_count(1)
        expect(sent_messages(bob.page, "hi all, Carol here")).to_have_count(1)

        # Receipts under Alice's message: 2 unread → 1 unread → all read, live.
        for reader in (bob, carol):
            reader.page.get_by_role("button", name="Contacts").click()  # looking elsewhere
        send(alice, "please read this 请阅读")
        receipt = message_item(alice.page, "please read this 请阅读").locator(".receipt")
        expect(receipt).to_have_text("2 unread")
        carol.page.get_by_role("button", name="Chats").click()  # back to the open group
        expect(sent_messages(carol.page, "please read this 请阅读")).to_have_count(1)
        expect(receipt).to_have_text("1 unread")
        bob.page.get_by_role("button", name="Chats").click()
        expect(receipt).to_have_text("All read")

        receipt.click()
        who = alice.page.get_by_role("dialog", name="Read receipts")
        expect(who.locator(".read-col .person")).to_have_count(2)
        expect(who.locator(".read-col")).to_contain_text("Bob 李")
        expect(who.locator(".read-col")).to_contain_text("Carol 张")
        expect(who.locator(".unread-col .person")).to_have_count(0)
    finally:
        for person in (alice, bob, carol):
            person.close()


def test_group_rename_announcement_remove_and_leave(browser: Browser, server_url: str) -> None:
    alice = open_person(browser, server_url, "Alice", prefix="alice")
    bob = open_person(browser, server_url, "Bob", prefix="bob")
    carol = open_person(browser, server_url, "Carol", prefix="carol")
    try:
        start_chat(alice, [bob, carol], title="Old name")
        send(alice, "welcome")
        open_chat(bob, "Old name")
        open_chat(carol, "Old name")

        alice.page.get_by_role("button", name="Group info").click()
        sheet = alice.page.get_by_role("dialog", name="Group info")
        sheet.get_by_label("Group name").fill("新名字 New name")
        sheet.get_by_label("Announcement").fill("公告：周五发布")
        sheet.get_by_role("button", name="Save").click()
        expect(bob.page.locator(".chat-title")).to_have_text("新名字 New name (3)")
        expect(bob.page.locator(".announcement")).to_contain_text("公告：周五发布")

        # Only owner and admins manage: Bob's sheet is read-only, without remove buttons.
        bob.page.get_by_role("button", name="Group info").click()
        bob_sheet = bob.page.get_by_role("dialog", name="Group info")
        expect(bob_sheet.get_by_label("Group name")).to_have_attribute("readonly", "")
        expect(bob_sheet.get_by_role("button", name="Remove Carol")).to_have_count(0)
        bob.page.keyboard.press("Escape")

        # The owner makes Bob an admin: his sheet becomes editable.
        sheet.get_by_role("button", name="Make admin Bob").click()
        expect(sheet.locator(".members .person", has_text="Bob")).to_contain_text("Admin")
        bob.page.get_by_role("button", name="Group info").click()
        expect(bob_sheet.get_by_label("Group name")).not_to_have_attribute("readonly", "")
        bob.page.keyboard.press("Escape")

        # Alice removes Carol: the group disappears from Carol's list.
        sheet.get_by_role("button", name="Remove Carol").click()
        expect(sheet.locator(".members .person")).to_have_count(2)
        expect(carol.page.locator(".conv", has_text="新名字 New name")).to_have_count(0)
        sheet.get_by_role("button", name="Close").click()

        # Bob leaves.
        bob.accept_dialogs = True  # the "Leave this group?" confirmation
        bob.page.get_by_role("button", name="Group info").click()
        bob.page.get_by_role("dialog", name="Group info").get_by_role(
            "button", name="Leave group"
        ).click()
        expect(bob.page.locator(".conv", has_text="新名字 New name")).to_have_count(0)
        expect(alice.page.locator(".chat-title")).to_have_text("新名字 New name (1)")
    finally:
        for person in (alice, bob, carol):
            person.close()
