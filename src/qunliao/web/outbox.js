// The offline queue: messages the user sent that the server has not acknowledged yet.
// Persisted in localStorage so a reload keeps them; every retry reuses the same client_txn_id,
// which the server deduplicates, so a message is delivered once however often we retry.

const RESEND_AFTER_MS = 8000;
const TRANSIENT = new Set(["rate_limited", "unavailable"]);

// Time first, then 64 random bits: the server indexes transaction ids per device, and ids that
// grow with time are cheaper to index than random ones.
export function newTxnId() {
  const bytes = new Uint8Array(8);
  crypto.getRandomValues(bytes);
  const random = Array.from(bytes, (b) => b.toString(16).padStart(2, "0")).join("");
  return "web-" + Date.now().toString(16).padStart(12, "0") + random;
}

export class Outbox {
  constructor(storageKey) {
    this.storageKey = storageKey;
    this.entries = [];
    try {
      const saved = JSON.parse(localStorage.getItem(storageKey) || "[]");
      if (Array.isArray(saved)) this.entries = saved.filter((e) => e && e.client_txn_id && e.conversation_id);
    } catch {
      this.entries = [];
    }
    // Nothing is in flight after a reload: whatever was sent before may or may not have arrived.
    for (const entry of this.entries) entry.inflightAt = 0;
    this.httpBusy = false;
  }

  save() {
    const plain = this.entries.map(({ inflightAt, ...rest }) => rest);
    localStorage.setItem(this.storageKey, JSON.stringify(plain));
  }

  add({ conversation_id, text, reply_to, mentions }) {
    const entry = {
      client_txn_id: newTxnId(),
      conversation_id,
      body: { text },
      reply_to: reply_to || null,
      mentions: mentions && mentions.length ? mentions : null,
      created_at: Date.now(),
      state: "sending",
      inflightAt: 0,
    };
    this.entries.push(entry);
    this.save();
    return entry;
  }

  find(txnId) {
    return this.entries.find((e) => e.client_txn_id === txnId) || null;
  }

  forConversation(conversationId) {
    return this.entries.filter((e) => e.conversation_id === conversationId);
  }

  remove(txnId) {
    const before = this.entries.length;
    this.entries = this.entries.filter((e) => e.client_txn_id !== txnId);
    if (this.entries.length !== before) this.save();
    return before !== this.entries.length;
  }

  /** The server refused the message for good (forbidden, too large…), or only for now. */
  fail(txnId, code) {
    const entry = this.find(txnId);
    if (!entry) return;
    if (TRANSIENT.has(code)) {
      entry.inflightAt = Date.now(); // try again after RESEND_AFTER_MS
      return;
    }
    entry.state = "failed";
    entry.error = code;
    this.save();
  }

  retry(txnId) {
    const entry = this.find(txnId);
    if (!entry) return;
    entry.state = "sending";
    entry.error = null;
    entry.inflightAt = 0;
    this.save();
  }

  /** Entries that should be (re)sent now, oldest first. */
  due(now = Date.now()) {
    return this.entries.filter((e) => e.state !== "failed" && (!e.inflightAt || now - e.inflightAt > RESEND_AFTER_MS));
  }

  static frameFor(entry) {
    const frame = {
      type: "send",
      conversation_id: entry.conversation_id,
      client_txn_id: entry.client_txn_id,
      msg_type: "text",
      body: entry.body,
    };
    if (entry.reply_to) frame.reply_to = entry.reply_to;
    if (entry.mentions) frame.mentions = entry.mentions;
    return frame;
  }
}

export function isTransient(code) {
  return TRANSIENT.has(code);
}
