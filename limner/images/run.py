"""ImageRun: one admitted request, from its render to its delivery.

The route gets a run from ImageService once every check has passed, and then talks to the run
alone. Iterating `events()` renders: partial images as the engine offers them, then the
finished images, encoded. The consumer shapes them for its wire (the Images API, a Responses
turn), then calls `deliver()`: billed, once. Whatever else happens (a client gone, an error,
moderation of the output) ends in `abandon()`, which the owner always calls: the render stops
at its next step and the admission is released, never billed.
"""

import asyncio
import logging
from collections.abc import AsyncGenerator, AsyncIterator, Iterator
from contextlib import aclosing, contextmanager
from dataclasses import dataclass

from PIL import Image as PILImage

from limner import metrics
from limner.engine.protocol import ImageEngine
from limner.engine.types import EngineEvent, Partial, RenderCancelled, Rendered, RenderJob
from limner.errors import LimnerError, ServerError, ServerOverloaded
from limner.images.finishing import EditSource, OutputStage
from limner.images.rules import ResolvedRequest
from limner.images.usage import ImageUsage
from limner.metering.meter import Admitted, Meter
from limner.moderation.protocol import Subject

logger = logging.getLogger(__name__)


@dataclass(frozen=True)
class PartialImage:
    """One image's intermediate state, finished and encoded as the final one will be.
    `index` is the 0-based partial number; `image` which of the request's n images."""

    index: int
    image: int
    data: bytes


@dataclass(frozen=True)
class FinishedImages:
    """The request's images, encoded as asked; `usage` as admitted (None for DALL·E)."""

    encoded: list[bytes]
    usage: ImageUsage | None
    seed: int


class ImageRun:
    def __init__(
        self,
        request: ResolvedRequest,
        source: EditSource,
        job: RenderJob,
        usage: ImageUsage | None,
        admitted: Admitted,
        subject: Subject,
        *,
        engine: ImageEngine,
        outputs: OutputStage,
        meter: Meter,
    ) -> None:
        self.request = request
        self.source = source
        self.job = job
        self.usage = usage
        self.admitted = admitted
        self.subject = subject
        self._engine = engine
        self._outputs = outputs
        self._meter = meter
        self._stream: AsyncIterator[EngineEvent] | None = None
        self._first: EngineEvent | None = None
        self._finished: FinishedImages | None = None
        self._settled = False

    @property
    def headers(self) -> dict[str, str]:
        """x-ratelimit-* as admitted, and the seed that reproduces the images."""
        return {**self.admitted.headers, "x-limner-seed": str(self.request.seed)}

    async def start(self) -> None:
        """Queue the render and wait for its first step. A full queue (503, retryable) refuses
        here, while a streaming client can still be answered with a JSON error."""
        if self._stream is not None:
            return
        self._stream = self._engine.stream(self.job)
        try:
            with _engine_errors(self.request):
                self._first = await anext(self._stream, None)
        except BaseException:
            await self.abandon()
            raise

    async def events(self) -> AsyncGenerator[PartialImage | FinishedImages, None]:
        try:
            await self.start()
            assert self._stream is not None
            rendered = None
            with _engine_errors(self.request):
                async for event in _chain(self._first, self._stream):
                    if isinstance(event, Partial):
                        for partial in await self._partials(event):
                            yield partial
                    elif isinstance(event, Rendered):
                        rendered = event.images
            if rendered is None or len(rendered) != self.request.n:
                raise ServerError("The engine returned no images for this request.")
            encoded = await self._encode(rendered)
            self._finished = FinishedImages(encoded, self.usage, self.request.seed)
            yield self._finished
        finally:
            await self._stop_render()

    async def result(self) -> FinishedImages:
        """The non-streaming path: the same events, drained; partials are not asked for."""
        async with aclosing(self.events()) as events:
            async for event in events:
                if isinstance(event, FinishedImages):
                    return event
        raise ServerError("The request finished without a result.")

    async def deliver(self) -> None:
        """The consumer holds the response for the finished images: one usage record, once."""
        if self._finished is None:
            raise RuntimeError("deliver() before the run finished")
        if self._settled:
            return
        await asyncio.to_thread(self._meter.deliver, self.admitted, self.subject.request_id)
        self._settled = True  # delivered and billed: nothing to release
        metrics.IMAGES_GENERATED.labels(self.request.model).inc(len(self._finished.encoded))

    async def abandon(self) -> None:
        """Unless delivered, release the admission; stop the render (at its next step)."""
        if not self._settled:
            self._settled = True
            # Failed, moderated or cancelled: nothing delivered, nothing billed. Released
            # before anything is awaited, so a cancelled task cannot skip it.
            self._meter.release(self.admitted)
        await self._stop_render()

    async def _stop_render(self) -> None:
        if self._stream is not None:
            # Closing the engine's stream early is what cancels the render.
            close = getattr(self._stream, "aclose", None)
            if close is not None:
                await close()

    async def _partials(self, partial: Partial) -> list[PartialImage]:
        encoded = await self._encode(partial.images)
        return [PartialImage(partial.index, i, data) for i, data in enumerate(encoded)]

    async def _encode(self, images: list[PILImage.Image]) -> list[bytes]:
        return await self._outputs.encode(self.request, self.source, images, self.subject)


async def _chain(
    first: EngineEvent | None, rest: AsyncIterator[EngineEvent]
) -> AsyncIterator[EngineEvent]:
    if first is not None:
        yield first
    async for event in rest:
        yield event


@contextmanager
def _engine_errors(request: ResolvedRequest) -> Iterator[None]:
    """What the engine raises, as a client may see it: its own errors as they are, a render
    stopped by shutdown as a retryable 503, anything else as a logged 500."""
    try:
        yield
    except LimnerError:
        raise
    except RenderCancelled as exc:
        raise ServerOverloaded(
            "The server is shutting down; retry the request.",
            headers={"retry-after": "1", "retry-after-ms": "1000"},
        ) from exc
    except Exception as exc:
        logger.exception("engine failed on backend %s", request.backend.name)
        raise ServerError(
            "The server had an error while processing your request. Sorry about that!"
        ) from exc
