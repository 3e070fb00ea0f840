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
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal

import diffusers
import torch
from diffusers import AutoPipelineForImage2Image, AutoPipelineForInpainting, DiffusionPipeline
from PIL import Image

from limner.engine.devices import (
    DeviceUnavailable,
    choose_device,
    choose_dtype,
    cpu_threads,
    dtype_name,
)
from limner.engine.mini import LimnerMiniPipeline
from limner.engine.processors import COMPONENT_LOADERS
from limner.engine.smoke import sample_job
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
    # What its processor accepts of a reference: smaller ones are enlarged to this side.
    min_reference_side: int = 1
    max_reference_aspect: float | None = None


# Instruction-edit classes by name; the loaded pipeline is itself the edit pipeline, and
# AutoPipeline's image-to-image twin of it would be itself again (which takes no `strength`).
_INSTRUCTION_EDITS: dict[str, InstructionEdits] = {
    "FluxKontextPipeline": InstructionEdits(1, True, "FluxKontextInpaintPipeline"),
    "QwenImageEditPipeline": InstructionEdits(1, False, "QwenImageEditInpaintPipeline"),
    "QwenImageEditPlusPipeline": InstructionEdits(3, False),
    # FLUX.2's processor refuses a side under 64 px or an aspect beyond 8:1.
    "Flux2KleinPipeline": InstructionEdits(
        4, True, "Flux2KleinInpaintPipeline", min_reference_side=64, max_reference_aspect=8
    ),
    "Flux2Pipeline": InstructionEdits(10, True, min_reference_side=64, max_reference_aspect=8),
}
# The smallest size step any pipeline takes (Stable Diffusion's VAE: 8 pixels per latent).
_SIZE_MULTIPLE = 8
# Pipeline classes diffusers does not know, by the `_class_name` their model_index.json names.
# A class here may list in `edit_tasks` the tasks it runs itself from `image`/`mask_image`.
_LIMNER_PIPELINES: dict[str, Any] = {"LimnerMiniPipeline": LimnerMiniPipeline}


Offload = Literal["none", "model", "sequential"]


@dataclass(frozen=True)
class Tuning:
    """Memory and speed settings for large models on a GPU; all off by default."""

    # Weights wait in CPU memory, moved to the GPU per model or per layer (accelerate's hooks).
    offload: Offload = "none"
    # A diffusers attention backend for the denoiser ("flash", "sage", "native", ...).
    attention_backend: str | None = None
    # torch.compile the denoiser; `warm_up` then pays the compilation before serving.
    compile: bool = False
    compile_backend: str = "inductor"


# The pipeline attributes that hold the denoiser, the model every step runs.
_DENOISERS = ("transformer", "unet")


class DiffusersBackend:
    """One diffusers pipeline, loaded once, rendering one call (one job or a batch) at a time."""

    def __init__(
        self,
        name: str,
        path: str | Path,
        device: str = "auto",
        dtype: str = "auto",
        cpu_threads: int | None = None,
        *,
        max_edit_images: int | None = None,
        tuning: Tuning = Tuning(),
    ) -> None:
        self.name = name
        self.device = choose_device(device)
        self.dtype = choose_dtype(self.device, dtype)
        self.tuning = tuning

        # `local_files_only`: a served model is a directory we ship or the operator placed;
        # a server must never reach for the Hub at start.
        pipe = _pipeline_class(Path(path)).from_pretrained(
            path, dtype=self.dtype, local_files_only=True, **_own_components(Path(path))
        )
        pipe.set_progress_bar_config(disable=True)
        _place(pipe, self.device, tuning.offload)
        if tuning.attention_backend is not None:
            _set_attention_backend(pipe, tuning.attention_backend)
        if tuning.compile:
            _compile_denoiser(pipe, tuning.compile_backend)
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
        self._size_multiple = _size_multiple(pipe)

        # Edit twins are derived on first need; None records that the class has no twin.
        self._instruction_edits = _INSTRUCTION_EDITS.get(type(pipe).__name__)
        self._max_edit_images = max_edit_images or (
            self._instruction_edits.max_images if self._instruction_edits else None
        )
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
            max_edit_images=self._max_edit_images if kind != "none" else None,
            family=type(self._base).__name__,
        )

    def warm_up(self, sizes: Sequence[tuple[int, int]]) -> None:
        """One 1-step render per (width, height) of the first task the backend offers, so a
        compiled denoiser compiles now rather than in the first requests."""
        task = self.info().tasks[0]
        for size in sizes:
            self.render(sample_job(self.name, task, size, steps=1), lambda _step: None)

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
        multiple = self._size_multiple
        width, height = _render_size(first.width, multiple), _render_size(first.height, multiple)

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
        if first.negative_prompt is not None and _takes(pipe, "negative_prompt"):
            # A list, one per row: diffusers refuses a string beside a list of prompts. (A
            # class without one, FLUX.2 klein's, steers by guidance alone.)
            kwargs["negative_prompt"] = [first.negative_prompt] * len(prompts)
        if _takes(pipe, "true_cfg_scale"):
            kwargs.update(_true_guidance(first.guidance_scale, kwargs, len(prompts)))

        # 5. Task-specific inputs. Edit pipelines run only the last `strength` share of the
        #    schedule, so the step count is raised until that share is at least one step.
        if first.task == "text2img":
            kwargs.update(_size_inputs(pipe, width, height))
        elif first.task == "edit":
            references = [self._admissible(image) for image in first.reference_images]
            kwargs.update(_reference_inputs(pipe, references, width, height))
            # An edit runs alone: one prompt for its n images, which instruction-edit classes
            # need (Qwen-Image-Edit pairs each prompt with an image; -Plus takes one prompt).
            kwargs["prompt"], kwargs["num_images_per_prompt"] = first.prompt, first.n
            if "negative_prompt" in kwargs:
                kwargs["negative_prompt"] = kwargs["negative_prompt"][0]
        else:
            assert first.init_image is not None  # checked by _check_job
            kwargs["num_inference_steps"] = _steps_for_strength(first.steps, first.strength)
            kwargs["strength"] = first.strength
            # One copy per row: some classes slice the image per generator (SD3's), so a
            # single image beside n generators leaves rows without one.
            init = first.init_image.convert("RGB").resize((width, height))
            kwargs["image"] = [init] * len(prompts)
            kwargs.update(_size_inputs(pipe, width, height))
        if first.task == "inpaint":
            assert first.mask is not None  # checked by _check_job
            mask = first.mask.convert("L").resize((width, height))
            kwargs["mask_image"] = [mask] * len(prompts)
            kwargs["width"], kwargs["height"] = width, height

        # 6. Run on a fresh scheduler copy, one run at a time.
        with self._render_lock, torch.inference_mode():
            pipe.scheduler = self._scheduler.from_config(self._scheduler.config)
            images = self._call(pipe, kwargs)

        # 7. Exactly the jobs' size, RGB, whatever the pipeline rounded to; split per job.
        fitted = [_fit(image, (first.width, first.height)) for image in images]
        return _split(fitted, [job.n for job in jobs])

    def _admissible(self, reference: Image.Image) -> Image.Image:
        """A reference within what the class's processor takes: enlarged (aspect kept) to its
        smallest side; an aspect beyond its limit is the client's to fix."""
        edits = self._instruction_edits
        assert edits is not None  # only instruction-edit backends run "edit" jobs
        width, height = reference.size
        limit = edits.max_reference_aspect
        if limit is not None and max(width, height) > limit * min(width, height):
            raise InvalidRequest(
                f"The model behind '{self.name}' takes input images no more than {limit:g} "
                f"times as long as they are wide; this one is {width}x{height}.",
                "image",
            )
        side = edits.min_reference_side
        if min(width, height) >= side:
            return reference
        scale = side / min(width, height)
        size = (max(side, round(width * scale)), max(side, round(height * scale)))
        return reference.resize(size, Image.Resampling.LANCZOS)

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


def _place(pipe: Any, device: torch.device, offload: Offload) -> None:
    """Move the pipeline to `device`, or leave its weights on the CPU with offload hooks that
    move each model (or layer) to `device` when it runs."""
    if offload == "none":
        pipe.to(device)
        return
    if device.type != "cuda":
        raise DeviceUnavailable(
            f"offload = {offload!r} moves weights to a GPU as they are needed; this backend runs "
            f"on {device}: set device = 'cuda' (or 'auto' on a machine with one), or offload = "
            "'none'."
        )
    if offload == "model":
        pipe.enable_model_cpu_offload(device=device)
    else:
        pipe.enable_sequential_cpu_offload(device=device)


def _denoisers(pipe: Any) -> list[torch.nn.Module]:
    return [
        module
        for name in _DENOISERS
        if isinstance(module := getattr(pipe, name, None), torch.nn.Module)
    ]


def _set_attention_backend(pipe: Any, backend: str) -> None:
    """The denoiser's attention through diffusers' dispatcher `backend`; refused at start when
    diffusers does not know it or its kernels are not installed here."""
    from diffusers.models.attention_dispatch import AttentionBackendName

    known = [member.value for member in AttentionBackendName]
    if backend not in known:
        raise DeviceUnavailable(
            f"Unknown attention_backend {backend!r}; diffusers knows: {', '.join(known)}."
        )
    for module in _denoisers(pipe):
        setter = getattr(module, "set_attention_backend", None)
        if setter is None:
            raise DeviceUnavailable(f"{type(module).__name__} cannot choose its attention backend.")
        try:
            setter(backend)
        except (ImportError, RuntimeError, ValueError) as error:
            raise DeviceUnavailable(f"attention_backend {backend!r}: {error}") from error


def _compile_denoiser(pipe: Any, backend: str) -> None:
    """Compile the denoiser in place (its class stays, so diffusers' checks still hold)."""
    for module in _denoisers(pipe):
        module.compile(backend=backend)


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


def _own_components(path: Path) -> dict[str, Any]:
    """The components model_index.json names with a class Limner loads itself."""
    index = path / "model_index.json"
    if not index.is_file():
        return {}
    components: dict[str, Any] = {}
    for name, value in json.loads(index.read_text()).items():
        if isinstance(value, list) and len(value) == 2 and value[1] in COMPONENT_LOADERS:
            components[name] = COMPONENT_LOADERS[value[1]](path / name)
    return components


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


def _render_size(pixels: int, multiple: int) -> int:
    """The nearest size the pipeline accepts; the result is resized to the job's exact size."""
    return max(multiple, round(pixels / multiple) * multiple)


def _size_multiple(pipe: Any) -> int:
    """The step sizes must keep for this pipeline: pixels per latent (VAE), times the patch a
    transformer reads, or what its image processor snaps to (FLUX, Qwen and Z-Image pack 2x2
    latents; some of them raise on other sizes, others quietly round down)."""
    multiples = [_SIZE_MULTIPLE]
    processor = getattr(pipe, "image_processor", None)
    processor_config = getattr(processor, "config", None)
    if processor_config is not None:
        multiples.append(int(getattr(processor_config, "vae_scale_factor", 1) or 1))
    vae_scale = int(getattr(pipe, "vae_scale_factor", 1) or 1)
    for module in _denoisers(pipe):
        patch = getattr(module.config, "patch_size", None)
        if isinstance(patch, int):
            multiples.append(vae_scale * patch)
    return max(multiples)


def _steps_for_strength(steps: int, strength: float) -> int:
    """Steps such that an edit pipeline both denoises at least one and, below strength 1,
    skips at least one: pipelines start at `int(steps * strength)` steps from the end (SD) or
    at `int(steps - steps * strength)` from the start (Z-Image, FLUX.2), and with too few
    steps the latter starts from pure noise, ignoring the init image."""
    steps = max(steps, math.ceil(1 / strength))
    # 1 / strength can round down in floating point (strength 1/161: 161 * strength < 1).
    if int(steps * strength) < 1:
        steps += 1
    if strength < 1.0:
        while int(steps - steps * strength) < 1:
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


def _true_guidance(scale: float | None, kwargs: dict[str, Any], rows: int) -> dict[str, Any]:
    """Guidance for classes with true classifier-free guidance (Qwen-Image's): the catalog's
    guidance_scale is its scale, and above 1 it runs with a negative prompt (a blank one if
    the job has none), as the pipeline only guides given one. Their own `guidance_scale` is
    for guidance-distilled weights; left alone. No scale: no guidance, and no warning that a
    default 4.0 goes unused."""
    inputs: dict[str, Any] = {"true_cfg_scale": scale if scale is not None else 1.0}
    kwargs.pop("guidance_scale", None)
    if inputs["true_cfg_scale"] > 1.0 and "negative_prompt" not in kwargs:
        inputs["negative_prompt"] = [" "] * rows
    return inputs


def _size_inputs(pipe: Any, width: int, height: int) -> dict[str, Any]:
    """The working size, told in every way the class takes one. Classes that take a size
    default it to ~1 MP (FLUX and SD3 image-to-image, Kontext), 16x the work of a 256² working
    size; Kontext also snaps its input to a trained resolution (672² and up) unless told not
    to; SANA bins it to a trained resolution. Classes that take none (SD image-to-image) render
    at the input image's size."""
    inputs: dict[str, Any] = {}
    if _takes(pipe, "width") and _takes(pipe, "height"):
        inputs["width"], inputs["height"] = width, height
    if _takes(pipe, "max_area"):
        inputs["max_area"] = width * height
    if _takes(pipe, "_auto_resize"):
        inputs["_auto_resize"] = False
    if _takes(pipe, "use_resolution_binning"):
        # SANA and PixArt snap the size to a trained aspect bucket (64x64 to 512x512).
        inputs["use_resolution_binning"] = False
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

    What a step hands over is brought to the VAE's input the way the pipeline itself does it
    after its last step: packed sequence latents (batch, tokens, channels: FLUX, Kontext, Qwen,
    FLUX.2) are unpacked with the pipeline's own unpacking at the `rendered` (width, height)
    the call was given, then denormalised by whatever the VAE declares (scaling and shift
    factors; per-channel latents_mean/std; FLUX.2's batch-norm statistics). Latents that still
    do not fit the VAE get no preview rather than a wrong one. A pixel-space pipeline
    (limner-mini) decodes its own latents with `decode_to_pil`.
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
    unpacked = _unpacked(pipe, latents, rendered)
    if unpacked is None:
        return None

    def preview() -> list[Image.Image]:
        # Its own inference_mode: a preview may be asked for outside the pipeline call.
        with torch.inference_mode(), _decodable(vae):
            vae_input = _denormalised(pipe, vae, unpacked)
            decoded = vae.decode(vae_input.to(vae.dtype), return_dict=False)[0]
            if decoded.ndim == 5:
                decoded = decoded[:, :, 0]  # a video-style VAE: the one frame
            images: list[Image.Image] = image_processor.postprocess(decoded, output_type="pil")
        return [_fit(image, size) for image in images]

    return preview


@contextmanager
def _decodable(vae: Any) -> Iterator[None]:
    """The VAE in a dtype its decode does not overflow in: SDXL's and SD 1.x's declare
    `force_upcast`, and their pipelines decode in float32 when loaded in float16."""
    if not (vae.dtype == torch.float16 and vae.config.get("force_upcast")):
        yield
        return
    vae.to(torch.float32)
    try:
        yield
    finally:
        vae.to(torch.float16)


def _unpacked(pipe: Any, latents: torch.Tensor, rendered: tuple[int, int]) -> torch.Tensor | None:
    """Step latents in the VAE's layout (batch, channels[, frames], height, width), or None."""
    vae = pipe.vae
    channels = vae.config.get("latent_channels") or vae.config.get("z_dim")
    if latents.ndim == 3:
        width, height = rendered
        patch = 2 * pipe.vae_scale_factor
        rows, columns = height // patch, width // patch
        if latents.shape[1] != rows * columns:
            return None  # not the output's tokens alone: nothing to unpack them into
        if hasattr(pipe, "_unpack_latents_with_ids"):
            # FLUX.2: tokens scattered by their position ids, then 2x2 patches unfolded after
            # denormalising (see _denormalised); ids of an output are its grid, row-major.
            grid = latents.new_empty(latents.shape[0], latents.shape[2], rows, columns)
            ids = pipe._prepare_latent_ids(grid).to(latents.device)
            scattered = pipe._unpack_latents_with_ids(latents, ids)
            # Annotated as a list of tensors, returned stacked (diffusers 0.42); take either.
            latents = scattered if isinstance(scattered, torch.Tensor) else torch.stack(scattered)
            return latents if latents.shape[1] == 4 * channels else None
        unpack = getattr(pipe, "_unpack_latents", None)
        if unpack is None:
            return None
        latents = unpack(latents, height, width, pipe.vae_scale_factor)
    if latents.ndim not in (4, 5) or latents.shape[1] != channels:
        return None
    return latents


def _denormalised(pipe: Any, vae: Any, latents: torch.Tensor) -> torch.Tensor:
    """Undo the latent normalisation the VAE declares, as its pipeline does before decoding."""
    config = vae.config
    bn = getattr(vae, "bn", None)
    if isinstance(bn, torch.nn.BatchNorm2d) and hasattr(pipe, "_unpatchify_latents"):
        running_mean, running_var = bn.running_mean, bn.running_var
        assert running_mean is not None and running_var is not None  # tracked by FLUX.2's VAE
        mean = running_mean.view(1, -1, 1, 1).to(latents.device, latents.dtype)
        std = torch.sqrt(running_var.view(1, -1, 1, 1) + config.batch_norm_eps)
        unpatchified: torch.Tensor = pipe._unpatchify_latents(
            latents * std.to(latents.device, latents.dtype) + mean
        )
        return unpatchified
    if config.get("latents_mean") is not None and config.get("latents_std") is not None:
        shape = (1, -1) + (1,) * (latents.ndim - 2)
        mean = torch.tensor(config.latents_mean).view(shape).to(latents.device, latents.dtype)
        std = torch.tensor(config.latents_std).view(shape).to(latents.device, latents.dtype)
        # As SDXL's pipeline does; Qwen-Image's VAE declares no scaling factor (1).
        denormalised: torch.Tensor = latents * std / config.get("scaling_factor", 1.0) + mean
        return denormalised
    scaled: torch.Tensor = latents / config.get("scaling_factor", 1.0)
    shift = config.get("shift_factor")
    return scaled + shift if shift is not None else scaled
