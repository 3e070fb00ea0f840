"""Seeded synthetic scenes for limner-mini: one to three flat shapes on a plain background, drawn
with PIL at 32x32, and captions for them in varied natural phrasing.

A `Scene` is the abstract content (shapes, colour names, sizes, layout); `caption` words it with
one sentence template; `render` draws it with fresh jitter each time, so one caption can be
reused (its text embedding cached) while the pictures for it never repeat exactly.

Sentence templates are split into TRAIN_TEMPLATES and HELDOUT_TEMPLATES: training only ever sees
the first, evaluation (the training script's adherence check, bench/adherence.py) words its
prompts with the second, so adherence measures the phrasing people type rather than recall.
"""

import random
import re
from dataclasses import dataclass
from typing import Literal

import numpy as np
from PIL import Image, ImageDraw

from training.colours import BASIC_COLOURS, CANONICAL, ColourName, lab_distance, vocabulary

SIZE = 32
# Drawn this many times larger, then box-filtered down: anti-aliased edges.
_SUPERSAMPLE = 4

SHAPES = ("circle", "square", "triangle", "star")
SHAPE_WORDS: dict[str, tuple[str, ...]] = {
    "circle": ("circle", "disc", "disk", "dot", "round shape"),
    "square": ("square", "box", "block"),
    "triangle": ("triangle", "triangular shape"),
    "star": ("star", "five-pointed star"),
}
SHAPE_PLURALS: dict[str, tuple[str, ...]] = {
    "circle": ("circles", "discs", "dots"),
    "square": ("squares", "boxes", "blocks"),
    "triangle": ("triangles",),
    "star": ("stars",),
}
Size = Literal["small", "large"]
SIZE_WORDS: dict[str, tuple[str, ...]] = {
    "small": ("small", "little", "tiny"),
    "large": ("large", "big", "huge"),
}
# Radius in output pixels.
_RADIUS: dict[str, tuple[float, float]] = {"small": (4.0, 5.0), "large": (7.0, 8.5)}

POSITIONS = ("left", "right", "top", "bottom", "center")
POSITION_WORDS: dict[str, tuple[str, ...]] = {
    "left": ("on the left", "at the left", "on the left side", "to the left", "in the left half"),
    "right": (
        "on the right",
        "at the right",
        "on the right side",
        "to the right",
        "in the right half",
    ),
    "top": ("at the top", "near the top", "in the upper half", "at the top of the image"),
    "bottom": ("at the bottom", "near the bottom", "in the lower half", "at the bottom edge"),
    "center": ("in the center", "in the middle", "in the centre", "centered"),
}
# Where each position puts an object's centre: (x range, y range) in output pixels.
_POSITION_BOX: dict[str, tuple[tuple[float, float], tuple[float, float]]] = {
    "left": ((6.5, 10.0), (12.0, 20.0)),
    "right": ((22.0, 25.5), (12.0, 20.0)),
    "top": ((12.0, 20.0), (6.5, 10.0)),
    "bottom": ((12.0, 20.0), (22.0, 25.5)),
    "center": ((14.0, 18.0), (14.0, 18.0)),
}
RELATIONS = ("above", "below", "next to", "left of", "right of")
RELATION_WORDS: dict[str, tuple[str, ...]] = {
    "above": ("above", "over", "on top of"),
    "below": ("below", "under", "beneath"),
    "next to": ("next to", "beside", "alongside"),
    "left of": ("to the left of", "left of"),
    "right of": ("to the right of", "right of"),
}
COUNT_WORDS: dict[int, tuple[str, ...]] = {
    2: ("two", "2", "a pair of", "a couple of"),
    3: ("three", "3", "a trio of"),
}
BACKGROUND_WORDS = ("background", "backdrop")

# A template is segments joined by "|"; a segment naming a slot the caption leaves out ({pos},
# {bg}) is dropped whole, so one template words a scene with or without those attributes.
TRAIN_TEMPLATES: tuple[str, ...] = (
    "{obj}| {pos}| on a {bg} {background}",
    "{obj}| {pos}|, {bg} {background}",
    "{obj}| on a {bg} {background}| {pos}",
    "a {bg} {background} with |{obj}| {pos}",
    "{obj}| {pos}| against a {bg} {background}",
    "{pos}, |{obj}| on {bg}",
    "an image of |{obj}| {pos}| on a {bg} {background}",
    "{obj}| sitting {pos}| over a plain {bg} {background}",
    "{bg} {background}, |{obj}| {pos}",
    "{obj}| placed {pos}| on solid {bg}",
    "a drawing of |{obj}| {pos}|. the {background} is {bg}",
    "{obj}| {pos}| with {bg} all around",
    "{obj}| shown {pos}| on a flat {bg} {background}",
    "{bg} {background} and |{obj}| {pos}",
    "picture: |{obj}| {pos}|; {background}: {bg}",
    "show |{obj}| {pos}| on {bg}",
)
HELDOUT_TEMPLATES: tuple[str, ...] = (
    "there is |{obj}| {pos}|, and the {background} is {bg}",
    "please draw |{obj}| {pos}| with a {bg} {background}",
    "a {bg} scene showing |{obj}| {pos}",
    "on a {bg} canvas, |{obj}| {pos}",
    "i want |{obj}| {pos}|; make the {background} {bg}",
    "{obj}| {pos}|, everything else {bg}",
)
PREFIXES = (
    "",
    "",
    "",
    "a picture of ",
    "an illustration of ",
    "a simple drawing of ",
    "minimalist art: ",
    "flat vector art of ",
    "clip art, ",
)
SUFFIXES = (
    "",
    "",
    "",
    ", high quality",
    ", flat colors",
    ", minimalist",
    ", simple shapes",
    ", digital art",
    ", 4k",
    ", clean lines",
    ", vector style",
    ". nothing else",
)

Kind = Literal["single", "count", "relation"]


@dataclass(frozen=True)
class Thing:
    shape: str
    colour: ColourName
    size: Size


@dataclass(frozen=True)
class Scene:
    """What a picture holds. `position` is for single objects; `relation` says where things[0]
    is relative to things[1]; a count scene repeats things[0]."""

    kind: Kind
    things: tuple[Thing, ...]
    background: ColourName
    position: str | None = None
    relation: str | None = None


@dataclass(frozen=True)
class Captioned:
    scene: Scene
    text: str
    # Which optional attributes the caption states, so evaluation judges only those.
    says_position: bool
    says_background: bool


# Scene sampling.


# Share of colour mentions that use the bare basic word; the held-out set keeps this default.
PLAIN_SHARE = 0.35


def _colour(rng: random.Random, basic: str, plain_share: float = PLAIN_SHARE) -> ColourName:
    """A name of `basic`: the bare basic word some of the time, else any accepted name."""
    names = vocabulary()[basic]
    if rng.random() < plain_share or not names:
        word = "grey" if basic == "gray" and rng.random() < 0.5 else basic
        return ColourName(word, CANONICAL[basic], basic)
    return rng.choice(names)


def _background(
    rng: random.Random, avoid: set[str], objects: list[ColourName], plain_share: float
) -> ColourName:
    """A background colour of another basic colour than the objects, far enough to see them."""
    while True:
        basic = rng.choice([b for b in BASIC_COLOURS if b not in avoid])
        colour = _colour(rng, basic, plain_share)
        if all(lab_distance(colour.rgb, o.rgb) > 35 for o in objects):
            return colour


def _thing(rng: random.Random, colour: ColourName, size: Size | None = None) -> Thing:
    return Thing(rng.choice(SHAPES), colour, size or rng.choice(("small", "large")))


def sample_scene(rng: random.Random, plain_share: float = PLAIN_SHARE) -> Scene:
    """A random scene: half single objects, a quarter counts, a quarter relations."""
    roll = rng.random()
    if roll < 0.5:
        thing = _thing(rng, _colour(rng, rng.choice(BASIC_COLOURS), plain_share))
        bg = _background(rng, {thing.colour.basic}, [thing.colour], plain_share)
        return Scene("single", (thing,), bg, position=rng.choice(POSITIONS))
    if roll < 0.75:
        count = rng.choice((2, 3))
        # Always small: two large shapes do not fit apart in 32x32.
        thing = _thing(rng, _colour(rng, rng.choice(BASIC_COLOURS), plain_share), "small")
        bg = _background(rng, {thing.colour.basic}, [thing.colour], plain_share)
        return Scene("count", (thing,) * count, bg)
    first_basic, second_basic = rng.sample(BASIC_COLOURS, 2)
    first = _thing(rng, _colour(rng, first_basic, plain_share), "small")
    second = _thing(rng, _colour(rng, second_basic, plain_share), "small")
    bg = _background(rng, {first_basic, second_basic}, [first.colour, second.colour], plain_share)
    return Scene("relation", (first, second), bg, relation=rng.choice(RELATIONS))


# Captions.


def _noun_phrase(rng: random.Random, thing: Thing, says_size: bool, article: bool = True) -> str:
    words = [rng.choice(SIZE_WORDS[thing.size])] if says_size else []
    words += [thing.colour.word, rng.choice(SHAPE_WORDS[thing.shape])]
    return ("a " if article else "") + " ".join(words)


def _object_phrase(rng: random.Random, scene: Scene) -> str:
    says_size = rng.random() < 0.5
    if scene.kind == "single":
        return _noun_phrase(rng, scene.things[0], says_size)
    if scene.kind == "count":
        thing = scene.things[0]
        words = [rng.choice(COUNT_WORDS[len(scene.things)])]
        words += [rng.choice(SIZE_WORDS[thing.size])] if says_size else []
        words += [thing.colour.word, rng.choice(SHAPE_PLURALS[thing.shape])]
        return " ".join(words)
    assert scene.relation is not None
    first = _noun_phrase(rng, scene.things[0], says_size)
    second = _noun_phrase(rng, scene.things[1], says_size)
    return f"{first} {rng.choice(RELATION_WORDS[scene.relation])} {second}"


def caption(
    scene: Scene,
    rng: random.Random,
    templates: tuple[str, ...] = TRAIN_TEMPLATES,
    says_position: bool | None = None,
    says_background: bool | None = None,
) -> Captioned:
    """Word `scene` with one of `templates`; unstated attributes are left to chance."""
    if says_position is None:
        says_position = rng.random() < 0.8
    if says_background is None:
        says_background = rng.random() < 0.75
    says_position = says_position and scene.position is not None
    slots = {
        "obj": _object_phrase(rng, scene),
        "pos": rng.choice(POSITION_WORDS[scene.position])
        if says_position and scene.position
        else None,
        "bg": scene.background.word if says_background else None,
        "background": rng.choice(BACKGROUND_WORDS),
    }
    segments = rng.choice(templates).split("|")
    kept = [
        s for s in segments if all(slots[name] is not None for name in re.findall(r"{(\w+)}", s))
    ]
    text = "".join(kept).format(**slots)
    text = rng.choice(PREFIXES) + text + rng.choice(SUFFIXES)
    # "a orange circle" -> "an orange circle"; "an image of a" stays.
    text = re.sub(r"\ba (?=[aeiou])", "an ", text)
    text = re.sub(r"\s+", " ", text).strip()
    return Captioned(scene, text, says_position, says_background)


# Rendering.


def _place(
    rng: np.random.Generator, box: tuple[tuple[float, float], tuple[float, float]]
) -> tuple[float, float]:
    (x0, x1), (y0, y1) = box
    return float(rng.uniform(x0, x1)), float(rng.uniform(y0, y1))


def _layout(
    scene: Scene, radii: list[float], rng: np.random.Generator
) -> list[tuple[float, float]]:
    """Object centres in output pixels."""
    if scene.kind == "single":
        assert scene.position is not None
        return [_place(rng, _POSITION_BOX[scene.position])]
    if scene.kind == "relation":
        # things[0] relative to things[1]; "next to" picks a side at random.
        relation = scene.relation
        if relation == "next to":
            relation = "left of" if rng.random() < 0.5 else "right of"
        near, far = (7.5, 11.0), (21.0, 24.5)
        mid = (12.0, 20.0)
        boxes = {
            "above": (((mid), near), (mid, far)),
            "below": ((mid, far), (mid, near)),
            "left of": ((near, mid), (far, mid)),
            "right of": ((far, mid), (near, mid)),
        }[relation or "above"]
        return [_place(rng, boxes[0]), _place(rng, boxes[1])]
    # Counts: a pair side by side or stacked, a trio as a triangle pointing up or down, each
    # centre jittered. Counting objects scattered anywhere stalled near 40% (and fell as
    # colour and shape improved); fixed arrangements turn "two" and "three" into layouts, which
    # the model learns as readily as positions.
    pattern = _COUNT_LAYOUTS[len(radii)][int(rng.integers(len(_COUNT_LAYOUTS[len(radii)])))]
    return [
        (x + float(rng.uniform(-1.5, 1.5)), y + float(rng.uniform(-1.5, 1.5))) for x, y in pattern
    ]


# Object centres for counts, in output pixels; at least 13 px apart, so small shapes never touch.
_COUNT_LAYOUTS: dict[int, tuple[tuple[tuple[float, float], ...], ...]] = {
    2: (((9.0, 16.0), (23.0, 16.0)), ((16.0, 9.0), (16.0, 23.0))),
    3: (((9.0, 10.0), (23.0, 10.0), (16.0, 23.0)), ((9.0, 22.0), (23.0, 22.0), (16.0, 9.0))),
}


def _jitter(rgb: tuple[int, int, int], rng: np.random.Generator, amount: int) -> tuple[int, ...]:
    return tuple(int(np.clip(c + rng.integers(-amount, amount + 1), 0, 255)) for c in rgb)


def _draw(
    draw: ImageDraw.ImageDraw, shape: str, cx: float, cy: float, r: float, fill: tuple[int, ...]
) -> None:
    if shape == "circle":
        draw.ellipse((cx - r, cy - r, cx + r, cy + r), fill=fill)
    elif shape == "square":
        # The same area as the circle would read as "bigger"; 0.9 r keeps sizes comparable.
        s = 0.9 * r
        draw.rectangle((cx - s, cy - s, cx + s, cy + s), fill=fill)
    elif shape == "triangle":
        draw.polygon([(cx, cy - r), (cx + r, cy + 0.85 * r), (cx - r, cy + 0.85 * r)], fill=fill)
    elif shape == "star":
        points = []
        for k in range(10):
            radius = r * 1.1 if k % 2 == 0 else r * 0.45
            angle = -np.pi / 2 + k * np.pi / 5
            points.append((cx + radius * np.cos(angle), cy + 0.1 * r + radius * np.sin(angle)))
        draw.polygon(points, fill=fill)
    else:
        raise ValueError(f"unknown shape {shape!r}")


def render(scene: Scene, rng: np.random.Generator) -> Image.Image:
    """Draw `scene` at 32x32 RGB; positions, sizes and tones jitter with `rng`."""
    big = SIZE * _SUPERSAMPLE
    image = Image.new("RGB", (big, big), _jitter(scene.background.rgb, rng, 6))
    draw = ImageDraw.Draw(image)
    radii = [float(rng.uniform(*_RADIUS[t.size])) for t in scene.things]
    # A count scene's objects share one tone, as "two red circles" are the same red.
    tone = _jitter(scene.things[0].colour.rgb, rng, 8)
    for thing, radius, (cx, cy) in zip(
        scene.things, radii, _layout(scene, radii, rng), strict=True
    ):
        fill = tone if scene.kind == "count" else _jitter(thing.colour.rgb, rng, 8)
        s = _SUPERSAMPLE
        _draw(draw, thing.shape, cx * s, cy * s, radius * s, fill)
    return image.resize((SIZE, SIZE), Image.Resampling.BOX)
