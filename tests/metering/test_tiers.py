"""The tier table: the packaged file, qualification, and the operator's document."""

import pytest

from limner.errors import InvalidValue
from limner.metering.tiers import TierBook, TierTable, TierTableError
from limner.storage.db import Database


def test_packaged_table_matches_the_reference() -> None:
    table = TierTable.load()
    assert table.model_limits("gpt-image-1", "free") is None
    assert table.lowest_tier_for("gpt-image-1") == "1"
    tier1 = table.model_limits("gpt-image-1", "1")
    assert tier1 is not None and (tier1.images_per_minute, tier1.tokens_per_minute) == (5, 100_000)
    tier5 = table.model_limits("gpt-image-1-mini", "5")
    assert tier5 is not None and tier5.images_per_minute == 250
    dalle3 = table.model_limits("dall-e-3", "3")
    assert dalle3 is not None and dalle3.images_per_minute == 7
    assert table.model_limits("limner-mini", "free") is not None  # "*": every other name
    assert table.usage_limit_nano("5") == 200_000 * 10**9
    assert TierTable.from_mapping(table.to_mapping()) == table


@pytest.mark.parametrize(
    ("paid_usd", "days", "tier"),
    [(0, 0, "free"), (5, 0, "1"), (50, 6, "1"), (50, 7, "2"), (250, 13, "3"), (1000, 30, "5")],
)
def test_qualification_needs_both_amount_and_time(paid_usd: int, days: int, tier: str) -> None:
    assert TierTable.load().qualifying_tier(paid_usd * 10**9, days) == tier


def test_bad_tables_are_refused() -> None:
    mapping = TierTable.load().to_mapping()
    del mapping["tiers"]["3"]
    with pytest.raises(TierTableError):
        TierTable.from_mapping(mapping)
    broken = TierTable.load().to_mapping()
    broken["limits"]["dall-e-2"]["1"] = {"rpm": 0, "tpm": 1, "ipm": 1}
    with pytest.raises(TierTableError):
        TierTable.from_mapping(broken)


def test_the_operators_document_reaches_other_processes(database: Database) -> None:
    now = [0.0]
    fallback = TierTable.load()
    mine = TierBook(database, fallback, refresh_seconds=5, clock=lambda: now[0])
    theirs = TierBook(database, fallback, refresh_seconds=5, clock=lambda: now[0])
    assert theirs.table() == fallback
    mapping = fallback.to_mapping()
    mapping["limits"]["gpt-image-1"]["1"]["ipm"] = 1
    saved = mine.save(mapping, now=1)
    limits = mine.table().model_limits("gpt-image-1", "1")
    assert saved == mine.table() and limits is not None and limits.images_per_minute == 1
    assert theirs.table() == fallback  # cached for up to refresh_seconds
    now[0] = 5.0
    assert theirs.table() == saved
    with pytest.raises(InvalidValue):
        mine.save({"tiers": {}, "limits": {}}, now=2)
    assert mine.reset() == fallback
    now[0] = 10.0
    assert theirs.table() == fallback
