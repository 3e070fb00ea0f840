"""/v1/responses with the image_generation tool, through the official Python SDK against a live
`limner serve` on the tiny pipeline: create, stream, the stream helper, stored chains, replays,
edits that depend on the earlier image, scoping, billing (responses-api.md)."""

import base64
import io
import json
import sqlite3
import time
from typing import Any

import httpx
import openai
import pytest
from PIL import Image, ImageChops

from tests.api.conftest import (
    leave_three_ways,
    mask_bytes,
    metric,
    new_organization,
    png_bytes,
    project_key,
    wait_for_metric,
)
from tests.conftest import ADMIN_KEY, API_KEY, LiveServer

MAINLINE = "gpt-4.1"
TOOL: dict[str, Any] = {"type": "image_generation", "quality": "low", "size": "1024x1024"}

# The §3.2 sequence for one call and the closing message.
STREAM_ORDER = [
    "response.created",
    "response.in_progress",
    "response.output_item.added",
    "response.image_generation_call.in_progress",
    "response.image_generation_call.generating",
    *["response.image_generation_call.partial_image"] * 2,
    "response.image_generation_call.completed",
    "response.output_item.done",
    "response.output_item.added",
    "response.content_part.added",
    "response.output_text.delta",
    "response.output_text.done",
    "response.content_part.done",
    "response.output_item.done",
    "response.completed",
]


def tool(**fields: Any) -> dict[str, Any]:
    return {**TOOL, **fields}


def image_call(response: Any) -> Any:
    calls = [item for item in response.output if item.type == "image_generation_call"]
    assert len(calls) == 1, response.output
    return calls[0]


def image_of(b64: str) -> Image.Image:
    image = Image.open(io.BytesIO(base64.b64decode(b64)))
    image.load()
    return image


def db(server: LiveServer) -> sqlite3.Connection:
    return sqlite3.connect(server.home / "limner.db")


def count(server: LiveServer, sql: str, *args: Any) -> int:
    with db(server) as connection:
        return int(connection.execute(sql, args).fetchone()[0])


def usage_rows(server: LiveServer, request_source: str = "responses.image_generation") -> int:
    return count(server, "SELECT count(*) FROM usage_records WHERE source = ?", request_source)


def data_url(data: bytes) -> str:
    return "data:image/png;base64," + base64.b64encode(data).decode()


def with_image(text: str, image: bytes) -> dict[str, Any]:
    """A user message: its text, then one input image."""
    return {
        "role": "user",
        "content": [
            {"type": "input_text", "text": text},
            {"type": "input_image", "image_url": data_url(image)},
        ],
    }


def test_create_makes_one_image_call_then_a_message(
    client: openai.OpenAI, live_server: LiveServer
) -> None:
    billed = usage_rows(live_server)
    response = client.responses.create(
        model=MAINLINE, input="a red circle on a blue background", tools=[tool(seed=4)]
    )
    assert response.id.startswith("resp_")
    assert response.object == "response" and response.status == "completed"
    assert response.model == MAINLINE
    assert [item.type for item in response.output] == ["image_generation_call", "message"]
    call = image_call(response)
    assert call.id.startswith("ig_") and call.status == "completed"
    image = image_of(call.result)  # bare base64, no data: prefix
    assert image.format == "PNG" and image.size == (1024, 1024)
    assert (call.size, call.quality, call.background, call.output_format) == (
        "1024x1024",
        "low",
        "opaque",
        "png",
    )
    assert call.revised_prompt == "a red circle on a blue background"
    assert call.action == "generate"
    message = response.output[1]
    assert message.id.startswith("msg_") and message.role == "assistant"
    assert response.output_text  # the SDK's concatenation of the message's text
    # No language model ran; the image's tokens are the Images API's.
    assert response.usage is not None and response.usage.total_tokens == 0
    assert response.tool_usage is not None
    images_api = client.images.generate(
        model="gpt-image-1",
        prompt="a red circle on a blue background",
        quality="low",
        size="1024x1024",
        extra_body={"seed": 4},
    )
    assert images_api.usage is not None
    image_gen = response.tool_usage.image_gen
    assert image_gen.input_tokens == images_api.usage.input_tokens
    assert image_gen.output_tokens == images_api.usage.output_tokens == 272
    # Same prompt, same seed, same working size: the same image as the Images API makes.
    assert images_api.data is not None and images_api.data[0].b64_json == call.result
    assert usage_rows(live_server) == billed + 1


def test_instructions_are_prepended_to_the_prompt(client: openai.OpenAI) -> None:
    response = client.responses.create(
        model=MAINLINE,
        instructions="Draw in watercolour.",
        input=[{"role": "user", "content": [{"type": "input_text", "text": "a lighthouse"}]}],
        tools=[tool()],
    )
    assert image_call(response).revised_prompt == "Draw in watercolour.\n\na lighthouse"
    assert response.instructions == "Draw in watercolour."


def test_output_format_and_tools_echo(client: openai.OpenAI) -> None:
    response = client.responses.create(
        model="gpt-4.1-2025-04-14",
        input="a square",
        tools=[{"type": "image_generation", "quality": "low", "output_format": "webp"}],
        metadata={"run": "echo"},
    )
    call = image_call(response)
    assert image_of(call.result).format == "WEBP" and call.output_format == "webp"
    assert call.size == "1024x1024"  # "auto" resolved
    echoed = response.tools[0].to_dict()
    assert echoed["type"] == "image_generation"
    assert echoed["size"] == "auto" and echoed["output_format"] == "webp"
    assert response.metadata == {"run": "echo"}
    assert response.model == "gpt-4.1-2025-04-14"


def test_tool_choice_none_answers_with_a_message_only(
    client: openai.OpenAI, live_server: LiveServer
) -> None:
    billed = usage_rows(live_server)
    response = client.responses.create(
        model=MAINLINE, input="a cat", tools=[tool()], tool_choice="none"
    )
    assert [item.type for item in response.output] == ["message"]
    assert response.output_text
    no_tools = client.responses.create(model=MAINLINE, input="a cat")
    assert [item.type for item in no_tools.output] == ["message"]
    assert usage_rows(live_server) == billed


def test_forced_tool_choice(client: openai.OpenAI) -> None:
    response = client.responses.create(
        model=MAINLINE,
        input="a cat",
        tools=[tool()],
        tool_choice={"type": "image_generation"},
    )
    assert image_call(response).status == "completed"
    assert response.tool_choice.type == "image_generation"


def test_stream_follows_the_documented_sequence(live_server: LiveServer) -> None:
    """Raw SSE: `event:` equals `type`, sequence numbers from 0 by one, stable indexes."""
    body = {
        "model": MAINLINE,
        "input": "a red circle",
        "stream": True,
        "tools": [tool(partial_images=2, quality="high")],
    }
    events: list[dict[str, Any]] = []
    with httpx.stream(
        "POST",
        live_server.api_url + "/responses",
        json=body,
        headers={"authorization": f"Bearer {API_KEY}"},
        timeout=120,
    ) as response:
        assert response.status_code == 200
        assert response.headers["content-type"].startswith("text/event-stream")
        name = None
        for line in response.iter_lines():
            if line.startswith("event: "):
                name = line.removeprefix("event: ")
            elif line.startswith("data: "):
                event = json.loads(line.removeprefix("data: "))
                assert event["type"] == name
                events.append(event)
    assert [event["type"] for event in events] == STREAM_ORDER
    assert [event["sequence_number"] for event in events] == list(range(len(events)))
    created, completed = events[0]["response"], events[-1]["response"]
    assert created["status"] == "in_progress" and created["output"] == []
    assert created["id"] == completed["id"]
    call_id = events[2]["item"]["id"]
    assert events[2]["item"] == {
        "id": call_id,
        "type": "image_generation_call",
        "status": "in_progress",
    }
    partials = [event for event in events if event["type"].endswith("partial_image")]
    assert [event["partial_image_index"] for event in partials] == [0, 1]
    assert all(event["item_id"] == call_id and event["output_index"] == 0 for event in partials)
    assert all(image_of(event["partial_image_b64"]).size == (1024, 1024) for event in partials)
    done = events[8]["item"]
    assert done["id"] == call_id and done["status"] == "completed" and done["result"]
    assert "result" not in events[7]  # .completed carries no image
    message_added, message_done = events[9], events[14]
    assert message_added["output_index"] == message_done["output_index"] == 1
    assert message_done["item"]["content"][0]["text"] == events[12]["text"]
    assert completed["status"] == "completed"
    assert [item["id"] for item in completed["output"]] == [call_id, message_done["item"]["id"]]
    # The partials are states of the denoising run, not copies of the final image.
    final = image_of(done["result"]).convert("RGB")
    assert ImageChops.difference(
        image_of(partials[0]["partial_image_b64"]).convert("RGB"), final
    ).getbbox()


def test_sdk_stream_and_stream_helper(client: openai.OpenAI) -> None:
    kinds = [
        event.type
        for event in client.responses.create(
            model=MAINLINE,
            input="a cat",
            stream=True,
            tools=[tool(partial_images=1, quality="high")],
        )
    ]
    assert kinds[0] == "response.created" and kinds[-1] == "response.completed"
    assert kinds.count("response.image_generation_call.partial_image") == 1
    with client.responses.stream(
        model=MAINLINE, input="a dog", tools=[tool(partial_images=2, quality="high")]
    ) as stream:
        partials = [
            event
            for event in stream
            if event.type == "response.image_generation_call.partial_image"
        ]
        final = stream.get_final_response()
    assert len(partials) == 2
    assert final.status == "completed" and final.output_text
    assert image_of(image_call(final).result).size == (1024, 1024)


def test_retrieve_delete_and_input_items(client: openai.OpenAI) -> None:
    created = client.responses.create(
        model=MAINLINE,
        input=[{"role": "user", "content": f"line {index}"} for index in range(4)]
        + [{"role": "user", "content": "a small boat"}],
        tools=[tool()],
    )
    fetched = client.responses.retrieve(created.id)
    assert fetched.id == created.id and fetched.status == "completed"
    assert image_call(fetched).result == image_call(created).result
    assert image_call(fetched).revised_prompt == "a small boat"
    # Paged two at a time; newest first by default, as the SDK's cursor pages follow it.
    page = client.responses.input_items.list(created.id, limit=2)
    assert len(page.data) == 2 and page.has_more
    texts = [
        item.content[0].text for item in client.responses.input_items.list(created.id, limit=2)
    ]
    assert texts == ["a small boat", "line 3", "line 2", "line 1", "line 0"]
    ascending = client.responses.input_items.list(created.id, order="asc", limit=100)
    assert [item.content[0].text for item in ascending.data] == texts[::-1]
    assert all(item.id.startswith("msg_") for item in ascending.data)
    client.responses.delete(created.id)
    with pytest.raises(openai.NotFoundError):
        client.responses.retrieve(created.id)
    with pytest.raises(openai.NotFoundError):
        client.responses.delete(created.id)
    with pytest.raises(openai.NotFoundError):
        client.responses.input_items.list(created.id)


def test_cancel_and_background_are_refused_clearly(client: openai.OpenAI) -> None:
    created = client.responses.create(model=MAINLINE, input="a cat", tools=[tool()])
    with pytest.raises(openai.BadRequestError, match="background"):
        client.responses.cancel(created.id)
    with pytest.raises(openai.BadRequestError) as refused:
        client.responses.create(model=MAINLINE, input="a cat", tools=[tool()], background=True)
    assert refused.value.param == "background"


def test_three_turn_chain_by_previous_response_id(
    client: openai.OpenAI, live_server: LiveServer
) -> None:
    images_before = count(live_server, "SELECT count(*) FROM response_images")
    first = client.responses.create(model=MAINLINE, input="a red apple", tools=[tool(seed=1)])
    second = client.responses.create(
        model=MAINLINE,
        input="now make it look realistic",
        previous_response_id=first.id,
        tools=[tool(seed=1)],
    )
    third = client.responses.create(
        model=MAINLINE,
        input="now add a green leaf",
        previous_response_id=second.id,
        tools=[tool(seed=1)],
    )
    assert image_call(first).action == "generate"
    assert image_call(second).action == image_call(third).action == "edit"
    assert image_call(third).revised_prompt == "now add a green leaf"
    assert second.previous_response_id == first.id
    # One image per turn is stored, once: later turns refer to earlier ones, never copy them.
    assert count(live_server, "SELECT count(*) FROM response_images") == images_before + 3
    # The edit's tokens count the previous image as an input image, as the edits endpoint does.
    assert second.tool_usage is not None and second.tool_usage.image_gen.input_tokens_details
    assert second.tool_usage.image_gen.input_tokens_details.image_tokens > 0


def test_an_edit_turn_depends_on_the_previous_image(client: openai.OpenAI) -> None:
    """Seeds fixed: the second turn's output changes when (and only when) the first turn's
    image does."""

    def chain(first_seed: int) -> tuple[str, str]:
        first = client.responses.create(
            model=MAINLINE, input="a red apple", tools=[tool(seed=first_seed)]
        )
        second = client.responses.create(
            model=MAINLINE,
            input="now make it blue",
            previous_response_id=first.id,
            tools=[tool(seed=7)],
        )
        return image_call(first).result, image_call(second).result

    first_a, second_a = chain(1)
    first_b, second_b = chain(2)
    _, second_a_again = chain(1)
    assert first_a != first_b
    assert second_a != second_b
    assert second_a == second_a_again


def test_three_turn_chain_by_replayed_items(client: openai.OpenAI, live_server: LiveServer) -> None:
    """Agents-style: each turn sends the whole history back, image calls in full."""
    first = client.responses.create(model=MAINLINE, input="a red apple", tools=[tool(seed=1)])
    history: list[Any] = [{"role": "user", "content": "a red apple"}]
    history += [item.to_dict() for item in first.output]
    images_before = count(live_server, "SELECT count(*) FROM response_images")
    second = client.responses.create(
        model=MAINLINE,
        input=[*history, {"role": "user", "content": "now make it realistic"}],
        tools=[tool(seed=1)],
    )
    history += [{"role": "user", "content": "now make it realistic"}]
    history += [item.to_dict() for item in second.output]
    third = client.responses.create(
        model=MAINLINE,
        input=[*history, {"role": "user", "content": "now add a green leaf"}],
        tools=[tool(seed=1)],
    )
    assert image_call(second).action == image_call(third).action == "edit"
    # Replayed images this server made are stored as references: only each new image is kept.
    assert count(live_server, "SELECT count(*) FROM response_images") == images_before + 2
    # The same edit as the previous_response_id chain makes from the same image.
    by_id = client.responses.create(
        model=MAINLINE,
        input="now make it realistic",
        previous_response_id=first.id,
        tools=[tool(seed=1)],
    )
    assert image_call(by_id).result == image_call(second).result
    # The replayed items are listed back in full, the image call with its result.
    items = client.responses.input_items.list(third.id, order="asc", limit=100).data
    calls = [item for item in items if item.type == "image_generation_call"]
    assert [call.result for call in calls] == [image_call(first).result, image_call(second).result]


def test_replay_by_id_and_item_reference(client: openai.OpenAI) -> None:
    first = client.responses.create(model=MAINLINE, input="a red apple", tools=[tool(seed=1)])
    call_id = image_call(first).id
    by_call_id = client.responses.create(
        model=MAINLINE,
        input=[
            {"role": "user", "content": [{"type": "input_text", "text": "now make it realistic"}]},
            {"type": "image_generation_call", "id": call_id},
        ],
        tools=[tool(seed=1)],
    )
    by_reference = client.responses.create(
        model=MAINLINE,
        input=[
            {"type": "item_reference", "id": call_id},
            {"role": "user", "content": "now make it realistic"},
        ],
        tools=[tool(seed=1)],
    )
    chained = client.responses.create(
        model=MAINLINE,
        input="now make it realistic",
        previous_response_id=first.id,
        tools=[tool(seed=1)],
    )
    assert image_call(by_call_id).action == "edit"
    assert image_call(by_call_id).result == image_call(by_reference).result
    assert image_call(by_call_id).result == image_call(chained).result


def test_input_images_become_the_edit_inputs(client: openai.OpenAI) -> None:
    photo = png_bytes((64, 64), "navy")
    edited = client.responses.create(
        model=MAINLINE,
        input=[with_image("make it brighter", photo)],
        tools=[tool(seed=3)],
    )
    other = client.responses.create(
        model=MAINLINE,
        input=[with_image("make it brighter", png_bytes((64, 64), "red"))],
        tools=[tool(seed=3)],
    )
    assert image_call(edited).action == "edit"
    assert image_call(edited).result != image_call(other).result
    # The same edit through /v1/images/edits gives the same image.
    images_api = client.images.edit(
        model="gpt-image-1",
        image=("a.png", photo, "image/png"),
        prompt="make it brighter",
        quality="low",
        size="1024x1024",
        extra_body={"seed": 3},
    )
    assert images_api.data is not None
    assert images_api.data[0].b64_json == image_call(edited).result
    # A mask applies to the first input image: outside it, the input comes back.
    masked = client.responses.create(
        model=MAINLINE,
        input=[with_image("a yellow sun", photo)],
        tools=[tool(seed=3, input_image_mask={"image_url": data_url(mask_bytes())})],
    )
    masked_api = client.images.edit(
        model="gpt-image-1",
        image=("a.png", photo, "image/png"),
        mask=("m.png", mask_bytes(), "image/png"),
        prompt="a yellow sun",
        quality="low",
        size="1024x1024",
        extra_body={"seed": 3},
    )
    assert masked_api.data is not None
    assert masked_api.data[0].b64_json == image_call(masked).result
    # action=generate ignores the images the conversation holds.
    generated = client.responses.create(
        model=MAINLINE,
        input=[with_image("make it brighter", photo)],
        tools=[tool(seed=3, action="generate")],
    )
    assert image_call(generated).action == "generate"


def test_store_false_cannot_be_referenced(client: openai.OpenAI, live_server: LiveServer) -> None:
    stored_before = count(live_server, "SELECT count(*) FROM responses")
    unstored = client.responses.create(model=MAINLINE, input="a cat", tools=[tool()], store=False)
    assert unstored.store is False and image_call(unstored).result
    assert count(live_server, "SELECT count(*) FROM responses") == stored_before
    with pytest.raises(openai.BadRequestError) as refused:
        client.responses.create(
            model=MAINLINE, input="again", previous_response_id=unstored.id, tools=[tool()]
        )
    assert refused.value.code == "previous_response_not_found"
    assert refused.value.param == "previous_response_id"
    with pytest.raises(openai.NotFoundError) as missing:
        client.responses.create(
            model=MAINLINE,
            input=[
                {"role": "user", "content": "again"},
                {"type": "image_generation_call", "id": image_call(unstored).id},
            ],
            tools=[tool()],
        )
    assert missing.value.param == "input"
    with pytest.raises(openai.NotFoundError):
        client.responses.retrieve(unstored.id)


def test_responses_are_scoped_to_their_project(
    client: openai.OpenAI, live_server: LiveServer
) -> None:
    mine = client.responses.create(model=MAINLINE, input="a cat", tools=[tool()])
    organization = new_organization(live_server, verified=True)
    other_key = project_key(live_server, organization["id"], organization["default_project_id"])
    with openai.OpenAI(base_url=live_server.api_url, api_key=other_key, max_retries=0) as other:
        with pytest.raises(openai.NotFoundError):
            other.responses.retrieve(mine.id)
        with pytest.raises(openai.NotFoundError):
            other.responses.delete(mine.id)
        with pytest.raises(openai.NotFoundError):
            other.responses.input_items.list(mine.id)
        with pytest.raises(openai.BadRequestError) as refused:
            other.responses.create(
                model=MAINLINE, input="more", previous_response_id=mine.id, tools=[tool()]
            )
        assert refused.value.code == "previous_response_not_found"
        with pytest.raises(openai.NotFoundError):
            other.responses.create(
                model=MAINLINE,
                input=[{"type": "item_reference", "id": image_call(mine).id}],
                tools=[tool()],
            )
    assert client.responses.retrieve(mine.id).id == mine.id


def test_usage_api_shows_responses_traffic(client: openai.OpenAI, live_server: LiveServer) -> None:
    client.responses.create(model=MAINLINE, input="a cat", tools=[tool()])
    response = httpx.get(
        live_server.api_url + "/organization/usage/images",
        params={
            "start_time": int(time.time()) - 86400,
            "bucket_width": "1d",
            "limit": 31,
            "group_by[]": "source",
            "sources[]": "responses.image_generation",
        },
        headers={"authorization": f"Bearer {ADMIN_KEY}"},
    )
    assert response.status_code == 200, response.text
    results = [row for bucket in response.json()["data"] for row in bucket["results"]]
    assert results and {row["source"] for row in results} == {"responses.image_generation"}
    assert sum(row["images"] for row in results) == usage_rows(live_server)


def test_moderation_refuses_before_the_stream(
    client: openai.OpenAI, live_server: LiveServer
) -> None:
    billed, stored = usage_rows(live_server), count(live_server, "SELECT count(*) FROM responses")
    for stream in (False, True):
        with pytest.raises(openai.BadRequestError) as refused:
            client.responses.create(
                model=MAINLINE,
                input="a photo of a beheading, gore everywhere",
                tools=[tool()],
                stream=stream,
            )
        assert refused.value.code == "moderation_blocked"
    assert usage_rows(live_server) == billed
    assert count(live_server, "SELECT count(*) FROM responses") == stored


def test_a_failure_at_the_first_step_is_a_json_error(
    client: openai.OpenAI, live_server: LiveServer
) -> None:
    billed, stored = usage_rows(live_server), count(live_server, "SELECT count(*) FROM responses")
    broken = {"type": "image_generation", "model": "broken-model", "quality": "low"}
    with pytest.raises(openai.InternalServerError):
        client.responses.create(model=MAINLINE, input="a cat", stream=True, tools=[broken])
    assert usage_rows(live_server) == billed
    assert count(live_server, "SELECT count(*) FROM responses") == stored


def test_a_refusal_after_the_stream_began(live_server: LiveServer) -> None:
    """An organization whose policy refuses every output: the first partial image is refused
    once the stream is under way, so the refusal is an error event, then response.failed.
    The failed response is kept; nothing is billed."""
    created = new_organization(live_server, name="strict-responses", verified=True, tier="1")
    org, project = created["id"], created["default_project_id"]
    policy = {"checks": {"open_nsfw": {"thresholds": {"auto": 0, "low": 0}}}}
    assert (
        httpx.put(
            f"{live_server.api_url}/limner/organizations/{org}/moderation",
            json=policy,
            headers={"authorization": f"Bearer {ADMIN_KEY}"},
        ).status_code
        == 200
    )
    key = project_key(live_server, org, project)
    billed = usage_rows(live_server)
    body = {
        "model": MAINLINE,
        "input": "a dot",
        "stream": True,
        "tools": [tool(quality="high", partial_images=2)],
    }
    raw = httpx.post(
        live_server.api_url + "/responses",
        json=body,
        headers={"authorization": f"Bearer {key}"},
        timeout=120,
    )
    assert raw.status_code == 200
    payloads = [
        json.loads(line.removeprefix("data: "))
        for line in raw.text.splitlines()
        if line.startswith("data: ")
    ]
    kinds = [payload["type"] for payload in payloads]
    assert kinds[0] == "response.created" and kinds[-2:] == ["error", "response.failed"]
    assert "response.completed" not in kinds
    assert payloads[-2]["error"]["code"] == "moderation_blocked"
    failed = payloads[-1]["response"]
    assert failed["status"] == "failed" and failed["error"]["code"] == "moderation_blocked"
    assert [payload["sequence_number"] for payload in payloads] == list(range(len(payloads)))
    with openai.OpenAI(base_url=live_server.api_url, api_key=key, max_retries=0) as sdk:
        with pytest.raises(openai.APIError) as caught:
            list(sdk.responses.create(**body))
        assert caught.value.code == "moderation_blocked"
        assert sdk.responses.retrieve(failed["id"]).status == "failed"
        # Not streaming, the same refusal is the JSON error.
        with pytest.raises(openai.BadRequestError) as refused:
            sdk.responses.create(model=MAINLINE, input="a dot", tools=[tool()])
        assert refused.value.code == "moderation_blocked"
    assert usage_rows(live_server) == billed


def test_a_client_that_leaves_is_not_billed(live_server: LiveServer) -> None:
    """The slow model renders 300 steps: leaving after the first partial image, or before any
    event (no partials), or a non-streaming request timing out, each cancel the render."""
    billed = usage_rows(live_server)
    cancelled_before = metric(live_server, "limner_renders_cancelled_total", model="slow")
    finished_before = metric(live_server, "limner_generation_seconds_count", model="slow")
    headers = {"authorization": f"Bearer {API_KEY}"}
    slow = {"type": "image_generation", "model": "slow-model", "quality": "low"}
    body = {"model": MAINLINE, "input": "a cat", "tools": [slow]}
    leave_three_ways(
        live_server.api_url + "/responses",
        body,
        {"tools": [{**slow, "partial_images": 3}]},
        headers,
        first_event=lambda line: "partial_image_b64" in line,
    )
    wait_for_metric(live_server, "limner_renders_cancelled_total", cancelled_before + 3, "slow")
    assert metric(live_server, "limner_generation_seconds_count", model="slow") == finished_before
    assert usage_rows(live_server) == billed


def test_platform_gates_and_limits_apply(live_server: LiveServer) -> None:
    """Verification for the image model, the project's images-per-minute limit with its
    headers, and costs, as on the Images API."""
    unverified = new_organization(live_server, name="unverified", verified=False, tier="1")
    key = project_key(live_server, unverified["id"], unverified["default_project_id"])
    with openai.OpenAI(base_url=live_server.api_url, api_key=key, max_retries=0) as sdk:
        with pytest.raises(openai.PermissionDeniedError):
            sdk.responses.create(model=MAINLINE, input="a cat", tools=[tool()])
        # Without an image call nothing is gated.
        assert sdk.responses.create(model=MAINLINE, input="hi").status == "completed"

    created = new_organization(live_server, name="limited", verified=True, tier="1")
    admin_key = created["admin_api_key"]["value"]
    project = created["default_project_id"]
    key = project_key(live_server, created["id"], project)
    with openai.OpenAI(
        base_url=live_server.api_url, admin_api_key=admin_key, api_key="", max_retries=0
    ) as admin:
        admin.admin.organization.projects.rate_limits.update_rate_limit(
            "rl-gpt-image-1", project_id=project, max_images_per_1_minute=2
        )
        headers = {"authorization": f"Bearer {key}"}
        body = {"model": MAINLINE, "input": "a cat", "tools": [tool()]}
        answers = [
            httpx.post(live_server.api_url + "/responses", json=body, headers=headers, timeout=60)
            for _ in range(3)
        ]
        assert [answer.status_code for answer in answers] == [200, 200, 429]
        assert answers[0].headers["x-ratelimit-limit-images"] == "2"
        assert answers[1].headers["x-ratelimit-remaining-images"] == "0"
        assert answers[2].json()["error"]["code"] == "rate_limit_exceeded"
        assert int(answers[2].headers["retry-after"]) >= 1
        start = int(time.time()) - 3600
        costs = admin.admin.organization.usage.costs(
            start_time=start, project_ids=[project], group_by=["line_item"]
        )
        items = {r.line_item: r for bucket in costs.data for r in bucket.results}
        assert items["gpt-image-1 image, output"].quantity == 2 * 272
        usage = admin.admin.organization.usage.images(
            start_time=start, bucket_width="1d", group_by=["source"]
        )
        rows = [(r.source, r.images) for bucket in usage.data for r in bucket.results]
        assert rows == [("responses.image_generation", 2)]
