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


class Model(_Wire):
    id: str
    object: Literal["model"] = "model"
    created: int
    owned_by: str


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
