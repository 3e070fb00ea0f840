"""Server-sent events for `stream=true` (contract §5): the run's partial images, then one
completed event per image, errors mid-stream as an unnamed `data: {"error": {...}}` event."""

import base64
import time
from collections.abc import AsyncIterator
from contextlib import aclosing
from typing import Any

from limner.api.errors import client_error, error_object
from limner.api.sse import data_event, named_event
from limner.images.run import FinishedImages, ImageRun, PartialImage
from limner.images.usage import ImageUsage


async def sse(run: ImageRun, prefix: str) -> AsyncIterator[bytes]:
    """`prefix` is `image_generation` or `image_edit`. Closing this generator (the client went
    away) closes the run's events, which cancels the render: it is never billed."""
    try:
        async with aclosing(run.events()) as events:
            async for event in events:
                if isinstance(event, PartialImage):
                    yield _event(_partial(run, event, prefix))
                elif isinstance(event, FinishedImages):
                    completed = [_event(done) for done in _completed(run, event, prefix)]
                    # Delivered (billed) as the completed events go out; a client gone
                    # before then is never billed.
                    await run.deliver()
                    for chunk in completed:
                        yield chunk
    except Exception as exc:
        # Rendered by api/errors.py like any error response, sent as an event: the status
        # line went out with the first event.
        error = client_error(exc)
        yield _data(error_object(error.message, error.type, error.param, error.code))


def _settings(run: ImageRun) -> dict[str, Any]:
    request = run.request
    return {
        "created_at": int(time.time()),
        "size": request.size,
        "quality": request.quality,
        "background": request.background,
        "output_format": request.output_format,
    }


def _partial(run: ImageRun, partial: PartialImage, prefix: str) -> dict[str, Any]:
    return {
        "type": f"{prefix}.partial_image",
        "b64_json": base64.b64encode(partial.data).decode(),
        **_settings(run),
        "partial_image_index": partial.index,
    }


def _completed(run: ImageRun, result: FinishedImages, prefix: str) -> list[dict[str, Any]]:
    """One event per image; with n > 1 each carries its share of the usage, so that the
    events' usages sum to the request's (the contract does not say how n > 1 streams)."""
    count = len(result.encoded)
    return [
        {
            "type": f"{prefix}.completed",
            "b64_json": base64.b64encode(data).decode(),
            **_settings(run),
            "usage": _share(result.usage, index, count),
        }
        for index, data in enumerate(result.encoded)
    ]


def _share(usage: ImageUsage | None, index: int, count: int) -> dict[str, Any]:
    if usage is None:
        usage = ImageUsage(0, 0, 0)
    # Input is read once (billed on the first image); output tokens are the same per image.
    first = index == 0
    output = usage.output_tokens // count + (usage.output_tokens % count if first else 0)
    share = ImageUsage(
        text_tokens=usage.text_tokens if first else 0,
        image_tokens=usage.image_tokens if first else 0,
        output_tokens=output,
    )
    return share.to_wire()


def _event(payload: dict[str, Any]) -> bytes:
    return named_event(payload)


def _data(payload: dict[str, Any]) -> bytes:
    # No `event:` line: SDKs up to 1.97.1 drop events with names they do not know, and one
    # without a name reaches every version, which raises APIError from its `error` key.
    return data_event(payload)
