"""Server-sent events: their framing, and watching the connection they go over.

A client that goes away is noticed while its work runs, not when the next event fails to
send: what it leaves is cancelled (a render stops at its next step, and is never billed).
"""

import asyncio
import json
import logging
from collections.abc import AsyncIterator, Awaitable
from contextlib import aclosing
from typing import Any, Protocol, TypeVar

from fastapi import Request

logger = logging.getLogger(__name__)
Result = TypeVar("Result")

# How often a request looks for its client having gone away.
DISCONNECT_POLL_SECONDS = 0.25
# What `anext` returns once the events are over.
END = b""
# Not a status any client sees: the client is gone. Logged as nginx does.
CLIENT_CLOSED_REQUEST = 499


class _Startable(Protocol):
    async def start(self) -> None: ...


async def started(work: _Startable) -> bool:
    """`work.start()` (an image run or a turn: queued, past its first step), as an awaitable
    `unless_disconnected` can watch."""
    await work.start()
    return True


def named_event(payload: dict[str, Any]) -> bytes:
    """`event:` = the payload's `type`: SDKs before 1.97.2 drop events whose name they do not
    know, and JS 7 throws on `event: error` whatever its data."""
    return f"event: {payload['type']}\n".encode() + data_event(payload)


def data_event(payload: dict[str, Any]) -> bytes:
    return f"data: {json.dumps(payload)}\n\n".encode()


async def while_connected(request: Request, events: AsyncIterator[bytes]) -> AsyncIterator[bytes]:
    """`events` until they end or the client goes away. A disconnect is otherwise noticed only
    when the next event fails to send, which for `partial_images=0` is after the whole render
    (and its bill); watching for it cancels the render at its next step instead."""
    async with aclosing(events):  # type: ignore[type-var]
        while True:
            step = await unless_disconnected(request, anext(events, END))
            if step is None or step is END:
                return
            yield step


async def unless_disconnected(request: Request, work: Awaitable[Result]) -> Result | None:
    """Await `work`, cancelling it if the client disconnects first (then None). A render
    nobody waits for stops at its next denoising step and is never billed."""
    task = asyncio.ensure_future(work)
    try:
        while True:
            done, _ = await asyncio.wait({task}, timeout=DISCONNECT_POLL_SECONDS)
            if done:
                return task.result()
            if await request.is_disconnected():
                logger.info("client disconnected; cancelling its render")
                return None
    finally:
        if not task.done():
            task.cancel()
            await asyncio.gather(task, return_exceptions=True)
