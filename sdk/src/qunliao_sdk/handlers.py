"""The handler style of `Client`: `@client.on(MessageEvent)` registrations, their dispatch,
and the background tasks a bot starts (timers) that the client owns and cancels on close."""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Awaitable, Callable, Coroutine
from dataclasses import dataclass
from typing import Any, TypeVar

from qunliao_sdk.events import Event, Message, MessageEdited

logger = logging.getLogger("qunliao_sdk")

E = TypeVar("E", bound=Event)
T = TypeVar("T")

Handler = Callable[[E], Awaitable[object]]


def is_own(event: Event, user_id: str | None) -> bool:
    """A message (or an edit of one) this bot's own account sent, on this or another device.

    The server does not say which device sent a message, so the account is what counts: a bot
    that ran on two devices would otherwise answer itself from one to the other."""
    if user_id is None or not isinstance(event, Message | MessageEdited):
        return False
    return event.sender_id == user_id


@dataclass(frozen=True)
class _Registration:
    types: tuple[type[Event], ...]
    include_own: bool
    handler: Callable[[Any], Awaitable[object]]


class Dispatcher:
    """The handlers of one client, in registration order, and the tasks it owns."""

    def __init__(self) -> None:
        self._registrations: list[_Registration] = []
        self._tasks: set[asyncio.Task[Any]] = set()

    @staticmethod
    def check_types(types: tuple[object, ...]) -> None:
        for kind in types:
            if not (isinstance(kind, type) and issubclass(kind, Event)):
                raise TypeError(f"on() takes event classes (MessageEvent, Event, …), not {kind!r}")

    def add(
        self, types: tuple[type[Event], ...], handler: Handler[E], *, include_own: bool
    ) -> None:
        self.check_types(types)
        self._registrations.append(_Registration(types, include_own, handler))

    async def dispatch(self, event: Event, user_id: str | None) -> int:
        """Run every handler that wants `event`, one after the other; returns how many ran.

        A handler that raises is logged and the others still run: one bad message must not
        stop a bot."""
        ran = 0
        own = is_own(event, user_id)
        for registration in self._registrations:
            if not isinstance(event, registration.types) or (own and not registration.include_own):
                continue
            ran += 1
            try:
                await registration.handler(event)
            except Exception:
                logger.exception(
                    "qunliao: handler %s failed on a %s event",
                    getattr(registration.handler, "__qualname__", registration.handler),
                    type(event).__name__,
                )
        return ran

    def spawn(self, coroutine: Coroutine[Any, Any, T], name: str | None = None) -> asyncio.Task[T]:
        task = asyncio.get_running_loop().create_task(coroutine, name=name)
        self._tasks.add(task)
        task.add_done_callback(self._task_done)
        return task

    def _task_done(self, task: asyncio.Task[Any]) -> None:
        self._tasks.discard(task)
        if not task.cancelled() and task.exception() is not None:
            logger.error("qunliao: task %s failed", task.get_name(), exc_info=task.exception())

    @property
    def tasks(self) -> frozenset[asyncio.Task[Any]]:
        return frozenset(self._tasks)

    async def cancel_tasks(self) -> None:
        tasks = [task for task in self._tasks if task is not asyncio.current_task()]
        for task in tasks:
            task.cancel()
        if tasks:
            await asyncio.wait(tasks, timeout=5.0)
