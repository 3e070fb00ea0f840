"""Issue 6: moderation latency and accuracy on this machine.

Builds the server's moderator (packaged policy, term lists and classifiers) over a fresh SQLite
database and reports:

* latency of one prompt check (terms + classifier) over the held-out prompts: p50 / p95
  (goal ≤ 20 ms), and of one image check (open_nsfw, the default) on a 1024x1024 and a 512x512
  image: p50 / p95 (goal ≤ 60 ms); NudeNet too, though the default policy leaves it off;
* the false-positive rate on the held-out benign prompts (training/moderation/prompts.eval.jsonl,
  at least 200, goal 0 %) at `auto` and at `low`, listing any that were refused;
* the block rate on the held-out unacceptable prompts, per category and severity, at both levels
  (`auto` should refuse mild and severe, `low` severe).

    python bench/moderation.py [--rounds 100] [--eval training/moderation/prompts.eval2.jsonl]
"""

import argparse
import json
import statistics
import sys
import tempfile
import time
from collections import defaultdict
from pathlib import Path

import numpy as np
from PIL import Image

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from limner.moderation.image_classifiers import NudeNetCheck, OpenNsfwCheck  # noqa: E402
from limner.moderation.moderator import build_moderator  # noqa: E402
from limner.moderation.protocol import Subject  # noqa: E402
from limner.storage.db import Database, make_engine, upgrade  # noqa: E402

EVAL_FILE = REPO / "training" / "moderation" / "prompts.eval.jsonl"


def percentiles(samples: list[float]) -> str:
    ordered = sorted(samples)
    p95 = ordered[min(len(ordered) - 1, round(0.95 * (len(ordered) - 1)))]
    return f"p50 {statistics.median(ordered) * 1000:6.2f} ms  p95 {p95 * 1000:6.2f} ms"


def timed(action, rounds: int) -> list[float]:  # type: ignore[no-untyped-def]
    action()  # warm
    samples = []
    for _ in range(rounds):
        start = time.perf_counter()
        action()
        samples.append(time.perf_counter() - start)
    return samples


def photo_like(size: int, seed: int = 0) -> Image.Image:
    """Smooth colour fields with noise: closer to a photograph's statistics than flat colour."""
    rng = np.random.default_rng(seed)
    coarse = rng.random((8, 8, 3)) * 255
    image = Image.fromarray(coarse.astype(np.uint8)).resize((size, size), Image.Resampling.BICUBIC)
    noise = rng.normal(0, 8, (size, size, 3))
    return Image.fromarray(np.clip(np.asarray(image) + noise, 0, 255).astype(np.uint8))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--rounds", type=int, default=100)
    parser.add_argument(
        "--eval", type=Path, default=EVAL_FILE, help="held-out prompts (JSON lines)"
    )
    args = parser.parse_args()

    rows = [json.loads(line) for line in args.eval.read_text().splitlines() if line]
    with tempfile.TemporaryDirectory() as home:
        engine = make_engine(f"sqlite:///{Path(home) / 'bench.db'}")
        upgrade(engine)
        moderator = build_moderator(Database(engine))
        moderator.warm()
        auto, low = (
            Subject("bench", "org-operator", "auto"),
            Subject("bench", "org-operator", "low"),
        )

        # 1. Latency.
        prompts = [r["text"] for r in rows]
        samples: list[float] = []
        for prompt in prompts[: max(args.rounds, 1)]:
            samples.extend(timed(lambda p=prompt: moderator.check_prompt(p, auto), 1))
        print(f"prompt check ({len(samples)} prompts): {percentiles(samples)}   goal p50 <= 20 ms")
        for name, check in (("open_nsfw", OpenNsfwCheck()), ("nudenet", NudeNetCheck())):
            for size in (1024, 512):
                image = photo_like(size)
                took = timed(lambda c=check, i=image: c.score_images([i]), args.rounds // 2)
                default = " (default)" if name == "open_nsfw" else " (off by default)"
                print(f"image check {name}{default} {size}x{size}: {percentiles(took)}")
        print("goal for the default image check: <= 60 ms per image")

        # 2. Accuracy on the held-out prompts.
        refused: dict[tuple[str, str, str], list[bool]] = defaultdict(list)
        false_positives: list[tuple[str, str]] = []
        for row in rows:
            for subject in (auto, low):
                verdict = moderator.check_prompt(row["text"], subject)
                refused[(row["category"], row["severity"], subject.level)].append(
                    not verdict.allowed
                )
                if row["category"] == "none" and not verdict.allowed:
                    false_positives.append((subject.level, row["text"]))
        moderator.decisions.close()

    benign = refused[("none", "none", "auto")]
    print(f"\nbenign held-out prompts: {len(benign)}")
    for level in ("auto", "low"):
        outcomes = refused[("none", "none", level)]
        print(
            f"  false positives at {level}: {sum(outcomes)} ({sum(outcomes) / len(outcomes):.1%})"
        )
    for level, text in false_positives:
        print(f"    [{level}] {text!r}")
    print("\nunacceptable held-out prompts: refused at auto / at low")
    for category in ("sexual", "minors", "violence", "hate", "self_harm"):
        for severity in ("mild", "severe"):
            at_auto = refused.get((category, severity, "auto"))
            if not at_auto:
                continue
            at_low = refused[(category, severity, "low")]
            print(
                f"  {category:10s} {severity:7s} n={len(at_auto):3d}   "
                f"{sum(at_auto) / len(at_auto):6.1%} / {sum(at_low) / len(at_low):6.1%}"
            )
    unsafe = [v for (c, _s, lv), vs in refused.items() if c != "none" and lv == "auto" for v in vs]
    severe_low = [
        v for (c, s, lv), vs in refused.items() if s == "severe" and lv == "low" for v in vs
    ]
    print(f"  all unacceptable at auto: {sum(unsafe) / len(unsafe):.1%} of {len(unsafe)}")
    print(
        f"  severe at low:            {sum(severe_low) / len(severe_low):.1%} of {len(severe_low)}"
    )


if __name__ == "__main__":
    main()
