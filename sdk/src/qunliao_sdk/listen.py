"""`Client.listen()`: events forever, across reconnects, each once."""

from __future__ import annotations

import logging
from collections import deque
from collections.abc import AsyncGenerator, Callable

from qunliao_sdk.errors import QunliaoConnectionError, QunliaoError
from qunliao_sdk.models import JSONDict, RetryPolicy
from qunliao_sdk.websocket import WebSocketConnection, frame_key

logger = logging.getLogger("qunliao_sdk")


class _RecentKeys:
    """A set that remembers only the newest `size` keys (the dedupe safety net of `listen`)."""

    def __init__(self, size: int) -> None:
        self._size = size
        self._order: deque[tuple[str, int]] = deque()
        self._keys: set[tuple[str, int]] = set()

    def add(self, key: tuple[str, int]) -> bool:
        """Remember `key`; False when it was already there."""
        if key in self._keys:
            return False
        self._keys.add(key)
        self._order.append(key)
        if len(self._order) > self._size:
            self._keys.discard(self._order.popleft())
        return True


async def listen_forever(
    open_socket: Callable[[str | None], WebSocketConnection],
    since: str | None,
    *,
    dedupe: bool,
    reconnect: RetryPolicy,
) -> AsyncGenerator[JSONDict, None]:
    """Yield every event from sockets made by `open_socket(since)`, reconnecting from the newest
    token whenever one breaks (see `Client.listen`)."""
    token = since
    seen = _RecentKeys(100_000)
    failures = 0
    while True:
        ws = open_socket(token)
        try:
            await ws.connect()
            failures = 0
            async for event in ws.events():
                token = ws.last_token or token
                if event.get("type") == "synced":
                    continue
                key = frame_key(event)
                if dedupe and key is not None and not seen.add(key):
                    continue
                yield event
        except QunliaoConnectionError as exc:
            token = token or exc.resume_token
            logger.info("qunliao: listen reconnecting after: %s", exc)
        except QunliaoError as exc:
            if exc.status is not None and exc.status < 500 and exc.status != 429:
                raise
            logger.info("qunliao: listen reconnecting after: %s", exc)
        finally:
            await ws.close()
        failures += 1
        await reconnect.sleep(reconnect.delay(failures))
