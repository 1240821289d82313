"""What app.py hands a feature when it installs it, and what the feature hands back.

Each feature package has `install(wiring)`: it builds its service from what the wiring holds (the
database, the clock, the event log, the registry, the services of features installed before it),
registers its stream kinds, event types and WebSocket frames, and adds its HTTP routes,
middleware and start/stop steps. app.py lists the features in order, one line each; nothing
else names them. The wiring is used while the app is built, never reached at run time.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass, field
from typing import Any, TypeVar

from argon2 import PasswordHasher
from fastapi import APIRouter

from qunliao.core.clock import Clock
from qunliao.core.errors import ApiError
from qunliao.core.events import StoredEvent
from qunliao.core.http import AuthDependency
from qunliao.core.ids import IdGenerator
from qunliao.core.principal import Principal
from qunliao.core.ratelimit import RateLimiter
from qunliao.core.streams import Registry
from qunliao.metrics import Metrics
from qunliao.realtime.hub import Hub
from qunliao.settings import Settings
from qunliao.storage.db import Database
from qunliao.storage.eventlog import EventLog

T = TypeVar("T")
Step = Callable[[], Awaitable[None] | None]
ErrorAnswer = Callable[[ApiError], Awaitable[tuple[int, bytes, list[tuple[bytes, bytes]]]]]


@dataclass
class Wiring:
    settings: Settings
    db: Database
    clock: Clock
    ids: IdGenerator
    metrics: Metrics
    registry: Registry
    log: EventLog
    hub: Hub
    limiter: RateLimiter
    error_answer: ErrorAnswer  # how the app renders an ApiError (for middleware)
    password_hasher: PasswordHasher | None = None
    # What features add: routers made with the app's auth dependency, ASGI middleware (class,
    # options; the last added runs first), steps run at start (in order) and stop (reversed).
    routers: list[Callable[[AuthDependency], APIRouter]] = field(default_factory=list)
    middleware: list[tuple[Any, dict[str, Any]]] = field(default_factory=list)
    starts: list[Step] = field(default_factory=list)
    # (method, path) of writes whose answers hold secrets: never stored for replay.
    secret_answers: set[tuple[str, str]] = field(default_factory=set)
    stops: list[Step] = field(default_factory=list)
    # What the app's core needs from some feature: who holds a token (HTTP and WebSocket), and
    # a user's events after a position (the WebSocket's catch-up).
    access_token: Callable[[str | None], Awaitable[Principal]] | None = None
    authenticate: Callable[[str], Awaitable[Principal | None]] | None = None
    catch_up: Callable[[str, int, int], Awaitable[tuple[list[StoredEvent], int]]] | None = None
    _services: dict[type, Any] = field(default_factory=dict)

    def on_committed(self, events: Sequence[StoredEvent]) -> None:
        """Hand events committed in this process to the hub (call after the commit)."""
        self.hub.committed(events)

    def provide(self, service: T) -> T:
        """Offer a feature's service to the features installed after it."""
        self._services[type(service)] = service
        return service

    def need(self, kind: type[T]) -> T:
        """The service of a feature installed earlier."""
        try:
            found: T = self._services[kind]
        except KeyError:
            raise LookupError(
                f"{kind.__name__} is not installed yet: list its feature earlier in app.FEATURES"
            ) from None
        return found
