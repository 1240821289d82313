"""Replays the stored answer of a write retried with the same Idempotency-Key."""

from __future__ import annotations

import asyncio
import hashlib

from qunliao.core.clock import Clock
from qunliao.core.errors import bad_request, conflict
from qunliao.features.idempotency import store
from qunliao.storage.db import Database

KEEP_MS = 24 * 3600 * 1000
MAX_KEY = 128


def fingerprint(method: str, path: str, body: bytes) -> str:
    return hashlib.sha256(method.encode() + b" " + path.encode() + b"\n" + body).hexdigest()


class IdempotencyService:
    def __init__(self, db: Database, clock: Clock) -> None:
        self._db = db
        self._clock = clock
        self._locks: dict[tuple[str, str], asyncio.Lock] = {}

    def lock(self, user_id: str, key: str) -> asyncio.Lock:
        """Serialises twins of one key in this process (so the second waits for the first)."""
        if len(self._locks) > 10_000:
            self._locks = {k: v for k, v in self._locks.items() if v.locked()}
        return self._locks.setdefault((user_id, key), asyncio.Lock())

    @staticmethod
    def check_key(key: str) -> None:
        # visible ASCII only: what /openapi.json promises, and what every HTTP stack carries as is
        if not 1 <= len(key) <= MAX_KEY or not all("!" <= c <= "~" for c in key):
            raise bad_request(f"Idempotency-Key must be 1–{MAX_KEY} visible ASCII characters")

    async def stored_answer(
        self, user_id: str, key: str, fingerprint_: str
    ) -> store.StoredAnswer | None:
        """The earlier answer for this key; 409 if the key was used for another request."""
        async with self._db.read() as conn:
            found = await store.find(conn, user_id, key)
        if found is not None and found.fingerprint != fingerprint_:
            raise conflict("Idempotency-Key was already used for another request")
        return found

    async def do_remember(
        self, user_id: str, key: str, fingerprint_: str, status: int, body: bytes
    ) -> None:
        now = self._clock.now_ms()
        async with self._db.write() as tx:
            await store.save(tx.conn, user_id, key, store.StoredAnswer(fingerprint_, status, body),
                             now)  # fmt: skip
            await store.expire(tx.conn, now - KEEP_MS)
