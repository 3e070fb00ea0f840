"""platform: organizations, projects, service accounts, key ownership, rate limits, usage

Revision ID: 0002
Revises: 0001
"""

import sqlalchemy as sa
from alembic import op

revision = "0002"
down_revision = "0001"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "organizations",
        sa.Column("id", sa.String(40), primary_key=True),
        sa.Column("name", sa.String(200), nullable=False),
        sa.Column("is_operator", sa.Boolean(), nullable=False),
        sa.Column("verified_at", sa.BigInteger(), nullable=True),
        sa.Column("tier", sa.String(10), nullable=False),
        sa.Column("spend_limit_cents", sa.BigInteger(), nullable=True),
        sa.Column("created_at", sa.BigInteger(), nullable=False),
    )
    op.create_table(
        "projects",
        sa.Column("id", sa.String(40), primary_key=True),
        sa.Column(
            "organization_id", sa.String(40), sa.ForeignKey("organizations.id"), nullable=False
        ),
        sa.Column("name", sa.String(200), nullable=False),
        sa.Column("is_default", sa.Boolean(), nullable=False),
        sa.Column("external_key_id", sa.String(200), nullable=True),
        sa.Column("spend_limit_cents", sa.BigInteger(), nullable=True),
        sa.Column("created_at", sa.BigInteger(), nullable=False),
        sa.Column("archived_at", sa.BigInteger(), nullable=True),
    )
    op.create_index("ix_projects_organization_id", "projects", ["organization_id"])
    op.create_table(
        "service_accounts",
        sa.Column("id", sa.String(40), primary_key=True),
        sa.Column("project_id", sa.String(40), sa.ForeignKey("projects.id"), nullable=False),
        sa.Column("name", sa.String(200), nullable=False),
        sa.Column("role", sa.String(10), nullable=False),
        sa.Column("created_at", sa.BigInteger(), nullable=False),
        sa.Column("deleted_at", sa.BigInteger(), nullable=True),
    )
    op.create_index("ix_service_accounts_project_id", "service_accounts", ["project_id"])
    # Keys made before organizations existed keep working: start-up assigns them to the
    # operator's organization (admin keys) or its Default project (the rest).
    with op.batch_alter_table("api_keys") as batch:
        batch.add_column(sa.Column("kind", sa.String(20), nullable=False, server_default="project"))
        batch.add_column(sa.Column("organization_id", sa.String(40), nullable=True))
        batch.add_column(sa.Column("project_id", sa.String(40), nullable=True))
        batch.add_column(sa.Column("service_account_id", sa.String(40), nullable=True))
        batch.add_column(sa.Column("last_used_at", sa.BigInteger(), nullable=True))
        batch.add_column(sa.Column("expires_at", sa.BigInteger(), nullable=True))
        batch.create_foreign_key(
            "fk_api_keys_organization", "organizations", ["organization_id"], ["id"]
        )
        batch.create_foreign_key("fk_api_keys_project", "projects", ["project_id"], ["id"])
        batch.create_foreign_key(
            "fk_api_keys_service_account", "service_accounts", ["service_account_id"], ["id"]
        )
        batch.create_index("ix_api_keys_organization_id", ["organization_id"])
        batch.create_index("ix_api_keys_project_id", ["project_id"])
    op.execute("UPDATE api_keys SET kind = 'admin' WHERE is_admin")
    with op.batch_alter_table("api_keys") as batch:
        batch.drop_column("is_admin")
    op.create_table(
        "project_rate_limits",
        sa.Column("id", sa.Integer(), primary_key=True, autoincrement=True),
        sa.Column("project_id", sa.String(40), sa.ForeignKey("projects.id"), nullable=False),
        sa.Column("model", sa.String(100), nullable=False),
        sa.Column("max_requests_per_1_minute", sa.BigInteger(), nullable=True),
        sa.Column("max_tokens_per_1_minute", sa.BigInteger(), nullable=True),
        sa.Column("max_images_per_1_minute", sa.BigInteger(), nullable=True),
        sa.UniqueConstraint("project_id", "model"),
    )
    op.create_index("ix_project_rate_limits_project_id", "project_rate_limits", ["project_id"])
    op.create_table(
        "usage_records",
        sa.Column("id", sa.Integer(), primary_key=True, autoincrement=True),
        sa.Column("request_id", sa.String(64), nullable=False, unique=True),
        sa.Column("created_at", sa.BigInteger(), nullable=False),
        sa.Column("organization_id", sa.String(40), nullable=False),
        sa.Column("project_id", sa.String(40), nullable=False),
        sa.Column("api_key_id", sa.String(40), nullable=False),
        sa.Column("model", sa.String(100), nullable=False),
        sa.Column("source", sa.String(30), nullable=False),
        sa.Column("size", sa.String(20), nullable=False),
        sa.Column("quality", sa.String(20), nullable=False),
        sa.Column("images", sa.Integer(), nullable=False),
        sa.Column("text_input_tokens", sa.BigInteger(), nullable=False),
        sa.Column("image_input_tokens", sa.BigInteger(), nullable=False),
        sa.Column("image_output_tokens", sa.BigInteger(), nullable=False),
        sa.Column("text_input_cost", sa.BigInteger(), nullable=False),
        sa.Column("image_input_cost", sa.BigInteger(), nullable=False),
        sa.Column("image_output_cost", sa.BigInteger(), nullable=False),
    )
    op.create_index("ix_usage_records_created_at", "usage_records", ["created_at"])
    op.create_index(
        "ix_usage_records_organization_created", "usage_records", ["organization_id", "created_at"]
    )
    op.create_table(
        "spend_totals",
        sa.Column("organization_id", sa.String(40), primary_key=True),
        sa.Column("project_id", sa.String(40), primary_key=True),
        sa.Column("month", sa.BigInteger(), primary_key=True),
        sa.Column("amount", sa.BigInteger(), nullable=False),
    )
    op.create_table(
        "platform_documents",
        sa.Column("name", sa.String(40), primary_key=True),
        sa.Column("body", sa.Text(), nullable=False),
        sa.Column("updated_at", sa.BigInteger(), nullable=False),
    )


def downgrade() -> None:
    op.drop_table("platform_documents")
    op.drop_table("spend_totals")
    op.drop_table("usage_records")
    op.drop_table("project_rate_limits")
    with op.batch_alter_table("api_keys") as batch:
        batch.add_column(
            sa.Column("is_admin", sa.Boolean(), nullable=False, server_default=sa.false())
        )
    op.execute("UPDATE api_keys SET is_admin = (kind = 'admin')")
    with op.batch_alter_table("api_keys") as batch:
        batch.drop_constraint("fk_api_keys_service_account", type_="foreignkey")
        batch.drop_constraint("fk_api_keys_project", type_="foreignkey")
        batch.drop_constraint("fk_api_keys_organization", type_="foreignkey")
        batch.drop_index("ix_api_keys_project_id")
        batch.drop_index("ix_api_keys_organization_id")
        for column in (
            "expires_at",
            "last_used_at",
            "service_account_id",
            "project_id",
            "organization_id",
            "kind",
        ):
            batch.drop_column(column)
    op.drop_table("service_accounts")
    op.drop_table("projects")
    op.drop_table("organizations")
