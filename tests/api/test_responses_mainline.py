"""A language model as the Responses mainline: a real chat-completions server process (its
model a small function, tests/responses/chat_server.py) behind `LIMNER_MAINLINE_URL`."""

import json
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import openai
import pytest

from tests.conftest import API_KEY, LiveServer, free_port, start_server, stop_server

REPO = Path(__file__).resolve().parents[2]
TOOL = {"type": "image_generation", "quality": "low", "seed": 5}


@pytest.fixture(scope="module")
def chat_log(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Path]:
    log = tmp_path_factory.mktemp("chat") / "requests.jsonl"
    port = free_port()
    process = subprocess.Popen(
        [sys.executable, "-m", "uvicorn", "tests.responses.chat_server:app", "--port", str(port)],
        cwd=REPO,
        env={"CHAT_LOG": str(log), "PATH": "/usr/bin:/bin", "PYTHONPATH": str(REPO)},
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline:
        try:
            if httpx.get(f"http://127.0.0.1:{port}/health", timeout=1).status_code == 200:
                break
        except httpx.HTTPError:
            time.sleep(0.1)
    log.with_suffix(".url").write_text(f"http://127.0.0.1:{port}/v1")
    yield log
    process.terminate()
    process.wait(timeout=10)


@pytest.fixture(scope="module")
def mainline_server(
    tmp_path_factory: pytest.TempPathFactory, catalog_file: Path, chat_log: Path
) -> Iterator[LiveServer]:
    server = start_server(
        tmp_path_factory.mktemp("mainline-home"),
        ["--catalog", str(catalog_file)],
        env={
            "LIMNER_MAINLINE_URL": chat_log.with_suffix(".url").read_text(),
            "LIMNER_MAINLINE_MODEL": "house-llm",
        },
    )
    yield server
    stop_server(server)


@pytest.fixture()
def sdk(mainline_server: LiveServer) -> Iterator[openai.OpenAI]:
    with openai.OpenAI(base_url=mainline_server.api_url, api_key=API_KEY, max_retries=0) as client:
        yield client


def sent(log: Path) -> list[dict[str, Any]]:
    return [json.loads(line) for line in log.read_text().splitlines()]


def test_the_model_writes_the_prompt_and_the_reply(sdk: openai.OpenAI, chat_log: Path) -> None:
    response = sdk.responses.create(
        model="gpt-4.1", instructions="Keep it calm.", input="draw a harbour", tools=[TOOL]
    )
    assert [item.type for item in response.output] == ["image_generation_call", "message"]
    call = response.output[0]
    assert call.type == "image_generation_call"
    assert call.revised_prompt == "a watercolour painting of draw a harbour"
    assert call.result and call.action == "generate"
    assert response.output_text == "Painted it for you."
    # The mainline's tokens are the model's own.
    assert response.usage is not None and response.usage.output_tokens == 4
    request = sent(chat_log)[-1]
    assert request["model"] == "house-llm"
    assert request["messages"][0]["role"] == "system"
    assert request["messages"][0]["content"].endswith("Keep it calm.")
    assert request["tools"][0]["function"]["name"] == "image_generation"
    assert request["tool_choice"] == "auto"


def test_the_model_may_answer_without_an_image(sdk: openai.OpenAI) -> None:
    response = sdk.responses.create(model="gpt-4.1", input="hello there", tools=[TOOL])
    assert [item.type for item in response.output] == ["message"]
    assert response.output_text == "You said: hello there"


def test_a_forced_call_is_forced_and_a_chain_edits(sdk: openai.OpenAI, chat_log: Path) -> None:
    first = sdk.responses.create(
        model="gpt-4.1", input="a boat", tools=[TOOL], tool_choice={"type": "image_generation"}
    )
    assert first.output[0].type == "image_generation_call"
    forced = sent(chat_log)[-1]["tool_choice"]
    assert forced == {"type": "function", "function": {"name": "image_generation"}}
    second = sdk.responses.create(
        model="gpt-4.1", input="now make it red", previous_response_id=first.id, tools=[TOOL]
    )
    call = second.output[0]
    assert call.type == "image_generation_call" and call.action == "edit"
    # The model saw the conversation: the earlier turn and the image it made.
    history = [message["content"] for message in sent(chat_log)[-1]["messages"]]
    assert "a boat" in history
    assert any(text.startswith("[image made: a watercolour painting of a boat") for text in history)


def test_no_tool_means_no_tool_offered(sdk: openai.OpenAI, chat_log: Path) -> None:
    response = sdk.responses.create(model="gpt-4.1", input="draw a cat")
    assert [item.type for item in response.output] == ["message"]
    assert "tools" not in sent(chat_log)[-1]
