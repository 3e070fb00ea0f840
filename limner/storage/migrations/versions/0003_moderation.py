"""moderation: per-organization policies and the decision log

Revision ID: 0003
Revises: 0002
"""

import sqlalchemy as sa
from alembic import op

revision = "0003"
down_revision = "0002"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "moderation_policies",
        sa.Column(
            "organization_id",
            sa.String(40),
            sa.ForeignKey("organizations.id", ondelete="CASCADE"),
            primary_key=True,
        ),
        sa.Column("body", sa.Text(), nullable=False),
        sa.Column("updated_at", sa.BigInteger(), nullable=False),
    )
    op.create_table(
        "moderation_decisions",
        sa.Column(
            "id",
            sa.BigInteger().with_variant(sa.Integer(), "sqlite"),
            primary_key=True,
            autoincrement=True,
        ),
        sa.Column("request_id", sa.String(80), nullable=False),
        sa.Column("organization_id", sa.String(40), nullable=False),
        sa.Column("stage", sa.String(10), nullable=False),
        sa.Column("level", sa.String(10), nullable=False),
        sa.Column("allowed", sa.Boolean(), nullable=False),
        sa.Column("check", sa.String(200), nullable=False),
        sa.Column("categories", sa.String(200), nullable=False),
        sa.Column("score", sa.Float(), nullable=False),
        sa.Column("detail", sa.String(200), nullable=False),
        sa.Column("created_at", sa.BigInteger(), nullable=False),
    )
    op.create_index("ix_moderation_decisions_request", "moderation_decisions", ["request_id"])
    op.create_index(
        "ix_moderation_decisions_org_time",
        "moderation_decisions",
        ["organization_id", "created_at"],
    )


def downgrade() -> None:
    op.drop_table("moderation_decisions")
    op.drop_table("moderation_policies")
