"""qunliao.sdk — the async Python client for qunliao servers (HTTP + WebSocket).

Self-contained on purpose (httpx, websockets, orjson only; no other qunliao module), so bots
and external programs can use it against any server. See docs/sdk.md.
"""

from qunliao.sdk._http import new_txn_id
from qunliao.sdk.client import Client
from qunliao.sdk.errors import QunliaoConnectionError, QunliaoError
from qunliao.sdk.models import RetryPolicy, SendResult, Session, SyncPage
from qunliao.sdk.websocket import WebSocketConnection

__all__ = [
    "Client",
    "QunliaoConnectionError",
    "QunliaoError",
    "RetryPolicy",
    "SendResult",
    "Session",
    "SyncPage",
    "WebSocketConnection",
    "new_txn_id",
]
