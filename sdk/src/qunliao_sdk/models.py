"""Plain result types and the retry policy."""

from __future__ import annotations

import asyncio
import random
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from typing import Any

JSONDict = dict[str, Any]


@dataclass(frozen=True)
class Session:
    """One login = one device."""

    access_token: str
    user_id: str
    device_id: str


@dataclass(frozen=True)
class SendResult:
    """What the server answered to a send. Equal results mean the same stored message.

    `attempts` counts the tries this call made; `duplicate` is True when the server said the
    `client_txn_id` had been sent before (HTTP 200 instead of 201) — neither takes part in `==`.
    """

    message_id: str
    seq: int
    sent_at: int
    attempts: int = field(default=1, compare=False)
    duplicate: bool = field(default=False, compare=False)

    @classmethod
    def from_json(cls, data: JSONDict, *, attempts: int = 1, duplicate: bool = False) -> SendResult:
        return cls(
            message_id=str(data["message_id"]),
            seq=int(data["seq"]),
            sent_at=int(data["sent_at"]),
            attempts=attempts,
            duplicate=duplicate,
        )


@dataclass(frozen=True)
class SyncPage:
    """One page of `GET /api/v1/sync`; `events == []` means caught up."""

    next_token: str
    events: list[JSONDict]


def _jitter_factor() -> float:
    return random.uniform(0.8, 1.2)


@dataclass(frozen=True)
class RetryPolicy:
    """Bounded exponential backoff for writes that carry a client transaction id.

    A send is retried on connection errors, 5xx and 429 (waiting `Retry-After` when the server
    says so) until `total` seconds have passed since the first try; the wait between tries
    starts at `initial_delay` and grows by `multiplier` up to `max_delay`. `sleep` and `clock`
    exist so tests can run the schedule without waiting.
    """

    total: float = 30.0
    initial_delay: float = 0.1
    max_delay: float = 5.0
    multiplier: float = 2.0
    jitter: Callable[[], float] = _jitter_factor
    sleep: Callable[[float], Awaitable[Any]] = asyncio.sleep
    clock: Callable[[], float] = time.monotonic

    def delay(self, attempt: int) -> float:
        """The wait after failed try number `attempt` (1-based), before jitter is capped."""
        base = self.initial_delay * self.multiplier ** max(attempt - 1, 0)
        return float(min(self.max_delay, base * self.jitter()))


NO_RETRY = RetryPolicy(total=0.0)
