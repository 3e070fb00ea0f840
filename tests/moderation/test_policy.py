"""Policy as data: thresholds per level, merging an organization's changes, validation."""

import pytest

from limner.accounts.orgs import Organizations
from limner.errors import InvalidValue
from limner.moderation.policy import (
    PolicyBook,
    PolicyError,
    load_policy_document,
    merge,
    worst,
)
from limner.moderation.protocol import Signal
from limner.storage.db import Database

CHECKS = {"terms", "prompt_classifier", "open_nsfw", "nudenet"}


@pytest.fixture()
def database(database: Database) -> Database:
    """The shared database fixture, with the operator's organization in it."""
    Organizations(database).bootstrap(None, None)
    return database


def signal(
    severity: str, score: float, category: str = "sexual", check: str = "open_nsfw"
) -> Signal:
    return Signal(check, category, severity, score)  # type: ignore[arg-type]


def test_packaged_policy_thresholds() -> None:
    document = load_policy_document()
    assert document["checks"]["open_nsfw"]["thresholds"] == {"auto": 0.5, "low": 0.85}
    assert document["checks"]["nudenet"]["enabled"] is False


def test_mild_signals_refuse_only_at_auto(database: Database) -> None:
    policy = PolicyBook(database, load_policy_document(), CHECKS).policy("org-operator")
    assert policy.blocks(signal("mild", 0.6), "auto")
    assert not policy.blocks(signal("mild", 0.99), "low")
    assert not policy.blocks(signal("severe", 0.6), "low")  # below low's 0.85
    assert policy.blocks(signal("severe", 0.9), "low")
    assert not policy.blocks(signal("mild", 0.9, check="nudenet"), "auto")  # check is off


def test_an_organizations_changes_merge_over_the_operators(database: Database) -> None:
    book = PolicyBook(database, load_policy_document(), CHECKS)
    changes = {
        "checks": {"open_nsfw": {"categories": {"sexual": {"auto": 0.2, "low": 0.3}}}},
        "terms": {"violence": {"severe": ["arena of blood sport"]}},
    }
    policy = book.save("org-operator", changes, now=1)
    assert policy.checks["open_nsfw"].threshold("sexual", "auto") == 0.2
    assert policy.checks["open_nsfw"].stages == ("input", "output")  # kept from the operator's
    assert policy.checks["prompt_classifier"].thresholds.auto == 0.7
    assert book.changes("org-operator") == changes
    # Another process (a fresh book on the same database) sees the same policy.
    again = PolicyBook(database, load_policy_document(), CHECKS).policy("org-operator")
    assert again.terms == {"violence": {"severe": ["arena of blood sport"]}}


@pytest.mark.parametrize(
    "changes",
    [
        {"checks": {"open_nsfw": {"thresholds": {"auto": 1.5, "low": 0.5}}}},
        {"checks": {"open_nsfw": {"stages": ["somewhere"]}}},
        {"checks": {"open_nsfw": {"categories": {"weapons": {"auto": 0.1, "low": 0.1}}}}},
        {"terms": {"sexual": {"patterns_severe": ["(unclosed"]}}},
        {"unknown_field": True},
        {"checks": {"no_such_check": {"stages": ["prompt"], "thresholds": {"auto": 1, "low": 1}}}},
    ],
)
def test_invalid_changes_are_refused_and_nothing_is_saved(
    database: Database, changes: dict[str, object]
) -> None:
    book = PolicyBook(database, load_policy_document(), CHECKS)
    with pytest.raises(InvalidValue):
        book.save("org-operator", changes, now=1)
    assert book.changes("org-operator") == {}


def test_an_operator_policy_naming_a_missing_check_fails_at_start(database: Database) -> None:
    document = merge(
        load_policy_document(),
        {"checks": {"mine": {"stages": ["prompt"], "thresholds": {"auto": 0.5, "low": 0.5}}}},
    )
    with pytest.raises(PolicyError, match="mine"):
        PolicyBook(database, document, CHECKS)


def test_merge_replaces_lists_and_recurses_into_tables() -> None:
    assert merge({"a": {"b": 1, "c": [1]}}, {"a": {"c": [2]}}) == {"a": {"b": 1, "c": [2]}}


def test_worst_prefers_severe_then_score() -> None:
    assert worst([signal("mild", 0.99), signal("severe", 0.6)]).severity == "severe"
