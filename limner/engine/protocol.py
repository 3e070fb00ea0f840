"""The two seams under the service: ImageEngine (async, what the service calls) and
ImageBackend (sync, what torch code implements)."""

from collections.abc import AsyncIterator
from typing import Protocol

from PIL import Image

from limner.engine.types import BackendInfo, EngineEvent, RenderJob, StepCallback


class ImageBackend(Protocol):
    """One loaded model. Runs in a worker thread; may block."""

    def info(self) -> BackendInfo: ...

    def render(self, job: RenderJob, on_step: StepCallback) -> list[Image.Image]:
        """Return `job.n` images at `job.width` x `job.height`. `on_step` may raise to cancel."""
        ...


class ImageEngine(Protocol):
    """What the service talks to: a stream of events per job."""

    def stream(self, job: RenderJob) -> AsyncIterator[EngineEvent]:
        """Yield Progress events and end with exactly one Rendered event."""
        ...

    def backends(self) -> list[BackendInfo]: ...

    async def close(self) -> None: ...
