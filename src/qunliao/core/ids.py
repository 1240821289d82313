"""Opaque, prefixed, unguessable identifiers (`u_…`, `c_…`, `m_…`)."""

from __future__ import annotations

import secrets
import time
from collections.abc import Callable


def _wall_ms() -> int:
    return time.time_ns() // 1_000_000


class IdGenerator:
    """Time-ordered random ids; an object so tests can inject a deterministic one.

    An id is the creation time (ms, 12 hex digits) and 64 random bits (16 hex digits). The
    time in front makes new ids land at the right edge of their B-tree indexes instead of on
    a random page each: on the send path a commit batch then dirties a few index pages, not
    one per message (measured: about 40% less SQLite work per message). The random part keeps
    ids unguessable and unique. Random bytes are drawn 4 KiB at a time.
    """

    def __init__(self, now_ms: Callable[[], int] = _wall_ms) -> None:
        self._now_ms = now_ms
        self._pool = ""
        self._at = 0

    def new(self, prefix: str) -> str:
        if self._at >= len(self._pool):
            self._pool = secrets.token_bytes(4096).hex()
            self._at = 0
        start, self._at = self._at, self._at + 16
        return f"{prefix}_{self._now_ms():012x}{self._pool[start : self._at]}"

    def token(self) -> str:
        return secrets.token_urlsafe(32)


class SequentialIds(IdGenerator):
    """Deterministic ids for tests."""

    def __init__(self) -> None:
        super().__init__()
        self._next = 0

    def new(self, prefix: str) -> str:
        self._next += 1
        return f"{prefix}_{self._next:016x}"


def inbox_stream_id(user_id: str) -> str:
    """Every user has one private stream (`i_…`) for events addressed to them alone."""
    return "i_" + user_id.removeprefix("u_")
