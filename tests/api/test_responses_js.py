"""The official JavaScript SDK (npm `openai`, pinned in tests/api/js/package.json) against the
live server: `responses.create`, its raw stream, the `responses.stream()` helper and a chain by
`previous_response_id`. Each script in tests/api/js prints one JSON object of what the SDK gave
it; the assertions are here. Setup: `npm ci --prefix tests/api/js` (scripts/setup runs it)."""

import json
import os
import shutil
import subprocess
from pathlib import Path
from typing import Any

import pytest

from tests.api.conftest import decoded
from tests.conftest import API_KEY, LiveServer

JS = Path(__file__).parent / "js"
NODE = shutil.which("node")

pytestmark = [
    pytest.mark.skipif(
        NODE is None, reason="node is not installed: install Node.js 20+, then run scripts/setup"
    ),
    pytest.mark.skipif(
        not (JS / "node_modules" / "openai").is_dir(),
        reason="the JS SDK is not installed: run `npm ci --prefix tests/api/js` (scripts/setup)",
    ),
]


def run_script(server: LiveServer, script: str) -> dict[str, Any]:
    """`node tests/api/js/<script>` against `server`; its one JSON object."""
    assert NODE is not None
    env = {**os.environ, "LIMNER_BASE_URL": server.api_url, "LIMNER_API_KEY": API_KEY}
    done = subprocess.run(
        [NODE, str(JS / script)], cwd=JS, env=env, capture_output=True, text=True, timeout=120
    )
    lines = done.stdout.strip().splitlines()
    assert lines, f"{script} printed nothing (exit {done.returncode}):\n{done.stderr}"
    facts: dict[str, Any] = json.loads(lines[-1])
    assert done.returncode == 0 and "error" not in facts, (
        f"{script} failed (exit {done.returncode}): {json.dumps(facts.get('error'), indent=2)}"
        f"\n{done.stderr}"
    )
    return facts


def assert_image_turn(
    facts: dict[str, Any], action: str, *, output_text: bool = True
) -> dict[str, Any]:
    """A completed turn: one image call (a bare-base64 PNG), then the assistant's message.
    `output_text`: the SDK computed its `output_text` (create() and the stream helper do; a raw
    stream event's response is the server's JSON as it came, without it)."""
    assert facts["object"] == "response" and facts["status"] == "completed"
    assert facts["model"] == "gpt-4.1"
    assert facts["output_types"] == ["image_generation_call", "message"]
    assert facts["output_ids"][0].startswith("ig_") and facts["output_ids"][1].startswith("msg_")
    [call] = facts["calls"]
    assert call["status"] == "completed"
    assert call["action"] == action
    assert call["png"]["png"], call["png"]
    image = decoded(call["result"])
    assert image.format == "PNG"
    assert image.size == (call["png"]["width"], call["png"]["height"]) == (1024, 1024)
    text = "".join(facts["message_text"])
    assert text, "the assistant message has no text"
    if output_text:
        # output_text is the SDK's own: the message's output_text parts, joined.
        assert facts["output_text"] == text
    return call


def test_create_with_the_image_tool(live_server: LiveServer) -> None:
    facts = run_script(live_server, "create.mjs")
    assert facts["id"].startswith("resp_")
    call = assert_image_turn(facts, "generate")
    assert call["revised_prompt"] == "Draw a small red fox"
    assert facts["usage"] is not None and facts["usage"]["total_tokens"] == 0


def test_raw_stream_with_partial_images(live_server: LiveServer) -> None:
    facts = run_script(live_server, "stream.mjs")
    events = facts["events"]
    types = [event["type"] for event in events]
    assert [event["sequence_number"] for event in events] == list(range(len(events)))
    assert types[0] == "response.created" and types[-1] == "response.completed"
    assert types.count("response.completed") == 1
    assert types[:5] == [
        "response.created",
        "response.in_progress",
        "response.output_item.added",
        "response.image_generation_call.in_progress",
        "response.image_generation_call.generating",
    ]
    assert types.count("response.image_generation_call.partial_image") == 2
    assert [partial["index"] for partial in facts["partials"]] == [0, 1]
    for partial in facts["partials"]:
        assert partial["png"]["png"], partial["png"]
    # The call's events, then the message's; each item added once and done once, in order.
    call_done = types.index("response.image_generation_call.completed")
    assert types[call_done + 1] == "response.output_item.done"
    added = [event for event in events if event["type"] == "response.output_item.added"]
    finished = [event for event in events if event["type"] == "response.output_item.done"]
    assert [(e["output_index"], e["item_type"]) for e in added] == [
        (0, "image_generation_call"),
        (1, "message"),
    ]
    assert [e["item_id"] for e in finished] == [e["item_id"] for e in added]
    assert "response.output_text.delta" in types
    response_ids = {event["response_id"] for event in events if event["response_id"] is not None}
    assert response_ids == {facts["completed"]["id"]}
    completed = facts["completed"]
    assert completed["output_ids"] == [e["item_id"] for e in added]
    # The raw event is the server's JSON: no `output_text` key (an SDK property, never sent).
    assert completed["output_text"] is None
    assert_image_turn(completed, "generate", output_text=False)


def test_stream_helper_final_response(live_server: LiveServer) -> None:
    facts = run_script(live_server, "stream_helper.mjs")
    types = facts["types"]
    assert types[0] == "response.created" and types[-1] == "response.completed"
    assert types.count("response.image_generation_call.partial_image") == 1
    final = facts["final"]
    assert_image_turn(final, "generate")
    assert facts["text_deltas"] == final["output_text"]


def test_chain_by_previous_response_id_edits(live_server: LiveServer) -> None:
    facts = run_script(live_server, "chain.mjs")
    first, second = facts["first"], facts["second"]
    assert_image_turn(first, "generate")
    edit = assert_image_turn(second, "edit")
    assert second["previous_response_id"] == first["id"]
    assert edit["revised_prompt"] == "Now make it green"
    assert edit["id"] != first["calls"][0]["id"]
    assert edit["result"] != first["calls"][0]["result"]
    assert facts["retrieved"] == {
        "id": second["id"],
        "status": "completed",
        "output_types": ["image_generation_call", "message"],
    }
    assert [(item["type"], item["role"]) for item in facts["input_items"]] == [("message", "user")]
