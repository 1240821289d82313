"""Sync: every event a user may see, exactly once, in order, from an opaque token.

What a user may see is the union of the spans every registered stream kind's audience gives
for them; sync names no kind.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from typing import Any

from qunliao.core.events import StoredEvent
from qunliao.core.principal import Principal
from qunliao.core.streams import Registry
from qunliao.core.tokens import decode_sync_token, encode_sync_token
from qunliao.realtime.hub import Hub
from qunliao.storage import eventlog
from qunliao.storage.db import Database


class SyncService:
    def __init__(
        self,
        db: Database,
        hub: Hub,
        registry: Registry,
        *,
        observe: Callable[[float], None] | None = None,
    ) -> None:
        self._db = db
        self._hub = hub
        self._registry = registry
        self._observe = observe

    async def events_for_user(
        self, user_id: str, after_pos: int, limit: int
    ) -> tuple[list[StoredEvent], int]:
        """Events the user may see with pos > after_pos, in pos order, and where to go on."""
        async with self._db.read() as conn:
            # The position first: an event committed after it is left for the next page, and
            # none below it can commit later (see storage/eventlog/append.py).
            top = await eventlog.max_position(conn)
            spans = await self._registry.spans(conn, user_id)
            while True:
                found, upto = await eventlog.read(conn, spans, after_pos, limit, top)
                shown = self._registry.filter_for(user_id, found)
                # A full page that a sync filter emptied is not "caught up": read on.
                if shown or len(found) < limit:
                    return shown, upto
                after_pos = upto

    async def sync(
        self, caller: Principal, since: str | None, timeout_ms: int, limit: int
    ) -> dict[str, Any]:
        position = decode_sync_token(since)
        loop = asyncio.get_running_loop()
        started = loop.time()
        deadline = started + timeout_ms / 1000
        waited = False
        while True:
            found, upto = await self.events_for_user(caller.user_id, position, limit)
            remaining = deadline - loop.time()
            if found or remaining <= 0:
                break
            position = upto
            waited = True
            await self._hub.wait_past(upto, remaining)
        if self._observe is not None and not waited:
            self._observe(loop.time() - started)
        shape = self._registry.shape
        events = []
        for event in found:
            shaped = shape(event)
            shaped["token"] = encode_sync_token(event.pos)
            events.append(shaped)
        return {"next_token": encode_sync_token(upto), "events": events}
