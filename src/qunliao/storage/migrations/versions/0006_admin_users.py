"""Server administration (issue 15): server admins, deactivated accounts, the admin audit log,
and an index to find recently ended sessions (every process closes their sockets).

Revision ID: 0006
Revises: 0005
"""

import sqlalchemy as sa
from alembic import op

revision = "0006"
down_revision = "0005"
branch_labels = None
depends_on = None


def upgrade() -> None:
    with op.batch_alter_table("users") as batch:
        batch.add_column(
            sa.Column("is_admin", sa.Boolean, nullable=False, server_default=sa.false())
        )
        batch.add_column(sa.Column("deactivated_at", sa.BigInteger, nullable=True))
    op.create_index("ix_devices_revoked", "devices", ["revoked_at"])
    op.create_table(
        "admin_audit",
        sa.Column("entry_id", sa.Integer, primary_key=True, autoincrement=True),
        sa.Column("at", sa.BigInteger, nullable=False),
        sa.Column("actor_id", sa.String(40), nullable=True),
        sa.Column("action", sa.String(32), nullable=False),
        sa.Column("target_id", sa.String(40), nullable=True),
    )


def downgrade() -> None:
    op.drop_table("admin_audit")
    op.drop_index("ix_devices_revoked", "devices")
    with op.batch_alter_table("users") as batch:
        batch.drop_column("deactivated_at")
        batch.drop_column("is_admin")
