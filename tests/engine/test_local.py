import asyncio
import threading
import time
from collections.abc import AsyncIterator

import pytest
from PIL import Image

from limner.engine.diffusers_backend import DiffusersBackend
from limner.engine.local import LocalEngine, RenderCancelled, render
from limner.engine.types import (
    BackendInfo,
    EngineEvent,
    Progress,
    Rendered,
    RenderJob,
    StepCallback,
    StepInfo,
)
from limner.errors import ServerError


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

    def __init__(self, inner: DiffusersBackend, step_delay: float) -> None:
        self.inner = inner
        self.step_delay = step_delay
        self.steps: list[int] = []
        self.error: BaseException | None = None
        self.finished = threading.Event()

    def info(self) -> BackendInfo:
        return self.inner.info()

    def render(self, job: RenderJob, on_step: StepCallback) -> list[Image.Image]:
        def recording(step: StepInfo) -> None:
            self.steps.append(step.step)
            on_step(step)
            time.sleep(self.step_delay)

        try:
            return self.inner.render(job, recording)
        except BaseException as error:
            self.error = error
            raise
        finally:
            self.finished.set()

    async def wait_finished(self) -> None:
        assert await asyncio.to_thread(self.finished.wait, 30), "the worker never stopped"


async def collect(events: AsyncIterator[EngineEvent]) -> list[EngineEvent]:
    return [event async for event in events]


def test_stream_yields_every_step_then_one_rendered(tiny_backend: DiffusersBackend) -> None:
    async def scenario() -> list[EngineEvent]:
        engine = LocalEngine({"tiny-sd": tiny_backend})
        try:
            return await collect(engine.stream(make_job()))
        finally:
            await engine.close()

    events = asyncio.run(scenario())
    *progress, last = events
    assert all(isinstance(event, Progress) for event in progress)
    assert [event.step for event in progress] == [1, 2, 3]
    assert {event.total for event in progress} == {3}
    assert isinstance(last, Rendered)
    assert [image.size for image in last.images] == [(32, 32), (32, 32)]


def test_render_drains_the_stream_into_the_backends_images(
    tiny_backend: DiffusersBackend,
) -> None:
    async def scenario() -> list[Image.Image]:
        engine = LocalEngine({"tiny-sd": tiny_backend})
        try:
            return await render(engine, make_job())
        finally:
            await engine.close()

    images = asyncio.run(scenario())
    direct = tiny_backend.render(make_job(), lambda step: None)
    assert [image.tobytes() for image in images] == [image.tobytes() for image in direct]


def test_event_loop_keeps_running_during_a_render(tiny_backend: DiffusersBackend) -> None:
    async def scenario() -> tuple[int, float, float]:
        engine = LocalEngine({"tiny-sd": tiny_backend})
        ticks = 0
        longest_gap = 0.0

        async def ticker() -> None:
            nonlocal ticks, longest_gap
            last = time.perf_counter()
            while True:
                await asyncio.sleep(0.01)
                now = time.perf_counter()
                ticks += 1
                longest_gap = max(longest_gap, now - last)
                last = now

        ticking = asyncio.create_task(ticker())
        try:
            started = time.perf_counter()
            await render(engine, make_job(n=2, width=64, height=64, steps=8))
            elapsed = time.perf_counter() - started
        finally:
            ticking.cancel()
            await engine.close()
        return ticks, longest_gap, elapsed

    ticks, longest_gap, elapsed = asyncio.run(scenario())
    # Run on the loop's own thread, the render would allow no tick until it ended.
    assert ticks >= 5, f"{ticks} ticks in a {elapsed:.2f}s render"
    assert longest_gap < max(0.5 * elapsed, 0.1), f"loop stalled {longest_gap:.2f}s"


def test_backend_error_propagates_and_the_engine_keeps_working(
    tiny_backend: DiffusersBackend,
) -> None:
    async def scenario() -> list[Image.Image]:
        engine = LocalEngine({"tiny-sd": tiny_backend})
        try:
            # An inpaint job without a mask: the backend raises inside the worker thread.
            broken = make_job(task="inpaint", init_image=Image.new("RGB", (32, 32)))
            with pytest.raises(ValueError, match="mask"):
                await collect(engine.stream(broken))
            return await render(engine, make_job(n=1))
        finally:
            await engine.close()

    images = asyncio.run(scenario())
    assert [image.size for image in images] == [(32, 32)]


def test_unknown_backend_is_a_clear_server_error(tiny_backend: DiffusersBackend) -> None:
    async def scenario() -> None:
        engine = LocalEngine({"tiny-sd": tiny_backend})
        try:
            with pytest.raises(ServerError, match=r"'nope'.*tiny-sd"):
                await collect(engine.stream(make_job(backend="nope")))
        finally:
            await engine.close()

    asyncio.run(scenario())


def test_closing_the_stream_stops_the_worker_at_the_next_step(
    tiny_backend: DiffusersBackend,
) -> None:
    backend = StepRecordingBackend(tiny_backend, step_delay=0.02)

    async def scenario() -> tuple[int, int, list[Image.Image]]:
        engine = LocalEngine({"tiny-sd": backend})
        try:
            events = engine.stream(make_job(steps=30))
            assert isinstance(await anext(events), Progress)
            await events.aclose()
            steps_at_cancel = len(backend.steps)
            await backend.wait_finished()
            steps_when_stopped = len(backend.steps)
            # The same engine takes the next job.
            after = await render(engine, make_job(n=1))
            return steps_at_cancel, steps_when_stopped, after
        finally:
            await engine.close()

    steps_at_cancel, steps_when_stopped, after = asyncio.run(scenario())
    assert isinstance(backend.error, RenderCancelled)
    # Every step before the cancel, plus at most the one whose callback raised.
    assert steps_at_cancel <= steps_when_stopped <= steps_at_cancel + 1
    assert steps_when_stopped < 30
    assert len(after) == 1


def test_cancelling_the_consumer_task_stops_the_worker(tiny_backend: DiffusersBackend) -> None:
    backend = StepRecordingBackend(tiny_backend, step_delay=0.02)

    async def scenario() -> int:
        engine = LocalEngine({"tiny-sd": backend})
        first_step = asyncio.Event()

        async def consume() -> None:
            async for event in engine.stream(make_job(steps=30)):
                if isinstance(event, Progress):
                    first_step.set()

        consumer = asyncio.create_task(consume())
        try:
            await first_step.wait()
            consumer.cancel()
            with pytest.raises(asyncio.CancelledError):
                await consumer
            steps_at_cancel = len(backend.steps)
            await backend.wait_finished()
            return steps_at_cancel
        finally:
            await engine.close()

    steps_at_cancel = asyncio.run(scenario())
    assert isinstance(backend.error, RenderCancelled)
    assert steps_at_cancel <= len(backend.steps) <= steps_at_cancel + 1
    assert len(backend.steps) < 30


def test_close_stops_a_render_in_flight(tiny_backend: DiffusersBackend) -> None:
    backend = StepRecordingBackend(tiny_backend, step_delay=0.02)

    async def scenario() -> None:
        engine = LocalEngine({"tiny-sd": backend})
        events = engine.stream(make_job(steps=30))
        assert isinstance(await anext(events), Progress)
        await engine.close()
        assert backend.finished.is_set(), "close() returned before the worker stopped"
        with pytest.raises(RenderCancelled):
            await collect(events)

    asyncio.run(scenario())
    assert isinstance(backend.error, RenderCancelled)
    assert len(backend.steps) < 30


def test_backends_lists_each_backend_info(tiny_backend: DiffusersBackend) -> None:
    engine = LocalEngine({"tiny-sd": tiny_backend})
    try:
        assert engine.backends() == [tiny_backend.info()]
    finally:
        asyncio.run(engine.close())
