"""A client for a running Limner server's streaming Images API (what `limner generate` uses).

Plain httpx and a small server-sent-events reader: the CLI must not need the `openai` package.
"""

import json
from collections.abc import Iterator
from typing import Any

import httpx


class ServerUnavailable(Exception):
    """No server answered at the URL."""


class RequestFailed(Exception):
    """The server answered with an error envelope (before or during the stream)."""

    def __init__(self, status: int, error: dict[str, Any]) -> None:
        super().__init__(error.get("message") or f"HTTP {status}")
        self.status = status
        self.error = error


def sse_events(lines: Iterator[str]) -> Iterator[dict[str, Any]]:
    """Each event's `data` parsed as JSON; `event:` names are ignored (the payload has `type`)."""
    data: list[str] = []
    for line in lines:
        if line == "":
            if data:
                payload = "\n".join(data)
                data = []
                if payload.startswith("[DONE]"):
                    return
                yield json.loads(payload)
            continue
        if line.startswith("data:"):
            data.append(line[5:].removeprefix(" "))
    if data and not data[0].startswith("[DONE]"):
        yield json.loads("\n".join(data))


def stream_generation(
    base_url: str, api_key: str, body: dict[str, Any], timeout: float = 600.0
) -> Iterator[dict[str, Any]]:
    """POST /images/generations with stream=true; yield each partial and completed event."""
    url = base_url.rstrip("/") + "/images/generations"
    headers = {"authorization": f"Bearer {api_key}", "accept": "text/event-stream"}
    try:
        with httpx.stream(
            "POST",
            url,
            json={**body, "stream": True},
            headers=headers,
            timeout=httpx.Timeout(timeout, connect=5.0),
        ) as response:
            if response.status_code != 200:
                response.read()
                raise RequestFailed(response.status_code, _error_of(response))
            for event in sse_events(response.iter_lines()):
                if event.get("error"):
                    raise RequestFailed(200, event["error"])
                yield event
    except httpx.ConnectError as exc:
        raise ServerUnavailable(str(exc)) from exc


def _error_of(response: httpx.Response) -> dict[str, Any]:
    try:
        error = response.json().get("error")
    except (ValueError, AttributeError):
        error = None
    return error if isinstance(error, dict) else {"message": response.text[:500]}
