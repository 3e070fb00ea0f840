"""What engine tests share: a job factory, a recording backend wrapper, a stream collector."""

import asyncio
import threading
import time
from collections.abc import AsyncIterator, Sequence

from PIL import Image

from limner.engine.protocol import ImageBackend
from limner.engine.types import (
    BackendInfo,
    EngineEvent,
    RenderCancelled,
    RenderJob,
    StepCallback,
    StepInfo,
)


def make_job(**overrides: object) -> RenderJob:
    values: dict[str, object] = {
        "backend": "tiny-sd",
        "prompt": "a lighthouse at dusk",
        "n": 2,
        "width": 32,
        "height": 32,
        "steps": 3,
        "seed": 11,
    }
    values.update(overrides)
    return RenderJob(**values)  # type: ignore[arg-type]


class StepRecordingBackend:
    """The real backend, with each step recorded and slowed, so a test can land between steps."""

    def __init__(self, inner: ImageBackend, step_delay: float = 0.0) -> None:
        self.inner = inner
        self.step_delay = step_delay
        self.steps: list[int] = []
        self.error: BaseException | None = None
        # The jobs of each pipeline call, in order.
        self.calls: list[list[RenderJob]] = []
        self.finished = threading.Event()

    def info(self) -> BackendInfo:
        return self.inner.info()

    def render(self, job: RenderJob, on_step: StepCallback) -> list[Image.Image]:
        return self.render_batch([job], on_step)[0]

    def render_batch(
        self, jobs: Sequence[RenderJob], on_step: StepCallback
    ) -> list[list[Image.Image]]:
        self.calls.append(list(jobs))
        self.finished.clear()

        def recording(step: StepInfo) -> None:
            self.steps.append(step.step)
            on_step(step)
            time.sleep(self.step_delay)

        try:
            return self.inner.render_batch(jobs, recording)
        except BaseException as error:
            self.error = error
            raise
        finally:
            self.finished.set()

    async def wait_finished(self) -> None:
        assert await asyncio.to_thread(self.finished.wait, 30), "the worker never stopped"

    def assert_cancelled_within_a_step(self, steps_at_cancel: int, total: int) -> None:
        """The call ended in RenderCancelled at most one step after `steps_at_cancel`, short of
        its `total` steps."""
        assert isinstance(self.error, RenderCancelled)
        assert steps_at_cancel <= len(self.steps) <= steps_at_cancel + 1
        assert len(self.steps) < total


async def collect(events: AsyncIterator[EngineEvent]) -> list[EngineEvent]:
    return [event async for event in events]
