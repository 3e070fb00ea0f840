"""API keys on SQLite and PostgreSQL: hashed at rest, shown once, kinds, revocable, expiring."""

import time

import pytest
from sqlalchemy import select, update

from limner.accounts import keys
from limner.accounts.keys import KeyStore, hash_key
from limner.accounts.orgs import (
    OPERATOR_ORGANIZATION_ID,
    OPERATOR_PROJECT_ID,
    AdminKeys,
    Organizations,
    Projects,
)
from limner.errors import AuthenticationFailed, MismatchedOrganization, MismatchedProject
from limner.storage.db import Database, upgrade
from limner.storage.tables import ApiKey

ADMIN = "sk-admin-bootstrap-" + "x" * 30
PROJECT = "sk-proj-bootstrap-" + "y" * 30


def test_project_key_lifecycle(database: Database) -> None:
    Organizations(database).bootstrap(None, None)
    record, key = Projects(database).create_key(OPERATOR_ORGANIZATION_ID, OPERATOR_PROJECT_ID, "ci")
    assert key.startswith("sk-proj-") and len(key) > 50
    assert record.redacted_value == f"{key[:10]}...{key[-4:]}"
    store = KeyStore(database)
    caller = store.authenticate(f"Bearer {key}")
    assert (caller.key_id, caller.kind, caller.project_id) == (
        record.id,
        "project",
        OPERATOR_PROJECT_ID,
    )
    assert caller.verified and caller.tier == "5" and caller.is_operator
    with database.transaction() as session:
        row = session.scalar(select(ApiKey).where(ApiKey.id == record.id))
        assert row is not None and row.key_hash == hash_key(key)
        assert row.last_used_at is not None
        assert key not in (row.key_hash, row.redacted_value, row.name)
    assert store.revoke(record.id)
    assert not store.revoke(record.id)
    with pytest.raises(AuthenticationFailed):
        store.authenticate(f"Bearer {key}")


@pytest.mark.parametrize("header", [None, "", "Bearer ", "Basic abc", "Bearer sk-proj-unknown"])
def test_bad_credentials(database: Database, header: str | None) -> None:
    with pytest.raises(AuthenticationFailed) as caught:
        KeyStore(database).authenticate(header)
    assert caught.value.status == 401


def test_bootstrap_is_idempotent_and_adopts_old_keys(database: Database) -> None:
    # A key made before organizations existed (migration 0001's table, no owner).
    with database.transaction() as session:
        session.add(
            ApiKey(
                id="key_old",
                name="old",
                redacted_value="sk-limner-ab****cdef",
                key_hash=hash_key("sk-limner-old"),
                kind="project",
                created_at=1,
            )
        )
    organizations = Organizations(database)
    organizations.bootstrap(ADMIN, PROJECT)
    organizations.bootstrap(ADMIN, PROJECT)
    store = KeyStore(database)
    assert store.authenticate(f"Bearer {ADMIN}").is_admin
    assert store.authenticate(f"Bearer {PROJECT}").project_id == OPERATOR_PROJECT_ID
    old = store.authenticate("Bearer sk-limner-old")
    assert (old.organization_id, old.project_id) == (OPERATOR_ORGANIZATION_ID, OPERATOR_PROJECT_ID)
    assert len(store.list_all()) == 3
    assert [o.id for o in organizations.list()] == [OPERATOR_ORGANIZATION_ID]


def test_expired_admin_key_and_archived_project_fail(database: Database) -> None:
    Organizations(database).bootstrap(None, None)
    _record, admin = AdminKeys(database).create(OPERATOR_ORGANIZATION_ID, "short", 60)
    store = KeyStore(database)
    assert store.authenticate(f"Bearer {admin}").is_admin
    with database.transaction() as session:
        session.execute(update(ApiKey).values(expires_at=int(time.time()) - 1))
    with pytest.raises(AuthenticationFailed):
        store.authenticate(f"Bearer {admin}")

    projects = Projects(database)
    project = projects.create(OPERATOR_ORGANIZATION_ID, "temp")
    _key, secret = projects.create_key(OPERATOR_ORGANIZATION_ID, project.id, "k")
    assert store.authenticate(f"Bearer {secret}").project_id == project.id
    projects.archive(OPERATOR_ORGANIZATION_ID, project.id)
    with pytest.raises(AuthenticationFailed):
        store.authenticate(f"Bearer {secret}")


def test_organization_and_project_headers_must_match(database: Database) -> None:
    Organizations(database).bootstrap(None, PROJECT)
    store = KeyStore(database)
    bearer = f"Bearer {PROJECT}"
    assert (
        store.authenticate(bearer, OPERATOR_ORGANIZATION_ID, OPERATOR_PROJECT_ID).kind == "project"
    )
    with pytest.raises(MismatchedOrganization) as caught:
        store.authenticate(bearer, "org-other")
    assert caught.value.status == 401 and caught.value.code == "mismatched_organization"
    with pytest.raises(MismatchedProject):
        store.authenticate(bearer, None, "proj_other")


def test_upgrade_is_idempotent(database: Database) -> None:
    upgrade(database.engine)
    assert database.ping()


def test_changes_reach_the_very_next_request(database: Database) -> None:
    """Two key stores stand for two server processes: nothing about a key or its organization
    is cached, so what one changes the other sees on its next request."""
    organizations, projects = Organizations(database), Projects(database)
    organization = organizations.create("acme", verified=False, tier="free")
    project = projects.create(organization.id, "p")
    record, secret = projects.create_key(organization.id, project.id, "k")
    mine, theirs = KeyStore(database), KeyStore(database)
    bearer = f"Bearer {secret}"
    first = mine.authenticate(bearer)
    assert (first.verified, first.tier) == (False, "free")
    organizations.set_verified(organization.id, True)
    organizations.set_tier(organization.id, "3")
    after = theirs.authenticate(bearer)
    assert (after.verified, after.tier) == (True, "3")
    assert theirs.revoke(record.id)
    with pytest.raises(AuthenticationFailed):
        mine.authenticate(bearer)


def test_last_used_is_written_once_per_resolution(
    database: Database, monkeypatch: pytest.MonkeyPatch
) -> None:
    Organizations(database).bootstrap(None, PROJECT)
    store = KeyStore(database)
    clock = [1_800_000_000.0]
    monkeypatch.setattr(keys.time, "time", lambda: clock[0])

    def last_used() -> int | None:
        with database.transaction() as session:
            return session.scalar(
                select(ApiKey.last_used_at).where(ApiKey.key_hash == hash_key(PROJECT))
            )

    store.authenticate(f"Bearer {PROJECT}")
    assert last_used() == 1_800_000_000
    clock[0] += 59
    store.authenticate(f"Bearer {PROJECT}")
    assert last_used() == 1_800_000_000  # informational: not a write per request
    clock[0] += 1
    store.authenticate(f"Bearer {PROJECT}")
    assert last_used() == 1_800_000_060


def test_authentication_leaves_pooled_connections_transactional(database: Database) -> None:
    """The read path may switch its connection to autocommit (PostgreSQL); the pool must hand
    the next user a transactional one, or a failed unit of work would stay half-written."""
    Organizations(database).bootstrap(None, PROJECT)
    store = KeyStore(database)
    for _ in range(3):
        store.authenticate(f"Bearer {PROJECT}")
        with pytest.raises(AuthenticationFailed):
            store.authenticate("Bearer sk-proj-unknown")
    with pytest.raises(RuntimeError), database.transaction() as session:
        session.execute(update(ApiKey).values(name="half-written"))
        raise RuntimeError("the unit of work fails")
    with database.transaction() as session:
        assert "half-written" not in set(session.scalars(select(ApiKey.name)))
