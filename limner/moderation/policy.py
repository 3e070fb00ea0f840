"""Moderation policy as data: which checks run where, and what score refuses, per organization.

The operator's policy (the packaged policy.default.toml, or LIMNER_MODERATION_POLICY) applies to
every organization; an organization's own document, set through the operator API, is merged over
it key by key. Re-read at most every few seconds, like prices and tiers.
"""

import json
import threading
import time
import tomllib
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Any

from pydantic import BaseModel, ConfigDict, Field, ValidationError, model_validator

from limner.errors import InvalidValue, StartupError
from limner.moderation.protocol import CATEGORIES, Level, Severity, Signal, Stage
from limner.moderation.terms import TermCheck, TermListError, TermLists
from limner.storage.db import Database
from limner.storage.tables import ModerationPolicy

DEFAULT_POLICY_FILE = Path(__file__).parent / "policy.default.toml"


class PolicyError(StartupError):
    """The operator's policy file is unusable; raised at start-up, never on a request."""


class Thresholds(BaseModel):
    model_config = ConfigDict(extra="forbid")

    auto: float = Field(ge=0.0, le=1.0)
    low: float = Field(ge=0.0, le=1.0)

    def at(self, level: Level) -> float:
        return self.auto if level == "auto" else self.low


class CheckPolicy(BaseModel):
    model_config = ConfigDict(extra="forbid")

    enabled: bool = True
    stages: tuple[Stage, ...]
    thresholds: Thresholds
    categories: dict[str, Thresholds] = Field(default_factory=dict)

    @model_validator(mode="after")
    def _known_categories(self) -> "CheckPolicy":
        unknown = set(self.categories) - set(CATEGORIES)
        if unknown:
            raise ValueError(f"unknown categories {sorted(unknown)}; expected {CATEGORIES}")
        return self

    def threshold(self, category: str, level: Level) -> float:
        return self.categories.get(category, self.thresholds).at(level)


class Policy(BaseModel):
    model_config = ConfigDict(extra="forbid")

    enabled: bool = True
    minors_sexual_threshold: float = Field(default=0.25, ge=0.0, le=1.0)
    checks: dict[str, CheckPolicy]
    # Extra term lists in terms.default.toml's shape, added to the operator's.
    terms: dict[str, dict[str, list[str]]] = Field(default_factory=dict)

    @model_validator(mode="after")
    def _terms_compile(self) -> "Policy":
        try:
            TermCheck(TermLists.from_mapping(self.terms))  # compiles every pattern
        except TermListError as exc:
            raise ValueError(str(exc)) from exc
        return self

    def checks_at(self, stage: Stage) -> list[str]:
        if not self.enabled:
            return []
        return [
            name for name, check in self.checks.items() if check.enabled and stage in check.stages
        ]

    def blocks(self, signal: Signal, level: Level) -> bool:
        """Whether `signal` refuses the request at `level` under this policy."""
        check = self.checks.get(signal.check)
        if check is None or not check.enabled:
            return False
        if level == "low" and signal.severity == "mild":
            return False
        return signal.score >= check.threshold(signal.category, level)


def merge(base: Mapping[str, Any], changes: Mapping[str, Any]) -> dict[str, Any]:
    """`changes` over `base`, recursively for tables; lists and values are replaced whole."""
    merged = dict(base)
    for key, value in changes.items():
        if isinstance(value, Mapping) and isinstance(merged.get(key), Mapping):
            merged[key] = merge(merged[key], value)
        else:
            merged[key] = value
    return merged


def load_policy_document(path: Path | None = None) -> dict[str, Any]:
    path = path or DEFAULT_POLICY_FILE
    try:
        document = tomllib.loads(path.read_text(encoding="utf-8"))
        Policy.model_validate(document)
    except (OSError, tomllib.TOMLDecodeError, ValidationError) as exc:
        raise PolicyError(f"cannot use moderation policy {path}: {exc}") from exc
    return document


_SEVERITY_ORDER: dict[Severity, int] = {"mild": 0, "severe": 1}


class PolicyBook:
    """Each organization's policy in force: the operator's document with the organization's
    changes merged over it. Cached per organization for `refresh_seconds`."""

    def __init__(
        self,
        database: Database,
        operator_document: Mapping[str, Any],
        check_names: set[str],
        refresh_seconds: float = 5.0,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self._database = database
        self._operator_document = dict(operator_document)
        self._check_names = check_names
        self._refresh_seconds = refresh_seconds
        self._clock = clock
        self._lock = threading.Lock()
        self._cached: dict[str, tuple[float, Policy]] = {}
        try:
            self._check_known(self.operator_policy())
        except InvalidValue as exc:
            raise PolicyError(exc.message) from exc

    def operator_policy(self) -> Policy:
        return Policy.model_validate(self._operator_document)

    def policy(self, organization_id: str) -> Policy:
        now = self._clock()
        with self._lock:
            cached = self._cached.get(organization_id)
            if cached is not None and now - cached[0] < self._refresh_seconds:
                return cached[1]
        policy = Policy.model_validate(
            merge(self._operator_document, self.changes(organization_id))
        )
        with self._lock:
            self._cached[organization_id] = (now, policy)
        return policy

    def changes(self, organization_id: str) -> dict[str, Any]:
        """The organization's own document ({} when it has none)."""
        with self._database.transaction() as session:
            row = session.get(ModerationPolicy, organization_id)
            return json.loads(row.body) if row is not None else {}

    def save(self, organization_id: str, changes: Mapping[str, Any], now: int) -> Policy:
        """Replace the organization's document; refused (400) when the merged policy is invalid."""
        try:
            policy = Policy.model_validate(merge(self._operator_document, changes))
        except ValidationError as exc:
            raise InvalidValue(f"Invalid moderation policy: {_first_error(exc)}", "policy") from exc
        self._check_known(policy)
        with self._database.transaction() as session:
            session.merge(
                ModerationPolicy(
                    organization_id=organization_id, body=json.dumps(changes), updated_at=now
                )
            )
        with self._lock:
            self._cached[organization_id] = (self._clock(), policy)
        return policy

    def _check_known(self, policy: Policy) -> None:
        unknown = set(policy.checks) - self._check_names
        if unknown:
            raise InvalidValue(
                "The moderation policy names checks this server does not have: "
                f"{', '.join(sorted(unknown))} "
                f"(available: {', '.join(sorted(self._check_names))}).",
                "policy",
            )


def _first_error(exc: ValidationError) -> str:
    error = exc.errors()[0]
    where = ".".join(str(part) for part in error["loc"])
    return f"{where}: {error['msg']}" if where else error["msg"]


def worst(signals: list[Signal]) -> Signal:
    """The signal to report for a refusal: severe before mild, then the highest score."""
    return max(signals, key=lambda s: (_SEVERITY_ORDER[s.severity], s.score))
