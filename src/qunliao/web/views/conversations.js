// The conversation list: newest activity first, preview, time and unread badge, updated live.
import { avatar, h, reconcile } from "../dom.js";
import { t } from "../i18n.js";
import { listTime } from "../format.js";

export class ConversationList {
  constructor(store, onOpen) {
    this.store = store;
    this.onOpen = onOpen;
    this.filter = "";
    this.items = new Map(); // conversation_id → {sig, el}
    this.search = h("input", {
      type: "search", class: "search", placeholder: t("search_chats"), "aria-label": t("search_chats"),
      oninput: () => { this.filter = this.search.value.trim().toLowerCase(); this.render(); },
    });
    this.listEl = h("ul", { class: "conv-list", "aria-label": t("chats") });
    this.emptyEl = h("p", { class: "empty" }, t("no_chats"));
    this.el = h("div", { class: "conversations" }, h("div", { class: "search-row" }, this.search), this.listEl, this.emptyEl);
    this.off = [
      store.on("conversations", () => this.render()),
      store.on("users", () => this.render()),
      store.on("contacts", () => this.render()),
      store.on("typing", () => this.render()),
      store.on("messages", () => this.render()),
    ];
    this.render();
  }

  destroy() {
    for (const off of this.off) off();
  }

  title(conv) {
    const title = this.store.titleOf(conv);
    if (title) return title;
    return this.store.isNotesToSelf(conv) ? t("notes_to_self") : t("group_chat");
  }

  preview(conv) {
    const store = this.store;
    const typing = store.typingIn(conv.conversation_id);
    if (typing.length) return { text: typing.length === 1 ? t("is_typing", { name: store.nameOf(typing[0], conv.conversation_id) }) : t("are_typing", { n: typing.length }), typing: true };
    const pending = store.outbox ? store.outbox.forConversation(conv.conversation_id) : [];
    if (pending.length) return { text: pending[pending.length - 1].body.text, pending: true };
    const msg = conv.last_message;
    if (!msg) return { text: conv.announcement || "" };
    const mine = store.me && msg.sender_id === store.me.user_id;
    if (msg.recalled_at || msg.body === null) {
      return { text: mine ? t("you_recalled") : t("they_recalled", { name: store.nameOf(msg.sender_id, conv.conversation_id) }) };
    }
    const text = (msg.body && msg.body.text) || "";
    const prefix = conv.kind === "group" && !mine ? `${store.nameOf(msg.sender_id, conv.conversation_id)}: ` : "";
    return { text: prefix + text.replace(/\s+/g, " ") };
  }

  render() {
    const store = this.store;
    const nodes = [];
    for (const conv of store.sortedConversations()) {
      const title = this.title(conv);
      if (this.filter && !title.toLowerCase().includes(this.filter)) continue;
      const preview = this.preview(conv);
      const when = conv.last_activity_at || (conv.last_message && conv.last_message.sent_at) || 0;
      const unread = conv.unread_count || 0;
      const active = store.activeId === conv.conversation_id;
      const mentioned = Boolean(conv.mentioned_me && unread);
      const sig = JSON.stringify([title, preview, when, unread, active, listTime(when), mentioned]);
      let item = this.items.get(conv.conversation_id);
      if (!item || item.sig !== sig) {
        const el = h("li", { class: "conv-item" },
          h("button", {
            class: `conv ${active ? "active" : ""}`,
            "aria-current": active ? "true" : false,
            dataset: { conversationId: conv.conversation_id },
            onclick: () => this.onOpen(conv.conversation_id),
          },
            h("span", { class: "conv-avatar" }, avatar(title, conv.kind === "group" ? conv.conversation_id : conv.peer_id || conv.conversation_id),
              unread ? h("span", { class: "badge", "aria-label": t("unread_badge", { n: unread }) }, unread > 99 ? "99+" : String(unread)) : null),
            h("span", { class: "conv-main" },
              h("span", { class: "conv-top" }, h("span", { class: "conv-title" }, title), h("time", { class: "conv-time" }, listTime(when))),
              h("span", { class: `conv-preview ${preview.typing ? "typing" : ""}` },
                mentioned ? h("span", { class: "mention-mark" }, `${t("mentioned_you")} `) : null,
                preview.pending ? h("span", { class: "pending-mark" }, "⏱ ") : null, preview.text))));
        if (item) {
          // A re-rendered item keeps the keyboard focus it had.
          const hadFocus = item.el.contains(document.activeElement);
          item.el.replaceWith(el);
          if (hadFocus) el.querySelector("button").focus();
        }
        item = { sig, el };
        this.items.set(conv.conversation_id, item);
      }
      nodes.push(item.el);
    }
    reconcile(this.listEl, nodes);
    this.emptyEl.hidden = nodes.length > 0 || Boolean(this.filter);
  }
}
