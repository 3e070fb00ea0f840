"""The usage ledger: one row per delivered request, billed exactly once, and monthly spend.

A row is written in the caller's transaction (an ORM Session or a Core Connection), so it
commits or rolls back with whatever marks the request delivered. Each admitted request has a
delivery id Limner made, unique in the table; a retried delivery of the same admission inserts
nothing. (Not the request id: behind a proxy a client may choose it, and reuse it.) Costs are
integer nano-dollars, priced at delivery time, so later price changes never rewrite history and
every sum is exact.
"""

import calendar
import datetime
from dataclasses import dataclass
from functools import cache
from typing import Any

from sqlalchemy import (
    BigInteger,
    Connection,
    Insert,
    String,
    bindparam,
    cast,
    literal,
    select,
    union_all,
)
from sqlalchemy.dialects import postgresql, sqlite
from sqlalchemy.orm import Session

from limner.metering.pricing import Cost
from limner.storage.db import core_table
from limner.storage.tables import SpendTotal, UsageRecord


@dataclass(frozen=True)
class Delivery:
    """What to bill for one delivered request."""

    delivery_id: str  # made by Limner: the once-only key
    request_id: str  # for tracing; behind a proxy it may be the client's
    organization_id: str
    project_id: str
    api_key_id: str
    model: str
    source: str  # one of metering.reports.SOURCES
    size: str
    quality: str
    images: int
    text_input_tokens: int
    image_input_tokens: int
    image_output_tokens: int


def record_delivery(
    session: Session | Connection, delivery: Delivery, cost: Cost, now: int
) -> bool:
    """Add the usage row for `delivery` to the caller's transaction; False if already billed.

    Never raises for a duplicate and never leaves the caller's transaction unusable: the unique
    delivery id is the final guard, met with INSERT ... ON CONFLICT DO NOTHING (SQLite and
    PostgreSQL, the two databases `make_engine` accepts). The month's running totals
    (organization and project) grow in the same transaction, only when the row went in.
    """
    values = _row(delivery, cost, now)
    dialect = _dialect(session)
    month = month_start(now)
    # The organization's total ("" project) first, then the project's; a delivery without a
    # project counts once.
    projects = ("", delivery.project_id) if delivery.project_id else ("",)
    spend = [
        {
            "organization_id": delivery.organization_id,
            "project_id": project_id,
            "month": month,
            "amount": cost.total,
        }
        for project_id in projects
    ]
    if dialect == "postgresql":
        # One round trip: the usage row and the totals in a single statement, which returns
        # rows only when the usage row went in.
        statement = _recorded_with_spend(with_project=len(projects) == 2)
        parameters = {**values, **spend[-1]}
        return session.execute(statement, parameters).first() is not None
    inserted = _insert_unless_present(session, dialect, values)
    if inserted:
        session.execute(_SQLITE_ADD_SPEND, spend)
    return inserted


def month_start(now: int) -> int:
    """Start of the UTC calendar month containing `now` (Unix seconds)."""
    moment = datetime.datetime.fromtimestamp(now, datetime.UTC)
    return calendar.timegm((moment.year, moment.month, 1, 0, 0, 0))


_USAGE_COLUMNS = (
    "delivery_id",
    "request_id",
    "created_at",
    "organization_id",
    "project_id",
    "api_key_id",
    "model",
    "source",
    "size",
    "quality",
    "images",
    "text_input_tokens",
    "image_input_tokens",
    "image_output_tokens",
    "text_input_cost",
    "image_input_cost",
    "image_output_cost",
)


def _row(delivery: Delivery, cost: Cost, now: int) -> dict[str, Any]:
    return {
        "delivery_id": delivery.delivery_id,
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


_usage = core_table(UsageRecord)
_spend = core_table(SpendTotal)
_SPEND_KEY = ("organization_id", "project_id", "month")


def _dialect(session: Session | Connection) -> str:
    if isinstance(session, Connection):
        return session.dialect.name
    return session.get_bind().dialect.name


@cache
def _insert_usage(dialect: str) -> Insert:
    """INSERT ... ON CONFLICT (delivery_id) DO NOTHING RETURNING id, built once per dialect (a
    reused statement keeps its compiled form; building one per call cost more than running it).
    RETURNING says whether a row went in; rowcount is not reliable here on psycopg."""
    insert = postgresql.insert if dialect == "postgresql" else sqlite.insert
    return (
        insert(_usage)
        .values({name: bindparam(name) for name in _USAGE_COLUMNS})
        .on_conflict_do_nothing(index_elements=["delivery_id"])
        .returning(_usage.c.id)
    )


def _insert_unless_present(
    session: Session | Connection, dialect: str, values: dict[str, Any]
) -> bool:
    # No savepoint on purpose: pysqlite's SAVEPOINT handling can end the caller's
    # transaction early when the savepoint is its first statement.
    return session.execute(_insert_usage(dialect), values).first() is not None


def _sqlite_add_spend() -> Insert:
    """amount += cost for one (organization, project, month) row, created on first use: an
    atomic upsert, so concurrent deliveries never lose an addition. Run once per row as an
    executemany: a multi-row VALUES statement cannot be cached, and compiling it on every
    delivery cost more than the commit."""
    statement = sqlite.insert(_spend).values(
        {name: bindparam(name) for name in (*_SPEND_KEY, "amount")}
    )
    return statement.on_conflict_do_update(
        index_elements=list(_SPEND_KEY),
        set_={"amount": _spend.c.amount + statement.excluded.amount},
    )


_SQLITE_ADD_SPEND = _sqlite_add_spend()


@cache
def _recorded_with_spend(*, with_project: bool) -> Insert:
    """PostgreSQL: the usage row's guarded insert as a data-modifying CTE, feeding the upsert of
    the month's totals, so the totals grow only when the row went in:

        WITH recorded AS (INSERT INTO usage_records ... ON CONFLICT DO NOTHING RETURNING id)
        INSERT INTO spend_totals SELECT ... FROM recorded [UNION ALL SELECT ... FROM recorded]
        ON CONFLICT (organization_id, project_id, month) DO UPDATE SET amount = amount + ...
        RETURNING amount

    The organization's row comes first in every statement, so concurrent deliveries lock rows
    in the same order and cannot deadlock one another."""
    recorded = _insert_usage("postgresql").cte("recorded")
    # Typed casts: untyped parameters in a UNION would otherwise resolve to text.
    organization_id = cast(bindparam("organization_id"), String)
    month, amount = cast(bindparam("month"), BigInteger), cast(bindparam("amount"), BigInteger)
    branches = [select(organization_id, literal(""), month, amount).select_from(recorded)]
    if with_project:
        project_id = cast(bindparam("project_id"), String)
        branches.append(select(organization_id, project_id, month, amount).select_from(recorded))
    source = branches[0] if len(branches) == 1 else union_all(*branches)
    statement = postgresql.insert(_spend).from_select([*_SPEND_KEY, "amount"], source)
    return statement.on_conflict_do_update(
        index_elements=list(_SPEND_KEY),
        set_={"amount": _spend.c.amount + statement.excluded.amount},
    ).returning(_spend.c.amount)
