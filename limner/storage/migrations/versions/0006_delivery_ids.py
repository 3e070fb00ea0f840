"""usage_records.delivery_id: the ledger's once-only key is made by Limner, not the client

Behind a proxy that honours a client's `x-request-id` (Ray Serve's does), the request id is
the client's to choose; keyed on it, a reused id was delivered unbilled. Every delivery now
has its own server-made id; the request id stays for tracing, no longer unique.

Revision ID: 0006
Revises: 0005
"""

import sqlalchemy as sa
from alembic import op

revision = "0006"
down_revision = "0005"
branch_labels = None
depends_on = None

# SQLite's constraint from 0002 has no name; the convention names it so the batch copy can
# leave it out. PostgreSQL named it itself.
_NAMING = {"uq": "%(table_name)s_%(column_0_name)s_key"}


def upgrade() -> None:
    op.add_column("usage_records", sa.Column("delivery_id", sa.String(64), nullable=True))
    op.execute("UPDATE usage_records SET delivery_id = request_id")
    with op.batch_alter_table("usage_records", naming_convention=_NAMING) as batch:
        batch.alter_column("delivery_id", existing_type=sa.String(64), nullable=False)
        batch.drop_constraint("usage_records_request_id_key", type_="unique")
        batch.create_unique_constraint("usage_records_delivery_id_key", ["delivery_id"])
        batch.create_index("ix_usage_records_request_id", ["request_id"])


def downgrade() -> None:
    with op.batch_alter_table("usage_records", naming_convention=_NAMING) as batch:
        batch.drop_index("ix_usage_records_request_id")
        batch.drop_constraint("usage_records_delivery_id_key", type_="unique")
        batch.drop_column("delivery_id")
        batch.create_unique_constraint("usage_records_request_id_key", ["request_id"])
