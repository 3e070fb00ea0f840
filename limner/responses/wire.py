"""Response objects, output items and stream events as the Responses API writes them
(responses-api.md §2, §3.2). Plain JSON dicts: they are stored and streamed as they are."""

from typing import Any

from limner.images.rules import ResolvedRequest
from limner.images.usage import ImageUsage
from limner.responses.mainline import MainlineUsage
from limner.responses.request import TurnRequest

# The tool as the hosted API echoes it in `response.tools`: its defaults filled in (§1.4).
_TOOL_DEFAULTS = {
    "background": "auto",
    "moderation": "auto",
    "n": 1,
    "output_compression": 100,
    "output_format": "png",
    "quality": "auto",
    "size": "auto",
}


def tools_echo(request: TurnRequest) -> list[dict[str, Any]]:
    if request.tool is None:
        return []
    given = {
        key: value
        for key, value in request.tool.items()
        # The mask is an image: it is not repeated into every stored response.
        if value is not None and key != "input_image_mask"
    }
    return [{"type": "image_generation", **_TOOL_DEFAULTS, **given}]


def response_object(
    request: TurnRequest,
    response_id: str,
    created_at: int,
    status: str,
    output: list[dict[str, Any]],
    *,
    image_usage: ImageUsage | None = None,
    mainline_usage: MainlineUsage | None = None,
    error: dict[str, Any] | None = None,
    completed_at: int | None = None,
) -> dict[str, Any]:
    terminal = status in ("completed", "failed")
    return {
        "id": response_id,
        "object": "response",
        "created_at": created_at,
        "status": status,
        "background": False,
        "completed_at": completed_at,
        "error": error,
        "incomplete_details": None,
        "instructions": request.instructions,
        "metadata": request.metadata,
        "model": request.model,
        "output": output,
        "previous_response_id": request.previous_response_id,
        "store": request.store,
        "tool_choice": request.tool_choice,
        "tools": tools_echo(request),
        **request.echoed,
        "usage": _mainline_usage(mainline_usage or MainlineUsage()) if terminal else None,
        "tool_usage": _tool_usage(image_usage) if terminal else None,
    }


def _mainline_usage(usage: MainlineUsage) -> dict[str, Any]:
    """The mainline model's tokens (zeros when Limner orchestrates alone); the image's are in
    `tool_usage`."""
    return {
        "input_tokens": usage.input_tokens,
        "input_tokens_details": {"cached_tokens": 0, "cache_write_tokens": 0},
        "output_tokens": usage.output_tokens,
        "output_tokens_details": {"reasoning_tokens": 0},
        "total_tokens": usage.input_tokens + usage.output_tokens,
    }


def _tool_usage(usage: ImageUsage | None) -> dict[str, Any]:
    counted = usage or ImageUsage(0, 0, 0)
    image_gen = {
        **counted.to_wire(),
        "output_tokens_details": {"image_tokens": counted.output_tokens, "text_tokens": 0},
    }
    return {"image_gen": image_gen, "web_search": {"num_requests": 0}}


def call_in_progress(call_id: str) -> dict[str, Any]:
    return {"id": call_id, "type": "image_generation_call", "status": "in_progress"}


def call_settings(request: ResolvedRequest) -> dict[str, Any]:
    return {
        "background": request.background,
        "output_format": request.output_format,
        "quality": request.quality,
        "size": request.size,
    }


def call_completed(
    call_id: str, request: ResolvedRequest, action: str, result: str
) -> dict[str, Any]:
    return {
        "id": call_id,
        "type": "image_generation_call",
        "status": "completed",
        "action": action,
        **call_settings(request),
        "result": result,
        "revised_prompt": request.prompt,
    }


def call_failed(call_id: str, action: str) -> dict[str, Any]:
    return {
        "id": call_id,
        "type": "image_generation_call",
        "status": "failed",
        "action": action,
        "result": None,
    }


def output_text(text: str) -> dict[str, Any]:
    return {"type": "output_text", "text": text, "annotations": [], "logprobs": []}


def message(message_id: str, text: str, status: str = "completed") -> dict[str, Any]:
    content = [output_text(text)] if status == "completed" else []
    return {
        "id": message_id,
        "type": "message",
        "role": "assistant",
        "status": status,
        "content": content,
    }


class EventSequence:
    """Stream events numbered from 0 by one, across every kind (§3.3)."""

    def __init__(self) -> None:
        self._next = 0

    def event(self, kind: str, **payload: Any) -> dict[str, Any]:
        stamped = {"type": kind, "sequence_number": self._next, **payload}
        self._next += 1
        return stamped
