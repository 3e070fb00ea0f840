"""Served models from a TOML catalog: name/aliases → ServedModel (backend, quality tiers).

A catalog is data: adding a model means editing TOML, not code.

    [backends.sd-turbo]
    path = "/models/sd-turbo"          # any diffusers pipeline directory on local disk
    device = "auto"                    # auto | cpu | cuda | cuda:1
    dtype = "auto"                     # auto | float16 | bfloat16 | float32
    guidance_scale = 0.0               # optional; the pipeline's default when absent
    size_multiple = 8                  # working sizes are rounded to this
    [backends.sd-turbo.quality]
    low = { steps = 1, resolution = 512 }      # resolution: side of a square of the same area
    medium = { steps = 2, resolution = 512 }
    high = { steps = 4, resolution = 768 }

    [models.sd-turbo]
    backend = "sd-turbo"
    aliases = ["gpt-image-1", "dall-e-3"]      # OpenAI names keep their own parameter rules
    rules = "gpt-image-1"                      # rules for its own name and non-OpenAI aliases
    auto_quality = "high"                      # what quality=auto resolves to
"""

import math
import tomllib
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

from limner.errors import ModelNotFound

Quality = Literal["low", "medium", "high"]
QUALITIES: tuple[Quality, ...] = ("low", "medium", "high")

# The model names of OpenAI's Images API; each has its own parameter rules (images/rules.py).
OPENAI_MODEL_NAMES = ("gpt-image-1", "gpt-image-1-mini", "gpt-image-1.5", "dall-e-2", "dall-e-3")

# OpenAI gates the GPT image family behind organization verification; a catalog may say otherwise
# with a top-level `verification_required = [...]`.
GPT_IMAGE_FAMILY = ("gpt-image-1", "gpt-image-1-mini", "gpt-image-1.5", "gpt-image-2")

# `created` values observed on api.openai.com's /v1/models; other names use the catalog's load time.
_OPENAI_CREATED = {
    "gpt-image-1": 1745517030,
    "gpt-image-1-mini": 1759708800,
    "gpt-image-1.5": 1765843200,
    "dall-e-2": 1698798177,
    "dall-e-3": 1698785189,
}


class CatalogError(ValueError):
    """The catalog file is malformed; raised at start-up, never during a request."""


@dataclass(frozen=True)
class QualityTier:
    steps: int
    resolution: int


@dataclass(frozen=True)
class BackendSpec:
    name: str
    path: Path
    kind: str = "diffusers"
    device: str = "auto"
    dtype: str = "auto"
    guidance_scale: float | None = None
    size_multiple: int = 8
    tiers: dict[Quality, QualityTier] = field(default_factory=dict)

    def working_size(self, quality: Quality, width: int, height: int) -> tuple[int, int]:
        """Keep the requested aspect at the tier's pixel area, never above the requested area."""
        tier = self.tiers[quality]
        area = min(tier.resolution**2, width * height)
        scale = math.sqrt(area / (width * height))
        step = self.size_multiple
        return (
            max(step, round(width * scale / step) * step),
            max(step, round(height * scale / step) * step),
        )


@dataclass(frozen=True)
class ServedModel:
    name: str
    backend: BackendSpec
    rules: str
    aliases: tuple[str, ...] = ()
    auto_quality: Quality = "high"
    owned_by: str = "limner"


@dataclass(frozen=True)
class ModelEntry:
    """One name a client may send in `model`: the served model behind it and its rules."""

    id: str
    served: ServedModel
    rules: str
    created: int
    owned_by: str
    requires_verification: bool = False


DEFAULT_TIERS: dict[Quality, QualityTier] = {
    "low": QualityTier(steps=4, resolution=512),
    "medium": QualityTier(steps=12, resolution=512),
    "high": QualityTier(steps=25, resolution=512),
}


class Catalog:
    def __init__(
        self,
        models: list[ServedModel],
        created: int = 0,
        verification_required: tuple[str, ...] = GPT_IMAGE_FAMILY,
    ) -> None:
        self._entries: dict[str, ModelEntry] = {}
        for served in models:
            for name in (served.name, *served.aliases):
                if name in self._entries:
                    raise CatalogError(f"model name {name!r} is served twice")
                rules = name if name in OPENAI_MODEL_NAMES else served.rules
                self._entries[name] = ModelEntry(
                    id=name,
                    served=served,
                    rules=rules,
                    created=_OPENAI_CREATED.get(name, created),
                    owned_by="system" if name in OPENAI_MODEL_NAMES else served.owned_by,
                    requires_verification=name in verification_required,
                )

    def resolve(self, name: str) -> ModelEntry:
        entry = self._entries.get(name)
        if entry is None:
            raise ModelNotFound(name)
        return entry

    def entries(self) -> list[ModelEntry]:
        return list(self._entries.values())

    def backends(self) -> list[BackendSpec]:
        unique = {
            entry.served.backend.name: entry.served.backend for entry in self._entries.values()
        }
        return list(unique.values())

    @classmethod
    def single_backend(cls, path: Path, device: str = "auto", dtype: str = "auto") -> "Catalog":
        """Serve every OpenAI name from one pipeline directory (`limner serve --model PATH`)."""
        backend = BackendSpec(
            name="default", path=path, device=device, dtype=dtype, tiers=DEFAULT_TIERS
        )
        served = ServedModel(
            name="gpt-image-1",
            backend=backend,
            rules="gpt-image-1",
            aliases=tuple(n for n in OPENAI_MODEL_NAMES if n != "gpt-image-1"),
        )
        return cls([served])

    @classmethod
    def from_toml(cls, path: Path, created: int = 0) -> "Catalog":
        try:
            data = tomllib.loads(path.read_text())
        except (OSError, tomllib.TOMLDecodeError) as exc:
            raise CatalogError(f"cannot read catalog {path}: {exc}") from exc
        backends = {
            name: _parse_backend(name, spec, base=path.parent)
            for name, spec in data.get("backends", {}).items()
        }
        models = [
            _parse_model(name, spec, backends) for name, spec in data.get("models", {}).items()
        ]
        if not models:
            raise CatalogError(f"catalog {path} serves no models")
        gated = data.get("verification_required", list(GPT_IMAGE_FAMILY))
        if not isinstance(gated, list) or not all(isinstance(name, str) for name in gated):
            raise CatalogError(f"catalog {path}: verification_required must be a list of names")
        return cls(models, created=created, verification_required=tuple(gated))


def _parse_backend(name: str, spec: dict[str, Any], base: Path) -> BackendSpec:
    if "path" not in spec:
        raise CatalogError(f"backend {name!r} has no path")
    tiers = dict(DEFAULT_TIERS)
    for quality, tier in spec.get("quality", {}).items():
        if quality not in QUALITIES:
            raise CatalogError(f"backend {name!r}: unknown quality tier {quality!r}")
        tiers[quality] = QualityTier(steps=int(tier["steps"]), resolution=int(tier["resolution"]))
    guidance = spec.get("guidance_scale")
    return BackendSpec(
        name=name,
        path=(base / spec["path"]).resolve(),
        kind=str(spec.get("kind", "diffusers")),
        device=str(spec.get("device", "auto")),
        dtype=str(spec.get("dtype", "auto")),
        guidance_scale=None if guidance is None else float(guidance),
        size_multiple=int(spec.get("size_multiple", 8)),
        tiers=tiers,
    )


def _parse_model(name: str, spec: dict[str, Any], backends: dict[str, BackendSpec]) -> ServedModel:
    backend = backends.get(spec.get("backend", ""))
    if backend is None:
        raise CatalogError(f"model {name!r} names an unknown backend {spec.get('backend')!r}")
    rules = str(spec.get("rules", name if name in OPENAI_MODEL_NAMES else "gpt-image-1"))
    if rules not in OPENAI_MODEL_NAMES:
        raise CatalogError(f"model {name!r}: rules must be one of {OPENAI_MODEL_NAMES}")
    auto_quality = spec.get("auto_quality", "high")
    if auto_quality not in QUALITIES:
        raise CatalogError(f"model {name!r}: auto_quality must be one of {QUALITIES}")
    return ServedModel(
        name=name,
        backend=backend,
        rules=rules,
        aliases=tuple(spec.get("aliases", ())),
        auto_quality=auto_quality,
        owned_by=str(spec.get("owned_by", "limner")),
    )
