"""Held-out adherence: prompts worded only with HELDOUT_TEMPLATES, judged by the detector.

`heldout_prompts` builds a fixed, seeded prompt set (single objects with position and
background, counts, relations); `judge` reads one generated image against its scene and says, per
attribute, whether it is right. The training script prints the totals at every eval point;
bench/adherence.py can reuse both.
"""

import random
from collections import defaultdict
from collections.abc import Iterable

from PIL import Image

from training.detect import Blob, position_of, read
from training.scenes import HELDOUT_TEMPLATES, Captioned, caption, sample_scene


def heldout_prompts(count: int = 80, seed: int = 1234) -> list[Captioned]:
    """`count` captions: 60% single objects, 20% counts, 20% relations, all held-out wording."""
    rng = random.Random(seed)
    wanted = {"single": round(count * 0.6), "count": round(count * 0.2)}
    wanted["relation"] = count - wanted["single"] - wanted["count"]
    found: list[Captioned] = []
    while len(found) < count:
        scene = sample_scene(rng)
        if wanted[scene.kind] == 0:
            continue
        wanted[scene.kind] -= 1
        found.append(
            caption(scene, rng, HELDOUT_TEMPLATES, says_position=True, says_background=True)
        )
    return found


def _find(blobs: Iterable[Blob], colour: str) -> Blob | None:
    return next((b for b in blobs if b.colour == colour), None)


def judge(item: Captioned, image: Image.Image) -> dict[str, bool]:
    """Per attribute: was it rendered as the caption says?"""
    scene, reading = item.scene, read(image)
    verdict = {"background": reading.background == scene.background.basic}
    objects = reading.objects
    if scene.kind == "single":
        thing = scene.things[0]
        main = objects[0] if objects else None
        verdict["colour"] = main is not None and main.colour == thing.colour.basic
        verdict["shape"] = main is not None and main.shape == thing.shape
        verdict["position"] = main is not None and position_of(main) == scene.position
    elif scene.kind == "count":
        verdict["count"] = len(objects) == len(scene.things)
        verdict["colour"] = bool(objects) and all(
            b.colour == scene.things[0].colour.basic for b in objects
        )
    else:
        first = _find(objects, scene.things[0].colour.basic)
        second = _find(objects, scene.things[1].colour.basic)
        verdict["colour"] = first is not None and second is not None
        ok = False
        if first is not None and second is not None:
            dx, dy = first.cx - second.cx, first.cy - second.cy
            ok = {
                "above": dy < -3 and abs(dy) > abs(dx),
                "below": dy > 3 and abs(dy) > abs(dx),
                "next to": abs(dx) > 3 and abs(dx) > abs(dy),
                "left of": dx < -3 and abs(dx) > abs(dy),
                "right of": dx > 3 and abs(dx) > abs(dy),
            }[scene.relation or "above"]
        verdict["relation"] = ok
    return verdict


def summarise(verdicts: list[dict[str, bool]]) -> dict[str, float]:
    """Share right per attribute, over the prompts that state it."""
    totals: dict[str, list[int]] = defaultdict(lambda: [0, 0])
    for verdict in verdicts:
        for name, right in verdict.items():
            totals[name][0] += int(right)
            totals[name][1] += 1
    return {name: right / seen for name, (right, seen) in sorted(totals.items())}
