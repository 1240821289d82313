"""When each device (session) was last used: kept in memory, written to storage in batches.

Authentication runs on every HTTP request and a socket carries thousands of frames a second, so
a use is never a database write of its own. It is noted here, and the accounts service writes
the devices whose stored `last_seen_at` is at least GRANULARITY_MS old, all in one batch, at most
every FLUSH_INTERVAL_S (and at shutdown). Each process keeps and flushes its own uses; a check
combines the stored value with this process's memory, so another process's use reaches this one
at most STORED_LAG_MS late.
"""

from __future__ import annotations

from collections.abc import Iterable

GRANULARITY_MS = 60_000
FLUSH_INTERVAL_S = 30.0
# A use is written once the stored value is a granularity old, at the next flush: how far the
# stored value may trail the last use in another process (the idle check allows for it).
STORED_LAG_MS = GRANULARITY_MS + int(FLUSH_INTERVAL_S * 1000)


class DeviceActivity:
    """The last uses this process saw, and which of them storage needs to hear about."""

    def __init__(self, *, granularity_ms: int = GRANULARITY_MS) -> None:
        self._granularity_ms = granularity_ms
        self._latest: dict[str, int] = {}  # device → its last use seen here
        self._stored: dict[str, int] = {}  # device → its stored last_seen_at, as far as known
        self._due: set[str] = set()  # devices whose stored value is a granularity behind

    def last_seen(self, device_id: str, stored_ms: int) -> int:
        """The newer of the stored value and this process's memory."""
        return max(stored_ms, self._latest.get(device_id, stored_ms))

    def saw(self, device_id: str, now_ms: int, stored_ms: int | None = None) -> None:
        """The device was used now (`stored_ms`: its last_seen_at just read, when known)."""
        if now_ms > self._latest.get(device_id, 0):
            self._latest[device_id] = now_ms
        known = self._stored.get(device_id, 0)
        if stored_ms is not None and stored_ms > known:
            self._stored[device_id] = known = stored_ms
        if now_ms - known >= self._granularity_ms:
            self._due.add(device_id)

    def saw_all(self, device_ids: Iterable[str], now_ms: int) -> None:
        for device_id in device_ids:
            self.saw(device_id, now_ms)

    def take_due(self) -> dict[str, int]:
        """The uses to write now; `written` or `failed` must follow."""
        batch = {device_id: self._latest[device_id] for device_id in self._due}
        self._due = set()
        return batch

    def failed(self, batch: dict[str, int]) -> None:
        self._due.update(batch)  # the next flush tries again

    def written(self, batch: dict[str, int], now_ms: int) -> None:
        for device_id, seen_ms in batch.items():
            if seen_ms > self._stored.get(device_id, 0):
                self._stored[device_id] = seen_ms
        # Forget devices idle for a while: storage is at most a granularity behind them, which
        # STORED_LAG_MS covers, so memory stays the size of the recently active devices.
        horizon = now_ms - STORED_LAG_MS
        for device_id in [d for d, seen_ms in self._latest.items() if seen_ms < horizon]:
            if device_id not in self._due:
                del self._latest[device_id]
                self._stored.pop(device_id, None)

    def forget(self, device_ids: Iterable[str]) -> None:
        """Revoked devices: nothing more to write for them."""
        for device_id in device_ids:
            self._latest.pop(device_id, None)
            self._stored.pop(device_id, None)
            self._due.discard(device_id)
