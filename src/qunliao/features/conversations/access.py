"""A per-process cache of verified memberships, for the send hot path.

Entries are dropped when this process commits a change to the conversation and when the hub
sees a membership or conversation event from any process, and expire after `ttl_s` regardless.
An expired entry sends one caller to storage and serves the others for `grace_s` meanwhile:
under load an expiry must not send every send in flight to the database at once (it did, and
the reads queued behind each other until throughput collapsed).
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Generic, TypeVar

T = TypeVar("T")


class AccessCache(Generic[T]):
    def __init__(
        self,
        now: Callable[[], float],
        *,
        ttl_s: float = 30.0,
        grace_s: float = 2.0,
        max_entries: int = 200_000,
    ):
        self._now = now
        self._ttl_s = ttl_s
        self._grace_s = grace_s
        self._max_entries = max_entries
        # (expires, value, served to others until): see `get`
        self._entries: dict[str, dict[str, tuple[float, T, float]]] = {}
        self._size = 0
        self._generations: dict[str, int] = {}

    def get(self, conversation_id: str, user_id: str) -> T | None:
        users = self._entries.get(conversation_id)
        if users is None or (entry := users.get(user_id)) is None:
            return None
        expires, value, serve_until = entry
        now = self._now()
        if expires >= now or serve_until >= now:
            return value
        # This caller reloads it (its `put` replaces the entry); the others keep the value
        # a little longer meanwhile, and the next of them reloads if that one never does.
        users[user_id] = (expires, value, now + self._grace_s)
        return None

    def fresh(self, conversation_id: str, user_id: str) -> T | None:
        """The value only while it has not expired (for the caller that reloads it)."""
        entry = self._entries.get(conversation_id, {}).get(user_id)
        if entry is None or entry[0] < self._now():
            return None
        return entry[1]

    def generation(self, conversation_id: str) -> int:
        """Read before loading from storage; `put` refuses a value loaded before a `forget`."""
        return self._generations.get(conversation_id, 0)

    def put(self, conversation_id: str, user_id: str, value: T, generation: int) -> None:
        if self._generations.get(conversation_id, 0) != generation:
            return  # changed while we were reading: the value may be stale
        if self._size >= self._max_entries:
            self._entries.clear()
            self._size = 0
        users = self._entries.setdefault(conversation_id, {})
        if user_id not in users:
            self._size += 1
        expires = self._now() + self._ttl_s
        users[user_id] = (expires, value, expires)

    def forget(self, conversation_id: str) -> None:
        self._generations[conversation_id] = self._generations.get(conversation_id, 0) + 1
        if len(self._generations) > self._max_entries:
            self._generations.clear()  # every earlier reader's generation is now stale anyway
            self._entries.clear()
            self._size = 0
        dropped = self._entries.pop(conversation_id, None)
        if dropped:
            self._size -= len(dropped)
