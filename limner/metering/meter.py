"""The one place a request meets the platform's money and limits: admit, deliver, release.

    admitted = meter.admit(charge)      # budgets, then rate limits; raises before any compute
    ... generate ...
    meter.deliver(admitted, request_id) # one usage record; billed once
    meter.release(admitted)             # failed, moderated or cancelled: tokens and images back

Budgets are checked in the order OpenAI documents (tier usage limit, organization spend limit,
project spend limit) against this month's recorded spend plus this request's exact cost, so a
request that would cross a limit is refused before it is generated. Rate limits take every
quota of the request at once (organization and project; requests, tokens, images) or none.
"""

import time
from dataclasses import dataclass

from sqlalchemy import func, select
from sqlalchemy.orm import Session

from limner.errors import (
    InvalidValue,
    OrganizationSpendLimitExceeded,
    OrganizationUsageLimitExceeded,
    ProjectSpendLimitExceeded,
    RateLimited,
    RateLimitNotSet,
    TokensRateLimited,
)
from limner.metering.ledger import Delivery, month_spend, month_start, record_delivery
from limner.metering.limits import (
    Admission,
    Quota,
    RateLimiter,
    rate_limit_headers,
    refusal_message,
)
from limner.metering.pricing import Cost, PriceTable, load_prices
from limner.metering.tiers import TIER_NAMES, ModelLimits, TierBook
from limner.storage.db import Database
from limner.storage.tables import (
    Organization,
    Project,
    ProjectRateLimit,
    SpendTotal,
    UsageRecord,
)

_NANO_PER_CENT = 10_000_000
PRICE_REFRESH_SECONDS = 5


@dataclass(frozen=True)
class Charge:
    """What one request will use, known exactly before it is generated."""

    organization_id: str
    project_id: str
    api_key_id: str
    tier: str
    model: str
    source: str  # image.generation | image.edit | image.variation
    size: str
    quality: str
    images: int
    text_input_tokens: int
    image_input_tokens: int
    image_output_tokens: int

    @property
    def tokens(self) -> int:
        return self.text_input_tokens + self.image_input_tokens + self.image_output_tokens


@dataclass(frozen=True)
class Admitted:
    charge: Charge
    cost: Cost
    quotas: tuple[Quota, ...]
    # x-ratelimit-* values for the response.
    headers: dict[str, str]


class Meter:
    def __init__(self, database: Database, tiers: TierBook, limiter: RateLimiter) -> None:
        self._database = database
        self._tiers = tiers
        self._limiter = limiter
        self._price_cache: tuple[int, PriceTable] | None = None

    def admit(self, charge: Charge, now: int | None = None) -> Admitted:
        now = int(time.time()) if now is None else now
        with self._database.transaction() as session:
            cost = self._prices(session, now).cost(
                charge.model,
                text_input_tokens=charge.text_input_tokens,
                image_input_tokens=charge.image_input_tokens,
                image_output_tokens=charge.image_output_tokens,
                images=charge.images,
                quality=charge.quality,
                size=charge.size,
            )
            # The organization, the project and its own limits for this model: one query.
            found = session.execute(
                select(Organization, Project, ProjectRateLimit)
                .join(Organization, Organization.id == Project.organization_id)
                .outerjoin(
                    ProjectRateLimit,
                    (ProjectRateLimit.project_id == Project.id)
                    & (ProjectRateLimit.model == charge.model),
                )
                .where(Project.id == charge.project_id)
            ).first()
            if found is None:
                raise LookupError("the caller's project is gone")
            organization, project, overrides = found
            self._check_budgets(session, cost, organization, project, now)
        quotas = self._quotas(charge, overrides)
        admission = self._limiter.acquire(quotas)
        headers = rate_limit_headers(admission)
        if not admission.admitted:
            raise _refusal(admission, charge, headers)
        return Admitted(charge, cost, quotas, headers)

    def _advance_tier(self, session: Session, organization_id: str, now: int) -> None:
        """Tiers rise on their own once an organization has paid enough for long enough (what
        it was billed counts as paid here); they never fall, and the operator may set any."""
        paid, first = session.execute(
            select(func.coalesce(func.sum(SpendTotal.amount), 0), func.min(SpendTotal.month)).where(
                SpendTotal.organization_id == organization_id, SpendTotal.project_id == ""
            )
        ).one()
        first_paid = session.scalar(
            select(func.min(UsageRecord.created_at)).where(
                UsageRecord.organization_id == organization_id,
                UsageRecord.created_at >= (first or 0),
            )
        )
        days = (now - (first_paid or now)) / 86_400
        earned = self._tiers.table().qualifying_tier(int(paid or 0), days)
        organization = session.get(Organization, organization_id)
        if organization is not None and TIER_NAMES.index(earned) > TIER_NAMES.index(
            organization.tier
        ):
            organization.tier = earned

    def _prices(self, session: Session, now: int) -> PriceTable:
        """The price table, re-read from the database at most every few seconds: operator
        changes reach every process within PRICE_REFRESH_SECONDS without a query per request."""
        cached = self._price_cache
        if cached is None or now - cached[0] >= PRICE_REFRESH_SECONDS:
            cached = (now, load_prices(session))
            self._price_cache = cached
        return cached[1]

    def deliver(self, admitted: Admitted, request_id: str, now: int | None = None) -> bool:
        """Record the delivered request; False when this request id was already billed."""
        charge = admitted.charge
        delivery = Delivery(
            request_id=request_id,
            organization_id=charge.organization_id,
            project_id=charge.project_id,
            api_key_id=charge.api_key_id,
            model=charge.model,
            source=charge.source,
            size=charge.size,
            quality=charge.quality,
            images=charge.images,
            text_input_tokens=charge.text_input_tokens,
            image_input_tokens=charge.image_input_tokens,
            image_output_tokens=charge.image_output_tokens,
        )
        now = int(time.time()) if now is None else now
        with self._database.transaction() as session:
            recorded = record_delivery(session, delivery, admitted.cost, now)
            if recorded and charge.tier != TIER_NAMES[-1]:
                self._advance_tier(session, charge.organization_id, now)
            return recorded

    def release(self, admitted: Admitted) -> None:
        """Nothing was delivered: give back its tokens and images. The request itself still
        counts, as OpenAI counts failed requests against the per-minute request limit."""
        self._limiter.refund([q for q in admitted.quotas if q.measure != "requests"])

    def project_limits(self, project_id: str, model: str, tier: str) -> ModelLimits:
        """A project's effective limits for `model`: its own where set, else the tier's."""
        organization_limits = self._organization_limits(model, tier)
        with self._database.transaction() as session:
            return _project_limits(organization_limits, _overrides(session, project_id, model))

    def set_project_limits(
        self,
        project_id: str,
        model: str,
        tier: str,
        *,
        requests_per_minute: int | None = None,
        tokens_per_minute: int | None = None,
        images_per_minute: int | None = None,
    ) -> ModelLimits:
        organization_limits = self._organization_limits(model, tier)
        wanted = {
            "max_requests_per_1_minute": (
                requests_per_minute,
                organization_limits.requests_per_minute,
            ),
            "max_tokens_per_1_minute": (tokens_per_minute, organization_limits.tokens_per_minute),
            "max_images_per_1_minute": (images_per_minute, organization_limits.images_per_minute),
        }
        for field, (value, ceiling) in wanted.items():
            if value is not None and not 1 <= value <= ceiling:
                raise InvalidValue(
                    f"{field} must be between 1 and the organization's limit of {ceiling}.", field
                )
        with self._database.transaction() as session:
            row = _overrides(session, project_id, model)
            if row is None:
                row = ProjectRateLimit(project_id=project_id, model=model)
                session.add(row)
            for field, (value, _ceiling) in wanted.items():
                if value is not None:
                    setattr(row, field, value)
            return _project_limits(organization_limits, row)

    def _organization_limits(self, model: str, tier: str) -> ModelLimits:
        limits = self._tiers.table().model_limits(model, tier)
        if limits is None:
            raise RateLimitNotSet(model)
        return limits

    def _check_budgets(
        self,
        session: Session,
        cost: Cost,
        organization: Organization,
        project: Project,
        now: int,
    ) -> None:
        month = month_start(now)
        org_spend = month_spend(session, month, organization_id=organization.id)
        tiers = self._tiers.table()
        if org_spend + cost.total > tiers.usage_limit_nano(organization.tier):
            limit = tiers.tiers[organization.tier].usage_limit_usd
            raise OrganizationUsageLimitExceeded(
                f"Your organization reached its monthly usage limit of ${limit} for tier "
                f"{organization.tier}. Ask the operator of this server for a higher tier."
            )
        if (
            organization.spend_limit_cents is not None
            and org_spend + cost.total > organization.spend_limit_cents * _NANO_PER_CENT
        ):
            raise OrganizationSpendLimitExceeded(
                "You exceeded your organization's monthly spend limit of "
                f"{_dollars(organization.spend_limit_cents)}. Raise or remove the limit "
                "(/v1/organization/spend_limit), or wait for the month to roll over."
            )
        if project.spend_limit_cents is not None:
            project_spend = month_spend(
                session, month, organization_id=organization.id, project_id=project.id
            )
            if project_spend + cost.total > project.spend_limit_cents * _NANO_PER_CENT:
                project_limit = _dollars(project.spend_limit_cents)
                raise ProjectSpendLimitExceeded(
                    f"You exceeded the monthly spend limit of {project_limit} of project "
                    f"{project.id}. Raise or remove the limit, or wait for the month to roll over."
                )

    def _quotas(self, charge: Charge, overrides: ProjectRateLimit | None) -> tuple[Quota, ...]:
        organization_limits = self._organization_limits(charge.model, charge.tier)
        project_limits = _project_limits(organization_limits, overrides)
        quotas = []
        for scope, limits in (
            (f"{charge.organization_id}/{charge.model}", organization_limits),
            (f"{charge.project_id}/{charge.model}", project_limits),
        ):
            quotas += [
                Quota(scope, "requests", limits.requests_per_minute, 1),
                Quota(scope, "tokens", limits.tokens_per_minute, charge.tokens),
                Quota(scope, "images", limits.images_per_minute, charge.images),
            ]
        return tuple(quotas)


def _overrides(session: Session, project_id: str, model: str) -> ProjectRateLimit | None:
    return session.scalar(
        select(ProjectRateLimit).where(
            ProjectRateLimit.project_id == project_id, ProjectRateLimit.model == model
        )
    )


def _project_limits(organization: ModelLimits, overrides: ProjectRateLimit | None) -> ModelLimits:
    """A project's own limits, never above its organization's."""
    if overrides is None:
        return organization

    def lower(own: int | None, inherited: int) -> int:
        return inherited if own is None else min(own, inherited)

    return ModelLimits(
        lower(overrides.max_requests_per_1_minute, organization.requests_per_minute),
        lower(overrides.max_tokens_per_1_minute, organization.tokens_per_minute),
        lower(overrides.max_images_per_1_minute, organization.images_per_minute),
    )


def _refusal(admission: Admission, charge: Charge, headers: dict[str, str]) -> RateLimited:
    blocking = admission.blocking
    assert blocking is not None
    scope_name = charge.organization_id
    if blocking.scope.startswith(charge.project_id):
        scope_name = f"{charge.organization_id} (project {charge.project_id})"
    message = refusal_message(blocking, admission.retry_after, scope_name, charge.model)
    error_type = TokensRateLimited if blocking.measure == "tokens" else RateLimited
    if admission.retry_after is None:
        # It can never fit: retrying is pointless, so the SDK is told not to.
        return error_type(message, headers={**headers, "x-should-retry": "false"})
    return error_type(message, headers=headers)


def _dollars(cents: int) -> str:
    return f"${cents // 100}.{cents % 100:02d}"
