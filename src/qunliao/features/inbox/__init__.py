"""Every user's inbox: a stream for events addressed to that user alone (friend requests,
group invitations).

Other features use it through this module only.
"""

from qunliao.features.inbox.service import KIND, InboxService
from qunliao.features.wiring import Wiring


def install(wiring: Wiring) -> None:
    inbox = wiring.provide(InboxService(wiring.clock, wiring.log, wiring.on_committed))
    wiring.registry.add_kind(inbox.stream_kind())


__all__ = ["KIND", "InboxService", "install"]
