"""LocalEngine: runs backends in this process, through one queue and worker thread per device,
batching jobs that can share a pipeline call."""

import asyncio
import logging
from collections.abc import AsyncIterator, Iterable

from PIL import Image

from limner import metrics
from limner.engine.protocol import ImageBackend, ImageEngine
from limner.engine.types import (
    MAX_PARTIAL_IMAGES,
    BackendInfo,
    EngineEvent,
    RenderCancelled,
    Rendered,
    RenderJob,
)
from limner.engine.worker import DeviceWorker, Outcome, Ticket
from limner.errors import ServerError

__all__ = ["LocalEngine", "RenderCancelled", "render"]

logger = logging.getLogger(__name__)


class LocalEngine:
    """An ImageEngine over backends loaded in this process.

    Each device has a worker (a queue of at most `max_queue` waiting jobs and one thread), so the
    event loop never waits on torch. Jobs with the same settings that arrive within
    `batch_wait_ms` of each other run as one pipeline call of up to `max_batch_images` images;
    `max_batch_images=1` turns batching off.
    """

    def __init__(
        self,
        backends: dict[str, ImageBackend],
        *,
        max_queue: int = 16,
        max_batch_images: int = 8,
        batch_wait_ms: float = 10.0,
    ) -> None:
        if max_queue < 1 or max_batch_images < 1 or batch_wait_ms < 0:
            raise ValueError(
                "max_queue and max_batch_images must be at least 1, batch_wait_ms at least 0."
            )
        self._backends = backends
        by_device: dict[str, DeviceWorker] = {}
        # Backend name -> the worker of its device.
        self._workers: dict[str, DeviceWorker] = {}
        for name, backend in backends.items():
            device = backend.info().device
            if device not in by_device:
                by_device[device] = DeviceWorker(
                    device,
                    max_queue=max_queue,
                    max_batch_images=max_batch_images,
                    batch_wait_s=batch_wait_ms / 1000,
                )
            self._workers[name] = by_device[device]

    async def stream(self, job: RenderJob) -> AsyncIterator[EngineEvent]:
        backend = self._backends.get(job.backend)
        if backend is None:
            # The catalog names backends; one missing here is a deployment error, not the
            # client's, so it is a server error rather than model_not_found.
            raise ServerError(
                f"No backend named '{job.backend}' is loaded "
                f"(loaded: {', '.join(sorted(self._backends)) or 'none'})."
            )
        if not 0 <= job.partial_images <= MAX_PARTIAL_IMAGES:
            raise ValueError(f"partial_images must be 0 to {MAX_PARTIAL_IMAGES}.")

        worker = self._workers[job.backend]
        ticket = Ticket(job, backend, asyncio.get_running_loop())
        worker.submit(ticket)
        finished = False
        try:
            while not isinstance(item := await ticket.events.get(), Outcome):
                yield item
            finished = True
            yield Rendered(images=item.unwrap())
        finally:
            if not finished:
                # The consumer left early (aclose, task cancelled, client gone): a queued job
                # never starts, a running one stops at its next step unless batch-mates
                # still need the call, and whatever it would still get is dropped.
                ticket.leave()
                worker.withdraw(ticket)
                metrics.RENDERS_CANCELLED.labels(job.backend).inc()
                logger.info("render %s on %s cancelled", job.request_id, job.backend)

    def backends(self) -> list[BackendInfo]:
        return [backend.info() for backend in self._backends.values()]

    async def close(self) -> None:
        workers = set(self._workers.values())
        for worker in workers:
            worker.close()
        # Waiting on threads would block the loop; wait in another one.
        await asyncio.to_thread(_join_all, workers)


def _join_all(workers: Iterable[DeviceWorker]) -> None:
    for worker in workers:
        worker.join()


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
