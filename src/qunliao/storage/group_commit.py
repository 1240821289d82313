"""Group commit for the hot send path: concurrent sends share one transaction (one fsync).

There is no fixed wait before flushing: the writer takes whatever has queued up while the last
transaction was committing, so a lone send commits at once and a burst shares a commit.
"""

from __future__ import annotations

import asyncio
import logging
import sqlite3
import time
from collections.abc import Callable
from dataclasses import dataclass
from functools import partial

import asyncpg

from qunliao.core.clock import Clock
from qunliao.core.errors import ApiError, bad_request, conflict
from qunliao.core.events import NewEvent, StoredEvent
from qunliao.storage.db import Database
from qunliao.storage.eventlog import BatchWriter, TxnKey, batch_writer, txn_key
from qunliao.storage.eventlog.append import Hooks

log = logging.getLogger(__name__)


@dataclass
class SendOutcome:
    event: StoredEvent
    duplicate: bool


# Called once per send, from the writer task, with the outcome or the error. Callbacks instead
# of futures on the hot path: no future, done-callback and loop handle per message.
Reply = Callable[[SendOutcome | BaseException], None]


@dataclass(slots=True)
class _Pending:
    event: NewEvent
    reply: Reply
    answered: bool = False

    def answer(self, result: SendOutcome | BaseException) -> None:
        if self.answered:
            return
        self.answered = True
        try:
            self.reply(result)
        except Exception:
            log.exception("a send's reply failed")


def _settle(future: asyncio.Future[SendOutcome], result: SendOutcome | BaseException) -> None:
    if future.done():
        return  # the caller went away; the send is stored and a retry will find it
    if isinstance(result, BaseException):
        future.set_exception(result)
    else:
        future.set_result(result)


# Whether a repeated (device, client_txn_id) repeats the stored send (else: 409 conflict).
SameSend = Callable[[StoredEvent, NewEvent], bool]


def same_stream(stored: StoredEvent, new: NewEvent) -> bool:
    return stored.stream_id == new.stream_id


def _as_api_error(exc: Exception) -> ApiError:
    if isinstance(exc, ApiError):
        return exc
    if isinstance(exc, asyncpg.DataError | sqlite3.DataError):
        # A value the database refuses is the send's fault: a retry would fail the same way.
        return bad_request("the message holds a value that cannot be stored")
    return ApiError("unavailable", "the message could not be stored, retry with the same id")


class GroupCommit:
    def __init__(
        self,
        db: Database,
        clock: Clock,
        on_committed: Callable[[list[StoredEvent]], None],
        *,
        hooks: Hooks | None = None,
        same_send: SameSend = same_stream,
        max_batch: int = 2000,
        on_batch: Callable[[int, float], None] | None = None,
    ) -> None:
        self._db = db
        self._clock = clock
        self._on_committed = on_committed
        self._same_send = same_send
        self._max_batch = max_batch
        self._backend: BatchWriter = batch_writer(db, {} if hooks is None else hooks)
        self._on_batch = on_batch
        self._pending: list[_Pending] = []
        self._wake: asyncio.Future[None] | None = None  # set while the writer waits for sends
        self._drained = asyncio.Event()  # nothing queued and no batch committing
        self._drained.set()
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
        await self._drained.wait()
        self._task.cancel()
        try:
            await self._task
        except asyncio.CancelledError:
            pass
        self._task = None

    async def submit(self, event: NewEvent) -> SendOutcome:
        """Queue a send and wait for its batch to commit."""
        future: asyncio.Future[SendOutcome] = asyncio.get_running_loop().create_future()
        self.submit_nowait(event, partial(_settle, future))
        return await future

    def submit_nowait(self, event: NewEvent, reply: Reply) -> None:
        """Queue a send; `reply` gets its outcome (or error) after its batch commits."""
        if self._task is None:
            raise ApiError("unavailable", "the server is shutting down")
        self._pending.append(_Pending(event, reply))
        self._drained.clear()
        wake = self._wake
        if wake is not None:
            self._wake = None
            if not wake.done():
                wake.set_result(None)

    async def _run(self) -> None:
        while True:
            if not self._pending:
                self._drained.set()
                self._wake = asyncio.get_running_loop().create_future()
                await self._wake
            batch = self._pending[: self._max_batch]
            del self._pending[: self._max_batch]
            try:
                try:
                    await self._commit(batch)
                except Exception:
                    if len(batch) == 1:
                        raise
                    log.exception("group commit of %d sends failed; one by one", len(batch))
                    for item in batch:  # one bad send must not fail the others
                        if not item.answered:
                            await self._commit_alone(item)
            except Exception as exc:
                log.exception("group commit of %d sends failed", len(batch))
                error = _as_api_error(exc)
                for item in batch:
                    item.answer(error)

    async def _commit_alone(self, item: _Pending) -> None:
        try:
            await self._commit([item])
        except Exception as exc:
            item.answer(_as_api_error(exc))

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
        first: dict[TxnKey, StoredEvent] = {}
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
                    if self._same_send(earlier, item.event)
                    else conflict("client_txn_id was already used for another write")
                )
            item.answer(outcome)
