// HTTP and WebSocket client for the qunliao API (docs/api.md). Knows nothing about the UI.

export class ApiError extends Error {
  constructor(status, code, message) {
    super(message || code);
    this.status = status;
    this.code = code;
  }
}

/** A network failure (offline, server down): the request may be retried. */
export class NetworkError extends Error {}

export class Http {
  constructor({ getToken, onUnauthorized }) {
    this.getToken = getToken;
    this.onUnauthorized = onUnauthorized;
  }

  async request(method, path, body, { auth = true } = {}) {
    const headers = { Accept: "application/json" };
    if (body !== undefined) headers["Content-Type"] = "application/json";
    const token = auth ? this.getToken() : null;
    if (token) headers.Authorization = `Bearer ${token}`;
    let response;
    try {
      response = await fetch(`/api/v1${path}`, {
        method,
        headers,
        body: body === undefined ? undefined : JSON.stringify(body),
        cache: "no-store",
      });
    } catch (err) {
      throw new NetworkError(String(err));
    }
    if (response.status === 204) return null;
    let data = null;
    try {
      data = await response.json();
    } catch {
      data = null;
    }
    if (!response.ok) {
      const error = (data && data.error) || {};
      if (response.status === 401 && token && this.onUnauthorized) this.onUnauthorized();
      throw new ApiError(response.status, error.code || `http_${response.status}`, error.message);
    }
    return data;
  }

  get(path) { return this.request("GET", path); }
  post(path, body = {}) { return this.request("POST", path, body); }
  patch(path, body) { return this.request("PATCH", path, body); }
  put(path) { return this.request("PUT", path); }
  del(path) { return this.request("DELETE", path); }

  // accounts and sessions
  server() { return this.request("GET", "/server", undefined, { auth: false }); }
  register(username, password, displayName, inviteCode) {
    const body = { username, password, display_name: displayName };
    if (inviteCode) body.invite_code = inviteCode;
    return this.request("POST", "/accounts", body, { auth: false });
  }
  signIn(username, password, deviceName) {
    return this.request("POST", "/sessions", { username, password, device_name: deviceName }, { auth: false });
  }
  signOut() { return this.del("/sessions/current"); }
  sessions() { return this.get("/sessions"); }
  me() { return this.get("/me"); }
  updateMe(displayName) { return this.patch("/me", { display_name: displayName }); }
  user(userId) { return this.get(`/users/${enc(userId)}`); }
  searchUsers(q, limit = 20) { return this.get(`/users?q=${enc(q)}&limit=${limit}`); }

  // contacts
  friendRequests() { return this.get("/friend-requests"); }
  sendFriendRequest(userId, note) { return this.post("/friend-requests", note ? { user_id: userId, note } : { user_id: userId }); }
  acceptFriendRequest(id) { return this.post(`/friend-requests/${enc(id)}/accept`); }
  declineFriendRequest(id) { return this.post(`/friend-requests/${enc(id)}/decline`); }
  contacts() { return this.get("/contacts"); }
  setRemark(userId, remark) { return this.patch(`/contacts/${enc(userId)}`, { remark }); }
  deleteContact(userId) { return this.del(`/contacts/${enc(userId)}`); }
  blocks() { return this.get("/blocks"); }
  block(userId) { return this.put(`/blocks/${enc(userId)}`); }
  unblock(userId) { return this.del(`/blocks/${enc(userId)}`); }
  settings() { return this.get("/me/settings"); }
  updateSettings(fields) { return this.patch("/me/settings", fields); }
  groupInvitations() { return this.get("/group-invitations"); }
  acceptGroupInvitation(id) { return this.post(`/group-invitations/${enc(id)}/accept`); }
  declineGroupInvitation(id) { return this.post(`/group-invitations/${enc(id)}/decline`); }

  // conversations
  conversations() { return this.get("/conversations"); }
  conversation(id) { return this.get(`/conversations/${enc(id)}`); }
  createConversation(kind, memberIds, title) {
    const body = { kind, member_ids: memberIds };
    if (title) body.title = title;
    return this.post("/conversations", body);
  }
  updateConversation(id, fields) { return this.patch(`/conversations/${enc(id)}`, fields); }
  members(id, after) {
    const query = after ? `?after=${enc(after)}&limit=1000` : "?limit=1000";
    return this.get(`/conversations/${enc(id)}/members${query}`);
  }
  addMembers(id, userIds) { return this.post(`/conversations/${enc(id)}/members`, { user_ids: userIds }); }
  setMemberRole(id, userId, role) { return this.patch(`/conversations/${enc(id)}/members/${enc(userId)}`, { role }); }
  removeMember(id, userId) { return this.del(`/conversations/${enc(id)}/members/${enc(userId)}`); }
  typing(id, typing) { return this.post(`/conversations/${enc(id)}/typing`, { typing }); }

  // messages
  messages(id, beforeSeq, limit = 50) {
    const query = beforeSeq ? `?before_seq=${beforeSeq}&limit=${limit}` : `?limit=${limit}`;
    return this.get(`/conversations/${enc(id)}/messages${query}`);
  }
  message(id, messageId) { return this.get(`/conversations/${enc(id)}/messages/${enc(messageId)}`); }
  sendMessage(id, frame) {
    const body = { client_txn_id: frame.client_txn_id, msg_type: "text", body: frame.body };
    if (frame.reply_to) body.reply_to = frame.reply_to;
    if (frame.mentions && frame.mentions.length) body.mentions = frame.mentions;
    return this.post(`/conversations/${enc(id)}/messages`, body);
  }
  recall(id, messageId) { return this.post(`/conversations/${enc(id)}/messages/${enc(messageId)}/recall`); }
  markRead(id, seq) { return this.post(`/conversations/${enc(id)}/read`, { seq }); }
  receipts(id, seq) { return this.get(`/conversations/${enc(id)}/receipts?seq=${seq}`); }
}

function enc(value) {
  return encodeURIComponent(value);
}

const PING_EVERY_MS = 20000;
const SILENCE_LIMIT_MS = 45000;

/**
 * One WebSocket to /api/v1/ws that reconnects with backoff and resumes from the newest sync token.
 * Callbacks: onFrame(frame) for every server frame, onStatus("connecting"|"open"|"offline"),
 * onUnauthorized() when the server closes with 4401.
 */
export class Socket {
  constructor({ getToken, getSince, onFrame, onStatus, onOpen, onUnauthorized, onHandshakeFailed, onBadSince }) {
    Object.assign(this, { getToken, getSince, onFrame, onStatus, onOpen, onUnauthorized, onHandshakeFailed, onBadSince });
    this.ws = null;
    this.stopped = true;
    this.attempt = 0;
    this.retryTimer = 0;
    this.pingTimer = 0;
    this.lastHeard = 0;
    this.status = "offline";
    this.onlineHandler = () => this.reconnectNow();
    this.offlineHandler = () => this.drop("offline");
  }

  start() {
    this.stopped = false;
    window.addEventListener("online", this.onlineHandler);
    window.addEventListener("offline", this.offlineHandler);
    this.connect();
  }

  stop() {
    this.stopped = true;
    window.removeEventListener("online", this.onlineHandler);
    window.removeEventListener("offline", this.offlineHandler);
    clearTimeout(this.retryTimer);
    clearInterval(this.pingTimer);
    if (this.ws) {
      const ws = this.ws;
      this.ws = null;
      ws.close(1000);
    }
    this.setStatus("offline");
  }

  get isOpen() {
    return this.ws !== null && this.ws.readyState === WebSocket.OPEN && this.status === "open";
  }

  send(frame) {
    if (!this.isOpen) return false;
    try {
      this.ws.send(JSON.stringify(frame));
      return true;
    } catch {
      return false;
    }
  }

  setStatus(status) {
    if (this.status === status) return;
    this.status = status;
    if (this.onStatus) this.onStatus(status);
  }

  connect() {
    if (this.stopped || this.ws) return;
    clearTimeout(this.retryTimer);
    if (navigator.onLine === false) {
      this.setStatus("offline");
      return;
    }
    const proto = location.protocol === "https:" ? "wss:" : "ws:";
    const params = new URLSearchParams({ access_token: this.getToken() || "" });
    const since = this.getSince();
    if (since) params.set("since", since);
    const ws = new WebSocket(`${proto}//${location.host}/api/v1/ws?${params}`);
    this.ws = ws;
    let opened = false;
    this.setStatus("connecting");
    ws.addEventListener("open", () => {
      if (this.ws !== ws) return;
      opened = true;
      this.attempt = 0;
      this.lastHeard = Date.now();
      this.setStatus("open");
      // Without a resume token the server waits briefly for a first frame; don't make it wait.
      if (!since) ws.send(JSON.stringify({ type: "ping" }));
      clearInterval(this.pingTimer);
      this.pingTimer = setInterval(() => this.heartbeat(), PING_EVERY_MS);
      if (this.onOpen) this.onOpen(Boolean(since));
    });
    ws.addEventListener("message", (message) => {
      if (this.ws !== ws) return;
      this.lastHeard = Date.now();
      let frame;
      try {
        frame = JSON.parse(message.data);
      } catch {
        return;
      }
      if (frame && typeof frame === "object") this.onFrame(frame);
    });
    ws.addEventListener("close", (event) => {
      if (this.ws !== ws) return;
      this.ws = null;
      clearInterval(this.pingTimer);
      if (event.code === 4401) {
        this.stopped = true;
        this.setStatus("offline");
        if (this.onUnauthorized) this.onUnauthorized();
        return;
      }
      // A refused handshake may mean the resume token is no longer valid: next time, start live.
      if (((!opened && since) || event.code === 4400) && this.onBadSince) this.onBadSince();
      if (!opened && this.onHandshakeFailed) this.onHandshakeFailed();
      this.scheduleRetry();
    });
  }

  heartbeat() {
    if (!this.isOpen) return;
    if (Date.now() - this.lastHeard > SILENCE_LIMIT_MS) {
      this.drop("silent");
      return;
    }
    this.send({ type: "ping" });
  }

  /** Close the current socket (it is dead or we went offline) and try again later. */
  drop(reason) {
    const ws = this.ws;
    this.ws = null;
    clearInterval(this.pingTimer);
    if (ws) {
      try {
        ws.close(4000, reason);
      } catch {
        /* already closed */
      }
    }
    this.setStatus(navigator.onLine === false ? "offline" : "connecting");
    this.scheduleRetry();
  }

  scheduleRetry() {
    if (this.stopped) return;
    if (navigator.onLine === false) {
      this.setStatus("offline");
      return; // the "online" event reconnects
    }
    this.setStatus("connecting");
    const base = Math.min(10000, 300 * 2 ** this.attempt);
    this.attempt += 1;
    clearTimeout(this.retryTimer);
    this.retryTimer = setTimeout(() => this.connect(), base / 2 + Math.random() * (base / 2));
  }

  reconnectNow() {
    if (this.stopped) return;
    this.attempt = 0;
    if (this.ws) return;
    this.connect();
  }
}
