"""The event log: streams, positions, append and read. It knows no feature.

Features reach the log only through this package's functions (import-linter keeps its tables
private); what a stream is *for* — its event types, its audience — comes from the stream kinds
registered in `qunliao.core.streams`.
"""

from qunliao.storage.eventlog.append import INSERT_COLUMNS, AppendPlan, plan_append
from qunliao.storage.eventlog.batch import BatchResult, BatchWriter, TxnKey, batch_writer, txn_key
from qunliao.storage.eventlog.read import (
    at_seq,
    count_after,
    events_after,
    find,
    latest_of_type,
    max_position,
    read,
    stream_events,
    values_to_event,
)
from qunliao.storage.eventlog.write import (
    EventLog,
    StreamInfo,
    bump_positions,
    create_stream,
    lock_position,
    redact,
    set_payload,
    stream_info,
)

__all__ = [
    "INSERT_COLUMNS",
    "AppendPlan",
    "BatchResult",
    "BatchWriter",
    "EventLog",
    "StreamInfo",
    "TxnKey",
    "at_seq",
    "batch_writer",
    "bump_positions",
    "count_after",
    "create_stream",
    "events_after",
    "find",
    "latest_of_type",
    "lock_position",
    "max_position",
    "plan_append",
    "read",
    "redact",
    "set_payload",
    "stream_events",
    "stream_info",
    "txn_key",
    "values_to_event",
]
