"""Streaming through the live server with the official SDK: partial images are real, earlier
states of the render; errors before the stream are JSON, errors during it are error events; a
client that goes away cancels its render and is never billed; /metrics moves."""

import base64
import io
import time
from collections.abc import Iterator
from typing import Any

import httpx
import numpy as np
import openai
import pytest
from PIL import Image

from tests.api.conftest import (
    leave_three_ways,
    metric,
    new_organization,
    png_bytes,
    project_key,
    wait_for_metric,
)
from tests.conftest import ADMIN_KEY, LiveServer


def pixels(b64: str) -> np.ndarray:
    image = Image.open(io.BytesIO(base64.b64decode(b64)))
    image.load()
    return np.asarray(image.convert("RGB"), dtype=np.int16)


@pytest.fixture()
def customer(live_server: LiveServer) -> Iterator[tuple[openai.OpenAI, openai.OpenAI, str]]:
    """A fresh project of the operator's organization: its own usage, its own key."""
    with openai.OpenAI(
        base_url=live_server.api_url, admin_api_key=ADMIN_KEY, api_key="", max_retries=0
    ) as admin:
        project = admin.admin.organization.projects.create(name="streaming")
        account = admin.admin.organization.projects.service_accounts.create(project.id, name="app")
        assert account.api_key is not None
        with openai.OpenAI(
            base_url=live_server.api_url, api_key=account.api_key.value, max_retries=0
        ) as sdk:
            yield sdk, admin, project.id


def usage_results(admin: openai.OpenAI, project: str) -> list[Any]:
    usage = admin.admin.organization.usage.images(
        start_time=int(time.time()) - 3600, bucket_width="1h", project_ids=[project]
    )
    return [result for bucket in usage.data for result in bucket.results]


@pytest.mark.parametrize("partials", [0, 1, 2, 3])
def test_generation_stream_with_partials(
    customer: tuple[openai.OpenAI, openai.OpenAI, str], partials: int
) -> None:
    sdk, admin, project = customer
    events = list(
        sdk.images.generate(
            model="gpt-image-1",
            prompt="a red circle",
            quality="high",  # four denoising steps: room for three partial states
            stream=True,
            partial_images=partials,
            extra_body={"seed": 7},
        )
    )
    types = [event.type for event in events]
    assert types == ["image_generation.partial_image"] * partials + ["image_generation.completed"]
    final = events[-1]
    assert final.usage.output_tokens > 0 and final.usage.input_tokens > 0
    assert (final.size, final.quality, final.output_format) == ("1024x1024", "high", "png")
    final_pixels = pixels(final.b64_json)
    assert final_pixels.shape == (1024, 1024, 3)
    for index, partial in enumerate(events[:-1]):
        assert partial.partial_image_index == index
        state = pixels(partial.b64_json)
        assert state.shape == final_pixels.shape
        # An earlier state of the same render, not a copy of the final image (the tiny random
        # model changes little in its last steps; the first partial is clearly earlier).
        assert not np.array_equal(state, final_pixels)
    if partials:
        assert np.abs(pixels(events[0].b64_json) - final_pixels).mean() > 1.0
    if partials >= 2:
        assert np.abs(pixels(events[0].b64_json) - pixels(events[1].b64_json)).mean() > 0.5
    (billed,) = usage_results(admin, project)
    assert billed.images == 1 and billed.num_model_requests == 1


def test_streamed_final_image_equals_the_non_streamed_one(
    customer: tuple[openai.OpenAI, openai.OpenAI, str],
) -> None:
    sdk, _admin, _project = customer
    common: dict[str, Any] = {"model": "gpt-image-1", "prompt": "a blue square", "quality": "low"}
    plain = sdk.images.generate(**common, extra_body={"seed": 11})
    streamed = list(sdk.images.generate(**common, stream=True, extra_body={"seed": 11}))
    assert plain.data is not None and plain.data[0].b64_json is not None
    assert np.array_equal(pixels(plain.data[0].b64_json), pixels(streamed[-1].b64_json))


def test_edit_stream(customer: tuple[openai.OpenAI, openai.OpenAI, str]) -> None:
    sdk, _admin, _project = customer
    events = list(
        sdk.images.edit(
            model="gpt-image-1",
            image=("in.png", png_bytes((128, 128)), "image/png"),
            prompt="make it green",
            quality="high",
            stream=True,
            partial_images=2,
        )
    )
    assert [e.type for e in events][-1] == "image_edit.completed"
    assert {e.type for e in events[:-1]} <= {"image_edit.partial_image"}
    assert events[-1].usage.input_tokens_details.image_tokens > 0


def test_n_images_stream_one_completed_event_each_and_usage_sums(
    customer: tuple[openai.OpenAI, openai.OpenAI, str],
) -> None:
    sdk, admin, project = customer
    common: dict[str, Any] = {
        "model": "gpt-image-1",
        "prompt": "two dots",
        "quality": "low",
        "n": 2,
    }
    events = list(sdk.images.generate(**common, stream=True))
    completed = [e for e in events if e.type == "image_generation.completed"]
    assert len(completed) == 2
    assert not np.array_equal(pixels(completed[0].b64_json), pixels(completed[1].b64_json))
    plain = sdk.images.generate(**common)
    assert plain.usage is not None
    assert sum(e.usage.output_tokens for e in completed) == plain.usage.output_tokens
    assert sum(e.usage.input_tokens for e in completed) == plain.usage.input_tokens
    assert sum(e.usage.total_tokens for e in completed) == plain.usage.total_tokens
    assert [r.images for r in usage_results(admin, project)] == [4]


def test_errors_before_the_stream_are_json(
    customer: tuple[openai.OpenAI, openai.OpenAI, str],
) -> None:
    sdk, _admin, _project = customer
    with pytest.raises(openai.BadRequestError) as caught:
        sdk.images.generate(model="gpt-image-1", prompt="x", size="13x13", stream=True)
    assert caught.value.code == "invalid_value" and caught.value.param == "size"
    with pytest.raises(openai.BadRequestError) as caught:
        sdk.images.generate(model="gpt-image-1", prompt="x", stream=True, partial_images=4)
    assert caught.value.param == "partial_images"


def test_a_failure_at_the_first_step_is_still_a_json_error(
    customer: tuple[openai.OpenAI, openai.OpenAI, str],
) -> None:
    """The response starts only once the render is past its first step, so an engine that
    fails at once answers with a status, not with a 200 and an error event."""
    sdk, admin, project = customer
    with pytest.raises(openai.InternalServerError) as caught:
        sdk.images.generate(model="broken-model", prompt="x", quality="low", stream=True)
    assert caught.value.type == "server_error"
    assert usage_results(admin, project) == []


def test_an_error_mid_stream_is_an_error_event_and_is_not_billed(
    live_server: LiveServer,
) -> None:
    """An organization whose policy refuses every output: the first partial image is refused
    after the stream started, so the refusal arrives as an error event."""
    operator = {"authorization": f"Bearer {ADMIN_KEY}"}
    created = new_organization(live_server, name="strict", verified=True, tier="1")
    org, project = created["id"], created["default_project_id"]
    key = project_key(live_server, org, project)
    policy = {"checks": {"open_nsfw": {"thresholds": {"auto": 0, "low": 0}}}}
    refused = httpx.put(
        f"{live_server.api_url}/limner/organizations/{org}/moderation",
        json=policy,
        headers=operator,
    )
    assert refused.status_code == 200
    with openai.OpenAI(base_url=live_server.api_url, api_key=key, max_retries=0) as sdk:
        stream = sdk.images.generate(
            model="gpt-image-1", prompt="a dot", quality="high", stream=True, partial_images=2
        )
        with pytest.raises(openai.APIError) as caught:
            list(stream)
        assert caught.value.code == "moderation_blocked"
        assert caught.value.type == "image_generation_user_error"
    with openai.OpenAI(
        base_url=live_server.api_url,
        admin_api_key=created["admin_api_key"]["value"],
        api_key="",
        max_retries=0,
    ) as admin:
        assert usage_results(admin, project) == []


def test_a_client_that_goes_away_cancels_its_render_and_pays_nothing(
    live_server: LiveServer, customer: tuple[openai.OpenAI, openai.OpenAI, str]
) -> None:
    sdk, admin, project = customer
    headers = {"authorization": f"Bearer {sdk.api_key}"}
    body = {"model": "slow-model", "prompt": "a slow dot", "quality": "low"}
    cancelled_before = metric(live_server, "limner_renders_cancelled_total", model="slow")
    finished_before = metric(live_server, "limner_generation_seconds_count", model="slow")
    leave_three_ways(
        live_server.api_url + "/images/generations",
        body,
        {"partial_images": 3},
        headers,
        first_event=lambda line: line.startswith("data:"),
    )
    wait_for_metric(live_server, "limner_renders_cancelled_total", cancelled_before + 3, "slow")
    # No 300-step call ran to its end, and nothing was billed.
    assert metric(live_server, "limner_generation_seconds_count", model="slow") == finished_before
    assert usage_results(admin, project) == []


def test_metrics_move_as_requests_run(
    live_server: LiveServer, customer: tuple[openai.OpenAI, openai.OpenAI, str]
) -> None:
    sdk, _admin, _project = customer
    images_before = metric(live_server, "limner_images_generated_total", model="gpt-image-1")
    batches_before = metric(live_server, "limner_batch_size_count", model="tiny")
    errors_before = metric(live_server, "limner_request_errors_total", code="invalid_value")
    sdk.images.generate(model="gpt-image-1", prompt="a dot", quality="low", n=2)
    with pytest.raises(openai.BadRequestError):
        sdk.images.generate(model="gpt-image-1", prompt="x", size="13x13")
    images = metric(live_server, "limner_images_generated_total", model="gpt-image-1")
    assert images == images_before + 2
    assert metric(live_server, "limner_batch_size_count", model="tiny") >= batches_before + 1
    errors = metric(live_server, "limner_request_errors_total", code="invalid_value")
    assert errors == errors_before + 1
    text = httpx.get(live_server.base_url + "/metrics").text
    for family in ("limner_queue_depth", "limner_queue_wait_seconds", "limner_generation_seconds"):
        assert family in text
