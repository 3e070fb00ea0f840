"""The request id behind a proxy: taken from the request, bounded, never added twice."""

import httpx
import pytest
from starlette.responses import PlainTextResponse
from starlette.types import Receive, Scope, Send

from limner.api.middleware import RequestIdMiddleware, request_id_var


async def echo_request_id(scope: Scope, receive: Receive, send: Send) -> None:
    await PlainTextResponse(request_id_var.get(), headers={"x-request-id": "from-app"})(
        scope, receive, send
    )


async def answer(from_proxy: bool, sent: str | None) -> httpx.Response:
    app = RequestIdMiddleware(echo_request_id, from_proxy=from_proxy)
    headers = {} if sent is None else {"x-request-id": sent}
    transport = httpx.ASGITransport(app=app)
    async with httpx.AsyncClient(transport=transport, base_url="http://limner") as client:
        return await client.get("/", headers=headers)


@pytest.mark.anyio
async def test_alone_the_id_is_limners_own_whatever_the_client_sends() -> None:
    response = await answer(from_proxy=False, sent="req_mine")
    assert response.text.startswith("req_") and response.text != "req_mine"
    assert response.headers.get_list("x-request-id") == [response.text]


@pytest.mark.anyio
async def test_behind_a_proxy_its_id_is_used_and_left_for_it_to_add() -> None:
    response = await answer(from_proxy=True, sent="proxy-made-id")
    assert response.text == "proxy-made-id"
    assert response.headers.get_list("x-request-id") == []  # the proxy adds it


@pytest.mark.anyio
async def test_a_proxied_id_is_bounded_and_printable() -> None:
    assert (await answer(from_proxy=True, sent="a" * 500)).text == "a" * 64
    unprintable = await answer(from_proxy=True, sent="bad\x01id")
    assert unprintable.text.startswith("req_")
