"""Password hashing is the one CPU-heavy thing a stranger can ask for: it runs one at a time
per process, on one core, and a flood past the queue gets 429 at once (issue 14, item 4)."""

from __future__ import annotations

import asyncio
import threading
import time
from typing import Any

import pytest

from qunliao.core.clock import SystemClock
from qunliao.core.errors import ApiError
from qunliao.core.ids import IdGenerator
from qunliao.features.accounts import service as accounts_service
from qunliao.features.accounts.service import AccountService


def make_service() -> AccountService:
    return AccountService(None, SystemClock(), IdGenerator(), lambda _ids: None)  # type: ignore[arg-type]


async def test_hashes_run_one_at_a_time() -> None:
    service = make_service()
    running = 0
    most = 0
    lock = threading.Lock()

    def work(_password: str) -> str:
        nonlocal running, most
        with lock:
            running += 1
            most = max(most, running)
        time.sleep(0.02)
        with lock:
            running -= 1
        return "hash"

    results = await asyncio.gather(*(service._hash_work(work, "pw") for _ in range(8)))
    assert results == ["hash"] * 8 and most == 1


async def test_past_the_queue_a_login_is_429_at_once(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(accounts_service, "HASH_QUEUE", 3)
    service = make_service()
    release = threading.Event()

    def work(_password: str) -> str:
        release.wait(5)
        return "hash"

    waiting = [asyncio.ensure_future(service._hash_work(work, "pw")) for _ in range(3)]
    await asyncio.sleep(0.05)
    with pytest.raises(ApiError) as refused:
        await service._hash_work(work, "pw")
    assert refused.value.code == "rate_limited"
    release.set()
    assert await asyncio.gather(*waiting) == ["hash"] * 3


def test_new_hashes_use_one_lane() -> None:
    service = make_service()
    hashed: Any = service._hasher.hash("correct horse 正确的马")
    assert ",p=1$" in hashed
