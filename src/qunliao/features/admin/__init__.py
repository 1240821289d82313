"""The admin feature: server admins manage accounts, and every admin action is audited.

Other features use it through this module only. `admin_dependency(service, auth)` is the
FastAPI dependency for routes only server admins may call (e.g. invites); `AdminService`
(`wiring.need(AdminService)`) checks admins (`access_admin`) and records audit entries.
"""

from functools import partial

from qunliao.features.accounts import AccountService
from qunliao.features.admin import api
from qunliao.features.admin.api import admin_dependency
from qunliao.features.admin.service import AdminService
from qunliao.features.wiring import Wiring


def install(wiring: Wiring) -> None:
    admin = wiring.provide(AdminService(wiring.db, wiring.clock, wiring.need(AccountService)))
    wiring.routers.append(partial(api.router, admin))


__all__ = ["AdminService", "admin_dependency", "install"]
