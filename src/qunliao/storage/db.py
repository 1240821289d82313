"""Engines and transactions. One writer connection per SQLite file; a pool for PostgreSQL."""

from __future__ import annotations

import asyncio
import logging
import sqlite3
from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any

import asyncpg
from sqlalchemy import MetaData, event
from sqlalchemy.exc import DataError, DBAPIError, OperationalError
from sqlalchemy.ext.asyncio import AsyncConnection, AsyncEngine, create_async_engine

from qunliao.core.errors import ApiError, bad_request

log = logging.getLogger(__name__)

metadata = MetaData()
CHECKPOINT_INTERVAL_S = 0.25
CHECKPOINT_PASSES = 4  # beside the writer, before the one that holds writes
CHECKPOINT_TAIL_FRAMES = 500  # left for that one: it copies what the last pass did not

AfterCommit = Callable[[], Awaitable[None] | None]


def async_url(url: str) -> str:
    """`sqlite:///x.db` → `sqlite+aiosqlite:///x.db`; `postgresql://…` → `postgresql+asyncpg://…`."""
    if url.startswith("sqlite:///"):
        return "sqlite+aiosqlite:///" + url[len("sqlite:///") :]
    if url.startswith("postgres://"):
        url = "postgresql://" + url[len("postgres://") :]
    if url.startswith("postgresql://"):
        return "postgresql+asyncpg://" + url[len("postgresql://") :]
    raise ValueError(f"unsupported database url {url!r}")


def sync_url(url: str) -> str:
    """The URL alembic runs migrations with (through the async driver as well)."""
    return async_url(url)


def sqlite_path(url: str) -> Path | None:
    if url.startswith("sqlite:///"):
        return Path(url[len("sqlite:///") :])
    return None


class Tx:
    """An open write transaction; `on_commit` callbacks run only after it commits."""

    def __init__(self, conn: AsyncConnection) -> None:
        self.conn = conn
        self._after: list[AfterCommit] = []

    def on_commit(self, callback: AfterCommit) -> None:
        self._after.append(callback)


class Database:
    def __init__(self, url: str, *, sqlite_synchronous: str = "NORMAL") -> None:
        self.url = url
        self.dialect = "sqlite" if url.startswith("sqlite") else "postgresql"
        self._sqlite_synchronous = sqlite_synchronous
        self.write_engine: AsyncEngine
        self.read_engine: AsyncEngine
        self._started = False
        self._checkpointer: asyncio.Task[None] | None = None
        # SQLite: the one write connection, opened at start and kept; the lock queues writers.
        # PostgreSQL: the group-commit batch's own connection, kept between batches.
        self._held: AsyncConnection | None = None
        self._held_driver: Any = None  # its aiosqlite / asyncpg connection
        self._write_lock = asyncio.Lock()

    @property
    def is_sqlite(self) -> bool:
        return self.dialect == "sqlite"

    async def start(self) -> None:
        if self._started:
            return
        if self.is_sqlite:
            path = sqlite_path(self.url)
            if path is not None and path.parent != Path(""):
                path.parent.mkdir(parents=True, exist_ok=True)
            # One writer connection: SQLite allows one writer at a time anyway, and a single
            # connection makes every write transaction queue in-process instead of on a lock.
            # It is held, not pooled: a checkout and its reset (a rollback) per transaction cost
            # more than a one-message commit batch.
            self.write_engine = create_async_engine(
                async_url(self.url), pool_size=1, max_overflow=0, pool_timeout=30
            )
            self.read_engine = create_async_engine(
                async_url(self.url), pool_size=4, max_overflow=4, pool_timeout=30
            )
            for engine in (self.write_engine, self.read_engine):
                event.listen(engine.sync_engine, "connect", self._sqlite_pragmas)
            if path is not None:
                self._checkpointer = asyncio.create_task(self._checkpoints())
        else:
            self.write_engine = create_async_engine(
                async_url(self.url), pool_size=8, max_overflow=8, pool_pre_ping=True
            )
            self.read_engine = self.write_engine
        self._started = True

    def _sqlite_pragmas(self, dbapi_conn: Any, _record: Any) -> None:
        cursor = dbapi_conn.cursor()
        cursor.execute("PRAGMA journal_mode=WAL")
        cursor.execute(f"PRAGMA synchronous={self._sqlite_synchronous}")
        cursor.execute("PRAGMA busy_timeout=10000")
        cursor.execute("PRAGMA foreign_keys=ON")
        # Checkpoints run beside the writer (see _checkpoints), not inside its commits.
        cursor.execute("PRAGMA wal_autocheckpoint=0")
        cursor.close()

    async def _checkpoints(self) -> None:
        while True:
            await asyncio.sleep(CHECKPOINT_INTERVAL_S)
            try:
                await self.checkpoint()
            except sqlite3.Error as exc:
                log.debug("checkpoint skipped: %s", exc)
            except Exception:  # never let the WAL grow unchecked because of one bad round
                log.exception("checkpoint failed")

    async def checkpoint(self) -> None:
        """Copy the WAL back into the database file so that the next write starts it over.

        Passes beside the writer copy the bulk without blocking it, each one what was appended
        during the last, until little is left; then one pass on the write connection, with
        writes held for its moment (a few ms), copies the rest. Only a checkpoint that
        completes lets the next write start the WAL over: under steady writes the passes
        beside the writer never do, and the WAL grew without bound (1 GB in a minute at 11k
        msg/s, each write extending the file; a quarter of the CPU went to zeroing new pages).
        SQLite's automatic checkpoint would run all of this inside the commit that crossed
        1000 pages, before its acks.
        """
        path = sqlite_path(self.url)
        if path is None:
            return  # in memory: no WAL
        copied = 0
        for _ in range(CHECKPOINT_PASSES):
            before, copied = copied, await asyncio.to_thread(_checkpoint_beside, path)
            if copied - before <= CHECKPOINT_TAIL_FRAMES:
                break
        async with self._write_lock:
            await self._hold()
            await self._held_driver._execute(_checkpoint, self._held_driver._conn)

    async def close(self) -> None:
        if not self._started:
            return
        if self._checkpointer is not None:
            self._checkpointer.cancel()
            self._checkpointer = None
        await self._drop_held()
        await self.write_engine.dispose()
        if self.read_engine is not self.write_engine:
            await self.read_engine.dispose()
        self._started = False

    @asynccontextmanager
    async def _write_connection(self) -> AsyncIterator[AsyncConnection]:
        if not self.is_sqlite:
            async with self.write_engine.connect() as conn:
                yield conn
            return
        async with self._kept(drop_on_error=False) as held:
            yield held

    @asynccontextmanager
    async def _kept(self, *, drop_on_error: bool) -> AsyncIterator[AsyncConnection]:
        """The kept connection, under the write lock. Given up when it broke, or on any error
        with `drop_on_error` (the batch cannot tell a broken connection from a failed batch)."""
        async with self._write_lock:
            held = await self._hold()
            try:
                yield held
            except BaseException:
                if drop_on_error or held.invalidated:
                    await self._drop_held(broken=True)
                raise

    async def _hold(self) -> AsyncConnection:
        if self._held is None:
            held = await self.write_engine.connect()
            self._held_driver = (await held.get_raw_connection()).driver_connection
            self._held = held
        return self._held

    async def _drop_held(self, *, broken: bool = False) -> None:
        """Give the kept connection up: back to the pool, or (after an error) discarded."""
        held, self._held, self._held_driver = self._held, None, None
        if held is None:
            return
        try:
            if broken:
                await held.invalidate()
            await held.close()
        except Exception as exc:  # already broken: nothing to give back
            log.debug("closing a broken connection: %s", exc)

    @asynccontextmanager
    async def batch_connection(self) -> AsyncIterator[Any]:
        """The driver connection (aiosqlite or asyncpg) for one group-commit batch.

        Kept between batches rather than checked out of the pool (and pinged and rolled back
        on return) for each. On an error it is given up, and the next batch opens a new one.
        The batch runs its own transaction on it.
        """
        async with self._kept(drop_on_error=True):  # PostgreSQL: one batch at a time
            yield self._held_driver

    @asynccontextmanager
    async def write(self) -> AsyncIterator[Tx]:
        """A write transaction; commits on exit, rolls back on error, then runs on_commit hooks."""
        try:
            async with self._write_connection() as conn:
                tx = Tx(conn)
                async with conn.begin():
                    yield tx
        except (DataError, asyncpg.DataError) as exc:
            raise _bad_data(exc) from exc
        except (OperationalError, DBAPIError) as exc:
            if (
                isinstance(exc, DBAPIError)
                and not exc.connection_invalidated
                and not _is_outage(exc)
            ):
                raise
            log.warning("database unavailable: %s", exc)
            raise ApiError("unavailable", "the database is unavailable, try again") from exc
        for callback in tx._after:
            result = callback()
            if asyncio.iscoroutine(result):
                await result

    @asynccontextmanager
    async def read(self) -> AsyncIterator[AsyncConnection]:
        try:
            async with self.read_engine.connect() as conn:
                yield conn
        except (DataError, asyncpg.DataError) as exc:
            raise _bad_data(exc) from exc
        except OperationalError as exc:
            log.warning("database unavailable: %s", exc)
            raise ApiError("unavailable", "the database is unavailable, try again") from exc

    async def ping(self) -> bool:
        from sqlalchemy import text

        try:
            async with self.read() as conn:
                await conn.execute(text("SELECT 1"))
            return True
        except Exception:  # any failure means "not ready"
            return False


def _checkpoint(conn: sqlite3.Connection) -> int:
    """A passive checkpoint; the WAL frames it copied (all there were when it began)."""
    busy, _frames, copied = conn.execute("PRAGMA wal_checkpoint(PASSIVE)").fetchone()
    return 0 if busy else int(copied)


def _checkpoint_beside(path: Path) -> int:
    """The same on a connection of its own, beside the writer."""
    conn = sqlite3.connect(path, timeout=1)
    try:
        return _checkpoint(conn)
    finally:
        conn.close()


def _bad_data(exc: Exception) -> ApiError:
    """A value the database refuses (a NUL in text on PostgreSQL, a number out of range): the
    request's fault, answered 400 and nothing written."""
    log.info("database refused a value: %s", exc)
    return bad_request("a value in the request cannot be stored (invalid characters or range)")


def _is_outage(exc: DBAPIError) -> bool:
    text = str(exc.orig).lower() if exc.orig is not None else ""
    return any(s in text for s in ("connection", "database is locked", "closed", "terminat"))


def row_dict(row: Any) -> dict[str, Any]:
    """A row as a plain dict (SQLAlchemy's key type is a str subclass orjson refuses)."""
    return {str(key): value for key, value in row._mapping.items()}
