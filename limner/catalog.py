"""Served models from a TOML catalog: name/aliases → ServedModel (backend, quality tiers).

A catalog is data: adding a model means editing TOML, not code.

    [backends.sd-turbo]
    path = "/models/sd-turbo"          # any diffusers pipeline directory on local disk
    device = "auto"                    # auto | cpu | cuda | cuda:1
    dtype = "auto"                     # auto | float16 | bfloat16 | float32
    guidance_scale = 0.0               # optional; the pipeline's default when absent
    cpu_threads = 2                    # on a CPU, every call on this many threads (default: all)
    size_multiple = 8                  # working sizes are rounded to this
    max_edit_images = 4                # optional; input images one edit takes (the class's own)
    offload = "none"                   # none | model | sequential: CPU offload on a CUDA device
    attention_backend = "native"       # optional; a diffusers attention backend (flash, sage...)
    compile = false                    # torch.compile the denoiser, warmed up at start
    [backends.sd-turbo.quality]
    low = { steps = 1, resolution = 512 }      # resolution: side of a square of the same area
    medium = { steps = 2, resolution = 512 }
    high = { steps = 4, resolution = 768 }

    [models.sd-turbo]
    backend = "sd-turbo"
    edit_backend = "kontext"                   # optional; edits and variations run there instead
    aliases = ["gpt-image-1", "dall-e-3"]      # OpenAI names keep their own parameter rules
    rules = "gpt-image-1"                      # rules for its own name and non-OpenAI aliases
    auto_quality = "high"                      # what quality=auto resolves to

    mainline_models = ["gpt-4.1", "house-llm"]   # optional, top level: the names /v1/responses
                                                 # answers to as `model` (default: OpenAI's)

Every key is checked: a misspelt one (`guidence_scale`) is an error naming it, not silence.
"""

import math
import re
import tomllib
from pathlib import Path
from typing import Annotated, Any, Literal, cast

from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator

from limner.datafiles import describe_validation_error
from limner.errors import ModelNotFound, StartupError

Quality = Literal["low", "medium", "high"]
# What a request asks of a served name; edits and variations may run on another backend.
Operation = Literal["generation", "edit", "variation"]
QUALITIES: tuple[Quality, ...] = ("low", "medium", "high")

# The model names of OpenAI's Images API; each has its own parameter rules (images/rules.py).
OPENAI_MODEL_NAMES = ("gpt-image-1", "gpt-image-1-mini", "gpt-image-1.5", "dall-e-2", "dall-e-3")
RulesName = Literal["gpt-image-1", "gpt-image-1-mini", "gpt-image-1.5", "dall-e-2", "dall-e-3"]

# OpenAI gates the GPT image family behind organization verification; a catalog may say otherwise
# with a top-level `verification_required = [...]`.
GPT_IMAGE_FAMILY = ("gpt-image-1", "gpt-image-1-mini", "gpt-image-1.5", "gpt-image-2")

# The Responses API's `model` names the mainline (language) model. Limner runs none: it answers
# to these names as its own orchestrator (limner/responses/). A catalog may list its own with a
# top-level `mainline_models = [...]`; dated snapshots of a listed name (`gpt-4.1-2025-04-14`)
# are accepted too.
DEFAULT_MAINLINE_MODELS = (
    "gpt-4o", "gpt-4o-mini", "gpt-4.1", "gpt-4.1-mini", "gpt-4.1-nano", "gpt-4.5-preview",
    "o1", "o3", "o3-mini", "o4-mini", "gpt-5", "gpt-5-mini", "gpt-5-nano", "gpt-5-chat-latest",
    "gpt-5.1", "gpt-5.1-mini", "gpt-5.2", "gpt-5.2-mini", "gpt-5.4", "gpt-5.4-mini",
    "gpt-5.5", "chatgpt-4o-latest",
)  # fmt: skip
_SNAPSHOT = re.compile(r"^(?P<name>.+)-\d{4}-\d{2}-\d{2}$")

# `created` values observed on api.openai.com's /v1/models; other names use the catalog's load time.
_OPENAI_CREATED = {
    "gpt-image-1": 1745517030,
    "gpt-image-1-mini": 1759708800,
    "gpt-image-1.5": 1765843200,
    "dall-e-2": 1698798177,
    "dall-e-3": 1698785189,
}


class CatalogError(StartupError):
    """The catalog file is malformed; raised at start-up, never during a request."""


class _Strict(BaseModel):
    """Catalog data: frozen, and an unknown key is an error."""

    model_config = ConfigDict(frozen=True, extra="forbid")


class QualityTier(_Strict):
    steps: Annotated[int, Field(ge=1)]
    # The side of a square of the working area, in pixels.
    resolution: Annotated[int, Field(ge=8)]


DEFAULT_TIERS: dict[Quality, QualityTier] = {
    "low": QualityTier(steps=4, resolution=512),
    "medium": QualityTier(steps=12, resolution=512),
    "high": QualityTier(steps=25, resolution=512),
}


class _BackendSettings(_Strict):
    """What a `[backends.NAME]` table sets, besides its quality tiers."""

    path: Path
    kind: Literal["diffusers"] = "diffusers"
    device: str = "auto"
    dtype: str = "auto"
    guidance_scale: float | None = None
    size_multiple: Annotated[int, Field(ge=1)] = 8
    # CPU threads for every call of this backend; None: the process's (LIMNER_TORCH_THREADS).
    cpu_threads: Annotated[int, Field(ge=1)] | None = None
    # Whether rendered images go through the output stage of moderation. Off only for a model
    # that cannot draw what the image checks look for (the embedded limner-mini draws shapes
    # and colours at 32x32: docs/moderation.md); prompts and input images are checked still.
    moderate_outputs: bool = True
    # Input images one edit takes; None: what the pipeline class declares (Kontext 1, ...).
    max_edit_images: Annotated[int, Field(ge=1)] | None = None
    # GPU memory and speed knobs, all off by default (docs/models/families.md#gpu-settings).
    # offload: weights wait in CPU memory and move to the GPU per model ("model") or per layer
    # ("sequential", least memory, slowest); needs a CUDA device.
    offload: Literal["none", "model", "sequential"] = "none"
    attention_backend: str | None = None
    compile: bool = False
    # torch.compile's backend: "inductor" generates kernels; others are for debugging.
    compile_backend: str = "inductor"


class BackendSpec(_BackendSettings):
    name: str
    # Quality tiers the catalog gives; the others keep DEFAULT_TIERS.
    tiers: dict[Quality, QualityTier] = Field(default_factory=lambda: dict(DEFAULT_TIERS))

    @field_validator("tiers", mode="after")
    @classmethod
    def _over_default_tiers(cls, tiers: dict[Quality, QualityTier]) -> dict[Quality, QualityTier]:
        return {**DEFAULT_TIERS, **tiers}

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


class ServedModel(_Strict):
    name: str
    backend: BackendSpec
    # Where edits and variations run when not on `backend` (FLUX.1-dev generates, Kontext edits).
    edit_backend: BackendSpec | None = None
    rules: RulesName
    aliases: tuple[str, ...] = ()
    auto_quality: Quality = "high"
    owned_by: str = "limner"

    def backend_for(self, operation: Operation) -> BackendSpec:
        """The backend that runs `operation` under this name."""
        if operation == "generation" or self.edit_backend is None:
            return self.backend
        return self.edit_backend


class ModelEntry(_Strict):
    """One name a client may send in `model`: the served model behind it and its rules."""

    id: str
    served: ServedModel
    rules: RulesName
    created: int
    owned_by: str
    requires_verification: bool = False


class _BackendFile(_BackendSettings):
    """A `[backends.NAME]` table as written; `quality` holds the tiers it overrides."""

    quality: dict[Quality, QualityTier] = Field(default_factory=dict)

    def spec(self, name: str, base: Path) -> BackendSpec:
        fields = self.model_dump(exclude={"path", "quality"})
        return BackendSpec(
            name=name, path=(base / self.path).resolve(), tiers=self.quality, **fields
        )


class _ModelFile(_Strict):
    """A `[models.NAME]` table as written."""

    backend: str
    edit_backend: str | None = None
    aliases: tuple[str, ...] = ()
    rules: RulesName | None = None
    auto_quality: Quality = "high"
    owned_by: str = "limner"


class _CatalogFile(_Strict):
    backends: dict[str, _BackendFile] = Field(default_factory=dict)
    models: dict[str, _ModelFile] = Field(default_factory=dict)
    verification_required: tuple[str, ...] = GPT_IMAGE_FAMILY
    mainline_models: tuple[str, ...] = DEFAULT_MAINLINE_MODELS


class Catalog:
    def __init__(
        self,
        models: list[ServedModel],
        created: int = 0,
        verification_required: tuple[str, ...] = GPT_IMAGE_FAMILY,
        mainline_models: tuple[str, ...] = DEFAULT_MAINLINE_MODELS,
    ) -> None:
        self.mainline_models = frozenset(mainline_models)
        self._entries: dict[str, ModelEntry] = {}
        for served in models:
            for name in (served.name, *served.aliases):
                if name in self._entries:
                    raise CatalogError(f"model name {name!r} is served twice")
                rules = cast(RulesName, name) if name in OPENAI_MODEL_NAMES else served.rules
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

    def is_mainline(self, name: str) -> bool:
        """Whether the Responses API answers to `name` as its `model`."""
        if name in self.mainline_models:
            return True
        snapshot = _SNAPSHOT.match(name)
        return snapshot is not None and snapshot["name"] in self.mainline_models

    def entries(self) -> list[ModelEntry]:
        return list(self._entries.values())

    def backends(self) -> list[BackendSpec]:
        """Every backend some name runs on, each once."""
        unique: dict[str, BackendSpec] = {}
        for entry in self._entries.values():
            for spec in (entry.served.backend, entry.served.edit_backend):
                if spec is not None:
                    unique.setdefault(spec.name, spec)
        return list(unique.values())

    @classmethod
    def single_backend(cls, path: Path, device: str = "auto", dtype: str = "auto") -> "Catalog":
        """Serve every OpenAI name from one pipeline directory (`limner serve --model PATH`)."""
        backend = BackendSpec(name="default", path=path, device=device, dtype=dtype)
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
        return cls.from_mapping(data, base=path.parent, source=f"catalog {path}", created=created)

    @classmethod
    def from_mapping(
        cls, data: dict[str, Any], base: Path, source: str = "catalog", created: int = 0
    ) -> "Catalog":
        try:
            parsed = _CatalogFile.model_validate(data)
        except ValidationError as exc:
            raise CatalogError(f"{source}: {describe_validation_error(exc)}") from exc
        backends = {name: spec.spec(name, base) for name, spec in parsed.backends.items()}
        models = [_served(name, spec, backends, source) for name, spec in parsed.models.items()]
        if not models:
            raise CatalogError(f"{source} serves no models")
        return cls(
            models,
            created=created,
            verification_required=parsed.verification_required,
            mainline_models=parsed.mainline_models,
        )


def _served(
    name: str, spec: _ModelFile, backends: dict[str, BackendSpec], source: str
) -> ServedModel:
    def named(backend: str, key: str) -> BackendSpec:
        found = backends.get(backend)
        if found is None:
            raise CatalogError(
                f"{source}: model {name!r} names an unknown {key} {backend!r} "
                f"(defined: {', '.join(sorted(backends)) or 'none'})"
            )
        return found

    default_rules = cast(RulesName, name) if name in OPENAI_MODEL_NAMES else "gpt-image-1"
    return ServedModel(
        name=name,
        backend=named(spec.backend, "backend"),
        edit_backend=named(spec.edit_backend, "edit_backend") if spec.edit_backend else None,
        rules=spec.rules or default_rules,
        aliases=spec.aliases,
        auto_quality=spec.auto_quality,
        owned_by=spec.owned_by,
    )
