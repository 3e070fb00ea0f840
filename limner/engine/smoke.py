"""Smoke renders: each task a loaded backend offers, run once, small and short.

What `limner models check` runs to show an operator what a catalog really serves: a task that
raises, returns the wrong size, or decodes to pure black (NaN in a half-precision decode) fails
here rather than in a client's request.
"""

import time
from dataclasses import dataclass

from PIL import Image

from limner.engine.protocol import ImageBackend
from limner.engine.types import RenderJob, StepInfo, Task

_PROMPT = "a red apple on a wooden table"
_COLOURS = ((200, 40, 40), (40, 160, 60), (40, 80, 200), (220, 200, 40))


@dataclass(frozen=True)
class TaskCheck:
    task: Task
    ok: bool
    seconds: float
    # Whether each step offered an intermediate image that decoded at the job's size.
    previews: bool
    # What went wrong, in a line; "" when ok.
    problem: str = ""


def smoke_test(backend: ImageBackend, size: int = 64, steps: int = 2) -> list[TaskCheck]:
    """Every task the backend offers, once, at `size`², with `steps` steps."""
    info = backend.info()
    references = info.max_edit_images or 1
    return [
        _check(backend, sample_job(info.name, task, (size, size), steps, references))
        for task in info.tasks
    ]


def sample_job(
    backend: str, task: Task, size: tuple[int, int], steps: int, references: int = 1
) -> RenderJob:
    """A one-image job of `task` with plain coloured inputs (a centre mask for inpaint)."""
    width, height = size

    def picture(index: int) -> Image.Image:
        return Image.new("RGB", size, _COLOURS[index % len(_COLOURS)])

    mask = Image.new("L", size, 0)
    mask.paste(255, (width // 4, height // 4, 3 * width // 4, 3 * height // 4))
    return RenderJob(
        backend=backend,
        prompt=_PROMPT,
        n=1,
        width=width,
        height=height,
        steps=steps,
        seed=0,
        task=task,
        init_image=picture(0) if task in ("img2img", "inpaint") else None,
        mask=mask if task == "inpaint" else None,
        reference_images=tuple(picture(i) for i in range(references)) if task == "edit" else (),
        strength=0.75 if task == "img2img" else 1.0,
    )


def _check(backend: ImageBackend, job: RenderJob) -> TaskCheck:
    previews: list[bool] = []

    def on_step(step: StepInfo) -> None:
        decoded = step.preview() if step.preview is not None else []
        previews.append(len(decoded) == job.n and decoded[0].size == (job.width, job.height))

    started = time.perf_counter()
    try:
        images = backend.render(job, on_step)
    except Exception as error:  # what a client's request would have met: reported, not raised
        lines = str(error).strip().splitlines()
        problem = f"{type(error).__name__}: {lines[0] if lines else ''}".rstrip(": ")
        return TaskCheck(job.task, False, time.perf_counter() - started, False, problem)
    seconds = time.perf_counter() - started
    previewed = bool(previews) and all(previews)
    if len(images) != job.n or images[0].size != (job.width, job.height):
        sizes = ", ".join(f"{image.width}x{image.height}" for image in images)
        problem = f"returned {sizes or 'no images'} for one {job.width}x{job.height} image"
        return TaskCheck(job.task, False, seconds, previewed, problem)
    if images[0].convert("L").getextrema() == (0, 0):
        problem = "a black image (NaN in the decode?): try dtype = 'bfloat16' or 'float32'"
        return TaskCheck(job.task, False, seconds, previewed, problem)
    return TaskCheck(job.task, True, seconds, previewed)
