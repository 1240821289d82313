"""Group commit for the hot send path: concurrent sends share one transaction (one fsync).

There is no fixed wait before flushing: the writer takes whatever has queued up while the last
transaction was committing, so a lone send commits at once and a burst shares a commit.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable
from dataclasses import dataclass

from qunliao.core.clock import Clock
from qunliao.core.errors import ApiError, conflict
from qunliao.storage import spine
from qunliao.storage.db import Database

log = logging.getLogger(__name__)


@dataclass
class SendOutcome:
    event: spine.StoredEvent
    duplicate: bool


@dataclass
class _Pending:
    event: spine.NewEvent
    future: asyncio.Future[SendOutcome]


def _same_send(stored: spine.StoredEvent, new: spine.NewEvent) -> bool:
    if stored.stream_id != new.stream_id:
        return False
    # A recalled message has lost its body; the conversation is all that is left to compare.
    return stored.recalled_at is not None or stored.body == new.body


class MessageWriter:
    def __init__(
        self,
        db: Database,
        clock: Clock,
        on_committed: Callable[[list[spine.StoredEvent]], None],
        *,
        max_batch: int = 2000,
    ) -> None:
        self._db = db
        self._clock = clock
        self._on_committed = on_committed
        self._max_batch = max_batch
        self._queue: asyncio.Queue[_Pending] = asyncio.Queue()
        self._task: asyncio.Task[None] | None = None
        self.batches = 0
        self.committed = 0

    def start(self) -> None:
        if self._task is None:
            self._task = asyncio.create_task(self._run(), name="qunliao-group-commit")

    async def stop(self) -> None:
        """Finish what is queued, then stop."""
        if self._task is None:
            return
        await self._queue.join()
        self._task.cancel()
        try:
            await self._task
        except asyncio.CancelledError:
            pass
        self._task = None

    async def submit(self, event: spine.NewEvent) -> SendOutcome:
        if self._task is None:
            raise ApiError("unavailable", "the server is shutting down")
        future: asyncio.Future[SendOutcome] = asyncio.get_running_loop().create_future()
        self._queue.put_nowait(_Pending(event, future))
        return await future

    async def _run(self) -> None:
        while True:
            batch = [await self._queue.get()]
            while len(batch) < self._max_batch and not self._queue.empty():
                batch.append(self._queue.get_nowait())
            try:
                await self._commit(batch)
            except Exception as exc:
                log.exception("group commit of %d sends failed", len(batch))
                error = (
                    exc
                    if isinstance(exc, ApiError)
                    else ApiError(
                        "unavailable", "the message could not be stored, retry with the same id"
                    )
                )
                for item in batch:
                    if not item.future.done():
                        item.future.set_exception(error)
            finally:
                for _ in batch:
                    self._queue.task_done()

    async def _commit(self, batch: list[_Pending]) -> None:
        outcomes: dict[int, SendOutcome] = {}
        errors: dict[int, ApiError] = {}
        fresh: list[tuple[int, spine.NewEvent]] = []
        async with self._db.write() as tx:
            pos = await spine.lock_position(tx.conn)
            keys = [
                (p.event.device_id or "", p.event.client_txn_id or "")
                for p in batch
                if p.event.device_id and p.event.client_txn_id
            ]
            existing = await spine.find_txns(tx.conn, keys)
            first_in_batch: dict[tuple[str, str], int] = {}
            for index, item in enumerate(batch):
                key = (item.event.device_id or "", item.event.client_txn_id or "")
                stored = existing.get(key)
                if stored is not None:
                    if _same_send(stored, item.event):
                        outcomes[index] = SendOutcome(stored, duplicate=True)
                    else:
                        errors[index] = conflict(
                            "client_txn_id was already used for another message"
                        )
                    continue
                if key in first_in_batch:
                    continue  # resolved from the first copy below
                first_in_batch[key] = index
                fresh.append((index, item.event))
            stored_events = await spine.append_events(
                tx.conn, [e for _, e in fresh], self._clock.now_ms(), locked_pos=pos
            )
            for (index, _), stored in zip(fresh, stored_events, strict=True):
                outcomes[index] = SendOutcome(stored, duplicate=False)
            await spine.advance_reads(
                tx.conn,
                [(s.stream_id, s.sender_id, s.seq) for s in stored_events if s.sender_id],
            )
            if stored_events:
                tx.on_commit(lambda: self._on_committed(stored_events))
        self.batches += 1
        self.committed += len(stored_events)
        for index, item in enumerate(batch):
            if item.future.done():
                continue  # the caller went away; the send is stored and a retry will find it
            if index in outcomes:
                item.future.set_result(outcomes[index])
            elif index in errors:
                item.future.set_exception(errors[index])
            else:
                key = (item.event.device_id or "", item.event.client_txn_id or "")
                twin = outcomes[first_in_batch[key]]
                if _same_send(twin.event, item.event):
                    item.future.set_result(SendOutcome(twin.event, duplicate=True))
                else:
                    item.future.set_exception(
                        conflict("client_txn_id was already used for another message")
                    )
