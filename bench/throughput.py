"""Engine throughput with and without cross-request batching, on the shipped limner-mini.

Loads limner-mini through DiffusersBackend at its catalog entry for quality=low (steps and working
size read from limner/catalog.default.toml) and drives LocalEngine.stream directly with asyncio:
at each concurrency (1, 2, 4, 8 clients, each sending one n=1 request after another, with its
own prompt and seed) it runs the same requests with batching on (max_batch_images 8) and off (1),
and prints images/second, p50 and p95 latency and the mean images per pipeline call. Then the two
goals: throughput at concurrency 8, on vs off (goal >= 3x), and p95 latency at concurrency 8 with
batching on vs solo latency (p50 at concurrency 1, batching off; goal <= 2x).

    python bench/throughput.py [--requests 32] [--threads 1] [--rounds 1] [--batch-wait-ms 10]
                               [--device cpu|cuda] [--dtype auto|float32|bfloat16|float16]
"""

import argparse
import asyncio
import os
import statistics
import sys
import time
import tomllib
import warnings
from dataclasses import dataclass
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parents[1]
CATALOG = REPO / "limner" / "catalog.default.toml"
MODEL_DIR = REPO / "limner" / "assets" / "limner-mini"
BACKEND = "limner-mini"
CONCURRENCY = (1, 2, 4, 8)
PROMPTS = (
    "a red square on the left on a blue background",
    "a yellow circle at the top on a green background",
    "two white triangles on a black background",
    "a purple star on the right on an orange background",
)


@dataclass(frozen=True)
class Result:
    concurrency: int
    batching: bool
    images_per_s: float
    p50_s: float
    p95_s: float
    mean_batch: float


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--requests", type=int, default=32, help="requests per measurement")
    parser.add_argument("--rounds", type=int, default=1, help="measurements per setting (median)")
    parser.add_argument("--batch-wait-ms", type=float, default=10.0, help="batching window")
    parser.add_argument("--device", default="cpu", help="cpu, cuda, cuda:1, auto")
    parser.add_argument(
        "--dtype", default="auto", help="weights: auto (float32 on CPU), float32, bfloat16, float16"
    )
    parser.add_argument(
        "--threads",
        type=int,
        default=1,
        help="torch CPU threads; 0: torch's default (one per core)",
    )
    args = parser.parse_args()
    if args.threads > 0:
        # Before torch starts: on a CPU shared with other work, one descheduled OpenMP thread
        # stalls every op, and runs vary several-fold.
        os.environ["OMP_NUM_THREADS"] = os.environ["MKL_NUM_THREADS"] = str(args.threads)
    os.environ["HF_HUB_OFFLINE"] = "1"
    os.environ["TRANSFORMERS_VERBOSITY"] = os.environ["DIFFUSERS_VERBOSITY"] = "error"
    warnings.filterwarnings("ignore")
    sys.path.insert(0, str(REPO))

    import diffusers
    import transformers

    from limner.engine.diffusers_backend import DiffusersBackend

    # Loading bars would bury the table.
    diffusers.utils.logging.disable_progress_bar()
    transformers.utils.logging.disable_progress_bar()
    steps, resolution = low_quality_tier()
    backend = DiffusersBackend(BACKEND, MODEL_DIR, device=args.device, dtype=args.dtype)
    print(
        f"limner-mini, quality=low: {steps} steps at {resolution}x{resolution}, n=1 per request, "
        f"{args.requests} requests per measurement, median of {args.rounds} round(s), "
        f"batch window {args.batch_wait_ms:g} ms, device {backend.device}, "
        f"weights {backend.info().dtype}, torch threads {args.threads or 'default'}"
    )
    results = asyncio.run(measure_all(backend, steps, resolution, args))
    report(results)


def low_quality_tier() -> tuple[int, int]:
    tier = tomllib.loads(CATALOG.read_text())["backends"][BACKEND]["quality"]["low"]
    return int(tier["steps"]), int(tier["resolution"])


async def measure_all(
    backend: Any, steps: int, resolution: int, args: argparse.Namespace
) -> list[Result]:
    from limner.engine.local import LocalEngine

    engines = {
        batching: LocalEngine(
            {BACKEND: backend},
            max_queue=64,
            max_batch_images=8 if batching else 1,
            batch_wait_ms=args.batch_wait_ms,
        )
        for batching in (False, True)
    }
    try:
        # Warm-up: first calls allocate and tune kernels for each batch size they meet: eight
        # calls of each size the measurements will make.
        for engine in engines.values():
            for concurrency in CONCURRENCY:
                await run_clients(engine, concurrency, 8 * concurrency, steps, resolution, 10_000)
        results = []
        for concurrency in CONCURRENCY:
            for batching in (False, True):
                rounds = [
                    await measure(engines[batching], concurrency, batching, steps, resolution, args)
                    for _ in range(args.rounds)
                ]
                results.append(median_round(rounds))
        return results
    finally:
        for engine in engines.values():
            await engine.close()


async def measure(
    engine: Any,
    concurrency: int,
    batching: bool,
    steps: int,
    resolution: int,
    args: argparse.Namespace,
) -> Result:
    calls_before, images_before = batch_counts()
    started = time.perf_counter()
    latencies = await run_clients(engine, concurrency, args.requests, steps, resolution, 0)
    elapsed = time.perf_counter() - started
    calls_after, images_after = batch_counts()
    ordered = sorted(latencies)
    return Result(
        concurrency=concurrency,
        batching=batching,
        images_per_s=len(latencies) / elapsed,
        p50_s=statistics.median(ordered),
        p95_s=percentile(ordered, 0.95),
        mean_batch=(images_after - images_before) / max(calls_after - calls_before, 1),
    )


async def run_clients(
    engine: Any, concurrency: int, requests: int, steps: int, resolution: int, seed_base: int
) -> list[float]:
    """`concurrency` clients share `requests` requests, each client one at a time."""
    from limner.engine.types import Rendered, RenderJob

    latencies: list[float] = []
    counter = iter(range(requests))

    async def client() -> None:
        for index in counter:
            job = RenderJob(
                backend=BACKEND,
                prompt=PROMPTS[index % len(PROMPTS)],
                n=1,
                width=resolution,
                height=resolution,
                steps=steps,
                seed=seed_base + index,
            )
            started = time.perf_counter()
            async for event in engine.stream(job):
                if isinstance(event, Rendered):
                    latencies.append(time.perf_counter() - started)

    await asyncio.gather(*(client() for _ in range(concurrency)))
    return latencies


def batch_counts() -> tuple[float, float]:
    """Pipeline calls and the images they carried, so far, from the engine's own metrics."""
    from prometheus_client import REGISTRY

    labels = {"model": BACKEND}
    calls = REGISTRY.get_sample_value("limner_batch_size_count", labels) or 0.0
    images = REGISTRY.get_sample_value("limner_batch_size_sum", labels) or 0.0
    return calls, images


def percentile(ordered: list[float], share: float) -> float:
    """Nearest-rank percentile of an ascending list."""
    rank = max(1, round(share * len(ordered)))
    return ordered[min(rank, len(ordered)) - 1]


def median_round(rounds: list[Result]) -> Result:
    return sorted(rounds, key=lambda result: result.images_per_s)[len(rounds) // 2]


def report(results: list[Result]) -> None:
    print()
    print(
        f"{'concurrency':>11}  {'batching':>8}  {'images/s':>8}  {'p50 ms':>7}  {'p95 ms':>7}  "
        f"{'images/call':>11}"
    )
    for r in results:
        print(
            f"{r.concurrency:>11}  {'on' if r.batching else 'off':>8}  {r.images_per_s:>8.2f}  "
            f"{r.p50_s * 1000:>7.0f}  {r.p95_s * 1000:>7.0f}  {r.mean_batch:>11.2f}"
        )
    by_setting = {(r.concurrency, r.batching): r for r in results}
    top = max(CONCURRENCY)
    on, off, solo = by_setting[top, True], by_setting[top, False], by_setting[1, False]
    speedup = on.images_per_s / off.images_per_s
    stretch = on.p95_s / solo.p50_s
    print()
    print(
        f"throughput at concurrency {top}, batching on vs off: {speedup:.2f}x "
        f"(goal >= 3x: {'met' if speedup >= 3 else 'not met'})"
    )
    print(
        f"p95 at concurrency {top} (on) vs solo latency ({solo.p50_s * 1000:.0f} ms): "
        f"{stretch:.2f}x (goal <= 2x: {'met' if stretch <= 2 else 'not met'})"
    )


if __name__ == "__main__":
    main()
