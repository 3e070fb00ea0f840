"""Issue 3: how much an HTTP generation costs over the engine call alone.

Builds a small Stable Diffusion style pipeline with random weights from configs (or uses
`--model PATH`), serves it with a real `python -m limner serve --catalog ...` on 127.0.0.1, and
times, interleaved after warm-up, N generations through the official `openai` SDK against N
engine-only renders of the same RenderJob in this process (DiffusersBackend + LocalEngine: same
working size, steps and seed as the server resolves for size=1024x1024, quality=low). Prints both
medians, their ratio (goal: at most 1.10), and the server's post-engine steps timed in process,
so the difference can be read as a sum of parts.

    python bench/overhead.py [--runs 10] [--model PATH] [--steps 4] [--resolution 512]
                             [--threads 1]
"""

import argparse
import asyncio
import base64
import contextlib
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
MODEL = "gpt-image-1"
SIZE = "1024x1024"
QUALITY = "low"
SEED = 1
PROMPT = "a lighthouse on a cliff at dusk, oil painting"

CATALOG = """
[backends.bench]
path = "{path}"
device = "cpu"
{guidance}
[backends.bench.quality]
low = {{ steps = {steps}, resolution = {resolution} }}

[models.{model}]
backend = "bench"
"""


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--runs", type=int, default=10, help="timed calls of each kind")
    parser.add_argument("--warmup", type=int, default=2, help="untimed calls of each kind first")
    parser.add_argument("--model", type=Path, help="a diffusers pipeline dir instead of random")
    parser.add_argument("--steps", type=int, default=4, help="steps of the quality=low tier")
    parser.add_argument("--resolution", type=int, default=512, help="working side at low")
    parser.add_argument("--guidance", type=float, help="guidance_scale (random model: 0.0)")
    parser.add_argument(
        "--threads",
        type=int,
        default=1,
        help="torch CPU threads in both processes; 0: torch's default (one per core)",
    )
    args = parser.parse_args()
    if args.threads > 0:
        # Set before torch starts, here and (inherited) in the server. One thread keeps the two
        # sides comparable on a CPU shared with other jobs: with every core's thread in use,
        # one descheduled OpenMP worker stalls each op and runs vary several-fold.
        os.environ["OMP_NUM_THREADS"] = os.environ["MKL_NUM_THREADS"] = str(args.threads)
    # Weights come from local disk only; set before diffusers reads it at import. The rest
    # keeps library progress bars and notices out of the report (the server inherits them too).
    os.environ["HF_HUB_OFFLINE"] = "1"
    os.environ.setdefault("HF_HUB_DISABLE_PROGRESS_BARS", "1")
    os.environ.setdefault("DIFFUSERS_VERBOSITY", "error")
    os.environ.setdefault("TRANSFORMERS_VERBOSITY", "error")
    warnings.filterwarnings("ignore", category=FutureWarning)

    with tempfile.TemporaryDirectory(prefix="limner-bench-") as temp:
        work = Path(temp)
        if args.model is None:
            path, description = build_random_pipeline(work / "pipeline")
            guidance = 0.0 if args.guidance is None else args.guidance
        else:
            path, description = args.model.resolve(), _describe(args.model)
            guidance = args.guidance
        catalog = work / "catalog.toml"
        catalog.write_text(
            CATALOG.format(
                path=path,
                guidance="" if guidance is None else f"guidance_scale = {guidance}",
                steps=args.steps,
                resolution=args.resolution,
                model=MODEL,
            )
        )
        with serve(catalog, work / "home") as server:
            run(args, catalog, server, description)


def build_random_pipeline(path: Path) -> tuple[Path, str]:
    """A small SD-style pipeline with seeded random weights, saved like a real model dir.

    tests/engine/tiny_pipeline.py's recipe, scaled up: three UNet levels with cross-attention
    and a four-level VAE (latents 1/8 of the image, as in SD), sized so that a 4-step 512x512
    render takes about a second on one core of a small CPU, like a few-step distilled model.
    """
    import torch
    from diffusers import AutoencoderKL, UNet2DConditionModel
    from transformers import CLIPTextConfig, CLIPTextModel

    sys.path.insert(0, str(REPO))  # the tokenizer recipe lives with the tests
    from tests.engine.tiny_pipeline import (
        MAX_PROMPT_TOKENS,
        TEXT_VOCAB_SIZE,
        save_sd_pipeline,
    )

    torch.manual_seed(0)
    unet = UNet2DConditionModel(
        sample_size=64,
        block_out_channels=(64, 128, 128),
        layers_per_block=1,
        down_block_types=("DownBlock2D", "CrossAttnDownBlock2D", "CrossAttnDownBlock2D"),
        up_block_types=("CrossAttnUpBlock2D", "CrossAttnUpBlock2D", "UpBlock2D"),
        cross_attention_dim=64,
        attention_head_dim=8,
    )
    vae = AutoencoderKL(
        block_out_channels=(16, 16, 32, 64),
        down_block_types=("DownEncoderBlock2D",) * 4,
        up_block_types=("UpDecoderBlock2D",) * 4,
        latent_channels=4,
        norm_num_groups=16,
        sample_size=512,
    )
    text_encoder = CLIPTextModel(
        CLIPTextConfig(
            bos_token_id=0,
            eos_token_id=2,
            pad_token_id=1,
            hidden_size=64,
            intermediate_size=128,
            num_attention_heads=4,
            num_hidden_layers=2,
            vocab_size=TEXT_VOCAB_SIZE,
            max_position_embeddings=MAX_PROMPT_TOKENS,
        )
    )
    save_sd_pipeline(path, unet, vae, text_encoder)

    def millions(module: Any) -> str:
        return f"{sum(p.numel() for p in module.parameters()) / 1e6:.1f}M"

    description = (
        f"random-weight SD-style pipeline built from configs (UNet {millions(unet)}, "
        f"VAE {millions(vae)}, CLIP text {millions(text_encoder)} params; Euler)"
    )
    return path, description


@dataclass
class Server:
    client: openai.OpenAI
    pid: int


@contextlib.contextmanager
def serve(catalog: Path, home: Path) -> Iterator[Server]:
    """`limner serve` on a free 127.0.0.1 port and an SDK client for it; stops the server after."""
    # A project key: model endpoints refuse admin keys, as OpenAI's do.
    project_key = "sk-proj-bench-" + secrets.token_hex(16)
    settings = {"LIMNER_API_KEY": project_key}
    # trust_env=False: no proxy from the environment; every byte stays on 127.0.0.1.
    with (
        limner_serve(home, ["--catalog", str(catalog)], settings) as served,
        httpx.Client(trust_env=False, timeout=300) as http,
        openai.OpenAI(
            base_url=served.base_url + "/v1", api_key=project_key, max_retries=0, http_client=http
        ) as client,
    ):
        yield Server(client, served.pid)


@dataclass
class Timings:
    """Wall seconds per call, and CPU seconds (server + this process for http; this process for
    the engine): CPU time moves less than wall time when other jobs share the CPU."""

    http: list[float] = field(default_factory=list)
    engine: list[float] = field(default_factory=list)
    http_cpu: list[float] = field(default_factory=list)
    engine_cpu: list[float] = field(default_factory=list)
    http_image: bytes = b""
    engine_image: Image.Image | None = None
    load_start: float = 0.0


def run(args: argparse.Namespace, catalog_path: Path, server: Server, model: str) -> None:
    from diffusers.utils import logging as diffusers_logging

    from limner.catalog import Catalog
    from limner.engine.diffusers_backend import DiffusersBackend
    from limner.engine.local import LocalEngine, render
    from limner.engine.types import RenderJob
    from limner.images.rules import resolve

    # 1. The job the server builds for this request: rules + catalog give size, steps, seed.
    catalog = Catalog.from_toml(catalog_path)
    body = {"model": MODEL, "prompt": PROMPT, "size": SIZE, "quality": QUALITY, "seed": SEED}
    request = resolve("generation", body, catalog)
    spec = request.entry.served.backend
    job = RenderJob(
        backend=spec.name,
        prompt=request.prompt,
        n=request.n,
        width=request.working_width,
        height=request.working_height,
        steps=request.steps,
        seed=request.seed,
        guidance_scale=spec.guidance_scale,
    )
    diffusers_logging.disable_progress_bar()
    engine = LocalEngine({spec.name: DiffusersBackend(spec.name, spec.path, spec.device)})
    runner = asyncio.Runner()
    client = server.client

    def engine_call() -> Image.Image:
        return runner.run(render(engine, job))[0]

    def http_call() -> openai.types.ImagesResponse:
        return client.images.generate(
            model=MODEL, prompt=PROMPT, size=SIZE, quality=QUALITY, extra_body={"seed": SEED}
        )

    # 2. Warm-up, then alternate which goes first, so drift in machine load hits both alike.
    try:
        for _ in range(args.warmup):
            http_call()
            engine_call()
        timings = Timings(load_start=os.getloadavg()[0])
        for index in range(args.runs):
            calls = [("http", http_call), ("engine", engine_call)]
            for kind, call in calls if index % 2 == 0 else calls[::-1]:
                cpu = time.process_time() + _cpu_seconds(server.pid)
                start = time.perf_counter()
                output = call()
                getattr(timings, kind).append(time.perf_counter() - start)
                cpu = time.process_time() + _cpu_seconds(server.pid) - cpu
                getattr(timings, kind + "_cpu").append(cpu)
                if isinstance(output, Image.Image):
                    timings.engine_image = output
                else:  # decoding is the client's business, outside the timed call
                    assert output.data and output.data[0].b64_json
                    timings.http_image = base64.b64decode(output.data[0].b64_json)
        floor = _median_of(lambda: client.models.list(), args.runs)
    finally:
        runner.run(engine.close())
        runner.close()

    report(args, model, request, job, timings, floor)


def report(
    args: argparse.Namespace,
    model: str,
    request: Any,
    job: Any,
    timings: Timings,
    floor: float,
) -> None:
    import torch

    from limner.images import outputs, schemas
    from limner.images.usage import count_usage

    http, engine = statistics.median(timings.http), statistics.median(timings.engine)

    # The service's steps after the engine, on the engine's own image, as OutputStage.encode
    # and api/images.py run them.
    rendered = timings.engine_image
    assert rendered is not None
    fitted = outputs.fit_to_size(rendered, request.width, request.height)
    finished = outputs.apply_background(fitted, request.background)
    png = outputs.encode(finished, request.output_format, request.output_compression)
    b64 = base64.b64encode(png).decode()
    wire = schemas.ImagesResponse(created=0, data=[schemas.Image(b64_json=b64)])
    body = json.dumps(wire.model_dump(mode="json", exclude_none=True)).encode()
    parts = {
        "count usage (o200k prompt tokens)": _median_of(
            lambda: count_usage(request.prompt, [], request.size, request.quality, request.n),
            args.runs,
        ),
        f"fit_to_size {job.width}x{job.height} -> {request.size} (LANCZOS)": _median_of(
            lambda: outputs.fit_to_size(rendered, request.width, request.height), args.runs
        ),
        f"apply_background({request.background})": _median_of(
            lambda: outputs.apply_background(fitted, request.background), args.runs
        ),
        f"encode {request.output_format} ({len(png) / 1e6:.2f} MB)": _median_of(
            lambda: outputs.encode(finished, request.output_format, request.output_compression),
            args.runs,
        ),
        f"base64 ({len(b64) / 1e6:.2f} MB)": _median_of(
            lambda: base64.b64encode(png).decode(), args.runs
        ),
        "response JSON (model_dump_json, as api/images.py)": _median_of(
            lambda: wire.model_dump_json(exclude_none=True).encode(), args.runs
        ),
        "client: json.loads + SDK ImagesResponse": _median_of(
            lambda: openai.types.ImagesResponse.construct(**json.loads(body)), args.runs
        ),
        "HTTP floor: auth + routing + SDK (GET /v1/models)": floor,
    }
    remainder = http - engine - sum(parts.values())
    same = _same_pixels(timings.http_image, finished)

    print(f"model: {model}")
    print(
        f"request: {request.model} size={request.size} quality={QUALITY} seed={SEED} -> "
        f"working {job.width}x{job.height}, {job.steps} steps, guidance {job.guidance_scale}"
    )
    print(
        f"runs: {args.runs} of each, interleaved after {args.warmup} warm-up; torch threads "
        f"{torch.get_num_threads()} of {os.cpu_count()} cpus; load average "
        f"{timings.load_start:.2f} at start, {os.getloadavg()[0]:.2f} at end"
    )
    print(f"engine only (LocalEngine + DiffusersBackend, in process): {_spread(timings.engine)}")
    print(f"http end to end (openai SDK -> limner serve):            {_spread(timings.http)}")
    print(f"difference of medians: {(http - engine) * 1000:.1f} ms; made of (in-process medians):")
    for name, seconds in parts.items():
        print(f"  {seconds * 1000:7.1f} ms  {name}")
    print(
        f"  {remainder * 1000:7.1f} ms  remainder: loopback transfer, thread hops, and the two "
        "processes' render-speed noise (negative: the server rendered faster)"
    )
    print(f"http image == engine image finished in process: {'yes' if same else 'NO'}")
    paired = statistics.median(h / e for h, e in zip(timings.http, timings.engine, strict=True))
    http_cpu, engine_cpu = (
        statistics.median(timings.http_cpu),
        statistics.median(timings.engine_cpu),
    )
    print(f"CPU time medians: http {http_cpu:.3f} s (server + client), engine {engine_cpu:.3f} s")
    print(
        f"other estimates: paired ratios median {paired:.3f}, minimums "
        f"{min(timings.http) / min(timings.engine):.3f}, CPU time {http_cpu / engine_cpu:.3f}, "
        f"bottom-up (engine + parts above) {(engine + sum(parts.values())) / engine:.3f}"
    )
    print(f"overhead ratio (http / engine) at {SIZE} quality={QUALITY}: {http / engine:.2f}")


def _describe(path: Path) -> str:
    index = path / "model_index.json"
    name = json.loads(index.read_text()).get("_class_name", "?") if index.is_file() else "?"
    return f"{name} pipeline at {path}"


def _median_of(call: Callable[[], object], runs: int) -> float:
    call()
    samples = []
    for _ in range(max(runs, 5)):
        start = time.perf_counter()
        call()
        samples.append(time.perf_counter() - start)
    return statistics.median(samples)


def _cpu_seconds(pid: int) -> float:
    """CPU time of every live thread of process `pid`, from /proc (ns resolution)."""
    total = 0
    for task in Path(f"/proc/{pid}/task").iterdir():
        # A thread may end between the listing and the read.
        with contextlib.suppress(FileNotFoundError, ProcessLookupError):
            total += int((task / "schedstat").read_text().split()[0])
    return total / 1e9


def _spread(samples: list[float]) -> str:
    return (
        f"median {statistics.median(samples):.3f} s "
        f"(min {min(samples):.3f}, max {max(samples):.3f})"
    )


def _same_pixels(data: bytes, expected: Image.Image) -> bool:
    image = Image.open(io.BytesIO(data))
    return image.size == expected.size and image.tobytes() == expected.convert(image.mode).tobytes()


if __name__ == "__main__":
    main()
