"""Usage and costs read-outs (platform-api.md §3) over a fixed ledger, on SQLite and PostgreSQL."""

from collections.abc import Iterator
from dataclasses import dataclass, replace
from decimal import Decimal
from typing import Any

import pytest

from limner.errors import InvalidValue
from limner.metering.ledger import Delivery, record_delivery
from limner.metering.pricing import Cost, PriceTable
from limner.metering.reports import costs, usage_images
from limner.storage.db import Database
from tests.conftest import DATABASE_KINDS, migrated_database

DAY = 86_400
HOUR = 3_600
D = 1_730_419_200  # 2024-11-01T00:00:00Z
NOW = D + 3 * DAY + 5 * HOUR  # inside the fourth day
PRICES = PriceTable.default()


@dataclass(frozen=True)
class Rec:
    request_id: str
    created_at: int
    model: str
    project: str = "proj_a"
    key: str = "key_a"
    source: str = "image.generation"
    size: str = "1024x1024"
    quality: str = "medium"
    images: int = 1
    tokens: tuple[int, int, int] = (0, 0, 0)  # text input, image input, image output
    org: str = "org_a"


RECORDS = [
    Rec("early", D - 10, "gpt-image-1", quality="low", tokens=(1, 0, 272)),
    Rec("r1", D + 100, "gpt-image-1", images=2, tokens=(10, 0, 2112)),
    Rec("r2", D + HOUR + 100, "gpt-image-1", "proj_b", "key_b", "image.edit", "1024x1536",
        tokens=(20, 194, 1584)),
    Rec("r3", D + DAY + 50, "dall-e-3", quality="hd"),
    Rec("r4", D + 2 * DAY + 2 * HOUR, "dall-e-2", "proj_a", "key_b", "image.variation", "256x256",
        "standard", images=3),
    Rec("r5", D + 2 * DAY + 2 * HOUR + 30, "gpt-image-1-mini", "proj_b", "key_b", quality="low",
        tokens=(5, 0, 272)),
    Rec("b1", D + 100, "gpt-image-1", "proj_z", "key_z", quality="high", images=5,
        tokens=(7, 0, 20800), org="org_b"),
]  # fmt: skip
MANY = 250  # org_many: one text token of gpt-image-1 each, $0.000005 a piece


def nanos(request_id: str) -> int:
    """Hand-computed cost of one record above, in nano-dollars."""
    return {
        "r1": 10 * 5_000 + 2112 * 40_000,
        "r2": 20 * 5_000 + 194 * 10_000 + 1584 * 40_000,
        "r3": 80_000_000,  # dall-e-3 hd 1024x1024: $0.080
        "r4": 3 * 16_000_000,  # dall-e-2 256x256: $0.016 each
        "r5": 5 * 2_000 + 272 * 8_000,
    }[request_id]


def dollars(value: int) -> float:
    return float(Decimal(value) / 10**9)


@pytest.fixture(scope="module", params=DATABASE_KINDS)
def database(
    request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[Database]:
    path = tmp_path_factory.mktemp("reports") / "reports.db"
    with migrated_database(request.param, path) as database:
        _fill(database)
        yield database


def _fill(database: Database) -> None:
    with database.transaction() as session:
        for rec in RECORDS:
            assert record_delivery(session, _delivery(rec), _price(rec), rec.created_at)
        for index in range(MANY):
            rec = Rec(f"m{index}", D + index, "gpt-image-1", "proj_m", "key_m", tokens=(1, 0, 0))
            record_delivery(
                session, _delivery(replace(rec, org="org_many")), _price(rec), D + index
            )


def _delivery(rec: Rec) -> Delivery:
    text, image_in, image_out = rec.tokens
    return Delivery(
        rec.request_id, rec.request_id, rec.org, rec.project, rec.key, rec.model, rec.source,
        rec.size, rec.quality, rec.images, text, image_in, image_out,
    )  # fmt: skip


def _price(rec: Rec) -> Cost:
    text, image_in, image_out = rec.tokens
    return PRICES.cost(
        rec.model,
        text_input_tokens=text,
        image_input_tokens=image_in,
        image_output_tokens=image_out,
        images=rec.images,
        quality=rec.quality,
        size=rec.size,
    )


def usage(database: Database, org: str = "org_a", now: int = NOW, **query: Any) -> dict[str, Any]:
    with database.transaction() as session:
        return usage_images(session, org, _query(query), now)


def cost_page(
    database: Database, org: str = "org_a", now: int = NOW, **query: Any
) -> dict[str, Any]:
    with database.transaction() as session:
        return costs(session, org, _query(query), PRICES, now)


def _query(query: dict[str, Any]) -> dict[str, list[str]]:
    """Keyword arguments as parse_qs data; `group_by__` stands for the SDK's `group_by[]`."""
    return {
        name.replace("__", "[]"): [str(v) for v in value]
        if isinstance(value, list)
        else [str(value)]
        for name, value in query.items()
    }


def totals(page: dict[str, Any]) -> list[tuple[int, int] | None]:
    """(images, requests) per bucket for an ungrouped usage page; None for an empty bucket."""
    found: list[tuple[int, int] | None] = []
    for bucket in page["data"]:
        assert len(bucket["results"]) <= 1
        result = bucket["results"][0] if bucket["results"] else None
        found.append(None if result is None else (result["images"], result["num_model_requests"]))
    return found


def test_usage_daily_buckets_include_empty_ones(database: Database) -> None:
    page = usage(database, start_time=D)
    assert page["object"] == "page" and page["has_more"] is False and page["next_page"] is None
    assert [(b["start_time"], b["end_time"]) for b in page["data"]] == [
        (D + day * DAY, D + (day + 1) * DAY) for day in range(4)
    ]
    assert {b["object"] for b in page["data"]} == {"bucket"}
    assert totals(page) == [(3, 2), (1, 1), (4, 2), None]
    assert page["data"][0]["results"][0] == {
        "object": "organization.usage.images.result",
        "images": 3,
        "num_model_requests": 2,
        "source": None,
        "size": None,
        "model": None,
        "project_id": None,
        "user_id": None,
        "api_key_id": None,
    }


def test_usage_first_bucket_is_floored_but_records_start_at_start_time(database: Database) -> None:
    page = usage(database, start_time=D + HOUR, end_time=D + DAY + 51)
    assert [b["start_time"] for b in page["data"]] == [D, D + DAY]
    assert totals(page) == [(1, 1), (1, 1)]  # r1 (before start_time) left out; r3 in
    # "early" lands in the day before D; r1 (D + 100) is past end_time.
    assert totals(usage(database, start_time=D - 10, end_time=D + 1)) == [(1, 1), None]


def test_usage_end_time_is_exclusive_and_now_caps(database: Database) -> None:
    assert totals(usage(database, start_time=D, end_time=D + DAY + 50)) == [(3, 2), None]
    assert totals(usage(database, start_time=D, end_time=D + 30 * DAY)) == [
        (3, 2),
        (1, 1),
        (4, 2),
        None,
    ]
    assert usage(database, start_time=NOW + DAY)["data"] == []


def test_usage_hourly_and_minute_buckets(database: Database) -> None:
    hourly = usage(database, start_time=D, end_time=D + 3 * HOUR, bucket_width="1h")
    assert [b["end_time"] - b["start_time"] for b in hourly["data"]] == [HOUR] * 3
    assert totals(hourly) == [(2, 1), (1, 1), None]
    minutes = usage(database, start_time=D, end_time=D + 5 * 60, bucket_width="1m")
    assert [b["start_time"] for b in minutes["data"]] == [D + 60 * i for i in range(5)]
    assert totals(minutes) == [None, (2, 1), None, None, None]
    # Default page sizes: 24 hours, 60 minutes.
    assert len(usage(database, start_time=D, bucket_width="1h")["data"]) == 24
    assert len(usage(database, start_time=D, bucket_width="1m")["data"]) == 60


def groups(page: dict[str, Any], *fields: str) -> list[list[tuple[Any, ...]]]:
    return [
        [(*[r[f] for f in fields], r["images"], r["num_model_requests"]) for r in b["results"]]
        for b in page["data"]
    ]


def test_usage_group_by(database: Database) -> None:
    by_model = usage(database, start_time=D, group_by__=["model"])
    assert groups(by_model, "model") == [
        [("gpt-image-1", 3, 2)],
        [("dall-e-3", 1, 1)],
        [("dall-e-2", 3, 1), ("gpt-image-1-mini", 1, 1)],
        [],
    ]
    assert all(
        r["project_id"] is None and r["source"] is None
        for b in by_model["data"]
        for r in b["results"]
    )
    by_two = usage(database, start_time=D, end_time=D + DAY, group_by=["project_id", "source"])
    assert groups(by_two, "project_id", "source") == [
        [("proj_a", "image.generation", 2, 1), ("proj_b", "image.edit", 1, 1)]
    ]
    every = usage(
        database,
        start_time=D + 2 * DAY,
        end_time=D + 3 * DAY,
        group_by__=["project_id", "user_id", "api_key_id", "model", "size", "source"],
    )
    assert every["data"][0]["results"] == [
        {
            "object": "organization.usage.images.result",
            "images": 3,
            "num_model_requests": 1,
            "source": "image.variation",
            "size": "256x256",
            "model": "dall-e-2",
            "project_id": "proj_a",
            "user_id": None,
            "api_key_id": "key_b",
        },
        {
            "object": "organization.usage.images.result",
            "images": 1,
            "num_model_requests": 1,
            "source": "image.generation",
            "size": "1024x1024",
            "model": "gpt-image-1-mini",
            "project_id": "proj_b",
            "user_id": None,
            "api_key_id": "key_b",
        },
    ]
    # user_id is accepted; with no users it is one null group.
    assert totals(usage(database, start_time=D, group_by=["user_id"])) == [
        (3, 2),
        (1, 1),
        (4, 2),
        None,
    ]


def test_usage_filters_in_bracket_and_plain_form(database: Database) -> None:
    assert totals(usage(database, start_time=D, sources__=["image.edit"])) == [
        (1, 1),
        None,
        None,
        None,
    ]
    both_forms = {"models[]": ["dall-e-2"], "models": ["dall-e-3"]}
    with database.transaction() as session:
        page = usage_images(session, "org_a", {"start_time": [str(D)], **both_forms}, NOW)
    assert totals(page) == [None, (1, 1), (3, 1), None]
    assert totals(usage(database, start_time=D, project_ids=["proj_b"])) == [
        (1, 1),
        None,
        (1, 1),
        None,
    ]
    assert totals(usage(database, start_time=D, api_key_ids__=["key_a"])) == [
        (2, 1),
        (1, 1),
        None,
        None,
    ]
    assert totals(usage(database, start_time=D, sizes__=["256x256", "1024x1536"])) == [
        (1, 1),
        None,
        (3, 1),
        None,
    ]
    assert totals(usage(database, start_time=D, user_ids__=["user_x"])) == [None] * 4
    combined = usage(
        database,
        start_time=D,
        sources=["image.generation"],
        project_ids=["proj_a"],
        group_by=["model"],
    )
    assert groups(combined, "model") == [[("gpt-image-1", 2, 1)], [("dall-e-3", 1, 1)], [], []]


@pytest.mark.parametrize(
    ("width", "limit"), [("1d", 1), ("1d", 3), ("1h", 7), ("1h", 168), ("1m", 1440)]
)
def test_usage_pagination_walks_every_bucket_once(
    database: Database, width: str, limit: int
) -> None:
    step = {"1d": DAY, "1h": HOUR, "1m": 60}[width]
    start = D - 2 * step + 5  # unaligned: the first bucket is floored
    end = D + 3 * DAY + HOUR if width != "1m" else D + 2 * DAY + 3 * HOUR
    query: dict[str, Any] = {
        "start_time": start,
        "end_time": end,
        "bucket_width": width,
        "limit": limit,
    }
    buckets: list[dict[str, Any]] = []
    pages = 0
    while True:
        page = usage(database, **query)
        pages += 1
        assert len(page["data"]) <= limit
        buckets.extend(page["data"])
        if not page["has_more"]:
            assert page["next_page"] is None
            break
        assert len(page["data"]) == limit and isinstance(page["next_page"], str)
        query["page"] = page["next_page"]
    first = start // step * step
    expected = list(range(first, min(end, NOW + 1), step))
    assert [b["start_time"] for b in buckets] == expected
    assert pages == -(-len(expected) // limit)
    images = sum(r["images"] for b in buckets for r in b["results"])
    in_range = [r for r in RECORDS if r.org == "org_a" and start <= r.created_at < end]
    assert images == sum(r.images for r in in_range)


def test_decades_of_minute_buckets_page_cheaply(database: Database) -> None:
    page = usage(database, start_time=0, bucket_width="1m", limit=2)
    assert [b["start_time"] for b in page["data"]] == [0, 60]
    assert page["has_more"] is True


def test_next_page_carries_filters_from_the_query(database: Database) -> None:
    first = usage(database, start_time=D, limit=2, group_by=["model"], models=["dall-e-2"])
    assert first["has_more"] is True
    second = usage(
        database,
        start_time=D,
        limit=2,
        group_by=["model"],
        models=["dall-e-2"],
        page=first["next_page"],
    )
    assert [b["start_time"] for b in second["data"]] == [D + 2 * DAY, D + 3 * DAY]
    assert groups(second, "model") == [[("dall-e-2", 3, 1)], []]
    assert second["has_more"] is False


@pytest.mark.parametrize(
    ("query", "param"),
    [
        ({}, "start_time"),
        ({"start_time": "soon"}, "start_time"),
        ({"start_time": "-5"}, "start_time"),
        ({"start_time": D, "end_time": D}, "end_time"),
        ({"start_time": D, "end_time": "x"}, "end_time"),
        ({"start_time": D, "bucket_width": "2d"}, "bucket_width"),
        ({"start_time": D, "limit": 0}, "limit"),
        ({"start_time": D, "limit": 32}, "limit"),
        ({"start_time": D, "limit": "ten"}, "limit"),
        ({"start_time": D, "bucket_width": "1h", "limit": 169}, "limit"),
        ({"start_time": D, "bucket_width": "1m", "limit": 1441}, "limit"),
        ({"start_time": D, "group_by": ["line_item"]}, "group_by"),
        ({"start_time": D, "group_by__": ["model", "colour"]}, "group_by"),
        ({"start_time": D, "sources": ["image.upscale"]}, "sources"),
        ({"start_time": D, "sizes": ["huge"]}, "sizes"),
        ({"start_time": D, "models": [""]}, "models"),
        ({"start_time": D, "line_items": ["x"]}, "line_items"),
        ({"start_time": D, "colour": "red"}, "colour"),
        ({"start_time": D, "page": "garbage"}, "page"),
        ({"start_time": D, "page": "page_!!!"}, "page"),
        ({"start_time": D, "page": "page_" + "A" * 80}, "page"),
    ],
)
def test_usage_parameter_errors(database: Database, query: dict[str, Any], param: str) -> None:
    with pytest.raises(InvalidValue) as caught:
        usage(database, **query)
    assert caught.value.param == param
    assert caught.value.status == 400


def test_cursor_from_another_query_is_refused(database: Database) -> None:
    hourly = usage(database, start_time=D, bucket_width="1h", limit=2)
    with pytest.raises(InvalidValue) as caught:
        usage(database, start_time=D, page=hourly["next_page"])  # a 1h cursor on 1d buckets
    assert caught.value.param == "page"
    daily = usage(database, start_time=D, limit=1)
    with pytest.raises(InvalidValue):
        usage(database, start_time=D + 5 * DAY, page=daily["next_page"])  # before the first bucket


def test_other_organizations_never_show(database: Database) -> None:
    org_b = usage(database, "org_b", start_time=D, group_by=["project_id"])
    assert groups(org_b, "project_id") == [[("proj_z", 5, 1)], [], [], []]
    org_a = usage(database, start_time=D, group_by=["project_id", "api_key_id"])
    assert {r["project_id"] for b in org_a["data"] for r in b["results"]} == {"proj_a", "proj_b"}
    assert [b["results"] for b in usage(database, "org_nobody", start_time=D)["data"]] == [[]] * 4
    # Filtering on another organization's project finds nothing either.
    assert totals(usage(database, start_time=D, project_ids=["proj_z"])) == [None] * 4
    assert cost_page(database, start_time=D, project_ids=["proj_z"])["data"][0]["results"] == []


def test_costs_ungrouped(database: Database) -> None:
    page = cost_page(database, start_time=D)
    assert page["has_more"] is False and len(page["data"]) == 4
    day_totals = [nanos("r1") + nanos("r2"), nanos("r3"), nanos("r4") + nanos("r5")]
    assert [b["results"] for b in page["data"]][3] == []
    for bucket, expected in zip(page["data"], day_totals, strict=False):
        assert bucket["results"] == [
            {
                "object": "organization.costs.result",
                "amount": {"value": dollars(expected), "currency": "usd"},
                "line_item": None,
                "project_id": None,
                "api_key_id": None,
                "quantity": None,
                "quantity_unit": None,
            }
        ]


def test_costs_by_line_item(database: Database) -> None:
    page = cost_page(database, start_time=D, end_time=D + 3 * DAY, group_by__=["line_item"])
    found = [
        [
            (r["line_item"], r["quantity"], r["quantity_unit"], r["amount"]["value"])
            for r in b["results"]
        ]
        for b in page["data"]
    ]
    assert found == [
        [
            ("gpt-image-1 image, input", 194, "tokens", dollars(194 * 10_000)),
            ("gpt-image-1 image, output", 2112 + 1584, "tokens", dollars(3696 * 40_000)),
            ("gpt-image-1 text, input", 30, "tokens", dollars(30 * 5_000)),
        ],
        [("dall-e-3", 1, "images", 0.08)],
        [
            ("dall-e-2", 3, "images", 0.048),
            # gpt-image-1-mini had no image input: no empty line item for it.
            ("gpt-image-1-mini image, output", 272, "tokens", dollars(272 * 8_000)),
            ("gpt-image-1-mini text, input", 5, "tokens", dollars(5 * 2_000)),
        ],
    ]


def test_costs_by_project_and_key(database: Database) -> None:
    page = cost_page(
        database, start_time=D, end_time=D + 3 * DAY, group_by=["project_id", "api_key_id"]
    )
    found = [
        [
            (r["project_id"], r["api_key_id"], r["amount"]["value"], r["line_item"])
            for r in b["results"]
        ]
        for b in page["data"]
    ]
    assert found == [
        [
            ("proj_a", "key_a", dollars(nanos("r1")), None),
            ("proj_b", "key_b", dollars(nanos("r2")), None),
        ],
        [("proj_a", "key_a", dollars(nanos("r3")), None)],
        [
            ("proj_a", "key_b", dollars(nanos("r4")), None),
            ("proj_b", "key_b", dollars(nanos("r5")), None),
        ],
    ]
    by_project = cost_page(
        database, start_time=D, end_time=D + DAY, group_by=["project_id", "line_item"]
    )
    assert [
        (r["project_id"], r["line_item"], r["quantity"]) for r in by_project["data"][0]["results"]
    ] == [
        ("proj_a", "gpt-image-1 image, output", 2112),
        ("proj_a", "gpt-image-1 text, input", 10),
        ("proj_b", "gpt-image-1 image, input", 194),
        ("proj_b", "gpt-image-1 image, output", 1584),
        ("proj_b", "gpt-image-1 text, input", 20),
    ]


def test_costs_filters(database: Database) -> None:
    only_output = cost_page(
        database, start_time=D, end_time=D + DAY, line_items__=["gpt-image-1 image, output"]
    )
    assert only_output["data"][0]["results"][0]["amount"]["value"] == dollars(3696 * 40_000)
    assert only_output["data"][0]["results"][0]["quantity"] is None
    images_only = cost_page(
        database, start_time=D, line_items=["dall-e-2", "dall-e-3"], group_by=["line_item"]
    )
    assert [[r["line_item"] for r in b["results"]] for b in images_only["data"]] == [
        [],
        ["dall-e-3"],
        ["dall-e-2"],
        [],
    ]
    by_key = cost_page(database, start_time=D, api_key_ids__=["key_b"], project_ids__=["proj_a"])
    assert [[r["amount"]["value"] for r in b["results"]] for b in by_key["data"]] == [
        [],
        [],
        [0.048],
        [],
    ]


def test_costs_sum_exactly(database: Database) -> None:
    page = cost_page(database, "org_many", start_time=D, end_time=D + DAY)
    # 250 x $0.000005 adds up to $0.00125 exactly (summing floats would not).
    assert page["data"][0]["results"][0]["amount"]["value"] == 0.00125
    lines = cost_page(database, "org_many", start_time=D, end_time=D + DAY, group_by=["line_item"])
    assert [(r["quantity"], r["amount"]["value"]) for r in lines["data"][0]["results"]] == [
        (MANY, 0.00125)
    ]
    requests = usage(database, "org_many", start_time=D, end_time=D + DAY)
    assert totals(requests) == [(MANY, MANY)]


def test_costs_pagination_and_limits(database: Database) -> None:
    query: dict[str, Any] = {"start_time": D - 10 * DAY, "limit": 5}
    starts: list[int] = []
    total = 0.0
    while True:
        page = cost_page(database, **query)
        starts.extend(b["start_time"] for b in page["data"])
        total += sum(r["amount"]["value"] for b in page["data"] for r in b["results"])
        if not page["has_more"]:
            break
        query["page"] = page["next_page"]
    assert starts == list(range(D - 10 * DAY, D + 4 * DAY, DAY))
    assert total == pytest.approx(
        dollars(sum(nanos(r) for r in ("r1", "r2", "r3", "r4", "r5")) + 272 * 40_000 + 5_000)
    )
    assert len(cost_page(database, start_time=D - 200 * DAY)["data"]) == 7
    assert len(cost_page(database, start_time=D - 200 * DAY, limit=180)["data"]) == 180


@pytest.mark.parametrize(
    ("query", "param"),
    [
        ({}, "start_time"),
        ({"start_time": D, "bucket_width": "1h"}, "bucket_width"),
        ({"start_time": D, "limit": 181}, "limit"),
        ({"start_time": D, "limit": 0}, "limit"),
        ({"start_time": D, "group_by": ["model"]}, "group_by"),
        ({"start_time": D, "group_by__": ["user_id"]}, "group_by"),
        ({"start_time": D, "models": ["gpt-image-1"]}, "models"),
        ({"start_time": D, "page": "page_MTIzOjQ1Ng"}, "page"),
    ],
)
def test_costs_parameter_errors(database: Database, query: dict[str, Any], param: str) -> None:
    with pytest.raises(InvalidValue) as caught:
        cost_page(database, **query)
    assert caught.value.param == param
