"""The event log's tables. Only `qunliao.storage.eventlog` touches them (import-linter).

`events` holds what every event has — its stream, its positions, its type, who appended it from
which device under which transaction id, the object it is about (`ref_id`), when — and the rest
as the event type's own JSON `payload`. A new event type needs no new column.
"""

from __future__ import annotations

from sqlalchemy import BigInteger, Column, Index, Integer, String, Table, Text

from qunliao.storage.db import metadata

stream_position = Table(
    "stream_position",
    metadata,
    Column("id", Integer, primary_key=True),
    Column("pos", BigInteger, nullable=False),
)

streams = Table(
    "streams",
    metadata,
    Column("stream_id", String(40), primary_key=True),
    Column("kind", String(16), nullable=False),
    Column("last_seq", BigInteger, nullable=False),
    Column("last_activity_at", BigInteger, nullable=False),
)

events = Table(
    "events",
    metadata,
    Column("pos", BigInteger, primary_key=True, autoincrement=False),
    Column("stream_id", String(40), nullable=False),
    Column("seq", BigInteger, nullable=False),
    Column("type", String(40), nullable=False),
    Column("sender_id", String(40), nullable=True),
    Column("device_id", String(40), nullable=True),
    Column("client_txn_id", String(128), nullable=True),
    Column("ref_id", String(40), nullable=True),
    Column("payload", Text, nullable=True),
    Column("sent_at", BigInteger, nullable=False),
    Column("redacted_at", BigInteger, nullable=True),
    Index("ux_events_stream_seq", "stream_id", "seq", unique=True),
    Index("ix_events_stream_pos", "stream_id", "pos"),
    Index("ux_events_txn", "client_txn_id", "device_id", unique=True),
    Index("ix_events_ref", "ref_id"),
)
