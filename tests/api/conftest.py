"""SDK clients against the session's live server, and input images made in memory."""

import base64
import io
import time
from collections.abc import Callable, Iterator
from typing import Any

import httpx
import openai
import pytest
from PIL import Image, ImageDraw

from tests.conftest import ADMIN_KEY, API_KEY, LiveServer


@pytest.fixture()
def client(live_server: LiveServer) -> Iterator[openai.OpenAI]:
    with openai.OpenAI(base_url=live_server.api_url, api_key=API_KEY, max_retries=0) as sdk:
        yield sdk


@pytest.fixture()
def async_client(live_server: LiveServer) -> openai.AsyncOpenAI:
    return openai.AsyncOpenAI(base_url=live_server.api_url, api_key=API_KEY, max_retries=0)


def new_organization(server: LiveServer, **body: object) -> dict[str, Any]:
    """An organization created through the operator API (its first admin key included)."""
    response = httpx.post(
        server.api_url + "/limner/organizations",
        json={"name": "customer", **body},
        headers={"authorization": f"Bearer {ADMIN_KEY}"},
    )
    assert response.status_code == 200, response.text
    created: dict[str, Any] = response.json()
    return created


def project_key(
    server: LiveServer, organization: str, project: str, admin_key: str = ADMIN_KEY
) -> str:
    """A project key minted through the operator API."""
    response = httpx.post(
        f"{server.api_url}/limner/organizations/{organization}/projects/{project}/api_keys",
        json={"name": "app"},
        headers={"authorization": f"Bearer {admin_key}"},
    )
    assert response.status_code == 200, response.text
    value: str = response.json()["value"]
    return value


def png(image: Image.Image) -> bytes:
    buffer = io.BytesIO()
    image.save(buffer, "PNG")
    return buffer.getvalue()


def decoded(b64: str) -> Image.Image:
    """A response's b64_json as a loaded image."""
    image = Image.open(io.BytesIO(base64.b64decode(b64)))
    image.load()
    return image


def png_bytes(size: tuple[int, int] = (64, 64), color: str = "navy", mode: str = "RGB") -> bytes:
    image = Image.new(mode, size, color)
    ImageDraw.Draw(image).ellipse(
        (size[0] // 4, size[1] // 4, size[0] * 3 // 4, size[1] * 3 // 4), fill="orange"
    )
    buffer = io.BytesIO()
    image.save(buffer, "PNG")
    return buffer.getvalue()


def encoded(image: Image.Image, fmt: str = "PNG") -> bytes:
    buffer = io.BytesIO()
    image.save(buffer, fmt)
    return buffer.getvalue()


def mask_bytes(
    size: tuple[int, int] = (64, 64), box: tuple[int, int, int, int] = (0, 0, 32, 64)
) -> bytes:
    """Opaque everywhere except `box`, which is fully transparent (the region to edit)."""
    mask = Image.new("RGBA", size, (0, 0, 0, 255))
    ImageDraw.Draw(mask).rectangle((box[0], box[1], box[2] - 1, box[3] - 1), fill=(0, 0, 0, 0))
    return encoded(mask)


def decode(data: bytes) -> Image.Image:
    image = Image.open(io.BytesIO(data))
    image.load()
    return image


def metric(server: LiveServer, name: str, **labels: str) -> float:
    """One sample of the server's /metrics (0 when the series does not exist yet)."""
    wanted = name + (
        "{" + ",".join(f'{k}="{v}"' for k, v in labels.items()) + "}" if labels else ""
    )
    for line in httpx.get(server.base_url + "/metrics").text.splitlines():
        if line.startswith(wanted + " "):
            return float(line.rsplit(" ", 1)[1])
    return 0.0


def wait_for_metric(server: LiveServer, name: str, value: float, model: str) -> None:
    deadline = time.monotonic() + 30
    while metric(server, name, model=model) < value and time.monotonic() < deadline:
        time.sleep(0.1)
    assert metric(server, name, model=model) == value


def leave_three_ways(
    url: str,
    body: dict[str, Any],
    with_partials: dict[str, Any],
    headers: dict[str, str],
    first_event: Callable[[str], bool],
) -> None:
    """Leave a long render three ways: streaming, after its first partial image; streaming
    without partials, before any event (only noticing the disconnect can stop that render and
    its bill early); not streaming, by the client's read timeout mid-render."""
    streaming = {**body, "stream": True}
    with httpx.stream(
        "POST", url, json={**streaming, **with_partials}, headers=headers, timeout=60
    ) as response:
        assert response.status_code == 200
        for line in response.iter_lines():
            if first_event(line):
                break
    with httpx.stream("POST", url, json=streaming, headers=headers, timeout=60) as response:
        assert response.status_code == 200
    with pytest.raises(httpx.ReadTimeout):
        httpx.post(url, json=body, headers=headers, timeout=0.5)
