"""The worker of one device: a bounded queue of jobs, grouped into pipeline calls on one thread.

One thread per device, because a device runs one pipeline call at a time: two calls would only
share it and hold twice the activations. Jobs that can share a call (same `batch_key`) and
arrive within the batching window run as one call, which costs little more than one of them.

The window opens when the oldest job is admitted or, if it was queued behind a running call
and nothing else is queued, when that call ends: the call's clients get their results then and
often send their next request within milliseconds, so clients out of step with each other fall
into one call. A lone client pays no window: when the last call carried a single job and the
next job arrives to an idle device, nothing suggests a batch-mate is coming, and it starts at
once.
"""

import asyncio
import contextlib
import logging
import math
import threading
import time
from dataclasses import dataclass

from PIL import Image

from limner import metrics
from limner.engine.protocol import ImageBackend
from limner.engine.types import (
    EngineEvent,
    Partial,
    Progress,
    RenderCancelled,
    RenderJob,
    StepInfo,
    batch_key,
)
from limner.errors import ServerOverloaded

logger = logging.getLogger(__name__)

# Weight of the newest pipeline call in the running mean behind `retry-after`.
_PACE_WEIGHT = 0.2
# `retry-after-ms` bounds: sooner than this the queue cannot have moved; the OpenAI SDK
# ignores values above a minute.
_MIN_RETRY_MS, _MAX_RETRY_MS = 100, 60_000


@dataclass(frozen=True)
class Outcome:
    """The last item on a job's event queue: its images, or why there are none."""

    images: list[Image.Image] | None = None
    error: BaseException | None = None

    def unwrap(self) -> list[Image.Image]:
        if self.error is not None:
            raise self.error
        assert self.images is not None
        return self.images


def partial_steps(count: int, total: int) -> frozenset[int]:
    """The steps after which to show `count` partials: evenly spaced, strictly before the last.

    Fewer than `count` when the run is short; the Images API allows that.
    """
    steps = (round(total * (index + 1) / (count + 1)) for index in range(count))
    return frozenset(step for step in steps if 1 <= step < total)


class _Previews:
    """One step's preview, decoded at most once however many jobs of the call want it."""

    def __init__(self, step: StepInfo) -> None:
        self._step = step
        self._images: list[Image.Image] | None = None

    def rows(self, first: int, count: int) -> list[Image.Image] | None:
        if self._step.preview is None:
            return None
        if self._images is None:
            self._images = self._step.preview()
        return self._images[first : first + count]


class Ticket:
    """One admitted job. Its events travel to the consumer's event loop; its flag stops it."""

    def __init__(
        self, job: RenderJob, backend: ImageBackend, loop: asyncio.AbstractEventLoop
    ) -> None:
        self.job = job
        self.backend = backend
        self.events: asyncio.Queue[EngineEvent | Outcome] = asyncio.Queue()
        self.admitted_at = time.monotonic()
        # Set by the consumer leaving or by close(); read between denoising steps.
        self.cancelled = threading.Event()
        self._loop = loop
        self._left = False
        self._partials_sent = 0

    def post(self, item: EngineEvent | Outcome) -> None:
        """Hand an event to the consumer; called from the worker thread."""
        if self._left:
            return
        # RuntimeError: the consumer's loop has closed, so nobody is left to tell.
        with contextlib.suppress(RuntimeError):
            self._loop.call_soon_threadsafe(self.events.put_nowait, item)

    @property
    def left(self) -> bool:
        return self._left

    def leave(self) -> None:
        """The consumer stopped reading: stop the job and drop whatever it would still get."""
        self._left = True
        self.cancelled.set()

    def post_step(self, step: StepInfo, previews: _Previews, first_row: int) -> None:
        self.post(Progress(step.step, step.total))
        if step.step not in partial_steps(self.job.partial_images, step.total):
            return
        images = previews.rows(first_row, self.job.n)
        if images is not None:
            self.post(Partial(self._partials_sent, images))
            self._partials_sent += 1


class _CallSteps:
    """The on_step of one pipeline call: fans each step out to the jobs still wanted."""

    def __init__(self, batch: list[Ticket]) -> None:
        self._rows: list[tuple[Ticket, int]] = []
        first_row = 0
        for ticket in batch:
            self._rows.append((ticket, first_row))
            first_row += ticket.job.n

    def __call__(self, step: StepInfo) -> None:
        live = [(ticket, row) for ticket, row in self._rows if not ticket.cancelled.is_set()]
        if not live:
            # Rows cannot leave a running call, so a cancelled job's rows run on beside its
            # mates; only when no job is left is stopping worth it.
            ids = ", ".join(ticket.job.request_id or "(no id)" for ticket, _ in self._rows)
            raise RenderCancelled(f"render {ids} cancelled")
        previews = _Previews(step)
        for ticket, first_row in live:
            ticket.post_step(step, previews, first_row)


class DeviceWorker:
    """The queue and thread of one device; every backend on the device shares them."""

    def __init__(
        self, device: str, *, max_queue: int, max_batch_images: int, batch_wait_s: float
    ) -> None:
        self.device = device
        self._max_queue = max_queue
        self._max_batch_images = max_batch_images
        self._batch_wait_s = batch_wait_s
        # Guards everything below; the thread waits on it for jobs.
        self._condition = threading.Condition()
        self._waiting: list[Ticket] = []
        self._running: list[Ticket] = []
        self._closed = False
        self._thread: threading.Thread | None = None
        # Running mean of pipeline-call seconds: how soon a full queue frees a place.
        self._pace_s: float | None = None
        # When the device last fell idle, and how many jobs its last call carried (None
        # before the first): where a batching window opens, and whether it opens at all.
        self._idle_since = time.monotonic()
        self._last_call_jobs: int | None = None

    def submit(self, ticket: Ticket) -> None:
        """Queue the job, or raise ServerOverloaded at once when the queue is full or closed."""
        with self._condition:
            if self._closed:
                raise ServerOverloaded(
                    "The server is shutting down. Retry the request.", headers=self._retry_headers()
                )
            if len(self._waiting) >= self._max_queue:
                raise ServerOverloaded(
                    f"The server is busy ({len(self._waiting)} requests waiting). "
                    "Retry the request shortly.",
                    headers=self._retry_headers(),
                )
            self._waiting.append(ticket)
            metrics.QUEUE_DEPTH.labels(ticket.job.backend).inc()
            if self._thread is None:
                # Started on first use, so an engine that never renders holds no thread.
                self._thread = threading.Thread(
                    target=self._serve, name=f"limner-render-{self.device}", daemon=True
                )
                self._thread.start()
            self._condition.notify()

    def withdraw(self, ticket: Ticket) -> None:
        """Take a job out of the queue if it has not started, so it never does."""
        with self._condition:
            if ticket in self._waiting:
                self._dequeue([ticket])
                # The thread may be holding a batching window open for this very job.
                self._condition.notify()

    def close(self) -> None:
        """Refuse new jobs, end the queued ones, stop the running call at its next step."""
        with self._condition:
            self._closed = True
            queued = list(self._waiting)
            self._dequeue(queued)
            for ticket in self._running:
                ticket.cancelled.set()
            self._condition.notify_all()
        for ticket in queued:
            ticket.cancelled.set()
            ticket.post(Outcome(error=RenderCancelled("the engine closed before the job started")))

    def join(self) -> None:
        if self._thread is not None:
            self._thread.join()

    # The worker thread.

    def _serve(self) -> None:
        while (batch := self._next_batch()) is not None:
            try:
                self._run(batch)
            finally:
                with self._condition:
                    self._running = []

    def _next_batch(self) -> list[Ticket] | None:
        """Block until the oldest job's batching window closes (or its call is full); take it
        with every queued job that can share its call. None once the worker is closed."""
        with self._condition:
            while not self._closed:
                if not self._waiting:
                    self._condition.wait()
                    continue
                head = self._waiting[0]
                batch = self._mates_of(head)
                window_left = self._window_closes(head, batch) - time.monotonic()
                if window_left > 0 and self._may_grow(batch):
                    # Woken early by each arrival or withdrawal; the loop looks again.
                    self._condition.wait(window_left)
                    continue
                self._dequeue(batch)
                self._running = batch
                return batch
            return None

    def _window_closes(self, head: Ticket, batch: list[Ticket]) -> float:
        """When to stop waiting for more batch-mates of `head` (see the module docstring)."""
        if head.admitted_at >= self._idle_since:
            # Arrived to an idle device: after a one-job call, likely a lone client.
            if self._last_call_jobs == 1:
                return head.admitted_at
            return head.admitted_at + self._batch_wait_s
        # Queued behind a call. Waiting on past its end only while nothing else is queued:
        # other jobs would sit behind an idle device.
        if len(batch) == len(self._waiting):
            return self._idle_since + self._batch_wait_s
        return head.admitted_at + self._batch_wait_s

    def _mates_of(self, head: Ticket) -> list[Ticket]:
        """`head` and the queued jobs, oldest first, that fit in one call with it."""
        key = batch_key(head.job)
        batch, images = [head], head.job.n
        if key is None or self._max_batch_images <= 1:
            return batch
        for ticket in self._waiting[1:]:
            fits = images + ticket.job.n <= self._max_batch_images
            if fits and batch_key(ticket.job) == key:
                batch.append(ticket)
                images += ticket.job.n
        return batch

    def _may_grow(self, batch: list[Ticket]) -> bool:
        images = sum(ticket.job.n for ticket in batch)
        return batch_key(batch[0].job) is not None and images < self._max_batch_images

    def _dequeue(self, tickets: list[Ticket]) -> None:
        for ticket in tickets:
            self._waiting.remove(ticket)
            metrics.QUEUE_DEPTH.labels(ticket.job.backend).dec()

    def _run(self, batch: list[Ticket]) -> None:
        """One pipeline call for the batch; every job gets its images or the call's error."""
        batch = [ticket for ticket in batch if not ticket.cancelled.is_set()]
        if not batch:
            return
        model = batch[0].job.backend
        started = time.monotonic()
        for ticket in batch:
            metrics.QUEUE_WAIT_SECONDS.labels(model).observe(started - ticket.admitted_at)
        metrics.BATCH_SIZE.labels(model).observe(sum(ticket.job.n for ticket in batch))
        try:
            jobs = [ticket.job for ticket in batch]
            try:
                results = batch[0].backend.render_batch(jobs, _CallSteps(batch))
            finally:
                # Before any result goes out: a job sent in reply to one must find the device
                # idle, not queued behind this call.
                self._call_ended(len(batch))
            if len(results) != len(batch):
                raise RuntimeError(f"backend returned {len(results)} results for {len(batch)}")
        except Exception as error:
            if not isinstance(error, RenderCancelled) and all(t.left for t in batch):
                # A consumer still reading reports the error; with none left, this is the
                # only trace of it.
                logger.error("abandoned render on %s failed", model, exc_info=error)
            for ticket in batch:
                ticket.post(Outcome(error=error))
            return
        elapsed = time.monotonic() - started
        # Only completed calls: a cancelled one says nothing about how long calls take.
        metrics.GENERATION_SECONDS.labels(model).observe(elapsed)
        self._record_pace(elapsed)
        for ticket, images in zip(batch, results, strict=True):
            ticket.post(Outcome(images=images))

    def _call_ended(self, jobs: int) -> None:
        with self._condition:
            self._idle_since = time.monotonic()
            self._last_call_jobs = jobs

    def _record_pace(self, seconds: float) -> None:
        with self._condition:
            previous = self._pace_s
            self._pace_s = (
                seconds if previous is None else previous + _PACE_WEIGHT * (seconds - previous)
            )

    def _retry_headers(self) -> dict[str, str]:
        """When to retry: about one pipeline call from now, when the next batch leaves the queue
        and frees its places. A second before any call has finished."""
        pace_s = 1.0 if self._pace_s is None else self._pace_s
        retry_ms = min(max(round(pace_s * 1000), _MIN_RETRY_MS), _MAX_RETRY_MS)
        return {"retry-after": str(math.ceil(retry_ms / 1000)), "retry-after-ms": str(retry_ms)}
