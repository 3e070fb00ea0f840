"""The admin API through the official SDK's admin client, against the live server: projects,
keys, service accounts, admin keys, the key-kind split, verification and tiers per key."""

import time
from collections.abc import Iterator

import httpx
import openai
import pytest

from tests.api.conftest import new_organization, project_key
from tests.conftest import ADMIN_KEY, API_KEY, LiveServer


@pytest.fixture()
def admin(platform_server: LiveServer) -> Iterator[openai.OpenAI]:
    with openai.OpenAI(
        base_url=platform_server.api_url, admin_api_key=ADMIN_KEY, api_key="", max_retries=0
    ) as sdk:
        yield sdk


def _client(platform_server: LiveServer, key: str) -> openai.OpenAI:
    return openai.OpenAI(base_url=platform_server.api_url, api_key=key, max_retries=0)


def test_project_lifecycle_and_pagination(admin: openai.OpenAI) -> None:
    organization = admin.admin.organization
    created = organization.projects.create(name="Mobile app")
    assert created.id.startswith("proj_") and created.status == "active"
    assert organization.projects.retrieve(created.id).name == "Mobile app"
    renamed = organization.projects.update(created.id, name="Mobile")
    assert renamed.name == "Mobile"
    for i in range(3):
        organization.projects.create(name=f"extra {i}")
    # The SDK walks pages with after=last_id until has_more is false.
    seen = [p.id for p in organization.projects.list(limit=2)]
    assert len(seen) == len(set(seen)) >= 5 and created.id in seen
    archived = organization.projects.archive(created.id)
    assert archived.status == "archived" and archived.archived_at is not None
    assert created.id not in [p.id for p in organization.projects.list(limit=100)]
    assert created.id in [
        p.id for p in organization.projects.list(limit=100, include_archived=True)
    ]


def test_service_account_key_is_shown_once_and_dies_with_it(
    admin: openai.OpenAI, platform_server: LiveServer
) -> None:
    projects = admin.admin.organization.projects
    project = projects.create(name="backend")
    account = projects.service_accounts.create(project.id, name="Production App")
    assert account.api_key is not None
    secret = account.api_key.value
    assert secret.startswith("sk-svcacct-")
    with _client(platform_server, secret) as sdk:
        assert any(m.id == "gpt-image-1" for m in sdk.models.list())
    keys = list(projects.api_keys.list(project.id))
    assert [k.id for k in keys] == [account.api_key.id]
    assert secret not in keys[0].redacted_value and keys[0].owner.type == "service_account"
    with pytest.raises(openai.BadRequestError):
        projects.api_keys.delete(account.api_key.id, project_id=project.id)
    projects.service_accounts.delete(account.id, project_id=project.id)
    with _client(platform_server, secret) as sdk, pytest.raises(openai.AuthenticationError):
        sdk.models.list()


def test_admin_keys_and_the_key_kind_split(
    admin: openai.OpenAI, platform_server: LiveServer
) -> None:
    keys = admin.admin.organization.admin_api_keys
    created = keys.create(name="rotation", expires_in_seconds=3600)
    assert created.value.startswith("sk-admin-") and created.expires_at is not None
    assert (
        keys.retrieve(created.id).redacted_value == f"{created.value[:11]}...{created.value[-4:]}"
    )
    assert created.id in [k.id for k in keys.list()]
    keys.delete(created.id)
    assert created.id not in [k.id for k in keys.list()]
    # Admin keys cannot generate; project keys cannot administer.
    with (
        _client(platform_server, ADMIN_KEY) as sdk,
        pytest.raises(openai.AuthenticationError) as err,
    ):
        sdk.models.list()
    assert "api.model.request" in err.value.message
    response = httpx.get(
        platform_server.api_url + "/organization/projects",
        headers={"authorization": f"Bearer {API_KEY}"},
    )
    assert response.status_code == 401
    assert "admin API key" in response.json()["error"]["message"]


def test_mismatched_organization_header(platform_server: LiveServer) -> None:
    with (
        openai.OpenAI(
            base_url=platform_server.api_url,
            api_key=API_KEY,
            organization="org-other",
            max_retries=0,
        ) as sdk,
        pytest.raises(openai.AuthenticationError) as caught,
    ):
        sdk.models.list()
    assert caught.value.code == "mismatched_organization"


def test_organizations_are_isolated(admin: openai.OpenAI, platform_server: LiveServer) -> None:
    mine = admin.admin.organization.projects.create(name="operator only")
    other = new_organization(platform_server, verified=True, tier="1")
    other_admin = str(other["admin_api_key"]["value"])  # type: ignore[index]
    with openai.OpenAI(
        base_url=platform_server.api_url, admin_api_key=other_admin, api_key="", max_retries=0
    ) as theirs:
        listed = [p.id for p in theirs.admin.organization.projects.list(limit=100)]
        assert listed == [other["default_project_id"]]
        with pytest.raises(openai.NotFoundError):
            theirs.admin.organization.projects.retrieve(mine.id)
        with pytest.raises(openai.NotFoundError):
            theirs.admin.organization.projects.archive(mine.id)
    # Only the operator's admin keys may use the operator extension.
    response = httpx.get(
        platform_server.api_url + "/limner/organizations",
        headers={"authorization": f"Bearer {other_admin}"},
    )
    assert response.status_code == 403


def test_verification_gate_flips_on_the_next_request(platform_server: LiveServer) -> None:
    organization = new_organization(platform_server, verified=False, tier="1")
    org_id = str(organization["id"])
    admin_key = str(organization["admin_api_key"]["value"])  # type: ignore[index]
    key = project_key(platform_server, org_id, str(organization["default_project_id"]), ADMIN_KEY)
    with _client(platform_server, key) as sdk:
        listed = {m.id for m in sdk.models.list()}
        assert "gpt-image-1" not in listed and {"dall-e-2", "dall-e-3"} <= listed
        with pytest.raises(openai.PermissionDeniedError) as caught:
            sdk.images.generate(model="gpt-image-1", prompt="a red circle", size="1024x1024")
        assert caught.value.code is None
        assert "must be verified to use the model `gpt-image-1`" in caught.value.message
        with pytest.raises(openai.NotFoundError):
            sdk.models.retrieve("gpt-image-1")
        flipped = httpx.post(
            f"{platform_server.api_url}/limner/organizations/{org_id}",
            json={"verified": True},
            headers={"authorization": f"Bearer {ADMIN_KEY}"},
        )
        assert flipped.status_code == 200 and flipped.json()["verified"] is True
        result = sdk.images.generate(
            model="gpt-image-1", prompt="a red circle", size="1024x1024", quality="low"
        )
        assert result.data and result.data[0].b64_json
        assert "gpt-image-1" in {m.id for m in sdk.models.list()}
    assert admin_key.startswith("sk-admin-")


def test_free_tier_is_told_which_tier_it_needs(platform_server: LiveServer) -> None:
    organization = new_organization(platform_server, verified=True, tier="free")
    key = project_key(
        platform_server, str(organization["id"]), str(organization["default_project_id"]), ADMIN_KEY
    )
    with _client(platform_server, key) as sdk:
        with pytest.raises(openai.BadRequestError) as caught:
            sdk.images.generate(model="gpt-image-1", prompt="a red circle")
        assert caught.value.code == "below_usage_tier" and caught.value.param == "model"
        assert "at least usage tier 1" in caught.value.message
        assert "gpt-image-1" not in {m.id for m in sdk.models.list()}


def test_operator_sets_tier_tables_and_prices(platform_server: LiveServer) -> None:
    auth = {"authorization": f"Bearer {ADMIN_KEY}"}
    url = platform_server.api_url + "/limner"
    table = httpx.get(url + "/tiers", headers=auth).json()
    assert table["limits"]["gpt-image-1"]["1"] == {"rpm": 5, "tpm": 100000, "ipm": 5}
    bad = httpx.put(url + "/tiers", json={"tiers": {}, "limits": {}}, headers=auth)
    assert bad.status_code == 400 and bad.json()["error"]["param"] == "tiers"
    changed = {"tiers": table["tiers"], "limits": table["limits"]}
    changed["limits"]["dall-e-2"]["free"]["ipm"] = 2
    try:
        saved = httpx.put(url + "/tiers", json=changed, headers=auth)
        assert saved.status_code == 200, saved.text
        assert (
            httpx.get(url + "/tiers", headers=auth).json()["limits"]["dall-e-2"]["free"]["ipm"] == 2
        )
    finally:
        reset = httpx.delete(url + "/tiers", headers=auth).json()
    assert reset["limits"]["dall-e-2"]["free"]["ipm"] == 5

    prices = httpx.get(url + "/prices", headers=auth).json()["models"]
    assert prices["gpt-image-1"]["per_million_tokens"]["image_output"] == "40.00"
    refused = httpx.put(
        url + "/prices",
        json={"models": {"limner-mini": {"per_million_tokens": {"text_input": 0.1}}}},
        headers=auth,
    )
    assert refused.status_code == 400  # floats are refused: prices must convert exactly
    with httpx.Client(headers=auth) as http:
        for models in ({"limner-mini": {"per_image": {"high": {"1024x1024": "0.001"}}}}, {}):
            response = http.put(url + "/prices", json={"models": models})
            assert response.status_code == 200, response.text
            assert ("limner-mini" in response.json()["models"]) == bool(models)


def test_project_key_expiry_and_unscoped_keys(
    admin: openai.OpenAI, platform_server: LiveServer
) -> None:
    projects = admin.admin.organization.projects
    project = projects.create(name="expiring")
    account = projects.service_accounts.create(project.id, name="app")
    assert account.api_key is not None
    key_id = account.api_key.id
    updated = projects.api_keys.update(key_id, project_id=project.id, expires_in_seconds=3600)
    assert updated.expires_at is not None and updated.expires_at > time.time() + 3500
    with pytest.raises(openai.BadRequestError) as caught:
        projects.api_keys.update(key_id, project_id=project.id, scopes=["api.model.read"])
    assert caught.value.param == "scopes"
    assert projects.api_keys.update(key_id, project_id=project.id, scopes=[]).id == key_id


def test_an_admin_key_reads_its_own_organization(platform_server: LiveServer) -> None:
    created = new_organization(platform_server, name="self-aware", verified=False, tier="2")
    own = httpx.get(
        platform_server.api_url + "/limner/organization",
        headers={"authorization": f"Bearer {created['admin_api_key']['value']}"},
    )
    assert own.status_code == 200
    assert (own.json()["id"], own.json()["verified"], own.json()["tier"]) == (
        created["id"],
        False,
        "2",
    )
    project = project_key(platform_server, created["id"], created["default_project_id"])
    refused = httpx.get(
        platform_server.api_url + "/limner/organization",
        headers={"authorization": f"Bearer {project}"},
    )
    assert refused.status_code in (401, 403) and "error" in refused.json()
