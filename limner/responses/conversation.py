"""Input items (responses-api.md §1.3, §4.2) and the stored chain, read into one conversation.

An item is a message (any role; its text and input images) or an image_generation_call (its
image). Images are carried as bytes in hand or as the id of a stored image: a stored image is
read only when a call edits it, and kept once however many turns refer to it.
"""

import base64
import binascii
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass, field
from typing import Any, Literal

from limner.errors import (
    DuplicateInputItem,
    InputItemNotFound,
    InvalidType,
    InvalidValue,
    MissingParameter,
    StringTooLong,
)
from limner.ids import new_id
from limner.images.inputs import MAX_DATA_URL_CHARS, Upload

Role = Literal["user", "assistant", "system", "developer"]
_ROLES = ("user", "assistant", "system", "developer")
_INPUT_TEXT_ROLES = ("user", "system", "developer")

# An image reference (`image_url` of an input_image part) read into bytes: data URL or download.
FetchImage = Callable[[str, str], Awaitable[Upload]]


@dataclass
class ImagePart:
    """An image in the conversation: `data` in hand, or `stored_id` in response_images."""

    media_type: str | None
    param: str
    data: bytes | None = None
    stored_id: str | None = None
    detail: str = "auto"


@dataclass
class Message:
    id: str
    role: Role
    content: list[dict[str, Any]]  # the wire parts; input images as {"type": "input_image"}
    images: list[ImagePart] = field(default_factory=list)

    @property
    def text(self) -> str:
        return "\n".join(
            part["text"]
            for part in self.content
            if part.get("type") in ("input_text", "output_text") and part.get("text")
        )


@dataclass
class ImageCall:
    id: str
    wire: dict[str, Any]  # the item without its `result`
    image: ImagePart | None


Item = Message | ImageCall


class ItemLookup:
    """Stored items of the caller's project, by wire id (store.py provides it)."""

    async def item(self, item_id: str) -> Item | None:
        raise NotImplementedError


@dataclass
class Conversation:
    """What a turn sees: the stored chain, then this request's input items."""

    history: list[Item]
    turn: list[Item]

    @property
    def items(self) -> list[Item]:
        return [*self.history, *self.turn]

    def last_user_message(self) -> Message | None:
        users = [item for item in self.items if isinstance(item, Message) and item.role == "user"]
        return users[-1] if users else None

    def latest_image(self, before: Message | None) -> ImagePart | None:
        """The image a new call edits when the turn brings none: the latest generated one,
        else the latest input image of an earlier user message."""
        for item in reversed(self.items):
            if isinstance(item, ImageCall) and item.image is not None:
                return item.image
        for item in reversed(self.items):
            if isinstance(item, Message) and item is not before and item.images:
                return item.images[-1]
        return None


async def read_input(
    raw: str | list[Any], history: Sequence[Item], lookup: ItemLookup, fetch: FetchImage
) -> list[Item]:
    """This request's `input` as items; ids already in `history` or in `input` are refused."""
    if isinstance(raw, str):
        return [Message(new_id("msg_"), "user", [{"type": "input_text", "text": raw}])]
    seen = {item.id for item in history}
    items: list[Item] = []
    for index, entry in enumerate(raw):
        item = await _read_item(entry, f"input[{index}]", lookup, fetch)
        if item.id in seen:
            raise DuplicateInputItem(item.id)
        seen.add(item.id)
        items.append(item)
    return items


async def _read_item(entry: Any, param: str, lookup: ItemLookup, fetch: FetchImage) -> Item:
    if not isinstance(entry, dict):
        raise InvalidType(f"Invalid type for '{param}': expected an object.", param)
    kind = entry.get("type")
    if (kind is None and "role" in entry) or kind == "message":
        return await _message(entry, param, fetch)
    if kind == "image_generation_call":
        return await _image_call(entry, param, lookup)
    if kind == "item_reference":
        item_id = _required_id(entry, param)
        found = await lookup.item(item_id)
        if found is None:
            raise InputItemNotFound(item_id)
        return found
    if kind is None:
        raise MissingParameter(f"{param}.type")
    raise InvalidValue(
        f"Invalid value for '{param}.type': '{kind}'. This server reads 'message', "
        "'image_generation_call' and 'item_reference' items.",
        f"{param}.type",
    )


async def _message(entry: dict[str, Any], param: str, fetch: FetchImage) -> Message:
    role = entry.get("role")
    if role not in _ROLES:
        raise InvalidValue(
            f"Invalid value for '{param}.role': '{role}'. Supported values are: 'user', "
            "'assistant', 'system', and 'developer'.",
            f"{param}.role",
        )
    item_id = _item_id(entry, param, required=False) or new_id("msg_")
    content = entry.get("content")
    if isinstance(content, str):
        kind = "output_text" if role == "assistant" else "input_text"
        return Message(item_id, role, [{"type": kind, "text": content}])
    if not isinstance(content, list):
        raise InvalidType(
            f"Invalid type for '{param}.content': expected a string or an array of parts.",
            f"{param}.content",
        )
    message = Message(item_id, role, [])
    for index, part in enumerate(content):
        await _part(message, part, f"{param}.content[{index}]", fetch)
    return message


async def _part(message: Message, part: Any, param: str, fetch: FetchImage) -> None:
    if not isinstance(part, dict):
        raise InvalidType(f"Invalid type for '{param}': expected an object.", param)
    kind = part.get("type")
    if kind in ("input_text", "output_text"):
        if (kind == "input_text") != (message.role in _INPUT_TEXT_ROLES):
            raise InvalidValue(
                f"Invalid value for '{param}.type': '{kind}' parts belong to "
                f"{'user, system and developer' if kind == 'input_text' else 'assistant'} "
                "messages.",
                f"{param}.type",
            )
        text = part.get("text")
        if not isinstance(text, str):
            raise InvalidType(f"Invalid type for '{param}.text': expected a string.", param)
        message.content.append({"type": kind, "text": text, **_output_extras(kind)})
    elif kind == "refusal" and message.role == "assistant":
        message.content.append({"type": "refusal", "refusal": str(part.get("refusal", ""))})
    elif kind == "input_image" and message.role == "user":
        image = await _input_image(part, param, fetch)
        message.images.append(image)
        message.content.append({"type": "input_image", "detail": image.detail})
    elif kind == "input_file":
        raise InvalidValue(
            f"Invalid value for '{param}.type': this server has no Files API and reads no "
            "'input_file' parts.",
            f"{param}.type",
        )
    else:
        raise InvalidValue(
            f"Invalid value for '{param}.type': '{kind}' is not a content part of a "
            f"{message.role} message here.",
            f"{param}.type",
        )


def _output_extras(kind: str) -> dict[str, Any]:
    return {"annotations": [], "logprobs": []} if kind == "output_text" else {}


async def _input_image(part: dict[str, Any], param: str, fetch: FetchImage) -> ImagePart:
    detail = part.get("detail") or "auto"
    if detail not in ("low", "high", "auto", "original"):
        raise InvalidValue(
            f"Invalid value: '{detail}'. Supported values are: 'low', 'high', and 'auto'.",
            f"{param}.detail",
        )
    upload = await fetch(image_url(part, param), f"{param}.image_url")
    return ImagePart(upload.content_type, upload.field, data=upload.data, detail=detail)


async def _image_call(entry: dict[str, Any], param: str, lookup: ItemLookup) -> ImageCall:
    """A replayed call: in full (its base64 `result`, preferred), or by id alone."""
    item_id = _required_id(entry, param)
    result = entry.get("result")
    if result is None:
        found = await lookup.item(item_id)
        if not isinstance(found, ImageCall):
            raise InputItemNotFound(item_id)
        return found
    if not isinstance(result, str):
        raise InvalidType(f"Invalid type for '{param}.result': expected a string.", param)
    if len(result) > MAX_DATA_URL_CHARS:
        raise StringTooLong(
            f"Invalid '{param}.result': string too long. Expected a string with maximum length "
            f"{MAX_DATA_URL_CHARS}, but got a string with length {len(result)} instead.",
            f"{param}.result",
        )
    try:
        data = base64.b64decode(result, validate=True)
    except (binascii.Error, ValueError):
        raise InvalidValue(
            f"Invalid '{param}.result': not valid base64.", f"{param}.result"
        ) from None
    wire = {key: value for key, value in entry.items() if key != "result"}
    wire.setdefault("status", "completed")
    image = ImagePart(None, f"{param}.result", data=data)
    stored = await lookup.item(item_id)
    if isinstance(stored, ImageCall) and stored.image is not None:
        # The same call, replayed: the bytes in hand render it; the store keeps its own once.
        image.stored_id = stored.image.stored_id
    return ImageCall(item_id, wire, image)


def image_url(reference: dict[str, Any], param: str) -> str:
    """The `image_url` of an input image or mask at `param`; `file_id` names a Files API this
    server does not have."""
    if reference.get("file_id") is not None:
        raise InvalidValue(
            "This server has no Files API: send the image as `image_url` (a base64 data URL).",
            f"{param}.file_id",
        )
    url = reference.get("image_url")
    if not isinstance(url, str):
        raise MissingParameter(f"{param}.image_url")
    return url


def _item_id(entry: dict[str, Any], param: str, *, required: bool) -> str | None:
    value = entry.get("id")
    if value is None:
        if required:
            raise MissingParameter(f"{param}.id")
        return None
    if not isinstance(value, str) or not value:
        raise InvalidType(f"Invalid type for '{param}.id': expected a string.", f"{param}.id")
    return value


def _required_id(entry: dict[str, Any], param: str) -> str:
    value = _item_id(entry, param, required=True)
    assert value is not None
    return value
