"""The event log knows no feature: message columns move into each event's JSON payload.

`events` keeps what every event has (stream, positions, type, sender, device, txn id, when) plus
`ref_id` (the object an event is about; was `message_id`), `payload` (the type's own JSON; was
`data` and, for messages, `msg_type`, `body`, `reply_to`, `mentions`, `edited_at`) and
`redacted_at` (content erased; was `recalled_at`). `streams` loses `last_message_seq` (the
messages feature finds a conversation's last message itself), and inboxes lose their membership
rows (an inbox's audience is its owner, known from its id).

The table is rebuilt (copy, drop, rename) on both databases: a rewrite of every row either way.

Revision ID: 0004
Revises: 0003
"""

import sqlalchemy as sa
from alembic import op

revision = "0004"
down_revision = "0003"
branch_labels = None
depends_on = None

S = sa.String
B = sa.BigInteger

# Absent keys are left out, as new events leave them out (SQLite: a JSON merge patch drops the
# keys whose value is null; PostgreSQL: json_strip_nulls).
_PAYLOAD = {
    "sqlite": (
        "CASE type "
        "WHEN 'message' THEN json_patch('{}', json_object('msg_type', msg_type, "
        "'body', json(body), 'reply_to', reply_to, 'mentions', json(mentions), "
        "'edited_at', edited_at)) "
        "WHEN 'message.edited' THEN json_patch('{}', json_object('body', json(body))) "
        "ELSE data END"
    ),
    "postgresql": (
        "CASE type "
        "WHEN 'message' THEN json_strip_nulls(json_build_object('msg_type', msg_type, "
        "'body', body::json, 'reply_to', reply_to, 'mentions', mentions::json, "
        "'edited_at', edited_at))::text "
        "WHEN 'message.edited' THEN json_strip_nulls(json_build_object('body', body::json))::text "
        "ELSE data END"
    ),
}


def upgrade() -> None:
    dialect = op.get_bind().dialect.name
    if dialect == "postgresql":
        # Writers of the old version that are still up wait here and then fail on the new
        # schema, unacknowledged: without the lock, what they committed during the copy would
        # be dropped with the old table. The order is theirs (position, streams, events).
        op.execute("LOCK TABLE stream_position, streams, events IN ACCESS EXCLUSIVE MODE")
    # A data change first: on SQLite it opens the transaction that the DDL below then joins (a
    # CREATE TABLE with none open commits by itself, and a failure later would leave it).
    op.execute(
        "DELETE FROM stream_members WHERE stream_id IN "
        "(SELECT stream_id FROM streams WHERE kind = 'inbox')"
    )
    op.execute("DROP TABLE IF EXISTS events_new")  # in case an interrupted copy left one
    op.create_table(
        "events_new",
        sa.Column("pos", B, primary_key=True, autoincrement=False),
        sa.Column("stream_id", S(40), nullable=False),
        sa.Column("seq", B, nullable=False),
        sa.Column("type", S(40), nullable=False),
        sa.Column("sender_id", S(40)),
        sa.Column("device_id", S(40)),
        sa.Column("client_txn_id", S(128)),
        sa.Column("ref_id", S(40)),
        sa.Column("payload", sa.Text),
        sa.Column("sent_at", B, nullable=False),
        sa.Column("redacted_at", B),
    )
    op.execute(
        "INSERT INTO events_new (pos, stream_id, seq, type, sender_id, device_id, client_txn_id, "
        "ref_id, payload, sent_at, redacted_at) "
        "SELECT pos, stream_id, seq, type, sender_id, device_id, client_txn_id, message_id, "
        f"{_PAYLOAD[dialect]}, sent_at, recalled_at FROM events"
    )
    op.drop_table("events")
    op.rename_table("events_new", "events")
    op.create_index("ux_events_stream_seq", "events", ["stream_id", "seq"], unique=True)
    op.create_index("ix_events_stream_pos", "events", ["stream_id", "pos"])
    op.create_index("ux_events_txn", "events", ["client_txn_id", "device_id"], unique=True)
    op.create_index("ix_events_ref", "events", ["ref_id"])
    with op.batch_alter_table("streams") as batch:
        batch.drop_column("last_message_seq")


def downgrade() -> None:
    raise NotImplementedError("0004 rewrites every event; restore a backup to go back")
