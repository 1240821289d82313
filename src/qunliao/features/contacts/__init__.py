"""The contacts feature. Other features use it through this module only."""

from qunliao.features.contacts.service import ContactService

__all__ = ["ContactService"]
