"""The one place a request meets the platform's money and limits: admit, deliver, release.

    admitted = meter.admit(charge)      # budgets, then rate limits; raises before any compute
    ... generate ...
    meter.deliver(admitted, request_id) # one usage record per admission; billed once
    meter.release(admitted)             # failed, moderated or cancelled: tokens and images back

Budgets are checked in the order OpenAI documents (tier usage limit, organization spend limit,
project spend limit) against this month's recorded spend plus this request's exact cost, so a
request that would cross a limit is refused before it is generated. Rate limits take every
quota of the request at once (organization and project; requests, tokens, images) or none.
"""

import dataclasses
import time
from dataclasses import dataclass

from sqlalchemy import Connection, and_, bindparam, func, select, update
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
from limner.ids import MAX_REQUEST_ID_LENGTH, new_id
from limner.metering.ledger import Delivery, month_start, record_delivery
from limner.metering.limits import (
    Admission,
    Quota,
    RateLimiter,
    rate_limit_headers,
    refusal_message,
)
from limner.metering.pricing import Cost, PriceTable, format_usd, load_prices
from limner.metering.tiers import TIER_NAMES, ModelLimits, TierBook, TierTable
from limner.storage.db import Database, core_table
from limner.storage.tables import (
    Organization,
    Project,
    ProjectRateLimit,
    SpendTotal,
    UsageRecord,
)

_NANO_PER_CENT = 10_000_000
PRICE_REFRESH_SECONDS = 5

_organizations = core_table(Organization)
_projects = core_table(Project)
_overrides_table = core_table(ProjectRateLimit)
_spend = core_table(SpendTotal)
_usage = core_table(UsageRecord)
_organization_spend = _spend.alias("organization_spend")
_project_spend = _spend.alias("project_spend")

# Built once: a statement object memoizes its cache key, so each request only binds values.
_ADMISSION = (
    select(
        _organizations.c.tier,
        _organizations.c.spend_limit_cents.label("organization_limit_cents"),
        _projects.c.spend_limit_cents.label("project_limit_cents"),
        _overrides_table.c.max_requests_per_1_minute,
        _overrides_table.c.max_tokens_per_1_minute,
        _overrides_table.c.max_images_per_1_minute,
        _organization_spend.c.amount.label("organization_spend"),
        _project_spend.c.amount.label("project_spend"),
    )
    .select_from(
        _projects.join(_organizations, _organizations.c.id == _projects.c.organization_id)
        .outerjoin(
            _overrides_table,
            and_(
                _overrides_table.c.project_id == _projects.c.id,
                _overrides_table.c.model == bindparam("model"),
            ),
        )
        .outerjoin(
            _organization_spend,
            and_(
                _organization_spend.c.organization_id == _organizations.c.id,
                _organization_spend.c.project_id == "",
                _organization_spend.c.month == bindparam("month"),
            ),
        )
        .outerjoin(
            _project_spend,
            and_(
                _project_spend.c.organization_id == _organizations.c.id,
                _project_spend.c.project_id == _projects.c.id,
                _project_spend.c.month == bindparam("month"),
            ),
        )
    )
    .where(_projects.c.id == bindparam("project_id"))
)

# What tier qualification needs, in one query: everything paid (the organization's monthly
# totals), and when it first paid (its first usage record on or after its first month).
_organization_totals = (
    _spend.c.organization_id == bindparam("organization_id"),
    _spend.c.project_id == "",
)
_first_month = select(func.min(_spend.c.month)).where(*_organization_totals).scalar_subquery()
_TIER_PROGRESS = select(
    _organizations.c.tier,
    select(func.coalesce(func.sum(_spend.c.amount), 0))
    .where(*_organization_totals)
    .scalar_subquery()
    .label("paid"),
    select(func.min(_usage.c.created_at))
    .where(
        _usage.c.organization_id == bindparam("organization_id"),
        _usage.c.created_at >= func.coalesce(_first_month, 0),
    )
    .scalar_subquery()
    .label("first_paid"),
).where(_organizations.c.id == bindparam("organization_id"))
# Only ever upwards: guarded in SQL too, so that two deliveries deciding at once on different
# snapshots cannot bring a tier back down.
_RAISE_TIER = (
    update(_organizations)
    .where(
        _organizations.c.id == bindparam("organization_id"),
        _organizations.c.tier.in_(bindparam("lower_tiers", expanding=True)),
    )
    .values(tier=bindparam("tier"))
)


@dataclass(frozen=True)
class Charge:
    """What one request will use, known exactly before it is generated."""

    organization_id: str
    project_id: str
    api_key_id: str
    tier: str
    model: str
    source: str  # one of metering.reports.SOURCES
    size: str
    quality: str
    images: int
    text_input_tokens: int
    image_input_tokens: int
    image_output_tokens: int

    @property
    def tokens(self) -> int:
        return self.text_input_tokens + self.image_input_tokens + self.image_output_tokens


# Limner's addition to an image response: what the request is billed once delivered (exact:
# the price is fixed at admission), so a client shows the price without the admin API.
COST_HEADER = "x-limner-cost-usd"


@dataclass(frozen=True)
class Admitted:
    charge: Charge
    cost: Cost
    quotas: tuple[Quota, ...]
    # x-ratelimit-* values for the response.
    headers: dict[str, str]
    # The ledger's once-only key for this admission.
    delivery_id: str = dataclasses.field(default_factory=lambda: new_id("dlv_"))


class Meter:
    def __init__(self, database: Database, tiers: TierBook, limiter: RateLimiter) -> None:
        self._database = database
        self._tiers = tiers
        self._limiter = limiter
        self._price_cache: tuple[int, PriceTable] | None = None

    def admit(self, charge: Charge, now: int | None = None) -> Admitted:
        now = int(time.time()) if now is None else now
        # Core on one pooled connection rather than an ORM Session: this runs on every request,
        # and the Session's bookkeeping cost more than the one query it wraps.
        with self._database.read() as connection:
            prices = self._prices(connection, now)
            # The organization, the project, its own limits for this model and this month's
            # spend of both: one query, never cached, so the operator's changes and every
            # process's deliveries count from the very next request.
            found = connection.execute(
                _ADMISSION,
                {"project_id": charge.project_id, "model": charge.model, "month": month_start(now)},
            ).first()
        if found is None:
            raise LookupError("the caller's project is gone")
        cost = prices.cost(
            charge.model,
            text_input_tokens=charge.text_input_tokens,
            image_input_tokens=charge.image_input_tokens,
            image_output_tokens=charge.image_output_tokens,
            images=charge.images,
            quality=charge.quality,
            size=charge.size,
        )
        tiers = self._tiers.table()
        _check_budgets(
            tiers,
            cost,
            Budget(
                tier=found.tier,
                organization_limit_cents=found.organization_limit_cents,
                organization_spend=int(found.organization_spend or 0),
                project_id=charge.project_id,
                project_limit_cents=found.project_limit_cents,
                project_spend=int(found.project_spend or 0),
            ),
        )
        organization_limits = _organization_limits(tiers, charge.model, charge.tier)
        project_limits = _project_limits(
            organization_limits,
            found.max_requests_per_1_minute,
            found.max_tokens_per_1_minute,
            found.max_images_per_1_minute,
        )
        quotas = _quotas(charge, organization_limits, project_limits)
        admission = self._limiter.acquire(quotas)
        headers = rate_limit_headers(admission)
        if not admission.admitted:
            raise _refusal(admission, charge, headers)
        return Admitted(charge, cost, quotas, {**headers, COST_HEADER: format_usd(cost.total)})

    def _advance_tier(self, connection: Connection, organization_id: str, now: int) -> None:
        """Tiers rise on their own once an organization has paid enough for long enough (what
        it was billed counts as paid here); they never fall, and the operator may set any."""
        found = connection.execute(_TIER_PROGRESS, {"organization_id": organization_id}).first()
        if found is None:
            return
        days = (now - (found.first_paid or now)) / 86_400
        earned = self._tiers.table().qualifying_tier(int(found.paid or 0), days)
        rank = TIER_NAMES.index(earned)
        if rank > TIER_NAMES.index(found.tier):
            connection.execute(
                _RAISE_TIER,
                {
                    "organization_id": organization_id,
                    "tier": earned,
                    "lower_tiers": list(TIER_NAMES[:rank]),
                },
            )

    def _prices(self, connection: Connection, now: int) -> PriceTable:
        """The price table, re-read from the database at most every few seconds: operator
        changes reach every process within PRICE_REFRESH_SECONDS without a query per request."""
        cached = self._price_cache
        if cached is None or now - cached[0] >= PRICE_REFRESH_SECONDS:
            cached = (now, load_prices(connection))
            self._price_cache = cached
        return cached[1]

    def deliver(self, admitted: Admitted, request_id: str, now: int | None = None) -> bool:
        """Record the delivered request; False when this admission was already billed.
        `request_id` is kept for tracing (cut to the column's length)."""
        charge = admitted.charge
        delivery = Delivery(
            delivery_id=admitted.delivery_id,
            request_id=request_id[:MAX_REQUEST_ID_LENGTH],
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
        with self._database.begin() as connection:
            recorded = record_delivery(connection, delivery, admitted.cost, now)
            if recorded and charge.tier != TIER_NAMES[-1]:
                self._advance_tier(connection, charge.organization_id, now)
            return recorded

    def release(self, admitted: Admitted) -> None:
        """Nothing was delivered: give back its tokens and images. The request itself still
        counts, as OpenAI counts failed requests against the per-minute request limit."""
        self._limiter.refund([q for q in admitted.quotas if q.measure != "requests"])

    def project_limits(self, project_id: str, model: str, tier: str) -> ModelLimits:
        """A project's effective limits for `model`: its own where set, else the tier's."""
        organization_limits = _organization_limits(self._tiers.table(), model, tier)
        with self._database.transaction() as session:
            row = _overrides(session, project_id, model)
            return _project_limits(organization_limits, *_own_limits(row))

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
        organization_limits = _organization_limits(self._tiers.table(), model, tier)
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
            return _project_limits(organization_limits, *_own_limits(row))


@dataclass(frozen=True)
class Budget:
    """What the budget checks read: the limits in force and this month's spend so far."""

    tier: str  # the organization's tier as stored now, not as the key saw it
    organization_limit_cents: int | None
    organization_spend: int  # nano-dollars
    project_id: str
    project_limit_cents: int | None
    project_spend: int  # nano-dollars


def _check_budgets(tiers: TierTable, cost: Cost, budget: Budget) -> None:
    org_spend = budget.organization_spend
    if org_spend + cost.total > tiers.usage_limit_nano(budget.tier):
        limit = tiers.tiers[budget.tier].usage_limit_usd
        raise OrganizationUsageLimitExceeded(
            f"Your organization reached its monthly usage limit of ${limit} for tier "
            f"{budget.tier}. Ask the operator of this server for a higher tier."
        )
    if (
        budget.organization_limit_cents is not None
        and org_spend + cost.total > budget.organization_limit_cents * _NANO_PER_CENT
    ):
        raise OrganizationSpendLimitExceeded(
            "You exceeded your organization's monthly spend limit of "
            f"{_dollars(budget.organization_limit_cents)}. Raise or remove the limit "
            "(/v1/organization/spend_limit), or wait for the month to roll over."
        )
    if (
        budget.project_limit_cents is not None
        and budget.project_spend + cost.total > budget.project_limit_cents * _NANO_PER_CENT
    ):
        project_limit = _dollars(budget.project_limit_cents)
        raise ProjectSpendLimitExceeded(
            f"You exceeded the monthly spend limit of {project_limit} of project "
            f"{budget.project_id}. Raise or remove the limit, or wait for the month to roll over."
        )


def _organization_limits(tiers: TierTable, model: str, tier: str) -> ModelLimits:
    limits = tiers.model_limits(model, tier)
    if limits is None:
        raise RateLimitNotSet(model)
    return limits


def _quotas(
    charge: Charge, organization_limits: ModelLimits, project_limits: ModelLimits
) -> tuple[Quota, ...]:
    quotas: list[Quota] = []
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


def _own_limits(row: ProjectRateLimit | None) -> tuple[int | None, int | None, int | None]:
    if row is None:
        return (None, None, None)
    return (
        row.max_requests_per_1_minute,
        row.max_tokens_per_1_minute,
        row.max_images_per_1_minute,
    )


def _project_limits(
    organization: ModelLimits, requests: int | None, tokens: int | None, images: int | None
) -> ModelLimits:
    """A project's own limits (None: inherited), never above its organization's."""

    def lower(own: int | None, inherited: int) -> int:
        return inherited if own is None else min(own, inherited)

    return ModelLimits(
        lower(requests, organization.requests_per_minute),
        lower(tokens, organization.tokens_per_minute),
        lower(images, organization.images_per_minute),
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
