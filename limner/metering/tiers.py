"""Usage tiers: what each tier may use per model per minute, and its monthly usage limit.

The table is data (tiers.default.toml, or the operator's copy named by LIMNER_TIERS), so an
operator changes limits without code. Which tier gates a model is part of every refusal, so a
user can always tell what stands in the way.
"""

import json
import threading
import time
import tomllib
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Annotated, Any

from pydantic import BaseModel, ConfigDict, Field, ValidationError

from limner.datafiles import describe_validation_error
from limner.errors import InvalidValue, StartupError
from limner.storage.db import Database
from limner.storage.tables import PlatformDocument

TIER_NAMES = ("free", "1", "2", "3", "4", "5")
DEFAULT_TIERS_FILE = Path(__file__).parent / "tiers.default.toml"
_ANY_MODEL = "*"


class TierTableError(StartupError):
    """The operator's tier file is unusable; raised at start-up, never on a request."""


@dataclass(frozen=True)
class ModelLimits:
    requests_per_minute: int
    tokens_per_minute: int
    images_per_minute: int


@dataclass(frozen=True)
class Tier:
    name: str
    paid_usd: int
    days: int
    usage_limit_usd: int


@dataclass(frozen=True)
class TierTable:
    tiers: dict[str, Tier]
    # model name (or "*") → tier name → limits; a tier absent from the inner map has no access.
    limits: dict[str, dict[str, ModelLimits]]

    @classmethod
    def load(cls, path: Path | None = None) -> "TierTable":
        path = path or DEFAULT_TIERS_FILE
        try:
            data = tomllib.loads(path.read_text())
        except (OSError, tomllib.TOMLDecodeError) as exc:
            raise TierTableError(f"cannot read tier table {path}: {exc}") from exc
        return cls.from_mapping(data, source=str(path))

    @classmethod
    def from_mapping(cls, data: dict[str, Any], source: str = "tier table") -> "TierTable":
        try:
            parsed = _TierFile.model_validate(data)
        except ValidationError as exc:
            raise TierTableError(f"{source}: {describe_validation_error(exc)}") from exc
        tiers = {
            name: Tier(name, spec.paid_usd, spec.days, spec.usage_limit_usd)
            for name, spec in parsed.tiers.by_name().items()
        }
        limits: dict[str, dict[str, ModelLimits]] = {}
        for group in parsed.limits.values():
            per_tier = {
                name: ModelLimits(spec.rpm, spec.tpm, spec.ipm)
                for name, spec in group.by_name().items()
                if spec is not None
            }
            for model in group.models:
                if model in limits:
                    raise TierTableError(f"{source}: model {model!r} is in two limit groups")
                limits[model] = per_tier
        return cls(tiers, limits)

    def to_mapping(self) -> dict[str, Any]:
        """The same structure the TOML file has, one group per model."""
        return {
            "tiers": {
                name: {"paid_usd": t.paid_usd, "days": t.days, "usage_limit_usd": t.usage_limit_usd}
                for name, t in self.tiers.items()
            },
            "limits": {
                model: {
                    "models": [model],
                    **{
                        tier: {
                            "rpm": limits.requests_per_minute,
                            "tpm": limits.tokens_per_minute,
                            "ipm": limits.images_per_minute,
                        }
                        for tier, limits in per_tier.items()
                    },
                }
                for model, per_tier in self.limits.items()
            },
        }

    def model_limits(self, model: str, tier: str) -> ModelLimits | None:
        """The organization-wide limits of `model` at `tier`; None: the tier has no access."""
        return self._table(model).get(tier)

    def lowest_tier_for(self, model: str) -> str | None:
        table = self._table(model)
        return next((tier for tier in TIER_NAMES if tier in table), None)

    def qualifying_tier(self, paid_nano: int, days_since_first_payment: float) -> str:
        """The highest tier whose qualification is met: both the amount paid and the days
        since the first payment, as OpenAI's guide states them."""
        reached = TIER_NAMES[0]
        for name in TIER_NAMES:
            tier = self.tiers[name]
            if paid_nano >= tier.paid_usd * 1_000_000_000 and days_since_first_payment >= tier.days:
                reached = name
        return reached

    def usage_limit_nano(self, tier: str) -> int:
        return self.tiers[tier].usage_limit_usd * 1_000_000_000

    def _table(self, model: str) -> dict[str, ModelLimits]:
        return self.limits.get(model) or self.limits.get(_ANY_MODEL, {})


class _Strict(BaseModel):
    # strict: a limit is an integer, never a string or a float that happens to convert.
    model_config = ConfigDict(frozen=True, extra="forbid", strict=True)


class _TierSpec(_Strict):
    paid_usd: Annotated[int, Field(ge=0)]
    days: Annotated[int, Field(ge=0)]
    usage_limit_usd: Annotated[int, Field(ge=0)]


class _Tiers(_Strict):
    """`[tiers.free]` ... `[tiers.5]`: every tier, each once."""

    free: _TierSpec
    tier_1: _TierSpec = Field(alias="1")
    tier_2: _TierSpec = Field(alias="2")
    tier_3: _TierSpec = Field(alias="3")
    tier_4: _TierSpec = Field(alias="4")
    tier_5: _TierSpec = Field(alias="5")

    def by_name(self) -> dict[str, _TierSpec]:
        return dict(zip(TIER_NAMES, (getattr(self, field) for field in _TIER_FIELDS), strict=True))


class _Limits(_Strict):
    rpm: Annotated[int, Field(ge=1)]
    tpm: Annotated[int, Field(ge=1)]
    ipm: Annotated[int, Field(ge=1)]


class _LimitGroup(_Strict):
    """`[limits.GROUP]`: the models it covers and the limits of each tier that has access."""

    models: list[str]
    free: _Limits | None = None
    tier_1: _Limits | None = Field(None, alias="1")
    tier_2: _Limits | None = Field(None, alias="2")
    tier_3: _Limits | None = Field(None, alias="3")
    tier_4: _Limits | None = Field(None, alias="4")
    tier_5: _Limits | None = Field(None, alias="5")

    def by_name(self) -> dict[str, _Limits | None]:
        return dict(zip(TIER_NAMES, (getattr(self, field) for field in _TIER_FIELDS), strict=True))


_TIER_FIELDS = ("free", "tier_1", "tier_2", "tier_3", "tier_4", "tier_5")


class _TierFile(_Strict):
    tiers: _Tiers
    limits: dict[str, _LimitGroup] = Field(default_factory=dict)


DOCUMENT = "tiers"


class TierBook:
    """The tier table in force: the operator's document when one is saved (PUT
    /v1/limner/tiers), else the file's. Re-read at most every `refresh_seconds`, so a change
    reaches every process within that time without a query per request."""

    def __init__(
        self,
        database: Database,
        fallback: TierTable,
        refresh_seconds: float = 5.0,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self._database = database
        self._fallback = fallback
        self._refresh_seconds = refresh_seconds
        self._clock = clock
        self._lock = threading.Lock()
        self._cached: tuple[float, TierTable] | None = None

    def table(self) -> TierTable:
        now = self._clock()
        with self._lock:
            if self._cached is None or now - self._cached[0] >= self._refresh_seconds:
                self._cached = (now, self._read())
            return self._cached[1]

    def save(self, mapping: dict[str, Any], now: int) -> TierTable:
        try:
            table = TierTable.from_mapping(mapping, source="tiers")
        except TierTableError as exc:
            raise InvalidValue(str(exc), "tiers") from exc
        with self._database.transaction() as session:
            session.merge(PlatformDocument(name=DOCUMENT, body=json.dumps(mapping), updated_at=now))
        with self._lock:
            self._cached = (self._clock(), table)
        return table

    def reset(self) -> TierTable:
        """Drop the operator's document: the file's table is in force again."""
        with self._database.transaction() as session:
            document = session.get(PlatformDocument, DOCUMENT)
            if document is not None:
                session.delete(document)
        with self._lock:
            self._cached = (self._clock(), self._fallback)
        return self._fallback

    def _read(self) -> TierTable:
        with self._database.transaction() as session:
            document = session.get(PlatformDocument, DOCUMENT)
            body = document.body if document is not None else None
        if body is None:
            return self._fallback
        return TierTable.from_mapping(json.loads(body), source="the operator's tier document")
