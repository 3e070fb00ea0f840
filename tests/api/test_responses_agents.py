"""The OpenAI Agents SDK (`openai-agents`, pinned in the dev extra) against the live server: an
agent with the hosted ImageGenerationTool, run, run again on its own input list ("now make it
green" edits the image), chained by previous_response_id, and streamed.

The Agents SDK ends a run only on a response with an assistant message; one that holds only an
image call sends it back to the model until max_turns (responses-api.md §7). max_turns is small
so that such a regression fails here at once, as MaxTurnsExceeded."""

import asyncio
from collections.abc import Awaitable, Callable, Iterator
from typing import Any, TypeVar

import pytest
from agents import (
    Agent,
    ImageGenerationTool,
    MaxTurnsExceeded,
    MessageOutputItem,
    Runner,
    RunResult,
    RunResultStreaming,
    ToolCallItem,
    set_default_openai_api,
    set_default_openai_client,
    set_tracing_disabled,
)
from agents.models import _openai_shared
from openai import AsyncOpenAI

from tests.api.conftest import decoded
from tests.conftest import API_KEY, LiveServer

MAX_TURNS = 3
T = TypeVar("T")


@pytest.fixture()
def live_agents(live_server: LiveServer) -> Iterator[Callable[[Callable[[], Awaitable[T]]], T]]:
    """Runs a scenario with the Agents SDK's default client pointed at the live server (made
    inside the scenario's event loop, closed with it), the Responses API, and no tracing, so
    nothing leaves this machine. The SDK's previous defaults are put back afterwards."""
    set_tracing_disabled(True)
    previous_client = _openai_shared.get_default_openai_client()
    previous_responses = _openai_shared.get_use_responses_by_default()

    def run(scenario: Callable[[], Awaitable[T]]) -> T:
        async def with_client() -> T:
            async with AsyncOpenAI(
                base_url=live_server.api_url, api_key=API_KEY, max_retries=0, timeout=120
            ) as client:
                set_default_openai_client(client, use_for_tracing=False)
                set_default_openai_api("responses")
                return await scenario()

        return asyncio.run(with_client())

    yield run
    _openai_shared.set_default_openai_client(previous_client)  # type: ignore[arg-type]
    _openai_shared.set_use_responses_by_default(previous_responses)


INSTRUCTIONS = "You draw what the user asks for."


def painter(**tool: Any) -> Agent[Any]:
    """An agent with the hosted image tool; `tool_config` goes to the server as it is."""
    config: Any = {"type": "image_generation", "quality": "low", **tool}
    return Agent(
        name="Painter",
        instructions=INSTRUCTIONS,
        model="gpt-4.1",
        tools=[ImageGenerationTool(tool_config=config)],
    )


async def run_agent(agent: Agent[Any], given: str | list[Any], **kwargs: Any) -> RunResult:
    try:
        return await Runner.run(agent, given, max_turns=MAX_TURNS, **kwargs)
    except MaxTurnsExceeded as exc:  # the run never ended: no assistant message came back
        pytest.fail(f"the agent did not finish in {MAX_TURNS} turns: {exc}")


def image_call(items: list[Any]) -> Any:
    """The one image_generation_call among a run's new items, as its raw output item."""
    calls = [
        item.raw_item
        for item in items
        if isinstance(item, ToolCallItem) and item.raw_item.type == "image_generation_call"
    ]
    assert len(calls) == 1, [type(item).__name__ for item in items]
    call = calls[0]
    assert call.id.startswith("ig_") and call.status == "completed"
    image = decoded(call.result)  # bare base64 of a PNG
    assert image.format == "PNG" and image.size == (1024, 1024)
    return call


def assert_finished(result: RunResult | RunResultStreaming) -> None:
    """One model call, ended by the assistant's message: the image call, then the text."""
    assert len(result.raw_responses) == 1
    assert isinstance(result.final_output, str) and result.final_output
    kinds = [type(item).__name__ for item in result.new_items]
    assert kinds == ["ToolCallItem", "MessageOutputItem"]
    message = result.new_items[-1]
    assert isinstance(message, MessageOutputItem)
    assert message.raw_item.role == "assistant"


def test_agent_draws_then_edits_on_its_input_list(live_agents: Any) -> None:
    agent = painter()

    async def scenario() -> tuple[RunResult, RunResult]:
        first = await run_agent(agent, "Draw a red circle")
        replay = [*first.to_input_list(), {"role": "user", "content": "now make it green"}]
        return first, await run_agent(agent, replay)

    first, second = live_agents(scenario)
    assert_finished(first)
    drawn = image_call(first.new_items)
    assert drawn.action == "generate"
    # The agent's instructions come first in the prompt (Limner's Orchestrator), then the user's.
    assert drawn.revised_prompt == f"{INSTRUCTIONS}\n\nDraw a red circle"
    # to_input_list replays the call in full (its base64 result) and the message, with ids.
    replayed = [item.get("type") for item in first.to_input_list()]
    assert replayed == [None, "image_generation_call", "message"]

    assert_finished(second)
    edited = image_call(second.new_items)
    assert edited.action == "edit"
    assert edited.revised_prompt == f"{INSTRUCTIONS}\n\nnow make it green"
    assert edited.id != drawn.id and edited.result != drawn.result


def test_agent_chained_by_previous_response_id(live_agents: Any) -> None:
    agent = painter()

    async def scenario() -> tuple[RunResult, RunResult]:
        first = await run_agent(agent, "Draw a blue square")
        assert first.last_response_id is not None
        chained = await run_agent(
            agent, "now make it green", previous_response_id=first.last_response_id
        )
        return first, chained

    first, chained = live_agents(scenario)
    assert image_call(first.new_items).action == "generate"
    assert_finished(chained)
    assert image_call(chained.new_items).action == "edit"
    assert chained.raw_responses[0].response_id != first.last_response_id


def test_streamed_agent_run_completes(live_agents: Any) -> None:
    agent = painter(partial_images=1)

    async def scenario() -> tuple[RunResultStreaming, list[Any]]:
        streamed = Runner.run_streamed(agent, "Draw a yellow star", max_turns=MAX_TURNS)
        try:
            events = [event async for event in streamed.stream_events()]
        except MaxTurnsExceeded as exc:
            pytest.fail(f"the streamed agent did not finish in {MAX_TURNS} turns: {exc}")
        return streamed, events

    streamed, events = live_agents(scenario)
    assert streamed.is_complete
    assert_finished(streamed)
    raw = [event.data for event in events if event.type == "raw_response_event"]
    types = [event.type for event in raw]
    assert types[0] == "response.created" and types[-1] == "response.completed"
    assert types.count("response.image_generation_call.partial_image") == 1
    assert [event.sequence_number for event in raw] == list(range(len(raw)))
    named = [event.name for event in events if event.type == "run_item_stream_event"]
    assert named == ["tool_called", "message_output_created"]
    call = image_call(streamed.new_items)
    assert call.action == "generate"
