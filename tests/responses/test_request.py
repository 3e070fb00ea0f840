"""Request validation that the bad-input table does not reach: defaults, echoes, tool_choice."""

from pathlib import Path

import pytest

from limner.catalog import Catalog
from limner.errors import InvalidRequest, MainlineModelNotFound, UnknownParameter
from limner.responses.request import parse_request

CATALOG = Catalog.from_toml(Path(__file__).parents[2] / "limner" / "catalog.default.toml")
TOOL = {"type": "image_generation"}


def test_defaults_and_echoes() -> None:
    request = parse_request({"model": "gpt-4.1", "input": "x", "tools": [TOOL]}, CATALOG)
    assert request.store is True and request.stream is False
    assert request.tool_choice == "auto" and request.may_call
    assert request.echoed["temperature"] == 1.0 and request.echoed["truncation"] == "disabled"
    assert request.metadata == {} and request.previous_response_id is None


def test_sdk_nulls_mean_defaults_and_agents_keys_are_accepted() -> None:
    body = {
        "model": "gpt-4.1",
        "input": [{"role": "user", "content": "x"}],
        "include": [],
        "instructions": None,
        "tools": [TOOL],
        "temperature": None,
        "stream": False,
    }
    request = parse_request(body, CATALOG)
    assert request.instructions is None and request.echoed["temperature"] == 1.0


def test_tool_choice_and_max_tool_calls_decide_whether_a_call_may_run() -> None:
    def may_call(**body: object) -> bool:
        return parse_request({"model": "gpt-4o", "input": "x", **body}, CATALOG).may_call

    assert may_call(tools=[TOOL], tool_choice="required")
    assert not may_call(tools=[TOOL], tool_choice="none")
    assert not may_call(tools=[TOOL], max_tool_calls=0)
    assert not may_call()
    forced = parse_request(
        {"model": "o3", "input": "x", "tools": [TOOL], "tool_choice": {"type": "image_generation"}},
        CATALOG,
    )
    assert forced.call_mode == "required" and forced.tool_choice == {"type": "image_generation"}


def test_refusals() -> None:
    with pytest.raises(MainlineModelNotFound) as unknown:
        parse_request({"model": "gpt-image-1", "input": "x"}, CATALOG)
    assert unknown.value.status == 400 and unknown.value.param == "model"
    with pytest.raises(UnknownParameter):
        parse_request({"model": "gpt-4.1", "input": "x", "image": {}}, CATALOG)
    with pytest.raises(InvalidRequest):
        parse_request({"model": "gpt-4.1", "input": "x", "tool_choice": "required"}, CATALOG)


def test_mainline_names_are_catalog_data(tmp_path: Path) -> None:
    source = (Path(__file__).parents[2] / "limner" / "catalog.default.toml").read_text()
    custom = tmp_path / "catalog.toml"
    custom.write_text('mainline_models = ["house-model"]\n' + source)
    catalog = Catalog.from_toml(custom)
    assert parse_request({"model": "house-model", "input": "x"}, catalog).model == "house-model"
    with pytest.raises(MainlineModelNotFound):
        parse_request({"model": "gpt-4.1", "input": "x"}, catalog)
