"""Torch-free values that cross the engine seam: jobs in, events out."""

from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Literal

from PIL import Image

# text2img: from text alone. img2img / inpaint: one init image denoised from `strength` (and a
# mask). edit: an instruction-edit pipeline (Kontext, Qwen-Image-Edit, FLUX.2) given its
# reference images natively, each as it is, from pure noise.
Task = Literal["text2img", "img2img", "inpaint", "edit"]
# How a backend edits: natively from reference images, by image-to-image on one picture (several
# inputs are laid out in a grid first), or not at all.
EditKind = Literal["instruct", "img2img", "none"]

# The Images API allows up to three partial images per streamed generation.
MAX_PARTIAL_IMAGES = 3


@dataclass(frozen=True)
class RenderJob:
    """One fully resolved generation: every value concrete, nothing left to choose.

    `width`/`height` are the working resolution the backend renders at; upscaling to the
    requested size happens outside the engine. `mask` is mode "L", same size as `init_image`,
    white where the backend may repaint and black where it must keep the input.
    """

    backend: str
    prompt: str
    n: int
    width: int
    height: int
    steps: int
    seed: int
    task: Task = "text2img"
    guidance_scale: float | None = None
    negative_prompt: str | None = None
    init_image: Image.Image | None = None
    # The `edit` task's inputs, in the request's order (at most the backend's max_edit_images).
    reference_images: tuple[Image.Image, ...] = ()
    mask: Image.Image | None = None
    strength: float = 0.75
    request_id: str = ""
    # Intermediate states to stream before the final images (0 to MAX_PARTIAL_IMAGES).
    partial_images: int = 0


def batch_key(job: RenderJob) -> tuple[object, ...] | None:
    """What jobs must share to run as one pipeline call; None when the job always runs alone.

    Rows of one call differ only in prompt and generator, so everything else that reaches the
    pipeline is in the key (`strength` does not reach a text-to-image call, so it is not).
    Edits run alone: their init images and masks are per job, and the pipelines' handling of
    per-row images differs too much between classes to rely on.
    """
    if job.task != "text2img":
        return None
    return (
        job.backend,
        job.task,
        job.width,
        job.height,
        job.steps,
        job.guidance_scale,
        job.negative_prompt,
    )


class RenderCancelled(Exception):
    """Raised inside a backend's step callback to stop a run nobody is waiting for."""


@dataclass(frozen=True)
class StepInfo:
    """Progress of one denoising run, reported after each step."""

    step: int
    total: int
    # Decodes the current latents into images on demand, one per row of the pipeline call
    # (every job of a batch, in order); only partial images ask for it, because a VAE decode
    # per step would double the cost of a run.
    preview: Callable[[], list[Image.Image]] | None = None


@dataclass(frozen=True)
class Progress:
    step: int
    total: int


@dataclass(frozen=True)
class Partial:
    """An intermediate denoising state of all the job's images, at the job's size, RGB.

    `index` counts a job's partials from 0; they come before its Rendered event.
    """

    index: int
    images: list[Image.Image] = field(default_factory=list)


@dataclass(frozen=True)
class Rendered:
    images: list[Image.Image] = field(default_factory=list)


EngineEvent = Progress | Partial | Rendered

StepCallback = Callable[[StepInfo], None]


@dataclass(frozen=True)
class BackendInfo:
    name: str
    device: str
    dtype: str
    tasks: tuple[Task, ...]
    edit_kind: EditKind = "img2img"
    # Input images one edit may carry; None: any number (img2img lays them out in a grid).
    max_edit_images: int | None = None
    # The model's pipeline class ("FluxKontextPipeline"), for operators.
    family: str = ""
