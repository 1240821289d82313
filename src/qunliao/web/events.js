// How each frame from the socket changes the client state: acks and errors for the outbox,
// sync tokens, read and typing state, and stored events (messages, recalls, membership, …).
// Messages are keyed by (conversation_id, seq), so a replayed or repeated event changes nothing.

export function handleFrame(store, frame) {
  if (frame.token) store.since = frame.token;
  switch (frame.type) {
    case "ack": {
      const entry = store.outbox && store.outbox.find(frame.client_txn_id);
      if (entry) store.timeline.acknowledge(entry, frame);
      return;
    }
    case "error": {
      if (frame.client_txn_id && store.outbox && store.outbox.find(frame.client_txn_id)) {
        const entry = store.outbox.find(frame.client_txn_id);
        store.outbox.fail(frame.client_txn_id, frame.error && frame.error.code);
        store.emit("messages", entry.conversation_id);
      }
      return;
    }
    case "synced":
      if (frame.next_token) store.since = frame.next_token;
      return;
    case "pong":
      return;
    case "read":
      applyRead(store, frame);
      return;
    case "typing":
      store.setTyping(frame);
      return;
    default:
      applyEvent(store, frame);
  }
}

function applyRead(store, ev) {
  store.bumpReadSeq(ev.conversation_id, ev.user_id, ev.read_seq);
  if (store.me && ev.user_id === store.me.user_id) {
    const conv = store.conversations.get(ev.conversation_id);
    if (conv && (conv.read_seq || 0) < ev.read_seq) store.refreshConversation(ev.conversation_id);
  }
  store.emit("messages", ev.conversation_id);
}

function applyEvent(store, ev) {
  const id = ev.conversation_id;
  if (!id || typeof ev.type !== "string") return;
  if (id.startsWith("i_") || ev.type.startsWith("friend_request")) {
    store.loadContacts().catch(() => {});
    return;
  }
  const conv = store.conversations.get(id);
  switch (ev.type) {
    case "message": {
      const { type, token, ...message } = ev;
      const fresh = !store.timeline.messagesOf(id).has(message.seq);
      store.timeline.putMessage(message);
      if (!conv) {
        store.refreshConversation(id);
      } else if (fresh) {
        store.touchConversation(message, { own: store.me && message.sender_id === store.me.user_id });
      }
      if (message.sender_id) store.typing.get(id)?.delete(message.sender_id);
      store.emit("messages", id);
      store.emit("typing", id);
      if (id === store.activeId) store.markRead(id);
      return;
    }
    case "message.recalled":
      store.timeline.applyRecall(ev);
      return;
    case "message.edited": {
      const msg = store.timeline.findMessage(id, ev.message_id);
      if (msg && !msg.recalled_at) {
        msg.body = ev.body;
        msg.edited_at = ev.edited_at;
      }
      store.emit("messages", id);
      return;
    }
    case "members.removed":
      if (store.me && (ev.user_ids || []).includes(store.me.user_id)) {
        store.conversations.delete(id);
        store.members.delete(id);
        store.readIndex.delete(id);
        if (store.activeId === id) store.setActive(null);
        store.emit("conversations");
        return;
      }
      store.loadMembers(id).catch(() => {});
      store.refreshConversation(id);
      return;
    case "members.added":
    case "member.updated":
      store.loadMembers(id).catch(() => {});
      store.refreshConversation(id);
      return;
    case "conversation.updated":
      if (conv) {
        for (const field of ["title", "announcement", "muted_all"]) if (field in ev) conv[field] = ev[field];
        if (ev.seq && ev.seq > (conv.last_seq || 0)) conv.last_seq = ev.seq;
        store.emit("conversations");
        store.emit("conversation", id);
      } else {
        store.refreshConversation(id);
      }
      return;
    default:
      if (!conv) store.refreshConversation(id);
      else if (ev.seq && ev.seq > (conv.last_seq || 0)) conv.last_seq = ev.seq;
  }
}
