"""A client for a running Limner server's streaming Images API (what `limner generate` uses).

httpx and httpx-sse: the CLI must not need the `openai` package.
"""

import json
from collections.abc import Iterator
from typing import Any

import httpx
from httpx_sse import connect_sse


class ServerUnavailable(Exception):
    """No server answered at the URL."""


class RequestFailed(Exception):
    """The server answered with an error envelope (before or during the stream)."""

    def __init__(self, status: int, error: dict[str, Any]) -> None:
        super().__init__(error.get("message") or f"HTTP {status}")
        self.status = status
        self.error = error


def stream_generation(
    base_url: str, api_key: str, body: dict[str, Any], timeout: float = 600.0
) -> Iterator[dict[str, Any]]:
    """POST /images/generations with stream=true; yield each partial and completed event."""
    url = base_url.rstrip("/") + "/images/generations"
    headers = {"authorization": f"Bearer {api_key}", "accept": "text/event-stream"}
    limits = httpx.Timeout(timeout, connect=5.0)
    request = {"json": {**body, "stream": True}, "headers": headers}
    try:
        with (
            httpx.Client(timeout=limits) as client,
            connect_sse(client, "POST", url, **request) as source,
        ):
            if source.response.status_code != 200:
                source.response.read()
                raise RequestFailed(source.response.status_code, _error_of(source.response))
            for message in source.iter_sse():
                if message.data.startswith("[DONE]"):
                    return
                event = json.loads(message.data)
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
