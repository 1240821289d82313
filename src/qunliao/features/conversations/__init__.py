"""The conversations feature. Other features use it through this module only."""

from functools import partial

from qunliao.features.accounts import AccountService
from qunliao.features.contacts import ContactService
from qunliao.features.conversations import api
from qunliao.features.conversations.members import Member, ReadPositions
from qunliao.features.conversations.service import KIND, Access, ConversationService
from qunliao.features.inbox import InboxService
from qunliao.features.wiring import Wiring


def install(wiring: Wiring) -> None:
    conversations = wiring.provide(
        ConversationService(
            wiring.db, wiring.clock, wiring.ids, wiring.need(AccountService),
            wiring.need(ContactService), wiring.need(InboxService), wiring.log,
            wiring.on_committed,
            max_group_members=wiring.settings.max_group_members,
        )
    )  # fmt: skip
    conversations.register(wiring.registry)
    wiring.routers.append(partial(api.router, conversations))
    wiring.routers.append(partial(api.invitations_router, conversations))


__all__ = ["KIND", "Access", "ConversationService", "Member", "ReadPositions", "install"]
