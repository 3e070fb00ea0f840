"""The device worker through LocalEngine: batching across requests, cancellation inside a batch,
partial-image steps, metrics."""

import asyncio
from collections.abc import Sequence

import numpy as np
import pytest
from PIL import Image
from prometheus_client import REGISTRY

from limner.engine.diffusers_backend import DiffusersBackend
from limner.engine.local import LocalEngine, render
from limner.engine.protocol import ImageBackend
from limner.engine.types import EngineEvent, Partial, Progress, Rendered, RenderJob
from limner.engine.worker import partial_steps
from tests.engine.backend_contract import gradient_image, mean_difference
from tests.engine.recording import StepRecordingBackend, collect, make_job

# A window wide enough that jobs started together meet on a busy, shared CPU.
WIDE_WINDOW_MS = 300.0
# Batched and solo renders of one seed may differ by float summation order, by this much.
MAX_PIXEL_DRIFT = 2


def mini_jobs() -> list[RenderJob]:
    """limner-mini at its quality=low catalog entry: 4 steps at 32x32, mixed n and prompts."""
    prompts = [
        ("a red square on the left on a blue background", 2, 3),
        ("a yellow circle", 1, 50),
        ("a green triangle at the top on a white background", 3, 7),
    ]
    return [
        RenderJob(
            backend="limner-mini", prompt=prompt, n=n, width=32, height=32, steps=4, seed=seed
        )
        for prompt, n, seed in prompts
    ]


async def render_together(
    engine: LocalEngine, jobs: Sequence[RenderJob]
) -> list[list[Image.Image]]:
    try:
        return await asyncio.gather(*(render(engine, job) for job in jobs))
    finally:
        await engine.close()


def run_together(
    backend: ImageBackend, jobs: Sequence[RenderJob], **engine_options: float
) -> tuple[list[list[Image.Image]], list[int]]:
    """Render the jobs concurrently; the images per job and the job count of each call."""
    recorder = StepRecordingBackend(backend)
    engine = LocalEngine({jobs[0].backend: recorder}, **engine_options)  # type: ignore[arg-type]
    images = asyncio.run(render_together(engine, jobs))
    return images, [len(call) for call in recorder.calls]


def max_pixel_drift(a: Image.Image, b: Image.Image) -> int:
    return int(np.abs(np.asarray(a, dtype=np.int16) - np.asarray(b, dtype=np.int16)).max())


def sample(name: str, model: str) -> float:
    return REGISTRY.get_sample_value(name, {"model": model}) or 0.0


@pytest.mark.parametrize(
    ("count", "total", "steps"),
    [(3, 8, {2, 4, 6}), (1, 4, {2}), (3, 4, {1, 2, 3}), (3, 2, {1}), (2, 1, set()), (0, 9, set())],
)
def test_partial_steps_are_evenly_spaced_before_the_last(
    count: int, total: int, steps: set[int]
) -> None:
    assert partial_steps(count, total) == steps


# Batching.


def test_batched_limner_mini_equals_solo_renders(shipped_mini: DiffusersBackend) -> None:
    jobs = mini_jobs()
    batched, calls = run_together(shipped_mini, jobs, batch_wait_ms=WIDE_WINDOW_MS)
    solo, solo_calls = run_together(shipped_mini, jobs, max_batch_images=1)
    assert calls == [3], "jobs started together did not share one pipeline call"
    assert solo_calls == [1, 1, 1]
    for job, together, alone in zip(jobs, batched, solo, strict=True):
        assert len(together) == job.n
        for a, b in zip(together, alone, strict=True):
            assert max_pixel_drift(a, b) <= MAX_PIXEL_DRIFT


def test_batched_stable_diffusion_equals_solo_renders(tiny_backend: DiffusersBackend) -> None:
    jobs = [
        make_job(prompt="a lighthouse at dusk", n=2, seed=1),
        make_job(prompt="the cat and the hat", n=1, seed=90),
    ]
    batched, calls = run_together(tiny_backend, jobs, batch_wait_ms=WIDE_WINDOW_MS)
    solo, _ = run_together(tiny_backend, jobs, max_batch_images=1)
    assert calls == [2]
    for together, alone in zip(batched, solo, strict=True):
        for a, b in zip(together, alone, strict=True):
            assert max_pixel_drift(a, b) <= MAX_PIXEL_DRIFT


def test_jobs_that_differ_in_settings_run_in_separate_calls(tiny_backend: DiffusersBackend) -> None:
    edit = make_job(n=1, task="img2img", init_image=gradient_image(32, 32))
    jobs = [
        make_job(n=1),
        make_job(n=1, steps=4),
        make_job(n=1, width=40),
        make_job(n=1, guidance_scale=1.0),
        make_job(n=1, negative_prompt="fog"),
        edit,
        edit,  # edits always run alone
    ]
    _, calls = run_together(tiny_backend, jobs, batch_wait_ms=WIDE_WINDOW_MS)
    assert calls == [1] * len(jobs)


def test_max_batch_images_caps_a_call(tiny_backend: DiffusersBackend) -> None:
    jobs = [make_job(n=3, seed=seed) for seed in (1, 2, 3)]
    _, capped = run_together(tiny_backend, jobs, batch_wait_ms=WIDE_WINDOW_MS)
    _, unbatched = run_together(
        tiny_backend, jobs, batch_wait_ms=WIDE_WINDOW_MS, max_batch_images=1
    )
    assert capped == [2, 1]  # 3 + 3 images fit in 8, a third job would make 9
    assert unbatched == [1, 1, 1]


def test_each_job_of_a_batch_gets_its_own_partials(shipped_mini: DiffusersBackend) -> None:
    first, second = mini_jobs()[:2]
    first = RenderJob(**{**first.__dict__, "partial_images": 3})

    async def scenario() -> list[list[EngineEvent]]:
        engine = LocalEngine({"limner-mini": shipped_mini}, batch_wait_ms=WIDE_WINDOW_MS)
        try:
            return await asyncio.gather(
                collect(engine.stream(first)), collect(engine.stream(second))
            )
        finally:
            await engine.close()

    with_partials, without = asyncio.run(scenario())
    partials = [event for event in with_partials if isinstance(event, Partial)]
    assert [partial.index for partial in partials] == [0, 1, 2]
    assert not any(isinstance(event, Partial) for event in without)
    final = with_partials[-1]
    assert isinstance(final, Rendered)
    for partial in partials:
        assert [image.size for image in partial.images] == [(32, 32)] * first.n
    # Real intermediate states of a trained model: each closer to the result than the one
    # before, none the result itself. (The last is near it: this schedule's final step, from
    # sigma 0.009 to 0, changes little.)
    for index in range(first.n):
        distances = [mean_difference(p.images[index], final.images[index]) for p in partials]
        assert distances[0] > 20
        assert distances == sorted(distances, reverse=True)
        assert min(distances) > 0


# The batching window.


def test_a_lone_client_does_not_wait_out_the_window(tiny_backend: DiffusersBackend) -> None:
    async def scenario() -> list[int]:
        recorder = StepRecordingBackend(tiny_backend)
        # A window no test could sit through; the first job fills its call, so it starts at once.
        engine = LocalEngine({"tiny-sd": recorder}, batch_wait_ms=600_000, max_batch_images=2)
        try:
            await asyncio.wait_for(render(engine, make_job(n=2, seed=1)), 60)
            # One job per call so far, and the device is idle: nobody to wait for.
            await asyncio.wait_for(render(engine, make_job(n=1, seed=2)), 60)
            return [len(call) for call in recorder.calls]
        finally:
            await engine.close()

    assert asyncio.run(scenario()) == [1, 1]


def test_a_job_queued_behind_a_call_waits_for_that_calls_client(
    tiny_backend: DiffusersBackend,
) -> None:
    """Two clients out of step: B arrives while A's call runs and is still queued when A's client
    sends its next job, right after its result. They share the next call."""
    recorder = StepRecordingBackend(tiny_backend, step_delay=0.1)
    window_ms = 500  # half of A's 1 s call: B's own window has closed by the time A ends

    async def scenario() -> list[list[int]]:
        engine = LocalEngine({"tiny-sd": recorder}, batch_wait_ms=window_ms, max_batch_images=2)
        try:
            first_a = asyncio.create_task(render(engine, make_job(n=2, steps=10, seed=1)))
            while not recorder.steps:
                await asyncio.sleep(0.005)
            b = asyncio.create_task(render(engine, make_job(n=1, steps=10, seed=2)))
            await first_a
            await asyncio.gather(b, render(engine, make_job(n=1, steps=10, seed=3)))
            return [[job.seed for job in call] for call in recorder.calls]
        finally:
            await engine.close()

    assert asyncio.run(scenario()) == [[1], [2, 3]]


# Cancellation inside a batch.


def test_a_cancelled_job_leaves_its_batch_and_its_mates_finish(
    tiny_backend: DiffusersBackend,
) -> None:
    backend = StepRecordingBackend(tiny_backend, step_delay=0.03)
    leaving = make_job(seed=1, steps=10)
    staying = make_job(seed=2, steps=10, prompt="the cat and the hat", n=1)

    async def scenario() -> list[EngineEvent]:
        engine = LocalEngine({"tiny-sd": backend}, batch_wait_ms=WIDE_WINDOW_MS)
        try:
            left = engine.stream(leaving)
            mate = asyncio.create_task(collect(engine.stream(staying)))
            assert isinstance(await anext(left), Progress)
            await left.aclose()
            # Its stream is over at once, with nothing more to read.
            with pytest.raises(StopAsyncIteration):
                await anext(left)
            return await mate
        finally:
            await engine.close()

    events = asyncio.run(scenario())
    assert [len(call) for call in backend.calls] == [2]
    assert backend.steps == list(range(1, 11)), "the call stopped though a job still needed it"
    final = events[-1]
    assert isinstance(final, Rendered)
    [alone] = tiny_backend.render(staying, lambda step: None)
    assert max_pixel_drift(final.images[0], alone) <= MAX_PIXEL_DRIFT


def test_a_batch_whose_jobs_all_leave_stops_within_a_step(tiny_backend: DiffusersBackend) -> None:
    backend = StepRecordingBackend(tiny_backend, step_delay=0.03)

    async def scenario() -> int:
        engine = LocalEngine({"tiny-sd": backend}, batch_wait_ms=WIDE_WINDOW_MS)
        try:
            first = engine.stream(make_job(seed=1, steps=30))
            second = engine.stream(make_job(seed=2, steps=30))
            await asyncio.gather(anext(first), anext(second))
            await first.aclose()
            await second.aclose()
            steps_at_cancel = len(backend.steps)
            await backend.wait_finished()
            return steps_at_cancel
        finally:
            await engine.close()

    steps_at_cancel = asyncio.run(scenario())
    assert [len(call) for call in backend.calls] == [2]
    backend.assert_cancelled_within_a_step(steps_at_cancel, total=30)


def test_a_job_cancelled_while_queued_never_starts(tiny_backend: DiffusersBackend) -> None:
    backend = StepRecordingBackend(tiny_backend, step_delay=0.02)

    async def scenario() -> None:
        engine = LocalEngine({"tiny-sd": backend}, batch_wait_ms=0)
        try:
            running = asyncio.create_task(render(engine, make_job(steps=8)))
            while not backend.steps:
                await asyncio.sleep(0.005)
            queued = asyncio.create_task(render(engine, make_job(steps=2, seed=5)))
            await asyncio.sleep(0.05)
            queued.cancel()
            with pytest.raises(asyncio.CancelledError):
                await queued
            await running
        finally:
            await engine.close()

    asyncio.run(scenario())
    assert [call[0].steps for call in backend.calls] == [8]


# Metrics.


def test_metrics_move_with_each_call(tiny_backend: DiffusersBackend) -> None:
    # A model label of its own, so other tests' calls do not move these series.
    model = "metrics-sd"
    names = (
        "limner_batch_size_count",
        "limner_batch_size_sum",
        "limner_queue_wait_seconds_count",
        "limner_generation_seconds_count",
    )
    before = {name: sample(name, model) for name in names}
    jobs = [make_job(backend=model, n=2, seed=1), make_job(backend=model, n=1, seed=2)]
    _, calls = run_together(tiny_backend, jobs, batch_wait_ms=WIDE_WINDOW_MS)
    moved = {name: sample(name, model) - before[name] for name in names}
    assert calls == [2]
    assert moved == {
        "limner_batch_size_count": 1,  # one pipeline call
        "limner_batch_size_sum": 3,  # of three images
        "limner_queue_wait_seconds_count": 2,  # two jobs waited
        "limner_generation_seconds_count": 1,
    }
    assert sample("limner_generation_seconds_sum", model) > 0
    assert sample("limner_queue_depth", model) == 0
