"""A deterministic reader of limner-mini pictures: background colour, and per object its basic
colour, centre, area and shape. Used by the training script's adherence check and the benchmark.

No learning: the background is the median of the border, objects are 4-connected regions far
(in Lab) from it, colours are judged by the same nearest-prototype rule that labels the training
vocabulary, and shapes by how much of their bounding box they fill and where.
"""

from dataclasses import dataclass

import numpy as np
from PIL import Image

from training.colours import basic_colour, class_distances
from training.scenes import SIZE

# Lab distance from the background beyond which a pixel belongs to an object.
_OBJECT_DISTANCE = 28.0
# Regions smaller than this many pixels are noise, not objects.
_MIN_AREA = 5


@dataclass(frozen=True)
class Blob:
    colour: str
    cx: float
    cy: float
    area: int
    shape: str


@dataclass(frozen=True)
class Reading:
    background: str
    objects: tuple[Blob, ...]  # largest first


def _lab_distance_map(pixels: np.ndarray, reference: np.ndarray) -> np.ndarray:
    from training.colours import _srgb_to_lab

    return np.linalg.norm(_srgb_to_lab(pixels) - _srgb_to_lab(reference), axis=-1)


def _components(mask: np.ndarray) -> list[list[tuple[int, int]]]:
    seen = np.zeros_like(mask, dtype=bool)
    found = []
    for y, x in zip(*np.nonzero(mask), strict=True):
        if seen[y, x]:
            continue
        stack, pixels = [(int(y), int(x))], []
        seen[y, x] = True
        while stack:
            cy, cx = stack.pop()
            pixels.append((cy, cx))
            for ny, nx in ((cy + 1, cx), (cy - 1, cx), (cy, cx + 1), (cy, cx - 1)):
                inside = 0 <= ny < mask.shape[0] and 0 <= nx < mask.shape[1]
                if inside and mask[ny, nx] and not seen[ny, nx]:
                    seen[ny, nx] = True
                    stack.append((ny, nx))
        found.append(pixels)
    return found


def _shape(region: np.ndarray) -> str:
    """Circle, square, triangle or star from a boolean region cropped to its bounding box."""
    h = region.shape[0]
    fill = region.mean()
    rows = region.mean(axis=1)
    top, bottom = rows[: max(1, h // 3)].mean(), rows[-max(1, h // 3) :].mean()
    if fill > 0.88:
        return "square"
    if fill > 0.68:
        return "circle"
    # A triangle widens steadily to its base; a star is widest across its arms, in the middle.
    middle = rows[h // 3 : h - h // 3].mean() if h >= 3 else fill
    if bottom > 1.3 * middle and top < 0.6 * bottom:
        return "triangle"
    return "star"


def read(image: Image.Image) -> Reading:
    pixels = np.asarray(image.convert("RGB").resize((SIZE, SIZE), Image.Resampling.BOX))
    border = np.concatenate([pixels[0], pixels[-1], pixels[:, 0], pixels[:, -1]])
    background_rgb = np.median(border, axis=0)
    distance = _lab_distance_map(pixels, background_rgb)
    blobs = []
    for region in _components(distance > _OBJECT_DISTANCE):
        if len(region) < _MIN_AREA:
            continue
        ys = np.array([p[0] for p in region])
        xs = np.array([p[1] for p in region])
        # Judge the colour on the core, not the edge pixels blended with the background.
        d = distance[ys, xs]
        core = d >= 0.7 * d.max()
        colour = basic_colour(np.median(pixels[ys[core], xs[core]], axis=0))
        crop = np.zeros((ys.max() - ys.min() + 1, xs.max() - xs.min() + 1), dtype=bool)
        crop[ys - ys.min(), xs - xs.min()] = True
        blobs.append(
            Blob(colour, float(xs.mean()) + 0.5, float(ys.mean()) + 0.5, len(region), _shape(crop))
        )
    blobs.sort(key=lambda b: -b.area)
    return Reading(basic_colour(background_rgb), tuple(blobs))


def position_of(blob: Blob) -> str:
    """left/right/top/bottom/center by the centre's offset from the middle."""
    dx, dy = blob.cx - SIZE / 2, blob.cy - SIZE / 2
    if max(abs(dx), abs(dy)) < 4.0:
        return "center"
    if abs(dx) > abs(dy):
        return "left" if dx < 0 else "right"
    return "top" if dy < 0 else "bottom"


__all__ = ["Blob", "Reading", "class_distances", "position_of", "read"]
