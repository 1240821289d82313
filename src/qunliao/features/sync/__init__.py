"""The sync feature: installed by app.py, used by no other feature."""

from functools import partial

from qunliao.features.sync import api
from qunliao.features.sync.service import SyncService
from qunliao.features.wiring import Wiring


def install(wiring: Wiring) -> None:
    sync = wiring.provide(
        SyncService(wiring.db, wiring.hub, wiring.registry,
                    observe=wiring.metrics.sync_seconds.observe)
    )  # fmt: skip
    wiring.catch_up = sync.events_for_user
    wiring.routers.append(partial(api.router, sync))


__all__ = ["install"]
