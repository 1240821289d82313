"""Group commit for the hot send path: concurrent sends share one transaction (one fsync).

There is no fixed wait before flushing: the writer takes whatever has queued up while the last
transaction was committing, so a lone send commits at once and a burst shares a commit.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Callable
from dataclasses import dataclass

from qunliao.core.clock import Clock
from qunliao.core.errors import ApiError, conflict
from qunliao.storage import spine
from qunliao.storage.db import Database
from qunliao.storage.fast_append import BatchWriter, TxnKey, batch_writer, txn_key

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
    # A recalled or edited message no longer has its first body; the conversation is all that
    # is left to compare.
    if stored.recalled_at is not None or stored.edited_at is not None:
        return True
    return stored.body == new.body


class MessageWriter:
    def __init__(
        self,
        db: Database,
        clock: Clock,
        on_committed: Callable[[list[spine.StoredEvent]], None],
        *,
        max_batch: int = 2000,
        on_batch: Callable[[int, float], None] | None = None,
    ) -> None:
        self._db = db
        self._clock = clock
        self._on_committed = on_committed
        self._max_batch = max_batch
        self._backend: BatchWriter = batch_writer(db)
        self._on_batch = on_batch
        self._queue: asyncio.Queue[_Pending] = asyncio.Queue()
        self._task: asyncio.Task[None] | None = None
        self.batches = 0
        self.committed = 0
        self.largest_batch = 0

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
        return await self.submit_nowait(event)

    def submit_nowait(self, event: spine.NewEvent) -> asyncio.Future[SendOutcome]:
        """Queue a send; the future resolves after its batch commits."""
        if self._task is None:
            raise ApiError("unavailable", "the server is shutting down")
        future: asyncio.Future[SendOutcome] = asyncio.get_running_loop().create_future()
        self._queue.put_nowait(_Pending(event, future))
        return future

    async def _run(self) -> None:
        while True:
            batch = [await self._queue.get()]
            while len(batch) < self._max_batch and not self._queue.empty():
                batch.append(self._queue.get_nowait())
            try:
                try:
                    await self._commit(batch)
                except Exception:
                    if len(batch) == 1:
                        raise
                    log.exception("group commit of %d sends failed; one by one", len(batch))
                    for item in batch:  # one bad send must not fail the others
                        if not item.future.done():
                            await self._commit_alone(item)
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

    async def _commit_alone(self, item: _Pending) -> None:
        try:
            await self._commit([item])
        except Exception as exc:
            if not item.future.done():
                item.future.set_exception(
                    exc
                    if isinstance(exc, ApiError)
                    else ApiError(
                        "unavailable", "the message could not be stored, retry with the same id"
                    )
                )

    async def _commit(self, batch: list[_Pending]) -> None:
        events = [item.event for item in batch]
        started = time.perf_counter()
        result = await self._backend.commit(events, self._clock.now_ms())
        if self._on_batch is not None:
            self._on_batch(len(batch), time.perf_counter() - started)
        self.batches += 1
        self.committed += len(result.stored)
        self.largest_batch = max(self.largest_batch, len(batch))
        if result.stored:
            self._on_committed(result.stored)
        stored_now = dict(zip(result.fresh, result.stored, strict=True))
        first: dict[TxnKey, spine.StoredEvent] = {}
        for index, item in enumerate(batch):
            key = txn_key(item.event)
            if index in stored_now:
                outcome: SendOutcome | ApiError = SendOutcome(stored_now[index], duplicate=False)
                if key is not None:
                    first[key] = stored_now[index]
            else:
                assert key is not None  # only repeats of a txn id are not stored
                earlier = result.existing.get(key) or first[key]
                outcome = (
                    SendOutcome(earlier, duplicate=True)
                    if _same_send(earlier, item.event)
                    else conflict("client_txn_id was already used for another message")
                )
            if item.future.done():
                continue  # the caller went away; the send is stored and a retry will find it
            if isinstance(outcome, ApiError):
                item.future.set_exception(outcome)
            else:
                item.future.set_result(outcome)
