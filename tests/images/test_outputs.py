import io
import time

import numpy as np
import pytest
from PIL import Image, ImageDraw

from limner.images.outputs import (
    apply_background,
    composite_masked,
    encode,
    fit_to_size,
)


def noise(size: tuple[int, int], mode: str = "RGB", seed: int = 0) -> Image.Image:
    rng = np.random.default_rng(seed)
    pixels = rng.integers(0, 256, (size[1], size[0], len(mode)), dtype=np.uint8)
    return Image.fromarray(pixels, mode)


def red_circle(size: int = 256, jitter: int = 0) -> Image.Image:
    """A red disc on a white background, optionally with diffusion-like noise on top."""
    image = Image.new("RGB", (size, size), "white")
    ImageDraw.Draw(image).ellipse((size // 4, size // 4, 3 * size // 4, 3 * size // 4), "red")
    if not jitter:
        return image
    rng = np.random.default_rng(1)
    pixels = np.asarray(image).astype(np.int16)
    pixels += rng.integers(-jitter, jitter + 1, pixels.shape, dtype=np.int16)
    return Image.fromarray(pixels.clip(0, 255).astype(np.uint8))


def decoded(data: bytes) -> Image.Image:
    image = Image.open(io.BytesIO(data))
    image.load()
    return image


def alpha(image: Image.Image) -> np.ndarray:
    return np.asarray(image.getchannel("A"))


# --- fit_to_size -------------------------------------------------------------------------------


def test_fit_to_size_resizes_exactly() -> None:
    assert fit_to_size(noise((100, 60)), 64, 32).size == (64, 32)
    assert fit_to_size(noise((100, 60), "RGBA"), 300, 200).mode == "RGBA"


def test_fit_to_size_leaves_a_fitting_image_alone() -> None:
    image = noise((64, 32))
    assert fit_to_size(image, 64, 32) is image


# --- apply_background --------------------------------------------------------------------------


def test_opaque_never_has_alpha() -> None:
    image = Image.new("RGBA", (8, 8), (255, 0, 0, 255))
    image.paste((0, 0, 255, 0), (0, 0, 4, 8))
    opaque = apply_background(image, "opaque")
    assert opaque.mode == "RGB"
    assert opaque.getpixel((0, 0)) == (255, 255, 255)  # transparent pixels land on white
    assert opaque.getpixel((7, 7)) == (255, 0, 0)
    assert apply_background(noise((8, 8)), "opaque").mode == "RGB"


@pytest.mark.parametrize("jitter", [0, 8])
def test_transparent_cuts_out_the_background(jitter: int) -> None:
    cut = apply_background(red_circle(jitter=jitter), "transparent")
    assert cut.mode == "RGBA"
    a = alpha(cut)
    for corner in [(0, 0), (0, 255), (255, 0), (255, 255)]:
        assert a[corner] == 0
    assert a[128, 128] == 255
    assert set(np.unique(a)) == {0, 255}
    # Roughly the disc (radius 64) stays: pi * 64^2 ≈ 12868 pixels.
    assert 12_000 < np.count_nonzero(a) < 13_800
    # Colour is kept under alpha, only alpha changes.
    assert cut.convert("RGB").tobytes() == red_circle(jitter=jitter).tobytes()


def test_background_coloured_detail_inside_the_subject_stays_opaque() -> None:
    image = red_circle()
    ImageDraw.Draw(image).ellipse((118, 118, 138, 138), "white")  # a white eye in the disc
    a = alpha(apply_background(image, "transparent"))
    assert a[128, 128] == 255
    assert a[0, 0] == 0


def test_background_reached_around_corners_is_cut() -> None:
    # A U-shaped wall: the inside of the U is background reachable only by turning corners.
    image = Image.new("RGB", (200, 200), "white")
    draw = ImageDraw.Draw(image)
    draw.rectangle((40, 40, 50, 160), "black")
    draw.rectangle((150, 40, 160, 160), "black")
    draw.rectangle((40, 150, 160, 160), "black")
    draw.rectangle((60, 60, 140, 70), "black")  # a bar inside the U, hanging free
    a = alpha(apply_background(image, "transparent"))
    assert a[100, 100] == 0  # inside the U
    assert a[140, 100] == 0  # below the bar, inside the U
    assert a[100, 45] == 255  # the wall itself


def test_enclosed_background_is_kept() -> None:
    image = Image.new("RGB", (100, 100), "white")
    ImageDraw.Draw(image).rectangle((20, 20, 80, 80), outline="black", width=3)
    a = alpha(apply_background(image, "transparent"))
    assert a[0, 0] == 0
    assert a[50, 50] == 255  # white, but walled off from the border


def test_scene_without_a_plain_border_stays_opaque() -> None:
    cut = apply_background(noise((64, 64)), "transparent")
    assert cut.mode == "RGBA"
    assert alpha(cut).min() == 255


def test_image_with_transparency_is_left_as_is() -> None:
    image = Image.new("RGBA", (16, 16), (0, 0, 0, 0))
    image.paste((255, 255, 255, 255), (4, 4, 12, 12))
    assert apply_background(image, "transparent") is image


def test_transparent_is_fast_at_1024() -> None:
    image = red_circle(1024, jitter=8)
    apply_background(image, "transparent")
    best = float("inf")
    for _ in range(3):
        started = time.perf_counter()
        apply_background(image, "transparent")
        best = min(best, time.perf_counter() - started)
    # ~20 ms on a developer machine; the bound only catches a fall back to per-pixel Python.
    assert best < 0.25


# --- encode ------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("output_format", "pil_format", "source_mode", "mode"),
    [
        ("png", "PNG", "RGB", "RGB"),
        ("png", "PNG", "RGBA", "RGBA"),
        ("jpeg", "JPEG", "RGB", "RGB"),
        ("jpeg", "JPEG", "RGBA", "RGB"),
        ("webp", "WEBP", "RGB", "RGB"),
        ("webp", "WEBP", "RGBA", "RGBA"),
    ],
)
@pytest.mark.parametrize("compression", [100, 50])
def test_every_format_decodes_back(
    output_format: str, pil_format: str, source_mode: str, mode: str, compression: int
) -> None:
    data = encode(noise((96, 64), source_mode), output_format, compression)  # type: ignore[arg-type]
    image = decoded(data)
    assert image.format == pil_format
    assert image.size == (96, 64)
    assert image.mode == mode


@pytest.mark.parametrize("compression", [0, 50, 100])
def test_png_is_lossless_at_any_compression(compression: int) -> None:
    source = noise((64, 64), "RGBA")
    assert decoded(encode(source, "png", compression)).tobytes() == source.tobytes()


def test_jpeg_quality_follows_compression() -> None:
    source = red_circle(256, jitter=8)
    assert len(encode(source, "jpeg", 10)) < len(encode(source, "jpeg", 95))


def test_jpeg_flattens_alpha_onto_white() -> None:
    source = Image.new("RGBA", (16, 16), (0, 0, 0, 0))
    pixel = decoded(encode(source, "jpeg", 95)).getpixel((8, 8))
    assert isinstance(pixel, tuple)
    assert min(pixel) > 250


@pytest.mark.parametrize("mode", ["RGB", "RGBA"])
def test_webp_at_100_is_lossless(mode: str) -> None:
    source = noise((64, 64), mode)
    assert decoded(encode(source, "webp", 100)).tobytes() == source.tobytes()


def test_webp_below_100_is_lossy_and_smaller() -> None:
    source = red_circle(256, jitter=8)
    lossy = encode(source, "webp", 80)
    assert decoded(lossy).tobytes() != source.tobytes()
    assert len(lossy) < len(encode(source, "webp", 100))
    assert len(encode(source, "webp", 10)) < len(lossy)


def test_transparent_result_keeps_alpha_in_png_and_webp() -> None:
    cut = apply_background(red_circle(), "transparent")
    for output_format in ("png", "webp"):
        image = decoded(encode(cut, output_format, 100))
        assert alpha(image)[0, 0] == 0
        assert alpha(image)[128, 128] == 255


@pytest.mark.parametrize("compression", [-1, 101])
def test_compression_out_of_range_is_a_bug(compression: int) -> None:
    with pytest.raises(ValueError, match="compression"):
        encode(noise((8, 8)), "jpeg", compression)


# --- composite_masked --------------------------------------------------------------------------


def square_mask(size: tuple[int, int], box: tuple[int, int, int, int]) -> Image.Image:
    mask = Image.new("L", size, 0)
    mask.paste(255, box)
    return mask


def test_composite_keeps_unmasked_pixels_bit_identical() -> None:
    original, generated = noise((64, 48), seed=1), noise((64, 48), seed=2)
    result = np.asarray(
        composite_masked(original, generated, square_mask((64, 48), (8, 8, 40, 40)))
    )
    inside = np.zeros((48, 64), bool)
    inside[8:40, 8:40] = True
    assert np.array_equal(result[~inside], np.asarray(original)[~inside])
    assert np.array_equal(result[inside], np.asarray(generated)[inside])


def test_composite_resizes_original_and_mask_to_the_generated_size() -> None:
    original, generated = noise((32, 32), seed=1), noise((64, 64), seed=2)
    result = composite_masked(original, generated, square_mask((32, 32), (0, 0, 16, 32)))
    assert result.size == (64, 64)
    pixels = np.asarray(result)
    expected = np.asarray(original.resize((64, 64), Image.Resampling.LANCZOS))
    assert np.array_equal(pixels[:, 32:], expected[:, 32:])
    assert np.array_equal(pixels[:, :32], np.asarray(generated)[:, :32])


def test_composite_keeps_alpha_when_either_side_has_it() -> None:
    original, generated = noise((16, 16), "RGBA", seed=1), noise((16, 16), seed=2)
    result = composite_masked(original, generated, square_mask((16, 16), (0, 0, 8, 16)))
    assert result.mode == "RGBA"
    assert np.array_equal(np.asarray(result)[:, 8:], np.asarray(original)[:, 8:])
    assert composite_masked(noise((4, 4)), noise((4, 4)), Image.new("L", (4, 4))).mode == "RGB"
