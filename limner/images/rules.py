"""Per-model parameter rules: a raw request body becomes a frozen, fully concrete ResolvedRequest.

Validation follows the contract's §12 order in one pass: model, unknown parameters, then each
value. Nothing after this module sees a raw value or an "auto".
"""

import secrets
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any, Literal

from limner.catalog import BackendSpec, Catalog, ModelEntry, Operation, Quality
from limner.errors import (
    InvalidType,
    InvalidValue,
    MissingParameter,
    ModelNotFound,
    StringTooLong,
    UnknownParameter,
)

Family = Literal["gpt-image", "dall-e"]
Background = Literal["transparent", "opaque"]
OutputFormat = Literal["png", "jpeg", "webp"]

GPT_SIZES = ("1024x1024", "1536x1024", "1024x1536", "auto")
DALLE2_SIZES = ("256x256", "512x512", "1024x1024")
DALLE3_SIZES = ("1024x1024", "1792x1024", "1024x1792")
GPT_QUALITIES = ("low", "medium", "high", "auto")

# Parameters only the GPT image family takes: their presence picks gpt-image-1 when `model` is
# omitted (the spec's "dall-e-2 unless a gpt-image-1-only parameter is present").
GPT_ONLY_PARAMS = frozenset(
    {"background", "output_format", "output_compression", "moderation", "stream",
     "partial_images", "input_fidelity"}
)  # fmt: skip

_GPT_COMMON = frozenset(
    {"prompt", "model", "n", "size", "quality", "background", "output_format",
     "output_compression", "moderation", "user", "safety_identifier", "stream",
     "partial_images", "seed"}
)  # fmt: skip
_DALLE_COMMON = frozenset(
    {"prompt", "model", "n", "size", "quality", "response_format", "user", "seed"}
)
_VARIATION = frozenset({"model", "n", "size", "response_format", "user", "seed"})

# Engine quality tier behind each DALL·E quality name.
_DALLE_TIERS: dict[str, Quality] = {"standard": "medium", "hd": "high"}


@dataclass(frozen=True)
class Profile:
    """What one OpenAI model name accepts, per operation."""

    name: str
    family: Family
    prompt_max: int
    sizes: tuple[str, ...]
    qualities: tuple[str, ...]
    n_max: int
    params: Mapping[Operation, frozenset[str]]


PROFILES: dict[str, Profile] = {
    "gpt-image-1": Profile(
        "gpt-image-1", "gpt-image", 32000, GPT_SIZES, GPT_QUALITIES, 10,
        {"generation": _GPT_COMMON, "edit": _GPT_COMMON | {"input_fidelity"}},
    ),
    "gpt-image-1.5": Profile(
        "gpt-image-1.5", "gpt-image", 32000, GPT_SIZES, GPT_QUALITIES, 10,
        {"generation": _GPT_COMMON, "edit": _GPT_COMMON | {"input_fidelity"}},
    ),
    "gpt-image-1-mini": Profile(
        "gpt-image-1-mini", "gpt-image", 32000, GPT_SIZES, GPT_QUALITIES, 10,
        {"generation": _GPT_COMMON, "edit": _GPT_COMMON},
    ),
    "dall-e-2": Profile(
        "dall-e-2", "dall-e", 1000, DALLE2_SIZES, ("standard",), 10,
        {"generation": _DALLE_COMMON, "edit": _DALLE_COMMON, "variation": _VARIATION},
    ),
    "dall-e-3": Profile(
        "dall-e-3", "dall-e", 4000, DALLE3_SIZES, ("standard", "hd"), 1,
        {"generation": _DALLE_COMMON | {"style"}},
    ),
}  # fmt: skip


@dataclass(frozen=True)
class ResolvedRequest:
    """A validated request: every value concrete, ready for usage counting and the engine."""

    operation: Operation
    model: str
    entry: ModelEntry
    # What runs it: the name's edit backend for edits and variations where it has one.
    backend: BackendSpec
    family: Family
    prompt: str
    n: int
    width: int
    height: int
    quality: Quality
    wire_quality: str
    background: Background
    output_format: OutputFormat
    output_compression: int
    response_format: Literal["b64_json", "url"]
    moderation: Literal["auto", "low"]
    input_fidelity: Literal["low", "high"]
    style: Literal["vivid", "natural"] | None
    user: str | None
    seed: int
    stream: bool
    partial_images: int
    steps: int
    working_width: int
    working_height: int

    @property
    def size(self) -> str:
        return f"{self.width}x{self.height}"


def resolve(
    operation: Operation, body: Mapping[str, Any], catalog: Catalog, *, form: bool = False
) -> ResolvedRequest:
    """Validate `body` (JSON values, or strings when `form`) for one operation."""
    # JSON null means "use the default", exactly like an absent field.
    fields = {key: value for key, value in body.items() if value is not None}
    entry = catalog.resolve(_model_name(operation, fields))
    profile = PROFILES[entry.rules]
    accepted = profile.params.get(operation)
    if accepted is None:
        raise InvalidValue(f"The model `{entry.id}` does not support image {operation}s.", "model")
    for key in fields:
        if key not in accepted:
            raise UnknownParameter(key)
    reader = _Reader(fields, form)
    return _resolve_values(operation, reader, entry, profile)


# The image_generation tool of the Responses API (responses-api.md §1.4): the Images API's
# values under the same rules, named by their path in the request (`tools[0].size`).
TOOL_PARAMS = frozenset(
    {"type", "model", "size", "quality", "background", "output_format", "output_compression",
     "moderation", "partial_images", "input_image_mask", "input_fidelity", "action", "n", "seed"}
)  # fmt: skip
# Read by the Responses layer itself, not by these rules.
_TOOL_CONVERSATION_PARAMS = frozenset({"type", "input_image_mask", "action", "n"})


def resolve_tool(
    tool: Mapping[str, Any],
    operation: Operation,
    prompt: str,
    catalog: Catalog,
    *,
    stream: bool,
    param: str,
) -> ResolvedRequest:
    """The `image_generation` tool object at `param` (`tools[0]`) for one image call, with the
    prompt the conversation gave it (errors about the prompt name `input`)."""
    fields = {key: value for key, value in tool.items() if value is not None}
    for key in fields:
        if key not in TOOL_PARAMS:
            raise UnknownParameter(f"{param}.{key}")
    model = fields.get("model", "gpt-image-1")
    if not isinstance(model, str):
        raise InvalidType(_type_message(f"{param}.model", "a string", model), f"{param}.model")
    try:
        entry = catalog.resolve(model)
    except ModelNotFound:
        raise InvalidValue(
            f"Invalid value for '{param}.model': the image model '{model}' does not exist on "
            "this server.",
            f"{param}.model",
        ) from None
    profile = PROFILES[entry.rules]
    if profile.family != "gpt-image":
        raise InvalidValue(
            f"Invalid value for '{param}.model': the image_generation tool runs GPT image "
            f"models, not '{model}'.",
            f"{param}.model",
        )
    values = {
        key: value
        for key, value in fields.items()
        if key not in _TOOL_CONVERSATION_PARAMS and key != "model"
    }
    if operation != "edit":
        values.pop("input_fidelity", None)  # the tool carries it for the edits it may make
    elif "input_fidelity" in values and "input_fidelity" not in profile.params["edit"]:
        raise InvalidValue(
            f"Invalid '{param}.input_fidelity': the model '{model}' does not take it.",
            f"{param}.input_fidelity",
        )
    values["prompt"] = prompt
    values["stream"] = stream
    reader = _Reader(values, form=False, path=lambda name: _tool_path(param, name))
    return _resolve_values(operation, reader, entry, profile)


def _tool_path(param: str, name: str) -> str:
    return "input" if name == "prompt" else f"{param}.{name}"


def _model_name(operation: Operation, fields: Mapping[str, Any]) -> str:
    model = fields.get("model")
    if model is None:
        if operation != "variation" and GPT_ONLY_PARAMS & fields.keys():
            return "gpt-image-1"
        return "dall-e-2"
    if not isinstance(model, str):
        raise InvalidType(_type_message("model", "a string", model), "model")
    return model


def _resolve_values(
    operation: Operation, reader: "_Reader", entry: ModelEntry, profile: Profile
) -> ResolvedRequest:
    gpt = profile.family == "gpt-image"
    prompt = "" if operation == "variation" else reader.prompt(profile.prompt_max)
    n = reader.integer("n", default=1, low=1, high=profile.n_max)
    size = reader.choice("size", profile.sizes, default="auto" if gpt else "1024x1024")
    if size == "auto":
        size = "1024x1024"
    width, height = (int(side) for side in size.split("x"))
    wire_quality = reader.choice(
        "quality", profile.qualities, default="auto" if gpt else "standard"
    )
    if wire_quality == "auto":
        wire_quality = entry.served.auto_quality
    quality: Quality = _DALLE_TIERS[wire_quality] if not gpt else wire_quality  # type: ignore[assignment]
    output_format = reader.choice("output_format", ("png", "jpeg", "webp"), default="png")
    background = reader.choice("background", ("transparent", "opaque", "auto"), default="auto")
    if background == "transparent" and output_format == "jpeg":
        raise InvalidValue(
            "Transparent background is not supported with the 'jpeg' output format; "
            "use 'png' or 'webp'.",
            reader.path("background"),
        )
    backend = entry.served.backend_for(operation)
    working_width, working_height = backend.working_size(quality, width, height)
    return ResolvedRequest(
        operation=operation,
        model=entry.id,
        entry=entry,
        backend=backend,
        family=profile.family,
        prompt=prompt,
        n=n,
        width=width,
        height=height,
        quality=quality,
        wire_quality=wire_quality,
        background="transparent" if background == "transparent" else "opaque",
        output_format=output_format,  # type: ignore[arg-type]
        output_compression=reader.integer("output_compression", default=100, low=0, high=100),
        response_format=reader.choice(  # type: ignore[arg-type]
            "response_format", ("url", "b64_json"), default="b64_json" if gpt else "url"
        ),
        moderation=reader.choice("moderation", ("auto", "low"), default="auto"),  # type: ignore[arg-type]
        input_fidelity=reader.choice("input_fidelity", ("low", "high"), default="low"),  # type: ignore[arg-type]
        style=_style(reader, profile),
        user=reader.text("safety_identifier") or reader.text("user"),
        seed=reader.integer("seed", default=secrets.randbits(31), low=0, high=2**63 - 1),
        stream=reader.boolean("stream", default=False),
        partial_images=reader.integer("partial_images", default=0, low=0, high=3),
        steps=backend.tiers[quality].steps,
        working_width=working_width,
        working_height=working_height,
    )


def _style(reader: "_Reader", profile: Profile) -> Literal["vivid", "natural"] | None:
    if profile.name != "dall-e-3":
        return None
    return reader.choice("style", ("vivid", "natural"), default="vivid")  # type: ignore[return-value]


class _Reader:
    """Typed access to body fields; multipart bodies arrive as strings and are coerced."""

    def __init__(
        self,
        fields: Mapping[str, Any],
        form: bool,
        path: Callable[[str], str] = lambda name: name,
    ) -> None:
        self._fields = fields
        self._form = form
        # The wire name of a field, for messages and `param`.
        self.path = path

    def prompt(self, max_length: int) -> str:
        value, param = self._fields.get("prompt"), self.path("prompt")
        if value is None:
            raise MissingParameter(param)
        if not isinstance(value, str):
            raise InvalidType(_type_message(param, "a string", value), param)
        if not value.strip():
            raise InvalidValue(f"Invalid '{param}': empty string.", param)
        if len(value) > max_length:
            raise StringTooLong(
                f"Invalid '{param}': string too long. Expected a string with maximum length "
                f"{max_length}, but got a string with length {len(value)} instead.",
                param,
            )
        return value

    def text(self, name: str) -> str | None:
        value, param = self._fields.get(name), self.path(name)
        if value is not None and not isinstance(value, str):
            raise InvalidType(_type_message(param, "a string", value), param)
        return value

    def choice(self, name: str, allowed: tuple[str, ...], default: str) -> str:
        value, param = self._fields.get(name, default), self.path(name)
        if not isinstance(value, str):
            raise InvalidType(_type_message(param, "a string", value), param)
        if value not in allowed:
            raise InvalidValue(
                f"Invalid value: '{value}'. Supported values are: {_or_list(allowed)}.", param
            )
        return value

    def integer(self, name: str, default: int, low: int, high: int) -> int:
        value, param = self._fields.get(name, default), self.path(name)
        if self._form and isinstance(value, str):
            try:
                value = int(value.strip())
            except ValueError:
                raise InvalidType(_type_message(param, "an integer", value), param) from None
        if isinstance(value, bool) or not isinstance(value, int):
            raise InvalidType(_type_message(param, "an integer", value), param)
        if value < low:
            raise InvalidValue(
                f"Invalid '{param}': integer below minimum value. Expected a value >= {low}, "
                f"but got {value} instead.",
                param,
            )
        if value > high:
            raise InvalidValue(
                f"Invalid '{param}': integer above maximum value. Expected a value <= {high}, "
                f"but got {value} instead.",
                param,
            )
        return value

    def boolean(self, name: str, default: bool) -> bool:
        value, param = self._fields.get(name, default), self.path(name)
        if self._form and isinstance(value, str) and value.lower() in ("true", "false"):
            return value.lower() == "true"
        if not isinstance(value, bool):
            raise InvalidType(_type_message(param, "a boolean", value), param)
        return value


def _type_message(name: str, expected: str, value: object) -> str:
    kinds = {bool: "a boolean", int: "an integer", float: "a number", str: "a string",
             list: "an array", dict: "an object"}  # fmt: skip
    got = kinds.get(type(value), type(value).__name__)
    return f"Invalid type for '{name}': expected {expected}, but got {got} instead."


def _or_list(values: tuple[str, ...]) -> str:
    quoted = [f"'{value}'" for value in values]
    if len(quoted) == 1:
        return quoted[0]
    return ", ".join(quoted[:-1]) + f", and {quoted[-1]}"
