"""Organizations, projects, service accounts and admin keys: scoping, pagination, life cycles."""

import pytest

from limner.accounts.keys import KeyStore
from limner.accounts.orgs import (
    OPERATOR_ORGANIZATION_ID,
    AdminKeys,
    Organizations,
    Projects,
    tier_name,
)
from limner.errors import AuthenticationFailed, InvalidRequest, InvalidValue, NotFound
from limner.storage.db import Database


def test_new_organizations_follow_the_settings(database: Database) -> None:
    strict = Organizations(database)
    strict.bootstrap(None, None)
    operator = strict.get(OPERATOR_ORGANIZATION_ID)
    assert operator.verified_at is not None and operator.tier == "5" and operator.is_operator
    created = strict.create("Acme")
    assert created.id.startswith("org-") and created.verified_at is None
    assert created.tier == "free" and not created.is_operator
    lenient = Organizations(database, new_verified=True, new_tier="tier 2")
    assert lenient.create("Beta").tier == "2"
    assert lenient.create("Gamma", verified=False, tier="4").verified_at is None
    assert Projects(database).default_project(created.id).name == "Default project"
    assert strict.set_verified(created.id, True).verified_at is not None
    assert strict.set_tier(created.id, "3").tier == "3"
    with pytest.raises(InvalidValue):
        strict.set_tier(created.id, "6")
    with pytest.raises(NotFound):
        strict.set_verified("org-missing", True)


@pytest.mark.parametrize(
    ("given", "expected"), [("free", "free"), ("Tier 3", "3"), ("tier-5", "5")]
)
def test_tier_spellings(given: str, expected: str) -> None:
    assert tier_name(given) == expected


def test_one_organization_never_reaches_another(database: Database) -> None:
    organizations, projects = Organizations(database), Projects(database)
    organizations.bootstrap(None, None)
    a, b = organizations.create("A"), organizations.create("B")
    project_b = projects.create(b.id, "secret project")
    key_b, _secret = projects.create_key(b.id, project_b.id, "k")
    admin_b, _admin_secret = AdminKeys(database).create(b.id, "admin")
    for attempt in (
        lambda: projects.get(a.id, project_b.id),
        lambda: projects.modify(a.id, project_b.id, name="mine"),
        lambda: projects.archive(a.id, project_b.id),
        lambda: projects.list_keys(a.id, project_b.id),
        lambda: projects.get_key(a.id, project_b.id, key_b.id),
        lambda: projects.delete_key(a.id, project_b.id, key_b.id),
        lambda: projects.create_service_account(a.id, project_b.id, "sa"),
        lambda: AdminKeys(database).get(a.id, admin_b.id),
        lambda: AdminKeys(database).delete(a.id, admin_b.id),
    ):
        with pytest.raises(NotFound):
            attempt()
    assert project_b.id not in [p.id for p in projects.list(a.id, limit=100).items]
    assert admin_b.id not in [k.id for k in AdminKeys(database).list(a.id).items]
    assert projects.get(b.id, project_b.id).name == "secret project"


def test_project_pages_cover_every_project_once(database: Database) -> None:
    organizations, projects = Organizations(database), Projects(database)
    organization = organizations.create("Paged")
    made = {projects.create(organization.id, f"p{i}").id for i in range(7)}
    seen: list[str] = []
    after = None
    while True:
        page = projects.list(organization.id, after=after, limit=3)
        seen += [p.id for p in page.items]
        if not page.has_more:
            break
        after = page.items[-1].id
    default = projects.default_project(organization.id).id
    assert sorted(seen) == sorted({*made, default})
    archived = projects.archive(organization.id, sorted(made)[0])
    assert archived.archived_at is not None
    active = projects.list(organization.id, limit=100).items
    assert archived.id not in [p.id for p in active]
    everything = projects.list(organization.id, limit=100, include_archived=True).items
    assert archived.id in [p.id for p in everything]
    with pytest.raises(InvalidRequest):
        projects.archive(organization.id, default)
    with pytest.raises(InvalidRequest):
        projects.modify(organization.id, archived.id, name="again")
    with pytest.raises(InvalidValue):
        projects.list(organization.id, limit=101)


def test_service_account_keys_die_with_the_account(database: Database) -> None:
    organizations, projects = Organizations(database), Projects(database)
    organization = organizations.create("SA")
    project = projects.create(organization.id, "prod")
    created = projects.create_service_account(organization.id, project.id, "Production App")
    assert created.account.id.startswith("svc_acct_") and created.account.role == "member"
    assert created.secret is not None and created.secret.startswith("sk-svcacct-")
    assert created.key is not None
    second, second_secret = projects.create_service_account_key(
        organization.id, project.id, created.account.id, "second"
    )
    store = KeyStore(database)
    caller = store.authenticate(f"Bearer {created.secret}")
    assert caller.kind == "service_account" and caller.project_id == project.id
    with pytest.raises(InvalidRequest):
        projects.delete_key(organization.id, project.id, created.key.id)
    listed = projects.list_keys(organization.id, project.id).items
    assert {k.id for k in listed} == {created.key.id, second.id}
    projects.delete_service_account(organization.id, project.id, created.account.id)
    for secret in (created.secret, second_secret):
        with pytest.raises(AuthenticationFailed):
            store.authenticate(f"Bearer {secret}")
    only = projects.create_service_account(organization.id, project.id, "bare", with_key=False)
    assert only.key is None and only.account.role == "none"
    with pytest.raises(InvalidRequest):
        projects.create_service_account(
            organization.id, projects.default_project(organization.id).id, "x"
        )


def test_admin_keys_list_in_both_orders_and_expire(database: Database) -> None:
    organization = Organizations(database).create("Keys")
    admin_keys = AdminKeys(database)
    ids = [admin_keys.create(organization.id, f"k{i}")[0].id for i in range(3)]
    ascending = [k.id for k in admin_keys.list(organization.id).items]
    descending = [k.id for k in admin_keys.list(organization.id, order="desc").items]
    assert ascending == ids and descending == ids[::-1]
    first_page = admin_keys.list(organization.id, limit=2, order="desc")
    assert first_page.has_more
    rest = admin_keys.list(organization.id, limit=2, order="desc", after=first_page.items[-1].id)
    assert [k.id for k in rest.items] == [ids[0]] and not rest.has_more
    admin_keys.delete(organization.id, ids[1])
    assert ids[1] not in [k.id for k in admin_keys.list(organization.id).items]
    with pytest.raises(InvalidValue):
        admin_keys.create(organization.id, "too long", 31_536_001)
