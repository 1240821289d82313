"""Every user's inbox: a stream for events addressed to that user alone (friend requests).

Other features use it through this module only.
"""

from qunliao.features.inbox.service import KIND, InboxService

__all__ = ["KIND", "InboxService"]
