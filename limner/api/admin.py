"""Admin API in OpenAI's shapes under /v1/organization: projects, project keys, service
accounts, admin keys, spend limits, project rate limits, usage and costs. Every route needs an
admin key and sees only its own organization."""

import time
from typing import Annotated, Any, Literal

from fastapi import APIRouter, Query, Request
from pydantic import BaseModel, ConfigDict, Field

from limner.accounts.keys import Caller
from limner.accounts.orgs import AdminKeys, Page, Projects
from limner.api.deps import AdminCaller
from limner.catalog import Catalog
from limner.errors import InvalidValue, RateLimitNotSet
from limner.metering import reports
from limner.metering.meter import Meter
from limner.metering.pricing import load_prices
from limner.metering.tiers import ModelLimits, TierBook
from limner.storage.db import Database
from limner.storage.tables import ApiKey, Organization, Project, ServiceAccount

router = APIRouter(prefix="/v1/organization", tags=["admin"])

Limit = Annotated[int, Query(ge=1, le=100)]


class _Body(BaseModel):
    model_config = ConfigDict(extra="forbid")


class ProjectCreate(_Body):
    name: str
    external_key_id: str | None = None
    residency: str | None = None


class ProjectUpdate(_Body):
    name: str | None = None
    external_key_id: str | None = None


class ServiceAccountCreate(_Body):
    name: str
    create_service_account_only: bool = False


class ServiceAccountUpdate(_Body):
    name: str | None = None
    role: Literal["owner", "member"] | None = None


class ServiceAccountKeyCreate(_Body):
    name: str | None = None
    scopes: list[str] | None = None


class AdminKeyCreate(_Body):
    name: str
    expires_in_seconds: int | None = None


class SpendLimitSet(_Body):
    threshold_amount: int = Field(ge=1)
    currency: Literal["USD"] = "USD"
    interval: Literal["month"] = "month"


def _projects(request: Request) -> Projects:
    projects: Projects = request.app.state.projects
    return projects


def _admin_keys(request: Request) -> AdminKeys:
    keys: AdminKeys = request.app.state.admin_keys
    return keys


# Wire shapes.


def project_object(project: Project) -> dict[str, Any]:
    return {
        "id": project.id,
        "object": "organization.project",
        "name": project.name,
        "created_at": project.created_at,
        "archived_at": project.archived_at,
        "status": "archived" if project.archived_at is not None else "active",
        "external_key_id": project.external_key_id,
    }


def _service_account_owner(
    account_id: str, name: str, created_at: int, role: str
) -> dict[str, Any]:
    return {"id": account_id, "name": name, "created_at": created_at, "role": role}


def project_key_object(key: ApiKey, account: ServiceAccount | None = None) -> dict[str, Any]:
    if key.service_account_id is not None:
        owner: dict[str, Any] = {
            "type": "service_account",
            "service_account": _service_account_owner(
                key.service_account_id,
                account.name if account else key.name,
                account.created_at if account else key.created_at,
                account.role if account else "member",
            ),
        }
    else:
        # Limner has no user accounts: a project key belongs to the operator's CLI "user".
        owner = {
            "type": "user",
            "user": {
                "id": "user_operator",
                "name": "Operator",
                "email": None,
                "role": "owner",
                "created_at": key.created_at,
            },
        }
    return {
        "object": "organization.project.api_key",
        "id": key.id,
        "name": key.name,
        "redacted_value": key.redacted_value,
        "created_at": key.created_at,
        "last_used_at": key.last_used_at,
        "expires_at": key.expires_at,
        "owner_project_access": "active",
        "owner": owner,
    }


def service_account_object(account: ServiceAccount) -> dict[str, Any]:
    return {
        "object": "organization.project.service_account",
        "id": account.id,
        "name": account.name,
        "role": account.role,
        "created_at": account.created_at,
    }


def service_account_key_object(key: ApiKey, secret: str) -> dict[str, Any]:
    return {
        "object": "organization.project.service_account.api_key",
        "value": secret,
        "name": key.name,
        "created_at": key.created_at,
        "id": key.id,
    }


def admin_key_object(key: ApiKey) -> dict[str, Any]:
    return {
        "object": "organization.admin_api_key",
        "id": key.id,
        "name": key.name,
        "redacted_value": key.redacted_value,
        "created_at": key.created_at,
        "expires_at": key.expires_at,
        "last_used_at": key.last_used_at,
        "owner": {
            "type": "user",
            "object": "organization.user",
            "id": "user_operator",
            "name": "Operator",
            "created_at": key.created_at,
            "role": "owner",
        },
    }


def spend_limit_object(scope: str, cents: int | None) -> dict[str, Any]:
    return {
        "object": f"{scope}.spend_limit",
        "threshold_amount": cents,
        "currency": "USD",
        "interval": "month",
        "enforcement": {"status": "enforcing" if cents is not None else "inactive"},
    }


def list_object(page: Page[Any], shape: Any) -> dict[str, Any]:
    data = [shape(item) for item in page.items]
    return {
        "object": "list",
        "data": data,
        "first_id": data[0]["id"] if data else None,
        "last_id": data[-1]["id"] if data else None,
        "has_more": page.has_more,
    }


def deleted_object(kind: str, object_id: str) -> dict[str, Any]:
    return {"object": f"{kind}.deleted", "id": object_id, "deleted": True}


# Projects.


@router.get("/projects")
def list_projects(
    request: Request,
    caller: AdminCaller,
    limit: Limit = 20,
    after: str | None = None,
    include_archived: bool = False,
) -> dict[str, Any]:
    page = _projects(request).list(
        caller.organization_id, after=after, limit=limit, include_archived=include_archived
    )
    return list_object(page, project_object)


@router.post("/projects")
def create_project(request: Request, caller: AdminCaller, body: ProjectCreate) -> dict[str, Any]:
    project = _projects(request).create(caller.organization_id, body.name, body.external_key_id)
    return project_object(project)


@router.get("/projects/{project_id}")
def retrieve_project(request: Request, caller: AdminCaller, project_id: str) -> dict[str, Any]:
    return project_object(_projects(request).get(caller.organization_id, project_id))


@router.post("/projects/{project_id}")
def modify_project(
    request: Request, caller: AdminCaller, project_id: str, body: ProjectUpdate
) -> dict[str, Any]:
    project = _projects(request).modify(
        caller.organization_id, project_id, name=body.name, external_key_id=body.external_key_id
    )
    return project_object(project)


@router.post("/projects/{project_id}/archive")
def archive_project(request: Request, caller: AdminCaller, project_id: str) -> dict[str, Any]:
    return project_object(_projects(request).archive(caller.organization_id, project_id))


# Project API keys.


@router.get("/projects/{project_id}/api_keys")
def list_project_keys(
    request: Request,
    caller: AdminCaller,
    project_id: str,
    limit: Limit = 20,
    after: str | None = None,
) -> dict[str, Any]:
    page = _projects(request).list_keys(
        caller.organization_id, project_id, after=after, limit=limit
    )
    return list_object(page, project_key_object)


@router.get("/projects/{project_id}/api_keys/{key_id}")
def retrieve_project_key(
    request: Request, caller: AdminCaller, project_id: str, key_id: str
) -> dict[str, Any]:
    return project_key_object(
        _projects(request).get_key(caller.organization_id, project_id, key_id)
    )


class ProjectKeyUpdate(_Body):
    scopes: list[str] | None = None
    expires_in_seconds: int | None = None


@router.post("/projects/{project_id}/api_keys/{key_id}")
def update_project_key(
    request: Request, caller: AdminCaller, project_id: str, key_id: str, body: ProjectKeyUpdate
) -> dict[str, Any]:
    """Expiry can be set; scopes cannot: Limner keys are not scoped, so a restricted list is
    refused rather than stored and silently ignored. `scopes: []` ("all") is accepted."""
    if body.scopes is None and body.expires_in_seconds is None:
        raise InvalidValue("Provide at least one of `scopes` or `expires_in_seconds`.", None)
    if body.scopes:
        raise InvalidValue(
            "Limner API keys are not scoped: every project key may call every model endpoint. "
            "Send `scopes: []` or leave it out.",
            "scopes",
        )
    projects = _projects(request)
    if body.expires_in_seconds is not None:
        key = projects.expire_key(
            caller.organization_id, project_id, key_id, body.expires_in_seconds
        )
    else:
        key = projects.get_key(caller.organization_id, project_id, key_id)
    return project_key_object(key)


@router.delete("/projects/{project_id}/api_keys/{key_id}")
def delete_project_key(
    request: Request, caller: AdminCaller, project_id: str, key_id: str
) -> dict[str, Any]:
    _projects(request).delete_key(caller.organization_id, project_id, key_id)
    return deleted_object("organization.project.api_key", key_id)


# Service accounts.


@router.get("/projects/{project_id}/service_accounts")
def list_service_accounts(
    request: Request,
    caller: AdminCaller,
    project_id: str,
    limit: Limit = 20,
    after: str | None = None,
) -> dict[str, Any]:
    page = _projects(request).list_service_accounts(
        caller.organization_id, project_id, after=after, limit=limit
    )
    return list_object(page, service_account_object)


@router.post("/projects/{project_id}/service_accounts")
def create_service_account(
    request: Request, caller: AdminCaller, project_id: str, body: ServiceAccountCreate
) -> dict[str, Any]:
    created = _projects(request).create_service_account(
        caller.organization_id,
        project_id,
        body.name,
        with_key=not body.create_service_account_only,
    )
    response = service_account_object(created.account)
    response["api_key"] = (
        service_account_key_object(created.key, created.secret)
        if created.key is not None and created.secret is not None
        else None
    )
    return response


@router.get("/projects/{project_id}/service_accounts/{account_id}")
def retrieve_service_account(
    request: Request, caller: AdminCaller, project_id: str, account_id: str
) -> dict[str, Any]:
    account = _projects(request).get_service_account(caller.organization_id, project_id, account_id)
    return service_account_object(account)


@router.post("/projects/{project_id}/service_accounts/{account_id}")
def modify_service_account(
    request: Request,
    caller: AdminCaller,
    project_id: str,
    account_id: str,
    body: ServiceAccountUpdate,
) -> dict[str, Any]:
    account = _projects(request).modify_service_account(
        caller.organization_id, project_id, account_id, name=body.name, role=body.role
    )
    return service_account_object(account)


@router.delete("/projects/{project_id}/service_accounts/{account_id}")
def delete_service_account(
    request: Request, caller: AdminCaller, project_id: str, account_id: str
) -> dict[str, Any]:
    _projects(request).delete_service_account(caller.organization_id, project_id, account_id)
    return deleted_object("organization.project.service_account", account_id)


@router.post("/projects/{project_id}/service_accounts/{account_id}/api_keys")
def create_service_account_key(
    request: Request,
    caller: AdminCaller,
    project_id: str,
    account_id: str,
    body: ServiceAccountKeyCreate,
) -> dict[str, Any]:
    key, secret = _projects(request).create_service_account_key(
        caller.organization_id, project_id, account_id, body.name
    )
    return service_account_key_object(key, secret)


# Admin API keys.


@router.get("/admin_api_keys")
def list_admin_keys(
    request: Request,
    caller: AdminCaller,
    limit: Limit = 20,
    after: str | None = None,
    order: Literal["asc", "desc"] = "asc",
) -> dict[str, Any]:
    page = _admin_keys(request).list(caller.organization_id, after=after, limit=limit, order=order)
    return list_object(page, admin_key_object)


@router.post("/admin_api_keys")
def create_admin_key(request: Request, caller: AdminCaller, body: AdminKeyCreate) -> dict[str, Any]:
    key, secret = _admin_keys(request).create(
        caller.organization_id, body.name, body.expires_in_seconds
    )
    return {**admin_key_object(key), "value": secret}


@router.get("/admin_api_keys/{key_id}")
def retrieve_admin_key(request: Request, caller: AdminCaller, key_id: str) -> dict[str, Any]:
    return admin_key_object(_admin_keys(request).get(caller.organization_id, key_id))


@router.delete("/admin_api_keys/{key_id}")
def delete_admin_key(request: Request, caller: AdminCaller, key_id: str) -> dict[str, Any]:
    _admin_keys(request).delete(caller.organization_id, key_id)
    return deleted_object("organization.admin_api_key", key_id)


# Spend limits (monthly, US cents).


@router.get("/spend_limit")
def retrieve_org_spend_limit(request: Request, caller: AdminCaller) -> dict[str, Any]:
    organization: Organization = request.app.state.organizations.get(caller.organization_id)
    return spend_limit_object("organization", organization.spend_limit_cents)


@router.post("/spend_limit")
def set_org_spend_limit(
    request: Request, caller: AdminCaller, body: SpendLimitSet
) -> dict[str, Any]:
    organization = request.app.state.organizations.set_spend_limit(
        caller.organization_id, body.threshold_amount
    )
    return spend_limit_object("organization", organization.spend_limit_cents)


@router.delete("/spend_limit")
def delete_org_spend_limit(request: Request, caller: AdminCaller) -> dict[str, Any]:
    request.app.state.organizations.set_spend_limit(caller.organization_id, None)
    return {"object": "organization.spend_limit.deleted", "deleted": True}


@router.get("/projects/{project_id}/spend_limit")
def retrieve_project_spend_limit(
    request: Request, caller: AdminCaller, project_id: str
) -> dict[str, Any]:
    project = _projects(request).get(caller.organization_id, project_id)
    return spend_limit_object("project", project.spend_limit_cents)


@router.post("/projects/{project_id}/spend_limit")
def set_project_spend_limit(
    request: Request, caller: AdminCaller, project_id: str, body: SpendLimitSet
) -> dict[str, Any]:
    project = _projects(request).set_spend_limit(
        caller.organization_id, project_id, body.threshold_amount
    )
    return spend_limit_object("project", project.spend_limit_cents)


@router.delete("/projects/{project_id}/spend_limit")
def delete_project_spend_limit(
    request: Request, caller: AdminCaller, project_id: str
) -> dict[str, Any]:
    _projects(request).set_spend_limit(caller.organization_id, project_id, None)
    return {"object": "project.spend_limit.deleted", "deleted": True}


# Project rate limits: one row per model the organization's tier has limits for.


class RateLimitUpdate(_Body):
    max_requests_per_1_minute: int | None = None
    max_tokens_per_1_minute: int | None = None
    max_images_per_1_minute: int | None = None
    max_audio_megabytes_per_1_minute: int | None = None
    max_requests_per_1_day: int | None = None
    batch_1_day_max_input_tokens: int | None = None


def rate_limit_object(model: str, limits: ModelLimits) -> dict[str, Any]:
    return {
        "object": "project.rate_limit",
        "id": f"rl-{model}",
        "model": model,
        "max_requests_per_1_minute": limits.requests_per_minute,
        "max_tokens_per_1_minute": limits.tokens_per_minute,
        "max_images_per_1_minute": limits.images_per_minute,
    }


def _limited_models(request: Request, caller: Caller) -> list[str]:
    catalog: Catalog = request.app.state.catalog
    book: TierBook = request.app.state.tiers
    tiers = book.table()
    return [e.id for e in catalog.entries() if tiers.model_limits(e.id, caller.tier) is not None]


@router.get("/projects/{project_id}/rate_limits")
def list_project_rate_limits(
    request: Request,
    caller: AdminCaller,
    project_id: str,
    limit: Annotated[int, Query(ge=1, le=100)] = 100,
    after: str | None = None,
) -> dict[str, Any]:
    _projects(request).get(caller.organization_id, project_id)
    meter: Meter = request.app.state.meter
    rows = [
        rate_limit_object(model, meter.project_limits(project_id, model, caller.tier))
        for model in _limited_models(request, caller)
    ]
    if after is not None:
        ids = [row["id"] for row in rows]
        rows = rows[ids.index(after) + 1 :] if after in ids else []
    return list_object(Page(rows[:limit], len(rows) > limit), dict)


@router.post("/projects/{project_id}/rate_limits/{rate_limit_id}")
def update_project_rate_limit(
    request: Request,
    caller: AdminCaller,
    project_id: str,
    rate_limit_id: str,
    body: RateLimitUpdate,
) -> dict[str, Any]:
    _projects(request).get(caller.organization_id, project_id)
    model = rate_limit_id.removeprefix("rl-").removeprefix("rl_")
    if model not in _limited_models(request, caller):
        raise RateLimitNotSet(model)
    meter: Meter = request.app.state.meter
    limits = meter.set_project_limits(
        project_id,
        model,
        caller.tier,
        requests_per_minute=body.max_requests_per_1_minute,
        tokens_per_minute=body.max_tokens_per_1_minute,
        images_per_minute=body.max_images_per_1_minute,
    )
    return rate_limit_object(model, limits)


# Usage and costs read-outs.


def _query(request: Request) -> dict[str, list[str]]:
    """Every query parameter with all its values: `k[]=v` (the SDK) and repeated `k=v` alike."""
    values: dict[str, list[str]] = {}
    for name, value in request.query_params.multi_items():
        values.setdefault(name, []).append(value)
    return values


@router.get("/usage/images")
def usage_images(request: Request, caller: AdminCaller) -> dict[str, Any]:
    database: Database = request.app.state.database
    with database.transaction() as session:
        return reports.usage_images(
            session, caller.organization_id, _query(request), int(time.time())
        )


@router.get("/costs")
def costs(request: Request, caller: AdminCaller) -> dict[str, Any]:
    database: Database = request.app.state.database
    with database.transaction() as session:
        prices = load_prices(session)
        return reports.costs(
            session, caller.organization_id, _query(request), prices, int(time.time())
        )
