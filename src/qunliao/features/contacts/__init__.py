"""The contacts feature. Other features use it through this module only."""

from functools import partial

from qunliao.features.accounts import AccountService
from qunliao.features.contacts import api
from qunliao.features.contacts.service import ContactService
from qunliao.features.inbox import InboxService
from qunliao.features.wiring import Wiring


def install(wiring: Wiring) -> None:
    contacts = wiring.provide(
        ContactService(wiring.db, wiring.clock, wiring.ids, wiring.need(AccountService),
                       wiring.need(InboxService))
    )  # fmt: skip
    contacts.register(wiring.registry)
    wiring.routers.append(partial(api.router, contacts))


__all__ = ["ContactService", "install"]
