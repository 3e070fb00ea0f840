"""Limner's moderation extension under /v1/limner: each organization's policy, and the decision
log (every allowed or refused check with its request id). Operator admin keys only."""

import time
from typing import Any

from fastapi import APIRouter, Query, Request

from limner.accounts.orgs import Organizations
from limner.api.deps import OperatorCaller
from limner.errors import InvalidRequest
from limner.moderation.decisions import DecisionLog
from limner.moderation.policy import PolicyBook

router = APIRouter(prefix="/v1/limner", tags=["operator"])


def _turned_off() -> InvalidRequest:
    return InvalidRequest(
        "Moderation is turned off on this server (LIMNER_MODERATION=false); there is no "
        "policy or decision log."
    )


def _policies(request: Request) -> PolicyBook:
    policies: PolicyBook | None = request.app.state.moderation_policies
    if policies is None:
        raise _turned_off()
    return policies


def _decisions(request: Request) -> DecisionLog:
    decisions: DecisionLog | None = request.app.state.moderation_decisions
    if decisions is None:
        raise _turned_off()
    return decisions


def _policy_object(policies: PolicyBook, organization_id: str) -> dict[str, Any]:
    return {
        "object": "limner.moderation_policy",
        "organization_id": organization_id,
        "changes": policies.changes(organization_id),
        "policy": policies.policy(organization_id).model_dump(mode="json"),
    }


@router.get("/organizations/{organization_id}/moderation")
def retrieve_moderation_policy(
    request: Request, _caller: OperatorCaller, organization_id: str
) -> dict[str, Any]:
    organizations: Organizations = request.app.state.organizations
    organizations.get(organization_id)  # 404 for an unknown organization
    return _policy_object(_policies(request), organization_id)


@router.put("/organizations/{organization_id}/moderation")
def update_moderation_policy(
    request: Request, _caller: OperatorCaller, organization_id: str, changes: dict[str, Any]
) -> dict[str, Any]:
    """Replace the organization's changes to the operator's policy ({} restores it)."""
    organizations: Organizations = request.app.state.organizations
    organizations.get(organization_id)
    policies = _policies(request)
    policies.save(organization_id, changes, int(time.time()))
    return _policy_object(policies, organization_id)


@router.get("/moderation/decisions")
def list_moderation_decisions(
    request: Request,
    _caller: OperatorCaller,
    request_id: str | None = None,
    organization_id: str | None = None,
    limit: int = Query(default=100, ge=1, le=1000),
) -> dict[str, Any]:
    decisions = _decisions(request)
    if request_id is not None:
        data = decisions.for_request(request_id)
        if organization_id is not None:
            data = [d for d in data if d["organization_id"] == organization_id]
    else:
        data = decisions.recent(organization_id, limit)
    return {"object": "list", "data": data}
