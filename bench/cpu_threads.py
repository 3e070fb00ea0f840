"""limner-mini's call time on 1 CPU thread vs all, from a worker thread as the server calls it.

A backend's calls run on its fixed catalog `cpu_threads` (seeds must give the same bytes on
every call, and pixels depend on the thread count), so the count is chosen once, here, by
measurement: for one image and for a batch of 8, the median of 7 calls at 16 steps (quality
high), then the ratio all-threads / one-thread (above 1: one thread is faster).

    python bench/cpu_threads.py [--calls 7] [--steps 16]
"""

import argparse
import statistics
import threading
import time
from pathlib import Path

import torch

from limner.engine.diffusers_backend import DiffusersBackend
from limner.engine.types import RenderJob

MODEL_DIR = Path(__file__).resolve().parents[1] / "limner" / "assets" / "limner-mini"
PROMPT = "a red square on the left on a blue background"


def median_call(backend: DiffusersBackend, n: int, steps: int, calls: int) -> float:
    job = RenderJob(
        backend="limner-mini", prompt=PROMPT, n=n, width=32, height=32, steps=steps, seed=1
    )
    backend.render(job, lambda _step: None)  # warm-up: kernels tuned for this batch size
    times = []
    for _ in range(calls):
        started = time.perf_counter()
        backend.render(job, lambda _step: None)
        times.append(time.perf_counter() - started)
    return statistics.median(times)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--calls", type=int, default=7)
    parser.add_argument("--steps", type=int, default=16)
    args = parser.parse_args()
    most = torch.get_num_threads()
    results: dict[tuple[int, int], float] = {}

    def measure() -> None:
        for threads in (1, most):
            backend = DiffusersBackend("limner-mini", MODEL_DIR, "cpu", cpu_threads=threads)
            for n in (1, 8):
                results[threads, n] = median_call(backend, n, args.steps, args.calls)

    worker = threading.Thread(target=measure)  # the engine's worker is not the main thread
    worker.start()
    worker.join()
    for n in (1, 8):
        one, every = results[1, n], results[most, n]
        print(
            f"{n} image(s): 1 thread {one * 1000:.0f} ms, {most} threads {every * 1000:.0f} ms, "
            f"ratio {every / one:.2f}"
        )


if __name__ == "__main__":
    main()
