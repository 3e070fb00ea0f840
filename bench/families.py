"""Every model family through `limner serve` vs the plain diffusers pipeline call alone.

For each family's tiny random-weight pipeline (the tests' builders in tests/engine: SD, SDXL,
SD3, SANA, FLUX.1, FLUX.1 Kontext, Qwen-Image, Qwen-Image-Edit-Plus, FLUX.2 klein, Z-Image),
saved to a temporary folder, one `limner serve --catalog` on 127.0.0.1 serves them all at
quality=low = `--steps` steps at a `--resolution`² working size, and this process times, per
family: (a) one request through the official `openai` SDK (images.generate; for the
instruction-edit families images.edit with one picture of the working size; size=1024x1024,
quality=low, a fixed seed, b64_json), against (b) the plain pipeline call alone on the same
saved pipeline, loaded here with DiffusionPipeline.from_pretrained(local_files_only=True) on
the CPU, at the same working size, steps, guidance and seed. After `--warmup` calls of each,
the two alternate (A B, B A, ...) `--repeats` times so drift in machine load hits both alike;
prints the medians and their ratio (goal: at most 1.10), and the size the VAE decodes: the
plain call's, and for edits Limner's (latent height and width x the VAE's scale factor,
recorded from `vae.decode` while an edit RenderJob runs in process through DiffusersBackend);
both must be the working size. Kontext's text-to-image is FLUX.1's path (timed as flux), and
image-to-image edits of the other families are not timed.

The server figure carries work the pipeline figure does not: upscaling the render to the
requested 1024x1024 (LANCZOS), PNG encoding and base64 of the 1024x1024 image; `finish ms`
times those steps in process on the pipeline's own image, and `less finish` is the ratio
without them. Moderation is off by default (LIMNER_MODERATION=false for the server), so the
ratio is Limner's serving overhead alone; `--moderation on` adds the prompt and image checks.

    python bench/families.py [--families sd,sdxl,sd3,sana,flux,kontext,qwen-image,
                              qwen-image-edit-plus,flux2-klein,z-image] [--repeats 5]
                             [--warmup 1] [--steps 2] [--resolution 256] [--guidance 1.0]
                             [--moderation off|on] [--threads 1]
"""

import argparse
import base64
import contextlib
import importlib
import inspect
import io
import json
import os
import secrets
import statistics
import sys
import tempfile
import time
import warnings
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx
import openai
from PIL import Image
from served import limner_serve

REPO = Path(__file__).resolve().parents[1]
SIZE = "1024x1024"
QUALITY = "low"
SEED = 1
PROMPT = "a lighthouse on a cliff at dusk, oil painting"
EDIT_PROMPT = "make the sky purple"


@dataclass(frozen=True)
class Family:
    name: str
    # tests.engine.<module>.<builder>(path) saves the tiny pipeline.
    module: str
    builder: str
    # What is timed: "generation" (images.generate) and/or "edit" (images.edit, natively).
    operations: tuple[str, ...] = ("generation",)


FAMILIES = {
    family.name: family
    for family in (
        Family("sd", "tiny_pipeline", "build_tiny_pipeline"),
        Family("sdxl", "tiny_sd_families", "build_tiny_sdxl"),
        Family("sd3", "tiny_sd_families", "build_tiny_sd3"),
        Family("sana", "tiny_sd_families", "build_tiny_sana"),
        Family("flux", "tiny_families", "build_tiny_flux"),
        # Its text-to-image is FLUX.1's transformer on the same call path: timed under flux.
        Family("kontext", "tiny_families", "build_tiny_kontext", ("edit",)),
        Family("qwen-image", "tiny_qwen", "build_tiny_qwen_image"),
        Family("qwen-image-edit-plus", "tiny_qwen", "build_tiny_qwen_image_edit_plus", ("edit",)),
        Family(
            "flux2-klein", "tiny_qwen3_families", "build_tiny_flux2_klein", ("generation", "edit")
        ),
        Family("z-image", "tiny_qwen3_families", "build_tiny_z_image"),
    )
}

BACKEND = """
[backends.{name}]
path = "{path}"
device = "cpu"
guidance_scale = {guidance}
{threads}
[backends.{name}.quality]
low = {{ steps = {steps}, resolution = {resolution} }}

[models.{name}]
backend = "{name}"
"""


@dataclass
class Row:
    family: str
    operation: str
    server: list[float] = field(default_factory=list)
    pipeline: list[float] = field(default_factory=list)
    finish: float = 0.0
    # (width, height) the VAE decoded: the plain call's, and for edits Limner's backend's.
    plain_decoded: tuple[int, int] | None = None
    limner_decoded: tuple[int, int] | None = None


def main() -> None:
    started = time.perf_counter()
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument(
        "--families",
        default=",".join(FAMILIES),
        help=f"comma-separated, of: {', '.join(FAMILIES)}",
    )
    parser.add_argument("--repeats", type=int, default=5, help="timed calls of each kind")
    parser.add_argument("--warmup", type=int, default=1, help="untimed calls of each kind first")
    # 2, not more, by default: the tiny SD and SDXL VAEs downsample only 2x, so at 256x256
    # their UNets attend over 4096 latent positions and each call takes 5-20 s on one shared
    # core (of the default run's ~10 minutes at 4 steps, over 6 were theirs).
    parser.add_argument("--steps", type=int, default=2, help="steps of the quality=low tier")
    parser.add_argument("--resolution", type=int, default=256, help="working side at low")
    parser.add_argument(
        "--guidance",
        type=float,
        default=1.0,
        help="guidance scale on both sides (1.0: no classifier-free guidance in any family)",
    )
    parser.add_argument(
        "--moderation",
        choices=("off", "on"),
        default="off",
        help="the server's moderation (off: LIMNER_MODERATION=false, the overhead alone)",
    )
    parser.add_argument(
        "--threads",
        type=int,
        default=1,
        help="torch CPU threads in both processes; 0: torch's default (one per core)",
    )
    args = parser.parse_args()
    chosen = [name.strip() for name in args.families.split(",") if name.strip()]
    unknown = [name for name in chosen if name not in FAMILIES]
    if unknown or not chosen:
        parser.error(f"unknown families {unknown}; choose from {', '.join(FAMILIES)}")
    if args.threads > 0:
        # Before torch starts, here and (inherited) in the server: on a CPU shared with other
        # jobs, one descheduled OpenMP worker stalls every op and runs vary several-fold.
        os.environ["OMP_NUM_THREADS"] = os.environ["MKL_NUM_THREADS"] = str(args.threads)
    os.environ["HF_HUB_OFFLINE"] = "1"
    os.environ.setdefault("HF_HUB_DISABLE_PROGRESS_BARS", "1")
    os.environ.setdefault("DIFFUSERS_VERBOSITY", "error")
    os.environ.setdefault("TRANSFORMERS_VERBOSITY", "error")
    warnings.filterwarnings("ignore")
    sys.path.insert(0, str(REPO))  # the tiny pipelines' builders live with the tests

    import diffusers
    import transformers

    diffusers.utils.logging.disable_progress_bar()
    transformers.utils.logging.disable_progress_bar()
    with tempfile.TemporaryDirectory(prefix="limner-families-") as temp:
        work = Path(temp)
        paths = {name: build(FAMILIES[name], work / name) for name in chosen}
        catalog = work / "catalog.toml"
        catalog.write_text(
            "".join(
                BACKEND.format(
                    name=name,
                    path=path,
                    guidance=args.guidance,
                    threads=f"cpu_threads = {args.threads}" if args.threads > 0 else "",
                    steps=args.steps,
                    resolution=args.resolution,
                )
                for name, path in paths.items()
            )
        )
        key = "sk-proj-bench-" + secrets.token_hex(16)
        settings = {
            "LIMNER_API_KEY": key,
            "LIMNER_MODERATION": "true" if args.moderation == "on" else "false",
        }
        # trust_env=False: no proxy from the environment; every byte stays on 127.0.0.1.
        with (
            limner_serve(work / "home", ["--catalog", str(catalog)], settings) as served,
            httpx.Client(trust_env=False, timeout=600) as http,
            openai.OpenAI(
                base_url=served.base_url + "/v1", api_key=key, max_retries=0, http_client=http
            ) as client,
        ):
            describe(args)
            rows = [
                row
                for name in chosen
                for row in measure_family(FAMILIES[name], paths[name], client, args)
            ]
    report(rows, args, time.perf_counter() - started)


def build(family: Family, path: Path) -> Path:
    builder = getattr(importlib.import_module(f"tests.engine.{family.module}"), family.builder)
    return Path(builder(path))


def describe(args: argparse.Namespace) -> None:
    import torch

    print(
        f"tiny random-weight pipelines; {SIZE} quality={QUALITY} -> working "
        f"{args.resolution}x{args.resolution}, {args.steps} steps, guidance {args.guidance:g}"
        f"{' (no classifier-free guidance)' if args.guidance <= 1 else ''}, seed {SEED}, n=1"
    )
    print(
        f"server: limner serve --catalog on 127.0.0.1, openai SDK, b64_json PNG; moderation "
        f"{args.moderation}{' (LIMNER_MODERATION=false)' if args.moderation == 'off' else ''}"
    )
    print(
        "pipeline: DiffusionPipeline.from_pretrained(local_files_only=True) on the CPU, called "
        "alone at the same working size, steps, guidance and seed"
    )
    print(
        f"runs: {args.repeats} of each, alternating, after {args.warmup} warm-up; torch threads "
        f"{torch.get_num_threads()} of {os.cpu_count()} cpus; load average "
        f"{os.getloadavg()[0]:.2f} at start"
    )


def measure_family(
    family: Family, path: Path, client: openai.OpenAI, args: argparse.Namespace
) -> list[Row]:
    pipe = load_plain(path)
    reference = picture(args.resolution)
    rows = []
    for operation in family.operations:
        row = Row(family.name, operation)
        image = reference if operation == "edit" else None
        kwargs = plain_kwargs(pipe, args, image)

        def pipeline_call(kwargs: dict[str, Any] = kwargs) -> Image.Image:
            import torch

            generator = torch.Generator().manual_seed(SEED)
            return pipe(**kwargs, generator=generator).images[0]  # type: ignore[no-any-return]

        def server_call(model: str = family.name, operation: str = operation) -> bytes:
            if operation == "edit":
                response = client.images.edit(
                    model=model,
                    image=("in.png", png(reference), "image/png"),
                    prompt=EDIT_PROMPT,
                    size=SIZE,
                    quality=QUALITY,
                    extra_body={"seed": SEED},
                )
            else:
                response = client.images.generate(
                    model=model,
                    prompt=PROMPT,
                    size=SIZE,
                    quality=QUALITY,
                    extra_body={"seed": SEED},
                )
            # Decoding is the client's business, outside the timed call; checked, not kept.
            assert response.data and response.data[0].b64_json
            return response.data[0].b64_json.encode()

        with recording_decodes(type(pipe.vae)) as shapes:
            rendered = pipeline_call()
        row.plain_decoded = decoded_size(shapes, pipe)
        for _ in range(args.warmup - 1):
            pipeline_call()
        for _ in range(args.warmup):
            server_call()
        calls: list[tuple[list[float], Callable[[], object]]] = [
            (row.server, server_call),
            (row.pipeline, pipeline_call),
        ]
        for index in range(args.repeats):
            for samples, call in calls if index % 2 == 0 else calls[::-1]:
                start = time.perf_counter()
                call()
                samples.append(time.perf_counter() - start)
        row.finish = finish_seconds(rendered, args.repeats)
        if operation == "edit":
            row.limner_decoded = limner_edit_decode(family, path, pipe, reference, args)
        rows.append(row)
        print(f"  {family.name} {operation}: done", flush=True)
    return rows


def load_plain(path: Path) -> Any:
    """The saved pipeline as diffusers loads it. Components whose class cannot load here are
    built as Limner builds them (Qwen-Image-Edit's processor: transformers' needs torchvision,
    which this CPU torch has no wheel for; limner/engine/processors.py), passed in as
    from_pretrained takes any component."""
    from diffusers import DiffusionPipeline

    from limner.engine.processors import COMPONENT_LOADERS

    index = json.loads((path / "model_index.json").read_text())
    given = {
        name: COMPONENT_LOADERS[value[1]](path / name)
        for name, value in index.items()
        if isinstance(value, list) and len(value) == 2 and value[1] in COMPONENT_LOADERS
    }
    pipe = DiffusionPipeline.from_pretrained(path, local_files_only=True, **given)
    pipe.set_progress_bar_config(disable=True)
    return pipe


def plain_kwargs(pipe: Any, args: argparse.Namespace, image: Image.Image | None) -> dict[str, Any]:
    """What a diffusers user passes for this render: the prompt, steps, size and guidance, and
    the switches without which a class renders at another size than the one asked for."""
    takes = inspect.signature(type(pipe).__call__).parameters
    side = args.resolution
    kwargs: dict[str, Any] = {
        "prompt": PROMPT if image is None else EDIT_PROMPT,
        "num_inference_steps": args.steps,
        "width": side,
        "height": side,
    }
    if "true_cfg_scale" in takes:
        # True classifier-free guidance (Qwen-Image's and FLUX.1's classes), as Limner passes
        # the catalog's guidance_scale to them: it guides only given a negative prompt.
        kwargs["true_cfg_scale"] = args.guidance
        if args.guidance > 1:
            kwargs["negative_prompt"] = " "
    else:
        kwargs["guidance_scale"] = args.guidance
    if image is not None:
        kwargs["image"] = image
    if "use_resolution_binning" in takes:
        kwargs["use_resolution_binning"] = False  # SANA: else snapped to a 512-px bin
    if "_auto_resize" in takes:
        kwargs["_auto_resize"] = False  # Kontext: else its input snapped to 672x672 and up
    if "max_area" in takes:
        kwargs["max_area"] = side * side  # Kontext: else ~1 MP
    return kwargs


@contextlib.contextmanager
def recording_decodes(vae_class: type) -> Iterator[list[tuple[int, ...]]]:
    """The latent shapes `vae_class.decode` is called with, while the block runs."""
    shapes: list[tuple[int, ...]] = []
    own = "decode" in vae_class.__dict__
    original = vae_class.decode  # type: ignore[attr-defined]

    def decode(self: Any, latents: Any, *args: Any, **kwargs: Any) -> Any:
        shapes.append(tuple(latents.shape))
        return original(self, latents, *args, **kwargs)

    vae_class.decode = decode  # type: ignore[attr-defined]
    try:
        yield shapes
    finally:
        if own:
            vae_class.decode = original  # type: ignore[attr-defined]
        else:
            del vae_class.decode  # type: ignore[attr-defined]


def decoded_size(shapes: list[tuple[int, ...]], pipe: Any) -> tuple[int, int] | None:
    """(width, height) in pixels of the last decode: its latents' last two sides x the VAE's
    scale factor (a video-style VAE's latents have a frame axis before them)."""
    if not shapes:
        return None
    height, width = shapes[-1][-2:]
    factor = int(pipe.vae_scale_factor)
    return width * factor, height * factor


def limner_edit_decode(
    family: Family, path: Path, pipe: Any, reference: Image.Image, args: argparse.Namespace
) -> tuple[int, int] | None:
    """The size Limner's backend has the VAE decode for an edit RenderJob at the working size,
    run in process (the server's own decodes cannot be watched from here)."""
    from limner.engine.diffusers_backend import DiffusersBackend
    from limner.engine.types import RenderJob

    backend = DiffusersBackend(
        family.name, path, "cpu", cpu_threads=args.threads if args.threads > 0 else None
    )
    job = RenderJob(
        backend=family.name,
        prompt=EDIT_PROMPT,
        n=1,
        width=args.resolution,
        height=args.resolution,
        steps=args.steps,
        seed=SEED,
        task="edit",
        guidance_scale=args.guidance,
        reference_images=(reference,),
    )
    with recording_decodes(type(pipe.vae)) as shapes:
        backend.render(job, lambda _step: None)
    return decoded_size(shapes, pipe)


def finish_seconds(rendered: Image.Image, runs: int) -> float:
    """The server's steps after the engine that the pipeline figure lacks, in process: upscale
    to the requested size, PNG encode, base64 (median of `runs`)."""
    from limner.images import outputs

    width, height = (int(side) for side in SIZE.split("x"))

    def finish() -> None:
        fitted = outputs.fit_to_size(rendered, width, height)
        finished = outputs.apply_background(fitted, "opaque")
        base64.b64encode(outputs.encode(finished, "png", 100))

    samples = []
    for _ in range(max(runs, 3)):
        start = time.perf_counter()
        finish()
        samples.append(time.perf_counter() - start)
    return statistics.median(samples)


def picture(side: int) -> Image.Image:
    """The edit input, at the working size (the server shrinks a larger one to the working
    area before the model sees it; the plain call gets what the model gets): a gradient sky
    over a ground."""
    image = Image.new("RGB", (256, 256))
    image.putdata(
        [
            (40 + x // 4, 90 + y // 3, 200 - y // 2) if y < 160 else (60, 110 + x // 8, 40)
            for y in range(256)
            for x in range(256)
        ]
    )
    return image.resize((side, side), Image.Resampling.LANCZOS) if side != 256 else image


def png(image: Image.Image) -> bytes:
    buffer = io.BytesIO()
    image.save(buffer, format="PNG")
    return buffer.getvalue()


def report(rows: list[Row], args: argparse.Namespace, elapsed: float) -> None:
    working = (args.resolution, args.resolution)

    def size(value: tuple[int, int] | None) -> str:
        return "-" if value is None else f"{value[0]}x{value[1]}"

    print()
    print(
        f"{'family':<22} {'request':<10} {'server ms':>9} {'pipeline ms':>11} {'ratio':>6} "
        f"{'finish ms':>9} {'less finish':>11}  {'plain decodes':>13} {'limner decodes':>14}"
    )
    ratios = []
    for row in rows:
        server, pipeline = statistics.median(row.server), statistics.median(row.pipeline)
        ratio = server / pipeline
        ratios.append(ratio)
        print(
            f"{row.family:<22} {row.operation:<10} {server * 1000:>9.0f} {pipeline * 1000:>11.0f} "
            f"{ratio:>6.2f} {row.finish * 1000:>9.0f} {(server - row.finish) / pipeline:>11.2f}  "
            f"{size(row.plain_decoded):>13} {size(row.limner_decoded):>14}"
        )
    print()
    met = sum(ratio <= 1.10 for ratio in ratios)
    print(f"ratio = server / pipeline (medians); goal <= 1.10: met by {met} of {len(rows)}")
    print(
        f"the server figure includes upscaling {size(working)} -> {SIZE} (LANCZOS), PNG "
        f"encoding and base64 of the {SIZE} image: 'finish ms' (in process), which "
        "'less finish' takes out"
    )
    wrong = [
        f"{row.family} {row.operation}"
        for row in rows
        if row.plain_decoded != working
        or (row.operation == "edit" and row.limner_decoded != working)
    ]
    print(
        f"VAE decodes at the working size {size(working)}: "
        f"{'yes, every row' if not wrong else 'NO: ' + ', '.join(wrong)} (limner: edits, "
        "through DiffusersBackend in process)"
    )
    print(f"load average {os.getloadavg()[0]:.2f} at end; total {elapsed:.0f} s")


if __name__ == "__main__":
    main()
