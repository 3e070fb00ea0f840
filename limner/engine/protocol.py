"""The two seams under the service: ImageEngine (async, what the service calls) and
ImageBackend (sync, what torch code implements)."""

from collections.abc import AsyncIterator, Sequence
from typing import Protocol

from PIL import Image

from limner.engine.types import BackendInfo, EngineEvent, RenderJob, StepCallback


class ImageBackend(Protocol):
    """One loaded model. Runs in a worker thread; may block."""

    def info(self) -> BackendInfo: ...

    def render(self, job: RenderJob, on_step: StepCallback) -> list[Image.Image]:
        """Return `job.n` images at `job.width` x `job.height`. `on_step` may raise to cancel.

        The same as `render_batch([job], on_step)[0]`.
        """
        ...

    def render_batch(
        self, jobs: Sequence[RenderJob], on_step: StepCallback
    ) -> list[list[Image.Image]]:
        """Render jobs sharing one `batch_key` as one pipeline call: one list of `job.n` images
        per job, in order, each image as a solo render of that job would give.

        `on_step` is called once per step for the whole call; its preview decodes every row.
        """
        ...


class ImageEngine(Protocol):
    """What the service talks to: a stream of events per job."""

    def stream(self, job: RenderJob) -> AsyncIterator[EngineEvent]:
        """Yield Progress (and, if the job asks, Partial) events and end with exactly one
        Rendered event. Raises ServerOverloaded before yielding anything when the queue is full.
        """
        ...

    def backends(self) -> list[BackendInfo]: ...

    async def close(self) -> None: ...
