import asyncio
import threading
import time

import pytest
from PIL import Image
from prometheus_client import REGISTRY

from limner.engine.diffusers_backend import DiffusersBackend
from limner.engine.local import LocalEngine, render
from limner.engine.types import EngineEvent, Partial, Progress, RenderCancelled, Rendered
from limner.errors import ServerError, ServerOverloaded
from tests.engine.backend_contract import mean_difference
from tests.engine.recording import StepRecordingBackend, collect, make_job


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
    backend.assert_cancelled_within_a_step(steps_at_cancel, total=30)


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


# Partial images.


def test_partial_images_come_in_order_between_steps_before_the_final_images(
    tiny_backend: DiffusersBackend,
) -> None:
    async def scenario() -> list[EngineEvent]:
        engine = LocalEngine({"tiny-sd": tiny_backend})
        try:
            return await collect(engine.stream(make_job(steps=8, partial_images=3)))
        finally:
            await engine.close()

    events = asyncio.run(scenario())
    partials = [event for event in events if isinstance(event, Partial)]
    assert [partial.index for partial in partials] == [0, 1, 2]
    # Each partial follows the Progress of the step it shows: evenly spaced, before the last.
    shown_after = [events[events.index(partial) - 1] for partial in partials]
    assert [event.step for event in shown_after if isinstance(event, Progress)] == [2, 4, 6]
    assert [event.step for event in events if isinstance(event, Progress)] == list(range(1, 9))
    final = events[-1]
    assert isinstance(final, Rendered)
    for partial in partials:
        assert [image.size for image in partial.images] == [(32, 32)] * 2
        assert all(image.mode == "RGB" for image in partial.images)
        # Intermediate states, not the finished picture (the random tiny VAE shows little
        # change; test_worker checks the difference on the trained limner-mini).
        for shown, result in zip(partial.images, final.images, strict=True):
            assert mean_difference(shown, result) > 0
    assert mean_difference(partials[0].images[0], partials[2].images[0]) > 0


def test_a_short_run_shows_fewer_partials_than_asked(tiny_backend: DiffusersBackend) -> None:
    async def scenario() -> list[EngineEvent]:
        engine = LocalEngine({"tiny-sd": tiny_backend})
        try:
            return await collect(engine.stream(make_job(steps=2, n=1, partial_images=3)))
        finally:
            await engine.close()

    events = asyncio.run(scenario())
    assert [type(event) for event in events] == [Progress, Partial, Progress, Rendered]


# Admission.


def queue_depth(model: str) -> float:
    return REGISTRY.get_sample_value("limner_queue_depth", {"model": model}) or 0.0


async def wait_for_queue_depth(model: str, depth: float) -> None:
    for _ in range(1000):
        if queue_depth(model) == depth:
            return
        await asyncio.sleep(0.005)
    raise AssertionError(f"queue depth of {model} stayed at {queue_depth(model)}, not {depth}")


def test_full_queue_refuses_at_once_with_retry_headers(tiny_backend: DiffusersBackend) -> None:
    backend = StepRecordingBackend(tiny_backend, step_delay=0.05)

    async def scenario() -> tuple[ServerOverloaded, list[EngineEvent]]:
        engine = LocalEngine({"tiny-sd": backend}, max_queue=1, batch_wait_ms=0)
        running = engine.stream(make_job(steps=30))
        try:
            assert isinstance(await anext(running), Progress)
            # Different settings: it waits rather than joining the running call.
            waiting = asyncio.create_task(collect(engine.stream(make_job(steps=2, n=1))))
            await wait_for_queue_depth("tiny-sd", 1)
            with pytest.raises(ServerOverloaded) as refused:
                await anext(engine.stream(make_job()))
            await running.aclose()
            return refused.value, await waiting
        finally:
            await running.aclose()
            await engine.close()

    error, waited = asyncio.run(scenario())
    assert (error.status, error.type, error.code) == (503, "server_error", None)
    # No call has finished yet to set a pace from: a second.
    assert error.headers == {"retry-after": "1", "retry-after-ms": "1000"}
    # The job that found a place in the queue ran once the place ahead freed.
    assert isinstance(waited[-1], Rendered)
    assert queue_depth("tiny-sd") == 0


def test_retry_after_follows_the_pace_of_recent_calls(tiny_backend: DiffusersBackend) -> None:
    backend = StepRecordingBackend(tiny_backend, step_delay=0.1)

    async def scenario() -> ServerOverloaded:
        engine = LocalEngine({"tiny-sd": backend}, max_queue=1, batch_wait_ms=0)
        try:
            await render(engine, make_job(steps=4, n=1))  # at least 0.4 s
            running = engine.stream(make_job(steps=30))
            await anext(running)
            waiting = asyncio.create_task(collect(engine.stream(make_job(steps=2, n=1))))
            await wait_for_queue_depth("tiny-sd", 1)
            with pytest.raises(ServerOverloaded) as refused:
                await anext(engine.stream(make_job()))
            waiting.cancel()
            await running.aclose()
            return refused.value
        finally:
            await engine.close()

    headers = asyncio.run(scenario()).headers
    assert 400 <= int(headers["retry-after-ms"]) <= 60_000
    assert int(headers["retry-after"]) == -(-int(headers["retry-after-ms"]) // 1000)


def test_close_ends_queued_jobs_and_leaves_no_thread(tiny_backend: DiffusersBackend) -> None:
    backend = StepRecordingBackend(tiny_backend, step_delay=0.02)
    threads_before = set(threading.enumerate())

    async def scenario() -> list[BaseException | list[EngineEvent]]:
        engine = LocalEngine({"tiny-sd": backend}, batch_wait_ms=0)
        running = engine.stream(make_job(steps=30))
        assert isinstance(await anext(running), Progress)
        queued = [
            asyncio.create_task(collect(engine.stream(make_job(steps=2, seed=seed))))
            for seed in (1, 2, 3)
        ]
        await wait_for_queue_depth("tiny-sd", 3)
        await engine.close()
        with pytest.raises(ServerOverloaded, match="shutting down"):
            await anext(engine.stream(make_job()))
        return await asyncio.gather(*queued, return_exceptions=True)

    outcomes = asyncio.run(scenario())
    assert all(isinstance(outcome, RenderCancelled) for outcome in outcomes)
    # The queued jobs never started; the running one stopped early.
    assert len(backend.calls) == 1
    assert len(backend.steps) < 30
    assert queue_depth("tiny-sd") == 0
    assert [t for t in set(threading.enumerate()) - threads_before if t.is_alive()] == []
