"""SDXL at 1024x1024 on a CUDA GPU: the plain diffusers pipeline call vs Limner's DiffusersBackend,
as it is and with torch.compile (and, on request, with model CPU offload).

Builds an SDXL-architecture pipeline with random weights from SDXL base 1.0's configs, written
out below (UNet 2.6B parameters, SDXL's VAE, CLIP ViT-L and OpenCLIP bigG text encoders at
their real sizes, Euler on SDXL's schedule), and saves it once under --cache. The tokenizers
are the tests' tiny CLIP tokenizer (tests/engine/tiny_pipeline.py: nothing is downloaded;
prompts still pad to 77 tokens), so the compute is SDXL's and the pictures are noise. In one
process it loads that folder as the plain pipeline (DiffusionPipeline.from_pretrained, .to the
GPU), as DiffusersBackend, and as DiffusersBackend with Tuning(compile=True) (warmed up with
`warm_up` first; the seconds are reported apart), then runs --repeats rounds in which each
variant renders the same job once (batch 1, 30 steps, guidance 5), the order rotated each round
so drift hits all alike. Prints the median ms per image, the ratios limner/plain and
compiled/plain, and each variant's peak GPU memory (torch.cuda.max_memory_allocated during its
calls, less what the other variants hold). Refuses (exit 2) on a machine without CUDA, except
for the smoke run of its code paths: `--device cpu --tiny` (tests' tiny SDXL, 64x64, 2 steps).

    python bench/gpu.py [--dtype bfloat16|float16] [--repeats 5] [--offload model]
                        [--cache ~/.cache/limner-bench] [--size 1024] [--steps 30]
    python bench/gpu.py --device cpu --tiny
"""

import argparse
import os
import shutil
import statistics
import sys
import time
import warnings
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parents[1]
PROMPT = "a lighthouse on a cliff at dusk, oil painting"
SEED = 1
GUIDANCE = 5.0  # SDXL base's default: classifier-free guidance, so the UNet sees a batch of 2

# SDXL base 1.0's configs (stabilityai/stable-diffusion-xl-base-1.0), as its config.json files
# give them; keys the classes do not take (e.g. the scheduler's DDIM-only ones) are left out.
UNET: dict[str, Any] = {
    "sample_size": 128,
    "in_channels": 4,
    "out_channels": 4,
    "center_input_sample": False,
    "flip_sin_to_cos": True,
    "freq_shift": 0,
    "down_block_types": ["DownBlock2D", "CrossAttnDownBlock2D", "CrossAttnDownBlock2D"],
    "mid_block_type": "UNetMidBlock2DCrossAttn",
    "up_block_types": ["CrossAttnUpBlock2D", "CrossAttnUpBlock2D", "UpBlock2D"],
    "only_cross_attention": False,
    "block_out_channels": [320, 640, 1280],
    "layers_per_block": 2,
    "downsample_padding": 1,
    "mid_block_scale_factor": 1,
    "act_fn": "silu",
    "norm_num_groups": 32,
    "norm_eps": 1e-5,
    "cross_attention_dim": 2048,
    "transformer_layers_per_block": [1, 2, 10],
    "attention_head_dim": [5, 10, 20],
    "dual_cross_attention": False,
    "use_linear_projection": True,
    "addition_embed_type": "text_time",
    "addition_embed_type_num_heads": 64,
    "addition_time_embed_dim": 256,
    "projection_class_embeddings_input_dim": 2816,  # 6 size numbers x 256 + bigG's 1280
    "upcast_attention": None,
    "resnet_time_scale_shift": "default",
    "time_embedding_type": "positional",
    "conv_in_kernel": 3,
    "conv_out_kernel": 3,
}
VAE: dict[str, Any] = {
    "in_channels": 3,
    "out_channels": 3,
    "down_block_types": ["DownEncoderBlock2D"] * 4,
    "up_block_types": ["UpDecoderBlock2D"] * 4,
    "block_out_channels": [128, 256, 512, 512],
    "layers_per_block": 2,
    "act_fn": "silu",
    "latent_channels": 4,
    "norm_num_groups": 32,
    "sample_size": 1024,
    "scaling_factor": 0.13025,
    # Decoded in float32 when the weights are float16, as SDXL's pipeline does.
    "force_upcast": True,
}
# CLIP ViT-L/14's text tower, and OpenCLIP ViT-bigG/14's with its projection.
TEXT_ENCODER: dict[str, Any] = {
    "vocab_size": 49408,
    "hidden_size": 768,
    "intermediate_size": 3072,
    "projection_dim": 768,
    "num_hidden_layers": 12,
    "num_attention_heads": 12,
    "max_position_embeddings": 77,
    "hidden_act": "quick_gelu",
    "layer_norm_eps": 1e-5,
    "bos_token_id": 0,
    "eos_token_id": 2,
    "pad_token_id": 1,
}
TEXT_ENCODER_2: dict[str, Any] = {
    **TEXT_ENCODER,
    "hidden_size": 1280,
    "intermediate_size": 5120,
    "projection_dim": 1280,
    "num_hidden_layers": 32,
    "num_attention_heads": 20,
    "hidden_act": "gelu",
}
SCHEDULER: dict[str, Any] = {
    "num_train_timesteps": 1000,
    "beta_start": 0.00085,
    "beta_end": 0.012,
    "beta_schedule": "scaled_linear",
    "prediction_type": "epsilon",
    "interpolation_type": "linear",
    "use_karras_sigmas": False,
    "timestep_spacing": "leading",
    "steps_offset": 1,
}


@dataclass
class Variant:
    name: str
    short: str  # its name in the warm-up line
    call: Callable[[], object]
    # GPU memory its weights hold between calls (bytes; 0 on a CPU).
    resident: int = 0
    times: list[float] = field(default_factory=list)
    peak: int = 0


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--device", default="cuda", help="cuda, cuda:1; cpu only with --tiny")
    parser.add_argument("--dtype", default="bfloat16", choices=("bfloat16", "float16"))
    parser.add_argument("--repeats", type=int, default=5, help="timed rounds (median)")
    parser.add_argument("--size", type=int, help="side in pixels (default 1024; --tiny: 64)")
    parser.add_argument("--steps", type=int, help="denoising steps (default 30; --tiny: 2)")
    parser.add_argument(
        "--offload",
        choices=("none", "model", "sequential"),
        default="none",
        help="also time Limner with Tuning(offload=...) (CUDA only)",
    )
    parser.add_argument(
        "--cache",
        type=Path,
        default=Path.home() / ".cache" / "limner-bench",
        help="where the random-weight pipeline is saved once and reused",
    )
    parser.add_argument(
        "--tiny", action="store_true", help="the tests' tiny SDXL at 64x64, 2 steps: a smoke run"
    )
    args = parser.parse_args()
    os.environ["HF_HUB_OFFLINE"] = "1"
    os.environ.setdefault("HF_HUB_DISABLE_PROGRESS_BARS", "1")
    os.environ.setdefault("DIFFUSERS_VERBOSITY", "error")
    os.environ.setdefault("TRANSFORMERS_VERBOSITY", "error")
    # Random weights: float16 may overflow to NaN pixels, whose cast numpy warns about.
    warnings.filterwarnings("ignore")
    sys.path.insert(0, str(REPO))  # the tokenizer and the tiny SDXL live with the tests

    import torch

    on_cuda = args.device.startswith("cuda")
    if on_cuda and not torch.cuda.is_available():
        refuse(
            "bench/gpu.py measures SDXL on a CUDA GPU, and this machine has none "
            "(torch.cuda.is_available() is False). For a smoke run of its code paths on the "
            "CPU: python bench/gpu.py --device cpu --tiny"
        )
    if not on_cuda and not args.tiny:
        refuse(
            f"--device {args.device} runs only with --tiny (full-size SDXL at 1024x1024 is a "
            "GPU benchmark): python bench/gpu.py --device cpu --tiny"
        )
    if args.offload != "none" and not on_cuda:
        refuse("--offload moves weights to a CUDA GPU as they are needed: it needs --device cuda")
    size = args.size or (64 if args.tiny else 1024)
    steps = args.steps or (2 if args.tiny else 30)

    import diffusers
    import transformers

    diffusers.utils.logging.disable_progress_bar()
    transformers.utils.logging.disable_progress_bar()
    built = time.perf_counter()
    path, fresh = cached_pipeline(args.cache, args.tiny, args.dtype, args.device)
    built = time.perf_counter() - built
    pipe, variants, warm_up = load_variants(args, path, size, steps)
    describe(args, path, fresh, built, size, steps, pipe)
    print(
        "warm-up, one 1-step render each (Limner's: backend.warm_up; compiled's includes the "
        "compilation): " + ", ".join(f"{name} {seconds:.1f} s" for name, seconds in warm_up.items())
    )
    measure(variants, args.repeats, args.device)
    report(variants, on_cuda)


def refuse(message: str) -> None:
    print(f"bench/gpu.py: {message}", file=sys.stderr)
    raise SystemExit(2)


def cached_pipeline(cache: Path, tiny: bool, dtype: str, device: str) -> tuple[Path, bool]:
    """The saved pipeline folder, built on first use; whether it was built now."""
    path = cache / ("sdxl-tiny" if tiny else f"sdxl-base-random-{dtype}")
    if (path / "model_index.json").is_file():
        return path, False
    # Built next to it and renamed when complete, so an interrupted build is never reused.
    partial = path.with_name(path.name + ".partial")
    shutil.rmtree(partial, ignore_errors=True)
    partial.parent.mkdir(parents=True, exist_ok=True)
    if tiny:
        from tests.engine.tiny_sd_families import build_tiny_sdxl

        build_tiny_sdxl(partial)
    else:
        build_sdxl(partial, dtype, device)
    partial.rename(path)
    return path, True


def build_sdxl(path: Path, dtype_name: str, device: str) -> None:
    """SDXL base 1.0's architecture with seeded random weights, saved like the real folder."""
    import torch
    from diffusers import (
        AutoencoderKL,
        EulerDiscreteScheduler,
        StableDiffusionXLPipeline,
        UNet2DConditionModel,
    )
    from transformers import CLIPTextConfig, CLIPTextModel, CLIPTextModelWithProjection

    from tests.engine.tiny_pipeline import build_tiny_tokenizer

    dtype = getattr(torch, dtype_name)
    tokenizer = build_tiny_tokenizer()
    for config in (TEXT_ENCODER, TEXT_ENCODER_2):
        assert len(tokenizer) <= config["vocab_size"], "the text models must cover every token id"
    torch.manual_seed(0)
    # Initialised on the GPU: 3.5B random parameters take minutes on a CPU.
    with torch.device(device):
        unet = UNet2DConditionModel(**UNET).to(dtype)
        vae = AutoencoderKL(**VAE).to(dtype)
        text_encoder = CLIPTextModel(CLIPTextConfig(**TEXT_ENCODER)).to(dtype)
        text_encoder_2 = CLIPTextModelWithProjection(CLIPTextConfig(**TEXT_ENCODER_2)).to(dtype)
    pipe = StableDiffusionXLPipeline(
        vae=vae,
        text_encoder=text_encoder,
        text_encoder_2=text_encoder_2,
        tokenizer=tokenizer,
        tokenizer_2=build_tiny_tokenizer(),
        unet=unet,
        scheduler=EulerDiscreteScheduler(**SCHEDULER),
        force_zeros_for_empty_prompt=True,
        add_watermarker=False,
    )
    pipe.save_pretrained(path, safe_serialization=True)
    del pipe, unet, vae, text_encoder, text_encoder_2
    if device.startswith("cuda"):
        torch.cuda.empty_cache()


def load_variants(
    args: argparse.Namespace, path: Path, size: int, steps: int
) -> tuple[Any, list[Variant], dict[str, float]]:
    """The plain pipeline, and each variant loaded and warmed up; warm-up seconds by variant."""
    import torch
    from diffusers import DiffusionPipeline

    from limner.engine.diffusers_backend import DiffusersBackend, Tuning
    from limner.engine.types import RenderJob

    on_cuda = args.device.startswith("cuda")
    job = RenderJob(
        backend="sdxl",
        prompt=PROMPT,
        n=1,
        width=size,
        height=size,
        steps=steps,
        seed=SEED,
        guidance_scale=GUIDANCE,
    )
    variants: list[Variant] = []
    warm_up: dict[str, float] = {}

    def allocated() -> int:
        return torch.cuda.memory_allocated(args.device) if on_cuda else 0

    # 1. The plain pipeline, as its model card loads and calls it.
    before = allocated()
    pipe = DiffusionPipeline.from_pretrained(
        path, dtype=getattr(torch, args.dtype), local_files_only=True
    ).to(args.device)
    pipe.set_progress_bar_config(disable=True)

    def plain(steps: int = steps) -> object:
        return pipe(
            prompt=PROMPT,
            num_inference_steps=steps,
            width=size,
            height=size,
            guidance_scale=GUIDANCE,
            generator=torch.Generator(args.device).manual_seed(SEED),
        ).images

    variants.append(Variant("plain diffusers pipeline", "plain", plain, allocated() - before))
    started = time.perf_counter()
    plain(1)  # as warm_up does: one 1-step render at the size
    warm_up["plain"] = time.perf_counter() - started

    # 2. Limner's backend, as `limner serve` builds it from a catalog entry.
    compile_backend = "inductor" if on_cuda else "eager"
    tunings = [
        ("limner backend", "limner", Tuning()),
        (
            f"limner backend, compiled ({compile_backend})",
            "compiled",
            Tuning(compile=True, compile_backend=compile_backend),
        ),
    ]
    if args.offload != "none":
        tunings.append(
            (f"limner backend, offload={args.offload}", "offload", Tuning(offload=args.offload))
        )
    for name, short, tuning in tunings:
        before = allocated()
        backend = DiffusersBackend("sdxl", path, args.device, args.dtype, tuning=tuning)
        resident = allocated() - before
        started = time.perf_counter()
        backend.warm_up([(size, size)])
        warm_up[short] = time.perf_counter() - started

        def render(backend: DiffusersBackend = backend) -> object:
            return backend.render(job, lambda _step: None)

        variants.append(Variant(name, short, render, resident))
    return pipe, variants, warm_up


def describe(
    args: argparse.Namespace,
    path: Path,
    fresh: bool,
    built: float,
    size: int,
    steps: int,
    pipe: Any,
) -> None:
    import torch

    def millions(module: Any) -> str:
        return f"{sum(p.numel() for p in module.parameters()) / 1e6:.4g}M"

    if args.device.startswith("cuda"):
        where = f"{args.device} ({torch.cuda.get_device_name(args.device)})"
    else:
        where = f"cpu ({torch.get_num_threads()} torch threads)"
    model = "the tests' tiny SDXL" if args.tiny else "SDXL base 1.0 architecture"
    print(
        f"{model}, random weights: UNet {millions(pipe.unet)}, VAE {millions(pipe.vae)}, text "
        f"encoders {millions(pipe.text_encoder)} + {millions(pipe.text_encoder_2)} parameters; "
        f"{args.dtype} on {where}"
    )
    print(f"pipeline: {path} ({f'built in {built:.0f} s' if fresh else 'from the cache'})")
    print(
        f"job: {size}x{size}, {steps} steps, guidance {GUIDANCE:g}, batch 1; median of "
        f"{args.repeats} interleaved rounds after warm-up and one untimed round"
    )
    if not args.device.startswith("cuda"):
        print(
            "note: a CPU smoke run of the code paths, not a measurement; the compiled variant "
            "uses torch.compile's 'eager' backend here (inductor on a CPU takes minutes to "
            "compile), so it checks the wiring, not the speed-up; and on a CPU Limner's backend "
            "puts the UNet and VAE in channels-last memory order (the plain pipeline stays "
            "contiguous), which alone about halves this tiny model's bfloat16 call here"
        )


def measure(variants: list[Variant], repeats: int, device: str) -> None:
    """One untimed round, then `repeats` rounds, each variant once per round, order rotated."""
    import torch

    on_cuda = device.startswith("cuda")

    def sync() -> None:
        if on_cuda:
            torch.cuda.synchronize(device)

    for variant in variants:
        variant.call()
    for index in range(repeats):
        shift = index % len(variants)
        for variant in variants[shift:] + variants[:shift]:
            if on_cuda:
                # What the others hold stays allocated; this call's own peak is above it.
                others = torch.cuda.memory_allocated(device) - variant.resident
                torch.cuda.reset_peak_memory_stats(device)
            sync()
            started = time.perf_counter()
            variant.call()
            sync()
            variant.times.append(time.perf_counter() - started)
            if on_cuda:
                variant.peak = max(variant.peak, torch.cuda.max_memory_allocated(device) - others)


def report(variants: list[Variant], on_cuda: bool) -> None:
    plain = statistics.median(variants[0].times)
    print()
    print(f"{'variant':<40}  {'ms/image':>9}  {'min ms':>8}  {'vs plain':>8}  {'peak GPU GiB':>12}")
    for variant in variants:
        median = statistics.median(variant.times)
        peak = f"{variant.peak / 2**30:.2f}" if on_cuda else "n/a (CPU)"
        print(
            f"{variant.name:<40}  {median * 1000:>9.1f}  {min(variant.times) * 1000:>8.1f}  "
            f"{median / plain:>7.3f}x  {peak:>12}"
        )
    limner, compiled = (statistics.median(variant.times) for variant in variants[1:3])
    print()
    print(f"limner / plain: {limner / plain:.3f}; compiled / plain: {compiled / plain:.3f}")


if __name__ == "__main__":
    main()
