"""Response wire shapes, named as in OpenAI's OpenAPI document (requests: see rules.py)."""

from typing import Literal

from pydantic import BaseModel, ConfigDict


class _Wire(BaseModel):
    model_config = ConfigDict(extra="forbid")


class Image(_Wire):
    b64_json: str | None = None
    url: str | None = None
    revised_prompt: str | None = None


class InputTokensDetails(_Wire):
    text_tokens: int
    image_tokens: int


class ImagesUsage(_Wire):
    input_tokens: int
    input_tokens_details: InputTokensDetails
    output_tokens: int
    total_tokens: int


class ImagesResponse(_Wire):
    created: int
    data: list[Image]
    background: Literal["transparent", "opaque"] | None = None
    output_format: Literal["png", "jpeg", "webp"] | None = None
    quality: Literal["low", "medium", "high"] | None = None
    size: str | None = None
    usage: ImagesUsage | None = None


class ModelEdits(_Wire):
    # instruct: the model takes the input images themselves; img2img: one picture (several
    # inputs laid out in a grid) denoised from part of the schedule.
    kind: Literal["instruct", "img2img"]
    max_images: int | None
    # inpaint: a masked edit repaints only the mask; composite: pixels outside the mask are
    # put back after an unmasked edit.
    mask: Literal["inpaint", "composite"]


class ModelCapabilities(_Wire):
    """Limner's addition to OpenAI's Model object: what the name can do here."""

    generations: bool
    edits: ModelEdits | None


class Model(_Wire):
    id: str
    object: Literal["model"] = "model"
    created: int
    owned_by: str
    limner: ModelCapabilities | None = None


class ListModelsResponse(_Wire):
    object: Literal["list"] = "list"
    data: list[Model]


class Error(_Wire):
    message: str
    type: str
    param: str | None
    code: str | None


class ErrorResponse(_Wire):
    error: Error
