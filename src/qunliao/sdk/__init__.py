"""`qunliao.sdk` is the SDK distribution `qunliao-sdk` (import name `qunliao_sdk`, in sdk/ of
this repository) under the server package's name, so `from qunliao.sdk import Client` keeps
working wherever the server is installed: the same module objects, nothing copied."""

from qunliao_sdk import *  # noqa: F403 — the whole public surface, by definition
from qunliao_sdk import __all__ as __all__
from qunliao_sdk import __version__ as __version__
