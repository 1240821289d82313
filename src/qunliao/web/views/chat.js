// The chat pane: header, history (infinite scroll upward, date separators), composer.
import { h, reconcile, toast } from "../dom.js";
import { t } from "../i18n.js";
import { dayKey, dayLabel } from "../format.js";
import { Composer } from "./composer.js";
import { openGroupInfo } from "./group.js";
import { messageSignature, renderMessage, renderPending } from "./message.js";
import { openReceipts } from "./receipts.js";

const NEAR_TOP_PX = 120;
const NEAR_BOTTOM_PX = 60;

export class ChatView {
  constructor(store, conversationId, onBack) {
    this.store = store;
    this.id = conversationId;
    this.onBack = onBack;
    this.nodes = new Map(); // key → {sig, el}
    this.stickToBottom = true;

    this.titleEl = h("h2", { class: "chat-title", id: "chat-title" });
    this.subtitleEl = h("div", { class: "chat-subtitle", "aria-live": "polite" });
    this.infoButton = h("button", { class: "icon", "aria-label": t("group_info"), title: t("group_info"), onclick: () => openGroupInfo(store, this.id) }, "⋯");
    this.announcementEl = h("button", { class: "announcement", hidden: true, onclick: () => openGroupInfo(store, this.id) });
    this.topEl = h("li", { class: "history-edge", "aria-live": "polite" });
    this.listEl = h("ol", { class: "messages", "aria-labelledby": "chat-title" });
    this.scroller = h("div", { class: "scroller", tabindex: "0", "aria-label": t("history") }, this.listEl);
    this.jumpButton = h("button", { class: "jump", hidden: true, onclick: () => this.scrollToBottom() }, t("new_messages"));
    this.composer = new Composer(store, conversationId, {
      sent: () => {
        this.stickToBottom = true;
        this.render();
      },
    });
    this.el = h("section", { class: "chat", "aria-labelledby": "chat-title" },
      h("header", { class: "chat-head" },
        h("button", { class: "icon back", "aria-label": t("back"), title: t("back"), onclick: () => onBack() }, "‹"),
        h("div", { class: "chat-heading" }, this.titleEl, this.subtitleEl),
        this.infoButton),
      this.announcementEl,
      h("div", { class: "scroll-wrap" }, this.scroller, this.jumpButton),
      this.composer.el);

    this.scroller.addEventListener("scroll", () => this.onScroll());
    // Touch screens have no hover: a tap on a bubble shows its Reply / Recall tools.
    this.listEl.addEventListener("click", (e) => {
      const bubble = e.target.closest(".bubble");
      if (!bubble) return;
      for (const open of this.listEl.querySelectorAll(".tools-open")) if (!open.contains(bubble)) open.classList.remove("tools-open");
      bubble.closest(".msg")?.classList.toggle("tools-open");
    });
    this.actions = {
      reply: (msg) => this.composer.replyTo(msg),
      recall: (msg) => this.recall(msg),
      receipts: (msg) => openReceipts(store, this.id, msg),
      retry: (entry) => store.timeline.retrySend(entry.client_txn_id),
      discard: (entry) => store.timeline.discardSend(entry.client_txn_id),
    };
    const mine = (fn) => (id) => { if (id === this.id) fn(); };
    this.off = [
      store.on("messages", mine(() => this.render())),
      store.on("history", mine(() => this.renderEdge())),
      store.on("members", mine(() => { this.renderHeader(); this.render(); })),
      store.on("conversation", mine(() => this.renderHeader())),
      store.on("typing", mine(() => this.renderHeader())),
      store.on("users", () => { this.renderHeader(); this.render(); }),
      store.on("contacts", () => this.renderHeader()),
    ];
    this.onVisible = () => { if (document.visibilityState === "visible") store.markRead(this.id); };
    document.addEventListener("visibilitychange", this.onVisible);
    this.renderHeader();
    this.render();
  }

  destroy() {
    for (const off of this.off) off();
    document.removeEventListener("visibilitychange", this.onVisible);
    this.composer.destroy();
  }

  focus() {
    this.composer.focus();
  }

  get conv() {
    return this.store.conversations.get(this.id);
  }

  renderHeader() {
    const conv = this.conv;
    if (!conv) return;
    const store = this.store;
    const title = store.titleOf(conv) || (store.isNotesToSelf(conv) ? t("notes_to_self") : t("group_chat"));
    this.titleEl.textContent = conv.kind === "group" && conv.member_count ? `${title} (${conv.member_count})` : title;
    const typing = store.typingIn(this.id);
    if (typing.length) {
      this.subtitleEl.textContent = typing.length === 1 ? t("is_typing", { name: store.nameOf(typing[0], this.id) }) : t("are_typing", { n: typing.length });
      this.subtitleEl.classList.add("typing");
    } else {
      this.subtitleEl.classList.remove("typing");
      this.subtitleEl.textContent = "";
    }
    this.infoButton.hidden = conv.kind !== "group";
    const announcement = conv.kind === "group" ? (conv.announcement || "").trim() : "";
    this.announcementEl.hidden = !announcement;
    this.announcementEl.replaceChildren(h("strong", {}, `${t("announcement")}: `), announcement);
  }

  renderEdge() {
    const hist = this.store.timeline.historyOf(this.id);
    this.topEl.textContent = hist.complete ? t("start_of_history") : hist.loading ? t("load_older") : "";
    this.topEl.classList.toggle("loading", hist.loading);
  }

  render() {
    const conv = this.conv;
    if (!conv) return;
    const store = this.store;
    const before = this.anchor();
    const nodes = [this.topEl];
    let lastDay = null;
    const keep = new Set();
    const addDay = (ms) => {
      const key = dayKey(ms);
      if (key === lastDay) return;
      lastDay = key;
      const label = dayLabel(ms);
      nodes.push(this.node(`d:${key}`, label, () => h("li", { class: "day", role: "separator" }, h("span", {}, label)), keep));
    };
    for (const msg of store.timeline.sortedMessages(this.id)) {
      addDay(msg.sent_at);
      const sig = messageSignature(store, conv, msg);
      nodes.push(this.node(`m:${msg.seq}`, sig, () => renderMessage(store, conv, msg, this.actions), keep));
    }
    for (const entry of store.outbox ? store.outbox.forConversation(this.id) : []) {
      addDay(entry.created_at);
      const sig = JSON.stringify([entry.state, entry.body]);
      nodes.push(this.node(`p:${entry.client_txn_id}`, sig, () => renderPending(store, conv, entry, this.actions), keep));
    }
    for (const key of [...this.nodes.keys()]) if (!keep.has(key)) this.nodes.delete(key);
    reconcile(this.listEl, nodes);
    this.renderEdge();
    const newest = nodes[nodes.length - 1];
    if (!before.bottom && newest !== this.lastNode && this.lastNode) this.jumpButton.hidden = false;
    this.lastNode = newest;
    this.restore(before);
    this.maybeLoadOlder();
  }

  node(key, sig, build, keep) {
    keep.add(key);
    const old = this.nodes.get(key);
    if (old && old.sig === sig) return old.el;
    const el = build();
    if (old && old.el.contains(document.activeElement)) {
      // Keep keyboard focus on the same control after a re-render of its message.
      queueMicrotask(() => el.querySelector(".receipt.link, .tool")?.focus());
    }
    this.nodes.set(key, { sig, el });
    return el;
  }

  /** Remember what is on screen so new content above it does not make the view jump. */
  anchor() {
    const s = this.scroller;
    const atBottom = s.scrollHeight - s.scrollTop - s.clientHeight < NEAR_BOTTOM_PX;
    if (atBottom || this.stickToBottom) return { bottom: true };
    for (const el of this.listEl.children) {
      if (el.offsetTop + el.offsetHeight > s.scrollTop) return { el, offset: el.offsetTop - s.scrollTop };
    }
    return { bottom: true };
  }

  restore(before) {
    const s = this.scroller;
    if (before.bottom) {
      s.scrollTop = s.scrollHeight;
      this.stickToBottom = true;
    } else if (before.el && before.el.isConnected) {
      s.scrollTop = before.el.offsetTop - before.offset;
    }
  }

  scrollToBottom() {
    this.stickToBottom = true;
    this.scroller.scrollTop = this.scroller.scrollHeight;
    this.jumpButton.hidden = true;
  }

  onScroll() {
    const s = this.scroller;
    this.stickToBottom = s.scrollHeight - s.scrollTop - s.clientHeight < NEAR_BOTTOM_PX;
    if (this.stickToBottom) this.jumpButton.hidden = true;
    this.maybeLoadOlder();
  }

  maybeLoadOlder() {
    const s = this.scroller;
    const hist = this.store.timeline.historyOf(this.id);
    if (!s.isConnected || hist.complete || hist.loading || !this.store.timeline.messagesOf(this.id).size) return;
    // Load when the top is near, or when the first page does not even fill the screen.
    if (s.scrollTop < NEAR_TOP_PX || s.scrollHeight <= s.clientHeight) {
      if (s.scrollTop < NEAR_TOP_PX && s.scrollHeight > s.clientHeight) this.stickToBottom = false;
      this.store.timeline.loadOlder(this.id).catch((err) => toast(t("error_generic", { message: err.message })));
    }
  }

  async recall(msg) {
    try {
      await this.store.timeline.recall(this.id, msg.message_id);
    } catch (err) {
      toast(err.status === 403 ? t("recall_failed") : t("error_generic", { message: err.message }));
    }
  }
}
