import base64
import dataclasses
import functools
import io
import struct
import time
import warnings
import zlib

import numpy as np
import pytest
from PIL import Image, ImageFile

from limner.errors import (
    ImageTooLarge,
    InvalidImageFile,
    InvalidImageFormat,
    InvalidImageUrl,
    InvalidMaskImage,
    InvalidValue,
    LimnerError,
    MissingParameter,
    StringTooLong,
    UnsupportedMimetype,
)
from limner.images.inputs import (
    DALLE2_LIMITS,
    GPT_IMAGE_LIMITS,
    MAX_DATA_URL_CHARS,
    ImageLimits,
    Upload,
    decode_data_url,
    decode_images,
    decode_mask,
    engine_mask,
    mask_from_image_alpha,
)

MIMETYPE_MESSAGE = (
    "Invalid file 'image': unsupported mimetype ('image/gif'). Supported file formats are "
    "'image/jpeg', 'image/png', and 'image/webp'."
)
DALLE2_MESSAGE = "Uploaded image must be a PNG and less than 4 MB."


def encoded(image: Image.Image, fmt: str = "PNG", **params: object) -> bytes:
    buffer = io.BytesIO()
    image.save(buffer, format=fmt, **params)
    return buffer.getvalue()


def upload(data: bytes, content_type: str | None = "image/png", field: str = "image") -> Upload:
    return Upload(data=data, filename="upload", content_type=content_type, field=field)


def picture(size: tuple[int, int] = (48, 32), mode: str = "RGB") -> Image.Image:
    rng = np.random.default_rng(0)
    pixels = rng.integers(0, 256, (size[1], size[0], len(mode)), dtype=np.uint8)
    return Image.fromarray(pixels, mode)


def rgba_mask(size: tuple[int, int], hole: tuple[int, int, int, int]) -> Image.Image:
    """Opaque black with a fully transparent rectangle (the region to edit)."""
    mask = Image.new("RGBA", size, (0, 0, 0, 255))
    mask.paste((0, 0, 0, 0), hole)
    return mask


def _chunk(tag: bytes, body: bytes) -> bytes:
    return struct.pack(">I", len(body)) + tag + body + struct.pack(">I", zlib.crc32(tag + body))


@functools.cache
def png_bomb(width: int, height: int) -> bytes:
    """A valid 1-bit all-black PNG: a few KB on the wire, width*height pixels once decoded."""
    row = b"\x00" * (1 + (width + 7) // 8)  # filter byte + packed bits
    compressor = zlib.compressobj(9)
    idat = b"".join(compressor.compress(row) for _ in range(height)) + compressor.flush()
    header = struct.pack(">IIBBBBB", width, height, 1, 0, 0, 0, 0)
    return (
        b"\x89PNG\r\n\x1a\n"
        + _chunk(b"IHDR", header)
        + _chunk(b"IDAT", idat)
        + _chunk(b"IEND", b"")
    )


def assert_error(
    error: LimnerError, cls: type[LimnerError], param: str, code: str | None, status: int = 400
) -> None:
    assert type(error) is cls
    assert error.param == param
    assert error.code == code
    assert error.status == status


@pytest.fixture
def no_pixel_decoding(monkeypatch: pytest.MonkeyPatch) -> None:
    """Fail the test if any image's pixel data is decoded."""

    def load(self: ImageFile.ImageFile) -> None:
        raise AssertionError("pixels were decoded")

    monkeypatch.setattr(ImageFile.ImageFile, "load", load)


# --- accepted inputs ---------------------------------------------------------------------------


@pytest.mark.parametrize("fmt", ["PNG", "JPEG", "WEBP"])
@pytest.mark.parametrize(
    "content_type",
    ["image/png", "image/jpeg", "image/jpg", "image/webp", "application/octet-stream", None, ""],
)
def test_supported_formats_decode_whatever_type_is_declared(
    fmt: str, content_type: str | None
) -> None:
    # The declared type is a hint only: the real format comes from the bytes.
    [image] = decode_images([upload(encoded(picture(), fmt), content_type)], GPT_IMAGE_LIMITS)
    assert image.size == (48, 32)
    assert image.mode == "RGB"


def test_content_type_parameters_and_case_are_ignored() -> None:
    data = encoded(picture())
    [image] = decode_images([upload(data, "Image/PNG; charset=binary")], GPT_IMAGE_LIMITS)
    assert image.size == (48, 32)


def test_lossless_inputs_decode_to_the_exact_pixels() -> None:
    source = picture(mode="RGBA")
    [image] = decode_images([upload(encoded(source))], GPT_IMAGE_LIMITS)
    assert image.mode == "RGBA"
    assert image.tobytes() == source.tobytes()


@pytest.mark.parametrize(
    ("source", "mode"),
    [
        (Image.new("L", (8, 8), 90), "RGB"),
        (Image.new("1", (8, 8), 1), "RGB"),
        (Image.new("LA", (8, 8), (90, 0)), "RGBA"),
        (Image.new("RGB", (8, 8), "red").convert("P"), "RGB"),
    ],
)
def test_other_modes_come_out_rgb_or_rgba(source: Image.Image, mode: str) -> None:
    [image] = decode_images([upload(encoded(source))], GPT_IMAGE_LIMITS)
    assert image.mode == mode


def test_palette_png_with_transparency_keeps_alpha() -> None:
    source = Image.new("P", (8, 8), 1)
    source.putpalette([0, 0, 0, 255, 0, 0])
    [image] = decode_images([upload(encoded(source, transparency=1))], GPT_IMAGE_LIMITS)
    assert image.mode == "RGBA"
    assert image.getpixel((0, 0)) == (255, 0, 0, 0)


def test_webp_alpha_is_kept() -> None:
    source = Image.new("RGBA", (8, 8), (10, 20, 30, 0))
    [image] = decode_images([upload(encoded(source, "WEBP", lossless=True))], GPT_IMAGE_LIMITS)
    assert image.mode == "RGBA"
    assert image.getchannel("A").getextrema() == (0, 0)


def test_16_bit_greyscale_is_scaled_not_clipped() -> None:
    source = Image.fromarray(np.full((4, 4), 32768, dtype=np.uint16))
    [image] = decode_images([upload(encoded(source))], GPT_IMAGE_LIMITS)
    assert image.mode == "RGB"
    assert image.getpixel((0, 0)) == (128, 128, 128)


def test_exif_orientation_is_applied() -> None:
    # Stored landscape, left half red; orientation 6 means "rotate 90° clockwise to display".
    stored = Image.new("RGB", (40, 20), "blue")
    stored.paste((255, 0, 0), (0, 0, 20, 20))
    exif = Image.Exif()
    exif[0x0112] = 6
    [image] = decode_images(
        [upload(encoded(stored, "JPEG", exif=exif), "image/jpeg")], GPT_IMAGE_LIMITS
    )
    assert image.size == (20, 40)
    top, bottom = image.getpixel((10, 5)), image.getpixel((10, 35))
    assert isinstance(top, tuple)
    assert isinstance(bottom, tuple)
    assert top[0] > 200 > top[2]  # red went to the top
    assert bottom[2] > 200 > bottom[0]


def test_sixteen_images_are_accepted() -> None:
    data = encoded(picture((8, 8)))
    assert len(decode_images([upload(data)] * 16, GPT_IMAGE_LIMITS)) == 16


# --- refused inputs ----------------------------------------------------------------------------


@pytest.mark.parametrize("content_type", ["image/gif", "text/plain", "image/svg+xml"])
def test_undeclared_image_types_are_unsupported_mimetypes(content_type: str) -> None:
    with pytest.raises(UnsupportedMimetype) as caught:
        decode_images([upload(encoded(picture()), content_type)], GPT_IMAGE_LIMITS)
    assert_error(caught.value, UnsupportedMimetype, "image", "unsupported_file_mimetype")
    if content_type == "image/gif":
        assert caught.value.message == MIMETYPE_MESSAGE


def test_dalle2_mimetype_message_names_png_only() -> None:
    with pytest.raises(UnsupportedMimetype) as caught:
        decode_images([upload(encoded(picture((8, 8))), "image/gif")], DALLE2_LIMITS)
    assert caught.value.message.endswith("Supported file formats are 'image/png'.")


@pytest.mark.parametrize("fmt", ["GIF", "BMP", "TIFF"])
@pytest.mark.parametrize("content_type", ["image/png", "application/octet-stream", None])
def test_real_formats_outside_the_list_are_invalid_files(
    fmt: str, content_type: str | None
) -> None:
    with pytest.raises(InvalidImageFile) as caught:
        decode_images([upload(encoded(picture(), fmt), content_type)], GPT_IMAGE_LIMITS)
    assert_error(caught.value, InvalidImageFile, "image", "invalid_image_file")
    assert f"{fmt} images are not supported" in caught.value.message


@pytest.mark.parametrize(
    "data",
    [
        b"",
        b"not an image at all",
        encoded(picture())[:100],  # truncated PNG
        encoded(picture(), "JPEG")[:300],  # truncated JPEG
        encoded(picture(), "WEBP")[:60],  # truncated WebP
        b"\x89PNG\r\n\x1a\n" + b"\x00" * 64,  # PNG signature, garbage after it
    ],
    ids=["empty", "text", "png-truncated", "jpeg-truncated", "webp-truncated", "png-garbage"],
)
def test_empty_truncated_and_corrupt_files_are_invalid(data: bytes) -> None:
    with pytest.raises(InvalidImageFile) as caught:
        decode_images([upload(data, "application/octet-stream")], GPT_IMAGE_LIMITS)
    assert_error(caught.value, InvalidImageFile, "image", "invalid_image_file")


def test_corrupt_png_data_fails_in_the_guarded_load() -> None:
    data = bytearray(encoded(picture()))
    idat = data.index(b"IDAT")
    data[idat + 20 : idat + 40] = b"\xff" * 20
    with pytest.raises(InvalidImageFile):
        decode_images([upload(bytes(data))], GPT_IMAGE_LIMITS)


def test_byte_limit_is_exclusive_and_reported() -> None:
    data = encoded(picture())
    limits = ImageLimits(
        max_bytes=len(data),
        max_pixels=10**6,
        max_side=1000,
        formats=frozenset({"PNG"}),
        require_square=False,
        max_count=1,
    )
    with pytest.raises(ImageTooLarge) as caught:
        decode_images([upload(data)], limits)
    assert_error(caught.value, ImageTooLarge, "image", "image_too_large")
    with_room = dataclasses.replace(limits, max_bytes=len(data) + 1)
    assert decode_images([upload(data)], with_room)[0].size == (48, 32)


def test_gpt_image_limits_match_the_contract() -> None:
    assert GPT_IMAGE_LIMITS.max_bytes == 50 * 1024 * 1024
    assert GPT_IMAGE_LIMITS.max_count == 16
    assert GPT_IMAGE_LIMITS.formats == {"PNG", "JPEG", "WEBP"}
    assert not GPT_IMAGE_LIMITS.require_square
    assert DALLE2_LIMITS.max_bytes == 4 * 1024 * 1024
    assert DALLE2_LIMITS.max_count == 1
    assert DALLE2_LIMITS.formats == {"PNG"}
    assert DALLE2_LIMITS.require_square


def test_message_states_the_byte_limit() -> None:
    big = upload(b"\x89PNG\r\n\x1a\n" + b"\x00" * (50 * 1024 * 1024))
    with pytest.raises(ImageTooLarge) as caught:
        decode_images([big], GPT_IMAGE_LIMITS)
    assert "50 MB" in caught.value.message


@pytest.mark.usefixtures("no_pixel_decoding")
def test_pixel_limit_is_checked_on_the_header_before_decoding() -> None:
    limits = ImageLimits(
        max_bytes=10**6,
        max_pixels=10_000,
        max_side=1000,
        formats=frozenset({"PNG"}),
        require_square=False,
        max_count=1,
    )
    with pytest.raises(ImageTooLarge) as caught:
        decode_images([upload(encoded(picture((200, 200))))], limits)
    assert_error(caught.value, ImageTooLarge, "image", "image_too_large")
    assert "200x200" in caught.value.message


@pytest.mark.usefixtures("no_pixel_decoding")
def test_side_limit_refuses_long_strips() -> None:
    with pytest.raises(ImageTooLarge) as caught:
        decode_images([upload(png_bomb(20_000, 1))], GPT_IMAGE_LIMITS)
    assert "maximum side" in caught.value.message


@pytest.mark.usefixtures("no_pixel_decoding")
def test_real_decompression_bomb_is_refused_quickly_without_decoding() -> None:
    bomb = png_bomb(20_000, 20_000)
    assert len(bomb) < 200_000  # 400 megapixels in a small upload
    started = time.perf_counter()
    with pytest.raises(ImageTooLarge) as caught:
        decode_images([upload(bomb)], GPT_IMAGE_LIMITS)
    assert time.perf_counter() - started < 1.0
    assert_error(caught.value, ImageTooLarge, "image", "image_too_large")


def test_pil_bomb_warning_becomes_an_error_locally_only() -> None:
    # 100 MP: above PIL's warning threshold (~89 MP), below its hard error. Limits set high so
    # that PIL's guard, not ours, is what refuses it.
    bomb = png_bomb(10_000, 10_000)
    lenient = ImageLimits(
        max_bytes=10**9,
        max_pixels=10**9,
        max_side=10**6,
        formats=frozenset({"PNG"}),
        require_square=False,
        max_count=1,
    )
    filters_before = list(warnings.filters)
    max_pixels_before = Image.MAX_IMAGE_PIXELS
    # Even where the caller ignores warnings (pytest here makes them errors), the guard holds.
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        with pytest.raises(ImageTooLarge):
            decode_images([upload(bomb)], lenient)
    assert warnings.filters == filters_before
    assert max_pixels_before == Image.MAX_IMAGE_PIXELS
    # Other code still gets PIL's ordinary warning, not our error.
    with pytest.warns(Image.DecompressionBombWarning):
        Image.open(io.BytesIO(bomb))


def test_more_than_sixteen_images_is_an_invalid_value() -> None:
    data = encoded(picture((8, 8)))
    with pytest.raises(InvalidValue) as caught:
        decode_images([upload(data)] * 17, GPT_IMAGE_LIMITS)
    assert_error(caught.value, InvalidValue, "image", "invalid_value")


def test_count_error_names_the_given_param() -> None:
    data = encoded(picture((8, 8)))
    with pytest.raises(InvalidValue) as caught:
        decode_images([upload(data)] * 17, GPT_IMAGE_LIMITS, param="images")
    assert caught.value.param == "images"


def test_no_images_is_a_missing_parameter() -> None:
    with pytest.raises(MissingParameter) as caught:
        decode_images([], GPT_IMAGE_LIMITS)
    assert_error(caught.value, MissingParameter, "image", "missing_required_parameter")


def test_the_failing_upload_names_its_own_field() -> None:
    good = upload(encoded(picture()))
    bad = upload(b"junk", field="images[1].image_url")
    with pytest.raises(InvalidImageFile) as caught:
        decode_images([good, bad], GPT_IMAGE_LIMITS)
    assert caught.value.param == "images[1].image_url"


# --- DALL·E 2 ----------------------------------------------------------------------------------


def test_dalle2_accepts_one_square_png() -> None:
    [image] = decode_images([upload(encoded(picture((64, 64))))], DALLE2_LIMITS)
    assert image.size == (64, 64)


@pytest.mark.parametrize(
    ("data", "content_type"),
    [
        (encoded(picture((64, 64)), "JPEG"), "image/jpeg"),
        (encoded(picture((64, 64)), "WEBP"), "application/octet-stream"),
        (encoded(picture((64, 64))) + b"\x00" * (4 * 1024 * 1024), "image/png"),
    ],
    ids=["jpeg", "webp", "4MB"],
)
def test_dalle2_refuses_anything_but_a_small_png(data: bytes, content_type: str) -> None:
    with pytest.raises(InvalidImageFormat) as caught:
        decode_images([upload(data, content_type)], DALLE2_LIMITS)
    assert_error(caught.value, InvalidImageFormat, "image", "invalid_image_format")
    assert caught.value.message == DALLE2_MESSAGE


def test_dalle2_refuses_a_non_square_png() -> None:
    with pytest.raises(InvalidImageFormat) as caught:
        decode_images([upload(encoded(picture((64, 32))))], DALLE2_LIMITS)
    assert_error(caught.value, InvalidImageFormat, "image", "invalid_image_format")
    assert "square" in caught.value.message


def test_dalle2_takes_exactly_one_image() -> None:
    data = encoded(picture((64, 64)))
    with pytest.raises(InvalidValue) as caught:
        decode_images([upload(data), upload(data)], DALLE2_LIMITS)
    assert_error(caught.value, InvalidValue, "image", "invalid_value")


# --- masks -------------------------------------------------------------------------------------


def first_image(size: tuple[int, int] = (48, 32)) -> Image.Image:
    [image] = decode_images([upload(encoded(picture(size)))], GPT_IMAGE_LIMITS)
    return image


def assert_mask_error(error: LimnerError) -> None:
    assert_error(error, InvalidMaskImage, "mask", "invalid_mask_image_format")
    assert error.type == "image_generation_user_error"


def test_rgba_mask_becomes_white_where_transparent() -> None:
    mask = decode_mask(
        upload(encoded(rgba_mask((48, 32), (0, 0, 16, 32))), field="mask"), first_image()
    )
    assert mask.mode == "L"
    assert mask.size == (48, 32)
    pixels = np.asarray(mask)
    assert (pixels[:, :16] == 255).all()
    assert (pixels[:, 16:] == 0).all()


def test_palette_mask_with_transparency_counts_as_alpha() -> None:
    source = Image.new("P", (48, 32), 0)
    source.putpalette([0, 0, 0, 255, 255, 255])
    source.paste(1, (0, 0, 8, 8))
    data = encoded(source, transparency=1)
    pixels = np.asarray(decode_mask(upload(data, field="mask"), first_image()))
    assert (pixels[:8, :8] == 255).all()
    assert pixels.sum() == 255 * 64


def test_la_mask_counts_as_alpha() -> None:
    data = encoded(Image.new("LA", (48, 32), (0, 0)))
    mask = decode_mask(upload(data, field="mask"), first_image())
    assert mask.getextrema() == (255, 255)


def test_mask_without_alpha_is_refused() -> None:
    data = encoded(Image.new("RGB", (48, 32), "black"))
    with pytest.raises(InvalidMaskImage) as caught:
        decode_mask(upload(data, field="mask"), first_image())
    assert_mask_error(caught.value)
    assert caught.value.message == "Invalid mask image format - mask image missing alpha channel"


@pytest.mark.usefixtures("no_pixel_decoding")
def test_mask_of_another_size_is_refused_before_decoding() -> None:
    data = encoded(rgba_mask((32, 48), (0, 0, 8, 8)))
    first = Image.new("RGB", (48, 32))
    with pytest.raises(InvalidMaskImage) as caught:
        decode_mask(upload(data, field="mask"), first)
    assert_mask_error(caught.value)
    assert caught.value.message == (
        "Invalid mask image format - mask size does not match image size"
    )


def test_mask_matches_the_displayed_size_of_an_exif_rotated_image() -> None:
    exif = Image.Exif()
    exif[0x0112] = 6
    jpeg = encoded(picture((48, 32)), "JPEG", exif=exif)
    [first] = decode_images([upload(jpeg, "image/jpeg")], GPT_IMAGE_LIMITS)
    assert first.size == (32, 48)
    data = encoded(rgba_mask((32, 48), (0, 0, 8, 8)))
    assert decode_mask(upload(data, field="mask"), first).size == (32, 48)


@pytest.mark.parametrize(
    "data",
    [
        encoded(Image.new("RGB", (48, 32)), "JPEG"),
        encoded(Image.new("RGBA", (48, 32)), "WEBP"),
        encoded(rgba_mask((48, 32), (0, 0, 8, 8))) + b"\x00" * (4 * 1024 * 1024),
        encoded(rgba_mask((48, 32), (0, 0, 8, 8)))[:80],
        b"",
    ],
    ids=["jpeg", "webp", "4MB", "truncated", "empty"],
)
def test_masks_must_be_small_decodable_pngs(data: bytes) -> None:
    with pytest.raises(InvalidMaskImage) as caught:
        decode_mask(upload(data, "application/octet-stream", field="mask"), first_image())
    assert_mask_error(caught.value)


def test_mask_with_a_foreign_mimetype_is_unsupported() -> None:
    data = encoded(rgba_mask((48, 32), (0, 0, 8, 8)))
    with pytest.raises(UnsupportedMimetype) as caught:
        decode_mask(upload(data, "image/gif", field="mask"), first_image())
    assert_error(caught.value, UnsupportedMimetype, "mask", "unsupported_file_mimetype")
    assert "Invalid file 'mask'" in caught.value.message


def test_engine_mask_opens_only_fully_transparent_pixels() -> None:
    source = Image.new("RGBA", (3, 1))
    source.putdata([(9, 9, 9, 0), (9, 9, 9, 1), (9, 9, 9, 255)])
    assert list(engine_mask(source).getdata()) == [255, 0, 0]


def test_mask_from_image_alpha() -> None:
    with_hole = Image.new("RGBA", (8, 8), (1, 2, 3, 255))
    with_hole.paste((0, 0, 0, 0), (0, 0, 4, 8))
    mask = mask_from_image_alpha(with_hole)
    assert mask is not None
    assert mask.mode == "L"
    assert np.asarray(mask)[:, :4].min() == 255
    assert np.asarray(mask)[:, 4:].max() == 0
    assert mask_from_image_alpha(Image.new("RGB", (8, 8))) is None
    assert mask_from_image_alpha(Image.new("RGBA", (8, 8), (0, 0, 0, 255))) is None
    assert mask_from_image_alpha(Image.new("RGBA", (8, 8), (0, 0, 0, 128))) is None


# --- data URLs ---------------------------------------------------------------------------------


def test_data_url_becomes_an_upload() -> None:
    data = encoded(picture())
    url = "data:image/png;base64," + base64.b64encode(data).decode()
    result = decode_data_url(url, "images[0].image_url")
    assert result == Upload(data, None, "image/png", "images[0].image_url")
    assert decode_images([result], GPT_IMAGE_LIMITS)[0].size == (48, 32)


def test_data_url_without_media_type_is_sniffed() -> None:
    data = encoded(picture(), "WEBP")
    result = decode_data_url("data:;base64," + base64.b64encode(data).decode(), "x")
    assert result.content_type is None
    assert decode_images([result], GPT_IMAGE_LIMITS)[0].size == (48, 32)


def test_data_url_media_type_is_checked_like_a_part_type() -> None:
    url = "data:image/gif;base64," + base64.b64encode(encoded(picture(), "GIF")).decode()
    with pytest.raises(UnsupportedMimetype) as caught:
        decode_images([decode_data_url(url, "images[0].image_url")], GPT_IMAGE_LIMITS)
    assert caught.value.param == "images[0].image_url"


@pytest.mark.parametrize(
    "url",
    [
        "https://example.com/a.png",
        "http://169.254.169.254/latest/meta-data",
        "file:///etc/passwd",
        "data:image/png,rawbytes",
        "data:image/png;base64",
        "data:image/png;base64,@@@",
        "data:image/png;base64,abc",
    ],
)
def test_malformed_or_remote_urls_are_invalid_image_urls(url: str) -> None:
    with pytest.raises(InvalidImageUrl) as caught:
        decode_data_url(url, "images[0].image_url")
    assert_error(caught.value, InvalidImageUrl, "images[0].image_url", "invalid_image_url")
    assert "'images[0].image_url'" in caught.value.message


def test_data_url_length_is_capped() -> None:
    prefix = "data:image/x-png;base64,"  # 24 chars, so the payload stays a multiple of 4
    url = prefix + "A" * (MAX_DATA_URL_CHARS - len(prefix))
    assert len(url) == MAX_DATA_URL_CHARS
    decode_data_url(url, "mask.image_url")
    with pytest.raises(StringTooLong) as caught:
        decode_data_url(url + "A", "mask.image_url")
    assert_error(caught.value, StringTooLong, "mask.image_url", "string_above_max_length")
