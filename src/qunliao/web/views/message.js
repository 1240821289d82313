// One chat message (or a pending one from the outbox), built with textContent only.
import { avatar, h } from "../dom.js";
import { t } from "../i18n.js";
import { clock, fullTime } from "../format.js";

/** A string that changes whenever the rendered message would; used to reuse DOM nodes. */
export function messageSignature(store, conv, msg) {
  const mine = msg.sender_id === store.me.user_id;
  const receipt = mine && !msg.recalled_at ? store.unreadCount(conv.conversation_id, msg.seq) : null;
  const quote = msg.reply_to ? store.timeline.quotedMessage(conv.conversation_id, msg.reply_to) : null;
  return JSON.stringify([
    msg.message_id, msg.body, msg.recalled_at, msg.edited_at, receipt, store.nameOf(msg.sender_id, conv.conversation_id),
    quote && [quote.body, quote.recalled_at, quote.sender_id], conv.my_role,
  ]);
}

export function renderMessage(store, conv, msg, actions) {
  const me = store.me.user_id;
  const mine = msg.sender_id === me;
  const group = conv.kind === "group";
  const senderName = store.nameOf(msg.sender_id, conv.conversation_id);
  if (msg.recalled_at || msg.body === null) {
    const text = mine ? t("you_recalled") : t("they_recalled", { name: senderName });
    return h("li", { class: "notice recalled", dataset: { seq: msg.seq, messageId: msg.message_id } }, text);
  }
  const text = (msg.body && msg.body.text) || "";
  const mentionsMe = Array.isArray(msg.mentions) ? msg.mentions.includes(me) : msg.mentions === "all";
  const bubble = h("div", { class: `bubble ${mentionsMe && !mine ? "mentions-me" : ""}` });
  if (msg.reply_to) bubble.appendChild(renderQuote(store, conv, msg.reply_to));
  bubble.appendChild(h("span", { class: "text" }, text));

  const meta = h("div", { class: "meta" },
    h("time", { datetime: new Date(msg.sent_at).toISOString(), title: fullTime(msg.sent_at) }, clock(msg.sent_at)),
    msg.edited_at ? h("span", { class: "edited" }, t("edited")) : null);
  if (mine) meta.appendChild(receiptLabel(store, conv, msg, actions));

  const canRecall = mine || (group && (conv.my_role === "owner" || conv.my_role === "admin"));
  const tools = h("div", { class: "msg-tools" },
    h("button", { class: "tool", "aria-label": `${t("reply")}: ${shorten(text, 40)}`, title: t("reply"), onclick: () => actions.reply(msg) }, t("reply")),
    canRecall ? h("button", { class: "tool", "aria-label": `${t("recall")}: ${shorten(text, 40)}`, title: t("recall"), onclick: () => actions.recall(msg) }, t("recall")) : null);

  return h("li", { class: `msg ${mine ? "mine" : "theirs"}`, dataset: { seq: msg.seq, messageId: msg.message_id, status: mine ? "sent" : "received" } },
    avatar(senderName, msg.sender_id),
    h("div", { class: "msg-col" },
      group && !mine ? h("div", { class: "sender" }, senderName) : null,
      h("div", { class: "msg-row" }, bubble, tools),
      meta));
}

function receiptLabel(store, conv, msg, actions) {
  const unread = store.unreadCount(conv.conversation_id, msg.seq);
  if (unread === null) return h("span", { class: "receipt" }, t("sent"));
  if (conv.kind !== "group") {
    // Direct chats: "Sent" once the server has it, "Read" once the other side has seen it.
    return h("span", { class: `receipt ${unread ? "sent" : "read"}` }, unread ? t("sent") : t("read"));
  }
  const label = unread ? t("n_unread", { n: unread }) : t("all_read");
  return h("button", {
    class: `receipt link ${unread ? "unread" : "read"}`,
    "aria-haspopup": "dialog",
    title: t("receipts"),
    onclick: () => actions.receipts(msg),
  }, label);
}

function renderQuote(store, conv, messageId) {
  const quoted = store.timeline.quotedMessage(conv.conversation_id, messageId);
  if (!quoted) return h("blockquote", { class: "quote" }, "…");
  const text = quoted.recalled_at || quoted.body === null ? t("recalled_quote") : (quoted.body && quoted.body.text) || "";
  return h("blockquote", { class: "quote" },
    h("span", { class: "quote-name" }, store.nameOf(quoted.sender_id, conv.conversation_id)), " ", shorten(text, 120));
}

export function renderPending(store, conv, entry, actions) {
  const me = store.me;
  const failed = entry.state === "failed";
  const bubble = h("div", { class: "bubble" });
  if (entry.reply_to) bubble.appendChild(renderQuote(store, conv, entry.reply_to));
  bubble.appendChild(h("span", { class: "text" }, entry.body.text));
  const status = failed
    ? h("span", { class: "status failed" }, t("failed"),
        h("button", { class: "link", onclick: () => actions.retry(entry) }, t("retry")),
        h("button", { class: "link", onclick: () => actions.discard(entry) }, t("delete")))
    : h("span", { class: "status sending" }, h("span", { class: "spinner", "aria-hidden": "true" }), t("sending"));
  return h("li", { class: `msg mine pending ${failed ? "failed" : ""}`, dataset: { txn: entry.client_txn_id } },
    avatar(me.display_name, me.user_id),
    h("div", { class: "msg-col" },
      h("div", { class: "msg-row" }, bubble),
      h("div", { class: "meta" }, h("time", {}, clock(entry.created_at)), status)));
}

export function shorten(text, max) {
  const chars = Array.from(String(text || "").replace(/\s+/g, " "));
  return chars.length > max ? chars.slice(0, max - 1).join("") + "…" : chars.join("");
}
