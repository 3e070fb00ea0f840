"""API keys on SQLite and PostgreSQL: hashed at rest, shown once, revocable."""

from collections.abc import Iterator
from contextlib import ExitStack
from pathlib import Path

import pytest
from sqlalchemy import select

from limner.accounts.keys import KeyStore, hash_key
from limner.errors import AuthenticationFailed
from limner.storage.db import Database, make_engine, upgrade
from limner.storage.tables import ApiKey
from tests.conftest import postgres_schema


@pytest.fixture(params=["sqlite", pytest.param("postgres", marks=pytest.mark.postgres)])
def database(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[Database]:
    with ExitStack() as stack:
        if request.param == "sqlite":
            url = f"sqlite:///{tmp_path / 'keys.db'}"
        else:
            # A schema per test keeps runs independent on the shared `test` database.
            url = stack.enter_context(postgres_schema("limner_test"))
        engine = make_engine(url)
        upgrade(engine)
        yield Database(engine)
        engine.dispose()


def test_key_lifecycle(database: Database) -> None:
    store = KeyStore(database)
    record, key = store.create("ci", is_admin=False)
    assert key.startswith("sk-limner-") and len(key) > 40
    caller = store.authenticate(f"Bearer {key}")
    assert caller.key_id == record.id and not caller.is_admin
    with database.transaction() as session:
        row = session.scalar(select(ApiKey).where(ApiKey.id == record.id))
        assert row is not None
        assert row.key_hash == hash_key(key)
        assert key not in (row.key_hash, row.redacted_value, row.name)
    assert [listed.redacted_value for listed in store.list()] == [record.redacted_value]
    assert store.revoke(record.id)
    assert not store.revoke(record.id)
    with pytest.raises(AuthenticationFailed):
        store.authenticate(f"Bearer {key}")


@pytest.mark.parametrize("header", [None, "", "Bearer ", "Basic abc", "Bearer sk-limner-unknown"])
def test_bad_credentials(database: Database, header: str | None) -> None:
    with pytest.raises(AuthenticationFailed) as caught:
        KeyStore(database).authenticate(header)
    assert caught.value.status == 401


def test_bootstrap_admin_is_idempotent(database: Database) -> None:
    store = KeyStore(database)
    admin = "sk-limner-bootstrap-" + "x" * 30
    assert store.bootstrap_admin(admin) is not None
    assert store.bootstrap_admin(admin) is None
    assert store.authenticate(f"Bearer {admin}").is_admin
    assert len(store.list()) == 1


def test_upgrade_is_idempotent(database: Database) -> None:
    upgrade(database.engine)
    assert database.ping()
