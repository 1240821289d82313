"""Registration invite codes (registration = "invite"): each code stored as its sha256, with
its number of uses, expiry, creator and revocation.

Revision ID: 0007
Revises: 0006
"""

import sqlalchemy as sa
from alembic import op

revision = "0007"
down_revision = "0006"
branch_labels = None
depends_on = None

S = sa.String
B = sa.BigInteger


def upgrade() -> None:
    op.create_table(
        "registration_invites",
        sa.Column("invite_id", S(40), primary_key=True),
        sa.Column("code_hash", S(64), nullable=False, unique=True),
        sa.Column("max_uses", sa.Integer, nullable=False),
        sa.Column("used", sa.Integer, nullable=False),
        sa.Column("expires_at", B, nullable=True),
        sa.Column("created_by", S(40), nullable=True),
        sa.Column("created_at", B, nullable=False),
        sa.Column("revoked_at", B, nullable=True),
    )


def downgrade() -> None:
    op.drop_table("registration_invites")
