// The messages of each conversation: the cache keyed by seq, history paging, sending through the
// outbox (socket first, HTTP when the socket is down) and recalls. Part of the store (store.timeline).

import { NetworkError } from "./api.js";
import { Outbox, isTransient } from "./outbox.js";

const PAGE = 50;

export class Timeline {
  constructor(store) {
    this.store = store;
    this.messages = new Map(); // conversation_id → Map(seq → message)
    this.history = new Map(); // conversation_id → {complete, loading, loaded}
    this.quoted = new Map(); // message_id → message fetched for a reply quote
  }

  messagesOf(id) {
    if (!this.messages.has(id)) this.messages.set(id, new Map());
    return this.messages.get(id);
  }

  sortedMessages(id) {
    return [...this.messagesOf(id).values()].sort((a, b) => a.seq - b.seq);
  }

  historyOf(id) {
    if (!this.history.has(id)) this.history.set(id, { complete: false, loading: false, loaded: false });
    return this.history.get(id);
  }

  async loadLatest(id) {
    const data = await this.store.http.messages(id, null, PAGE);
    const page = data.messages || [];
    const cache = this.messagesOf(id);
    const newestLocal = Math.max(0, ...cache.keys());
    const oldestFetched = page.length ? page[page.length - 1].seq : 0;
    // A full page that does not reach what we hold means we missed messages in between.
    if (page.length === PAGE && newestLocal && oldestFetched > newestLocal) {
      cache.clear();
      this.historyOf(id).complete = false;
    }
    for (const msg of page) this.putMessage(msg);
    this.historyOf(id).loaded = true;
    if (page.length < PAGE) this.historyOf(id).complete = true;
    this.store.emit("messages", id);
    if (id === this.store.activeId) this.store.markRead(id);
  }

  async loadOlder(id) {
    const hist = this.historyOf(id);
    if (hist.loading || hist.complete) return;
    const cache = this.messagesOf(id);
    if (!cache.size) return;
    hist.loading = true;
    this.store.emit("history", id);
    try {
      const oldest = Math.min(...cache.keys());
      const data = await this.store.http.messages(id, oldest, PAGE);
      const page = data.messages || [];
      for (const msg of page) this.putMessage(msg);
      if (page.length < PAGE) hist.complete = true;
    } finally {
      hist.loading = false;
    }
    this.store.emit("messages", id);
    this.store.emit("history", id);
  }

  putMessage(msg) {
    const cache = this.messagesOf(msg.conversation_id);
    const old = cache.get(msg.seq);
    // A recall or edit we already applied must not be undone by an older copy.
    if (old && old.recalled_at && !msg.recalled_at) return;
    cache.set(msg.seq, { ...(old || {}), ...msg });
    if (msg.sender_id) this.store.bumpReadSeq(msg.conversation_id, msg.sender_id, msg.seq);
  }

  findMessage(conversationId, messageId) {
    for (const msg of this.messagesOf(conversationId).values()) if (msg.message_id === messageId) return msg;
    return this.quoted.get(messageId) || null;
  }

  /** The message a reply quotes; fetched once if it is not loaded. */
  quotedMessage(conversationId, messageId) {
    const found = this.findMessage(conversationId, messageId);
    if (found) return found;
    if (!this.quoted.has(messageId)) {
      this.quoted.set(messageId, null);
      this.store.http
        .message(conversationId, messageId)
        .then((msg) => {
          this.quoted.set(messageId, msg);
          this.store.emit("messages", conversationId);
        })
        .catch(() => {});
    }
    return null;
  }

  send(conversationId, text, { replyTo, mentions } = {}) {
    if (!this.store.outbox) return;
    this.store.outbox.add({ conversation_id: conversationId, text, reply_to: replyTo, mentions });
    this.store.emit("messages", conversationId);
    this.flush();
  }

  retrySend(txnId) {
    const entry = this.store.outbox.find(txnId);
    if (!entry) return;
    this.store.outbox.retry(txnId);
    this.store.emit("messages", entry.conversation_id);
    this.flush();
  }

  discardSend(txnId) {
    const entry = this.store.outbox.find(txnId);
    if (!entry) return;
    this.store.outbox.remove(txnId);
    this.store.emit("messages", entry.conversation_id);
  }

  /** Send whatever is due: over the socket when it is up, else over HTTP (one at a time, in order). */
  async flush() {
    if (!this.store.outbox) return;
    const due = this.store.outbox.due();
    if (!due.length) return;
    if (this.store.socket && this.store.socket.isOpen) {
      for (const entry of due) {
        if (!this.store.socket.send(Outbox.frameFor(entry))) break;
        entry.inflightAt = Date.now();
      }
      return;
    }
    if (navigator.onLine === false || this.store.outbox.httpBusy) return;
    this.store.outbox.httpBusy = true;
    try {
      for (const entry of due) {
        entry.inflightAt = Date.now();
        try {
          const ack = await this.store.http.sendMessage(entry.conversation_id, entry);
          this.acknowledge(entry, ack);
        } catch (err) {
          if (err instanceof NetworkError) {
            entry.inflightAt = 0;
            break;
          }
          this.store.outbox.fail(entry.client_txn_id, err.code);
          this.store.emit("messages", entry.conversation_id);
          if (isTransient(err.code)) break;
        }
      }
    } finally {
      this.store.outbox.httpBusy = false;
    }
  }

  acknowledge(entry, ack) {
    if (!this.store.outbox.remove(entry.client_txn_id)) return;
    const message = {
      message_id: ack.message_id,
      conversation_id: entry.conversation_id,
      seq: ack.seq,
      sender_id: this.store.me.user_id,
      msg_type: "text",
      body: entry.body,
      sent_at: ack.sent_at,
      reply_to: entry.reply_to,
      mentions: entry.mentions,
    };
    if (!this.messagesOf(entry.conversation_id).has(ack.seq)) this.putMessage(message);
    this.store.touchConversation(message, { own: true });
    this.store.emit("messages", entry.conversation_id);
  }

  async recall(conversationId, messageId) {
    const result = await this.store.http.recall(conversationId, messageId);
    this.applyRecall({ conversation_id: conversationId, message_id: messageId, recalled_at: Date.now(), by: this.store.me.user_id, seq: result.seq });
  }

  applyRecall(ev) {
    const msg = this.findMessage(ev.conversation_id, ev.message_id);
    const conv = this.store.conversations.get(ev.conversation_id);
    if (msg && !msg.recalled_at) {
      msg.body = null;
      msg.recalled_at = ev.recalled_at || Date.now();
      msg.recalled_by = ev.by;
      if (conv && msg.sender_id !== this.store.me.user_id && msg.seq > (conv.read_seq || 0) && conv.unread_count > 0) conv.unread_count -= 1;
    }
    if (conv && conv.last_message && conv.last_message.message_id === ev.message_id) {
      conv.last_message = { ...conv.last_message, body: null, recalled_at: ev.recalled_at || Date.now() };
    }
    if (conv && ev.seq && ev.seq > (conv.last_seq || 0)) conv.last_seq = ev.seq;
    this.store.emit("messages", ev.conversation_id);
    this.store.emit("conversations");
  }
}
