"""Safe decoding of uploaded input images and masks: formats, byte/pixel limits, bomb guard.

Every upload is untrusted: its declared type is only a hint, its real format is sniffed from the
magic bytes, its header size is checked before a single pixel is decoded, and only the one PIL
plugin matching the sniffed format ever parses it.
"""

import base64
import binascii
import io
import struct
import warnings
from collections.abc import Callable, Sequence
from dataclasses import dataclass

import numpy as np
from PIL import Image, ImageOps

from limner.errors import (
    ImageTooLarge,
    InvalidImageFile,
    InvalidImageFormat,
    InvalidImageUrl,
    InvalidMaskImage,
    InvalidValue,
    MissingParameter,
    StringTooLong,
    UnsupportedMimetype,
)

_MB = 1024 * 1024

# Declared part types we take at face value (the SDK guesses them from the file extension).
_IMAGE_MIMETYPES = frozenset({"image/png", "image/jpeg", "image/jpg", "image/webp"})
# Types that say nothing about the content: sniff the bytes instead. The SDK sends
# application/octet-stream for raw bytes / BytesIO; OpenAI refuses those, we deliberately accept.
_UNDECLARED_MIMETYPES = frozenset({"", "application/octet-stream"})
_MIMETYPE_OF = {"JPEG": "image/jpeg", "PNG": "image/png", "WEBP": "image/webp"}

# The data URL cap of the JSON edit variant (EditImageBodyJsonParam image_url maxLength).
MAX_DATA_URL_CHARS = 20_971_520


@dataclass(frozen=True)
class Upload:
    """One received file. `field` is the wire name errors report ("image", "mask", ...)."""

    data: bytes
    filename: str | None
    content_type: str | None
    field: str


@dataclass(frozen=True)
class ImageLimits:
    """What one model family accepts as edit/variation input.

    `max_bytes` is exclusive (the contract says "<50 MB", "<4 MB"; MB read as MiB).
    `legacy_errors` selects DALL·E 2's single "Uploaded image must be a PNG and less than 4 MB."
    refusal (InvalidImageFormat) over the GPT image family's separate codes.
    """

    max_bytes: int
    max_pixels: int
    max_side: int
    formats: frozenset[str]
    require_square: bool
    max_count: int
    legacy_errors: bool = False


# GPT image family: png/jpeg/webp, each <50 MB, up to 16. OpenAI publishes no pixel limit; 50 MP
# admits a 48 MP phone photo (8064x6048) while refusing anything that would take more than
# ~200 MB of RGBA once decoded. 16384 per side (WebP itself stops at 16383) refuses absurd strips.
GPT_IMAGE_LIMITS = ImageLimits(
    max_bytes=50 * _MB,
    max_pixels=50_000_000,
    max_side=16_384,
    formats=frozenset({"PNG", "JPEG", "WEBP"}),
    require_square=False,
    max_count=16,
)

# DALL·E 2: exactly one square PNG <4 MB. It works at 1024x1024 at most; 4096x4096 leaves room for
# any sensible upload while a 4 MB PNG can no longer claim gigapixels.
DALLE2_LIMITS = ImageLimits(
    max_bytes=4 * _MB,
    max_pixels=4096 * 4096,
    max_side=4096,
    formats=frozenset({"PNG"}),
    require_square=True,
    max_count=1,
    legacy_errors=True,
)

# Masks are PNG <4 MB for every model; their size must equal the first image's, which already
# bounds their pixel count before they are decoded.
_MASK_MAX_BYTES = 4 * _MB

_DALLE2_FORMAT_MESSAGE = "Uploaded image must be a PNG and less than 4 MB."
_MASK_ALPHA_MESSAGE = "Invalid mask image format - mask image missing alpha channel"
_MASK_SIZE_MESSAGE = "Invalid mask image format - mask size does not match image size"

# What a corrupt or truncated file makes PIL raise (UnidentifiedImageError is an OSError).
_DECODE_ERRORS = (OSError, SyntaxError, ValueError, EOFError, struct.error)

# Runs on the lazily opened image, when only its header has been read.
_HeaderCheck = Callable[[Image.Image], None]


def decode_images(
    uploads: Sequence[Upload], limits: ImageLimits, *, param: str = "image"
) -> list[Image.Image]:
    """Decode every input image (RGB, or RGBA when it carries alpha), or raise the first refusal.

    `param` names the whole list in count errors ("images" for the JSON edit variant).
    """
    if not uploads:
        raise MissingParameter(param)
    if len(uploads) > limits.max_count:
        noun = "image" if limits.max_count == 1 else "images"
        raise InvalidValue(
            f"Invalid '{param}': expected at most {limits.max_count} {noun}, "
            f"but got {len(uploads)}.",
            param,
        )
    return [_decode_image(upload, limits) for upload in uploads]


def decode_mask(upload: Upload, first_image: Image.Image) -> Image.Image:
    """Validate a mask against the first image and return it in engine convention (see engine_mask).

    The rules are OpenAI's: PNG, <4 MB, an alpha channel, the first image's exact dimensions.
    """
    _check_mimetype(upload, frozenset({"PNG"}))
    if len(upload.data) >= _MASK_MAX_BYTES:
        raise InvalidMaskImage(
            "Invalid mask image format - mask must be a PNG and less than 4 MB.", upload.field
        )
    if _sniff(upload.data) != "PNG":
        raise InvalidMaskImage("Invalid mask image format - mask must be a PNG.", upload.field)

    def check_size(mask: Image.Image) -> None:
        # On the header: a mask of any other size is refused before it is decompressed.
        if mask.size != first_image.size:
            raise InvalidMaskImage(_MASK_SIZE_MESSAGE, upload.field)

    # Not EXIF-transposed: masks are PNGs drawn over the displayed image, and the header size
    # must be final for the check above to run before decoding.
    mask = _open_guarded(
        upload, "PNG", first_image.width * first_image.height, check_size, mask=True
    )
    if not mask.has_transparency_data:
        raise InvalidMaskImage(_MASK_ALPHA_MESSAGE, upload.field)
    return engine_mask(mask)


def engine_mask(mask: Image.Image) -> Image.Image:
    """OpenAI mask → engine mask: mode "L", white (255) where alpha == 0 (repaint), black elsewhere.

    Only fully transparent pixels are editable, as the contract says; partial alpha is kept.
    """
    alpha = mask.convert("RGBA").getchannel("A")
    return alpha.point([255] + [0] * 255)


def mask_from_image_alpha(image: Image.Image) -> Image.Image | None:
    """DALL·E 2 without a mask: the image's own fully transparent pixels are the mask.

    None when the image has no fully transparent pixel (nothing would be editable).
    """
    if not image.has_transparency_data:
        return None
    alpha = image.convert("RGBA").getchannel("A")
    lowest, _ = alpha.getextrema()
    if lowest != 0:
        return None
    return engine_mask(image)


def decode_data_url(url: str, field: str) -> Upload:
    """A base64 `data:` URL from the JSON edit variant → Upload named by `field`.

    Remote http(s) URLs are fetched by the transport layer, never here.
    """
    if len(url) > MAX_DATA_URL_CHARS:
        raise StringTooLong(
            f"Invalid '{field}': string too long. Expected a string with maximum length "
            f"{MAX_DATA_URL_CHARS}, but got a string with length {len(url)} instead.",
            field,
        )
    if url[:5].lower() != "data:":
        raise InvalidImageUrl(
            f"Invalid '{field}': expected a base64 data URL (data:image/png;base64,...).", field
        )
    header, comma, payload = url[5:].partition(",")
    params = [part.strip().lower() for part in header.split(";")]
    if not comma or params[-1] != "base64":
        raise InvalidImageUrl(
            f"Invalid '{field}': the data URL must be base64-encoded (data:image/png;base64,...).",
            field,
        )
    try:
        data = base64.b64decode(payload, validate=True)
    except (binascii.Error, ValueError):
        raise InvalidImageUrl(
            f"Invalid '{field}': the data URL does not hold valid base64.", field
        ) from None
    return Upload(data=data, filename=None, content_type=params[0] or None, field=field)


def _decode_image(upload: Upload, limits: ImageLimits) -> Image.Image:
    _check_mimetype(upload, limits.formats)
    if not upload.data:
        raise InvalidImageFile(f"Invalid file '{upload.field}': the file is empty.", upload.field)
    if len(upload.data) >= limits.max_bytes:
        if limits.legacy_errors:
            raise InvalidImageFormat(_DALLE2_FORMAT_MESSAGE, upload.field)
        raise ImageTooLarge(
            f"Invalid file '{upload.field}': the file is {len(upload.data)} bytes; images must "
            f"be smaller than {limits.max_bytes // _MB} MB.",
            upload.field,
        )
    kind = _sniff(upload.data)
    if kind not in limits.formats:
        if limits.legacy_errors:
            raise InvalidImageFormat(_DALLE2_FORMAT_MESSAGE, upload.field)
        found = f"{kind} images are not supported" if kind else "the file is not an image"
        raise InvalidImageFile(
            f"Invalid file '{upload.field}': {found}. "
            f"Supported formats are {_names(sorted(_MIMETYPE_OF[f] for f in limits.formats))}.",
            upload.field,
        )

    def check_header(image: Image.Image) -> None:
        _check_pixels(upload, image, limits)

    return _open_guarded(upload, kind, limits.max_pixels, check_header)


def _check_pixels(upload: Upload, image: Image.Image, limits: ImageLimits) -> None:
    width, height = image.size
    if max(width, height) > limits.max_side:
        raise ImageTooLarge(
            f"Invalid file '{upload.field}': {width}x{height} exceeds the maximum side of "
            f"{limits.max_side} pixels.",
            upload.field,
        )
    if limits.require_square and width != height:
        # OpenAI's wording for this case is not recorded; DALL·E 2's other refusals share a code.
        raise InvalidImageFormat(
            f"Uploaded image must be square; got {width}x{height}.", upload.field
        )


def _open_guarded(
    upload: Upload,
    kind: str,
    max_pixels: int,
    check_header: _HeaderCheck,
    *,
    mask: bool = False,
) -> Image.Image:
    """Open with only `kind`'s plugin, refuse by header size, then decode fully; RGB/RGBA out.

    PIL's own bomb guard depends on the process-wide Image.MAX_IMAGE_PIXELS and only warns below
    twice that; the warning is made an error here, locally, so other code keeps PIL's behaviour.
    catch_warnings is not thread-safe (it swaps the process-wide filter list for the block), so a
    PIL bomb warning raised in another thread meanwhile would also become an error there, which
    is the safe direction; our own header check below does not depend on the filter at all.
    """
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("error", Image.DecompressionBombWarning)
            # Image.open is lazy: it parses the header only, so the size check below runs before
            # any pixel data is decompressed.
            image = Image.open(io.BytesIO(upload.data), formats=[kind])
            width, height = image.size
            if width * height > max_pixels:
                raise ImageTooLarge(
                    f"Invalid file '{upload.field}': {width}x{height} pixels exceeds the limit "
                    f"of {max_pixels} pixels.",
                    upload.field,
                )
            check_header(image)
            # load() inside the guard, so truncated or corrupt data fails here and not later.
            image.load()
            if not mask:
                ImageOps.exif_transpose(image, in_place=True)
            return _rgb_or_rgba(image)
    except (Image.DecompressionBombError, Image.DecompressionBombWarning) as exc:
        raise ImageTooLarge(
            f"Invalid file '{upload.field}': the image is too large to decode ({exc}).",
            upload.field,
        ) from None
    except _DECODE_ERRORS:
        if mask:
            raise InvalidMaskImage(
                "Invalid mask image format - the mask could not be decoded.", upload.field
            ) from None
        raise InvalidImageFile(
            f"Invalid file '{upload.field}': the image could not be decoded "
            "(it may be truncated or corrupt).",
            upload.field,
        ) from None


def _rgb_or_rgba(image: Image.Image) -> Image.Image:
    """Normalise every decoded mode to RGB, or RGBA when the file carries transparency."""
    if image.mode in ("RGB", "RGBA"):
        return image
    if image.mode in ("I", "I;16", "I;16B", "I;16L"):
        # 16-bit greyscale PNG: PIL's convert() clips at 255 instead of scaling, whitening it.
        values = np.asarray(image).astype(np.uint32)
        grey = Image.fromarray((values >> 8).clip(0, 255).astype(np.uint8))
        transparent = image.info.get("transparency")
        if isinstance(transparent, int):
            alpha = np.where(values == transparent, 0, 255).astype(np.uint8)
            rgba = grey.convert("RGBA")
            rgba.putalpha(Image.fromarray(alpha))
            return rgba
        return grey.convert("RGB")
    if image.has_transparency_data:
        return image.convert("RGBA")
    return image.convert("RGB")


def _check_mimetype(upload: Upload, formats: frozenset[str]) -> None:
    declared = (upload.content_type or "").split(";", 1)[0].strip().lower()
    if declared in _IMAGE_MIMETYPES or declared in _UNDECLARED_MIMETYPES:
        return
    supported = _names(sorted(_MIMETYPE_OF[f] for f in formats))
    raise UnsupportedMimetype(
        f"Invalid file '{upload.field}': unsupported mimetype ('{declared}'). "
        f"Supported file formats are {supported}.",
        upload.field,
    )


def _sniff(data: bytes) -> str | None:
    """The real format from the magic bytes; names other well-known formats for the message."""
    if data.startswith(b"\x89PNG\r\n\x1a\n"):
        return "PNG"
    if data.startswith(b"\xff\xd8\xff"):
        return "JPEG"
    if data[:4] == b"RIFF" and data[8:12] == b"WEBP":
        return "WEBP"
    if data[:6] in (b"GIF87a", b"GIF89a"):
        return "GIF"
    if data[:2] == b"BM":
        return "BMP"
    if data[:4] in (b"II*\x00", b"MM\x00*"):
        return "TIFF"
    return None


def _names(items: Sequence[str]) -> str:
    """OpenAI's list style: 'a'; 'a' and 'b'; 'a', 'b', and 'c'."""
    quoted = [f"'{item}'" for item in items]
    if len(quoted) <= 2:
        return " and ".join(quoted)
    return ", ".join(quoted[:-1]) + ", and " + quoted[-1]
