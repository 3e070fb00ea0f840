"""limner-mini prompt adherence per attribute and quality tier, and engine latency per image.

Prompts are worded only with the sentence templates held out from training
(training.scenes.HELDOUT_TEMPLATES); a deterministic detector (training.detect) reads background,
colour, shape, position and count from each output. A colour counts as right when the detector's
basic colour matches the basic colour of whatever name the prompt used ("crimson" → red).

    python bench/adherence.py                    # 200 prompts, every tier
    python bench/adherence.py --prompts 50 --tiers low
"""

import argparse
import os
import statistics
import sys
import time
from pathlib import Path

os.environ.setdefault("HF_HUB_OFFLINE", "1")
sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from limner.app import DEFAULT_CATALOG
from limner.catalog import QUALITIES, Catalog
from limner.engine.devices import set_cpu_threads
from limner.engine.diffusers_backend import DiffusersBackend
from limner.engine.types import RenderJob, StepInfo
from limner.images.outputs import encode, fit_to_size
from training.evaluate import heldout_prompts, judge, summarise
from training.scenes import Captioned

GOALS = {"colour": 0.90, "shape": 0.85, "position": 0.85, "count": 0.75}


def _ignore(_info: StepInfo) -> None:
    return None


def run_tier(
    backend: DiffusersBackend, steps: int, prompts: list[Captioned]
) -> tuple[dict[str, float], list[float]]:
    verdicts: list[dict[str, bool]] = []
    latencies: list[float] = []
    for index, item in enumerate(prompts):
        job = RenderJob(
            backend="limner-mini",
            prompt=item.text,
            n=1,
            width=32,
            height=32,
            steps=steps,
            seed=index,
        )
        started = time.perf_counter()
        image = backend.render(job, _ignore)[0]
        encode(fit_to_size(image, 1024, 1024), "png", 100)
        latencies.append(time.perf_counter() - started)
        verdicts.append(judge(item, image))
    return summarise(verdicts), latencies


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--prompts", type=int, default=200)
    parser.add_argument("--tiers", nargs="+", default=list(QUALITIES), choices=QUALITIES)
    parser.add_argument(
        "--model", type=Path, default=None, help="pipeline dir (default: the shipped limner-mini)"
    )
    parser.add_argument(
        "--threads",
        type=int,
        default=1,
        help="torch threads (0: torch's default). One is fastest for a 2M-parameter model and "
        "immune to other processes on the machine; OpenMP oversubscription slows it 10-30x.",
    )
    args = parser.parse_args()
    if args.threads:
        set_cpu_threads(args.threads)

    spec = Catalog.from_toml(DEFAULT_CATALOG).resolve("limner-mini").served.backend
    backend = DiffusersBackend("limner-mini", args.model or spec.path, device="cpu")
    prompts = heldout_prompts(args.prompts, seed=2026)
    print(
        f"model: {args.model or spec.path}; {len(prompts)} held-out prompts;",
        f"e.g. {prompts[0].text!r}",
    )
    backend.render(
        RenderJob(
            backend="limner-mini", prompt="warm up", n=1, width=32, height=32, steps=2, seed=0
        ),
        _ignore,
    )

    attributes: list[str] = []
    rows = {}
    for quality in args.tiers:
        steps = spec.tiers[quality].steps
        scores, latencies = run_tier(backend, steps, prompts)
        rows[quality] = (steps, scores, latencies)
        attributes = sorted(set(attributes) | set(scores))
    print(
        f"\n{'tier':8}{'steps':>6}"
        + "".join(f"{name:>12}" for name in attributes)
        + f"{'p50 s/img':>12}"
    )
    for quality, (steps, scores, latencies) in rows.items():
        cells = "".join(f"{scores.get(name, float('nan')):>12.1%}" for name in attributes)
        print(f"{quality:8}{steps:>6}{cells}{statistics.median(latencies):>12.3f}")
    if "medium" in rows:
        scores = rows["medium"][1]
        verdict = ", ".join(
            f"{name} {scores.get(name, 0):.1%} (goal {goal:.0%}) "
            + ("met" if scores.get(name, 0) >= goal else "MISSED")
            for name, goal in GOALS.items()
        )
        print(f"\ngoals at quality=medium: {verdict}")
    if "low" in rows:
        latency = statistics.median(rows["low"][2])
        print(
            "engine latency per image at quality=low incl. upscale to 1024x1024 + PNG:",
            f"{latency:.3f} s (goal 0.5 s)",
        )


if __name__ == "__main__":
    main()
