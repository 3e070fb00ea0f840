"""A migrated database per test, on SQLite and on PostgreSQL."""

from collections.abc import Iterator
from contextlib import ExitStack
from pathlib import Path

import pytest

from limner.storage.db import Database, make_engine, upgrade
from tests.conftest import postgres_schema


@pytest.fixture(params=["sqlite", pytest.param("postgres", marks=pytest.mark.postgres)])
def database(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[Database]:
    with ExitStack() as stack:
        if request.param == "sqlite":
            url = f"sqlite:///{tmp_path / 'accounts.db'}"
        else:
            # A schema per test keeps runs independent on the shared `test` database.
            url = stack.enter_context(postgres_schema("limner_test"))
        engine = make_engine(url)
        upgrade(engine)
        yield Database(engine)
        engine.dispose()
