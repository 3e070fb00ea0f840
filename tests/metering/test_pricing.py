"""Prices: exact nano-dollars from decimal strings, costs per line item, operator overrides."""

import json
from decimal import Decimal
from typing import Any

import pytest
from sqlalchemy import select

from limner.errors import InvalidValue
from limner.metering.pricing import (
    Cost,
    PriceTable,
    line_item_names,
    load_price_overrides,
    load_prices,
    save_price_overrides,
)
from limner.storage.db import Database
from limner.storage.tables import PlatformDocument

NANO = 10**9


def _cost(table: PriceTable, model: str, **overrides: Any) -> Cost:
    usage: dict[str, Any] = {
        "text_input_tokens": 0,
        "image_input_tokens": 0,
        "image_output_tokens": 0,
        "images": 1,
        "quality": "medium",
        "size": "1024x1024",
    }
    usage.update(overrides)
    return table.cost(model, **usage)


def test_default_token_prices_are_whole_nanodollars() -> None:
    table = PriceTable.default()
    cost = _cost(
        table,
        "gpt-image-1",
        text_input_tokens=10,
        image_input_tokens=194,
        image_output_tokens=1056,
    )
    assert cost == Cost(10 * 5000, 194 * 10_000, 1056 * 40_000)
    assert cost.total == 10 * 5000 + 194 * 10_000 + 1056 * 40_000
    # §6.2: medium 1024x1024 is 1056 tokens = $0.04224 exactly.
    assert _cost(table, "gpt-image-1", image_output_tokens=1056).total == 42_240_000
    mini = _cost(
        table, "gpt-image-1-mini", text_input_tokens=1, image_input_tokens=1, image_output_tokens=1
    )
    assert mini == Cost(2000, 2500, 8000)
    for model in ("gpt-image-1.5", "gpt-image-2"):
        assert _cost(table, model, text_input_tokens=3) == Cost(15_000, 0, 0)


@pytest.mark.parametrize(
    ("model", "quality", "size", "usd"),
    [
        ("dall-e-3", "standard", "1024x1024", "0.040"),
        ("dall-e-3", "standard", "1792x1024", "0.080"),
        ("dall-e-3", "hd", "1024x1024", "0.080"),
        ("dall-e-3", "hd", "1024x1792", "0.120"),
        ("dall-e-2", "standard", "256x256", "0.016"),
        ("dall-e-2", "standard", "512x512", "0.018"),
        ("dall-e-2", "standard", "1024x1024", "0.020"),
    ],
)
def test_image_priced_models_bill_per_image(model: str, quality: str, size: str, usd: str) -> None:
    cost = _cost(
        PriceTable.default(), model, images=3, quality=quality, size=size, text_input_tokens=9
    )
    assert cost == Cost(0, 0, 3 * int(Decimal(usd) * NANO))


def test_unpriced_models_and_cells_are_free() -> None:
    table = PriceTable.default()
    assert _cost(table, "my-own-model", text_input_tokens=99, image_output_tokens=5).total == 0
    assert _cost(table, "dall-e-3", quality="ultra", size="1024x1024").total == 0
    assert "my-own-model" not in table.models()
    assert {"gpt-image-1", "gpt-image-1-mini", "gpt-image-1.5", "gpt-image-2"} <= set(
        table.models()
    )


def test_line_item_names() -> None:
    table = PriceTable.default()
    assert table.line_item_names("gpt-image-1") == {
        "text_input": "gpt-image-1 text, input",
        "image_input": "gpt-image-1 image, input",
        "image_output": "gpt-image-1 image, output",
    }
    assert table.line_item_names("dall-e-3") == {"image_output": "dall-e-3"}
    assert line_item_names("dall-e-2", per_image=True) == {"image_output": "dall-e-2"}
    assert line_item_names("x")["text_input"] == "x text, input"


def test_mapping_round_trip_and_merge() -> None:
    table = PriceTable.default()
    assert PriceTable.from_mapping(json.loads(json.dumps(table.to_mapping()))) == table
    assert table.to_mapping()["gpt-image-1-mini"] == {
        "per_million_tokens": {"text_input": "2.00", "image_input": "2.50", "image_output": "8.00"}
    }
    override = {
        "dall-e-3": {
            "per_million_tokens": {"text_input": "1", "image_input": "0", "image_output": "0.001"}
        }
    }
    merged = table.merged(override)
    assert _cost(merged, "dall-e-3", text_input_tokens=2, image_output_tokens=1000) == Cost(
        2000, 0, 1000
    )
    assert merged.line_item_names("dall-e-3")["text_input"] == "dall-e-3 text, input"
    # The other models keep their packaged prices; the original table is untouched.
    assert _cost(merged, "dall-e-2", quality="standard", size="256x256").total == 16_000_000
    assert table.is_per_image("dall-e-3") and not merged.is_per_image("dall-e-3")


TOKEN_OK = {"text_input": "1", "image_input": "1", "image_output": "1"}


@pytest.mark.parametrize(
    "bad",
    [
        [],
        {"": {"per_million_tokens": TOKEN_OK}},
        {"m": "5.00"},
        {"m": {}},
        {"m": {"per_million_tokens": TOKEN_OK, "per_image": {}}},
        {"m": {"per_token": TOKEN_OK}},
        {"m": {"per_million_tokens": {"text_input": "1", "image_input": "1"}}},
        {"m": {"per_million_tokens": {**TOKEN_OK, "cached": "1"}}},
        {"m": {"per_million_tokens": {**TOKEN_OK, "text_input": 5.0}}},
        {"m": {"per_million_tokens": {**TOKEN_OK, "text_input": True}}},
        {"m": {"per_million_tokens": {**TOKEN_OK, "text_input": "five"}}},
        {"m": {"per_million_tokens": {**TOKEN_OK, "text_input": "-1"}}},
        {"m": {"per_million_tokens": {**TOKEN_OK, "text_input": "NaN"}}},
        {"m": {"per_million_tokens": {**TOKEN_OK, "text_input": "Infinity"}}},
        {"m": {"per_million_tokens": {**TOKEN_OK, "text_input": "1e30"}}},
        # $0.0001 per million tokens is a tenth of a nano-dollar per token.
        {"m": {"per_million_tokens": {**TOKEN_OK, "text_input": "0.0001"}}},
        {"m": {"per_image": {}}},
        {"m": {"per_image": {"standard": {}}}},
        {"m": {"per_image": {"standard": {"big": "0.04"}}}},
        {"m": {"per_image": {"standard": {"1024x1024": "0.0000000001"}}}},
    ],
)
def test_bad_price_tables_are_refused(bad: Any) -> None:
    with pytest.raises(InvalidValue) as caught:
        PriceTable.from_mapping(bad)
    assert caught.value.param == "prices"
    assert caught.value.message


def test_message_names_the_bad_entry() -> None:
    with pytest.raises(InvalidValue, match=r"gpt-image-1.*text_input.*nano-dollars"):
        PriceTable.default().merged(
            {"gpt-image-1": {"per_million_tokens": {**TOKEN_OK, "text_input": "0.00005"}}}
        )


def test_overrides_saved_and_loaded(database: Database) -> None:
    with database.transaction() as session:
        assert load_prices(session) == PriceTable.default()
        assert load_price_overrides(session) == {}
    override = {
        "gpt-image-1": {
            "per_million_tokens": {
                "text_input": "6",
                "image_input": "11",
                "image_output": Decimal("41.5"),
            }
        }
    }
    with database.transaction() as session:
        merged = save_price_overrides(session, override, now=1_700_000_000)
    assert _cost(merged, "gpt-image-1", text_input_tokens=1, image_output_tokens=2) == Cost(
        6000, 0, 83_000
    )
    with database.transaction() as session:
        loaded = load_prices(session)
        document = session.scalar(select(PlatformDocument).where(PlatformDocument.name == "prices"))
        assert document is not None and document.updated_at == 1_700_000_000
    assert loaded == merged
    assert _cost(loaded, "dall-e-3", quality="hd", size="1024x1024").total == 80_000_000
    # Saving again replaces the whole override set: gpt-image-1 goes back to the packaged price.
    dalle = {"dall-e-3": {"per_image": {"hd": {"1024x1024": "0.5"}}}}
    with database.transaction() as session:
        save_price_overrides(session, dalle, now=1_700_000_100)
    with database.transaction() as session:
        loaded = load_prices(session)
        assert load_price_overrides(session) == {
            "dall-e-3": {"per_image": {"hd": {"1024x1024": "0.50"}}}
        }
    assert _cost(loaded, "gpt-image-1", text_input_tokens=1).total == 5000
    assert _cost(loaded, "dall-e-3", quality="hd", size="1024x1024").total == 500_000_000
    assert _cost(loaded, "dall-e-3", quality="standard", size="1024x1024").total == 0


def test_bad_override_is_rejected_and_not_stored(database: Database) -> None:
    with database.transaction() as session:
        save_price_overrides(
            session, {"dall-e-2": {"per_image": {"standard": {"256x256": "1"}}}}, 1
        )
    with pytest.raises(InvalidValue), database.transaction() as session:
        save_price_overrides(session, {"dall-e-2": {"per_image": {"standard": {"256": "1"}}}}, 2)
    with database.transaction() as session:
        assert load_price_overrides(session) == {
            "dall-e-2": {"per_image": {"standard": {"256x256": "1.00"}}}
        }


def test_meter_reads_overrides_on_a_core_connection(database: Database) -> None:
    """The meter refreshes prices on its Core connection, outside any ORM session."""
    with database.read() as connection:
        assert load_prices(connection) == PriceTable.default()
    dalle = {"dall-e-3": {"per_image": {"hd": {"1024x1024": "0.5"}}}}
    with database.transaction() as session:
        merged = save_price_overrides(session, dalle, now=1_700_000_000)
    with database.read() as connection:
        assert load_prices(connection) == merged
