"""A user's own export over HTTP: a background job in the process that writes a zip.

The state lives on disk, not in memory, so any worker answers for it: each user has one folder
under `export_dir`, holding their latest export as `<export_id>/`, with `running` (the start
time) while the job runs, `failed` if it failed, and `export.zip` when it is ready. A job whose
process died leaves a `running` older than STALE_AFTER_MS: that export counts as failed. Export
ids are random: an id reveals nothing, and one user's id finds nothing in another's folder.
"""

from __future__ import annotations

import asyncio
import logging
import re
import secrets
import shutil
import zipfile
from pathlib import Path
from typing import Any

from qunliao.core.clock import Clock
from qunliao.core.errors import not_found
from qunliao.core.principal import Principal
from qunliao.features.messages.export import Exporter

log = logging.getLogger("qunliao.export")
STALE_AFTER_MS = 3_600_000
EXPORT_ID = re.compile(r"x_[A-Za-z0-9_-]{20,40}")
ARCHIVE = "export.zip"


class ExportJobs:
    def __init__(self, exporter: Exporter, root: Path, clock: Clock) -> None:
        self._exporter = exporter
        self._clock = clock
        self._root = root
        self._tasks: set[asyncio.Task[None]] = set()

    async def do_start(self, caller: Principal) -> str:
        """Start an export of the caller's data; while one runs, its id instead."""
        folder = self._root / caller.user_id
        running = await asyncio.to_thread(_running_in, folder, self._clock.now_ms())
        if running is not None:
            return running
        export_id = "x_" + secrets.token_urlsafe(18)
        await asyncio.to_thread(_replace_previous, folder, export_id, self._clock.now_ms())
        task = asyncio.create_task(self._run(caller.user_id, folder / export_id))
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)
        return export_id

    async def _run(self, user_id: str, where: Path) -> None:
        try:
            scope = await self._exporter.user_scope_by_id(user_id)
            staging = where / "files"
            await self._exporter.write(scope, staging)
            await asyncio.to_thread(_zip, staging, where / ARCHIVE)
        except asyncio.CancelledError:
            await asyncio.to_thread(_mark_failed, where)
            raise
        except Exception:
            log.exception("the export of user %s failed", user_id)
            await asyncio.to_thread(_mark_failed, where)

    async def state(self, caller: Principal, export_id: str) -> dict[str, Any]:
        """`{"state": "running" | "ready" | "failed"}`; 404 unless it is the caller's."""
        where = self._folder(caller, export_id)
        found = await asyncio.to_thread(state_on_disk, where, self._clock.now_ms())
        if found is None:
            raise not_found(f"export {export_id} does not exist")
        return {"export_id": export_id, "state": found}

    async def archive(self, caller: Principal, export_id: str) -> Path:
        """The ready zip of one of the caller's exports; 404 otherwise."""
        where = self._folder(caller, export_id)
        if await asyncio.to_thread(state_on_disk, where, self._clock.now_ms()) != "ready":
            raise not_found(f"export {export_id} is not ready or does not exist")
        return where / ARCHIVE

    def _folder(self, caller: Principal, export_id: str) -> Path:
        if not EXPORT_ID.fullmatch(export_id):
            raise not_found(f"export {export_id} does not exist")
        return self._root / caller.user_id / export_id

    async def stop(self) -> None:
        """Cancel the jobs still running (they are marked failed)."""
        for task in list(self._tasks):
            task.cancel()
        await asyncio.gather(*self._tasks, return_exceptions=True)


def _running_in(folder: Path, now_ms: int) -> str | None:
    if not folder.is_dir():
        return None
    for export in folder.iterdir():
        if state_on_disk(export, now_ms) == "running":
            return export.name
    return None


def _replace_previous(folder: Path, export_id: str, now_ms: int) -> None:
    """Keep only the new export: a user's folder holds their latest one."""
    if folder.is_dir():
        for old in folder.iterdir():
            shutil.rmtree(old, ignore_errors=True)
    where = folder / export_id
    where.mkdir(parents=True)
    (where / "running").write_text(str(now_ms))


def state_on_disk(where: Path, now_ms: int) -> str | None:
    if (where / ARCHIVE).is_file():
        return "ready"
    if (where / "failed").exists():
        return "failed"
    try:
        started = int((where / "running").read_text())
    except (OSError, ValueError):
        return "failed" if where.is_dir() else None
    return "running" if now_ms - started < STALE_AFTER_MS else "failed"


def _zip(staging: Path, archive: Path) -> None:
    partial = archive.with_suffix(".part")
    with zipfile.ZipFile(partial, "w", compression=zipfile.ZIP_DEFLATED) as zipped:
        for path in sorted(staging.rglob("*")):
            if path.is_file():
                zipped.write(path, path.relative_to(staging).as_posix())
    partial.replace(archive)  # appears whole: a reader never sees half a zip
    shutil.rmtree(staging, ignore_errors=True)
    (archive.parent / "running").unlink(missing_ok=True)


def _mark_failed(where: Path) -> None:
    if where.is_dir():
        (where / "failed").touch()
        (where / "running").unlink(missing_ok=True)
