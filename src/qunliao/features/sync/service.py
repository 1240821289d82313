"""Sync: every event a user may see, exactly once, in order, from an opaque token."""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from typing import Any

from qunliao.core.principal import Principal
from qunliao.core.tokens import decode_sync_token, encode_sync_token
from qunliao.realtime.hub import Hub
from qunliao.storage import spine
from qunliao.storage.db import Database


class SyncService:
    def __init__(
        self, db: Database, hub: Hub, *, observe: Callable[[float], None] | None = None
    ) -> None:
        self._db = db
        self._hub = hub
        self._observe = observe

    async def events_for_user(
        self, user_id: str, after_pos: int, limit: int
    ) -> tuple[list[spine.StoredEvent], int]:
        async with self._db.read() as conn:
            return await spine.events_for_user(conn, user_id, after_pos, limit)

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
        events = []
        for event in found:
            shaped = event.to_json()
            shaped["token"] = encode_sync_token(event.pos)
            events.append(shaped)
        return {"next_token": encode_sync_token(upto), "events": events}
