"""The IM core schema: accounts, devices, contacts, conversations and the event spine.

Revision ID: 0001
Revises:
"""

import sqlalchemy as sa
from alembic import op

revision = "0001"
down_revision = None
branch_labels = None
depends_on = None

S = sa.String
B = sa.BigInteger


def upgrade() -> None:
    op.create_table(
        "stream_position",
        sa.Column("id", sa.Integer, primary_key=True),
        sa.Column("pos", B, nullable=False),
    )
    op.execute("INSERT INTO stream_position (id, pos) VALUES (1, 0)")
    op.create_table(
        "streams",
        sa.Column("stream_id", S(40), primary_key=True),
        sa.Column("kind", S(16), nullable=False),
        sa.Column("last_seq", B, nullable=False),
        sa.Column("last_message_seq", B),
        sa.Column("last_activity_at", B, nullable=False),
    )
    op.create_table(
        "stream_members",
        sa.Column("stream_id", S(40), primary_key=True),
        sa.Column("user_id", S(40), primary_key=True),
        sa.Column("role", S(16), nullable=False),
        sa.Column("joined_seq", B, nullable=False),
        sa.Column("left_seq", B),
        sa.Column("read_seq", B, nullable=False),
        sa.Column("muted_until", B),
        sa.Column("joined_at", B, nullable=False),
    )
    op.create_index("ix_stream_members_user", "stream_members", ["user_id", "stream_id"])
    op.create_table(
        "events",
        sa.Column("pos", B, primary_key=True, autoincrement=False),
        sa.Column("stream_id", S(40), nullable=False),
        sa.Column("seq", B, nullable=False),
        sa.Column("type", S(40), nullable=False),
        sa.Column("sender_id", S(40)),
        sa.Column("device_id", S(40)),
        sa.Column("client_txn_id", S(128)),
        sa.Column("message_id", S(40)),
        sa.Column("msg_type", S(16)),
        sa.Column("body", sa.Text),
        sa.Column("reply_to", S(40)),
        sa.Column("mentions", sa.Text),
        sa.Column("sent_at", B, nullable=False),
        sa.Column("edited_at", B),
        sa.Column("recalled_at", B),
        sa.Column("data", sa.Text),
    )
    op.create_index("ux_events_stream_seq", "events", ["stream_id", "seq"], unique=True)
    op.create_index("ix_events_stream_pos", "events", ["stream_id", "pos"])
    op.create_index("ux_events_txn", "events", ["device_id", "client_txn_id"], unique=True)
    op.create_index("ix_events_message", "events", ["message_id"])

    op.create_table(
        "users",
        sa.Column("user_id", S(40), primary_key=True),
        sa.Column("username", S(32), nullable=False, unique=True),
        sa.Column("password_hash", S(200), nullable=False),
        sa.Column("display_name", S(64), nullable=False),
        sa.Column("inbox_id", S(40), nullable=False),
        sa.Column("created_at", B, nullable=False),
    )
    op.create_table(
        "devices",
        sa.Column("device_id", S(40), primary_key=True),
        sa.Column("user_id", S(40), nullable=False),
        sa.Column("device_name", S(64), nullable=False),
        sa.Column("token_hash", S(64), nullable=False, unique=True),
        sa.Column("created_at", B, nullable=False),
        sa.Column("last_seen_at", B, nullable=False),
        sa.Column("revoked_at", B),
    )
    op.create_index("ix_devices_user", "devices", ["user_id"])
    op.create_table(
        "friend_requests",
        sa.Column("request_id", S(40), primary_key=True),
        sa.Column("from_user_id", S(40), nullable=False),
        sa.Column("to_user_id", S(40), nullable=False),
        sa.Column("note", S(200), nullable=False),
        sa.Column("status", S(16), nullable=False),
        sa.Column("created_at", B, nullable=False),
        sa.Column("updated_at", B, nullable=False),
    )
    op.create_index("ix_friend_requests_to", "friend_requests", ["to_user_id", "status"])
    op.create_index("ix_friend_requests_from", "friend_requests", ["from_user_id", "status"])
    op.create_table(
        "contacts",
        sa.Column("user_id", S(40), primary_key=True),
        sa.Column("contact_id", S(40), primary_key=True),
        sa.Column("remark", S(64), nullable=False),
        sa.Column("since", B, nullable=False),
    )
    op.create_table(
        "blocks",
        sa.Column("user_id", S(40), primary_key=True),
        sa.Column("blocked_id", S(40), primary_key=True),
        sa.Column("created_at", B, nullable=False),
    )
    op.create_index("ix_blocks_blocked", "blocks", ["blocked_id"])
    op.create_table(
        "conversations",
        sa.Column("conversation_id", S(40), primary_key=True),
        sa.Column("kind", S(16), nullable=False),
        sa.Column("title", S(64)),
        sa.Column("announcement", sa.Text),
        sa.Column("owner_id", S(40)),
        sa.Column("direct_key", S(90), unique=True),
        sa.Column("muted_all", sa.Boolean, nullable=False),
        sa.Column("created_by", S(40), nullable=False),
        sa.Column("created_at", B, nullable=False),
    )


def downgrade() -> None:
    for table in (
        "conversations",
        "blocks",
        "contacts",
        "friend_requests",
        "devices",
        "users",
        "events",
        "stream_members",
        "streams",
        "stream_position",
    ):
        op.drop_table(table)
