"""Server logs as an operator reads them: `limner serve --log-format json` writes one JSON object
per line, and what a request logs carries that request's id (the x-request-id it was sent)."""

import json
from pathlib import Path
from typing import Any

import httpx
import pytest

from tests.conftest import API_KEY, LiveServer, start_server, stop_server

HEADERS = {"authorization": f"Bearer {API_KEY}"}


def generate(server: LiveServer, body: dict[str, Any]) -> httpx.Response:
    return httpx.post(
        server.api_url + "/images/generations", json=body, headers=HEADERS, timeout=120
    )


@pytest.fixture(scope="module")
def json_log(tmp_path_factory: pytest.TempPathFactory, catalog_file: Path) -> dict[str, Any]:
    """The records of a JSON-logging server that served one image and refused one request,
    and those two requests' ids."""
    server = start_server(
        tmp_path_factory.mktemp("json-home"),
        ["--catalog", str(catalog_file), "--log-format", "json"],
    )
    try:
        served = generate(server, {"model": "gpt-image-1", "prompt": "a dot", "quality": "low"})
        refused = generate(server, {"model": "gpt-image-1", "prompt": "a dot", "size": "13x13"})
    finally:
        stop_server(server)
    assert served.status_code == 200 and refused.status_code == 400
    lines = server.log.read_text().splitlines()
    return {
        "lines": lines,
        "records": [json.loads(line) for line in lines if line.startswith("{")],
        "served": served.headers["x-request-id"],
        "refused": refused.headers["x-request-id"],
    }


def test_every_line_is_one_json_object(json_log: dict[str, Any]) -> None:
    """Library warnings, loading bars and uvicorn's own lines included."""
    assert len(json_log["records"]) == len(json_log["lines"]) > 0
    for record in json_log["records"]:
        assert {"time", "level", "logger", "request_id", "message"} <= record.keys()
        assert "color_message" not in record


def test_one_access_record_per_request_under_its_id(json_log: dict[str, Any]) -> None:
    records = json_log["records"]
    for request_id, status in ((json_log["served"], 200), (json_log["refused"], 400)):
        [access] = [
            r for r in records if r["logger"] == "limner.access" and r["request_id"] == request_id
        ]
        assert access["method"] == "POST"
        assert access["path"] == "/v1/images/generations"
        assert access["status"] == status
        assert isinstance(access["duration_ms"], int) and access["duration_ms"] >= 0
        assert access["message"].startswith(f"POST /v1/images/generations {status} ")
    # uvicorn's access log, which cannot know the id, is off.
    assert not [r for r in records if r["logger"] == "uvicorn.access"]


def test_records_inside_a_request_carry_its_id(json_log: dict[str, Any]) -> None:
    records = json_log["records"]
    served = [r for r in records if r["request_id"] == json_log["served"]]
    # The moderation decisions on the prompt and on the image, logged from worker threads.
    decisions = [r for r in served if r["logger"] == "limner.moderation.decisions"]
    assert sorted(r["moderation"]["stage"] for r in decisions) == ["output", "prompt"]
    assert all(r["moderation"]["request_id"] == json_log["served"] for r in decisions)
    # Records outside any request (start-up, shutdown) say so.
    startup = [r for r in records if r["message"].startswith("Application startup complete")]
    assert startup and all(r["request_id"] == "-" for r in startup)
