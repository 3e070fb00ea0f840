"""The migrations build exactly the schema the mapped classes declare, on both databases."""

from alembic.autogenerate import compare_metadata
from alembic.migration import MigrationContext

from limner.storage.db import Database
from limner.storage.tables import Base


def test_migrated_schema_matches_the_tables(database: Database) -> None:
    with database.engine.connect() as connection:
        context = MigrationContext.configure(connection)
        differences = compare_metadata(context, Base.metadata)
    assert differences == []
