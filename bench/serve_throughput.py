"""End to end under load: `limner serve` as installed (limner-mini, moderation on) driven by the
official `openai` SDK at concurrency 1, 2, 4 and 8.

bench/throughput.py measures the engine alone; this adds everything a client waits for (HTTP,
authentication and metering, moderation of the prompt and the image, upscaling to the requested
size, encoding, base64). Each concurrency runs `--requests` generations (quality=low) after a
warm-up of two per client, and prints images/second with p50 and p95 latency. Extra server
settings pass through as environment variables, e.g. LIMNER_MAX_BATCH_IMAGES=1 to compare
batching off.

    python bench/serve_throughput.py [--requests 32] [--size 1024x1024] [--format png] [--n 1]
                                     [NAME=VALUE ...]
"""

import argparse
import secrets
import statistics
import tempfile
import time
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from contextlib import contextmanager
from pathlib import Path

import openai
from served import limner_serve
from throughput import PROMPTS

CONCURRENCY = (1, 2, 4, 8)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--requests", type=int, default=32, help="requests per concurrency")
    parser.add_argument("--size", default="1024x1024")
    parser.add_argument("--format", default="png", choices=("png", "jpeg", "webp"))
    parser.add_argument("--n", type=int, default=1, help="images per request")
    parser.add_argument("settings", nargs="*", help="NAME=VALUE for the server's environment")
    args = parser.parse_args()
    settings = dict(setting.split("=", 1) for setting in args.settings)
    key = "sk-proj-" + secrets.token_hex(20)
    with serve(key, settings) as base_url:
        client = openai.OpenAI(base_url=base_url, api_key=key, max_retries=5, timeout=600)
        print(
            f"limner serve (defaults{', ' + ', '.join(args.settings) if args.settings else ''}): "
            f"quality=low, size {args.size}, {args.format}, n={args.n}, "
            f"{args.requests} requests each"
        )
        print(f"{'concurrency':>11}  {'images/s':>8}  {'p50 ms':>7}  {'p95 ms':>7}")
        for concurrency in CONCURRENCY:
            rate, p50, p95 = measure(client, concurrency, args)
            print(f"{concurrency:>11}  {rate:>8.2f}  {p50 * 1000:>7.0f}  {p95 * 1000:>7.0f}")


def measure(
    client: openai.OpenAI, concurrency: int, args: argparse.Namespace
) -> tuple[float, float, float]:
    def one(index: int) -> float:
        started = time.perf_counter()
        client.images.generate(
            model="gpt-image-1",
            prompt=PROMPTS[index % len(PROMPTS)],
            quality="low",
            size=args.size,
            output_format=args.format,
            n=args.n,
        )
        return time.perf_counter() - started

    with ThreadPoolExecutor(concurrency) as pool:
        list(pool.map(one, range(2 * concurrency)))
        started = time.perf_counter()
        latencies = sorted(pool.map(one, range(args.requests)))
        elapsed = time.perf_counter() - started
    p95 = latencies[max(1, round(0.95 * len(latencies))) - 1]
    return args.n * len(latencies) / elapsed, statistics.median(latencies), p95


@contextmanager
def serve(key: str, settings: dict[str, str]) -> Iterator[str]:
    """A `limner serve` with a fresh home; its API base URL."""
    with tempfile.TemporaryDirectory() as home:
        env = {"LIMNER_API_KEY": key, "HF_HUB_OFFLINE": "1", **settings}
        with limner_serve(Path(home) / "home", [], env) as served:
            yield served.base_url + "/v1"


if __name__ == "__main__":
    main()
