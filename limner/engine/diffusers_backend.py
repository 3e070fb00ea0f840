"""DiffusersBackend: any diffusers pipeline directory on local disk as an ImageBackend.

Text-to-image uses the loaded pipeline itself; edits use its image-to-image and inpainting twins,
derived with `AutoPipelineFor*.from_pipe` so they share the loaded weights. Limner's own pipeline
classes (limner-mini) load through the same path and run their edits themselves.
"""

import inspect
import json
import logging
import math
import threading
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import diffusers
import torch
from diffusers import AutoPipelineForImage2Image, AutoPipelineForInpainting, DiffusionPipeline
from PIL import Image

from limner.engine.devices import (
    choose_device,
    choose_dtype,
    cpu_threads,
    dtype_name,
)
from limner.engine.mini import LimnerMiniPipeline
from limner.engine.types import (
    BackendInfo,
    EditKind,
    RenderJob,
    StepCallback,
    StepInfo,
    Task,
    batch_key,
)
from limner.errors import InvalidRequest

logger = logging.getLogger(__name__)

# Where AutoPipeline finds an edit twin for a text-to-image pipeline class.
_AUTO_PIPELINES: dict[Task, Any] = {
    "img2img": AutoPipelineForImage2Image,
    "inpaint": AutoPipelineForInpainting,
}


@dataclass(frozen=True)
class InstructionEdits:
    """How an instruction-edit pipeline class takes its inputs."""

    # Reference images one call takes natively (the model card's advice where it gives one).
    max_images: int
    # Whether the class also renders from text alone (image=None).
    generates: bool
    # Its inpainting twin in diffusers, derived with from_pipe; None: it has none.
    inpaint_class: str | None = None


# Instruction-edit classes by name; the loaded pipeline is itself the edit pipeline, and
# AutoPipeline's image-to-image twin of it would be itself again (which takes no `strength`).
_INSTRUCTION_EDITS: dict[str, InstructionEdits] = {
    "FluxKontextPipeline": InstructionEdits(1, True, "FluxKontextInpaintPipeline"),
    "QwenImageEditPipeline": InstructionEdits(1, False, "QwenImageEditInpaintPipeline"),
    "QwenImageEditPlusPipeline": InstructionEdits(3, False),
    "Flux2KleinPipeline": InstructionEdits(4, True, "Flux2KleinInpaintPipeline"),
    "Flux2Pipeline": InstructionEdits(10, True),
}
# Stable Diffusion style pipelines reject sizes that are not a multiple of 8.
_SIZE_MULTIPLE = 8
# Pipeline classes diffusers does not know, by the `_class_name` their model_index.json names.
# A class here may list in `edit_tasks` the tasks it runs itself from `image`/`mask_image`.
_LIMNER_PIPELINES: dict[str, Any] = {"LimnerMiniPipeline": LimnerMiniPipeline}


class DiffusersBackend:
    """One diffusers pipeline, loaded once, rendering one call (one job or a batch) at a time."""

    def __init__(
        self,
        name: str,
        path: str | Path,
        device: str = "auto",
        dtype: str = "auto",
        cpu_threads: int | None = None,
    ) -> None:
        self.name = name
        self.device = choose_device(device)
        self.dtype = choose_dtype(self.device, dtype)

        # `local_files_only`: a served model is a directory we ship or the operator placed;
        # a server must never reach for the Hub at start.
        pipe = _pipeline_class(Path(path)).from_pretrained(
            path, dtype=self.dtype, local_files_only=True
        )
        pipe.set_progress_bar_config(disable=True)
        pipe.to(self.device)
        # On a CPU, the one thread count every call runs on. Fixed per backend: pixels depend
        # on how a reduction is split among threads (one or two levels between 1 and 2
        # threads), so a count chosen per call would make a seed give other bytes.
        self._threads: int | None = None
        if self.device.type == "cpu":
            _prefer_channels_last(pipe)
            self._threads = cpu_threads or torch.get_num_threads()
        # Kept pristine: every run steps a fresh copy, so no run sees another run's state
        # (step index, begin index, multistep history).
        self._scheduler = pipe.scheduler

        # Edit twins are derived on first need; None records that the class has no twin.
        self._instruction_edits = _INSTRUCTION_EDITS.get(type(pipe).__name__)
        generates = self._instruction_edits is None or self._instruction_edits.generates
        self._pipelines: dict[Task, Any | None] = {"text2img": pipe if generates else None}
        self._base = pipe
        self._derive_lock = threading.Lock()
        # A pipeline keeps per-call state on itself (guidance scale, timestep count, the
        # scheduler we swap in), so two calls on one backend must not overlap.
        self._render_lock = threading.Lock()
        logger.info(
            "loaded %s from %s (%s) on %s as %s",
            name,
            path,
            type(pipe).__name__,
            self.device,
            dtype_name(self.dtype),
        )

    def info(self) -> BackendInfo:
        instruct = self._instruction_edits
        candidates: tuple[Task, ...] = ("text2img", "img2img", "inpaint", "edit")
        tasks = tuple(task for task in candidates if self._derived(task) is not None)
        if instruct is not None:
            kind: EditKind = "instruct"
        else:
            kind = "img2img" if "img2img" in tasks else "none"
        return BackendInfo(
            name=self.name,
            device=str(self.device),
            dtype=dtype_name(self.dtype),
            tasks=tasks,
            edit_kind=kind,
            max_edit_images=instruct.max_images if instruct else None,
        )

    def render(self, job: RenderJob, on_step: StepCallback) -> list[Image.Image]:
        return self.render_batch([job], on_step)[0]

    def render_batch(
        self, jobs: Sequence[RenderJob], on_step: StepCallback
    ) -> list[list[Image.Image]]:
        # 1. Pick the pipeline for the task and check the jobs carry what it needs and can
        #    share one call (the engine only batches jobs that can; a breach is a bug).
        first = jobs[0]
        pipe = self._derived(first.task)
        if pipe is None:
            raise InvalidRequest(
                f"The model behind backend '{self.name}' does not support '{first.task}'."
            )
        for job in jobs:
            _check_job(job)
        _check_batch(jobs)
        width, height = _render_size(first.width), _render_size(first.height)

        # 2. One row per output image, each with its job's prompt and its own generator seeded
        #    seed + i: image i of a job is the same whichever n, and whichever batch-mates, it
        #    was rendered with, so a client can re-create one image alone. The standard
        #    diffusers arguments (a prompt list, num_images_per_prompt=1, a generator list)
        #    express this for every pipeline class.
        prompts = [job.prompt for job in jobs for _ in range(job.n)]
        generators = [
            torch.Generator(self.device).manual_seed(job.seed + index)
            for job in jobs
            for index in range(job.n)
        ]

        # 3. Report progress after each denoising step; an exception from `on_step` (the
        #    engine's cancellation) propagates out of the pipeline call and ends the run.
        def on_step_end(
            running: Any, step_index: int, _timestep: Any, callback_kwargs: dict[str, Any]
        ) -> dict[str, Any]:
            latents = callback_kwargs["latents"]
            preview = _previewer(running, latents, (width, height), (first.width, first.height))
            # Edit pipelines run fewer steps than asked; `num_timesteps` is what they run.
            total = getattr(running, "num_timesteps", kwargs["num_inference_steps"])
            on_step(StepInfo(step=step_index + 1, total=total, preview=preview))
            return callback_kwargs

        # 4. Arguments common to every task; the optional ones only when the jobs set them,
        #    so the pipeline's own defaults apply otherwise.
        kwargs: dict[str, Any] = {
            "prompt": prompts,
            "num_inference_steps": first.steps,
            "num_images_per_prompt": 1,
            "generator": generators,
            "output_type": "pil",
            "callback_on_step_end": on_step_end,
            "callback_on_step_end_tensor_inputs": ["latents"],
        }
        if first.guidance_scale is not None:
            kwargs["guidance_scale"] = first.guidance_scale
        if first.negative_prompt is not None:
            # A list, one per row: diffusers refuses a string beside a list of prompts.
            kwargs["negative_prompt"] = [first.negative_prompt] * len(prompts)

        # 5. Task-specific inputs. Edit pipelines run only the last `strength` share of the
        #    schedule, so the step count is raised until that share is at least one step.
        if first.task == "text2img":
            kwargs.update(_size_inputs(pipe, width, height))
        elif first.task == "edit":
            kwargs.update(_reference_inputs(pipe, first.reference_images, width, height))
        else:
            assert first.init_image is not None  # checked by _check_job
            kwargs["num_inference_steps"] = _steps_for_strength(first.steps, first.strength)
            kwargs["strength"] = first.strength
            kwargs["image"] = first.init_image.convert("RGB").resize((width, height))
            kwargs.update(_size_inputs(pipe, width, height))
        if first.task == "inpaint":
            assert first.mask is not None  # checked by _check_job
            kwargs["mask_image"] = first.mask.convert("L").resize((width, height))
            kwargs["width"], kwargs["height"] = width, height

        # 6. Run on a fresh scheduler copy, one run at a time.
        with self._render_lock, torch.inference_mode():
            pipe.scheduler = self._scheduler.from_config(self._scheduler.config)
            images = self._call(pipe, kwargs)

        # 7. Exactly the jobs' size, RGB, whatever the pipeline rounded to; split per job.
        fitted = [_fit(image, (first.width, first.height)) for image in images]
        return _split(fitted, [job.n for job in jobs])

    def _call(self, pipe: Any, kwargs: dict[str, Any]) -> list[Image.Image]:
        """The pipeline call; on a CPU, on the backend's thread count, set on the calling thread
        (the worker's), whose OpenMP default need not be the process's."""
        if self._threads is None:
            return pipe(**kwargs).images  # type: ignore[no-any-return]
        with cpu_threads(self._threads):
            rendered: list[Image.Image] = pipe(**kwargs).images
        return rendered

    def _derived(self, task: Task) -> Any | None:
        """The pipeline for `task`, deriving an edit twin on first use; None if there is none."""
        with self._derive_lock:
            if task not in self._pipelines:
                self._pipelines[task] = self._derive(task)
            return self._pipelines[task]

    def _derive(self, task: Task) -> Any | None:
        base = self._base
        if self._instruction_edits is not None:
            return self._derive_instruction_edit(task)
        if task == "edit":
            return None
        if task in getattr(base, "edit_tasks", ()):
            return base
        if type(base).__name__ in _LIMNER_PIPELINES:
            # AutoPipeline knows nothing of our classes; what they do not run, nothing does.
            return None
        try:
            # from_pipe reuses the loaded modules (no copy, no reload, same device and dtype).
            twin = _AUTO_PIPELINES[task].from_pipe(base)
        except ValueError as error:
            # AutoPipeline raises ValueError when no twin is mapped for the class, or when the
            # twin needs a component the loaded pipeline lacks.
            logger.info("%s: %s has no %s twin: %s", self.name, type(base).__name__, task, error)
            return None
        twin.set_progress_bar_config(disable=True)
        return twin

    def _derive_instruction_edit(self, task: Task) -> Any | None:
        assert self._instruction_edits is not None
        if task == "edit":
            return self._base
        twin_class = self._instruction_edits.inpaint_class
        if task != "inpaint" or twin_class is None:
            return None
        twin = getattr(diffusers, twin_class).from_pipe(self._base)
        twin.set_progress_bar_config(disable=True)
        return twin


def _prefer_channels_last(pipe: Any) -> None:
    """Convolution weights in NHWC order: oneDNN's CPU convolutions run faster on it (limner-mini:
    about a fifth less time per call at a batch of 8); results agree to within rounding.

    Only 2-D models: a video-style VAE (Qwen-Image's) has rank-5 weights, which have no
    channels-last layout (torch refuses), so it keeps its own."""
    for name in ("unet", "vae"):
        module = getattr(pipe, name, None)
        if isinstance(module, torch.nn.Module) and all(
            parameter.ndim <= 4 for parameter in module.parameters()
        ):
            # The ignore: torch types `Module.to` without its memory_format keyword.
            module.to(memory_format=torch.channels_last)  # type: ignore[call-overload]


def _pipeline_class(path: Path) -> Any:
    """The class that loads `path`: ours when model_index.json names one, else diffusers'."""
    index = path / "model_index.json"
    name = json.loads(index.read_text()).get("_class_name") if index.is_file() else None
    return _LIMNER_PIPELINES.get(name or "", DiffusionPipeline)


def _check_job(job: RenderJob) -> None:
    """Invariants the resolved job already guarantees; a breach is a bug upstream."""
    if job.n < 1:
        raise ValueError(f"n must be at least 1, got {job.n}.")
    if job.task == "edit":
        if not job.reference_images:
            raise ValueError("An 'edit' job needs reference images.")
    elif job.task != "text2img":
        if job.init_image is None:
            raise ValueError(f"A '{job.task}' job needs an init_image.")
        if not 0.0 < job.strength <= 1.0:
            raise ValueError(f"strength must be in (0, 1], got {job.strength}.")
    if job.task == "inpaint" and job.mask is None:
        raise ValueError("An 'inpaint' job needs a mask.")


def _check_batch(jobs: Sequence[RenderJob]) -> None:
    """One pipeline call takes jobs that differ only in what varies per row."""
    if not jobs:
        raise ValueError("A batch needs at least one job.")
    if len(jobs) == 1:
        return
    keys = {batch_key(job) for job in jobs}
    if None in keys or len(keys) > 1:
        raise ValueError("These jobs cannot share one pipeline call (see batch_key).")


def _split(images: list[Image.Image], counts: list[int]) -> list[list[Image.Image]]:
    """Consecutive runs of `counts` images: the rows of each job, in job order."""
    if len(images) != sum(counts):
        raise RuntimeError(f"The pipeline returned {len(images)} images for {sum(counts)} rows.")
    groups: list[list[Image.Image]] = []
    start = 0
    for count in counts:
        groups.append(images[start : start + count])
        start += count
    return groups


def _render_size(pixels: int) -> int:
    """The nearest size the pipeline accepts; the result is resized to the job's exact size."""
    return max(_SIZE_MULTIPLE, round(pixels / _SIZE_MULTIPLE) * _SIZE_MULTIPLE)


def _steps_for_strength(steps: int, strength: float) -> int:
    """Steps such that `int(steps * strength)` (what edit pipelines denoise) is at least one."""
    steps = max(steps, math.ceil(1 / strength))
    # 1 / strength can round down in floating point (strength 1/161: 161 * strength < 1).
    if int(steps * strength) < 1:
        steps += 1
    return steps


def _fit(image: Image.Image, size: tuple[int, int]) -> Image.Image:
    image = image.convert("RGB")
    if image.size != size:
        image = image.resize(size, Image.Resampling.LANCZOS)
    return image


def _reference_inputs(
    pipe: Any, references: Sequence[Image.Image], width: int, height: int
) -> dict[str, Any]:
    """An instruction edit's inputs: its reference images natively (a list where the class
    takes several), rendered at the working size."""
    images = [image.convert("RGB") for image in references]
    return {"image": images if len(images) > 1 else images[0], **_size_inputs(pipe, width, height)}


def _size_inputs(pipe: Any, width: int, height: int) -> dict[str, Any]:
    """The working size, told in every way the class takes one. Classes that take a size
    default it to ~1 MP (FLUX and SD3 image-to-image, Kontext), 16x the work of a 256² working
    size; Kontext also snaps its input to a trained resolution (672² and up) unless told not
    to. Classes that take none (SD image-to-image) render at the input image's size."""
    inputs: dict[str, Any] = {}
    if _takes(pipe, "width") and _takes(pipe, "height"):
        inputs["width"], inputs["height"] = width, height
    if _takes(pipe, "max_area"):
        inputs["max_area"] = width * height
    if _takes(pipe, "_auto_resize"):
        inputs["_auto_resize"] = False
    return inputs


def _takes(pipe: Any, parameter: str) -> bool:
    """Whether the pipeline's call accepts `parameter` by name (read once per class)."""
    pipeline_class = type(pipe)
    if pipeline_class not in _CALL_PARAMETERS:
        signature = inspect.signature(pipeline_class.__call__)
        _CALL_PARAMETERS[pipeline_class] = frozenset(signature.parameters)
    return parameter in _CALL_PARAMETERS[pipeline_class]


_CALL_PARAMETERS: dict[type, frozenset[str]] = {}


def _previewer(
    pipe: Any, latents: torch.Tensor, rendered: tuple[int, int], size: tuple[int, int]
) -> Callable[[], list[Image.Image]] | None:
    """A function decoding `latents` with the pipeline's VAE, or None where that cannot work.

    Image latents (batch, channels, height, width) with the VAE's channel count decode. Packed
    sequence latents (batch, tokens, channels: FLUX.1, Kontext) are first unpacked with the
    pipeline's own `_unpack_latents` at the `rendered` (width, height) the call was given.
    Latents that are still not such images (video-style) get no preview rather than a wrong
    one. A pixel-space pipeline (limner-mini) decodes its own latents with `decode_to_pil`.
    """
    decode_to_pil = getattr(pipe, "decode_to_pil", None)
    if decode_to_pil is not None:

        def preview_pixels() -> list[Image.Image]:
            return [_fit(image, size) for image in decode_to_pil(latents)]

        return preview_pixels
    vae = getattr(pipe, "vae", None)
    image_processor = getattr(pipe, "image_processor", None)
    if vae is None or image_processor is None:
        return None
    unpack = getattr(pipe, "_unpack_latents", None)
    if latents.ndim == 3 and unpack is not None:
        width, height = rendered
        patch = 2 * pipe.vae_scale_factor
        if latents.shape[1] != (height // patch) * (width // patch):
            return None  # not the output's tokens alone: nothing to unpack them into
        latents = unpack(latents, height, width, pipe.vae_scale_factor)
    if latents.ndim != 4 or latents.shape[1] != vae.config.get("latent_channels"):
        return None

    def preview() -> list[Image.Image]:
        # Its own inference_mode: a preview may be asked for outside the pipeline call.
        with torch.inference_mode():
            scaled = latents / vae.config.get("scaling_factor", 1.0)
            shift = vae.config.get("shift_factor")
            if shift is not None:
                scaled = scaled + shift
            decoded = vae.decode(scaled.to(vae.dtype), return_dict=False)[0]
            images: list[Image.Image] = image_processor.postprocess(decoded, output_type="pil")
        return [_fit(image, size) for image in images]

    return preview
