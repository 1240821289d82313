"""The conversations feature. Other features use it through this module only."""

from qunliao.features.conversations.members import Member, ReadPositions
from qunliao.features.conversations.service import KIND, Access, ConversationService

__all__ = ["KIND", "Access", "ConversationService", "Member", "ReadPositions"]
