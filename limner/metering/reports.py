"""OpenAI's usage and costs read-outs over the usage ledger (platform-api.md §3).

`usage_images` answers `GET /v1/organization/usage/images` and `costs` answers
`GET /v1/organization/costs`. Both take the query string as parse_qs-style data (name -> values),
accepting the SDK's `group_by[]=a` and repeated `group_by=a` alike, and return the page object
ready for JSON.

Time is cut into buckets aligned to their width in UTC (a `1d` bucket starts at 00:00 UTC), from
`start_time` floored to the width up to `end_time` (exclusive) or now, whichever is first; the
bucket holding "now" is included, still filling. Empty buckets are listed with no results, as
OpenAI does. A page holds at most `limit` buckets; `next_page` is an opaque cursor naming the
first bucket of the next page. Records count from `start_time` itself (inclusive) to `end_time`
(exclusive) even though the first bucket's label starts earlier.

Aggregation happens in SQL, grouped on the bucket index `created_at // width`: integer division of
BigIntegers on both SQLite and PostgreSQL, and exact, as created_at is never negative. Every
amount is an integer sum of nano-dollars; only the final JSON `amount.value` is a float, made from
the exact Decimal quantized to 1e-9 dollars.
"""

import base64
import binascii
import re
from collections import defaultdict
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass
from decimal import Decimal
from typing import Any

from sqlalchemy import BigInteger, ColumnElement, Executable, false, func, literal_column, select
from sqlalchemy.orm import InstrumentedAttribute, Session

from limner.errors import InvalidValue
from limner.metering.pricing import NANOS_PER_USD, PriceTable
from limner.storage.tables import UsageRecord

BUCKET_WIDTHS = {"1m": 60, "1h": 3600, "1d": 86400}
# (default, maximum) number of buckets per page, per bucket width.
USAGE_LIMITS = {"1d": (7, 31), "1h": (24, 168), "1m": (60, 1440)}
COSTS_LIMITS = (7, 180)
# The last is Limner's: image calls made by the Responses API's image_generation tool.
SOURCES = ("image.generation", "image.edit", "image.variation", "responses.image_generation")
USAGE_GROUPS = ("project_id", "user_id", "api_key_id", "model", "size", "source")
COSTS_GROUPS = ("project_id", "line_item", "api_key_id")

_SCALARS = frozenset({"start_time", "end_time", "bucket_width", "limit", "page"})
_USAGE_FILTERS = ("sources", "sizes", "project_ids", "user_ids", "api_key_ids", "models")
_COSTS_FILTERS = ("project_ids", "api_key_ids", "line_items")
_INTEGER = re.compile(r"^[0-9]{1,15}$")
_SIZE = re.compile(r"^[0-9]{1,5}x[0-9]{1,5}$")
_CURSOR_PREFIX = "page_"
_CURSOR = re.compile(r"^([0-9]{1,6}):([0-9]{1,15})$")

# Query filter name -> ledger column (user_ids has none: there are no users yet).
_FILTER_COLUMNS: dict[str, InstrumentedAttribute[str]] = {
    "sources": UsageRecord.source,
    "sizes": UsageRecord.size,
    "project_ids": UsageRecord.project_id,
    "api_key_ids": UsageRecord.api_key_id,
    "models": UsageRecord.model,
}
_GROUP_COLUMNS: dict[str, InstrumentedAttribute[str]] = {
    "project_id": UsageRecord.project_id,
    "api_key_id": UsageRecord.api_key_id,
    "model": UsageRecord.model,
    "size": UsageRecord.size,
    "source": UsageRecord.source,
}


@dataclass(frozen=True)
class _Query:
    start_time: int
    end_time: int | None
    bucket_width: str
    limit: int
    page: str | None
    filters: dict[str, list[str]]
    group_by: tuple[str, ...]

    @property
    def width(self) -> int:
        return BUCKET_WIDTHS[self.bucket_width]


@dataclass(frozen=True)
class _Window:
    """The buckets of one page and the record time range they cover."""

    starts: list[int]
    width: int
    lower: int  # records at or after
    upper: int  # records before
    next_page: str | None


@dataclass(frozen=True)
class _LineItem:
    name: str
    project_id: str
    api_key_id: str
    quantity: int
    unit: str
    nanos: int


def usage_images(
    session: Session, organization_id: str, query: Mapping[str, list[str]], now: int
) -> dict[str, Any]:
    """`GET /v1/organization/usage/images` for one organization; raises InvalidValue."""
    params = _parse(query, USAGE_GROUPS, _USAGE_FILTERS, USAGE_LIMITS)
    window = _window(params, now)
    per_bucket: dict[int, list[dict[str, Any]]] = defaultdict(list)
    if window.starts:
        for row in session.execute(_usage_select(organization_id, params, window)):
            per_bucket[row.bucket * window.width].append(_usage_result(row, params.group_by))
    return _page(window, per_bucket, _usage_sort_key)


def costs(
    session: Session,
    organization_id: str,
    query: Mapping[str, list[str]],
    prices: PriceTable,
    now: int,
) -> dict[str, Any]:
    """`GET /v1/organization/costs` for one organization; raises InvalidValue.

    `prices` only decides how a model's line items are named (per token or per image); amounts
    are the costs recorded at delivery.
    """
    params = _parse(query, COSTS_GROUPS, _COSTS_FILTERS, {"1d": COSTS_LIMITS})
    window = _window(params, now)
    items: dict[int, list[_LineItem]] = defaultdict(list)
    if window.starts:
        for row in session.execute(_costs_select(organization_id, params, window)):
            items[row.bucket * window.width].extend(_line_items(row, prices))
    wanted = set(params.filters.get("line_items", ()))
    per_bucket = {
        start: _costs_results([item for item in found if not wanted or item.name in wanted], params)
        for start, found in items.items()
    }
    return _page(window, per_bucket, _costs_sort_key)


# Query parsing -------------------------------------------------------------------------------


def _parse(
    query: Mapping[str, list[str]],
    groups: Sequence[str],
    filters: Sequence[str],
    limits: Mapping[str, tuple[int, int]],
) -> _Query:
    values = _normalized(query)
    for name in values:
        if name not in _SCALARS and name not in filters and name != "group_by":
            raise InvalidValue(f"Unknown parameter: '{name}'.", name)
    start_time = _integer(values, "start_time")
    if start_time is None:
        raise InvalidValue("Missing required parameter: 'start_time'.", "start_time")
    end_time = _integer(values, "end_time")
    if end_time is not None and end_time <= start_time:
        raise InvalidValue("'end_time' must be greater than 'start_time'.", "end_time")
    bucket_width = _last(values, "bucket_width") or "1d"
    if bucket_width not in limits:
        raise InvalidValue(
            f"Invalid 'bucket_width': {bucket_width!r}. Supported values are: "
            f"{', '.join(repr(width) for width in limits)}.",
            "bucket_width",
        )
    return _Query(
        start_time=start_time,
        end_time=end_time,
        bucket_width=bucket_width,
        limit=_limit(values, bucket_width, limits[bucket_width]),
        page=_last(values, "page"),
        filters={name: _filter_values(name, values[name]) for name in filters if name in values},
        group_by=_group_by(values.get("group_by", []), groups),
    )


def _normalized(query: Mapping[str, list[str]]) -> dict[str, list[str]]:
    """`name[]` and `name` are one parameter; their values are pooled in order."""
    values: dict[str, list[str]] = {}
    for raw_name, raw_values in query.items():
        name = raw_name[:-2] if raw_name.endswith("[]") else raw_name
        given = [raw_values] if isinstance(raw_values, str) else list(raw_values)
        values.setdefault(name, []).extend(given)
    return values


def _last(values: Mapping[str, list[str]], name: str) -> str | None:
    # A scalar given twice takes its last value, as most web frameworks do.
    given = values.get(name)
    return given[-1] if given else None


def _integer(values: Mapping[str, list[str]], name: str) -> int | None:
    text = _last(values, name)
    if text is None:
        return None
    if not _INTEGER.match(text.strip()):
        raise InvalidValue(
            f"Invalid '{name}': {text!r}. Expected a non-negative integer (Unix seconds).", name
        )
    return int(text)


def _limit(values: Mapping[str, list[str]], bucket_width: str, bounds: tuple[int, int]) -> int:
    default, maximum = bounds
    text = _last(values, "limit")
    if text is None:
        return default
    if not _INTEGER.match(text.strip()) or not 1 <= int(text) <= maximum:
        raise InvalidValue(
            f"Invalid 'limit': {text!r}. Expected an integer from 1 to {maximum} "
            f"for bucket_width '{bucket_width}'.",
            "limit",
        )
    return int(text)


def _filter_values(name: str, given: list[str]) -> list[str]:
    for value in given:
        if not value:
            raise InvalidValue(f"Invalid '{name}': values must not be empty.", name)
        if name == "sources" and value not in SOURCES:
            raise InvalidValue(
                f"Invalid 'sources': {value!r}. Supported values are: {', '.join(SOURCES)}.", name
            )
        if name == "sizes" and not _SIZE.match(value):
            raise InvalidValue(f"Invalid 'sizes': {value!r}. Expected a size like 1024x1024.", name)
    return list(dict.fromkeys(given))


def _group_by(given: list[str], allowed: Sequence[str]) -> tuple[str, ...]:
    for value in given:
        if value not in allowed:
            raise InvalidValue(
                f"Invalid 'group_by': {value!r}. Supported values are: {', '.join(allowed)}.",
                "group_by",
            )
    return tuple(dict.fromkeys(given))


# Buckets and pages ---------------------------------------------------------------------------


def _window(params: _Query, now: int) -> _Window:
    width = params.width
    first = params.start_time // width * width
    # Bucket starts run up to end_time (exclusive) and include the bucket holding `now`.
    stop = now + 1 if params.end_time is None else min(params.end_time, now + 1)
    page_first = first if params.page is None else _decode_cursor(params.page, width, first)
    # Slicing the range, not a list of it: a start_time decades back must cost nothing.
    starts = list(range(page_first, stop, width)[: params.limit])
    after = page_first + params.limit * width
    upper = page_first + len(starts) * width
    return _Window(
        starts=starts,
        width=width,
        lower=max(params.start_time, page_first),
        upper=upper if params.end_time is None else min(upper, params.end_time),
        next_page=_encode_cursor(width, after) if after < stop else None,
    )


def _encode_cursor(width: int, start: int) -> str:
    text = f"{width}:{start}".encode("ascii")
    return _CURSOR_PREFIX + base64.urlsafe_b64encode(text).decode("ascii").rstrip("=")


def _decode_cursor(cursor: str, width: int, first: int) -> int:
    """The bucket start a `next_page` cursor names; it must fit this query's buckets."""
    invalid = InvalidValue(f"Invalid 'page': {cursor!r} is not a cursor from 'next_page'.", "page")
    if not cursor.startswith(_CURSOR_PREFIX) or len(cursor) > 64:
        raise invalid
    encoded = cursor[len(_CURSOR_PREFIX) :]
    try:
        text = base64.urlsafe_b64decode(encoded + "=" * (-len(encoded) % 4)).decode("ascii")
    except (binascii.Error, ValueError):
        raise invalid from None
    match = _CURSOR.match(text)
    if match is None or int(match[1]) != width:
        raise invalid
    start = int(match[2])
    if start < first or (start - first) % width:
        raise invalid
    return start


def _page(
    window: _Window,
    per_bucket: Mapping[int, list[dict[str, Any]]],
    sort_key: Callable[[Mapping[str, Any]], tuple[str, ...]],
) -> dict[str, Any]:
    data = [
        {
            "object": "bucket",
            "start_time": start,
            "end_time": start + window.width,
            "results": sorted(per_bucket.get(start, []), key=sort_key),
        }
        for start in window.starts
    ]
    return {
        "object": "page",
        "data": data,
        "has_more": window.next_page is not None,
        "next_page": window.next_page,
    }


# SQL -----------------------------------------------------------------------------------------


def _bucket(width: int) -> ColumnElement[int]:
    # The width is inlined (a validated int), not bound: PostgreSQL only matches a SELECT
    # expression to its GROUP BY when both are textually the same, bind placeholders included.
    return (UsageRecord.created_at // literal_column(str(width), BigInteger)).label("bucket")


def _where(organization_id: str, params: _Query, window: _Window) -> list[ColumnElement[bool]]:
    conditions: list[ColumnElement[bool]] = [
        UsageRecord.organization_id == organization_id,
        UsageRecord.created_at >= window.lower,
        UsageRecord.created_at < window.upper,
    ]
    for name, values in params.filters.items():
        if name == "user_ids":
            conditions.append(false())  # no record has a user yet, so none can match
        elif name in _FILTER_COLUMNS:
            conditions.append(_FILTER_COLUMNS[name].in_(values))
    return conditions


def _usage_select(organization_id: str, params: _Query, window: _Window) -> Executable:
    bucket = _bucket(window.width)
    columns = [_GROUP_COLUMNS[name] for name in params.group_by if name in _GROUP_COLUMNS]
    return (
        select(
            bucket,
            *columns,
            func.count().label("num_model_requests"),
            func.coalesce(func.sum(UsageRecord.images), 0).label("images"),
        )
        .where(*_where(organization_id, params, window))
        .group_by(bucket, *columns)
    )


def _usage_result(row: Any, group_by: Iterable[str]) -> dict[str, Any]:
    grouped = set(group_by)
    result: dict[str, Any] = {
        "object": "organization.usage.images.result",
        "images": int(row.images),
        "num_model_requests": int(row.num_model_requests),
    }
    for name in USAGE_GROUPS:
        # user_id is accepted for grouping but always null: there are no users yet.
        grouped_here = name in grouped and name != "user_id"
        result[name] = getattr(row, name) if grouped_here else None
    return result


def _usage_sort_key(result: Mapping[str, Any]) -> tuple[str, ...]:
    return tuple(result[name] or "" for name in USAGE_GROUPS)


def _costs_select(organization_id: str, params: _Query, window: _Window) -> Executable:
    bucket = _bucket(window.width)
    # Always grouped by project, key and model: line items are named per model, and the
    # requested grouping is applied afterwards, on line items.
    keys = [UsageRecord.project_id, UsageRecord.api_key_id, UsageRecord.model]
    sums = [
        func.coalesce(func.sum(column), 0).label(column.key)
        for column in (
            UsageRecord.images,
            UsageRecord.text_input_tokens,
            UsageRecord.image_input_tokens,
            UsageRecord.image_output_tokens,
            UsageRecord.text_input_cost,
            UsageRecord.image_input_cost,
            UsageRecord.image_output_cost,
        )
    ]
    return (
        select(bucket, *keys, *sums)
        .where(*_where(organization_id, params, window))
        .group_by(bucket, *keys)
    )


def _line_items(row: Any, prices: PriceTable) -> list[_LineItem]:
    """One aggregated ledger row as its line items, leaving out those with nothing in them."""
    names = prices.line_item_names(row.model)
    # PostgreSQL sums bigints as numeric (Decimal); int() keeps them exact.
    if prices.is_per_image(row.model):
        total = int(row.text_input_cost) + int(row.image_input_cost) + int(row.image_output_cost)
        found = [(names["image_output"], int(row.images), "images", total)]
    else:
        found = [
            (
                names[kind],
                int(getattr(row, f"{kind}_tokens")),
                "tokens",
                int(getattr(row, f"{kind}_cost")),
            )
            for kind in ("text_input", "image_input", "image_output")
        ]
    return [
        _LineItem(name, row.project_id, row.api_key_id, quantity, unit, nanos)
        for name, quantity, unit, nanos in found
        if quantity or nanos
    ]


def _costs_results(items: list[_LineItem], params: _Query) -> list[dict[str, Any]]:
    by_line_item = "line_item" in params.group_by
    groups: dict[tuple[str | None, ...], list[_LineItem]] = defaultdict(list)
    for item in items:
        key = tuple(
            getattr(item, "name" if name == "line_item" else name)
            if name in params.group_by
            else None
            for name in ("line_item", "project_id", "api_key_id")
        )
        groups[key].append(item)
    results = []
    for key, members in groups.items():
        line_item, project_id, api_key_id = key
        results.append(
            {
                "object": "organization.costs.result",
                "amount": {"value": _dollars(sum(m.nanos for m in members)), "currency": "usd"},
                "line_item": line_item,
                "project_id": project_id,
                "api_key_id": api_key_id,
                "quantity": sum(m.quantity for m in members) if by_line_item else None,
                "quantity_unit": members[0].unit if by_line_item else None,
            }
        )
    return results


def _costs_sort_key(result: Mapping[str, Any]) -> tuple[str, ...]:
    return tuple(result[name] or "" for name in ("project_id", "api_key_id", "line_item"))


def _dollars(nanos: int) -> float:
    """Exact nano-dollars as a JSON number: the float nearest the exact 9-decimal amount."""
    exact = (Decimal(nanos) / NANOS_PER_USD).quantize(Decimal("1e-9"))
    return float(str(exact))
