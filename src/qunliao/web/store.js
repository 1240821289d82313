// Client state: session, users, conversations, messages, members, typing, contacts.
// Everything the views show comes from here; the store talks to the server through api.js.

import { ApiError, Http, Socket } from "./api.js";
import { handleFrame } from "./events.js";
import { Outbox } from "./outbox.js";
import { Timeline } from "./timeline.js";

const SESSION_KEY = "qunliao.session";
const TYPING_TTL_MS = 6000;

export class Store {
  constructor() {
    this.listeners = new Map();
    this.session = readJson(SESSION_KEY);
    this.http = new Http({ getToken: () => this.session && this.session.access_token, onUnauthorized: () => this.forget() });
    this.server = null; // GET /api/v1/server: the registration policy and version
    this.reset();
  }

  reset() {
    this.me = null;
    this.users = new Map(); // user_id → {user_id, username, display_name}
    this.pendingUsers = new Set();
    this.contacts = new Map(); // user_id → contact
    this.blocks = new Set();
    this.requests = { incoming: [], outgoing: [] };
    this.invitations = []; // group invitations I received (any state)
    this.conversations = new Map(); // conversation_id → conv
    this.members = new Map(); // conversation_id → Map(user_id → member)
    this.readIndex = new Map(); // conversation_id → sorted read_seq of the other members
    this.typing = new Map(); // conversation_id → Map(user_id → expires_at)
    this.timeline = new Timeline(this);
    this.activeId = null;
    // The newest sync token seen on the socket. Kept in memory only: after a reload the lists are
    // fetched fresh, so replaying days of events from an old token would be wasted work.
    this.since = null;
    this.status = "offline";
    this.outbox = null;
    this.socket = null;
    if (this.flushTimer) clearInterval(this.flushTimer);
    this.flushTimer = 0;
  }

  // --- tiny pub/sub -------------------------------------------------------------------------
  on(topic, fn) {
    if (!this.listeners.has(topic)) this.listeners.set(topic, new Set());
    this.listeners.get(topic).add(fn);
    return () => this.listeners.get(topic).delete(fn);
  }

  emit(topic, detail) {
    for (const fn of this.listeners.get(topic) || []) {
      try {
        fn(detail);
      } catch (err) {
        console.error(err);
      }
    }
  }

  // --- session --------------------------------------------------------------------------------
  get signedIn() {
    return Boolean(this.session && this.session.access_token);
  }

  /** GET /api/v1/server ({registration, version}), asked once per page unless `fresh`;
   *  null while the server cannot be reached (the form then offers registration as usual). */
  async serverInfo({ fresh = false } = {}) {
    if (!this.server || fresh) {
      try {
        this.server = await this.http.server();
      } catch (err) {
        if (!this.server) console.warn("GET /api/v1/server failed", err);
      }
    }
    return this.server || null;
  }

  async register(username, password, displayName, inviteCode) {
    await this.http.register(username, password, displayName || username, inviteCode);
    await this.signIn(username, password);
  }

  async signIn(username, password) {
    const session = await this.http.signIn(username, password, deviceName());
    this.session = session;
    localStorage.setItem(SESSION_KEY, JSON.stringify(session));
    await this.start();
  }

  async signOut() {
    try {
      await this.http.signOut();
    } catch {
      /* the token is forgotten locally either way */
    }
    if (this.outbox) localStorage.removeItem(this.outbox.storageKey);
    this.forget();
  }

  /** Drop the session (signed out, or the server no longer accepts the token). */
  forget() {
    if (!this.session) return;
    if (this.socket) this.socket.stop();
    this.session = null;
    localStorage.removeItem(SESSION_KEY);
    this.reset();
    this.emit("session");
  }

  /** After sign-in or on page load with a saved session. */
  async start() {
    this.me = await this.http.me();
    this.rememberUser(this.me);
    this.outbox = new Outbox(`qunliao.outbox.${this.me.user_id}`);
    this.socket = new Socket({
      getToken: () => this.session && this.session.access_token,
      getSince: () => this.since,
      onFrame: (frame) => handleFrame(this, frame),
      onStatus: (status) => {
        this.status = status;
        this.emit("status", status);
      },
      onOpen: (resumed) => this.socketOpened(resumed),
      onUnauthorized: () => this.forget(),
      onHandshakeFailed: () => this.checkSession(),
      onBadSince: () => {
        this.since = null; // the lists are re-read over HTTP when the next socket opens
      },
    });
    this.emit("session");
    this.socket.start();
    this.flushTimer = setInterval(() => this.timeline.flush(), 3000);
    await Promise.allSettled([this.loadConversations(), this.loadContacts()]);
    this.timeline.flush();
  }

  async checkSession() {
    try {
      await this.http.me();
    } catch {
      /* a 401 signs us out through onUnauthorized; anything else is a network problem */
    }
  }

  socketOpened(resumed) {
    // Resume replays what we missed when we have a token; refreshing the lists also covers the
    // case where we have none (first connection), so nothing between two sockets is lost.
    // Without a resume, cached chats may have a gap: re-read them when they are next opened.
    if (!resumed) for (const hist of this.timeline.history.values()) hist.loaded = false;
    this.loadConversations().catch(() => {});
    if (this.activeId) this.timeline.loadLatest(this.activeId).catch(() => {});
    this.timeline.flush();
  }

  // --- users ----------------------------------------------------------------------------------
  rememberUser(user) {
    if (!user || !user.user_id) return;
    const old = this.users.get(user.user_id) || {};
    this.users.set(user.user_id, { ...old, ...user });
  }

  user(userId) {
    const known = this.users.get(userId);
    if (!known && userId && !this.pendingUsers.has(userId)) {
      this.pendingUsers.add(userId);
      this.http
        .user(userId)
        .then((u) => {
          this.rememberUser(u);
          this.emit("users");
        })
        .catch(() => {});
    }
    return known || null;
  }

  /** The name to show for a user: my remark for them, else their display name. */
  nameOf(userId, conversationId) {
    const contact = this.contacts.get(userId);
    if (contact && contact.remark) return contact.remark;
    const member = conversationId && this.members.get(conversationId)?.get(userId);
    if (member && member.display_name) return member.display_name;
    const user = this.user(userId);
    return (user && (user.display_name || user.username)) || "…";
  }

  // --- conversations --------------------------------------------------------------------------
  async loadConversations() {
    const data = await this.http.conversations();
    const seen = new Set();
    for (const conv of data.conversations || []) {
      seen.add(conv.conversation_id);
      this.mergeConversation(conv);
    }
    for (const id of [...this.conversations.keys()]) if (!seen.has(id)) this.conversations.delete(id);
    this.emit("conversations");
  }

  mergeConversation(conv) {
    const old = this.conversations.get(conv.conversation_id);
    // A summary older than what live events already told us would move the list backwards.
    if (old && (old.last_seq || 0) > (conv.last_seq || 0)) {
      Object.assign(old, { title: conv.title, announcement: conv.announcement, my_role: conv.my_role, member_count: conv.member_count });
      return;
    }
    const merged = { ...(old || {}), ...conv };
    // The server keeps no "mentioned me" flag: the newest unread message is what we can know.
    if (!merged.unread_count) merged.mentioned_me = false;
    else if (this.mentionsMe(merged.last_message) && merged.last_message.sender_id !== this.me?.user_id) merged.mentioned_me = true;
    this.conversations.set(conv.conversation_id, merged);
    if (conv.peer_id) this.user(conv.peer_id);
  }

  async refreshConversation(id) {
    try {
      const conv = await this.http.conversation(id);
      this.mergeConversation(conv);
    } catch (err) {
      if (err instanceof ApiError && (err.status === 403 || err.status === 404)) this.conversations.delete(id);
    }
    this.emit("conversations");
    this.emit("conversation", id);
  }

  sortedConversations() {
    return [...this.conversations.values()].sort((a, b) => activityOf(b) - activityOf(a));
  }

  titleOf(conv) {
    if (!conv) return "";
    if (conv.kind === "group") return conv.title || null;
    if (!conv.peer_id || (this.me && conv.peer_id === this.me.user_id)) return null;
    return this.nameOf(conv.peer_id);
  }

  isNotesToSelf(conv) {
    return conv && conv.kind === "direct" && (!conv.peer_id || (this.me && conv.peer_id === this.me.user_id));
  }

  async createConversation(kind, memberIds, title) {
    const created = await this.http.createConversation(kind, memberIds, title);
    await this.refreshConversation(created.conversation_id);
    return created.conversation_id;
  }

  async updateConversation(id, fields) {
    const conv = await this.http.updateConversation(id, fields);
    this.mergeConversation(conv);
    this.emit("conversations");
    this.emit("conversation", id);
  }

  setActive(id) {
    this.activeId = id;
    this.emit("active", id);
    if (!id) return;
    if (!this.timeline.historyOf(id).loaded) this.timeline.loadLatest(id).catch(() => {});
    this.loadMembers(id).catch(() => {});
    this.markRead(id);
  }

  // --- read positions and receipts -------------------------------------------------------------
  markRead(id) {
    const conv = this.conversations.get(id);
    if (!conv || document.visibilityState === "hidden") return;
    const newest = Math.max(conv.last_seq || 0, ...this.timeline.messagesOf(id).keys());
    if (!newest || (conv.read_seq || 0) >= newest) {
      if (conv.unread_count || conv.mentioned_me) {
        conv.unread_count = 0;
        conv.mentioned_me = false;
        this.emit("conversations");
      }
      return;
    }
    conv.read_seq = newest;
    conv.unread_count = 0;
    conv.mentioned_me = false;
    this.emit("conversations");
    if (!(this.socket && this.socket.send({ type: "read", conversation_id: id, seq: newest }))) {
      this.http.markRead(id, newest).catch(() => {});
    }
  }

  async loadMembers(id) {
    const all = new Map();
    let after = null;
    for (let page = 0; page < 20; page += 1) {
      const data = await this.http.members(id, after);
      for (const member of data.members || []) {
        all.set(member.user_id, member);
        const known = this.users.get(member.user_id) || {};
        this.rememberUser({ ...known, user_id: member.user_id, display_name: member.display_name || known.display_name });
      }
      after = data.next_after;
      if (!after || !(data.members || []).length) break;
    }
    // Keep read positions we learned live while the page was loading.
    const old = this.members.get(id);
    if (old) for (const [uid, m] of all) m.read_seq = Math.max(m.read_seq || 0, old.get(uid)?.read_seq || 0);
    this.members.set(id, all);
    this.readIndex.delete(id);
    this.emit("members", id);
    this.emit("messages", id);
  }

  bumpReadSeq(conversationId, userId, seq) {
    const member = this.members.get(conversationId)?.get(userId);
    if (member && (member.read_seq || 0) < seq) {
      member.read_seq = seq;
      this.readIndex.delete(conversationId);
    }
  }

  /**
   * How many other members have not read my message at `seq` (null when members are unknown).
   * Backed by a sorted array of read positions so a 10,000-member group stays cheap to render.
   */
  unreadCount(conversationId, seq) {
    const members = this.members.get(conversationId);
    if (!members || !members.size) return null;
    let sorted = this.readIndex.get(conversationId);
    if (!sorted) {
      sorted = [...members.values()].filter((m) => m.user_id !== this.me.user_id).map((m) => m.read_seq || 0).sort((a, b) => a - b);
      this.readIndex.set(conversationId, sorted);
    }
    let lo = 0;
    let hi = sorted.length;
    while (lo < hi) {
      const mid = (lo + hi) >> 1;
      if (sorted[mid] < seq) lo = mid + 1;
      else hi = mid;
    }
    return lo;
  }

  receipts(conversationId, seq) {
    return this.http.receipts(conversationId, seq);
  }

  // --- typing ---------------------------------------------------------------------------------
  sendTyping(conversationId, typing) {
    if (!(this.socket && this.socket.send({ type: "typing", conversation_id: conversationId, typing }))) {
      this.http.typing(conversationId, typing).catch(() => {});
    }
  }

  typingIn(conversationId) {
    const map = this.typing.get(conversationId);
    if (!map) return [];
    const now = Date.now();
    return [...map.entries()].filter(([, exp]) => exp > now).map(([uid]) => uid);
  }

  setTyping(ev) {
    if (!ev.user_id || (this.me && ev.user_id === this.me.user_id)) return;
    if (!this.typing.has(ev.conversation_id)) this.typing.set(ev.conversation_id, new Map());
    const map = this.typing.get(ev.conversation_id);
    if (ev.typing === false) map.delete(ev.user_id);
    else map.set(ev.user_id, Date.now() + TYPING_TTL_MS);
    this.emit("typing", ev.conversation_id);
    setTimeout(() => this.emit("typing", ev.conversation_id), TYPING_TTL_MS + 50);
  }

  /** A new message moves its conversation to the top and counts as unread unless I am looking at it. */
  touchConversation(message, { own }) {
    const conv = this.conversations.get(message.conversation_id);
    if (!conv) return;
    if ((conv.last_seq || 0) >= message.seq && conv.last_message && conv.last_message.seq >= message.seq) return;
    conv.last_seq = Math.max(conv.last_seq || 0, message.seq);
    if (!conv.last_message || (conv.last_message.seq || 0) <= message.seq) conv.last_message = message;
    conv.last_activity_at = Math.max(conv.last_activity_at || 0, message.sent_at || Date.now());
    if (own) {
      conv.read_seq = Math.max(conv.read_seq || 0, message.seq);
    } else if (message.seq > (conv.read_seq || 0) && !(this.activeId === conv.conversation_id && document.visibilityState !== "hidden")) {
      conv.unread_count = (conv.unread_count || 0) + 1;
      if (this.mentionsMe(message)) conv.mentioned_me = true;
    }
    this.emit("conversations");
  }

  mentionsMe(message) {
    const mentions = message && message.mentions;
    return Boolean(this.me && mentions && (mentions === "all" || (Array.isArray(mentions) && mentions.includes(this.me.user_id))));
  }

  // --- contacts ---------------------------------------------------------------------------------
  async loadContacts() {
    const [contacts, requests, blocks, invitations] = await Promise.all([
      this.http.contacts(),
      this.http.friendRequests(),
      this.http.blocks().catch(() => ({ user_ids: [] })),
      this.http.groupInvitations().catch(() => ({ incoming: [] })),
    ]);
    this.contacts = new Map((contacts.contacts || []).map((c) => [c.user_id, c]));
    for (const c of this.contacts.values()) this.rememberUser({ user_id: c.user_id, username: c.username, display_name: c.display_name });
    this.requests = { incoming: requests.incoming || [], outgoing: requests.outgoing || [] };
    this.blocks = new Set(blocks.user_ids || []);
    this.invitations = invitations.incoming || [];
    this.emit("contacts");
    this.emit("conversations");
  }

  pendingIncoming() {
    return this.requests.incoming.filter((r) => r.status === "pending");
  }

  pendingInvitations() {
    return this.invitations.filter((i) => i.state === "pending");
  }

  async act(promise) {
    const result = await promise;
    await this.loadContacts();
    return result;
  }
}

function activityOf(conv) {
  return conv.last_activity_at || (conv.last_message && conv.last_message.sent_at) || 0;
}

function readJson(key) {
  try {
    return JSON.parse(localStorage.getItem(key) || "null");
  } catch {
    return null;
  }
}

function deviceName() {
  const ua = navigator.userAgent;
  const browser = /Edg\//.test(ua) ? "Edge" : /Chrome\//.test(ua) ? "Chrome" : /Firefox\//.test(ua) ? "Firefox" : /Safari\//.test(ua) ? "Safari" : "Browser";
  return `Web (${browser})`;
}
