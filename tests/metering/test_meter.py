"""The meter on a real database and the in-process limiter: budgets in OpenAI's order, exact
costs, quotas taken all at once, failures given back, deliveries billed once."""

import pytest
from sqlalchemy import func, select

from limner.accounts.orgs import OPERATOR_PROJECT_ID, Organizations, Projects
from limner.errors import (
    InvalidValue,
    OrganizationSpendLimitExceeded,
    OrganizationUsageLimitExceeded,
    ProjectSpendLimitExceeded,
    RateLimited,
    RateLimitNotSet,
    TokensRateLimited,
)
from limner.metering.ledger import Delivery, record_delivery
from limner.metering.limits import MemoryRateLimiter
from limner.metering.meter import Charge, Meter
from limner.metering.pricing import Cost
from limner.metering.tiers import TierBook, TierTable
from limner.storage.db import Database
from limner.storage.tables import UsageRecord

NOW = 1_780_000_000


def _charge(organization: str, project: str, tier: str = "1", **changes: object) -> Charge:
    values: dict[str, object] = {
        "organization_id": organization,
        "project_id": project,
        "api_key_id": "key_test",
        "tier": tier,
        "model": "gpt-image-1",
        "source": "image.generation",
        "size": "1024x1024",
        "quality": "low",
        "images": 1,
        "text_input_tokens": 10,
        "image_input_tokens": 0,
        "image_output_tokens": 272,
    }
    values.update(changes)
    return Charge(**values)  # type: ignore[arg-type]


def _setup(database: Database, tier: str = "1") -> tuple[Meter, str, str]:
    organization = Organizations(database).create("metered", verified=True, tier=tier)
    project = Projects(database).create(organization.id, "p")
    meter = Meter(database, TierBook(database, TierTable.load()), MemoryRateLimiter())
    return meter, organization.id, project.id


def _bill(
    database: Database, organization: str, project: str, request_id: str, nano: int, when: int
) -> None:
    """Record a delivered dall-e-2 request costing `nano`, straight through the ledger."""
    bill = Delivery(
        delivery_id=request_id,
        request_id=request_id,
        organization_id=organization,
        project_id=project,
        api_key_id="key_test",
        model="dall-e-2",
        source="image.generation",
        size="1024x1024",
        quality="standard",
        images=1,
        text_input_tokens=0,
        image_input_tokens=0,
        image_output_tokens=0,
    )
    with database.transaction() as session:
        record_delivery(session, bill, Cost(0, 0, nano), when)


def _rows(database: Database) -> int:
    with database.transaction() as session:
        return int(session.scalar(select(func.count()).select_from(UsageRecord)) or 0)


def test_delivery_is_billed_once_at_its_exact_cost(database: Database) -> None:
    meter, organization, project = _setup(database)
    admitted = meter.admit(_charge(organization, project), now=NOW)
    assert admitted.cost.total == 10 * 5_000 + 272 * 40_000
    assert admitted.headers["x-ratelimit-limit-images"] == "5"  # tier 1: 5 images a minute
    assert admitted.headers["x-ratelimit-remaining-images"] == "4"
    assert meter.deliver(admitted, "req_1", now=NOW)
    assert not meter.deliver(admitted, "req_1", now=NOW)
    assert _rows(database) == 1


def test_images_per_minute_and_release(database: Database) -> None:
    meter, organization, project = _setup(database)
    first = meter.admit(_charge(organization, project, images=4), now=NOW)
    with pytest.raises(RateLimited) as caught:
        meter.admit(_charge(organization, project, images=2), now=NOW)
    assert caught.value.code == "rate_limit_exceeded" and caught.value.type == "requests"
    assert "IPM" in caught.value.message and "retry-after" in caught.value.headers
    meter.release(first)  # the four images were never delivered
    meter.admit(_charge(organization, project, images=2), now=NOW)


def test_more_than_a_minute_allows_is_not_retryable(database: Database) -> None:
    meter, organization, project = _setup(database)
    with pytest.raises(TokensRateLimited) as caught:
        meter.admit(_charge(organization, project, image_output_tokens=200_000), now=NOW)
    assert caught.value.type == "tokens"
    assert caught.value.headers["x-should-retry"] == "false"


def test_project_limits_stay_below_the_organization(database: Database) -> None:
    meter, organization, project = _setup(database)
    limits = meter.set_project_limits(project, "gpt-image-1", "1", images_per_minute=2)
    assert (limits.images_per_minute, limits.tokens_per_minute) == (2, 100_000)
    with pytest.raises(InvalidValue):
        meter.set_project_limits(project, "gpt-image-1", "1", images_per_minute=6)
    with pytest.raises(RateLimitNotSet):
        meter.set_project_limits(project, "gpt-image-1", "free", images_per_minute=1)
    meter.admit(_charge(organization, project, images=2), now=NOW)
    with pytest.raises(RateLimited) as caught:
        meter.admit(_charge(organization, project), now=NOW)
    assert "project" in caught.value.message
    # Another project of the same organization still has the organization's room.
    other = Projects(database).create(organization, "other").id
    meter.admit(_charge(organization, other, images=3), now=NOW)


def test_budgets_in_openais_order(database: Database) -> None:
    meter, organization, project = _setup(database)
    organizations, projects = Organizations(database), Projects(database)
    cost = 10 * 5_000 + 272 * 40_000  # 1.088... cents
    projects.set_spend_limit(organization, project, 3)
    for request in range(2):
        meter.deliver(meter.admit(_charge(organization, project), now=NOW), f"r{request}", now=NOW)
    with pytest.raises(ProjectSpendLimitExceeded) as caught:
        meter.admit(_charge(organization, project), now=NOW)
    assert caught.value.status == 429 and caught.value.headers["x-should-retry"] == "false"
    organizations.set_spend_limit(organization, 2)
    with pytest.raises(OrganizationSpendLimitExceeded):
        meter.admit(_charge(organization, project), now=NOW)
    # A new month starts from zero.
    next_month = NOW + 32 * 86_400
    projects.set_spend_limit(organization, project, None)
    organizations.set_spend_limit(organization, None)
    meter.admit(_charge(organization, project), now=next_month)
    assert 2 * cost < 3 * 10_000_000


def test_tier_usage_limit(database: Database) -> None:
    meter, organization, project = _setup(database, tier="free")
    # Free tier: $100 a month; dall-e-2 at $0.02 an image.
    charge = _charge(
        organization, project, tier="free", model="dall-e-2", quality="standard", images=1
    )
    admitted = meter.admit(charge, now=NOW)
    assert admitted.cost.total == 20_000_000
    _bill(database, organization, project, "big", 100 * 10**9 - 10_000_000, NOW)
    with pytest.raises(OrganizationUsageLimitExceeded) as caught:
        meter.admit(charge, now=NOW)
    assert "tier free" in caught.value.message


def test_the_operator_project_exists(database: Database) -> None:
    Organizations(database).bootstrap(None, None)
    assert Projects(database).get("org-operator", OPERATOR_PROJECT_ID).is_default


def test_tiers_rise_with_payments_and_time(database: Database) -> None:
    meter, organization, project = _setup(database, tier="free")
    organizations = Organizations(database)

    def paid(request_id: str, dollars: int, when: int) -> None:
        _bill(database, organization, project, request_id, dollars * 10**9, when)

    def deliver_one(request_id: str) -> str:
        charge = _charge(
            organization, project, tier=organizations.get(organization).tier, model="dall-e-2"
        )
        meter.deliver(meter.admit(charge, now=NOW), request_id, now=NOW)
        return organizations.get(organization).tier

    paid("first", 5, NOW - 10 * 86_400)
    assert deliver_one("a") == "1"  # $5 paid: tier 1 has no waiting period
    paid("second", 60, NOW - 86_400)
    assert deliver_one("b") == "2"  # $65 paid, first payment 10 days ago: tier 2 (7 days)
    paid("third", 200, NOW - 2 * 86_400)
    assert deliver_one("c") == "3"  # $265 paid, 10 days: tier 3 (tier 4 needs 14 days)
    paid("fourth", 1000, NOW - 40 * 86_400)
    assert deliver_one("d") == "5"  # $1265 paid, first payment 40 days ago


def test_spend_counts_in_every_process_at_once(database: Database) -> None:
    """Two meters stand for two server processes: a delivery by one counts against the
    budget the other checks on its very next admission (spend is read, never cached)."""
    mine, organization, project = _setup(database)
    theirs = Meter(database, TierBook(database, TierTable.load()), MemoryRateLimiter())
    Projects(database).set_spend_limit(organization, project, 2)  # two cents: one request fits
    mine.deliver(mine.admit(_charge(organization, project), now=NOW), "r1", now=NOW)
    with pytest.raises(ProjectSpendLimitExceeded):
        theirs.admit(_charge(organization, project), now=NOW)
    # The limit itself is read on every admission too.
    Projects(database).set_spend_limit(organization, project, None)
    theirs.admit(_charge(organization, project), now=NOW)


def test_the_stored_tier_sets_the_usage_limit(database: Database) -> None:
    """The budget reads the organization's tier as stored now, not the one the key carried."""
    meter, organization, project = _setup(database, tier="free")
    _bill(database, organization, project, "big", 100 * 10**9 - 10_000_000, NOW)
    charge = _charge(organization, project, tier="free", model="dall-e-2", quality="standard")
    with pytest.raises(OrganizationUsageLimitExceeded):
        meter.admit(charge, now=NOW)
    Organizations(database).set_tier(organization, "2")  # $100 → $500 a month
    meter.admit(charge, now=NOW)


def test_tiers_never_fall(database: Database) -> None:
    """A delivery whose key still carries an old tier never lowers what the operator set."""
    meter, organization, project = _setup(database, tier="free")
    organizations = Organizations(database)
    organizations.set_tier(organization, "4")
    charge = _charge(organization, project, tier="free", model="dall-e-2")
    assert meter.deliver(meter.admit(charge, now=NOW), "small", now=NOW)
    assert organizations.get(organization).tier == "4"


def test_project_limit_overrides_apply_on_the_next_admission(database: Database) -> None:
    meter, organization, project = _setup(database)
    meter.admit(_charge(organization, project, images=2), now=NOW)
    meter.set_project_limits(project, "gpt-image-1", "1", images_per_minute=1)
    with pytest.raises(RateLimited) as caught:
        meter.admit(_charge(organization, project, images=2), now=NOW)
    assert "project" in caught.value.message and "Limit 1" in caught.value.message


def test_each_admission_is_billed_once_whatever_its_request_id(database: Database) -> None:
    meter, organization, project = _setup(database)
    first = meter.admit(_charge(organization, project), now=NOW)
    assert meter.deliver(first, "req_reused", now=NOW)
    assert not meter.deliver(first, "req_reused", now=NOW)  # the same admission, again
    second = meter.admit(_charge(organization, project), now=NOW)
    assert meter.deliver(second, "req_reused", now=NOW)  # a new request, the id reused
    assert meter.deliver(meter.admit(_charge(organization, project), now=NOW), "x" * 300, now=NOW)
    with database.transaction() as session:
        rows = session.execute(select(UsageRecord.request_id, UsageRecord.delivery_id)).all()
    assert sorted(request_id for request_id, _ in rows) == ["req_reused", "req_reused", "x" * 64]
    assert len({delivery_id for _, delivery_id in rows}) == 3
