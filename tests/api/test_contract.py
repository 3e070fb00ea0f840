"""Responses validated against OpenAI's own OpenAPI document (a copy kept in this repo)."""

from functools import cache
from pathlib import Path
from typing import Any

import httpx
import pytest
import yaml
from jsonschema import Draft202012Validator
from referencing import Registry
from referencing.jsonschema import DRAFT202012

from tests.api.conftest import png_bytes
from tests.conftest import API_KEY, LiveServer

SPECS = sorted((Path(__file__).parent / "contract").glob("openapi-images-subset.*.yaml"))
AUTH = {"authorization": f"Bearer {API_KEY}"}


@cache
def validator(spec: Path, component: str) -> Draft202012Validator:
    document = yaml.safe_load(spec.read_text())
    registry = Registry().with_resource("urn:openapi", DRAFT202012.create_resource(document))
    return Draft202012Validator(
        {"$ref": f"urn:openapi#/components/schemas/{component}"}, registry=registry
    )


def assert_matches(body: Any, component: str) -> None:
    for spec in SPECS:
        errors = sorted(validator(spec, component).iter_errors(body), key=str)
        assert not errors, f"{spec.name}: {errors[0]}"


@pytest.fixture(scope="module")
def responses(live_server: LiveServer) -> dict[str, Any]:
    api = live_server.api_url
    square = png_bytes((256, 256))
    with httpx.Client(headers=AUTH, timeout=120) as http:
        return {
            "gpt": http.post(
                api + "/images/generations",
                json={"model": "gpt-image-1", "prompt": "a boat", "quality": "low", "n": 2},
            ),
            "dalle2_url": http.post(
                api + "/images/generations",
                json={"model": "dall-e-2", "prompt": "a boat", "size": "256x256"},
            ),
            "dalle3_b64": http.post(
                api + "/images/generations",
                json={"model": "dall-e-3", "prompt": "a boat", "response_format": "b64_json"},
            ),
            "edit": http.post(
                api + "/images/edits",
                data={"model": "gpt-image-1", "prompt": "x", "quality": "low"},
                files=[("image[]", ("a.png", square, "image/png"))],
            ),
            "variation": http.post(
                api + "/images/variations",
                data={"size": "256x256"},
                files=[("image", ("a.png", square, "image/png"))],
            ),
            "models": http.get(api + "/models"),
            "model": http.get(api + "/models/gpt-image-1"),
            "error": http.post(
                api + "/images/generations",
                json={"model": "gpt-image-1", "prompt": "x", "size": "7x7"},
            ),
        }


@pytest.mark.parametrize("name", ["gpt", "dalle2_url", "dalle3_b64", "edit", "variation"])
def test_images_responses_match_spec(responses: dict[str, Any], name: str) -> None:
    response = responses[name]
    assert response.status_code == 200, response.text
    assert response.headers["content-type"] == "application/json"
    assert_matches(response.json(), "ImagesResponse")


def test_models_match_spec(responses: dict[str, Any]) -> None:
    assert_matches(responses["models"].json(), "ListModelsResponse")
    assert_matches(responses["model"].json(), "Model")


def test_error_matches_spec(responses: dict[str, Any]) -> None:
    assert responses["error"].status_code == 400
    assert_matches(responses["error"].json(), "ErrorResponse")


def test_spec_rejects_a_wrong_shape() -> None:
    # The validator itself must be able to fail, or the tests above prove nothing.
    with pytest.raises(AssertionError):
        assert_matches({"created": "yesterday", "data": [{"url": 5}]}, "ImagesResponse")
