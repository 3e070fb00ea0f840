"""Moderation through the live server: refusals in both families' shapes, per-organization
policy through the operator API, image checks at both stages, no usage, every decision logged."""

import base64
import io
import time
from collections.abc import Iterator
from typing import Any

import httpx
import openai
import pytest
from PIL import Image

from limner.moderation.image_classifiers import OpenNsfwCheck
from tests.api.conftest import new_organization, png_bytes, project_key
from tests.conftest import ADMIN_KEY, LiveServer

OPERATOR = {"authorization": f"Bearer {ADMIN_KEY}"}


@pytest.fixture()
def customer(platform_server: LiveServer) -> dict[str, str]:
    """A fresh verified organization with a project key: its policy changes touch no one else."""
    created = new_organization(platform_server, name="moderated", verified=True, tier="1")
    project = created["default_project_id"]
    key = project_key(platform_server, created["id"], project)
    admin = created["admin_api_key"]["value"]
    return {"id": created["id"], "project": project, "key": key, "admin": admin}


@pytest.fixture()
def sdk(platform_server: LiveServer, customer: dict[str, str]) -> Iterator[openai.OpenAI]:
    with openai.OpenAI(
        base_url=platform_server.api_url, api_key=customer["key"], max_retries=0
    ) as client:
        yield client


def set_policy(server: LiveServer, organization: str, changes: dict[str, Any]) -> httpx.Response:
    return httpx.put(
        f"{server.api_url}/limner/organizations/{organization}/moderation",
        json=changes,
        headers=OPERATOR,
    )


def decisions(server: LiveServer, request_id: str) -> list[dict[str, Any]]:
    response = httpx.get(
        server.api_url + "/limner/moderation/decisions",
        params={"request_id": request_id},
        headers=OPERATOR,
    )
    assert response.status_code == 200, response.text
    rows: list[dict[str, Any]] = response.json()["data"]
    return rows


def usage_results(server: LiveServer, customer: dict[str, str]) -> list[Any]:
    with openai.OpenAI(
        base_url=server.api_url, admin_api_key=customer["admin"], api_key="", max_retries=0
    ) as admin:
        usage = admin.admin.organization.usage.images(
            start_time=int(time.time()) - 3600, bucket_width="1h", project_ids=[customer["project"]]
        )
    return [result for bucket in usage.data for result in bucket.results]


def test_refused_at_auto_allowed_at_low_and_never_billed(
    platform_server: LiveServer, customer: dict[str, str], sdk: openai.OpenAI
) -> None:
    prompt = "a topless sunbather on a crowded beach"
    with pytest.raises(openai.BadRequestError) as caught:
        sdk.images.generate(model="gpt-image-1", prompt=prompt, quality="low")
    error = caught.value
    assert error.status_code == 400 and error.code == "moderation_blocked"
    assert error.type == "image_generation_user_error" and error.param is None
    request_id = error.response.headers["x-request-id"]
    assert f"include the request ID {request_id}" in error.message
    assert "safety_violations=[sexual]" in error.message
    assert usage_results(platform_server, customer) == []

    allowed = sdk.images.generate(
        model="gpt-image-1", prompt=prompt, quality="low", moderation="low"
    )
    assert allowed.data and allowed.data[0].b64_json
    (billed,) = usage_results(platform_server, customer)
    assert billed.num_model_requests == 1 and billed.images == 1

    (logged,) = decisions(platform_server, request_id)
    assert logged["allowed"] is False and logged["stage"] == "prompt"
    assert logged["check"] == "terms" and logged["level"] == "auto"
    assert logged["organization_id"] == customer["id"]


def test_severe_prompts_are_refused_at_low_too_in_each_familys_shape(sdk: openai.OpenAI) -> None:
    prompt = "hardcore porn, genitals visible"
    with pytest.raises(openai.BadRequestError) as caught:
        sdk.images.generate(model="gpt-image-1", prompt=prompt, moderation="low")
    assert caught.value.code == "moderation_blocked"
    with pytest.raises(openai.BadRequestError) as caught:
        sdk.images.generate(model="dall-e-3", prompt=prompt)
    assert caught.value.code == "content_policy_violation"
    assert caught.value.type == "invalid_request_error"
    assert "rejected as a result of our safety system" in caught.value.message


def open_nsfw_score(data: bytes) -> float:
    """What the server's open_nsfw check scores this image, computed here the same way."""
    image = Image.open(io.BytesIO(data))
    image.load()
    return OpenNsfwCheck().score_images([image])[0].score


def thresholds(stage: str, value: float) -> dict[str, Any]:
    return {
        "checks": {"open_nsfw": {"stages": [stage], "thresholds": {"auto": value, "low": value}}}
    }


def test_a_refused_input_image(
    platform_server: LiveServer, customer: dict[str, str], sdk: openai.OpenAI
) -> None:
    """The real open_nsfw scores the upload; a threshold just under that score refuses it, one
    just over lets it through."""
    upload = png_bytes()
    score = open_nsfw_score(upload)
    assert 0 < score < 0.5

    def edit() -> Any:
        return sdk.images.edit(
            model="gpt-image-1", image=("in.png", upload, "image/png"), prompt="make it blue"
        )

    assert set_policy(platform_server, customer["id"], thresholds("input", score * 0.9)).is_success
    with pytest.raises(openai.BadRequestError) as caught:
        edit()
    assert caught.value.code == "moderation_blocked"
    rows = decisions(platform_server, caught.value.response.headers["x-request-id"])
    assert [(r["stage"], r["allowed"]) for r in rows] == [("prompt", True), ("input", False)]
    assert rows[1]["check"] == "open_nsfw" and rows[1]["score"] == pytest.approx(score, rel=1e-3)
    assert usage_results(platform_server, customer) == []

    assert set_policy(platform_server, customer["id"], thresholds("input", score * 1.1)).is_success
    assert edit().data
    assert len(usage_results(platform_server, customer)) == 1


def test_a_refused_output_is_neither_returned_nor_billed(
    platform_server: LiveServer, customer: dict[str, str], sdk: openai.OpenAI
) -> None:
    """A known generated image (fixed seed) trips the real classifier once the organization's
    threshold is lowered under its score; the refused render is not billed and its image goes
    back to the per-minute window."""
    with openai.OpenAI(
        base_url=platform_server.api_url, admin_api_key=customer["admin"], api_key=""
    ) as admin:
        admin.admin.organization.projects.rate_limits.update_rate_limit(
            "rl-gpt-image-1", project_id=customer["project"], max_images_per_1_minute=2
        )

    def generate() -> Any:
        return sdk.images.generate(
            model="gpt-image-1", prompt="a red circle", quality="low", extra_body={"seed": 5}
        )

    first = generate()
    score = open_nsfw_score(base64.b64decode(first.data[0].b64_json))
    assert 0 < score < 0.5
    assert set_policy(platform_server, customer["id"], thresholds("output", score * 0.9)).is_success
    with pytest.raises(openai.BadRequestError) as caught:
        generate()
    assert caught.value.code == "moderation_blocked"
    rows = decisions(platform_server, caught.value.response.headers["x-request-id"])
    assert [(r["stage"], r["allowed"]) for r in rows] == [("prompt", True), ("output", False)]
    assert rows[1]["score"] == pytest.approx(score, rel=1e-3)
    assert [r.images for r in usage_results(platform_server, customer)] == [1]
    # The refused image went back to the window: a second image still fits in the minute.
    assert set_policy(platform_server, customer["id"], {}).is_success
    again = generate()
    assert again.data[0].b64_json == first.data[0].b64_json
    assert [r.images for r in usage_results(platform_server, customer)] == [2]


def test_policy_api(platform_server: LiveServer, customer: dict[str, str]) -> None:
    url = f"{platform_server.api_url}/limner/organizations/{customer['id']}/moderation"
    shown = httpx.get(url, headers=OPERATOR).json()
    assert shown["changes"] == {} and shown["policy"]["checks"]["open_nsfw"]["enabled"] is True
    bad = set_policy(platform_server, customer["id"], {"checks": {"open_nsfw": {"enabled": 3}}})
    assert bad.status_code == 400
    assert bad.json()["error"]["code"] == "invalid_value"
    assert "open_nsfw" in bad.json()["error"]["message"]
    off = set_policy(platform_server, customer["id"], {"enabled": False})
    assert off.json()["policy"]["enabled"] is False
    unknown = httpx.get(
        f"{platform_server.api_url}/limner/organizations/org-nope/moderation", headers=OPERATOR
    )
    assert unknown.status_code == 404
    as_customer = httpx.get(url, headers={"authorization": f"Bearer {customer['key']}"})
    assert as_customer.status_code in (401, 403)
