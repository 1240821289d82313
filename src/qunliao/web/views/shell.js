// The signed-in layout: a sidebar (chats or contacts) and a main pane (a chat or a contact).
// At phone width only one of the two is visible; "Back" returns to the list.
import { avatar, h } from "../dom.js";
import { t } from "../i18n.js";
import { ChatView } from "./chat.js";
import { ContactsView, contactDetail } from "./contacts.js";
import { ConversationList } from "./conversations.js";
import { openNewChat } from "./newchat.js";
import { openSettings } from "./settings.js";

export class Shell {
  constructor(store, root) {
    this.store = store;
    this.root = root;
    this.tab = "chats";
    this.contactId = null;
    this.unsubscribe = [
      store.on("active", () => this.renderMain()),
      store.on("status", () => this.renderStatus()),
      store.on("contacts", () => this.renderTabs()),
      store.on("conversations", () => this.renderTabs()),
      store.on("users", () => this.renderMe()),
    ];
    this.onKey = (e) => {
      // At phone width Escape is "back" (like the system back gesture); on desktop it does nothing.
      const phone = window.matchMedia("(max-width: 720px)").matches;
      if (phone && e.key === "Escape" && this.shell?.dataset.view === "detail" && !document.querySelector("dialog[open]")) {
        this.back();
      }
    };
    document.addEventListener("keydown", this.onKey);
    this.rerender();
  }

  destroy() {
    document.title = "qunliao 群聊";
    for (const off of this.unsubscribe) off();
    document.removeEventListener("keydown", this.onKey);
    this.list?.destroy();
    this.chat?.destroy();
    this.contacts?.destroy();
  }

  rerender() {
    this.list?.destroy();
    this.contacts?.destroy();
    this.chat?.destroy();
    this.list = this.contacts = this.chat = null;
    this.meBox = h("div", { class: "me" });
    this.statusBar = h("div", { class: "conn", role: "status", "aria-live": "polite" });
    this.tabsBox = h("nav", { class: "tabs", "aria-label": t("app_name") });
    this.sideBody = h("div", { class: "side-body" });
    this.main = h("main", { class: "pane", id: "main-pane" });
    this.shell = h(
      "div",
      { class: "shell", dataset: { view: "list" } },
      h("aside", { class: "side" },
        h("header", { class: "side-head" }, this.meBox,
          h("button", { class: "primary round", "aria-label": "New chat", title: t("new_chat"), onclick: () => openNewChat(this.store, (id) => this.openChat(id)) },
            h("span", { "aria-hidden": "true" }, "+"), h("span", { class: "label" }, t("new_chat")))),
        this.sideBody,
        this.tabsBox),
      this.main,
    );
    this.root.replaceChildren(h("div", { class: "frame" }, this.statusBar, this.shell));
    this.renderMe();
    this.renderStatus();
    this.renderTabs();
    this.renderSide();
    this.renderMain();
  }

  renderMe() {
    const me = this.store.me;
    if (!me || !this.meBox) return;
    this.meBox.replaceChildren(
      h("button", { class: "me-button", "aria-label": t("settings"), title: t("settings"), onclick: () => openSettings(this.store) },
        avatar(me.display_name, me.user_id), h("span", { class: "me-name" }, me.display_name || me.username)),
    );
  }

  renderStatus() {
    const status = this.store.status;
    this.statusBar.textContent = status === "open" ? "" : status === "offline" ? t("offline") : t("connecting");
    this.statusBar.classList.toggle("show", status !== "open");
  }

  renderTabs() {
    if (!this.tabsBox) return;
    const unread = this.store.sortedConversations().reduce((n, c) => n + (c.unread_count || 0), 0);
    const requests = this.store.pendingIncoming().length + this.store.pendingInvitations().length;
    document.title = unread ? `(${unread > 99 ? "99+" : unread}) qunliao 群聊` : "qunliao 群聊";
    const tab = (name, label, badge) =>
      h("button", {
        class: `tab ${this.tab === name ? "current" : ""}`,
        "aria-current": this.tab === name ? "page" : false,
        onclick: () => this.selectTab(name),
      }, h("span", {}, label), badge ? h("span", { class: "badge", "aria-label": t("unread_badge", { n: badge }) }, badge > 99 ? "99+" : String(badge)) : null);
    this.tabsBox.replaceChildren(tab("chats", t("chats"), unread), tab("contacts", t("contacts"), requests));
  }

  selectTab(name) {
    if (this.tab === name) return;
    this.tab = name;
    // Only a chat on screen counts as read; come back to the same chat when returning.
    if (name === "chats" && this.lastChatId && this.store.conversations.has(this.lastChatId)) {
      this.store.setActive(this.lastChatId);
    } else if (name !== "chats" && this.store.activeId) {
      this.lastChatId = this.store.activeId;
      this.store.setActive(null);
    }
    this.renderTabs();
    this.renderSide();
    this.renderMain();
  }

  renderSide() {
    this.list?.destroy();
    this.contacts?.destroy();
    this.list = this.contacts = null;
    if (this.tab === "chats") {
      this.list = new ConversationList(this.store, (id) => this.openChat(id));
      this.sideBody.replaceChildren(this.list.el);
    } else {
      this.contacts = new ContactsView(this.store, (id) => this.openContact(id));
      this.sideBody.replaceChildren(this.contacts.el);
    }
  }

  openChat(id) {
    if (this.tab !== "chats") {
      this.tab = "chats";
      this.renderTabs();
      this.renderSide();
    }
    this.store.setActive(id);
  }

  openContact(userId) {
    this.contactId = userId;
    this.renderMain();
  }

  back() {
    if (this.tab === "chats") this.store.setActive(null);
    else {
      this.contactId = null;
      this.renderMain();
    }
  }

  renderMain() {
    this.chat?.destroy();
    this.chat = null;
    let detail = false;
    if (this.tab === "chats" && this.store.activeId && this.store.conversations.has(this.store.activeId)) {
      this.chat = new ChatView(this.store, this.store.activeId, () => this.back());
      this.main.replaceChildren(this.chat.el);
      this.chat.focus();
      detail = true;
    } else if (this.tab === "contacts" && this.contactId) {
      this.main.replaceChildren(contactDetail(this.store, this.contactId, { back: () => this.back(), openChat: (id) => this.openChat(id) }));
      detail = true;
    } else {
      this.main.replaceChildren(h("div", { class: "empty-pane" }, h("span", { class: "logo big", "aria-hidden": "true" }, "群"), h("p", {}, this.tab === "chats" ? t("pick_chat") : t("pick_contact"))));
    }
    this.shell.dataset.view = detail ? "detail" : "list";
    if (this.list) this.list.render();
  }
}
