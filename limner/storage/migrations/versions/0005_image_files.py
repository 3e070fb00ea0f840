"""image_files: generated images behind signed URLs, for LIMNER_IMAGE_STORAGE=database

Revision ID: 0005
Revises: 0004
"""

import sqlalchemy as sa
from alembic import op

revision = "0005"
down_revision = "0004"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "image_files",
        sa.Column("name", sa.String(80), primary_key=True),
        sa.Column("data", sa.LargeBinary(), nullable=False),
        sa.Column("created_at", sa.BigInteger(), nullable=False),
    )
    op.create_index("ix_image_files_created_at", "image_files", ["created_at"])


def downgrade() -> None:
    op.drop_table("image_files")
