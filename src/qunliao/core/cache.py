"""A per-process cache of answers checked against storage, for the send hot path.

Entries live in groups (a conversation's members, a user's blocks): a change drops a whole group
at once (`forget`), and an entry expires after `ttl_s` regardless. An expired entry sends one
caller to storage and serves the others for `grace_s` meanwhile: under load an expiry must not
send every send in flight to the database at once (it did, and the reads queued behind each other
until throughput collapsed).
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Generic, TypeVar

T = TypeVar("T")


class GraceCache(Generic[T]):
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
        self._epoch = 0

    def get(self, group: str, key: str) -> T | None:
        entries = self._entries.get(group)
        if entries is None or (entry := entries.get(key)) is None:
            return None
        expires, value, serve_until = entry
        now = self._now()
        if expires >= now or serve_until >= now:
            return value
        # This caller reloads it (its `put` replaces the entry); the others keep the value
        # a little longer meanwhile, and the next of them reloads if that one never does.
        entries[key] = (expires, value, now + self._grace_s)
        return None

    def fresh(self, group: str, key: str) -> T | None:
        """The value only while it has not expired (for the caller that reloads it)."""
        entry = self._entries.get(group, {}).get(key)
        if entry is None or entry[0] < self._now():
            return None
        return entry[1]

    def generation(self, group: str) -> tuple[int, int]:
        """Read before loading from storage; `put` refuses a value loaded before a `forget`."""
        return (self._epoch, self._generations.get(group, 0))

    def put(self, group: str, key: str, value: T, generation: tuple[int, int]) -> None:
        if (self._epoch, self._generations.get(group, 0)) != generation:
            return  # changed while we were reading: the value may be stale
        if self._size >= self._max_entries:
            self._entries.clear()
            self._size = 0
        entries = self._entries.setdefault(group, {})
        if key not in entries:
            self._size += 1
        expires = self._now() + self._ttl_s
        entries[key] = (expires, value, expires)

    def forget(self, group: str) -> None:
        self._generations[group] = self._generations.get(group, 0) + 1
        if len(self._generations) > self._max_entries:
            # Every generation read before this is stale: the new epoch makes `put` refuse it
            # (counting from 0 again alone would let a reader's old generation match).
            self._epoch += 1
            self._generations.clear()
            self._entries.clear()
            self._size = 0
        dropped = self._entries.pop(group, None)
        if dropped:
            self._size -= len(dropped)
