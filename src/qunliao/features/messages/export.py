"""Exports ("download my data"): a user's conversations, or one whole conversation, as JSON (one
file per conversation and an index) and one self-contained HTML page. It only reads.

A user's export holds every conversation they belong or belonged to, each from their join to
their leave: what they could see in the app (recalled messages as recalled, edits as the latest
text). A conversation's export holds all of it. Operator tools run it (`qunliao export`): the
scope is the caller's to choose, so nothing here checks a caller.
"""

from __future__ import annotations

import asyncio
import html
import re
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from functools import partial
from pathlib import Path
from typing import Any

import orjson

from qunliao import __version__
from qunliao.core.clock import Clock
from qunliao.core.events import Span
from qunliao.features.accounts import AccountService
from qunliao.features.conversations import ConversationService
from qunliao.features.messages.service import MessageService

FORMAT = "qunliao-export/1"
PAGE = 500
# (how many conversations are done, the one being read, messages read so far in it): for a
# progress bar.
Progress = Callable[[int, str, int], None]
SAFE_NAME = re.compile(r"[^A-Za-z0-9_.-]")


@dataclass
class Scope:
    """What one export covers: the user it is for (None: a whole conversation) and, per
    conversation, the span of it that is exported."""

    user: dict[str, Any] | None
    conversations: list[tuple[dict[str, Any], Span]]
    members: dict[str, list[str]]  # conversation → user ids to name besides the senders


class Exporter:
    def __init__(
        self,
        messages: MessageService,
        conversations: ConversationService,
        accounts: AccountService,
        clock: Clock,
    ) -> None:
        self._messages = messages
        self._conversations = conversations
        self._accounts = accounts
        self._clock = clock

    async def user_scope(self, username: str) -> Scope:
        """The user's conversations as they see them; 404 for an unknown username."""
        return await self._scope_of(await self._accounts.account_named(username))

    async def user_scope_by_id(self, user_id: str) -> Scope:
        """The same, by user id (a user's own export)."""
        return await self._scope_of(await self._accounts.account(user_id))

    async def _scope_of(self, user: dict[str, Any]) -> Scope:
        user_id = str(user["user_id"])
        found = await self._conversations.memberships_of_user(user_id)
        return Scope(
            {
                "user_id": user_id,
                "username": user["username"],
                "display_name": user["display_name"],
            },
            [(row, Span(row["conversation_id"], m.joined_seq, m.left_seq)) for row, m in found],
            {row["conversation_id"]: [user_id] for row, _ in found},
        )

    async def conversation_scope(self, conversation_id: str) -> Scope:
        """All of one conversation; 404 if it does not exist."""
        row, everyone = await self._conversations.conversation_with_members(conversation_id)
        return Scope(
            None, [(row, Span(conversation_id, 0, None))],
            {conversation_id: [m.user_id for m in everyone]},
        )  # fmt: skip

    async def write(
        self, scope: Scope, out: Path, progress: Progress | None = None
    ) -> dict[str, Any]:
        """Write the export into `out` (created if missing); returns the index."""
        exported = []
        for number, (row, span) in enumerate(scope.conversations):
            report = None if progress is None else partial(progress, number, _title_hint(row))
            messages = await self._read_span(span, report)
            exported.append(await self._conversation(scope, row, span, messages))
        index = {
            "format": FORMAT,
            "server_version": __version__,
            "exported_at": self._clock.now_ms(),
            "user": scope.user,
            "conversations": [
                {
                    "conversation_id": c["conversation"]["conversation_id"],
                    "kind": c["conversation"]["kind"],
                    "title": c["conversation"]["title"],
                    "message_count": len(c["messages"]),
                    "file": c["file"],
                }
                for c in exported
            ],
        }
        await asyncio.to_thread(_write_files, out, index, exported)
        return index

    async def _read_span(
        self, span: Span, progress: Callable[[int], None] | None
    ) -> list[dict[str, Any]]:
        newest_first: list[dict[str, Any]] = []
        before: int | None = None
        while True:
            page = await self._messages.messages_within(span, before, PAGE)
            newest_first.extend(page)
            if progress is not None:
                progress(len(newest_first))
            if len(page) < PAGE:
                break
            before = page[-1]["seq"]
        newest_first.reverse()
        return newest_first

    async def _conversation(
        self, scope: Scope, row: dict[str, Any], span: Span, messages: list[dict[str, Any]]
    ) -> dict[str, Any]:
        conversation_id = row["conversation_id"]
        people = dict.fromkeys(scope.members.get(conversation_id, []))
        people.update(dict.fromkeys(m["sender_id"] for m in messages if m["sender_id"]))
        names = await self._accounts.profiles(list(people))
        return {
            "file": f"conversations/{SAFE_NAME.sub('_', conversation_id)}.json",
            "conversation": {
                "conversation_id": conversation_id,
                "kind": row["kind"],
                "title": row["title"],
                "announcement": row["announcement"],
                "created_at": row["created_at"],
            },
            "visible_seqs": {"from": span.first, "to": span.last},
            "participants": [
                names.get(u, {"user_id": u, "username": None, "display_name": None}) for u in people
            ],
            "messages": messages,
        }


def _title_hint(row: dict[str, Any]) -> str:
    return str(row["title"] or f"{row['kind']} {row['conversation_id']}")


def _write_files(out: Path, index: dict[str, Any], exported: Sequence[dict[str, Any]]) -> None:
    (out / "conversations").mkdir(parents=True, exist_ok=True)
    for conversation in exported:
        body = {k: v for k, v in conversation.items() if k != "file"}
        (out / conversation["file"]).write_bytes(orjson.dumps(body, option=orjson.OPT_INDENT_2))
    (out / "index.json").write_bytes(orjson.dumps(index, option=orjson.OPT_INDENT_2))
    (out / "index.html").write_text(render_html(index, exported), encoding="utf-8")


# ---------------------------------------------------------------- the HTML page

STYLE = """
body{font-family:system-ui,-apple-system,"PingFang SC","Microsoft YaHei","Noto Sans CJK SC",
sans-serif;margin:0 auto;max-width:52rem;padding:1rem;color:#1f2328;background:#fff}
h1{font-size:1.4rem}h2{font-size:1.15rem;border-bottom:1px solid #d0d7de;padding-bottom:.3rem;
margin-top:2rem}nav li{margin:.2rem 0}.meta{color:#57606a;font-size:.85rem}
.msg{margin:.5rem 0;padding:.4rem .6rem;border-radius:6px;background:#f6f8fa}
.msg .who{font-weight:600}.msg .when{color:#57606a;font-size:.8rem;margin-left:.5rem}
.text{white-space:pre-wrap;overflow-wrap:anywhere;margin-top:.2rem}
.recalled{color:#57606a;font-style:italic}.edited{color:#57606a;font-size:.8rem}
pre{white-space:pre-wrap;overflow-wrap:anywhere;margin:.2rem 0}
"""


def _e(value: Any) -> str:
    return html.escape("" if value is None else str(value), quote=True)


def _when(ms: int | None) -> str:
    if ms is None:
        return ""
    return datetime.fromtimestamp(ms / 1000, UTC).strftime("%Y-%m-%d %H:%M:%S UTC")


def _name(people: dict[str, dict[str, Any]], user_id: str | None) -> str:
    person = people.get(user_id or "")
    if person is None:
        return user_id or "?"
    return f"{person['display_name'] or person['username']} (@{person['username']})"


def _message_html(message: dict[str, Any], people: dict[str, dict[str, Any]]) -> str:
    head = (
        f'<span class="who">{_e(_name(people, message["sender_id"]))}</span>'
        f'<span class="when">{_e(_when(message["sent_at"]))}</span>'
    )
    body = message["body"]
    if message["recalled_at"] is not None:
        content = (
            f'<div class="recalled">recalled · 已撤回 ({_e(_when(message["recalled_at"]))})</div>'
        )
    elif message["msg_type"] == "text" and isinstance(body, dict) and "text" in body:
        content = f'<div class="text">{_e(body["text"])}</div>'
    else:
        dumped = orjson.dumps(body, option=orjson.OPT_INDENT_2).decode()
        content = f"<div>{_e(message['msg_type'])}</div><pre>{_e(dumped)}</pre>"
    if message["edited_at"] is not None and message["recalled_at"] is None:
        content += f'<div class="edited">edited · 已编辑 {_e(_when(message["edited_at"]))}</div>'
    return f'<div class="msg" id="m-{_e(message["message_id"])}">{head}{content}</div>'


def _conversation_title(conversation: dict[str, Any], people: dict[str, dict[str, Any]]) -> str:
    info = conversation["conversation"]
    if info["title"]:
        return str(info["title"])
    if info["kind"] == "direct":
        return " · ".join(_name(people, p) for p in people) or info["conversation_id"]
    return str(info["conversation_id"])


def render_html(index: dict[str, Any], exported: Sequence[dict[str, Any]]) -> str:
    """One page, no external assets: every string from the data is HTML-escaped."""
    user = index["user"]
    heading = (
        f"Data of {user['display_name']} (@{user['username']})" if user else "Conversation export"
    )
    parts = [
        '<!DOCTYPE html><html><head><meta charset="utf-8">',
        '<meta name="viewport" content="width=device-width, initial-scale=1">',
        f"<title>{_e(heading)} · qunliao</title><style>{STYLE}</style></head><body>",
        f"<h1>{_e(heading)}</h1>",
        f'<p class="meta">qunliao {_e(index["server_version"])} · exported '
        f"{_e(_when(index['exported_at']))} · {len(exported)} conversation(s)</p><nav><ul>",
    ]
    sections = []
    for n, conversation in enumerate(exported):
        people = {p["user_id"]: p for p in conversation["participants"]}
        title = _conversation_title(conversation, people)
        count = len(conversation["messages"])
        parts.append(
            f'<li><a href="#c{n}">{_e(title)}</a> <span class="meta">({count})</span></li>'
        )
        info = conversation["conversation"]
        sections.append(
            f'<section id="c{n}"><h2>{_e(title)}</h2><p class="meta">{_e(info["kind"])} · '
            f"{_e(info['conversation_id'])} · {count} message(s)</p>"
        )
        if info["announcement"]:
            sections.append(f'<p class="text">{_e(info["announcement"])}</p>')
        sections.extend(_message_html(m, people) for m in conversation["messages"])
        sections.append("</section>")
    parts.append("</ul></nav>")
    parts.extend(sections)
    parts.append("</body></html>\n")
    return "\n".join(parts)
