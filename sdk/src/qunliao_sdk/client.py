"""The async client: every HTTP call of docs/api.md, the WebSocket, and `listen()`."""

from __future__ import annotations

import asyncio
import logging
from collections.abc import AsyncGenerator, Callable, Coroutine
from contextlib import aclosing
from types import TracebackType
from typing import Any, Literal, TypeVar

import httpx

from qunliao_sdk._http import (
    WRITE_METHODS,
    Answer,
    api_path,
    is_retryable,
    new_txn_id,
    send_request,
    with_retry,
)
from qunliao_sdk.errors import QunliaoError
from qunliao_sdk.events import Event, decode_event
from qunliao_sdk.handlers import Dispatcher, Handler
from qunliao_sdk.listen import listen_forever
from qunliao_sdk.models import NO_RETRY, JSONDict, RetryPolicy, SendResult, Session, SyncPage
from qunliao_sdk.websocket import WebSocketConnection

_UNSET: Any = object()

logger = logging.getLogger("qunliao_sdk")

E = TypeVar("E", bound=Event)
T = TypeVar("T")


class Client:
    """An async qunliao client. `async with Client("http://127.0.0.1:8000") as client: …`

    Built from a saved token (`Client(url, access_token=token)`), entering `async with` asks the
    server who that token belongs to, so `user_id` and `device_id` are set before the first
    event (a bad token raises 401 there). Handlers: `@client.on(MessageEvent)`, then
    `await client.run()`.

    `retry` governs `send_text` (and any `request(..., retry=...)`): the same client_txn_id is
    sent again on connection errors, 5xx and 429 until the policy's budget (30 s) is spent.
    `transport` is handed to httpx (tests pass an `httpx.MockTransport`).
    """

    def __init__(
        self,
        base_url: str,
        *,
        access_token: str | None = None,
        timeout: float = 10.0,
        retry: RetryPolicy | None = None,
        transport: httpx.AsyncBaseTransport | None = None,
    ) -> None:
        self.base_url = base_url.rstrip("/")
        self.timeout = timeout
        self.retry = retry if retry is not None else RetryPolicy()
        self.access_token = access_token
        self.user_id: str | None = None
        self.device_id: str | None = None
        self._dispatcher = Dispatcher()
        self._http = httpx.AsyncClient(
            base_url=self.base_url,
            timeout=timeout,
            transport=transport,
            headers={"user-agent": "qunliao-sdk"},
        )

    async def __aenter__(self) -> Client:
        if self.access_token is not None and self.user_id is None:
            try:
                await self.me()
            except QunliaoError as exc:
                if not is_retryable(exc):  # a bad or revoked token: say so now
                    await self.aclose()  # `async with` calls no __aexit__ when entering fails
                    raise
                # Unreachable or overloaded for now: listen()/run() ask again before any event.
                logger.warning("qunliao: could not ask the server who I am yet: %s", exc)
        return self

    async def identify(self) -> None:
        """Learn `user_id` and `device_id` of the token (GET /api/v1/me) unless known yet;
        connection errors and 5xx are retried under the client's retry policy."""
        if self.user_id is not None or self.access_token is None:
            return
        await with_retry(self.retry, self.me)

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        await self.aclose()

    async def aclose(self) -> None:
        await self._dispatcher.cancel_tasks()
        await self._http.aclose()

    # -- generic -----------------------------------------------------------------------------

    async def request(
        self,
        method: str,
        path: str,
        json: Any = None,
        params: dict[str, Any] | None = None,
        *,
        retry: RetryPolicy | None = None,
        http_timeout: float | None = None,
        idempotency_key: str | None = None,
    ) -> Any:
        """Any call: `path` like `/api/v1/me`; returns the decoded JSON (None for 204).

        No retry unless `retry` is given. A write (POST/PUT/PATCH/DELETE) retried this way is
        sent with an `Idempotency-Key` header (`idempotency_key`, or a fresh one), so the server
        answers a repeat with the original result instead of doing it twice.
        `http_timeout` overrides the client's timeout for this call.
        """
        answer = await self._answer(
            method,
            path,
            json,
            params,
            retry=retry,
            http_timeout=http_timeout,
            idempotency_key=idempotency_key,
        )
        return answer.data

    async def _answer(
        self,
        method: str,
        path: str,
        json: Any = None,
        params: dict[str, Any] | None = None,
        *,
        retry: RetryPolicy | None = None,
        http_timeout: float | None = None,
        idempotency_key: str | None = None,
    ) -> Answer:
        if idempotency_key is None and retry is not None and method.upper() in WRITE_METHODS:
            idempotency_key = new_txn_id()

        async def once() -> Answer:
            return await send_request(
                self._http,
                method,
                path,
                token=self.access_token,
                json=json,
                params=params,
                http_timeout=http_timeout,
                idempotency_key=idempotency_key,
            )

        answer, _ = await with_retry(retry or NO_RETRY, once)
        return answer

    async def _json(self, method: str, path: str, json: Any = None, **params: Any) -> JSONDict:
        data = await self.request(method, path, json, params or None)
        if not isinstance(data, dict):
            raise QunliaoError(None, "unexpected", f"{method} {path}: expected a JSON object")
        return data

    # -- accounts, sessions, devices ---------------------------------------------------------

    async def register(self, username: str, password: str, display_name: str) -> str:
        """Create an account; returns its user_id."""
        body = {"username": username, "password": password, "display_name": display_name}
        return str((await self._json("POST", api_path("accounts"), body))["user_id"])

    async def login(
        self, username: str, password: str, device_name: str = "qunliao-sdk"
    ) -> Session:
        """Log in as a new device; the client uses the new token from now on."""
        body = {"username": username, "password": password, "device_name": device_name}
        data = await self._json("POST", api_path("sessions"), body)
        session = Session(
            access_token=str(data["access_token"]),
            user_id=str(data["user_id"]),
            device_id=str(data["device_id"]),
        )
        self.access_token = session.access_token
        self.user_id, self.device_id = session.user_id, session.device_id
        return session

    async def logout(self) -> None:
        """End this device's session: the token stops working at once, sockets close 4401."""
        await self.request("DELETE", api_path("sessions", "current"))
        self.access_token = None

    async def logout_others(self) -> None:
        """Log out every other device of mine."""
        await self.request("DELETE", api_path("sessions", "others"))

    async def logout_device(self, device_id: str) -> None:
        await self.request("DELETE", api_path("sessions", device_id))

    async def devices(self) -> list[JSONDict]:
        return list((await self._json("GET", api_path("sessions")))["devices"])

    async def me(self) -> JSONDict:
        data = await self._json("GET", api_path("me"))
        if isinstance(data.get("user_id"), str):
            self.user_id = data["user_id"]
        if isinstance(data.get("device_id"), str):
            self.device_id = data["device_id"]
        return data

    async def update_me(self, *, display_name: str) -> JSONDict:
        return await self._json("PATCH", api_path("me"), {"display_name": display_name})

    async def user(self, user_id: str) -> JSONDict:
        return await self._json("GET", api_path("users", user_id))

    async def search_users(self, q: str, limit: int | None = None) -> list[JSONDict]:
        return list((await self._json("GET", api_path("users"), q=q, limit=limit))["users"])

    # -- contacts ----------------------------------------------------------------------------

    async def send_friend_request(self, user_id: str, note: str | None = None) -> JSONDict:
        body: JSONDict = {"user_id": user_id}
        if note is not None:
            body["note"] = note
        return await self._json("POST", api_path("friend-requests"), body)

    async def friend_requests(self) -> JSONDict:
        """`{"incoming": [...], "outgoing": [...]}`."""
        return await self._json("GET", api_path("friend-requests"))

    async def accept_friend_request(self, request_id: str) -> JSONDict:
        return await self._json("POST", api_path("friend-requests", request_id, "accept"))

    async def decline_friend_request(self, request_id: str) -> JSONDict:
        return await self._json("POST", api_path("friend-requests", request_id, "decline"))

    async def contacts(self) -> list[JSONDict]:
        return list((await self._json("GET", api_path("contacts")))["contacts"])

    async def set_remark(self, user_id: str, remark: str) -> JSONDict:
        return await self._json("PATCH", api_path("contacts", user_id), {"remark": remark})

    async def remove_contact(self, user_id: str) -> None:
        await self.request("DELETE", api_path("contacts", user_id))

    async def blocks(self) -> list[str]:
        return [str(u) for u in (await self._json("GET", api_path("blocks")))["user_ids"]]

    async def block(self, user_id: str) -> None:
        await self.request("PUT", api_path("blocks", user_id))

    async def unblock(self, user_id: str) -> None:
        await self.request("DELETE", api_path("blocks", user_id))

    async def settings(self) -> JSONDict:
        """My privacy settings: `{"group_invite_consent": bool}`."""
        return await self._json("GET", api_path("me", "settings"))

    async def update_settings(self, *, group_invite_consent: bool) -> JSONDict:
        """True: others' adds to groups become invitations I accept or decline."""
        body = {"group_invite_consent": group_invite_consent}
        return await self._json("PATCH", api_path("me", "settings"), body)

    async def group_invitations(self) -> JSONDict:
        """`{"incoming": [...], "outgoing": [...]}`."""
        return await self._json("GET", api_path("group-invitations"))

    async def accept_group_invitation(self, invitation_id: str) -> JSONDict:
        """Join the group I was invited to."""
        return await self._json("POST", api_path("group-invitations", invitation_id, "accept"))

    async def decline_group_invitation(self, invitation_id: str) -> JSONDict:
        return await self._json("POST", api_path("group-invitations", invitation_id, "decline"))

    # -- conversations -----------------------------------------------------------------------

    async def create_direct(self, user_id: str) -> str:
        """The direct conversation with `user_id` (created, or the pair's existing one).

        Safe to repeat by nature (one per pair), so it is retried like `send_text`."""
        body = {"kind": "direct", "member_ids": [user_id]}
        data = await self.request("POST", api_path("conversations"), body, retry=self.retry)
        return str(data["conversation_id"])

    async def create_group(
        self,
        member_ids: list[str],
        title: str | None = None,
        *,
        idempotency_key: str | None = None,
    ) -> str:
        """Create a group; retried like `send_text`, under one `Idempotency-Key` (made when
        None), so a retry never makes a second group."""
        body: JSONDict = {"kind": "group", "member_ids": list(member_ids)}
        if title is not None:
            body["title"] = title
        data = await self.request(
            "POST",
            api_path("conversations"),
            body,
            retry=self.retry,
            idempotency_key=idempotency_key,
        )
        return str(data["conversation_id"])

    async def conversations(self) -> list[JSONDict]:
        return list((await self._json("GET", api_path("conversations")))["conversations"])

    async def conversation(self, conversation_id: str) -> JSONDict:
        return await self._json("GET", api_path("conversations", conversation_id))

    async def update_conversation(
        self,
        conversation_id: str,
        *,
        title: str | None = None,
        announcement: str | None = None,
        muted_all: bool | None = None,
    ) -> JSONDict:
        changes = {"title": title, "announcement": announcement, "muted_all": muted_all}
        body = {k: v for k, v in changes.items() if v is not None}
        return await self._json("PATCH", api_path("conversations", conversation_id), body)

    async def members(
        self, conversation_id: str, *, after: str | None = None, limit: int | None = None
    ) -> JSONDict:
        """One page: `{"members": [...], "next_after"}`."""
        path = api_path("conversations", conversation_id, "members")
        return await self._json("GET", path, after=after, limit=limit)

    async def add_members(
        self, conversation_id: str, user_ids: list[str], *, idempotency_key: str | None = None
    ) -> list[str]:
        """Returns the ids actually added (users who want to consent first are invited
        instead: the answer's `invited`); retried under one `Idempotency-Key` like
        `create_group`."""
        path = api_path("conversations", conversation_id, "members")
        data = await self.request(
            "POST",
            path,
            {"user_ids": list(user_ids)},
            retry=self.retry,
            idempotency_key=idempotency_key,
        )
        return [str(u) for u in data.get("added", [])]

    async def remove_member(self, conversation_id: str, user_id: str) -> None:
        """Remove someone (owner/admins), or leave with your own id."""
        await self.request("DELETE", api_path("conversations", conversation_id, "members", user_id))

    async def leave(self, conversation_id: str) -> None:
        user_id = self.user_id or str((await self.me())["user_id"])
        await self.remove_member(conversation_id, user_id)

    async def update_member(
        self,
        conversation_id: str,
        user_id: str,
        *,
        role: Literal["admin", "member"] | None = None,
        muted_until: int | None = _UNSET,
    ) -> JSONDict:
        """Change a member's role (owner) or mute them until `muted_until` ms (None unmutes)."""
        body: JSONDict = {}
        if role is not None:
            body["role"] = role
        if muted_until is not _UNSET:
            body["muted_until"] = muted_until
        path = api_path("conversations", conversation_id, "members", user_id)
        return await self._json("PATCH", path, body)

    async def transfer(self, conversation_id: str, user_id: str) -> JSONDict:
        path = api_path("conversations", conversation_id, "transfer")
        return await self._json("POST", path, {"user_id": user_id})

    async def typing(self, conversation_id: str, typing: bool = True) -> None:
        path = api_path("conversations", conversation_id, "typing")
        await self.request("POST", path, {"typing": typing})

    # -- messages ----------------------------------------------------------------------------

    async def send_text(
        self,
        conversation_id: str,
        text: str,
        *,
        client_txn_id: str | None = None,
        reply_to: str | None = None,
        mentions: list[str] | Literal["all"] | None = None,
        retry: RetryPolicy | None = None,
    ) -> SendResult:
        """Send a text message; returns after the server committed it.

        Without `client_txn_id` a fresh one is made. On connection errors, 5xx and 429 the
        *same* id is sent again (the server answers a repeat with the original message), with
        exponential backoff, until `retry` (default: the client's policy) gives up.
        """
        body: JSONDict = {
            "client_txn_id": client_txn_id or new_txn_id(),
            "msg_type": "text",
            "body": {"text": text},
        }
        if reply_to is not None:
            body["reply_to"] = reply_to
        if mentions is not None:
            body["mentions"] = mentions
        path = api_path("conversations", conversation_id, "messages")

        async def once() -> Answer:
            return await send_request(self._http, "POST", path, token=self.access_token, json=body)

        answer, attempts = await with_retry(retry or self.retry, once)
        if not isinstance(answer.data, dict):
            raise QunliaoError(answer.status, "unexpected", f"POST {path}: expected an object")
        return SendResult.from_json(answer.data, attempts=attempts, duplicate=answer.status == 200)

    async def history(
        self, conversation_id: str, before_seq: int | None = None, limit: int = 50
    ) -> list[JSONDict]:
        """Messages newest first, `seq < before_seq`."""
        path = api_path("conversations", conversation_id, "messages")
        return list((await self._json("GET", path, before_seq=before_seq, limit=limit))["messages"])

    async def all_history(self, conversation_id: str, page: int = 200) -> list[JSONDict]:
        """Every message of the conversation, oldest first (pages through `history`)."""
        newest_first: list[JSONDict] = []
        before: int | None = None
        while True:
            batch = await self.history(conversation_id, before_seq=before, limit=page)
            newest_first.extend(batch)
            if len(batch) < page:
                return newest_first[::-1]
            before = int(batch[-1]["seq"])

    async def message(self, conversation_id: str, message_id: str) -> JSONDict:
        path = api_path("conversations", conversation_id, "messages", message_id)
        return await self._json("GET", path)

    async def edit(self, conversation_id: str, message_id: str, text: str) -> JSONDict:
        """Returns `{"message_id", "seq"}` (seq of the `message.edited` event)."""
        path = api_path("conversations", conversation_id, "messages", message_id)
        return await self._json("PATCH", path, {"body": {"text": text}})

    async def recall(self, conversation_id: str, message_id: str) -> JSONDict:
        """Returns `{"message_id", "seq"}` (seq of the `message.recalled` event)."""
        path = api_path("conversations", conversation_id, "messages", message_id, "recall")
        return await self._json("POST", path)

    async def mark_read(self, conversation_id: str, seq: int) -> None:
        path = api_path("conversations", conversation_id, "read")
        await self.request("POST", path, {"seq": seq})

    async def receipts(self, conversation_id: str, seq: int) -> JSONDict:
        """`{"read_by": [...], "unread_by": [...]}` for the message at `seq`."""
        path = api_path("conversations", conversation_id, "receipts")
        return await self._json("GET", path, seq=seq)

    # -- sync and real time ------------------------------------------------------------------

    async def sync(
        self, since: str | None = None, timeout_ms: int = 0, limit: int = 100
    ) -> SyncPage:
        """One page of events after `since` (from the start when None); long-polls `timeout_ms`."""
        params = {"since": since, "timeout_ms": timeout_ms, "limit": limit}
        data = await self.request(
            "GET", api_path("sync"), params=params, http_timeout=self.timeout + timeout_ms / 1000
        )
        return SyncPage(next_token=str(data["next_token"]), events=list(data["events"]))

    def websocket_url(self, since: str | None = None) -> str:
        """The socket's URL: no token in it (proxies log URLs); it goes in a header."""
        url = httpx.URL(self.base_url)
        scheme = "wss" if url.scheme == "https" else "ws"
        path = url.path.rstrip("/") + api_path("ws")
        ws_url = url.copy_with(scheme=scheme, path=path, query=None)
        return str(ws_url if since is None else ws_url.copy_merge_params({"since": since}))

    def websocket(self, since: str | None = None) -> WebSocketConnection:
        """`async with client.websocket(since=token) as ws:` — one socket, no reconnect.

        The token is sent as `Authorization: Bearer …` in the handshake."""
        if self.access_token is None:
            raise QunliaoError(None, "unauthorized", "no access token: log in first")
        return WebSocketConnection(
            self.websocket_url(since),
            timeout=self.timeout,
            headers={"authorization": f"Bearer {self.access_token}"},
        )

    async def listen(
        self,
        since: str | None = None,
        *,
        dedupe: bool = True,
        reconnect: RetryPolicy | None = None,
    ) -> AsyncGenerator[JSONDict, None]:
        """Every event, forever: reconnects on its own and resumes where it left off.

        It follows the newest token (each stored event's `token`, each `synced` frame's
        `next_token`) and reconnects with `since=` so nothing is skipped or repeated; events
        already handed out are also dropped by (conversation_id, seq) as a safety net unless
        `dedupe=False`. `synced` frames are not yielded. With `since=None` it starts from now.
        It ends only by raising what the server meant (401 revoked token, 400 bad `since`, …);
        connection errors, 5xx, 429 and restarts are retried with `reconnect`'s backoff.
        Before the first socket it learns `user_id`/`device_id` (`identify`) when not known yet,
        so `event["sender_id"] == client.user_id` holds for my own messages from the first event.
        """
        await self.identify()
        events = listen_forever(
            self.websocket, since, dedupe=dedupe, reconnect=reconnect or RetryPolicy()
        )
        try:
            async for event in events:
                yield event
        finally:
            await events.aclose()

    # -- the handler style -------------------------------------------------------------------

    def on(
        self, event_type: type[E], *more_types: type[E], include_own: bool = False
    ) -> Callable[[Handler[E]], Handler[E]]:
        """Register an async handler for events of these classes (subclasses included):

            @client.on(MessageEvent)
            async def echo(event: MessageEvent) -> None:
                await event.reply(f"you said: {event.text}")

        `client.on(Event)` gets every event, `UnknownEvent` those this SDK cannot type.
        Messages (and edits) sent by this bot's own account are left out unless
        `include_own=True`. Handlers run one after the other in the order registered, each
        event in order; a handler that raises is logged and the bot goes on. Long work belongs
        in `client.spawn(...)` so the next event is not kept waiting.
        """
        types = (event_type, *more_types)
        Dispatcher.check_types(types)

        def register(handler: Handler[E]) -> Handler[E]:
            self._dispatcher.add(types, handler, include_own=include_own)
            return handler

        return register

    async def dispatch(self, event: Event) -> int:
        """Hand one event to the matching handlers (what `run` does for each); returns how
        many ran. Useful to test a bot's handlers without a server."""
        return await self._dispatcher.dispatch(event, self.user_id)

    async def run(self, since: str | None = None, *, reconnect: RetryPolicy | None = None) -> None:
        """Feed every event of `listen(since)` to the handlers registered with `on`, forever.

        Returns never; it raises what ends `listen` (401 when the token was revoked, …) and
        stops when cancelled. `user_id`/`device_id` are known before the first event.
        """
        async with aclosing(self.listen(since, reconnect=reconnect)) as frames:
            async for frame in frames:
                await self.dispatch(decode_event(frame, client=self))

    def spawn(
        self, coroutine: Coroutine[Any, Any, T], *, name: str | None = None
    ) -> asyncio.Task[T]:
        """Run `coroutine` beside the handlers (a timer, a slow lookup). The client owns the
        task: an error is logged, and `aclose()` (the end of `async with`) cancels it."""
        return self._dispatcher.spawn(coroutine, name)
