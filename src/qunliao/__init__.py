"""qunliao (群聊): a self-hostable messaging and community platform."""

__version__ = "0.1.0"
