"""The migrations build exactly the schema the mapped classes declare, on both databases."""

from collections.abc import Iterator
from contextlib import ExitStack
from pathlib import Path

import pytest
import sqlalchemy as sa
from alembic import command
from alembic.autogenerate import compare_metadata
from alembic.config import Config
from alembic.migration import MigrationContext

from limner.storage.db import (
    MIGRATIONS_DIR,
    Database,
    DatabaseUnavailable,
    check_revision,
    make_engine,
    upgrade,
)
from limner.storage.tables import Base
from tests.conftest import DATABASE_KINDS, postgres_schema


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


@pytest.fixture(params=DATABASE_KINDS)
def empty_engine(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[sa.Engine]:
    with ExitStack() as stack:
        url = (
            f"sqlite:///{tmp_path / 'empty.db'}"
            if request.param == "sqlite"
            else stack.enter_context(postgres_schema("limner_mig"))
        )
        engine = make_engine(url)
        yield engine
        engine.dispose()


def _migrate(engine: sa.Engine, step: str, revision: str) -> None:
    config = Config()
    config.set_main_option("script_location", str(MIGRATIONS_DIR))
    with engine.begin() as connection:
        config.attributes["connection"] = connection
        getattr(command, step)(config, revision)


_BILLED = sa.text(
    "INSERT INTO usage_records (request_id, created_at, organization_id, project_id, "
    "api_key_id, model, source, size, quality, images, text_input_tokens, image_input_tokens, "
    "image_output_tokens, text_input_cost, image_input_cost, image_output_cost) VALUES "
    "(:request_id, 0, 'org', 'proj', 'key', 'gpt-image-1', 'image.generation', '1024x1024', "
    "'low', 1, 0, 0, 0, 0, 0, 0)"
)


def test_delivery_ids_migrate_with_the_rows_billed_before(empty_engine: sa.Engine) -> None:
    """0006 keys the ledger on a delivery id of Limner's: rows billed before keep their
    request id as theirs, a reused request id is then accepted, and the step reverses."""
    _migrate(empty_engine, "upgrade", "0005")
    with empty_engine.begin() as connection:
        connection.execute(_BILLED, {"request_id": "req_before"})
    _migrate(empty_engine, "upgrade", "head")
    with empty_engine.begin() as connection:
        rows = connection.execute(sa.text("SELECT request_id, delivery_id FROM usage_records"))
        assert rows.all() == [("req_before", "req_before")]
    insert_again = sa.text(
        _BILLED.text.replace("(request_id,", "(delivery_id, request_id,").replace(
            "(:request_id,", "('dlv_new', :request_id,"
        )
    )
    with empty_engine.begin() as connection:
        connection.execute(insert_again, {"request_id": "req_before"})
    with empty_engine.begin() as connection:
        connection.execute(sa.text("DELETE FROM usage_records WHERE delivery_id = 'dlv_new'"))
    _migrate(empty_engine, "downgrade", "0005")
    with empty_engine.begin() as connection, pytest.raises(sa.exc.IntegrityError):
        connection.execute(_BILLED, {"request_id": "req_before"})
