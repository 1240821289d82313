"""The accounts feature. Other features use it through this module only."""

from qunliao.features.accounts.service import AccountService

__all__ = ["AccountService"]
