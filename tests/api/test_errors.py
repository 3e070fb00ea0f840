"""Auth, request ids, engine failures: each is the §7 envelope, and the server keeps serving."""

import httpx
import openai
import pytest

from tests.conftest import API_KEY, LiveServer


def test_missing_key_is_401(live_server: LiveServer) -> None:
    response = httpx.post(live_server.api_url + "/images/generations", json={"prompt": "x"})
    assert response.status_code == 401
    assert response.json()["error"]["code"] == "invalid_api_key"
    assert response.headers["x-request-id"].startswith("req_")


def test_wrong_key_is_401_with_sdk(live_server: LiveServer) -> None:
    with (
        openai.OpenAI(
            base_url=live_server.api_url, api_key="sk-wrong-key-000000", max_retries=0
        ) as sdk,
        pytest.raises(openai.AuthenticationError) as caught,
    ):
        sdk.images.generate(model="gpt-image-1", prompt="x")
    assert caught.value.code == "invalid_api_key"
    assert caught.value.request_id and caught.value.request_id.startswith("req_")
    assert "sk-wrong-key-000000" not in caught.value.message  # the key is redacted


def test_models_need_a_key(live_server: LiveServer) -> None:
    assert httpx.get(live_server.api_url + "/models").status_code == 401


def test_engine_exception_is_500_and_server_keeps_serving(client: openai.OpenAI) -> None:
    with pytest.raises(openai.InternalServerError) as caught:
        client.images.generate(model="broken-model", prompt="x", quality="low")
    error = caught.value.body
    assert isinstance(error, dict)
    assert error["type"] == "server_error"
    assert "Traceback" not in caught.value.message
    assert client.images.generate(model="gpt-image-1", prompt="x", quality="low").data


def test_every_response_has_a_request_id(live_server: LiveServer) -> None:
    responses = [
        httpx.get(live_server.base_url + "/healthz"),
        httpx.get(live_server.api_url + "/models", headers={"authorization": f"Bearer {API_KEY}"}),
        httpx.get(live_server.base_url + "/nowhere"),
    ]
    ids = [response.headers["x-request-id"] for response in responses]
    assert all(request_id.startswith("req_") for request_id in ids)
    assert len(set(ids)) == len(ids)


def test_health(live_server: LiveServer) -> None:
    body = httpx.get(live_server.base_url + "/healthz").json()
    assert body["status"] == "ok"
    assert body["database"] is True
    assert {backend["name"] for backend in body["backends"]} == {"tiny", "broken", "slow"}
