"""Limner's own operator extension under /v1/limner: organizations, their verification and
tier, and project keys (which OpenAI mints only in its dashboard). Only admin keys of the
operator's organization may call it; `limner orgs|projects|keys` in the CLI do the same."""

import time
from typing import Any

from fastapi import APIRouter, Request
from pydantic import BaseModel, ConfigDict

from limner.accounts.orgs import AdminKeys, Organizations, Projects
from limner.api.admin import admin_key_object, project_key_object
from limner.api.deps import AdminCaller, OperatorCaller
from limner.metering.pricing import load_prices, save_price_overrides
from limner.metering.tiers import TierBook
from limner.storage.db import Database
from limner.storage.tables import Organization

router = APIRouter(prefix="/v1/limner", tags=["operator"])


class _Body(BaseModel):
    model_config = ConfigDict(extra="forbid")


class OrganizationCreate(_Body):
    name: str
    verified: bool | None = None
    tier: str | None = None


class OrganizationUpdate(_Body):
    verified: bool | None = None
    tier: str | None = None


class ProjectKeyCreate(_Body):
    name: str


class TierDocument(_Body):
    tiers: dict[str, Any]
    limits: dict[str, Any]


class PriceOverrides(_Body):
    # model name → {"per_million_tokens": {...}} or {"per_image": {quality: {size: price}}};
    # prices as strings ("5.00"), never floats, so they convert exactly.
    models: dict[str, Any]


def organization_object(organization: Organization) -> dict[str, Any]:
    return {
        "object": "limner.organization",
        "id": organization.id,
        "name": organization.name,
        "verified": organization.verified_at is not None,
        "verified_at": organization.verified_at,
        "tier": organization.tier,
        "is_operator": organization.is_operator,
        "spend_limit_cents": organization.spend_limit_cents,
        "created_at": organization.created_at,
    }


def _organizations(request: Request) -> Organizations:
    organizations: Organizations = request.app.state.organizations
    return organizations


@router.get("/organization")
def own_organization(request: Request, caller: AdminCaller) -> dict[str, Any]:
    """An admin key's own organization: its verification and usage tier (the console's
    account page; OpenAI's API has no such call)."""
    return organization_object(_organizations(request).get(caller.organization_id))


@router.get("/organizations")
def list_organizations(request: Request, _caller: OperatorCaller) -> dict[str, Any]:
    data = [organization_object(o) for o in _organizations(request).list()]
    return {"object": "list", "data": data}


@router.post("/organizations")
def create_organization(
    request: Request, _caller: OperatorCaller, body: OrganizationCreate
) -> dict[str, Any]:
    """The new organization, its Default project and its first admin key (shown once)."""
    organization = _organizations(request).create(body.name, verified=body.verified, tier=body.tier)
    admin_keys: AdminKeys = request.app.state.admin_keys
    key, secret = admin_keys.create(organization.id, "first admin key")
    projects: Projects = request.app.state.projects
    default = projects.default_project(organization.id)
    return {
        **organization_object(organization),
        "default_project_id": default.id,
        "admin_api_key": {**admin_key_object(key), "value": secret},
    }


@router.get("/organizations/{organization_id}")
def retrieve_organization(
    request: Request, _caller: OperatorCaller, organization_id: str
) -> dict[str, Any]:
    return organization_object(_organizations(request).get(organization_id))


@router.post("/organizations/{organization_id}")
def modify_organization(
    request: Request, _caller: OperatorCaller, organization_id: str, body: OrganizationUpdate
) -> dict[str, Any]:
    organizations = _organizations(request)
    if body.verified is not None:
        organizations.set_verified(organization_id, body.verified)
    if body.tier is not None:
        organizations.set_tier(organization_id, body.tier)
    return organization_object(organizations.get(organization_id))


@router.post("/organizations/{organization_id}/projects/{project_id}/api_keys")
def create_project_key(
    request: Request,
    _caller: OperatorCaller,
    organization_id: str,
    project_id: str,
    body: ProjectKeyCreate,
) -> dict[str, Any]:
    projects: Projects = request.app.state.projects
    key, secret = projects.create_key(organization_id, project_id, body.name)
    return {**project_key_object(key), "value": secret}


@router.get("/prices")
def get_prices(request: Request, _caller: OperatorCaller) -> dict[str, Any]:
    """The price table in force: packaged defaults merged with the operator's overrides."""
    database: Database = request.app.state.database
    with database.transaction() as session:
        return {"object": "limner.prices", "models": load_prices(session).to_mapping()}


@router.put("/prices")
def put_prices(request: Request, _caller: OperatorCaller, body: PriceOverrides) -> dict[str, Any]:
    """Replace the operator's overrides (per model); models left out return to the defaults.
    Requests delivered from now on are priced with them; recorded costs never change."""
    database: Database = request.app.state.database
    with database.transaction() as session:
        table = save_price_overrides(session, body.models, int(time.time()))
        return {"object": "limner.prices", "models": table.to_mapping()}


@router.get("/tiers")
def get_tiers(request: Request, _caller: OperatorCaller) -> dict[str, Any]:
    """The tier table in force: qualification, monthly usage limits, limits per model."""
    book: TierBook = request.app.state.tiers
    return {"object": "limner.tiers", **book.table().to_mapping()}


@router.put("/tiers")
def put_tiers(request: Request, _caller: OperatorCaller, body: TierDocument) -> dict[str, Any]:
    """Replace the whole table (the TOML file's structure as JSON); every process uses it
    within a few seconds."""
    book: TierBook = request.app.state.tiers
    table = book.save(body.model_dump(), int(time.time()))
    return {"object": "limner.tiers", **table.to_mapping()}


@router.delete("/tiers")
def delete_tiers(request: Request, _caller: OperatorCaller) -> dict[str, Any]:
    """Back to the file's table (LIMNER_TIERS or the packaged default)."""
    book: TierBook = request.app.state.tiers
    return {"object": "limner.tiers", **book.reset().to_mapping()}
