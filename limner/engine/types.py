"""Torch-free values that cross the engine seam: jobs in, events out."""

from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Literal

from PIL import Image

Task = Literal["text2img", "img2img", "inpaint"]


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
    mask: Image.Image | None = None
    strength: float = 0.75
    request_id: str = ""


@dataclass(frozen=True)
class StepInfo:
    """Progress of one denoising run, reported after each step."""

    step: int
    total: int
    # Decodes the current latents into images on demand; only streaming asks for it,
    # because a VAE decode per step would double the cost of a run.
    preview: Callable[[], list[Image.Image]] | None = None


@dataclass(frozen=True)
class Progress:
    step: int
    total: int


@dataclass(frozen=True)
class Rendered:
    images: list[Image.Image] = field(default_factory=list)


EngineEvent = Progress | Rendered

StepCallback = Callable[[StepInfo], None]


@dataclass(frozen=True)
class BackendInfo:
    name: str
    device: str
    dtype: str
    tasks: tuple[Task, ...]
