"""The usage ledger: one row per delivered request, billed exactly once, and spend read-outs.

A row is written in the caller's session, so it commits or rolls back with whatever marks the
request delivered. The request id is unique in the table; a retried delivery of the same request
inserts nothing. Costs are integer nano-dollars, priced at delivery time, so later price changes
never rewrite history and every sum is exact.
"""

import calendar
import datetime
from dataclasses import dataclass
from typing import Any

from sqlalchemy import func, select
from sqlalchemy.dialects import postgresql, sqlite
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session

from limner.metering.pricing import Cost
from limner.storage.tables import SpendTotal, UsageRecord


@dataclass(frozen=True)
class Delivery:
    """What to bill for one delivered request."""

    request_id: str
    organization_id: str
    project_id: str
    api_key_id: str
    model: str
    source: str  # "image.generation" | "image.edit" | "image.variation"
    size: str
    quality: str
    images: int
    text_input_tokens: int
    image_input_tokens: int
    image_output_tokens: int


def record_delivery(session: Session, delivery: Delivery, cost: Cost, now: int) -> bool:
    """Add the usage row for `delivery` to the caller's transaction; False if already billed.

    Never raises for a duplicate and never leaves the caller's transaction unusable: the unique
    request id is the final guard, met with INSERT ... ON CONFLICT DO NOTHING on SQLite and
    PostgreSQL (a SAVEPOINT elsewhere).
    """
    values = _row(delivery, cost, now)
    dialect = session.get_bind().dialect.name
    if dialect in ("sqlite", "postgresql"):
        inserted = _insert_unless_present(session, dialect, values)
    else:
        inserted = _insert_in_savepoint(session, values)
    if inserted:
        month = month_start(now)
        for project_id in ("", delivery.project_id):
            _add_spend(session, dialect, delivery.organization_id, project_id, month, cost.total)
    return inserted


def month_spend(
    session: Session, month: int, *, organization_id: str, project_id: str | None = None
) -> int:
    """Nano-dollars delivered in the month starting at `month` (see `month_start`), from the
    running totals: one row, however many requests the month holds."""
    amount = session.scalar(
        select(SpendTotal.amount).where(
            SpendTotal.organization_id == organization_id,
            SpendTotal.project_id == (project_id or ""),
            SpendTotal.month == month,
        )
    )
    return int(amount or 0)


def month_start(now: int) -> int:
    """Start of the UTC calendar month containing `now` (Unix seconds)."""
    moment = datetime.datetime.fromtimestamp(now, datetime.UTC)
    return calendar.timegm((moment.year, moment.month, 1, 0, 0, 0))


def spend_since(
    session: Session, since: int, *, organization_id: str, project_id: str | None = None
) -> int:
    """Nano-dollars recorded at or after `since` for an organization, or one of its projects."""
    total = UsageRecord.text_input_cost + UsageRecord.image_input_cost
    total = total + UsageRecord.image_output_cost
    query = select(func.coalesce(func.sum(total), 0)).where(
        UsageRecord.organization_id == organization_id, UsageRecord.created_at >= since
    )
    if project_id is not None:
        query = query.where(UsageRecord.project_id == project_id)
    # PostgreSQL's SUM(bigint) is numeric (a Decimal here), SQLite's an int: both exact.
    return int(session.scalar(query) or 0)


def _row(delivery: Delivery, cost: Cost, now: int) -> dict[str, Any]:
    return {
        "request_id": delivery.request_id,
        "created_at": now,
        "organization_id": delivery.organization_id,
        "project_id": delivery.project_id,
        "api_key_id": delivery.api_key_id,
        "model": delivery.model,
        "source": delivery.source,
        "size": delivery.size,
        "quality": delivery.quality,
        "images": delivery.images,
        "text_input_tokens": delivery.text_input_tokens,
        "image_input_tokens": delivery.image_input_tokens,
        "image_output_tokens": delivery.image_output_tokens,
        "text_input_cost": cost.text_input,
        "image_input_cost": cost.image_input,
        "image_output_cost": cost.image_output,
    }


def _insert_unless_present(session: Session, dialect: str, values: dict[str, Any]) -> bool:
    # No savepoint here on purpose: pysqlite's SAVEPOINT handling can end the caller's
    # transaction early when the savepoint is its first statement.
    insert = postgresql.insert if dialect == "postgresql" else sqlite.insert
    statement = (
        insert(UsageRecord)
        .values(values)
        .on_conflict_do_nothing(index_elements=["request_id"])
        # RETURNING says whether a row went in; rowcount is not reliable here on psycopg.
        .returning(UsageRecord.id)
    )
    return session.execute(statement).first() is not None


def _add_spend(
    session: Session, dialect: str, organization_id: str, project_id: str, month: int, amount: int
) -> None:
    """amount += cost for one (organization, project, month) row, created on first use; an
    atomic upsert, so concurrent deliveries never lose an addition."""
    key = {"organization_id": organization_id, "project_id": project_id, "month": month}
    if dialect in ("sqlite", "postgresql"):
        insert = postgresql.insert if dialect == "postgresql" else sqlite.insert
        statement = insert(SpendTotal).values(**key, amount=amount)
        session.execute(
            statement.on_conflict_do_update(
                index_elements=list(key), set_={"amount": SpendTotal.amount + amount}
            )
        )
        return
    row = session.get(SpendTotal, key, with_for_update=True)
    if row is None:
        session.add(SpendTotal(**key, amount=amount))
    else:
        row.amount += amount


def _insert_in_savepoint(session: Session, values: dict[str, Any]) -> bool:
    try:
        with session.begin_nested():
            session.add(UsageRecord(**values))
    except IntegrityError:
        # Only a concurrent insert of the same request id is expected; anything else is a bug.
        present = session.scalar(
            select(UsageRecord.id).where(UsageRecord.request_id == values["request_id"])
        )
        if present is None:
            raise
        return False
    return True
