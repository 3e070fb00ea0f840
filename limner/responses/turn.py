"""One admitted Responses turn: its image call (an ImageRun, or none), then the reply, as a
response object or as its stream of events (responses-api.md §3.2).

As with ImageRun, the owner always calls `abandon()`: unless the turn was delivered (stored,
then billed), the render stops and the admission is released.
"""

import asyncio
import base64
import time
from collections.abc import AsyncIterator
from contextlib import aclosing
from dataclasses import dataclass
from typing import Any

from limner.errors import LimnerError, ServerError
from limner.ids import new_id
from limner.images.run import FinishedImages, ImageRun, PartialImage
from limner.responses import wire
from limner.responses.conversation import Item
from limner.responses.mainline import Plan
from limner.responses.request import TurnRequest
from limner.responses.store import ResponseStore, Scope


@dataclass(frozen=True)
class TurnRecord:
    """Where the turn is kept (store: true), and what it brought in."""

    store: ResponseStore
    scope: Scope
    inputs: list[Item]


class Turn:
    def __init__(
        self,
        request: TurnRequest,
        plan: Plan,
        run: ImageRun | None,
        record: TurnRecord,
    ) -> None:
        self.request = request
        self.plan = plan
        self.run = run
        self._record = record
        self.id = new_id("resp_")
        self._created_at = int(time.time())
        self._call_id = new_id("ig_")
        self._message_id = new_id("msg_")
        self._sequence = wire.EventSequence()
        self._output: list[dict[str, Any]] = []
        self._image = b""
        self._final: dict[str, Any] | None = None

    @property
    def headers(self) -> dict[str, str]:
        return self.run.headers if self.run is not None else {}

    async def start(self) -> None:
        """Queue the image call and wait for its first step (a full queue refuses here)."""
        if self.run is not None:
            await self.run.start()

    async def result(self) -> dict[str, Any]:
        """The non-streaming turn: the finished response, stored, then billed."""
        if self.run is not None:
            await self._finish_call(await self.run.result())
        return await self._complete()

    async def events(self) -> AsyncIterator[dict[str, Any]]:
        """The §3.2 sequence. An exception leaves it as it is; the owner then sends
        `failure()`'s events. The response is complete (stored, billed) before the first
        event that carries the image goes out."""
        skeleton = self._response("in_progress")
        yield self._event("response.created", response=skeleton)
        yield self._event("response.in_progress", response=skeleton)
        call = {"output_index": 0, "item_id": self._call_id}
        if self.run is not None:
            async for event in self._render_events(self.run, call):
                yield event
        final = await self._complete()
        if self.run is not None:
            yield self._event("response.image_generation_call.completed", **call)
            yield self._event("response.output_item.done", output_index=0, item=final["output"][0])
        index = len(final["output"]) - 1
        yield self._event(
            "response.output_item.added",
            output_index=index,
            item=wire.message(self._message_id, "", status="in_progress"),
        )
        part = {"item_id": self._message_id, "output_index": index, "content_index": 0}
        yield self._event("response.content_part.added", **part, part=wire.output_text(""))
        reply = self.plan.reply
        yield self._event("response.output_text.delta", **part, delta=reply, logprobs=[])
        yield self._event("response.output_text.done", **part, text=reply, logprobs=[])
        yield self._event("response.content_part.done", **part, part=wire.output_text(reply))
        yield self._event(
            "response.output_item.done", output_index=index, item=final["output"][index]
        )
        yield self._event("response.completed", response=final)

    async def failure(self, error: LimnerError, wire_error: dict[str, Any]) -> list[dict[str, Any]]:
        """What a stream ends with when the turn failed after it began: the error event (the
        §7 error object `wire_error`), then `response.failed` (§3.4). A stored turn is kept
        as failed; nothing is billed."""
        if self.run is not None and not any(item["id"] == self._call_id for item in self._output):
            self._output.append(wire.call_failed(self._call_id, self.plan.action))
        failed = self._response(
            "failed", error={"code": error.code or error.type, "message": error.message}
        )
        if self.request.store and self._final is None:  # not already kept as completed
            await asyncio.to_thread(self._save, failed, {})
        return [
            self._event("error", error=wire_error),
            self._event("response.failed", response=failed),
        ]

    async def abandon(self) -> None:
        if self.run is not None:
            await self.run.abandon()

    # -- steps ----------------------------------------------------------------------------

    async def _render_events(
        self, run: ImageRun, call: dict[str, Any]
    ) -> AsyncIterator[dict[str, Any]]:
        yield self._event(
            "response.output_item.added",
            output_index=0,
            item=wire.call_in_progress(self._call_id),
        )
        yield self._event("response.image_generation_call.in_progress", **call)
        yield self._event("response.image_generation_call.generating", **call)
        finished: FinishedImages | None = None
        async with aclosing(run.events()) as events:
            async for event in events:
                if isinstance(event, PartialImage):
                    yield self._event(
                        "response.image_generation_call.partial_image",
                        **call,
                        partial_image_index=event.index,
                        partial_image_b64=base64.b64encode(event.data).decode(),
                        **wire.call_settings(run.request),
                    )
                elif isinstance(event, FinishedImages):
                    finished = event
        if finished is None:
            raise ServerError("The image call finished without an image.")
        await self._finish_call(finished)

    async def _finish_call(self, finished: FinishedImages) -> None:
        assert self.run is not None
        self._image = finished.encoded[0]
        self._output.append(
            wire.call_completed(
                self._call_id,
                self.run.request,
                self.plan.action,
                base64.b64encode(self._image).decode(),
            )
        )

    async def _complete(self) -> dict[str, Any]:
        """The finished response: stored, then delivered (billed, once)."""
        if self._final is not None:
            return self._final
        self._output.append(wire.message(self._message_id, self.plan.reply))
        image_usage = self.run.usage if self.run is not None else None
        final = self._response(
            "completed",
            image_usage=image_usage,
            mainline_usage=self.plan.usage,
            completed_at=int(time.time()),
        )
        if self.request.store:
            images = {self._call_id: self._image} if self.run is not None else {}
            await asyncio.to_thread(self._save, final, images)
        if self.run is not None:
            await self.run.deliver()
        self._final = final
        return final

    def _save(self, response: dict[str, Any], images: dict[str, bytes]) -> None:
        self._record.store.save(self._record.scope, response, self._record.inputs, images)

    def _response(self, status: str, **extra: Any) -> dict[str, Any]:
        return wire.response_object(
            self.request, self.id, self._created_at, status, list(self._output), **extra
        )

    def _event(self, kind: str, **payload: Any) -> dict[str, Any]:
        return self._sequence.event(kind, **payload)
