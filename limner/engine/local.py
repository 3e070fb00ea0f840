"""LocalEngine: runs backends in this process, one job at a time, on a worker thread."""

import asyncio
import logging
import threading
from collections.abc import AsyncIterator
from concurrent.futures import ThreadPoolExecutor

from PIL import Image

from limner.engine.protocol import ImageBackend, ImageEngine
from limner.engine.types import BackendInfo, EngineEvent, Progress, Rendered, RenderJob, StepInfo
from limner.errors import ServerError

logger = logging.getLogger(__name__)


class RenderCancelled(Exception):
    """Raised inside a backend's step callback to stop a run nobody is waiting for."""


class _Finished:
    """Queue marker: the worker is done; its result or exception is on the future."""


_FINISHED = _Finished()


class LocalEngine:
    """An ImageEngine over backends loaded in this process.

    One worker thread per engine: the device runs one job at a time (two would only share it
    and hold twice the activations), and the event loop never waits on torch.
    """

    def __init__(self, backends: dict[str, ImageBackend]) -> None:
        self._backends = backends
        self._executor = ThreadPoolExecutor(max_workers=1, thread_name_prefix="limner-render")
        # One flag per job in flight, so close() can stop them all.
        self._cancel_flags: set[threading.Event] = set()

    async def stream(self, job: RenderJob) -> AsyncIterator[EngineEvent]:
        backend = self._backends.get(job.backend)
        if backend is None:
            # The catalog names backends; one missing here is a deployment error, not the
            # client's, so it is a server error rather than model_not_found.
            raise ServerError(
                f"No backend named '{job.backend}' is loaded "
                f"(loaded: {', '.join(sorted(self._backends)) or 'none'})."
            )

        loop = asyncio.get_running_loop()
        events: asyncio.Queue[Progress | _Finished] = asyncio.Queue()
        cancelled = threading.Event()

        # Runs on the worker thread, between denoising steps.
        def on_step(step: StepInfo) -> None:
            if cancelled.is_set():
                raise RenderCancelled(f"render {job.request_id or '(no id)'} cancelled")
            loop.call_soon_threadsafe(events.put_nowait, Progress(step.step, step.total))

        def run() -> list[Image.Image]:
            # A job cancelled while queued behind another never starts.
            if cancelled.is_set():
                raise RenderCancelled(f"render {job.request_id or '(no id)'} cancelled")
            return backend.render(job, on_step)

        future = loop.run_in_executor(self._executor, run)
        self._cancel_flags.add(cancelled)
        # Done callbacks run on the loop after every Progress the worker queued before
        # finishing, so the marker is always the last item.
        future.add_done_callback(lambda _: events.put_nowait(_FINISHED))
        delivered = False
        try:
            while not isinstance(event := await events.get(), _Finished):
                yield event
            delivered = True
            yield Rendered(images=future.result())
        finally:
            self._cancel_flags.discard(cancelled)
            if not delivered:
                # The consumer left early (aclose, task cancelled, client gone): stop the
                # worker at its next step instead of finishing a render nobody will read.
                cancelled.set()
                future.add_done_callback(_log_abandoned)

    def backends(self) -> list[BackendInfo]:
        return [backend.info() for backend in self._backends.values()]

    async def close(self) -> None:
        for cancelled in self._cancel_flags:
            cancelled.set()
        # Waiting on a thread would block the loop; wait in another one.
        await asyncio.to_thread(self._executor.shutdown, wait=True, cancel_futures=True)


def _log_abandoned(future: asyncio.Future[list[Image.Image]]) -> None:
    """Retrieve an abandoned run's outcome, so asyncio does not report it as never retrieved."""
    if future.cancelled():
        return
    error = future.exception()
    if error is not None and not isinstance(error, RenderCancelled):
        logger.error("abandoned render failed", exc_info=error)


async def render(engine: ImageEngine, job: RenderJob) -> list[Image.Image]:
    """The non-streaming path: drain `engine.stream(job)` and return its images."""
    images: list[Image.Image] | None = None
    # Drained to the end, not left at the Rendered event, so the stream's cleanup runs now.
    async for event in engine.stream(job):
        if isinstance(event, Rendered):
            images = event.images
    if images is None:
        raise ServerError("The engine finished without rendering any images.")
    return images
