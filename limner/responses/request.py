"""A `POST /v1/responses` body, validated into a TurnRequest (responses-api.md §1.2).

Every top-level field of the 2025 contract is accepted; those Limner has no use for are only
checked for their type and echoed. Any other key is refused with `unknown_parameter`, as the
hosted API refuses it (docs/compatibility.md).
"""

from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any, Literal

from limner.catalog import Catalog
from limner.errors import (
    InvalidRequest,
    InvalidType,
    InvalidValue,
    MainlineModelNotFound,
    MissingParameter,
    UnknownParameter,
)

CallMode = Literal["none", "auto", "required"]

# Echoed as sent (after a type check), with the hosted API's defaults.
_ECHOED: dict[str, tuple[type | tuple[type, ...], Any]] = {
    "parallel_tool_calls": (bool, True),
    "temperature": ((int, float), 1.0),
    "top_p": ((int, float), 1.0),
    "max_output_tokens": (int, None),
    "max_tool_calls": (int, None),
    "truncation": (str, "disabled"),
    "text": (dict, {"format": {"type": "text"}}),
    "reasoning": (dict, {"effort": None, "summary": None}),
    "user": (str, None),
    "safety_identifier": (str, None),
    "prompt_cache_key": (str, None),
    "service_tier": (str, "default"),
    "top_logprobs": (int, 0),
    "stream_options": (dict, None),
}
_OWN = frozenset(
    {"model", "input", "instructions", "tools", "tool_choice", "previous_response_id", "store",
     "stream", "background", "metadata", "include", "conversation", "prompt"}
)  # fmt: skip
_TOOL_CHOICES = ("none", "auto", "required")
_METADATA_PAIRS, _METADATA_KEY, _METADATA_VALUE = 16, 64, 512
_ID_CHARACTERS = frozenset("abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789_-")


@dataclass(frozen=True)
class TurnRequest:
    model: str
    input: str | list[Any]
    instructions: str | None
    # The image_generation tool object as sent, and its index in `tools` (for error paths).
    tool: Mapping[str, Any] | None
    tool_index: int
    tool_choice: str | dict[str, Any]
    call_mode: CallMode
    previous_response_id: str | None
    store: bool
    stream: bool
    metadata: dict[str, str]
    include: tuple[str, ...]
    echoed: dict[str, Any] = field(default_factory=dict)

    @property
    def tool_param(self) -> str:
        return f"tools[{self.tool_index}]"

    @property
    def may_call(self) -> bool:
        max_calls = self.echoed.get("max_tool_calls")
        capped = isinstance(max_calls, int) and max_calls < 1
        return self.tool is not None and self.call_mode != "none" and not capped


def parse_request(body: Mapping[str, Any], catalog: Catalog) -> TurnRequest:
    fields = {key: value for key, value in body.items() if value is not None}
    for key in fields:
        if key not in _OWN and key not in _ECHOED:
            raise UnknownParameter(key)
    _refuse_unsupported(fields)
    tool, tool_index = _image_tool(fields.get("tools", []))
    tool_choice, call_mode = _tool_choice(fields.get("tool_choice", "auto"), tool)
    return TurnRequest(
        model=_model(fields, catalog),
        input=_input(fields),
        instructions=_optional_string(fields, "instructions"),
        tool=tool,
        tool_index=tool_index,
        tool_choice=tool_choice,
        call_mode=call_mode,
        previous_response_id=_previous_response_id(fields),
        store=_boolean(fields, "store", True),
        stream=_boolean(fields, "stream", False),
        metadata=_metadata(fields.get("metadata", {})),
        include=_include(fields.get("include", [])),
        echoed={name: _echoed(fields, name) for name in _ECHOED},
    )


def _refuse_unsupported(fields: Mapping[str, Any]) -> None:
    if fields.get("background") not in (None, False):
        raise InvalidValue(
            "Background responses are not supported on this server: send the request without "
            "`background` (use `stream` to follow a long image call).",
            "background",
        )
    if "conversation" in fields:
        raise InvalidValue(
            "This server has no Conversations API: chain turns with `previous_response_id`.",
            "conversation",
        )
    if "prompt" in fields:
        raise InvalidValue(
            "This server has no stored prompts: send `input` (and `instructions`) instead.",
            "prompt",
        )


def _model(fields: Mapping[str, Any], catalog: Catalog) -> str:
    model = fields.get("model")
    if model is None:
        raise MissingParameter("model")
    if not isinstance(model, str):
        raise InvalidType("Invalid type for 'model': expected a string.", "model")
    if not catalog.is_mainline(model):
        raise MainlineModelNotFound(model)
    return model


def _input(fields: Mapping[str, Any]) -> str | list[Any]:
    value = fields.get("input")
    if value is None:
        raise MissingParameter("input")
    if isinstance(value, str):
        if not value.strip():
            raise InvalidValue("Invalid 'input': empty string.", "input")
        return value
    if not isinstance(value, list):
        raise InvalidType(
            "Invalid type for 'input': expected a string or an array of input items.", "input"
        )
    if not value:
        raise InvalidValue("Invalid 'input': empty array. Expected at least one item.", "input")
    return value


def _image_tool(tools: Any) -> tuple[Mapping[str, Any] | None, int]:
    if not isinstance(tools, list):
        raise InvalidType("Invalid type for 'tools': expected an array of tools.", "tools")
    found: tuple[Mapping[str, Any] | None, int] = (None, 0)
    for index, tool in enumerate(tools):
        param = f"tools[{index}]"
        if not isinstance(tool, dict):
            raise InvalidType(f"Invalid type for '{param}': expected an object.", param)
        kind = tool.get("type")
        if kind is None:
            raise MissingParameter(f"{param}.type")
        if kind != "image_generation":
            raise InvalidValue(
                f"Invalid value for '{param}.type': this server runs the 'image_generation' "
                f"tool only; '{kind}' is not available.",
                f"{param}.type",
            )
        if found[0] is not None:
            raise InvalidValue(
                f"Invalid '{param}': the image_generation tool is given twice.", param
            )
        found = (tool, index)
    return found


def _tool_choice(
    value: Any, tool: Mapping[str, Any] | None
) -> tuple[str | dict[str, Any], CallMode]:
    if isinstance(value, str):
        if value not in _TOOL_CHOICES:
            raise InvalidValue(
                f"Invalid value: '{value}'. Supported values are: 'none', 'auto', and 'required'.",
                "tool_choice",
            )
        if value == "required" and tool is None:
            raise InvalidRequest(
                "Tool choice 'required' must be specified with 'tools' parameter.",
                "tool_choice",
            )
        return value, value  # type: ignore[return-value]
    if not isinstance(value, dict):
        raise InvalidType(
            "Invalid type for 'tool_choice': expected a string or an object.", "tool_choice"
        )
    kind = value.get("type")
    if kind != "image_generation":
        raise InvalidValue(
            f"Invalid value for 'tool_choice.type': '{kind}'. This server runs the "
            "'image_generation' tool only.",
            "tool_choice",
        )
    if tool is None:
        raise InvalidRequest(
            "Tool choice 'image_generation' not found in 'tools' parameter.", "tool_choice"
        )
    return {"type": "image_generation"}, "required"


def _previous_response_id(fields: Mapping[str, Any]) -> str | None:
    value = fields.get("previous_response_id")
    if value is None:
        return None
    if not isinstance(value, str):
        raise InvalidType(
            "Invalid type for 'previous_response_id': expected a string.", "previous_response_id"
        )
    if not value or not set(value) <= _ID_CHARACTERS:
        raise InvalidValue(
            f"Invalid 'previous_response_id': '{value}'. Expected an ID that contains letters, "
            "numbers, underscores, or dashes, but this value contained additional characters.",
            "previous_response_id",
        )
    return value


def _metadata(value: Any) -> dict[str, str]:
    if not isinstance(value, dict):
        raise InvalidType("Invalid type for 'metadata': expected an object.", "metadata")
    if len(value) > _METADATA_PAIRS:
        raise InvalidValue(
            f"Invalid 'metadata': too many properties. Expected at most {_METADATA_PAIRS}, "
            f"but got {len(value)}.",
            "metadata",
        )
    for key, item in value.items():
        if len(key) > _METADATA_KEY:
            raise InvalidValue(
                f"Invalid 'metadata': key '{key[:20]}...' is longer than {_METADATA_KEY} "
                "characters.",
                "metadata",
            )
        if not isinstance(item, str):
            raise InvalidType(
                f"Invalid type for 'metadata.{key}': expected a string.", f"metadata.{key}"
            )
        if len(item) > _METADATA_VALUE:
            raise InvalidValue(
                f"Invalid 'metadata.{key}': longer than {_METADATA_VALUE} characters.",
                f"metadata.{key}",
            )
    return dict(value)


def _include(value: Any) -> tuple[str, ...]:
    if not isinstance(value, list) or not all(isinstance(item, str) for item in value):
        raise InvalidType("Invalid type for 'include': expected an array of strings.", "include")
    return tuple(value)


def _optional_string(fields: Mapping[str, Any], name: str) -> str | None:
    value = fields.get(name)
    if value is not None and not isinstance(value, str):
        raise InvalidType(f"Invalid type for '{name}': expected a string.", name)
    return value


def _boolean(fields: Mapping[str, Any], name: str, default: bool) -> bool:
    value = fields.get(name, default)
    if not isinstance(value, bool):
        raise InvalidType(f"Invalid type for '{name}': expected a boolean.", name)
    return value


def _echoed(fields: Mapping[str, Any], name: str) -> Any:
    kinds, default = _ECHOED[name]
    value = fields.get(name, default)
    if value is None:
        return None
    accepted = kinds if isinstance(kinds, tuple) else (kinds,)
    if (isinstance(value, bool) and bool not in accepted) or not isinstance(value, accepted):
        expected = " or ".join(_TYPE_NAMES[kind] for kind in accepted)
        raise InvalidType(f"Invalid type for '{name}': expected {expected}.", name)
    if name == "max_tool_calls" and isinstance(value, int) and value < 0:
        raise InvalidValue("Invalid 'max_tool_calls': expected a value >= 0.", name)
    return value


_TYPE_NAMES = {bool: "a boolean", int: "an integer", float: "a number", str: "a string",
               dict: "an object"}  # fmt: skip
