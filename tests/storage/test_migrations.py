"""The migrations build exactly the schema the mapped classes declare, on both databases."""

from pathlib import Path

import pytest
from alembic.autogenerate import compare_metadata
from alembic.migration import MigrationContext

from limner.storage.db import Database, DatabaseUnavailable, check_revision, make_engine, upgrade
from limner.storage.tables import Base


def test_migrated_schema_matches_the_tables(database: Database) -> None:
    with database.engine.connect() as connection:
        context = MigrationContext.configure(connection)
        differences = compare_metadata(context, Base.metadata)
    assert differences == []


def test_replicas_refuse_a_database_behind_the_newest_schema(tmp_path: Path) -> None:
    engine = make_engine(f"sqlite:///{tmp_path / 'old.db'}")
    with pytest.raises(DatabaseUnavailable, match="limner db upgrade"):
        check_revision(engine)
    upgrade(engine)
    check_revision(engine)
    engine.dispose()
