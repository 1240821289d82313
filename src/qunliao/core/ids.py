"""Opaque, prefixed, unguessable identifiers (`u_…`, `c_…`, `m_…`)."""

from __future__ import annotations

import secrets


class IdGenerator:
    """Random ids; an object (not module functions) so tests can inject a deterministic one.

    Random bytes are drawn 4 KiB at a time: one system call per 512 ids on the send path.
    """

    def __init__(self) -> None:
        self._pool = ""
        self._at = 0

    def new(self, prefix: str) -> str:
        if self._at >= len(self._pool):
            self._pool = secrets.token_bytes(4096).hex()
            self._at = 0
        start, self._at = self._at, self._at + 16
        return f"{prefix}_{self._pool[start : self._at]}"

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
