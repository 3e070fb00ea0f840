"""Defaults and the model default rule (error rows: tests/api/test_bad_inputs.py)."""

from pathlib import Path

import pytest

from limner.catalog import Catalog
from limner.errors import InvalidValue, UnknownParameter
from limner.images.rules import resolve

CATALOG = Catalog.single_backend(Path("/models/x"))


def test_gpt_defaults_resolve_auto() -> None:
    request = resolve("generation", {"model": "gpt-image-1", "prompt": "p"}, CATALOG)
    assert (request.width, request.height) == (1024, 1024)
    assert request.quality == "high" and request.wire_quality == "high"
    assert request.background == "opaque"
    assert request.output_format == "png"
    assert request.output_compression == 100
    assert request.response_format == "b64_json"
    assert request.n == 1 and not request.stream
    assert request.steps == 25
    assert (request.working_width, request.working_height) == (512, 512)


def test_nulls_mean_defaults() -> None:
    request = resolve(
        "generation", {"model": "gpt-image-1", "prompt": "p", "n": None, "quality": None}, CATALOG
    )
    assert request.n == 1 and request.quality == "high"


@pytest.mark.parametrize(
    ("body", "model"),
    [
        ({}, "dall-e-2"),
        ({"size": "1024x1024"}, "dall-e-2"),
        ({"output_format": "png"}, "gpt-image-1"),
        ({"background": "auto"}, "gpt-image-1"),
        ({"moderation": "low"}, "gpt-image-1"),
        ({"output_compression": 50}, "gpt-image-1"),
        ({"output_format": None}, "dall-e-2"),  # null is absence
    ],
)
def test_model_default_rule(body: dict[str, object], model: str) -> None:
    assert resolve("generation", {"prompt": "p", **body}, CATALOG).model == model


def test_variation_defaults_to_dalle2_with_url() -> None:
    request = resolve("variation", {}, CATALOG, form=True)
    assert request.model == "dall-e-2"
    assert request.response_format == "url"
    assert request.prompt == ""


def test_dalle_quality_maps_to_tiers() -> None:
    standard = resolve("generation", {"model": "dall-e-3", "prompt": "p"}, CATALOG)
    hd = resolve("generation", {"model": "dall-e-3", "prompt": "p", "quality": "hd"}, CATALOG)
    assert (standard.quality, standard.wire_quality, standard.style) == (
        "medium",
        "standard",
        "vivid",
    )
    assert (hd.quality, hd.wire_quality) == ("high", "hd")


def test_form_values_are_coerced() -> None:
    request = resolve(
        "edit",
        {
            "model": "gpt-image-1",
            "prompt": "p",
            "n": "3",
            "stream": "false",
            "output_compression": "40",
        },
        CATALOG,
        form=True,
    )
    assert (request.n, request.stream, request.output_compression) == (3, False, 40)


def test_json_values_are_not_coerced() -> None:
    with pytest.raises(Exception, match="expected an integer"):
        resolve("generation", {"model": "gpt-image-1", "prompt": "p", "n": "3"}, CATALOG)


def test_seed_is_random_unless_given() -> None:
    seeds = {
        resolve("generation", {"model": "gpt-image-1", "prompt": "p"}, CATALOG).seed
        for _ in range(5)
    }
    assert len(seeds) > 1
    assert (
        resolve("generation", {"model": "gpt-image-1", "prompt": "p", "seed": 9}, CATALOG).seed == 9
    )


def test_error_messages_name_the_allowed_values() -> None:
    with pytest.raises(InvalidValue) as caught:
        resolve("generation", {"model": "gpt-image-1", "prompt": "p", "size": "512x512"}, CATALOG)
    assert caught.value.message == (
        "Invalid value: '512x512'. Supported values are: '1024x1024', '1536x1024', "
        "'1024x1536', and 'auto'."
    )
    with pytest.raises(UnknownParameter) as unknown:
        resolve(
            "generation", {"model": "gpt-image-1", "prompt": "p", "response_format": "url"}, CATALOG
        )
    assert unknown.value.message == "Unknown parameter: 'response_format'."
