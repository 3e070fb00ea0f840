"""Finishing generated images: exact size, transparent or opaque background, png/jpeg/webp bytes."""

import io
import zlib
from typing import Literal

import numpy as np
import numpy.typing as npt
from PIL import Image, ImageChops

Background = Literal["transparent", "opaque"]
OutputFormat = Literal["png", "jpeg", "webp"]

BoolArray = npt.NDArray[np.bool_]

# Colour used under alpha when an image must lose its alpha channel (opaque, jpeg): the same white
# that compose.flatten puts behind transparent inputs.
_BACKDROP = (255, 255, 255)

# Per-channel distance from the estimated background colour that still counts as background.
# Diffusion backgrounds are never one exact colour (noise, soft gradients); 32/255 absorbs that
# while anti-aliased object edges mostly stay opaque.
DEFAULT_TOLERANCE = 32
# Below this share of border pixels near the median colour the picture has no plain backdrop
# (a scene, or an object filling the frame); cutting one out would cut into the subject.
_MIN_BORDER_SHARE = 0.5
# Each round lets the fill turn one more corner; real backgrounds need two or three. The cap
# bounds pathological mazes; stopping early only leaves some background opaque.
_MAX_FILL_ROUNDS = 32

# JPEG above 95 only disables parts of the compressor for a much bigger file (Pillow's docs).
_JPEG_MAX_QUALITY = 95
# libwebp effort, measured at 1024x1024: lossless at method 0 / effort ("quality") 10 takes
# ~35 ms against ~350 ms at the defaults, for ~15% more bytes; lossy at method 2 is ~2x faster
# than the default 4 for ~6% more bytes.
_WEBP_LOSSLESS_METHOD = 0
_WEBP_LOSSLESS_EFFORT = 10
_WEBP_LOSSY_METHOD = 2


def fit_to_size(image: Image.Image, width: int, height: int) -> Image.Image:
    """Exactly width x height. LANCZOS, no crop: the working resolution already keeps the aspect."""
    if image.size == (width, height):
        return image
    return image.resize((width, height), Image.Resampling.LANCZOS)


def apply_background(
    image: Image.Image, background: Background, *, tolerance: int = DEFAULT_TOLERANCE
) -> Image.Image:
    """Opaque: RGB, never alpha. Transparent: RGBA whose background pixels have alpha 0.

    Open diffusion models produce no alpha channel, so a transparent background is cut out after
    the fact: the background colour is the per-channel median of the outer ring of pixels, and
    the background is every pixel within `tolerance` of it that is 4-connected to the border (a
    flood fill from the edges, so same-coloured detail inside the subject stays opaque). The
    fill runs on row and column runs with numpy (see _flood_from_border), ~10-20 ms at 1024x1024.
    The subject keeps alpha 255; the cut is hard, without feathering. An image that already has
    some transparency is returned as RGBA untouched, and one without a plain border colour stays
    fully opaque.
    """
    if background == "opaque":
        return _flatten(image)
    if _has_transparent_pixel(image):
        return image
    rgb = image.convert("RGB")
    cut = rgb.convert("RGBA")
    is_background = _background_pixels(rgb, tolerance)
    if is_background is not None:
        alpha = np.where(is_background, 0, 255).astype(np.uint8)
        cut.putalpha(Image.fromarray(alpha))
    return cut


def encode(image: Image.Image, output_format: OutputFormat, compression: int) -> bytes:
    """Encode to the wire format; `compression` is output_compression, 0-100, 100 = best quality."""
    if not 0 <= compression <= 100:
        raise ValueError(f"compression must be within 0-100, got {compression}")
    buffer = io.BytesIO()
    if output_format == "png":
        # PNG is lossless, so output_compression cannot change a pixel. zlib level 1: the PNG
        # encode dominates end-to-end latency at 1024x1024, and higher levels save ~10% bytes
        # for several times the time. Strategy Z_RLE: on diffusion output (noisy, photographic)
        # it is up to ~30% faster and 10-25% smaller than the default (bench/overhead.py); only
        # flat graphics come out larger (up to 2x), and those are a few hundred KB either way.
        _rgb_or_rgba(image).save(buffer, format="PNG", compress_level=1, compress_type=zlib.Z_RLE)
    elif output_format == "jpeg":
        quality = min(compression, _JPEG_MAX_QUALITY)
        _flatten(image).save(buffer, format="JPEG", quality=quality)
    elif compression == 100:
        # exact=True keeps the colour under alpha 0, so lossless means every byte round-trips.
        _rgb_or_rgba(image).save(
            buffer,
            format="WEBP",
            lossless=True,
            quality=_WEBP_LOSSLESS_EFFORT,
            method=_WEBP_LOSSLESS_METHOD,
            exact=True,
        )
    else:
        _rgb_or_rgba(image).save(
            buffer, format="WEBP", quality=compression, method=_WEBP_LOSSY_METHOD
        )
    return buffer.getvalue()


def composite_masked(
    original: Image.Image, generated: Image.Image, mask_l: Image.Image
) -> Image.Image:
    """Generated pixels where the engine mask is white, the original's where it is black.

    The engine may repaint the whole frame; this puts every kept pixel back, bit for bit, from
    the original (resized to the generated size when they differ). Grey mask values blend.
    The result is RGBA when either image has alpha, else RGB.
    """
    size = generated.size
    mode = "RGBA" if "A" in original.mode or "A" in generated.mode else "RGB"
    if original.size != size:
        original = original.resize(size, Image.Resampling.LANCZOS)
    if mask_l.size != size:
        # NEAREST keeps a binary mask binary.
        mask_l = mask_l.resize(size, Image.Resampling.NEAREST)
    return Image.composite(generated.convert(mode), original.convert(mode), mask_l.convert("L"))


def _flatten(image: Image.Image) -> Image.Image:
    """RGB; any alpha is composited over the white backdrop rather than dropped."""
    if image.mode == "RGB":
        return image
    if not image.has_transparency_data:
        return image.convert("RGB")
    rgba = image.convert("RGBA")
    backdrop = Image.new("RGB", rgba.size, _BACKDROP)
    backdrop.paste(rgba, mask=rgba.getchannel("A"))
    return backdrop


def _has_transparent_pixel(image: Image.Image) -> bool:
    if image.mode != "RGBA":
        return False
    lowest, _ = image.getchannel("A").getextrema()
    return lowest != 255


def _rgb_or_rgba(image: Image.Image) -> Image.Image:
    if image.mode in ("RGB", "RGBA"):
        return image
    return image.convert("RGBA" if image.has_transparency_data else "RGB")


def _background_pixels(rgb: Image.Image, tolerance: int) -> BoolArray | None:
    """Mask of background pixels, or None when the border has no dominant colour."""
    pixels = np.asarray(rgb)
    ring = np.concatenate([pixels[0], pixels[-1], pixels[1:-1, 0], pixels[1:-1, -1]])
    colour = np.median(ring, axis=0).round().astype(np.uint8)
    near_ring = np.abs(ring.astype(np.int16) - colour.astype(np.int16)).max(axis=1) <= tolerance
    if near_ring.mean() < _MIN_BORDER_SHARE:
        return None
    # Channel-wise |pixel - colour| in C, then the per-pixel maximum over channels.
    difference = ImageChops.difference(rgb, Image.new("RGB", rgb.size, tuple(colour.tolist())))
    red, green, blue = difference.split()
    distance = ImageChops.lighter(ImageChops.lighter(red, green), blue)
    candidate: BoolArray = np.asarray(distance) <= tolerance
    return _flood_from_border(candidate)


def _flood_from_border(candidate: BoolArray) -> BoolArray:
    """Candidate pixels 4-connected to the image border.

    A per-pixel BFS in Python takes seconds at 1024x1024. Instead, flood whole runs: along each
    row, a run of consecutive candidates is reached as soon as any of its pixels is; then the
    same along columns; alternate until nothing changes. Each round is a few vectorised passes
    over the image, and ordinary backgrounds settle in one or two rounds.
    """
    height, width = candidate.shape
    rows = _Runs(candidate)
    columns = _Runs(np.ascontiguousarray(candidate.T))
    seed = np.zeros_like(candidate)
    for edge in (np.s_[0, :], np.s_[-1, :], np.s_[:, 0], np.s_[:, -1]):
        seed[edge] = candidate[edge]
    reached = rows.spread(seed.ravel())
    count = int(np.count_nonzero(reached))
    # The input of each pass is closed under the previous pass's direction, so the first pass
    # that adds nothing means closed both ways: done.
    for _ in range(_MAX_FILL_ROUNDS):
        by_column = columns.spread(np.ascontiguousarray(reached.reshape(height, width).T).ravel())
        reached = np.ascontiguousarray(by_column.reshape(width, height).T).ravel()
        if (new_count := int(np.count_nonzero(reached))) == count:
            break
        reached = rows.spread(reached)
        if (count := int(np.count_nonzero(reached))) == new_count:
            break
    return reached.reshape(height, width)


class _Runs:
    """Maximal runs of True along the rows of a 2-D mask, as flat start/end indices."""

    def __init__(self, mask: BoolArray) -> None:
        starts = mask.copy()
        starts[:, 1:] &= ~mask[:, :-1]
        ends = mask.copy()
        ends[:, :-1] &= ~mask[:, 1:]
        self._starts = np.flatnonzero(starts)
        self._ends = np.flatnonzero(ends)
        self._size = mask.size

    def spread(self, reached: BoolArray) -> BoolArray:
        """Flat mask: every pixel of each run that holds at least one reached pixel."""
        # Reached pixels per run from a prefix sum: cumsum[end] - cumsum[start - 1] > 0.
        total = np.cumsum(reached, dtype=np.int32)
        hit = total[self._ends] > total[self._starts] - reached[self._starts]
        # Paint the hit runs back with +1 at each start and -1 after each end, then a prefix sum.
        # Runs in one row never touch, but a run ending a row can be followed by one starting the
        # next at the same flat index + 1; hence -= after the starts are set, not an assignment.
        marks = np.zeros(self._size + 1, np.int8)
        marks[self._starts[hit]] = 1
        marks[self._ends[hit] + 1] -= 1
        # dtype given: numpy would otherwise accumulate in int64, several times slower.
        painted: BoolArray = np.cumsum(marks[:-1], dtype=np.int32) > 0
        return painted
