"""The (device, txn id) unique index is keyed txn id first.

Clients make txn ids that start with the time (our SDK and web client do), so new keys land at
one right edge of the index. Keyed device first, every device had its own edge: a commit batch
of sends from 64 devices dirtied ~64 more index pages (≈4 KB of WAL per message on SQLite).
Look-ups by (device, txn id) use either order.

Revision ID: 0003
Revises: 0002
"""

from alembic import op

revision = "0003"
down_revision = "0002"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.drop_index("ux_events_txn", table_name="events")
    op.create_index("ux_events_txn", "events", ["client_txn_id", "device_id"], unique=True)


def downgrade() -> None:
    op.drop_index("ux_events_txn", table_name="events")
    op.create_index("ux_events_txn", "events", ["device_id", "client_txn_id"], unique=True)
