"""Prices per model, as exact integer nano-dollars, and what one request costs.

Prices are written in US dollars as decimal strings (TOML or JSON) and converted once, at load,
to whole nano-dollars (1 USD = 10**9) per token or per image. Every price OpenAI publishes for the
image models is a whole number of nano-dollars at that scale ($2.50 per million tokens is 2,500
nano-dollars per token), so costs are integer products and every sum over them is exact; a price
that would need a fraction of a nano-dollar is refused at load rather than rounded.

Two kinds of model:

- token-priced (GPT image models): USD per million tokens for text input, image input and image
  output; the cost has one line item per kind.
- image-priced (DALL·E): USD per image by quality and size; the whole cost is one line item
  named after the model, carried in `Cost.image_output`.

The packaged table is `prices.default.toml`. Operators replace whole per-model entries; their
overrides live in the `platform_documents` row named "prices" (JSON, the same structure).
"""

import json
import re
import tomllib
from collections.abc import Mapping
from dataclasses import dataclass
from decimal import Decimal, Inexact, InvalidOperation, localcontext
from functools import lru_cache
from importlib import resources
from typing import Any, TypeAlias

from sqlalchemy import Connection, select
from sqlalchemy.orm import Session

from limner.errors import InvalidValue
from limner.storage.db import core_table
from limner.storage.tables import PlatformDocument

NANOS_PER_USD = 10**9
TOKENS_PER_PRICE_UNIT = 10**6  # token prices are quoted per million tokens
DOCUMENT_NAME = "prices"
LINE_ITEM_KINDS = ("text_input", "image_input", "image_output")

_TOKEN_KEY = "per_million_tokens"
_IMAGE_KEY = "per_image"
# A ceiling far above any real price; it keeps tokens x price well inside a signed 64-bit column.
_MAX_USD = Decimal(1_000_000)
_SIZE = re.compile(r"^[1-9][0-9]{0,4}x[1-9][0-9]{0,4}$")
_MODEL_NAME_MAX = 100  # usage_records.model is String(100)
_documents = core_table(PlatformDocument)
_READ_OVERRIDES = select(_documents.c.body).where(_documents.c.name == DOCUMENT_NAME)


@dataclass(frozen=True)
class Cost:
    """What one request costs, in nano-dollars per line item."""

    text_input: int
    image_input: int
    image_output: int

    @property
    def total(self) -> int:
        return self.text_input + self.image_input + self.image_output


FREE = Cost(0, 0, 0)


@dataclass(frozen=True)
class TokenPrices:
    """Nano-dollars per token."""

    text_input: int
    image_input: int
    image_output: int


@dataclass(frozen=True)
class ImagePrices:
    """Nano-dollars per image: quality -> size -> price."""

    by_quality: Mapping[str, Mapping[str, int]]


ModelPrices: TypeAlias = TokenPrices | ImagePrices


class PriceTable:
    """Immutable prices for every priced model; build one with `default`, `from_mapping`."""

    def __init__(self, entries: Mapping[str, ModelPrices]) -> None:
        self._entries: dict[str, ModelPrices] = dict(entries)

    @classmethod
    def default(cls) -> "PriceTable":
        """The packaged `prices.default.toml`."""
        return _default_table()

    @classmethod
    def from_mapping(cls, data: Mapping[str, Any]) -> "PriceTable":
        """Parse the TOML/JSON structure.

        Raises InvalidValue (param "prices") whose message names the offending entry."""
        if not isinstance(data, Mapping):
            raise _invalid("Prices must be an object mapping model names to price entries.")
        return cls({_model_name(name): _parse_entry(name, entry) for name, entry in data.items()})

    def merged(self, overrides: Mapping[str, Any]) -> "PriceTable":
        """This table with each model named in `overrides` replaced by its entry there."""
        return PriceTable({**self._entries, **PriceTable.from_mapping(overrides)._entries})

    def to_mapping(self) -> dict[str, Any]:
        """The TOML/JSON structure, prices as dollar strings; `from_mapping` reads it back."""
        return {name: _render_entry(entry) for name, entry in sorted(self._entries.items())}

    def models(self) -> list[str]:
        return sorted(self._entries)

    def is_per_image(self, model: str) -> bool:
        return isinstance(self._entries.get(model), ImagePrices)

    def line_item_names(self, model: str) -> dict[str, str]:
        """OpenAI-style line-item names for `model`'s cost fields (see `line_item_names`)."""
        return line_item_names(model, per_image=self.is_per_image(model))

    def cost(
        self,
        model: str,
        *,
        text_input_tokens: int,
        image_input_tokens: int,
        image_output_tokens: int,
        images: int,
        quality: str,
        size: str,
    ) -> Cost:
        """What a request costs at these prices.

        Served models the operator did not price are free: a model missing from the table, or a
        quality/size cell missing from an image-priced entry, costs 0 rather than failing a
        request whose images were already made.
        """
        entry = self._entries.get(model)
        if isinstance(entry, TokenPrices):
            return Cost(
                text_input=text_input_tokens * entry.text_input,
                image_input=image_input_tokens * entry.image_input,
                image_output=image_output_tokens * entry.image_output,
            )
        if isinstance(entry, ImagePrices):
            per_image = entry.by_quality.get(quality, {}).get(size, 0)
            return Cost(text_input=0, image_input=0, image_output=images * per_image)
        return FREE

    def __eq__(self, other: object) -> bool:
        return isinstance(other, PriceTable) and self._entries == other._entries

    def __hash__(self) -> int:
        return hash(json.dumps(self.to_mapping(), sort_keys=True))

    def __repr__(self) -> str:
        return f"PriceTable({self.models()!r})"


def line_item_names(model: str, *, per_image: bool = False) -> dict[str, str]:
    """Cost field -> OpenAI line-item name, e.g. "gpt-image-1 image, output".

    Image-priced models have a single line item named after the model, e.g. "dall-e-3".
    """
    if per_image:
        return {"image_output": model}
    return {
        "text_input": f"{model} text, input",
        "image_input": f"{model} image, input",
        "image_output": f"{model} image, output",
    }


def load_prices(session: Session | Connection) -> PriceTable:
    """The packaged table merged with the operator's stored overrides, if any."""
    return PriceTable.default().merged(load_price_overrides(session))


def load_price_overrides(session: Session | Connection) -> dict[str, Any]:
    """The operator's stored overrides (the "prices" document), or {} when none were saved."""
    # A plain SELECT rather than session.get: the meter reads this on a Core connection.
    body = session.execute(_READ_OVERRIDES).scalar()
    if body is None:
        return {}
    overrides: dict[str, Any] = json.loads(body)
    return overrides


def save_price_overrides(session: Session, overrides: Mapping[str, Any], now: int) -> PriceTable:
    """Validate and store `overrides` as the whole override set; returns the merged table.

    The stored document is replaced, not merged into: an entry left out goes back to the packaged
    price. To change one model, merge into `load_price_overrides(session)` first.
    """
    canonical = PriceTable.from_mapping(overrides).to_mapping()
    body = json.dumps(canonical, sort_keys=True)
    document = session.get(PlatformDocument, DOCUMENT_NAME)
    if document is None:
        session.add(PlatformDocument(name=DOCUMENT_NAME, body=body, updated_at=now))
    else:
        document.body = body
        document.updated_at = now
    session.flush()
    return PriceTable.default().merged(canonical)


@lru_cache(maxsize=1)
def _default_table() -> PriceTable:
    text = resources.files("limner.metering").joinpath("prices.default.toml").read_text("utf-8")
    return PriceTable.from_mapping(tomllib.loads(text))


def _invalid(message: str) -> InvalidValue:
    return InvalidValue(message, "prices")


def _model_name(name: object) -> str:
    if not isinstance(name, str) or not name.strip() or len(name) > _MODEL_NAME_MAX:
        raise _invalid(
            f"Model names in prices must be non-empty strings of at most {_MODEL_NAME_MAX} "
            f"characters; got {name!r}."
        )
    return name


def _parse_entry(model: str, entry: object) -> ModelPrices:
    path = f"prices[{model!r}]"
    if (
        not isinstance(entry, Mapping)
        or len(entry) != 1
        or not entry.keys()
        <= {
            _TOKEN_KEY,
            _IMAGE_KEY,
        }
    ):
        raise _invalid(
            f"{path} must be an object with exactly one of '{_TOKEN_KEY}' or '{_IMAGE_KEY}'."
        )
    if _TOKEN_KEY in entry:
        return _parse_token_prices(f"{path}[{_TOKEN_KEY!r}]", entry[_TOKEN_KEY])
    return _parse_image_prices(f"{path}[{_IMAGE_KEY!r}]", entry[_IMAGE_KEY])


def _parse_token_prices(path: str, value: object) -> TokenPrices:
    if not isinstance(value, Mapping) or set(value) != set(LINE_ITEM_KINDS):
        raise _invalid(f"{path} must have exactly the keys {', '.join(LINE_ITEM_KINDS)}.")
    nanos = {
        kind: _nanos(f"{path}[{kind!r}]", value[kind], TOKENS_PER_PRICE_UNIT)
        for kind in LINE_ITEM_KINDS
    }
    return TokenPrices(**nanos)


def _parse_image_prices(path: str, value: object) -> ImagePrices:
    if not isinstance(value, Mapping) or not value:
        raise _invalid(f"{path} must be a non-empty object mapping qualities to sizes.")
    by_quality: dict[str, dict[str, int]] = {}
    for quality, sizes in value.items():
        where = f"{path}[{quality!r}]"
        if not isinstance(quality, str) or not quality:
            raise _invalid(f"{where}: qualities must be non-empty strings.")
        if not isinstance(sizes, Mapping) or not sizes:
            raise _invalid(f"{where} must be a non-empty object mapping sizes to prices.")
        by_quality[quality] = {}
        for size, price in sizes.items():
            if not isinstance(size, str) or not _SIZE.match(size):
                raise _invalid(f"{where}: sizes must look like '1024x1024'; got {size!r}.")
            by_quality[quality][size] = _nanos(f"{where}[{size!r}]", price, 1)
    return ImagePrices(by_quality)


def _nanos(path: str, value: object, per: int) -> int:
    """Dollars per `per` units -> whole nano-dollars per unit, refusing anything inexact."""
    # bool is an int subclass and float is inexact by nature: both are refused outright.
    if isinstance(value, bool) or not isinstance(value, str | int | Decimal):
        raise _invalid(f'{path} must be a price in US dollars written as a string, e.g. "2.50".')
    try:
        usd = Decimal(value) if not isinstance(value, Decimal) else value
    except InvalidOperation:
        raise _invalid(f"{path}: {value!r} is not a decimal number.") from None
    if not usd.is_finite() or usd < 0 or usd > _MAX_USD:
        raise _invalid(f"{path} must be between 0 and {_MAX_USD} US dollars; got {value!r}.")
    try:
        with localcontext() as context:
            # Enough digits for any price under the ceiling; beyond them, refuse (no rounding).
            context.prec = 60
            context.traps[Inexact] = True
            nanos = usd * NANOS_PER_USD / per
    except Inexact:
        raise _invalid(f"{path}: {value!r} has too many digits.") from None
    if nanos != nanos.to_integral_value():
        raise _invalid(
            f"{path}: {value!r} is not a whole number of nano-dollars per "
            f"{'token' if per > 1 else 'image'}."
        )
    return int(nanos)


def _render_entry(entry: ModelPrices) -> dict[str, Any]:
    if isinstance(entry, TokenPrices):
        return {
            _TOKEN_KEY: {
                kind: format_usd(getattr(entry, kind) * TOKENS_PER_PRICE_UNIT)
                for kind in LINE_ITEM_KINDS
            }
        }
    return {
        _IMAGE_KEY: {
            quality: {size: format_usd(price) for size, price in sorted(sizes.items())}
            for quality, sizes in sorted(entry.by_quality.items())
        }
    }


def format_usd(nanos: int) -> str:
    """Nano-dollars as a dollar string with at least cents: 2500000000 -> "2.50"."""
    usd = (Decimal(nanos) / NANOS_PER_USD).normalize()
    if usd.as_tuple().exponent > -2:  # type: ignore[operator]
        usd = usd.quantize(Decimal("0.01"))
    return f"{usd:f}"
