"""Message queries, over the event log (messages have no table of their own).

Only messages.service calls this.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from sqlalchemy.ext.asyncio import AsyncConnection

from qunliao.core.events import Span, StoredEvent
from qunliao.features.messages.events import KEPT_ON_RECALL, MESSAGE, RECALLED
from qunliao.storage import eventlog


async def history(
    conn: AsyncConnection, span: Span, *, before_seq: int | None, limit: int
) -> list[StoredEvent]:
    """Messages only, newest first, within what the reader may see."""
    return await eventlog.stream_events(
        conn, span.stream_id, types=(MESSAGE,), min_seq=span.first, max_seq=span.last,
        before_seq=before_seq, limit=limit,
    )  # fmt: skip


async def get_message(conn: AsyncConnection, stream_id: str, message_id: str) -> StoredEvent | None:
    return await eventlog.find(conn, stream_id, ref_id=message_id, type_=MESSAGE)


async def message_at(conn: AsyncConnection, stream_id: str, seq: int) -> StoredEvent | None:
    event = await eventlog.at_seq(conn, stream_id, seq)
    return event if event is not None and event.type == MESSAGE else None


async def find_recall(conn: AsyncConnection, stream_id: str, message_id: str) -> StoredEvent | None:
    return await eventlog.find(conn, stream_id, ref_id=message_id, type_=RECALLED)


async def set_body(
    conn: AsyncConnection, message: StoredEvent, body: dict[str, Any], edited_at: int
) -> bool:
    """Replace a message's body; False if it was recalled meanwhile."""
    payload = {**message.payload, "body": body, "edited_at": edited_at}
    return await eventlog.set_payload(conn, message.pos, payload)


async def erase(conn: AsyncConnection, stream_id: str, message_id: str, recalled_at: int) -> None:
    """Recall: the bodies of the message and of every edit of it are deleted from storage."""
    await eventlog.redact(conn, stream_id, message_id, recalled_at, keep=KEPT_ON_RECALL)


async def unread_counts(
    conn: AsyncConnection, user_id: str, read_positions: Sequence[tuple[str, int]]
) -> dict[str, int]:
    """Messages from others after each read position, recalled ones excluded."""
    return await eventlog.count_after(conn, read_positions, type_=MESSAGE, not_sender=user_id)


async def last_messages(conn: AsyncConnection, spans: Sequence[Span]) -> dict[str, StoredEvent]:
    return await eventlog.latest_of_type(conn, spans, MESSAGE)
