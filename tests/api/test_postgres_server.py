"""The same server on PostgreSQL (LIMNER_DATABASE_URL), as a production deployment runs it."""

import openai
import pytest

from tests.conftest import API_KEY, LiveServer


@pytest.mark.postgres
def test_generation_and_auth_on_postgres(postgres_live_server: LiveServer) -> None:
    assert not (postgres_live_server.home / "limner.db").exists()
    with openai.OpenAI(
        base_url=postgres_live_server.api_url, api_key=API_KEY, max_retries=0
    ) as sdk:
        result = sdk.images.generate(model="gpt-image-1", prompt="a kite", quality="low")
        assert result.data[0].b64_json
    with (
        openai.OpenAI(
            base_url=postgres_live_server.api_url, api_key="sk-limner-nope-000000", max_retries=0
        ) as sdk,
        pytest.raises(openai.AuthenticationError),
    ):
        sdk.models.list()


@pytest.mark.postgres
def test_a_responses_chain_on_postgres(postgres_live_server: LiveServer) -> None:
    tool = {"type": "image_generation", "quality": "low", "seed": 2}
    with openai.OpenAI(
        base_url=postgres_live_server.api_url, api_key=API_KEY, max_retries=0
    ) as sdk:
        first = sdk.responses.create(model="gpt-4.1", input="a kite", tools=[tool])
        second = sdk.responses.create(
            model="gpt-4.1", input="now make it red", previous_response_id=first.id, tools=[tool]
        )
        calls = [item for item in second.output if item.type == "image_generation_call"]
        assert calls[0].action == "edit" and calls[0].result
        stored = sdk.responses.retrieve(second.id)
        assert [item.type for item in stored.output] == ["image_generation_call", "message"]
        assert stored.output[0].result == calls[0].result  # type: ignore[union-attr]
        sdk.responses.delete(first.id)
        with pytest.raises(openai.BadRequestError) as refused:
            sdk.responses.create(
                model="gpt-4.1", input="again", previous_response_id=first.id, tools=[tool]
            )
        assert refused.value.code == "previous_response_not_found"
