"""The usage ledger on SQLite and PostgreSQL: billed once, exact sums, monthly spend."""

import calendar
from concurrent.futures import ThreadPoolExecutor
from dataclasses import replace

import pytest
from sqlalchemy import Connection, func, select
from sqlalchemy.orm import Session

from limner.metering.ledger import Delivery, month_start, record_delivery
from limner.metering.pricing import Cost, PriceTable
from limner.storage.db import Database
from limner.storage.tables import PlatformDocument, SpendTotal, UsageRecord

NOW = 1_730_419_200  # 2024-11-01T00:00:00Z


def spend_since(
    session: Session | Connection,
    since: int,
    *,
    organization_id: str,
    project_id: str | None = None,
) -> int:
    """Nano-dollars recorded at or after `since`, summed from the usage rows themselves: what
    the running totals must agree with."""
    total = UsageRecord.text_input_cost + UsageRecord.image_input_cost
    total = total + UsageRecord.image_output_cost
    query = select(func.coalesce(func.sum(total), 0)).where(
        UsageRecord.organization_id == organization_id, UsageRecord.created_at >= since
    )
    if project_id is not None:
        query = query.where(UsageRecord.project_id == project_id)
    # PostgreSQL's SUM(bigint) is numeric (a Decimal here), SQLite's an int: both exact.
    return int(session.scalar(query) or 0)


def month_spend(
    session: Session | Connection,
    month: int,
    *,
    organization_id: str,
    project_id: str | None = None,
) -> int:
    """The month's running total for an organization ("" project) or one of its projects."""
    amount = session.scalar(
        select(SpendTotal.amount).where(
            SpendTotal.organization_id == organization_id,
            SpendTotal.project_id == (project_id or ""),
            SpendTotal.month == month,
        )
    )
    return int(amount or 0)


def delivery(delivery_id: str, **changes: object) -> Delivery:
    base = Delivery(
        delivery_id=delivery_id,
        request_id=delivery_id,
        organization_id="org_a",
        project_id="proj_a",
        api_key_id="key_a",
        model="gpt-image-1",
        source="image.generation",
        size="1024x1024",
        quality="medium",
        images=1,
        text_input_tokens=10,
        image_input_tokens=194,
        image_output_tokens=1056,
    )
    return replace(base, **changes)  # type: ignore[arg-type]


def price(item: Delivery) -> Cost:
    return PriceTable.default().cost(
        item.model,
        text_input_tokens=item.text_input_tokens,
        image_input_tokens=item.image_input_tokens,
        image_output_tokens=item.image_output_tokens,
        images=item.images,
        quality=item.quality,
        size=item.size,
    )


def test_record_stores_costs_per_line_item(database: Database) -> None:
    item = delivery("req_1")
    with database.transaction() as session:
        assert record_delivery(session, item, price(item), NOW)
    with database.transaction() as session:
        row = session.scalars(select(UsageRecord)).one()
    assert (row.request_id, row.created_at, row.organization_id, row.project_id) == (
        "req_1",
        NOW,
        "org_a",
        "proj_a",
    )
    assert (row.model, row.source, row.size, row.quality, row.images) == (
        "gpt-image-1",
        "image.generation",
        "1024x1024",
        "medium",
        1,
    )
    assert (row.text_input_cost, row.image_input_cost, row.image_output_cost) == (
        10 * 5000,
        194 * 10_000,
        1056 * 40_000,
    )


def test_duplicate_request_is_billed_once(database: Database) -> None:
    item = delivery("req_dup")
    with database.transaction() as session:
        assert record_delivery(session, item, price(item), NOW)
    with database.transaction() as session:
        # The caller's transaction carries on after the refused duplicate and still commits.
        session.add(PlatformDocument(name="marker", body="{}", updated_at=NOW))
        assert not record_delivery(session, item, price(item), NOW + 5)
        assert record_delivery(session, delivery("req_other"), price(item), NOW + 5)
    with database.transaction() as session:
        assert session.scalar(select(func.count()).select_from(UsageRecord)) == 2
        assert session.get(PlatformDocument, "marker") is not None
        first = session.scalars(select(UsageRecord).where(UsageRecord.request_id == "req_dup"))
        assert first.one().created_at == NOW


def test_a_reused_request_id_is_billed_each_time(database: Database) -> None:
    """Behind a proxy the request id may be the client's: only the delivery id, made by
    Limner per admission, keeps a delivery from being billed twice."""
    with database.transaction() as session:
        for delivery_id in ("dlv_first", "dlv_second"):
            item = delivery(delivery_id, request_id="req_client_chosen")
            assert record_delivery(session, item, price(item), NOW)
    with database.transaction() as session:
        rows = session.scalars(
            select(UsageRecord.delivery_id).where(UsageRecord.request_id == "req_client_chosen")
        )
        assert sorted(rows) == ["dlv_first", "dlv_second"]


def test_duplicate_within_one_transaction(database: Database) -> None:
    item = delivery("req_same_tx")
    with database.transaction() as session:
        assert record_delivery(session, item, price(item), NOW)
        assert not record_delivery(session, item, price(item), NOW)
    with database.transaction() as session:
        assert session.scalar(select(func.count()).select_from(UsageRecord)) == 1


def test_concurrent_duplicate_meets_the_unique_guard(database: Database) -> None:
    """Two open transactions bill the same request: the second one's insert is a no-op."""
    item = delivery("req_race")
    with database.transaction() as first:
        assert record_delivery(first, item, price(item), NOW)
    # Simulate the loser of a race: its pre-check ran before the winner committed, so go
    # straight to the guarded insert, then keep using the same transaction.
    from limner.metering import ledger

    with database.transaction() as second:
        dialect = second.get_bind().dialect.name
        values = ledger._row(item, price(item), NOW)
        assert not ledger._insert_unless_present(second, dialect, values)
        assert record_delivery(second, delivery("req_after_race"), price(item), NOW)
    with database.transaction() as session:
        assert session.scalar(select(func.count()).select_from(UsageRecord)) == 2


def test_rolled_back_delivery_is_not_billed(database: Database) -> None:
    item = delivery("req_rollback")
    with pytest.raises(RuntimeError), database.transaction() as session:
        assert record_delivery(session, item, price(item), NOW)
        raise RuntimeError("delivery failed after billing")
    with database.transaction() as session:
        assert session.scalar(select(func.count()).select_from(UsageRecord)) == 0
        assert record_delivery(session, item, price(item), NOW)


def test_many_small_costs_sum_exactly(database: Database) -> None:
    # $5 per million text tokens: one token is $0.000005; 1000 of them are exactly $0.005.
    one_token = delivery("x", text_input_tokens=1, image_input_tokens=0, image_output_tokens=0)
    with database.transaction() as session:
        for index in range(1000):
            item = replace(one_token, delivery_id=f"req_{index}")
            record_delivery(session, item, price(item), NOW + index)
    with database.transaction() as session:
        spent = spend_since(session, NOW, organization_id="org_a")
    assert spent == 5_000_000  # nano-dollars == $0.005
    assert isinstance(spent, int)


def test_spend_since_per_org_and_project(database: Database) -> None:
    items = [
        (delivery("a1"), NOW - 1),  # before the window
        (delivery("a2"), NOW),
        (delivery("a3", project_id="proj_b"), NOW + 10),
        (delivery("b1", organization_id="org_b", project_id="proj_z"), NOW + 20),
        (delivery("d3", model="dall-e-3", quality="hd", size="1024x1792", images=1), NOW + 30),
    ]
    with database.transaction() as session:
        for item, when in items:
            record_delivery(session, item, price(item), when)
    gpt = 10 * 5000 + 194 * 10_000 + 1056 * 40_000
    dalle_hd_tall = 120_000_000
    with database.transaction() as session:
        assert spend_since(session, NOW, organization_id="org_a") == 2 * gpt + dalle_hd_tall
        assert spend_since(session, NOW - 1, organization_id="org_a") == 3 * gpt + dalle_hd_tall
        assert spend_since(session, NOW, organization_id="org_a", project_id="proj_a") == (
            gpt + dalle_hd_tall
        )
        assert spend_since(session, NOW, organization_id="org_a", project_id="proj_b") == gpt
        assert spend_since(session, NOW, organization_id="org_b") == gpt
        assert spend_since(session, NOW, organization_id="org_c") == 0
        assert spend_since(session, NOW + 31, organization_id="org_a") == 0
        # The running monthly totals the budget check reads agree with the sums, and a repeated
        # delivery adds nothing to them.
        month, october = month_start(NOW), month_start(NOW - 1)  # NOW opens November
        assert not record_delivery(session, items[1][0], price(items[1][0]), NOW)
        assert month_spend(session, month, organization_id="org_a") == 2 * gpt + dalle_hd_tall
        assert month_spend(session, october, organization_id="org_a") == gpt
        assert month_spend(session, month, organization_id="org_a", project_id="proj_b") == gpt
        assert month_spend(session, month, organization_id="org_b") == gpt
        assert month_spend(session, month, organization_id="org_c") == 0


def test_large_sums_stay_exact(database: Database) -> None:
    # Beyond 2**53 nano-dollars (~$9M), where a float would start dropping units.
    big = Cost(2**53 + 1, 3, 5)
    with database.transaction() as session:
        record_delivery(session, delivery("big_1"), big, NOW)
        record_delivery(session, delivery("big_2"), big, NOW)
    with database.transaction() as session:
        assert spend_since(session, 0, organization_id="org_a") == 2 * (2**53 + 9)


def _utc(year: int, month: int, day: int = 1, hour: int = 0, minute: int = 0, sec: int = 0) -> int:
    return calendar.timegm((year, month, day, hour, minute, sec))


@pytest.mark.parametrize(
    ("now", "expected"),
    [
        (_utc(2024, 11, 1), _utc(2024, 11, 1)),
        (_utc(2024, 11, 1) - 1, _utc(2024, 10, 1)),
        (_utc(2024, 12, 31, 23, 59, 59), _utc(2024, 12, 1)),
        (_utc(2025, 1, 1), _utc(2025, 1, 1)),
        (_utc(2024, 2, 29, 12), _utc(2024, 2, 1)),
        (_utc(2024, 3, 1) - 1, _utc(2024, 2, 1)),
        (0, 0),
    ],
)
def test_month_start(now: int, expected: int) -> None:
    assert month_start(now) == expected


def test_record_on_a_core_connection(database: Database) -> None:
    """The meter's path: a Core connection, the usage row and both monthly totals in one
    transaction, a repeated request id adding to neither."""
    item = delivery("req_core")
    cost = price(item)
    month = month_start(NOW)
    with database.begin() as connection:
        assert record_delivery(connection, item, cost, NOW)
        assert not record_delivery(connection, item, cost, NOW)
    with database.begin() as connection:
        assert not record_delivery(connection, item, cost, NOW + 5)
        assert record_delivery(connection, delivery("req_core_2", project_id="proj_b"), cost, NOW)
    with database.transaction() as session:
        assert session.scalar(select(func.count()).select_from(UsageRecord)) == 2
        assert month_spend(session, month, organization_id="org_a") == 2 * cost.total
        assert month_spend(session, month, organization_id="org_a", project_id="proj_a") == (
            cost.total
        )
        assert month_spend(session, month, organization_id="org_a", project_id="proj_b") == (
            cost.total
        )


def test_rolled_back_core_delivery_adds_nothing(database: Database) -> None:
    item = delivery("req_core_rollback")
    with pytest.raises(RuntimeError), database.begin() as connection:
        assert record_delivery(connection, item, price(item), NOW)
        raise RuntimeError("delivery failed after billing")
    with database.transaction() as session:
        assert session.scalar(select(func.count()).select_from(UsageRecord)) == 0
        assert month_spend(session, month_start(NOW), organization_id="org_a") == 0


def test_delivery_without_a_project_counts_once(database: Database) -> None:
    item = delivery("req_no_project", project_id="")
    with database.begin() as connection:
        assert record_delivery(connection, item, price(item), NOW)
    with database.transaction() as session:
        assert month_spend(session, month_start(NOW), organization_id="org_a") == (
            price(item).total
        )


def test_concurrent_deliveries_lose_no_addition(database: Database) -> None:
    """Many threads (connections) deliver at once: every addition to the totals survives."""
    cost = Cost(1, 2, 3)
    requests = 40

    def deliver(index: int) -> bool:
        with database.begin() as connection:
            return record_delivery(connection, delivery(f"req_{index % 30}"), cost, NOW)

    with ThreadPoolExecutor(max_workers=8) as pool:
        recorded = list(pool.map(deliver, range(requests)))
    assert sum(recorded) == 30  # ten request ids were sent twice: billed once each
    with database.transaction() as session:
        month = month_start(NOW)
        assert month_spend(session, month, organization_id="org_a") == 30 * cost.total
        assert month_spend(session, month, organization_id="org_a", project_id="proj_a") == (
            30 * cost.total
        )
