// The message composer: Enter sends, Shift+Enter adds a line, "@" opens the mention picker,
// typing notifications, reply-with-quote bar, per-conversation drafts.
// The aria-labels "Message" and "Send" are a contract with external tests.
import { h } from "../dom.js";
import { t } from "../i18n.js";
import { shorten } from "./message.js";

const TYPING_EVERY_MS = 3000;
const drafts = new Map(); // conversation_id → text, kept while the page lives

export class Composer {
  constructor(store, conversationId, { sent }) {
    this.store = store;
    this.id = conversationId;
    this.onSent = sent;
    this.reply = null;
    this.picked = new Map(); // "@Name" → user_id | "all"
    this.typingSentAt = 0;
    this.picker = { open: false, items: [], index: 0, start: 0 };

    this.input = h("textarea", {
      class: "composer-input", rows: "1", "aria-label": "Message", placeholder: t("message"),
      "aria-autocomplete": "list", "aria-controls": "mention-list", enterkeyhint: "send",
    });
    this.input.value = drafts.get(conversationId) || "";
    this.sendButton = h("button", { class: "primary send", type: "submit", "aria-label": "Send" }, t("send"));
    this.replyBar = h("div", { class: "reply-bar", hidden: true });
    this.pickerEl = h("ul", { class: "mention-list", id: "mention-list", role: "listbox", "aria-label": t("mention_picker"), hidden: true });
    this.el = h("form", { class: "composer", onsubmit: (e) => { e.preventDefault(); this.submit(); } },
      this.replyBar, this.pickerEl,
      h("div", { class: "composer-row" }, this.input, this.sendButton));

    this.input.addEventListener("keydown", (e) => this.onKeyDown(e));
    this.input.addEventListener("input", () => this.onInput());
    this.input.addEventListener("blur", () => setTimeout(() => this.closePicker(), 150));
    this.updateButton();
  }

  destroy() {
    drafts.set(this.id, this.input.value);
    if (this.typingSentAt) this.store.sendTyping(this.id, false);
  }

  focus() {
    // On phones the keyboard would cover the history; focus only where there is room.
    if (window.matchMedia("(min-width: 721px)").matches) this.input.focus();
  }

  updateButton() {
    this.sendButton.disabled = !this.input.value.trim();
  }

  replyTo(msg) {
    this.reply = msg;
    const name = this.store.nameOf(msg.sender_id, this.id);
    this.replyBar.replaceChildren(
      h("div", { class: "reply-text" }, h("strong", {}, t("replying_to", { name })), " ", shorten(msg.body && msg.body.text, 80)),
      h("button", { type: "button", class: "icon", "aria-label": t("cancel"), onclick: () => this.clearReply() }, "✕"));
    this.replyBar.hidden = false;
    this.input.focus();
  }

  clearReply() {
    this.reply = null;
    this.replyBar.hidden = true;
    this.replyBar.replaceChildren();
  }

  submit() {
    const text = this.input.value.replace(/\s+$/, "");
    if (!text.trim()) return;
    const mentions = [];
    for (const [token, userId] of this.picked) {
      if (!text.includes(token)) continue;
      if (userId === "all") {
        mentions.length = 0;
        mentions.push("all");
        break;
      }
      if (!mentions.includes(userId)) mentions.push(userId);
    }
    const payload = { replyTo: this.reply ? this.reply.message_id : null };
    if (mentions.length) payload.mentions = mentions[0] === "all" ? "all" : mentions;
    this.store.timeline.send(this.id, text, payload);
    this.input.value = "";
    drafts.delete(this.id);
    this.picked.clear();
    this.clearReply();
    this.closePicker();
    this.updateButton();
    if (this.typingSentAt) {
      this.typingSentAt = 0;
      this.store.sendTyping(this.id, false);
    }
    this.onSent();
    this.input.focus();
  }

  onKeyDown(e) {
    if (this.picker.open) {
      if (e.key === "ArrowDown" || e.key === "ArrowUp") {
        e.preventDefault();
        const n = this.picker.items.length;
        this.picker.index = (this.picker.index + (e.key === "ArrowDown" ? 1 : n - 1)) % n;
        this.renderPicker();
        return;
      }
      if ((e.key === "Enter" || e.key === "Tab") && !e.shiftKey) {
        e.preventDefault();
        this.pick(this.picker.items[this.picker.index]);
        return;
      }
      if (e.key === "Escape") {
        e.preventDefault();
        e.stopPropagation();
        this.closePicker();
        return;
      }
    }
    // While an IME is composing (Chinese pinyin input), Enter confirms the candidate instead.
    if (e.key === "Enter" && !e.shiftKey && !e.isComposing && e.keyCode !== 229) {
      e.preventDefault();
      this.submit();
    } else if (e.key === "Escape" && this.reply) {
      e.stopPropagation();
      this.clearReply();
    }
  }

  onInput() {
    this.updateButton();
    const hasText = Boolean(this.input.value.trim());
    const now = Date.now();
    if (hasText && now - this.typingSentAt > TYPING_EVERY_MS) {
      this.typingSentAt = now;
      this.store.sendTyping(this.id, true);
    } else if (!hasText && this.typingSentAt) {
      this.typingSentAt = 0;
      this.store.sendTyping(this.id, false);
    }
    this.updatePicker();
  }

  // --- @mention picker ---------------------------------------------------------------------------
  updatePicker() {
    const conv = this.store.conversations.get(this.id);
    if (!conv || conv.kind !== "group") return this.closePicker();
    const caret = this.input.selectionStart;
    const before = this.input.value.slice(0, caret);
    const match = /(^|\s)@([^\s@]*)$/.exec(before);
    if (!match) return this.closePicker();
    const query = match[2].toLowerCase();
    const members = [...(this.store.members.get(this.id)?.values() || [])]
      .filter((m) => m.user_id !== this.store.me.user_id)
      .map((m) => ({ id: m.user_id, name: this.store.nameOf(m.user_id, this.id), username: this.store.users.get(m.user_id)?.username || "" }))
      .filter((m) => !query || m.name.toLowerCase().includes(query) || m.username.startsWith(query))
      .slice(0, 8);
    const items = members;
    if ((conv.my_role === "owner" || conv.my_role === "admin") && (!query || t("mention_all").toLowerCase().includes(query) || "all".startsWith(query))) {
      items.unshift({ id: "all", name: t("mention_all"), username: "all" });
    }
    if (!items.length) return this.closePicker();
    this.picker = { open: true, items, index: 0, start: caret - match[2].length - 1 };
    this.renderPicker();
  }

  renderPicker() {
    const { items, index } = this.picker;
    this.pickerEl.replaceChildren(...items.map((item, i) =>
      h("li", {
        id: `mention-${i}`, role: "option", class: i === index ? "current" : "", "aria-selected": i === index ? "true" : "false",
        onmousedown: (e) => { e.preventDefault(); this.pick(item); },
      }, h("span", { class: "mention-name" }, item.name), item.username && item.id !== "all" ? h("span", { class: "muted" }, ` @${item.username}`) : null)));
    this.pickerEl.hidden = false;
    this.input.setAttribute("aria-expanded", "true");
    this.input.setAttribute("aria-activedescendant", `mention-${index}`);
  }

  pick(item) {
    if (!item) return;
    const value = this.input.value;
    const caret = this.input.selectionStart;
    const token = `@${item.name}`;
    this.input.value = `${value.slice(0, this.picker.start)}${token} ${value.slice(caret)}`;
    const pos = this.picker.start + token.length + 1;
    this.input.setSelectionRange(pos, pos);
    this.picked.set(token, item.id);
    this.closePicker();
    this.updateButton();
    this.input.focus();
  }

  closePicker() {
    if (!this.picker.open && this.pickerEl.hidden) return;
    this.picker = { open: false, items: [], index: 0, start: 0 };
    this.pickerEl.hidden = true;
    this.pickerEl.replaceChildren();
    this.input.setAttribute("aria-expanded", "false");
    this.input.removeAttribute("aria-activedescendant");
  }
}
