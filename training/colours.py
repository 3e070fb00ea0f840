"""Colour vocabulary for limner-mini: hundreds of real colour names, each with its true RGB and the
basic colour it counts as when judged.

Names come from the CSS colour keywords (the `webcolors` package) and the XKCD colour survey
(`xkcd_colours.json`, copied once from matplotlib so matplotlib is not a dependency), plus a short
hand list of words people type that neither list spells the same way ("golden", "jet-black").
A name is kept only when its RGB sits clearly inside one basic colour, so that every training
label is unambiguous; `basic_colour` is the same nearest-prototype rule the detector applies to
rendered pixels.
"""

import json
import re
from dataclasses import dataclass
from functools import cache
from pathlib import Path

import numpy as np
import webcolors

RGB = tuple[int, int, int]

# Each basic colour is a few prototypes (light, mid, dark), so "navy" and "sky blue" both land in
# blue without dragging the class centre to a muddy middle.
PROTOTYPES: dict[str, tuple[RGB, ...]] = {
    "red": ((220, 20, 30), (160, 0, 10), (255, 60, 50)),
    "orange": ((255, 140, 0), (240, 110, 30), (255, 170, 80)),
    "yellow": ((255, 230, 0), (250, 250, 120), (225, 205, 30)),
    "green": ((30, 160, 40), (0, 100, 0), (120, 220, 100), (100, 200, 30)),
    "blue": ((30, 70, 220), (0, 0, 128), (100, 160, 250), (20, 120, 200)),
    "purple": ((128, 0, 128), (130, 50, 200), (180, 130, 230), (80, 20, 120)),
    "pink": ((255, 130, 180), (255, 182, 193), (230, 50, 140)),
    "brown": ((140, 80, 30), (100, 50, 20), (180, 120, 70)),
    "black": ((10, 10, 10), (35, 35, 35)),
    "white": ((250, 250, 250), (232, 232, 232)),
    "gray": ((128, 128, 128), (180, 180, 180), (85, 85, 85)),
}
BASIC_COLOURS: tuple[str, ...] = tuple(PROTOTYPES)
# What a bare basic word renders as in training (its first prototype).
CANONICAL: dict[str, RGB] = {name: protos[0] for name, protos in PROTOTYPES.items()}

# A name whose nearest other class is less than this many times as far as its own class is
# ambiguous ("olive", "teal") and left out of the vocabulary.
_MARGIN = 1.3
# Words that would teach nothing but bad taste, frequent in the XKCD survey.
_BLOCKED = re.compile(r"puke|vomit|poo|shit|barf|diarrh|booger|snot|baby")
_BASIC_WORDS = {*BASIC_COLOURS, "grey"}
# Common words for colours that the two lists lack or spell differently.
_EXTRA: dict[str, RGB] = {
    "golden": (218, 165, 32),
    "amber": (255, 191, 0),
    "jet-black": (12, 12, 12),
    "jet black": (12, 12, 12),
    "pitch black": (5, 5, 5),
    "ebony": (30, 28, 26),
    "snow-white": (252, 250, 250),
    "ivory": (255, 255, 240),
    "scarlet": (255, 36, 0),
    "ruby": (200, 16, 46),
    "cherry": (200, 20, 50),
    "vermilion": (227, 66, 52),
    "emerald": (20, 160, 80),
    "jade": (0, 168, 107),
    "sapphire": (15, 82, 186),
    "cobalt": (0, 71, 171),
    "azure": (0, 127, 255),
    "ultramarine": (18, 10, 143),
    "lilac": (200, 162, 200),
    "violet": (143, 0, 255),
    "amethyst": (153, 102, 204),
    "tangerine": (242, 133, 0),
    "pumpkin": (255, 117, 24),
    "lemon": (255, 244, 79),
    "canary yellow": (255, 239, 0),
    "chocolate brown": (123, 63, 0),
    "coffee": (111, 78, 55),
    "charcoal": (54, 69, 79),
    "silver": (192, 192, 192),
    "ash grey": (178, 190, 181),
    "rose": (255, 0, 127),
    "bubblegum pink": (255, 130, 190),
    "hot pink": (255, 105, 180),
    "navy": (0, 0, 128),
    "sky blue": (135, 206, 235),
    "forest green": (34, 139, 34),
    "grass green": (63, 155, 11),
}
# CSS keywords are written as one word ("darkslateblue"); people type "dark slate blue".
_CSS_WORDS_TEXT = (
    "alice antique aqua aquamarine azure beige bisque black blanched almond blue blush brick "
    "brown burly wood cadet chartreuse chocolate coral cornflower corn silk crimson cyan dark "
    "deep dim dodger drab fire floral forest fuchsia gainsboro ghost gold goldenrod gray grey "
    "green honey dew hot indian indigo ivory khaki lavender lawn lace lemon chiffon light lime "
    "linen magenta maroon marine medium midnight mint cream misty rose moccasin navajo navy old "
    "olive orange orchid pale papaya whip peach puff peru pink plum powder purple rebecca red "
    "rosy royal saddle salmon sandy sea shell sienna silver sky slate smoke snow spring steel tan "
    "teal thistle tomato turquoise violet wheat white yellow"
)
_CSS_WORDS = tuple(_CSS_WORDS_TEXT.split())


@dataclass(frozen=True)
class ColourName:
    word: str
    rgb: RGB
    basic: str


def _srgb_to_lab(rgb: np.ndarray) -> np.ndarray:
    """CIE L*a*b* (D65) of sRGB values in 0-255, shape (..., 3)."""
    c = rgb.astype(np.float64) / 255.0
    c = np.where(c > 0.04045, ((c + 0.055) / 1.055) ** 2.4, c / 12.92)
    m = np.array([[0.4124, 0.3576, 0.1805], [0.2126, 0.7152, 0.0722], [0.0193, 0.1192, 0.9505]])
    xyz = c @ m.T / np.array([0.95047, 1.0, 1.08883])
    f = np.where(xyz > 0.008856, np.cbrt(xyz), 7.787 * xyz + 16 / 116)
    return np.stack(
        [116 * f[..., 1] - 16, 500 * (f[..., 0] - f[..., 1]), 200 * (f[..., 1] - f[..., 2])],
        axis=-1,
    )


_PROTO_NAMES = [name for name, protos in PROTOTYPES.items() for _ in protos]
_PROTO_LAB = _srgb_to_lab(np.array([p for protos in PROTOTYPES.values() for p in protos]))


def class_distances(rgb: np.ndarray) -> np.ndarray:
    """Distance in Lab from each colour in `rgb` (..., 3) to each basic class (..., classes)."""
    lab = _srgb_to_lab(np.asarray(rgb))
    d = np.linalg.norm(lab[..., None, :] - _PROTO_LAB, axis=-1)
    per_class = [
        d[..., [i for i, n in enumerate(_PROTO_NAMES) if n == name]].min(axis=-1)
        for name in BASIC_COLOURS
    ]
    return np.stack(per_class, axis=-1)


def basic_colour(rgb: RGB | np.ndarray) -> str:
    return BASIC_COLOURS[int(np.argmin(class_distances(np.asarray(rgb))))]


def lab_distance(a: RGB, b: RGB) -> float:
    return float(np.linalg.norm(_srgb_to_lab(np.array(a)) - _srgb_to_lab(np.array(b))))


def _split_css(name: str) -> str:
    """'lightgoldenrodyellow' -> 'light goldenrod yellow' (longest known word first)."""
    words: list[str] = []
    rest = name
    while rest:
        match = max((w for w in _CSS_WORDS if rest.startswith(w)), key=len, default=None)
        if match is None:
            return name
        words.append(match)
        rest = rest[len(match) :]
    return " ".join(words)


def _candidates() -> dict[str, RGB]:
    found: dict[str, RGB] = {}
    table = json.loads((Path(__file__).with_name("xkcd_colours.json")).read_text())
    for word, hex_value in table["colours"].items():
        found[word.replace("/", " ")] = webcolors.hex_to_rgb(hex_value)
    for css in webcolors.names("css3"):
        found[_split_css(css)] = webcolors.name_to_rgb(css)
    found.update(_EXTRA)
    return {w: (int(r), int(g), int(b)) for w, (r, g, b) in found.items()}


@cache
def vocabulary() -> dict[str, tuple[ColourName, ...]]:
    """Every accepted colour name, grouped by basic colour, in a fixed order."""
    groups: dict[str, list[ColourName]] = {name: [] for name in BASIC_COLOURS}
    for word, rgb in sorted(_candidates().items()):
        if _BLOCKED.search(word) or word in _BASIC_WORDS:
            continue
        distances = class_distances(np.array(rgb))
        order = np.argsort(distances)
        best, second = distances[order[0]], distances[order[1]]
        if second < _MARGIN * best:
            continue
        basic = BASIC_COLOURS[int(order[0])]
        # A name that says another basic colour ("blue green" judged green, "bluegrey") would
        # teach the model that the word "blue" can mean green.
        mentioned = {b for b in _BASIC_WORDS for w in re.split(r"[\s-]+", word) if b in w}
        mentioned = {"gray" if w == "grey" else w for w in mentioned}
        if mentioned - {basic}:
            continue
        groups[basic].append(ColourName(word, rgb, basic))
    return {name: tuple(names) for name, names in groups.items()}
