"""Group invitation consent (群聊邀请确认): a per-user privacy setting, and the invitations
that an add becomes for the users who turned it on.

Revision ID: 0005
Revises: 0004
"""

import sqlalchemy as sa
from alembic import op

revision = "0005"
down_revision = "0004"
branch_labels = None
depends_on = None

S = sa.String
B = sa.BigInteger


def upgrade() -> None:
    op.create_table(
        "privacy_settings",
        sa.Column("user_id", S(40), primary_key=True),
        sa.Column("group_invite_consent", sa.Boolean, nullable=False),
        sa.Column("updated_at", B, nullable=False),
    )
    op.create_table(
        "group_invitations",
        sa.Column("invitation_id", S(40), primary_key=True),
        sa.Column("conversation_id", S(40), nullable=False),
        sa.Column("inviter_id", S(40), nullable=False),
        sa.Column("invitee_id", S(40), nullable=False),
        sa.Column("state", S(16), nullable=False),
        sa.Column("created_at", B, nullable=False),
        sa.Column("updated_at", B, nullable=False),
    )
    op.create_index("ix_group_invitations_invitee", "group_invitations", ["invitee_id", "state"])
    op.create_index("ix_group_invitations_inviter", "group_invitations", ["inviter_id", "state"])
    op.create_index(
        "ix_group_invitations_conversation", "group_invitations", ["conversation_id", "invitee_id"]
    )


def downgrade() -> None:
    op.drop_table("group_invitations")
    op.drop_table("privacy_settings")
